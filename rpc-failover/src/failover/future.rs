use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use futures_util::stream::{FuturesUnordered, StreamExt};
use rpc_core::batch::{Batch, BatchAnswers, BoxedBatchFuture, JsonRpcBatchService};
use rpc_core::{Attempts, JsonRpcService, Request, Response, RpcError};
use tokio::time::Instant;

use crate::classify::Idempotency;
use crate::group::{Attempted, Core, Outcome, Pick, Reservation};
use crate::head::Shortfall;
use crate::hedge::LatencyTracker;
use crate::names;

fn with_attempts(mut response: Response, tried: u64) -> Response {
    response
        .extensions_mut()
        .insert(Attempts(tried.count_ones()));
    response
}

/// The future of a group call ([`Failover`](super::Failover),
/// [`Quorum`](crate::Quorum)): the attempt loop is an `async` block, boxed
/// once per call. Next to a network round trip that is noise (see
/// BENCHMARKS.md for the measured overhead of a healthy group).
pub type ResponseFuture = rpc_core::BoxedResponseFuture;

/// A group call's future, boxed: the path is chosen here, so the box holds
/// only the chosen path's future (the sequential one is the common case,
/// and a future's size is copied into its box).
pub(crate) fn run<S: JsonRpcService>(
    core: Arc<Core<S>>,
    hedge: Option<Arc<LatencyTracker>>,
    request: Request,
) -> ResponseFuture {
    let class = core.classify(&request);
    // Pinned to one member (node-side state lives there): only it.
    if let Some(pin) = request.extensions().get::<crate::Pin>() {
        let Some(index) = (0..core.len()).find(|&i| **core.name(i) == *pin.0) else {
            return ResponseFuture::new(std::future::ready(Err(RpcError::NoBackendAvailable {
                retry_after: None,
            })));
        };
        let others = !(1u64 << index);
        return ResponseFuture::new(run_sequential_from(
            core,
            request,
            class.is_safe_to_repeat(),
            others,
            None,
        ));
    }
    match hedge {
        _ if class == Idempotency::Idempotent && core.policy.multicall && core.len() > 1 => {
            ResponseFuture::new(run_multicall(core, request))
        }
        Some(tracker) if class == Idempotency::Read && core.len() > 1 => {
            ResponseFuture::new(async move { run_hedged(&core, &tracker, request).await })
        }
        _ => ResponseFuture::new(run_sequential_from(
            core,
            request,
            class.is_safe_to_repeat(),
            0,
            None,
        )),
    }
}

/// What to answer when no member produced an answer.
fn finish<S>(core: &Core<S>, last: Option<Outcome>) -> Result<Response, RpcError> {
    match last {
        // The backend refused (rate limit, ...): its own words are the answer.
        Some(Outcome::Refused(response)) | Some(Outcome::Answer(response)) => Ok(response),
        Some(Outcome::Failed(err)) | Some(Outcome::Stalled(err)) => Err(err),
        Some(Outcome::Busy) | None => Err(RpcError::NoBackendAvailable {
            retry_after: core.soonest_retry_after(),
        }),
    }
}

fn deadline_passed(request: &Request) -> bool {
    request.deadline().is_some_and(|d| Instant::now() >= d)
}

pub(crate) async fn run_sequential<S: JsonRpcService>(
    core: &Core<S>,
    request: Request,
    safe_to_repeat: bool,
) -> Result<Response, RpcError> {
    run_sequential_from(core, request, safe_to_repeat, 0, None).await
}

