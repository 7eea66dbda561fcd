//! Rate limits per client IP and per API key, with per-method weights
//! (cargo feature `rate-limit`, on by default).
//!
//! [`RateLimitLayer`] charges each call its method's weight (default 1)
//! against a budget that refills continuously (GCRA, from the `governor`
//! crate): `rate` units per second with bursts of up to `burst` units.
//!
//! * A call carrying a **known API key** ([`ApiKey`] in its
//!   extensions, put there by the HTTP front, see
//!   [`ServerConfig::api_key_header`](crate::server::ServerConfig::api_key_header))
//!   is charged to that key's own budget and not to its IP.
//! * Any other call, including one with an unknown key, is charged to its
//!   **client IP** ([`RemoteAddr`]); IPv6 clients are
//!   grouped by their /64 network, the block one subscriber usually holds.
//!   A call without an address (not from the HTTP front) is not limited.
//! * A refused call fails with [`RpcError::RateLimited`] without touching the
//!   inner service: `-32016`, HTTP 429 with a `Retry-After` header (whole
//!   seconds, rounded up) for a single call; in a batch, each refused call
//!   gets its own `-32016` answer.
//!
//! Per-IP state is kept for clients seen recently and swept as the table
//! grows, so memory stays bounded by the number of active clients.
//!
//! ```
//! use rpc_core::ratelimit::{Limit, RateLimitLayer};
//!
//! let layer = RateLimitLayer::new()
//!     .per_ip(Limit::per_second(20).burst(40))
//!     .key("k-partner-1", Limit::per_second(500).burst(1000))
//!     .weight("eth_getLogs", 10)
//!     .weight("debug_traceTransaction", 50);
//! # drop(layer);
//! ```

mod layer;
#[cfg(feature = "tx-sender")]
#[cfg_attr(docsrs, doc(cfg(feature = "tx-sender")))]
pub mod sender;
mod service;
#[cfg(feature = "redis")]
mod shared;

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

pub use layer::RateLimitLayer;
#[cfg(feature = "tx-sender")]
#[cfg_attr(docsrs, doc(cfg(feature = "tx-sender")))]
pub use sender::{
    sender_of, SenderLimit, SenderLimitLayer, RAW_TRANSACTION_METHODS, SENDER_LIMITED,
    SENDER_UNRECOGNIZED,
};
pub use service::{RateLimit, ResponseFuture};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use shared::WhenRedisDown;

use crate::protocol::{MethodTable, Pattern};
use crate::{ApiKey, RemoteAddr, Request, RpcError};

/// A budget: `rate` weight units per second, bursts up to `burst` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    rate: NonZeroU32,
    burst: NonZeroU32,
}

impl Limit {
    /// `rate` units per second (at least 1), with a burst of the same size.
    pub fn per_second(rate: u32) -> Self {
        let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
        Limit { rate, burst: rate }
    }

    /// Sets the burst: how many units may be spent at once after a quiet
    /// period (at least 1; default: the rate).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        self
    }

    /// The rate, units per second.
    pub fn rate(&self) -> u32 {
        self.rate.get()
    }

    /// The burst, units.
    pub fn burst_size(&self) -> u32 {
        self.burst.get()
    }

    fn quota(self) -> Quota {
        Quota::per_second(self.rate).allow_burst(self.burst)
    }
}

/// How often (in calls) the per-IP table is considered for a sweep.
const SWEEP_EVERY: u32 = 4096;
/// The per-IP table is swept only above this many clients.
const SWEEP_ABOVE: usize = 1024;

