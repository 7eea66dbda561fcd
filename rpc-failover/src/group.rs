//! The shared core of every group layer: members, their health (atomics),
//! picking the next member, and making one attempt.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use rpc_core::{JsonRpcService, Request, Response, RpcError, ServedBy};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::classify::{Classifier, FailureRules, MethodRules};
use crate::head::{HeadPolicy, Heads, Need, ProbeKind};
use crate::member::Member;
use crate::names;

/// The most members one group holds. Nest groups for more.
pub const MAX_MEMBERS: usize = 64;

/// How calls are spread among healthy members of equal priority.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Spread {
    /// No spreading: the first healthy member in the given order takes every
    /// call (the default).
    #[default]
    Off,
    /// Rotate the starting member call by call.
    RoundRobin,
    /// The member with the lowest peak-EWMA latency × (in-flight + 1), in the
    /// manner of Finagle's and tower's peak-EWMA balancers. Latencies decay
    /// with the given time constant.
    LeastLatency {
        /// How fast old latency samples fade (10 s is a good start).
        decay: Duration,
    },
}

impl Spread {
    /// Least latency with a 10 s decay.
    pub fn least_latency() -> Self {
        Spread::LeastLatency {
            decay: Duration::from_secs(10),
        }
    }
}

/// What a group does when every member is out of service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenAllDown {
    /// Try the member whose out-of-service window ends soonest (the default):
    /// a flapping backend may well be back. One attempt per call: if it
    /// fails, the call fails (a retry layer above decides whether to try
    /// again, from its budget) rather than go round every member. Members in
    /// service, even ones behind on the chain, come first.
    #[default]
    TrySoonest,
    /// Fail at once with [`RpcError::NoBackendAvailable`], whose
    /// `retry_after` says when the first member is due back.
    FailFast,
}

/// A member's health as seen now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// The member's name.
    pub name: Arc<str>,
    /// Whether calls go to it (`false` while its out-of-service window runs).
    pub in_service: bool,
    /// How long until its window ends (`None` when in service; zero when the
    /// window has ended and a trial call will decide).
    pub out_for: Option<Duration>,
    /// Failures since its last success.
    pub consecutive_failures: u32,
    /// Its current chain head, with head tracking on and once learned.
    pub head: Option<u64>,
    /// Out of rotation for being behind the reference head (head tracking).
    pub lagging: bool,
    /// Why its head is not believed, if it is not (it is then out of
    /// rotation too).
    pub suspect: Option<crate::Suspicion>,
}

/// The health and health policy shared by every group layer.
#[derive(Clone)]
pub(crate) struct GroupPolicy {
    pub(crate) failure_threshold: u32,
    pub(crate) out_of_service: Duration,
    pub(crate) when_all_down: WhenAllDown,
    pub(crate) spread: Spread,
    pub(crate) classifier: Arc<dyn Classifier>,
    pub(crate) failure_rules: Arc<FailureRules>,
    pub(crate) head: Option<HeadPolicy>,
}

impl Default for GroupPolicy {
    fn default() -> Self {
        GroupPolicy {
            failure_threshold: 2,
            out_of_service: Duration::from_secs(5),
            when_all_down: WhenAllDown::TrySoonest,
            spread: Spread::Off,
            classifier: Arc::new(MethodRules::ethereum()),
            failure_rules: Arc::new(FailureRules::default()),
            head: None,
        }
    }
}

impl std::fmt::Debug for GroupPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupPolicy")
            .field("failure_threshold", &self.failure_threshold)
            .field("out_of_service", &self.out_of_service)
            .field("when_all_down", &self.when_all_down)
            .field("spread", &self.spread)
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

/// The atomics behind one member's health. Times are nanoseconds since the
/// group's base instant, plus one, so that 0 can mean "none".
#[derive(Default)]
struct Health {
    failures: AtomicU32,
    out_until: AtomicU64,
    probing: AtomicBool,
    inflight: AtomicU32,
    ewma_ns: AtomicU64,
    ewma_at: AtomicU64,
}

/// Members, health and policy, behind one `Arc` shared by all clones.
pub(crate) struct Core<S> {
    members: Box<[Member<S>]>,
    health: Box<[Health]>,
    /// Index ranges of members with equal priority, best first.
    tiers: Box<[(usize, usize)]>,
    rr: AtomicUsize,
    base: Instant,
    pub(crate) policy: GroupPolicy,
    pub(crate) heads: Option<Heads>,
    prober: AtomicBool,
}

