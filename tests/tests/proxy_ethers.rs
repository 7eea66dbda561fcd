//! A second real client library, ethers (npm), over its WebSocketProvider
//! against the shipped `rpc-proxy` in front of anvil: chain id, block
//! number and balance on the socket, then "block" events (`eth_subscribe`
//! newHeads from the proxy's hub) for every mined block, once, in order.

use std::time::Duration;

use serde_json::{json, Value};
use tests::{call, start_anvil, start_proxy_config, workspace_root};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ethers_websocket_provider_calls_and_block_events_through_the_proxy() {
    let (_anvil, node) = start_anvil();
    let (_proxy, addr) = start_proxy_config(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
[server.websocket]
heads_poll_interval = "200ms"
[backends.anvil]
url = "http://{node}"
"#
    ));
    let child = tokio::process::Command::new("node")
        .arg(workspace_root().join("tests/clients/ethers-ws.mjs"))
        .arg(format!("ws://{addr}"))
        .arg("6")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node (scripts/test.sh installs it): {e}"));
    let miner = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        for burst in ["0x1", "0x2", "0x1", "0x3", "0x1", "0x1", "0x2"] {
            let _ = call(node, "anvil_mine", json!([burst])).await;
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    });
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("ethers finished within 90 s")
        .expect("node output");
    miner.abort();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ethers failed (did `npm install --prefix tests` run?):\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
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
