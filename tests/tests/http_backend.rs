//! `HttpBackend` against a real HTTP server on loopback: what goes on the wire
//! (headers, auth, ids), connection reuse, deadlines and limits.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rpc_core::{
    CrossClient, Deadline, Delivery, HttpBackend, Id, RawJson, Request, RpcError, ServedBy,
};
use serde_json::Value;
use tests::{ChunkedUpstream, FaultUpstream};
use tower::ServiceExt;

fn request(method: &str, id: Id) -> Request {
    Request::new(method)
        .with_id(id)
        .with_params(RawJson::from_static("[]").expect("json"))
}

#[tokio::test]
async fn headers_basic_auth_and_rewritten_ids_on_the_wire() {
    let upstream = FaultUpstream::start().await;
    let url = format!("http://alice:s%40cret@{}/v2/path", upstream.addr);
    let backend = HttpBackend::builder("primary", url)
        .header("x-api-key", "k-123")
        .expect("valid header")
        .build()
        .expect("backend");
    let resp = backend
        .clone()
        .oneshot(request("echo_request", Id::from("client-id-1.0")))
        .await
        .expect("answer");
    assert_eq!(
        resp.id(),
        &Id::from("client-id-1.0"),
        "the client's id is restored"
    );
    assert_eq!(
        resp.extensions().get::<ServedBy>().map(|s| &*s.0),
        Some("primary")
    );
    let seen: Value = resp
        .result_json()
        .expect("result")
        .deserialize()
        .expect("json");
    assert_eq!(
        seen["headers"]["authorization"], "Basic YWxpY2U6c0BjcmV0",
        "alice:s@cret"
    );
    assert_eq!(seen["headers"]["x-api-key"], "k-123");
    assert_eq!(seen["headers"]["content-type"], "application/json");
    let wire: Value = serde_json::from_str(seen["body"].as_str().expect("body")).expect("json");
    assert!(
        wire["id"].is_u64(),
        "the backend sees its own numeric id: {wire}"
    );
    assert_eq!(wire["method"], "echo_request");
    assert_eq!(wire["params"], serde_json::json!([]));
}

#[tokio::test]
async fn connections_are_kept_alive_and_reused() {
    let upstream = FaultUpstream::start().await;
    let backend = HttpBackend::builder("b", upstream.url())
        .build()
        .expect("backend");
    for i in 0..20u64 {
        let resp = backend
            .clone()
            .oneshot(request("ping", Id::from(i)))
            .await
            .expect("answer");
        assert_eq!(resp.id(), &Id::from(i));
    }
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 20);
    assert_eq!(
        upstream.connections.load(Ordering::SeqCst),
        1,
        "one pooled connection for sequential calls"
    );
}

/// `n` calls at once; every one must be answered.
async fn concurrent(backend: &HttpBackend, n: u64) {
    let calls = (0..n).map(|i| backend.clone().oneshot(request("ping", Id::from(i))));
    for answer in futures_util::future::join_all(calls).await {
        answer.expect("answer");
    }
}

