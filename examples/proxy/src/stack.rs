//! From a validated [`Config`] to a running proxy: the whole stack, built
//! with the crates' public builders only. Read this file to see how the
//! layers fit together.
//!
//! ```text
//! HTTP front (rpc-core::server)   [+ CORS, an HTTP-level tower-http layer]
//!   MetricsLayer::client          every call, with its method and outcome
//!   MethodFilterLayer             [methods] allow / deny, before any cost
//!   KeyPolicyLayer                [[auth.keys]] methods and group per client key
//!   RateLimitLayer                [rate_limit] per IP / per API key / per method, weighted [+ redis]
//!   SenderLimitLayer              [rate_limit] per_sender: per transaction sender
//!   AdmissionLayer                WebSocket eth_subscribe stops here (admitted)
//!   ConsistencyLayer              [consistency] read-your-head sessions [+ redis]
//!   CacheLayer                    [cache], shared by every group [+ redis: RedisStore]
//!   MethodRouter                  [routing] method pattern -> group
//!     FleetFloorLayer             [redis] heads: never below the fleet's agreed head
//!     LogRangeLayer               [groups.NAME.get_logs] ranges capped, split, provider limits
//!     RetryLayer                  [retry], one budget per group
//!       Failover | Quorum         [groups.NAME]
//!         MetricsLayer::backend   per backend
//!           HttpBackend | WsBackend  [backends.NAME] (http(s):// | ws(s)://)
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use rpc_cache::{
    CacheKey, CacheLayer, CacheRules, CacheStatus, CacheStore, MemoryStore, RedisStore, Rule,
};
use rpc_core::filter::{MethodFilter, MethodFilterLayer};
use rpc_core::ratelimit::{Limit, RateLimitLayer, WhenRedisDown};
use rpc_core::reload::{reloadable, ReloadHandle};
use rpc_core::route::MethodRouter;
use rpc_core::server::{serve_front, HttpFront, ServerConfig, TrustedProxies};
use rpc_core::subscription::{PushSource, SubscriptionSource};
use rpc_core::{
    BoxJsonRpcService, ByteBudget, HttpBackend, ServedBy, SharedJsonRpcService, WsBackend,
};
use rpc_failover::{
    AttemptDeadline, ConcurrencyLimit, ConsistencyLayer, FailoverLayer, HeadPolicy, HealthCheck,
    HedgePolicy, Member, MethodRules, QuorumLayer, RetryBudget, RetryLayer, Spread,
};
use rpc_metrics::{MethodLabels, MetricsLayer};
use tower::{Layer, ServiceBuilder};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::{CacheRule, Config, Group, Protocol, Strategy, WhenAllDown};

/// Everything `serve` needs.
pub struct Built {
    /// The whole stack: shared, so that the front's clone of it per call is
    /// a reference count (a boxed stack would allocate one per call).
    pub service: SharedJsonRpcService,
    pub server: ServerConfig,
    pub cors: Option<CorsLayer>,
    /// One line for the start-up message: groups and routes.
    pub summary: String,
    /// The head rule in effect, one line per head-tracked group.
    pub head_rules: Vec<String>,
    /// `[redis]`: the link every shared feature uses, and the groups whose
    /// heads are shared (synced by `run`).
    pub redis: Option<rpc_core::redis::RedisLink>,
    pub fleets: Vec<rpc_failover::fleet::FleetHead>,
    /// Readiness of the default group (also set in `server`), and the
    /// WebSocket subscription hub (also in `server`'s WebSocket settings):
    /// what a reload swaps beside the service.
    pub ready: Option<Ready>,
    pub hub: Option<Arc<dyn SubscriptionSource>>,
    /// `[auth]`: the client keys the front checks (also set in `server`).
    pub api_keys: Option<rpc_core::auth::ApiKeys>,
    /// What the next configuration reload takes over from this stack.
    pub carry: Carry,
}

/// Whether a group can take a call now.
pub type Ready = Arc<dyn Fn() -> bool + Send + Sync>;

/// A group member as the group holds it: a metered backend.
type MemberService = rpc_metrics::Metrics<Backend>;

/// A built group, kept so that the group replacing it on reload can take
/// over its members' health and heads.
#[derive(Clone)]
enum GroupCore {
    Failover(rpc_failover::Failover<MemberService>),
    Quorum(rpc_failover::Quorum<MemberService>),
}

/// What a running stack hands to the one a reload builds: its
/// configuration (to tell what changed), the memory budget and Redis link
/// (the front's and the process', which a reload does not replace), its
/// backends (an unchanged backend keeps its connections), its groups (their
/// members' health, heads and suspicions) and its cache (entries and
/// generations).
pub struct Carry {
    config: Config,
    memory: ByteBudget,
    redis: Option<rpc_core::redis::RedisLink>,
    backends: BTreeMap<String, Backend>,
    groups: BTreeMap<String, GroupCore>,
    cache: Option<CacheLayer<Store>>,
}

impl Carry {
    /// The running instance of backend `name`, if its settings did not
    /// change.
    fn backend(&self, name: &str, now: &crate::config::Backend) -> Option<Backend> {
        let before = self.config.backends.get(name)?.get_ref();
        (before == now).then(|| self.backends.get(name).cloned())?
    }

