//! The task that owns the one connection: connect, handshake, re-subscribe,
//! multiplex calls, keep it alive, and start over when it dies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rpc_core::parse::parse_response;
use rpc_core::{Id, RawJson, Request, Response, RpcError};
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::{sleep_until, timeout, Instant};

use crate::config::Config;

/// Empty positional params, `[]`.
fn no_params() -> RawJson {
    // "[]" is valid JSON; the fallback is never taken.
    RawJson::from_static("[]").unwrap_or(RawJson::NULL)
}

pub(crate) const CONNECTING: u8 = 0;
pub(crate) const CONNECTED: u8 = 1;
pub(crate) const DISCONNECTED: u8 = 2;

/// A notification from the server (or re-issued after a reconnect when a
/// subscription's status changed meanwhile).
#[derive(Clone, Debug)]
pub struct Notification {
    /// `blockchain.headers.subscribe`, `blockchain.scripthash.subscribe`, ...
    pub method: Arc<str>,
    /// The notification's params, as the server sent them.
    pub params: RawJson,
}

/// What a subscription last reported, to tell after a reconnect whether the
/// subscriber missed an update.
struct Sub {
    method: Arc<str>,
    params: RawJson,
    last: Option<RawJson>,
}

pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) state: AtomicU8,
    pub(crate) notifications: broadcast::Sender<Notification>,
    subs: Mutex<HashMap<String, Sub>>,
    pub(crate) connects: AtomicU64,
    pub(crate) server: Mutex<Option<(String, String)>>,
    /// The server's tip height (0: not known yet).
    pub(crate) tip: AtomicU64,
    board: Option<crate::TipSlot>,
    /// Fingerprints of the tip's hash and its parent's (see
    /// [`HeadBlock`](rpc_core::HeadBlock)), written before `tip`.
    pub(crate) tip_hash: AtomicU64,
    pub(crate) tip_parent: AtomicU64,
}

impl Shared {
    pub(crate) fn new(name: Arc<str>, board: Option<crate::TipSlot>) -> Self {
        Shared {
            tip: AtomicU64::new(0),
            tip_hash: AtomicU64::new(0),
            tip_parent: AtomicU64::new(0),
            board,
            name,
            state: AtomicU8::new(CONNECTING),
            notifications: broadcast::channel(1024).0,
            subs: Mutex::new(HashMap::new()),
            connects: AtomicU64::new(0),
            server: Mutex::new(None),
        }
    }

    fn set_state(&self, s: u8) {
        self.state.store(s, Ordering::Release);
    }

    /// Records a header (`{"height": n, ..}`) the server reported.
    fn saw_header(&self, header: &[u8]) {
        #[derive(serde::Deserialize)]
        struct H<'a> {
            height: u64,
            #[serde(borrow)]
            hex: Option<&'a str>,
        }
        if let Ok(h) = serde_json::from_slice::<H<'_>>(header) {
            let (hash, parent) = h.hex.and_then(header_fingerprints).unwrap_or((0, 0));
            self.tip_hash.store(hash, Ordering::Relaxed);
            self.tip_parent.store(parent, Ordering::Relaxed);
            self.tip.store(h.height, Ordering::Release);
            if let Some(slot) = &self.board {
                slot.post(h.height);
            }
        }
    }

    /// The tip as a [`HeadBlock`](rpc_core::HeadBlock), when its header was
    /// seen and not replaced while being read.
    pub(crate) fn head_block(&self) -> Option<rpc_core::HeadBlock> {
        let number = self.tip.load(Ordering::Acquire);
        let hash = self.tip_hash.load(Ordering::Relaxed);
        let parent = self.tip_parent.load(Ordering::Relaxed);
        (number != 0 && hash != 0 && self.tip.load(Ordering::Acquire) == number).then_some(
            rpc_core::HeadBlock {
                number,
                hash,
                parent,
            },
        )
    }

    fn publish(&self, method: Arc<str>, params: RawJson) {
        // No receiver is fine: nobody listens.
        let _ = self.notifications.send(Notification { method, params });
    }
}

