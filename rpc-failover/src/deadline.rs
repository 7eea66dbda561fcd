//! Adaptive attempt deadlines: how long a member may take before an attempt
//! counts as a *stall*.
//!
//! A group learns each member's latency per method (successful answers
//! only) and gives every attempt a stall deadline of
//! `quantile × factor`, clamped to `[min, max]`. A member that has not
//! answered a method 20 times yet gets `initial` for it. When an attempt
//! passes its stall deadline:
//!
//! * the member is charged one failure (reason `stall`), whether the
//!   attempt later ends by answering, by its hard timeout, by the client
//!   leaving or by a hedge winning — so a frozen member leaves rotation after
//!   `failure_threshold` stalls, not after a client-visible timeout;
//! * a call that may be repeated, with another member able to take it,
//!   leaves the stalled attempt and moves on at once; otherwise it keeps
//!   waiting for the member's answer (until the call's deadline or the
//!   backend's own timeout).
//!
//! A healthy fast node gets a tight deadline; a slow but correct one (a node
//! serving heavy `eth_getLogs`) gets a loose one, learned from its own
//! answers.
//!
//! | setting | default |
//! |---|---|
//! | [`quantile`](AttemptDeadline::quantile) | 0.99 |
//! | [`factor`](AttemptDeadline::factor) | 4 |
//! | [`min`](AttemptDeadline::min) | 150 ms |
//! | [`max`](AttemptDeadline::max) | 3 s |
//! | [`initial`](AttemptDeadline::initial) | 3 s (a first call may include connecting) |
//!
//! ```
//! use std::time::Duration;
//! use rpc_failover::{AttemptDeadline, FailoverLayer};
//!
//! // Members of this group serve heavy traces: allow up to 20 s.
//! let layer = FailoverLayer::new()
//!     .attempt_deadline(AttemptDeadline::adaptive().max(Duration::from_secs(20)));
//! # let _ = layer;
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::histogram::LogHistogram;

/// When an attempt counts as a stall. See the [module](self).
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptDeadline {
    pub(crate) quantile: f64,
    pub(crate) factor: f64,
    pub(crate) min: Duration,
    pub(crate) max: Duration,
    pub(crate) initial: Duration,
    pub(crate) adaptive: bool,
}

impl Default for AttemptDeadline {
    fn default() -> Self {
        AttemptDeadline::adaptive()
    }
}

impl AttemptDeadline {
    /// Learned per member and method, with the defaults.
    pub fn adaptive() -> Self {
        AttemptDeadline {
            quantile: 0.99,
            factor: 4.0,
            min: Duration::from_millis(150),
            max: Duration::from_secs(3),
            initial: Duration::from_secs(3),
            adaptive: true,
        }
    }

    /// The same deadline for every member and method.
    pub fn fixed(d: Duration) -> Self {
        AttemptDeadline {
            min: d,
            max: d,
            initial: d,
            adaptive: false,
            ..AttemptDeadline::adaptive()
        }
    }

    /// The latency quantile the deadline starts from (`0.5..=1.0`, clamped;
    /// default 0.99).
    pub fn quantile(mut self, q: f64) -> Self {
        self.quantile = if q.is_finite() {
            q.clamp(0.5, 1.0)
        } else {
            0.99
        };
        self
    }

    /// The margin over the quantile (at least 1; default 4).
    pub fn factor(mut self, f: f64) -> Self {
        self.factor = if f.is_finite() { f.max(1.0) } else { 4.0 };
        self
    }

    /// The tightest deadline (default 150 ms).
    pub fn min(mut self, d: Duration) -> Self {
        self.min = d;
        self.max = self.max.max(d);
        self
    }

    /// The loosest deadline (default 3 s).
    pub fn max(mut self, d: Duration) -> Self {
        self.max = d;
        self.min = self.min.min(d);
        self
    }

    /// The deadline for a method a member has answered fewer than 20 times
    /// (default 3 s, clamped to `[min, max]`): lenient, since a first call
    /// may include connecting and a handshake.
    pub fn initial(mut self, d: Duration) -> Self {
        self.initial = d;
        self
    }
}

/// Answers before a quantile is trusted.
const MIN_SAMPLES: u64 = 20;
/// After this many answers the counts are halved, so the quantile follows
/// recent behaviour.
const WINDOW: u64 = 1_000;
/// Methods learned separately per member; further methods share one slot.
pub(crate) const MAX_CLASSES: usize = 31;

/// One member's latency for one method class (2 buckets per power of two,
/// 41 % resolution: deadlines need no more), with its deadline cached.
struct Histogram {
    latency: LogHistogram<2>,
    /// The deadline in nanoseconds (0: not enough samples yet).
    cached: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            latency: LogHistogram::new(WINDOW),
            cached: AtomicU64::new(0),
        }
    }

    fn record(&self, elapsed: Duration, policy: &AttemptDeadline) {
        let counted = self.latency.record(elapsed);
        // The quantile is recomputed every 8 answers, not read per attempt.
        if counted >= MIN_SAMPLES && (counted % 8 == 0 || self.cached.load(Ordering::Relaxed) == 0)
        {
            self.cached
                .store(self.deadline_ns(policy), Ordering::Relaxed);
        }
    }

    fn deadline_ns(&self, policy: &AttemptDeadline) -> u64 {
        let Some(q) = self.latency.quantile(policy.quantile, MIN_SAMPLES) else {
            return 0;
        };
        let ns = q.as_nanos() as f64 * policy.factor;
        let clamped = ns.clamp(policy.min.as_nanos() as f64, policy.max.as_nanos() as f64);
        (clamped as u64).max(1)
    }
}