    /// The running configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// Builds the stack described by `config` (which must have been validated).
pub fn build(config: &Config) -> Result<Built, String> {
    build_on(config, None)
}

/// Builds the stack described by `config`, taking over what `running`
/// (the stack it replaces on a reload) learned: unchanged backends and
/// their connections, members' health and heads, cache entries; the
/// memory budget and the Redis link are `running`'s.
pub fn build_on(config: &Config, running: Option<&Carry>) -> Result<Built, String> {
    let groups = config.effective_groups();
    let mut router = MethodRouter::builder();
    let mut built_groups = Vec::with_capacity(groups.len());
    let mut views = Vec::new();
    let mut readiness = Vec::new();
    let mut pushers = Vec::new();
    // One memory budget: request bodies and backend answers together.
    let memory = match running {
        Some(r) => r.memory.clone(),
        None => ByteBudget::new(config.server.memory_budget_mb.saturating_mul(1 << 20)),
    };
    if running.is_none() {
        // Process-wide, like the budget: set when the process starts.
        rpc_core::buffers::set_retained_limit(config.server.buffer_pool_mb.saturating_mul(1 << 20));
    }
    let redis = match running {
        Some(r) => r.redis.clone(),
        None => redis_link(config)?,
    };
    let mut fleets = Vec::new();
    let mut backends = BTreeMap::new();
    let mut cores = BTreeMap::new();
    for (name, group) in &groups {
        let built = group_stack(config, name, group, &memory, redis.as_ref(), running)?;
        backends.extend(built.backends);
        cores.insert(name.clone(), built.core);
        fleets.extend(built.fleet);
        if let Some(view) = built.view {
            views.push((name.clone(), view));
        }
        readiness.push((name.clone(), built.ready));
        pushers.push((name.clone(), built.push));
        built_groups.push((name.clone(), built.service));
    }
    let service_of = |name: &str| {
        built_groups
            .iter()
            .find(|(g, _)| g == name)
            .map(|(_, s)| s.clone())
            .ok_or_else(|| format!("no group named `{name}`"))
    };
    // One route per group, with all its patterns (the group's state is
    // shared); named when client keys are bound to groups (`RouteTo`).
    let bound = config
        .auth
        .as_ref()
        .is_some_and(|a| a.get_ref().keys.iter().any(|k| k.group.is_some()));
    for (gname, _) in &groups {
        let patterns: Vec<&str> = config
            .routing
            .methods
            .iter()
            .filter(|(_, g)| g.get_ref() == gname)
            .map(|(p, _)| p.as_str())
            .collect();
        if bound {
            router = router
                .routes_named(gname.as_str(), patterns, service_of(gname)?)
                .map_err(|e| format!("routing.methods: {e}"))?;
        } else if !patterns.is_empty() {
            router = router
                .routes(patterns, service_of(gname)?)
                .map_err(|e| format!("routing.methods: {e}"))?;
        }
    }
    if let Some(default) = config.default_group() {
        router = router.default_service(service_of(&default)?);
    }
    let router = router.build();

    let filter = method_filter(config)?;
    let api_keys = api_keys(config)?;
    let key_policy = key_policy(config)?;
    let rate_limit = rate_limit(config, redis.as_ref());
    // `[rate_limit] per_sender`: each transaction sender's own budget.
    let per_sender = config.rate_limit.per_sender.as_ref().map(|p| {
        let p = p.get_ref();
        let rate = *p.rate.get_ref();
        let burst = p.burst.as_ref().map_or(rate, |b| *b.get_ref());
        rpc_core::ratelimit::SenderLimitLayer::new(Limit::per_second(rate).burst(burst))
    });
    let consistency = config.consistency.enabled.then(|| {
        let layer = ConsistencyLayer::new()
            .per_connection(config.consistency.per_connection)
            .max_sessions(config.consistency.max_sessions);
        match shared(config, redis.as_ref(), |r| r.sessions) {
            Some(link) => layer.shared(link.clone()),
            None => layer,
        }
    });
    // The cache follows the default group's chain view (else the first
    // head-tracked group's); answers from other groups still carry theirs.
    let default_group = config.default_group();
    let view = views
        .iter()
        .find(|(g, _)| Some(g) == default_group.as_ref())
        .or(views.first())
        .map(|(_, v)| v.clone());
    let cache = cache(config, redis.as_ref()).map(|c| {
        // The same cache settings (and the same chain, as far as one
        // unchanged backend tells): the running cache's entries stay.
        let c = match running.and_then(|r| {
            r.cache
                .as_ref()
                .filter(|_| same_cache(&r.config, config, &backends, &r.backends))
        }) {
            Some(before) => c.continue_from(before),
            None => c,
        };
        match view {
            Some(view) => c.chain_view(view),
            None => c,
        }
    });
    let carried_cache = cache.clone();
    let labels = MethodLabels::none()
        .protocol(&config.protocol.vocabulary())
        .with(
            config
                .methods
                .allow
                .iter()
                .flat_map(|l| l.get_ref().iter())
                .filter(|p| !p.contains('*'))
                .cloned(),
        );
    // Batches travel the stack whole (every layer here has a batch form).
    let service = SharedJsonRpcService::batched(
        ServiceBuilder::new()
            .layer(MetricsLayer::client().method_labels(labels))
            .option_layer(filter)
            // What each client key may call, and where its calls go.
            .option_layer(key_policy)
            .option_layer(rate_limit)
            .option_layer(per_sender)
            // WebSocket subscribe calls are admitted (filtered, limited,
            // counted) above this line and answered by the hub, never
            // forwarded.
            .layer(rpc_core::admission::AdmissionLayer::new())
            .option_layer(consistency)
            .option_layer(cache)
            .service(router),
    );

    let summary = groups
        .iter()
        .map(|(name, g)| {
            let members: Vec<&str> = g
                .members
                .get_ref()
                .iter()
                .map(|m| m.get_ref().as_str())
                .collect();
            let mode = match g.strategy {
                Strategy::Quorum => format!(
                    "quorum {} of {}",
                    g.quorum.as_ref().map_or(0, |k| *k.get_ref()),
                    members.len()
                ),
                Strategy::Failover if members.len() == 1 => "backend".to_owned(),
                s => format!("{s:?}").to_lowercase(),
            };
            let tracked = if g.head.is_some() {
                " (head-tracked)"
            } else {
                ""
            };
            format!("{name}: {mode}{tracked} {}", members.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ");

    let head_rules = groups
        .iter()
        .filter_map(|(name, g)| {
            let h = g.head.as_ref()?.get_ref();
            let n = g.members.get_ref().len();
            Some(format!(
                "{name}: {}",
                head_policy(config.protocol, h).describe(n)
            ))
        })
        .collect();

    // /healthz is readiness: 503 while the default group cannot take a call.
    let mut server = server_config(config)?.body_budget(memory.clone());
    if let Some(keys) = &api_keys {
        server = server.api_keys(keys.clone());
    }
    // eth_subscribe over WebSocket: heads polled through the default
    // group (its failover and head tracking), one poller for every client.
    let mut hub_source = None;
    if let (Some(ws), Protocol::Ethereum, Some(default)) = (
        server.websocket_config().cloned(),
        config.protocol,
        default_group.as_ref(),
    ) {
        let mut hub =
            rpc_failover::SubscriptionHub::builder(BoxJsonRpcService::new(service_of(default)?))
                .poll_interval(config.server.websocket.heads_poll_interval.0);
        // Its WebSocket members' own newHeads wake the poller at once.
        for source in pushers
            .iter()
            .filter(|(g, _)| g == default)
            .flat_map(|(_, p)| p.iter())
        {
            hub = hub.push_source(source.clone());
        }
        let hub: Arc<dyn SubscriptionSource> = Arc::new(hub.build());
        hub_source = Some(hub.clone());
        server = server.websocket(ws.subscriptions(hub).admit_subscriptions(true));
    }
    let ready = readiness
        .into_iter()
        .find(|(g, _)| Some(g) == default_group.as_ref())
        .map(|(_, ready)| ready);
    if let Some(ready) = ready.clone() {
        server = server.readiness(move || ready());
    }

    Ok(Built {
        service,
        server,
        cors: config.server.cors.as_ref().map(|c| cors(config, c)),
        summary,
        head_rules,
        redis: redis.clone(),
        fleets,
        ready,
        hub: hub_source,
        api_keys,
        carry: Carry {
            config: config.clone(),
            memory,
            redis,
            backends,
            groups: cores,
            cache: carried_cache,
        },
    })
}

/// Whether a reloaded stack may keep the running cache's entries: the
/// same cache settings and protocol, the same Redis, and at least one
/// backend unchanged (name, URL and settings) — the new stack reads the
/// same chain through it.
fn same_cache(
    before: &Config,
    now: &Config,
    backends: &BTreeMap<String, Backend>,
    running: &BTreeMap<String, Backend>,
) -> bool {
    before.cache == now.cache
        && before.protocol == now.protocol
        && before.redis == now.redis
        && backends.keys().any(|name| {
            running.contains_key(name)
                && before.backends.get(name).map(|b| b.get_ref())
                    == now.backends.get(name).map(|b| b.get_ref())
        })
}

/// The Redis link of `[redis]`, if configured.
fn redis_link(config: &Config) -> Result<Option<rpc_core::redis::RedisLink>, String> {
    let Some(r) = &config.redis else {
        return Ok(None);
    };
    let r = r.get_ref();
    let mut redis = rpc_core::redis::RedisConfig::new(r.url.get_ref().0.as_str())
        .prefix(r.prefix.clone())
        .deadline(r.deadline.get_ref().0)
        .connect_timeout(r.connect_timeout.0)
        .failures_to_open(r.failures_to_open)
        .open_for(r.open_for.0);
    if let Some(ca) = &r.tls_ca_file {
        let pem =
            crate::config::read_ca(ca.get_ref()).map_err(|e| format!("redis.tls_ca_file: {e}"))?;
        redis = redis.tls_root_cert(pem);
    }
    let link = rpc_core::redis::RedisLink::new(redis)
        .map_err(|e| format!("redis.url: {}", e.source_message()))?;
    Ok(Some(link))
}

/// One line for `check`: where Redis is and what the replicas share
/// through it (features switched on and configured).
pub fn redis_summary(config: &Config) -> Option<String> {
    let r = config.redis.as_ref()?.get_ref();
    let url = rpc_core::redis::redacted(&r.url.get_ref().0);
    let rl = &config.rate_limit;
    let limited = rl.per_ip.is_some() || !rl.keys.is_empty();
    let tracked = config.groups.values().any(|g| g.get_ref().head.is_some());
    let when_down = match r.rate_limit_when_down {
        crate::config::RedisDown::FailOpen => "fail-open",
        crate::config::RedisDown::FailClosed => "fail-closed",
    };
    let shared: Vec<String> = [
        (r.cache && config.cache.enabled, "cache".to_owned()),
        (
            r.rate_limit && limited,
            format!("rate limits ({when_down})"),
        ),
        (
            r.sessions && config.consistency.enabled,
            "sessions".to_owned(),
        ),
        (r.heads && tracked, "agreed heads".to_owned()),
    ]
    .into_iter()
    .filter_map(|(on, what)| on.then_some(what))
    .collect();
    let shared = if shared.is_empty() {
        "nothing (no shared feature is both on and configured)".to_owned()
    } else {
        shared.join(", ")
    };
    Some(format!(
        "{url} (prefix `{}`, deadline {:?}): shares {shared}",
        r.prefix,
        r.deadline.get_ref().0
    ))
}

/// The link, when `[redis]` is configured and `feature` of it is on.
fn shared<'a>(
    config: &Config,
    link: Option<&'a rpc_core::redis::RedisLink>,
    feature: impl Fn(&crate::config::RedisSpec) -> bool,
) -> Option<&'a rpc_core::redis::RedisLink> {
    let spec = config.redis.as_ref()?.get_ref();
    link.filter(|_| feature(spec))
}

/// A group's head-tracking policy from its `[groups.NAME.head]` table.
fn head_policy(protocol: Protocol, h: &crate::config::HeadSpec) -> HeadPolicy {
    let policy = match protocol {
        Protocol::Electrum => HeadPolicy::electrum(),
        _ => HeadPolicy::ethereum().finality_interval(h.finality_interval.0),
    };
    let policy = policy
        .max_lag(h.max_lag)
        .max_stall(h.max_stall.0)
        .probe_interval(h.probe_interval.0)
        .max_probes_per_second(*h.max_probes_per_second.get_ref())
        .probe_timeout(h.probe_timeout.0)
        .consistency_wait(h.consistency_wait.0)
        .max_ahead(h.max_ahead)
        .confirm_within(h.confirm_within.0);
    match &h.agree {
        Some(k) => policy.agree(*k.get_ref()),
        None => policy,
    }
}

/// One group: retry over a failover group or quorum of metered backends.
/// One built group: its stack, its chain view (head tracking), and whether
/// it can take a call now.
/// A group's service: one concrete type (the router clones it per call,
/// which for a boxed service would be an allocation each time).
struct GroupStack<S> {
    service: S,
    /// `[redis] heads`: this group's head shared with the fleet.
    fleet: Option<rpc_failover::fleet::FleetHead>,
    view: Option<rpc_core::ChainView>,
    ready: Ready,
    /// Its WebSocket members, which push new heads.
    push: Vec<std::sync::Arc<dyn PushSource>>,
    /// Its members' backends by name, and the group itself: what a reload
    /// takes over.
    backends: Vec<(String, Backend)>,
    core: GroupCore,
}

fn group_stack(
    config: &Config,
    gname: &str,
    group: &Group,
    memory: &ByteBudget,
    redis: Option<&rpc_core::redis::RedisLink>,
    running: Option<&Carry>,
) -> Result<GroupStack<impl rpc_core::JsonRpcBatchService>, String> {
    let mut members = Vec::with_capacity(group.members.get_ref().len());
    let mut push = Vec::new();
    let mut backends = Vec::new();
    // Members whose backend did not change: they keep their health.
    let mut kept = std::collections::BTreeSet::new();
    for name in group.members.get_ref() {
        let name = name.get_ref().as_str();
        let backend = config
            .backends
            .get(name)
            .ok_or_else(|| format!("groups.{gname}: no backend named `{name}`"))?
            .get_ref();
        let url = backend.url.get_ref().0.as_str();
        // What both builders take alike (their methods share names).
        macro_rules! common {
            ($b:expr) => {{
                let mut b = $b;
                if let Some(t) = backend.timeout {
                    b = b.timeout(t.0);
                }
                if let Some(t) = backend.connect_timeout {
                    b = b.connect_timeout(t.0);
                }
                for (header, value) in &backend.headers {
                    b = b
                        .header(header, &value.get_ref().0)
                        .map_err(|e| format!("backends.{name}.headers.{header}: {e}"))?;
                }
                if let Some(auth) = &backend.basic_auth {
                    b = b.basic_auth(auth.user.0.clone(), auth.password.0.clone());
                }
                b
            }};
        }
        let reused = running.and_then(|r| r.backend(name, backend));
        let built = if let Some(b) = reused {
            kept.insert(name.to_owned());
            b
        } else if url.starts_with("ws://") || url.starts_with("wss://") {
            let mut b = common!(WsBackend::builder(name, url));
            if let Some(n) = backend.max_response_bytes {
                b = b.max_message_size(n);
            }
            Backend::Ws(b.build().map_err(|e| format!("backends.{name}: {e}"))?)
        } else {
            let mut b = common!(HttpBackend::builder(name, url));
            if let Some(n) = backend.max_response_bytes {
                b = b.max_response_size(n);
            }
            if let Some(n) = &backend.max_batch {
                b = b.max_batch(*n.get_ref());
            }
            if let Some(w) = backend.batch_window {
                b = b.batch_window(w.0);
            }
            if let Some(mode) = backend.cross_client_batching {
                b = b.cross_client_batching(mode.0);
            }
            b = b.response_budget(memory.clone());
            Backend::Http(b.build().map_err(|e| format!("backends.{name}: {e}"))?)
        };
        if let Backend::Ws(ws) = &built {
            push.push(std::sync::Arc::new(ws.clone()) as std::sync::Arc<dyn PushSource>);
        }
        backends.push((name.to_owned(), built.clone()));
        let limit = backend.max_concurrency.as_ref().map(|n| {
            if backend.adaptive_concurrency {
                ConcurrencyLimit::adaptive(*n.get_ref())
            } else {
                ConcurrencyLimit::fixed(*n.get_ref())
            }
        });
        let mut member = Member::named(MetricsLayer::backend_of(&built).layer(built));
        if let Some(limit) = limit {
            member = member.max_concurrency(limit);
        }
        members.push(member);
    }

    // One budget per group: the group's hedges and failovers and the
    // retries above it draw from the same bucket.
    let r = &config.retry;
    let budget = RetryBudget::new(*r.budget_ratio.get_ref()).max_tokens(r.budget_tokens);
    let stall = &group.attempt_deadline;
    let deadline = match stall.fixed {
        Some(d) => AttemptDeadline::fixed(d.0),
        None => AttemptDeadline::adaptive()
            .quantile(*stall.quantile.get_ref())
            .factor(*stall.factor.get_ref())
            .max(stall.max.0)
            .min(stall.min.0)
            .initial(stall.initial.0),
    };
    let health_method = match group.health_method.as_deref() {
        Some("") => None,
        Some(m) => Some(m.to_owned()),
        None => config.protocol.vocabulary().health().map(str::to_owned),
    };
    let mut health = match health_method {
        Some(m) => HealthCheck::method(m),
        None => HealthCheck::default(),
    };
    health = health
        .interval(group.health_interval.0)
        .timeout(group.health_timeout.0)
        .recheck(group.recheck_interval.0);

    let mut failover = FailoverLayer::new()
        .failure_threshold(group.failure_threshold)
        .out_of_service(group.out_of_service.0)
        .when_all_down(match group.when_all_down {
            WhenAllDown::TrySoonest => rpc_failover::WhenAllDown::TrySoonest,
            WhenAllDown::FailFast => rpc_failover::WhenAllDown::FailFast,
        })
        .classifier(classifier(config.protocol))
        .attempt_deadline(deadline)
        .budget(budget.clone())
        .health_check(health)
        .queue(group.queue, group.queue_wait.0)
        .multicall(group.multicall.as_ref().is_some_and(|m| *m.get_ref()));
    failover = match group.strategy {
        Strategy::RoundRobin => failover.spread(Spread::RoundRobin),
        Strategy::LeastLatency => failover.spread(Spread::least_latency()),
        Strategy::Hedged => failover.hedge(match (&group.hedge_quantile, group.hedge_delay) {
            (Some(q), _) => HedgePolicy::quantile(*q.get_ref()),
            (None, Some(d)) => HedgePolicy::fixed(d.0),
            (None, None) => HedgePolicy::fixed(crate::config::defaults::HEDGE_DELAY),
        }),
        Strategy::Failover | Strategy::Quorum => failover,
    };
    if let Some(head) = &group.head {
        failover = failover.head_tracking(head_policy(config.protocol, head.get_ref()));
    }
    let mut view = None;
    let ready: Ready;
    let core;
    let previous = running.and_then(|r| r.groups.get(gname));
    let keep = |member: &str| kept.contains(member);
    // The group's layers are one concrete type, boxed once: a box per layer
    // would cost an allocation per layer and call (bench/cost.sh).
    let group_service = if group.strategy == Strategy::Quorum {
        let k = group.quorum.as_ref().map_or(1, |k| *k.get_ref());
        let mut quorum = QuorumLayer::new(k).group(failover);
        if let Some(t) = group.quorum_timeout {
            quorum = quorum.timeout(t.0);
        }
        let mut quorum = quorum
            .build(members)
            .map_err(|e| format!("groups.{gname}: {e}"))?;
        if let Some(GroupCore::Quorum(before)) = previous {
            quorum = quorum.inherit(before, keep).0;
        }
        let probe = quorum.clone();
        ready = Arc::new(move || probe.can_serve());
        core = GroupCore::Quorum(quorum.clone());
        tower::util::Either::Left(quorum)
    } else {
        let mut group = failover
            .build(members)
            .map_err(|e| format!("groups.{gname}: {e}"))?;
        if let Some(GroupCore::Failover(before)) = previous {
            group = group.inherit(before, keep).0;
        }
        // Heads are known before the first call (a no-op without head
        // tracking, or outside a runtime as in `check`).
        group.start_head_probes();
        view = group.chain_view();
        let probe = group.clone();
        ready = Arc::new(move || probe.can_serve());
        core = GroupCore::Failover(group.clone());
        tower::util::Either::Right(group)
    };

    // No retry layer at all when retries are off (the group feeds the
    // budget itself).
    let max_retries = group.max_retries.unwrap_or(r.max_retries);
    let retry = (max_retries > 0).then(|| {
        RetryLayer::new()
            .max_retries(max_retries)
            .backoff(r.initial_backoff.0, r.max_backoff.0)
            .jitter(*r.jitter.get_ref())
            .max_retry_after(r.max_retry_after.0)
            .budget(budget)
            .classifier(classifier(config.protocol))
    });
    // eth_getLogs ranges: capped, split, provider limits handled; each
    // chunk through the retry and the group above.
    let logs = (config.protocol == Protocol::Ethereum).then(|| {
        let g = &group.get_logs;
        let mut logs = rpc_failover::LogRangeLayer::new();
        if let Some(n) = &g.max_block_range {
            logs = logs.max_block_range(*n.get_ref());
        }
        if let Some(n) = &g.chunk {
            logs = logs.chunk(*n.get_ref());
        }
        if let Some(n) = &g.concurrency {
            logs = logs.concurrency(*n.get_ref());
        }
        if let Some(view) = &view {
            logs = logs.chain_view(view.clone());
        }
        logs
    });
    // Filters stay on the node that made them, whatever the spread (not
    // for quorum groups: their answers are no one node's).
    let vocabulary = config.protocol.vocabulary();
    let has_handles = vocabulary.methods().iter().any(|(_, f)| f.handle.is_some());
    let handles = (has_handles && group.strategy != Strategy::Quorum)
        .then(|| rpc_failover::HandleLayer::new(&vocabulary));
    // `[redis] heads`: never below the head the fleet agreed on.
    let fleet = match (shared(config, redis, |r| r.heads), &view) {
        (Some(link), Some(view)) => {
            let interval = config.redis.as_ref().map(|r| r.get_ref().head_interval.0);
            let fleet = rpc_failover::fleet::FleetHead::new(link.clone(), gname, view.clone())
                .protocol(&config.protocol.vocabulary())
                .max_ahead(group.head.as_ref().map_or(1024, |h| h.get_ref().max_ahead));
            Some(match interval {
                Some(i) => fleet.interval(i).stale_after(i * 12),
                None => fleet,
            })
        }
        _ => None,
    };
    let service = ServiceBuilder::new()
        .option_layer(fleet.as_ref().map(|f| f.layer()))
        .option_layer(handles)
        .option_layer(logs)
        .option_layer(retry)
        .service(group_service);
    Ok(GroupStack {
        service,
        fleet,
        view,
        ready,
        push,
        backends,
        core,
    })
}

/// A group member: an HTTP or a WebSocket backend.
#[derive(Clone, Debug)]
enum Backend {
    Http(HttpBackend),
    Ws(WsBackend),
}

impl tower::Service<rpc_core::Request> for Backend {
    type Response = rpc_core::Response;
    type Error = rpc_core::RpcError;
    type Future = rpc_core::BoxedResponseFuture;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // Neither backend has a fixed capacity (see their docs).
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: rpc_core::Request) -> Self::Future {
        match self {
            Backend::Http(b) => b.call(req),
            Backend::Ws(b) => b.call(req),
        }
    }
}

impl tower::Service<rpc_core::Batch> for Backend {
    type Response = rpc_core::BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = rpc_core::batch::BoxedBatchFuture;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: rpc_core::Batch) -> Self::Future {
        match self {
            Backend::Http(b) => b.call(batch),
            Backend::Ws(b) => b.call(batch),
        }
    }
}