#[tokio::test]
async fn at_most_max_idle_connections_are_kept() {
    // Slow answers: six calls at once need six connections.
    let upstream = FaultUpstream::start_delayed(Duration::from_millis(50)).await;
    let backend = HttpBackend::builder("b", upstream.url())
        .pool_max_idle_per_host(2)
        .build()
        .expect("backend");
    concurrent(&backend, 6).await;
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 6);
    // Two were kept: the next six calls reuse them and open four.
    concurrent(&backend, 6).await;
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 10);
    // Sequential calls reuse one.
    for i in 0..5u64 {
        backend
            .clone()
            .oneshot(request("ping", Id::from(i)))
            .await
            .expect("answer");
    }
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn idle_connections_close_after_the_idle_timeout() {
    let upstream = FaultUpstream::start().await;
    let backend = HttpBackend::builder("b", upstream.url())
        .pool_idle_timeout(Duration::from_millis(100))
        .build()
        .expect("backend");
    let call = |i: u64| backend.clone().oneshot(request("ping", Id::from(i)));
    call(1).await.expect("answer");
    call(2).await.expect("answer");
    assert_eq!(
        upstream.connections.load(Ordering::SeqCst),
        1,
        "reused while fresh"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    call(3).await.expect("answer");
    assert_eq!(
        upstream.connections.load(Ordering::SeqCst),
        2,
        "an idle connection past the timeout is not reused"
    );
}

/// A server that answers one call per connection and then closes it (a
/// keep-alive connection the server ends while the client holds it idle).
async fn one_call_per_connection() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // The head and a body of content-length bytes.
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                // The backend's own wire id back.
                let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
                let call: Value = serde_json::from_slice(&buf[end..]).unwrap_or_default();
                let body = format!(r#"{{"jsonrpc":"2.0","id":{},"result":"0x1"}}"#, call["id"]);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                // No `connection: close`: the client pools it; then it ends.
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_connection_the_server_closed_is_replaced_without_an_error() {
    let (addr, accepted) = one_call_per_connection().await;
    let backend = HttpBackend::builder("b", format!("http://{addr}/"))
        .build()
        .expect("backend");
    for i in 0..5u64 {
        let resp = backend
            .clone()
            .oneshot(request("ping", Id::from(i)))
            .await
            .expect("every call answered, on a new connection when the last one closed");
        assert_eq!(resp.id(), &Id::from(i));
        // Give the client a moment to see the close (the race where it has
        // not is covered by resending an unwritten request).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn chunked_answers_in_pieces_are_read_whole_on_one_kept_alive_connection() {
    let upstream = ChunkedUpstream::start(5_000).await;
    let addr = upstream.addr;
    let backend = HttpBackend::builder("b", format!("http://{addr}/"))
        .build()
        .expect("backend");
    for i in 0..5u64 {
        let resp = backend
            .clone()
            .oneshot(request("big", Id::from(i)))
            .await
            .expect("a chunked answer");
        assert_eq!(resp.id(), &Id::from(i));
        let result: String = resp
            .result_json()
            .expect("a result")
            .deserialize()
            .expect("a string");
        assert_eq!(result.len(), 5_000);
        assert!(result.bytes().all(|b| b == b'a'));
    }
    assert_eq!(
        upstream.connections.load(Ordering::SeqCst),
        1,
        "a chunked answer read to its end leaves the connection reusable"
    );
    // Over the response limit: refused while it arrives.
    let small = HttpBackend::builder("b", format!("http://{addr}/"))
        .max_response_size(4_000)
        .build()
        .expect("backend");
    let err = small
        .oneshot(request("big", Id::from(9u64)))
        .await
        .expect_err("over the limit");
    assert!(matches!(err, RpcError::ResponseTooLarge { .. }), "{err}");
}

#[tokio::test]
async fn a_passed_deadline_is_not_sent() {
    let upstream = FaultUpstream::start().await;
    let backend = HttpBackend::builder("b", upstream.url())
        .build()
        .expect("backend");
    let mut req = request("ping", Id::from(1u64));
    req.extensions_mut().insert(Deadline(
        tokio::time::Instant::now() - Duration::from_millis(1),
    ));
    let err = backend.oneshot(req).await.expect_err("deadline passed");
    assert!(matches!(err, RpcError::DeadlineExceeded), "{err}");
    assert_eq!(err.delivery(), Delivery::NotSent);
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_request_deadline_shortens_the_backend_timeout() {
    let upstream = FaultUpstream::start().await;
    let backend = HttpBackend::builder("slowpoke", upstream.url())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("backend");
    let mut req = Request::new("fault_slow")
        .with_id(Id::from(1u64))
        .with_params(RawJson::from_static("[5000]").expect("json"));
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_millis(300)));
    let started = std::time::Instant::now();
    let err = backend.oneshot(req).await.expect_err("times out");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(&err, RpcError::Timeout { backend: Some(b), .. } if &**b == "slowpoke"),
        "{err}"
    );
    assert_eq!(err.delivery(), Delivery::MaybeSent);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn failures_carry_delivery_and_retry_facts() {
    let upstream = FaultUpstream::start().await;
    let backend = HttpBackend::builder("b", upstream.url())
        .max_response_size(1000)
        .build()
        .expect("backend");
    let call = |method: &'static str, params: &'static str| {
        let backend = backend.clone();
        async move {
            let req = Request::new(method)
                .with_id(Id::from(1u64))
                .with_params(RawJson::from_static(params).expect("json"));
            backend.oneshot(req).await.expect_err("fails")
        }
    };
    let e = call("fault_429", "[]").await;
    assert!(matches!(e, RpcError::HttpStatus { status, .. } if status == 429));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    assert!(e.is_retryable());
    let e = call("fault_status", "[501]").await;
    assert!(!e.is_retryable(), "501 Not Implemented will not get better");
    let e = call("fault_garbage", "[]").await;
    assert!(matches!(e, RpcError::InvalidResponse { .. }), "{e}");
    let e = call("fault_huge", "[5000]").await;
    assert!(
        matches!(e, RpcError::ResponseTooLarge { limit: 1000, .. }),
        "{e}"
    );
    let e = call("fault_drop", "[]").await;
    assert!(matches!(e, RpcError::ConnectionClosed { .. }), "{e}");
    assert_eq!(e.delivery(), Delivery::MaybeSent);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dead = HttpBackend::builder("dead", format!("http://127.0.0.1:{port}/key-xyz"))
        .build()
        .expect("backend");
    let e = dead
        .oneshot(request("ping", Id::from(1u64)))
        .await
        .expect_err("refused");
    assert!(matches!(e, RpcError::Connect { .. }), "{e}");
    assert_eq!(e.delivery(), Delivery::NotSent);
    assert!(!e.to_string().contains("key-xyz"), "no URL in errors: {e}");
}

#[tokio::test]
async fn notifications_are_sent_without_an_id() {
    let upstream = FaultUpstream::start().await;
    let backend = HttpBackend::builder("b", upstream.url())
        .build()
        .expect("backend");
    let resp = backend
        .oneshot(Request::new("notify_me"))
        .await
        .expect("any 2xx is fine");
    assert_eq!(resp.id(), &Id::Null);
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 1);
}

/// A self-signed certificate for `localhost` / 127.0.0.1 and the matching
/// server config and client config (trusting only that certificate).
fn tls_pair() -> (std::sync::Arc<rustls::ServerConfig>, rustls::ClientConfig) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("cert");
    let cert_der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key)
        .expect("server config");
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (std::sync::Arc::new(server), client)
}

