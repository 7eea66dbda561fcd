use std::sync::Arc;
use std::time::Duration;

use std::task::{Context, Poll};

use rpc_core::batch::{
    call_batch, Batch, BatchAnswers, BatchGroup, BoxedBatchFuture, JsonRpcBatchService,
};
use rpc_core::{Request, Response, RpcError};
use tower::retry::Policy;
use tower::{Layer, Service, ServiceExt};

use super::policy::Settings;
use super::{RetryBudget, RetryPolicy};
use crate::classify::{Classifier, FailureRules};

/// A service wrapped by [`RetryLayer`]: tower's retry middleware with our
/// policy for single calls; a batch goes on whole, and each call whose
/// answer the policy would retry is retried on its own, as a single call
/// would be (same budget, backoff and count).
#[derive(Clone, Debug)]
pub struct Retry<S> {
    inner: tower::retry::Retry<RetryPolicy, S>,
    policy: RetryPolicy,
}

impl<S> Retry<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }
}

impl<S> Service<Request> for Retry<S>
where
    S: Service<Request, Response = Response, Error = RpcError> + Clone,
{
    type Response = Response;
    type Error = RpcError;
    type Future = tower::retry::future::ResponseFuture<RetryPolicy, S, Request>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        self.inner.call(req)
    }
}

impl<S: JsonRpcBatchService> Service<Batch> for Retry<S> {
    type Response = BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = BoxedBatchFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch) -> BoxedBatchFuture {
        let inner = self.inner.get_ref().clone();
        let policy = self.policy.clone();
        // The calls are kept for their retries only when there can be any.
        // (`clone_request` does not change the policy: one copy asks for
        // all of them.)
        let mut asking = policy.clone();
        let mut kept: Vec<Option<Request>> = batch
            .calls()
            .iter()
            .map(|call| asking.clone_request(call))
            .collect();
        BoxedBatchFuture::new(async move {
            let mut answers = call_batch(inner.clone(), batch).await;
            let mut retried = Vec::new();
            // A policy changes only when it grants a retry: one fresh copy
            // judges every call until one is retried, and goes on with it.
            let mut judge = policy.clone();
            for (index, (answer, call)) in answers.iter_mut().zip(&mut kept).enumerate() {
                let (Some(result), Some(call)) = (answer.as_mut(), call.as_mut()) else {
                    continue;
                };
                // The first attempt judged as a single call's is; the
                // policy (its count, its budget) goes on with the call.
                if let Some(wait) = judge.retry(call, result) {
                    let policy = std::mem::replace(&mut judge, policy.clone());
                    retried.push((index, call.clone(), policy, wait));
                }
            }
            if retried.is_empty() {
                return answers;
            }
            // The calls retried together reach a batching backend together.
            let group = (retried.len() > 1).then(|| BatchGroup::new(retried.len()));
            let retries =
                retried
                    .into_iter()
                    .enumerate()
                    .map(|(i, (index, mut call, policy, wait))| {
                        let item = group.as_ref().map(|group| {
                            let item = group.item(i);
                            item.start();
                            call.extensions_mut().insert(item.clone());
                            item
                        });
                        let retry = tower::retry::Retry::new(policy, inner.clone());
                        async move {
                            wait.await;
                            let result = retry.oneshot(call).await;
                            if let Some(item) = item {
                                item.settle();
                            }
                            (index, result)
                        }
                    });
            for (index, result) in futures_util::future::join_all(retries).await {
                answers[index] = Some(result);
            }
            answers
        })
    }
}

/// Retries failed calls with backoff, within the deadline and a budget.
///
/// See the [module](crate::retry) for the rules and defaults.
///
/// ```
/// use rpc_core::{HttpBackend, JsonRpcService};
/// use rpc_failover::RetryLayer;
/// use tower::ServiceBuilder;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = HttpBackend::builder("node", "http://127.0.0.1:8545").build()?;
/// let svc = ServiceBuilder::new().layer(RetryLayer::new()).service(backend);
/// fn assert_service(_: impl JsonRpcService) {}
/// assert_service(svc);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct RetryLayer {
    settings: Arc<Settings>,
}

impl std::fmt::Debug for RetryLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.settings;
        f.debug_struct("RetryLayer")
            .field("max_retries", &s.max_retries)
            .field("initial_backoff", &s.initial_backoff)
            .field("max_backoff", &s.max_backoff)
            .field("jitter", &s.jitter)
            .field("max_retry_after", &s.max_retry_after)
            .field("budget", &s.budget)
            .finish_non_exhaustive()
    }
}

impl RetryLayer {
    /// A layer with the defaults.
    pub fn new() -> Self {
        RetryLayer::default()
    }

    fn settings(&mut self) -> &mut Settings {
        Arc::make_mut(&mut self.settings)
    }

    /// Retries after the first attempt (default 3; 0 turns retrying off).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.settings().max_retries = n;
        self
    }

    /// The first wait and the cap; each retry doubles the wait (default 250 ms
    /// and 2 s).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        let s = self.settings();
        s.initial_backoff = initial;
        s.max_backoff = max.max(initial);
        self
    }

    /// How much of each wait is random (`0.0..=1.0`, default 0.5: a wait is
    /// 50–100 % of the schedule). 0 makes the schedule exact.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.settings().jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The longest `Retry-After` honoured (default 5 s); longer ones are
    /// clamped to this.
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.settings().max_retry_after = max;
        self
    }

    /// The budget, shared by every service this layer (and its clones) builds
    /// (default: [`RetryBudget::default`]). Give the group below the same
    /// budget ([`FailoverLayer::budget`](crate::FailoverLayer::budget)) so
    /// that retries and the group's hedges and failovers draw from one
    /// bucket.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.settings().budget = Some(budget);
        self
    }

    /// No budget: only `max_retries` and the deadline limit retries.
    pub fn no_budget(mut self) -> Self {
        self.settings().budget = None;
        self
    }

    /// Which methods may be repeated once they may have been delivered
    /// (default: [`MethodRules::ethereum`](crate::MethodRules::ethereum)).
    pub fn classifier(mut self, classifier: impl Classifier) -> Self {
        self.settings().classifier = Arc::new(classifier);
        self
    }

    /// Which error objects are refusals worth retrying (default:
    /// [`FailureRules::default`]).
    pub fn failure_rules(mut self, rules: FailureRules) -> Self {
        self.settings().failure_rules = rules;
        self
    }

    /// The policy this layer gives its services.
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy::new(self.settings.clone())
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner: tower::retry::Retry::new(self.policy(), inner),
            policy: self.policy(),
        }
    }
}
