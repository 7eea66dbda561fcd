//! The TOML configuration of `rpc-proxy`: what each key means is documented
//! in `examples/proxy/proxy.toml`, which is parsed by the tests.
//!
//! Loading is two steps. [`Config::from_toml`] deserializes with unknown keys
//! refused, expanding `${ENV}` in the strings that may hold secrets; then
//! [`Config::validate`] checks what types cannot (references between
//! sections, patterns, ranges). Both report a [`ConfigError`] naming the
//! file, line, column and key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;
use toml::Spanned;

/// Defaults shared with the quick flags and documented in `proxy.toml`.
pub mod defaults {
    use std::time::Duration;

    pub const RETRIES: u32 = 3;
    pub const FAILURE_THRESHOLD: u32 = 2;
    pub const OUT_OF_SERVICE: Duration = Duration::from_secs(5);
    pub const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
    pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
    pub const JITTER: f64 = 0.5;
    pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
    pub const BUDGET_RATIO: f64 = 0.1;
    pub const BUDGET_TOKENS: u32 = 20;
    pub const STALL_MIN: Duration = Duration::from_millis(150);
    pub const STALL_MAX: Duration = Duration::from_secs(3);
    pub const STALL_INITIAL: Duration = Duration::from_secs(3);
    pub const STALL_FACTOR: f64 = 4.0;
    pub const STALL_QUANTILE: f64 = 0.99;
    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
    pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
    pub const RECHECK: Duration = Duration::from_secs(1);
    pub const QUEUE: usize = 1024;
    pub const QUEUE_WAIT: Duration = Duration::from_secs(5);
    pub const CACHE_MB: usize = 64;
    pub const CACHE_ENTRIES: usize = 100_000;
    pub const HEDGE_DELAY: Duration = Duration::from_millis(500);
    pub const KEY_HEADER: &str = "x-api-key";
    pub const CORS_MAX_AGE: Duration = Duration::from_secs(3600);
}

/// A configuration error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as given.
    pub file: String,
    /// 1-based line and column, when the error has a place.
    pub position: Option<(usize, usize)>,
    /// The key path, e.g. `groups.main.members[1]`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// The offending line of the file, for display.
    pub snippet: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)?;
        } else {
            write!(f, ": `{}`: {}", self.key, self.message)?;
        }
        if let (Some(snippet), Some((line, col))) = (&self.snippet, self.position) {
            let gutter = line.to_string().len();
            write!(
                f,
                "\n{:gutter$} |\n{line} | {snippet}\n{:gutter$} | {:>col$}",
                "", "", "^"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Where errors point: the file's name and text.
pub struct Source<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

impl Source<'_> {
    fn error(
        &self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (position, snippet) = match span {
            Some(span) if span.start <= self.text.len() && !self.text.is_empty() => {
                let before = &self.text[..span.start];
                let line = before.matches('\n').count() + 1;
                let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                let col = before[line_start..].chars().count() + 1;
                let snippet = self.text[line_start..]
                    .split('\n')
                    .next()
                    .unwrap_or("")
                    .trim_end_matches('\r');
                (Some((line, col)), Some(redact_line(snippet)))
            }
            _ => (None, None),
        };
        ConfigError {
            file: self.file.to_owned(),
            position,
            key: key.into(),
            message: message.into(),
            snippet,
        }
    }
}

/// The whole file. Every section is optional except `[backends]`.
#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    #[serde(default = "default_batch_concurrency")]
    pub batch_concurrency: usize,
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
    /// Load balancers whose `Forwarded` / `X-Forwarded-For` name the client.
    #[serde(default = "no_proxies")]
    pub trusted_proxies: Spanned<Vec<String>>,
    /// Connections from trusted proxies start with a PROXY protocol header.
    #[serde(default)]
    pub proxy_protocol: bool,
}

fn default_max_connections_per_ip() -> usize {
    rpc_core::server::ServerConfig::DEFAULT_MAX_CONNECTIONS_PER_IP
}
fn default_idle_timeout() -> Secs {
    Secs(rpc_core::server::ServerConfig::DEFAULT_IDLE_TIMEOUT)
}
fn default_h2_streams() -> u32 {
    rpc_core::server::ServerConfig::DEFAULT_H2_MAX_CONCURRENT_STREAMS
}
fn no_proxies() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}
fn default_memory_budget_mb() -> usize {
    256
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: default_listen(),
            max_body_bytes: default_max_body(),
            max_batch: default_max_batch(),
            batch_concurrency: default_batch_concurrency(),
            request_timeout: default_request_timeout(),
            body_timeout: default_body_timeout(),
            header_timeout: default_header_timeout(),
            shutdown_timeout: default_shutdown_timeout(),
            health_path: default_health_path(),
            cache_header: false,
            served_by_header: false,
            cors: None,
            max_connections: None,
            max_connections_per_ip: default_max_connections_per_ip(),
            idle_timeout: default_idle_timeout(),
            h2_max_concurrent_streams: default_h2_streams(),
            memory_budget_mb: default_memory_budget_mb(),
            trusted_proxies: Spanned::new(0..0, Vec::new()),
            proxy_protocol: false,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8545))
}
fn default_max_body() -> usize {
    rpc_core::server::ServerConfig::DEFAULT_MAX_BODY_BYTES
}
fn default_max_batch() -> usize {
    rpc_core::server::ServerConfig::DEFAULT_MAX_BATCH
}
fn default_batch_concurrency() -> usize {
    rpc_core::server::ServerConfig::DEFAULT_BATCH_CONCURRENCY
}
fn default_request_timeout() -> Secs {
    Secs(rpc_core::server::ServerConfig::DEFAULT_REQUEST_TIMEOUT)
}
fn default_body_timeout() -> Secs {
    Secs(rpc_core::server::ServerConfig::DEFAULT_BODY_READ_TIMEOUT)
}
fn default_header_timeout() -> Secs {
    Secs(rpc_core::server::ServerConfig::DEFAULT_HEADER_READ_TIMEOUT)
}
fn default_shutdown_timeout() -> Secs {
    Secs(rpc_core::server::ServerConfig::DEFAULT_SHUTDOWN_TIMEOUT)
}
fn default_health_path() -> String {
    "/healthz".to_owned()
}

