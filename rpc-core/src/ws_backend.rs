//! A named JSON-RPC backend reached over a WebSocket (`ws://`, `wss://`):
//! calls and upstream subscriptions on one connection.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, SinkExt, StreamExt};
use http::header::{HeaderValue, AUTHORIZATION};
use http::{HeaderMap, Uri};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tower::Service;

use crate::parse::parse_response_to;
use crate::subscription::{PushSource, Subscription};
use crate::{BoxError, BuildError, Id, Payload, RawJson, Request, Response, RpcError, ServedBy};

/// A JSON-RPC backend over one WebSocket: a [`JsonRpcService`](crate::JsonRpcService)
/// like [`HttpBackend`](crate::HttpBackend), and a [`PushSource`] of upstream
/// subscriptions (`eth_subscribe`), for a node or provider that serves
/// `ws://` / `wss://`.
///
/// Calls are pipelined on one connection, opened on first use and again
/// after it is lost. Each call has the backend's own numeric id on the wire
/// (the client's id is restored on the answer) and a deadline (the
/// backend's timeout, or the request's [`Deadline`](crate::Deadline) if
/// sooner). Nothing waits without bound:
///
/// * a refused or slow connect (TCP, TLS and the upgrade under
///   `connect_timeout`) fails the calls waiting for it with
///   [`RpcError::Connect`] (not sent);
/// * a connection that closes fails its calls in flight with
///   [`RpcError::ConnectionClosed`] and ends its subscriptions, and the
///   next call opens a new one;
/// * a connection that goes quiet (a frozen node: the socket open, nothing
///   read) is found by pings: every `ping_interval`, and at once when a
///   call times out; nothing heard within `pong_timeout` closes it as
///   above;
/// * calls waiting to be written are bounded (`max_in_flight`; past it a
///   call waits under its deadline), and so are a subscription's
///   undelivered notifications (a subscriber that falls 256 behind is
///   ended, and unsubscribed upstream, rather than buffered).
///
/// Subscriptions follow Ethereum's pub/sub (`eth_subscribe` answers an id,
/// notifications are `eth_subscription` with `params.subscription` and
/// `params.result`; other names with
/// [`pubsub_methods`](WsBackendBuilder::pubsub_methods)).
///
/// The URL, which may carry an API key, is never shown in errors or logs.
///
/// ```no_run
/// use std::time::Duration;
/// use futures_util::StreamExt;
/// use rpc_core::subscription::PushSource;
/// use rpc_core::{RawJson, Request, WsBackend};
/// use tower::ServiceExt;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let node = WsBackend::builder("node", "ws://127.0.0.1:8545")
///     .timeout(Duration::from_secs(5))
///     .build()?;
/// let resp = node.clone().oneshot(Request::new("eth_chainId").with_id(1u64.into())).await?;
/// println!("{:?}", resp.result_json());
/// let mut heads = node.subscribe(RawJson::from_static(r#"["newHeads"]"#)?).await?;
/// while let Some(head) = heads.next().await {
///     println!("{head}");
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WsBackend {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    next_id: AtomicU64,
    /// The current connection's command queue (a closed one is replaced).
    conn: Mutex<Option<mpsc::Sender<Cmd>>>,
}

struct Config {
    name: Arc<str>,
    uri: Uri,
    host: String,
    port: u16,
    headers: HeaderMap,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    timeout: Duration,
    connect_timeout: Duration,
    max_message_bytes: usize,
    max_in_flight: usize,
    ping_interval: Duration,
    pong_timeout: Duration,
    subscribe: Arc<str>,
    notification: Arc<str>,
    unsubscribe: Arc<str>,
}

impl fmt::Debug for WsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL is left out on purpose: it may hold an API key.
        f.debug_struct("WsBackend")
            .field("name", &self.inner.config.name)
            .field("timeout", &self.inner.config.timeout)
            .finish_non_exhaustive()
    }
}

impl crate::Named for WsBackend {
    fn name(&self) -> &str {
        &self.inner.config.name
    }
}