impl rpc_core::Named for Backend {
    fn name(&self) -> &str {
        match self {
            Backend::Http(b) => b.name(),
            Backend::Ws(b) => b.name(),
        }
    }
}

fn classifier(protocol: Protocol) -> MethodRules {
    MethodRules::for_protocol(&protocol.vocabulary())
}

fn method_filter(config: &Config) -> Result<Option<MethodFilterLayer>, String> {
    let m = &config.methods;
    if m.allow.is_none() && m.deny.is_none() {
        return Ok(None);
    }
    let mut filter = match &m.allow {
        Some(list) => {
            MethodFilter::allow(list.get_ref()).map_err(|e| format!("methods.allow: {e}"))?
        }
        None => MethodFilter::allow_all(),
    };
    if let Some(list) = &m.deny {
        filter = filter
            .deny(list.get_ref())
            .map_err(|e| format!("methods.deny: {e}"))?;
    }
    if let Some(message) = &m.message {
        filter = filter.message(message.clone());
    }
    Ok(Some(MethodFilterLayer::new(filter)))
}

fn rate_limit(
    config: &Config,
    redis: Option<&rpc_core::redis::RedisLink>,
) -> Option<RateLimitLayer> {
    let rl = &config.rate_limit;
    let auth_keys = config
        .auth
        .as_ref()
        .map_or(&[][..], |a| &a.get_ref().keys[..]);
    let key_budgets = auth_keys.iter().any(|k| k.rate.is_some());
    if rl.per_ip.is_none() && rl.keys.is_empty() && rl.methods.is_empty() && !key_budgets {
        return None;
    }
    let limit =
        |rate: u32, burst: Option<u32>| Limit::per_second(rate).burst(burst.unwrap_or(rate));
    let mut layer = RateLimitLayer::new().default_weight(rl.default_weight);
    if let Some(p) = &rl.per_ip {
        layer = layer.per_ip(limit(
            *p.rate.get_ref(),
            p.burst.as_ref().map(|b| *b.get_ref()),
        ));
    }
    for k in &rl.keys {
        layer = layer.key(
            k.key.get_ref().0.as_str(),
            limit(*k.rate.get_ref(), k.burst.as_ref().map(|b| *b.get_ref())),
        );
    }
    // `[auth]` keys: calls carry the key's id, so its budget is by id.
    for k in auth_keys {
        if let Some(rate) = &k.rate {
            let burst = k.burst.as_ref().map(|b| *b.get_ref());
            layer = layer.key(k.id.get_ref().as_str(), limit(*rate.get_ref(), burst));
        }
    }
    for (method, l) in &rl.methods {
        let l = l.get_ref();
        let burst = l.burst.as_ref().map(|b| *b.get_ref());
        layer = layer.method(method, limit(*l.rate.get_ref(), burst));
    }
    for (method, w) in &rl.weights {
        layer = layer.weight(method.as_str(), *w.get_ref());
    }
    if let Some(link) = shared(config, redis, |r| r.rate_limit) {
        let when = match config
            .redis
            .as_ref()
            .map(|r| r.get_ref().rate_limit_when_down)
        {
            Some(crate::config::RedisDown::FailClosed) => WhenRedisDown::FailClosed,
            _ => WhenRedisDown::FailOpen,
        };
        layer = layer.shared(link.clone(), when);
    }
    Some(layer)
}