/// Cross-origin access for browser clients.
#[derive(Debug, Clone, Deserialize)]
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

fn default_cors_max_age() -> Secs {
    Secs(defaults::CORS_MAX_AGE)
}

#[derive(Debug, Clone, Default, Deserialize)]
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Serve Prometheus metrics at `http://LISTEN/metrics`; off when absent.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// `http://` or `https://`; `${ENV}` is expanded (keep API keys out of
    /// the file). Never logged.
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
    /// At most this many calls in flight on this backend (default: no cap).
    #[serde(default)]
    pub max_concurrency: Option<Spanned<u32>>,
    /// Let the cap adapt (halved on 429s, stalls and timeouts, grown back
    /// on success); needs `max_concurrency`.
    #[serde(default)]
    pub adaptive_concurrency: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub user: EnvString,
    pub password: EnvString,
}

#[derive(Debug, Clone, Deserialize)]
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
}

/// `[groups.NAME.attempt_deadline]`: when an attempt counts as a stall.
#[derive(Debug, Clone, Deserialize)]
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

fn default_stall_min() -> Secs {
    Secs(defaults::STALL_MIN)
}
fn default_stall_max() -> Secs {
    Secs(defaults::STALL_MAX)
}
fn default_stall_initial() -> Secs {
    Secs(defaults::STALL_INITIAL)
}
fn default_stall_factor() -> Spanned<f64> {
    Spanned::new(0..0, defaults::STALL_FACTOR)
}
fn default_stall_quantile() -> Spanned<f64> {
    Spanned::new(0..0, defaults::STALL_QUANTILE)
}
fn default_health_interval() -> Secs {
    Secs(defaults::HEALTH_INTERVAL)
}
fn default_health_timeout() -> Secs {
    Secs(defaults::HEALTH_TIMEOUT)
}
fn default_recheck() -> Secs {
    Secs(defaults::RECHECK)
}
fn default_queue() -> usize {
    defaults::QUEUE
}
fn default_queue_wait() -> Secs {
    Secs(defaults::QUEUE_WAIT)
}

/// `[groups.NAME.head]`: keep members that are behind out of rotation.
#[derive(Debug, Clone, Deserialize)]
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

fn default_max_ahead() -> u64 {
    1024
}
fn default_confirm_within() -> Secs {
    Secs(Duration::from_secs(30))
}
fn default_finality_interval() -> Secs {
    Secs(Duration::from_secs(30))
}

fn default_max_lag() -> u64 {
    3
}
fn default_max_stall() -> Secs {
    Secs(Duration::from_secs(30))
}
fn default_probe_interval() -> Secs {
    Secs(Duration::from_secs(2))
}
fn default_max_probes() -> Spanned<f64> {
    Spanned::new(0..0, 1.0)
}
fn default_probe_timeout() -> Secs {
    Secs(Duration::from_secs(2))
}
fn default_consistency_wait() -> Secs {
    Secs(Duration::from_secs(2))
}

/// `[consistency]`: read-your-head for clients.
#[derive(Debug, Clone, Deserialize)]
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

fn default_session_header() -> Spanned<String> {
    Spanned::new(0..0, "x-session-id".to_owned())
}
fn default_max_sessions() -> usize {
    100_000
}

fn default_failure_threshold() -> u32 {
    defaults::FAILURE_THRESHOLD
}
fn default_out_of_service() -> Secs {
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// The group of methods no pattern matches.
    #[serde(default)]
    pub default: Option<Spanned<String>>,
    /// Method pattern (`eth_sendRawTransaction`, `debug_*`) → group name.
    #[serde(default)]
    pub methods: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Methods {
    #[serde(default)]
    pub allow: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub deny: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
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

fn default_retries() -> u32 {
    defaults::RETRIES
}
fn default_initial_backoff() -> Secs {
    Secs(defaults::INITIAL_BACKOFF)
}
fn default_max_backoff() -> Secs {
    Secs(defaults::MAX_BACKOFF)
}
fn default_jitter() -> Spanned<f64> {
    Spanned::new(0..0, defaults::JITTER)
}
fn default_max_retry_after() -> Secs {
    Secs(defaults::MAX_RETRY_AFTER)
}
fn default_budget_ratio() -> Spanned<f64> {
    Spanned::new(0..0, defaults::BUDGET_RATIO)
}
fn default_budget_tokens() -> u32 {
    defaults::BUDGET_TOKENS
}

#[derive(Debug, Clone, Deserialize)]
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

fn default_cache_mb() -> usize {
    defaults::CACHE_MB
}
fn default_cache_entries() -> usize {
    defaults::CACHE_ENTRIES
}
fn yes() -> bool {
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// The budget of each client IP without a known key.
    #[serde(default)]
    pub per_ip: Option<LimitSpec>,
    /// The request header clients put their key in.
    #[serde(default = "default_key_header")]
    pub key_header: Spanned<String>,
    #[serde(default)]
    pub keys: Vec<KeySpec>,
    #[serde(default = "default_weight")]
    pub default_weight: u32,
    /// Method → weight (cost in budget units).
    #[serde(default)]
    pub weights: BTreeMap<String, Spanned<u32>>,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_ip: None,
            key_header: default_key_header(),
            keys: Vec::new(),
            default_weight: default_weight(),
            weights: BTreeMap::new(),
        }
    }
}

