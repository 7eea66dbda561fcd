//! JSON-RPC over WebSocket on the front's own listener (HTTP/1.1 upgrade).
//!
//! Every message (a call or a batch, text or binary frames) goes through
//! the same service as an HTTP POST — the same layers, the same error
//! objects — and its answers go back on the socket as they complete
//! (JSON-RPC ids pair them; a batch is answered as one message).
//!
//! Bounded by [`WsConfig`]: sockets open at once (all clients and per
//! address), calls in flight per socket (reading pauses at the limit),
//! messages waiting to be sent (a client that does not read is closed with
//! 1008, never buffered without bound), the message size (the front's body
//! limit; larger closes with 1009), liveness (a ping every
//! `ping_interval`; nothing heard for that plus `pong_timeout` closes), an
//! idle timeout, and the server's drain (close 1001 once in-flight calls
//! are answered).
//!
//! `tokio-tungstenite` speaks the protocol: maintained, on tokio's I/O
//! traits (so hyper's upgraded connection plugs in), with its own frame and
//! message size limits, and automatic pong answers; `fastwebsockets` is
//! faster on raw frames but leaves fragmentation and limits to the caller,
//! and a JSON-RPC call costs far more than its framing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use http::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{HeaderMap, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::front::CallContext;
use crate::parse::{parse_message, Incoming};
use crate::{ErrorObject, JsonRpcService, Response};

/// Limits of the WebSocket front; every setting has a default.
///
/// ```
/// use std::time::Duration;
/// use rpc_core::server::{ServerConfig, WsConfig};
///
/// let config = ServerConfig::default().websocket(
///     WsConfig::default()
///         .max_connections(5_000)
///         .send_queue(128)
///         .ping_interval(Duration::from_secs(20)),
/// );
/// # drop(config);
/// ```
#[derive(Debug, Clone)]
pub struct WsConfig {
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_ip: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) send_queue: usize,
    pub(crate) ping_interval: Duration,
    pub(crate) pong_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) subscriptions: Option<Arc<dyn SubscriptionSource>>,
    pub(crate) max_subscriptions: usize,
    pub(crate) methods: SubscriptionMethods,
    pub(crate) admit: bool,
}

/// The method names of subscriptions (Ethereum's by default).
#[derive(Debug, Clone)]
pub struct SubscriptionMethods {
    /// Starts one: `eth_subscribe`.
    pub subscribe: Arc<str>,
    /// Ends one: `eth_unsubscribe`.
    pub unsubscribe: Arc<str>,
    /// What the notifications are called: `eth_subscription`.
    pub notification: Arc<str>,
}

impl Default for SubscriptionMethods {
    fn default() -> Self {
        SubscriptionMethods {
            subscribe: Arc::from("eth_subscribe"),
            unsubscribe: Arc::from("eth_unsubscribe"),
            notification: Arc::from("eth_subscription"),
        }
    }
}

pub use crate::subscription::{Subscription, SubscriptionSource};

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_connections: 10_000,
            max_connections_per_ip: 100,
            max_in_flight: 64,
            send_queue: 256,
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            subscriptions: None,
            max_subscriptions: 100,
            methods: SubscriptionMethods::default(),
            admit: false,
        }
    }
}

impl WsConfig {
    /// WebSocket connections open at once, all clients (default 10 000);
    /// past it an upgrade is answered 503 (`-32005`).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// WebSocket connections open at once from one client address (default
    /// 100; the address the front resolves, trusted proxies applied).
    pub fn max_connections_per_ip(mut self, n: usize) -> Self {
        self.max_connections_per_ip = n.max(1);
        self
    }

    /// Calls of one socket being answered at once (default 64): reading
    /// the socket pauses at the limit.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Messages waiting to be written to one socket (default 256): a
    /// client that does not read its answers is closed with 1008.
    pub fn send_queue(mut self, n: usize) -> Self {
        self.send_queue = n.max(1);
        self
    }

