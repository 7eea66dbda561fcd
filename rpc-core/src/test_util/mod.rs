//! Scripted backends for tests of layers and groups (cargo feature
//! `test-util`): what this workspace's own tests use, for users' tests of
//! their own layers.
//!
//! [`MockBackend`] answers each call as its script says — a result, an error
//! object, a refused or dropped connection, an HTTP status, a delay, a hang,
//! a decline — and counts calls, finished calls, arrival times and methods.
//! Delays use tokio's clock, so tests run under `tokio::time::pause`.
//!
//! ```
//! use std::time::Duration;
//! use rpc_core::test_util::{request, result_text, slow, MockBackend, Step};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! // Refuses its first call, then answers "0x1" after 50 ms.
//! let node = MockBackend::new("a", |n| if n == 0 { Step::Refused } else { slow(50, Step::Ok("\"0x1\"")) });
//! assert!(node.clone().oneshot(request("eth_blockNumber")).await.is_err());
//! let answer = node.clone().oneshot(request("eth_blockNumber")).await.unwrap();
//! assert_eq!(result_text(&answer), "\"0x1\"");
//! assert_eq!((node.calls(), node.methods()), (2, vec!["eth_blockNumber".to_owned(); 2]));
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::StatusCode;
use tower::Service;

use crate::{ErrorObject, Id, Named, Payload, RawJson, Request, Response, RpcError};

/// What a [`MockBackend`] does with one call.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Step {
    /// Answer with this raw JSON result (the request's id).
    Ok(&'static str),
    /// Answer with this raw JSON result, built at run time.
    Result(String),
    /// Answer with this error object.
    Error(i64, &'static str),
    /// Answer with this response as it is (extensions included).
    Answer(Response),
    /// Connection refused: [`RpcError::Connect`] (certainly not sent).
    Refused,
    /// Connection closed mid-call: [`RpcError::ConnectionClosed`] (maybe sent).
    Closed,
    /// An HTTP status from the backend (maybe sent), with an optional
    /// `Retry-After`.
    Status(u16, Option<Duration>),
    /// Wait (tokio's clock), then do the inner step.
    After(Duration, Box<Step>),
    /// Never answer.
    Hang,
    /// Decline the call without blame: [`RpcError::Rejected`] (-32601).
    Decline,
}

/// `step` after `ms` milliseconds.
pub fn slow(ms: u64, step: Step) -> Step {
    Step::After(Duration::from_millis(ms), Box::new(step))
}

type Answer = Arc<dyn Fn(&Request) -> Result<Response, RpcError> + Send + Sync>;
type Steps = Arc<dyn Fn(u32, &Request) -> Step + Send + Sync>;

#[derive(Clone)]
enum Script {
    Steps(Steps),
    Answers(Answer),
}

/// A backend that follows a script (see the [module docs](self)). Clones
/// share the counters.
#[derive(Clone)]
pub struct MockBackend {
    name: Arc<str>,
    calls: Arc<AtomicU32>,
    batches: Arc<AtomicU32>,
    finished: Arc<AtomicU32>,
    times: Arc<Mutex<Vec<tokio::time::Instant>>>,
    methods: Arc<Mutex<Vec<String>>>,
    script: Script,
    delay: Duration,
}

impl std::fmt::Debug for MockBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockBackend")
            .field("name", &self.name)
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

impl MockBackend {
    /// Call `n` (from 0) does `script(n)`.
    pub fn new(name: &str, script: impl Fn(u32) -> Step + Send + Sync + 'static) -> Self {
        Self::with_requests(name, move |n, _| script(n))
    }

    /// Call `n` (from 0) of `request` does `script(n, request)`.
    pub fn with_requests(
        name: &str,
        script: impl Fn(u32, &Request) -> Step + Send + Sync + 'static,
    ) -> Self {
        MockBackend {
            name: name.into(),
            calls: Arc::default(),
            batches: Arc::default(),
            finished: Arc::default(),
            times: Arc::default(),
            methods: Arc::default(),
            script: Script::Steps(Arc::new(script)),
            delay: Duration::ZERO,
        }
    }

    /// Answers each call with `answer(request)`: any response (extensions
    /// included) or any error.
    pub fn answering(
        name: &str,
        answer: impl Fn(&Request) -> Result<Response, RpcError> + Send + Sync + 'static,
    ) -> Self {
        MockBackend {
            script: Script::Answers(Arc::new(answer)),
            ..Self::new(name, |_| Step::Hang)
        }
    }

    /// Waits `delay` (tokio's clock) before every answer (default: none).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Always answers `result` (raw JSON).
    pub fn ok(name: &str, result: &'static str) -> Self {
        Self::new(name, move |_| Step::Ok(result))
    }

    /// Calls received.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Batches received whole ([`Batch`](crate::Batch)); their calls are
    /// counted in [`calls`](Self::calls) too.
    pub fn batches(&self) -> u32 {
        self.batches.load(Ordering::SeqCst)
    }

    /// Calls that ran to completion (the rest were cancelled or hang).
    pub fn finished(&self) -> u32 {
        self.finished.load(Ordering::SeqCst)
    }

    /// The methods called, in order.
    pub fn methods(&self) -> Vec<String> {
        self.methods.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Offsets of the calls' arrival from `start`, in milliseconds.
    pub fn call_times_ms(&self, start: tokio::time::Instant) -> Vec<u128> {
        let times = self.times.lock().map(|t| t.clone()).unwrap_or_default();
        times.iter().map(|t| (*t - start).as_millis()).collect()
    }
}

impl Named for MockBackend {
    fn name(&self) -> &str {
        &self.name
    }
}

type BoxFut = Pin<Box<dyn Future<Output = Result<Response, RpcError>> + Send>>;

fn outcome(name: Arc<str>, id: Id, step: Step) -> BoxFut {
    Box::pin(async move {
        match step {
            Step::Ok(raw) => Ok(Response::result(
                id,
                RawJson::from_static(raw).unwrap_or(RawJson::NULL),
            )),
            Step::Result(raw) => Ok(Response::result(
                id,
                RawJson::from_bytes(raw).unwrap_or(RawJson::NULL),
            )),
            Step::Error(code, msg) => Ok(Response::error(id, ErrorObject::new(code, msg))),
            Step::Answer(response) => Ok(response),
            Step::Refused => Err(RpcError::Connect {
                backend: name,
                source: "connection refused".into(),
            }),
            Step::Closed => Err(RpcError::ConnectionClosed {
                backend: name,
                source: "connection reset".into(),
            }),
            Step::Status(code, retry_after) => Err(RpcError::HttpStatus {
                backend: name,
                status: StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY),
                retry_after,
            }),
            Step::After(d, next) => {
                tokio::time::sleep(d).await;
                outcome(name, id, *next).await
            }
            Step::Hang => std::future::pending().await,
            Step::Decline => Err(RpcError::Rejected {
                error: ErrorObject::new(crate::codes::METHOD_NOT_FOUND, "not served here"),
                status: StatusCode::BAD_REQUEST,
            }),
        }
    })
}

impl Service<Request> for MockBackend {
    type Response = Response;
    type Error = RpcError;
    type Future = BoxFut;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> BoxFut {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut t) = self.times.lock() {
            t.push(tokio::time::Instant::now());
        }
        if let Ok(mut m) = self.methods.lock() {
            m.push(req.method().to_owned());
        }
        let finished = self.finished.clone();
        let delay = self.delay;
        let fut = match &self.script {
            Script::Steps(script) => {
                let step = script(n, &req);
                outcome(
                    self.name.clone(),
                    req.id().cloned().unwrap_or_default(),
                    step,
                )
            }
            Script::Answers(answer) => {
                let answer = answer.clone();
                Box::pin(async move { answer(&req) })
            }
        };
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let r = fut.await;
            finished.fetch_add(1, Ordering::SeqCst);
            r
        })
    }
}

