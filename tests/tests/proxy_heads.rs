//! Head tracking in the shipped `rpc-proxy`: an upstream that answers but is
//! behind (the in-repo upstream, and real anvil nodes advanced with
//! `anvil_mine`) is kept out of rotation, explicit blocks go to nodes that
//! have them, and a session never sees the chain go backwards.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tests::{
    body, call, metrics_addr, post_with, scrape, served_by, start_anvil, start_proxy_config,
    until_served_by, FaultUpstream, Process,
};

const HEAD_GROUP: &str = r#"
[groups.main]
members = ["a", "b"]
[groups.main.head]
max_lag = 3
probe_interval = "200ms"
max_probes_per_second = 10.0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_answers_but_lags_is_avoided_until_it_catches_up() {
    let (head_a, head_b) = (Arc::new(AtomicU64::new(100)), Arc::new(AtomicU64::new(200)));
    let a = FaultUpstream::start_at_head(head_a.clone()).await;
    let b = FaultUpstream::start_at_head(head_b.clone()).await;
    let (proxy, addr) = start_proxy_config(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
served_by_header = true
[metrics]
listen = "127.0.0.1:0"
[backends.a]
url = "{}"
[backends.b]
url = "{}"
{HEAD_GROUP}"#,
        a.url(),
        b.url()
    ));
    assert!(
        proxy
            .output_text()
            .contains("main: failover (head-tracked) a, b"),
        "{}",
        proxy.output_text()
    );
    // a is first in priority, but 100 blocks behind b.
    until_served_by(addr, "b").await;
    for _ in 0..10 {
        assert_eq!(
            served_by(addr, "eth_getBalance", json!(["0x01", "latest"]))
                .await
                .0,
            "b"
        );
    }
    let metrics = scrape(metrics_addr(&proxy)).await;
    assert!(
        metrics.contains(r#"rpc_backend_lagging{backend="a"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"rpc_backend_head_lag{backend="a"} 100"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"rpc_backend_head{backend="b"} 200"#),
        "{metrics}"
    );

    // It catches up: back in rotation, first again.
    head_a.store(201, Ordering::SeqCst);
    until_served_by(addr, "a").await;
    let metrics = scrape(metrics_addr(&proxy)).await;
    assert!(
        metrics.contains(r#"rpc_backend_lagging{backend="a"} 0"#),
        "{metrics}"
    );
}

/// Two anvil nodes (`a` first in priority) behind the binary with head
/// tracking, plus `extra` config; the nodes, the proxy and its address.
fn two_anvils_behind_the_proxy(extra: &str) -> ([(Process, SocketAddr); 2], Process, SocketAddr) {
    let nodes = [start_anvil(), start_anvil()];
    let (a, b) = (nodes[0].1, nodes[1].1);
    let (proxy, addr) = start_proxy_config(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
served_by_header = true
[backends.a]
url = "http://{a}"
[backends.b]
url = "http://{b}"
{HEAD_GROUP}
{extra}
"#
    ));
    (nodes, proxy, addr)
}

async fn mine(node: SocketAddr, blocks: u64) {
    let (_, v) = call(node, "anvil_mine", json!([format!("{blocks:#x}")])).await;
    assert!(v.get("error").is_none(), "anvil_mine: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_nodes_behind_are_avoided_and_explicit_blocks_go_to_nodes_that_have_them() {
    let (nodes, _proxy, addr) = two_anvils_behind_the_proxy("");
    let (a, b) = (nodes[0].1, nodes[1].1);
    // b is ahead by 2: within max_lag, so a (first) keeps the calls...
    mine(b, 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(served_by(addr, "eth_blockNumber", json!([])).await.0, "a");
    // ...but a block only b has goes to b, and one both have to a.
    let (by, v) = served_by(addr, "eth_getBlockByNumber", json!(["0x2", false])).await;
    assert_eq!(by, "b");
    assert_eq!(v["result"]["number"], "0x2", "{v}");
    let (by, _) = served_by(
        addr,
        "eth_getBalance",
        json!(["0x0000000000000000000000000000000000000001", "0x0"]),
    )
    .await;
    assert_eq!(by, "a");

    // b pulls 10 blocks ahead: a is out of rotation.
    mine(b, 8).await;
    until_served_by(addr, "b").await;
    let (by, v) = served_by(addr, "eth_blockNumber", json!([])).await;
    assert_eq!((by.as_str(), &v["result"]), ("b", &json!("0xa")));
    // a catches up: back in rotation.
    mine(a, 10).await;
    until_served_by(addr, "a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_never_sees_the_chain_go_backwards() {
    let (nodes, _proxy, addr) = two_anvils_behind_the_proxy("[consistency]\nenabled = true");
    let b = nodes[1].1;
    mine(b, 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let session = [
        ("content-type", "application/json"),
        ("x-session-id", "alice-7f3a"),
    ];
    // Alice reads block 2 (only b has it): her session has seen head 2.
    let (status, headers, text) = post_with(
        addr,
        body("eth_getBlockByNumber", json!(["0x2", false])),
        &session,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["x-served-by"], "b");
    // Her later calls, on new connections, never come from a (at 0).
    for _ in 0..5 {
        let (status, headers, text) =
            post_with(addr, body("eth_blockNumber", json!([])), &session).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(headers["x-served-by"], "b", "{text}");
        let v: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["result"], "0x2", "the chain went backwards for alice");
    }
    // A client without a session (and a new connection each time) is not
    // held to it: a, first in priority, answers.
    assert_eq!(served_by(addr, "eth_blockNumber", json!([])).await.0, "a");
}