    /// How often the server pings a socket (default 30 s).
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.ping_interval = d.max(Duration::from_millis(10));
        self
    }

    /// How long after a ping a silent socket is closed (default 10 s).
    pub fn pong_timeout(mut self, d: Duration) -> Self {
        self.pong_timeout = d.max(Duration::from_millis(10));
        self
    }

    /// Serves `eth_subscribe` / `eth_unsubscribe` (see
    /// [`subscription_methods`](Self::subscription_methods)) from `source`
    /// (default: none; they reach the service like any call).
    pub fn subscriptions(mut self, source: Arc<dyn SubscriptionSource>) -> Self {
        self.subscriptions = Some(source);
        self
    }

    /// Subscriptions one socket may hold at once (default 100); past it a
    /// subscribe call gets `-32005`.
    pub fn max_subscriptions(mut self, n: usize) -> Self {
        self.max_subscriptions = n.max(1);
        self
    }

    /// Passes each subscribe call through the service first, marked
    /// [`AdmissionCheck`](crate::admission::AdmissionCheck), so the
    /// stack's policy layers (method filter, rate limits, metrics) decide
    /// and count it like any call: an error answer is the client's, a
    /// result admits it (default: off — subscribe calls do not reach the
    /// service). The service **must** answer such calls without forwarding
    /// them: put [`AdmissionLayer`](crate::admission::AdmissionLayer) below
    /// the policy layers.
    pub fn admit_subscriptions(mut self, on: bool) -> Self {
        self.admit = on;
        self
    }

    /// The subscription method names (default Ethereum's).
    pub fn subscription_methods(mut self, methods: SubscriptionMethods) -> Self {
        self.methods = methods;
        self
    }

    /// A socket with no message from its client for this long, no call in
    /// flight and no subscription, is closed with 1000 (default 10
    /// minutes).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d.max(Duration::from_millis(10));
        self
    }
}

/// Open sockets, all clients and per address (shared by a front's clones).
#[derive(Debug, Default)]
pub(crate) struct WsCount {
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted socket: uncounted on drop.
pub(crate) struct WsSlot {
    count: Arc<WsCount>,
    ip: Option<IpAddr>,
}

impl Drop for WsSlot {
    fn drop(&mut self) {
        self.count.open.fetch_sub(1, Ordering::AcqRel);
        if let (Some(ip), Ok(mut map)) = (self.ip, self.count.per_ip.lock()) {
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
        metrics::gauge!("rpc_ws_connections_open").decrement(1.0);
    }
}

impl WsCount {
    /// Counts a new socket from `ip`, or says which cap it meets.
    pub(crate) fn admit(
        self: &Arc<Self>,
        config: &WsConfig,
        ip: Option<IpAddr>,
    ) -> Result<WsSlot, &'static str> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= config.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err("max_connections");
        }
        if let Some(ip) = ip {
            let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(ip).or_insert(0);
            if *n >= config.max_connections_per_ip {
                drop(map);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err("max_connections_per_ip");
            }
            *n += 1;
        }
        metrics::gauge!("rpc_ws_connections_open").increment(1.0);
        Ok(WsSlot {
            count: self.clone(),
            ip,
        })
    }
}

/// Whether these headers ask for a WebSocket upgrade.
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    let has = |name: http::header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has(UPGRADE, "websocket") && has(CONNECTION, "upgrade")
}

/// The 101 answer to a valid upgrade request, or why it is refused.
pub(crate) fn accept(headers: &HeaderMap) -> Result<http::Response<()>, &'static str> {
    if headers
        .get("sec-websocket-version")
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err("Sec-WebSocket-Version must be 13");
    }
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .ok_or("Sec-WebSocket-Key is missing")?;
    let mut resp = http::Response::new(());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    let accept = derive_accept_key(key.as_bytes());
    h.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).map_err(|_| "bad key")?,
    );
    Ok(resp)
}

/// Why a session ended (a label of `rpc_ws_closed_total`).
fn closed(reason: &'static str) {
    metrics::counter!("rpc_ws_closed_total", "reason" => reason).increment(1);
}