/// [`run_sequential`] with the members in `excluded` (a bit per index)
/// never tried; `prior`: the members already tried for this call (as part
/// of a batch) and how the last attempt ended. An `async move` block, not
/// an `async fn`, so the request is kept once in the future, not twice.
#[allow(clippy::manual_async_fn)] // see above: the request kept once
fn run_sequential_from<'a, S, C>(
    core: C,
    request: Request,
    safe_to_repeat: bool,
    excluded: u64,
    prior: Option<(u64, Option<Outcome>)>,
) -> impl Future<Output = Result<Response, RpcError>> + Send + 'a
where
    S: JsonRpcService,
    C: std::ops::Deref<Target = Core<S>> + Send + 'a,
{
    async move {
        let core = &*core;
        // Only a deadline needs to know when the call began (and the first
        // check of it reads the same clock).
        let started = request.deadline().map(|_| Instant::now());
        let need = core.need(&request);
        let mut waited = false;
        let mut tried = excluded;
        let mut busy = 0u64;
        // Boxed: only a call that moves on fills it, and the future that
        // holds it is smaller for every call.
        let mut last: Option<Box<Outcome>> = None;
        if let Some((before, outcome)) = prior {
            tried |= before;
            last = outcome.map(Box::new);
        }
        let mut first = true;
        loop {
            let passed = match (started, request.deadline()) {
                (Some(now), Some(d)) if first => now >= d,
                _ => deadline_passed(&request),
            };
            first = false;
            if passed {
                return match last {
                    None => Err(RpcError::DeadlineExceeded),
                    last => finish(core, last.map(|o| *o)),
                };
            }
            let (pick, wait_ready) = match core.pick_with(tried, &need) {
                Some(pick) => (pick, false),
                // No member has the head this session has seen: wait for one.
                None if need.session != 0 && last.is_none() && busy == 0 && !waited => {
                    waited = true;
                    if core.wait_for_head(&need, request.deadline()).await {
                        continue;
                    }
                    return Err(RpcError::NoBackendAvailable {
                        retry_after: Some(std::time::Duration::from_secs(1)),
                    });
                }
                // Members that could take it are at their concurrency limit:
                // wait in the queue for room.
                None if core.full(tried) != 0 => {
                    if core.wait_for_room(request.deadline()).await? {
                        continue;
                    }
                    return match last {
                        None => Err(RpcError::Overloaded),
                        last => finish(core, last.map(|o| *o)),
                    };
                }
                // Only saturated members are left: wait for the first of them.
                None if busy != 0 => {
                    let index = busy.trailing_zeros() as usize;
                    busy &= !(1 << index);
                    (core.claim_forced(index), true)
                }
                None => return finish(core, last.map(|o| *o)),
            };
            tried |= 1 << pick.index;
            let may_leave = core.may_leave(safe_to_repeat, tried, pick);
            match core
                .attempt(
                    core.reserve(pick),
                    request.clone(),
                    wait_ready,
                    started,
                    may_leave,
                )
                .await
            {
                Outcome::Answer(response) => match core.shortfall(pick.index, &need, tried) {
                    // The answer showed the member below the session's head (it
                    // went back since it was picked): never served; another
                    // member, or the wait, decides.
                    Some(Shortfall::Session) if safe_to_repeat => {}
                    // Below the block the call prefers, which another member
                    // has: kept in case nobody does better.
                    Some(Shortfall::Block) if safe_to_repeat => {
                        last = Some(Box::new(Outcome::Answer(response)))
                    }
                    _ => return Ok(with_attempts(response, tried & !excluded)),
                },
                Outcome::Busy => busy |= 1 << pick.index,
                outcome => {
                    // With every member out, the call's one attempt went to the
                    // member due back first: it does not go round them all (a
                    // retry layer above decides, from its budget).
                    if pick.last_resort || !core.may_move_on(&outcome, safe_to_repeat) {
                        return finish(core, Some(outcome));
                    }
                    // Extra load on the pool draws from the budget.
                    if !core.pay_to_move_on(pick.index, &outcome) {
                        tracing::debug!(method = request.method(), "budget spent: not moving on");
                        return finish(core, Some(outcome));
                    }
                    tracing::debug!(
                        backend = %core.name(pick.index),
                        method = request.method(),
                        "moving the call to the next backend"
                    );
                    metrics::counter!(names::FAILOVERS, "backend" => core.name(pick.index).clone())
                        .increment(1);
                    last = Some(Box::new(outcome));
                }
            }
        }
    }
}