/// Errors building a group.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// More members than [`MAX_MEMBERS`].
    #[error("a group holds at most {MAX_MEMBERS} members, got {0}; nest groups for more")]
    TooManyMembers(usize),
    /// Two members share a name (names label logs and metrics).
    #[error("two members are named `{0}`")]
    DuplicateName(Arc<str>),
    /// A quorum that can never be reached or is meaningless.
    #[error("quorum {k} of {n} is impossible (need 1 <= k <= n <= members)")]
    BadQuorum {
        /// Agreeing answers required.
        k: usize,
        /// Members asked.
        n: usize,
    },
}

/// The member chosen for an attempt.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pick {
    pub(crate) index: usize,
    /// This call is the half-open trial that decides whether it is back.
    pub(crate) probe: bool,
    /// Every member was out of service: this is the one attempt a call
    /// makes on the member due back first (`WhenAllDown::TrySoonest`); if
    /// it fails, the call fails rather than try every member.
    pub(crate) last_resort: bool,
}

/// How one attempt ended.
pub(crate) enum Outcome {
    /// An answer to pass on (a result or an ordinary error object).
    Answer(Response),
    /// An error object that counts against the backend (rate limit, ...).
    Refused(Response),
    /// No answer.
    Failed(RpcError),
    /// The member was not ready and the caller asked not to wait.
    Busy,
}