#[tokio::test]
async fn https_with_a_custom_root() {
    let (server, client) = tls_pair();
    let upstream = FaultUpstream::start_tls(server).await;
    let backend = HttpBackend::builder(
        "tls",
        format!("https://localhost:{}/", upstream.addr.port()),
    )
    .tls_config(client)
    .build()
    .expect("backend");
    for i in 0..3u64 {
        let resp = backend
            .clone()
            .oneshot(request("over_tls", Id::from(i)))
            .await
            .expect("answer over TLS");
        let v: Value = resp
            .result_json()
            .expect("result")
            .deserialize()
            .expect("json");
        assert_eq!(v["method"], "over_tls");
    }
    assert_eq!(
        upstream.connections.load(Ordering::SeqCst),
        1,
        "the TLS connection is reused"
    );
}

#[tokio::test]
async fn an_http2_backend_shares_one_connection() {
    // The server offers h2 by ALPN: calls at once share one connection
    // (HTTP/1.1 would need one each).
    let (server, client) = tls_pair();
    let upstream = FaultUpstream::start_tls(server).await;
    let backend =
        HttpBackend::builder("h2", format!("https://localhost:{}/", upstream.addr.port()))
            .tls_config(client)
            .build()
            .expect("backend");
    concurrent(&backend, 1).await;
    concurrent(&backend, 20).await;
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 21);
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn https_to_an_untrusted_certificate_fails_to_connect() {
    let (server, _) = tls_pair();
    let upstream = FaultUpstream::start_tls(server).await;
    // Default roots (webpki) do not trust the self-signed certificate.
    let backend = HttpBackend::builder(
        "tls",
        format!("https://localhost:{}/", upstream.addr.port()),
    )
    .build()
    .expect("backend");
    let err = backend
        .oneshot(request("over_tls", Id::from(1u64)))
        .await
        .expect_err("untrusted");
    assert!(matches!(err, RpcError::Connect { .. }), "{err}");
    assert_eq!(err.delivery(), Delivery::NotSent);
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 0);
}