/// A batch sent to a group (see `Service<Batch> for Failover`): the calls
/// that need nothing a single call would get on its own — a pin, a safe or
/// finalized head, hedging, a broadcast — go to one member together as one
/// attempt; the others go as single calls, at once.
pub(crate) fn run_batch<S: JsonRpcBatchService>(
    group: super::Failover<S>,
    batch: Batch,
) -> BoxedBatchFuture {
    BoxedBatchFuture::new(async move {
        let core = group.core.clone();
        let hedged = group.hedge.is_some() && core.len() > 1;
        let multicall = core.policy.multicall && core.len() > 1;
        let (mut split, together) = batch.split(|req| {
            if req.extensions().get::<crate::Pin>().is_some() {
                return true;
            }
            if hedged || multicall {
                let class = core.classify(req);
                if (multicall && class == Idempotency::Idempotent)
                    || (hedged && class == Idempotency::Read)
                {
                    return true;
                }
            }
            core.heads.is_some() && core.need(req).finality.is_some()
        });
        if split.is_empty() {
            return run_together(&core, together).await;
        }
        let apart = split.take();
        let (positions, calls): (Vec<usize>, Vec<Request>) = apart.into_iter().unzip();
        let apart = together.with_calls(calls);
        let (own, together) = futures_util::future::join(
            rpc_core::batch::per_call(group.clone(), apart),
            run_together(&core, together),
        )
        .await;
        let mut merge = split.merge();
        merge.rest(together);
        for (position, answer) in positions.into_iter().zip(own) {
            merge.put(position, answer);
        }
        merge.finish()
    })
}

/// The calls of a batch that go together: one member and one attempt for
/// all of them, a member that has the heads they need (the highest of
/// their sessions' and blocks'); the calls whose outcome lets them move on
/// go on together to the next member (one token from the budget for the
/// move, as for one call), and so do those whose answer fell short of what
/// they needed (as a single call's would); the others are answered. When no
/// member can take them at once (every member tried, out or full, the
/// deadline passed, a single call, a session head nobody has yet), each
/// call finds its way alone, as a single call does, with what was tried
/// and how it ended.
async fn run_together<S: JsonRpcBatchService>(core: &Core<S>, batch: Batch) -> BatchAnswers {
    let n = batch.len();
    // What the calls need of a member (the highest session and block),
    // and whether they may all leave a stalled attempt.
    // Each call's needs, read once (only head tracking has any).
    let needs: Vec<crate::head::Need> = match &core.heads {
        Some(_) => batch.calls().iter().map(|req| core.need(req)).collect(),
        None => Vec::new(),
    };
    let mut need = crate::head::Need::default();
    for own in &needs {
        need.raise_to(own);
    }
    let all_safe = batch
        .calls()
        .iter()
        .all(|req| core.classify(req).is_safe_to_repeat());
    let started = batch.deadline().map(|_| Instant::now());
    let passed = batch.deadline().is_some_and(|d| Instant::now() >= d);
    let pick = if n > 1 && !passed {
        core.pick_with(0, &need)
    } else {
        None
    };
    let Some(pick) = pick else {
        return Box::pin(alone(core, batch, Vec::new(), 0)).await;
    };
    let tried = 1u64 << pick.index;
    let may_leave = all_safe && core.may_leave(true, tried, pick);
    let calls = batch.clone();
    let Some(attempted) = core
        .attempt_batch(core.reserve(pick), batch, started, may_leave)
        .await
    else {
        // Not ready at once: the calls wait for room one by one.
        return Box::pin(alone(core, calls, Vec::new(), 0)).await;
    };
    let outcomes = match attempted {
        // The common case: every call answered, as it needed: the member's
        // answers are the batch's, where they are.
        Attempted::Answers(mut answers) => {
            let fine = answers.iter().enumerate().all(|(i, answer)| match answer {
                Some(Ok(response)) => {
                    !core.policy.failure_rules.is_backend_failure(response)
                        && needs
                            .get(i)
                            .is_none_or(|need| core.shortfall(pick.index, need, tried).is_none())
                }
                _ => false,
            });
            if fine {
                for answer in answers.iter_mut() {
                    if let Some(Ok(response)) = answer {
                        response
                            .extensions_mut()
                            .insert(Attempts(tried.count_ones()));
                    }
                }
                return answers;
            }
            core.outcomes(Attempted::Answers(answers), n)
        }
        each => core.outcomes(each, n),
    };
    Box::pin(settle_and_move_on(
        core, calls, outcomes, pick, tried, started,
    ))
    .await
}

