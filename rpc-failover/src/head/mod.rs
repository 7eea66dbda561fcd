//! Head tracking: never route to a member that is connected but behind, and
//! never let a client see the chain go backwards.
//!
//! A failover group built with [`FailoverLayer::head_tracking`](crate::FailoverLayer::head_tracking)
//! keeps each member's chain head (block number or height):
//!
//! * **learned from live answers** first: the result of the probe method
//!   (`eth_blockNumber`, `blockchain.headers.subscribe`) whenever a client
//!   calls it, and the [`ChainHead`] an adapter attaches to its answers
//!   (the Electrum adapter follows header notifications and attaches its tip
//!   to every answer, so an Electrum pool needs no probes at all while it
//!   has traffic);
//! * **probed** only for members live traffic does not cover: a member
//!   whose head was not learned for `probe_interval` is asked, at most
//!   `max_probes_per_second` times a second per member (probing paid
//!   providers costs money). Probes run in a task started with the group,
//!   which ends when the group is dropped (without a Tokio runtime at build
//!   time there are no probes, only live learning).
//!
//! A member is **lagging** when it is more than `max_lag` blocks behind the
//! best head of the group, or when it has stayed behind without moving for
//! `max_stall` while others advanced (a frozen node behind a live server).
//! Lagging members are out of rotation until they catch up: calls go to the
//! others, and to a lagging member only when no other member can take the
//! call. [`MemberStatus`](crate::MemberStatus) shows each member's head and
//! whether it lags; the `rpc_backend_head`, `rpc_backend_head_lag` and
//! `rpc_backend_lagging` gauges follow them.
//!
//! Two more rules use the heads:
//!
//! * **Block-tag awareness.** A call for an explicit block (Ethereum's
//!   `eth_getBlockByNumber("0x10f")`, `eth_call(.., "0x10f")`, Electrum's
//!   `blockchain.block.header(271)`, see [`Classifier::min_head`](crate::Classifier::min_head))
//!   goes only to members that have that block, when one has it.
//! * **Read-your-head consistency.** A call carrying [`MinHead`] (set by
//!   [`ConsistencyLayer`] from what its session has already seen) goes only
//!   to members at or above that head; if none is, the call waits up to
//!   `consistency_wait` for one (members below are probed at once), then
//!   fails with `-32011` rather than show an older chain.
//!
//! Every answer from a tracked group carries the answering member's head as
//! [`ChainHead`], which [`ConsistencyLayer`] records for the session and a
//! cache uses to keep only answers from the head it has seen.
//!
//! ```
//! use std::time::Duration;
//! use rpc_failover::{FailoverLayer, HeadPolicy};
//!
//! let layer = FailoverLayer::new().head_tracking(
//!     HeadPolicy::ethereum()
//!         .max_lag(3)
//!         .max_stall(Duration::from_secs(30))
//!         .probe_interval(Duration::from_secs(2))
//!         .max_probes_per_second(1.0),
//! );
//! # drop(layer);
//! ```

mod consistency;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rpc_core::{ChainHead, Id, MinHead, RawJson, Request, Response};
use tokio::sync::Notify;

use crate::names;

pub use consistency::{Consistency, ConsistencyLayer};

/// How a group asks a member for its head, and reads the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadProbe {
    /// `eth_blockNumber`, answered with a hex quantity.
    Ethereum,
    /// `blockchain.headers.subscribe`, answered with `{"height": n, ..}`.
    Electrum,
}

impl HeadProbe {
    /// The probe method.
    pub fn method(self) -> &'static str {
        match self {
            HeadProbe::Ethereum => "eth_blockNumber",
            HeadProbe::Electrum => "blockchain.headers.subscribe",
        }
    }

    fn request(self) -> Request {
        let req = Request::new(self.method()).with_id(Id::from(0u64));
        match RawJson::from_static("[]") {
            Ok(params) => req.with_params(params),
            Err(_) => req,
        }
    }

    /// The head in an answer to the probe method, if it is one.
    pub fn parse(self, response: &Response) -> Option<u64> {
        let raw = response.result_json()?;
        match self {
            HeadProbe::Ethereum => {
                let text: &str = serde_json::from_slice(raw.as_bytes()).ok()?;
                u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
            }
            HeadProbe::Electrum => {
                #[derive(serde::Deserialize)]
                struct Tip {
                    height: u64,
                }
                serde_json::from_slice::<Tip>(raw.as_bytes())
                    .ok()
                    .map(|t| t.height)
            }
        }
    }
}

/// Head-tracking settings of a group (see the [module docs](self)).
///
/// Defaults: `max_lag` 3 blocks, `max_stall` 30 s, `probe_interval` 2 s,
/// `max_probes_per_second` 1 per member, `probe_timeout` 2 s,
/// `consistency_wait` 2 s.
#[derive(Clone, Debug)]
pub struct HeadPolicy {
    pub(crate) probe: HeadProbe,
    pub(crate) max_lag: u64,
    pub(crate) max_stall: Duration,
    pub(crate) probe_interval: Duration,
    pub(crate) max_probes_per_second: f64,
    pub(crate) probe_timeout: Duration,
    pub(crate) consistency_wait: Duration,
}

