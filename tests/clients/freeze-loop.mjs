// A viem client calling through rpc-proxy for SECONDS seconds with viem's
// default 10 s timeout and no retries of its own, while the test freezes a
// node behind the proxy. Reads the balance of a dev account and the block
// number, one call after the other.
// Usage: node freeze-loop.mjs http://127.0.0.1:PORT SECONDS
// Prints one JSON line {calls, errors: [...], slowest_ms, slow: [[t_ms, ms], ...]}.
import { createPublicClient, http } from "viem";
import { foundry } from "viem/chains";

const url = process.argv[2];
const seconds = Number(process.argv[3] ?? 10);
const client = createPublicClient({
  chain: foundry,
  transport: http(url, { retryCount: 0, timeout: 10_000 }),
});
const account = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

async function main() {
  const start = Date.now();
  const errors = [];
  const slow = [];
  let calls = 0;
  let slowest = 0;
  while (Date.now() - start < seconds * 1000) {
    const t = Date.now();
    try {
      if (calls % 2 === 0) {
        await client.getBalance({ address: account });
      } else {
        await client.getBlockNumber({ cacheTime: 0 });
      }
    } catch (e) {
      errors.push({ at_ms: t - start, error: e?.shortMessage ?? e?.message ?? String(e) });
    }
    const took = Date.now() - t;
    slowest = Math.max(slowest, took);
    if (took > 500) slow.push([t - start, took]);
    calls++;
    await new Promise((r) => setTimeout(r, 20));
  }
  console.log(JSON.stringify({ calls, errors, slowest_ms: slowest, slow }));
}

main().catch((e) => {
  console.error(e?.shortMessage ?? e?.message ?? String(e));
  process.exit(1);
});