/// Builds a [`WsBackend`]. Every setting has a documented default.
#[must_use]
pub struct WsBackendBuilder {
    name: Arc<str>,
    url: String,
    timeout: Duration,
    connect_timeout: Duration,
    max_message_bytes: usize,
    max_in_flight: usize,
    ping_interval: Duration,
    pong_timeout: Duration,
    headers: HeaderMap,
    basic_auth: Option<(String, String)>,
    tls: Option<rustls::ClientConfig>,
    methods: [Arc<str>; 3],
}

impl fmt::Debug for WsBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsBackendBuilder")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl WsBackend {
    /// Starts a builder for a backend called `name` at `url` (`ws://` or
    /// `wss://`; `user:password@` in the URL becomes basic auth).
    pub fn builder(name: impl Into<Arc<str>>, url: impl Into<String>) -> WsBackendBuilder {
        WsBackendBuilder {
            name: name.into(),
            url: url.into(),
            timeout: WsBackendBuilder::DEFAULT_TIMEOUT,
            connect_timeout: WsBackendBuilder::DEFAULT_CONNECT_TIMEOUT,
            max_message_bytes: WsBackendBuilder::DEFAULT_MAX_MESSAGE_BYTES,
            max_in_flight: WsBackendBuilder::DEFAULT_MAX_IN_FLIGHT,
            ping_interval: WsBackendBuilder::DEFAULT_PING_INTERVAL,
            pong_timeout: WsBackendBuilder::DEFAULT_PONG_TIMEOUT,
            headers: HeaderMap::new(),
            basic_auth: None,
            tls: None,
            methods: [
                Arc::from("eth_subscribe"),
                Arc::from("eth_subscription"),
                Arc::from("eth_unsubscribe"),
            ],
        }
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The current connection's queue, opening one if there is none.
    fn sender(&self) -> mpsc::Sender<Cmd> {
        let mut slot = self.inner.conn.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = slot.as_ref().filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(self.inner.config.max_in_flight);
        tokio::spawn(run(self.inner.config.clone(), rx));
        *slot = Some(tx.clone());
        tx
    }
}

impl WsBackendBuilder {
    /// Default for [`timeout`](Self::timeout): 10 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default for [`connect_timeout`](Self::connect_timeout): 3 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
    /// Default for [`max_message_size`](Self::max_message_size): 128 MiB.
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 128 * 1024 * 1024;
    /// Default for [`max_in_flight`](Self::max_in_flight): 1 024.
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
    /// Default for [`ping_interval`](Self::ping_interval): 10 s.
    pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(10);
    /// Default for [`pong_timeout`](Self::pong_timeout): 5 s.
    pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(5);

    /// The longest a call may take, from queueing to its answer. A
    /// request's own [`Deadline`](crate::Deadline) shortens it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest opening a connection may take: TCP, TLS and the upgrade.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The largest message accepted; a larger one closes the connection
    /// (its calls fail with [`RpcError::ConnectionClosed`]).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Calls queued for the connection at most; past it a call waits for
    /// room under its deadline.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// How often an open connection is pinged.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// How long after a ping (or a call's timeout) the connection may stay
    /// silent before it is closed as dead.
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.pong_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// Adds a header sent with the upgrade request (an API key header).
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, BuildError> {
        crate::userinfo::add_header(&mut self.headers, &self.name, name, value)?;
        Ok(self)
    }