pub(crate) struct Command {
    pub(crate) request: Request,
    pub(crate) reply: oneshot::Sender<Result<Response, RpcError>>,
}

impl Command {
    fn fail_not_sent(self, name: &Arc<str>, why: &str) {
        let _ = self.reply.send(Err(RpcError::Connect {
            backend: name.clone(),
            source: why.to_owned().into(),
        }));
    }
}

/// The subscription key of a call (`None` if it is not a subscription), and
/// whether it ends one. Scripthash keys use the scripthash as JSON text, the
/// same as [`notification`] builds from a server's notification.
fn sub_key(method: &str, params: Option<&RawJson>) -> Option<(String, bool)> {
    let first = || -> Option<String> {
        let args: Vec<serde_json::Value> = params?.deserialize().ok()?;
        Some(args.first()?.to_string())
    };
    match method {
        "blockchain.headers.subscribe" => Some((method.to_owned(), false)),
        "blockchain.scripthash.subscribe" => Some((
            format!("blockchain.scripthash.subscribe[{}]", first()?),
            false,
        )),
        "blockchain.scripthash.unsubscribe" => Some((
            format!("blockchain.scripthash.subscribe[{}]", first()?),
            true,
        )),
        _ => None,
    }
}

enum Pending {
    Client {
        reply: oneshot::Sender<Result<Response, RpcError>>,
        id: Id,
        sub: Option<String>,
    },
    Ping,
    Resubscribe(String),
}

enum Exit {
    /// Every handle is gone: stop.
    Closed,
    /// The connection died; try again.
    Lost(String),
}

type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// Newline-delimited frames with a bound on their length.
struct Lines {
    reader: Reader,
    buf: BytesMut,
    scanned: usize,
    max: usize,
}

