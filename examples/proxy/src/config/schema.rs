//! The file's shape: every section, key, type and default (serde).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;
use toml::Spanned;

use super::defaults;
use super::env::EnvString;

/// The whole file. Every section is optional except `[backends]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub metrics: Metrics,
    pub backends: BTreeMap<String, Spanned<Backend>>,
    #[serde(default)]
    pub groups: BTreeMap<String, Spanned<Group>>,
    #[serde(default)]
    pub routing: Routing,
    #[serde(default)]
    pub methods: Methods,
    #[serde(default)]
    pub retry: Retry,
    #[serde(default)]
    pub cache: Cache,
    #[serde(default)]
    pub rate_limit: RateLimit,
    #[serde(default)]
    pub consistency: ConsistencySpec,
    /// `[redis]`: state shared by replicas (absent: each process its own).
    #[serde(default)]
    pub redis: Option<Spanned<RedisSpec>>,
    /// `[auth]`: client keys required (absent: anyone may call).
    #[serde(default)]
    pub auth: Option<Spanned<AuthSpec>>,
}

/// `[auth]`: which client keys may call, and what each may do.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    /// Calls without a key are served (charged to their IP) instead of 401.
    #[serde(default)]
    pub public: bool,
    /// Keys also taken from the path: `POST {path_prefix}<key>`.
    #[serde(default)]
    pub path_prefix: Option<Spanned<String>>,
    /// A file of hashed keys: `ID SHA256-HEX` per line.
    #[serde(default)]
    pub keys_file: Option<Spanned<String>>,
    #[serde(default)]
    pub keys: Vec<AuthKey>,
}

/// One client key: its secret (or digest, or an entry of the keys file by
/// id) and what it may do.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthKey {
    /// What logs, metrics and errors show instead of the key.
    pub id: Spanned<String>,
    /// The key itself (`${ENV}` expanded).
    #[serde(default)]
    pub key: Option<Spanned<EnvString>>,
    /// Or its SHA-256 digest, 64 hex digits.
    #[serde(default)]
    pub sha256: Option<Spanned<String>>,
    /// Its own budget (units per second); without, its calls are charged to
    /// their IP.
    #[serde(default)]
    pub rate: Option<Spanned<u32>>,
    #[serde(default)]
    pub burst: Option<Spanned<u32>>,
    /// The only methods it may call (names or prefixes).
    #[serde(default)]
    pub methods: Option<Spanned<Vec<String>>>,
    /// Every call of the key goes to this group.
    #[serde(default)]
    pub group: Option<Spanned<String>>,
}

/// Which method tables (safety, cache rules, metric labels) apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    #[default]
    Ethereum,
    Electrum,
    /// Any JSON-RPC service: no method is known to be safe to repeat or cache.
    Generic,
}

