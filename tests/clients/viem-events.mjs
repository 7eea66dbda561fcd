// viem's watchContractEvent and watchPendingTransactions against rpc-proxy,
// over its webSocket transport (eth_subscribe "logs" and
// "newPendingTransactions") or its http transport (eth_newFilter,
// eth_newPendingTransactionFilter, eth_getFilterChanges).
// Usage: node viem-events.mjs ws://127.0.0.1:PORT|http://127.0.0.1:PORT COUNT
// Deploys a contract whose every call emits Ping(n) with n its calldata,
// calls it COUNT times (n = 1..COUNT), and prints one JSON line: the n of
// each event seen (in order), the hashes of the calls sent and the pending
// transaction hashes seen. Exits 1 on any error.
import {
  createPublicClient,
  createWalletClient,
  http,
  keccak256,
  parseAbiItem,
  toHex,
  webSocket,
} from "viem";
import { foundry } from "viem/chains";

const [url, count] = [process.argv[2], Number(process.argv[3] ?? 10)];
const transport = url.startsWith("ws")
  ? webSocket(url, { retryCount: 0, timeout: 20_000, reconnect: false })
  : http(url, { retryCount: 0, timeout: 20_000 });
const client = createPublicClient({ chain: foundry, transport, pollingInterval: 200 });
const account = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const wallet = createWalletClient({ chain: foundry, transport, account });

// Runtime: MSTORE(0, CALLDATALOAD(0)); LOG1(0, 32, keccak("Ping(uint256)")).
const topic = keccak256(toHex("Ping(uint256)")).slice(2);
const runtime = `6000356000527f${topic}60206000a100`;
const init = `602d600c600039602d6000f3`;
const fail = (e) => {
  console.error(e?.shortMessage ?? e?.message ?? String(e));
  process.exit(1);
};

async function main() {
  const deploy = await wallet.sendTransaction({ data: `0x${init}${runtime}` });
  const { contractAddress } = await client.waitForTransactionReceipt({ hash: deploy });
  const events = [];
  const pending = [];
  const unwatchEvents = client.watchContractEvent({
    address: contractAddress,
    abi: [parseAbiItem("event Ping(uint256 n)")],
    eventName: "Ping",
    onLogs: (logs) => logs.forEach((l) => events.push(Number(l.args.n))),
    onError: fail,
  });
  const unwatchPending = client.watchPendingTransactions({
    onTransactions: (hashes) => pending.push(...hashes),
    onError: fail,
  });
  // Let both watches start (the http transport makes its filters on its
  // first poll).
  await new Promise((r) => setTimeout(r, 1500));
  const sent = [];
  for (let n = 1; n <= count; n++) {
    const hash = await wallet.sendTransaction({
      to: contractAddress,
      data: toHex(n, { size: 32 }),
    });
    await client.waitForTransactionReceipt({ hash });
    sent.push(hash);
  }
  const deadline = Date.now() + 60_000;
  while (
    (events.length < count || !sent.every((h) => pending.includes(h))) &&
    Date.now() < deadline
  ) {
    await new Promise((r) => setTimeout(r, 100));
  }
  unwatchEvents();
  unwatchPending();
  console.log(JSON.stringify({ events, sent, pending }));
  process.exit(0);
}

main().catch(fail);
