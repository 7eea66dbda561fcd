//! `ElectrumBackend` against a small in-repo Electrum server that does what
//! real servers do and a real ElectrumX cannot be made to do on demand:
//! answers out of order, notifications between answers, padding, requests
//! silently dropped, garbage, over-long lines, connections cut mid-call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rpc_core::{Deadline, Id, RawJson, Request, RpcError};
use rpc_electrum::ElectrumBackend;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Starts the stub; returns its address and a count of connections.
///
/// Methods: `echo` answers its params; `slow` [ms] answers later (so answers
/// overtake each other); `drop_me` is never answered; `garbage` gets a line
/// that is not JSON, then the answer; `huge` gets a line longer than any
/// limit; `cut` closes the connection. Before every answer the stub sends a
/// notification, and answers are padded with spaces like ElectrumX's.
async fn stub() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (r, w) = stream.into_split();
                let w = Arc::new(tokio::sync::Mutex::new(w));
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let Ok(v) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    let (id, method, params) = (
                        v["id"].clone(),
                        v["method"].as_str().unwrap_or("").to_owned(),
                        v["params"].clone(),
                    );
                    let w = w.clone();
                    tokio::spawn(async move {
                        let answer = |result: Value| {
                            format!(
                                "{}{}\n",
                                json!({"jsonrpc": "2.0", "id": id, "result": result}),
                                " ".repeat(40)
                            )
                        };
                        let text = match method.as_str() {
                            "server.version" => answer(json!(["stub 1.0", "1.4"])),
                            "server.ping" => answer(Value::Null),
                            "blockchain.headers.subscribe" => {
                                answer(json!({"height": 7, "hex": "00"}))
                            }
                            "echo" => answer(params),
                            "slow" => {
                                tokio::time::sleep(Duration::from_millis(
                                    params[0].as_u64().unwrap_or(0),
                                ))
                                .await;
                                answer(params)
                            }
                            "drop_me" => return,
                            "garbage" => {
                                format!("<html>oops</html>\n{}", answer(json!("after garbage")))
                            }
                            "huge" => format!("{}\n", "x".repeat(200_000)),
                            "cut" => {
                                let mut w = w.lock().await;
                                let _ = w.shutdown().await;
                                return;
                            }
                            _ => format!(
                                "{}\n",
                                json!({"jsonrpc": "2.0", "id": id, "error": {"code": 2, "message": "unknown method"}})
                            ),
                        };
                        let note = "{\"jsonrpc\":\"2.0\",\"method\":\"blockchain.headers.subscribe\",\"params\":[{\"height\":8,\"hex\":\"01\"}]}\n";
                        let mut w = w.lock().await;
                        let _ = w.write_all(note.as_bytes()).await;
                        let _ = w.write_all(text.as_bytes()).await;
                    });
                }
            });
        }
    });
    (format!("tcp://{addr}"), connections)
}

fn req(id: u64, method: &str, params: Value) -> Request {
    Request::new(method)
        .with_id(Id::from(id))
        .with_params(RawJson::from_bytes(params.to_string()).expect("json"))
}

fn backend(url: &str) -> ElectrumBackend {
    ElectrumBackend::builder("stub", url)
        .max_line(64 * 1024)
        .request_timeout(Duration::from_secs(2))
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .build()
        .expect("backend")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_out_of_order_between_notifications_reach_their_callers() {
    let (url, _) = stub().await;
    let b = backend(&url);
    let calls: Vec<_> = (0..50u64)
        .map(|i| {
            let b = b.clone();
            // Later calls answer sooner: completion order is reversed.
            tokio::spawn(
                async move { (i, b.oneshot(req(i, "slow", json!([500 - i * 10, i]))).await) },
            )
        })
        .collect();
    for c in calls {
        let (i, r) = c.await.expect("task");
        let r = r.expect("answer");
        assert_eq!(r.id(), &Id::from(i));
        let v: Value =
            serde_json::from_slice(r.result_json().expect("result").as_bytes()).expect("json");
        assert_eq!(v[1], i, "its own answer");
    }
    assert_eq!(b.tip(), Some(8), "the notifications were seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_server_drops_is_answered_by_its_deadline() {
    let (url, _) = stub().await;
    let b = backend(&url);
    let started = std::time::Instant::now();
    let mut r = req(1, "drop_me", json!([]));
    r.extensions_mut()
        .insert(Deadline::after(Duration::from_millis(300)));
    let err = b.clone().oneshot(r).await.expect_err("never answered");
    assert!(matches!(err, RpcError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
    // The connection is fine for everyone else.
    b.clone()
        .oneshot(req(2, "echo", json!([1])))
        .await
        .expect("answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_lines_are_skipped_and_error_codes_are_answers() {
    let (url, _) = stub().await;
    let b = backend(&url);
    let r = b
        .clone()
        .oneshot(req(1, "garbage", json!([])))
        .await
        .expect("answer after the garbage");
    assert_eq!(
        r.result_json().map(|j| j.as_bytes().to_vec()),
        Some(b"\"after garbage\"".to_vec())
    );
    let r = b
        .clone()
        .oneshot(req(2, "nope", json!([])))
        .await
        .expect("an error object is an answer");
    assert_eq!(r.error_object().map(|e| e.code()), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_fails_calls_in_flight_at_once_and_reconnects() {
    let (url, connections) = stub().await;
    let b = backend(&url);
    b.clone()
        .oneshot(req(1, "echo", json!([])))
        .await
        .expect("up");
    let in_flight = tokio::spawn(b.clone().oneshot(req(2, "slow", json!([1500]))));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let _ = b.clone().oneshot(req(3, "cut", json!([]))).await;
    let err = in_flight.await.expect("task").expect_err("cut");
    assert!(
        matches!(err, RpcError::ConnectionClosed { .. }),
        "maybe delivered: {err}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "at once, not at its deadline"
    );
    // Back after the backoff, on a new connection.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while b.clone().oneshot(req(4, "echo", json!([]))).await.is_err() {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_line_drops_the_connection_instead_of_growing_memory() {
    let (url, connections) = stub().await;
    let b = backend(&url);
    let err = b
        .clone()
        .oneshot(req(1, "huge", json!([])))
        .await
        .expect_err("too long");
    assert!(matches!(err, RpcError::ConnectionClosed { .. }), "{err}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while b.clone().oneshot(req(2, "echo", json!([]))).await.is_err() {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_fails_fast_as_not_sent() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let b = backend(&format!("tcp://127.0.0.1:{port}"));
    // The first call waits for the first connection attempt, which is refused.
    let err = b
        .clone()
        .oneshot(req(1, "echo", json!([])))
        .await
        .expect_err("refused");
    assert!(
        matches!(
            err,
            RpcError::Connect { .. } | RpcError::ConnectionClosed { .. }
        ),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = std::time::Instant::now();
    let err = b
        .clone()
        .oneshot(req(2, "echo", json!([])))
        .await
        .expect_err("still refused");
    assert!(matches!(err, RpcError::Connect { .. }), "{err}");
    assert_eq!(err.delivery(), rpc_core::Delivery::NotSent);
    assert!(started.elapsed() < Duration::from_millis(100), "fast");
}

#[test]
fn addresses_are_checked() {
    for bad in [
        "http://x:1",
        "tcp://nohost",
        "tcp://:5",
        "tcp://h:0",
        "tcp://h:99999",
        "tls//h:1",
    ] {
        let err = ElectrumBackend::builder("x", bad).build().expect_err(bad);
        assert!(err.to_string().contains(bad), "{err}");
    }
}
