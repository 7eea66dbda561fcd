use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{stream, FutureExt, StreamExt};
use http::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::Full;
use tower::{Service, ServiceExt};

use super::conn::{Conn, Registry};
use super::ServerConfig;
use crate::batch::{Batch, BatchAnswers, BoxedBatchFuture, JsonRpcBatchService};
use crate::body::{read_body, Budget, ReadError};
use crate::parse::{parse_message, Incoming};
use crate::{
    ApiKey, BatchPosition, BoxError, ConnectionId, Deadline, ErrorObject, Id, JsonRpcService,
    RemoteAddr, Request, Response, RpcError, SessionId,
};
use std::sync::atomic::{AtomicBool, Ordering};

/// Bodies larger than this are parsed on the blocking pool.
const PARSE_INLINE_BYTES: usize = 256 * 1024;

/// The future of [`HttpFront`]'s `call`: a named type for users who wrap
/// the front in their own services.
pub type FrontFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, Infallible>> + Send>>;

/// The body of every response of the front.
pub type ResponseBody = Full<Bytes>;

/// The HTTP front as a plain tower service: `http::Request<B>` in,
/// `http::Response<Full<Bytes>>` out, never an error.
///
/// Clone it per connection or request; clones share the config and clone the
/// inner service. See the [module docs](super) for what it answers.
///
/// ```
/// use rpc_core::server::{HttpFront, ServerConfig};
/// use rpc_core::{RawJson, Request, Response, RpcError};
/// use tower::{service_fn, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let inner = service_fn(|req: Request| async move {
///     Ok::<_, RpcError>(Response::result(req.id().cloned().unwrap_or_default(), RawJson::NULL))
/// });
/// let front = HttpFront::new(inner, ServerConfig::default());
/// let http_req = http::Request::post("/")
///     .header("content-type", "application/json")
///     .body(http_body_util::Full::new(bytes::Bytes::from_static(
///         br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#,
///     )))
///     .unwrap();
/// let resp = front.oneshot(http_req).await.unwrap();
/// assert_eq!(resp.status(), 200);
/// # }
/// ```
#[derive(Clone)]
pub struct HttpFront<S> {
    inner: S,
    pub(crate) config: Arc<ServerConfig>,
    remote: Option<RemoteAddr>,
    connection: Option<ConnectionId>,
    /// Set while [`serve`](super::serve) drains: every request gets 503.
    draining: Option<Arc<AtomicBool>>,
    /// The connection's activity, for the idle and room policies.
    activity: Option<(Arc<Conn>, Arc<Registry>)>,
    /// The client address a PROXY protocol header gave, once read.
    proxied: Option<Arc<std::sync::OnceLock<std::net::SocketAddr>>>,
    /// Open WebSocket sessions, shared by every clone.
    #[cfg(feature = "websocket")]
    ws_count: Arc<super::ws::WsCount>,
    /// How a client batch reaches `inner` whole ([`HttpFront::batched`]);
    /// `None`: call by call.
    pub(crate) batches: Option<BatchEntry<S>>,
}

/// A client batch sent to the front's service as one [`Batch`].
pub(crate) type BatchEntry<S> = fn(&S, Batch) -> BoxedBatchFuture;

fn batch_entry<S: JsonRpcBatchService>(service: &S, batch: Batch) -> BoxedBatchFuture {
    BoxedBatchFuture::new(crate::batch::call_batch(service.clone(), batch))
}

impl<S: std::fmt::Debug> std::fmt::Debug for HttpFront<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFront")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("remote", &self.remote)
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

impl<S> HttpFront<S> {
    /// A front calling `inner` for every JSON-RPC call.
    pub fn new(inner: S, config: ServerConfig) -> Self {
        HttpFront {
            inner,
            config: Arc::new(config),
            remote: None,
            connection: None,
            draining: None,
            activity: None,
            proxied: None,
            #[cfg(feature = "websocket")]
            ws_count: Arc::default(),
            batches: None,
        }
    }

