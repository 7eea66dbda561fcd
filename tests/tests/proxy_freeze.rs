//! A node that freezes (SIGSTOP: connected, silent) behind the shipped
//! `rpc-proxy` with its default settings, under a real client (viem, with its
//! default 10 s timeout and no retries of its own): no call may fail, the
//! frozen node must leave rotation within about a second of traffic, and
//! come back by itself after SIGCONT.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tests::{metrics_addr, node_client, scrape, start_anvil, start_proxy_config};

/// `rpc_backend_in_service{backend="NAME"}` from a scrape.
fn in_service(metrics: &str, backend: &str) -> Option<f64> {
    let key = format!("rpc_backend_in_service{{backend=\"{backend}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
}

async fn wait_in_service(
    metrics: SocketAddr,
    backend: &str,
    want: f64,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        if in_service(&scrape(metrics).await, backend) == Some(want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{backend} not in_service={want} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_costs_a_viem_client_nothing_with_the_defaults() {
    let (a, a_addr) = start_anvil();
    let (_b, b_addr) = start_anvil();
    // Nothing tuned: two backends in a group, the shipped defaults.
    let (proxy, addr) = start_proxy_config(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[backends.a]
url = "http://{a_addr}"
[backends.b]
url = "http://{b_addr}"
[groups.main]
members = ["a", "b"]
"#
    ));
    let metrics = metrics_addr(&proxy);
    let client = tokio::spawn(async move {
        node_client(
            "freeze-loop.mjs",
            &[format!("http://{addr}"), "40".to_owned()],
            Duration::from_secs(100),
        )
        .await
    });

    // Traffic for 3 s, then a freezes for 30 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    a.signal("STOP");
    let left = wait_in_service(metrics, "a", 0.0, Duration::from_secs(5)).await;
    assert!(
        left <= Duration::from_millis(2_500),
        "the frozen node left rotation {left:?} after the freeze"
    );
    let scraped = scrape(metrics).await;
    assert!(
        scraped.contains(r#"rpc_backend_out_of_service_total{backend="a",reason="stall"} 1"#)
            || scraped
                .contains(r#"rpc_backend_out_of_service_total{backend="a",reason="probe"} 1"#),
        "it left for a stall (or a failed probe):\n{scraped}"
    );
    tokio::time::sleep(Duration::from_secs(27)).await;
    a.signal("CONT");
    // Re-tested in the background: back within a few seconds.
    let back = wait_in_service(metrics, "a", 1.0, Duration::from_secs(5)).await;
    eprintln!("left after {left:?}, back {back:?} after SIGCONT");

    let seen = client.await.expect("the viem client");
    eprintln!("{seen}");
    assert!(seen["calls"].as_u64().unwrap_or(0) > 200, "{seen}");
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    let slowest = seen["slowest_ms"].as_u64().unwrap_or(u64::MAX);
    assert!(
        slowest < 5_000,
        "every call answered well inside the client's 10 s: {seen}"
    );
}
