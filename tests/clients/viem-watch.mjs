// viem's watchBlocks over its webSocket transport (eth_subscribe newHeads)
// against rpc-proxy. Usage: node viem-watch.mjs ws://127.0.0.1:PORT COUNT
// Prints one JSON line: the block numbers seen (at least COUNT, until 1.5 s
// pass without one), in order; exits 1 on error.
import { createPublicClient, webSocket } from "viem";
import { foundry } from "viem/chains";

const [url, count] = [process.argv[2], Number(process.argv[3] ?? 5)];
const client = createPublicClient({
  chain: foundry,
  transport: webSocket(url, { retryCount: 0, timeout: 20_000, reconnect: false }),
});

const seen = [];
const timer = setTimeout(() => {
  console.error(`only ${seen.length} blocks in 60 s: ${JSON.stringify(seen)}`);
  process.exit(1);
}, 60_000);
// Done once COUNT blocks were seen and none came for 1.5 s (viem fetches
// each notified block concurrently: stopping at the COUNT-th callback
// could leave one still being fetched).
let quiet;
const unwatch = client.watchBlocks({
  onBlock(block) {
    seen.push(Number(block.number));
    if (seen.length >= count) {
      clearTimeout(quiet);
      quiet = setTimeout(() => {
        unwatch();
        clearTimeout(timer);
        console.log(JSON.stringify({ numbers: seen }));
        process.exit(0);
      }, 1500);
    }
  },
  onError(e) {
    console.error(e?.shortMessage ?? e?.message ?? String(e));
    process.exit(1);
  },
});
