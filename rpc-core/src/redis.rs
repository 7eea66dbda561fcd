//! A guarded Redis connection for state shared by replicas (cargo feature
//! `redis`): the rate limiter here, the cache store in `rpc-cache`, the chain
//! view in `rpc-failover`.
//!
//! [`RedisLink`] wraps the `redis` crate's multiplexed
//! [`ConnectionManager`] (one connection
//! per process, pipelined, reconnected in the background) so that **Redis
//! never blocks a request**:
//!
//! * every command has a **deadline** ([`RedisConfig::deadline`], default
//!   10 ms); a late answer is a failure;
//! * a **circuit**: after [`failures_to_open`](RedisConfig::failures_to_open)
//!   failures in a row (default 3) Redis is not asked for
//!   [`open_for`](RedisConfig::open_for) (default 1 s): callers fall back at
//!   once, without waiting for a deadline. Then one call tries again; a
//!   success closes the circuit, a failure opens it again;
//! * the first connection is made in the background: a process starts (and
//!   serves, per-process) while Redis is down, and uses it once it is up;
//! * **metrics**: `rpc_redis_calls_total{op, outcome}` (outcome `ok`,
//!   `error`, `timeout`, `skipped` while the circuit is open),
//!   `rpc_redis_call_seconds{op}` (histogram), `rpc_redis_up` (1 while the
//!   circuit is closed), and `rpc_redis_fallbacks_total{feature}` counted by
//!   the features that fell back; one log line per state change (`warn`
//!   when Redis is lost, `info` when it is back), never one per call.
//!
//! A caller gets [`RedisUnavailable`] and applies its own fallback: the rate
//! limiter its local bucket (or a refusal, if configured fail-closed), the
//! cache a miss, the chain view the process' own.
//!
//! ```no_run
//! use std::time::Duration;
//! use rpc_core::redis::{RedisConfig, RedisLink};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let link = RedisLink::new(
//!     RedisConfig::new("redis://127.0.0.1:6379/0")
//!         .deadline(Duration::from_millis(10))
//!         .prefix("rpc:mainnet:"),
//! )?;
//! // Waits up to the connect timeout for the first connection (optional:
//! // without it the first calls fall back until the link is up).
//! link.connect().await;
//! let pong: Option<String> = link
//!     .run("ping", |mut c| async move { redis::cmd("PING").query_async(&mut c).await })
//!     .await
//!     .ok();
//! # drop(pong); Ok(()) }
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, IntoConnectionInfo, RedisResult};
use tokio::time::Instant;

/// The settings of a [`RedisLink`].
///
/// | setting | default |
/// |---|---|
/// | [`deadline`](Self::deadline) | 10 ms per command |
/// | [`connect_timeout`](Self::connect_timeout) | 1 s |
/// | [`failures_to_open`](Self::failures_to_open) | 3 in a row |
/// | [`open_for`](Self::open_for) | 1 s |
/// | [`prefix`](Self::prefix) | `rpc:` |
/// | [`tls_root_cert`](Self::tls_root_cert) | the system's roots (`rediss://`) |
#[derive(Clone)]
pub struct RedisConfig {
    url: String,
    deadline: Duration,
    connect_timeout: Duration,
    failures_to_open: u32,
    open_for: Duration,
    prefix: String,
    root_cert: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: only its host part is shown.
        f.debug_struct("RedisConfig")
            .field("url", &redacted(&self.url))
            .field("deadline", &self.deadline)
            .field("connect_timeout", &self.connect_timeout)
            .field("failures_to_open", &self.failures_to_open)
            .field("open_for", &self.open_for)
            .field("prefix", &self.prefix)
            .field("root_cert", &self.root_cert.is_some())
            .finish()
    }
}