/// `[auth]`: the client keys (inline and from `keys_file`).
fn api_keys(config: &Config) -> Result<Option<rpc_core::auth::ApiKeys>, String> {
    let Some(auth) = &config.auth else {
        return Ok(None);
    };
    let auth = auth.get_ref();
    let mut keys = rpc_core::auth::ApiKeys::new().public(auth.public);
    if let Some(p) = &auth.path_prefix {
        keys = keys.path_prefix(p.get_ref().as_str());
    }
    if let Some(path) = &auth.keys_file {
        let text = crate::config::read_keys_text(path.get_ref())
            .map_err(|e| format!("auth.keys_file: {e}"))?;
        keys = keys
            .parse_hashed(&text)
            .map_err(|e| format!("auth.keys_file: `{}` {e}", path.get_ref()))?;
    }
    for (i, k) in auth.keys.iter().enumerate() {
        let id = k.id.get_ref();
        keys = match (&k.key, &k.sha256) {
            (Some(secret), _) => keys.key(id, &secret.get_ref().0),
            (None, Some(hex_digest)) => {
                let mut sha = [0u8; 32];
                hex::decode_to_slice(hex_digest.get_ref(), &mut sha)
                    .map_err(|_| format!("auth.keys[{i}].sha256: must be 64 hexadecimal digits"))?;
                keys.hashed(id, sha)
            }
            // An entry of the keys file: its policy only.
            (None, None) => keys,
        };
    }
    Ok(Some(keys))
}

