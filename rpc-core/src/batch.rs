//! Client batches: [`Batch`], a batch travelling the layers as one unit
//! (see [`JsonRpcBatchService`]), and [`BatchGroup`], the batch that single
//! calls came from, so a backend can send the ones that reach it together
//! as one upstream batch.
//!
//! A group's calls are single calls made of one batch: by the front serving
//! a stack call by call ([`HttpFront::new`](crate::server::HttpFront::new)),
//! or by a layer with no batch form ([`per_call`]). Each carries a
//! [`BatchItem`] in its extensions (beside
//! [`BatchPosition`](crate::BatchPosition)) and goes through the layers on
//! its own, and a backend that batches (`HttpBackendBuilder::max_batch`)
//! gathers the calls of one group that reach it. It sends them when every
//! item of the group that is in flight has either reached a backend or been
//! answered above (the cache, a refusal), when `max_batch` are gathered, or
//! after a short window (an item held elsewhere, e.g. waiting for a
//! concurrency permit), whichever comes first.
//!
//! ```
//! use rpc_core::batch::BatchGroup;
//!
//! let group = BatchGroup::new(2);
//! assert_eq!(group.len(), 2);
//! let (a, b) = (group.item(0), group.item(1));
//! assert_eq!(group.unsettled(), 0);
//! a.start();
//! b.start();
//! assert_eq!(group.unsettled(), 2);
//! a.settle(); // reached a backend
//! a.settle(); // again (a retry): counted once
//! b.settle(); // answered by the cache
//! assert_eq!(group.unsettled(), 0);
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;

use tokio::sync::Notify;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::{JsonRpcService, Request, Response, RpcError};

/// One client batch; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct BatchGroup {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Items started and not yet settled.
    unsettled: AtomicUsize,
    /// Per item: settled already (a retried item is counted once).
    settled: Box<[AtomicBool]>,
    /// Woken when `unsettled` reaches 0.
    all_settled: Notify,
}

impl BatchGroup {
    /// A group of `len` calls.
    pub fn new(len: usize) -> Self {
        BatchGroup {
            shared: Arc::new(Shared {
                unsettled: AtomicUsize::new(0),
                settled: (0..len).map(|_| AtomicBool::new(false)).collect(),
                all_settled: Notify::new(),
            }),
        }
    }

    /// The handle of item `index` (put in its request's extensions).
    pub fn item(&self, index: usize) -> BatchItem {
        BatchItem {
            group: self.clone(),
            index,
        }
    }

    /// The number of calls in the client batch.
    pub fn len(&self) -> usize {
        self.shared.settled.len()
    }

    /// Whether the client batch has no calls.
    pub fn is_empty(&self) -> bool {
        self.shared.settled.is_empty()
    }

    /// Items started and not yet settled.
    pub fn unsettled(&self) -> usize {
        self.shared.unsettled.load(Ordering::Acquire)
    }

