//! A bounded concurrent load through the shipped binary, mixing healthy calls,
//! backend faults and invalid input: every call gets exactly one answer, under
//! its own id, with the documented code.

use std::collections::HashMap;

use serde_json::{json, Value};
use tests::{post, start_proxy, FaultUpstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_gets_exactly_one_answer_under_load() {
    let upstream = FaultUpstream::start().await;
    // Each call alone upstream: the faults are per call (a batch's HTTP
    // status is one for all; see proxy_batching.rs).
    let (proxy, addr) = start_proxy(&[
        "--upstream",
        &upstream.url(),
        "--timeout",
        "2",
        "--upstream-batch",
        "1",
    ]);

    // 64 clients x 25 batches of 4 calls = 6400 calls, bounded in count.
    let clients: Vec<_> = (0..64)
        .map(|client| {
            tokio::spawn(async move {
                let mut seen = HashMap::new();
                for round in 0..25 {
                    let base = (client * 1000 + round * 4) as u64;
                    let batch = json!([
                        {"jsonrpc": "2.0", "id": base, "method": "eth_blockNumber"},
                        {"jsonrpc": "2.0", "id": base + 1, "method": "fault_status", "params": [502]},
                        {"jsonrpc": "2.0", "id": base + 2, "method": "fault_garbage"},
                        {"jsonrpc": "2.0", "id": base + 3, "method": 7},
                    ]);
                    let (status, _, text) = post(addr, batch.to_string()).await;
                    assert_eq!(status, 200, "{text}");
                    let answers: Vec<Value> = serde_json::from_str(&text).expect("a JSON array");
                    assert_eq!(answers.len(), 4, "{text}");
                    for (i, a) in answers.iter().enumerate() {
                        let id = a["id"].as_u64().expect("own id");
                        assert_eq!(id, base + i as u64, "in request order");
                        let outcome = match (&a["result"], a["error"]["code"].as_i64()) {
                            (r, None) if r["method"] == "eth_blockNumber" => "ok",
                            (_, Some(-32011)) => "upstream-failed",
                            (_, Some(-32600)) => "invalid",
                            other => panic!("unexpected answer {other:?}: {a}"),
                        };
                        assert!(seen.insert(id, outcome).is_none(), "id {id} answered twice");
                    }
                }
                seen
            })
        })
        .collect();

    let mut totals: HashMap<&str, usize> = HashMap::new();
    for client in clients {
        for (_, outcome) in client.await.expect("client task") {
            *totals.entry(outcome).or_default() += 1;
        }
    }
    assert_eq!(totals.get("ok"), Some(&1600));
    assert_eq!(totals.get("upstream-failed"), Some(&3200));
    assert_eq!(totals.get("invalid"), Some(&1600));
    // The invalid calls never reached the upstream; the rest did, once each.
    assert_eq!(
        upstream.calls.load(std::sync::atomic::Ordering::SeqCst),
        4800
    );
    assert!(!proxy.output_text().contains("panicked"));
}