/// `[[auth.keys]]`: what each key may call and where its calls go.
fn key_policy(config: &Config) -> Result<Option<rpc_core::auth::KeyPolicyLayer>, String> {
    let Some(auth) = &config.auth else {
        return Ok(None);
    };
    let mut layer = rpc_core::auth::KeyPolicyLayer::new();
    for (i, k) in auth.get_ref().keys.iter().enumerate() {
        let mut policy = rpc_core::auth::KeyPolicy::default();
        if let Some(methods) = &k.methods {
            let filter = MethodFilter::allow(methods.get_ref())
                .map_err(|e| format!("auth.keys[{i}].methods: {e}"))?;
            policy = policy.methods(filter);
        }
        if let Some(group) = &k.group {
            policy = policy.route_to(group.get_ref().as_str());
        }
        if k.methods.is_some() || k.group.is_some() {
            layer = layer.key(k.id.get_ref(), policy);
        }
    }
    Ok((!layer.is_empty()).then_some(layer))
}

fn cache(config: &Config, redis: Option<&rpc_core::redis::RedisLink>) -> Option<CacheLayer<Store>> {
    let c = &config.cache;
    if !c.enabled {
        return None;
    }
    let mut rules = CacheRules::for_protocol(&config.protocol.vocabulary());
    if let Some(ttl) = c.tip_ttl {
        rules = rules.tip_ttl(ttl.0);
    }
    if let Some(n) = c.confirmations {
        rules = rules.confirmations(n);
    }
    for (method, rule) in &c.methods {
        rules = rules.method(
            method.as_str(),
            match *rule.get_ref() {
                CacheRule::Never => Rule::Never,
                CacheRule::Forever => Rule::Forever,
                CacheRule::Tip => Rule::Tip,
                CacheRule::Ttl(d) => Rule::Ttl(d),
            },
        );
    }
    let store = MemoryStore::new()
        .max_bytes(c.max_mb.saturating_mul(1 << 20))
        .max_entries(c.max_entries);
    // With `[redis] cache`, the memory store is the local tier in front.
    let store = match shared(config, redis, |r| r.cache) {
        Some(link) => Store::Redis(RedisStore::new(link.clone(), store)),
        None => Store::Memory(store),
    };
    let mut layer = CacheLayer::new(rules).store(store).coalesce(c.coalesce);
    if let Some(ttl) = c.negative_ttl {
        layer = layer.negative_ttl(ttl.0);
    }
    Some(layer)
}

