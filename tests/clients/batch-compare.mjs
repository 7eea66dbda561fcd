// The same calls through two endpoints (a node, and rpc-proxy in front of
// it), batched by viem (one batch of up to 1000) and by ethers (its own
// batches): prints one JSON line with each library's answers from each
// endpoint, to be compared. Usage: node batch-compare.mjs DIRECT_URL PROXY_URL
import { createPublicClient, http } from "viem";
import { foundry } from "viem/chains";
import { JsonRpcProvider } from "ethers";

const [direct, proxied] = process.argv.slice(2);
const accounts = [
  "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
  "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
  "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
];
const json = (v) => JSON.stringify(v, (_, x) => (typeof x === "bigint" ? x.toString() : x));

async function viem(url) {
  const client = createPublicClient({
    chain: foundry,
    transport: http(url, { batch: { batchSize: 1000, wait: 20 }, retryCount: 0, timeout: 30_000 }),
  });
  const head = await client.getBlockNumber();
  const calls = [];
  for (let i = 0; i < 1000; i++) {
    const block = BigInt(i) % (head + 1n);
    switch (i % 4) {
      case 0: calls.push(client.getBalance({ address: accounts[i % 3], blockNumber: block })); break;
      case 1: calls.push(client.getTransactionCount({ address: accounts[i % 3], blockNumber: block })); break;
      case 2: calls.push(client.getBlock({ blockNumber: block }).then((b) => [b.hash, b.parentHash, b.number])); break;
      default: calls.push(client.getChainId());
    }
  }
  return json(await Promise.all(calls));
}

async function ethers(url) {
  const provider = new JsonRpcProvider(url, undefined, { staticNetwork: true, batchMaxCount: 100 });
  const head = await provider.getBlockNumber();
  const calls = [];
  for (let i = 0; i < 300; i++) {
    const block = i % (head + 1);
    switch (i % 3) {
      case 0: calls.push(provider.getBalance(accounts[i % 3], block)); break;
      case 1: calls.push(provider.getTransactionCount(accounts[i % 3], block)); break;
      default: calls.push(provider.getBlock(block).then((b) => [b.hash, b.parentHash, b.number]));
    }
  }
  const out = json(await Promise.all(calls));
  provider.destroy();
  return out;
}

try {
  const out = {
    viemDirect: await viem(direct),
    viemProxy: await viem(proxied),
    ethersDirect: await ethers(direct),
    ethersProxy: await ethers(proxied),
  };
  // Exit once written: a pipe takes large output asynchronously.
  process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(0));
} catch (e) {
  console.error(e?.shortMessage ?? e?.message ?? String(e));
  process.exit(1);
}
