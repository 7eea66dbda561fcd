use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use tokio::time::Instant;

/// Milli-tokens per retry.
const UNIT: i64 = 1000;

/// Caps retries so that failing backends do not cause a retry storm.
///
/// Each call deposits `ratio` of a retry; each retry withdraws one. On top,
/// `min_per_second` retries per second are always allowed (so a quiet service
/// can still retry). Unused allowance accumulates up to `max_reserve`
/// retries. Lock-free (two atomics) and driven by tokio's clock, so paused
/// time in tests controls it.
///
/// ```
/// use rpc_failover::RetryBudget;
///
/// // Retries may add at most 10 % load, plus 1 per second, with no reserve.
/// let budget = RetryBudget::new(0.1).min_per_second(1).max_reserve(1);
/// for _ in 0..10 {
///     budget.deposit();
/// }
/// assert!(budget.withdraw());
/// assert!(!budget.withdraw());
/// ```
#[derive(Debug)]
pub struct RetryBudget {
    ratio_milli: i64,
    per_second_milli: i64,
    max_milli: i64,
    balance: AtomicI64,
    refilled_ms: AtomicU64,
    base: Instant,
}

impl RetryBudget {
    /// Retries may add `ratio` (e.g. `0.2` = 20 %) of the calls, plus 10 per
    /// second, with a reserve of at most 100 retries. The budget starts with
    /// the per-second allowance.
    pub fn new(ratio: f64) -> Self {
        let ratio = if ratio.is_finite() {
            ratio.max(0.0)
        } else {
            0.0
        };
        RetryBudget {
            ratio_milli: (ratio * UNIT as f64) as i64,
            per_second_milli: 10 * UNIT,
            max_milli: 100 * UNIT,
            balance: AtomicI64::new(10 * UNIT),
            refilled_ms: AtomicU64::new(0),
            base: Instant::now(),
        }
    }

    /// Retries per second allowed regardless of traffic (default 10).
    pub fn min_per_second(mut self, n: u32) -> Self {
        self.per_second_milli = i64::from(n) * UNIT;
        self.balance
            .store(self.per_second_milli.min(self.max_milli), Ordering::Relaxed);
        self
    }

    /// The most unused retries kept for a burst (default 100, at least 1).
    pub fn max_reserve(mut self, n: u32) -> Self {
        self.max_milli = i64::from(n.max(1)) * UNIT;
        let b = self.balance.load(Ordering::Relaxed).min(self.max_milli);
        self.balance.store(b, Ordering::Relaxed);
        self
    }

    /// Records a call (done by the retry layer for every call).
    pub fn deposit(&self) {
        self.add(self.ratio_milli);
    }

    /// Takes one retry from the budget; `false` if it is spent.
    pub fn withdraw(&self) -> bool {
        self.refill();
        self.balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b >= UNIT).then_some(b - UNIT)
            })
            .is_ok()
    }

    fn add(&self, milli: i64) {
        if milli <= 0 {
            return;
        }
        let max = self.max_milli;
        let _ = self
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_add(milli).min(max.max(b)))
            });
    }

    fn refill(&self) {
        if self.per_second_milli == 0 {
            return;
        }
        let now = Instant::now().saturating_duration_since(self.base);
        let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        let last = self.refilled_ms.load(Ordering::Acquire);
        if now_ms > last
            && self
                .refilled_ms
                .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let elapsed = i64::try_from(now_ms - last).unwrap_or(i64::MAX / UNIT);
            // per_second_milli milli-tokens per 1000 ms.
            self.add(elapsed.saturating_mul(self.per_second_milli) / 1000);
        }
    }
}

impl Default for RetryBudget {
    /// 20 % of calls, plus 10 per second, reserve 100.
    fn default() -> Self {
        RetryBudget::new(0.2)
    }
}
