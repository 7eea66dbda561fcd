//! A scripted member for deterministic tests (paused tokio time).
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::StatusCode;
use rpc_core::{ErrorObject, Id, RawJson, Request, Response, RpcError};
use rpc_failover::Member;
use tower::Service;

/// What the mock does on one call.
#[derive(Clone, Debug)]
pub enum Step {
    /// Answer with this raw result.
    Ok(&'static str),
    /// Answer with this error object.
    Error(i64, &'static str),
    /// Connection refused (not sent).
    Refused,
    /// Connection closed mid-call (maybe sent).
    Closed,
    /// HTTP status from the backend (maybe sent), optional Retry-After.
    Status(u16, Option<Duration>),
    /// Wait, then do the inner step.
    After(Duration, Box<Step>),
    /// Never answer.
    Hang,
    /// Decline the call (`RpcError::Rejected`, -32601).
    Decline,
}

pub fn slow(ms: u64, step: Step) -> Step {
    Step::After(Duration::from_millis(ms), Box::new(step))
}

type Script = Arc<dyn Fn(u32) -> Step + Send + Sync>;
type BoxFut = Pin<Box<dyn Future<Output = Result<Response, RpcError>> + Send>>;

#[derive(Clone)]
pub struct Mock {
    pub name: Arc<str>,
    pub calls: Arc<AtomicU32>,
    pub finished: Arc<AtomicU32>,
    /// When each call arrived.
    pub times: Arc<Mutex<Vec<tokio::time::Instant>>>,
    script: Script,
}

impl Mock {
    pub fn new(name: &str, script: impl Fn(u32) -> Step + Send + Sync + 'static) -> Self {
        Mock {
            name: name.into(),
            calls: Arc::default(),
            finished: Arc::default(),
            times: Arc::default(),
            script: Arc::new(script),
        }
    }

    /// Always answers `result`.
    pub fn ok(name: &str, result: &'static str) -> Self {
        Mock::new(name, move |_| Step::Ok(result))
    }

    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Calls that ran to completion (the rest were cancelled or hang).
    pub fn finished(&self) -> u32 {
        self.finished.load(Ordering::SeqCst)
    }

    /// Offsets of the calls' arrival from `start`, in milliseconds.
    pub fn call_times_ms(&self, start: tokio::time::Instant) -> Vec<u128> {
        let times = self.times.lock().expect("not poisoned");
        times.iter().map(|t| (*t - start).as_millis()).collect()
    }

    pub fn member(&self) -> Member<Mock> {
        Member::new(self.name.clone(), self.clone())
    }
}

fn outcome(name: &Arc<str>, id: Id, step: Step) -> BoxFut {
    let name = name.clone();
    Box::pin(async move {
        match step {
            Step::Ok(raw) => Ok(Response::result(
                id,
                RawJson::from_static(raw).expect("valid JSON"),
            )),
            Step::Error(code, msg) => Ok(Response::error(id, ErrorObject::new(code, msg))),
            Step::Refused => Err(RpcError::Connect {
                backend: name,
                source: "connection refused".into(),
            }),
            Step::Closed => Err(RpcError::ConnectionClosed {
                backend: name,
                source: "reset".into(),
            }),
            Step::Status(code, retry_after) => Err(RpcError::HttpStatus {
                backend: name,
                status: StatusCode::from_u16(code).expect("valid status"),
                retry_after,
            }),
            Step::After(d, next) => {
                tokio::time::sleep(d).await;
                outcome(&name, id, *next).await
            }
            Step::Hang => std::future::pending().await,
            Step::Decline => Err(RpcError::Rejected {
                error: ErrorObject::new(-32601, "not served here"),
                status: StatusCode::BAD_REQUEST,
            }),
        }
    })
}

impl Service<Request> for Mock {
    type Response = Response;
    type Error = RpcError;
    type Future = BoxFut;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> BoxFut {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        self.times
            .lock()
            .expect("not poisoned")
            .push(tokio::time::Instant::now());
        let step = (self.script)(n);
        let fut = outcome(&self.name, req.id().cloned().unwrap_or_default(), step);
        let finished = self.finished.clone();
        Box::pin(async move {
            let r = fut.await;
            finished.fetch_add(1, Ordering::SeqCst);
            r
        })
    }
}

pub fn req(method: &str) -> Request {
    Request::new(method).with_id(Id::from(7u64))
}

pub fn result_of(r: &Response) -> String {
    match r.payload() {
        rpc_core::Payload::Result(raw) => String::from_utf8_lossy(raw.as_bytes()).into_owned(),
        rpc_core::Payload::Error(e) => format!("error {}", e.code()),
    }
}
