//! A second real client library, ethers (npm), over its WebSocketProvider
//! against the shipped `rpc-proxy` in front of anvil: chain id, block
//! number and balance on the socket, then "block" events (`eth_subscribe`
//! newHeads from the proxy's hub) for every mined block, once, in order.

use std::time::Duration;

use serde_json::{json, Value};
use tests::{call, run_node_client, start_anvil, start_proxy_config, start_ws_proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ethers_websocket_provider_calls_and_block_events_through_the_proxy() {
    let (_anvil, node) = start_anvil();
    let (_proxy, addr) = start_ws_proxy(node, "");
    calls_and_block_events(node, addr).await;
}

/// The same with the proxy reaching anvil over its WebSocket (`ws://`):
/// calls on the member's socket, its newHeads waking the hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ethers_websocket_provider_through_a_proxy_with_a_websocket_member() {
    let (_anvil, node) = start_anvil();
    let (_proxy, addr) = start_proxy_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.websocket]\nheads_poll_interval = \"1s\"\n\
         [backends.anvil]\nurl = \"ws://{node}\"\n"
    ));
    calls_and_block_events(node, addr).await;
}

async fn calls_and_block_events(node: std::net::SocketAddr, addr: std::net::SocketAddr) {
    let miner = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        for burst in ["0x1", "0x2", "0x1", "0x3", "0x1", "0x1", "0x2"] {
            let _ = call(node, "anvil_mine", json!([burst])).await;
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    });
    let args = [format!("ws://{addr}"), "6".to_owned()];
    let (ok, stdout, stderr) =
        run_node_client("ethers-ws.mjs", &args, Duration::from_secs(90)).await;
    miner.abort();
    assert!(
        ok,
        "ethers failed (did `npm install --prefix tests` run?):\n{stderr}\n{stdout}"
    );
    let seen: Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert_eq!(seen["chainId"], 31337, "{seen}");
    assert_eq!(seen["balance"], "10000000000000000000000", "{seen}");
    let blocks: Vec<u64> = seen["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let first = blocks[0];
    assert_eq!(
        blocks,
        (first..first + 6).collect::<Vec<_>>(),
        "consecutive, none twice: {seen}"
    );
}
