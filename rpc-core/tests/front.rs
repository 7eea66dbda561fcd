//! The HTTP front driven in-process, as a plain tower service.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::StatusCode;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use rpc_core::filter::{MethodFilter, MethodFilterLayer};
use rpc_core::server::{HttpFront, ServerConfig};
use rpc_core::{
    BoxJsonRpcService, Deadline, ErrorObject, Id, JsonRpcService, RawJson, Request, Response,
    RpcError,
};
use serde_json::Value;
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};

/// An inner service answering `{"method": .., "params": ..}` and counting calls.
fn echo(calls: Arc<AtomicUsize>) -> impl JsonRpcService {
    service_fn(move |req: Request| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let params = req.params().map_or("null".into(), |p| p.to_string());
            let result = format!(r#"{{"method":{:?},"params":{params}}}"#, req.method());
            Ok::<_, RpcError>(Response::result(
                req.id().cloned().unwrap_or_default(),
                RawJson::from_bytes(result).expect("valid json"),
            ))
        }
    })
}

/// A batch of calls to method `m`, with these ids.
fn batch_of(ids: std::ops::Range<u32>) -> String {
    let calls: Vec<String> = ids
        .map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"m"}}"#))
        .collect();
    format!("[{}]", calls.join(","))
}

async fn post<S: JsonRpcService>(
    front: &HttpFront<S>,
    body: &str,
) -> (StatusCode, http::HeaderMap, String) {
    let req = http::Request::post("/")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .expect("request");
    send(front, req).await
}

async fn send<S: JsonRpcService, B>(
    front: &HttpFront<S>,
    req: http::Request<B>,
) -> (StatusCode, http::HeaderMap, String)
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<rpc_core::BoxError>,
{
    let resp = front.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        headers,
        String::from_utf8(body.to_vec()).expect("utf8"),
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("json body")
}

#[tokio::test]
async fn single_call_is_answered_with_its_id() {
    let front = HttpFront::new(echo(Default::default()), ServerConfig::default());
    let (status, headers, body) = post(
        &front,
        r#"{"jsonrpc":"2.0","id":1.0,"method":"eth_chainId","params":[]}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        body,
        r#"{"jsonrpc":"2.0","id":1.0,"result":{"method":"eth_chainId","params":[]}}"#
    );
}

#[tokio::test]
async fn notifications_get_no_answer_but_are_executed() {
    let calls = Arc::new(AtomicUsize::new(0));
    let front = HttpFront::new(echo(calls.clone()), ServerConfig::default());
    let (status, _, body) = post(&front, r#"{"jsonrpc":"2.0","method":"notify"}"#).await;
    assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""));
    let (status, _, body) = post(
        &front,
        r#"[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","method":"b"}]"#,
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn batch_is_answered_in_order_with_per_item_errors() {
    let front = HttpFront::new(echo(Default::default()), ServerConfig::default());
    let (status, _, body) = post(
        &front,
        r#"[{"jsonrpc":"2.0","id":"a","method":"one"},
            {"jsonrpc":"2.0","method":"notify"},
            {"jsonrpc":"1.0","id":2,"method":"bad"},
            5,
            {"jsonrpc":"2.0","id":3,"method":"three","params":{"x":1}}]"#,
    )
    .await;
    assert_eq!(status, 200);
    let v = json(&body);
    let items = v.as_array().expect("array");
    assert_eq!(items.len(), 4, "the notification gets no element: {body}");
    assert_eq!(items[0]["id"], "a");
    assert_eq!(items[0]["result"]["method"], "one");
    assert_eq!(
        (items[1]["id"].clone(), items[1]["error"]["code"].clone()),
        (2.into(), (-32600).into())
    );
    assert_eq!(
        (items[2]["id"].clone(), items[2]["error"]["code"].clone()),
        (Value::Null, (-32600).into())
    );
    assert_eq!(items[3]["result"]["params"]["x"], 1);
}