impl HeadPolicy {
    /// Tracking with `probe`, and the defaults.
    pub fn new(probe: HeadProbe) -> Self {
        HeadPolicy {
            probe,
            max_lag: 3,
            max_stall: Duration::from_secs(30),
            probe_interval: Duration::from_secs(2),
            max_probes_per_second: 1.0,
            probe_timeout: Duration::from_secs(2),
            consistency_wait: Duration::from_secs(2),
        }
    }

    /// Ethereum JSON-RPC members (`eth_blockNumber`).
    pub fn ethereum() -> Self {
        Self::new(HeadProbe::Ethereum)
    }

    /// Electrum members (`blockchain.headers.subscribe`).
    pub fn electrum() -> Self {
        Self::new(HeadProbe::Electrum)
    }

    /// Blocks a member may be behind the best head and stay in rotation
    /// (default 3).
    pub fn max_lag(mut self, blocks: u64) -> Self {
        self.max_lag = blocks;
        self
    }

    /// How long a member may stay behind without its head moving before it
    /// is taken out of rotation, however few blocks behind (default 30 s).
    pub fn max_stall(mut self, d: Duration) -> Self {
        self.max_stall = d;
        self
    }

    /// A member whose head was not learned for this long is probed
    /// (default 2 s).
    pub fn probe_interval(mut self, d: Duration) -> Self {
        self.probe_interval = d.max(Duration::from_millis(10));
        self
    }

    /// The most probes per second sent to one member (default 1; 0 turns
    /// probing off: heads are then learned only from live answers).
    pub fn max_probes_per_second(mut self, n: f64) -> Self {
        self.max_probes_per_second = if n.is_finite() { n.max(0.0) } else { 0.0 };
        self
    }

    /// How long a probe may take (default 2 s).
    pub fn probe_timeout(mut self, d: Duration) -> Self {
        self.probe_timeout = d;
        self
    }

    /// How long a call with a [`MinHead`] no member has reached waits for
    /// one (default 2 s; the call's deadline applies too).
    pub fn consistency_wait(mut self, d: Duration) -> Self {
        self.consistency_wait = d;
        self
    }

    /// The probe.
    pub fn probe(&self) -> HeadProbe {
        self.probe
    }
}

/// One member's head, in atomics. Heads are stored plus one, so that a
/// chain at genesis (height 0) is not "unknown" (0). Times are group ticks
/// (0 = never).
#[derive(Default)]
struct MemberHead {
    head: AtomicU64,
    /// When the best head first got ahead of this member's current head.
    passed_at: AtomicU64,
    /// When its head was last learned.
    seen_at: AtomicU64,
    /// When it was last probed.
    probed_at: AtomicU64,
}

/// The heads of a group's members.
pub(crate) struct Heads {
    pub(crate) policy: HeadPolicy,
    members: Box<[MemberHead]>,
    names: Box<[std::sync::Arc<str>]>,
    best: AtomicU64,
    /// Woken when any head moves up.
    moved: Notify,
    /// Woken when a call needs a head no member has reached (shared with the
    /// prober, which holds the group only weakly).
    pub(crate) wanted: std::sync::Arc<Notify>,
    /// The highest head a waiting call needs (probes members below it).
    pub(crate) want: AtomicU64,
}

/// What one call needs of a member's head.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Need {
    /// From the session ([`MinHead`]): strict.
    pub(crate) session: u64,
    /// From an explicit block in the params: preferred.
    pub(crate) block: u64,
}

/// Members to leave out, as bit masks.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Masks {
    pub(crate) lagging: u64,
    pub(crate) below_session: u64,
    pub(crate) below_block: u64,
}

impl Heads {
    pub(crate) fn new(policy: HeadPolicy, names: Vec<std::sync::Arc<str>>) -> Self {
        Heads {
            policy,
            members: names.iter().map(|_| MemberHead::default()).collect(),
            names: names.into_boxed_slice(),
            best: AtomicU64::new(0),
            moved: Notify::new(),
            wanted: std::sync::Arc::new(Notify::new()),
            want: AtomicU64::new(0),
        }
    }

