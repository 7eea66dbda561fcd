//! The shared core of every group layer: members, their health (atomics),
//! picking the next member, and making one attempt.
//!
//! * `mod.rs` — policy, members' health, picking;
//! * `attempt.rs` — one attempt: reservation, stall deadline, outcome;
//! * `probe.rs` — the background task: head probes, health checks and
//!   re-tests of members out of service.

mod attempt;
mod probe;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rpc_core::{Request, RpcError};
use tokio::time::Instant;

use crate::classify::{Classifier, FailureRules, MethodRules};
use crate::deadline::{AttemptDeadline, Expectations};
use crate::head::{HeadPolicy, Heads, Need};
use crate::member::{ConcurrencyLimit, Member};
use crate::names;
use crate::retry::RetryBudget;

pub(crate) use attempt::{Attempted, Outcome, Reservation};

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

/// Why a member left rotation (the `reason` label of
/// `rpc_backend_out_of_service_total`, and [`MemberStatus::reason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OutReason {
    /// An attempt passed its stall deadline without an answer
    /// ([`AttemptDeadline`]).
    Stall,
    /// An attempt reached its hard timeout.
    Timeout,
    /// No connection, a closed connection, a garbled answer or an HTTP
    /// error status.
    Error,
    /// The member refused calls (a rate limit, HTTP 429, an error object
    /// the [`FailureRules`] count).
    Refused,
    /// A background probe (head probe, health check or re-test) failed.
    Probe,
}

impl OutReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            OutReason::Stall => "stall",
            OutReason::Timeout => "timeout",
            OutReason::Error => "error",
            OutReason::Refused => "refused",
            OutReason::Probe => "probe",
        }
    }

    fn code(self) -> u8 {
        match self {
            OutReason::Stall => 1,
            OutReason::Timeout => 2,
            OutReason::Error => 3,
            OutReason::Refused => 4,
            OutReason::Probe => 5,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => OutReason::Stall,
            2 => OutReason::Timeout,
            3 => OutReason::Error,
            4 => OutReason::Refused,
            5 => OutReason::Probe,
            _ => return None,
        })
    }

    /// The reason a failed attempt gives.
    pub(crate) fn of(err: &RpcError) -> Self {
        match err {
            RpcError::Timeout { .. } => OutReason::Timeout,
            RpcError::HttpStatus { status, .. } if status.as_u16() == 429 => OutReason::Refused,
            _ => OutReason::Error,
        }
    }
}

impl std::fmt::Display for OutReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// Why it last left rotation (kept after it comes back).
    pub reason: Option<OutReason>,
    /// Failures since its last success.
    pub consecutive_failures: u32,
    /// Attempts running on it now.
    pub in_flight: u32,
    /// Its concurrency limit now (`None` without one; it moves with an
    /// adaptive limit).
    pub concurrency_limit: Option<u32>,
    /// Its current chain head, with head tracking on and once learned.
    pub head: Option<u64>,
    /// Out of rotation for being behind the reference head (head tracking).
    pub lagging: bool,
    /// Why its head is not believed, if it is not (it is then out of
    /// rotation too).
    pub suspect: Option<crate::Suspicion>,
}

/// Background health checks: a cheap call that tells whether a member
/// answers at all, sent to members that have been quiet, and to members
/// out of service once their window ends, so that they come back without
/// waiting for a client call to try them.
///
/// | setting | default |
/// |---|---|
/// | method | none (with head tracking the head probe is used) |
/// | [`interval`](HealthCheck::interval) | 2 s without an answer |
/// | [`timeout`](HealthCheck::timeout) | 2 s |
/// | [`recheck`](HealthCheck::recheck) | 1 s |
///
/// ```
/// use std::time::Duration;
/// use rpc_failover::{FailoverLayer, HealthCheck};
///
/// let layer = FailoverLayer::new()
///     .health_check(HealthCheck::method("eth_chainId").recheck(Duration::from_millis(500)));
/// # let _ = layer;
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct HealthCheck {
    pub(crate) method: Option<Arc<str>>,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) recheck: Duration,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            method: None,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            recheck: Duration::from_secs(1),
        }
    }
}

