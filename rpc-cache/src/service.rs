use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use rpc_core::batch::{call_batch, Batch, BatchAnswers, BoxedBatchFuture, JsonRpcBatchService};
use rpc_core::{
    codes, AgreedChain, ChainHead, JsonRpcService, MinHead, Payload, Request, Response, RpcError,
};
use tower::{Service, ServiceExt};

use crate::key::{parse_params, CacheKey, Scope};
use crate::rules::{is_negative, Line, Plan};
use crate::{CacheRules, CacheStatus, CacheStore, MemoryStore, Rule};

type Flight = Shared<BoxFuture<'static, Result<Response, RpcError>>>;

struct InFlight {
    generation: u64,
    flight: Flight,
    waiters: usize,
}

/// The generations cached answers are keyed by.
#[derive(Debug, Default)]
pub(crate) struct Epochs {
    /// Bumped when the head moves up, a newer block is seen, a write
    /// succeeds or the chain reorganises (and when a cache starts on a
    /// store another one filled); answers kept for a TTL are keyed by it.
    pub(crate) tip: AtomicU64,
    /// Bumped when a reorganisation reaches blocks taken as permanent;
    /// answers about them are keyed by it.
    pub(crate) settled: AtomicU64,
}

/// What every clone of a [`Cache`] service shares.
pub(crate) struct State<St> {
    rules: Arc<CacheRules>,
    store: Arc<St>,
    coalesce: bool,
    negative_ttl: Option<Duration>,
    /// The trusted head: a head-tracking group's agreed head when answers
    /// carry one ([`AgreedChain`]), else the highest head answers showed.
    /// Decides what is settled.
    head: AtomicU64,
    /// The tip answers are fresh at: the group's highest believed head
    /// (`AgreedChain::tip`), else the same as `head`. Tip epochs follow it,
    /// tip answers are kept only from members at it.
    tip: AtomicU64,
    /// Whether a head-tracking group vouches for the heads (then tip hits
    /// carry the tip as their [`ChainHead`], for read-your-head sessions).
    tracked: std::sync::atomic::AtomicBool,
    /// The agreed finalized block + 1 (0: unknown).
    finalized: AtomicU64,
    /// The highest block number any answer showed (a receipt's block, a
    /// head): only moves tip epochs, never decides what is permanent.
    seen: AtomicU64,
    /// The group's reorganisation count last seen.
    reorgs: AtomicU64,
    in_flight: Mutex<HashMap<CacheKey, InFlight, crate::key::KeyHash>>,
    generation: AtomicU64,
    /// The epochs answers are keyed by, shared with every cache built
    /// from the same layer (and a layer that
    /// [continues](crate::CacheLayer::continue_from) it) over one store.
    epochs: Arc<Epochs>,
    /// A head-tracking group's live view, read before every lookup.
    view: Option<rpc_core::ChainView>,
}

impl<St: CacheStore> State<St> {
    pub(crate) fn new(
        rules: Arc<CacheRules>,
        store: Arc<St>,
        coalesce: bool,
        negative_ttl: Option<Duration>,
        view: Option<rpc_core::ChainView>,
        epochs: Arc<Epochs>,
    ) -> Self {
        // Tip answers another cache kept in this store are not this one's:
        // it has not seen their head.
        epochs.tip.fetch_add(1, Ordering::Relaxed);
        State {
            epochs,
            view,
            rules,
            store,
            coalesce,
            negative_ttl,
            head: AtomicU64::new(0),
            tip: AtomicU64::new(0),
            tracked: std::sync::atomic::AtomicBool::new(false),
            finalized: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            reorgs: AtomicU64::new(0),
            in_flight: Mutex::new(HashMap::default()),
            generation: AtomicU64::new(0),
        }
    }

    /// Where blocks are taken as permanent now.
    fn line(&self) -> Line {
        Line {
            head: self.head.load(Ordering::Relaxed),
            finalized: self.finalized.load(Ordering::Relaxed).checked_sub(1),
        }
    }