/// A backend that sends the calls of a client batch together, with the
/// given timeout and batch window.
fn batching(upstream: &FaultUpstream, timeout: Duration, window: Duration) -> HttpBackend {
    HttpBackend::builder("b", upstream.url())
        .timeout(timeout)
        .max_batch(10)
        .batch_window(window)
        .build()
        .expect("backend")
}

/// A call's outcome and how long it took.
type Timed = tokio::task::JoinHandle<(Result<rpc_core::Response, RpcError>, Duration)>;

/// Two calls of one client batch of `len` calls, queued for one upstream
/// batch, each with its own deadline (`None`: the backend's timeout
/// alone). The batch's other calls are started and never reach the
/// backend (held elsewhere, as by a concurrency queue): the upstream batch
/// goes when its window ends.
fn batch_pair(
    backend: &HttpBackend,
    slow_ms: u64,
    deadlines: [Option<Duration>; 2],
    len: usize,
) -> (rpc_core::batch::BatchGroup, [Timed; 2]) {
    let group = rpc_core::batch::BatchGroup::new(len);
    for held in 2..len {
        group.item(held).start();
    }
    let started = std::time::Instant::now();
    let calls = [0usize, 1].map(|index| {
        let item = group.item(index);
        item.start();
        let mut req = Request::new("fault_slow")
            .with_id(Id::from(index as u64))
            .with_params(RawJson::from_bytes(format!("[{slow_ms}]")).expect("json"));
        if let Some(after) = deadlines[index] {
            req.extensions_mut().insert(Deadline::after(after));
        }
        req.extensions_mut().insert(item);
        let backend = backend.clone();
        tokio::spawn(async move { (backend.oneshot(req).await, started.elapsed()) })
    });
    (group, calls)
}

/// The calls of an upstream batch keep their own deadlines (the batch's
/// task holds them with one timer): each is answered with a timeout when
/// its own time is up, not before and not with its batch-mate; an answer
/// that comes before a call's deadline still reaches it.
#[tokio::test]
async fn the_calls_of_an_upstream_batch_keep_their_own_deadlines() {
    let upstream = FaultUpstream::start().await;
    let backend = batching(&upstream, Duration::from_secs(30), Duration::from_millis(2));

    // The batch answers after 5 s: both calls time out, each at its deadline.
    let short = Duration::from_millis(300);
    let long = Duration::from_millis(900);
    let (_, [a, b]) = batch_pair(&backend, 5_000, [Some(short), Some(long)], 2);
    let (a, a_took) = a.await.expect("task");
    let (b, b_took) = b.await.expect("task");
    for (result, took, deadline) in [(&a, a_took, short), (&b, b_took, long)] {
        let err = result.as_ref().expect_err("timed out");
        assert!(
            matches!(err, RpcError::Timeout { backend: Some(n), .. } if &**n == "b"),
            "{err}"
        );
        assert!(took >= deadline, "answered before its deadline: {took:?}");
    }
    assert!(a_took < b_took, "{a_took:?} {b_took:?}");

    // The batch answers after 600 ms: the call with 200 ms times out, the
    // one with 10 s gets its answer.
    let (_, [a, b]) = batch_pair(
        &backend,
        600,
        [
            Some(Duration::from_millis(200)),
            Some(Duration::from_secs(10)),
        ],
        2,
    );
    let (a, _) = a.await.expect("task");
    let (b, _) = b.await.expect("task");
    assert!(matches!(a, Err(RpcError::Timeout { .. })), "{a:?}");
    let b = b.expect("answered before its deadline");
    assert_eq!(b.id(), &Id::from(1u64));
    assert!(b.error_object().is_none(), "{b:?}");
}

