//! A simulated node serving a [`ScriptedChain`] over HTTP and WebSocket on
//! one port (as anvil and geth do), that a test can kill (connections
//! refused, open ones closed), freeze (connections held, nothing answered
//! or read: a stopped process) and bring back. Two of them sharing one
//! chain are two nodes following the same chain, which anvil cannot do.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::fault::Answer;
use crate::ScriptedChain;

/// What a [`SimNode`] is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Serving.
    Up,
    /// Connections accepted and held; nothing read or answered.
    Frozen,
    /// Listener closed (connections refused), open connections closed.
    Dead,
}

/// A simulated node serving a [`ScriptedChain`] over HTTP and WebSocket
/// on one port, killed ([`kill`](Self::kill)), frozen
/// ([`freeze`](Self::freeze)) and brought back ([`revive`](Self::revive))
/// at will. Stops when dropped.
pub struct SimNode {
    /// Where it listens (the same address after a restart).
    pub addr: SocketAddr,
    /// The chain it serves.
    pub chain: ScriptedChain,
    /// Calls answered (HTTP and WebSocket).
    pub calls: Arc<AtomicUsize>,
    state: watch::Sender<NodeState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SimNode {
    fn drop(&mut self) {
        let _ = self.state.send(NodeState::Dead);
        self.task.abort();
    }
}

impl SimNode {
    /// Starts one on an ephemeral loopback port.
    pub async fn start(chain: ScriptedChain) -> SimNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (state, _) = watch::channel(NodeState::Up);
        let calls = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept_loop(
            listener,
            addr,
            chain.clone(),
            state.subscribe(),
            calls.clone(),
        ));
        SimNode {
            addr,
            chain,
            calls,
            state,
            task,
        }
    }

    /// `http://ADDR`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://ADDR`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Kills it: connections refused, open ones closed.
    pub fn kill(&self) {
        self.state.send_replace(NodeState::Dead);
    }

    /// Freezes it: connections held open, nothing read or answered.
    pub fn freeze(&self) {
        self.state.send_replace(NodeState::Frozen);
    }

    /// Serves again (on the same address after a kill).
    pub fn revive(&self) {
        self.state.send_replace(NodeState::Up);
    }
}

async fn accept_loop(
    mut listener: TcpListener,
    addr: SocketAddr,
    chain: ScriptedChain,
    mut state: watch::Receiver<NodeState>,
    calls: Arc<AtomicUsize>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                tokio::spawn(connection(tcp, chain.clone(), state.clone(), calls.clone()));
            }
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                if *state.borrow_and_update() != NodeState::Dead {
                    continue;
                }
                // Dead: no listener until revived, then the same address.
                drop(listener);
                loop {
                    if state.changed().await.is_err() {
                        return;
                    }
                    if *state.borrow_and_update() != NodeState::Dead {
                        break;
                    }
                }
                listener = loop {
                    match TcpListener::bind(addr).await {
                        Ok(l) => break l,
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                };
            }
        }
    }
}

/// Waits until the node is dead.
async fn until_dead(mut state: watch::Receiver<NodeState>) {
    let _ = state.wait_for(|s| *s == NodeState::Dead).await;
}

/// Waits while the node is frozen; false if it died meanwhile.
async fn while_frozen(state: &mut watch::Receiver<NodeState>) -> bool {
    match state.wait_for(|s| *s != NodeState::Frozen).await {
        Ok(s) => *s == NodeState::Up,
        Err(_) => false,
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    chain: ScriptedChain,
    state: watch::Receiver<NodeState>,
    calls: Arc<AtomicUsize>,
) {
    let dead = until_dead(state.clone());
    let svc_state = state.clone();
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let (chain, mut state, calls) = (chain.clone(), svc_state.clone(), calls.clone());
        async move {
            if !while_frozen(&mut state).await {
                return Err(std::io::Error::other("the node died"));
            }
            let upgrade = req
                .headers()
                .get(http::header::UPGRADE)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
            if upgrade {
                return upgrade_to_websocket(req, chain, state, calls);
            }
            let body = req
                .into_body()
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            crate::fault::reply(200, answer(&chain, &body, &calls).to_string())
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let serve = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc);
    tokio::select! {
        _ = serve => {}
        () = dead => {}
    }
}

/// The JSON-RPC answer to one call.
fn answer(chain: &ScriptedChain, body: &[u8], calls: &AtomicUsize) -> Value {
    calls.fetch_add(1, Ordering::SeqCst);
    let call: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let method = call["method"].as_str().unwrap_or("");
    match chain.answer_call(method, &call["params"]) {
        Some(Ok(result)) => json!({"jsonrpc": "2.0", "id": call["id"], "result": result}),
        Some(Err(error)) => json!({"jsonrpc": "2.0", "id": call["id"], "error": error}),
        None => {
            json!({"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32601, "message": format!("the method {method} does not exist/is not available")}})
        }
    }
}

fn upgrade_to_websocket(
    mut req: http::Request<hyper::body::Incoming>,
    chain: ScriptedChain,
    state: watch::Receiver<NodeState>,
    calls: Arc<AtomicUsize>,
) -> Answer {
    let Some(key) = req.headers().get(http::header::SEC_WEBSOCKET_KEY) else {
        let mut resp = http::Response::new(Full::new(Bytes::from_static(b"no key")));
        *resp.status_mut() = http::StatusCode::BAD_REQUEST;
        return Ok(resp);
    };
    let accept = derive_accept_key(key.as_bytes());
    let upgraded = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgraded.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        tokio::select! {
            () = websocket(ws, chain, state.clone(), calls) => {}
            () = until_dead(state) => {}
        }
    });
    let mut resp = http::Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    headers.insert(
        http::header::SEC_WEBSOCKET_ACCEPT,
        http::HeaderValue::from_str(&accept).map_err(std::io::Error::other)?,
    );
    Ok(resp)
}

/// JSON-RPC over the socket, with `eth_subscribe("newHeads")`: every new
/// head announced (each block once, in order), as a node does. Frozen:
/// nothing read (pings unanswered), nothing sent.
async fn websocket<S>(
    ws: WebSocketStream<S>,
    chain: ScriptedChain,
    mut state: watch::Receiver<NodeState>,
    calls: Arc<AtomicUsize>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let mut subs: Vec<String> = Vec::new();
    let mut announced = chain.head.load(Ordering::SeqCst);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        if *state.borrow() == NodeState::Frozen && !while_frozen(&mut state).await {
            return;
        }
        tokio::select! {
            msg = stream.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let call: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let reply = match call["method"].as_str() {
                    Some("eth_subscribe") if call["params"][0] == "newHeads" => {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let id = format!("0x{:x}", subs.len() + 1);
                        subs.push(id.clone());
                        json!({"jsonrpc": "2.0", "id": call["id"], "result": id})
                    }
                    Some("eth_unsubscribe") => {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let before = subs.len();
                        subs.retain(|s| *s != call["params"][0]);
                        json!({"jsonrpc": "2.0", "id": call["id"], "result": subs.len() < before})
                    }
                    _ => answer(&chain, text.as_bytes(), &calls),
                };
                if sink.send(Message::text(reply.to_string())).await.is_err() {
                    return;
                }
            }
            _ = tick.tick() => {
                let head = chain.head.load(Ordering::SeqCst);
                if head > announced {
                    for n in announced + 1..=head {
                        for sub in &subs {
                            let note = json!({"jsonrpc": "2.0", "method": "eth_subscription",
                                "params": {"subscription": sub, "result": chain.block(n)}});
                            if sink.send(Message::text(note.to_string())).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                announced = head;
            }
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
