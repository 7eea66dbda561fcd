//! Replacing what a running front serves with, without dropping a call:
//! the building block of configuration reload.
//!
//! [`reloadable`] splits a value into a [`Reloadable`], which the front
//! holds (a service, a [`SubscriptionSource`], anything read per call), and
//! a [`ReloadHandle`], which the owner keeps to [`swap`](ReloadHandle::swap)
//! in a new one. Every call reads the value current when it arrives and
//! keeps that clone until it is answered: calls in flight finish on the old
//! stack while new ones take the new one, and the old stack is dropped when
//! its last call ends (its background tasks, which hold it weakly, stop
//! then). Reading is one atomic load (`arc-swap`), no lock.
//!
//! ```
//! use rpc_core::reload::reloadable;
//! use rpc_core::{Id, RawJson, Request, Response, RpcError};
//! use tower::ServiceExt;
//!
//! /// A stack that answers every call with `answer`.
//! fn stack(answer: &'static str) -> impl tower::Service<Request, Response = Response, Error = RpcError, Future = impl Send> + Clone {
//!     tower::service_fn(move |req: Request| async move {
//!         Ok(Response::result(req.id().cloned().unwrap_or(Id::Null), RawJson::from_static(answer).unwrap()))
//!     })
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (service, handle) = reloadable(stack("1"));
//! let call = || Request::new("eth_chainId").with_id(Id::from(1u64));
//! let answer = service.clone().oneshot(call()).await.unwrap();
//! assert_eq!(answer.result_json().map(|r| r.as_bytes()), Some(&b"1"[..]));
//!
//! // A new stack: calls from now on are answered by it.
//! handle.swap(stack("2"));
//! assert_eq!(handle.generation(), 1);
//! let answer = service.oneshot(call()).await.unwrap();
//! assert_eq!(answer.result_json().map(|r| r.as_bytes()), Some(&b"2"[..]));
//! # }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

use crate::batch::{Batch, BatchAnswers, JsonRpcBatchService};
use crate::subscription::{Subscription, SubscriptionSource};
use crate::{ErrorObject, RawJson, Request, Response, RpcError};

/// A value and a handle to replace it; see the [module](self).
pub fn reloadable<T>(initial: T) -> (Reloadable<T>, ReloadHandle<T>) {
    let current = Arc::new(ArcSwap::from_pointee(initial));
    let generation = Arc::new(AtomicU64::new(0));
    (
        Reloadable {
            current: current.clone(),
        },
        ReloadHandle {
            current,
            generation,
        },
    )
}

/// The reading side: a service (or subscription source) that forwards
/// each call to the value current when the call arrives. Clones share the
/// value.
pub struct Reloadable<T> {
    current: Arc<ArcSwap<T>>,
}

impl<T> Clone for Reloadable<T> {
    fn clone(&self) -> Self {
        Reloadable {
            current: self.current.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Reloadable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reloadable(..)")
    }
}

impl<T> Reloadable<T> {
    /// Runs `f` on the current value (one atomic load; the value stays
    /// alive while `f` runs even if it is swapped meanwhile).
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.current.load())
    }

    /// The current value, kept alive by the returned `Arc`.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }
}

impl<S> Service<Request> for Reloadable<S>
where
    S: Service<Request, Response = Response, Error = RpcError> + Clone,
{
    type Response = Response;
    type Error = RpcError;
    type Future = Oneshot<S, Request>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The current service's readiness is awaited per call, by `Oneshot`
        // on its clone: which service a call gets is decided when it is
        // made, not when a caller polled.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        S::clone(&self.current.load()).oneshot(req)
    }
}

impl<S: JsonRpcBatchService> Service<Batch> for Reloadable<S> {
    type Response = BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = Oneshot<S, Batch>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // As for a single call: the stack is the one current when the
        // batch is made.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        S::clone(&self.current.load()).oneshot(batch)
    }
}

impl<T: SubscriptionSource> SubscriptionSource for Reloadable<T> {
    fn subscribe(&self, params: Option<&RawJson>) -> Result<Subscription, ErrorObject> {
        // A live subscription keeps the source it came from (its poller
        // holds the old stack until the subscriber leaves).
        self.current.load().subscribe(params)
    }
}

/// The owner's side: replaces the value for every [`Reloadable`] clone.
pub struct ReloadHandle<T> {
    current: Arc<ArcSwap<T>>,
    generation: Arc<AtomicU64>,
}

impl<T> Clone for ReloadHandle<T> {
    fn clone(&self) -> Self {
        ReloadHandle {
            current: self.current.clone(),
            generation: self.generation.clone(),
        }
    }
}

impl<T> std::fmt::Debug for ReloadHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadHandle")
            .field("generation", &self.generation())
            .finish()
    }
}

impl<T> ReloadHandle<T> {
    /// Makes `next` the value calls get from now on; returns the previous
    /// one (still used by the calls that hold it) and bumps the generation.
    pub fn swap(&self, next: T) -> Arc<T> {
        let previous = self.current.swap(Arc::new(next));
        self.generation.fetch_add(1, Ordering::AcqRel);
        previous
    }

    /// How many times the value was swapped (0: the initial one).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current value.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Id;

    /// Answers `answer` after `delay` (tokio's clock).
    fn stack(
        answer: &'static str,
        delay: Duration,
    ) -> impl Service<Request, Response = Response, Error = RpcError, Future = impl Send> + Clone
    {
        tower::service_fn(move |req: Request| async move {
            tokio::time::sleep(delay).await;
            let id = req.id().cloned().unwrap_or(Id::Null);
            Ok(Response::result(id, RawJson::from_static(answer).unwrap()))
        })
    }

    fn call() -> Request {
        Request::new("eth_chainId").with_id(Id::from(1u64))
    }

    fn result(r: &Response) -> Option<&[u8]> {
        r.result_json().map(|r| r.as_bytes())
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_in_flight_finishes_on_the_stack_it_started_on() {
        let (service, handle) = reloadable(stack("\"old\"", Duration::from_secs(5)));
        let in_flight = tokio::spawn(service.clone().oneshot(call()));
        tokio::task::yield_now().await;
        let old = handle.swap(stack("\"new\"", Duration::ZERO));
        let now = service.clone().oneshot(call()).await.unwrap();
        assert_eq!(result(&now), Some(&b"\"new\""[..]));
        let then = in_flight.await.unwrap().unwrap();
        assert_eq!(result(&then), Some(&b"\"old\""[..]));
        // Nothing but the value `swap` returned holds the old stack now.
        assert_eq!(Arc::strong_count(&old), 1);
        assert_eq!(handle.generation(), 1);
    }

    #[test]
    fn with_reads_the_current_value() {
        let (r, handle) = reloadable(1u32);
        assert_eq!(r.with(|v| *v), 1);
        handle.swap(2);
        handle.swap(3);
        assert_eq!(
            (r.with(|v| *v), *r.current(), handle.generation()),
            (3, 3, 2)
        );
    }
}