    /// A front that sends each client batch to `inner` as one [`Batch`]
    /// (see [`JsonRpcBatchService`]) instead of one call per item: for a
    /// stack of our layers, a batch then walks the stack once. Answers,
    /// errors, deadlines and limits are the same as with [`new`](Self::new).
    ///
    /// ```
    /// use rpc_core::server::{HttpFront, ServerConfig};
    /// use rpc_core::{RawJson, Request, Response, RpcError, SharedJsonRpcService};
    /// use tower::{service_fn, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let inner = SharedJsonRpcService::new(service_fn(|req: Request| async move {
    ///     Ok::<_, RpcError>(Response::result(req.id().cloned().unwrap_or_default(), RawJson::NULL))
    /// }));
    /// let front = HttpFront::batched(inner, ServerConfig::default());
    /// let http_req = http::Request::post("/")
    ///     .header("content-type", "application/json")
    ///     .body(http_body_util::Full::new(bytes::Bytes::from_static(
    ///         br#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","id":2,"method":"b"}]"#,
    ///     )))
    ///     .unwrap();
    /// let resp = front.oneshot(http_req).await.unwrap();
    /// assert_eq!(resp.status(), 200);
    /// # }
    /// ```
    pub fn batched(inner: S, config: ServerConfig) -> Self
    where
        S: JsonRpcBatchService,
    {
        let mut front = Self::new(inner, config);
        front.batches = Some(batch_entry::<S>);
        front
    }

    pub(crate) fn with_proxied(
        mut self,
        cell: Arc<std::sync::OnceLock<std::net::SocketAddr>>,
    ) -> Self {
        self.proxied = Some(cell);
        self
    }

    pub(crate) fn with_drain(mut self, flag: Arc<AtomicBool>) -> Self {
        self.draining = Some(flag);
        self
    }

    pub(crate) fn with_activity(mut self, conn: Arc<Conn>, registry: Arc<Registry>) -> Self {
        self.activity = Some((conn, registry));
        self
    }

    /// Sets the client address put in each call's extensions as [`RemoteAddr`].
    /// [`serve`](super::serve) does this per connection; a
    /// [`RemoteAddr`] in the HTTP request's extensions is used otherwise.
    pub fn with_remote_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.remote = Some(RemoteAddr(addr));
        self
    }

    /// Sets the connection id put in each call's extensions as
    /// [`ConnectionId`]; [`serve`](super::serve) numbers its connections.
    pub fn with_connection_id(mut self, id: u64) -> Self {
        self.connection = Some(ConnectionId(id));
        self
    }
}

impl<S, B> Service<http::Request<B>> for HttpFront<S>
where
    S: JsonRpcService,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<ResponseBody>;
    type Error = Infallible;
    type Future = FrontFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Calls reach the inner service through `oneshot` on clones, which wait
        // for its readiness each time.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // Boxed as it is: a wrapping `async` block would hold the front and
        // the request a second time (a future's size is copied into its box).
        Box::pin(self.clone().handle(req).map(Ok))
    }
}

impl<S: JsonRpcService> HttpFront<S> {
    /// The key a request's calls carry: with [`ApiKeys`](crate::auth::ApiKeys),
    /// the id of the key it presented (header, else path) or why it is
    /// refused; without, the header's value as it is.
    fn authenticate(
        &self,
        parts: &http::request::Parts,
    ) -> Result<Option<ApiKey>, crate::auth::AuthError> {
        let config = &self.config;
        let header = config
            .api_key_header
            .as_ref()
            .and_then(|name| parts.headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 256);
        match &config.api_keys {
            None => Ok(header.map(|v| ApiKey(Arc::from(v)))),
            Some(keys) => {
                let checked = keys
                    .with(|keys| keys.check(header.or_else(|| keys.key_in_path(parts.uri.path()))));
                if let Err(e) = &checked {
                    let reason = match e {
                        crate::auth::AuthError::Missing => "missing",
                        _ => "unknown",
                    };
                    metrics::counter!("rpc_auth_refused_total", "reason" => reason).increment(1);
                }
                checked
            }
        }
    }