    /// Member `i`'s head, once learned.
    pub(crate) fn head(&self, i: usize) -> Option<u64> {
        self.members[i].head.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Whether member `i` is known to be at `head` or above.
    fn has(&self, i: usize, head: u64) -> bool {
        self.head(i).is_some_and(|h| h >= head)
    }

    /// Records that member `i` is at `head` (at group tick `now`).
    pub(crate) fn observe(&self, i: usize, head: u64, now: u64) {
        let m = &self.members[i];
        m.seen_at.store(now, Ordering::Relaxed);
        let stored = head.saturating_add(1);
        let prev = m.head.fetch_max(stored, Ordering::Relaxed);
        if stored <= prev {
            return;
        }
        let prev_best = self.best.fetch_max(stored, Ordering::Relaxed);
        // It moved: behind or not, its stall clock restarts.
        m.passed_at
            .store(if stored < prev_best { now } else { 0 }, Ordering::Relaxed);
        if stored > prev_best {
            // The others are behind now; start their clocks.
            for (j, o) in self.members.iter().enumerate() {
                if j != i && o.head.load(Ordering::Relaxed) < stored {
                    let _ =
                        o.passed_at
                            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
                }
            }
        }
        metrics::gauge!(names::HEAD, "backend" => self.names[i].clone()).set(head as f64);
        self.publish(now);
        self.moved.notify_waiters();
    }

    /// Whether member `i` is out of rotation for its head.
    pub(crate) fn lagging(&self, i: usize, now: u64) -> bool {
        let m = &self.members[i];
        let stored = m.head.load(Ordering::Relaxed);
        if stored == 0 {
            // Not known yet: no reason to avoid it.
            return false;
        }
        let lag = self.best.load(Ordering::Relaxed).saturating_sub(stored);
        if lag > self.policy.max_lag {
            return true;
        }
        let passed = m.passed_at.load(Ordering::Relaxed);
        lag > 0 && passed != 0 && now.saturating_sub(passed) > duration_ticks(self.policy.max_stall)
    }

    pub(crate) fn masks(&self, now: u64, need: &Need) -> Masks {
        let mut masks = Masks::default();
        for i in 0..self.members.len() {
            if self.lagging(i, now) {
                masks.lagging |= 1 << i;
            }
            if need.session != 0 && !self.has(i, need.session) {
                masks.below_session |= 1 << i;
            }
            if need.block != 0 && !self.has(i, need.block) {
                masks.below_block |= 1 << i;
            }
        }
        masks
    }

    /// Publishes the gauges of every member (lag and lagging): when a head
    /// moves, and on every prober tick (a stall is a matter of time).
    pub(crate) fn publish(&self, now: u64) {
        let best = self.best.load(Ordering::Relaxed);
        for i in 0..self.members.len() {
            let head = self.members[i].head.load(Ordering::Relaxed);
            if head == 0 {
                continue;
            }
            let name = self.names[i].clone();
            metrics::gauge!(names::HEAD_LAG, "backend" => name.clone())
                .set(best.saturating_sub(head) as f64);
            metrics::gauge!(names::LAGGING, "backend" => name).set(if self.lagging(i, now) {
                1.0
            } else {
                0.0
            });
        }
    }

    /// Waits until some member reaches `head`, or `until`; `true` if one did.
    pub(crate) async fn wait_for(&self, head: u64, until: tokio::time::Instant) -> bool {
        self.want.fetch_max(head, Ordering::Relaxed);
        self.wanted.notify_one();
        loop {
            let moved = self.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if (0..self.members.len()).any(|i| self.has(i, head)) {
                return true;
            }
            if tokio::time::timeout_at(until, moved).await.is_err() {
                return (0..self.members.len()).any(|i| self.has(i, head));
            }
        }
    }

    /// Members to probe now: not learned for `probe_interval` (or below a
    /// head a call waits for), and not probed within the per-member cap.
    pub(crate) fn due(&self, now: u64) -> u64 {
        if self.policy.max_probes_per_second <= 0.0 {
            return 0;
        }
        let interval = duration_ticks(self.policy.probe_interval);
        let gap = (1e9 / self.policy.max_probes_per_second) as u64;
        let want = self.want.load(Ordering::Relaxed);
        let mut due = 0u64;
        for (i, m) in self.members.iter().enumerate() {
            let seen = m.seen_at.load(Ordering::Relaxed);
            let stale = seen == 0 || now.saturating_sub(seen) >= interval;
            let wanted = want != 0 && !self.has(i, want);
            let probed = m.probed_at.load(Ordering::Relaxed);
            let allowed = probed == 0 || now.saturating_sub(probed) >= gap;
            if (stale || wanted) && allowed {
                m.probed_at.store(now, Ordering::Relaxed);
                due |= 1 << i;
            }
        }
        if want != 0 && (0..self.members.len()).any(|i| self.has(i, want)) {
            let _ = self
                .want
                .compare_exchange(want, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
        due
    }

    /// The probe request, with a deadline.
    pub(crate) fn probe_request(&self) -> Request {
        let mut req = self.policy.probe.request();
        req.extensions_mut()
            .insert(rpc_core::Deadline::after(self.policy.probe_timeout));
        req
    }

    /// The head an answer shows: the adapter's [`ChainHead`], or the probe
    /// method's result.
    pub(crate) fn head_in(&self, method: &str, response: &Response) -> Option<u64> {
        let from_adapter = response.extensions().get::<ChainHead>().map(|h| h.0);
        let from_result = (method == self.policy.probe.method())
            .then(|| self.policy.probe.parse(response))
            .flatten();
        from_adapter.max(from_result)
    }
}

/// What a request needs, read from its extensions and params.
pub(crate) fn need_of(request: &Request, classifier: &dyn crate::Classifier) -> Need {
    Need {
        session: request.extensions().get::<MinHead>().map_or(0, |m| m.0),
        block: classifier.min_head(request).unwrap_or(0),
    }
}

pub(crate) fn duration_ticks(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