    /// Waits until no started item is unsettled.
    pub async fn all_settled(&self) {
        loop {
            let notified = self.shared.all_settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.unsettled() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// A key naming this group (equal for its clones).
    pub fn key(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }
}

/// One call of a [`BatchGroup`], in the call's extensions.
#[derive(Clone, Debug)]
pub struct BatchItem {
    group: BatchGroup,
    index: usize,
}

impl BatchItem {
    /// The group.
    pub fn group(&self) -> &BatchGroup {
        &self.group
    }

    /// The front started the call: counted until settled.
    pub fn start(&self) {
        self.group.shared.unsettled.fetch_add(1, Ordering::AcqRel);
    }

    /// The call is on its way again (a backend failed the whole upstream
    /// batch it was in): the next backend's batch waits for it as before,
    /// so the calls of a failed batch fail over together.
    pub fn unsettle(&self) {
        let shared = &self.group.shared;
        let Some(flag) = shared.settled.get(self.index) else {
            return;
        };
        if flag.swap(false, Ordering::AcqRel) {
            shared.unsettled.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The call reached a backend, or was answered: no longer waited for.
    /// Only the first call counts.
    pub fn settle(&self) {
        let shared = &self.group.shared;
        let Some(flag) = shared.settled.get(self.index) else {
            return;
        };
        if flag.swap(true, Ordering::AcqRel) {
            return;
        }
        let before = shared
            .unsettled
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if before == Ok(1) {
            shared.all_settled.notify_waiters();
        }
    }
}

/// A client batch's calls travelling the layers as one unit (see
/// [`JsonRpcBatchService`]): the layers see the calls one by one — filter,
/// limits, metrics, routing per call — but a batch that reaches a group's
/// member in one piece goes upstream as one request, without a future per
/// call and layer.
///
/// The calls keep their [`BatchPosition`](crate::BatchPosition) (set by
/// the front). A layer that makes single calls of a batch ([`per_call`])
/// tags them as one [`BatchGroup`], so a batching backend still gathers
/// them into one upstream batch.
///
/// ```
/// use rpc_core::batch::Batch;
/// use rpc_core::{Id, Request};
///
/// let batch = Batch::new(vec![
///     Request::new("eth_chainId").with_id(Id::from(1u64)),
///     Request::new("eth_blockNumber").with_id(Id::from(2u64)),
/// ])
/// .with_concurrency(8);
/// assert_eq!(batch.len(), 2);
/// assert_eq!(batch.concurrency(), 8);
/// assert_eq!(batch.calls()[1].method(), "eth_blockNumber");
/// ```
#[derive(Clone, Debug)]
pub struct Batch {
    calls: Vec<Request>,
    concurrency: usize,
}

/// The answers to a [`Batch`], one per call in the batch's order: `None`
/// when the call was still unanswered at its deadline (the front answers it
/// with a timeout), else the call's outcome as a single call would have it.
/// A notification's slot holds its outcome too; the front sends no answer
/// for it.
pub type BatchAnswers = Vec<Option<Result<Response, RpcError>>>;

impl Batch {
    /// A batch of `calls`; single calls that a layer makes of it run all at
    /// once (see [`with_concurrency`](Self::with_concurrency)).
    pub fn new(calls: Vec<Request>) -> Self {
        let concurrency = calls.len().max(1);
        Batch { calls, concurrency }
    }

    /// How many of the calls run at once when a layer splits the batch
    /// into single calls (the front's `batch_concurrency`); at least 1.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// See [`with_concurrency`](Self::with_concurrency).
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// The calls, in the client's order.
    pub fn calls(&self) -> &[Request] {
        &self.calls
    }

    /// The calls, to change them in place (a layer adding what the calls
    /// below need, as it would to a single call).
    pub fn calls_mut(&mut self) -> &mut [Request] {
        &mut self.calls
    }

    /// The calls.
    pub fn into_calls(self) -> Vec<Request> {
        self.calls
    }

    /// The number of calls.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether there is no call.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The earliest deadline of the calls (the front gives them one).
    pub fn deadline(&self) -> Option<Instant> {
        self.calls.iter().filter_map(Request::deadline).min()
    }

    /// A batch of other calls with the same concurrency.
    pub fn with_calls(&self, calls: Vec<Request>) -> Batch {
        Batch {
            calls,
            concurrency: self.concurrency,
        }
    }

    /// Splits the batch: the calls for which `apart` holds, with their
    /// positions, and a batch of the others, with theirs. Put the answers
    /// back together with [`Merge`].
    ///
    /// When no call is set apart the batch is given back as it is (no
    /// copy), and the [`Split`] is empty.
    pub fn split(self, mut apart: impl FnMut(&Request) -> bool) -> (Split, Batch) {
        let len = self.calls.len();
        let Some(first) = self.calls.iter().position(&mut apart) else {
            let split = Split {
                len,
                taken: Vec::new(),
                rest_at: Vec::new(),
            };
            return (split, self);
        };
        let mut taken = Vec::new();
        let mut rest = Vec::with_capacity(len - 1);
        let mut rest_at = Vec::with_capacity(len - 1);
        for (i, call) in self.calls.into_iter().enumerate() {
            if i == first || (i > first && apart(&call)) {
                taken.push((i, call));
            } else {
                rest_at.push(i);
                rest.push(call);
            }
        }
        (
            Split {
                len,
                taken,
                rest_at,
            },
            Batch {
                calls: rest,
                concurrency: self.concurrency,
            },
        )
    }
}

/// The calls [`Batch::split`] set apart, and where the others were.
#[derive(Debug)]
pub struct Split {
    len: usize,
    taken: Vec<(usize, Request)>,
    rest_at: Vec<usize>,
}

impl Split {
    /// Whether no call was set apart (the batch goes on whole).
    pub fn is_empty(&self) -> bool {
        self.taken.is_empty()
    }

    /// The calls set apart, with their positions in the original batch.
    pub fn take(&mut self) -> Vec<(usize, Request)> {
        std::mem::take(&mut self.taken)
    }

    /// Where the answers go: [`Merge::rest`] for the other batch's
    /// answers, [`Merge::put`] for each call set apart.
    pub fn merge(self) -> Merge {
        Merge {
            answers: (0..self.len).map(|_| None).collect(),
            rest_at: self.rest_at,
        }
    }
}

/// Answers of a split batch, put back in the client's order.
#[derive(Debug)]
pub struct Merge {
    answers: BatchAnswers,
    rest_at: Vec<usize>,
}

impl Merge {
    /// The answers of the batch of the calls not set apart.
    pub fn rest(&mut self, answers: BatchAnswers) {
        if self.rest_at.is_empty() {
            // Nothing was set apart: the answers are the batch's own.
            for (slot, answer) in self.answers.iter_mut().zip(answers) {
                *slot = answer;
            }
            return;
        }
        for (at, answer) in self.rest_at.iter().zip(answers) {
            self.answers[*at] = answer;
        }
    }

    /// The answer of the call that was at `position`.
    pub fn put(&mut self, position: usize, answer: Option<Result<Response, RpcError>>) {
        if let Some(slot) = self.answers.get_mut(position) {
            *slot = answer;
        }
    }

    /// The answers, in the client's order.
    pub fn finish(self) -> BatchAnswers {
        self.answers
    }
}

/// A service that also takes a [`Batch`] as one unit: a trait alias, like
/// [`JsonRpcService`], for `tower::Service<Batch, Response = BatchAnswers,
/// Error = Infallible>` with a `Send + 'static` future.
///
/// Our layers implement it: those that can look at a batch's calls in
/// place (metrics, filter, routing, the failover group, `HttpBackend`) pass
/// the batch on whole, the others (quorum, retry, hedging, the cache's
/// coalescing) make single calls of it there, with [`per_call`], so
/// everything below them sees single calls as before. A user's own layer
/// that has no batch form can do the same in a few lines:
///
/// ```
/// use std::convert::Infallible;
/// use std::task::{Context, Poll};
/// use rpc_core::batch::{per_call, Batch, BatchAnswers, BoxedBatchFuture, JsonRpcBatchService};
/// use rpc_core::{BoxedResponseFuture, Request, Response, RpcError};
/// use tower::Service;
///
/// /// A layer's service (its single-call logic elided).
/// #[derive(Clone)]
/// struct Mine<S>(S);
///
/// impl<S: rpc_core::JsonRpcService> Service<Request> for Mine<S> {
///     type Response = Response;
///     type Error = RpcError;
///     type Future = S::Future;
///     fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
///         self.0.poll_ready(cx)
///     }
///     fn call(&mut self, req: Request) -> S::Future {
///         self.0.call(req)
///     }
/// }
///
/// impl<S: rpc_core::JsonRpcService> Service<Batch> for Mine<S> {
///     type Response = BatchAnswers;
///     type Error = Infallible;
///     type Future = BoxedBatchFuture;
///     fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
///         Poll::Ready(Ok(()))
///     }
///     fn call(&mut self, batch: Batch) -> BoxedBatchFuture {
///         // Single calls from here down.
///         BoxedBatchFuture::new(per_call(self.clone(), batch))
///     }
/// }
///
/// fn takes_batches<S: JsonRpcBatchService>(_: &S) {}
/// # let echo = tower::service_fn(|req: Request| async move {
/// #     Ok::<_, RpcError>(Response::result(req.id().cloned().unwrap_or_default(), rpc_core::RawJson::NULL))
/// # });
/// takes_batches(&Mine(rpc_core::SharedJsonRpcService::new(echo)));
/// ```
///
/// Readiness: `poll_ready` of a batch is always ready; the calls of a
/// batch wait for room where they are made (as [`SharedJsonRpcService`](crate::SharedJsonRpcService)'s
/// calls do).
pub trait JsonRpcBatchService:
    JsonRpcService
    + Service<
        Batch,
        Response = BatchAnswers,
        Error = Infallible,
        Future: Future<Output = Result<BatchAnswers, Infallible>> + Send + 'static,
    >
{
}

impl<S> JsonRpcBatchService for S
where
    S: JsonRpcService + Service<Batch, Response = BatchAnswers, Error = Infallible>,
    <S as Service<Batch>>::Future: Send + 'static,
{
}

/// A boxed batch future: the `Future` of our layers' `Service<Batch>`.
pub struct BoxedBatchFuture {
    inner: Pin<Box<dyn Future<Output = Result<BatchAnswers, Infallible>> + Send>>,
}

impl BoxedBatchFuture {
    /// Boxes `future`.
    pub fn new(future: impl Future<Output = BatchAnswers> + Send + 'static) -> Self {
        BoxedBatchFuture {
            inner: Box::pin(futures_util::FutureExt::map(future, Ok)),
        }
    }
}

impl Future for BoxedBatchFuture {
    type Output = Result<BatchAnswers, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for BoxedBatchFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoxedBatchFuture").finish_non_exhaustive()
    }
}

/// The calls of `batch` as single calls of `service`, at most the batch's
/// concurrency at once, answered in order: what a layer with no batch form
/// does with a batch. A call still running at the batch's deadline is
/// left (its slot `None`); a call whose service panicked is answered with
/// an internal error, its batch-mates as usual. The calls carry a
/// [`BatchItem`] of one [`BatchGroup`], so a batching backend still sends
/// the ones that reach it together as one upstream batch.
///
/// ```
/// use rpc_core::batch::{per_call, Batch};
/// use rpc_core::{Id, RawJson, Request, Response, RpcError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let echo = tower::service_fn(|req: Request| async move {
///     let method = RawJson::from_bytes(format!("\"{}\"", req.method())).unwrap();
///     Ok::<_, RpcError>(Response::result(req.id().cloned().unwrap_or_default(), method))
/// });
/// let batch = Batch::new(vec![
///     Request::new("a").with_id(Id::from(1u64)),
///     Request::new("b").with_id(Id::from(2u64)),
/// ]);
/// let answers = per_call(echo, batch).await;
/// let second = answers[1].as_ref().unwrap().as_ref().unwrap();
/// assert_eq!(second.result_json().unwrap().as_bytes(), b"\"b\"");
/// # }
/// ```
pub async fn per_call<S>(service: S, batch: Batch) -> BatchAnswers
where
    S: Service<Request, Response = Response, Error = RpcError> + Clone,
{
    use futures_util::stream::{self, StreamExt};
    use futures_util::FutureExt;

    let deadline = batch.deadline();
    let concurrency = batch.concurrency;
    let len = batch.calls.len();
    let mut answers: BatchAnswers = (0..len).map(|_| None).collect();
    // The calls, now single, still reach a batching backend together.
    let group = (len > 1).then(|| BatchGroup::new(len));
    let work = stream::iter(batch.calls.into_iter().enumerate())
        .map(|(index, mut call)| {
            // Counted when made (before any call of the wave runs), so a
            // backend never sends a wave's first call alone.
            let item = group.as_ref().map(|group| {
                let item = group.item(index);
                item.start();
                call.extensions_mut().insert(item.clone());
                item
            });
            let method = call.method_arc().clone();
            let answer = std::panic::AssertUnwindSafe(service.clone().oneshot(call))
                .catch_unwind()
                .map(move |outcome| {
                    if let Some(item) = item {
                        item.settle();
                    }
                    let answer = outcome.unwrap_or_else(|_panic| {
                        tracing::error!(%method, "the service panicked while handling a call");
                        Err(RpcError::Internal("the service panicked".to_owned()))
                    });
                    (index, answer)
                });
            answer
        })
        .buffer_unordered(concurrency);
    let mut work = std::pin::pin!(work);
    let sleep = deadline.map(tokio::time::sleep_until);
    let mut sleep = std::pin::pin!(sleep);
    loop {
        let next = std::future::poll_fn(|cx| {
            if let Poll::Ready(next) = work.as_mut().poll_next_unpin(cx) {
                return Poll::Ready(next);
            }
            // The deadline passed: the calls still running are left.
            if let Some(sleep) = sleep.as_mut().as_pin_mut() {
                if sleep.poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
            }
            Poll::Pending
        })
        .await;
        match next {
            Some((index, answer)) => answers[index] = Some(answer),
            None => break,
        }
    }
    answers
}

/// The future of a layer's batch form that passes a batch on whole when it
/// has nothing to do with its calls (no box, no copy), and otherwise
/// boxes the work ([`split_apart`], [`answer_in_place`]).
pub type PassOrBoxed<F> = futures_util::future::Either<F, BoxedBatchFuture>;

/// Serves a batch through `this` (the layer's own single-call path) for
/// the calls `apart` picks, and through `inner` as one batch for the
/// others, concurrently: the shape of a layer that acts on a few methods
/// (subscriptions, filters, `eth_getLogs`) and passes the rest on. When
/// `apart` picks no call, the batch goes to `inner` as it is: call it from
/// the layer's `Service<Batch>::call`, after its `poll_ready` has polled
/// `inner`'s.
///
/// ```
/// use rpc_core::batch::{split_apart, Batch};
/// use rpc_core::{Id, RawJson, Request, Response, RpcError, SharedJsonRpcService};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let answer = |text: &'static str| tower::service_fn(move |req: Request| async move {
///     Ok::<_, RpcError>(Response::result(req.id().cloned().unwrap_or_default(), RawJson::from_static(text).unwrap()))
/// });
/// let batch = Batch::new(vec![
///     Request::new("special").with_id(Id::from(1u64)),
///     Request::new("plain").with_id(Id::from(2u64)),
/// ]);
/// // A shared stack takes batches (here made single calls of `answer`).
/// let mut inner = SharedJsonRpcService::new(answer("\"inner\""));
/// let answers = split_apart(answer("\"layer\""), &mut inner, batch, |c| c.method() == "special")
///     .await
///     .unwrap();
/// let text = |i: usize| answers[i].as_ref().unwrap().as_ref().unwrap().result_json().unwrap().as_bytes().to_vec();
/// assert_eq!(text(0), b"\"layer\"");
/// assert_eq!(text(1), b"\"inner\"");
/// # }
/// ```
pub fn split_apart<T, I>(
    this: T,
    inner: &mut I,
    batch: Batch,
    apart: impl FnMut(&Request) -> bool,
) -> PassOrBoxed<<I as Service<Batch>>::Future>
where
    T: Service<Request, Response = Response, Error = RpcError> + Clone + Send + Sync + 'static,
    T::Future: Send,
    I: JsonRpcBatchService,
{
    use futures_util::future::Either;
    let (mut split, rest) = batch.split(apart);
    if split.is_empty() {
        return Either::Left(Service::<Batch>::call(inner, rest));
    }
    let inner = inner.clone();
    Either::Right(BoxedBatchFuture::new(async move {
        let taken = split.take();
        let (positions, calls): (Vec<usize>, Vec<Request>) = taken.into_iter().unzip();
        let apart_batch = rest.with_calls(calls);
        let own = per_call(this, apart_batch);
        let passed = async move {
            if rest.is_empty() {
                return Vec::new();
            }
            call_batch(inner, rest).await
        };
        let (own, passed) = futures_util::future::join(own, passed).await;
        let mut merge = split.merge();
        merge.rest(passed);
        for (position, answer) in positions.into_iter().zip(own) {
            merge.put(position, answer);
        }
        merge.finish()
    }))
}

/// Sends `batch` to `service` as one unit (waiting for its readiness):
/// the answers, in order.
pub async fn call_batch<S: JsonRpcBatchService>(service: S, batch: Batch) -> BatchAnswers {
    match ServiceExt::<Batch>::oneshot(service, batch).await {
        Ok(answers) => answers,
        Err(never) => match never {},
    }
}

/// Answers in place the calls for which `answer` gives an answer (a
/// refusal, a filter's verdict) and sends the others to `inner` as one
/// batch: the shape of a layer that decides per call, synchronously,
/// whether a call goes on. `answer` may also change a call that goes on
/// (as the layer would change a single call). When no call is answered
/// here, the batch goes to `inner` as it is:
/// call it from the layer's `Service<Batch>::call`, after its `poll_ready`
/// has polled `inner`'s.
///
/// ```
/// use rpc_core::batch::{answer_in_place, Batch};
/// use rpc_core::{Id, RawJson, Request, Response, RpcError, SharedJsonRpcService};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut inner = SharedJsonRpcService::new(tower::service_fn(|req: Request| async move {
///     Ok::<_, RpcError>(Response::result(req.id().cloned().unwrap_or_default(), RawJson::NULL))
/// }));
/// let batch = Batch::new(vec![
///     Request::new("admin_peers").with_id(Id::from(1u64)),
///     Request::new("eth_chainId").with_id(Id::from(2u64)),
/// ]);
/// let answers = answer_in_place(&mut inner, batch, |call| {
///     call.method().starts_with("admin_").then(|| Err(RpcError::MethodNotAllowed { message: "no".into() }))
/// })
/// .await
/// .unwrap();
/// assert!(matches!(answers[0], Some(Err(RpcError::MethodNotAllowed { .. }))));
/// assert!(matches!(answers[1], Some(Ok(_))));
/// # }
/// ```
pub fn answer_in_place<I: JsonRpcBatchService>(
    inner: &mut I,
    mut batch: Batch,
    mut answer: impl FnMut(&mut Request) -> Option<Result<Response, RpcError>>,
) -> PassOrBoxed<<I as Service<Batch>>::Future> {
    use futures_util::future::Either;
    let mut placed = Vec::new();
    for (index, call) in batch.calls.iter_mut().enumerate() {
        if let Some(answered) = answer(call) {
            placed.push((index, answered));
        }
    }
    if placed.is_empty() {
        return Either::Left(Service::<Batch>::call(inner, batch));
    }
    let inner = inner.clone();
    Either::Right(BoxedBatchFuture::new(async move {
        let mut answered = vec![false; batch.calls.len()];
        for (index, _) in &placed {
            answered[*index] = true;
        }
        let mut position = 0;
        let (split, rest) = batch.split(|_| {
            position += 1;
            answered[position - 1]
        });
        let mut merge = split.merge();
        if !rest.is_empty() {
            merge.rest(call_batch(inner, rest).await);
        }
        for (index, answered) in placed {
            merge.put(index, Some(answered));
        }
        merge.finish()
    }))
}