    /// What every call of this HTTP request (or WebSocket session) carries.
    fn context(&self, parts: &http::request::Parts, api_key: Option<ApiKey>) -> CallContext {
        let config = &self.config;
        CallContext {
            deadline: match parts.extensions.get::<Deadline>() {
                Some(d) => (*d).min(Deadline::after(config.request_timeout)),
                None => Deadline::after(config.request_timeout),
            },
            remote: match self.proxied.as_ref().and_then(|c| c.get()) {
                // Named by the balancer's PROXY header.
                Some(client) => Some(RemoteAddr(*client)),
                None => self
                    .remote
                    .or_else(|| parts.extensions.get::<RemoteAddr>().copied())
                    .map(|peer| RemoteAddr(config.trusted_proxies.client(peer.0, &parts.headers))),
            },
            timeout: config.request_timeout,
            api_key,
            session: config
                .session_header
                .as_ref()
                .and_then(|name| parts.headers.get(name))
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.len() <= 128)
                .map(|v| SessionId(Arc::from(v))),
            trace: config
                .trace_context
                .then(|| crate::TraceContext::parse(&parts.headers))
                .flatten(),
            connection: self.connection,
        }
    }

    /// Answers a WebSocket upgrade request: 101 and a session on the
    /// upgraded connection, or a refusal with a JSON-RPC error body.
    #[cfg(feature = "websocket")]
    fn upgrade(&self, mut parts: http::request::Parts) -> http::Response<ResponseBody> {
        use super::ws;
        let refuse = |status: StatusCode, message: &str| {
            let (status, error) = ws::refusal(status, message);
            let mut resp = error_response(status, error);
            if status == StatusCode::SERVICE_UNAVAILABLE {
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            resp
        };
        let Some(ws_config) = self.config.websocket.clone() else {
            let mut resp = refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid request: WebSocket is not enabled here; use POST",
            );
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return resp;
        };
        let api_key = match self.authenticate(&parts) {
            Ok(key) => key,
            Err(e) => return error_response(StatusCode::UNAUTHORIZED, e.to_error_object()),
        };
        let accepted = match ws::accept(&parts.headers) {
            Ok(a) => a,
            Err(why) => return refuse(StatusCode::BAD_REQUEST, &format!("invalid request: {why}")),
        };
        let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
            // Not a connection that can be upgraded (h2, or a test harness).
            return refuse(
                StatusCode::BAD_REQUEST,
                "invalid request: this connection cannot be upgraded (use HTTP/1.1)",
            );
        };
        let ctx = self.context(&parts, api_key);
        let ip = ctx.remote.map(|r| r.0.ip());
        let slot = match self.ws_count.admit(&ws_config, ip) {
            Ok(slot) => slot,
            Err(cap) => {
                metrics::counter!("rpc_ws_connections_refused_total", "reason" => cap).increment(1);
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many WebSocket connections: retry shortly",
                );
            }
        };
        // The connection stays busy (not idle, not evicted) while the
        // session lives; the server's drain or room request closes it.
        let busy = self.activity.as_ref().map(|(c, r)| (c.begin(r), c.clone()));
        let inner = self.inner.clone();
        let batches = self.batches;
        let config = self.config.clone();
        let draining = self.draining.clone();
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let signals = ws::Signals {
                conn: busy.as_ref().map(|(_, c)| c.clone()),
                draining,
            };
            ws::session(
                upgraded, inner, batches, ctx, config, ws_config, signals, slot,
            )
            .await;
            drop(busy);
        });
        let (head, ()) = accepted.into_parts();
        http::Response::from_parts(head, Full::new(Bytes::new()))
    }
    /// An `async move` block, not an `async fn`: an `async fn` keeps its
    /// arguments twice in its future, and this one is boxed per request.
    #[allow(clippy::manual_async_fn)]
    fn handle<B>(
        self,
        req: http::Request<B>,
    ) -> impl Future<Output = http::Response<ResponseBody>> + Send
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        async move {
            let _busy = self.activity.as_ref().map(|(c, r)| c.begin(r));
            let (parts, body) = req.into_parts();
            // Owned, so that a single call can take `self.inner` (a clone of
            // the service is an allocation when it is boxed).
            let config = &self.config.clone();
            if self
                .draining
                .as_ref()
                .is_some_and(|d| d.load(Ordering::Acquire))
            {
                return unavailable_closing(
                    crate::codes::NO_BACKEND,
                    "shutting down: retry on another replica",
                );
            }
            if parts.method == Method::GET && parts.uri.path() == config.health_path {
                return match &config.readiness {
                    Some(ready) if !(ready.0)() => json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Bytes::from_static(br#"{"status":"unavailable"}"#),
                    ),
                    _ => json_response(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#)),
                };
            }
            #[cfg(feature = "websocket")]
            if parts.method == Method::GET && super::ws::is_upgrade(&parts.headers) {
                return self.upgrade(parts);
            }
            if parts.method != Method::POST {
                let mut resp = error_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    ErrorObject::invalid_request("invalid request: use POST"),
                );
                resp.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("POST"));
                return resp;
            }
            // Before the body is read: a client without a valid key costs a
            // header lookup and a hash, nothing more.
            let api_key = match self.authenticate(&parts) {
                Ok(key) => key,
                Err(e) => return error_response(StatusCode::UNAUTHORIZED, e.to_error_object()),
            };
            if !is_json_content_type(&parts.headers) {
                return error_response(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    ErrorObject::invalid_request(
                        "invalid request: Content-Type must be application/json",
                    ),
                );
            }
            let read = read_body(
                &parts.headers,
                body,
                config.max_body_bytes,
                Budget::FailFast(&config.body_budget),
            );
            let (bytes, _held) = match tokio::time::timeout(config.body_read_timeout, read).await {
                Ok(Ok(read)) => read,
                Ok(Err(ReadError::NoBudget)) => {
                    return unavailable_closing(
                        crate::codes::LIMIT_EXCEEDED,
                        "server busy: too many request bytes in flight, retry shortly",
                    );
                }
                Ok(Err(ReadError::TooLarge)) => {
                    return error_response(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        ErrorObject::request_too_large(config.max_body_bytes),
                    )
                }
                Ok(Err(ReadError::Failed(_))) => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        ErrorObject::new(
                            crate::codes::PARSE_ERROR,
                            "parse error: body could not be read",
                        ),
                    )
                }
                Err(_) => {
                    let mut resp = error_response(
                        StatusCode::REQUEST_TIMEOUT,
                        ErrorObject::invalid_request("invalid request: body not received in time"),
                    );
                    resp.headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                    return resp;
                }
            };

            let ctx = self.context(&parts, api_key);
            // Not needed past here: not kept in the future while the call runs.
            drop(parts);

            // A large body is parsed on the blocking pool, so that a few bulk
            // requests cannot hold the runtime's workers from ordinary calls.
            let parsed = if bytes.len() > PARSE_INLINE_BYTES {
                let max_batch = config.max_batch;
                match tokio::task::spawn_blocking(move || parse_message(bytes, max_batch)).await {
                    Ok(parsed) => parsed,
                    Err(_) => {
                        return error_response(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            ErrorObject::new(crate::codes::INTERNAL_ERROR, "internal error"),
                        )
                    }
                }
            } else {
                parse_message(bytes, config.max_batch)
            };
            match parsed {
                Err(e) => error_response(e.http_status(), e.to_error_object()),
                Ok(Incoming::Single(Err(invalid))) => {
                    let status = StatusCode::BAD_REQUEST;
                    json_response(status, Bytes::from(invalid.into_response().to_json()))
                }
                Ok(Incoming::Single(Ok(req))) => {
                    match ctx.call(self.inner, req).await {
                        // Only a notification has no answer.
                        None => no_content(),
                        Some(Answer::Ok(resp)) => {
                            let mut http_resp = json_response(StatusCode::OK, encode(&resp));
                            if let Some(hook) = &config.response_headers {
                                (hook.0)(&resp, http_resp.headers_mut());
                            }
                            http_resp
                        }
                        Some(Answer::Failed(resp, err)) => {
                            let mut http_resp =
                                json_response(err.http_status(), Bytes::from(resp.to_json()));
                            if let Some(after) = err.retry_after() {
                                let after = after.min(config.max_retry_after);
                                let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
                                http_resp
                                    .headers_mut()
                                    .insert(RETRY_AFTER, HeaderValue::from(secs));
                            }
                            http_resp
                        }
                    }
                }
                Ok(Incoming::Batch(items)) => {
                    let entry = self.batches;
                    match answer_batch(&self.inner, entry, &ctx, config.batch_concurrency, items)
                        .await
                    {
                        Some(body) => json_response(
                            StatusCode::OK,
                            crate::buffers::freeze_then(body.json, body.written_from),
                        ),
                        None => no_content(),
                    }
                }
            }
        }
    }
}