/// After a batch attempt in which some calls were not answered as they
/// needed: the answered ones are kept, the ones that may move on go on
/// together to the next member, round after round, and the others are
/// answered with how they ended (see [`run_together`]).
async fn settle_and_move_on<S: JsonRpcBatchService>(
    core: &Core<S>,
    calls: Batch,
    outcomes: Vec<Outcome>,
    mut pick: crate::group::Pick,
    mut tried: u64,
    started: Option<Instant>,
) -> BatchAnswers {
    let n = calls.len();
    let mut answers: BatchAnswers = (0..n).map(|_| None).collect();
    let template = calls.with_calls(Vec::new());
    let mut going: Vec<Going> = calls
        .calls()
        .iter()
        .enumerate()
        .map(|(at, req)| Going {
            at,
            safe: core.classify(req).is_safe_to_repeat(),
            need: core.need(req),
            last: None,
        })
        .collect();
    let mut calls = calls;
    let mut outcomes = outcomes;
    loop {
        let mut moving = Vec::new();
        let mut moving_calls = Vec::new();
        // The first outcome that asks a member for more work: it pays.
        let mut pays: Option<Outcome> = None;
        for ((outcome, req), mut g) in outcomes
            .into_iter()
            .zip(calls.into_calls())
            .zip(std::mem::take(&mut going))
        {
            match outcome {
                Outcome::Answer(response) => match core.shortfall(pick.index, &g.need, tried) {
                    // Below the session's head (it went back since it was
                    // picked): never served; another member decides.
                    Some(Shortfall::Session) if g.safe => {
                        moving.push(g);
                        moving_calls.push(req);
                    }
                    // Below the block the call prefers, which another member
                    // has: kept in case nobody does better.
                    Some(Shortfall::Block) if g.safe => {
                        g.last = Some(Outcome::Answer(response));
                        moving.push(g);
                        moving_calls.push(req);
                    }
                    _ => answers[g.at] = Some(Ok(with_attempts(response, tried))),
                },
                outcome if pick.last_resort || !core.may_move_on(&outcome, g.safe) => {
                    answers[g.at] = Some(finish(core, Some(outcome)));
                }
                outcome => {
                    if pays.is_none() {
                        pays = Some(outcome.failure_copy());
                    }
                    g.last = Some(outcome);
                    moving.push(g);
                    moving_calls.push(req);
                }
            }
        }
        if moving.is_empty() {
            return answers;
        }
        if let Some(outcome) = &pays {
            // The move is paid once, for the calls that go on together.
            if !core.pay_to_move_on(pick.index, outcome) {
                tracing::debug!(calls = moving.len(), "budget spent: not moving on");
                for g in moving {
                    answers[g.at] = Some(finish(core, g.last));
                }
                return answers;
            }
            tracing::debug!(
                backend = %core.name(pick.index),
                calls = moving.len(),
                "moving the batch's calls to the next backend"
            );
            let failed = moving
                .iter()
                .filter(|g| !matches!(g.last, None | Some(Outcome::Answer(_))))
                .count();
            metrics::counter!(names::FAILOVERS, "backend" => core.name(pick.index).clone())
                .increment(failed as u64);
        }
        going = moving;
        calls = template.with_calls(moving_calls);
        // The next member that has what the calls still going need.
        let passed = calls.deadline().is_some_and(|d| Instant::now() >= d);
        let need = going
            .iter()
            .fold(crate::head::Need::default(), |mut all, g| {
                all.raise_to(&g.need);
                all
            });
        let next = if calls.len() > 1 && !passed {
            core.pick_with(tried, &need)
        } else {
            None
        };
        let Some(next) = next else {
            going_alone(core, calls, &mut going, tried, &mut answers).await;
            return answers;
        };
        pick = next;
        tried |= 1 << pick.index;
        let may_leave = going.iter().all(|g| g.safe) && core.may_leave(true, tried, pick);
        let sent = calls.clone();
        let attempted = core
            .attempt_batch(core.reserve(pick), calls, started, may_leave)
            .await;
        calls = sent;
        outcomes = match attempted {
            Some(attempted) => core.outcomes(attempted, calls.len()),
            None => {
                // Not ready at once: one by one, as they were.
                let before = tried & !(1 << pick.index);
                going_alone(core, calls, &mut going, before, &mut answers).await;
                return answers;
            }
        };
    }
}

/// The calls still `going` as single calls (see [`alone`]), their answers
/// put in their places.
async fn going_alone<S: JsonRpcService>(
    core: &Core<S>,
    calls: Batch,
    going: &mut [Going],
    tried: u64,
    answers: &mut BatchAnswers,
) {
    let last = going.iter_mut().map(|g| g.last.take()).collect();
    let safe: Vec<bool> = going.iter().map(|g| g.safe).collect();
    let alone_answers = alone_safe(core, calls, last, &safe, tried).await;
    for (g, answer) in going.iter().zip(alone_answers) {
        answers[g.at] = Some(answer);
    }
}

