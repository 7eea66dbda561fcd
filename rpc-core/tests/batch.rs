//! Client batches sent whole (`HttpFront::batched`, `Service<Batch>`):
//! the same answers as call by call, one walk through the layers.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rpc_core::batch::{call_batch, per_call, BoxedBatchFuture};
use rpc_core::filter::{MethodFilter, MethodFilterLayer};
use rpc_core::route::MethodRouter;
use rpc_core::server::{HttpFront, ServerConfig};
use rpc_core::{
    Batch, BatchAnswers, Deadline, Id, JsonRpcService, RawJson, Request, Response, RpcError,
    SharedJsonRpcService,
};
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};

/// Answers `"METHOD"`; `boom` panics, `slow` takes 10 s, `fail` fails.
fn echo() -> impl JsonRpcService {
    service_fn(|req: Request| async move {
        match req.method() {
            "boom" => panic!("boom"),
            "slow" => tokio::time::sleep(Duration::from_secs(10)).await,
            "fail" => return Err(RpcError::Overloaded),
            _ => {}
        }
        let text = format!("\"{}\"", req.method());
        Ok::<_, RpcError>(Response::result(
            req.id().cloned().unwrap_or_default(),
            RawJson::from_bytes(text).expect("json"),
        ))
    })
}

/// A service that counts the batches it gets whole, answering each call
/// with its own name.
#[derive(Clone)]
struct Counting {
    name: &'static str,
    batches: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl Counting {
    fn new(name: &'static str) -> Self {
        Counting {
            name,
            batches: Arc::default(),
            calls: Arc::default(),
        }
    }

    fn answer(&self, req: &Request) -> Response {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let text = format!("\"{}\"", self.name);
        Response::result(
            req.id().cloned().unwrap_or_default(),
            RawJson::from_bytes(text).expect("json"),
        )
    }
}

impl Service<Request> for Counting {
    type Response = Response;
    type Error = RpcError;
    type Future = std::future::Ready<Result<Response, RpcError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        std::future::ready(Ok(self.answer(&req)))
    }
}

impl Service<Batch> for Counting {
    type Response = BatchAnswers;
    type Error = Infallible;
    type Future = BoxedBatchFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch) -> BoxedBatchFuture {
        self.batches.fetch_add(1, Ordering::SeqCst);
        let answers = batch
            .calls()
            .iter()
            .map(|c| Some(Ok(self.answer(c))))
            .collect();
        BoxedBatchFuture::new(std::future::ready(answers))
    }
}

async fn post<S: JsonRpcService>(front: &HttpFront<S>, body: &str) -> (u16, String) {
    let req = http::Request::post("/")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let resp = front.clone().oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The stack both fronts serve: a method filter (no `admin_*`) over the
/// echo.
fn stack() -> SharedJsonRpcService {
    let filter = MethodFilter::allow_all()
        .deny(["admin_*"])
        .expect("patterns");
    SharedJsonRpcService::batched(
        ServiceBuilder::new()
            .layer(MethodFilterLayer::new(filter))
            .service(SharedJsonRpcService::new(echo())),
    )
}

#[tokio::test(start_paused = true)]
async fn a_batch_sent_whole_is_answered_as_one_sent_call_by_call() {
    let config = || ServerConfig::default().request_timeout(Duration::from_secs(2));
    let by_call = HttpFront::new(stack(), config());
    let whole = HttpFront::batched(stack(), config());
    for body in [
        // Results, a refusal, an invalid item, a notification, a failure.
        r#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","id":"x","method":"admin_peers"},{"id":3},{"jsonrpc":"2.0","method":"note"},{"jsonrpc":"2.0","id":5,"method":"fail"}]"#,
        // A panicking call and its batch-mates.
        r#"[{"jsonrpc":"2.0","id":1,"method":"boom"},{"jsonrpc":"2.0","id":2,"method":"b"}]"#,
        // A call still running at the deadline, and one answered in time.
        r#"[{"jsonrpc":"2.0","id":1,"method":"slow"},{"jsonrpc":"2.0","id":2,"method":"c"}]"#,
        // Notifications only: no body.
        r#"[{"jsonrpc":"2.0","method":"n1"},{"jsonrpc":"2.0","method":"n2"}]"#,
        // Nothing valid.
        r#"[1, 2]"#,
    ] {
        let expected = post(&by_call, body).await;
        let got = post(&whole, body).await;
        assert_eq!(got, expected, "{body}");
    }
}

#[tokio::test(start_paused = true)]
async fn per_call_answers_what_is_done_by_the_deadline_and_leaves_the_rest() {
    let deadline = Deadline::after(Duration::from_secs(1));
    let calls = ["a", "slow", "b"]
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let mut c = Request::new(m).with_id(Id::from(i as u64));
            c.extensions_mut().insert(deadline);
            c
        })
        .collect();
    let start = tokio::time::Instant::now();
    let answers = per_call(echo(), Batch::new(calls).with_concurrency(1)).await;
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert!(matches!(&answers[0], Some(Ok(_))));
    assert!(answers[1].is_none(), "left at the deadline");
    // One at a time: the third call never started.
    assert!(answers[2].is_none());
}