fn default_key_header() -> Spanned<String> {
    Spanned::new(0..0, defaults::KEY_HEADER.to_owned())
}
fn default_weight() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// Budget units per second.
    pub rate: Spanned<u32>,
    /// Units that may be spent at once (default: the rate).
    #[serde(default)]
    pub burst: Option<Spanned<u32>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// The key (`${ENV}` expanded).
    pub key: Spanned<EnvString>,
    pub rate: Spanned<u32>,
    #[serde(default)]
    pub burst: Option<Spanned<u32>>,
}

/// A duration: `"250ms"`, `"5s"`, `"1.5s"`, `"2m"`, `"1h"`, or a number of
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

fn seconds(v: f64) -> Result<Duration, String> {
    if v.is_finite() && v > 0.0 && v < 1e9 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("`{v}` is not a positive number of seconds"))
    }
}

/// Parses `"250ms"`, `"5s"`, `"1.5s"`, `"2m"`, `"1h"` (or a bare number of seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => f64::NAN,
    };
    match number.parse::<f64>() {
        Ok(n) if scale.is_finite() => seconds(n * scale),
        _ => Err(format!(
            "`{text}` is not a duration like \"250ms\", \"5s\", \"2m\" or \"1h\""
        )),
    }
}

/// A string in which `${NAME}` is replaced by the environment variable
/// `NAME` (an error if it is not set; `${NAME:-fallback}` uses the fallback
/// instead) and `$${` stands for a literal `${`.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvString(pub String);

impl fmt::Debug for EnvString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // May hold secrets.
        f.write_str("EnvString(..)")
    }
}

impl<'de> Deserialize<'de> for EnvString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        expand_env(&raw, |name| std::env::var(name).ok())
            .map(EnvString)
            .map_err(de::Error::custom)
    }
}

/// Words that mark a config line as able to hold a secret (URLs carry API
/// keys in their path or query; headers carry tokens).
const SECRET_HINTS: &[&str] = &[
    "url", "header", "auth", "bearer", "token", "secret", "password", "user", "key", "://",
];

/// A config line fit to print in an error: on a line that may hold a
/// secret, every character of the value after the first `=` is masked
/// (quotes, brackets, `=` and spaces stay, so the caret still points at
/// the right column).
pub fn redact_line(line: &str) -> String {
    let lower = line.to_ascii_lowercase();
    if !SECRET_HINTS.iter().any(|h| lower.contains(h)) {
        return line.to_owned();
    }
    let Some(eq) = line.find('=') else {
        return line.chars().map(|_| '*').collect();
    };
    let (head, value) = line.split_at(eq + 1);
    let masked: String = value
        .chars()
        .map(|c| {
            if matches!(
                c,
                '"' | '\'' | '{' | '}' | '[' | ']' | ',' | '=' | ' ' | '\t'
            ) {
                c
            } else {
                '*'
            }
        })
        .collect();
    format!("{head}{masked}")
}

