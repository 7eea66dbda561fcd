//! A named JSON-RPC backend reached over HTTP(S).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, StatusCode, Uri};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;
use tower::Service;

use crate::batch::{Batch, BatchAnswers, BatchGroup, BatchItem};
use crate::body::{read_body, Budget, ReadError};
use crate::budget::HeldBytes;
use crate::parse::parse_response_to;
use crate::{BuildError, ByteBudget, BytePermit};
use crate::{Id, Payload, RawJson, Request, Response, RpcError, ServedBy};

/// A JSON-RPC backend over HTTP or HTTPS: a [`JsonRpcService`](crate::JsonRpcService)
/// on pooled keep-alive connections (HTTP/1.1, each exchange written and
/// read by the calling task; or one HTTP/2 connection on hyper when the
/// server offers it by ALPN) with rustls (no OpenSSL).
///
/// HTTP/1.1 answers may be sized by `Content-Length`, chunked, or end with
/// the connection; a head is at most 64 KiB and 100 fields. A connection
/// goes back to the pool only when its answer was read to the end and the
/// server keeps it open; a pooled one is checked for a close before use.
///
/// Every call has a deadline (the backend's timeout, or the request's
/// [`Deadline`](crate::Deadline) if sooner) and a response size limit. Failures map to
/// [`RpcError`]: a refused connection is `Connect` (not sent), a non-2xx status
/// is `HttpStatus` (with `Retry-After`), a body that is not a JSON-RPC answer to
/// this call is `InvalidResponse`. A JSON-RPC error object from the backend is a
/// successful [`Response`].
///
/// On the wire each call gets the backend's own numeric id, and the client's id is
/// restored on the answer, so odd client ids (`1.0`, long strings) never reach
/// the backend and an answer to another call is caught.
///
/// The backend is referred to by its name in errors and logs; its URL, which
/// may carry an API key, is never shown.
///
/// ```no_run
/// use std::time::Duration;
/// use rpc_core::{HttpBackend, Request};
/// use tower::ServiceExt;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = HttpBackend::builder("alchemy", "https://eth-mainnet.example/v2/KEY")
///     .timeout(Duration::from_secs(5))
///     .header("x-client", "my-app")?
///     .build()?;
/// let resp = backend.oneshot(Request::new("eth_chainId").with_id(1u64.into())).await?;
/// println!("{:?}", resp.result_json());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HttpBackend {
    inner: Arc<Inner>,
}

mod h1;
mod pool;
mod replies;

/// The hasher of maps keyed by this process's own numbers (batch keys, wire
/// ids): nothing a client chooses, so a fast one.
type FastHash = foldhash::fast::FixedState;

struct Inner {
    name: Arc<str>,
    timeout: Duration,
    max_response_bytes: usize,
    response_budget: Option<ByteBudget>,
    pool: Arc<pool::Pool>,
    next_id: AtomicU64,
    /// Upstream batching (`max_batch` > 1).
    batching: Option<Batching>,
    /// The histogram of upstream batch sizes, registered on first use.
    batch_sizes: std::sync::OnceLock<metrics::Histogram>,
}

/// The calls of client batches waiting to be sent as upstream batches.
struct Batching {
    /// Calls per upstream batch now (halved when a batch is refused).
    max: AtomicUsize,
    window: Duration,
    /// How single calls (not of a client batch) gather to go upstream
    /// together; `None`: each is sent at once.
    singles: Option<CrossClient>,
    /// By client batch ([`BatchGroup::key`], or [`SINGLES`] for single
    /// calls gathered across clients): the batch being gathered (numbered,
    /// so a flush meant for one sent when full does not take the next), and
    /// the room for its answers.
    open: Mutex<HashMap<usize, Open, FastHash>>,
    next: AtomicU64,
}

/// The key of the upstream batch that single calls from any client gather
/// in ([`HttpBackendBuilder::cross_client_batching`]): never a
/// [`BatchGroup::key`], which is an address.
const SINGLES: usize = usize::MAX;

/// The answer slots made for a gathering of single calls at first.
const SINGLES_ROOM: usize = 16;

/// How single calls from different clients are gathered into upstream
/// batches ([`HttpBackendBuilder::cross_client_batching`]).
///
/// Measured against an instant upstream on the same core
/// (BENCHMARKS.md, `eth_blockNumber`, three interleaved rounds): at 64
/// connections, [`SameTurn`](Self::SameTurn) served 2.5 × the calls per
/// second of no gathering (19 calls per upstream request), with
/// p50 2.4 → 0.9 ms and CPU per call 25 → 14 µs; at 4 connections it cost
/// nothing measurable (p50 about 150 µs either way). A 2 ms
/// [`Window`](Self::Window) won only at 256 connections and made every
/// call at 4 connections 3 ms slower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrossClient {
    /// Each single call is sent at once (the default).
    Off,
    /// The calls that reach the backend in the same turn of the runtime:
    /// the first call's batch is sent once every task that was ready has
    /// run and the network has been polled once more. No timer: nothing
    /// waits when nothing else is ready.
    SameTurn,
    /// The calls that reach the backend within this window of the first
    /// (after the same turn). tokio's timers tick in milliseconds, so a
    /// window is at least about 1 ms: every call waits that long unless
    /// its batch fills first.
    Window(Duration),
}

/// An answer as a batch delivers it: its payload, and the bytes it holds.
type Delivered = Result<(Payload, Option<Arc<BytePermit>>), RpcError>;

