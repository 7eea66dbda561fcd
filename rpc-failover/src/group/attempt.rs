//! One attempt on one member: its reservation, its stall deadline, and how
//! it ended.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::task::Poll;

use futures_util::FutureExt;
use rpc_core::{JsonRpcService, Request, Response, RpcError, ServedBy};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use super::{Core, OutReason, Pick};
use crate::names;

/// How one attempt ended.
pub(crate) enum Outcome {
    /// An answer to pass on (a result or an ordinary error object).
    Answer(Response),
    /// An error object that counts against the backend (rate limit, ...).
    Refused(Response),
    /// No answer.
    Failed(RpcError),
    /// The attempt passed its stall deadline and was left so that the call
    /// can move on (the member was charged; any budget was paid).
    Stalled(RpcError),
    /// The member was not ready and the caller asked not to wait.
    Busy,
}

impl Outcome {
    /// The same failure for another call (a batch's calls share how its
    /// attempt failed); not for answers, which are each call's own.
    pub(crate) fn failure_copy(&self) -> Outcome {
        match self {
            Outcome::Failed(e) => Outcome::Failed(e.clone()),
            Outcome::Stalled(e) => Outcome::Stalled(e.clone()),
            _ => Outcome::Busy,
        }
    }
}

/// A member reserved for one attempt: holds its count in flight (taken
/// when it was picked) and its half-open trial, both released on drop, and
/// charges a stall to the member if the attempt is dropped (the client
/// left, a hedge won) after its stall deadline. Made when the member is
/// picked, so an attempt dropped before it ever ran still gives the trial
/// back.
pub(crate) struct Reservation<'a, S> {
    core: &'a Core<S>,
    pub(crate) pick: Pick,
    probe_held: bool,
    /// Ticks at which the running attempt stalls (0: not running).
    stall_at: u64,
    /// The stall was charged (or the attempt's outcome was recorded).
    settled: bool,
}

impl<S> Drop for Reservation<'_, S> {
    fn drop(&mut self) {
        if !self.settled && self.stall_at != 0 && self.core.now() >= self.stall_at {
            // Cancelled after it should have answered: that is a stall.
            self.core.charge_stall(self.pick, "the call was cancelled");
            self.probe_held = false;
        }
        let h = &self.core.health[self.pick.index];
        h.inflight.fetch_sub(1, Ordering::AcqRel);
        self.core.released();
        if self.probe_held {
            h.probing.store(false, Ordering::Release);
        }
    }
}

impl<S> Core<S> {
    /// Holds the picked member (already counted in flight) for an attempt.
    pub(crate) fn reserve(&self, pick: Pick) -> Reservation<'_, S> {
        Reservation {
            core: self,
            pick,
            probe_held: pick.probe,
            stall_at: 0,
            settled: false,
        }
    }

    /// Charges a stall to the picked member.
    fn charge_stall(&self, pick: Pick, detail: &str) {
        metrics::counter!(names::STALLS, "backend" => self.members[pick.index].name.clone())
            .increment(1);
        self.budget.record_failure();
        self.on_failure(pick, OutReason::Stall, &detail, None);
    }

    /// Whether member `i` answered anything since `since` (ticks).
    fn answered_since(&self, i: usize, since: u64) -> bool {
        self.health[i].answered_at.load(Ordering::Relaxed) > since
    }
}

/// Whether an attempt's failure counts against its member: a timeout only
/// when the attempt started with at least half of the call's time left
/// (else earlier attempts, not this member, used the time); any other
/// error when it is the backend's fault.
fn counts_against(
    err: &RpcError,
    deadline: Option<Instant>,
    call_started: Option<Instant>,
    started: Instant,
) -> bool {
    match (err, deadline) {
        (RpcError::Timeout { .. }, Some(d)) => {
            let total = d.saturating_duration_since(call_started.unwrap_or(started));
            d.saturating_duration_since(started) * 2 >= total
        }
        _ => err.is_backend_fault(),
    }
}

/// Waits for `svc` to be ready, until `deadline`.
async fn wait_ready_until<S: JsonRpcService>(
    svc: &mut S,
    deadline: Option<Instant>,
) -> Result<(), RpcError> {
    match deadline {
        Some(d) => match tokio::time::timeout_at(d, svc.ready()).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(RpcError::DeadlineExceeded),
        },
        None => svc.ready().await.map(|_| ()),
    }
}

