// ethers' WebSocketProvider against rpc-proxy: calls on the socket, then
// "block" events (eth_subscribe newHeads).
// Usage: node ethers-ws.mjs ws://127.0.0.1:PORT COUNT
// Prints one JSON line with what it saw; exits 1 on any failure.
import { WebSocketProvider } from "ethers";

const [url, count] = [process.argv[2], Number(process.argv[3] ?? 5)];
const provider = new WebSocketProvider(url);

async function main() {
  const network = await provider.getNetwork();
  const blockNumber = await provider.getBlockNumber();
  const balance = await provider.getBalance("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
  const blocks = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${blocks.length} blocks in 60 s`)), 60_000);
    provider.on("block", (n) => {
      blocks.push(n);
      if (blocks.length >= count) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  console.log(
    JSON.stringify({
      chainId: Number(network.chainId),
      blockNumber,
      balance: balance.toString(),
      blocks,
    }),
  );
  process.exit(0);
}

main().catch((e) => {
  console.error(e?.shortMessage ?? e?.message ?? String(e));
  process.exit(1);
});