/// What the front learned from one call.
pub(crate) enum Answer {
    Ok(Response),
    Failed(Response, RpcError),
}

impl Answer {
    pub(crate) fn into_response(self) -> Response {
        match self {
            Answer::Ok(r) | Answer::Failed(r, _) => r,
        }
    }
}

#[derive(Clone)]
pub(crate) struct CallContext {
    deadline: Deadline,
    remote: Option<RemoteAddr>,
    timeout: std::time::Duration,
    api_key: Option<ApiKey>,
    session: Option<SessionId>,
    trace: Option<crate::TraceContext>,
    connection: Option<ConnectionId>,
}

impl CallContext {
    /// The same context with a fresh deadline (a WebSocket message's).
    #[cfg(feature = "websocket")]
    pub(crate) fn with_deadline(&self, timeout: std::time::Duration) -> Self {
        let mut ctx = self.clone();
        ctx.deadline = Deadline::after(timeout);
        ctx
    }

    /// Runs one call under the deadline, catching panics; `None` for a notification.
    pub(crate) fn call<S: JsonRpcService>(
        &self,
        svc: S,
        req: Request,
    ) -> impl Future<Output = Option<Answer>> + Send + '_ {
        self.call_with(svc, req, true)
    }

    /// What every call of the request carries: its deadline, the client's
    /// address, key, trace, session and connection.
    fn prepare(&self, req: &mut Request) {
        self.put(req.extensions_mut());
    }

    /// Puts the facts every call of this request carries into `ext`.
    fn put(&self, ext: &mut crate::Extensions) {
        ext.insert(self.deadline);
        if let Some(remote) = self.remote {
            ext.insert(remote);
        }
        if let Some(key) = &self.api_key {
            ext.insert(key.clone());
        }
        if let Some(trace) = &self.trace {
            ext.insert(trace.clone());
        }
        if let Some(session) = &self.session {
            ext.insert(session.clone());
        }
        if let Some(connection) = self.connection {
            ext.insert(connection);
        }
    }

    /// The answer to a call still running when the deadline passed (`None`
    /// for a notification).
    fn too_late(&self, id: Option<Id>) -> Option<Response> {
        let err = RpcError::Timeout {
            backend: None,
            elapsed: self.timeout,
        };
        id.map(|id| Response::error(id, err.to_error_object()))
    }

    /// [`call`](Self::call); `timed: false` when the caller watches the
    /// deadline itself (a batch: one timer for all its calls).
    /// An `async move` block, not an `async fn`, so the request is held once.
    #[allow(clippy::manual_async_fn)]
    fn call_with<S: JsonRpcService>(
        &self,
        svc: S,
        mut req: Request,
        timed: bool,
    ) -> impl Future<Output = Option<Answer>> + Send + '_ {
        async move {
            let id = req.id().cloned();
            let method = req.method_arc().clone();
            self.prepare(&mut req);
            let fut = AssertUnwindSafe(svc.oneshot(req)).catch_unwind();
            let outcome = if timed {
                tokio::time::timeout_at(self.deadline.0, fut).await.ok()
            } else {
                Some(fut.await)
            };
            let result = match outcome {
                Some(Ok(result)) => result,
                Some(Err(_panic)) => {
                    tracing::error!(%method, "the service panicked while handling a call");
                    Err(RpcError::Internal("the service panicked".to_owned()))
                }
                None => Err(RpcError::Timeout {
                    backend: None,
                    elapsed: self.timeout,
                }),
            };
            if let Err(e) = &result {
                tracing::debug!(%method, error = %e, "call failed");
            }
            // A notification gets no answer, whatever happened.
            let id = id?;
            Some(match result {
                Ok(mut resp) => {
                    // The client's id, whatever a layer below did with it.
                    resp.set_id(id);
                    Answer::Ok(resp)
                }
                Err(err) => Answer::Failed(Response::error(id, err.to_error_object()), err),
            })
        }
    }
}

