//! The bad-input suite against the running `rpc-proxy` binary: wrong types at
//! every field, ids of every JSON type, a 1 MB method name, deep nesting,
//! huge batches, partial bodies, non-UTF-8, and garbage, truncated and
//! oversized backend answers. Each gets its documented answer; the process
//! stays healthy, never panics, and its memory stays bounded.

use std::time::Duration;

use serde_json::{json, Value};
use tests::{call, post, raw_exchange, start_proxy, FaultUpstream, Process};

fn rss_kib(proxy: &Process) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", proxy.pid())).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn error_code(text: &str) -> Option<i64> {
    serde_json::from_str::<Value>(text).ok()?["error"]["code"].as_i64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_types_at_every_field_get_the_documented_error() {
    let upstream = FaultUpstream::start().await;
    let (proxy, addr) = start_proxy(&["--upstream", &upstream.url()]);
    let cases: &[(&str, u16, i64)] = &[
        // jsonrpc: missing, wrong version, wrong type
        (r#"{"id":1,"method":"m"}"#, 400, -32600),
        (r#"{"jsonrpc":"1.0","id":1,"method":"m"}"#, 400, -32600),
        (r#"{"jsonrpc":2,"id":1,"method":"m"}"#, 400, -32600),
        (r#"{"jsonrpc":null,"id":1,"method":"m"}"#, 400, -32600),
        // id: object, array, boolean
        (r#"{"jsonrpc":"2.0","id":{},"method":"m"}"#, 400, -32600),
        (r#"{"jsonrpc":"2.0","id":[1],"method":"m"}"#, 400, -32600),
        (r#"{"jsonrpc":"2.0","id":true,"method":"m"}"#, 400, -32600),
        // method: missing, number, null, array, object, empty
        (r#"{"jsonrpc":"2.0","id":1}"#, 400, -32600),
        (r#"{"jsonrpc":"2.0","id":1,"method":1}"#, 400, -32600),
        (r#"{"jsonrpc":"2.0","id":1,"method":null}"#, 400, -32600),
        (r#"{"jsonrpc":"2.0","id":1,"method":["m"]}"#, 400, -32600),
        (r#"{"jsonrpc":"2.0","id":1,"method":{}}"#, 400, -32600),
        // params: not an array or object
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":"x"}"#,
            400,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":1}"#,
            400,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":true}"#,
            400,
            -32602,
        ),
        // not a request at all
        ("1", 400, -32600),
        (r#""a string""#, 400, -32600),
        ("null", 400, -32600),
        ("[]", 400, -32600),
        ("", 400, -32700),
        ("{", 400, -32700),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"m"} trailing"#,
            400,
            -32700,
        ),
    ];
    for (body, status, code) in cases {
        let (s, _, text) = post(addr, *body).await;
        assert_eq!(
            (s.as_u16(), error_code(&text)),
            (*status, Some(*code)),
            "{body}: {text}"
        );
        let v: Value = serde_json::from_str(&text).expect("a JSON body");
        assert_eq!(v["jsonrpc"], "2.0", "{body}: {text}");
    }
    // The same bad items inside a batch: each answered on its own, 200.
    let items: Vec<&str> = cases
        .iter()
        .filter(|c| c.0.starts_with('{'))
        .map(|c| c.0)
        .collect();
    let batch = format!(
        "[{},{}]",
        items[..8].join(","),
        r#"{"jsonrpc":"2.0","id":"ok","method":"m"}"#
    );
    let (s, _, text) = post(addr, batch).await;
    assert_eq!(s, 200, "{text}");
    let answers: Vec<Value> = serde_json::from_str(&text).expect("array");
    assert_eq!(answers.len(), 9, "{text}");
    assert!(
        answers[..8].iter().all(|a| a["error"]["code"] == -32600),
        "{text}"
    );
    assert_eq!(answers[8]["result"]["method"], "m");
    assert_eq!(
        upstream.calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the good call went upstream"
    );
    assert!(!proxy.output_text().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_of_every_json_type_are_echoed_exactly() {
    let upstream = FaultUpstream::start().await;
    let (_proxy, addr) = start_proxy(&["--upstream", &upstream.url()]);
    for id in [
        "1",
        "-5",
        "0",
        "1.0",
        "1e3",
        "18446744073709551616",
        r#""a""#,
        r#""""#,
        r#""\u00e9\n""#,
        "null",
    ] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_chainId"}}"#);
        let (s, _, text) = post(addr, body).await;
        assert_eq!(s, 200, "{id}: {text}");
        let echoed = text
            .split(r#""id":"#)
            .nth(1)
            .map(|rest| rest.trim_end_matches('}'))
            .unwrap_or("");
        assert!(
            echoed.starts_with(id),
            "id {id} came back as {echoed} in {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_deep_input_is_bounded_and_answered() {
    let upstream = FaultUpstream::start().await;
    let (proxy, addr) = start_proxy(&[
        "--upstream",
        &upstream.url(),
        "--max-body",
        "4194304",
        "--max-batch",
        "100",
        "--body-timeout",
        "1",
    ]);
    // A 1 MB method name: within the body limit, so forwarded and answered.
    let name = "m".repeat(1 << 20);
    let (s, _, text) = post(
        addr,
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{name}"}}"#),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("json")["result"]["method"]
            .as_str()
            .map(str::len),
        Some(1 << 20)
    );
    // Deep nesting in params is forwarded raw; deep nesting elsewhere is refused.
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (s, _, _) = post(addr, deep).await;
    assert_eq!(s, 200);
    let deep_id = format!(
        r#"{{"jsonrpc":"2.0","id":{}1{},"method":"m"}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let (s, _, text) = post(addr, deep_id).await;
    assert_eq!(
        (s.as_u16(), error_code(&text)),
        (400, Some(-32600)),
        "{text}"
    );
    // A huge batch is refused before any item is parsed.
    // A body announced over the limit is refused from its Content-Length,
    // before a byte of it is read.
    let announced = format!("POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 5500000\r\n\r\n[");
    let answer = raw_exchange(addr, announced.as_bytes(), Duration::from_secs(10)).await;
    assert!(
        answer.starts_with("HTTP/1.1 413") && answer.contains("-32021"),
        "{answer}"
    );
    let big = format!(
        "[{}]",
        vec![r#"{"jsonrpc":"2.0","id":1,"method":"m"}"#; 101].join(",")
    );
    let (s, _, text) = post(addr, big).await;
    assert_eq!(
        (s.as_u16(), error_code(&text)),
        (413, Some(-32014)),
        "{text}"
    );
    // Slowloris: headers then a trickle of body, cut at the read timeout.
    let partial =
        format!("POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 1000\r\n\r\n{{\"jsonrpc\":");
    let answer = raw_exchange(addr, partial.as_bytes(), Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(!proxy.output_text().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_truncated_and_oversized_backend_answers_are_contained() {
    let upstream = FaultUpstream::start().await;
    let (proxy, addr) = start_proxy(&[
        "--upstream",
        &upstream.url(),
        "--retries",
        "0",
        "--max-response",
        "100000",
        "--timeout",
        "2",
    ]);
    for (method, params, status, code) in [
        ("fault_garbage", json!([]), 503, -32011),
        ("fault_truncated", json!([]), 503, -32011),
        ("fault_wrong_id", json!([]), 503, -32011),
        ("fault_huge", json!([5_000_000]), 502, -32020),
        ("fault_drop", json!([]), 503, -32011),
    ] {
        let (s, v) = call(addr, method, params).await;
        assert_eq!(
            (s.as_u16(), v["error"]["code"].as_i64()),
            (status, Some(code)),
            "{method}: {v}"
        );
    }
    assert!(!proxy.output_text().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrage_of_bad_input_leaves_memory_bounded_and_the_proxy_healthy() {
    let upstream = FaultUpstream::start().await;
    let (proxy, addr) = start_proxy(&["--upstream", &upstream.url(), "--max-body", "1048576"]);
    let (s, _) = call(addr, "eth_chainId", json!([])).await;
    assert_eq!(s, 200);
    let before = rss_kib(&proxy);
    let junk = [
        "{".repeat(900_000),
        format!("[{}]", vec!["1"; 200_000].join(",")),
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":[{}]}}"#,
            vec!["\"x\""; 100_000].join(",")
        ),
        String::from_utf8_lossy(&[0xc3, 0x28, 0xa0, 0xa1]).repeat(100_000),
    ];
    for round in 0..50 {
        let body = junk[round % junk.len()].clone();
        let (s, _, _) = post(addr, body).await;
        assert!(s.is_client_error() || s.is_success(), "round {round}: {s}");
    }
    let after = rss_kib(&proxy);
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB after 50 bad bodies of up to 1 MB"
    );
    let (s, v) = call(addr, "eth_chainId", json!([])).await;
    assert_eq!(
        (s.as_u16(), v["result"]["method"].as_str()),
        (200, Some("eth_chainId"))
    );
    assert!(!proxy.output_text().contains("panicked"));
}
