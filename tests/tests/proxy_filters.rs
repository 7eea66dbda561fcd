//! Filters through the shipped `rpc-proxy` over two real anvil nodes under
//! round-robin: every poll of a filter reaches the node that made it (no
//! "filter not found"), and what it reports is that node's chain.

use serde_json::{json, Value};
use tests::{call, start_anvil, start_proxy_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_filters_are_polled_on_their_own_node_under_round_robin() {
    let (_a, node_a) = start_anvil();
    let (_b, node_b) = start_anvil();
    let (_proxy, addr) = start_proxy_config(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
[backends.a]
url = "http://{node_a}"
[backends.b]
url = "http://{node_b}"
[groups.main]
members = ["a", "b"]
strategy = "round-robin"
"#
    ));
    // Four filters: round-robin makes them on both nodes (which number
    // their filters alike).
    let mut filters = Vec::new();
    for _ in 0..4 {
        let (_, v) = call(addr, "eth_newBlockFilter", json!([])).await;
        filters.push(v["result"].as_str().expect("a filter id").to_owned());
    }
    let distinct: std::collections::BTreeSet<&String> = filters.iter().collect();
    assert_eq!(distinct.len(), 4, "{filters:?}");
    // Each node mines its own blocks: 3 on a, 5 on b (two anvils started
    // together mine identical blocks, so the count tells them apart).
    for (node, n) in [(node_a, "0x3"), (node_b, "0x5")] {
        let (_, v) = call(node, "anvil_mine", json!([n])).await;
        assert!(v.get("error").is_none(), "{v}");
    }
    let mut owners = Vec::new();
    for f in &filters {
        let mut hashes = Vec::new();
        // Ten polls each (the first has the three new blocks).
        for _ in 0..10 {
            let (status, v) = call(addr, "eth_getFilterChanges", json!([f])).await;
            assert_eq!(status, 200, "{v}");
            let got = v["result"]
                .as_array()
                .unwrap_or_else(|| panic!("not found or failed: {v}"));
            hashes.extend(got.iter().filter_map(Value::as_str).map(str::to_owned));
        }
        // Each new block of one node, once: which node's chain it follows.
        let (owner, node) = match hashes.len() {
            3 => ("a", node_a),
            5 => ("b", node_b),
            n => panic!("{n} blocks: not one node's new blocks, once each: {hashes:?}"),
        };
        for h in &hashes {
            let (_, v) = call(node, "eth_getBlockByHash", json!([h, false])).await;
            assert!(!v["result"].is_null(), "{h} is not {owner}'s block");
        }
        owners.push(owner);
        let (_, v) = call(addr, "eth_uninstallFilter", json!([f])).await;
        assert_eq!(v["result"], true, "{v}");
        let (_, v) = call(addr, "eth_getFilterChanges", json!([f])).await;
        assert_eq!(v["error"]["code"], -32000, "gone after uninstall: {v}");
    }
    owners.sort_unstable();
    owners.dedup();
    assert_eq!(owners, ["a", "b"], "filters were made on both nodes");
}
