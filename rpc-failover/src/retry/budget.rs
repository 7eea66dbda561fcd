use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

/// Milli-tokens per token.
const UNIT: i64 = 1000;

/// One budget for the extra upstream calls a group makes — retries,
/// hedges, and moving a call to another member after a failure that may
/// have reached the first one — in the shape of gRPC's retry throttling.
///
/// A bucket of `max_tokens` tokens, full at the start. Every failed
/// attempt drains one token; every successful one refills `ratio` of a
/// token. An extra call takes a token, and only while the bucket stays at
/// least half full. So extra calls are at most `ratio` × successful attempts
/// plus `max_tokens / 2`, in steady state and in a brownout (where failures
/// empty the bucket and extra calls stop until successes refill it).
///
/// Moving on after a failure that certainly did not reach the member (a
/// refused connection, a rate-limit refusal, a stall of a member that
/// answers nothing) is not extra load and takes no token.
///
/// Clones share one bucket: give the same budget to a group
/// ([`FailoverLayer::budget`](crate::FailoverLayer::budget)) and to the
/// [`RetryLayer`](crate::RetryLayer) above it. A group records the outcome
/// of every attempt; a retry layer records outcomes itself only when no
/// group feeds its budget. Lock-free (one atomic).
///
/// ```
/// use rpc_failover::RetryBudget;
///
/// // 10 % extra load, a bucket of 10 tokens (5 usable at once).
/// let budget = RetryBudget::new(0.1).max_tokens(10);
/// let spent = (0..10).filter(|_| budget.withdraw()).count();
/// assert_eq!(spent, 5, "never below half full");
/// for _ in 0..10 {
///     budget.record_success();
/// }
/// assert!(budget.withdraw(), "ten successes earn one extra call");
/// assert!(!budget.withdraw());
/// budget.record_failure();
/// assert_eq!(budget.tokens(), 4.0);
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    ratio_milli: i64,
    max_milli: i64,
    balance: AtomicI64,
    fed: AtomicBool,
}

impl std::fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ratio", &(self.inner.ratio_milli as f64 / UNIT as f64))
            .field("max_tokens", &(self.inner.max_milli / UNIT))
            .field("tokens", &self.tokens())
            .finish()
    }
}

impl RetryBudget {
    /// Extra calls may add `ratio` (e.g. `0.1` = 10 %) of the successful
    /// ones; a bucket of 20 tokens.
    pub fn new(ratio: f64) -> Self {
        let ratio = if ratio.is_finite() {
            ratio.clamp(0.0, 1000.0)
        } else {
            0.0
        };
        RetryBudget {
            inner: Arc::new(Inner {
                ratio_milli: (ratio * UNIT as f64) as i64,
                max_milli: 20 * UNIT,
                balance: AtomicI64::new(20 * UNIT),
                fed: AtomicBool::new(false),
            }),
        }
    }

    /// The bucket's size in tokens (default 20, at least 2); it starts full,
    /// and half of it is a burst allowance. Call before sharing the budget.
    pub fn max_tokens(self, n: u32) -> Self {
        let max = i64::from(n.max(2)) * UNIT;
        RetryBudget {
            inner: Arc::new(Inner {
                ratio_milli: self.inner.ratio_milli,
                max_milli: max,
                balance: AtomicI64::new(max),
                fed: AtomicBool::new(self.inner.fed.load(Ordering::Relaxed)),
            }),
        }
    }

    /// Records a successful attempt: refills `ratio` of a token.
    pub fn record_success(&self) {
        let (add, max) = (self.inner.ratio_milli, self.inner.max_milli);
        if add <= 0 || self.inner.balance.load(Ordering::Relaxed) >= max {
            return;
        }
        let _ = self
            .inner
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_add(add).min(max))
            });
    }

    /// Records a failed attempt: drains one token.
    pub fn record_failure(&self) {
        let _ = self
            .inner
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b > 0).then(|| (b - UNIT).max(0))
            });
    }

    /// Takes a token for one extra call; `false` (and nothing taken) if
    /// that would leave the bucket less than half full.
    pub fn withdraw(&self) -> bool {
        let floor = self.inner.max_milli / 2;
        self.inner
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b - UNIT >= floor).then_some(b - UNIT)
            })
            .is_ok()
    }

    /// The tokens in the bucket now.
    pub fn tokens(&self) -> f64 {
        self.inner.balance.load(Ordering::Relaxed) as f64 / UNIT as f64
    }

    /// Marks the budget as fed by a group (which records every attempt).
    pub(crate) fn set_fed(&self) {
        self.inner.fed.store(true, Ordering::Relaxed);
    }

    /// Whether a group records outcomes into this budget.
    pub(crate) fn is_fed(&self) -> bool {
        self.inner.fed.load(Ordering::Relaxed)
    }
}

impl Default for RetryBudget {
    /// 10 % of successful attempts, a bucket of 20 tokens.
    fn default() -> Self {
        RetryBudget::new(0.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_calls_stay_under_the_ratio() {
        let b = RetryBudget::new(0.1).max_tokens(10);
        let mut extra = 0;
        for i in 0..10_000 {
            // A brownout: every other attempt fails; each failure wants a retry.
            if i % 2 == 0 {
                b.record_success();
            } else {
                b.record_failure();
                if b.withdraw() {
                    extra += 1;
                }
            }
        }
        assert!(extra <= 5 + 500, "{extra}");
        let steady = RetryBudget::new(0.1).max_tokens(10);
        let mut hedges = 0;
        for _ in 0..10_000 {
            steady.record_success();
            if steady.withdraw() {
                hedges += 1;
            }
        }
        assert!(hedges <= 1_000 + 5, "{hedges}");
        assert!(hedges >= 990, "the allowance is usable: {hedges}");
    }

    #[test]
    fn clones_share_one_bucket() {
        let a = RetryBudget::new(0.0).max_tokens(4);
        let b = a.clone();
        assert!(a.withdraw());
        assert!(b.withdraw());
        assert!(!a.withdraw());
        assert_eq!(b.tokens(), 2.0);
    }

    #[test]
    fn failures_never_go_below_zero() {
        let b = RetryBudget::new(0.5).max_tokens(2);
        for _ in 0..10 {
            b.record_failure();
        }
        assert_eq!(b.tokens(), 0.0);
        for _ in 0..4 {
            b.record_success();
        }
        assert_eq!(b.tokens(), 2.0, "capped at the size");
    }
}