impl<S: JsonRpcService> Core<S> {
    /// One attempt on one member, recording the member's health.
    ///
    /// `call_started` is when the whole call began: a timeout counts against
    /// the member unless the attempt started with less than half of the call's
    /// time left (then earlier attempts, not this member, used the time).
    ///
    /// `may_leave`: at the stall deadline the call may leave this attempt
    /// and move on (it is safe to repeat and another member can take it).
    #[allow(clippy::manual_async_fn)] // the arguments kept once (below)
    pub(crate) fn attempt<'a>(
        &'a self,
        mut reservation: Reservation<'a, S>,
        request: Request,
        wait_ready: bool,
        call_started: Option<Instant>,
        may_leave: bool,
    ) -> impl std::future::Future<Output = Outcome> + Send + 'a {
        // An `async move` block, not an `async fn`: an `async fn` keeps its
        // arguments twice in its future (the request alone is 96 bytes),
        // and every attempt's future is copied into the group's box.
        async move {
            let pick = reservation.pick;
            let member = &self.members[pick.index];
            let deadline = request.deadline();
            let mut svc = member.service.clone();
            let learn = self.heads.as_ref().map(|h| h.teaches(&request));
            let class = self.expect.class(request.method_arc());

            // Readiness: a saturated member must not stall the group. Waiting
            // is rare, so its future lives in its own box, not in every
            // attempt's (a future's size is copied when it is boxed).
            let waited = match svc.ready().now_or_never() {
                Some(r) => r.map(|_| ()).err(),
                None if !wait_ready => return Outcome::Busy,
                None => Box::pin(wait_ready_until(&mut svc, deadline)).await.err(),
            };
            if let Some(err) = waited {
                // Not ready is not a fault of the backend's answers; not counted.
                return Outcome::Failed(err);
            }

            let started = Instant::now();
            let stall_after = self.expect.deadline(pick.index, class);
            let stall_at = started + stall_after;
            reservation.stall_at = self.ticks(stall_at);
            let timeout = |elapsed| RpcError::Timeout {
                backend: Some(member.name.clone()),
                elapsed,
            };
            let mut call = std::pin::pin!(svc.call(request));
            let mut stalled = false;
            // One timer for the attempt: the stall deadline, or the call's
            // deadline when that comes first; after a stall the call stays,
            // the same timer moves on to the call's deadline.
            let watching_stall = !matches!(deadline, Some(d) if d <= stall_at);
            let first = match deadline {
                Some(d) if !watching_stall => d,
                _ => stall_at,
            };
            let mut timer = std::pin::pin!(tokio::time::sleep_until(first));
            let mut timer_on = true;
            let result = loop {
                let fired = std::future::poll_fn(|cx| {
                    if let Poll::Ready(r) = call.as_mut().poll(cx) {
                        return Poll::Ready(Err(r));
                    }
                    if timer_on && timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Pending
                })
                .await;
                match fired {
                    Err(answered) => break answered,
                    // The call's deadline passed.
                    Ok(()) if stalled || !watching_stall => break Err(timeout(started.elapsed())),
                    Ok(()) => {
                        // A stall: charged now, whatever happens next.
                        stalled = true;
                        reservation.settled = true;
                        reservation.probe_held = false;
                        self.charge_stall(pick, "no answer within its stall deadline");
                        // A member still answering other calls is slow, not
                        // frozen: repeating the call elsewhere is extra load and
                        // takes a token from the budget. "Still" is the second
                        // half of the stall window: answers to calls in flight
                        // just before a freeze are no sign of life.
                        let recent = self.ticks(stall_at - stall_after / 2);
                        let responsive = self.answered_since(pick.index, recent);
                        if may_leave && (!responsive || self.withdraw()) {
                            tracing::debug!(
                                backend = %member.name,
                                responsive,
                                "attempt stalled: moving on"
                            );
                            return Outcome::Stalled(timeout(started.elapsed()));
                        }
                        match deadline {
                            Some(d) => timer.as_mut().reset(d),
                            None => timer_on = false,
                        }
                    }
                }
            };
            // One clock read for how long it took and when the member last
            // answered.
            let finished = Instant::now();
            let elapsed = finished.saturating_duration_since(started);
            // The attempt finished: the guard must not clear a probe flag that
            // on_success / on_failure now own, nor charge a stall.
            reservation.probe_held = false;
            reservation.settled = true;
            drop(reservation);

            match result {
                Ok(mut response) => {
                    let now = self.ticks(finished);
                    self.answered_at(pick.index, now);
                    if response.extensions().get::<ServedBy>().is_none() {
                        response
                            .extensions_mut()
                            .insert(ServedBy(member.name.clone()));
                    }
                    if let (Some(heads), Some(learn)) = (&self.heads, learn) {
                        // Learn the member's head from its answer, and tell the
                        // layers above which head this answer comes from and
                        // what the group agrees on.
                        heads.learn(pick.index, learn, &response, now);
                        heads.stamp(pick.index, &mut response);
                    }
                    if self.policy.failure_rules.is_backend_failure(&response) {
                        if !stalled {
                            let reason = response
                                .error_object()
                                .map(|e| format!("error {}: {}", e.code(), e.message()))
                                .unwrap_or_default();
                            self.budget.record_failure();
                            self.on_failure(pick, OutReason::Refused, &reason, None);
                        }
                        Outcome::Refused(response)
                    } else {
                        // A stalled attempt's late answer is served, but it
                        // neither clears the stall nor teaches the deadline.
                        if !stalled {
                            self.observe_latency(pick.index, elapsed);
                            self.expect.record(pick.index, class, elapsed);
                            self.budget.record_success();
                            self.on_success(pick);
                        }
                        Outcome::Answer(response)
                    }
                }
                Err(err) => {
                    if matches!(err, RpcError::HttpStatus { .. }) {
                        // The member's server is up and answering.
                        self.answered_at(pick.index, self.ticks(finished));
                    }
                    let counted = !stalled && counts_against(&err, deadline, call_started, started);
                    if counted {
                        self.observe_latency(pick.index, elapsed);
                        self.budget.record_failure();
                        self.on_failure(pick, OutReason::of(&err), &err, None);
                    } else if pick.probe && !stalled {
                        // The trial did not decide anything; let another call try.
                        self.health[pick.index]
                            .probing
                            .store(false, Ordering::Release);
                    }
                    Outcome::Failed(err)
                }
            }
        }
    }

    /// Takes a token for an extra call, counting a refusal.
    pub(crate) fn withdraw(&self) -> bool {
        if self.budget.withdraw() {
            return true;
        }
        metrics::counter!(names::RETRY_BUDGET_EXHAUSTED).increment(1);
        false
    }

    /// Whether a call that ended this way may go to another member.
    pub(crate) fn may_move_on(&self, outcome: &Outcome, safe_to_repeat: bool) -> bool {
        match outcome {
            Outcome::Answer(_) => false,
            Outcome::Busy | Outcome::Stalled(_) => true,
            Outcome::Refused(_) => safe_to_repeat,
            Outcome::Failed(err) => match err {
                RpcError::DeadlineExceeded
                | RpcError::ResponseTooLarge { .. }
                | RpcError::MethodNotAllowed { .. }
                | RpcError::InvalidParams { .. }
                | RpcError::QuorumNotReached { .. }
                | RpcError::Internal(_) => false,
                _ => match err.delivery() {
                    rpc_core::Delivery::NotSent => true,
                    rpc_core::Delivery::MaybeSent => safe_to_repeat,
                },
            },
        }
    }

    /// Pays for moving a call on from member `index` after `outcome`: free
    /// when the member certainly did no work (not sent, refused, a stall
    /// already settled) or when the failure took it out of service (calls
    /// stop going there, so the moves are bounded by the calls that were in
    /// flight); else a token from the budget. `false` when the budget is
    /// spent.
    pub(crate) fn pay_to_move_on(&self, index: usize, outcome: &Outcome) -> bool {
        let free = match outcome {
            Outcome::Answer(_) => false,
            Outcome::Busy | Outcome::Refused(_) | Outcome::Stalled(_) => true,
            Outcome::Failed(err) => {
                err.delivery() == rpc_core::Delivery::NotSent
                    || matches!(err, RpcError::HttpStatus { status, .. } if status.as_u16() == 429)
            }
        };
        free || self.health[index].out_until.load(Ordering::Acquire) != 0 || self.withdraw()
    }

    /// Whether a call may leave a stalled attempt on member `index`: it is
    /// safe to repeat and another member can take it.
    pub(crate) fn may_leave(&self, safe_to_repeat: bool, tried: u64, pick: Pick) -> bool {
        safe_to_repeat && !pick.last_resort && self.another_can_take(tried)
    }
}

