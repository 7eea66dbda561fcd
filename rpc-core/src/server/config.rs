use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use super::client_ip::TrustedProxies;
use crate::{ByteBudget, Response};

type HeaderFn = dyn Fn(&Response, &mut HeaderMap) + Send + Sync;

/// Adds HTTP headers from a call's answer (see [`ServerConfig::response_headers`]).
#[derive(Clone)]
pub(crate) struct HeaderHook(pub(crate) Arc<HeaderFn>);

/// Whether the service can take calls now (see [`ServerConfig::readiness`]).
#[derive(Clone)]
pub(crate) struct Readiness(pub(crate) Arc<dyn Fn() -> bool + Send + Sync>);

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Readiness(..)")
    }
}

impl fmt::Debug for HeaderHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HeaderHook(..)")
    }
}

/// Limits and timeouts of the HTTP front. Every setting has a documented
/// default; `ServerConfig::default()` is a sane production start.
///
/// ```
/// use std::time::Duration;
/// use rpc_core::server::ServerConfig;
///
/// let config = ServerConfig::default()
///     .max_body_size(1024 * 1024)
///     .max_batch_len(50)
///     .request_timeout(Duration::from_secs(10));
/// # drop(config);
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub(crate) max_body_bytes: usize,
    pub(crate) max_batch: usize,
    pub(crate) batch_concurrency: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) body_read_timeout: Duration,
    pub(crate) header_read_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) health_path: String,
    pub(crate) readiness: Option<Readiness>,
    pub(crate) max_retry_after: Duration,
    pub(crate) response_headers: Option<HeaderHook>,
    pub(crate) api_key_header: Option<http::HeaderName>,
    pub(crate) api_keys: Option<crate::reload::Reloadable<crate::auth::ApiKeys>>,
    pub(crate) session_header: Option<http::HeaderName>,
    pub(crate) trace_context: bool,
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_connections_per_ip: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) h2_max_concurrent_streams: u32,
    pub(crate) body_budget: ByteBudget,
    pub(crate) trusted_proxies: Arc<TrustedProxies>,
    pub(crate) proxy_protocol: bool,
    #[cfg(feature = "websocket")]
    pub(crate) websocket: Option<super::WsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            max_batch: Self::DEFAULT_MAX_BATCH,
            batch_concurrency: Self::DEFAULT_BATCH_CONCURRENCY,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            body_read_timeout: Self::DEFAULT_BODY_READ_TIMEOUT,
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            shutdown_timeout: Self::DEFAULT_SHUTDOWN_TIMEOUT,
            health_path: "/healthz".to_owned(),
            readiness: None,
            max_retry_after: Self::DEFAULT_MAX_RETRY_AFTER,
            response_headers: None,
            api_key_header: None,
            api_keys: None,
            session_header: None,
            trace_context: false,
            max_connections: None,
            max_connections_per_ip: Self::DEFAULT_MAX_CONNECTIONS_PER_IP,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            h2_max_concurrent_streams: Self::DEFAULT_H2_MAX_CONCURRENT_STREAMS,
            body_budget: ByteBudget::new(Self::DEFAULT_BODY_BUDGET_BYTES),
            trusted_proxies: Arc::new(TrustedProxies::default()),
            proxy_protocol: false,
            #[cfg(feature = "websocket")]
            websocket: Some(super::WsConfig::default()),
        }
    }
}

impl ServerConfig {
    /// Default request body limit: 10 MiB.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
    /// Default cap on the `Retry-After` sent to clients: 30 s.
    pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
    /// Default batch limit: 1 000 calls (viem's `batch: true` sends up to
    /// 1 000).
    pub const DEFAULT_MAX_BATCH: usize = 1_000;
    /// Default bytes of request bodies held at once, all connections
    /// together: 128 MiB.
    pub const DEFAULT_BODY_BUDGET_BYTES: usize = 128 * 1024 * 1024;
    /// Default connections per client address: 512.
    pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 512;
    /// Default time a connection may sit with no request in progress: 60 s.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default streams one h2 connection may have open at once: 32.
    pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 32;
    /// Default number of calls of one batch run at once: 16.
    pub const DEFAULT_BATCH_CONCURRENCY: usize = 16;
    /// Default deadline of each call: 30 s.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default time allowed to receive a request body: 10 s.
    pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default time allowed to receive request headers (HTTP/1.1): 10 s.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default time in-flight calls get to finish on shutdown: 10 s.
    pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

