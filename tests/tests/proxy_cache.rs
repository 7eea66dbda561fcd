//! The shipped `rpc-proxy --cache ethereum` in front of a real (in-repo)
//! HTTP upstream that counts the calls it receives.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};
use tests::{call, post, start_proxy, FaultUpstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_identical_calls_reach_the_upstream_once() {
    // Every answer takes 1 s, so the 100 calls are in flight together (any
    // straggler would find the answer cached: still one upstream call).
    let upstream = FaultUpstream::start_delayed(Duration::from_secs(1)).await;
    let (_proxy, addr) = start_proxy(&["--upstream", &upstream.url(), "--cache", "ethereum"]);

    let calls: Vec<_> = (0..100u64)
        .map(|id| {
            tokio::spawn(async move {
                let body = json!({"jsonrpc": "2.0", "id": id, "method": "eth_getBalance",
                    "params": ["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "latest"]});
                let (status, _, text) = post(addr, body.to_string()).await;
                (id, status, text)
            })
        })
        .collect();
    let mut results = Vec::new();
    for c in calls {
        let (id, status, text) = c.await.expect("client");
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["id"], id, "each caller's own id: {text}");
        results.push(v["result"].clone());
    }
    assert!(
        results.windows(2).all(|w| w[0] == w[1]),
        "one shared answer"
    );
    assert_eq!(results[0]["method"], "eth_getBalance");
    assert_eq!(
        upstream.calls.load(Ordering::SeqCst),
        1,
        "coalesced into one upstream call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_forwards_only_its_uncached_calls() {
    let upstream = FaultUpstream::start().await;
    let (_proxy, addr) = start_proxy(&[
        "--upstream",
        &upstream.url(),
        "--cache",
        "ethereum",
        "--cache-header",
    ]);
    let hash = format!("0x{}", "ab".repeat(32));

    // Warm two entries.
    call(addr, "eth_chainId", json!([])).await;
    call(addr, "eth_getBlockByHash", json!([hash, false])).await;
    assert_eq!(upstream.items.load(Ordering::SeqCst), 2);

    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": 2, "method": "eth_getBlockByHash", "params": [hash.to_uppercase().replace("0X", "0x"), false]},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_getCode", "params": ["0x0000000000000000000000000000000000000001", "pending"]},
        {"jsonrpc": "2.0", "id": 4, "method": "eth_sendRawTransaction", "params": ["0x00"]},
    ]);
    let (status, _, text) = post(addr, batch.to_string()).await;
    assert_eq!(status, 200);
    let answers: Vec<Value> = serde_json::from_str(&text).expect("array");
    let ids: Vec<i64> = answers
        .iter()
        .map(|a| a["id"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    assert_eq!(answers[0]["result"]["method"], "eth_chainId");
    assert_eq!(answers[1]["result"]["method"], "eth_getBlockByHash");
    assert_eq!(
        upstream.items.load(Ordering::SeqCst),
        4,
        "only the `pending` read and the broadcast went upstream"
    );
    // Together: one upstream batch after the two warming calls.
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 3);

    // Writes are never cached.
    call(addr, "eth_sendRawTransaction", json!(["0x00"])).await;
    assert_eq!(upstream.items.load(Ordering::SeqCst), 5);

    // `--cache-header` says what happened to a single call.
    let x_cache = |headers: &http::HeaderMap| {
        headers
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (_, headers, _) = post(addr, r#"{"jsonrpc":"2.0","id":9,"method":"eth_chainId"}"#).await;
    assert_eq!(x_cache(&headers).as_deref(), Some("HIT"));
    let (_, headers, _) = post(addr, r#"{"jsonrpc":"2.0","id":9,"method":"eth_gasPrice"}"#).await;
    assert_eq!(x_cache(&headers).as_deref(), Some("MISS"));
    let (_, headers, _) = post(
        addr,
        r#"{"jsonrpc":"2.0","id":9,"method":"eth_sendRawTransaction","params":["0x01"]}"#,
    )
    .await;
    assert_eq!(x_cache(&headers).as_deref(), Some("BYPASS"));
}