/// A call of a batch on its way (see [`run_together`]).
struct Going {
    /// Its place in the batch the group got.
    at: usize,
    safe: bool,
    need: crate::head::Need,
    /// How its last attempt ended (an answer kept in case nobody does
    /// better, or a failure to answer with if nobody answers).
    last: Option<Outcome>,
}

/// The calls of `batch` as single calls, at once, each with the members
/// already `tried` and how it last ended (`last`, by position; missing:
/// nothing yet) — as if it had been a single call all along. They carry one
/// [`BatchGroup`](rpc_core::batch::BatchGroup), so a batching backend still
/// sends the ones that reach it together as one upstream batch.
async fn alone<S: JsonRpcService>(
    core: &Core<S>,
    batch: Batch,
    last: Vec<Option<Outcome>>,
    tried: u64,
) -> BatchAnswers {
    let safe: Vec<bool> = batch
        .calls()
        .iter()
        .map(|req| core.classify(req).is_safe_to_repeat())
        .collect();
    alone_safe(core, batch, last, &safe, tried)
        .await
        .into_iter()
        .map(Some)
        .collect()
}

/// [`alone`], with whether each call is safe to repeat known.
async fn alone_safe<S: JsonRpcService>(
    core: &Core<S>,
    batch: Batch,
    last: Vec<Option<Outcome>>,
    safe: &[bool],
    tried: u64,
) -> Vec<Result<Response, RpcError>> {
    let n = batch.len();
    let group = (n > 1).then(|| rpc_core::batch::BatchGroup::new(n));
    let mut last = last.into_iter();
    let sent =
        batch
            .into_calls()
            .into_iter()
            .zip(safe)
            .enumerate()
            .map(|(index, (mut req, safe))| {
                let item = group.as_ref().map(|group| {
                    let item = group.item(index);
                    item.start();
                    req.extensions_mut().insert(item.clone());
                    item
                });
                let prior = Some((tried, last.next().flatten()));
                let call = run_sequential_from(core, req, *safe, 0, prior);
                async move {
                    let answer = call.await;
                    if let Some(item) = item {
                        item.settle();
                    }
                    answer
                }
            });
    futures_util::future::join_all(sent).await
}

/// Starts one attempt; a named function so every attempt has the same type.
pub(crate) fn launch<'a, S: JsonRpcService>(
    core: &'a Core<S>,
    reservation: Reservation<'a, S>,
    request: Request,
    call_started: Option<Instant>,
    may_leave: bool,
) -> impl Future<Output = (Pick, Outcome, Instant)> + Send + 'a {
    let attempt_started = Instant::now();
    // Reserved before, not when first polled: dropped unpolled, it still
    // releases the member.
    let pick = reservation.pick;
    async move {
        let outcome = core
            .attempt(reservation, request, true, call_started, may_leave)
            .await;
        (pick, outcome, attempt_started)
    }
}

enum Event {
    Done((Pick, Outcome, Instant)),
    Hedge,
}