impl Protocol {
    /// The protocol's vocabulary of chain facts (what each method is).
    pub fn vocabulary(self) -> rpc_core::protocol::Protocol {
        match self {
            Protocol::Ethereum => rpc_core::protocol::Protocol::ethereum(),
            Protocol::Electrum => rpc_core::protocol::Protocol::electrum(),
            Protocol::Generic => rpc_core::protocol::Protocol::generic(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Calls of one client batch dispatched at once (default: all of
    /// them, up to `max_batch`: backends gather them into upstream batches
    /// of their `max_batch`).
    #[serde(default)]
    pub batch_concurrency: Option<usize>,
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Secs,
    #[serde(default = "default_body_timeout")]
    pub body_timeout: Secs,
    #[serde(default = "default_header_timeout")]
    pub header_timeout: Secs,
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: Secs,
    #[serde(default = "default_health_path")]
    pub health_path: String,
    #[serde(default)]
    pub cache_header: bool,
    #[serde(default)]
    pub served_by_header: bool,
    #[serde(default)]
    pub cors: Option<Cors>,
    /// JSON-RPC over WebSocket on the same listener.
    #[serde(default)]
    pub websocket: WebSocket,
    /// Client connections open at once (default: from the open-file limit).
    #[serde(default)]
    pub max_connections: Option<usize>,
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Secs,
    #[serde(default = "default_h2_streams")]
    pub h2_max_concurrent_streams: u32,
    /// Request bodies and backend answers held in memory at once, all
    /// together, in MiB.
    #[serde(default = "default_memory_budget_mb")]
    pub memory_budget_mb: usize,
    /// Idle buffers of large bodies (64 KiB to 4 MiB) the process keeps for
    /// the next answers, in MiB (`0`: none). See `rpc_core::buffers`.
    #[serde(default = "default_buffer_pool_mb")]
    pub buffer_pool_mb: usize,
    /// Load balancers whose `Forwarded` / `X-Forwarded-For` name the client.
    #[serde(default = "no_proxies")]
    pub trusted_proxies: Spanned<Vec<String>>,
    /// Connections from trusted proxies start with a PROXY protocol header.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Pass the client's W3C trace context (`traceparent`, `tracestate`) to
    /// the backends.
    #[serde(default)]
    pub trace_context: bool,
}

pub(crate) fn default_max_connections_per_ip() -> usize {
    rpc_core::server::ServerConfig::DEFAULT_MAX_CONNECTIONS_PER_IP
}
pub(crate) fn default_idle_timeout() -> Secs {
    Secs(rpc_core::server::ServerConfig::DEFAULT_IDLE_TIMEOUT)
}
pub(crate) fn default_h2_streams() -> u32 {
    rpc_core::server::ServerConfig::DEFAULT_H2_MAX_CONCURRENT_STREAMS
}
pub(crate) fn no_proxies() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}
pub(crate) fn default_memory_budget_mb() -> usize {
    256
}
pub(crate) fn default_buffer_pool_mb() -> usize {
    rpc_core::buffers::DEFAULT_RETAINED >> 20
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: default_listen(),
            max_body_bytes: default_max_body(),
            max_batch: default_max_batch(),
            batch_concurrency: None,
            request_timeout: default_request_timeout(),
            body_timeout: default_body_timeout(),
            header_timeout: default_header_timeout(),
            shutdown_timeout: default_shutdown_timeout(),
            health_path: default_health_path(),
            cache_header: false,
            served_by_header: false,
            cors: None,
            websocket: WebSocket::default(),
            max_connections: None,
            max_connections_per_ip: default_max_connections_per_ip(),
            idle_timeout: default_idle_timeout(),
            h2_max_concurrent_streams: default_h2_streams(),
            memory_budget_mb: default_memory_budget_mb(),
            buffer_pool_mb: default_buffer_pool_mb(),
            trusted_proxies: Spanned::new(0..0, Vec::new()),
            proxy_protocol: false,
            trace_context: false,
        }
    }
}

pub(crate) fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8545))
}
pub(crate) fn default_max_body() -> usize {
    rpc_core::server::ServerConfig::DEFAULT_MAX_BODY_BYTES
}
pub(crate) fn default_max_batch() -> usize {
    rpc_core::server::ServerConfig::DEFAULT_MAX_BATCH
}
pub(crate) fn default_request_timeout() -> Secs {
    Secs(rpc_core::server::ServerConfig::DEFAULT_REQUEST_TIMEOUT)
}
pub(crate) fn default_body_timeout() -> Secs {
    Secs(rpc_core::server::ServerConfig::DEFAULT_BODY_READ_TIMEOUT)
}
pub(crate) fn default_header_timeout() -> Secs {
    Secs(rpc_core::server::ServerConfig::DEFAULT_HEADER_READ_TIMEOUT)
}
pub(crate) fn default_shutdown_timeout() -> Secs {
    Secs(rpc_core::server::ServerConfig::DEFAULT_SHUTDOWN_TIMEOUT)
}
pub(crate) fn default_health_path() -> String {
    "/healthz".to_owned()
}

/// `[server.websocket]`: unset keys keep rpc-core's `WsConfig` defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocket {
    /// Answer upgrades (default true); false: 405 as for any GET.
    #[serde(default = "yes")]
    pub enabled: bool,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub max_in_flight: Option<usize>,
    pub send_queue: Option<usize>,
    pub ping_interval: Option<Secs>,
    pub pong_timeout: Option<Secs>,
    pub idle_timeout: Option<Secs>,
    /// How often `newHeads` subscriptions poll the default group's head.
    #[serde(default = "default_heads_poll")]
    pub heads_poll_interval: Secs,
}