impl<S> Core<S> {
    pub(crate) fn new(
        mut members: Vec<Member<S>>,
        policy: GroupPolicy,
    ) -> Result<Self, GroupError> {
        if members.len() > MAX_MEMBERS {
            return Err(GroupError::TooManyMembers(members.len()));
        }
        for (i, m) in members.iter().enumerate() {
            if members[..i].iter().any(|o| o.name == m.name) {
                return Err(GroupError::DuplicateName(m.name.clone()));
            }
        }
        // Stable: equal priorities keep the order given.
        members.sort_by_key(|m| m.priority);
        let mut tiers = Vec::new();
        let mut start = 0;
        for i in 1..=members.len() {
            if i == members.len() || members[i].priority != members[start].priority {
                tiers.push((start, i));
                start = i;
            }
        }
        let health = members.iter().map(|_| Health::default()).collect();
        for m in &members {
            metrics::gauge!(names::IN_SERVICE, "backend" => m.name.clone()).set(1.0);
        }
        let heads = policy
            .head
            .clone()
            .map(|p| Heads::new(p, members.iter().map(|m| m.name.clone()).collect()));
        Ok(Core {
            members: members.into_boxed_slice(),
            health,
            tiers: tiers.into_boxed_slice(),
            rr: AtomicUsize::new(0),
            base: Instant::now(),
            policy,
            heads,
            prober: AtomicBool::new(false),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn name(&self, index: usize) -> &Arc<str> {
        &self.members[index].name
    }

    pub(crate) fn now(&self) -> u64 {
        self.ticks(Instant::now())
    }

    fn ticks(&self, at: Instant) -> u64 {
        let ns = at.saturating_duration_since(self.base).as_nanos();
        u64::try_from(ns).unwrap_or(u64::MAX - 1) + 1
    }

    pub(crate) fn status(&self) -> impl Iterator<Item = MemberStatus> + '_ {
        let now = self.now();
        self.members
            .iter()
            .zip(self.health.iter())
            .enumerate()
            .map(move |(i, (m, h))| {
                let until = h.out_until.load(Ordering::Acquire);
                MemberStatus {
                    name: m.name.clone(),
                    in_service: until == 0,
                    out_for: (until != 0).then(|| Duration::from_nanos(until.saturating_sub(now))),
                    consecutive_failures: h.failures.load(Ordering::Relaxed),
                    head: self.heads.as_ref().and_then(|hs| hs.head(i)),
                    lagging: self.heads.as_ref().is_some_and(|hs| hs.behind(i, now)),
                    suspect: self.heads.as_ref().and_then(|hs| hs.suspicion(i)),
                }
            })
    }

    /// What `request` needs of a member's head (nothing without tracking).
    pub(crate) fn need(&self, request: &Request) -> Need {
        match &self.heads {
            Some(heads) => heads.need_of(request, &*self.policy.classifier),
            None => Need::default(),
        }
    }

    /// [`pick`](Self::pick), leaving out members that lag or lack the head
    /// the call needs, as long as another member can take it: first only
    /// members in rotation that have everything; then lagging ones; then
    /// ones without the explicit block. Members below the session's head are
    /// never picked (the caller waits for one instead).
    pub(crate) fn pick_with(&self, tried: u64, need: &Need) -> Option<Pick> {
        let Some(heads) = &self.heads else {
            return self.pick(tried);
        };
        let m = heads.masks(self.now(), need);
        // Members in service first, however far behind; a member out of
        // service (its one last-resort attempt) only when none is.
        self.pick_in(tried | m.lagging | m.below_session | m.below_block, false)
            .or_else(|| self.pick_in(tried | m.below_session | m.below_block, false))
            .or_else(|| self.pick_in(tried | m.below_session, true))
    }

    /// Whether member `i`'s answer turned out to fall short of `need`.
    pub(crate) fn shortfall(
        &self,
        i: usize,
        need: &Need,
        tried: u64,
    ) -> Option<crate::head::Shortfall> {
        self.heads.as_ref()?.shortfall(i, need, tried)
    }

    /// Waits (up to the call's deadline and the policy's consistency wait)
    /// for a member to reach the session head `need`; `true` if one did.
    pub(crate) async fn wait_for_head(&self, need: &Need, deadline: Option<Instant>) -> bool {
        let Some(heads) = &self.heads else {
            return false;
        };
        if need.session == 0 {
            return false;
        }
        let mut until = Instant::now() + heads.policy.consistency_wait;
        if let Some(d) = deadline {
            until = until.min(d);
        }
        heads.wait_for(need.session, until).await
    }

    /// The next member to try, skipping those in `tried`. Never allocates;
    /// the work is one pass over the members.
    pub(crate) fn pick(&self, tried: u64) -> Option<Pick> {
        self.pick_in(tried, true)
    }

    /// [`pick`](Self::pick); `last_resort` allows the `WhenAllDown` fallback
    /// when no member in `tried`'s complement is in service.
    fn pick_in(&self, tried: u64, last_resort: bool) -> Option<Pick> {
        let now = LazyNow::new(self);
        for &(start, end) in self.tiers.iter() {
            let found = match self.policy.spread {
                Spread::Off => self.first_available(start, end, 0, tried, &now),
                Spread::RoundRobin => {
                    let offset = self.rr.fetch_add(1, Ordering::Relaxed) % (end - start);
                    self.first_available(start, end, offset, tried, &now)
                }
                Spread::LeastLatency { decay } => self.least_loaded(start, end, tried, &now, decay),
            };
            if found.is_some() {
                return found;
            }
        }
        match self.policy.when_all_down {
            _ if !last_resort => None,
            WhenAllDown::TrySoonest => self.soonest_back(tried).map(|index| Pick {
                index,
                probe: false,
                last_resort: true,
            }),
            WhenAllDown::FailFast => None,
        }
    }

    /// How many members can take a call now: in service, or out with their
    /// window ended (the next call is their trial).
    pub(crate) fn available(&self) -> usize {
        let now = self.now();
        self.health
            .iter()
            .filter(|h| {
                let until = h.out_until.load(Ordering::Acquire);
                until == 0 || until <= now
            })
            .count()
    }

    /// When the first out-of-service member is due back.
    pub(crate) fn soonest_retry_after(&self) -> Option<Duration> {
        let now = self.now();
        self.health
            .iter()
            .map(|h| h.out_until.load(Ordering::Acquire))
            .filter(|&u| u != 0)
            .min()
            .map(|u| Duration::from_nanos(u.saturating_sub(now)))
    }

    fn first_available(
        &self,
        start: usize,
        end: usize,
        offset: usize,
        tried: u64,
        now: &LazyNow<'_, S>,
    ) -> Option<Pick> {
        let len = end - start;
        (0..len)
            .map(|k| start + (offset + k) % len)
            .filter(|&i| tried & (1 << i) == 0)
            .find_map(|i| self.try_take(i, now))
    }

    /// `Some` if member `i` is in service, or if its window has ended and this
    /// call won the right to make the trial call.
    fn try_take(&self, i: usize, now: &LazyNow<'_, S>) -> Option<Pick> {
        let h = &self.health[i];
        let until = h.out_until.load(Ordering::Acquire);
        if until == 0 {
            return Some(Pick {
                index: i,
                probe: false,
                last_resort: false,
            });
        }
        if now.get() >= until
            && h.probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return Some(Pick {
                index: i,
                probe: true,
                last_resort: false,
            });
        }
        None
    }

    fn least_loaded(
        &self,
        start: usize,
        end: usize,
        tried: u64,
        now: &LazyNow<'_, S>,
        decay: Duration,
    ) -> Option<Pick> {
        let mut best: Option<(usize, f64)> = None;
        for i in start..end {
            if tried & (1 << i) != 0 {
                continue;
            }
            let h = &self.health[i];
            let until = h.out_until.load(Ordering::Acquire);
            if until != 0 {
                // A member whose window ended gets its trial call first.
                if let Some(pick) = self.try_take(i, now) {
                    return Some(pick);
                }
                continue;
            }
            let cost = self.cost(h, now.get(), decay);
            if best.is_none_or(|(_, c)| cost < c) {
                best = Some((i, cost));
            }
        }
        best.map(|(index, _)| Pick {
            index,
            probe: false,
            last_resort: false,
        })
    }

    fn cost(&self, h: &Health, now: u64, decay: Duration) -> f64 {
        let ewma = decayed(h, now, decay);
        let pending = f64::from(h.inflight.load(Ordering::Relaxed));
        ewma * (pending + 1.0)
    }

    fn soonest_back(&self, tried: u64) -> Option<usize> {
        (0..self.members.len())
            .filter(|&i| tried & (1 << i) == 0)
            .min_by_key(|&i| self.health[i].out_until.load(Ordering::Acquire))
    }

    fn on_success(&self, pick: Pick) {
        let h = &self.health[pick.index];
        if h.failures.load(Ordering::Relaxed) != 0 {
            h.failures.store(0, Ordering::Relaxed);
        }
        // A plain load first: the common case (in service) writes nothing shared.
        if h.out_until.load(Ordering::Relaxed) != 0 && h.out_until.swap(0, Ordering::AcqRel) != 0 {
            let name = &self.members[pick.index].name;
            metrics::gauge!(names::IN_SERVICE, "backend" => name.clone()).set(1.0);
            tracing::info!(backend = %name, "backend back in service");
        }
        if pick.probe {
            h.probing.store(false, Ordering::Release);
        }
    }

    fn on_failure(&self, pick: Pick, reason: &dyn std::fmt::Display) {
        let h = &self.health[pick.index];
        let failures = h.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if pick.probe || failures >= self.policy.failure_threshold {
            let until = self
                .now()
                .saturating_add(duration_ns(self.policy.out_of_service));
            let was = h.out_until.swap(until, Ordering::AcqRel);
            if was == 0 {
                let name = &self.members[pick.index].name;
                metrics::counter!(names::OUT_OF_SERVICE, "backend" => name.clone()).increment(1);
                metrics::gauge!(names::IN_SERVICE, "backend" => name.clone()).set(0.0);
            }
            if was == 0 || pick.probe {
                tracing::warn!(
                    backend = %self.members[pick.index].name,
                    failures,
                    window = ?self.policy.out_of_service,
                    %reason,
                    "backend out of service"
                );
            }
        }
        if pick.probe {
            h.probing.store(false, Ordering::Release);
        }
    }

    fn observe_latency(&self, index: usize, elapsed: Duration) {
        let Spread::LeastLatency { decay } = self.policy.spread else {
            return;
        };
        let h = &self.health[index];
        let now = self.now();
        let sample = elapsed.as_nanos() as f64;
        let current = decayed(h, now, decay);
        // Peak-sensitive: a slower sample replaces the average at once.
        let next = if sample > current {
            sample
        } else {
            let w = weight(h.ewma_at.load(Ordering::Relaxed), now, decay);
            current * w + sample * (1.0 - w)
        };
        // Racing updates may lose one sample; the estimate stays sound.
        h.ewma_ns.store(next.to_bits(), Ordering::Relaxed);
        h.ewma_at.store(now, Ordering::Relaxed);
    }
}

/// One probe of member `i`: its head (or its finality), or nothing (a
/// failed probe changes no health: live calls decide that).
async fn probe<S: JsonRpcService>(core: std::sync::Weak<Core<S>>, i: usize, kind: ProbeKind) {
    let (svc, request, timeout) = {
        let Some(core) = core.upgrade() else { return };
        let Some(heads) = &core.heads else { return };
        (
            core.members[i].service.clone(),
            heads.probe_request(i, kind),
            heads.policy.probe_timeout,
        )
    };
    let method = request.method_arc().clone();
    let response = match tokio::time::timeout(timeout, svc.oneshot(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "head probe failed");
            return;
        }
        Err(_) => {
            tracing::debug!(?timeout, "head probe timed out");
            return;
        }
    };
    let Some(core) = core.upgrade() else { return };
    let Some(heads) = &core.heads else { return };
    heads.learn_probe(i, kind, &method, &response, core.now());
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 2)
}