fn server_config(config: &Config) -> Result<ServerConfig, String> {
    let s = &config.server;
    let trusted = TrustedProxies::new(s.trusted_proxies.get_ref())
        .map_err(|e| format!("server.trusted_proxies: {e}"))?;
    let mut server = ServerConfig::default()
        .max_connections_per_ip(s.max_connections_per_ip)
        .idle_timeout(s.idle_timeout.0)
        .h2_max_concurrent_streams(s.h2_max_concurrent_streams)
        .trusted_proxies(trusted)
        .proxy_protocol(s.proxy_protocol)
        .trace_context(s.trace_context)
        .max_body_size(s.max_body_bytes)
        .max_batch_len(s.max_batch)
        .batch_concurrency(s.batch_concurrency.unwrap_or(s.max_batch))
        .request_timeout(s.request_timeout.0)
        .body_read_timeout(s.body_timeout.0)
        .header_read_timeout(s.header_timeout.0)
        .shutdown_timeout(s.shutdown_timeout.0)
        .health_path(s.health_path.clone())
        // A backend asking clients to wait longer is clamped like retries.
        .max_retry_after(config.retry.max_retry_after.0);
    server = match &s.websocket {
        w if !w.enabled => server.without_websocket(),
        w => {
            let mut ws = rpc_core::server::WsConfig::default();
            if let Some(n) = w.max_connections {
                ws = ws.max_connections(n);
            }
            if let Some(n) = w.max_connections_per_ip {
                ws = ws.max_connections_per_ip(n);
            }
            if let Some(n) = w.max_in_flight {
                ws = ws.max_in_flight(n);
            }
            if let Some(n) = w.send_queue {
                ws = ws.send_queue(n);
            }
            if let Some(d) = w.ping_interval {
                ws = ws.ping_interval(d.0);
            }
            if let Some(d) = w.pong_timeout {
                ws = ws.pong_timeout(d.0);
            }
            if let Some(d) = w.idle_timeout {
                ws = ws.idle_timeout(d.0);
            }
            server.websocket(ws)
        }
    };
    // Both headers are read whether or not sessions and keys are on now:
    // a reload may turn them on (a session id or key nobody configured
    // changes nothing).
    if let Ok(name) =
        http::HeaderName::from_bytes(config.consistency.session_header.get_ref().as_bytes())
    {
        server = server.session_header(name);
    }
    if let Ok(name) =
        http::HeaderName::from_bytes(config.rate_limit.key_header.get_ref().as_bytes())
    {
        server = server.api_key_header(name);
    }
    let (cache_header, served_by_header) = (s.cache_header, s.served_by_header);
    if cache_header || served_by_header {
        server = server.response_headers(move |answer, headers| {
            if let Some(status) = answer
                .extensions()
                .get::<CacheStatus>()
                .filter(|_| cache_header)
            {
                headers.insert("x-cache", http::HeaderValue::from_static(status.as_str()));
            }
            if let Some(ServedBy(name)) = answer
                .extensions()
                .get::<ServedBy>()
                .filter(|_| served_by_header)
            {
                if let Ok(v) = http::HeaderValue::from_str(name) {
                    headers.insert("x-served-by", v);
                }
            }
        });
    }
    if let Some(n) = s.max_connections {
        server = server.max_connections(n);
    }
    Ok(server)
}