async fn run_hedged<S: JsonRpcService>(
    core: &Core<S>,
    tracker: &LatencyTracker,
    request: Request,
) -> Result<Response, RpcError> {
    let started = Some(Instant::now());
    let need = core.need(&request);
    let method = request.method_arc().clone();
    let delay = tracker.delay(&method);
    let mut in_flight = FuturesUnordered::new();
    let mut tried = 0u64;
    let mut hedges = 0;
    let mut last = None;
    let mut sleep = std::pin::pin!(tokio::time::sleep(delay));
    loop {
        if in_flight.is_empty() {
            // Nothing running: fail over to the next member, if any.
            if deadline_passed(&request) {
                return match last {
                    None => Err(RpcError::DeadlineExceeded),
                    last => finish(core, last),
                };
            }
            let Some(pick) = core.pick_with(tried, &need) else {
                return finish(core, last);
            };
            tried |= 1 << pick.index;
            let may_leave = core.may_leave(true, tried, pick);
            in_flight.push(launch(
                core,
                core.reserve(pick),
                request.clone(),
                started,
                may_leave,
            ));
            sleep.as_mut().reset(Instant::now() + delay);
        }
        let may_hedge = hedges < tracker.max_hedges() && tried.count_ones() < core.len() as u32;
        let event = std::future::poll_fn(|cx| {
            if let Poll::Ready(Some(done)) = in_flight.poll_next_unpin(cx) {
                return Poll::Ready(Event::Done(done));
            }
            if may_hedge && sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Hedge);
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Done((pick, outcome, attempt_started)) => match outcome {
                Outcome::Answer(response)
                    if core.shortfall(pick.index, &need, tried) == Some(Shortfall::Session) =>
                {
                    // Below the session's head: never served.
                    drop(response);
                }
                Outcome::Answer(response) => {
                    tracker.record(&method, attempt_started.elapsed());
                    // Returning drops the other attempts: they are cancelled.
                    return Ok(with_attempts(response, tried));
                }
                outcome => {
                    if (pick.last_resort && in_flight.is_empty())
                        || !core.may_move_on(&outcome, true)
                        || (in_flight.is_empty() && !core.pay_to_move_on(pick.index, &outcome))
                    {
                        return finish(core, Some(outcome));
                    }
                    tracing::debug!(backend = %core.name(pick.index), "hedged attempt failed");
                    metrics::counter!(names::FAILOVERS, "backend" => core.name(pick.index).clone())
                        .increment(1);
                    last = Some(outcome);
                }
            },
            Event::Hedge => {
                hedges += 1;
                match core.pick_with(tried, &need) {
                    Some(pick) => {
                        let reservation = core.reserve(pick);
                        // A hedge is extra load: it draws from the budget.
                        if !core.withdraw() {
                            drop(reservation);
                            hedges = tracker.max_hedges();
                            continue;
                        }
                        tried |= 1 << pick.index;
                        tracing::debug!(backend = %core.name(pick.index), method = &*method, "hedging");
                        metrics::counter!(names::HEDGES).increment(1);
                        let may_leave = core.may_leave(true, tried, pick);
                        in_flight.push(launch(
                            core,
                            reservation,
                            request.clone(),
                            started,
                            may_leave,
                        ));
                        sleep.as_mut().reset(Instant::now() + delay);
                    }
                    None => hedges = tracker.max_hedges(),
                }
            }
        }
    }
}

/// Whether a backend's error answer to a broadcast says it already has the
/// transaction (geth / reth / erigon / anvil / Nethermind / Besu, bitcoind
/// and ElectrumX wordings): the broadcast's purpose is met on that node.
pub(crate) fn already_known(response: &Response) -> bool {
    let Some(error) = response.error_object() else {
        return false;
    };
    let message = error.message().to_ascii_lowercase();
    [
        "already known",
        "alreadyknown",
        "known transaction",
        "already imported",
        "already in the pool",
        "already exists",
        "txn-already-known",
        "txn-already-in-mempool",
        "transaction already in block chain",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// A broadcast to every member at once (see
/// [`FailoverLayer::multicall`](crate::FailoverLayer::multicall)): each
/// attempt is a task of its own, so answering the client with the first
/// acceptance cancels none of them.
async fn run_multicall<S: JsonRpcService>(
    core: Arc<Core<S>>,
    request: Request,
) -> Result<Response, RpcError> {
    let started = Some(Instant::now());
    let need = core.need(&request);
    let (tx, mut rx) = tokio::sync::mpsc::channel(core.len().max(1));
    let mut tried = 0u64;
    while let Some(pick) = core.pick_with(tried, &need) {
        tried |= 1 << pick.index;
        let (core, request, tx) = (core.clone(), request.clone(), tx.clone());
        // Reserved here, not in the task: the member is released even if
        // the task never runs (a runtime shutting down).
        tokio::spawn(async move {
            let reservation = core.reserve(pick);
            let outcome = core
                .attempt(reservation, request, true, started, false)
                .await;
            // The receiver may have answered and gone: fine.
            let _ = tx.send(outcome).await;
        });
        if pick.last_resort {
            break;
        }
    }
    drop(tx);
    if tried == 0 {
        return finish(&core, None);
    }
    metrics::counter!(names::MULTICALLS).increment(1);
    let mut known = None;
    let mut last = None;
    while let Some(outcome) = rx.recv().await {
        match outcome {
            Outcome::Answer(response) if response.result_json().is_some() => {
                return Ok(with_attempts(response, tried));
            }
            Outcome::Answer(response) if already_known(&response) => known = Some(response),
            outcome => last = Some(outcome),
        }
    }
    match known {
        Some(response) => Ok(with_attempts(response, tried)),
        None => finish(&core, last),
    }
}
