//! Chain truth, against the shipped binary: members of a head-tracked group
//! that lie about their head, go backwards, fork or lag in finality (the
//! in-repo scripted upstream: faults a real node cannot produce on demand),
//! with the cache on.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::{
    call, metrics_addr, scrape, served_by, start_head_tracked_proxy, Connection, FaultUpstream,
    Process, ScriptedChain,
};

/// The binary in front of `nodes` (named a, b, c, ... in priority order),
/// head-tracked with fast probes, cache and `extra` config. `group` may
/// start with `probes N` (the head probes per second; default 10).
async fn proxy_over(nodes: &[&FaultUpstream], group: &str, extra: &str) -> (Process, SocketAddr) {
    let (probes, group) = match group.strip_prefix("probes ") {
        Some(rest) => rest.split_once('\n').unwrap_or((rest, "")),
        None => ("10.0", group),
    };
    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    start_head_tracked_proxy(
        &urls,
        "[server]\nlisten = \"127.0.0.1:0\"\nserved_by_header = true\ncache_header = true\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n[cache]\nenabled = true",
        group,
        &format!(
            "max_lag = 3\nprobe_interval = \"200ms\"\nmax_probes_per_second = {probes}\n\
             finality_interval = \"300ms\""
        ),
        extra,
    )
}