#[tokio::test(start_paused = true)]
async fn batch_items_run_concurrently_with_a_bound() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (f, p) = (in_flight.clone(), peak.clone());
    let slow = service_fn(move |req: Request| {
        let (f, p) = (f.clone(), p.clone());
        async move {
            let now = f.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            f.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, RpcError>(Response::result(
                req.id().cloned().unwrap_or_default(),
                RawJson::NULL,
            ))
        }
    });
    let front = HttpFront::new(slow, ServerConfig::default().batch_concurrency(4));
    let body = batch_of(0..40);
    let started = tokio::time::Instant::now();
    let (status, _, body) = post(&front, &body).await;
    assert_eq!(status, 200);
    let ids: Vec<u64> = json(&body)
        .as_array()
        .expect("array")
        .iter()
        .map(|i| i["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, (0..40).collect::<Vec<_>>(), "answers in request order");
    assert_eq!(
        peak.load(Ordering::SeqCst),
        4,
        "at most 4 at once, and really concurrent"
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(1000),
        "40 calls / 4 at once * 100 ms"
    );
}

#[tokio::test]
async fn whole_request_failures() {
    let front = HttpFront::new(
        echo(Default::default()),
        ServerConfig::default().max_batch_len(2).max_body_size(1000),
    );
    for (body, status, code) in [
        ("{not json", 400, -32700),
        ("", 400, -32700),
        ("[]", 400, -32600),
        ("42", 400, -32600),
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","id":2,"method":"a"},{"jsonrpc":"2.0","id":3,"method":"a"}]"#,
            413,
            -32014,
        ),
    ] {
        let (s, _, text) = post(&front, body).await;
        let v = json(&text);
        assert_eq!(
            (s.as_u16(), v["error"]["code"].as_i64()),
            (status, Some(code)),
            "{body}"
        );
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["jsonrpc"], "2.0");
    }
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":["{}"]}}"#,
        "x".repeat(2000)
    );
    let (s, _, text) = post(&front, &big).await;
    assert_eq!(
        (s.as_u16(), json(&text)["error"]["code"].as_i64()),
        (413, Some(-32021))
    );
}

#[tokio::test]
async fn body_limit_holds_without_content_length() {
    let front = HttpFront::new(
        echo(Default::default()),
        ServerConfig::default().max_body_size(1000),
    );
    let chunks = (0..10).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b' '; 200]))));
    let req = http::Request::post("/")
        .body(StreamBody::new(stream::iter(chunks)))
        .expect("request");
    let (status, _, text) = send(&front, req).await;
    assert_eq!(
        (status.as_u16(), json(&text)["error"]["code"].as_i64()),
        (413, Some(-32021))
    );
}

#[tokio::test(start_paused = true)]
async fn slow_bodies_time_out_and_close_the_connection() {
    use futures_util::StreamExt;
    let front = HttpFront::new(
        echo(Default::default()),
        ServerConfig::default().body_read_timeout(Duration::from_secs(5)),
    );
    let first = stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from_static(
        b"{\"jsonrpc\"",
    )))]);
    let req = http::Request::post("/")
        .body(StreamBody::new(first.chain(stream::pending())))
        .expect("request");
    let (status, headers, text) = send(&front, req).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(headers["connection"], "close");
    assert_eq!(json(&text)["error"]["code"], -32600);
}

#[tokio::test]
async fn http_level_checks() {
    let front = HttpFront::new(echo(Default::default()), ServerConfig::default());
    let get = |uri: &str| {
        http::Request::get(uri)
            .body(Full::new(Bytes::new()))
            .expect("request")
    };
    let (status, _, body) = send(&front, get("/healthz")).await;
    assert_eq!(
        (status, json(&body)["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );

    let (status, headers, body) = send(&front, get("/")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");
    assert_eq!(json(&body)["error"]["code"], -32600);

    let req = http::Request::post("/")
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"m"}"#,
        )))
        .expect("request");
    let (status, _, body) = send(&front, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(json(&body)["error"]["code"], -32600);

    // No content type at all is accepted (curl -d without -H).
    let req = http::Request::post("/")
        .body(Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"m"}"#,
        )))
        .expect("request");
    assert_eq!(send(&front, req).await.0, StatusCode::OK);
}

/// A service that fails every call with a clone of the given error.
fn failing(make: fn() -> RpcError) -> impl JsonRpcService {
    service_fn(move |_req: Request| async move { Err::<Response, _>(make()) })
}