/// An upstream batch being gathered: its number, its calls, and the slots
/// of their answers (made for the client batch's calls, up to a full
/// upstream batch, in one allocation).
type Open = (u64, Vec<Queued>, Arc<replies::Slots<Delivered>>);

/// A call waiting in an upstream batch.
struct Queued {
    id: u64,
    /// The call itself, written straight into the upstream body when the
    /// batch is sent (no frame of its own in between).
    req: Request,
    reply: replies::Reply<Delivered>,
    /// Its place in its client batch (`None`: a single call gathered with
    /// other clients' calls).
    item: Option<BatchItem>,
    /// When the call reached the backend, and when it must be answered:
    /// the batch's task keeps every call's deadline with one timer.
    started: Instant,
    deadline: Instant,
}

impl Queued {
    /// The call as sent, under its wire id.
    fn write(&self, out: &mut Vec<u8>) {
        let mut wire = itoa::Buffer::new();
        self.req
            .write_json_with(Some(wire.format(self.id).as_bytes()), out);
    }

    /// The length [`write`](Self::write) writes (exact unless the method
    /// name needs escaping).
    fn encoded_len(&self) -> usize {
        let mut wire = itoa::Buffer::new();
        self.req
            .encoded_len_with(Some(wire.format(self.id).as_bytes()))
    }

    /// The client's trace context (one client batch has one: its HTTP
    /// request's).
    fn trace(&self) -> Option<&crate::TraceContext> {
        self.req.extensions().get::<crate::TraceContext>()
    }

    /// Fails the call as part of a whole batch that failed: it will be
    /// on its way again (failover) with its batch-mates.
    fn fail_with_batch(self, e: RpcError) {
        if let Some(item) = &self.item {
            item.unsettle();
        }
        self.reply.send(Err(e));
    }

    /// Answers the call with a timeout: as part of its batch while the
    /// call has time left for another backend (the backend's own timeout
    /// passed), else alone (the call's deadline passed: it goes nowhere).
    fn time_out(self, backend: &Arc<str>) {
        let e = RpcError::Timeout {
            backend: Some(backend.clone()),
            elapsed: self.started.elapsed(),
        };
        if self.req.deadline().is_some_and(|d| d <= Instant::now()) {
            self.reply.send(Err(e));
        } else {
            self.fail_with_batch(e);
        }
    }
}

impl fmt::Debug for HttpBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL is left out on purpose: it may hold an API key.
        f.debug_struct("HttpBackend")
            .field("name", &self.inner.name)
            .field("timeout", &self.inner.timeout)
            .field("max_response_bytes", &self.inner.max_response_bytes)
            .finish_non_exhaustive()
    }
}

impl HttpBackend {
    /// Starts a builder for a backend called `name` at `url`
    /// (`http://` or `https://`; `user:password@` in the URL becomes basic auth).
    pub fn builder(name: impl Into<Arc<str>>, url: impl Into<String>) -> HttpBackendBuilder {
        HttpBackendBuilder {
            name: name.into(),
            url: url.into(),
            timeout: HttpBackendBuilder::DEFAULT_TIMEOUT,
            connect_timeout: HttpBackendBuilder::DEFAULT_CONNECT_TIMEOUT,
            max_response_bytes: HttpBackendBuilder::DEFAULT_MAX_RESPONSE_BYTES,
            response_budget: None,
            pool_idle_timeout: HttpBackendBuilder::DEFAULT_POOL_IDLE_TIMEOUT,
            pool_max_idle_per_host: HttpBackendBuilder::DEFAULT_POOL_MAX_IDLE_PER_HOST,
            headers: HeaderMap::new(),
            basic_auth: None,
            tls: None,
            max_batch: HttpBackendBuilder::DEFAULT_MAX_BATCH,
            batch_window: HttpBackendBuilder::DEFAULT_BATCH_WINDOW,
            cross_client: CrossClient::Off,
        }
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
}

impl crate::Named for HttpBackend {
    fn name(&self) -> &str {
        &self.inner.name
    }
}

/// Builds an [`HttpBackend`]. Every setting has a documented default.
#[must_use]
pub struct HttpBackendBuilder {
    name: Arc<str>,
    url: String,
    timeout: Duration,
    connect_timeout: Duration,
    max_response_bytes: usize,
    response_budget: Option<ByteBudget>,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
    headers: HeaderMap,
    basic_auth: Option<(String, String)>,
    tls: Option<rustls::ClientConfig>,
    max_batch: usize,
    batch_window: Duration,
    cross_client: CrossClient,
}

impl fmt::Debug for HttpBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpBackendBuilder")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpBackendBuilder {
    /// Default for [`timeout`](Self::timeout): 10 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default for [`connect_timeout`](Self::connect_timeout): 3 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
    /// Default for [`max_response_size`](Self::max_response_size): 128 MiB
    /// (a wide `eth_getLogs` answer reaches tens of MiB; bound many of them
    /// together with [`response_budget`](Self::response_budget)).
    pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 128 * 1024 * 1024;
    /// Default for [`pool_idle_timeout`](Self::pool_idle_timeout): 90 s.
    pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
    /// Default for [`pool_max_idle_per_host`](Self::pool_max_idle_per_host):
    /// 1 024. Idle connections exist only after that many calls were in
    /// flight at once; with fewer kept than the concurrency, every call past
    /// the limit opens a new connection (and leaves a socket in TIME_WAIT):
    /// measured at 256 concurrent calls, a 64-connection pool opened one
    /// connection per five calls and doubled the CPU per call.
    pub const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 1024;
    /// Default for [`max_batch`](Self::max_batch): 100 calls. geth, reth
    /// and erigon accept 1 000 per batch; hosted providers commonly cap
    /// batches at 100 or fewer (or bill them per call anyway), so 100 is
    /// accepted nearly everywhere while cutting a large client batch to a
    /// few requests.
    pub const DEFAULT_MAX_BATCH: usize = 100;
    /// Default for [`batch_window`](Self::batch_window): 2 ms.
    pub const DEFAULT_BATCH_WINDOW: Duration = Duration::from_millis(2);