    /// Follows a group's agreed values; returns how many times that moved
    /// the tip epoch.
    fn follow(&self, agreed: &AgreedChain) -> u64 {
        let mut moved = 0;
        if !self.tracked.load(Ordering::Relaxed) {
            self.tracked.store(true, Ordering::Relaxed);
        }
        if self.reorgs.fetch_max(agreed.reorgs, Ordering::AcqRel) < agreed.reorgs {
            // Answers about recent blocks may be of replaced ones.
            let reached = self
                .line()
                .settled_to(self.rules.confirmations_of())
                .is_some_and(|settled| agreed.reorg_floor <= settled);
            if reached {
                self.epochs.settled.fetch_add(1, Ordering::Relaxed);
            }
            self.head.store(agreed.head, Ordering::Relaxed);
            self.tip
                .store(agreed.tip.max(agreed.head), Ordering::Relaxed);
            self.epochs.tip.fetch_add(1, Ordering::Relaxed);
            moved += 1;
        }
        if agreed.head != 0 {
            self.head.fetch_max(agreed.head, Ordering::Relaxed);
        }
        let tip = agreed.tip.max(agreed.head);
        if tip != 0 && self.raise_tip(tip) {
            moved += 1;
        }
        if let Some(f) = agreed.finalized {
            self.finalized.store(f + 1, Ordering::Relaxed);
        }
        moved
    }

    /// Catches up with the group's live view before serving from memory
    /// (a reorganisation the group saw through its probes).
    fn sync(&self) {
        if let Some(view) = &self.view {
            let now = view.get();
            if now.reorgs != self.reorgs.load(Ordering::Relaxed)
                || now.tip > self.tip.load(Ordering::Relaxed)
                || now.head > self.head.load(Ordering::Relaxed)
            {
                self.follow(&now);
            }
        }
    }

    /// Learns what an answer shows of the chain; returns how many times
    /// that moved the tip epoch.
    fn learn(&self, method: &str, response: &Response) -> u64 {
        let mut moved = 0;
        match response.extensions().get::<AgreedChain>() {
            // A head-tracking group vouches for the chain: only its agreed
            // values steer the cache (one member's word cannot).
            Some(agreed) => moved += self.follow(agreed),
            None => {
                let answer_head = response.extensions().get::<ChainHead>().map(|h| h.0);
                if let Some(h) = self.rules.head_in(method, response).max(answer_head) {
                    moved += u64::from(self.raise_head(h));
                }
            }
        }
        // Reads your writes: once a client holds a receipt (or a block) for
        // block N, nothing cached before N is served.
        if let Some(n) = self.rules.block_in(method, response) {
            moved += u64::from(self.see(n));
        }
        moved
    }

    /// Learns the head from an answer and stores it if the plan says so.
    async fn keep(&self, method: &str, slot: &Slot, plan: Plan, response: &Response) {
        let epoch_before = self.epochs.tip.load(Ordering::Relaxed);
        // The head this answer came from, when a group with head tracking
        // (or an adapter) says so.
        let answer_head = response.extensions().get::<ChainHead>().map(|h| h.0);
        let raised = self.learn(method, response);
        if let Scope::Settled(g) = slot.scope {
            if g != self.epochs.settled.load(Ordering::Relaxed) {
                // A reorganisation reached settled blocks meanwhile.
                return;
            }
        }
        if slot.follows_tip() && answer_head.is_some_and(|h| h < self.tip.load(Ordering::Relaxed)) {
            // From a backend behind the head already seen: passed on to its
            // caller, never kept for others.
            return;
        }
        let key = match slot.scope {
            Scope::Unscoped | Scope::Settled(_) => slot.key.clone(),
            Scope::Epoch(asked_in) => {
                // Stored in the epoch it is fresh for: the one its own head
                // started, or the one it was asked in. If anything else
                // moved the epoch meanwhile (a write, a newer head), the
                // answer may be stale already: not stored.
                let now = self.epochs.tip.load(Ordering::Relaxed);
                let expected = asked_in + raised;
                if now != expected || epoch_before != asked_in {
                    return;
                }
                if now == asked_in {
                    // The key it was looked up under.
                    slot.key.clone()
                } else {
                    slot.key.rescoped(Scope::Epoch(now))
                }
            }
        };
        let ttl = match plan {
            Plan::Skip => return,
            Plan::Store(ttl) => ttl,
            Plan::Settled => None,
            Plan::AfterResult => match self.rules.after_result(response, self.line()) {
                Some(ttl) => ttl,
                None => return,
            },
        };
        let payload = response.payload();
        let ttl = if is_negative(payload) {
            let Some(neg) = self.negative_ttl else { return };
            if let Payload::Error(e) = payload {
                // Refusals and "over a limit" say nothing about the call.
                let code = e.code();
                if codes::BACKEND_REFUSALS.contains(&code) || code == codes::LIMIT_EXCEEDED {
                    return;
                }
            }
            Some(ttl.map_or(neg, |t| t.min(neg)))
        } else {
            ttl
        };
        self.store.put(key, payload.clone(), ttl).await;
    }