    /// Lets the answer of a single call set HTTP headers, from what layers
    /// left in its extensions (a cache status, the backend that served it).
    /// Not applied to batches (one HTTP response, many answers) nor to
    /// failed calls. Default: none.
    ///
    /// ```
    /// use http::HeaderValue;
    /// use rpc_core::server::ServerConfig;
    /// use rpc_core::ServedBy;
    ///
    /// let config = ServerConfig::default().response_headers(|answer, headers| {
    ///     if let Some(ServedBy(name)) = answer.extensions().get::<ServedBy>() {
    ///         if let Ok(v) = HeaderValue::from_str(name) {
    ///             headers.insert("x-served-by", v);
    ///         }
    ///     }
    /// });
    /// # drop(config);
    /// ```
    pub fn response_headers(
        mut self,
        hook: impl Fn(&Response, &mut HeaderMap) + Send + Sync + 'static,
    ) -> Self {
        self.response_headers = Some(HeaderHook(Arc::new(hook)));
        self
    }

    /// The largest request body accepted, in bytes.
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// The most calls one batch may hold (at least 1).
    pub fn max_batch_len(mut self, calls: usize) -> Self {
        self.max_batch = calls.max(1);
        self
    }

    /// How many calls of one batch run at once (at least 1).
    pub fn batch_concurrency(mut self, calls: usize) -> Self {
        self.batch_concurrency = calls.max(1);
        self
    }

    /// The deadline of each call, from the moment its body was parsed. Put in
    /// the call's extensions as a [`Deadline`](crate::Deadline) for the layers below.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long a client may take to send the body (slow-loris protection).
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// How long an HTTP/1.1 client may take to send the request headers.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How long [`serve`](super::serve) lets in-flight calls finish after the
    /// shutdown signal before closing their connections.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Reads the client's API key from this request header and puts it in
    /// every call's extensions as [`ApiKey`](crate::ApiKey), for layers that
    /// limit or count per key. Default: none (no key is read). A value that is
    /// not visible ASCII, or longer than 256 bytes, is ignored.
    ///
    /// ```
    /// use rpc_core::server::ServerConfig;
    ///
    /// let config = ServerConfig::default().api_key_header(http::HeaderName::from_static("x-api-key"));
    /// # drop(config);
    /// ```
    pub fn api_key_header(mut self, name: http::HeaderName) -> Self {
        self.api_key_header = Some(name);
        self
    }

    /// Requires a known client key on every request (see
    /// [`auth`](crate::auth)): from the [API-key header](Self::api_key_header)
    /// or the path ([`ApiKeys::path_prefix`](crate::auth::ApiKeys::path_prefix)).
    /// A missing (unless public access is on) or unknown key gets HTTP 401
    /// and `-32012` before the body is read; a known key's calls carry its
    /// id as [`ApiKey`](crate::ApiKey), never the secret. Default: none (the
    /// header's value, if any, is passed on as the key).
    ///
    /// ```
    /// use rpc_core::auth::ApiKeys;
    /// use rpc_core::server::ServerConfig;
    ///
    /// let config = ServerConfig::default()
    ///     .api_key_header(http::HeaderName::from_static("x-api-key"))
    ///     .api_keys(ApiKeys::new().key("partner-1", "s3cret").path_prefix("/v1/"));
    /// # drop(config);
    /// ```
    pub fn api_keys(self, keys: crate::auth::ApiKeys) -> Self {
        self.api_keys_from(crate::reload::reloadable(keys).0)
    }

    /// [`api_keys`](Self::api_keys) read through a [`Reloadable`](crate::reload::Reloadable):
    /// the keys can be replaced while serving (its
    /// [`ReloadHandle`](crate::reload::ReloadHandle)); each request is
    /// checked against the keys current when it arrives.
    pub fn api_keys_from(mut self, keys: crate::reload::Reloadable<crate::auth::ApiKeys>) -> Self {
        self.api_keys = Some(keys);
        self
    }

    /// Reads a client-chosen session name from this request header and puts
    /// it in every call's extensions as [`SessionId`](crate::SessionId), so
    /// a read-your-head layer can keep a session's view of the chain across
    /// connections. Default: none. Values that are not visible ASCII, or
    /// longer than 128 bytes, are ignored.
    pub fn session_header(mut self, name: http::HeaderName) -> Self {
        self.session_header = Some(name);
        self
    }

    /// Reads the client's W3C trace context (`traceparent`, `tracestate`)
    /// into each call ([`TraceContext`](crate::TraceContext)), which
    /// `HttpBackend` sends on to the backend (default off).
    pub fn trace_context(mut self, on: bool) -> Self {
        self.trace_context = on;
        self
    }