    /// Sends HTTP basic auth with the upgrade request.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic_auth = Some((user.into(), password.into()));
        self
    }

    /// Uses this rustls configuration for `wss://`. Default: the Mozilla
    /// roots from `webpki-roots`, ring.
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// The pub/sub method names: `subscribe` (answers a subscription id),
    /// the `notification` method carrying `params.subscription` and
    /// `params.result`, and `unsubscribe`. Default: `eth_subscribe`,
    /// `eth_subscription`, `eth_unsubscribe`.
    pub fn pubsub_methods(
        mut self,
        subscribe: impl Into<Arc<str>>,
        notification: impl Into<Arc<str>>,
        unsubscribe: impl Into<Arc<str>>,
    ) -> Self {
        self.methods = [subscribe.into(), notification.into(), unsubscribe.into()];
        self
    }

    /// Builds the backend. Needs no runtime; the connection opens on first use.
    pub fn build(self) -> Result<WsBackend, BuildError> {
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
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            Some(_) => return Err(invalid("the scheme must be ws or wss")),
            None => return Err(invalid("missing ws:// or wss://")),
        };
        let (uri, userinfo) =
            crate::userinfo::split(&uri).map_err(|_| invalid("not a valid URL"))?;
        let authority = uri.authority().ok_or_else(|| invalid("missing host"))?;
        let host = authority.host().trim_matches(['[', ']']).to_owned();
        if host.is_empty() {
            return Err(invalid("missing host"));
        }
        let port = match authority.as_str().rsplit_once(':') {
            Some((_, p)) if !p.contains(']') => p
                .parse::<u16>()
                .map_err(|_| invalid("the port is not a number from 0 to 65535"))?,
            _ if secure => 443,
            _ => 80,
        };
        let mut headers = self.headers;
        if let Some((user, password)) = self.basic_auth.or(userinfo) {
            let mut value = HeaderValue::from_str(&crate::userinfo::basic(&user, &password))
                .map_err(|_| invalid("invalid credentials"))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let tls = if secure {
            let config = match self.tls {
                Some(c) => c,
                None => {
                    let roots = rustls::RootCertStore {
                        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                    };
                    rustls::ClientConfig::builder_with_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| BuildError::Tls {
                        backend: name.clone(),
                        reason: e.to_string(),
                    })?
                    .with_root_certificates(roots)
                    .with_no_client_auth()
                }
            };
            let server_name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| invalid("the host is not a valid TLS server name"))?;
            Some((
                tokio_rustls::TlsConnector::from(Arc::new(config)),
                server_name,
            ))
        } else {
            None
        };
        let [subscribe, notification, unsubscribe] = self.methods;
        Ok(WsBackend {
            inner: Arc::new(Inner {
                config: Arc::new(Config {
                    name,
                    uri,
                    host,
                    port,
                    headers,
                    tls,
                    timeout: self.timeout,
                    connect_timeout: self.connect_timeout,
                    max_message_bytes: self.max_message_bytes,
                    max_in_flight: self.max_in_flight,
                    ping_interval: self.ping_interval,
                    pong_timeout: self.pong_timeout,
                    subscribe,
                    notification,
                    unsubscribe,
                }),
                next_id: AtomicU64::new(1),
                conn: Mutex::new(None),
            }),
        })
    }
}

/// What a caller asks of the connection task.
enum Cmd {
    /// Send `frame` (a call with wire id `id`); its answer's bytes back.
    Call {
        id: u64,
        frame: String,
        reply: oneshot::Sender<Result<Bytes, RpcError>>,
    },
    /// Send `frame`, a notification (no answer owed).
    Notify { frame: String },
    /// Send `frame` (a subscribe call with wire id `id`); the
    /// notifications' receiver back.
    Subscribe {
        id: u64,
        frame: String,
        reply: oneshot::Sender<Result<mpsc::Receiver<RawJson>, RpcError>>,
    },
    /// A call timed out: make sure the connection is alive.
    Check,
}

/// Notifications a subscription may have undelivered before it is ended.
const SUBSCRIPTION_QUEUE: usize = 256;

impl Service<Request> for WsBackend {
    type Response = Response;
    type Error = RpcError;
    type Future = crate::BoxedResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Room is waited for under the call's deadline, in the call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let this = self.clone();
        crate::BoxedResponseFuture::new(async move { this.exchange(req).await })
    }
}

impl Service<crate::batch::Batch> for WsBackend {
    type Response = crate::batch::BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = crate::batch::BoxedBatchFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    /// The calls go as single messages on the one socket, at once (their
    /// answers are matched by id as they come).
    fn call(&mut self, batch: crate::batch::Batch) -> Self::Future {
        crate::batch::BoxedBatchFuture::new(crate::batch::per_call(self.clone(), batch))
    }
}