/// FNV-1a: method names are short and not attacker-controlled past the
/// first [`MAX_CLASSES`] (later ones never enter the map), so a fast
/// non-keyed hash is enough; this is on every call's path.
#[derive(Default, Clone, Copy)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvBuild = std::hash::BuildHasherDefault<Fnv>;

/// Each member's latency per method, and the deadlines that follow.
pub(crate) struct Expectations {
    policy: AttemptDeadline,
    /// Method → class index (1..=MAX_CLASSES; 0 is "every other method").
    classes: RwLock<HashMap<Arc<str>, u8, FnvBuild>>,
    /// `members × (MAX_CLASSES + 1)` histograms.
    histograms: Box<[Histogram]>,
}

impl Expectations {
    pub(crate) fn new(policy: AttemptDeadline, members: usize) -> Self {
        let histograms = if policy.adaptive {
            (0..members * (MAX_CLASSES + 1))
                .map(|_| Histogram::new())
                .collect()
        } else {
            Box::default()
        };
        Expectations {
            policy,
            classes: RwLock::new(HashMap::default()),
            histograms,
        }
    }

    /// The class of `method` (one read lock; a write the first time a
    /// method is seen, for the first [`MAX_CLASSES`] methods).
    pub(crate) fn class(&self, method: &Arc<str>) -> u8 {
        if !self.policy.adaptive {
            return 0;
        }
        if let Ok(map) = self.classes.read() {
            if let Some(&c) = map.get(method) {
                return c;
            }
            if map.len() >= MAX_CLASSES {
                return 0;
            }
        }
        match self.classes.write() {
            Ok(mut map) => {
                let next = map.len() + 1;
                if next > MAX_CLASSES {
                    return 0;
                }
                *map.entry(method.clone()).or_insert(next as u8)
            }
            Err(_) => 0,
        }
    }

    fn histogram(&self, member: usize, class: u8) -> Option<&Histogram> {
        self.histograms
            .get(member * (MAX_CLASSES + 1) + usize::from(class))
    }

    /// Member `member`'s stall deadline for a call of `class`.
    pub(crate) fn deadline(&self, member: usize, class: u8) -> Duration {
        let p = &self.policy;
        if !p.adaptive {
            return p.max;
        }
        match self.histogram(member, class) {
            Some(h) => match h.cached.load(Ordering::Relaxed) {
                0 => p.initial.clamp(p.min, p.max),
                ns => Duration::from_nanos(ns),
            },
            None => p.initial.clamp(p.min, p.max),
        }
    }

    /// Records a successful answer's latency.
    pub(crate) fn record(&self, member: usize, class: u8, elapsed: Duration) {
        if let Some(h) = self.histogram(member, class) {
            h.record(elapsed, &self.policy);
        }
    }
}

impl std::fmt::Debug for Expectations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expectations")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fast_member_gets_a_tight_deadline_and_slow_one_a_loose_one() {
        let e = Expectations::new(AttemptDeadline::adaptive(), 2);
        let m: Arc<str> = "eth_call".into();
        let c = e.class(&m);
        assert_eq!(e.deadline(0, c), ms(3000), "initial before 20 answers");
        for _ in 0..100 {
            e.record(0, c, ms(2));
            e.record(1, c, ms(400));
        }
        assert_eq!(e.deadline(0, c), ms(150), "2 ms × 4 is under the floor");
        let slow = e.deadline(1, c);
        assert!(slow >= ms(1600) && slow <= ms(3000), "{slow:?}");
    }

    #[test]
    fn methods_are_learned_apart_and_the_rest_share_a_class() {
        let e = Expectations::new(AttemptDeadline::adaptive(), 1);
        let logs: Arc<str> = "eth_getLogs".into();
        let call: Arc<str> = "eth_call".into();
        let (cl, cc) = (e.class(&logs), e.class(&call));
        assert_ne!(cl, cc);
        assert_eq!(e.class(&logs), cl, "stable");
        for _ in 0..50 {
            e.record(0, cl, ms(500));
            e.record(0, cc, ms(1));
        }
        assert!(e.deadline(0, cl) >= ms(2000));
        assert_eq!(e.deadline(0, cc), ms(150));
        for i in 0..(MAX_CLASSES + 5) {
            let m: Arc<str> = format!("m{i}").into();
            assert!(usize::from(e.class(&m)) <= MAX_CLASSES);
        }
        let late: Arc<str> = "late_method".into();
        assert_eq!(e.class(&late), 0, "past the cap: the shared class");
    }

    #[test]
    fn fixed_deadline_is_the_same_everywhere() {
        let e = Expectations::new(AttemptDeadline::fixed(ms(700)), 3);
        let m: Arc<str> = "x".into();
        let c = e.class(&m);
        e.record(1, c, ms(1));
        assert_eq!(e.deadline(1, c), ms(700));
        assert_eq!(e.deadline(2, 0), ms(700));
    }

    #[test]
    fn the_quantile_follows_a_change_in_behaviour() {
        let e = Expectations::new(AttemptDeadline::adaptive().max(ms(10_000)), 1);
        for _ in 0..500 {
            e.record(0, 0, ms(1000));
        }
        assert!(e.deadline(0, 0) >= ms(4000));
        for _ in 0..6000 {
            e.record(0, 0, ms(1));
        }
        assert_eq!(e.deadline(0, 0), ms(150), "old slow answers halved away");
    }
}
