use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use metrics::{Counter, Gauge, Histogram, SharedString};
use pin_project_lite::pin_project;
use rpc_core::batch::{call_batch, Batch, BatchAnswers, BoxedBatchFuture, JsonRpcBatchService};
use rpc_core::{
    Attempts, BatchPosition, CacheStatus, Payload, Request, Response, RpcError, ServedBy,
};
use tower::Service;
use tracing::instrument::Instrumented;
use tracing::{field, Instrument, Span};

use crate::labels::{CodeLabels, OTHER};
use crate::{names, MethodLabels};

#[derive(Clone, Debug)]
pub(crate) enum Scope {
    Client,
    Backend(SharedString),
}

/// Outcome counters and the latency histogram of one method label.
struct Handles {
    ok: Counter,
    error: Counter,
    failed: Counter,
    rejected: Counter,
    duration: Histogram,
}

/// Per method label: handles registered on first use, so methods nobody
/// calls create no series.
#[derive(Default)]
struct MethodSlot {
    handles: OnceLock<Handles>,
    cache: OnceLock<[Counter; 4]>,
}

pub(crate) struct State {
    scope: Scope,
    /// Method name → its slot in `slots`; one lookup per call, with a fast
    /// seeded hasher (method names come from clients).
    index: HashMap<Box<str>, usize, foldhash::fast::RandomState>,
    /// Each known label and its handles; the last one is `other`.
    slots: Vec<(SharedString, MethodSlot)>,
    codes: CodeLabels,
    in_flight: OnceLock<Gauge>,
    batch: OnceLock<Histogram>,
}

