//! A real Ethereum client library (viem, from npm) against the shipped
//! `rpc-proxy` (cache, retry and failover on) in front of a real anvil node:
//! chain id, block number, balances and two signed transfers in a row.

use std::time::Duration;

use serde_json::{json, Value};
use tests::{
    call, run_node_client, start_anvil, start_proxy_config, start_ws_proxy, workspace_root,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viem_reads_and_sends_transactions_through_the_proxy() {
    viem_through_the_proxy("http").await;
}

/// The same over viem's `webSocket()` transport: every call on one socket
/// through the same stack (the upgrade on the proxy's own listener).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viem_over_websocket_reads_and_sends_transactions_through_the_proxy() {
    viem_through_the_proxy("ws").await;
}

async fn viem_through_the_proxy(scheme: &str) {
    let (_anvil, node) = start_anvil();
    let (_proxy, addr) = start_proxy_config(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
[backends.anvil]
url = "http://{node}"
[cache]
enabled = true
[methods]
deny = ["eth_sendTransaction", "eth_sign*"]
"#
    ));
    let script = workspace_root().join("tests/clients/viem-check.mjs");
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .arg(format!("{scheme}://{addr}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node (install Node.js; scripts/test.sh does): {e}"));
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let read = |mut r: Box<dyn tokio::io::AsyncRead + Unpin + Send>| async move {
        let mut s = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut r, &mut s).await;
        s
    };
    let (out, err, status) = tokio::time::timeout(Duration::from_secs(90), async {
        let (out, err) = tokio::join!(read(Box::new(stdout)), read(Box::new(stderr)));
        (out, err, child.wait().await)
    })
    .await
    .expect("viem finished within 90 s");
    let status = status.expect("node exit status");
    assert!(
        status.success(),
        "viem failed (did `npm install --prefix tests` run?):\n{err}\n{out}"
    );
    let seen: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));

    assert_eq!(seen["chainId"], 31337, "{seen}");
    assert_eq!(seen["senderBalance"], "10000000000000000000000", "{seen}");
    assert_eq!(seen["recipientGain"], "3000000000000000000", "{seen}");
    let receipts = seen["receipts"].as_array().expect("receipts");
    assert_eq!(receipts.len(), 2);
    for r in receipts {
        assert_eq!(r["status"], "success", "{seen}");
    }
    assert!(
        seen["blockAfter"].as_u64() >= receipts[1]["block"].as_u64(),
        "the block number moved with the chain: {seen}"
    );

    // The node agrees: the transfers happened, once each.
    let (_, v) = call(
        node,
        "eth_getBalance",
        json!(["0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "latest"]),
    )
    .await;
    assert_eq!(v["result"], "0x21e4382edd5a86c0000", "10003 ETH: {v}");
    let (_, v) = call(
        node,
        "eth_getTransactionCount",
        json!(["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "latest"]),
    )
    .await;
    assert_eq!(v["result"], "0x2", "{v}");
}

/// viem's `watchBlocks` over WebSocket (`eth_subscribe("newHeads")`,
/// served by the proxy's hub polling anvil over HTTP): every mined block,
/// once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viem_watch_blocks_over_websocket_sees_every_block_once() {
    let (_anvil, node) = start_anvil();
    let (_proxy, addr) = start_ws_proxy(node, "");
    // Mine while it watches: singles and bursts.
    let miner = tokio::spawn(async move {
        for burst in ["0x1", "0x2", "0x1", "0x3", "0x1", "0x2", "0x1", "0x2"] {
            tokio::time::sleep(Duration::from_millis(700)).await;
            let _ = call(node, "anvil_mine", json!([burst])).await;
        }
    });
    let args = [format!("ws://{addr}"), "8".to_owned()];
    let (ok, stdout, stderr) =
        run_node_client("viem-watch.mjs", &args, Duration::from_secs(90)).await;
    miner.abort();
    assert!(ok, "viem failed:\n{stderr}\n{stdout}");
    let seen: Value = serde_json::from_str(stdout.trim()).expect("JSON");
    let mut numbers: Vec<u64> = seen["numbers"]
        .as_array()
        .expect("numbers")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    // viem fetches each notified block (`getBlock`) before calling onBlock,
    // concurrently, so two heads notified together may reach onBlock in
    // either order; the proxy's order is checked by the raw-client tests.
    numbers.sort_unstable();
    let (first, last) = (numbers[0], numbers[numbers.len() - 1]);
    assert!(numbers.len() >= 8, "{numbers:?}");
    assert_eq!(
        numbers,
        (first..=last).collect::<Vec<_>>(),
        "every block, none twice"
    );
}

/// viem's `watchContractEvent` and `watchPendingTransactions` through the
/// proxy, `count` contract calls: every event once, in order, and every
/// call's hash among the pending transactions, none twice.
async fn events_and_pending(client_url: String, proxy: &tests::Process) {
    let count = 10;
    let args = [client_url, count.to_string()];
    let (ok, stdout, stderr) =
        run_node_client("viem-events.mjs", &args, Duration::from_secs(120)).await;
    assert!(
        ok,
        "viem failed:\n{stderr}\n{stdout}\n{}",
        proxy.output_text()
    );
    let seen: Value = serde_json::from_str(stdout.trim()).expect("JSON");
    let events: Vec<u64> = seen["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(events, (1..=count).collect::<Vec<_>>(), "{seen}");
    let pending: Vec<&str> = seen["pending"]
        .as_array()
        .expect("pending")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let distinct: std::collections::BTreeSet<&str> = pending.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        pending.len(),
        "a pending hash twice: {seen}"
    );
    for sent in seen["sent"].as_array().expect("sent") {
        assert!(
            distinct.contains(sent.as_str().expect("hash")),
            "{sent} never announced pending: {seen}"
        );
    }
}

/// Over WebSocket, the proxy's hub polling anvil over HTTP (logs by block
/// hash, a pending-transaction filter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viem_contract_events_and_pending_transactions_over_websocket_from_an_http_node() {
    let (_anvil, node) = start_anvil();
    let (proxy, addr) = start_ws_proxy(node, "");
    events_and_pending(format!("ws://{addr}"), &proxy).await;
}

/// Over WebSocket, the member reached over anvil's own WebSocket (its
/// newHeads and newPendingTransactions pushed to the hub).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viem_contract_events_and_pending_transactions_over_websocket_from_a_websocket_node() {
    let (_anvil, node) = start_anvil();
    let (proxy, addr) = tests::start_proxy_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.websocket]\nheads_poll_interval = \"200ms\"\n\
         [backends.anvil]\nurl = \"ws://{node}\"\n"
    ));
    events_and_pending(format!("ws://{addr}"), &proxy).await;
}

/// Over HTTP: viem's filters (`eth_newFilter`, pending-transaction filter,
/// `eth_getFilterChanges`) kept on the node that made them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viem_contract_events_and_pending_transactions_over_http_filters() {
    let (_anvil, node) = start_anvil();
    let (proxy, addr) = start_ws_proxy(node, "");
    events_and_pending(format!("http://{addr}"), &proxy).await;
}