/// The shared state of a [`RateLimit`] service.
pub(crate) struct Limiter {
    per_ip: Option<(DefaultKeyedRateLimiter<IpAddr>, Limit)>,
    keys: HashMap<Arc<str>, (DefaultDirectRateLimiter, Limit)>,
    weights: MethodTable<NonZeroU32>,
    default_weight: NonZeroU32,
    /// All clients' budgets by method: pattern → index in `global`.
    global_of: MethodTable<usize>,
    global: Vec<(Arc<str>, DefaultDirectRateLimiter, Limit)>,
    clock: DefaultClock,
    calls: AtomicU32,
    /// Budgets in Redis, shared by replicas (the local ones are the
    /// fallback).
    #[cfg(feature = "redis")]
    pub(crate) shared: Option<shared::Shared>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("per_ip", &self.per_ip.is_some())
            .field("keys", &self.keys.len())
            .field("weights", &self.weights)
            .field("default_weight", &self.default_weight)
            .finish()
    }
}

impl Limiter {
    pub(crate) fn from_layer(layer: &RateLimitLayer) -> Self {
        Limiter {
            per_ip: layer
                .per_ip
                .map(|l| (DefaultKeyedRateLimiter::dashmap(l.quota()), l)),
            keys: layer
                .keys
                .iter()
                .map(|(k, l)| (k.clone(), (DefaultDirectRateLimiter::direct(l.quota()), *l)))
                .collect(),
            weights: layer.weights.clone(),
            default_weight: layer.default_weight,
            global_of: {
                let mut table = MethodTable::new();
                for (i, (pattern, _)) in layer.methods.iter().enumerate() {
                    let parsed = Pattern::parse(pattern).unwrap_or(Pattern::Exact(pattern));
                    table.insert_pattern(parsed, i);
                }
                table
            },
            global: layer
                .methods
                .iter()
                .map(|(p, l)| (p.clone(), DefaultDirectRateLimiter::direct(l.quota()), *l))
                .collect(),
            clock: DefaultClock::default(),
            calls: AtomicU32::new(0),
            #[cfg(feature = "redis")]
            shared: layer
                .shared
                .as_ref()
                .map(|(link, when)| shared::Shared::new(link.clone(), *when)),
        }
    }

    fn weight(&self, method: &str) -> NonZeroU32 {
        self.weights
            .get(method)
            .copied()
            .unwrap_or(self.default_weight)
    }

    /// `Ok` when the call may pass; the error to answer with otherwise.
    pub(crate) fn check(&self, req: &Request) -> Result<(), RpcError> {
        self.check_client(req)?;
        self.check_global(req)
    }

    /// The all-clients budget of the call's method, if it has one.
    fn global_of(&self, method: &str) -> Option<&(Arc<str>, DefaultDirectRateLimiter, Limit)> {
        if self.global.is_empty() {
            return None;
        }
        self.global_of.get(method).map(|&i| &self.global[i])
    }

    /// Charges the call to its method's all-clients budget, if any.
    fn check_global(&self, req: &Request) -> Result<(), RpcError> {
        let Some((_, limiter, _)) = self.global_of(req.method()) else {
            return Ok(());
        };
        verdict(limiter.check_n(self.weight(req.method())), &self.clock)
    }

    /// Charges the call to its key's or its IP's budget.
    fn check_client(&self, req: &Request) -> Result<(), RpcError> {
        let weight = self.weight(req.method());
        let outcome = match req
            .extensions()
            .get::<ApiKey>()
            .and_then(|k| self.keys.get(&k.0))
        {
            Some((limiter, _)) => limiter.check_n(weight),
            None => {
                let (Some((per_ip, _)), Some(RemoteAddr(addr))) =
                    (&self.per_ip, req.extensions().get::<RemoteAddr>())
                else {
                    return Ok(());
                };
                self.maybe_sweep(per_ip);
                per_ip.check_key_n(&client_ip(addr.ip()), weight)
            }
        };
        verdict(outcome, &self.clock)
    }

    /// The plan of the call's all-clients budget in Redis, if it has one.
    #[cfg(feature = "redis")]
    pub(crate) fn global_plan(
        &self,
        shared: &shared::Shared,
        req: &Request,
    ) -> Option<(String, Limit, u32)> {
        let (pattern, _, limit) = self.global_of(req.method())?;
        let weight = self.weight(req.method()).get();
        Some((
            shared.redis_key(&shared::Bucket::Method(pattern)),
            *limit,
            weight,
        ))
    }