impl WsBackend {
    async fn exchange(&self, req: Request) -> Result<Response, RpcError> {
        let config = &self.inner.config;
        let started = Instant::now();
        let mut deadline = started + config.timeout;
        if let Some(call_deadline) = req.deadline() {
            if call_deadline <= started {
                return Err(RpcError::DeadlineExceeded);
            }
            deadline = deadline.min(call_deadline);
        }
        let tx = self.sender();
        if req.is_notification() {
            let mut frame = Vec::with_capacity(req.encoded_len_hint());
            req.write_json(None, &mut frame);
            let frame = String::from_utf8(frame).map_err(|e| RpcError::Internal(e.to_string()))?;
            return match tokio::time::timeout_at(deadline, tx.send(Cmd::Notify { frame })).await {
                Ok(Ok(())) => Ok(Response::new(Id::Null, Payload::Result(RawJson::NULL))),
                Ok(Err(_)) => Err(not_sent(config, "the connection closed")),
                Err(_) => Err(timeout(config, started)),
            };
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut wire = itoa::Buffer::new();
        let wire_id = wire.format(id).as_bytes();
        let mut frame = Vec::with_capacity(req.encoded_len_with(Some(wire_id)));
        req.write_json_with(Some(wire_id), &mut frame);
        let frame = String::from_utf8(frame).map_err(|e| RpcError::Internal(e.to_string()))?;
        let (reply, answer) = oneshot::channel();
        let exchange = async {
            tx.send(Cmd::Call { id, frame, reply })
                .await
                .map_err(|_| not_sent(config, "the connection closed"))?;
            answer
                .await
                .map_err(|_| closed(config, "the connection closed"))?
        };
        let bytes = match tokio::time::timeout_at(deadline, exchange).await {
            Ok(result) => result?,
            Err(_) => {
                // Quiet for a whole call: is the connection alive?
                let _ = tx.try_send(Cmd::Check);
                return Err(timeout(config, started));
            }
        };
        let payload =
            parse_response_to(&bytes, wire_id).map_err(|reason| RpcError::InvalidResponse {
                backend: config.name.clone(),
                reason,
            })?;
        let mut resp = Response::new(req.id().cloned().unwrap_or(Id::Null), payload);
        resp.extensions_mut().insert(ServedBy(config.name.clone()));
        Ok(resp)
    }
}

impl PushSource for WsBackend {
    fn name(&self) -> &str {
        &self.inner.config.name
    }

    fn subscribe(&self, params: RawJson) -> BoxFuture<'static, Result<Subscription, RpcError>> {
        let this = self.clone();
        async move {
            let config = this.inner.config.clone();
            let started = Instant::now();
            let id = this.inner.next_id.fetch_add(1, Ordering::Relaxed);
            let req = Request::new(config.subscribe.clone()).with_params(params);
            let mut frame = Vec::new();
            req.write_json_with(Some(itoa::Buffer::new().format(id).as_bytes()), &mut frame);
            let frame = String::from_utf8(frame).map_err(|e| RpcError::Internal(e.to_string()))?;
            let tx = this.sender();
            let (reply, answer) = oneshot::channel();
            let exchange = async {
                tx.send(Cmd::Subscribe { id, frame, reply })
                    .await
                    .map_err(|_| not_sent(&config, "the connection closed"))?;
                answer
                    .await
                    .map_err(|_| closed(&config, "the connection closed"))?
            };
            let rx = match tokio::time::timeout(config.timeout, exchange).await {
                Ok(rx) => rx?,
                Err(_) => {
                    let _ = tx.try_send(Cmd::Check);
                    return Err(timeout(&config, started));
                }
            };
            Ok(futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|v| (v, rx))
            })
            .boxed())
        }
        .boxed()
    }
}

fn timeout(config: &Config, started: Instant) -> RpcError {
    RpcError::Timeout {
        backend: Some(config.name.clone()),
        elapsed: started.elapsed(),
    }
}

fn not_sent(config: &Config, why: impl Into<BoxError>) -> RpcError {
    RpcError::Connect {
        backend: config.name.clone(),
        source: why.into(),
    }
}

fn closed(config: &Config, why: impl Into<BoxError>) -> RpcError {
    RpcError::ConnectionClosed {
        backend: config.name.clone(),
        source: why.into(),
    }
}

/// A TCP or TLS stream, as the WebSocket sees it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Socket = WebSocketStream<Box<dyn Io>>;

/// TCP, TLS if `wss://`, and the upgrade.
async fn connect(config: &Config) -> Result<Socket, BoxError> {
    let tcp = tokio::net::TcpStream::connect((config.host.as_str(), config.port)).await?;
    tcp.set_nodelay(true)?;
    let io: Box<dyn Io> = match &config.tls {
        Some((connector, name)) => Box::new(connector.connect(name.clone(), tcp).await?),
        None => Box::new(tcp),
    };
    let mut request = config.uri.clone().into_client_request()?;
    for (name, value) in &config.headers {
        request.headers_mut().append(name, value.clone());
    }
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes));
    let (socket, _) =
        tokio_tungstenite::client_async_with_config(request, io, Some(ws_config)).await?;
    Ok(socket)
}