impl State {
    pub(crate) fn new(scope: Scope, labels: MethodLabels) -> Self {
        let mut slots: Vec<(SharedString, MethodSlot)> = labels
            .names()
            .map(|n| (n.clone(), MethodSlot::default()))
            .collect();
        let index = slots
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (Box::<str>::from(&**n), i))
            .collect();
        slots.push((SharedString::const_str(OTHER), MethodSlot::default()));
        State {
            scope,
            index,
            slots,
            codes: CodeLabels::new(),
            in_flight: OnceLock::new(),
            batch: OnceLock::new(),
        }
    }

    /// The slot of `method`'s label (`other` for unknown methods).
    fn slot_of(&self, method: &str) -> usize {
        self.index
            .get(method)
            .copied()
            .unwrap_or(self.slots.len() - 1)
    }

    fn handles(&self, slot: usize) -> &Handles {
        let (label, slot) = &self.slots[slot];
        slot.handles.get_or_init(|| {
            let m = label.clone();
            match &self.scope {
                Scope::Client => Handles {
                    ok: metrics::counter!(names::REQUESTS, "method" => m.clone(), "outcome" => "ok"),
                    error: metrics::counter!(names::REQUESTS, "method" => m.clone(), "outcome" => "error"),
                    failed: metrics::counter!(names::REQUESTS, "method" => m.clone(), "outcome" => "failed"),
                    rejected: metrics::counter!(names::REQUESTS, "method" => m.clone(), "outcome" => "rejected"),
                    duration: metrics::histogram!(names::REQUEST_DURATION, "method" => m),
                },
                Scope::Backend(b) => Handles {
                    ok: metrics::counter!(names::BACKEND_REQUESTS, "backend" => b.clone(), "method" => m.clone(), "outcome" => "ok"),
                    error: metrics::counter!(names::BACKEND_REQUESTS, "backend" => b.clone(), "method" => m.clone(), "outcome" => "error"),
                    failed: metrics::counter!(names::BACKEND_REQUESTS, "backend" => b.clone(), "method" => m.clone(), "outcome" => "failed"),
                    // A backend does not reject; a layer above it does.
                    rejected: metrics::counter!(names::BACKEND_REQUESTS, "backend" => b.clone(), "method" => m.clone(), "outcome" => "failed"),
                    duration: metrics::histogram!(names::BACKEND_DURATION, "backend" => b.clone(), "method" => m),
                },
            }
        })
    }

    fn cache_counter(&self, slot: usize, status: CacheStatus) -> &Counter {
        let (label, slot) = &self.slots[slot];
        let counters = slot.cache.get_or_init(|| {
            let c = |s: &'static str| {
                metrics::counter!(names::CACHE, "method" => label.clone(), "status" => s)
            };
            [c("hit"), c("miss"), c("coalesced"), c("bypass")]
        });
        &counters[match status {
            CacheStatus::Hit => 0,
            CacheStatus::Miss => 1,
            CacheStatus::Coalesced => 2,
            CacheStatus::Bypass => 3,
        }]
    }

    /// A client call's span (and, for a batch's first call, the batch
    /// size).
    fn client_span(&self, request: &Request) -> Span {
        if let Some(BatchPosition { index: 0, len }) = request.extensions().get::<BatchPosition>() {
            self.batch
                .get_or_init(|| metrics::histogram!(names::BATCH_SIZE))
                .record(f64::from(*len));
        }
        tracing::debug_span!(
            "rpc.call",
            method = request.method(),
            id = request.id().map(field::display),
            backend = field::Empty,
            attempts = field::Empty,
            cache = field::Empty,
            code = field::Empty,
            ms = field::Empty,
        )
    }

    fn in_flight(&self) -> &Gauge {
        self.in_flight
            .get_or_init(|| metrics::gauge!(names::IN_FLIGHT))
    }

    /// Records a finished call.
    fn finish(&self, slot: usize, result: &Result<Response, RpcError>, elapsed: f64, span: &Span) {
        let h = self.handles(slot);
        h.duration.record(elapsed);
        match &self.scope {
            Scope::Client => self.finish_client(slot, h, result, span, elapsed),
            Scope::Backend(backend) => self.finish_backend(backend, slot, h, result, elapsed),
        }
    }

    fn finish_client(
        &self,
        slot: usize,
        h: &Handles,
        result: &Result<Response, RpcError>,
        span: &Span,
        elapsed: f64,
    ) {
        let code = match result {
            Ok(resp) => {
                if let Some(status) = resp.extensions().get::<CacheStatus>() {
                    self.cache_counter(slot, *status).increment(1);
                    span.record("cache", status.as_str());
                }
                if let Some(ServedBy(name)) = resp.extensions().get::<ServedBy>() {
                    span.record("backend", &**name);
                }
                if let Some(Attempts(n)) = resp.extensions().get::<Attempts>() {
                    span.record("attempts", n);
                }
                match resp.payload() {
                    Payload::Result(_) => {
                        h.ok.increment(1);
                        None
                    }
                    Payload::Error(e) => {
                        h.error.increment(1);
                        Some(e.code())
                    }
                }
            }
            Err(err) => {
                match err {
                    RpcError::MethodNotAllowed { .. }
                    | RpcError::InvalidParams { .. }
                    | RpcError::RateLimited { .. }
                    | RpcError::SenderLimited { .. } => h.rejected.increment(1),
                    _ => h.failed.increment(1),
                }
                if let Some(b) = err.backend() {
                    span.record("backend", b);
                }
                Some(err.to_error_object().code())
            }
        };
        if let Some(code) = code {
            let label = self.slots[slot].0.clone();
            metrics::counter!(names::RESPONSE_ERRORS, "method" => label, "code" => self.codes.label(code)).increment(1);
            span.record("code", code);
        }
        span.record("ms", elapsed * 1e3);
        tracing::debug!(parent: span, "call answered");
    }

    fn finish_backend(
        &self,
        backend: &SharedString,
        slot: usize,
        h: &Handles,
        result: &Result<Response, RpcError>,
        elapsed: f64,
    ) {
        match result {
            Ok(resp) => match resp.payload() {
                Payload::Result(_) => {
                    h.ok.increment(1);
                    tracing::debug!(backend = &**backend, ms = elapsed * 1e3, "backend answered");
                }
                Payload::Error(e) => {
                    h.error.increment(1);
                    let label = self.slots[slot].0.clone();
                    metrics::counter!(names::BACKEND_ERRORS, "backend" => backend.clone(), "method" => label, "code" => self.codes.label(e.code())).increment(1);
                    tracing::debug!(
                        backend = &**backend,
                        code = e.code(),
                        ms = elapsed * 1e3,
                        "backend answered with an error"
                    );
                }
            },
            Err(err) => {
                h.failed.increment(1);
                let reason = failure_reason(err);
                metrics::counter!(names::BACKEND_FAILURES, "backend" => backend.clone(), "reason" => reason).increment(1);
                tracing::debug!(backend = &**backend, reason, error = %err, ms = elapsed * 1e3, "backend failed");
            }
        }
    }
}

