//! Chain truth against real anvil nodes behind the shipped binary with the
//! cache on: reorganisations (`anvil_reorg`, `evm_revert`) made on the node
//! behind the proxy's back, and viem's read-your-writes loop on chains that
//! mine every second.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::{
    call, metrics_addr, node_client, scrape, start_anvil, start_anvil_with,
    start_head_tracked_proxy, Process,
};

/// The binary over `nodes` (a, b, ...), head-tracked, cache on with a long
/// tip TTL (so nothing expires by itself during a test).
fn proxy_over(nodes: &[SocketAddr]) -> (Process, SocketAddr) {
    let urls: Vec<String> = nodes.iter().map(|n| format!("http://{n}")).collect();
    start_head_tracked_proxy(
        &urls,
        "[server]\nlisten = \"127.0.0.1:0\"\ncache_header = true\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n[cache]\nenabled = true\ntip_ttl = \"60s\"",
        "",
        "probe_interval = \"200ms\"\nmax_probes_per_second = 10.0\nfinality_interval = \"300ms\"",
        "",
    )
}

async fn rpc(addr: SocketAddr, method: &str, params: Value) -> Value {
    let (status, v) = call(addr, method, params).await;
    assert_eq!(status, 200, "{method}: {v}");
    assert!(v.get("error").is_none(), "{method}: {v}");
    v["result"].clone()
}

async fn hash_at(addr: SocketAddr, n: u64) -> String {
    let block = rpc(
        addr,
        "eth_getBlockByNumber",
        json!([format!("{n:#x}"), false]),
    )
    .await;
    block["hash"].as_str().expect("hash").to_owned()
}

/// Waits (up to 10 s) until the proxy has counted `n` reorganisations.
async fn until_reorgs(proxy: &Process, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = scrape(metrics_addr(proxy)).await;
        let seen = metrics
            .lines()
            .find_map(|l| l.strip_prefix("rpc_chain_reorgs_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if seen >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy never saw {n} reorganisation(s):\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_reorg_behind_the_proxy_s_back_replaces_cached_blocks() {
    let (_anvil, node) = start_anvil();
    rpc(node, "anvil_mine", json!(["0x80"])).await;
    let (proxy, addr) = proxy_over(&[node]);
    // Cached through the proxy: a recent block (tip TTL) and the head.
    let before = hash_at(addr, 0x7e).await;
    assert_eq!(hash_at(addr, 0x7e).await, before);
    // The node replaces its last three blocks (same height), directly.
    rpc(node, "anvil_reorg", json!([3, []])).await;
    let replaced = hash_at(node, 0x7e).await;
    assert_ne!(replaced, before, "anvil replaced the block");
    until_reorgs(&proxy, 1).await;
    // Once the proxy has seen the new chain, the old block is gone.
    for _ in 0..5 {
        assert_eq!(hash_at(addr, 0x7e).await, replaced);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evm_revert_below_finality_drops_settled_answers() {
    let (_anvil, node) = start_anvil();
    let snapshot = rpc(node, "evm_snapshot", json!([])).await;
    rpc(node, "anvil_mine", json!(["0xc8"])).await; // 200 blocks: finalized 136
    let (proxy, addr) = proxy_over(&[node]);
    // Block 32 is finalized: cached for good.
    let deadline = Instant::now() + Duration::from_secs(10);
    let old = loop {
        let h = hash_at(addr, 0x20).await;
        let (_, headers, _) = tests::post(
            addr,
            tests::body("eth_getBlockByNumber", json!(["0x20", false])),
        )
        .await;
        if headers["x-cache"] == "HIT" {
            break h;
        }
        assert!(Instant::now() < deadline, "block 32 never cached");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The node goes back to genesis and builds another chain (other
    // timestamps, so other hashes).
    assert_eq!(
        rpc(node, "evm_revert", json!([snapshot])).await,
        json!(true)
    );
    rpc(node, "evm_setNextBlockTimestamp", json!([4_000_000_000u64])).await;
    rpc(node, "anvil_mine", json!(["0x28"])).await;
    let new = hash_at(node, 0x20).await;
    assert_ne!(new, old);
    until_reorgs(&proxy, 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while hash_at(addr, 0x20).await != new {
        assert!(
            Instant::now() < deadline,
            "the proxy still serves the reverted block 32"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viem_reads_its_writes_through_the_cache_on_chains_mining_every_second() {
    let nodes = [
        start_anvil_with(&["--block-time", "1"]),
        start_anvil_with(&["--block-time", "1"]),
    ];
    let (_proxy, addr) = proxy_over(&[nodes[0].1, nodes[1].1]);
    let seen = node_client(
        "read-your-writes.mjs",
        &[format!("http://{addr}"), "50".to_owned()],
        Duration::from_secs(240),
    )
    .await;
    assert_eq!(seen["rounds"], 50);
    assert_eq!(
        seen["stale"],
        json!([]),
        "stale reads after a receipt: {seen}"
    );
}