    /// Drops the in-flight entry of `generation` (when it finishes or its
    /// last waiter leaves).
    fn finish(&self, key: &CacheKey, generation: u64) {
        if let Ok(mut map) = self.in_flight.lock() {
            if map.get(key).is_some_and(|f| f.generation == generation) {
                map.remove(key);
            }
        }
    }
}

impl<St> State<St> {
    /// Raises the head (without a head-tracking group: the head is the
    /// tip too); a higher one starts a new tip epoch (`true`).
    fn raise_head(&self, head: u64) -> bool {
        self.head.fetch_max(head, Ordering::Relaxed);
        self.raise_tip(head)
    }

    /// Raises the tip; a higher tip (or a block above any seen) starts a
    /// new tip epoch (`true`).
    fn raise_tip(&self, tip: u64) -> bool {
        let raised = self.tip.fetch_max(tip, Ordering::Relaxed) < tip;
        let newer = self.see(tip);
        if raised && !newer {
            self.epochs.tip.fetch_add(1, Ordering::Relaxed);
        }
        raised || newer
    }

    /// Notes a block number an answer showed; one above any seen starts a
    /// new tip epoch (`true`).
    fn see(&self, block: u64) -> bool {
        let newer = self.seen.fetch_max(block, Ordering::Relaxed) < block;
        if newer {
            self.epochs.tip.fetch_add(1, Ordering::Relaxed);
        }
        newer
    }
}

/// Where an answer is looked up and kept: `key` (the lookup and in-flight
/// key) is the call's method and params within `scope`: the tip epoch for
/// answers kept for a TTL, the settled generation for answers about blocks
/// taken as permanent.
#[derive(Clone)]
struct Slot {
    key: CacheKey,
    scope: Scope,
}

impl Slot {
    /// Whether the answer follows the chain tip (kept for a TTL, within
    /// the tip epoch it was asked in).
    fn follows_tip(&self) -> bool {
        matches!(self.scope, Scope::Epoch(_))
    }
}

/// Leaves the in-flight table when a waiter goes; the last one to leave an
/// unfinished call cancels it.
struct Waiter<'a, St: CacheStore> {
    state: &'a State<St>,
    key: &'a CacheKey,
    generation: u64,
}

impl<St: CacheStore> Drop for Waiter<'_, St> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.state.in_flight.lock() {
            if let Some(f) = map.get_mut(self.key) {
                if f.generation == self.generation {
                    f.waiters -= 1;
                    if f.waiters == 0 {
                        map.remove(self.key);
                    }
                }
            }
        }
    }
}

/// A caching service; built by [`CacheLayer`](crate::CacheLayer).
///
/// `poll_ready` is always ready: hits do not wait for the inner service, and
/// misses call it through `oneshot` on a clone.
pub struct Cache<S, St = MemoryStore> {
    inner: S,
    state: Arc<State<St>>,
}

impl<S, St> Cache<S, St> {
    pub(crate) fn new(inner: S, state: Arc<State<St>>) -> Self {
        Cache { inner, state }
    }

    /// The trusted chain head: a head-tracking group's agreed head, or
    /// without one the highest head seen in answers (0: none yet).
    pub fn head(&self) -> u64 {
        self.state.head.load(Ordering::Relaxed)
    }

