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

mod conn;
mod line;
mod subs;

use conn::*;
pub use line::{parse_line, Line};
use subs::*;

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
    /// Why the server is not trusted (it served headers or proofs that do
    /// not verify), if it is not: client calls fail fast until cleared.
    /// With the instant the mark lapses (`None`: until cleared).
    pub(crate) distrust: Mutex<Option<(Arc<str>, Option<tokio::time::Instant>)>>,
    /// Why the last connection attempt failed or the last connection was
    /// lost (cleared by a handshake that succeeds).
    pub(crate) last_failure: Mutex<Option<Arc<str>>>,
    /// The address of the last connection's peer (what the host name
    /// resolved to).
    pub(crate) peer: Mutex<Option<std::net::SocketAddr>>,
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
            distrust: Mutex::new(None),
            last_failure: Mutex::new(None),
            peer: Mutex::new(None),
        }
    }

    fn set_failure(&self, why: Option<&str>) {
        if let Ok(mut f) = self.last_failure.lock() {
            *f = why.map(Arc::from);
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

    /// How many subscriptions are kept (and re-established on reconnect).
    pub(crate) fn subscription_count(&self) -> usize {
        self.subs.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Stops keeping the subscription `method(params)` would make, at once
    /// (whether or not the server can be told now).
    pub(crate) fn forget_subscription(&self, method: &str, params: Option<&RawJson>) {
        if let (Some((key, _)), Ok(mut subs)) = (sub_key(method, params), self.subs.lock()) {
            subs.remove(&key);
        }
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
                shared.set_failure(None);
                tracing::debug!(backend = %shared.name, "electrum connection up");
                match session(&config, &shared, lines, writer, &mut rx).await {
                    Exit::Closed => return,
                    Exit::Lost(why) => {
                        tracing::warn!(backend = %shared.name, reason = %why, "electrum connection lost");
                        shared.set_failure(Some(&format!("connection lost: {why}")));
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
                shared.set_failure(Some(&format!("connect failed: {why}")));
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