/// A batch the backend does not answer within its own timeout fails as a
/// unit: its calls, which still have time, are on their way again together
/// (counted as unsettled for the next backend's batch). The batch waits
/// out a 100 ms window for a call held elsewhere, so its calls reached the
/// backend well before it was sent: a timer of their own would answer them
/// first, alone, and leave them counted as placed.
#[tokio::test]
async fn an_upstream_batch_past_the_backend_timeout_fails_over_as_a_unit() {
    let upstream = FaultUpstream::start().await;
    let backend = batching(
        &upstream,
        Duration::from_millis(300),
        Duration::from_millis(100),
    );
    let (group, [a, b]) = batch_pair(&backend, 5_000, [None, None], 3);
    for call in [a, b] {
        let (result, took) = call.await.expect("task");
        assert!(
            matches!(result, Err(RpcError::Timeout { .. })),
            "{result:?}"
        );
        assert!(took >= Duration::from_millis(300), "{took:?}");
    }
    // Both calls on their way again, with the one that never came.
    assert_eq!(group.unsettled(), 3, "the calls go on together");
}

/// A backend that gathers single calls from any client as `mode` says, in
/// upstream batches of at most `max` calls.
fn gathering(upstream: &FaultUpstream, mode: CrossClient, max: usize) -> HttpBackend {
    HttpBackend::builder("b", upstream.url())
        .max_batch(max)
        .cross_client_batching(mode)
        .build()
        .expect("backend")
}

/// `n` single calls (no client batch) at once, each from its own task as
/// from its own client; each answer checked against its own call.
async fn singles_at_once(
    backend: &HttpBackend,
    n: u64,
) -> Vec<Result<rpc_core::Response, RpcError>> {
    let calls = (0..n).map(|i| {
        let backend = backend.clone();
        tokio::spawn(async move {
            let req = Request::new("gather_me")
                .with_id(Id::from(i))
                .with_params(RawJson::from_bytes(format!("[{i}]")).expect("json"));
            backend.oneshot(req).await
        })
    });
    let all = futures_util::future::join_all(calls);
    // A bound for the test, not a measurement: nothing here waits long.
    tokio::time::timeout(Duration::from_secs(10), all)
        .await
        .expect("every call answered")
        .into_iter()
        .map(|joined| joined.expect("task"))
        .collect()
}

fn assert_own_answers(answers: &[Result<rpc_core::Response, RpcError>]) {
    for (i, answer) in answers.iter().enumerate() {
        let resp = answer.as_ref().expect("answered");
        assert_eq!(resp.id(), &Id::from(i as u64), "its own id");
        let result: Value = resp
            .result_json()
            .expect("result")
            .deserialize()
            .expect("json");
        assert_eq!(result["params"], serde_json::json!([i]), "its own answer");
    }
}

/// Single calls from different clients within the window, or ready in the
/// same turn of the runtime (here: six tasks spawned at once on the test's
/// one thread), go upstream as one batch; each gets its own answer under
/// its own id.
#[tokio::test]
async fn single_calls_within_the_window_go_upstream_together() {
    for mode in [
        CrossClient::Window(Duration::from_secs(2)),
        CrossClient::SameTurn,
    ] {
        let upstream = FaultUpstream::start().await;
        let backend = gathering(&upstream, mode, 100);
        let answers = singles_at_once(&backend, 6).await;
        assert_own_answers(&answers);
        assert_eq!(upstream.items.load(Ordering::SeqCst), 6);
        assert_eq!(
            upstream.calls.load(Ordering::SeqCst),
            1,
            "one upstream request for six clients' calls ({mode:?})"
        );
    }
}