    /// Calls of one client batch sent to this backend as one upstream
    /// batch, at most (default 100; 1 sends every call alone). The calls
    /// still pass every layer one by one (retry, failover, cache, metrics);
    /// only the HTTP request is shared. Answers are matched by the
    /// backend's own wire ids, so out-of-order items are fine; an item
    /// missing from the answer fails alone with
    /// [`RpcError::InvalidResponse`] (maybe sent: the retry layer retries
    /// it where the method is safe to repeat). A backend that refuses a
    /// batch outright (one error object, a 4xx, an answer over the size
    /// limit) gets the calls one by one instead, and later batches half as
    /// large.
    pub fn max_batch(mut self, calls: usize) -> Self {
        self.max_batch = calls.max(1);
        self
    }

    /// The longest the calls of one client batch wait for each other
    /// before being sent (default 2 ms). They are normally sent at once —
    /// when every call of the batch in flight has reached a backend or
    /// been answered; the window only bounds a call held elsewhere (a
    /// concurrency queue, the cache waiting for an identical call).
    pub fn batch_window(mut self, window: Duration) -> Self {
        self.batch_window = window;
        self
    }

    /// Single calls — not part of a client batch, from any client — that
    /// reach this backend together are sent upstream as one batch of up to
    /// [`max_batch`](Self::max_batch) calls (default: [`CrossClient::Off`],
    /// each single call is sent at once). [`CrossClient::SameTurn`]
    /// gathers the calls that arrive in the same turn of the runtime
    /// (no timer); [`CrossClient::Window`] waits a while for more. A full
    /// batch goes at once. Each call is answered from the batch as a call
    /// of a client batch is: its own answer matched by wire id, its own
    /// deadline, a refused batch sent again call by call. For a provider
    /// that bills or limits by HTTP request, and to spend less CPU per
    /// call under load. One client's trace context goes with the whole
    /// upstream request. No effect with `max_batch(1)`; a zero
    /// [`CrossClient::Window`] is [`CrossClient::SameTurn`].
    ///
    /// ```
    /// use rpc_core::{CrossClient, HttpBackend};
    ///
    /// let backend = HttpBackend::builder("node", "http://127.0.0.1:8545")
    ///     .cross_client_batching(CrossClient::SameTurn)
    ///     .build()?;
    /// # drop(backend);
    /// # Ok::<(), rpc_core::BuildError>(())
    /// ```
    pub fn cross_client_batching(mut self, mode: CrossClient) -> Self {
        self.cross_client = match mode {
            CrossClient::Window(w) if w.is_zero() => CrossClient::SameTurn,
            mode => mode,
        };
        self
    }

    /// The longest a call may take, from sending to the last byte of the answer.
    /// A request's own [`Deadline`](crate::Deadline) shortens it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest a TCP connect may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The largest response body accepted; a larger one fails the call with
    /// [`RpcError::ResponseTooLarge`] (`-32020`), which does not count
    /// against the backend: it answered, the answer is just more than this
    /// deployment takes.
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Reads answers into a shared [`ByteBudget`] (default: none): an answer
    /// holds its bytes until it is dropped, and reading waits (under the
    /// call's deadline) while the budget is full, so the kernel's flow
    /// control holds the rest back instead of memory. Share one budget with
    /// every backend, and with the front's request bodies
    /// (`ServerConfig::body_budget`), to bound them all together.
    pub fn response_budget(mut self, budget: ByteBudget) -> Self {
        self.response_budget = Some(budget);
        self
    }

    /// How long an idle pooled connection is kept (closed after, by a
    /// sweep every half of it).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// How many idle HTTP/1.1 connections are kept (the backend has one
    /// host: this is its pool's size). An HTTP/2 backend uses one connection.
    pub fn pool_max_idle_per_host(mut self, n: usize) -> Self {
        self.pool_max_idle_per_host = n;
        self
    }

    /// Adds a header sent with every call (an API key header, for example).
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, BuildError> {
        crate::userinfo::add_header(&mut self.headers, &self.name, name, value)?;
        Ok(self)
    }