/// A batch's calls, `concurrency` at a time, answered as one JSON array
/// in the client's order; `None` when every item was a notification.
pub(crate) async fn answer_batch<S: JsonRpcService>(
    inner: &S,
    entry: Option<BatchEntry<S>>,
    ctx: &CallContext,
    concurrency: usize,
    items: Vec<Result<Request, crate::parse::InvalidCall>>,
) -> Option<BatchBody> {
    if let Some(entry) = entry {
        return answer_batch_whole(inner, entry, ctx, concurrency, items).await;
    }
    let len = u32::try_from(items.len()).unwrap_or(u32::MAX);
    // Lets backends send the items that reach them together as one
    // upstream batch (see `crate::batch`).
    let group = crate::batch::BatchGroup::new(items.len());
    // What each item answers if the deadline passes first: one timer for
    // the whole batch, not one per call.
    let late: Vec<Result<Option<Id>, Response>> = items
        .iter()
        .map(|item| match item {
            Ok(req) => Ok(req.id().cloned()),
            Err(invalid) => Err(invalid.clone().into_response()),
        })
        .collect();
    let work = stream::iter(items.into_iter().zip(0u32..))
        .map(|(item, index)| {
            // Counted when created (before any item of the wave runs), so
            // a backend never sends a wave's first item alone.
            let handle = group.item(index as usize);
            if item.is_ok() {
                handle.start();
            }
            async move {
                let answer = match item {
                    Err(invalid) => Some(invalid.into_response()),
                    Ok(mut req) => {
                        req.extensions_mut().insert(BatchPosition { index, len });
                        req.extensions_mut().insert(handle.clone());
                        let answer = ctx
                            .call_with(inner.clone(), req, false)
                            .await
                            .map(Answer::into_response);
                        handle.settle();
                        answer
                    }
                };
                (index as usize, answer)
            }
        })
        // Started in order, at most `concurrency` at once; answers placed
        // by position as they come.
        .buffer_unordered(concurrency);
    let mut work = std::pin::pin!(work);
    let mut answers: Vec<Option<Option<Response>>> = (0..late.len()).map(|_| None).collect();
    let deadline = tokio::time::sleep_until(ctx.deadline.0);
    let mut deadline = std::pin::pin!(deadline);
    loop {
        tokio::select! {
            biased;
            next = work.next() => match next {
                Some((index, answer)) => answers[index] = Some(answer),
                None => break,
            },
            () = &mut deadline => {
                // Answers already in hand are kept; the rest are late.
                while let Some(Some((index, answer))) = work.next().now_or_never() {
                    answers[index] = Some(answer);
                }
                break;
            }
        }
    }
    let answers: Vec<Option<Response>> = answers
        .into_iter()
        .zip(late)
        .map(|(answer, late)| match (answer, late) {
            (Some(answer), _) => answer,
            (None, Ok(id)) => ctx.too_late(id),
            (None, Err(invalid)) => Some(invalid),
        })
        .collect();
    write_batch(answers)
}

