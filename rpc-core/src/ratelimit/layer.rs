use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use tower::Layer;

use super::{Limit, Limiter, RateLimit};
use crate::protocol::{MethodTable, Pattern};

/// Rate limits per client IP and per API key (see the [module docs](super)).
///
/// Defaults: no per-IP limit, no keys (nothing is limited until one is set),
/// every method weighs 1.
///
/// ```
/// use rpc_core::ratelimit::{Limit, RateLimitLayer};
/// use rpc_core::HttpBackend;
/// use tower::ServiceBuilder;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = HttpBackend::builder("node", "http://127.0.0.1:8545").build()?;
/// let service = ServiceBuilder::new()
///     .layer(RateLimitLayer::new().per_ip(Limit::per_second(50).burst(100)).weight("eth_getLogs", 5))
///     .service(backend);
/// # drop(service); Ok(()) }
/// ```
#[derive(Clone)]
pub struct RateLimitLayer {
    pub(super) per_ip: Option<Limit>,
    pub(super) keys: HashMap<Arc<str>, Limit>,
    pub(super) weights: MethodTable<NonZeroU32>,
    pub(super) default_weight: NonZeroU32,
    /// Budgets of all clients together, by method pattern.
    pub(super) methods: Vec<(Arc<str>, Limit)>,
    #[cfg(feature = "redis")]
    pub(super) shared: Option<(crate::redis::RedisLink, super::WhenRedisDown)>,
}

impl std::fmt::Debug for RateLimitLayer {
    /// Keys are secrets: only their number is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("per_ip", &self.per_ip)
            .field("keys", &self.keys.len())
            .field("weights", &self.weights)
            .field("default_weight", &self.default_weight)
            .field("methods", &self.methods)
            .finish()
    }
}

impl Default for RateLimitLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimitLayer {
    /// No limits yet; add them with the methods below.
    pub fn new() -> Self {
        RateLimitLayer {
            per_ip: None,
            keys: HashMap::new(),
            weights: MethodTable::new(),
            default_weight: NonZeroU32::MIN,
            methods: Vec::new(),
            #[cfg(feature = "redis")]
            shared: None,
        }
    }

    /// The budget of each client IP (IPv6: each /64) without a known key.
    pub fn per_ip(mut self, limit: Limit) -> Self {
        self.per_ip = Some(limit);
        self
    }

    /// A known API key and its own budget. Calls with this key are charged
    /// here, not to their IP. Adding a key twice keeps the last limit.
    pub fn key(mut self, key: impl Into<Arc<str>>, limit: Limit) -> Self {
        self.keys.insert(key.into(), limit);
        self
    }

    /// What a call of a method matching `pattern` (`eth_getLogs`, or a
    /// prefix such as `debug_*`) costs (at least 1). Default: the default
    /// weight. A malformed pattern (`*` inside) names a method literally.
    pub fn weight(mut self, pattern: &str, weight: u32) -> Self {
        let parsed = Pattern::parse(pattern).unwrap_or(Pattern::Exact(pattern));
        self.weights
            .insert_pattern(parsed, NonZeroU32::new(weight).unwrap_or(NonZeroU32::MIN));
        self
    }

    /// A budget for all clients together on the methods matching `pattern`
    /// (`eth_getLogs`, or a prefix such as `debug_*`): every call of them,
    /// whoever sends it, is charged its weight here too (after its client's
    /// own budget admitted it), so that an expensive method is protected
    /// fleet-wide (with `shared` budgets, cargo feature `redis`) or
    /// process-wide.
    /// Refused calls get `-32016` and `Retry-After` like any. A method
    /// matching several patterns is charged to the most specific one.
    ///
    /// ```
    /// use rpc_core::ratelimit::{Limit, RateLimitLayer};
    ///
    /// let layer = RateLimitLayer::new()
    ///     .per_ip(Limit::per_second(20))
    ///     .method("eth_getLogs", Limit::per_second(50).burst(100));
    /// # drop(layer);
    /// ```
    pub fn method(mut self, pattern: &str, limit: Limit) -> Self {
        match self.methods.iter_mut().find(|(p, _)| &**p == pattern) {
            Some(entry) => entry.1 = limit,
            None => self.methods.push((Arc::from(pattern), limit)),
        }
        self
    }

    /// What a call of a method without its own weight costs (at least 1;
    /// default 1).
    pub fn default_weight(mut self, weight: u32) -> Self {
        self.default_weight = NonZeroU32::new(weight).unwrap_or(NonZeroU32::MIN);
        self
    }
}

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
impl RateLimitLayer {
    /// Keeps the budgets in Redis, shared by every replica that uses the
    /// same Redis and key prefix: the same limits and weights, checked
    /// atomically on Redis (one round trip per call, a GCRA script on
    /// Redis' clock), so a fleet of replicas admits a client's rate once,
    /// not once per replica. `when_down` says what happens while Redis
    /// cannot answer within the link's deadline (see [`WhenRedisDown`](super::WhenRedisDown)).
    ///
    /// ```no_run
    /// use rpc_core::ratelimit::{Limit, RateLimitLayer, WhenRedisDown};
    /// use rpc_core::redis::{RedisConfig, RedisLink};
    ///
    /// let link = RedisLink::new(RedisConfig::new("redis://127.0.0.1:6379"))?;
    /// let layer = RateLimitLayer::new()
    ///     .per_ip(Limit::per_second(20))
    ///     .shared(link, WhenRedisDown::FailOpen);
    /// # drop(layer); Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shared(
        mut self,
        link: crate::redis::RedisLink,
        when_down: super::WhenRedisDown,
    ) -> Self {
        self.shared = Some((link, when_down));
        self
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, Arc::new(Limiter::from_layer(self)))
    }
}