    /// The health-check path answered to `GET` (default `/healthz`).
    pub fn health_path(mut self, path: impl Into<String>) -> Self {
        self.health_path = path.into();
        self
    }

    /// Makes the health path a readiness check: `200 {"status":"ok"}` while
    /// `ready()` says so, `503 {"status":"unavailable"}` otherwise, so a load
    /// balancer takes the replica out while it cannot serve (e.g. no member
    /// of its default group can take a call). Default: always ready (the
    /// path then only says the process answers). Called on every health
    /// request: keep it cheap.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use rpc_core::server::ServerConfig;
    ///
    /// let up = Arc::new(AtomicBool::new(true));
    /// let flag = up.clone();
    /// let config = ServerConfig::default().readiness(move || flag.load(Ordering::Relaxed));
    /// # drop(config);
    /// ```
    pub fn readiness(mut self, ready: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.readiness = Some(Readiness(Arc::new(ready)));
        self
    }

    /// The most client connections open at once (default: half the
    /// process's open-file limit, at most 10 000, at least 64; the other
    /// half is left for backend connections and files). See the
    /// [module](super) for what happens at the cap.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n.max(1));
        self
    }

    /// The most connections one client address may have open (default
    /// 512; trusted proxies are exempt).
    pub fn max_connections_per_ip(mut self, n: usize) -> Self {
        self.max_connections_per_ip = n.max(1);
        self
    }

    /// How long a connection may stay open with no request in progress
    /// (default 60 s), HTTP/1.1 keep-alive and h2 alike.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Streams one h2 connection may have open at once (default 32).
    pub fn h2_max_concurrent_streams(mut self, n: u32) -> Self {
        self.h2_max_concurrent_streams = n.max(1);
        self
    }

    /// The budget request bodies are read into, shared by every connection
    /// (default 128 MiB of its own). The first 64 KiB of each body are not
    /// counted, so ordinary calls are never turned away by bulk ones; a body
    /// that cannot get its bytes is answered `503`, `-32005`. Share one [`ByteBudget`] with the
    /// backends' answers (`HttpBackendBuilder::response_budget`) to bound
    /// both together.
    pub fn body_budget(mut self, budget: ByteBudget) -> Self {
        self.body_budget = budget;
        self
    }

    /// Proxies (load balancers) whose `Forwarded` / `X-Forwarded-For`
    /// headers name the client (default: none; every client is its TCP
    /// peer). See [`TrustedProxies::client`].
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = Arc::new(proxies);
        self
    }

    /// Connections from [trusted proxies](Self::trusted_proxies) start with
    /// a PROXY protocol header (HAProxy's v1 or v2), whose source address is
    /// the client (default: off). Such a connection without a valid header
    /// within the header timeout is closed; connections from anyone else
    /// are read as plain HTTP.
    pub fn proxy_protocol(mut self, on: bool) -> Self {
        self.proxy_protocol = on;
        self
    }

    /// The connection cap in effect (the configured one, or the default
    /// from the open-file limit).
    pub fn effective_max_connections(&self) -> usize {
        self.max_connections.unwrap_or_else(default_max_connections)
    }

    /// The longest `Retry-After` sent to a client (default 30 s): a
    /// backend's own `Retry-After` (one provider asking for an hour) is
    /// clamped to it.
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.max_retry_after = d;
        self
    }
}

/// Half the soft open-file limit (Linux: from `/proc/self/limits`),
/// clamped to 64..=10 000; 10 000 where the limit cannot be read.
fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<usize>().ok())
        });
    match soft {
        Some(n) => (n / 2).clamp(64, 10_000),
        None => 10_000,
    }
}

#[cfg(feature = "websocket")]
impl ServerConfig {
    /// Serves JSON-RPC over WebSocket on the same listener with these
    /// limits (HTTP/1.1 upgrade on any path); on by default with
    /// [`WsConfig::default`](super::WsConfig::default).
    pub fn websocket(mut self, config: super::WsConfig) -> Self {
        self.websocket = Some(config);
        self
    }

    /// The WebSocket settings, when upgrades are served.
    pub fn websocket_config(&self) -> Option<&super::WsConfig> {
        self.websocket.as_ref()
    }

    /// Refuses WebSocket upgrades (405, as without the feature).
    pub fn without_websocket(mut self) -> Self {
        self.websocket = None;
        self
    }
}
