use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use crate::Response;

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
    pub(crate) session_header: Option<http::HeaderName>,
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
            session_header: None,
        }
    }
}

impl ServerConfig {
    /// Default request body limit: 10 MiB.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
    /// Default cap on the `Retry-After` sent to clients: 30 s.
    pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
    /// Default batch limit: 100 calls.
    pub const DEFAULT_MAX_BATCH: usize = 100;
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

    /// Reads a client-chosen session name from this request header and puts
    /// it in every call's extensions as [`SessionId`](crate::SessionId), so
    /// a read-your-head layer can keep a session's view of the chain across
    /// connections. Default: none. Values that are not visible ASCII, or
    /// longer than 128 bytes, are ignored.
    pub fn session_header(mut self, name: http::HeaderName) -> Self {
        self.session_header = Some(name);
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

    /// The longest `Retry-After` sent to a client (default 30 s): a
    /// backend's own `Retry-After` (one provider asking for an hour) is
    /// clamped to it.
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.max_retry_after = d;
        self
    }
}