#[tokio::test]
async fn every_rpc_error_maps_to_its_documented_code_and_status() {
    /// A way to fail, the HTTP status and the code the client must see.
    type Case = (fn() -> RpcError, u16, i64);
    let cases: Vec<Case> = vec![
        (
            || RpcError::Connect {
                backend: "b".into(),
                source: "refused".into(),
            },
            503,
            -32011,
        ),
        (
            || RpcError::Timeout {
                backend: Some("b".into()),
                elapsed: Duration::from_secs(1),
            },
            504,
            -32015,
        ),
        (|| RpcError::DeadlineExceeded, 504, -32015),
        (
            || RpcError::HttpStatus {
                backend: "b".into(),
                status: StatusCode::BAD_GATEWAY,
                retry_after: None,
            },
            503,
            -32011,
        ),
        (
            || RpcError::ConnectionClosed {
                backend: "b".into(),
                source: "reset".into(),
            },
            503,
            -32011,
        ),
        (
            || RpcError::InvalidResponse {
                backend: "b".into(),
                reason: "garbage".into(),
            },
            503,
            -32011,
        ),
        (
            || RpcError::ResponseTooLarge {
                backend: "b".into(),
                limit: 10,
            },
            502,
            -32020,
        ),
        (
            || RpcError::NoBackendAvailable { retry_after: None },
            503,
            -32011,
        ),
        (
            || RpcError::MethodNotAllowed {
                message: "nope".into(),
            },
            403,
            -32601,
        ),
        (
            || RpcError::InvalidParams {
                message: "bad".into(),
            },
            400,
            -32602,
        ),
        (
            || RpcError::RateLimited {
                retry_after: Some(Duration::from_millis(1500)),
            },
            429,
            -32016,
        ),
        (|| RpcError::Overloaded, 503, -32011),
        (
            || RpcError::QuorumNotReached {
                reason: "1 of 3".into(),
                votes: Vec::new(),
            },
            502,
            -32019,
        ),
        (|| RpcError::Internal("bug".into()), 500, -32603),
    ];
    for (make, status, code) in cases {
        let front = HttpFront::new(failing(make), ServerConfig::default());
        let (s, headers, body) = post(&front, r#"{"jsonrpc":"2.0","id":"q","method":"m"}"#).await;
        let v = json(&body);
        assert_eq!(
            (s.as_u16(), v["error"]["code"].as_i64()),
            (status, Some(code)),
            "{}",
            make()
        );
        assert_eq!(v["id"], "q");
        assert!(
            !body.contains("\"b\"") && !body.contains("backend `b`"),
            "no backend names leak: {body}"
        );
        if code == -32016 {
            assert_eq!(headers["retry-after"], "2", "rounded up to whole seconds");
        }
        // In a batch the same failure is one element with HTTP 200.
        let (s, _, body) = post(&front, r#"[{"jsonrpc":"2.0","id":1,"method":"m"}]"#).await;
        assert_eq!(
            (s.as_u16(), json(&body)[0]["error"]["code"].as_i64()),
            (200, Some(code))
        );
    }
}

#[tokio::test]
async fn backend_error_objects_pass_through_with_200() {
    let svc = service_fn(|req: Request| async move {
        let err = ErrorObject::new(3, "execution reverted")
            .with_data(RawJson::from_static(r#""0x08c3""#).expect("json"));
        Ok::<_, RpcError>(Response::error(req.id().cloned().unwrap_or_default(), err))
    });
    let front = HttpFront::new(svc, ServerConfig::default());
    let (status, _, body) = post(&front, r#"{"jsonrpc":"2.0","id":9,"method":"eth_call"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        r#"{"jsonrpc":"2.0","id":9,"error":{"code":3,"message":"execution reverted","data":"0x08c3"}}"#
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_service_is_cut_at_the_deadline() {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let s = seen.clone();
    let hang = service_fn(move |req: Request| {
        *s.lock().expect("lock") = req.extensions().get::<Deadline>().copied();
        std::future::pending::<Result<Response, RpcError>>()
    });
    let front = HttpFront::new(
        hang,
        ServerConfig::default().request_timeout(Duration::from_secs(7)),
    );
    let started = tokio::time::Instant::now();
    let (status, _, body) = post(&front, r#"{"jsonrpc":"2.0","id":1,"method":"m"}"#).await;
    assert_eq!(
        (status.as_u16(), json(&body)["error"]["code"].as_i64()),
        (504, Some(-32015))
    );
    assert_eq!(started.elapsed(), Duration::from_secs(7));
    let deadline = seen
        .lock()
        .expect("lock")
        .expect("the call carried a deadline");
    assert_eq!(deadline.0, started + Duration::from_secs(7));
}

#[tokio::test(start_paused = true)]
async fn a_batch_keeps_its_answers_and_times_out_the_rest_at_the_deadline() {
    // `fast` answers, `slow` hangs: at the deadline the batch is answered,
    // with every answer in hand and the timeout error for the others (a
    // notification still gets nothing, an invalid item its own error).
    let svc = service_fn(|req: Request| async move {
        if req.method() == "slow" {
            std::future::pending::<()>().await;
        }
        Ok::<_, RpcError>(Response::result(
            req.id().cloned().unwrap_or_default(),
            RawJson::from_static("\"done\"").expect("json"),
        ))
    });
    let front = HttpFront::new(
        svc,
        ServerConfig::default().request_timeout(Duration::from_secs(5)),
    );
    let started = tokio::time::Instant::now();
    let (status, _, body) = post(
        &front,
        r#"[{"jsonrpc":"2.0","id":1,"method":"slow"},
            {"jsonrpc":"2.0","id":2,"method":"fast"},
            {"jsonrpc":"2.0","method":"slow"},
            {"jsonrpc":"2.0","id":3,"method":"slow"},
            {"id":4},
            {"jsonrpc":"2.0","id":5,"method":"fast"}]"#,
    )
    .await;
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(status, StatusCode::OK);
    let answers = json(&body);
    let answers = answers.as_array().expect("a batch answer");
    let ids: Vec<i64> = answers
        .iter()
        .map(|a| a["id"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5], "{body}");
    assert_eq!(answers[0]["error"]["code"], -32015, "{body}");
    assert_eq!(answers[1]["result"], "done");
    assert_eq!(answers[2]["error"]["code"], -32015, "{body}");
    assert_eq!(answers[3]["error"]["code"], -32600, "{body}");
    assert_eq!(answers[4]["result"], "done");
}

#[tokio::test]
async fn a_panicking_service_yields_an_internal_error() {
    let boom = service_fn(|req: Request| async move {
        if req.method() == "boom" {
            panic!("bug in a user layer");
        }
        Ok::<_, RpcError>(Response::result(
            req.id().cloned().unwrap_or_default(),
            RawJson::NULL,
        ))
    });
    let front = HttpFront::new(boom, ServerConfig::default());
    let (status, _, body) = post(&front, r#"{"jsonrpc":"2.0","id":1,"method":"boom"}"#).await;
    assert_eq!(
        (status.as_u16(), json(&body)["error"]["code"].as_i64()),
        (500, Some(-32603))
    );
    let (status, _, body) = post(
        &front,
        r#"[{"jsonrpc":"2.0","id":1,"method":"boom"},{"jsonrpc":"2.0","id":2,"method":"ok"}]"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)[0]["error"]["code"], -32603);
    assert_eq!(json(&body)[1]["result"], Value::Null);
}

/// A service whose `call` itself panics for method `boom` (not its future).
#[derive(Clone)]
struct PanicsWhenCalled;

impl Service<Request> for PanicsWhenCalled {
    type Response = Response;
    type Error = RpcError;
    type Future = std::future::Ready<Result<Response, RpcError>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), RpcError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        assert!(req.method() != "boom", "bug in a user layer's call");
        std::future::ready(Ok(Response::result(
            req.id().cloned().unwrap_or_default(),
            RawJson::NULL,
        )))
    }
}

#[tokio::test]
async fn a_batch_call_that_panics_when_made_is_answered_and_the_rest_go_on() {
    let front = HttpFront::new(PanicsWhenCalled, ServerConfig::default());
    let (status, _, body) = post(
        &front,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ok"},{"jsonrpc":"2.0","id":2,"method":"boom"},{"jsonrpc":"2.0","id":3,"method":"ok"},{"jsonrpc":"2.0","id":4,"method":"boom"},{"jsonrpc":"2.0","id":5,"method":"ok"}]"#,
    )
    .await;
    assert_eq!(status, 200);
    let answers = json(&body);
    let codes: Vec<Option<i64>> = (0..5)
        .map(|i| answers[i]["error"]["code"].as_i64())
        .collect();
    assert_eq!(codes, [None, Some(-32603), None, Some(-32603), None]);
    let ids: Vec<i64> = (0..5).map(|i| answers[i]["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
}

/// A service that takes 100 ms per call and has room for one at a time.
fn slow_one_at_a_time() -> impl JsonRpcService {
    let slow = service_fn(|req: Request| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, RpcError>(Response::result(
            req.id().cloned().unwrap_or_default(),
            RawJson::NULL,
        ))
    });
    ServiceBuilder::new().concurrency_limit(1).service(slow)
}

/// A batch on a service that is ready for one call at a time: each call
/// waits its turn (none holds capacity it does not use), all answered.
#[tokio::test(start_paused = true)]
async fn batch_calls_wait_for_a_service_that_is_not_ready() {
    let one_at_a_time = slow_one_at_a_time();
    let front = HttpFront::new(
        one_at_a_time,
        ServerConfig::default().request_timeout(Duration::from_secs(5)),
    );
    let body = batch_of(0..6);
    let started = tokio::time::Instant::now();
    let (status, _, body) = post(&front, &body).await;
    assert_eq!(status, 200);
    let answers = json(&body);
    for i in 0..6 {
        assert_eq!(answers[i]["id"], i, "{body}");
        assert_eq!(answers[i]["result"], Value::Null, "{body}");
    }
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(600),
        "one after another"
    );
}

#[tokio::test]
async fn the_front_restores_the_client_id() {
    let wrong_id = service_fn(|_req: Request| async {
        Ok::<_, RpcError>(Response::result(Id::from(999u64), RawJson::NULL))
    });
    let front = HttpFront::new(wrong_id, ServerConfig::default());
    let (_, _, body) = post(&front, r#"{"jsonrpc":"2.0","id":"mine","method":"m"}"#).await;
    assert_eq!(json(&body)["id"], "mine");
}

#[tokio::test]
async fn method_filter_rejects_without_touching_the_inner_service() {
    let calls = Arc::new(AtomicUsize::new(0));
    let filter = MethodFilter::allow(["eth_*"])
        .expect("patterns")
        .deny(["eth_sendRawTransaction"])
        .expect("patterns")
        .message("rpc method is not whitelisted");
    let svc = ServiceBuilder::new()
        .layer(MethodFilterLayer::new(filter))
        .service(echo(calls.clone()));
    let front = HttpFront::new(svc, ServerConfig::default());
    for method in ["debug_traceCall", "eth_sendRawTransaction"] {
        let (status, _, body) = post(
            &front,
            &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}"}}"#),
        )
        .await;
        let v = json(&body);
        assert_eq!(
            (status.as_u16(), v["error"]["code"].as_i64()),
            (403, Some(-32601))
        );
        assert_eq!(v["error"]["message"], "rpc method is not whitelisted");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let (status, _, _) = post(&front, r#"{"jsonrpc":"2.0","id":1,"method":"eth_call"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A user's own layer: tags every call with a header-like extension and
/// uppercases nothing; it only needs to speak `JsonRpcService`.
#[derive(Clone)]
struct TagLayer;

#[derive(Clone)]
struct Tag(&'static str);

#[derive(Clone)]
struct TagService<S>(S);

impl<S> Layer<S> for TagLayer {
    type Service = TagService<S>;
    fn layer(&self, inner: S) -> TagService<S> {
        TagService(inner)
    }
}

impl<S: JsonRpcService> Service<Request> for TagService<S> {
    type Response = Response;
    type Error = RpcError;
    type Future = S::Future;
    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), RpcError>> {
        self.0.poll_ready(cx)
    }
    fn call(&mut self, mut req: Request) -> S::Future {
        req.extensions_mut().insert(Tag("user-layer"));
        self.0.call(req)
    }
}

#[tokio::test(start_paused = true)]
async fn stock_tower_layers_and_user_layers_compose_with_ours() {
    let inner = service_fn(|req: Request| async move {
        let tag = req.extensions().get::<Tag>().map_or("none", |t| t.0);
        if req.method() == "slow" {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Ok::<_, RpcError>(Response::result(
            req.id().cloned().unwrap_or_default(),
            RawJson::from_serialize(tag).expect("json"),
        ))
    });
    let stack = ServiceBuilder::new()
        .layer(MethodFilterLayer::new(
            MethodFilter::allow_all()
                .deny(["admin_*"])
                .expect("patterns"),
        ))
        .map_err(RpcError::from_boxed)
        .load_shed()
        .concurrency_limit(8)
        .timeout(Duration::from_secs(2))
        .layer(TagLayer)
        .service(inner);
    // Also usable in its boxed, type-erased form.
    let boxed: BoxJsonRpcService = BoxJsonRpcService::new(stack);
    let front = HttpFront::new(boxed, ServerConfig::default());

    let (status, _, body) = post(&front, r#"{"jsonrpc":"2.0","id":1,"method":"m"}"#).await;
    assert_eq!(
        (status.as_u16(), json(&body)["result"].as_str()),
        (200, Some("user-layer"))
    );
    let (status, _, body) = post(&front, r#"{"jsonrpc":"2.0","id":1,"method":"slow"}"#).await;
    assert_eq!(
        (status.as_u16(), json(&body)["error"]["code"].as_i64()),
        (504, Some(-32015)),
        "tower timeout → -32015"
    );
    let (status, _, _) = post(&front, r#"{"jsonrpc":"2.0","id":1,"method":"admin_peers"}"#).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn load_shed_maps_to_overloaded() {
    // A concurrency limit of 1 held by a call that never ends; the next is shed.
    let inner = service_fn(|_req: Request| std::future::pending::<Result<Response, RpcError>>());
    let mut stack = ServiceBuilder::new()
        .map_err(RpcError::from_boxed)
        .load_shed()
        .concurrency_limit(1)
        .service(inner);
    let held = {
        let mut s = stack.clone();
        tokio::spawn(async move {
            s.ready()
                .await
                .expect("ready")
                .call(Request::new("a").with_id(1u64.into()))
                .await
        })
    };
    tokio::task::yield_now().await;
    let err = stack
        .ready()
        .await
        .expect("load_shed is always ready")
        .call(Request::new("b").with_id(2u64.into()))
        .await;
    let err = err.expect_err("shed");
    assert!(matches!(err, RpcError::Overloaded), "{err}");
    held.abort();
}

#[tokio::test]
async fn health_is_readiness_when_a_check_is_configured() {
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = ready.clone();
    let front = HttpFront::new(
        echo(Default::default()),
        ServerConfig::default().readiness(move || flag.load(Ordering::SeqCst)),
    );
    let get = || {
        http::Request::get("/healthz")
            .body(Full::new(Bytes::new()))
            .expect("request")
    };
    let (status, _, body) = send(&front, get()).await;
    assert_eq!(
        (status, json(&body)["status"].clone()),
        (StatusCode::OK, "ok".into())
    );
    ready.store(false, Ordering::SeqCst);
    let (status, _, body) = send(&front, get()).await;
    assert_eq!(
        (status, json(&body)["status"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into())
    );
    // Calls are still answered (readiness is advice to a load balancer).
    let (status, _, _) = post(&front, r#"{"jsonrpc":"2.0","id":1,"method":"m"}"#).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_backend_s_retry_after_is_clamped() {
    let limited = service_fn(|_req: Request| async {
        Err::<Response, _>(RpcError::RateLimited {
            retry_after: Some(Duration::from_secs(3600)),
        })
    });
    for (config, expected) in [
        (ServerConfig::default(), "30"),
        (
            ServerConfig::default().max_retry_after(Duration::from_secs(5)),
            "5",
        ),
    ] {
        let front = HttpFront::new(limited, config);
        let (status, headers, _) = post(&front, r#"{"jsonrpc":"2.0","id":1,"method":"m"}"#).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers["retry-after"], expected, "an hour asked, capped");
    }
}

/// A `SharedJsonRpcService`'s clones call the one stack: a stack with room
/// for one call at a time holds the second call until the first has ended
/// (readiness awaited in the call's future), rather than refusing it or
/// running both at once.
#[tokio::test(start_paused = true)]
async fn shared_stack_clones_wait_for_its_room_per_call() {
    let shared = rpc_core::SharedJsonRpcService::new(slow_one_at_a_time());
    let call = |i: u64| {
        shared
            .clone()
            .oneshot(Request::new("m").with_id(Id::from(i)))
    };
    let started = tokio::time::Instant::now();
    let (a, b) = tokio::join!(call(1), call(2));
    assert_eq!(a.expect("answered").id(), &Id::from(1u64));
    assert_eq!(b.expect("answered").id(), &Id::from(2u64));
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(200),
        "one after the other"
    );
}