    /// The Redis key, limit and weight of a call limited by shared
    /// budgets; `None` when the call is not limited.
    #[cfg(feature = "redis")]
    pub(crate) fn shared_plan(
        &self,
        shared: &shared::Shared,
        req: &Request,
    ) -> Option<(String, Limit, u32)> {
        let weight = self.weight(req.method()).get();
        let key = req.extensions().get::<ApiKey>();
        if let Some((k, (_, limit))) = key.and_then(|k| self.keys.get_key_value(&k.0)) {
            return Some((shared.redis_key(&shared::Bucket::Key(k)), *limit, weight));
        }
        let ((_, limit), RemoteAddr(addr)) =
            (self.per_ip.as_ref()?, req.extensions().get::<RemoteAddr>()?);
        let ip = client_ip(addr.ip());
        Some((shared.redis_key(&shared::Bucket::Ip(ip)), *limit, weight))
    }

    /// Checks a call against the shared budgets (its client's, then its
    /// method's all-clients one: one round trip each); while Redis cannot
    /// be asked, against the local ones (fail-open) or not at all
    /// (fail-closed).
    #[cfg(feature = "redis")]
    pub(crate) async fn check_shared(
        &self,
        shared: &shared::Shared,
        req: &Request,
        client: Option<(String, Limit, u32)>,
        global: Option<(String, Limit, u32)>,
    ) -> Result<(), RpcError> {
        let ask = |plan: (String, Limit, u32),
                   local: fn(&Self, &Request) -> Result<(), RpcError>| async move {
            let (key, limit, weight) = plan;
            match shared.check(key, limit, weight).await {
                Some(shared::Verdict::Pass) => Ok(()),
                Some(shared::Verdict::Wait(wait)) => Err(RpcError::RateLimited {
                    retry_after: Some(wait),
                }),
                Some(shared::Verdict::Never) => Err(RpcError::RateLimited { retry_after: None }),
                None => match shared.when_down {
                    WhenRedisDown::FailOpen => local(self, req),
                    WhenRedisDown::FailClosed => Err(RpcError::RateLimited {
                        retry_after: Some(Duration::from_secs(1)),
                    }),
                },
            }
        };
        match client {
            Some(plan) => ask(plan, Self::check_client).await?,
            None => self.check_client(req)?,
        }
        match global {
            Some(plan) => ask(plan, Self::check_global).await,
            None => Ok(()),
        }
    }

    fn maybe_sweep(&self, per_ip: &DefaultKeyedRateLimiter<IpAddr>) {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 && per_ip.len() > SWEEP_ABOVE {
            // Drops clients whose budget is full again: forgetting them
            // changes nothing.
            per_ip.retain_recent();
            per_ip.shrink_to_fit();
        }
    }
}

/// A governor answer as the call's outcome.
fn verdict(
    outcome: Result<
        Result<(), governor::NotUntil<<DefaultClock as Clock>::Instant>>,
        governor::InsufficientCapacity,
    >,
    clock: &DefaultClock,
) -> Result<(), RpcError> {
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(not_until)) => Err(RpcError::RateLimited {
            retry_after: Some(not_until.wait_time_from(clock.now())),
        }),
        // The call's weight exceeds the whole burst: it can never pass.
        Err(_) => Err(RpcError::RateLimited { retry_after: None }),
    }
}