pub(crate) fn default_heads_poll() -> Secs {
    Secs(std::time::Duration::from_secs(1))
}

impl Default for WebSocket {
    fn default() -> Self {
        WebSocket {
            enabled: true,
            max_connections: None,
            max_connections_per_ip: None,
            max_in_flight: None,
            send_queue: None,
            ping_interval: None,
            pong_timeout: None,
            idle_timeout: None,
            heads_poll_interval: default_heads_poll(),
        }
    }
}

/// Cross-origin access for browser clients.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    /// `["*"]` for any origin, or exact origins (`https://app.example`).
    pub allow_origins: Spanned<Vec<String>>,
    /// Extra request headers browsers may send (`content-type` and the API
    /// key header are always allowed).
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default = "default_cors_max_age")]
    pub max_age: Secs,
}

pub(crate) fn default_cors_max_age() -> Secs {
    Secs(defaults::CORS_MAX_AGE)
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    #[serde(default)]
    pub format: LogFormat,
    /// A `RUST_LOG`-style filter (`info`, `rpc_failover=debug,info`);
    /// `RUST_LOG` wins when set.
    #[serde(default)]
    pub level: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Serve Prometheus metrics at `http://LISTEN/metrics`; off when absent.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// `http://` or `https://`, or `ws://` / `wss://` (calls over one
    /// WebSocket, and its `newHeads` wake the subscription hub at once);
    /// `${ENV}` is expanded (keep API keys out of the file). Never logged.
    pub url: Spanned<EnvString>,
    #[serde(default)]
    pub timeout: Option<Secs>,
    #[serde(default)]
    pub connect_timeout: Option<Secs>,
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
    /// Extra headers sent with every call (`${ENV}` expanded).
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<EnvString>>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// Calls of one client batch sent here as one upstream batch, at most
    /// (default 100; 1: every call alone).
    #[serde(default)]
    pub max_batch: Option<Spanned<usize>>,
    /// How long the calls of one client batch may wait for each other
    /// (default 2 ms; they are normally sent at once).
    #[serde(default)]
    pub batch_window: Option<Secs>,
    /// Single calls from different clients sent upstream together:
    /// `"off"` (the default), `"same-turn"` (those that arrive in the same
    /// turn of the runtime, no timer), or a window such as `"2ms"`.
    #[serde(default)]
    pub cross_client_batching: Option<CrossClientBatching>,
    /// At most this many calls in flight on this backend (default: no cap).
    #[serde(default)]
    pub max_concurrency: Option<Spanned<u32>>,
    /// Let the cap adapt (halved on 429s, stalls and timeouts, grown back
    /// on success); needs `max_concurrency`.
    #[serde(default)]
    pub adaptive_concurrency: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub user: EnvString,
    pub password: EnvString,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Backend names, highest priority first.
    pub members: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub strategy: Strategy,
    /// `quorum` strategy: how many members must agree.
    #[serde(default)]
    pub quorum: Option<Spanned<usize>>,
    /// `quorum` strategy: a time limit for agreement (the call's deadline
    /// applies anyway).
    #[serde(default)]
    pub quorum_timeout: Option<Secs>,
    /// `hedged` strategy: a fixed delay before the second attempt.
    #[serde(default)]
    pub hedge_delay: Option<Secs>,
    /// `hedged` strategy: learn the delay as this latency quantile per method
    /// (e.g. 0.95) instead of a fixed one.
    #[serde(default)]
    pub hedge_quantile: Option<Spanned<f64>>,
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    #[serde(default = "default_out_of_service")]
    pub out_of_service: Secs,
    #[serde(default)]
    pub when_all_down: WhenAllDown,
    /// Overrides `retry.max_retries` for this group.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Head tracking (present: on).
    #[serde(default)]
    pub head: Option<Spanned<HeadSpec>>,
    /// When an attempt counts as a stall.
    #[serde(default)]
    pub attempt_deadline: StallSpec,
    /// The health check's method (default by protocol: `eth_blockNumber`,
    /// `server.ping`; none for generic); `""`: no health checks.
    #[serde(default)]
    pub health_method: Option<String>,
    #[serde(default = "default_health_interval")]
    pub health_interval: Secs,
    #[serde(default = "default_health_timeout")]
    pub health_timeout: Secs,
    #[serde(default = "default_recheck")]
    pub recheck_interval: Secs,
    /// Calls that may wait for a backend under its `max_concurrency`.
    #[serde(default = "default_queue")]
    pub queue: usize,
    #[serde(default = "default_queue_wait")]
    pub queue_wait: Secs,
    /// Broadcasts (`eth_sendRawTransaction`, ...) to every member at once.
    #[serde(default)]
    pub multicall: Option<Spanned<bool>>,
    /// `eth_getLogs` block ranges.
    #[serde(default)]
    pub get_logs: GetLogs,
}