/// A batch is one exchange: each of its calls is answered as the script
/// says for it (as an upstream batch's calls are), all at once.
impl Service<crate::Batch> for MockBackend {
    type Response = crate::BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = crate::batch::BoxedBatchFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: crate::Batch) -> Self::Future {
        self.batches.fetch_add(1, Ordering::SeqCst);
        let calls: Vec<BoxFut> = batch
            .into_calls()
            .into_iter()
            .map(|req| Service::<Request>::call(self, req))
            .collect();
        crate::batch::BoxedBatchFuture::new(async move {
            futures_util::future::join_all(calls)
                .await
                .into_iter()
                .map(Some)
                .collect()
        })
    }
}

/// A call of `method` with id 7 and no params.
pub fn request(method: &str) -> Request {
    Request::new(method).with_id(Id::from(7u64))
}

/// A call of `method` with `id` and raw JSON `params`.
///
/// # Panics
///
/// If `params` is not valid JSON (a test's own literal).
pub fn call(id: u64, method: &str, params: &'static str) -> Request {
    #[allow(clippy::expect_used)] // a test helper: a bad literal is the test's bug
    let params = RawJson::from_static(params).expect("params are valid JSON");
    Request::new(method)
        .with_id(Id::from(id))
        .with_params(params)
}

/// A response's result as text, or `error CODE`.
pub fn result_text(r: &Response) -> String {
    match r.payload() {
        Payload::Result(raw) => String::from_utf8_lossy(raw.as_bytes()).into_owned(),
        Payload::Error(e) => format!("error {}", e.code()),
    }
}
