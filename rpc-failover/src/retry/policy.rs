use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rpc_core::{Delivery, Request, Response, RpcError};
use tokio::time::{Instant, Sleep};
use tower::retry::Policy;

use super::RetryBudget;
use crate::classify::{Classifier, FailureRules, MethodRules};

/// The settings shared by every clone of a retry layer's policy.
pub(crate) struct Settings {
    pub(crate) max_retries: u32,
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) jitter: f64,
    pub(crate) max_retry_after: Duration,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) classifier: Arc<dyn Classifier>,
    pub(crate) failure_rules: FailureRules,
    seed: AtomicU64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_retries: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(2),
            jitter: 0.5,
            max_retry_after: Duration::from_secs(5),
            budget: Some(RetryBudget::default()),
            classifier: Arc::new(MethodRules::ethereum()),
            failure_rules: FailureRules::default(),
            seed: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
        }
    }
}

impl Clone for Settings {
    fn clone(&self) -> Self {
        Settings {
            max_retries: self.max_retries,
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
            jitter: self.jitter,
            max_retry_after: self.max_retry_after,
            budget: self.budget.clone(),
            classifier: self.classifier.clone(),
            failure_rules: self.failure_rules.clone(),
            seed: AtomicU64::new(self.seed.load(Ordering::Relaxed)),
        }
    }
}

impl Settings {
    /// A random number in [0, 1): splitmix64 over a shared counter. Good
    /// enough to spread retries; not for anything secret.
    fn random(&self) -> f64 {
        let mut z = self
            .seed
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The wait before retry number `retry` (0-based).
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(31));
        let full = self
            .initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff);
        if self.jitter <= 0.0 {
            return full;
        }
        full.mul_f64(1.0 - self.jitter * self.random())
    }
}

/// The [`tower::retry::Policy`] behind [`RetryLayer`](super::RetryLayer).
///
/// Cloned per call (a refcount bump); counts that call's attempts.
#[derive(Clone)]
pub struct RetryPolicy {
    settings: Arc<Settings>,
    retries: u32,
}

impl std::fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_retries", &self.settings.max_retries)
            .field("initial_backoff", &self.settings.initial_backoff)
            .field("max_backoff", &self.settings.max_backoff)
            .field("jitter", &self.settings.jitter)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl RetryPolicy {
    pub(crate) fn new(settings: Arc<Settings>) -> Self {
        RetryPolicy {
            settings,
            retries: 0,
        }
    }

    /// Whether `result` may be retried at all, and the wait the cause asked for.
    fn retryable(
        &self,
        request: &Request,
        result: &Result<Response, RpcError>,
    ) -> Option<Option<Duration>> {
        let (delivery, retry_after) = match result {
            Ok(response) => {
                if !self.settings.failure_rules.is_backend_failure(response) {
                    return None;
                }
                (Delivery::MaybeSent, None)
            }
            Err(err) => {
                if !err.is_retryable() {
                    return None;
                }
                (err.delivery(), err.retry_after())
            }
        };
        if delivery == Delivery::MaybeSent
            && !self
                .settings
                .classifier
                .classify(request)
                .is_safe_to_repeat()
        {
            return None;
        }
        Some(retry_after)
    }
}

impl Policy<Request, Response, RpcError> for RetryPolicy {
    type Future = Sleep;

    fn retry(
        &mut self,
        request: &mut Request,
        result: &mut Result<Response, RpcError>,
    ) -> Option<Sleep> {
        let retry_after = self.retryable(request, result);
        // Without a group feeding the budget, the outcomes are recorded here.
        if let Some(budget) = self.settings.budget.as_ref().filter(|b| !b.is_fed()) {
            match (&retry_after, &*result) {
                (None, Ok(_)) => budget.record_success(),
                (None, Err(_)) => {}
                (Some(_), _) => budget.record_failure(),
            }
        }
        let retry_after = retry_after?;
        if self.retries >= self.settings.max_retries {
            return None;
        }
        let mut wait = self.settings.backoff(self.retries);
        if let Some(asked) = retry_after {
            wait = wait.max(asked.min(self.settings.max_retry_after));
        }
        let at = Instant::now() + wait;
        if request.deadline().is_some_and(|d| at >= d) {
            // The retry could not finish in time; the client gets the error now.
            return None;
        }
        if let Some(budget) = &self.settings.budget {
            if !budget.withdraw() {
                tracing::debug!(method = request.method(), "retry budget spent");
                metrics::counter!(crate::names::RETRY_BUDGET_EXHAUSTED).increment(1);
                return None;
            }
        }
        self.retries += 1;
        metrics::counter!(crate::names::RETRIES).increment(1);
        tracing::debug!(
            method = request.method(),
            retry = self.retries,
            ?wait,
            "retrying"
        );
        Some(tokio::time::sleep_until(at))
    }

    fn clone_request(&mut self, request: &Request) -> Option<Request> {
        if self.settings.max_retries == 0 {
            return None;
        }
        Some(request.clone())
    }
}
