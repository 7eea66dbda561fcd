//! Upstream batching and split `eth_getLogs` against real anvil through the
//! shipped `rpc-proxy`: viem's 1 000-call batch and ethers' batches answer
//! exactly as anvil does directly, and logs over 5 000 blocks, split into
//! chunks, are the direct answer byte for byte.

use std::time::Duration;

use serde_json::{json, Value};
use tests::{call, deploy_logger, post, run_node_client, start_anvil, start_proxy_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viem_and_ethers_batches_answer_as_the_node_does() {
    let (_anvil, node) = start_anvil();
    // Some history: transfers between the accounts, 60 blocks.
    let from = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
    for i in 0..20u64 {
        let (_, v) = call(
            node,
            "eth_sendTransaction",
            json!([{"from": from, "to": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "value": format!("{:#x}", 1000 + i)}]),
        )
        .await;
        assert!(v.get("error").is_none(), "{v}");
    }
    let (_, v) = call(node, "anvil_mine", json!(["0x28"])).await;
    assert!(v.get("error").is_none(), "{v}");
    let (_proxy, addr) = start_proxy_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[backends.anvil]\nurl = \"http://{node}\"\n"
    ));
    let args = [format!("http://{node}"), format!("http://{addr}")];
    let (ok, stdout, stderr) =
        run_node_client("batch-compare.mjs", &args, Duration::from_secs(120)).await;
    assert!(ok, "clients failed:\n{stderr}\n{stdout}");
    let out: Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert_eq!(out["viemProxy"], out["viemDirect"]);
    assert_eq!(out["ethersProxy"], out["ethersDirect"]);
    let viem: Value = serde_json::from_str(out["viemProxy"].as_str().expect("s")).expect("json");
    assert_eq!(viem.as_array().map(Vec::len), Some(1000));
}

/// The raw `result` of an `eth_getLogs` answer.
fn raw_result(text: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        result: &'a serde_json::value::RawValue,
    }
    serde_json::from_str::<Answer<'_>>(text)
        .unwrap_or_else(|e| panic!("{e}: {}", &text[..text.len().min(300)]))
        .result
        .get()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_over_5000_blocks_split_into_chunks_equal_the_direct_answer() {
    let (_anvil, node) = start_anvil();
    let contract = deploy_logger(node).await;
    let from = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
    // 50 logs spread over 5 000 blocks: a call, then 99 empty blocks.
    for _ in 0..50 {
        let (_, v) = call(
            node,
            "eth_sendTransaction",
            json!([{"from": from, "to": contract}]),
        )
        .await;
        assert!(v.get("error").is_none(), "{v}");
        let (_, v) = call(node, "anvil_mine", json!(["0x63"])).await;
        assert!(v.get("error").is_none(), "{v}");
    }
    let (_proxy, addr) = start_proxy_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[backends.anvil]\nurl = \"http://{node}\"\n\
         [groups.main]\nmembers = [\"anvil\"]\n[groups.main.get_logs]\nchunk = 500\nconcurrency = 4\n"
    ));
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs",
        "params": [{"address": contract, "fromBlock": "0x0", "toBlock": "latest"}]})
    .to_string();
    let (_, _, direct) = post(node, body.clone()).await;
    let (status, _, proxied) = post(addr, body).await;
    assert_eq!(status, 200, "{proxied}");
    let (direct, proxied) = (raw_result(&direct), raw_result(&proxied));
    let logs: Vec<Value> = serde_json::from_str(&direct).expect("logs");
    assert_eq!(logs.len(), 50);
    assert_eq!(proxied, direct, "byte for byte");
}
