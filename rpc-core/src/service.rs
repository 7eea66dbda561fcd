//! The one service trait every layer and backend speaks.

use std::future::Future;

use tower::util::BoxCloneSyncService;
use tower::Service;

use std::convert::Infallible;

use crate::batch::{Batch, BatchAnswers, BoxedBatchFuture, JsonRpcBatchService};
use crate::{Request, Response, RpcError};

/// A tower service that answers one JSON-RPC call.
///
/// This is a trait alias: every `tower::Service<Request, Response = Response,
/// Error = RpcError>` that is `Clone + Send + Sync + 'static` and returns a
/// `Send + 'static` future implements it automatically. Backends
/// ([`HttpBackend`](crate::HttpBackend), the Electrum backend), our layers, stock
/// tower layers and users' own layers all compose through it, and
/// `poll_ready` backpressure is kept.
///
/// Stock tower middleware whose error is `BoxError` (timeout, load-shed, ...)
/// is brought back to `RpcError` with
/// [`map_err(RpcError::from_boxed)`](RpcError::from_boxed).
///
/// ```
/// use std::time::Duration;
/// use rpc_core::{JsonRpcService, Request, Response, RpcError, RawJson};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// fn assert_json_rpc<S: JsonRpcService>(_: &S) {}
///
/// let echo = service_fn(|req: Request| async move {
///     Ok::<_, RpcError>(Response::result(req.id().cloned().unwrap_or_default(), RawJson::NULL))
/// });
/// let stack = ServiceBuilder::new()
///     .map_err(RpcError::from_boxed)
///     .timeout(Duration::from_secs(5))
///     .service(echo);
/// assert_json_rpc(&stack);
/// ```
pub trait JsonRpcService:
    Service<
        Request,
        Response = Response,
        Error = RpcError,
        Future: Future<Output = Result<Response, RpcError>> + Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> JsonRpcService for S
where
    S: Service<Request, Response = Response, Error = RpcError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
}

/// A backend that knows its own name (for logs, errors and metrics; never a
/// URL), so the name is given once — to the backend's builder — and groups
/// ([`Member::named`][member]) and metrics (`MetricsLayer::backend_of`) read
/// it. Layers over a backend forward it (`rpc_metrics::Metrics` does).
///
/// [member]: https://docs.rs/rpc-failover/latest/rpc_failover/struct.Member.html#method.named
///
/// ```
/// use rpc_core::Named;
///
/// #[derive(Clone)]
/// struct MyNode { name: String }
///
/// impl Named for MyNode {
///     fn name(&self) -> &str {
///         &self.name
///     }
/// }
/// assert_eq!(Named::name(&MyNode { name: "a".into() }), "a");
/// ```
pub trait Named {
    /// The name.
    fn name(&self) -> &str;
}

/// A type-erased [`JsonRpcService`], for stacks built at run time (from a
/// config file) or groups that mix backend types. Costs one allocation per
/// call for the boxed future.
///
/// ```
/// use rpc_core::{BoxJsonRpcService, HttpBackend};
///
/// let backend = HttpBackend::builder("local", "http://127.0.0.1:8545").build().unwrap();
/// let boxed: BoxJsonRpcService = BoxJsonRpcService::new(backend);
/// # drop(boxed);
/// ```
pub type BoxJsonRpcService = BoxCloneSyncService<Request, Response, RpcError>;

/// A type-erased [`JsonRpcService`] whose clones share one stack: cloning
/// it is a reference count, where cloning a [`BoxJsonRpcService`] allocates
/// a box for the copy. Each call clones the stack inside the call's own
/// boxed future, so a call costs one allocation in all (a
/// `BoxJsonRpcService` that is cloned per call, as a shared or reloadable
/// stack is, costs two).
///
/// Readiness is awaited per call, inside its future (as
/// [`Reloadable`](crate::reload::Reloadable) does): `poll_ready` is always
/// ready, and a stack with backpressure (a concurrency limit) holds each
/// call until it has room. Put a load-shedding layer inside the stack, not
/// around this service.
///
/// ```
/// use rpc_core::{Id, RawJson, Request, Response, RpcError, SharedJsonRpcService};
/// use tower::{service_fn, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let echo = service_fn(|req: Request| async move {
///     Ok::<_, RpcError>(Response::result(req.id().cloned().unwrap_or_default(), RawJson::NULL))
/// });
/// let shared = SharedJsonRpcService::new(echo);
/// let answer = shared.clone().oneshot(Request::new("m").with_id(Id::from(1u64))).await;
/// assert_eq!(answer.unwrap().id(), &Id::from(1u64));
/// # }
/// ```
#[derive(Clone)]
pub struct SharedJsonRpcService {
    inner: std::sync::Arc<dyn SharedCall>,
}