/// Waits (up to 10 s) until `/metrics` contains `line`.
async fn until_metric(proxy: &Process, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = scrape(metrics_addr(proxy)).await;
        if metrics.contains(line) {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "never saw `{line}` in:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn hex(v: &Value) -> u64 {
    let s = v["result"]
        .as_str()
        .unwrap_or_else(|| panic!("no result: {v}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_liar_takes_no_traffic_and_poisons_neither_heads_nor_cache() {
    let (honest, liar) = (ScriptedChain::new(0x100), ScriptedChain::new(0x100));
    let a = FaultUpstream::start_chain(honest.clone()).await;
    let b = FaultUpstream::start_chain(liar.clone()).await;
    // Round robin: without head checks, half the calls would go to the liar.
    let (proxy, addr) = proxy_over(&[&a, &b], "strategy = \"round-robin\"", "").await;
    until_metric(&proxy, r#"rpc_backend_head{backend="b"} 256"#).await;

    // The liar answers with a huge head (a probe or a client sees it).
    liar.set_head(0xffff_ffff);
    until_metric(
        &proxy,
        r#"rpc_backend_suspect{backend="b",reason="ahead"} 1"#,
    )
    .await;
    let metrics = scrape(metrics_addr(&proxy)).await;
    assert!(
        metrics.contains(r#"rpc_backend_lagging{backend="a"} 0"#),
        "the honest member stays in rotation:\n{metrics}"
    );
    for _ in 0..20 {
        // Never cached: each call reaches a member.
        let (by, _) = served_by(addr, "net_peerCount", json!([])).await;
        assert_eq!(by, "a");
        let (_, v) = served_by(addr, "eth_blockNumber", json!([])).await;
        assert_eq!(hex(&v), 0x100, "{v}");
    }
    // The cache did not take the lie for the head: a block one below the
    // real head is kept for the tip TTL only, not for good.
    let balance = json!(["0x0000000000000000000000000000000000000001", "0xff"]);
    let (_, headers, _) = tests::post(addr, tests::body("eth_getBalance", balance.clone())).await;
    assert_eq!(headers["x-cache"], "MISS");
    let (_, headers, _) = tests::post(addr, tests::body("eth_getBalance", balance.clone())).await;
    assert_eq!(headers["x-cache"], "HIT");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, headers, _) = tests::post(addr, tests::body("eth_getBalance", balance)).await;
    assert_eq!(headers["x-cache"], "MISS", "kept past the tip TTL");

    // Back to the truth: believed again, its gauge shows its current head.
    liar.set_head(0x101);
    honest.set_head(0x101);
    until_metric(&proxy, r#"rpc_backend_head{backend="b"} 257"#).await;
    until_metric(
        &proxy,
        r#"rpc_backend_suspect{backend="b",reason="ahead"} 0"#,
    )
    .await;
    let mut by_b = 0;
    for _ in 0..10 {
        by_b += usize::from(served_by(addr, "net_peerCount", json!([])).await.0 == "b");
    }
    assert!(by_b > 0, "back in rotation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_restored_backwards_leaves_rotation() {
    let (good, old) = (ScriptedChain::new(0x105), ScriptedChain::new(0x105));
    let a = FaultUpstream::start_chain(good.clone()).await;
    let b = FaultUpstream::start_chain(old.clone()).await;
    let (proxy, addr) = proxy_over(&[&a, &b], "strategy = \"round-robin\"", "").await;
    until_metric(&proxy, r#"rpc_backend_head{backend="b"} 261"#).await;
    // b is restored from an old snapshot.
    old.set_head(0x10);
    until_metric(&proxy, r#"rpc_backend_lagging{backend="b"} 1"#).await;
    for _ in 0..10 {
        assert_eq!(served_by(addr, "net_peerCount", json!([])).await.0, "a");
    }
    let (by, v) = served_by(addr, "eth_getBlockByNumber", json!(["0x104", false])).await;
    assert_eq!(by, "a");
    assert_eq!(v["result"]["number"], "0x104", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_never_sees_the_chain_go_backwards_through_a_rollback() {
    let (x, y) = (ScriptedChain::new(0x105), ScriptedChain::new(0x105));
    let a = FaultUpstream::start_chain(x.clone()).await;
    let b = FaultUpstream::start_chain(y.clone()).await;
    let (proxy, addr) = proxy_over(
        &[&a, &b],
        "strategy = \"round-robin\"",
        "[consistency]\nenabled = true",
    )
    .await;
    until_metric(&proxy, r#"rpc_backend_head{backend="b"} 261"#).await;
    let mut conn = Connection::open(addr).await;
    let mut last = 0;
    let mut seen = Vec::new();
    for i in 0..200 {
        if i == 30 {
            // A two-block rollback on b, within max_lag: it stays in rotation.
            y.set_head(0x103);
        }
        if i == 150 {
            x.set_head(0x106);
            y.set_head(0x106);
        }
        let (_, v) = conn.call("eth_blockNumber", json!([])).await;
        let n = hex(&v);
        seen.push(n);
        assert!(n >= last, "call {i}: {n:#x} after {last:#x}: {seen:x?}");
        last = n;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_on_a_minority_fork_leaves_rotation() {
    let chains = [
        ScriptedChain::new(300),
        ScriptedChain::new(300),
        ScriptedChain::new(300),
    ];
    let a = FaultUpstream::start_chain(chains[0].clone()).await;
    let b = FaultUpstream::start_chain(chains[1].clone()).await;
    let c = FaultUpstream::start_chain(chains[2].clone()).await;
    let (proxy, addr) = proxy_over(&[&a, &b, &c], "strategy = \"round-robin\"", "").await;
    until_metric(&proxy, r#"rpc_backend_head{backend="c"} 300"#).await;
    // a forks off at the same height: its blocks 299 and 300 differ.
    chains[0].fork(9, 298);
    until_metric(
        &proxy,
        r#"rpc_backend_suspect{backend="a",reason="fork"} 1"#,
    )
    .await;
    for _ in 0..12 {
        let (by, v) = served_by(addr, "eth_getBlockByNumber", json!(["latest", false])).await;
        assert_ne!(by, "a", "{v}");
        assert_eq!(v["result"]["hash"], chains[1].hash(300));
    }
    // It rejoins the majority chain.
    chains[0].fork(0, 0);
    until_metric(
        &proxy,
        r#"rpc_backend_suspect{backend="a",reason="fork"} 0"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalized_calls_go_to_members_at_the_agreed_finalized_block() {
    let chains = [
        ScriptedChain::new(1000),
        ScriptedChain::new(1000),
        ScriptedChain::new(1000),
    ];
    chains[0].finalize(900);
    chains[1].finalize(968);
    chains[2].finalize(968);
    let a = FaultUpstream::start_chain(chains[0].clone()).await;
    let b = FaultUpstream::start_chain(chains[1].clone()).await;
    let c = FaultUpstream::start_chain(chains[2].clone()).await;
    let (_proxy, addr) = proxy_over(&[&a, &b, &c], "", "").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (by, v) = served_by(addr, "eth_getBlockByNumber", json!(["finalized", false])).await;
        // An empty `by` is a cache hit (kept for the tip TTL): not a routing.
        if !by.is_empty() && by != "a" {
            assert_eq!(v["result"]["number"], "0x3c8", "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "finalized calls stay on a");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // a is first and at the head: it serves `latest`, never `finalized`.
    assert_eq!(
        served_by(addr, "eth_getBalance", json!(["0x01", "latest"]))
            .await
            .0,
        "a"
    );
    for _ in 0..5 {
        let (by, _) = served_by(addr, "eth_getBalance", json!(["0x01", "finalized"])).await;
        assert_ne!(by, "a");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_a_block_is_never_answered_from_before_it() {
    // One node, cached: the client learns of block N from a block answer;
    // its next balance read must not come from the epoch before N.
    let chain = ScriptedChain::new(50);
    let a = FaultUpstream::start_chain(chain.clone()).await;
    // Probes off: the client's own answers are all the proxy learns from.
    let (_proxy, addr) = proxy_over(&[&a], "probes 0.0\n", "").await;
    let balance = json!(["0x0000000000000000000000000000000000000001", "latest"]);
    for round in 0..50u64 {
        let (_, before) = call(addr, "eth_getBalance", balance.clone()).await;
        chain.set_head(51 + round);
        // The client sees the new block (a receipt or a block by number).
        let (_, block) = call(
            addr,
            "eth_getBlockByNumber",
            json!([format!("{:#x}", 51 + round), false]),
        )
        .await;
        assert_eq!(block["result"]["number"], format!("{:#x}", 51 + round));
        let (_, after) = call(addr, "eth_getBalance", balance.clone()).await;
        assert!(
            hex(&after) >= (51 + round) * 256,
            "round {round}: read {after} after block {} (before: {before})",
            51 + round
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_even_split_is_shown_but_takes_nobody_out() {
    let (x, y) = (ScriptedChain::new(500), ScriptedChain::new(500));
    y.fork(3, 498);
    let a = FaultUpstream::start_chain(x.clone()).await;
    let b = FaultUpstream::start_chain(y.clone()).await;
    let (proxy, addr) = proxy_over(&[&a, &b], "strategy = \"round-robin\"", "").await;
    let metrics = until_metric(&proxy, "rpc_chain_split 1").await;
    for name in ["a", "b"] {
        assert!(
            metrics.contains(&format!(
                r#"rpc_backend_suspect{{backend="{name}",reason="fork"}} 0"#
            )) || !metrics.contains(&format!(r#"rpc_backend_suspect{{backend="{name}""#)),
            "{name} taken out:\n{metrics}"
        );
    }
    let mut by = std::collections::HashSet::new();
    for _ in 0..6 {
        by.insert(served_by(addr, "net_peerCount", json!([])).await.0);
    }
    assert_eq!(by.len(), 2, "both still serve: {by:?}");
    // They agree again: the split is over.
    y.fork(0, 0);
    until_metric(&proxy, "rpc_chain_split 0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ahead_of_the_agreed_head_is_not_served_older_cached_answers() {
    // a is a block ahead of b (both in rotation); the agreed head is b's.
    let (x, y) = (ScriptedChain::new(0x105), ScriptedChain::new(0x104));
    let a = FaultUpstream::start_chain(x.clone()).await;
    let b = FaultUpstream::start_chain(y.clone()).await;
    let (proxy, addr) = proxy_over(
        &[&a, &b],
        "strategy = \"round-robin\"",
        "[consistency]\nenabled = true",
    )
    .await;
    until_metric(&proxy, r#"rpc_backend_head{backend="b"} 260"#).await;
    let mut conn = Connection::open(addr).await;
    let mut last = 0;
    for i in 0..100 {
        // Clients without a session (a new connection each) keep filling the
        // cache from either member.
        let _ = call(addr, "eth_blockNumber", json!([])).await;
        let (_, v) = conn.call("eth_blockNumber", json!([])).await;
        let n = hex(&v);
        assert!(n >= last, "call {i}: {n:#x} after {last:#x}");
        last = n;
        // Across several tip TTLs (1 s): the cached value is refilled.
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}