    /// Tells the cache about a head learned elsewhere (a head tracker), so
    /// calls pinned to blocks below it by the confirmation depth are kept
    /// forever. The head only moves up; a higher one makes every answer kept
    /// for a TTL stale (see [`CacheRules::write`] for the other trigger).
    pub fn observe_head(&self, head: u64) {
        self.state.raise_head(head);
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.state.store
    }
}

impl<S: Clone, St> Clone for Cache<S, St> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
            state: self.state.clone(),
        }
    }
}

impl<S, St> fmt::Debug for Cache<S, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("rules", &self.state.rules)
            .field("coalesce", &self.state.coalesce)
            .field("negative_ttl", &self.state.negative_ttl)
            .field("head", &self.head())
            .finish_non_exhaustive()
    }
}

fn tagged(mut response: Response, status: CacheStatus) -> Response {
    response.extensions_mut().insert(status);
    response
}

impl<S: JsonRpcService, St: CacheStore> Service<Request> for Cache<S, St> {
    type Response = Response;
    type Error = RpcError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> ResponseFuture {
        let inner = self.inner.clone();
        let state = self.state.clone();
        // Decided by the method alone first: uncacheable calls (a broadcast
        // with a large payload) are never parsed, and their future is only
        // the bypass.
        let rule = state.rules.rule(request.method());
        if request.is_notification() || rule == Rule::Never {
            return ResponseFuture::new(bypass(inner, state, request));
        }
        ResponseFuture::new(run(inner, state, request, rule))
    }
}

impl<S: JsonRpcBatchService, St: CacheStore> Service<Batch> for Cache<S, St> {
    type Response = BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = BoxedBatchFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    /// Each call as a single call would be: hits answered from the store,
    /// calls already in flight (another client's) awaited, and the rest —
    /// misses, refreshes, calls the cache does not keep — sent on as one
    /// batch, their answers kept and read for the chain as a single call's
    /// are.
    fn call(&mut self, batch: Batch) -> BoxedBatchFuture {
        BoxedBatchFuture::new(cache_batch(self.inner.clone(), self.state.clone(), batch))
    }
}

/// How a call sent on in a batch is answered.
enum Sent {
    /// Not kept: its answer read for the chain (a write starts a new tip
    /// epoch).
    Bypass { method: Arc<str>, write: bool },
    /// Kept when answered (a refresh, a miss without coalescing).
    Keep {
        method: Arc<str>,
        slot: Slot,
        plan: Plan,
    },
    /// The leader of a flight: its answer goes to the flight, which keeps
    /// it and answers every call waiting on it.
    Lead(tokio::sync::oneshot::Sender<Result<Response, RpcError>>),
}

/// A call answered by a flight (its own, as leader, or another's).
struct Awaited {
    index: usize,
    id: rpc_core::Id,
    key: CacheKey,
    generation: u64,
    flight: Flight,
    status: CacheStatus,
    deadline: Option<tokio::time::Instant>,
}

