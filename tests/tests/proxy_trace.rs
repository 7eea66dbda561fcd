//! W3C trace context: with `[server] trace_context = true`, a client's
//! `traceparent` (and `tracestate`) reach the backend, for single calls and
//! for the upstream batch of a client batch; malformed ones, and everything
//! when it is off, do not.

use serde_json::Value;
use tests::{post_with, start_proxy_config, FaultUpstream};

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn headers_seen(
    addr: std::net::SocketAddr,
    body: &str,
    headers: &[(&str, &str)],
) -> Vec<Value> {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let (_, _, text) = post_with(addr, body.to_owned(), &all).await;
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let answers = match v {
        Value::Array(items) => items,
        one => vec![one],
    };
    answers
        .into_iter()
        .map(|a| a["result"]["headers"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_trace_context_reaches_the_backend_when_enabled() {
    let upstream = FaultUpstream::start().await;
    let config = |on: bool| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntrace_context = {on}\n[backends.node]\nurl = \"{}\"\n",
            upstream.url()
        )
    };
    let single = r#"{"jsonrpc":"2.0","id":1,"method":"echo_request"}"#;
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"echo_request"},{"jsonrpc":"2.0","id":2,"method":"echo_request"}]"#;
    let (_on, addr) = start_proxy_config(&config(true));
    let with = [("traceparent", PARENT), ("tracestate", "vendor=abc")];
    for body in [single, batch] {
        for seen in headers_seen(addr, body, &with).await {
            assert_eq!(seen["traceparent"], PARENT, "{body}: {seen}");
            assert_eq!(seen["tracestate"], "vendor=abc", "{body}: {seen}");
        }
    }
    // Malformed (an all-zero trace id, upper-case hex, a short id): dropped.
    for bad in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba9-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ] {
        let seen = headers_seen(addr, single, &[("traceparent", bad), ("tracestate", "v=1")]).await;
        assert!(seen[0].get("traceparent").is_none(), "{bad}: {}", seen[0]);
        assert!(seen[0].get("tracestate").is_none(), "{bad}: {}", seen[0]);
    }
    // Off (the default): nothing passes.
    let (_off, addr) = start_proxy_config(&config(false));
    let seen = headers_seen(addr, single, &with).await;
    assert!(seen[0].get("traceparent").is_none(), "{}", seen[0]);
}
