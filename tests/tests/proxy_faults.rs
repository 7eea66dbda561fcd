//! The shipped `rpc-proxy` binary in front of the in-repo fault upstream:
//! every failure mode yields the documented JSON-RPC code and HTTP status.

use std::time::Duration;

use serde_json::{json, Value};
use tests::{call, post, post_with, raw_exchange, start_proxy, start_proxy_config, FaultUpstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_failure_has_its_documented_answer() {
    let upstream = FaultUpstream::start().await;
    let (_proxy, addr) = start_proxy(&[
        "--upstream",
        &upstream.url(),
        "--name",
        "fault",
        "--timeout",
        "1",
        "--max-response",
        "100000",
    ]);

    let cases: &[(&str, Value, u16, i64)] = &[
        ("fault_status", json!([500]), 503, -32011),
        ("fault_status", json!([502]), 503, -32011),
        ("fault_status", json!([503]), 503, -32011),
        ("fault_429", json!([]), 503, -32011),
        ("fault_garbage", json!([]), 503, -32011),
        ("fault_truncated", json!([]), 503, -32011),
        ("fault_wrong_id", json!([]), 503, -32011),
        ("fault_drop", json!([]), 503, -32011),
        ("fault_slow", json!([3000]), 504, -32015),
        ("fault_huge", json!([200000]), 502, -32020),
    ];
    for (method, params, status, code) in cases {
        let (s, body) = call(addr, method, params.clone()).await;
        assert_eq!(
            (s.as_u16(), body["error"]["code"].as_i64()),
            (*status, Some(*code)),
            "{method} {params}: {body}"
        );
        assert_eq!(body["id"], 1, "{method}: answered under the client's id");
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(
            !message.contains("127.0.0.1") && !message.contains("fault`"),
            "no URL or backend name: {message}"
        );
    }

    // A backend's own error object passes through unchanged, with HTTP 200.
    let (s, body) = call(addr, "fault_rpc_error", json!([])).await;
    assert_eq!(s, 200);
    assert_eq!(
        body["error"],
        json!({"code": 3, "message": "execution reverted", "data": "0x08c379a0"})
    );
    // ... also when the backend sends it with a 4xx status.
    let (s, body) = call(addr, "fault_400_rpc_error", json!([])).await;
    assert_eq!(
        (s.as_u16(), body["error"]["code"].as_i64()),
        (200, Some(-32602))
    );

    // The backend's Retry-After reaches the client.
    let (s, headers, _) = post(addr, r#"{"jsonrpc":"2.0","id":1,"method":"fault_429"}"#).await;
    assert_eq!(
        (
            s.as_u16(),
            headers.get("retry-after").map(|v| v.to_str().unwrap_or(""))
        ),
        (503, Some("3"))
    );

    // After all of that the proxy still serves normal calls.
    let (s, body) = call(addr, "eth_chainId", json!([])).await;
    assert_eq!(
        (s.as_u16(), body["result"]["method"].as_str()),
        (200, Some("eth_chainId"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_mixing_faults_gets_one_answer_per_call_in_order() {
    let upstream = FaultUpstream::start().await;
    // Each call alone upstream: the upstream fails calls one by one (a
    // batch's HTTP status is one for all; see proxy_batching.rs).
    let (_proxy, addr) = start_proxy(&[
        "--upstream",
        &upstream.url(),
        "--timeout",
        "1",
        "--upstream-batch",
        "1",
    ]);
    let batch = json!([
        {"jsonrpc": "2.0", "id": "a", "method": "ok_1"},
        {"jsonrpc": "2.0", "id": 2, "method": "fault_status", "params": [503]},
        {"jsonrpc": "2.0", "method": "notification"},
        {"jsonrpc": "2.0", "id": -5, "method": "fault_slow", "params": [3000]},
        {"jsonrpc": "2.0", "id": 1.5, "method": "fault_rpc_error"},
        {"jsonrpc": "2.0", "id": null, "method": "ok_2"},
        {"jsonrpc": "2.0", "id": {"bad": 1}, "method": "ok_3"}
    ]);
    let (status, _, text) = post(addr, batch.to_string()).await;
    assert_eq!(status, 200);
    // Ids are echoed byte for byte, including `1.5` and `-5`.
    assert!(
        text.contains(r#""id":1.5"#) && text.contains(r#""id":-5"#),
        "{text}"
    );
    let items: Vec<Value> = serde_json::from_str(&text).expect("json array");
    assert_eq!(items.len(), 6, "no answer for the notification: {text}");
    assert_eq!(items[0]["result"]["method"], "ok_1");
    assert_eq!(
        (items[1]["id"].clone(), items[1]["error"]["code"].clone()),
        (json!(2), json!(-32011))
    );
    assert_eq!(
        (items[2]["id"].clone(), items[2]["error"]["code"].clone()),
        (json!(-5), json!(-32015))
    );
    assert_eq!(items[3]["error"]["code"], 3);
    assert_eq!(
        (items[4]["id"].clone(), items[4]["result"]["method"].clone()),
        (Value::Null, json!("ok_2"))
    );
    assert_eq!(
        (items[5]["id"].clone(), items[5]["error"]["code"].clone()),
        (Value::Null, json!(-32600))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_backend_fails_fast_with_503() {
    // Bind and drop: a loopback port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let (_proxy, addr) = start_proxy(&["--upstream", &format!("http://127.0.0.1:{port}")]);
    let started = std::time::Instant::now();
    let (s, body) = call(addr, "eth_chainId", json!([])).await;
    assert_eq!(
        (s.as_u16(), body["error"]["code"].as_i64()),
        (503, Some(-32011))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("connect"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a refused connect is not a timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_filter_in_the_binary_protects_the_upstream() {
    let upstream = FaultUpstream::start().await;
    let (_proxy, addr) = start_proxy(&[
        "--upstream",
        &upstream.url(),
        "--allow",
        "eth_*",
        "--deny",
        "eth_sendRawTransaction",
    ]);
    for method in [
        "admin_addPeer",
        "eth_sendRawTransaction",
        "debug_traceBlock",
    ] {
        let (s, body) = call(addr, method, json!([])).await;
        assert_eq!(
            (s.as_u16(), body["error"]["code"].as_i64()),
            (403, Some(-32601)),
            "{method}"
        );
    }
    assert_eq!(
        upstream.calls.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "rejected before the upstream"
    );
    let (s, _) = call(addr, "eth_blockNumber", json!([])).await;
    assert_eq!(s, 200);
    assert_eq!(upstream.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_at_the_binary() {
    let upstream = FaultUpstream::start().await;
    let (proxy, addr) = start_proxy(&[
        "--upstream",
        &upstream.url(),
        "--max-body",
        "65536",
        "--max-batch",
        "10",
        "--body-timeout",
        "1",
    ]);
    let code = |text: &str| {
        serde_json::from_str::<Value>(text).expect("JSON body")["error"]["code"].as_i64()
    };

    let (s, _, t) = post(addr, "{\"jsonrpc\":\"2.0\",").await;
    assert_eq!((s.as_u16(), code(&t)), (400, Some(-32700)));
    let (s, _, t) = post(addr, vec![b'{', 0xff, 0xfe, b'}']).await;
    assert_eq!((s.as_u16(), code(&t)), (400, Some(-32700)));
    let (s, _, t) = post(addr, "[]").await;
    assert_eq!((s.as_u16(), code(&t)), (400, Some(-32600)));
    let (s, _, t) = post(
        addr,
        format!(
            "[{}]",
            [r#"{"jsonrpc":"2.0","id":1,"method":"m"}"#; 11].join(",")
        ),
    )
    .await;
    assert_eq!((s.as_u16(), code(&t)), (413, Some(-32014)));
    let (s, _, t) = post(
        addr,
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"{}"}}"#,
            "m".repeat(100_000)
        ),
    )
    .await;
    assert_eq!((s.as_u16(), code(&t)), (413, Some(-32021)));
    let (s, _, t) = post_with(
        addr,
        r#"{"jsonrpc":"2.0","id":1,"method":"m"}"#,
        &[("content-type", "text/html")],
    )
    .await;
    assert_eq!((s.as_u16(), code(&t)), (415, Some(-32600)));
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":{}{}}}"#,
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let (s, _, t) = post(addr, deep).await;
    assert_eq!(
        s, 200,
        "deep params are forwarded raw, without recursion: {t}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&t).expect("json")["result"]["params_bytes"],
        40_000
    );

    // A client that announces a body and never sends it is cut off.
    let partial = format!(
        "POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"jsonrpc\""
    );
    let answer = raw_exchange(addr, partial.as_bytes(), Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("-32600"), "{answer}");

    // Not HTTP at all.
    let answer = raw_exchange(
        addr,
        b"\x16\x03\x01garbage\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );

    // Still healthy, and never panicked.
    let (s, body) = call(addr, "eth_chainId", json!([])).await;
    assert_eq!(
        (s.as_u16(), body["result"]["method"].as_str()),
        (200, Some("eth_chainId"))
    );
    assert!(
        !proxy.output_text().contains("panicked"),
        "{}",
        proxy.output_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_is_served() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let upstream = FaultUpstream::start().await;
    let (_proxy, addr) = start_proxy(&["--upstream", &upstream.url()]);
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    tokio::spawn(conn);
    let req = http::Request::post(format!("http://{addr}/"))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"over_h2"}"#,
        )))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("in time")
        .expect("response");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["result"]["method"], "over_h2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_readiness_and_retry_after_is_clamped() {
    // A backend nobody listens on: it goes out of service at its first
    // failure, and /healthz says the replica cannot serve until it is due back.
    // (A node is started on it later: a port no outgoing connection takes.)
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], tests::stable_port()));
    let limited = FaultUpstream::start().await;
    let (_proxy, addr) = start_proxy_config(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
[backends.dead]
url = "http://{dead}"
[backends.limited]
url = "{}"
[groups.main]
members = ["dead"]
failure_threshold = 1
out_of_service = "2s"
[groups.other]
members = ["limited"]
[routing]
methods = {{ "fault_*" = "other" }}
default = "main"
[retry]
max_retries = 0
max_retry_after = "1s"
"#,
        limited.url()
    ));
    let health = || async { tests::get(addr, "/healthz").await };
    let (status, body) = health().await;
    assert_eq!(status.as_u16(), 200, "{body}");
    let (s, _) = call(addr, "eth_chainId", json!([])).await;
    assert_eq!(s.as_u16(), 503);
    let (status, body) = health().await;
    assert_eq!(
        (status.as_u16(), body.contains("unavailable")),
        (503, true),
        "{body}"
    );
    // Its window ends, but the background re-test finds it still dead.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(health().await.0.as_u16(), 503, "re-tested, still down");
    // A node starts on its port: the re-test (every second) brings it back
    // with no client call at all.
    let (_node, _) = tests::start_anvil_on(dead.port());
    let started = std::time::Instant::now();
    while health().await.0.as_u16() != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "back in service within 5 s of the node's start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A backend asking for 3 s: clients are told at most max_retry_after.
    let (s, headers, _) = post(addr, r#"{"jsonrpc":"2.0","id":1,"method":"fault_429"}"#).await;
    assert_eq!(s.as_u16(), 503);
    assert_eq!(headers["retry-after"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_answers_written_in_pieces_reach_clients_whole() {
    // A Go node chunks any answer it did not size; this upstream writes
    // each chunk-size line and chunk in two pieces with pauses between.
    let upstream = tests::ChunkedUpstream::start(3_000).await;
    let (_proxy, addr) = start_proxy(&["--upstream", &upstream.url(), "--name", "chunked"]);
    for i in 0..5u64 {
        let (s, body) = call(addr, "eth_anything", json!([i])).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["id"], 1);
        let result = body["result"].as_str().unwrap_or_default();
        assert_eq!(result.len(), 3_000, "{body}");
        assert!(result.bytes().all(|b| b == b'a'));
    }
    // A client batch goes upstream as one batch; each answer back by its id.
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"jsonrpc": "2.0", "id": 100 + i, "method": "eth_anything", "params": [i]}))
        .collect();
    let (s, _, text) = post(addr, Value::Array(batch).to_string()).await;
    assert_eq!(s, 200, "{text}");
    let answers: Vec<Value> = serde_json::from_str(&text).expect("a JSON batch answer");
    let mut ids: Vec<i64> = answers
        .iter()
        .map(|a| a["id"].as_i64().unwrap_or(-1))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (100..110).collect::<Vec<_>>());
    assert!(answers
        .iter()
        .all(|a| a["result"].as_str().map(str::len) == Some(3_000)));
    let seen = |n: &std::sync::atomic::AtomicUsize| n.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        seen(&upstream.batches),
        1,
        "one upstream request for the client's batch"
    );
    // Fifteen calls, and the proxy's own probes, on kept-alive connections
    // (a probe while a call is out takes a second one).
    let connections = seen(&upstream.connections);
    assert!(
        connections <= 2,
        "every chunked answer read to its end, its connection reused: {connections} connections"
    );
}