impl HealthCheck {
    /// Checks with a call of `method` without parameters (`eth_blockNumber`,
    /// `server.ping`, …). Any answer, even an error object, is healthy.
    pub fn method(method: impl Into<Arc<str>>) -> Self {
        HealthCheck {
            method: Some(method.into()),
            ..HealthCheck::default()
        }
    }

    /// A member that has not answered anything for this long is checked
    /// (default 2 s; zero turns these checks off, re-tests stay).
    pub fn interval(mut self, d: Duration) -> Self {
        self.interval = d;
        self
    }

    /// How long a check may take before it counts as a failure (default 2 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// A member out of service is re-tested when its window ends and then
    /// this often until it answers (default 1 s).
    pub fn recheck(mut self, d: Duration) -> Self {
        self.recheck = d.max(Duration::from_millis(10));
        self
    }
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
    pub(crate) deadline: AttemptDeadline,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) health: HealthCheck,
    pub(crate) max_queue: usize,
    pub(crate) max_queue_wait: Duration,
    /// Broadcasts (idempotent writes) go to every member at once.
    pub(crate) multicall: bool,
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
            deadline: AttemptDeadline::adaptive(),
            budget: None,
            health: HealthCheck::default(),
            max_queue: 1024,
            max_queue_wait: Duration::from_secs(5),
            multicall: false,
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
            .field("deadline", &self.deadline)
            .field("budget", &self.budget)
            .field("health", &self.health)
            .field("max_queue", &self.max_queue)
            .field("multicall", &self.multicall)
            .finish_non_exhaustive()
    }
}

