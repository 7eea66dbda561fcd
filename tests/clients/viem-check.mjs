// A real Ethereum client (viem) against rpc-proxy in front of anvil.
// Usage: node viem-check.mjs http://127.0.0.1:PORT   (or ws://: viem's webSocket transport)
// Prints one JSON line with what it saw; exits 1 on any failure.
import { createPublicClient, createWalletClient, http, parseEther, webSocket } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { foundry } from "viem/chains";

const url = process.argv[2];
// anvil's first two well-known dev accounts.
const sender = privateKeyToAccount(
  "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
);
const recipient = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

const transport = url.startsWith("ws")
  ? webSocket(url, { retryCount: 0, timeout: 20_000, reconnect: false })
  : http(url, { retryCount: 0, timeout: 20_000 });
const pub = createPublicClient({ chain: foundry, transport, pollingInterval: 100 });
const wallet = createWalletClient({ account: sender, chain: foundry, transport });

async function main() {
  const chainId = await pub.getChainId();
  const blockBefore = await pub.getBlockNumber({ cacheTime: 0 });
  const senderBalance = await pub.getBalance({ address: sender.address });
  const recipientBefore = await pub.getBalance({ address: recipient });
  const receipts = [];
  // Two transfers in a row: the second needs a fresh nonce through the proxy.
  for (const value of ["1", "2"]) {
    const hash = await wallet.sendTransaction({ to: recipient, value: parseEther(value) });
    const receipt = await pub.waitForTransactionReceipt({ hash, timeout: 20_000 });
    receipts.push({ hash, status: receipt.status, block: Number(receipt.blockNumber) });
  }
  const blockAfter = await pub.getBlockNumber({ cacheTime: 0 });
  const recipientAfter = await pub.getBalance({ address: recipient, blockTag: "latest" });
  console.log(
    JSON.stringify({
      chainId,
      blockBefore: Number(blockBefore),
      blockAfter: Number(blockAfter),
      senderBalance: senderBalance.toString(),
      recipientGain: (recipientAfter - recipientBefore).toString(),
      receipts,
    }),
  );
  // An open socket would keep node running.
  process.exit(0);
}

main().catch((e) => {
  console.error(e?.shortMessage ?? e?.message ?? String(e));
  process.exit(1);
});