/// `[groups.NAME.get_logs]`: `eth_getLogs` block ranges (Ethereum). Even
/// without the table, a provider's own range-limit error splits the range
/// instead of reaching the client.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetLogs {
    /// Wider ranges are refused with -32602 before any upstream call (also
    /// for `eth_newFilter`).
    #[serde(default)]
    pub max_block_range: Option<Spanned<u64>>,
    /// Wider ranges are split into chunks of this many blocks.
    #[serde(default)]
    pub chunk: Option<Spanned<u64>>,
    /// Chunks in flight at once (default 4).
    #[serde(default)]
    pub concurrency: Option<Spanned<usize>>,
}

/// `[groups.NAME.attempt_deadline]`: when an attempt counts as a stall.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StallSpec {
    /// One deadline for every member and method instead of learned ones.
    #[serde(default)]
    pub fixed: Option<Secs>,
    #[serde(default = "default_stall_min")]
    pub min: Secs,
    #[serde(default = "default_stall_max")]
    pub max: Secs,
    #[serde(default = "default_stall_initial")]
    pub initial: Secs,
    #[serde(default = "default_stall_factor")]
    pub factor: Spanned<f64>,
    #[serde(default = "default_stall_quantile")]
    pub quantile: Spanned<f64>,
}

impl Default for StallSpec {
    fn default() -> Self {
        StallSpec {
            fixed: None,
            min: default_stall_min(),
            max: default_stall_max(),
            initial: default_stall_initial(),
            factor: default_stall_factor(),
            quantile: default_stall_quantile(),
        }
    }
}

pub(crate) fn default_stall_min() -> Secs {
    Secs(defaults::STALL_MIN)
}
pub(crate) fn default_stall_max() -> Secs {
    Secs(defaults::STALL_MAX)
}
pub(crate) fn default_stall_initial() -> Secs {
    Secs(defaults::STALL_INITIAL)
}
pub(crate) fn default_stall_factor() -> Spanned<f64> {
    Spanned::new(0..0, defaults::STALL_FACTOR)
}
pub(crate) fn default_stall_quantile() -> Spanned<f64> {
    Spanned::new(0..0, defaults::STALL_QUANTILE)
}
pub(crate) fn default_health_interval() -> Secs {
    Secs(defaults::HEALTH_INTERVAL)
}
pub(crate) fn default_health_timeout() -> Secs {
    Secs(defaults::HEALTH_TIMEOUT)
}
pub(crate) fn default_recheck() -> Secs {
    Secs(defaults::RECHECK)
}
pub(crate) fn default_queue() -> usize {
    defaults::QUEUE
}
pub(crate) fn default_queue_wait() -> Secs {
    Secs(defaults::QUEUE_WAIT)
}

/// `[groups.NAME.head]`: keep members that are behind out of rotation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSpec {
    #[serde(default = "default_max_lag")]
    pub max_lag: u64,
    #[serde(default = "default_max_stall")]
    pub max_stall: Secs,
    #[serde(default = "default_probe_interval")]
    pub probe_interval: Secs,
    #[serde(default = "default_max_probes")]
    pub max_probes_per_second: Spanned<f64>,
    #[serde(default = "default_probe_timeout")]
    pub probe_timeout: Secs,
    #[serde(default = "default_consistency_wait")]
    pub consistency_wait: Secs,
    /// Members that must reach a head before it is the agreed head (default:
    /// 1 in a group of one, else 2).
    #[serde(default)]
    pub agree: Option<Spanned<usize>>,
    #[serde(default = "default_max_ahead")]
    pub max_ahead: u64,
    #[serde(default = "default_confirm_within")]
    pub confirm_within: Secs,
    #[serde(default = "default_finality_interval")]
    pub finality_interval: Secs,
}

