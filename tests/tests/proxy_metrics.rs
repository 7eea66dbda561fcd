//! The running `rpc-proxy` binary's `/metrics` endpoint, `x-served-by`
//! header and JSON logs.

use std::time::Duration;

use serde_json::{json, Value};
use tests::{call, post, raw_exchange, start_proxy, FaultUpstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_from_the_running_binary() {
    let upstream = FaultUpstream::start().await;
    let (proxy, addr) = start_proxy(&[
        "--upstream",
        &format!("fault={}", upstream.url()),
        "--metrics-listen",
        "127.0.0.1:0",
        "--served-by-header",
        "--log-format",
        "json",
    ]);
    let metrics_addr: std::net::SocketAddr = proxy
        .output_text()
        .lines()
        .find_map(|l| {
            l.split("metrics on http://")
                .nth(1)?
                .strip_suffix("/metrics")?
                .parse()
                .ok()
        })
        .expect("the metrics address is printed");

    let (_, headers, _) = post(addr, r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#).await;
    assert_eq!(
        headers.get("x-served-by").and_then(|v| v.to_str().ok()),
        Some("fault")
    );
    for _ in 0..2 {
        let (s, body) = call(addr, "fault_status", json!([502])).await;
        assert_eq!(
            (s.as_u16(), body["error"]["code"].as_i64()),
            (503, Some(-32011))
        );
    }
    let (_, body) = call(addr, "fault_rpc_error", json!([])).await;
    assert_eq!(body["error"]["code"], 3);

    let scrape = raw_exchange(
        metrics_addr,
        b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
    for line in [
        r#"rpc_requests_total{method="eth_chainId",outcome="ok"} 1"#,
        r#"rpc_requests_total{method="other",outcome="failed"} 2"#,
        r#"rpc_requests_total{method="other",outcome="error"} 1"#,
        r#"rpc_response_errors_total{method="other",code="-32011"} 2"#,
        r#"rpc_backend_requests_total{backend="fault",method="eth_chainId",outcome="ok"} 1"#,
        r#"rpc_backend_failures_total{backend="fault",reason="http_status"} 2"#,
        r#"rpc_backend_errors_total{backend="fault",method="other",code="3"} 1"#,
        r#"rpc_backend_out_of_service_total{backend="fault",reason="error"} 1"#,
        "# TYPE rpc_request_duration_seconds histogram",
        "# HELP rpc_requests_total Calls answered to clients",
        r#"rpc_request_duration_seconds_bucket{method="eth_chainId",le="0.1"}"#,
    ] {
        assert!(scrape.contains(line), "missing `{line}` in:\n{scrape}");
    }
    assert!(!scrape.contains("127.0.0.1"), "no URL in any label");
    assert!(
        !scrape.contains("fault_status"),
        "unknown methods are `other`"
    );

    let wrong = raw_exchange(
        metrics_addr,
        b"GET /nope HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(wrong.starts_with("HTTP/1.1 404"), "{wrong}");

    // Logs are one JSON object per line (the warning of the backend that
    // went out of service among them).
    let log = proxy.output_text();
    let json_lines: Vec<Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        json_lines
            .iter()
            .any(|v| v["fields"]["message"] == "backend out of service" && v["level"] == "WARN"),
        "{log}"
    );
}