#[tokio::test]
async fn a_router_sends_one_batch_per_service_in_the_clients_order() {
    let (x, y) = (Counting::new("x"), Counting::new("y"));
    let router = MethodRouter::builder()
        .route("x_*", x.clone())
        .expect("pattern")
        .route("y_*", y.clone())
        .expect("pattern")
        .build();
    // Repeats, as a client's batch mostly has: a call of the method before
    // it goes where that one went, refused or not.
    let calls: Vec<Request> = ["x_a", "y_a", "z_a", "z_a", "x_b", "x_b", "y_b", "x_a"]
        .into_iter()
        .enumerate()
        .map(|(i, m)| Request::new(m).with_id(Id::from(i as u64)))
        .collect();
    let answers = call_batch(router, Batch::new(calls)).await;
    let text: Vec<String> = answers
        .iter()
        .map(|a| match a {
            Some(Ok(r)) => {
                String::from_utf8_lossy(r.result_json().expect("result").as_bytes()).into_owned()
            }
            Some(Err(e)) => format!("error {}", e.to_error_object().code()),
            None => "none".to_owned(),
        })
        .collect();
    assert_eq!(
        text,
        [
            "\"x\"",
            "\"y\"",
            "error -32601",
            "error -32601",
            "\"x\"",
            "\"x\"",
            "\"y\"",
            "\"x\""
        ]
    );
    assert_eq!(x.batches.load(Ordering::SeqCst), 1);
    assert_eq!(y.batches.load(Ordering::SeqCst), 1);
    assert_eq!(
        x.calls.load(Ordering::SeqCst) + y.calls.load(Ordering::SeqCst),
        6
    );
}

#[tokio::test]
async fn a_filter_answers_refusals_in_place_and_passes_the_rest_whole() {
    let inner = Counting::new("inner");
    let filter = MethodFilter::allow_all()
        .deny(["admin_*"])
        .expect("patterns");
    let svc = MethodFilterLayer::new(filter).layer(inner.clone());
    let calls: Vec<Request> = ["a", "admin_x", "b"]
        .into_iter()
        .enumerate()
        .map(|(i, m)| Request::new(m).with_id(Id::from(i as u64)))
        .collect();
    let answers = call_batch(svc, Batch::new(calls)).await;
    assert!(matches!(&answers[0], Some(Ok(_))));
    assert!(matches!(
        &answers[1],
        Some(Err(RpcError::MethodNotAllowed { .. }))
    ));
    assert!(matches!(&answers[2], Some(Ok(_))));
    assert_eq!(inner.batches.load(Ordering::SeqCst), 1);
    assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
}