pub(crate) fn default_max_ahead() -> u64 {
    1024
}
pub(crate) fn default_confirm_within() -> Secs {
    Secs(Duration::from_secs(30))
}
pub(crate) fn default_finality_interval() -> Secs {
    Secs(Duration::from_secs(30))
}

pub(crate) fn default_max_lag() -> u64 {
    3
}
pub(crate) fn default_max_stall() -> Secs {
    Secs(Duration::from_secs(30))
}
pub(crate) fn default_probe_interval() -> Secs {
    Secs(Duration::from_secs(2))
}
pub(crate) fn default_max_probes() -> Spanned<f64> {
    Spanned::new(0..0, 1.0)
}
pub(crate) fn default_probe_timeout() -> Secs {
    Secs(Duration::from_secs(2))
}
pub(crate) fn default_consistency_wait() -> Secs {
    Secs(Duration::from_secs(2))
}

/// `[consistency]`: read-your-head for clients.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencySpec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "yes")]
    pub per_connection: bool,
    #[serde(default = "default_session_header")]
    pub session_header: Spanned<String>,
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
}

impl Default for ConsistencySpec {
    fn default() -> Self {
        ConsistencySpec {
            enabled: false,
            per_connection: true,
            session_header: default_session_header(),
            max_sessions: default_max_sessions(),
        }
    }
}

/// `[redis]`: replicas share cache, rate limits and chain heads through one
/// Redis. Each feature can be switched off alone.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSpec {
    /// `redis://[user:password@]host:port[/db]`, `rediss://` for TLS,
    /// `redis+unix:///path`; `${ENV}` is expanded (keep passwords there).
    pub url: Spanned<EnvString>,
    /// For `rediss://`: a PEM file of the CA certificate(s) to trust
    /// instead of the system's roots.
    #[serde(default)]
    pub tls_ca_file: Option<Spanned<String>>,
    /// Key prefix: replicas of one fleet share it (default `rpc:`).
    #[serde(default = "default_redis_prefix")]
    pub prefix: String,
    /// The most one Redis command may add to a call (default 10ms).
    #[serde(default = "default_redis_deadline")]
    pub deadline: Spanned<Secs>,
    #[serde(default = "default_redis_connect_timeout")]
    pub connect_timeout: Secs,
    /// Failures in a row before Redis is skipped for `open_for` (default 3).
    #[serde(default = "default_redis_failures")]
    pub failures_to_open: u32,
    #[serde(default = "default_redis_open_for")]
    pub open_for: Secs,
    /// Share the cache (needs `[cache]`; default on).
    #[serde(default = "yes")]
    pub cache: bool,
    /// Share rate-limit budgets (needs `[rate_limit]`; default on).
    #[serde(default = "yes")]
    pub rate_limit: bool,
    /// What rate limits do while Redis is unreachable (default `fail-open`:
    /// this replica's own budgets).
    #[serde(default)]
    pub rate_limit_when_down: RedisDown,
    /// Share named sessions' heads (needs `[consistency]`; default on).
    #[serde(default = "yes")]
    pub sessions: bool,
    /// Share head-tracked groups' agreed heads (default on).
    #[serde(default = "yes")]
    pub heads: bool,
    /// How often a group's head is published and the fleet's read (250ms).
    #[serde(default = "default_redis_head_interval")]
    pub head_interval: Secs,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedisDown {
    #[default]
    FailOpen,
    FailClosed,
}

fn default_redis_prefix() -> String {
    "rpc:".to_owned()
}
fn default_redis_deadline() -> Spanned<Secs> {
    Spanned::new(0..0, Secs(Duration::from_millis(10)))
}
fn default_redis_connect_timeout() -> Secs {
    Secs(Duration::from_secs(1))
}
fn default_redis_failures() -> u32 {
    3
}
fn default_redis_open_for() -> Secs {
    Secs(Duration::from_secs(1))
}
fn default_redis_head_interval() -> Secs {
    Secs(Duration::from_millis(250))
}

pub(crate) fn default_session_header() -> Spanned<String> {
    Spanned::new(0..0, "x-session-id".to_owned())
}
pub(crate) fn default_max_sessions() -> usize {
    100_000
}