/// [`answer_batch`] with the calls sent to `inner` as one [`Batch`].
async fn answer_batch_whole<S: JsonRpcService>(
    inner: &S,
    entry: BatchEntry<S>,
    ctx: &CallContext,
    concurrency: usize,
    items: Vec<Result<Request, crate::parse::InvalidCall>>,
) -> Option<BatchBody> {
    let total = items.len();
    let len = u32::try_from(total).unwrap_or(u32::MAX);
    // The calls, each one's id (`None`: a notification), and the answers
    // to the items that are not calls, by position.
    let mut calls = Vec::with_capacity(total);
    let mut ids: Vec<Option<Id>> = Vec::with_capacity(total);
    let mut invalid: Vec<(usize, Response)> = Vec::new();
    // The facts the calls share, gathered once; each call gets a copy
    // with its place in the batch.
    let mut shared = crate::Extensions::new();
    ctx.put(&mut shared);
    for (item, index) in items.into_iter().zip(0u32..) {
        match item {
            Err(call) => invalid.push((index as usize, call.into_response())),
            Ok(mut req) => {
                ids.push(req.id().cloned());
                let mut ext = shared.clone();
                ext.insert(BatchPosition { index, len });
                req.put_extensions(ext);
                calls.push(req);
            }
        }
    }
    // One deadline for the batch: the layers below answer what they can
    // by it (a call still running is `None`); a stack that overruns it is
    // left, and every call it holds answered as late.
    let outcome: Result<BatchAnswers, ()> = if calls.is_empty() {
        Ok(Vec::new())
    } else {
        let batch = Batch::new(calls).with_concurrency(concurrency);
        let fut = AssertUnwindSafe(entry(inner, batch)).catch_unwind();
        match tokio::time::timeout_at(ctx.deadline.0, fut).await {
            Ok(Ok(Ok(answers))) => Ok(answers),
            Ok(Ok(Err(never))) => match never {},
            Ok(Err(_panic)) => {
                tracing::error!("the service panicked while handling a batch");
                Err(())
            }
            Err(_) => Ok(Vec::new()),
        }
    };
    let panicked = outcome.is_err();
    // Each call's answer as the client gets it, in place: its own id, an
    // error object, or late; `None` for a notification.
    let mut answers = outcome.unwrap_or_default();
    answers.resize_with(ids.len(), || None);
    // Collected where the answers were (same size: no new allocation).
    let mut out: Vec<Option<Response>> = answers
        .into_iter()
        .zip(ids)
        .map(|(answer, id)| {
            if let Some(Err(e)) = &answer {
                tracing::debug!(error = %e, "call failed");
            }
            // A notification gets no answer, whatever happened.
            let id = id?;
            Some(match answer {
                _ if panicked => {
                    let e = RpcError::Internal("the service panicked".to_owned());
                    Response::error(id, e.to_error_object())
                }
                Some(Ok(mut resp)) => {
                    // The client's id, whatever a layer below did with it.
                    resp.set_id(id);
                    resp
                }
                Some(Err(e)) => Response::error(id, e.to_error_object()),
                None => ctx.too_late(Some(id))?,
            })
        })
        .collect();
    // The items that were not calls, back in their places.
    for (position, response) in invalid {
        out.insert(position.min(out.len()), Some(response));
    }
    write_batch(out)
}