/// Things the session waits for besides the socket.
pub(crate) struct Signals {
    /// The connection's activity: notified when the server drains or needs
    /// the connection's room.
    pub(crate) conn: Option<Arc<super::conn::Conn>>,
    /// Set when the server starts draining.
    pub(crate) draining: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// Serves one upgraded connection until it closes.
#[allow(clippy::too_many_arguments)] // the front's parts, handed over once
pub(crate) async fn session<S: JsonRpcService>(
    upgraded: hyper::upgrade::Upgraded,
    inner: S,
    batches: Option<super::front::BatchEntry<S>>,
    ctx: CallContext,
    config: Arc<super::ServerConfig>,
    ws: WsConfig,
    signals: Signals,
    _slot: WsSlot,
) {
    let mut proto = WebSocketConfig::default();
    proto.max_message_size = Some(config.max_body_bytes);
    proto.max_frame_size = Some(config.max_body_bytes);
    let socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(proto)).await;
    let (mut sink, mut stream) = socket.split();
    // The writer: answers in, frames out, in order; bounded.
    let (tx, mut rx) = mpsc::channel::<Message>(ws.send_queue);
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let close = matches!(msg, Message::Close(_));
            if sink.send(msg).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut in_flight = FuturesUnordered::new();
    // Live subscriptions by id (their forwarders), and a signal from a
    // forwarder that found the send queue full.
    let mut subs: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    let overflow = Arc::new(tokio::sync::Notify::new());
    let mut ping = tokio::time::interval(ws.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    let mut last_message = tokio::time::Instant::now();
    let conn = signals.conn.clone();
    let draining = signals.draining.clone();
    let closing = async move {
        // Asked to close (room, drain), or the server's drain seen.
        let drain = async {
            let Some(flag) = draining else {
                return std::future::pending().await;
            };
            let mut poll = tokio::time::interval(Duration::from_millis(50));
            while !flag.load(Ordering::Acquire) {
                poll.tick().await;
            }
        };
        match conn {
            Some(c) => tokio::select! {
                () = c.close.notified() => {}
                () = drain => {}
            },
            None => drain.await,
        }
    };
    let mut closing = std::pin::pin!(closing);
    let end: (CloseCode, &'static str, &'static str) = loop {
        let reading = in_flight.len() < ws.max_in_flight;
        tokio::select! {
            msg = stream.next(), if reading => {
                last_heard = tokio::time::Instant::now();
                let bytes = match msg {
                    Some(Ok(Message::Text(t))) => Bytes::from(t),
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => break (CloseCode::Normal, "", "client"),
                    Some(Err(WsError::Capacity(_))) => {
                        break (CloseCode::Size, "message too large", "too_large")
                    }
                    Some(Err(_)) => break (CloseCode::Protocol, "protocol error", "error"),
                };
                last_message = last_heard;
                metrics::counter!("rpc_ws_messages_total", "direction" => "in").increment(1);
                let incoming = match parse_message(bytes, config.max_batch) {
                    Ok(incoming) => incoming,
                    Err(e) => {
                        let json = Response::error(crate::Id::Null, e.to_error_object()).to_json();
                        if tx.try_send(frame(json)).is_err() {
                            break (CloseCode::Policy, "send queue full: read your answers", "slow_consumer");
                        }
                        continue;
                    }
                };
                // Subscriptions are the socket's own: answered here.
                let job = match (incoming, &ws.subscriptions) {
                    // Admitted by the stack's policy first.
                    (Incoming::Single(Ok(req)), Some(_))
                        if ws.admit && req.method() == &*ws.methods.subscribe =>
                    {
                        Job::Admit(req)
                    }
                    (Incoming::Single(Ok(req)), Some(source)) if is_subscription(&ws, &req) => {
                        if subscription_call(&ws, source, &req, &mut subs, &tx, &overflow).is_err() {
                            break (CloseCode::Policy, "send queue full: read your answers", "slow_consumer");
                        }
                        continue;
                    }
                    (incoming, _) => Job::Answer(incoming),
                };
                let inner = inner.clone();
                let ctx = ctx.with_deadline(config.request_timeout);
                let config = config.clone();
                in_flight.push(async move { work(inner, batches, ctx, &config, job).await });
            }
            () = overflow.notified() => {
                metrics::counter!("rpc_ws_messages_dropped_total").increment(1);
                break (CloseCode::Policy, "send queue full: read your notifications", "slow_consumer");
            }
            Some(out) = in_flight.next(), if !in_flight.is_empty() => {
                let json = match out {
                    Out::Json(json) => json,
                    Out::Nothing => continue,
                    Out::Subscribe(req) => {
                        let Some(source) = &ws.subscriptions else { continue };
                        if subscription_call(&ws, source, &req, &mut subs, &tx, &overflow).is_err() {
                            break (CloseCode::Policy, "send queue full: read your answers", "slow_consumer");
                        }
                        continue;
                    }
                };
                match tx.try_send(frame(json)) {
                    Ok(()) => {
                        metrics::counter!("rpc_ws_messages_total", "direction" => "out").increment(1);
                    }
                    Err(_) => {
                        metrics::counter!("rpc_ws_messages_dropped_total").increment(1);
                        break (CloseCode::Policy, "send queue full: read your answers", "slow_consumer");
                    }
                }
            }
            _ = ping.tick() => {
                let now = tokio::time::Instant::now();
                if now.duration_since(last_heard) >= ws.ping_interval + ws.pong_timeout {
                    break (CloseCode::Away, "no pong", "no_pong");
                }
                if in_flight.is_empty()
                    && subs.is_empty()
                    && now.duration_since(last_message) >= ws.idle_timeout
                {
                    break (CloseCode::Normal, "idle", "idle");
                }
                if tx.try_send(Message::Ping(Bytes::new())).is_err() {
                    break (CloseCode::Policy, "send queue full: read your answers", "slow_consumer");
                }
            }
            () = &mut closing => {
                // Draining: the calls in flight are answered first.
                while let Some(out) = in_flight.next().await {
                    if let Out::Json(json) = out {
                        let _ = tx.try_send(frame(json));
                    }
                }
                break (CloseCode::Away, "server shutting down", "drain");
            }
        }
    };
    closed(end.2);
    let live = subs.len();
    for (_, forwarder) in subs.drain() {
        forwarder.abort();
    }
    metrics::gauge!("rpc_ws_subscriptions").decrement(live as f64);
    let frame = CloseFrame {
        code: end.0,
        reason: end.1.into(),
    };
    // The close frame goes after what is queued (unless the queue is what
    // overflowed: then the writer is stopped).
    if end.2 == "slow_consumer" {
        writer.abort();
        return;
    }
    let _ = tx.try_send(Message::Close(Some(frame)));
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

/// A text frame of JSON (always UTF-8; binary if it somehow were not).
fn frame(json: Vec<u8>) -> Message {
    match String::from_utf8(json) {
        Ok(text) => Message::text(text),
        Err(e) => Message::Binary(Bytes::from(e.into_bytes())),
    }
}

/// What a socket hands the service.
enum Job {
    /// A message to answer.
    Answer(Incoming),
    /// A subscribe call to admit (see `WsConfig::admit_subscriptions`).
    Admit(crate::Request),
}

/// What comes of a [`Job`].
enum Out {
    /// An answer to send.
    Json(Vec<u8>),
    /// Nothing (a message of notifications only).
    Nothing,
    /// An admitted subscribe call, to serve on the socket.
    Subscribe(crate::Request),
}

/// Runs one job through the service.
async fn work<S: JsonRpcService>(
    inner: S,
    batches: Option<super::front::BatchEntry<S>>,
    ctx: CallContext,
    config: &super::ServerConfig,
    job: Job,
) -> Out {
    let json = match job {
        Job::Answer(Incoming::Single(Err(invalid))) => Some(invalid.into_response().to_json()),
        Job::Answer(Incoming::Single(Ok(req))) => ctx
            .call(inner, req)
            .await
            .map(|a| a.into_response().to_json()),
        Job::Answer(Incoming::Batch(items)) => {
            super::front::answer_batch(&inner, batches, &ctx, config.batch_concurrency, items)
                .await
                .map(|body| body.json)
        }
        Job::Admit(req) => {
            let mut check = crate::Request::new(req.method_arc().clone())
                .with_id(req.id().cloned().unwrap_or(crate::Id::Null));
            if let Some(params) = req.params() {
                check = check.with_params(params.clone());
            }
            check
                .extensions_mut()
                .insert(crate::admission::AdmissionCheck);
            return match ctx.call(inner, check).await.map(|a| a.into_response()) {
                Some(resp) if matches!(resp.payload(), crate::Payload::Error(_)) => {
                    Out::Json(resp.to_json())
                }
                _ => Out::Subscribe(req),
            };
        }
    };
    json.map_or(Out::Nothing, Out::Json)
}

/// Whether `req` is a subscribe or unsubscribe call.
fn is_subscription(ws: &WsConfig, req: &crate::Request) -> bool {
    let m = req.method();
    m == &*ws.methods.subscribe || m == &*ws.methods.unsubscribe
}

/// A new subscription id: 128 bits from two randomly keyed hashers (the
/// standard library seeds each from the OS).
fn new_subscription_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let word = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(1);
        h.finish()
    };
    format!("0x{:016x}{:016x}", word(), word())
}