/// The atomics behind one member's health. Times are nanoseconds since the
/// group's base instant, plus one, so that 0 can mean "none".
#[derive(Default)]
pub(crate) struct Health {
    failures: AtomicU32,
    out_until: AtomicU64,
    /// A trial (client call or re-test) is deciding whether it is back.
    probing: AtomicBool,
    inflight: AtomicU32,
    ewma_ns: AtomicU64,
    ewma_at: AtomicU64,
    /// When it last answered anything (a call, a probe, even an error
    /// status): the sign of life that tells a slow member from a frozen one.
    answered_at: AtomicU64,
    /// Why it last left rotation ([`OutReason::code`]).
    reason: AtomicU8,
    /// Its concurrency limit now (`u32::MAX`: none).
    limit: AtomicU32,
    /// Successes since the adaptive limit last grew.
    limit_ok: AtomicU32,
    /// When the adaptive limit was last cut.
    limit_cut_at: AtomicU64,
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
    pub(crate) expect: Expectations,
    /// Extra calls (hedges, failovers after a failure that may have reached
    /// the member) draw from it; every attempt feeds it.
    pub(crate) budget: RetryBudget,
    prober: AtomicBool,
    /// Calls waiting for a member under its concurrency limit.
    queued: AtomicUsize,
    room: tokio::sync::Notify,
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

/// The member chosen for an attempt. Picking it counted it in flight; the
/// [`Reservation`] made from it gives that back.
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
        let health: Box<[Health]> = members
            .iter()
            .map(|m| {
                let h = Health::default();
                h.limit
                    .store(m.limit.map_or(u32::MAX, |l| l.start()), Ordering::Relaxed);
                h
            })
            .collect();
        for m in &members {
            metrics::gauge!(names::IN_SERVICE, "backend" => m.name.clone()).set(1.0);
            if let Some(limit) = m.limit {
                metrics::gauge!(names::CONCURRENCY_LIMIT, "backend" => m.name.clone())
                    .set(f64::from(limit.start()));
            }
        }
        let heads = policy
            .head
            .clone()
            .map(|p| Heads::new(p, members.iter().map(|m| m.name.clone()).collect()));
        let expect = Expectations::new(policy.deadline.clone(), members.len());
        let budget = policy.budget.clone().unwrap_or_default();
        budget.set_fed();
        Ok(Core {
            members: members.into_boxed_slice(),
            health,
            tiers: tiers.into_boxed_slice(),
            rr: AtomicUsize::new(0),
            base: Instant::now(),
            policy,
            heads,
            expect,
            budget,
            prober: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            room: tokio::sync::Notify::new(),
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

    /// Takes over what `from` learned about the members both groups share
    /// by name and `keep` accepts (same node, same settings): health (out
    /// of service and until when, failures in a row, why, the adaptive
    /// concurrency limit, latency), heads and suspicions, and the group's
    /// agreed head, finalized block and reorganisation count. Calls must
    /// not have started on `self` (its clock is set to `from`'s, so every
    /// instant carries over as it was); returns how many members inherited.
    pub(crate) fn inherit<T>(&mut self, from: &Core<T>, keep: &dyn Fn(&str) -> bool) -> usize {
        self.base = from.base;
        let mut pairs = Vec::with_capacity(self.members.len());
        for (i, m) in self.members.iter().enumerate() {
            let Some(j) = from.members.iter().position(|o| o.name == m.name) else {
                continue;
            };
            if !keep(&m.name) {
                continue;
            }
            let (h, o) = (&self.health[i], &from.health[j]);
            let copy32 = |a: &AtomicU32, b: &AtomicU32| {
                a.store(b.load(Ordering::Acquire), Ordering::Release)
            };
            let copy64 = |a: &AtomicU64, b: &AtomicU64| {
                a.store(b.load(Ordering::Acquire), Ordering::Release)
            };
            copy32(&h.failures, &o.failures);
            copy64(&h.out_until, &o.out_until);
            copy64(&h.ewma_ns, &o.ewma_ns);
            copy64(&h.ewma_at, &o.ewma_at);
            copy64(&h.answered_at, &o.answered_at);
            h.reason
                .store(o.reason.load(Ordering::Acquire), Ordering::Release);
            // A limit only where both have one (an adaptive limit learned
            // under the old settings stays within the new ones).
            let (new_limit, old_limit) = (
                h.limit.load(Ordering::Relaxed),
                o.limit.load(Ordering::Relaxed),
            );
            if new_limit != u32::MAX && old_limit != u32::MAX {
                h.limit.store(new_limit.min(old_limit), Ordering::Release);
                copy32(&h.limit_ok, &o.limit_ok);
                copy64(&h.limit_cut_at, &o.limit_cut_at);
            }
            pairs.push((i, j));
        }
        if let (Some(heads), Some(old)) = (&self.heads, &from.heads) {
            heads.inherit(old, &pairs, self.ticks(Instant::now()));
        }
        pairs.len()
    }

    /// [`inherit`](Self::inherit) on a group not shared yet; 0 (nothing
    /// taken over) once it is.
    pub(crate) fn inherit_shared<T>(
        core: &mut Arc<Core<S>>,
        from: &Core<T>,
        keep: &dyn Fn(&str) -> bool,
    ) -> usize {
        Arc::get_mut(core).map_or(0, |core| core.inherit(from, keep))
    }

    pub(crate) fn status(&self) -> impl Iterator<Item = MemberStatus> + '_ {
        let now = self.now();
        self.members
            .iter()
            .zip(self.health.iter())
            .enumerate()
            .map(move |(i, (m, h))| {
                let until = h.out_until.load(Ordering::Acquire);
                let limit = h.limit.load(Ordering::Relaxed);
                MemberStatus {
                    name: m.name.clone(),
                    in_service: until == 0,
                    out_for: (until != 0).then(|| Duration::from_nanos(until.saturating_sub(now))),
                    reason: OutReason::from_code(h.reason.load(Ordering::Relaxed)),
                    consecutive_failures: h.failures.load(Ordering::Relaxed),
                    in_flight: h.inflight.load(Ordering::Relaxed),
                    concurrency_limit: (limit != u32::MAX).then_some(limit),
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
            // Members with room but all out of service: one attempt on the
            // one due back first. (Members in service but at their
            // concurrency limit are waited for instead.)
            WhenAllDown::TrySoonest if self.full(tried) == 0 => {
                let index = self.soonest_back(tried)?;
                self.claim(index).then_some(Pick {
                    index,
                    probe: false,
                    last_resort: true,
                })
            }
            _ => None,
        }
    }

    /// How many members can take a call now: in service, or out with their
    /// window ended when nothing re-tests them in the background (the next
    /// call is their trial).
    pub(crate) fn available(&self) -> usize {
        let now = self.now();
        let retested = self.rechecks();
        self.health
            .iter()
            .filter(|h| {
                let until = h.out_until.load(Ordering::Acquire);
                until == 0 || (!retested && until <= now)
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

    /// Counts an attempt in flight on member `i`, unless that would pass
    /// its concurrency limit.
    fn claim(&self, i: usize) -> bool {
        let h = &self.health[i];
        let limit = h.limit.load(Ordering::Relaxed);
        if limit == u32::MAX {
            h.inflight.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if h.inflight.fetch_add(1, Ordering::AcqRel) >= limit {
            h.inflight.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Counts an attempt in flight on member `i` whatever its limit (a call
    /// that waited for a member that was not ready).
    pub(crate) fn claim_forced(&self, index: usize) -> Pick {
        self.health[index].inflight.fetch_add(1, Ordering::Relaxed);
        Pick {
            index,
            probe: false,
            last_resort: false,
        }
    }

    /// Members not in `tried` that are in service but at their concurrency
    /// limit.
    pub(crate) fn full(&self, tried: u64) -> u64 {
        let mut full = 0;
        for (i, h) in self.health.iter().enumerate() {
            let limit = h.limit.load(Ordering::Relaxed);
            if tried & (1 << i) == 0
                && limit != u32::MAX
                && h.out_until.load(Ordering::Relaxed) == 0
                && h.inflight.load(Ordering::Relaxed) >= limit
            {
                full |= 1 << i;
            }
        }
        full
    }

    /// `Some` if member `i` is in service (and under its concurrency
    /// limit), or if its window has ended and this call won the right to
    /// make the trial call (when nothing re-tests it in the background).
    fn try_take(&self, i: usize, now: &LazyNow<'_, S>) -> Option<Pick> {
        let h = &self.health[i];
        let until = h.out_until.load(Ordering::Acquire);
        if until == 0 {
            return self.claim(i).then_some(Pick {
                index: i,
                probe: false,
                last_resort: false,
            });
        }
        if !self.rechecks()
            && now.get() >= until
            && h.probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            if !self.claim(i) {
                h.probing.store(false, Ordering::Release);
                return None;
            }
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
            let limit = h.limit.load(Ordering::Relaxed);
            if limit != u32::MAX && h.inflight.load(Ordering::Relaxed) >= limit {
                continue;
            }
            let cost = self.cost(h, now.get(), decay);
            if best.is_none_or(|(_, c)| cost < c) {
                best = Some((i, cost));
            }
        }
        let (index, _) = best?;
        self.claim(index).then_some(Pick {
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

    /// Whether members out of service are re-tested in the background
    /// (then client calls never make the trial).
    pub(crate) fn rechecks(&self) -> bool {
        self.heads.is_some() || self.policy.health.method.is_some()
    }

    /// Whether a member other than those in `tried` could take a call now.
    pub(crate) fn another_can_take(&self, tried: u64) -> bool {
        let now = self.now();
        let retested = self.rechecks();
        self.health.iter().enumerate().any(|(i, h)| {
            let until = h.out_until.load(Ordering::Acquire);
            tried & (1 << i) == 0 && (until == 0 || (!retested && until <= now))
        })
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
        self.limit_grow(pick.index);
    }

    /// Counts a failure against the picked member; `window` is how long it
    /// stays out if this takes it out (default: `out_of_service`). A member
    /// already out stays out until its window ends: only a failed trial
    /// sets a new window.
    fn on_failure(
        &self,
        pick: Pick,
        reason: OutReason,
        detail: &dyn std::fmt::Display,
        window: Option<Duration>,
    ) {
        let h = &self.health[pick.index];
        let failures = h.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let out = h.out_until.load(Ordering::Acquire);
        if pick.probe || (out == 0 && failures >= self.policy.failure_threshold) {
            let window = window.unwrap_or(self.policy.out_of_service);
            let until = self.now().saturating_add(duration_ns(window));
            let was = h.out_until.swap(until, Ordering::AcqRel);
            let name = &self.members[pick.index].name;
            if was == 0 {
                h.reason.store(reason.code(), Ordering::Relaxed);
                metrics::counter!(
                    names::OUT_OF_SERVICE,
                    "backend" => name.clone(),
                    "reason" => reason.as_str()
                )
                .increment(1);
                metrics::gauge!(names::IN_SERVICE, "backend" => name.clone()).set(0.0);
                tracing::warn!(
                    backend = %name,
                    failures,
                    window = ?window,
                    %reason,
                    %detail,
                    "backend out of service"
                );
            } else {
                tracing::debug!(backend = %name, ?window, %reason, %detail, "trial failed: still out of service");
            }
        }
        if pick.probe {
            h.probing.store(false, Ordering::Release);
        }
        if matches!(
            reason,
            OutReason::Refused | OutReason::Stall | OutReason::Timeout
        ) {
            self.limit_cut(pick.index);
        }
    }

    /// Records a sign of life from member `i`.
    fn answered(&self, i: usize) {
        self.answered_at(i, self.now());
    }

    /// Records a sign of life from member `i` at `ticks`.
    fn answered_at(&self, i: usize, ticks: u64) {
        self.health[i].answered_at.store(ticks, Ordering::Relaxed);
    }

    /// Additive increase of an adaptive limit: one more slot per `limit`
    /// successes.
    fn limit_grow(&self, i: usize) {
        let Some(limit) = self.members[i].limit.filter(|l| l.adaptive) else {
            return;
        };
        let h = &self.health[i];
        let now = h.limit.load(Ordering::Relaxed);
        if now >= limit.max {
            return;
        }
        if h.limit_ok.fetch_add(1, Ordering::Relaxed) + 1 >= now {
            h.limit_ok.store(0, Ordering::Relaxed);
            let next = (now + 1).min(limit.max);
            h.limit.store(next, Ordering::Relaxed);
            metrics::gauge!(names::CONCURRENCY_LIMIT, "backend" => self.members[i].name.clone())
                .set(f64::from(next));
        }
    }

    /// Multiplicative decrease of an adaptive limit (halved, at most once
    /// per 100 ms so one burst of refusals counts once).
    fn limit_cut(&self, i: usize) {
        let Some(limit) = self.members[i].limit.filter(|l| l.adaptive) else {
            return;
        };
        let h = &self.health[i];
        let now = self.now();
        let last = h.limit_cut_at.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < 100_000_000 {
            return;
        }
        if h.limit_cut_at
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let current = h.limit.load(Ordering::Relaxed);
        let next = (current / 2).max(limit.min);
        h.limit.store(next, Ordering::Relaxed);
        h.limit_ok.store(0, Ordering::Relaxed);
        metrics::gauge!(names::CONCURRENCY_LIMIT, "backend" => self.members[i].name.clone())
            .set(f64::from(next));
        tracing::debug!(backend = %self.members[i].name, limit = next, "concurrency limit cut");
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

    /// Waits, in the group's bounded queue, until a member at its
    /// concurrency limit has room, up to `deadline` (and the policy's
    /// longest wait). `Err(Overloaded)` when the queue is full.
    pub(crate) async fn wait_for_room(&self, deadline: Option<Instant>) -> Result<bool, RpcError> {
        let queued = self.queued.fetch_add(1, Ordering::AcqRel);
        let _leave = QueueSlot(&self.queued);
        if queued >= self.policy.max_queue {
            return Err(RpcError::Overloaded);
        }
        let mut until = Instant::now() + self.policy.max_queue_wait;
        if let Some(d) = deadline {
            until = until.min(d);
        }
        let notified = self.room.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.full(0) == 0 {
            // Room opened between the failed pick and now.
            return Ok(true);
        }
        Ok(tokio::time::timeout_at(until, notified).await.is_ok())
    }

    /// Wakes queued calls when member `i` has room again.
    fn released(&self) {
        if self.queued.load(Ordering::Relaxed) != 0 {
            self.room.notify_waiters();
        }
    }

    pub(crate) fn classify(&self, request: &Request) -> crate::Idempotency {
        self.policy.classifier.classify(request)
    }
}

struct QueueSlot<'a>(&'a AtomicUsize);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) fn duration_ns(d: Duration) -> u64 {
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

impl ConcurrencyLimit {
    fn start(self) -> u32 {
        self.max
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
            OutReason::Refused,
            &"refused",
            None,
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
        drop(core.reserve(again));
        assert_eq!(core.health[0].inflight.load(Ordering::Relaxed), 0);
    }
}