/// `url` without its user info (`redis://user:secret@host` → `redis://host`).
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl RedisConfig {
    /// A link to `url`: `redis://[user:password@]host:port[/db]`,
    /// `rediss://` for TLS, `redis+unix:///path` for a socket.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            deadline: Duration::from_millis(10),
            connect_timeout: Duration::from_secs(1),
            failures_to_open: 3,
            open_for: Duration::from_secs(1),
            prefix: "rpc:".to_owned(),
            root_cert: None,
        }
    }

    /// For `rediss://`: trust only the CA certificate(s) in `pem` (PEM
    /// text) instead of the system's roots, e.g. a private CA's. Without
    /// it, the system's root certificates are used.
    pub fn tls_root_cert(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_cert = Some(pem.into());
        self
    }

    /// How long one command may take before it counts as failed and the
    /// caller falls back (default 10 ms). This is the most Redis adds to a
    /// call.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = d.max(Duration::from_micros(100));
        self
    }

    /// How long one connection attempt may take (default 1 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d.max(Duration::from_millis(1));
        self
    }

    /// Failures in a row that open the circuit (default 3; at least 1).
    pub fn failures_to_open(mut self, n: u32) -> Self {
        self.failures_to_open = n.max(1);
        self
    }

    /// How long an open circuit stays open before one call tries Redis
    /// again (default 1 s).
    pub fn open_for(mut self, d: Duration) -> Self {
        self.open_for = d;
        self
    }

    /// The prefix of every key this process writes (default `rpc:`): give
    /// each fleet (chain, environment) its own when they share a Redis.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The URL, with any password hidden.
    pub fn url_redacted(&self) -> String {
        redacted(&self.url)
    }
}

/// Redis could not be used for this call: the caller falls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedisUnavailable {
    /// Not connected (yet, or any more).
    #[error("Redis is not connected")]
    NotConnected,
    /// The circuit is open after failures in a row.
    #[error("Redis is skipped after failures in a row (circuit open)")]
    CircuitOpen,
    /// The command did not answer within the deadline.
    #[error("Redis did not answer within the deadline")]
    Timeout,
    /// The command failed (connection lost, script error, ...).
    #[error("Redis command failed")]
    Failed,
}

/// A Redis URL that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("Redis URL `{url}`: {source}")]
pub struct RedisUrlError {
    url: String,
    #[source]
    source: ::redis::RedisError,
}

impl RedisUrlError {
    /// Why the URL cannot be used, without the URL (which may hold a
    /// password).
    pub fn source_message(&self) -> String {
        self.source.to_string()
    }
}

struct Inner {
    client: Client,
    config: RedisConfig,
    conn: RwLock<Option<ConnectionManager>>,
    connecting: AtomicBool,
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which the circuit is open (0: closed).
    open_until: AtomicU64,
    /// Whether the last state logged was "up".
    up: AtomicBool,
    epoch: Instant,
}

/// A guarded, shared Redis connection: clones share it. See the
/// [module docs](self).
#[derive(Clone)]
pub struct RedisLink {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("config", &self.inner.config)
            .field("up", &self.is_up())
            .finish()
    }
}

impl RedisLink {
    /// A link with `config`. Checks the URL; connects later (see
    /// [`connect`](Self::connect)), so a process starts while Redis is down.
    pub fn new(config: RedisConfig) -> Result<Self, RedisUrlError> {
        let info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|source| RedisUrlError {
                url: redacted(&config.url),
                source,
            })?;
        let client = match &config.root_cert {
            Some(pem) => Client::build_with_tls(
                info,
                ::redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => Client::open(info),
        }
        .map_err(|source| RedisUrlError {
            url: redacted(&config.url),
            source,
        })?;
        metrics::gauge!("rpc_redis_up").set(0.0);
        Ok(RedisLink {
            inner: Arc::new(Inner {
                client,
                config,
                conn: RwLock::new(None),
                connecting: AtomicBool::new(false),
                failures: AtomicU32::new(0),
                open_until: AtomicU64::new(0),
                up: AtomicBool::new(false),
                epoch: Instant::now(),
            }),
        })
    }

    /// The prefix of this link's keys.
    pub fn prefix(&self) -> &str {
        &self.inner.config.prefix
    }

    /// The per-command deadline.
    pub fn deadline(&self) -> Duration {
        self.inner.config.deadline
    }