pub(crate) fn default_failure_threshold() -> u32 {
    defaults::FAILURE_THRESHOLD
}
pub(crate) fn default_out_of_service() -> Secs {
    Secs(defaults::OUT_OF_SERVICE)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Priority order; the next member when one fails.
    #[default]
    Failover,
    /// Failover, spreading calls evenly among members.
    RoundRobin,
    /// Failover, preferring the member with the lowest latency × load.
    LeastLatency,
    /// Ask `quorum`-of-all members, answer when that many agree.
    Quorum,
    /// Failover that races a slow read against the next member.
    Hedged,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenAllDown {
    #[default]
    TrySoonest,
    FailFast,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// The group of methods no pattern matches.
    #[serde(default)]
    pub default: Option<Spanned<String>>,
    /// Method pattern (`eth_sendRawTransaction`, `debug_*`) → group name.
    #[serde(default)]
    pub methods: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Methods {
    #[serde(default)]
    pub allow: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub deny: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: Secs,
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Secs,
    #[serde(default = "default_jitter")]
    pub jitter: Spanned<f64>,
    #[serde(default = "default_max_retry_after")]
    pub max_retry_after: Secs,
    #[serde(default = "default_budget_ratio")]
    pub budget_ratio: Spanned<f64>,
    #[serde(default = "default_budget_tokens")]
    pub budget_tokens: u32,
    /// Removed (the budget no longer refills with time); kept to say so.
    #[serde(default)]
    pub budget_min_per_second: Option<Spanned<u32>>,
    /// Removed (see `budget_tokens`); kept to say so.
    #[serde(default)]
    pub budget_max_reserve: Option<Spanned<u32>>,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_retries: default_retries(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            jitter: default_jitter(),
            max_retry_after: default_max_retry_after(),
            budget_ratio: default_budget_ratio(),
            budget_tokens: default_budget_tokens(),
            budget_min_per_second: None,
            budget_max_reserve: None,
        }
    }
}

pub(crate) fn default_retries() -> u32 {
    defaults::RETRIES
}
pub(crate) fn default_initial_backoff() -> Secs {
    Secs(defaults::INITIAL_BACKOFF)
}
pub(crate) fn default_max_backoff() -> Secs {
    Secs(defaults::MAX_BACKOFF)
}
pub(crate) fn default_jitter() -> Spanned<f64> {
    Spanned::new(0..0, defaults::JITTER)
}
pub(crate) fn default_max_retry_after() -> Secs {
    Secs(defaults::MAX_RETRY_AFTER)
}
pub(crate) fn default_budget_ratio() -> Spanned<f64> {
    Spanned::new(0..0, defaults::BUDGET_RATIO)
}
pub(crate) fn default_budget_tokens() -> u32 {
    defaults::BUDGET_TOKENS
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cache {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_cache_mb")]
    pub max_mb: usize,
    #[serde(default = "default_cache_entries")]
    pub max_entries: usize,
    /// How long answers that follow the chain tip are kept (rule set default: 1 s).
    #[serde(default)]
    pub tip_ttl: Option<Secs>,
    /// Depth below the head from which a block is final (rule set default:
    /// 64 for Ethereum, 6 for Electrum).
    #[serde(default)]
    pub confirmations: Option<u64>,
    #[serde(default = "yes")]
    pub coalesce: bool,
    /// Keep the backend's own error answers this long (off when absent).
    #[serde(default)]
    pub negative_ttl: Option<Secs>,
    /// Method → `never`, `forever`, `tip`, or a duration (`"2s"`).
    #[serde(default)]
    pub methods: BTreeMap<String, Spanned<CacheRule>>,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            enabled: false,
            max_mb: default_cache_mb(),
            max_entries: default_cache_entries(),
            tip_ttl: None,
            confirmations: None,
            coalesce: true,
            negative_ttl: None,
            methods: BTreeMap::new(),
        }
    }
}

pub(crate) fn default_cache_mb() -> usize {
    defaults::CACHE_MB
}
pub(crate) fn default_cache_entries() -> usize {
    defaults::CACHE_ENTRIES
}
pub(crate) fn yes() -> bool {
    true
}

/// A per-method cache override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheRule {
    Never,
    Forever,
    Tip,
    Ttl(Duration),
}