impl Lines {
    /// The next line without its `\n` (cancel-safe: state lives in `buf`).
    async fn next(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            if let Some(pos) = self.buf[self.scanned..].iter().position(|b| *b == b'\n') {
                let end = self.scanned + pos;
                let line = self.buf.split_to(end + 1).freeze();
                self.scanned = 0;
                return Ok(Some(line.slice(..end)));
            }
            self.scanned = self.buf.len();
            if self.buf.len() > self.max {
                return Err(format!("a line longer than {} bytes", self.max));
            }
            self.buf.reserve(16 * 1024);
            match self.reader.read_buf(&mut self.buf).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

async fn open(
    config: &Config,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(Reader, Writer), String> {
    let tcp = tokio::net::TcpStream::connect((config.host.as_str(), config.port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => {
            let (r, w) = tcp.into_split();
            Ok((Box::new(r), Box::new(w)))
        }
        Some(tls) => {
            let server = rustls::pki_types::ServerName::try_from(config.host.clone())
                .map_err(|e| e.to_string())?;
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(server, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            let (r, w) = tokio::io::split(stream);
            Ok((Box::new(r), Box::new(w)))
        }
    }
}

/// Connects and negotiates the protocol version, within the connect timeout.
async fn connect(
    config: &Config,
    tls: Option<&Arc<rustls::ClientConfig>>,
    shared: &Shared,
) -> Result<(Lines, Writer), String> {
    let attempt = async {
        let (reader, mut writer) = open(config, tls).await?;
        let mut lines = Lines {
            reader,
            buf: BytesMut::with_capacity(16 * 1024),
            scanned: 0,
            max: config.max_line,
        };
        let hello = serde_json::json!({
            "jsonrpc": "2.0", "id": 0, "method": "server.version",
            "params": [config.client_name, [config.protocol_min, config.protocol_max]],
        });
        let mut line = serde_json::to_vec(&hello).map_err(|e| e.to_string())?;
        line.push(b'\n');
        writer.write_all(&line).await.map_err(|e| e.to_string())?;
        loop {
            let Some(line) = lines.next().await? else {
                return Err("closed during the version handshake".to_owned());
            };
            match parse_response(&line, &Id::from(0u64)) {
                Ok(rpc_core::Payload::Result(raw)) => {
                    let (software, protocol): (String, String) = raw
                        .deserialize()
                        .map_err(|e| format!("server.version answer: {e}"))?;
                    if let Ok(mut s) = shared.server.lock() {
                        *s = Some((software, protocol));
                    }
                    if let Some(want) = &config.expect_genesis {
                        check_genesis(&mut lines, &mut writer, want).await?;
                    }
                    return Ok((lines, writer));
                }
                Ok(rpc_core::Payload::Error(e)) => {
                    return Err(format!(
                        "server.version refused: {} {}",
                        e.code(),
                        e.message()
                    ));
                }
                // A notification or noise before the answer: keep reading.
                Err(_) => continue,
            }
        }
    };
    match timeout(config.connect_timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no connection and handshake within {:?}",
            config.connect_timeout
        )),
    }
}

/// Asks `server.features` and refuses a server on another network.
async fn check_genesis(lines: &mut Lines, writer: &mut Writer, want: &str) -> Result<(), String> {
    const ID: u64 = u64::MAX;
    let ask = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{ID},\"method\":\"server.features\",\"params\":[]}}\n"
    );
    writer
        .write_all(ask.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let Some(line) = lines.next().await? else {
            return Err("closed while asking server.features".to_owned());
        };
        let Ok(rpc_core::Payload::Result(raw)) = parse_response(&line, &Id::from(ID)) else {
            continue;
        };
        #[derive(serde::Deserialize)]
        struct Features {
            genesis_hash: String,
        }
        let got: Features = raw
            .deserialize()
            .map_err(|e| format!("server.features: {e}"))?;
        if !got.genesis_hash.eq_ignore_ascii_case(want) {
            return Err(format!(
                "wrong network: genesis {} (expected {want})",
                got.genesis_hash
            ));
        }
        return Ok(());
    }
}

fn jitter(d: Duration) -> Duration {
    // Cheap randomness: the clock's nanoseconds; spreads reconnects of many
    // clients without a dependency.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0)
}

pub(crate) async fn run(
    config: Config,
    tls: Option<Arc<rustls::ClientConfig>>,
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Command>,
) {
    let mut backoff = config.backoff_min;
    loop {
        shared.set_state(CONNECTING);
        let started = Instant::now();
        match connect(&config, tls.as_ref(), &shared).await {
            Ok((lines, writer)) => {
                shared.connects.fetch_add(1, Ordering::Relaxed);
                shared.set_state(CONNECTED);
                tracing::debug!(backend = %shared.name, "electrum connection up");
                match session(&config, &shared, lines, writer, &mut rx).await {
                    Exit::Closed => return,
                    Exit::Lost(why) => {
                        tracing::warn!(backend = %shared.name, reason = %why, "electrum connection lost");
                    }
                }
                // The server answered (handshake, then a working session):
                // start over. A connection lost at once (a server that
                // accepts and drops) keeps doubling, so it is not hammered.
                if started.elapsed() >= Duration::from_secs(2) {
                    backoff = config.backoff_min;
                }
            }
            Err(why) => {
                tracing::warn!(backend = %shared.name, reason = %why, "electrum connect failed");
            }
        }
        shared.set_state(DISCONNECTED);
        // Wait out the backoff; calls that arrive meanwhile fail at once as
        // not sent, so a failover group moves on instead of waiting.
        let until = Instant::now() + jitter(backoff);
        backoff = (backoff * 2).min(config.backoff_max);
        loop {
            tokio::select! {
                _ = sleep_until(until) => break,
                cmd = rx.recv() => match cmd {
                    None => return,
                    Some(cmd) => cmd.fail_not_sent(&shared.name, "not connected (reconnecting)"),
                },
            }
        }
    }
}

async fn session(
    config: &Config,
    shared: &Shared,
    mut lines: Lines,
    mut writer: Writer,
    rx: &mut mpsc::UnboundedReceiver<Command>,
) -> Exit {
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut next_id: u64 = 1;
    let mut out = Vec::with_capacity(4096);
    let mut last_rx = Instant::now();
    let mut ping_sent: Option<Instant> = None;

    // The backend always follows the tip (for `tip()` and stale-tip checks).
    if let Ok(mut subs) = shared.subs.lock() {
        subs.entry("blockchain.headers.subscribe".to_owned())
            .or_insert_with(|| Sub {
                method: Arc::from("blockchain.headers.subscribe"),
                params: no_params(),
                last: None,
            });
    }
    // Re-establish subscriptions first, so no update is missed.
    let resubs: Vec<(String, Arc<str>, RawJson)> = shared
        .subs
        .lock()
        .map(|s| {
            s.iter()
                .map(|(k, v)| (k.clone(), v.method.clone(), v.params.clone()))
                .collect()
        })
        .unwrap_or_default();
    for (key, method, params) in resubs {
        let id = next_id;
        next_id += 1;
        out.clear();
        Request::new(method)
            .with_params(params)
            .write_json(Some(&Id::from(id)), &mut out);
        out.push(b'\n');
        if let Err(e) = write(config, &mut writer, &out).await {
            return Exit::Lost(e);
        }
        pending.insert(id, Pending::Resubscribe(key));
    }

    let exit = loop {
        let check_at = match ping_sent {
            Some(sent) => sent + config.ping_timeout,
            None => last_rx + config.ping_interval,
        };
        tokio::select! {
            line = lines.next() => match line {
                Ok(Some(line)) => {
                    last_rx = Instant::now();
                    ping_sent = None;
                    handle_line(shared, &mut pending, line);
                }
                Ok(None) => break Exit::Lost("closed by the server".to_owned()),
                Err(e) => break Exit::Lost(e),
            },
            cmd = rx.recv() => {
                let Some(Command { request, reply }) = cmd else {
                    break Exit::Closed;
                };
                if reply.is_closed() {
                    continue; // the caller gave up before it was sent
                }
                let id = next_id;
                next_id += 1;
                let sub = sub_key(request.method(), request.params());
                if let Some((key, ended)) = &sub {
                    if let Ok(mut subs) = shared.subs.lock() {
                        if *ended {
                            subs.remove(key);
                        } else {
                            subs.entry(key.clone()).or_insert_with(|| Sub {
                                method: request.method_arc().clone(),
                                params: request.params().cloned().unwrap_or_else(no_params),
                                last: None,
                            });
                        }
                    }
                }
                out.clear();
                request.write_json(Some(&Id::from(id)), &mut out);
                out.push(b'\n');
                if out.len() > config.max_line {
                    let _ = reply.send(Err(RpcError::InvalidParams {
                        message: format!("request larger than {} bytes", config.max_line),
                    }));
                    continue;
                }
                if let Err(e) = write(config, &mut writer, &out).await {
                    let _ = reply.send(Err(RpcError::ConnectionClosed {
                        backend: shared.name.clone(),
                        source: e.clone().into(),
                    }));
                    break Exit::Lost(e);
                }
                pending.insert(id, Pending::Client {
                    reply,
                    id: request.id().cloned().unwrap_or_default(),
                    sub: sub.filter(|(_, ended)| !ended).map(|(k, _)| k),
                });
            },
            _ = sleep_until(check_at) => {
                if ping_sent.is_some() {
                    break Exit::Lost(format!("silent for {:?} (no answer to server.ping)", config.ping_interval + config.ping_timeout));
                }
                let id = next_id;
                next_id += 1;
                let ping = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"server.ping\"}}\n");
                if let Err(e) = write(config, &mut writer, ping.as_bytes()).await {
                    break Exit::Lost(e);
                }
                pending.insert(id, Pending::Ping);
                ping_sent = Some(Instant::now());
                // Forget calls whose callers gave up (a dropped oversized
                // request is never answered).
                pending.retain(|_, p| !matches!(p, Pending::Client { reply, .. } if reply.is_closed()));
            },
        }
    };
    // Everything sent and unanswered may have been executed.
    let why = match &exit {
        Exit::Lost(w) => w.clone(),
        Exit::Closed => "backend dropped".to_owned(),
    };
    for (_, p) in pending.drain() {
        if let Pending::Client { reply, .. } = p {
            let _ = reply.send(Err(RpcError::ConnectionClosed {
                backend: shared.name.clone(),
                source: why.clone().into(),
            }));
        }
    }
    exit
}

async fn write(config: &Config, writer: &mut Writer, bytes: &[u8]) -> Result<(), String> {
    match timeout(config.ping_timeout, writer.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the server stopped reading".to_owned()),
    }
}

/// What one line from an Electrum server is (see [`parse_line`]).
#[derive(Debug)]
pub enum Line {
    /// An answer to the call sent under this wire id (its payload, or why it
    /// is not a valid answer).
    Answer {
        /// The id the call was sent under.
        wire_id: u64,
        /// The result or error object.
        payload: Result<rpc_core::Payload, String>,
    },
    /// A notification (a subscription update).
    Notification {
        /// Its method.
        method: String,
        /// Its params, raw.
        params: Option<RawJson>,
    },
    /// Neither: not a JSON object, or an answer under an id this client never
    /// uses (ignored, as a late or foreign line).
    Ignored,
}

#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a str>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// Classifies one line (without its newline) from an Electrum server. Never
/// panics, whatever the bytes (a fuzz target checks it).
pub fn parse_line(line: &Bytes) -> Line {
    let Ok(head) = serde_json::from_slice::<Head<'_>>(line) else {
        return Line::Ignored;
    };
    match head.id.and_then(|id| id.get().parse::<u64>().ok()) {
        Some(wire_id) => Line::Answer {
            wire_id,
            payload: parse_response(line, &Id::from(wire_id)),
        },
        None => match head.method {
            Some(method) => Line::Notification {
                method: method.to_owned(),
                params: head.params.and_then(|p| {
                    RawJson::from_bytes(Bytes::copy_from_slice(p.get().as_bytes())).ok()
                }),
            },
            None => Line::Ignored,
        },
    }
}