/// The `${NAME}` references (without a fallback) outside comments in
/// `text` whose variable `lookup` does not know, in order, once each.
pub fn missing_variables(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    for line in text.lines() {
        // The part before a comment (a `#` outside quotes).
        let mut quoted = None;
        let mut end = line.len();
        for (i, c) in line.char_indices() {
            match (c, quoted) {
                ('"' | '\'', None) => quoted = Some(c),
                (q, Some(open)) if q == open => quoted = None,
                ('#', None) => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let mut rest = &line[..end];
        while let Some(i) = rest.find("${") {
            let escaped = i > 0 && rest.as_bytes()[i - 1] == b'$';
            let body = &rest[i + 2..];
            let Some(close) = body.find('}') else { break };
            let inner = &body[..close];
            rest = &body[close + 1..];
            if escaped || inner.contains(":-") {
                continue;
            }
            let valid =
                !inner.is_empty() && inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid && lookup(inner).is_none() && !missing.iter().any(|m| m == inner) {
                missing.push(inner.to_owned());
            }
        }
    }
    missing
}

/// Expands `${NAME}` / `${NAME:-fallback}` / `$${` in `raw`. Errors never
/// repeat `raw` (it may hold a secret around the variable).
pub fn expand_env(raw: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err("unclosed `${` (write `$${` for a literal `${`)".to_owned());
            };
            let inner = &body[..end];
            let (name, fallback) = match inner.split_once(":-") {
                Some((n, f)) => (n, Some(f)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(
                    "a `${...}` does not hold a variable name (letters, digits and `_`)".to_owned(),
                );
            }
            match (lookup(name), fallback) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(f)) => out.push_str(f),
                (None, None) => {
                    return Err(format!("environment variable `{name}` is not set"));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

impl Config {
    /// Parses `text` (the contents of `file`), refusing unknown keys and
    /// wrong types. Run [`validate`](Self::validate) next.
    pub fn from_toml(file: &str, text: &str) -> Result<Config, ConfigError> {
        let src = Source { file, text };
        let de = toml::de::Deserializer::parse(text)
            .map_err(|e| src.error(e.span(), "", first_line(e.message())))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            // Spanned values add an internal segment to the path; drop it.
            let key = e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "");
            let key = if key == "." { String::new() } else { key };
            let inner = e.into_inner();
            let mut message = first_line(inner.message());
            if message.starts_with("environment variable `") {
                // Name every missing variable at once, not one per run.
                let missing = missing_variables(text, |n| std::env::var(n).ok());
                if missing.len() > 1 {
                    message = format!(
                        "environment variables {} are not set",
                        missing
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
            src.error(inner.span(), key, message)
        })
    }

    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &str) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            position: None,
            key: String::new(),
            message: format!("cannot read: {e}"),
            snippet: None,
        })?;
        let config = Config::from_toml(path, &text)?;
        config.validate(&Source {
            file: path,
            text: &text,
        })?;
        Ok(config)
    }

    /// The groups calls can reach, each with its members in priority order.
    /// Without a `[groups]` section, a single backend forms the group
    /// `default`.
    pub fn effective_groups(&self) -> Vec<(String, Group)> {
        if self.groups.is_empty() {
            if let Some(name) = self.backends.keys().next() {
                let member = Spanned::new(0..0, name.clone());
                return vec![("default".to_owned(), Group::failover(vec![member]))];
            }
        }
        self.groups
            .iter()
            .map(|(n, g)| (n.clone(), g.get_ref().clone()))
            .collect()
    }

    /// The group of methods no route matches, if any.
    pub fn default_group(&self) -> Option<String> {
        match &self.routing.default {
            Some(name) => Some(name.get_ref().clone()),
            None => {
                let groups = self.effective_groups();
                (groups.len() == 1).then(|| groups[0].0.clone())
            }
        }
    }

    /// Checks what the types cannot: names that refer to other sections,
    /// patterns, ranges and combinations.
    pub fn validate(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        let err = |span: Range<usize>, key: String, msg: String| {
            Err(src.error((span != (0..0)).then_some(span), key, msg))
        };
        if self.backends.is_empty() {
            return err(
                0..0,
                "backends".into(),
                "at least one backend is needed".into(),
            );
        }
        for (name, backend) in &self.backends {
            let url = &backend.get_ref().url;
            let text = &url.get_ref().0;
            if !(text.starts_with("http://") || text.starts_with("https://")) {
                return err(
                    url.span(),
                    format!("backends.{name}.url"),
                    "must start with http:// or https://".into(),
                );
            }
            for (header, value) in &backend.get_ref().headers {
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    return err(
                        value.span(),
                        format!("backends.{name}.headers"),
                        format!("`{header}` is not a valid header name"),
                    );
                }
                if http::HeaderValue::from_str(&value.get_ref().0).is_err() {
                    return err(
                        value.span(),
                        format!("backends.{name}.headers.{header}"),
                        "the value is not a valid header value".into(),
                    );
                }
            }
        }
        if self.groups.is_empty() && self.backends.len() > 1 {
            let names: Vec<&str> = self.backends.keys().map(String::as_str).collect();
            return err(
                0..0,
                "groups".into(),
                format!(
                    "{} backends but no [groups.NAME] to order them; add e.g. `[groups.main]` with `members = [\"{}\"]`",
                    names.len(),
                    names.join("\", \"")
                ),
            );
        }
        for (gname, group) in &self.groups {
            let g = group.get_ref();
            let key = |k: &str| format!("groups.{gname}.{k}");
            if g.members.get_ref().is_empty() {
                return err(
                    g.members.span(),
                    key("members"),
                    "a group needs at least one member".into(),
                );
            }
            if g.members.get_ref().len() > rpc_failover::MAX_MEMBERS {
                return err(
                    g.members.span(),
                    key("members"),
                    format!("at most {} members", rpc_failover::MAX_MEMBERS),
                );
            }
            for (i, m) in g.members.get_ref().iter().enumerate() {
                if !self.backends.contains_key(m.get_ref()) {
                    return err(
                        m.span(),
                        format!("groups.{gname}.members[{i}]"),
                        format!(
                            "no backend named `{}` (backends: {})",
                            m.get_ref(),
                            self.backends.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                }
                if g.members.get_ref()[..i]
                    .iter()
                    .any(|o| o.get_ref() == m.get_ref())
                {
                    return err(
                        m.span(),
                        format!("groups.{gname}.members[{i}]"),
                        format!("`{}` is listed twice", m.get_ref()),
                    );
                }
            }
            let n = g.members.get_ref().len();
            match (g.strategy, &g.quorum) {
                (Strategy::Quorum, None) => {
                    return err(
                        group.span(),
                        key("quorum"),
                        "the quorum strategy needs `quorum = K` (how many members must agree)"
                            .into(),
                    )
                }
                (Strategy::Quorum, Some(k)) if *k.get_ref() == 0 || *k.get_ref() > n => {
                    return err(
                        k.span(),
                        key("quorum"),
                        format!("must be between 1 and the number of members ({n})"),
                    )
                }
                (Strategy::Quorum, _) => {}
                (_, Some(k)) => {
                    return err(
                        k.span(),
                        key("quorum"),
                        "only used with `strategy = \"quorum\"`".into(),
                    )
                }
                (_, None) => {}
            }
            if g.strategy != Strategy::Hedged
                && (g.hedge_delay.is_some() || g.hedge_quantile.is_some())
            {
                return err(
                    group.span(),
                    key("strategy"),
                    "`hedge_delay` / `hedge_quantile` need `strategy = \"hedged\"`".into(),
                );
            }
            if let Some(q) = &g.hedge_quantile {
                if !(q.get_ref() > &0.0 && q.get_ref() < &1.0) {
                    return err(
                        q.span(),
                        key("hedge_quantile"),
                        "must be between 0 and 1, e.g. 0.95".into(),
                    );
                }
            }
            if let Some(head) = &g.head {
                if self.protocol == Protocol::Generic {
                    return err(
                        head.span(),
                        key("head"),
                        "head tracking needs `protocol = \"ethereum\"` or `\"electrum\"` (to know how to ask a head)".into(),
                    );
                }
                if g.strategy == Strategy::Quorum {
                    return err(
                        head.span(),
                        key("head"),
                        "head tracking works with failover strategies, not quorum".into(),
                    );
                }
                let p = &head.get_ref().max_probes_per_second;
                if !(p.get_ref().is_finite() && *p.get_ref() >= 0.0) {
                    return err(
                        p.span(),
                        key("head.max_probes_per_second"),
                        "must be 0 or more".into(),
                    );
                }
                if let Some(k) = &head.get_ref().agree {
                    let n = g.members.get_ref().len();
                    if *k.get_ref() == 0 || *k.get_ref() > n {
                        return err(
                            k.span(),
                            key("head.agree"),
                            format!("must be between 1 and the group's {n} member(s)"),
                        );
                    }
                }
            }
            if g.failure_threshold == 0 {
                return err(
                    group.span(),
                    key("failure_threshold"),
                    "must be at least 1".into(),
                );
            }
        }
        let groups = self.effective_groups();
        let known = |name: &str| groups.iter().any(|(g, _)| g == name);
        let group_list = || {
            groups
                .iter()
                .map(|(g, _)| g.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(d) = &self.routing.default {
            if !known(d.get_ref()) {
                return err(
                    d.span(),
                    "routing.default".into(),
                    format!(
                        "no group named `{}` (groups: {})",
                        d.get_ref(),
                        group_list()
                    ),
                );
            }
        } else if groups.len() > 1 {
            return err(
                0..0,
                "routing.default".into(),
                format!(
                    "{} groups: name the one for methods without a route (`[routing] default = \"...\"`)",
                    groups.len()
                ),
            );
        }
        let mut router = rpc_core::route::MethodRouter::<()>::builder();
        for (pattern, target) in &self.routing.methods {
            let key = format!("routing.methods.\"{pattern}\"");
            if !known(target.get_ref()) {
                return err(
                    target.span(),
                    key,
                    format!(
                        "no group named `{}` (groups: {})",
                        target.get_ref(),
                        group_list()
                    ),
                );
            }
            router = match router.route(pattern, ()) {
                Ok(r) => r,
                Err(e) => return err(target.span(), key, e.to_string()),
            };
        }
        for (list, key) in [
            (&self.methods.allow, "methods.allow"),
            (&self.methods.deny, "methods.deny"),
        ] {
            if let Some(list) = list {
                if let Err(e) = rpc_core::filter::MethodFilter::allow(list.get_ref()) {
                    return err(list.span(), key.into(), e.to_string());
                }
            }
        }
        if self.server.max_body_bytes == 0
            || self.server.max_batch == 0
            || self.server.batch_concurrency == 0
        {
            return err(
                0..0,
                "server".into(),
                "max_body_bytes, max_batch and batch_concurrency must be at least 1".into(),
            );
        }
        if !self.server.health_path.starts_with('/') {
            return err(
                0..0,
                "server.health_path".into(),
                "must start with `/`".into(),
            );
        }
        if let Some(cors) = &self.server.cors {
            for origin in cors.allow_origins.get_ref() {
                if origin != "*" && http::HeaderValue::from_str(origin).is_err() {
                    return err(
                        cors.allow_origins.span(),
                        "server.cors.allow_origins".into(),
                        format!("`{origin}` is not an origin"),
                    );
                }
            }
            if cors.allow_origins.get_ref().len() > 1
                && cors.allow_origins.get_ref().iter().any(|o| o == "*")
            {
                return err(
                    cors.allow_origins.span(),
                    "server.cors.allow_origins".into(),
                    "`*` allows every origin; list origins or use `*` alone".into(),
                );
            }
            for h in &cors.allow_headers {
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    return err(
                        cors.allow_origins.span(),
                        "server.cors.allow_headers".into(),
                        format!("`{h}` is not a header name"),
                    );
                }
            }
        }
        for (name, value) in [
            ("jitter", &self.retry.jitter),
            ("budget_ratio", &self.retry.budget_ratio),
        ] {
            if !(0.0..=1.0).contains(value.get_ref()) {
                return err(
                    value.span(),
                    format!("retry.{name}"),
                    "must be between 0 and 1".into(),
                );
            }
        }
        if let Err(e) = rpc_core::server::TrustedProxies::new(self.server.trusted_proxies.get_ref())
        {
            return err(
                self.server.trusted_proxies.span(),
                "server.trusted_proxies".into(),
                e.to_string(),
            );
        }
        if self.server.proxy_protocol && self.server.trusted_proxies.get_ref().is_empty() {
            return err(
                0..0,
                "server.proxy_protocol".into(),
                "needs server.trusted_proxies: the balancers whose PROXY headers are believed"
                    .into(),
            );
        }
        if self.server.memory_budget_mb == 0 {
            return err(
                0..0,
                "server.memory_budget_mb".into(),
                "must be at least 1 (MiB)".into(),
            );
        }
        for (name, old) in [
            ("budget_min_per_second", &self.retry.budget_min_per_second),
            ("budget_max_reserve", &self.retry.budget_max_reserve),
        ] {
            if let Some(old) = old {
                return err(
                    old.span(),
                    format!("retry.{name}"),
                    "was removed: the budget is a bucket of `budget_tokens` (default 20) that \
                     failures drain and successes refill by `budget_ratio`"
                        .into(),
                );
            }
        }
        if self.retry.budget_tokens < 2 {
            return err(
                0..0,
                "retry.budget_tokens".into(),
                "must be at least 2 (half of it is usable at once)".into(),
            );
        }
        for (gname, group) in &self.groups {
            let stall = &group.get_ref().attempt_deadline;
            if !(0.5..=1.0).contains(stall.quantile.get_ref()) {
                return err(
                    stall.quantile.span(),
                    format!("groups.{gname}.attempt_deadline.quantile"),
                    "must be between 0.5 and 1".into(),
                );
            }
            if *stall.factor.get_ref() < 1.0 || !stall.factor.get_ref().is_finite() {
                return err(
                    stall.factor.span(),
                    format!("groups.{gname}.attempt_deadline.factor"),
                    "must be at least 1".into(),
                );
            }
            if stall.min.0 > stall.max.0 {
                return err(
                    0..0,
                    format!("groups.{gname}.attempt_deadline.min"),
                    "is longer than attempt_deadline.max".into(),
                );
            }
            if stall.fixed.is_some_and(|d| d.0.is_zero()) || stall.max.0.is_zero() {
                return err(
                    0..0,
                    format!("groups.{gname}.attempt_deadline"),
                    "a zero deadline would fail every call".into(),
                );
            }
        }
        for (bname, backend) in &self.backends {
            let b = backend.get_ref();
            if let Some(n) = &b.max_concurrency {
                if *n.get_ref() == 0 {
                    return err(
                        n.span(),
                        format!("backends.{bname}.max_concurrency"),
                        "must be at least 1".into(),
                    );
                }
            } else if b.adaptive_concurrency {
                return err(
                    backend.span(),
                    format!("backends.{bname}.adaptive_concurrency"),
                    "needs max_concurrency (where the limit starts and the most it grows to)"
                        .into(),
                );
            }
        }
        if self.retry.initial_backoff.0 > self.retry.max_backoff.0 {
            return err(
                0..0,
                "retry.initial_backoff".into(),
                "is longer than retry.max_backoff".into(),
            );
        }
        if self.cache.enabled && self.protocol == Protocol::Generic && self.cache.methods.is_empty()
        {
            return err(
                0..0,
                "cache.enabled".into(),
                "the generic protocol has no cache rules; list methods under [cache.methods]"
                    .into(),
            );
        }
        if self.cache.max_mb == 0 || self.cache.max_entries == 0 {
            return err(
                0..0,
                "cache".into(),
                "max_mb and max_entries must be at least 1".into(),
            );
        }
        let rl = &self.rate_limit;
        if http::HeaderName::from_bytes(rl.key_header.get_ref().as_bytes()).is_err() {
            return err(
                rl.key_header.span(),
                "rate_limit.key_header".into(),
                "is not a header name".into(),
            );
        }
        let limit_check = |rate: &Spanned<u32>, burst: &Option<Spanned<u32>>, key: String| {
            if *rate.get_ref() == 0 {
                return err(
                    rate.span(),
                    format!("{key}.rate"),
                    "must be at least 1".into(),
                );
            }
            if let Some(b) = burst {
                if *b.get_ref() == 0 {
                    return err(
                        b.span(),
                        format!("{key}.burst"),
                        "must be at least 1".into(),
                    );
                }
            }
            Ok(())
        };
        if let Some(p) = &rl.per_ip {
            limit_check(&p.rate, &p.burst, "rate_limit.per_ip".into())?;
        }
        for (i, k) in rl.keys.iter().enumerate() {
            limit_check(&k.rate, &k.burst, format!("rate_limit.keys[{i}]"))?;
            if k.key.get_ref().0.is_empty() {
                return err(
                    k.key.span(),
                    format!("rate_limit.keys[{i}].key"),
                    "is empty".into(),
                );
            }
            if rl.keys[..i]
                .iter()
                .any(|o| o.key.get_ref() == k.key.get_ref())
            {
                return err(
                    k.key.span(),
                    format!("rate_limit.keys[{i}].key"),
                    "is listed twice".into(),
                );
            }
        }
        if rl.default_weight == 0 {
            return err(
                0..0,
                "rate_limit.default_weight".into(),
                "must be at least 1".into(),
            );
        }
        for (method, w) in &rl.weights {
            if *w.get_ref() == 0 {
                return err(
                    w.span(),
                    format!("rate_limit.weights.{method}"),
                    "must be at least 1".into(),
                );
            }
        }
        let c = &self.consistency;
        if c.enabled {
            if !self.groups.values().any(|g| g.get_ref().head.is_some()) {
                return err(
                    0..0,
                    "consistency.enabled".into(),
                    "read-your-head needs head tracking: add [groups.NAME.head] to a group".into(),
                );
            }
            if http::HeaderName::from_bytes(c.session_header.get_ref().as_bytes()).is_err() {
                return err(
                    c.session_header.span(),
                    "consistency.session_header".into(),
                    "is not a header name".into(),
                );
            }
        }
        if let Some(level) = &self.log.level {
            if level
                .get_ref()
                .parse::<tracing_subscriber::filter::Targets>()
                .is_err()
            {
                return err(
                    level.span(),
                    "log.level".into(),
                    "is not a filter like `info` or `rpc_failover=debug,info`".into(),
                );
            }
        }
        Ok(())
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
        }
    }
}