/// [`Cache`]'s batch form (see `Service<Batch> for Cache`).
async fn cache_batch<S: JsonRpcBatchService, St: CacheStore>(
    inner: S,
    state: Arc<State<St>>,
    batch: Batch,
) -> BatchAnswers {
    let n = batch.len();
    let mut answers: BatchAnswers = (0..n).map(|_| None).collect();
    let template = batch.with_calls(Vec::new());
    let mut sent: Vec<(usize, Sent)> = Vec::new();
    let mut sent_calls: Vec<Request> = Vec::new();
    let mut lookups = Vec::new();
    for (index, request) in batch.into_calls().into_iter().enumerate() {
        let rule = state.rules.rule(request.method());
        let prepared = if request.is_notification() || rule == Rule::Never {
            Prepared::Bypass
        } else {
            prepare(&state, &request, rule)
        };
        match prepared {
            Prepared::Bypass => {
                let method = request.method_arc().clone();
                let write = state.rules.is_write(&method);
                sent.push((index, Sent::Bypass { method, write }));
                sent_calls.push(request);
            }
            Prepared::Refresh(slot, plan) => {
                let method = request.method_arc().clone();
                sent.push((index, Sent::Keep { method, slot, plan }));
                sent_calls.push(request);
            }
            Prepared::Lookup(slot, plan) => lookups.push((index, request, slot, plan)),
        }
    }

    // The store, for every call it may hold, at once.
    let found = futures_util::future::join_all(
        lookups
            .iter()
            .map(|(_, _, slot, _)| state.store.get(&slot.key)),
    )
    .await;
    let mut awaited = Vec::new();
    for ((index, request, slot, plan), payload) in lookups.into_iter().zip(found) {
        let id = request.id().cloned().unwrap_or_default();
        if let Some(payload) = payload {
            answers[index] = Some(Ok(hit(&state, &slot, id, payload)));
            continue;
        }
        if !state.coalesce {
            let method = request.method_arc().clone();
            sent.push((index, Sent::Keep { method, slot, plan }));
            sent_calls.push(request);
            continue;
        }
        let deadline = request.deadline();
        let key = slot.key.clone();
        let Ok(mut map) = state.in_flight.lock() else {
            answers[index] = Some(Err(RpcError::Internal(
                "cache in-flight table poisoned".into(),
            )));
            continue;
        };
        if let Some(f) = map.get_mut(&key) {
            // Another call asked already: this one waits for its answer.
            f.waiters += 1;
            let (flight, generation) = (f.flight.clone(), f.generation);
            drop(map);
            awaited.push(Awaited {
                index,
                id,
                key,
                generation,
                flight,
                status: CacheStatus::Coalesced,
                deadline,
            });
            continue;
        }
        let generation = state.generation.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Fed by this batch's answer; should the batch be dropped first,
        // the flight asks on its own for the calls still waiting on it.
        let alone = (inner.clone(), request.clone());
        let flight_state = state.clone();
        let flight_slot = slot;
        let method = request.method_arc().clone();
        let flight = async move {
            let result = match rx.await {
                Ok(result) => result,
                Err(_) => alone.0.oneshot(alone.1).await,
            };
            if let Ok(response) = &result {
                flight_state
                    .keep(&method, &flight_slot, plan, response)
                    .await;
            }
            flight_state.finish(&flight_slot.key, generation);
            result
        }
        .boxed()
        .shared();
        map.insert(
            key.clone(),
            InFlight {
                generation,
                flight: flight.clone(),
                waiters: 1,
            },
        );
        drop(map);
        awaited.push(Awaited {
            index,
            id,
            key,
            generation,
            flight,
            status: CacheStatus::Miss,
            deadline,
        });
        sent.push((index, Sent::Lead(tx)));
        sent_calls.push(request);
    }

    // Everything that goes upstream, as one batch.
    if !sent_calls.is_empty() {
        let got = call_batch(inner, template.with_calls(sent_calls)).await;
        for ((index, how), mut answer) in sent.into_iter().zip(got) {
            match how {
                Sent::Bypass { method, write } => {
                    if let Some(Ok(response)) = &mut answer {
                        state.learn(&method, response);
                        if write && response.result_json().is_some() {
                            // The chain (or a mempool) changed: tip answers
                            // are stale now.
                            state.epochs.tip.fetch_add(1, Ordering::Relaxed);
                        }
                        response.extensions_mut().insert(CacheStatus::Bypass);
                    }
                    answers[index] = answer;
                }
                Sent::Keep { method, slot, plan } => {
                    if let Some(Ok(response)) = &mut answer {
                        state.keep(&method, &slot, plan, response).await;
                        response.extensions_mut().insert(CacheStatus::Miss);
                    }
                    answers[index] = answer;
                }
                Sent::Lead(tx) => match answer {
                    Some(result) => {
                        let _ = tx.send(result);
                    }
                    // Left at the deadline: the flight asks on its own for
                    // whoever still waits; this call is left too.
                    None => {
                        drop(tx);
                        if let Some(a) = awaited.iter_mut().find(|a| a.index == index) {
                            a.deadline = Some(tokio::time::Instant::now());
                        }
                    }
                },
            }
        }
    }

    // The calls answered by flights.
    let flights = awaited.into_iter().map(|a| {
        let state = &state;
        async move {
            let _waiter = Waiter {
                state,
                key: &a.key,
                generation: a.generation,
            };
            let result = match a.deadline {
                Some(at) => match tokio::time::timeout_at(at, a.flight).await {
                    Ok(result) => Some(result),
                    Err(_) if a.status == CacheStatus::Miss => None,
                    Err(_) => Some(Err(RpcError::DeadlineExceeded)),
                },
                None => Some(a.flight.await),
            };
            let answer = result.map(|r| {
                r.map(|mut response| {
                    response.set_id(a.id);
                    tagged(response, a.status)
                })
            });
            (a.index, answer)
        }
    });
    for (index, answer) in futures_util::future::join_all(flights).await {
        answers[index] = answer;
    }
    answers
}