fn cors(config: &Config, c: &crate::config::Cors) -> CorsLayer {
    let origins = c.allow_origins.get_ref();
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| http::HeaderValue::from_str(o).ok()),
        )
    };
    let mut headers = vec![http::header::CONTENT_TYPE];
    if config.consistency.enabled {
        if let Ok(h) =
            http::HeaderName::from_bytes(config.consistency.session_header.get_ref().as_bytes())
        {
            headers.push(h);
        }
    }
    if let Ok(h) = http::HeaderName::from_bytes(config.rate_limit.key_header.get_ref().as_bytes()) {
        headers.push(h);
    }
    headers.extend(
        c.allow_headers
            .iter()
            .filter_map(|h| http::HeaderName::from_bytes(h.as_bytes()).ok()),
    );
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([http::Method::POST, http::Method::GET, http::Method::OPTIONS])
        .allow_headers(headers)
        .expose_headers([
            http::header::RETRY_AFTER,
            http::HeaderName::from_static("x-cache"),
            http::HeaderName::from_static("x-served-by"),
        ])
        .max_age(c.max_age.0)
}

/// Binds, prints the start-up line and serves until `shutdown` completes.
/// Returns the bound address through `on_bound` before serving. With a
/// `reload` source, `SIGHUP` reads the configuration again (see
/// [`reload`]).
pub async fn run(
    config: &Config,
    reload: Option<crate::cli::ReloadSource>,
    shutdown: impl std::future::Future<Output = ()>,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    let built = build(config)?;
    if let Some(link) = &built.redis {
        // Shared state from the first call when Redis is up; when it is
        // not, the proxy starts anyway (per-process state, logged).
        link.connect().await;
    }
    start_fleets(built.fleets).await;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.server.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // Scripts and tests read this line to find the port (with `listen = "…:0"`).
    println!("rpc-proxy listening on http://{local} ({})", built.summary);
    on_bound(local);

    // What a reload replaces: the service, the readiness check and the
    // subscription hub, each behind a swappable pointer.
    let (service, services) = reloadable(built.service);
    let (ready, readies) = reloadable(built.ready);
    let mut server = built
        .server
        .readiness(move || ready.with(|r| r.as_ref().is_none_or(|r| r())));
    // `[auth]` keys, checked by the front: swapped on reload too.
    let keys = match built.api_keys {
        Some(k) => {
            let (keys, handle) = reloadable(k);
            server = server.api_keys_from(keys);
            Some(handle)
        }
        None => None,
    };
    let hubs = match (built.hub, server.websocket_config().cloned()) {
        (Some(hub), Some(ws)) => {
            let (hub, hubs) = reloadable(hub);
            server = server.websocket(ws.subscriptions(Arc::new(hub)));
            Some(hubs)
        }
        _ => None,
    };
    metrics::gauge!(CONFIG_GENERATION).set(0.0);
    let swap = Swap {
        services,
        readies,
        hubs,
        keys,
    };
    let reloader = tokio::spawn(reload::on_hangup(reload, built.carry, swap));
    // A client batch reaches the stack as one batch (see `build`).
    serve_front(
        listener,
        HttpFront::batched(service, server),
        tower::util::option_layer(built.cors),
        shutdown,
    )
    .await;
    reloader.abort();
    Ok(())
}

