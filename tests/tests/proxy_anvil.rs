//! The shipped `rpc-proxy` binary in front of a real Ethereum node (anvil from
//! the npm package `@foundry-rs/anvil`, installed by `npm ci --prefix tests`).

use serde_json::{json, Value};
use tests::{call, post, start_anvil, start_proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_writes_and_errors_through_the_proxy() {
    let (_anvil, node) = start_anvil();
    let (_proxy, addr) = start_proxy(&["--upstream", &format!("http://{node}"), "--name", "anvil"]);

    let (s, body) = call(addr, "eth_chainId", json!([])).await;
    assert_eq!((s.as_u16(), body["result"].as_str()), (200, Some("0x7a69")));

    // A real write: anvil's dev accounts are unlocked.
    let (_, accounts) = call(addr, "eth_accounts", json!([])).await;
    let from = accounts["result"][0]
        .as_str()
        .expect("dev account")
        .to_owned();
    let to = accounts["result"][1]
        .as_str()
        .expect("dev account")
        .to_owned();
    let (s, sent) = call(
        addr,
        "eth_sendTransaction",
        json!([{"from": from, "to": to, "value": "0xde0b6b3a7640000"}]),
    )
    .await;
    assert_eq!(s, 200, "{sent}");
    let hash = sent["result"].as_str().expect("tx hash").to_owned();
    // Anvil mines asynchronously: the receipt can lag the hash by a moment,
    // so wait for it (bounded) as any client would.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let receipt = loop {
        let (_, receipt) = call(addr, "eth_getTransactionReceipt", json!([hash])).await;
        if !receipt["result"].is_null() || tokio::time::Instant::now() >= deadline {
            break receipt;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(receipt["result"]["status"], "0x1", "{receipt}");
    // 10000 ETH at genesis plus the 1 ETH sent.
    let (_, balance) = call(addr, "eth_getBalance", json!([to, "latest"])).await;
    assert_eq!(balance["result"], "0x21e27c1806e59a40000", "{balance}");

    // The node's own JSON-RPC errors come back unchanged with HTTP 200.
    let (s, body) = call(addr, "eth_getBalance", json!(["not-an-address", "latest"])).await;
    assert_eq!(s, 200);
    assert!(body["error"]["code"].is_i64(), "{body}");
    let (s, body) = call(addr, "no_such_method", json!([])).await;
    assert_eq!(
        (s.as_u16(), body["error"]["code"].as_i64()),
        (200, Some(-32601))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_of_real_blocks_with_every_id_type() {
    let (_anvil, node) = start_anvil();
    let (_proxy, addr) = start_proxy(&["--upstream", &format!("http://{node}")]);

    // Real-sized data: 100 blocks, each with transactions, fetched in full.
    let (_, accounts) = call(addr, "eth_accounts", json!([])).await;
    let accounts: Vec<String> = accounts["result"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|a| a.as_str().unwrap_or("").to_owned())
        .collect();
    for round in 0..3 {
        let batch: Vec<Value> = accounts.iter().enumerate().map(|(i, from)| {
            json!({"jsonrpc": "2.0", "id": i, "method": "eth_sendTransaction",
                   "params": [{"from": from, "to": accounts[(i + 1) % accounts.len()], "value": format!("0x{:x}", 1000 + round)}]})
        }).collect();
        let (s, _, text) = post(addr, Value::Array(batch).to_string()).await;
        assert_eq!(s, 200, "{text}");
        assert!(!text.contains("\"error\""), "{text}");
    }
    let (_, _) = call(addr, "anvil_mine", json!(["0x60"])).await;

    let ids: Vec<Value> = (0..100)
        .map(|i| match i % 5 {
            0 => json!(i),
            1 => json!(format!("str-{i}")),
            2 => json!(-(i as i64)),
            3 => Value::Null,
            _ => json!(i as f64 + 0.5),
        })
        .collect();
    let batch: Vec<Value> = ids.iter().enumerate().map(|(n, id)| {
        json!({"jsonrpc": "2.0", "id": id, "method": "eth_getBlockByNumber", "params": [format!("0x{:x}", n % 100), true]})
    }).collect();
    let (s, _, text) = post(addr, Value::Array(batch).to_string()).await;
    assert_eq!(s, 200);
    let answers: Vec<Value> = serde_json::from_str(&text).expect("json array");
    assert_eq!(answers.len(), 100);
    for (n, (answer, id)) in answers.iter().zip(&ids).enumerate() {
        assert_eq!(
            &answer["id"], id,
            "answer {n} in request order under its own id"
        );
        assert_eq!(answer["result"]["number"], format!("0x{:x}", n), "{answer}");
    }
    let with_txs = answers
        .iter()
        .filter(|a| {
            a["result"]["transactions"]
                .as_array()
                .is_some_and(|t| !t.is_empty())
        })
        .count();
    assert!(with_txs >= 1, "some blocks carry full transactions");
    assert!(
        text.len() > 100_000,
        "real-sized answer: {} bytes",
        text.len()
    );
}