    /// Sends HTTP basic auth with every call.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic_auth = Some((user.into(), password.into()));
        self
    }

    /// Uses this rustls configuration for `https://` (custom roots, client
    /// certificates). Default: the Mozilla roots from `webpki-roots`, ring.
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Builds the backend. Needs no runtime; connections open on first use.
    pub fn build(self) -> Result<HttpBackend, BuildError> {
        if self.name.trim().is_empty() {
            return Err(BuildError::EmptyName);
        }
        let name = self.name;
        let invalid = |reason| BuildError::InvalidUrl {
            backend: name.clone(),
            reason,
        };
        let uri: Uri = self
            .url
            .trim()
            .parse()
            .map_err(|_| invalid("not a valid URL"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            Some(_) => return Err(invalid("the scheme must be http or https")),
            None => return Err(invalid("missing http:// or https://")),
        }
        let authority = uri.authority().ok_or_else(|| invalid("missing host"))?;
        if authority.host().is_empty() {
            return Err(invalid("missing host"));
        }
        // `http::Uri` keeps any digits as the port; a connect would fail later.
        let host_port = authority
            .as_str()
            .rsplit_once('@')
            .map_or(authority.as_str(), |(_, h)| h);
        if let Some(port) = host_port.rsplit_once(':').map(|(_, p)| p) {
            if !port.contains(']') && !port.is_empty() && port.parse::<u16>().is_err() {
                return Err(invalid("the port is not a number from 0 to 65535"));
            }
        }

        let mut headers = self.headers;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // `user:password@` in the URL: move it to a header and out of the URI.
        let (uri, userinfo) = crate::userinfo::split(&uri).map_err(|_| invalid("invalid host"))?;
        if let Some((user, password)) = self.basic_auth.or(userinfo) {
            let mut value = HeaderValue::from_str(&crate::userinfo::basic(&user, &password))
                .map_err(|_| invalid("invalid credentials"))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(self.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let tls_error = |e: rustls::Error| BuildError::Tls {
            backend: name.clone(),
            reason: e.to_string(),
        };
        let connector = match self.tls {
            Some(config) => HttpsConnectorBuilder::new().with_tls_config(config),
            None => HttpsConnectorBuilder::new()
                .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
                .map_err(tls_error)?,
        }
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);

        let pool = pool::Pool::new(
            connector,
            pool::Target::new(uri, headers),
            self.connect_timeout,
            self.pool_idle_timeout,
            self.pool_max_idle_per_host,
        );

        Ok(HttpBackend {
            inner: Arc::new(Inner {
                name,
                timeout: self.timeout,
                max_response_bytes: self.max_response_bytes,
                response_budget: self.response_budget,
                pool,
                next_id: AtomicU64::new(1),
                batching: (self.max_batch > 1).then(|| Batching {
                    max: AtomicUsize::new(self.max_batch),
                    window: self.batch_window,
                    singles: (self.cross_client != CrossClient::Off).then_some(self.cross_client),
                    open: Mutex::new(HashMap::default()),
                    next: AtomicU64::new(0),
                }),
                batch_sizes: std::sync::OnceLock::new(),
            }),
        })
    }
}

impl Service<Request> for HttpBackend {
    type Response = Response;
    type Error = RpcError;
    type Future = crate::BoxedResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The pool has no fixed capacity; bound concurrency with a layer
        // (`tower::limit::ConcurrencyLimitLayer`) where a backend needs it.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // One allocation per call for the future; the path is chosen here,
        // so each future is only as large as its own path (a future is
        // copied into its box: size is instructions).
        let inner = self.inner.clone();
        let started = Instant::now();
        let deadline = match inner.deadline(&req, started) {
            Ok(deadline) => deadline,
            Err(e) => return crate::BoxedResponseFuture::new(std::future::ready(Err(e))),
        };
        if let Some(batching) = &inner.batching {
            if !req.is_notification() && batching.max.load(Ordering::Relaxed) > 1 {
                let item = req.extensions().get::<BatchItem>().cloned();
                if item.is_some() || batching.singles.is_some() {
                    return crate::BoxedResponseFuture::new(
                        inner.batched(req, item, started, deadline),
                    );
                }
            }
        }
        crate::BoxedResponseFuture::new(inner.timed_call(req, started, deadline))
    }
}

impl Service<Batch> for HttpBackend {
    type Response = BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = crate::batch::BoxedBatchFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    /// A batch that reached the backend whole goes upstream at once, as
    /// batches of at most [`max_batch`](HttpBackendBuilder::max_batch)
    /// calls (nothing to gather: the calls are all here); each call is
    /// answered as a gathered one would be, by its own deadline. Without
    /// upstream batching the calls go one by one, at once.
    fn call(&mut self, batch: Batch) -> Self::Future {
        let inner = self.inner.clone();
        match &inner.batching {
            Some(b) if b.max.load(Ordering::Relaxed) > 1 && batch.len() > 1 => {
                crate::batch::BoxedBatchFuture::new(inner.whole(batch))
            }
            _ => crate::batch::BoxedBatchFuture::new(crate::batch::per_call(self.clone(), batch)),
        }
    }
}

impl Inner {
    /// A client batch that reached the backend whole: see
    /// `Service<Batch> for HttpBackend`.
    async fn whole(self: Arc<Self>, batch: Batch) -> BatchAnswers {
        let max = self
            .batching
            .as_ref()
            .map_or(1, |b| b.max.load(Ordering::Relaxed))
            .max(1);
        let started = Instant::now();
        let n = batch.len();
        let mut answers: BatchAnswers = (0..n).map(|_| None).collect();
        let slots = replies::replies(n);
        let mut waiting = Vec::with_capacity(n);
        let mut queued = Vec::with_capacity(n);
        let mut alone = Vec::new();
        // Consecutive wire ids, taken at once: the answers are matched by
        // place (see `send_batch`).
        let calls = batch
            .calls()
            .iter()
            .filter(|c| !c.is_notification())
            .count() as u64;
        let mut wire = self.next_id.fetch_add(calls, Ordering::Relaxed);
        for (index, req) in batch.into_calls().into_iter().enumerate() {
            let deadline = match self.deadline(&req, started) {
                Ok(deadline) => deadline,
                Err(e) => {
                    answers[index] = Some(Err(e));
                    continue;
                }
            };
            // A notification owes no answer: it cannot share a batch.
            if req.is_notification() {
                alone.push((index, req, deadline));
                continue;
            }
            let (reply, answer) = slots.pair(index);
            waiting.push((index, req.id().cloned().unwrap_or(Id::Null), answer));
            let id = wire;
            wire += 1;
            queued.push(Queued {
                id,
                req,
                reply,
                item: None,
                started,
                deadline,
            });
        }
        let sent = async {
            if queued.len() <= max {
                // One upstream batch (the common case): no list of them.
                if !queued.is_empty() {
                    self.clone().send_batch(queued).await;
                }
                return;
            }
            let mut chunks = Vec::with_capacity(queued.len().div_ceil(max));
            while queued.len() > max {
                let rest = queued.split_off(max);
                chunks.push(std::mem::replace(&mut queued, rest));
            }
            chunks.push(queued);
            futures_util::future::join_all(
                chunks
                    .into_iter()
                    .map(|chunk| self.clone().send_batch(chunk)),
            )
            .await;
        };
        if alone.is_empty() {
            sent.await;
        } else {
            let notified =
                futures_util::future::join_all(alone.into_iter().map(|(index, req, deadline)| {
                    let this = self.clone();
                    async move { (index, this.timed_call(req, started, deadline).await) }
                }));
            let ((), notified) = futures_util::future::join(sent, notified).await;
            for (index, answer) in notified {
                answers[index] = Some(answer);
            }
        }
        // Every call of a sent batch has its answer by now.
        for (index, client_id, answer) in waiting {
            answers[index] = Some(self.answer_of(client_id, answer.await));
        }
        answers
    }