/// Gathering by turn waits for nothing: a call alone is sent in the turn
/// it arrives, answered as fast as without gathering (here: within the
/// test's bound, where a window would hold it 60 s).
#[tokio::test]
async fn a_call_alone_in_its_turn_is_sent_at_once() {
    let upstream = FaultUpstream::start().await;
    let backend = gathering(&upstream, CrossClient::SameTurn, 100);
    for i in 0..3u64 {
        let resp = tokio::time::timeout(
            Duration::from_secs(10),
            backend.clone().oneshot(request("ping", Id::from(i))),
        )
        .await
        .expect("not held")
        .expect("answer");
        assert_eq!(resp.id(), &Id::from(i));
    }
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 3);
}

/// Without a window (the default), each single call is its own request.
#[tokio::test]
async fn without_a_window_single_calls_go_alone() {
    let upstream = FaultUpstream::start().await;
    let backend = HttpBackend::builder("b", upstream.url())
        .build()
        .expect("backend");
    let answers = singles_at_once(&backend, 6).await;
    assert_own_answers(&answers);
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 6);
    let upstream = FaultUpstream::start().await;
    let backend = gathering(&upstream, CrossClient::Off, 100);
    assert_own_answers(&singles_at_once(&backend, 3).await);
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 3);
}

/// A full gathering goes at once, not at the window's end: with a 60 s
/// window, six calls in batches of three are answered (within the test's
/// 10 s bound) in two upstream requests. The calls left over go when their
/// window ends.
#[tokio::test]
async fn a_full_gathering_goes_at_once_and_the_rest_when_its_window_ends() {
    let upstream = FaultUpstream::start().await;
    let backend = gathering(&upstream, CrossClient::Window(Duration::from_secs(60)), 3);
    let answers = singles_at_once(&backend, 6).await;
    assert_own_answers(&answers);
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 2);

    let upstream = FaultUpstream::start().await;
    let backend = gathering(&upstream, CrossClient::Window(Duration::from_secs(2)), 3);
    let answers = singles_at_once(&backend, 7).await;
    assert_own_answers(&answers);
    assert_eq!(upstream.items.load(Ordering::SeqCst), 7);
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 3, "3 + 3 + 1");
}

/// A gathered batch the backend refuses is sent again call by call, and
/// later gatherings are smaller; every call still gets its own answer.
#[tokio::test]
async fn a_refused_gathering_is_sent_call_by_call() {
    let upstream = FaultUpstream::start().await;
    upstream.set_batch_mode(tests::BatchMode::Refuse400);
    let backend = gathering(&upstream, CrossClient::SameTurn, 100);
    let answers = singles_at_once(&backend, 4).await;
    assert_own_answers(&answers);
    assert_eq!(
        upstream.calls.load(Ordering::SeqCst),
        1 + 4,
        "the refused batch, then each call alone"
    );
}

/// A call whose deadline passes while it waits for others is answered then,
/// as not sent (it never was); a call with time left is sent.
#[tokio::test]
async fn a_call_past_its_deadline_in_the_window_is_not_sent() {
    let upstream = FaultUpstream::start().await;
    let backend = gathering(
        &upstream,
        CrossClient::Window(Duration::from_millis(400)),
        100,
    );
    let mut late = Request::new("gather_me").with_id(Id::from(1u64));
    late.extensions_mut()
        .insert(Deadline::after(Duration::from_millis(100)));
    let on_time = Request::new("gather_me").with_id(Id::from(2u64));
    let (late, on_time) = tokio::join!(
        backend.clone().oneshot(late),
        backend.clone().oneshot(on_time)
    );
    let err = late.expect_err("timed out");
    assert!(matches!(err, RpcError::DeadlineExceeded), "{err}");
    assert_eq!(err.delivery(), Delivery::NotSent, "{err}");
    assert_eq!(on_time.expect("answered").id(), &Id::from(2u64));
    assert_eq!(
        upstream.items.load(Ordering::SeqCst),
        1,
        "only the call on time"
    );
}