/// A bounded label for why a backend gave no answer.
fn failure_reason(err: &RpcError) -> &'static str {
    match err {
        RpcError::Connect { .. } => "connect",
        RpcError::Timeout { .. } => "timeout",
        RpcError::HttpStatus { .. } => "http_status",
        RpcError::ConnectionClosed { .. } => "closed",
        RpcError::InvalidResponse { .. } => "invalid_response",
        RpcError::ResponseTooLarge { .. } => "too_large",
        RpcError::DeadlineExceeded => "deadline",
        _ => "other",
    }
}

/// A metrics-recording service; built by [`MetricsLayer`](crate::MetricsLayer).
pub struct Metrics<S> {
    inner: S,
    state: Arc<State>,
}

impl<S: rpc_core::Named> rpc_core::Named for Metrics<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }
}

impl<S> Metrics<S> {
    pub(crate) fn new(inner: S, state: Arc<State>) -> Self {
        Metrics { inner, state }
    }
}

impl<S: Clone> Clone for Metrics<S> {
    fn clone(&self) -> Self {
        Metrics {
            inner: self.inner.clone(),
            state: self.state.clone(),
        }
    }
}

impl<S> fmt::Debug for Metrics<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("scope", &self.state.scope)
            .finish_non_exhaustive()
    }
}

/// Decrements the in-flight gauge when the call ends or is dropped.
struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

impl<S> Service<Request> for Metrics<S>
where
    S: Service<Request, Response = Response, Error = RpcError>,
{
    type Response = Response;
    type Error = RpcError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let state = self.state.clone();
        let slot = state.slot_of(request.method());
        let (span, in_flight) = match &state.scope {
            Scope::Client => {
                let gauge = state.in_flight().clone();
                gauge.increment(1.0);
                (state.client_span(&request), Some(InFlight(gauge)))
            }
            Scope::Backend(_) => (Span::none(), None),
        };
        let inner = self.inner.call(request).instrument(span.clone());
        ResponseFuture {
            inner,
            state,
            slot,
            span,
            start: Instant::now(),
            _in_flight: in_flight,
        }
    }
}

impl<S> Service<Batch> for Metrics<S>
where
    S: JsonRpcBatchService,
{
    type Response = BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = BoxedBatchFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    /// The batch goes on whole; each call is counted as a single call is,
    /// by its method and outcome, when the batch's answers come (a call
    /// still unanswered at its deadline is not counted, as a single call
    /// dropped at its deadline is not).
    fn call(&mut self, batch: Batch) -> Self::Future {
        let state = self.state.clone();
        let inner = self.inner.clone();
        // A client batch is mostly one method: its slot found once.
        let mut last: Option<(&str, usize)> = None;
        let calls: Vec<(usize, Span)> = batch
            .calls()
            .iter()
            .map(|request| {
                let method = request.method();
                let slot = match last {
                    Some((m, slot)) if m == method => slot,
                    _ => {
                        let slot = state.slot_of(method);
                        last = Some((method, slot));
                        slot
                    }
                };
                let span = match &state.scope {
                    Scope::Client => state.client_span(request),
                    Scope::Backend(_) => Span::none(),
                };
                (slot, span)
            })
            .collect();
        let in_flight = match &state.scope {
            Scope::Client => {
                let gauge = state.in_flight().clone();
                gauge.increment(calls.len() as f64);
                Some(BatchInFlight(gauge, calls.len() as f64))
            }
            Scope::Backend(_) => None,
        };
        BoxedBatchFuture::new(async move {
            let start = Instant::now();
            let answers = call_batch(inner, batch).await;
            let elapsed = start.elapsed().as_secs_f64();
            for ((slot, span), answer) in calls.iter().zip(&answers) {
                if let Some(result) = answer {
                    state.finish(*slot, result, elapsed, span);
                }
            }
            drop(in_flight);
            answers
        })
    }
}

/// Takes a batch's calls off the in-flight gauge when it ends or is
/// dropped.
struct BatchInFlight(Gauge, f64);

impl Drop for BatchInFlight {
    fn drop(&mut self) {
        self.0.decrement(self.1);
    }
}

pin_project! {
    /// The future of a [`Metrics`] call.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        state: Arc<State>,
        slot: usize,
        span: Span,
        start: Instant,
        _in_flight: Option<InFlight>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("method", &self.state.slots[self.slot].0)
            .finish_non_exhaustive()
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, RpcError>>,
{
    type Output = Result<Response, RpcError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let elapsed = this.start.elapsed().as_secs_f64();
        this.state.finish(*this.slot, &result, elapsed, this.span);
        Poll::Ready(result)
    }
}