/// A call on a shared stack (its clone made in the call's future).
trait SharedCall: Send + Sync {
    fn call(&self, req: Request) -> BoxedResponseFuture;
    fn call_batch(&self, batch: Batch) -> BoxedBatchFuture;
}

/// A stack without a batch form: a batch is made single calls of it.
struct PerCall<S>(S);

impl<S: JsonRpcService> SharedCall for PerCall<S> {
    fn call(&self, req: Request) -> BoxedResponseFuture {
        BoxedResponseFuture::new(tower::ServiceExt::oneshot(self.0.clone(), req))
    }

    fn call_batch(&self, batch: Batch) -> BoxedBatchFuture {
        BoxedBatchFuture::new(crate::batch::per_call(self.0.clone(), batch))
    }
}

/// A stack that takes batches as one unit.
struct Batched<S>(S);

impl<S: JsonRpcBatchService> SharedCall for Batched<S> {
    fn call(&self, req: Request) -> BoxedResponseFuture {
        BoxedResponseFuture::new(tower::ServiceExt::oneshot(self.0.clone(), req))
    }

    fn call_batch(&self, batch: Batch) -> BoxedBatchFuture {
        BoxedBatchFuture::new(crate::batch::call_batch(self.0.clone(), batch))
    }
}

impl SharedJsonRpcService {
    /// Shares `service`. A [`Batch`] sent to it is made single calls of
    /// `service` (see [`batched`](Self::batched) for a stack that takes
    /// batches whole).
    pub fn new<S: JsonRpcService>(service: S) -> Self {
        SharedJsonRpcService {
            inner: std::sync::Arc::new(PerCall(service)),
        }
    }

    /// Shares `service`, a stack that takes a [`Batch`] as one unit (every
    /// layer of ours does; see [`JsonRpcBatchService`]): a client batch
    /// sent to it goes through the stack once, not once per call.
    ///
    /// ```
    /// use rpc_core::batch::{call_batch, Batch};
    /// use rpc_core::{Id, RawJson, Request, Response, RpcError, SharedJsonRpcService};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let echo = SharedJsonRpcService::new(tower::service_fn(|req: Request| async move {
    ///     Ok::<_, RpcError>(Response::result(req.id().cloned().unwrap_or_default(), RawJson::NULL))
    /// }));
    /// // A shared stack takes batches; so this one takes them whole.
    /// let stack = SharedJsonRpcService::batched(echo);
    /// let batch = Batch::new(vec![Request::new("m").with_id(Id::from(1u64))]);
    /// let answers = call_batch(stack, batch).await;
    /// assert_eq!(answers.len(), 1);
    /// # }
    /// ```
    pub fn batched<S: JsonRpcBatchService>(service: S) -> Self {
        SharedJsonRpcService {
            inner: std::sync::Arc::new(Batched(service)),
        }
    }
}

impl Service<Request> for SharedJsonRpcService {
    type Response = Response;
    type Error = RpcError;
    type Future = BoxedResponseFuture;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), RpcError>> {
        // Awaited per call, in the call's future (see the type's docs).
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> BoxedResponseFuture {
        self.inner.call(req)
    }
}

impl Service<Batch> for SharedJsonRpcService {
    type Response = BatchAnswers;
    type Error = Infallible;
    type Future = BoxedBatchFuture;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch) -> BoxedBatchFuture {
        self.inner.call_batch(batch)
    }
}

impl std::fmt::Debug for SharedJsonRpcService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedJsonRpcService")
            .finish_non_exhaustive()
    }
}

/// A boxed, `Send` response future: the `Future` of layers and backends whose
/// logic is an `async` block (groups, the cache, the Electrum backend). One
/// allocation per call; a named type, so it can change without breaking users.
///
/// ```
/// use rpc_core::{BoxedResponseFuture, Id, RawJson, Response};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let fut = BoxedResponseFuture::new(async { Ok(Response::result(Id::Null, RawJson::NULL)) });
/// assert!(fut.await.is_ok());
/// # }
/// ```
pub struct BoxedResponseFuture {
    inner: std::pin::Pin<Box<dyn Future<Output = Result<Response, RpcError>> + Send>>,
}

impl BoxedResponseFuture {
    /// Boxes `future`.
    pub fn new(future: impl Future<Output = Result<Response, RpcError>> + Send + 'static) -> Self {
        BoxedResponseFuture {
            inner: Box::pin(future),
        }
    }
}

impl Future for BoxedResponseFuture {
    type Output = Result<Response, RpcError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for BoxedResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoxedResponseFuture")
            .finish_non_exhaustive()
    }
}