    /// Whether the link is connected and its circuit closed.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Relaxed)
    }

    /// Connects now, waiting up to the connect timeout; `true` when up.
    /// Without it, the first command starts connecting in the background.
    pub async fn connect(&self) -> bool {
        if self.connection().is_some() {
            return true;
        }
        if self.inner.connecting.swap(true, Ordering::AcqRel) {
            return false;
        }
        let ok = connect(self.inner.clone()).await;
        self.inner.connecting.store(false, Ordering::Release);
        ok
    }

    fn connection(&self) -> Option<ConnectionManager> {
        self.inner.conn.read().ok()?.clone()
    }

    fn now_ms(&self) -> u64 {
        self.inner.epoch.elapsed().as_millis() as u64
    }

    /// Runs one command (or pipeline, or script) built by `f` on the shared
    /// connection, within the deadline and the circuit. `op` names it in
    /// the metrics (`get`, `ratelimit`, ...).
    pub async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, RedisUnavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let inner = &self.inner;
        let open_until = inner.open_until.load(Ordering::Relaxed);
        if open_until != 0 {
            let now = self.now_ms();
            if now < open_until {
                metrics::counter!("rpc_redis_calls_total", "op" => op, "outcome" => "skipped")
                    .increment(1);
                return Err(RedisUnavailable::CircuitOpen);
            }
            // Half-open: this call tries; others keep falling back until
            // it answers (it moves the window on).
            let next = now + inner.config.open_for.as_millis() as u64;
            if inner
                .open_until
                .compare_exchange(open_until, next, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                return Err(RedisUnavailable::CircuitOpen);
            }
        }
        let Some(conn) = self.connection() else {
            if !inner.connecting.swap(true, Ordering::AcqRel) {
                let inner = inner.clone();
                tokio::spawn(async move {
                    connect(inner.clone()).await;
                    inner.connecting.store(false, Ordering::Release);
                });
            }
            metrics::counter!("rpc_redis_calls_total", "op" => op, "outcome" => "skipped")
                .increment(1);
            return Err(RedisUnavailable::NotConnected);
        };
        let start = Instant::now();
        let outcome = tokio::time::timeout(inner.config.deadline, f(conn)).await;
        metrics::histogram!("rpc_redis_call_seconds", "op" => op)
            .record(start.elapsed().as_secs_f64());
        match outcome {
            Ok(Ok(v)) => {
                metrics::counter!("rpc_redis_calls_total", "op" => op, "outcome" => "ok")
                    .increment(1);
                self.succeeded();
                Ok(v)
            }
            Ok(Err(e)) => {
                metrics::counter!("rpc_redis_calls_total", "op" => op, "outcome" => "error")
                    .increment(1);
                self.failed(&format!("{op}: {e}"));
                Err(RedisUnavailable::Failed)
            }
            Err(_) => {
                metrics::counter!("rpc_redis_calls_total", "op" => op, "outcome" => "timeout")
                    .increment(1);
                self.failed(&format!(
                    "{op}: no answer within {:?}",
                    inner.config.deadline
                ));
                Err(RedisUnavailable::Timeout)
            }
        }
    }

    fn succeeded(&self) {
        let inner = &self.inner;
        if inner.failures.load(Ordering::Relaxed) != 0 {
            inner.failures.store(0, Ordering::Relaxed);
        }
        if inner.open_until.load(Ordering::Relaxed) != 0 {
            inner.open_until.store(0, Ordering::Relaxed);
        }
        mark_up(inner);
    }

    fn failed(&self, why: &str) {
        let inner = &self.inner;
        let n = inner.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let half_open = inner.open_until.load(Ordering::Relaxed) != 0;
        if n >= inner.config.failures_to_open || half_open {
            let until = self.now_ms() + inner.config.open_for.as_millis() as u64;
            inner.open_until.store(until.max(1), Ordering::Relaxed);
            if inner.up.swap(false, Ordering::AcqRel) {
                metrics::gauge!("rpc_redis_up").set(0.0);
                tracing::warn!(
                    redis = %inner.config.url_redacted(),
                    failures = n,
                    "Redis lost ({why}); falling back to per-process state, retrying every {:?}",
                    inner.config.open_for
                );
            }
        }
    }

    /// Counts a fallback of `feature` (`ratelimit`, `cache`, `chain`) in
    /// `rpc_redis_fallbacks_total`.
    pub fn fell_back(feature: &'static str) {
        metrics::counter!("rpc_redis_fallbacks_total", "feature" => feature).increment(1);
    }
}