/// What an answer is waited on by.
enum Pending {
    Call(oneshot::Sender<Result<Bytes, RpcError>>),
    Subscribe(oneshot::Sender<Result<mpsc::Receiver<RawJson>, RpcError>>),
}

/// An incoming message, as far as routing it needs.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a str>,
    #[serde(borrow, default)]
    params: Option<NotificationParams<'a>>,
}

#[derive(Deserialize)]
struct NotificationParams<'a> {
    #[serde(borrow)]
    subscription: &'a RawValue,
    #[serde(borrow)]
    result: &'a RawValue,
}

/// One connection: opens it, then writes the queued commands and routes
/// what it reads, until it fails, goes quiet or the backend is dropped.
/// Everything waiting on it gets an answer or an error when it ends.
async fn run(config: Arc<Config>, mut rx: mpsc::Receiver<Cmd>) {
    let socket = match tokio::time::timeout(config.connect_timeout, connect(&config)).await {
        Ok(Ok(socket)) => socket,
        Ok(Err(e)) => return fail_queued(&config, &mut rx, e.to_string()).await,
        Err(_) => {
            let why = format!("no connection within {:?}", config.connect_timeout);
            return fail_queued(&config, &mut rx, why).await;
        }
    };
    tracing::debug!(backend = %config.name, "websocket backend connected");
    let mut conn = Conn {
        config: &config,
        socket,
        pending: HashMap::new(),
        subs: HashMap::new(),
        last_heard: Instant::now(),
        check: None,
    };
    let why = conn.serve(&mut rx).await;
    tracing::debug!(backend = %config.name, reason = %why, "websocket backend connection ended");
    let Conn { pending, .. } = conn;
    for (_, waiter) in pending {
        match waiter {
            Pending::Call(reply) => {
                let _ = reply.send(Err(closed(&config, why.clone())));
            }
            Pending::Subscribe(reply) => {
                let _ = reply.send(Err(closed(&config, why.clone())));
            }
        }
    }
    fail_queued(&config, &mut rx, why).await;
}

/// Fails every command queued (never written) and closes the queue.
async fn fail_queued(config: &Config, rx: &mut mpsc::Receiver<Cmd>, why: String) {
    rx.close();
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Cmd::Call { reply, .. } => {
                let _ = reply.send(Err(not_sent(config, why.clone())));
            }
            Cmd::Subscribe { reply, .. } => {
                let _ = reply.send(Err(not_sent(config, why.clone())));
            }
            Cmd::Notify { .. } | Cmd::Check => {}
        }
    }
}

struct Conn<'a> {
    config: &'a Config,
    socket: Socket,
    pending: HashMap<u64, Pending>,
    /// Live subscriptions by their upstream id (as its JSON text).
    subs: HashMap<Box<str>, mpsc::Sender<RawJson>>,
    last_heard: Instant,
    /// When the connection is dead unless something is heard first.
    check: Option<Instant>,
}