fn first_line(message: &str) -> String {
    message.trim().lines().next().unwrap_or("").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let config = Config::from_toml("test.toml", text)?;
        config.validate(&Source {
            file: "test.toml",
            text,
        })?;
        Ok(config)
    }

    fn error(text: &str) -> ConfigError {
        match parse(text) {
            Ok(_) => panic!("should fail:\n{text}"),
            Err(e) => e,
        }
    }

    const ONE: &str = "[backends.a]\nurl = \"http://127.0.0.1:1\"\n";

    #[test]
    fn the_example_file_is_valid_and_documents_every_section() {
        let text = include_str!("../proxy.toml");
        let config = Config::from_toml("proxy.toml", text);
        // Its secrets come from the environment, which the test does not set.
        let err = config.expect_err("PRIMARY_API_KEY is unset in tests");
        assert!(err.message.contains("PRIMARY_API_KEY"), "{err}");
        let text = text
            .replace("${PRIMARY_API_KEY}", "k")
            .replace("${PARTNER_API_KEY}", "p");
        let config = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.groups.len(), 2);
        assert_eq!(config.default_group().as_deref(), Some("main"));
        assert_eq!(config.rate_limit.keys.len(), 1);
        assert!(config.server.cors.is_some());
        for section in [
            "[server]",
            "[server.cors]",
            "[log]",
            "[metrics]",
            "[backends.",
            "[groups.",
            "[routing]",
            "[methods]",
            "[retry]",
            "[cache]",
            "[rate_limit]",
            "[[rate_limit.keys]]",
        ] {
            assert!(text.contains(section), "{section} is not documented");
        }
    }

    #[test]
    fn a_minimal_file_gets_the_documented_defaults() {
        let c = parse(ONE).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8545".parse().unwrap());
        assert_eq!(c.server.request_timeout, Secs(Duration::from_secs(30)));
        assert_eq!(c.retry.max_retries, 3);
        assert!(!c.cache.enabled);
        assert_eq!(c.protocol, Protocol::Ethereum);
        let groups = c.effective_groups();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].0, "default");
        assert_eq!(groups[0].1.failure_threshold, 2);
        assert_eq!(c.default_group().as_deref(), Some("default"));
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let e = error(
            "[server]\nlisten = \"127.0.0.1:0\"\nmax_bodyy = 5\n[backends.a]\nurl = \"http://h\"\n",
        );
        assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");
        assert!(e.message.contains("max_bodyy"), "{e}");
        assert!(e.to_string().starts_with("test.toml:3:"), "{e}");
        let e = error(&format!("{ONE}timeoutt = \"1s\"\n"));
        assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");
        assert!(e.message.contains("timeoutt"), "{e}");
        let e = error(&format!("bogus = 1\n{ONE}"));
        assert!(e.message.contains("bogus"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_key_and_line() {
        let e = error(&format!("{ONE}[server]\nmax_batch = \"many\"\n"));
        assert_eq!(e.key, "server.max_batch", "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(4), "{e}");
        let e = error(&format!("{ONE}[retry]\ninitial_backoff = \"soon\"\n"));
        assert_eq!(e.key, "retry.initial_backoff", "{e}");
        assert!(e.message.contains("soon"), "{e}");
        let e = error(&format!(
            "{ONE}[groups.g]\nmembers = [\"a\"]\nstrategy = \"fastest\"\n"
        ));
        assert_eq!(e.key, "groups.g.strategy", "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(5), "{e}");
        let e = error("[server]\nlisten = \"localhost\"\n");
        assert_eq!(e.key, "server.listen", "{e}");
    }

    #[test]
    fn references_between_sections_are_checked() {
        let two = "[backends.a]\nurl = \"http://h\"\n[backends.b]\nurl = \"http://h\"\n";
        let e = error(two);
        assert_eq!(e.key, "groups", "{e}");
        assert!(e.message.contains("members = [\"a\", \"b\"]"), "{e}");

        let e = error(&format!("{two}[groups.g]\nmembers = [\"a\", \"c\"]\n"));
        assert_eq!(e.key, "groups.g.members[1]", "{e}");
        assert_eq!(e.position, Some((6, 17)), "{e}");
        assert!(e.message.contains("no backend named `c`"), "{e}");

        let e = error(&format!("{two}[groups.g]\nmembers = [\"a\", \"a\"]\n"));
        assert!(e.message.contains("twice"), "{e}");

        let groups = "[groups.g]\nmembers = [\"a\"]\n[groups.h]\nmembers = [\"b\"]\n";
        let e = error(&format!("{two}{groups}"));
        assert_eq!(e.key, "routing.default", "{e}");
        let e = error(&format!("{two}{groups}[routing]\ndefault = \"x\"\n"));
        assert_eq!(
            (e.key.as_str(), e.position.map(|p| p.0)),
            ("routing.default", Some(10)),
            "{e}"
        );
        let e = error(&format!(
            "{two}{groups}[routing]\ndefault = \"g\"\nmethods = {{ \"eth_send*\" = \"nope\" }}\n"
        ));
        assert!(e.key.starts_with("routing.methods"), "{e}");
        assert!(e.message.contains("no group named `nope`"), "{e}");
        let e = error(&format!(
            "{two}{groups}[routing]\ndefault = \"g\"\nmethods = {{ \"eth_*send\" = \"h\" }}\n"
        ));
        assert!(e.message.contains("only allowed at the end"), "{e}");
        let ok = parse(&format!(
            "{two}{groups}[routing]\ndefault = \"g\"\nmethods = {{ \"eth_send*\" = \"h\" }}\n"
        ))
        .unwrap();
        assert_eq!(ok.default_group().as_deref(), Some("g"));
    }

    #[test]
    fn strategies_are_checked() {
        let g = |extra: &str| format!("{ONE}[groups.g]\nmembers = [\"a\"]\n{extra}");
        assert!(error(&g("strategy = \"quorum\"\n"))
            .message
            .contains("quorum = K"));
        assert_eq!(
            error(&g("strategy = \"quorum\"\nquorum = 2\n")).key,
            "groups.g.quorum"
        );
        assert_eq!(error(&g("quorum = 1\n")).key, "groups.g.quorum");
        assert!(error(&g("hedge_delay = \"1s\"\n"))
            .message
            .contains("hedged"));
        assert_eq!(
            error(&g("strategy = \"hedged\"\nhedge_quantile = 1.5\n")).key,
            "groups.g.hedge_quantile"
        );
        parse(&g("strategy = \"hedged\"\nhedge_quantile = 0.9\n")).unwrap();
        parse(&g(
            "strategy = \"quorum\"\nquorum = 1\nquorum_timeout = 2\n",
        ))
        .unwrap();
    }

    #[test]
    fn env_variables_are_expanded_and_missing_ones_reported() {
        let env = |name: &str| (name == "SET").then(|| "value".to_owned());
        assert_eq!(expand_env("a${SET}b", env).unwrap(), "avalueb");
        assert_eq!(expand_env("${UNSET:-dflt}", env).unwrap(), "dflt");
        assert_eq!(expand_env("$${SET} $5", env).unwrap(), "${SET} $5");
        assert!(expand_env("${UNSET}", env)
            .unwrap_err()
            .contains("`UNSET` is not set"));
        assert!(expand_env("${SET", env).unwrap_err().contains("unclosed"));
        assert!(expand_env("${A B}", env)
            .unwrap_err()
            .contains("does not hold a variable name"));

        let text = "# ${IN_A_COMMENT}\n[backends.a]\nurl = \"http://h/${A}/${B:-x}/$${C}\" # ${D}\nkey = '${E}'\n";
        assert_eq!(
            missing_variables(text, |n| (n == "E").then(String::new)),
            vec!["A".to_owned()]
        );
        assert_eq!(
            missing_variables(text, |_| None),
            vec!["A".to_owned(), "E".to_owned()]
        );
        let e = error("[backends.a]\nurl = \"http://h/${RPC_PROXY_TEST_SURELY_UNSET}\"\n");
        assert_eq!(e.key, "backends.a.url", "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(2), "{e}");
        assert!(e.message.contains("RPC_PROXY_TEST_SURELY_UNSET"), "{e}");
        // A secret never reaches Debug output.
        let c = parse("[backends.a]\nurl = \"http://h/${PATH}\"\n").unwrap();
        assert!(!format!("{c:?}").contains(&std::env::var("PATH").unwrap_or_default()));
    }

    #[test]
    fn values_are_range_checked() {
        for (extra, key) in [
            ("[retry]\njitter = 1.5\n", "retry.jitter"),
            (
                "[retry]\ninitial_backoff = \"5s\"\nmax_backoff = \"1s\"\n",
                "retry.initial_backoff",
            ),
            (
                "[rate_limit]\nper_ip = { rate = 0 }\n",
                "rate_limit.per_ip.rate",
            ),
            (
                "[rate_limit]\nweights = { eth_call = 0 }\n",
                "rate_limit.weights.eth_call",
            ),
            (
                "[rate_limit]\nkey_header = \"bad header\"\n",
                "rate_limit.key_header",
            ),
            (
                "[server.cors]\nallow_origins = [\"*\", \"https://a\"]\n",
                "server.cors.allow_origins",
            ),
            (
                "[cache]\nmethods = { eth_call = \"sometimes\" }\n",
                "cache.methods.eth_call",
            ),
            ("[log]\nlevel = \"rpc=loud\"\n", "log.level"),
            ("[server]\nhealth_path = \"health\"\n", "server.health_path"),
            ("[consistency]\nenabled = true\n", "consistency.enabled"),
        ] {
            let e = error(&format!("{ONE}{extra}"));
            assert_eq!(e.key, key, "{extra}: {e}");
        }
    }

    #[test]
    fn head_tracking_and_consistency_are_checked() {
        let e = error(&format!(
            "protocol = \"generic\"\n{ONE}[groups.g]\nmembers = [\"a\"]\n[groups.g.head]\n"
        ));
        assert_eq!(e.key, "groups.g.head", "{e}");
        let e = error(&format!(
            "{ONE}[groups.g]\nmembers = [\"a\"]\nstrategy = \"quorum\"\nquorum = 1\n[groups.g.head]\n"
        ));
        assert_eq!(e.key, "groups.g.head", "{e}");
        let e = error(&format!(
            "{ONE}[groups.g]\nmembers = [\"a\"]\n[groups.g.head]\nmax_lagg = 2\n"
        ));
        assert!(e.message.contains("max_lagg"), "{e}");
        let c = parse(&format!(
            "{ONE}[groups.g]\nmembers = [\"a\"]\n[groups.g.head]\nmax_lag = 5\n[consistency]\nenabled = true\n"
        ))
        .unwrap();
        let head = c.groups["g"]
            .get_ref()
            .head
            .as_ref()
            .expect("head")
            .get_ref()
            .clone();
        assert_eq!(
            (head.max_lag, head.probe_interval),
            (5, Secs(Duration::from_secs(2)))
        );
        assert!(c.consistency.enabled && c.consistency.per_connection);
    }

    #[test]
    fn durations_take_units_or_seconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        for bad in ["", "s", "-1s", "0", "1d", "fast"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let c = parse(&format!("{ONE}[server]\nrequest_timeout = 2.5\n")).unwrap();
        assert_eq!(c.server.request_timeout, Secs(Duration::from_millis(2500)));
    }
}