fn mark_up(inner: &Inner) {
    if !inner.up.swap(true, Ordering::AcqRel) {
        metrics::gauge!("rpc_redis_up").set(1.0);
        tracing::info!(redis = %inner.config.url_redacted(), "Redis reachable: state is shared");
    }
}

/// Makes the first connection (the manager reconnects on its own after).
async fn connect(inner: Arc<Inner>) -> bool {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(inner.config.connect_timeout))
        .set_response_timeout(Some(inner.config.connect_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    let attempt = tokio::time::timeout(
        inner.config.connect_timeout * 2,
        ConnectionManager::new_with_config(inner.client.clone(), config),
    )
    .await;
    match attempt {
        Ok(Ok(manager)) => {
            if let Ok(mut slot) = inner.conn.write() {
                *slot = Some(manager);
            }
            inner.failures.store(0, Ordering::Relaxed);
            inner.open_until.store(0, Ordering::Relaxed);
            mark_up(&inner);
            true
        }
        failed => {
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no connection within {:?}", inner.config.connect_timeout),
            };
            metrics::counter!("rpc_redis_calls_total", "op" => "connect", "outcome" => "error")
                .increment(1);
            // Counted like a failed command: the circuit keeps callers from
            // starting a connection each.
            let n = inner.failures.fetch_add(1, Ordering::Relaxed) + 1;
            let until =
                inner.epoch.elapsed().as_millis() as u64 + inner.config.open_for.as_millis() as u64;
            inner.open_until.store(until.max(1), Ordering::Relaxed);
            if n == 1 || inner.up.swap(false, Ordering::AcqRel) {
                tracing::warn!(
                    redis = %inner.config.url_redacted(),
                    "Redis unreachable ({why}); per-process state until it is"
                );
            }
            false
        }
    }
}

/// A short, stable identifier of a secret (an API key) for Redis keys: the
/// first 16 bytes of its SHA-256, in hex. The secret itself never leaves
/// the process.
pub fn secret_id(secret: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(secret.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            redacted("redis://user:s3cret@10.0.0.1:6379/0"),
            "redis://10.0.0.1:6379/0"
        );
        assert_eq!(redacted("redis://10.0.0.1:6379"), "redis://10.0.0.1:6379");
        let c = RedisConfig::new("rediss://:pw@cache:6380");
        assert!(!format!("{c:?}").contains("pw"));
    }

    #[test]
    fn a_bad_url_is_refused_with_its_reason() {
        let err = RedisLink::new(RedisConfig::new("http://x:1")).unwrap_err();
        assert!(err.to_string().contains("http://x:1"), "{err}");
    }

    #[test]
    fn secret_ids_are_stable_and_do_not_hold_the_secret() {
        let id = secret_id("k-partner-1");
        assert_eq!(id.len(), 32);
        assert_eq!(id, secret_id("k-partner-1"));
        assert_ne!(id, secret_id("k-partner-2"));
        assert!(!id.contains("partner"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_redis_opens_the_circuit_and_calls_fall_back_at_once() {
        // Nothing listens on port 1.
        let link = RedisLink::new(
            RedisConfig::new("redis://127.0.0.1:1")
                .connect_timeout(Duration::from_millis(50))
                .open_for(Duration::from_secs(1)),
        )
        .unwrap();
        assert!(!link.connect().await);
        assert!(!link.is_up());
        // The failed connect opened the circuit: no wait, no new connect.
        let r: Result<(), _> = link
            .run("ping", |mut c| async move {
                ::redis::cmd("PING").query_async(&mut c).await
            })
            .await;
        assert_eq!(r, Err(RedisUnavailable::CircuitOpen));
    }
}