fn weight(at: u64, now: u64, decay: Duration) -> f64 {
    let dt = now.saturating_sub(at) as f64;
    let tau = (duration_ns(decay) as f64).max(1.0);
    (-dt / tau).exp()
}

fn decayed(h: &Health, now: u64, decay: Duration) -> f64 {
    let ewma = f64::from_bits(h.ewma_ns.load(Ordering::Relaxed));
    ewma * weight(h.ewma_at.load(Ordering::Relaxed), now, decay).max(f64::MIN_POSITIVE)
}

/// The group clock, read at most once per pick and only when needed (most
/// picks meet no out-of-service member and never read it).
struct LazyNow<'a, S> {
    core: &'a Core<S>,
    now: std::cell::Cell<u64>,
}

impl<'a, S> LazyNow<'a, S> {
    fn new(core: &'a Core<S>) -> Self {
        LazyNow {
            core,
            now: std::cell::Cell::new(0),
        }
    }

    fn get(&self) -> u64 {
        if self.now.get() == 0 {
            self.now.set(self.core.now());
        }
        self.now.get()
    }
}

/// A member reserved for one attempt: counts it in flight and holds its
/// half-open trial, both released on drop. Made when the member is picked,
/// so an attempt dropped before it ever ran (a hedge or quorum call that
/// finished first) still gives the trial back.
pub(crate) struct Reservation<'a> {
    health: &'a Health,
    pick: Pick,
    probe_held: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.health.inflight.fetch_sub(1, Ordering::Relaxed);
        if self.probe_held {
            self.health.probing.store(false, Ordering::Release);
        }
    }
}