/// Starts following the fleet's heads through Redis (`[redis] heads`):
/// each group starts at the fleet's head, then follows it.
async fn start_fleets(fleets: Vec<rpc_failover::fleet::FleetHead>) {
    for fleet in fleets {
        fleet.sync().await;
        tokio::spawn(fleet.run());
    }
}

/// Metric: the configuration generation serving new calls (0: the one
/// the process started with).
pub const CONFIG_GENERATION: &str = "rpc_config_generation";
/// Metric: configuration reloads by `outcome` (`applied`, `invalid`,
/// `failed`).
pub const CONFIG_RELOADS: &str = "rpc_config_reloads_total";

/// The swappable parts of the running front.
struct Swap {
    services: ReloadHandle<SharedJsonRpcService>,
    readies: ReloadHandle<Option<Ready>>,
    hubs: Option<ReloadHandle<Arc<dyn SubscriptionSource>>>,
    keys: Option<ReloadHandle<rpc_core::auth::ApiKeys>>,
}

/// Configuration reload on `SIGHUP`.
///
/// The file is read and validated exactly as `rpc-proxy check` does (with
/// the command line's overrides). An invalid file, or one that changes
/// what cannot change in a running process (`protocol`), leaves the
/// running configuration in place: the error is logged with its
/// file:line:column and counted (`rpc_config_reloads_total{outcome}`). A
/// valid one builds a new stack that takes over what the running one
/// learned ([`build_on`]) and serves every call that arrives from then on,
/// while calls in flight and open subscriptions finish on the stack they
/// started on; `rpc_config_generation` counts the swaps. Settings of the
/// process itself (`[server]`, `[metrics]`, `[log]`, `[redis]`, the key
/// and session header names) keep their running values until a restart,
/// and the log says which changed.
pub mod reload {
    use super::*;

    pub(super) async fn on_hangup(
        source: Option<crate::cli::ReloadSource>,
        mut running: Carry,
        swap: Swap,
    ) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGHUP: configuration reload is off");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            let Some(source) = &source else {
                tracing::warn!("SIGHUP: nothing to reload (started without --config)");
                continue;
            };
            match next(source, &running) {
                Ok((built, restart)) => {
                    start_fleets(built.fleets).await;
                    swap.services.swap(built.service);
                    swap.readies.swap(built.ready);
                    if let (Some(hubs), Some(hub)) = (&swap.hubs, built.hub) {
                        hubs.swap(hub);
                    }
                    if let (Some(keys), Some(next)) = (&swap.keys, built.api_keys) {
                        keys.swap(next);
                    }
                    running = built.carry;
                    let generation = swap.services.generation();
                    metrics::gauge!(CONFIG_GENERATION).set(generation as f64);
                    metrics::counter!(CONFIG_RELOADS, "outcome" => "applied").increment(1);
                    tracing::info!(
                        file = source.path(),
                        generation,
                        groups = %built.summary,
                        "configuration reloaded: new calls use it"
                    );
                    if !restart.is_empty() {
                        tracing::warn!(
                            file = source.path(),
                            changed = %restart.join(", "),
                            "these settings take effect on restart; the running values stay"
                        );
                    }
                }
                Err((outcome, error)) => {
                    metrics::counter!(CONFIG_RELOADS, "outcome" => outcome).increment(1);
                    tracing::error!(
                        %error,
                        "configuration reload refused: the running configuration stays"
                    );
                }
            }
        }
    }

    /// The stack the file describes now, built on `running`, and the
    /// process settings it changes that wait for a restart; or why not.
    fn next(
        source: &crate::cli::ReloadSource,
        running: &Carry,
    ) -> Result<(Built, Vec<&'static str>), (&'static str, String)> {
        let mut config = source.load().map_err(|e| ("invalid", e.to_string()))?;
        let before = running.config();
        if config.protocol != before.protocol {
            return Err((
                "invalid",
                format!(
                    "{}: protocol: {:?} -> {:?} cannot change while running; restart to apply",
                    source.path(),
                    before.protocol,
                    config.protocol
                ),
            ));
        }
        let restart = keep_process_settings(&mut config, before);
        let built = build_on(&config, Some(running))
            .map_err(|e| ("failed", format!("{}: {e}", source.path())))?;
        Ok((built, restart))
    }

    /// Puts the running values of what only a restart changes into
    /// `config`; returns the names of those that differed.
    pub(crate) fn keep_process_settings(
        config: &mut Config,
        running: &Config,
    ) -> Vec<&'static str> {
        let mut changed = Vec::new();
        macro_rules! keep {
            ($($name:literal: $($field:ident).+),* $(,)?) => {$(
                if config.$($field).+ != running.$($field).+ {
                    changed.push($name);
                    config.$($field).+ = running.$($field).+.clone();
                }
            )*};
        }
        // Keys are reloaded; turning them on or off changes what the
        // front does with the key header.
        if config.auth.is_some() != running.auth.is_some() {
            changed.push("[auth] (on or off)");
            config.auth = running.auth.clone();
        }
        keep!(
            "[server]": server,
            "[metrics]": metrics,
            "[log]": log,
            "[redis]": redis,
            "rate_limit.key_header": rate_limit.key_header,
            "consistency.session_header": consistency.session_header,
        );
        changed
    }
}

/// The proxy's cache store: memory, or Redis with memory in front.
#[derive(Debug)]
enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
}

// Redis's futures are boxed: unboxed, the largest variant sizes the
// future of every cache call (a Redis `put` is 664 bytes), memory store or
// not, and each call's future is copied into its box; a Redis round trip
// pays one allocation more.
impl CacheStore for Store {
    async fn get(&self, key: &CacheKey) -> Option<rpc_core::Payload> {
        match self {
            Store::Memory(m) => m.get_now(key),
            Store::Redis(r) => Box::pin(r.get(key)).await,
        }
    }

    async fn put(&self, key: CacheKey, value: rpc_core::Payload, ttl: Option<std::time::Duration>) {
        match self {
            Store::Memory(m) => m.put_now(key, value, ttl),
            Store::Redis(r) => Box::pin(r.put(key, value, ttl)).await,
        }
    }
}