/// A call the cache does not keep. An `async move` block, not an `async
/// fn` (which keeps its arguments twice).
#[allow(clippy::manual_async_fn)]
fn bypass<S: JsonRpcService, St: CacheStore>(
    inner: S,
    state: Arc<State<St>>,
    request: Request,
) -> impl Future<Output = Result<Response, RpcError>> + Send {
    async move {
        let write = state.rules.is_write(request.method());
        let method = request.method_arc().clone();
        let response = inner.oneshot(request).await?;
        // Uncached answers still show the chain (a head, a reorganisation).
        state.learn(&method, &response);
        if write && response.result_json().is_some() {
            // The chain (or a mempool) changed: tip answers are stale now.
            state.epochs.tip.fetch_add(1, Ordering::Relaxed);
        }
        Ok(tagged(response, CacheStatus::Bypass))
    }
}

/// A cache call whose method has a rule other than
/// [`Rule::Never`]. An `async move` block, not an `async fn` (which keeps its
/// arguments twice): this future is boxed per call. Its rarer bypasses box
/// theirs, so that it stays small for every call.
#[allow(clippy::manual_async_fn)]
fn run<S: JsonRpcService, St: CacheStore>(
    inner: S,
    state: Arc<State<St>>,
    request: Request,
    rule: Rule,
) -> impl Future<Output = Result<Response, RpcError>> + Send {
    async move {
        let (slot, plan) = match prepare(&state, &request, rule) {
            Prepared::Bypass => return Box::pin(bypass(inner, state, request)).await,
            Prepared::Refresh(slot, plan) => {
                // The caller distrusts what is kept: ask upstream, keep the
                // answer in place of the old one.
                let method = request.method_arc().clone();
                let response = inner.oneshot(request).await?;
                state.keep(&method, &slot, plan, &response).await;
                return Ok(tagged(response, CacheStatus::Miss));
            }
            Prepared::Lookup(slot, plan) => (slot, plan),
        };
        let key = slot.key.clone();
        let id = request.id().cloned().unwrap_or_default();

        if let Some(payload) = state.store.get(&key).await {
            return Ok(hit(&state, &slot, id, payload));
        }

        if !state.coalesce {
            let method = request.method_arc().clone();
            let response = inner.oneshot(request).await?;
            state.keep(&method, &slot, plan, &response).await;
            return Ok(tagged(response, CacheStatus::Miss));
        }

        let deadline = request.deadline();
        let (flight, generation, leader) = {
            let mut map = state
                .in_flight
                .lock()
                .map_err(|_| RpcError::Internal("cache in-flight table poisoned".into()))?;
            match map.get_mut(&key) {
                Some(f) => {
                    f.waiters += 1;
                    (f.flight.clone(), f.generation, false)
                }
                None => {
                    let generation = state.generation.fetch_add(1, Ordering::Relaxed);
                    let flight = upstream(inner, state.clone(), slot, plan, generation, request)
                        .boxed()
                        .shared();
                    map.insert(
                        key.clone(),
                        InFlight {
                            generation,
                            flight: flight.clone(),
                            waiters: 1,
                        },
                    );
                    (flight, generation, true)
                }
            }
        };
        let _waiter = Waiter {
            state: &state,
            key: &key,
            generation,
        };
        let result = match deadline {
            Some(at) => match tokio::time::timeout_at(at, flight).await {
                Ok(result) => result,
                Err(_) => Err(RpcError::DeadlineExceeded),
            },
            None => flight.await,
        };
        let mut response = result?;
        response.set_id(id);
        let status = if leader {
            CacheStatus::Miss
        } else {
            CacheStatus::Coalesced
        };
        Ok(tagged(response, status))
    }
}