fn handle_line(shared: &Shared, pending: &mut HashMap<u64, Pending>, line: Bytes) {
    let (wire_id, payload) = match parse_line(&line) {
        Line::Answer { wire_id, payload } => (wire_id, payload),
        Line::Notification { method, params } => {
            notification(shared, &method, params.map(Ok));
            return;
        }
        Line::Ignored => {
            if line.iter().any(|b| !b.is_ascii_whitespace()) {
                tracing::debug!(backend = %shared.name, "ignoring a line that is not a JSON-RPC answer or notification");
            }
            return;
        }
    };
    let Some(p) = pending.remove(&wire_id) else {
        return; // a late answer to a call whose caller gave up
    };
    match p {
        Pending::Ping => {}
        Pending::Client { reply, id, sub } => {
            let result = match payload {
                Ok(payload) => {
                    if let (Some(key), rpc_core::Payload::Result(raw)) = (&sub, &payload) {
                        if key == "blockchain.headers.subscribe" {
                            shared.saw_header(raw.as_bytes());
                        }
                        if let Ok(mut subs) = shared.subs.lock() {
                            if let Some(s) = subs.get_mut(key) {
                                s.last = Some(raw.detached());
                            }
                        }
                    }
                    Ok(Response::new(id, payload))
                }
                Err(reason) => Err(RpcError::InvalidResponse {
                    backend: shared.name.clone(),
                    reason,
                }),
            };
            let _ = reply.send(result);
        }
        Pending::Resubscribe(key) => {
            let Ok(rpc_core::Payload::Result(now)) = payload else {
                return;
            };
            if key == "blockchain.headers.subscribe" {
                shared.saw_header(now.as_bytes());
            }
            let changed = {
                let Ok(mut subs) = shared.subs.lock() else {
                    return;
                };
                let Some(s) = subs.get_mut(&key) else { return };
                let changed = s
                    .last
                    .as_ref()
                    .is_some_and(|l| l.as_bytes() != now.as_bytes());
                s.last = Some(now.detached());
                changed.then(|| (s.method.clone(), s.params.clone()))
            };
            if let Some((method, params)) = changed {
                // Tell subscribers what they missed while disconnected, in the
                // shape of the server's own notification.
                if let Some(params) = missed_params(&method, &params, &now) {
                    tracing::debug!(backend = %shared.name, %method, "subscription status changed across a reconnect");
                    shared.publish(method, params);
                }
            }
        }
    }
}