    /// A queued call's answer as the caller gets it: under the client's
    /// id, with the backend's name and the bytes it holds.
    fn answer_of(
        &self,
        client_id: Id,
        delivered: Result<Delivered, replies::Closed>,
    ) -> Result<Response, RpcError> {
        let (payload, held) = delivered.unwrap_or_else(|_| {
            Err(RpcError::Internal(
                "an upstream batch was dropped".to_owned(),
            ))
        })?;
        let mut resp = Response::new(client_id, payload);
        resp.extensions_mut().insert(ServedBy(self.name.clone()));
        if let Some(held) = held {
            resp.extensions_mut().insert(HeldBytes(held));
        }
        Ok(resp)
    }

    /// When this call must be answered: the backend's timeout, or the
    /// request's deadline if sooner (already passed: not sent).
    fn deadline(&self, req: &Request, started: Instant) -> Result<Instant, RpcError> {
        let deadline = started + self.timeout;
        match req.deadline() {
            Some(call_deadline) if call_deadline <= started => Err(RpcError::DeadlineExceeded),
            Some(call_deadline) => Ok(deadline.min(call_deadline)),
            None => Ok(deadline),
        }
    }

    /// A single call, under `deadline`: one boxed future of the exchange
    /// under a `Timeout`, whose timeout is turned into the backend's error
    /// outside it (the future is boxed per call, and its size is copied:
    /// kept under glibc's per-thread cache limit).
    fn timed_call(
        self: Arc<Self>,
        req: Request,
        started: Instant,
        deadline: Instant,
    ) -> impl std::future::Future<Output = Result<Response, RpcError>> + Send {
        let wire_id =
            (!req.is_notification()).then(|| self.next_id.fetch_add(1, Ordering::Relaxed));
        let this = self.clone();
        futures_util::FutureExt::map(
            tokio::time::timeout_at(deadline, self.call(req, wire_id)),
            move |answered| {
                answered.unwrap_or_else(|_| {
                    Err(RpcError::Timeout {
                        backend: Some(this.name.clone()),
                        elapsed: started.elapsed(),
                    })
                })
            },
        )
    }

    // An `async move` block, not an `async fn`: an `async fn` keeps its
    // arguments twice in its future, which is boxed per call.
    #[allow(clippy::manual_async_fn)]
    fn call(
        self: Arc<Self>,
        req: Request,
        wire_id: Option<u64>,
    ) -> impl std::future::Future<Output = Result<Response, RpcError>> + Send {
        async move {
            // Formatted on the stack, not as an `Id` (an allocation per call).
            let mut wire = itoa::Buffer::new();
            let wire_id = wire_id.map(|n| wire.format(n).as_bytes());
            let (status, bytes, held) = {
                let mut body = Vec::with_capacity(req.encoded_len_with(wire_id));
                req.write_json_with(wire_id, &mut body);
                self.post(body, req.extensions().get::<crate::TraceContext>())
            }
            .await?;
            let payload = match wire_id {
                Some(wire_id) => self.parse_one(status, &bytes, wire_id)?,
                // A notification: the backend owes no answer; any 2xx will do.
                None if status.is_success() => Payload::Result(RawJson::NULL),
                None => return Err(self.status_error(status, None)),
            };
            let id = req.id().cloned().unwrap_or(Id::Null);
            let mut resp = Response::new(id, payload);
            resp.extensions_mut().insert(ServedBy(self.name.clone()));
            // A notification's answer holds nothing.
            if let (Some(held), Some(_)) = (held, wire_id) {
                resp.extensions_mut().insert(HeldBytes(Arc::new(held)));
            }
            Ok(resp)
        }
    }

    /// One answer from a body: a 2xx carrying it, or another status
    /// carrying a JSON-RPC error object (some providers answer invalid
    /// params with a 400), which is the backend's answer.
    fn parse_one(
        &self,
        status: StatusCode,
        bytes: &Bytes,
        wire_id: &[u8],
    ) -> Result<Payload, RpcError> {
        let parsed = parse_response_to(bytes, wire_id);
        if status.is_success() {
            return parsed.map_err(|reason| RpcError::InvalidResponse {
                backend: self.name.clone(),
                reason,
            });
        }
        match parsed {
            Ok(payload @ Payload::Error(_)) => Ok(payload),
            _ => Err(self.status_error(status, None)),
        }
    }