/// What the cache does with a call whose method's rule is not
/// [`Rule::Never`], decided before anything is awaited.
enum Prepared {
    /// Passed through (params that cannot be keyed, a plan that skips, a
    /// session ahead of the cache's tip).
    Bypass,
    /// Asked upstream, the answer kept in place of the kept one
    /// ([`Refresh`]).
    Refresh(Slot, Plan),
    /// Looked up, then asked upstream on a miss.
    Lookup(Slot, Plan),
}

/// Decides what to do with `request` (see [`Prepared`]).
fn prepare<St: CacheStore>(state: &State<St>, request: &Request, rule: Rule) -> Prepared {
    let Some(params) = parse_params(request) else {
        return Prepared::Bypass;
    };
    state.sync();
    let plan = state.rules.plan(rule, &params, state.line());
    if plan == Plan::Skip {
        return Prepared::Bypass;
    }
    if matches!(plan, Plan::Store(Some(_)))
        && request
            .extensions()
            .get::<MinHead>()
            .is_some_and(|m| m.0 > state.tip.load(Ordering::Relaxed))
    {
        // The caller's session has seen a head above the cache's tip: a tip
        // answer kept here is older than what it saw.
        return Prepared::Bypass;
    }
    // Answers kept for a TTL follow the tip: keyed by the tip epoch, so a
    // new head or a write makes them unreachable at once. Answers kept
    // forever, or decided by their result (mined transactions), are not.
    let scope = match plan {
        Plan::Store(Some(_)) => Scope::Epoch(state.epochs.tip.load(Ordering::Relaxed)),
        Plan::Settled | Plan::AfterResult => {
            Scope::Settled(state.epochs.settled.load(Ordering::Relaxed))
        }
        _ => Scope::Unscoped,
    };
    let slot = Slot {
        key: CacheKey::from_parts(
            request.method(),
            &params,
            state.rules.lowercases_hex(),
            scope,
        ),
        scope,
    };
    if request.extensions().get::<Refresh>().is_some() {
        Prepared::Refresh(slot, plan)
    } else {
        Prepared::Lookup(slot, plan)
    }
}

/// The answer to a call found in the store.
fn hit<St: CacheStore>(
    state: &State<St>,
    slot: &Slot,
    id: rpc_core::Id,
    payload: Payload,
) -> Response {
    let mut response = Response::new(id, payload);
    if slot.follows_tip() && state.tracked.load(Ordering::Relaxed) {
        // A tip answer is kept only from members at the tip of its
        // epoch: say so, so a read-your-head session records it.
        response
            .extensions_mut()
            .insert(ChainHead(state.tip.load(Ordering::Relaxed)));
    }
    tagged(response, CacheStatus::Hit)
}

/// The one upstream call behind a flight: stores the answer, then leaves the
/// in-flight table.
///
/// An `async move` block, not an `async fn` (which keeps its arguments
/// twice): this future is boxed per miss.
#[allow(clippy::manual_async_fn)]
fn upstream<S: JsonRpcService, St: CacheStore>(
    inner: S,
    state: Arc<State<St>>,
    slot: Slot,
    plan: Plan,
    generation: u64,
    request: Request,
) -> impl Future<Output = Result<Response, RpcError>> + Send {
    async move {
        let method = request.method_arc().clone();
        let result = inner.oneshot(request).await;
        if let Ok(response) = &result {
            state.keep(&method, &slot, plan, response).await;
        }
        state.finish(&slot.key, generation);
        result
    }
}

/// A request extension: do not answer from the cache — ask upstream and
/// keep that answer in place of the kept one (for a caller that found the
/// kept answer wrong: a proof that does not hold, a server since
/// distrusted). The call is not coalesced with others.
///
/// ```
/// use rpc_cache::Refresh;
/// use rpc_core::{Id, Request};
/// let mut req = Request::new("blockchain.scripthash.get_history").with_id(Id::from(1u64));
/// req.extensions_mut().insert(Refresh);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refresh;

/// The future of a [`Cache`] call (boxed: a hit awaits the store, a miss the
/// inner service).
pub type ResponseFuture = rpc_core::BoxedResponseFuture;