impl Conn<'_> {
    /// Serves until the connection ends; why it did.
    async fn serve(&mut self, rx: &mut mpsc::Receiver<Cmd>) -> String {
        let mut ping = tokio::time::interval(self.config.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.reset();
        loop {
            let check = self.check;
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else {
                        let _ = self.socket.close(None).await;
                        return "the backend was dropped".to_owned();
                    };
                    if let Err(why) = self.command(cmd).await {
                        return why;
                    }
                }
                msg = self.socket.next() => {
                    self.last_heard = Instant::now();
                    self.check = None;
                    match msg {
                        Some(Ok(Message::Text(text))) => self.route(Bytes::from(text)).await,
                        Some(Ok(Message::Binary(bytes))) => self.route(bytes).await,
                        Some(Ok(Message::Close(_))) | None => {
                            return "closed by the backend".to_owned();
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return e.to_string(),
                    }
                }
                _ = ping.tick() => {
                    // Answers whose callers gave up are forgotten.
                    self.pending.retain(|_, p| match p {
                        Pending::Call(r) => !r.is_closed(),
                        Pending::Subscribe(r) => !r.is_closed(),
                    });
                    if let Err(why) = self.probe().await {
                        return why;
                    }
                }
                _ = sleep_until(check) => {
                    return format!("nothing heard within {:?} of a ping", self.config.pong_timeout);
                }
            }
        }
    }

    /// Sends a ping unless one is already waited for.
    async fn probe(&mut self) -> Result<(), String> {
        if self.check.is_none() {
            self.check = Some(Instant::now() + self.config.pong_timeout);
            self.send(Message::Ping(Bytes::new())).await?;
        }
        Ok(())
    }

    /// Writes under the call timeout (a peer that stopped reading fills
    /// the socket's buffers; that connection is dead).
    async fn send(&mut self, msg: Message) -> Result<(), String> {
        match tokio::time::timeout(self.config.timeout, self.socket.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("could not write within {:?}", self.config.timeout)),
        }
    }

    async fn command(&mut self, cmd: Cmd) -> Result<(), String> {
        match cmd {
            Cmd::Call { id, frame, reply } => {
                if reply.is_closed() {
                    return Ok(());
                }
                self.pending.insert(id, Pending::Call(reply));
                self.send(Message::text(frame)).await
            }
            Cmd::Subscribe { id, frame, reply } => {
                self.pending.insert(id, Pending::Subscribe(reply));
                self.send(Message::text(frame)).await
            }
            Cmd::Notify { frame } => self.send(Message::text(frame)).await,
            Cmd::Check => self.probe().await,
        }
    }

    /// An answer to its caller, a notification to its subscriber.
    async fn route(&mut self, bytes: Bytes) {
        let Ok(envelope) = serde_json::from_slice::<Envelope<'_>>(&bytes) else {
            return;
        };
        if let Some(id) = envelope.id.and_then(|id| id.get().parse::<u64>().ok()) {
            match self.pending.remove(&id) {
                Some(Pending::Call(reply)) => {
                    let _ = reply.send(Ok(bytes.clone()));
                }
                Some(Pending::Subscribe(reply)) => {
                    let answer = match parse_response_to(
                        &bytes,
                        itoa::Buffer::new().format(id).as_bytes(),
                    ) {
                        Ok(Payload::Result(sub)) if !sub.is_null() => {
                            let (tx, rx) = mpsc::channel(SUBSCRIPTION_QUEUE);
                            let key = String::from_utf8_lossy(sub.as_bytes()).into();
                            self.subs.insert(key, tx);
                            Ok(rx)
                        }
                        Ok(Payload::Error(e)) => Err(RpcError::Rejected {
                            error: e,
                            status: http::StatusCode::BAD_REQUEST,
                        }),
                        Ok(Payload::Result(_)) => Err(RpcError::InvalidResponse {
                            backend: self.config.name.clone(),
                            reason: "a null subscription id".to_owned(),
                        }),
                        Err(reason) => Err(RpcError::InvalidResponse {
                            backend: self.config.name.clone(),
                            reason,
                        }),
                    };
                    // A subscriber that left before the answer closed its
                    // receiver: its first notification ends it upstream.
                    let _ = reply.send(answer);
                }
                None => {}
            }
            return;
        }
        if envelope.method != Some(&*self.config.notification) {
            return;
        }
        let Some(params) = envelope.params else {
            return;
        };
        let key = params.subscription.get();
        let Some(tx) = self.subs.get(key) else {
            return;
        };
        match tx.try_send(RawJson::slice_of(&bytes, params.result)) {
            Ok(()) => {}
            Err(e) => {
                if matches!(e, mpsc::error::TrySendError::Full(_)) {
                    tracing::warn!(backend = %self.config.name, "websocket backend: a subscriber fell behind; its subscription ends");
                }
                let key: Box<str> = key.into();
                self.subs.remove(&key);
                // Id 0 is never a call's: its answer is dropped.
                let frame = format!(
                    r#"{{"jsonrpc":"2.0","id":0,"method":{},"params":[{}]}}"#,
                    serde_json::Value::from(&*self.config.unsubscribe),
                    key
                );
                let _ = self.send(Message::text(frame)).await;
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