    /// 429 and 5xx are errors, their bodies unread (`retry_after` read
    /// only then); any other status's body is the answer to read.
    fn must_read(
        &self,
        status: StatusCode,
        retry_after: impl FnOnce() -> Option<Duration>,
    ) -> Result<(), RpcError> {
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(self.status_error(status, retry_after()));
        }
        Ok(())
    }

    fn status_error(&self, status: StatusCode, retry_after: Option<Duration>) -> RpcError {
        RpcError::HttpStatus {
            backend: self.name.clone(),
            status,
            retry_after,
        }
    }

    /// POSTs `body`: the status and the body read (under the size limit
    /// and the budget); 429 and 5xx are errors.
    // An `async move` block, not an `async fn`: an `async fn` keeps its
    // arguments twice in its future, which is boxed per call.
    #[allow(clippy::manual_async_fn)]
    fn post<'a>(
        &'a self,
        body: Vec<u8>,
        trace: Option<&'a crate::TraceContext>,
    ) -> impl std::future::Future<Output = Result<(StatusCode, Bytes, Option<BytePermit>), RpcError>>
           + Send
           + 'a {
        async move {
            let answer = self.pool.send(body, trace).await.map_err(|e| match e {
                pool::SendError::Connect(e) => RpcError::Connect {
                    backend: self.name.clone(),
                    source: error_chain(&*e).into(),
                },
                pool::SendError::Closed(e) => RpcError::ConnectionClosed {
                    backend: self.name.clone(),
                    source: error_chain(&*e).into(),
                },
            })?;
            let (status, read) = match answer {
                pool::Answer::H1 { head, mut lease } => {
                    let status = head.status;
                    self.must_read(status, || head.retry_after)?;
                    let read = lease
                        .conn()
                        .read_body(
                            &head,
                            self.max_response_bytes,
                            self.response_budget.as_ref(),
                        )
                        .await;
                    if read.is_ok() {
                        // Read to the end: the connection can take the next
                        // call (if the server keeps it open).
                        lease.release();
                    }
                    (status, read)
                }
                pool::Answer::H2(resp) => {
                    let status = resp.status();
                    self.must_read(status, || retry_after(resp.headers()))?;
                    let (parts, body) = resp.into_parts();
                    let budget = match &self.response_budget {
                        Some(budget) => Budget::Wait(budget),
                        None => Budget::None,
                    };
                    let read =
                        read_body(&parts.headers, body, self.max_response_bytes, budget).await;
                    (status, read)
                }
            };
            let (bytes, held) = read.map_err(|e| match e {
                ReadError::TooLarge | ReadError::NoBudget => RpcError::ResponseTooLarge {
                    backend: self.name.clone(),
                    limit: self.max_response_bytes,
                },
                ReadError::Failed(e) => RpcError::ConnectionClosed {
                    backend: self.name.clone(),
                    source: error_chain(&*e).into(),
                },
            })?;
            Ok((status, bytes, held))
        }
    }

    /// A call of a client batch (`item`), or a single call gathered with
    /// other clients' (`None`): queued for an upstream batch, answered when
    /// the batch is (under the call's own deadline).
    async fn batched(
        self: Arc<Self>,
        req: Request,
        item: Option<BatchItem>,
        started: Instant,
        deadline: Instant,
    ) -> Result<Response, RpcError> {
        let Some(batching) = self.batching.as_ref() else {
            return Err(RpcError::Internal("batching is off".to_owned()));
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let client_id = req.id().cloned().unwrap_or(Id::Null);
        let key = item.as_ref().map_or(SINGLES, |item| item.group().key());
        let max = batching.max.load(Ordering::Relaxed);
        let (first, full, answer) = {
            let mut open = batching.open.lock().unwrap_or_else(|e| e.into_inner());
            let (number, calls, slots) = open.entry(key).or_insert_with(|| {
                // Room for the client batch's calls, up to a full upstream
                // batch: no regrowth while they arrive. Single calls
                // gather a few at a time: room for 16 (more get a slot
                // each).
                let room = item
                    .as_ref()
                    .map_or(SINGLES_ROOM, |item| item.group().len())
                    .min(max);
                (
                    batching.next.fetch_add(1, Ordering::Relaxed),
                    Vec::with_capacity(room),
                    replies::replies(room),
                )
            });
            let first = calls.is_empty().then_some(*number);
            // A call beyond the room (one of the batch's calls on its way
            // again while the batch gathers) gets a slot of its own.
            let (reply, answer) = match calls.len() {
                index if index < slots.len() => slots.pair(index),
                _ => replies::replies(1).pair(0),
            };
            calls.push(Queued {
                id,
                req,
                reply,
                item: item.clone(),
                started,
                deadline,
            });
            let full = calls.len() >= max;
            (first, if full { open.remove(&key) } else { None }, answer)
        };
        // Placed: the batch no longer waits for this call.
        if let Some(item) = &item {
            item.settle();
        }
        if let Some((_, calls, _)) = full {
            tokio::spawn(self.clone().send_batch(calls));
        } else if let Some(number) = first {
            let group = item.as_ref().map(|item| item.group().clone());
            tokio::spawn(self.clone().flush_when_settled(key, number, group));
        }
        // No timer of its own: the batch's task answers every call by its
        // deadline (`within_deadlines`), so a call of a client batch costs
        // no timer registration here.
        self.answer_of(client_id, answer.await)
    }

    /// Sends the calls of client batch `key` once its calls in flight have
    /// all been placed or answered (or after the window); single calls
    /// (`group` is `None`) when their window ends.
    async fn flush_when_settled(
        self: Arc<Self>,
        key: usize,
        number: u64,
        group: Option<BatchGroup>,
    ) {
        let Some(batching) = self.batching.as_ref() else {
            return;
        };
        match (group, batching.singles) {
            (Some(group), _) => {
                let _ = tokio::time::timeout(batching.window, group.all_settled()).await;
            }
            (None, Some(mode)) => {
                // Every task that is ready now (a connection with a call
                // parsed, an answer read) runs first, and the network is
                // polled once: the calls that arrive in the same turn of
                // the runtime join without a timer.
                tokio::task::yield_now().await;
                if let CrossClient::Window(window) = mode {
                    tokio::time::sleep(window).await;
                }
            }
            (None, None) => {}
        }
        let calls = {
            let mut open = batching.open.lock().unwrap_or_else(|e| e.into_inner());
            match open.get(&key) {
                // Still the batch this flush was for (not sent when full).
                Some((n, _, _)) if *n == number => open.remove(&key).map(|(_, calls, _)| calls),
                _ => None,
            }
        };
        if let Some(calls) = calls {
            self.send_batch(calls).await;
        }
    }

    /// One upstream request for `calls` (a single call is sent alone), each
    /// answer to its caller.
    async fn send_batch(self: Arc<Self>, calls: Vec<Queued>) {
        let calls = self.answer_late(calls, false);
        if calls.is_empty() {
            return;
        }
        self.batch_sizes
            .get_or_init(|| {
                // rpc-metrics' `names::UPSTREAM_BATCH_SIZE` (rpc-core does
                // not depend on it).
                metrics::histogram!("rpc_backend_batch_size", "backend" => self.name.to_string())
            })
            .record(calls.len() as f64);
        if calls.len() == 1 {
            return self.send_alone(calls).await;
        }
        // Each call's size under its wire id, the commas between them and
        // the brackets: exact when no method name needs escaping.
        let size = calls.iter().map(Queued::encoded_len).sum::<usize>();
        let mut body = Vec::with_capacity(size + calls.len() + 1);
        body.push(b'[');
        for (i, call) in calls.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            call.write(&mut body);
        }
        body.push(b']');
        let trace = calls.iter().find_map(|c| c.trace().cloned());
        let post = self.post(body, trace.as_ref());
        let Some((sent, calls)) = self.within_deadlines(calls, post).await else {
            // Every call was answered with a timeout.
            return;
        };
        let (status, bytes, held) = match sent {
            Ok(answer) => answer,
            // Too large together: one by one, and smaller batches.
            Err(RpcError::ResponseTooLarge { .. }) => {
                return self
                    .refused(calls, "its answer was over the size limit")
                    .await
            }
            // The whole batch failed: its calls fail over together.
            Err(e) => {
                for call in calls {
                    call.fail_with_batch(e.clone());
                }
                return;
            }
        };
        let first = bytes.iter().copied().find(|b| !b.is_ascii_whitespace());
        if !status.is_success() || first == Some(b'{') {
            // A 4xx, or one answer for the whole batch (an error object such
            // as "batch too large" or "batches not supported").
            return self.refused(calls, "it was refused").await;
        }
        let items = match crate::parse::parse_batch_response_of(&bytes, calls.len()) {
            Ok(items) => items,
            Err(reason) => {
                for call in calls {
                    call.reply.send(Err(RpcError::InvalidResponse {
                        backend: self.name.clone(),
                        reason: reason.clone(),
                    }));
                }
                return;
            }
        };
        let held = held.map(Arc::new);
        let deliver = |payload: Result<Payload, String>| match payload {
            Ok(payload) => Ok((payload, held.clone())),
            Err(reason) => Err(RpcError::InvalidResponse {
                backend: self.name.clone(),
                reason,
            }),
        };
        let missing = || RpcError::InvalidResponse {
            backend: self.name.clone(),
            reason: "the call's answer is missing from the batch answer".to_owned(),
        };
        // A client batch's calls have consecutive wire ids: an answer's id
        // is its call's place (no map).
        let base = calls[0].id;
        let consecutive = calls
            .iter()
            .zip(0u64..)
            .all(|(call, i)| call.id == base.wrapping_add(i));
        if consecutive {
            let mut calls = calls;
            for (id, payload) in items {
                let Some(call) = id
                    .checked_sub(base)
                    .and_then(|k| usize::try_from(k).ok())
                    .and_then(|k| calls.get_mut(k))
                else {
                    continue;
                };
                // A duplicate is ignored: the first answer counts.
                if !call.reply.is_sent() {
                    call.reply.send_now(deliver(payload));
                }
            }
            for call in calls {
                if !call.reply.is_sent() {
                    call.reply.send(Err(missing()));
                }
            }
            return;
        }
        // Matched by the wire ids (out-of-order answers are fine; a
        // duplicate is ignored: the first answer counts).
        let mut by_id: HashMap<u64, Result<Payload, String>, FastHash> =
            HashMap::with_capacity_and_hasher(items.len(), FastHash::default());
        for (id, payload) in items {
            by_id.entry(id).or_insert(payload);
        }
        for call in calls {
            let delivered = match by_id.remove(&call.id) {
                Some(payload) => deliver(payload),
                None => Err(missing()),
            };
            call.reply.send(delivered);
        }
    }

    /// Answers the calls whose deadline passed while they waited for their
    /// batch (at most the batch window: they are not sent, `sent` false) or
    /// for its answer (`sent` true).
    fn answer_late(&self, calls: Vec<Queued>, sent: bool) -> Vec<Queued> {
        let now = Instant::now();
        if calls.iter().all(|c| c.deadline > now) {
            return calls;
        }
        let (late, calls): (Vec<_>, Vec<_>) = calls.into_iter().partition(|c| c.deadline <= now);
        for call in late {
            if !sent && call.req.deadline().is_some_and(|d| d <= now) {
                // The call's own deadline: it goes nowhere, and was never
                // sent (a retry layer may rely on that).
                call.reply.send(Err(RpcError::DeadlineExceeded));
            } else {
                call.time_out(&self.name);
            }
        }
        calls
    }

    /// Waits for `sent`, the upstream request of `calls`, answering each
    /// call whose deadline comes first with a timeout: one timer for the
    /// whole batch (reset to the next deadline), not one per call. `None`
    /// when every call was answered so.
    async fn within_deadlines<F: std::future::Future>(
        &self,
        mut calls: Vec<Queued>,
        sent: F,
    ) -> Option<(F::Output, Vec<Queued>)> {
        let mut sent = std::pin::pin!(sent);
        let first = calls.iter().map(|c| c.deadline).min()?;
        let mut timer = std::pin::pin!(tokio::time::sleep_until(first));
        loop {
            tokio::select! {
                biased;
                out = &mut sent => return Some((out, calls)),
                () = &mut timer => {
                    calls = self.answer_late(calls, true);
                    let next = calls.iter().map(|c| c.deadline).min()?;
                    timer.as_mut().reset(next);
                }
            }
        }
    }

    /// The backend refused a batch: its calls go one by one, and its next
    /// batches are half as large (down to none).
    async fn refused(self: Arc<Self>, calls: Vec<Queued>, why: &str) {
        if let Some(batching) = &self.batching {
            let before = batching.max.load(Ordering::Relaxed);
            let after = (calls.len() / 2).min(before).max(1);
            if after < before {
                batching.max.store(after, Ordering::Relaxed);
                tracing::warn!(
                    backend = %self.name,
                    calls = calls.len(),
                    max_batch = after,
                    "a batch of {} calls was not taken ({why}); sending them one by one, and at most {after} per batch from now on",
                    calls.len()
                );
            }
        }
        let alone = calls
            .into_iter()
            .map(|call| self.clone().send_alone(vec![call]));
        futures_util::future::join_all(alone).await;
    }

    /// Sends one queued call alone.
    async fn send_alone(self: Arc<Self>, calls: Vec<Queued>) {
        for call in calls {
            let mut frame = Vec::with_capacity(call.encoded_len());
            call.write(&mut frame);
            let sent = tokio::time::timeout_at(call.deadline, self.post(frame, call.trace())).await;
            let delivered = match sent {
                Ok(Ok((status, bytes, held))) => self
                    .parse_one(
                        status,
                        &bytes,
                        itoa::Buffer::new().format(call.id).as_bytes(),
                    )
                    .map(|payload| (payload, held.map(Arc::new))),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(RpcError::Timeout {
                    backend: Some(self.name.clone()),
                    elapsed: call.started.elapsed(),
                }),
            };
            call.reply.send(delivered);
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// An error and its sources as one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_errors_never_show_the_url() {
        let secret = "ftp://user:sekret@host/key-abc123";
        let err = HttpBackend::builder("paid", secret).build().unwrap_err();
        let text = err.to_string();
        assert!(text.contains("paid"), "{text}");
        assert!(
            !text.contains("sekret") && !text.contains("abc123"),
            "{text}"
        );

        let err = HttpBackend::builder("paid", "not a url key-abc123")
            .build()
            .unwrap_err();
        assert!(!err.to_string().contains("abc123"));
        assert!(matches!(
            HttpBackend::builder(" ", "http://h").build(),
            Err(BuildError::EmptyName)
        ));
    }

    #[test]
    fn userinfo_moves_to_basic_auth() {
        let b = HttpBackend::builder("n", "http://alice:p%40ss@127.0.0.1:9/x")
            .build()
            .expect("ok");
        let target = b.inner.pool.target();
        assert_eq!(target.uri.to_string(), "http://127.0.0.1:9/x");
        // The HTTP/1.1 head names the host without the userinfo.
        let head = String::from_utf8(target.h1_head.to_vec()).expect("ASCII");
        assert!(
            head.starts_with("POST /x HTTP/1.1\r\nhost: 127.0.0.1:9\r\n"),
            "{head}"
        );
        assert!(!head.contains("alice"), "{head}");
        let auth = b
            .inner
            .pool
            .target()
            .headers
            .get(AUTHORIZATION)
            .expect("auth header");
        assert_eq!(
            auth.to_str().expect("ascii"),
            crate::userinfo::basic("alice", "p@ss")
        );
        assert!(!format!("{b:?}").contains("alice"));
        // Userinfo without a port, IPv6 with one: fine; a port over 65535 is not.
        assert!(HttpBackend::builder("n", "http://me:secret@h/")
            .build()
            .is_ok());
        assert!(HttpBackend::builder("n", "http://[::1]:8545/")
            .build()
            .is_ok());
        assert!(HttpBackend::builder("n", "http://[::1]/").build().is_ok());
        let err = HttpBackend::builder("n", "http://me:secret@h:99999/")
            .build()
            .expect_err("bad port")
            .to_string();
        assert!(err.contains("port") && !err.contains("secret"), "{err}");
    }
}
