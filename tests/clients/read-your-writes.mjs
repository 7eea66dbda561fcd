// Read-your-writes through rpc-proxy's cache on a chain mining every second:
// sendRawTransaction (viem signs) -> receipt -> balance, ROUNDS times; every
// balance read after its receipt must show that transfer.
// Usage: node read-your-writes.mjs http://127.0.0.1:PORT ROUNDS
// Prints one JSON line {rounds, stale: [...]}; exits 1 on any failure.
import { createPublicClient, createWalletClient, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { foundry } from "viem/chains";

const url = process.argv[2];
const rounds = Number(process.argv[3] ?? 50);
// anvil's third well-known dev account sends; a fresh address receives.
const sender = privateKeyToAccount(
  "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
);
const recipient = "0x00000000000000000000000000000000000c0ffe";

const transport = http(url, { retryCount: 0, timeout: 20_000 });
const pub = createPublicClient({ chain: foundry, transport, pollingInterval: 100 });
const wallet = createWalletClient({ account: sender, chain: foundry, transport });

async function main() {
  const start = await pub.getBalance({ address: recipient });
  const stale = [];
  for (let i = 1; i <= rounds; i++) {
    const hash = await wallet.sendTransaction({ to: recipient, value: 1n });
    const receipt = await pub.waitForTransactionReceipt({ hash, timeout: 20_000 });
    if (receipt.status !== "success") throw new Error(`round ${i}: ${receipt.status}`);
    const balance = await pub.getBalance({ address: recipient });
    if (balance - start < BigInt(i)) {
      stale.push({ round: i, block: Number(receipt.blockNumber), gain: (balance - start).toString() });
    }
  }
  console.log(JSON.stringify({ rounds, stale }));
}

main().catch((e) => {
  console.error(e?.shortMessage ?? e?.message ?? String(e));
  process.exit(1);
});