impl<S: rpc_core::batch::JsonRpcBatchService> Core<S> {
    /// One attempt of a whole batch on one member: [`attempt`](Self::attempt)
    /// for calls that travel together. The member's health is recorded
    /// once for the attempt (a failure if it refused a call or failed in a
    /// way that counts, else a success), and each call gets its outcome.
    /// `None` when the member was not ready at once: the calls then go one
    /// by one (they wait for room there). The stall deadline is the longest
    /// of the calls' classes', as each call of a gathered batch had it.
    #[allow(clippy::manual_async_fn)] // the arguments kept once (see `attempt`)
    pub(crate) fn attempt_batch<'a>(
        &'a self,
        mut reservation: Reservation<'a, S>,
        batch: rpc_core::batch::Batch,
        call_started: Option<Instant>,
        may_leave: bool,
    ) -> impl std::future::Future<Output = Option<Attempted>> + Send + 'a {
        async move {
            use rpc_core::batch::Batch;
            let pick = reservation.pick;
            let member = &self.members[pick.index];
            let deadline = batch.deadline();
            let n = batch.len();
            let mut svc = member.service.clone();
            match ServiceExt::<Request>::ready(&mut svc).now_or_never() {
                Some(Ok(_)) => {}
                _ => return None,
            }
            match ServiceExt::<Batch>::ready(&mut svc).now_or_never() {
                Some(Ok(_)) => {}
                _ => return None,
            }
            let learns: Vec<_> = match &self.heads {
                Some(heads) => batch
                    .calls()
                    .iter()
                    .map(|r| Some(heads.teaches(r)))
                    .collect(),
                None => Vec::new(),
            };
            // The distinct classes of the calls (a batch is mostly one
            // method: names are interned, so the same name is the same
            // pointer and is looked up once).
            let mut classes: Vec<u8> = Vec::new();
            let mut last: Option<(&std::sync::Arc<str>, u8)> = None;
            for req in batch.calls() {
                let method = req.method_arc();
                let class = match last {
                    Some((m, c)) if std::sync::Arc::ptr_eq(m, method) => c,
                    _ => self.expect.class(method),
                };
                last = Some((method, class));
                if !classes.contains(&class) {
                    classes.push(class);
                }
            }
            let stall_after = classes
                .iter()
                .map(|c| self.expect.deadline(pick.index, *c))
                .max()
                .unwrap_or_default();

            let started = Instant::now();
            let stall_at = started + stall_after;
            reservation.stall_at = self.ticks(stall_at);
            let timeout = |elapsed| RpcError::Timeout {
                backend: Some(member.name.clone()),
                elapsed,
            };
            let mut call = std::pin::pin!(Service::<Batch>::call(&mut svc, batch));
            let mut stalled = false;
            let watching_stall = !matches!(deadline, Some(d) if d <= stall_at);
            let first = match deadline {
                Some(d) if !watching_stall => d,
                _ => stall_at,
            };
            let mut timer = std::pin::pin!(tokio::time::sleep_until(first));
            let mut timer_on = true;
            let answers = loop {
                let fired = std::future::poll_fn(|cx| {
                    if let Poll::Ready(r) = call.as_mut().poll(cx) {
                        return Poll::Ready(Err(r));
                    }
                    if timer_on && timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Pending
                })
                .await;
                match fired {
                    Err(Ok(answers)) => break Some(answers),
                    Err(Err(never)) => match never {},
                    Ok(()) if stalled || !watching_stall => break None,
                    Ok(()) => {
                        stalled = true;
                        reservation.settled = true;
                        reservation.probe_held = false;
                        self.charge_stall(pick, "no answer to a batch within its stall deadline");
                        let recent = self.ticks(stall_at - stall_after / 2);
                        let responsive = self.answered_since(pick.index, recent);
                        if may_leave && (!responsive || self.withdraw()) {
                            tracing::debug!(
                                backend = %member.name,
                                responsive,
                                calls = n,
                                "batch attempt stalled: moving on"
                            );
                            let e = timeout(started.elapsed());
                            return Some(Attempted::Each(Outcome::Stalled(e)));
                        }
                        match deadline {
                            Some(d) => timer.as_mut().reset(d),
                            None => timer_on = false,
                        }
                    }
                }
            };
            let finished = Instant::now();
            let elapsed = finished.saturating_duration_since(started);
            reservation.probe_held = false;
            reservation.settled = true;
            drop(reservation);

            // The batch's deadline passed with no answer: every call timed out.
            let Some(answers) = answers else {
                let e = timeout(elapsed);
                let counted = !stalled && counts_against(&e, deadline, call_started, started);
                if counted {
                    self.observe_latency(pick.index, elapsed);
                    self.budget.record_failure();
                    self.on_failure(pick, OutReason::of(&e), &e, None);
                } else if pick.probe && !stalled {
                    self.health[pick.index]
                        .probing
                        .store(false, Ordering::Release);
                }
                return Some(Attempted::Each(Outcome::Failed(e)));
            };

            let now = self.ticks(finished);
            let mut refused: Option<String> = None;
            let mut failure: Option<RpcError> = None;
            let mut answered = false;
            let mut served = false;
            let mut answers = answers;
            answers.resize_with(n, || None);
            // Each answer read where it is: served by, heads learned, and
            // what it says of the member.
            for (i, answer) in answers.iter_mut().enumerate() {
                match answer {
                    Some(Ok(response)) => {
                        answered = true;
                        if response.extensions().get::<ServedBy>().is_none() {
                            response
                                .extensions_mut()
                                .insert(ServedBy(member.name.clone()));
                        }
                        if let (Some(heads), Some(Some(learn))) = (&self.heads, learns.get(i)) {
                            heads.learn(pick.index, *learn, response, now);
                            heads.stamp(pick.index, response);
                        }
                        if self.policy.failure_rules.is_backend_failure(response) {
                            if refused.is_none() {
                                refused = Some(
                                    response
                                        .error_object()
                                        .map(|e| format!("error {}: {}", e.code(), e.message()))
                                        .unwrap_or_default(),
                                );
                            }
                        } else {
                            served = true;
                        }
                    }
                    Some(Err(err)) => {
                        if matches!(err, RpcError::HttpStatus { .. }) {
                            answered = true;
                        }
                        if failure.is_none() && counts_against(err, deadline, call_started, started)
                        {
                            failure = Some(err.clone());
                        }
                    }
                    // Left unanswered at the deadline by the member's batch.
                    None => *answer = Some(Err(timeout(elapsed))),
                }
            }
            if answered {
                self.answered_at(pick.index, now);
            }
            if !stalled {
                if let Some(reason) = refused {
                    self.budget.record_failure();
                    self.on_failure(pick, OutReason::Refused, &reason, None);
                } else if let Some(err) = failure {
                    self.observe_latency(pick.index, elapsed);
                    self.budget.record_failure();
                    self.on_failure(pick, OutReason::of(&err), &err, None);
                } else if served {
                    self.observe_latency(pick.index, elapsed);
                    for class in classes {
                        self.expect.record(pick.index, class, elapsed);
                    }
                    self.budget.record_success();
                    self.on_success(pick);
                } else if pick.probe {
                    self.health[pick.index]
                        .probing
                        .store(false, Ordering::Release);
                }
            }
            Some(Attempted::Answers(answers))
        }
    }

    /// Each call's outcome of a batch attempt of `n` calls.
    pub(crate) fn outcomes(&self, attempted: Attempted, n: usize) -> Vec<Outcome> {
        match attempted {
            Attempted::Answers(answers) => {
                answers.into_iter().map(|a| self.outcome_of(a)).collect()
            }
            Attempted::Each(outcome) => (0..n).map(|_| outcome.failure_copy()).collect(),
        }
    }

    /// How one answer of a batch attempt ended (see [`Attempted::Answers`]).
    pub(crate) fn outcome_of(&self, answer: Option<Result<Response, RpcError>>) -> Outcome {
        match answer {
            Some(Ok(response)) if self.policy.failure_rules.is_backend_failure(&response) => {
                Outcome::Refused(response)
            }
            Some(Ok(response)) => Outcome::Answer(response),
            Some(Err(err)) => Outcome::Failed(err),
            None => Outcome::Failed(RpcError::Internal("no answer".to_owned())),
        }
    }
}

/// How a batch attempt ended.
pub(crate) enum Attempted {
    /// The member's answers, one per call (each with `ServedBy`, heads
    /// learned and stamped; a call left unanswered holds a timeout): read
    /// each with [`Core::outcome_of`].
    Answers(rpc_core::BatchAnswers),
    /// No answers: every call ended this way (a stall, the deadline).
    Each(Outcome),
}