impl<S> Core<S> {
    /// Reserves the picked member for an attempt.
    pub(crate) fn reserve(&self, pick: Pick) -> Reservation<'_> {
        let health = &self.health[pick.index];
        health.inflight.fetch_add(1, Ordering::Relaxed);
        Reservation {
            health,
            pick,
            probe_held: pick.probe,
        }
    }
}

impl<S: JsonRpcService> Core<S> {
    /// One attempt on one member, recording the member's health.
    ///
    /// `call_started` is when the whole call began: a timeout counts against
    /// the member unless the attempt started with less than half of the call's
    /// time left (then earlier attempts, not this member, used the time).
    pub(crate) async fn attempt(
        &self,
        mut reservation: Reservation<'_>,
        request: Request,
        wait_ready: bool,
        call_started: Option<Instant>,
    ) -> Outcome {
        let pick = reservation.pick;
        let member = &self.members[pick.index];
        let deadline = request.deadline();
        let mut svc = member.service.clone();
        let learn = self.heads.as_ref().map(|h| h.teaches(&request));

        // Readiness: a saturated member must not stall the group.
        let ready = match svc.ready().now_or_never() {
            Some(r) => r.map(|_| ()),
            None if !wait_ready => return Outcome::Busy,
            None => match deadline {
                Some(d) => match tokio::time::timeout_at(d, svc.ready()).await {
                    Ok(r) => r.map(|_| ()),
                    Err(_) => Err(RpcError::DeadlineExceeded),
                },
                None => svc.ready().await.map(|_| ()),
            },
        };
        if let Err(err) = ready {
            // Not ready is not a fault of the backend's answers; not counted.
            return Outcome::Failed(err);
        }

        // The clock is read only when something needs it.
        let timed = deadline.is_some() || matches!(self.policy.spread, Spread::LeastLatency { .. });
        let started = if timed { Some(Instant::now()) } else { None };
        let result = match deadline {
            Some(d) => match tokio::time::timeout_at(d, svc.call(request)).await {
                Ok(r) => r,
                Err(_) => Err(RpcError::Timeout {
                    backend: Some(member.name.clone()),
                    elapsed: started.map(|s| s.elapsed()).unwrap_or_default(),
                }),
            },
            None => svc.call(request).await,
        };
        let elapsed = started.map(|s| s.elapsed()).unwrap_or_default();
        // The attempt finished: the guard must not clear a probe flag that
        // on_success / on_failure now own.
        reservation.probe_held = false;
        drop(reservation);

        match result {
            Ok(mut response) => {
                self.observe_latency(pick.index, elapsed);
                if response.extensions().get::<ServedBy>().is_none() {
                    response
                        .extensions_mut()
                        .insert(ServedBy(member.name.clone()));
                }
                if let (Some(heads), Some(learn)) = (&self.heads, learn) {
                    // Learn the member's head from its answer, and tell the
                    // layers above which head this answer comes from and
                    // what the group agrees on.
                    heads.learn(pick.index, learn, &response, self.now());
                    heads.stamp(pick.index, &mut response);
                }
                if self.policy.failure_rules.is_backend_failure(&response) {
                    let reason = response
                        .error_object()
                        .map(|e| format!("error {}: {}", e.code(), e.message()))
                        .unwrap_or_default();
                    self.on_failure(pick, &reason);
                    Outcome::Refused(response)
                } else {
                    self.on_success(pick);
                    Outcome::Answer(response)
                }
            }
            Err(err) => {
                let counted = match (&err, deadline, started) {
                    (RpcError::Timeout { .. }, Some(d), Some(started)) => {
                        let total = d.saturating_duration_since(call_started.unwrap_or(started));
                        let budget = d.saturating_duration_since(started);
                        budget * 2 >= total
                    }
                    _ => err.is_backend_fault(),
                };
                if counted {
                    self.observe_latency(pick.index, elapsed);
                    self.on_failure(pick, &err);
                } else if pick.probe {
                    // The trial did not decide anything; let another call try.
                    self.health[pick.index]
                        .probing
                        .store(false, Ordering::Release);
                }
                Outcome::Failed(err)
            }
        }
    }

