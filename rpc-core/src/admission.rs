//! Admission checks: a call the front serves itself (a WebSocket
//! `eth_subscribe`) passed through the stack's policy layers first — the
//! method filter, rate limits, metrics — without reaching a backend.
//!
//! The front marks such a call with [`AdmissionCheck`]; [`AdmissionLayer`],
//! placed below the policy layers and above anything that would forward
//! the call (cache, router, groups), answers it `null`. An error answer
//! from a layer above (`-32601` method not allowed, `-32016` rate limited)
//! is the client's answer; `null` admits it. Turn it on with
//! `server::WsConfig::admit_subscriptions`.
//!
//! ```
//! use rpc_core::admission::{AdmissionCheck, AdmissionLayer};
//! use rpc_core::filter::{MethodFilter, MethodFilterLayer};
//! use rpc_core::{Payload, RawJson, Request, Response, RpcError};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = service_fn(|req: Request| async move {
//!     let answer = RawJson::from_static("\"0x1\"").unwrap();
//!     Ok::<_, RpcError>(Response::result(req.id().cloned().unwrap_or_default(), answer))
//! });
//! let stack = ServiceBuilder::new()
//!     .layer(MethodFilterLayer::new(MethodFilter::allow(["eth_*"])?))
//!     .layer(AdmissionLayer::new())
//!     .service(node);
//! let check = |method: &str| {
//!     let mut req = Request::new(method).with_id(1u64.into());
//!     req.extensions_mut().insert(AdmissionCheck);
//!     req
//! };
//! let admitted = stack.clone().oneshot(check("eth_subscribe")).await?;
//! assert!(matches!(admitted.payload(), Payload::Result(r) if r.is_null()));
//! let refused = stack.oneshot(check("debug_subscribe")).await;
//! assert!(refused.is_err());
//! # Ok(()) }
//! ```

use std::task::{Context, Poll};

use tower::{Layer, Service};

use crate::{Id, RawJson, Request, Response, RpcError};

/// On a call: the front only asks whether the call is admitted (it serves
/// the call itself). Set by the WebSocket front for subscribe calls when
/// `admit_subscriptions` is on; answered by [`AdmissionLayer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionCheck;

/// Answers [`AdmissionCheck`] calls `null` (admitted by every layer above);
/// passes every other call on. See the [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct AdmissionLayer {
    _private: (),
}

impl AdmissionLayer {
    /// The layer.
    pub fn new() -> Self {
        AdmissionLayer { _private: () }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission { inner }
    }
}

/// The service of [`AdmissionLayer`].
#[derive(Clone, Debug)]
pub struct Admission<S> {
    inner: S,
}

impl<S> Service<Request> for Admission<S>
where
    S: Service<Request, Response = Response, Error = RpcError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = RpcError;
    type Future =
        futures_util::future::Either<std::future::Ready<Result<Response, RpcError>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if req.extensions().get::<AdmissionCheck>().is_some() {
            let id = req.id().cloned().unwrap_or(Id::Null);
            return futures_util::future::Either::Left(std::future::ready(Ok(Response::result(
                id,
                RawJson::NULL,
            ))));
        }
        futures_util::future::Either::Right(self.inner.call(req))
    }
}

impl<S> Service<crate::batch::Batch> for Admission<S>
where
    S: crate::batch::JsonRpcBatchService,
{
    type Response = crate::batch::BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = crate::batch::PassOrBoxed<<S as Service<crate::batch::Batch>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<crate::batch::Batch>::poll_ready(&mut self.inner, cx)
    }

    /// Admission checks answered in place; the other calls go on as one
    /// batch.
    fn call(&mut self, batch: crate::batch::Batch) -> Self::Future {
        crate::batch::answer_in_place(&mut self.inner, batch, |call| {
            call.extensions().get::<AdmissionCheck>().map(|_| {
                let id = call.id().cloned().unwrap_or(Id::Null);
                Ok(Response::result(id, RawJson::NULL))
            })
        })
    }
}