impl<'de> Deserialize<'de> for CacheRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "never" => Ok(CacheRule::Never),
            "forever" => Ok(CacheRule::Forever),
            "tip" => Ok(CacheRule::Tip),
            other => parse_duration(other).map(CacheRule::Ttl).map_err(|_| {
                de::Error::custom(format!(
                    "`{other}` is not `never`, `forever`, `tip` or a duration like \"2s\""
                ))
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// The budget of each client IP without a known key.
    #[serde(default)]
    pub per_ip: Option<LimitSpec>,
    /// The budget of each transaction sender (recovered from the signed
    /// transaction of `eth_sendRawTransaction` and its variants).
    #[serde(default)]
    pub per_sender: Option<Spanned<LimitSpec>>,
    /// The request header clients put their key in.
    #[serde(default = "default_key_header")]
    pub key_header: Spanned<String>,
    #[serde(default)]
    pub keys: Vec<KeySpec>,
    #[serde(default = "default_weight")]
    pub default_weight: u32,
    /// Method or prefix pattern (`"debug_*"`) → weight (cost in budget
    /// units); an exact name wins over a prefix, a longer prefix over a
    /// shorter one.
    #[serde(default)]
    pub weights: BTreeMap<String, Spanned<u32>>,
    /// Method or prefix pattern → a budget for all clients together.
    #[serde(default)]
    pub methods: BTreeMap<String, Spanned<LimitSpec>>,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_ip: None,
            per_sender: None,
            key_header: default_key_header(),
            keys: Vec::new(),
            default_weight: default_weight(),
            weights: BTreeMap::new(),
            methods: BTreeMap::new(),
        }
    }
}

pub(crate) fn default_key_header() -> Spanned<String> {
    Spanned::new(0..0, defaults::KEY_HEADER.to_owned())
}
pub(crate) fn default_weight() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// Budget units per second.
    pub rate: Spanned<u32>,
    /// Units that may be spent at once (default: the rate).
    #[serde(default)]
    pub burst: Option<Spanned<u32>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// The key (`${ENV}` expanded).
    pub key: Spanned<EnvString>,
    pub rate: Spanned<u32>,
    #[serde(default)]
    pub burst: Option<Spanned<u32>>,
}

/// A duration: `"500us"`, `"250ms"`, `"5s"`, `"1.5s"`, `"2m"`, `"1h"`, or a number of
/// seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secs(pub Duration);

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Secs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like \"250ms\", \"5s\", \"2m\", or a number of seconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secs, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secs, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Secs, E> {
                seconds(v).map(Secs).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secs, E> {
                parse_duration(v).map(Secs).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

pub(crate) use crate::duration::{parse_duration, seconds};

/// `cross_client_batching`: `"off"`, `"same-turn"`, or a window (`"2ms"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrossClientBatching(pub rpc_core::CrossClient);

impl<'de> Deserialize<'de> for CrossClientBatching {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let mode = match text.trim() {
            "off" => rpc_core::CrossClient::Off,
            "same-turn" => rpc_core::CrossClient::SameTurn,
            window => rpc_core::CrossClient::Window(parse_duration(window).map_err(|_| {
                de::Error::custom(format!(
                    "`{text}` is not \"off\", \"same-turn\" or a window like \"2ms\""
                ))
            })?),
        };
        Ok(CrossClientBatching(mode))
    }
}

impl Group {
    /// A plain failover group over `members`, with the defaults.
    pub fn failover(members: Vec<Spanned<String>>) -> Group {
        Group {
            members: Spanned::new(0..0, members),
            strategy: Strategy::Failover,
            quorum: None,
            quorum_timeout: None,
            hedge_delay: None,
            hedge_quantile: None,
            failure_threshold: defaults::FAILURE_THRESHOLD,
            out_of_service: Secs(defaults::OUT_OF_SERVICE),
            when_all_down: WhenAllDown::TrySoonest,
            max_retries: None,
            head: None,
            attempt_deadline: StallSpec::default(),
            health_method: None,
            health_interval: default_health_interval(),
            health_timeout: default_health_timeout(),
            recheck_interval: default_recheck(),
            queue: defaults::QUEUE,
            queue_wait: default_queue_wait(),
            multicall: None,
            get_logs: GetLogs::default(),
        }
    }
}