/// The address a client is limited by: itself for IPv4, its /64 for IPv6
/// (an IPv4-mapped address counts as IPv4).
fn client_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// The time a refused client is told to wait, rounded up to whole seconds
/// as `Retry-After` has it.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BoxJsonRpcService, Response};
    use std::net::SocketAddr;
    use tower::{service_fn, Layer, ServiceExt};

    fn ok_service() -> BoxJsonRpcService {
        BoxJsonRpcService::new(service_fn(|req: Request| async move {
            Ok::<_, RpcError>(Response::result(
                req.id().cloned().unwrap_or_default(),
                crate::RawJson::NULL,
            ))
        }))
    }

    fn call(method: &str, ip: &str, key: Option<&str>) -> Request {
        let mut req = Request::new(method).with_id(1u64.into());
        let addr: SocketAddr = format!("{ip}:5000")
            .parse()
            .or_else(|_| format!("[{ip}]:5000").parse())
            .expect("test address");
        req.extensions_mut().insert(RemoteAddr(addr));
        if let Some(k) = key {
            req.extensions_mut().insert(ApiKey(Arc::from(k)));
        }
        req
    }

    async fn passes(svc: &RateLimit<BoxJsonRpcService>, req: Request) -> Result<(), RpcError> {
        svc.clone().oneshot(req).await.map(|_| ())
    }

    #[tokio::test]
    async fn a_method_budget_is_shared_by_every_client() {
        let svc = RateLimitLayer::new()
            .per_ip(Limit::per_second(1).burst(2))
            .method("eth_getLogs", Limit::per_second(1).burst(3))
            .method("debug_*", Limit::per_second(1).burst(1))
            .layer(ok_service());
        // Three clients, two getLogs each: the method's burst of 3 is
        // spent by the first three, whoever sent them.
        let mut passed = 0;
        for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            for _ in 0..2 {
                if passes(&svc, call("eth_getLogs", ip, None)).await.is_ok() {
                    passed += 1;
                }
            }
        }
        assert_eq!(passed, 3);
        let err = passes(&svc, call("eth_getLogs", "10.0.0.4", None))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                RpcError::RateLimited {
                    retry_after: Some(_)
                }
            ),
            "{err:?}"
        );
        // Other methods are not charged to it; a prefix has its own.
        passes(&svc, call("eth_call", "10.0.0.4", None))
            .await
            .unwrap();
        passes(&svc, call("debug_traceCall", "10.0.0.5", None))
            .await
            .unwrap();
        assert!(passes(&svc, call("debug_traceBlock", "10.0.0.6", None))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_call_its_client_may_not_make_costs_the_method_budget_nothing() {
        let svc = RateLimitLayer::new()
            .per_ip(Limit::per_second(1).burst(1))
            .method("eth_getLogs", Limit::per_second(1).burst(2))
            .layer(ok_service());
        passes(&svc, call("eth_getLogs", "10.0.0.1", None))
            .await
            .unwrap();
        for _ in 0..5 {
            assert!(passes(&svc, call("eth_getLogs", "10.0.0.1", None))
                .await
                .is_err());
        }
        // The refused calls spent nothing of the method's budget.
        passes(&svc, call("eth_getLogs", "10.0.0.2", None))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_burst_passes_then_calls_are_refused_with_a_wait() {
        let svc = RateLimitLayer::new()
            .per_ip(Limit::per_second(1).burst(3))
            .layer(ok_service());
        for _ in 0..3 {
            passes(&svc, call("eth_call", "10.0.0.1", None))
                .await
                .unwrap();
        }
        let err = passes(&svc, call("eth_call", "10.0.0.1", None))
            .await
            .unwrap_err();
        let RpcError::RateLimited {
            retry_after: Some(wait),
        } = err
        else {
            panic!("expected RateLimited with a wait, got {err:?}")
        };
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert_eq!(retry_after_secs(wait), 1);
        assert_eq!(err.to_error_object().code(), -32016);
        assert_eq!(err.http_status(), http::StatusCode::TOO_MANY_REQUESTS);
        // Another client has its own budget.
        passes(&svc, call("eth_call", "10.0.0.2", None))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn weights_charge_expensive_methods_more() {
        let svc = RateLimitLayer::new()
            .per_ip(Limit::per_second(1).burst(10))
            .weight("eth_getLogs", 4)
            .layer(ok_service());
        passes(&svc, call("eth_getLogs", "10.0.0.1", None))
            .await
            .unwrap();
        passes(&svc, call("eth_getLogs", "10.0.0.1", None))
            .await
            .unwrap();
        // 8 spent, 2 left: a third eth_getLogs is refused, two cheap calls pass.
        assert!(passes(&svc, call("eth_getLogs", "10.0.0.1", None))
            .await
            .is_err());
        passes(&svc, call("eth_chainId", "10.0.0.1", None))
            .await
            .unwrap();
        passes(&svc, call("eth_chainId", "10.0.0.1", None))
            .await
            .unwrap();
        assert!(passes(&svc, call("eth_chainId", "10.0.0.1", None))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn weights_by_prefix_and_exact_name_beats_prefix() {
        let svc = RateLimitLayer::new()
            .per_ip(Limit::per_second(1).burst(10))
            .weight("debug_*", 5)
            .weight("debug_cheap", 1)
            .layer(ok_service());
        // 5 + 5 spent: a third trace is refused, the cheap debug call is not.
        for _ in 0..2 {
            passes(&svc, call("debug_traceCall", "10.0.0.2", None))
                .await
                .unwrap();
        }
        assert!(
            passes(&svc, call("debug_traceTransaction", "10.0.0.2", None))
                .await
                .is_err()
        );
        let svc = RateLimitLayer::new()
            .per_ip(Limit::per_second(1).burst(3))
            .weight("debug_*", 5)
            .weight("debug_cheap", 1)
            .layer(ok_service());
        for _ in 0..3 {
            passes(&svc, call("debug_cheap", "10.0.0.3", None))
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn a_weight_above_the_burst_is_refused_without_a_wait() {
        let svc = RateLimitLayer::new()
            .per_ip(Limit::per_second(5))
            .weight("debug_traceBlock", 50)
            .layer(ok_service());
        let err = passes(&svc, call("debug_traceBlock", "10.0.0.1", None))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RpcError::RateLimited { retry_after: None }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn known_keys_have_their_own_budget_and_unknown_keys_count_as_the_ip() {
        let svc = RateLimitLayer::new()
            .per_ip(Limit::per_second(1).burst(1))
            .key("partner", Limit::per_second(1).burst(3))
            .layer(ok_service());
        for _ in 0..3 {
            passes(&svc, call("eth_call", "10.0.0.1", Some("partner")))
                .await
                .unwrap();
        }
        assert!(passes(&svc, call("eth_call", "10.0.0.9", Some("partner")))
            .await
            .is_err());
        // The key's spending did not touch the IP's budget...
        passes(&svc, call("eth_call", "10.0.0.1", None))
            .await
            .unwrap();
        // ...and an invented key is charged to the IP, now empty.
        assert!(passes(&svc, call("eth_call", "10.0.0.1", Some("made-up")))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn ipv6_clients_share_their_slash_64() {
        let svc = RateLimitLayer::new()
            .per_ip(Limit::per_second(1).burst(1))
            .layer(ok_service());
        passes(&svc, call("eth_call", "2001:db8:1:2::1", None))
            .await
            .unwrap();
        assert!(passes(&svc, call("eth_call", "2001:db8:1:2::ffff", None))
            .await
            .is_err());
        passes(&svc, call("eth_call", "2001:db8:1:3::1", None))
            .await
            .unwrap();
        assert_eq!(
            client_ip("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }

    #[tokio::test]
    async fn calls_without_an_address_are_not_limited() {
        let svc = RateLimitLayer::new()
            .per_ip(Limit::per_second(1).burst(1))
            .layer(ok_service());
        for _ in 0..5 {
            passes(&svc, Request::new("eth_call").with_id(1u64.into()))
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn the_budget_refills() {
        let svc = RateLimitLayer::new()
            .per_ip(Limit::per_second(1000).burst(1))
            .layer(ok_service());
        passes(&svc, call("eth_call", "10.0.0.1", None))
            .await
            .unwrap();
        assert!(passes(&svc, call("eth_call", "10.0.0.1", None))
            .await
            .is_err());
        // One unit comes back every millisecond; wait for a few.
        std::thread::sleep(Duration::from_millis(20));
        passes(&svc, call("eth_call", "10.0.0.1", None))
            .await
            .unwrap();
    }
}