/// Answers a subscribe or unsubscribe call on this socket (its answer
/// queued before any notification); a subscription's notifications are
/// forwarded to `tx` by a task of its own, which signals `overflow` when
/// the queue is full. `Err` when the answer did not fit the queue.
fn subscription_call(
    ws: &WsConfig,
    source: &Arc<dyn SubscriptionSource>,
    req: &crate::Request,
    subs: &mut HashMap<String, tokio::task::AbortHandle>,
    tx: &mpsc::Sender<Message>,
    overflow: &Arc<tokio::sync::Notify>,
) -> Result<(), ()> {
    let send = |json: Vec<u8>| tx.try_send(frame(json)).map_err(|_| ());
    let id = req.id().cloned().unwrap_or_default();
    if req.method() == &*ws.methods.unsubscribe {
        let which: Option<String> = req
            .params()
            .and_then(|p| serde_json::from_slice::<(String,)>(p.as_bytes()).ok())
            .map(|(s,)| s);
        let found = which.and_then(|w| subs.remove(&w));
        if let Some(forwarder) = &found {
            forwarder.abort();
            metrics::gauge!("rpc_ws_subscriptions").decrement(1.0);
        }
        let result = if found.is_some() { "true" } else { "false" };
        let result = crate::RawJson::from_static(result).unwrap_or(crate::RawJson::NULL);
        return send(Response::result(id, result).to_json());
    }
    if subs.len() >= ws.max_subscriptions {
        return send(
            Response::error(
                id,
                ErrorObject::new(
                    crate::codes::LIMIT_EXCEEDED,
                    format!(
                        "at most {} subscriptions per connection",
                        ws.max_subscriptions
                    ),
                ),
            )
            .to_json(),
        );
    }
    let mut stream = match source.subscribe(req.params()) {
        Ok(stream) => stream,
        Err(error) => return send(Response::error(id, error).to_json()),
    };
    let sub = new_subscription_id();
    let prefix = format!(
        r#"{{"jsonrpc":"2.0","method":"{}","params":{{"subscription":"{sub}","result":"#,
        ws.methods.notification
    );
    // The answer first, then the notifications.
    let result = crate::RawJson::from_serialize(&sub).unwrap_or(crate::RawJson::NULL);
    send(Response::result(id, result).to_json())?;
    let (tx, overflow) = (tx.clone(), overflow.clone());
    let forwarder = tokio::spawn(async move {
        while let Some(result) = stream.next().await {
            let mut json = Vec::with_capacity(prefix.len() + result.as_bytes().len() + 2);
            json.extend_from_slice(prefix.as_bytes());
            json.extend_from_slice(result.as_bytes());
            json.extend_from_slice(b"}}");
            match tx.try_send(frame(json)) {
                Ok(()) => {
                    metrics::counter!("rpc_ws_notifications_total").increment(1);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    overflow.notify_one();
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    });
    subs.insert(sub, forwarder.abort_handle());
    metrics::gauge!("rpc_ws_subscriptions").increment(1.0);
    Ok(())
}

/// A refused upgrade: an HTTP error with a JSON-RPC error body.
pub(crate) fn refusal(status: StatusCode, message: &str) -> (StatusCode, ErrorObject) {
    let code = if status == StatusCode::SERVICE_UNAVAILABLE {
        crate::codes::LIMIT_EXCEEDED
    } else {
        crate::codes::INVALID_REQUEST
    };
    (status, ErrorObject::new(code, message.to_owned()))
}