/// A single call's answer as a body: a large one (a block with its
/// transactions) in a buffer that is kept for reuse (`crate::buffers`).
fn encode(resp: &Response) -> Bytes {
    let mut out = crate::buffers::take(resp.encoded_len_hint());
    resp.write_json(&mut out);
    crate::buffers::freeze(out)
}

/// A client batch's answer as the client gets it, and the answers it was
/// written from: those are dropped once the body is sent, not while the
/// client waits for it.
pub(crate) struct BatchBody {
    pub(crate) json: Vec<u8>,
    pub(crate) written_from: Vec<Option<Response>>,
}

/// `answers` (`None`: a notification's place) as a client batch's answer;
/// `None` when there is no answer at all (only notifications: no body).
fn write_batch(answers: Vec<Option<Response>>) -> Option<BatchBody> {
    let mut each = answers.iter().flatten().peekable();
    each.peek()?;
    // The answers, the commas between them and the brackets: exact when
    // every answer is a result (a large body in a kept buffer).
    let cap = answers
        .iter()
        .flatten()
        .map(|r| r.encoded_len_hint() + 1)
        .sum::<usize>()
        + 1;
    let mut out = crate::buffers::take(cap);
    out.push(b'[');
    for (i, resp) in each.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        resp.write_json(&mut out);
    }
    out.push(b']');
    Some(BatchBody {
        json: out,
        written_from: answers,
    })
}

fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let mime = value.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
        || mime.eq_ignore_ascii_case("application/json-rpc")
        || mime.eq_ignore_ascii_case("application/jsonrequest")
        || (mime.len() > "application/+json".len()
            && mime[..12].eq_ignore_ascii_case("application/")
            && mime[mime.len() - 5..].eq_ignore_ascii_case("+json"))
}

fn json_response(status: StatusCode, body: Bytes) -> http::Response<ResponseBody> {
    let mut resp = http::Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error_response(status: StatusCode, error: ErrorObject) -> http::Response<ResponseBody> {
    json_response(
        status,
        Bytes::from(Response::error(Id::Null, error).to_json()),
    )
}

/// 503 with `Retry-After: 1`, closing the connection (the client should
/// come back, elsewhere or later).
fn unavailable_closing(code: i64, message: &'static str) -> http::Response<ResponseBody> {
    let mut resp = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorObject::new(code, message),
    );
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn no_content() -> http::Response<ResponseBody> {
    let mut resp = http::Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let check = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(v));
            is_json_content_type(&h)
        };
        assert!(check("application/json"));
        assert!(check("Application/JSON; charset=utf-8"));
        assert!(check("application/vnd.api+json"));
        assert!(!check("text/plain"));
        assert!(!check("application/x-www-form-urlencoded"));
        assert!(!check("+json"));
        assert!(is_json_content_type(&HeaderMap::new()));
    }
}