/// The params of the notification a subscriber would have received.
fn missed_params(method: &str, sub_params: &RawJson, now: &RawJson) -> Option<RawJson> {
    let text = match method {
        "blockchain.headers.subscribe" => format!("[{}]", String::from_utf8_lossy(now.as_bytes())),
        "blockchain.scripthash.subscribe" => {
            let args: Vec<serde_json::Value> = sub_params.deserialize().ok()?;
            let sh = args.first()?;
            format!("[{},{}]", sh, String::from_utf8_lossy(now.as_bytes()))
        }
        _ => return None,
    };
    RawJson::from_bytes(text).ok()
}

fn notification(shared: &Shared, method: &str, params: Option<Result<RawJson, serde_json::Error>>) {
    let params = match params {
        Some(Ok(p)) => p,
        _ => no_params(),
    };
    // Remember the status, so a reconnect can tell whether it changed.
    let key = match method {
        "blockchain.headers.subscribe" => Some(method.to_owned()),
        "blockchain.scripthash.subscribe" => {
            let args: Vec<serde_json::Value> = params.deserialize().unwrap_or_default();
            args.first()
                .map(|sh| format!("blockchain.scripthash.subscribe[{sh}]"))
        }
        _ => None,
    };
    if let Some(key) = key {
        let status: Option<RawJson> = match method {
            "blockchain.headers.subscribe" => {
                let args: Vec<&RawValue> =
                    serde_json::from_slice(params.as_bytes()).unwrap_or_default();
                args.first().and_then(|h| {
                    RawJson::from_bytes(Bytes::copy_from_slice(h.get().as_bytes())).ok()
                })
            }
            _ => {
                let args: Vec<&RawValue> =
                    serde_json::from_slice(params.as_bytes()).unwrap_or_default();
                args.get(1).and_then(|s| {
                    RawJson::from_bytes(Bytes::copy_from_slice(s.get().as_bytes())).ok()
                })
            }
        };
        if method == "blockchain.headers.subscribe" {
            if let Some(header) = &status {
                shared.saw_header(header.as_bytes());
            }
        }
        if let (Some(status), Ok(mut subs)) = (status, shared.subs.lock()) {
            if let Some(s) = subs.get_mut(&key) {
                s.last = Some(status);
            }
        }
    }
    shared.publish(Arc::from(method), params);
}

/// Fingerprints (first eight bytes, in the header's own byte order) of a
/// block header's hash (double SHA-256) and of the parent hash it names.
fn header_fingerprints(hex: &str) -> Option<(u64, u64)> {
    if hex.len() < 160 {
        return None;
    }
    let mut bytes = [0u8; 80];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    let once = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let twice = ring::digest::digest(&ring::digest::SHA256, once.as_ref());
    let first8 =
        |b: &[u8]| -> Option<u64> { Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?)) };
    Some((first8(twice.as_ref())?, first8(&bytes[4..12])?))
}

#[cfg(test)]
mod fingerprint_tests {
    #[test]
    fn a_header_s_parent_is_its_predecessor_s_hash() {
        // Bitcoin's genesis header and block 1's header.
        let genesis = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c";
        let one = "010000006fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000982051fd1e4ba744bbbe680e1fee14677ba1a3c3540bf7b1cdb606e857233e0e61bc6649ffff001d01e36299";
        let (g, _) = super::header_fingerprints(genesis).expect("genesis");
        let (_, parent) = super::header_fingerprints(one).expect("block 1");
        assert_eq!(g, parent);
        assert!(super::header_fingerprints("00").is_none());
    }
}