    /// Starts the head prober (once; only with head tracking and inside a
    /// Tokio runtime). It holds the group weakly and ends with it.
    pub(crate) fn ensure_prober(self: &Arc<Self>) {
        // Called on every call: a plain load first, so the common case (already
        // started) writes nothing shared.
        if self.heads.is_none()
            || self.prober.load(Ordering::Relaxed)
            || self.prober.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.prober.store(false, Ordering::Release);
            return;
        };
        let weak = Arc::downgrade(self);
        let wanted = self.heads.as_ref().map(|h| h.wanted.clone());
        runtime.spawn(async move {
            let Some(wanted) = wanted else { return };
            loop {
                let tick = {
                    let Some(core) = weak.upgrade() else { return };
                    let Some(heads) = &core.heads else { return };
                    let now = core.now();
                    let due = heads.due(now);
                    let finality = heads.finality_due(now);
                    for i in 0..core.members.len() {
                        if due & (1 << i) != 0 {
                            tracing::trace!(backend = %core.members[i].name, "probing the head");
                            tokio::spawn(probe(Arc::downgrade(&core), i, ProbeKind::Head));
                        }
                        if finality & (1 << i) != 0 {
                            for kind in [ProbeKind::Finalized, ProbeKind::Safe] {
                                tokio::spawn(probe(Arc::downgrade(&core), i, kind));
                            }
                        }
                    }
                    heads.tick(now);
                    (heads.policy.probe_interval / 4).max(Duration::from_millis(5))
                };
                // A call waiting for a head wakes the prober early.
                tokio::select! {
                    () = tokio::time::sleep(tick) => {}
                    () = wanted.notified() => {}
                }
            }
        });
    }

    /// Whether a call that ended this way may go to another member.
    pub(crate) fn may_move_on(&self, outcome: &Outcome, safe_to_repeat: bool) -> bool {
        match outcome {
            Outcome::Answer(_) => false,
            Outcome::Busy => true,
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

    pub(crate) fn classify(&self, request: &Request) -> crate::Idempotency {
        self.policy.classifier.classify(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core() -> Core<()> {
        let policy = GroupPolicy {
            failure_threshold: 1,
            out_of_service: Duration::from_secs(1),
            when_all_down: WhenAllDown::FailFast,
            ..GroupPolicy::default()
        };
        Core::new(vec![Member::new("a", ())], policy).expect("core")
    }

    #[tokio::test(start_paused = true)]
    async fn a_trial_reserved_but_never_run_is_given_back() {
        let core = core();
        core.on_failure(
            Pick {
                index: 0,
                probe: false,
                last_resort: false,
            },
            &"refused",
        );
        assert!(core.pick(0).is_none(), "out of service");
        tokio::time::advance(Duration::from_secs(1)).await;

        let trial = core.pick(0).expect("the trial");
        assert!(trial.probe);
        assert!(core.pick(0).is_none(), "one trial at a time");
        // A hedge or quorum attempt reserved and then dropped unpolled.
        drop(core.reserve(trial));
        let again = core.pick(0).expect("the trial is free again");
        assert!(again.probe);
        assert_eq!(core.health[0].inflight.load(Ordering::Relaxed), 0);
    }
}
