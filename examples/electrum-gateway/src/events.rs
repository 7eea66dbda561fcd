//! `GET /v1/events`: server-sent events for new tips and address status
//! changes, fed by subscriptions on every server of the pool
//! (`PoolSubscriptions`), so a stream survives any one server's failure.
//!
//! Events (`event:` name, `data:` JSON):
//!
//! * `tip` — `{"height": n, "header": "hex"}`: the first one at once, then on
//!   every new block.
//! * `address` — `{"address": "...", "status": "hex" | null}`: one per
//!   watched address at once, then whenever its status changes (a payment
//!   seen in the mempool, a confirmation). Re-query the address on a change.
//! * `resync` — the stream fell behind and updates were dropped: re-query.
//!
//! A comment line is sent every 15 s so proxies keep the stream open.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use rpc_core::RawJson;
use rpc_electrum::{ElectrumBackend, PoolSubscriptions};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::http::{error_response, Body};
use crate::Gateway;

/// The most addresses one stream may watch.
const MAX_ADDRESSES: usize = 100;

/// An update for the streams.
#[derive(Clone, Debug)]
pub enum Event {
    Tip { height: u64, header: String },
    Status { scripthash: String, status: Value },
}

/// What streams ask of the hub.
enum Cmd {
    /// Watch a script hash (one more stream wants it); its current status.
    Watch(String, oneshot::Sender<Result<Value, String>>),
    /// One stream less wants it: at none, every server is unsubscribed.
    Release(String),
    /// A subscription the hub started finished (its first server's answer).
    Subscribed(String, Result<Value, String>),
}

/// The one subscriber to the pool; streams register with it. Subscriptions
/// are counted per script hash and released on every server when the last
/// stream watching it closes; at most `max_watched` script hashes are
/// watched at once.
pub struct Hub {
    cmds: mpsc::UnboundedSender<Cmd>,
    events: broadcast::Sender<Event>,
    tip: Arc<Mutex<Option<(u64, String)>>>,
    watched: Arc<std::sync::atomic::AtomicUsize>,
}

/// Releases a stream's script hashes when it closes (however it ends).
struct Release {
    cmds: mpsc::UnboundedSender<Cmd>,
    scripthashes: Vec<String>,
}

impl Drop for Release {
    fn drop(&mut self) {
        for sh in self.scripthashes.drain(..) {
            let _ = self.cmds.send(Cmd::Release(sh));
        }
    }
}

impl Hub {
    /// Starts the subscription task over `servers`.
    pub fn start(servers: Vec<ElectrumBackend>, max_watched: usize) -> Hub {
        let (cmds, mut requests) = mpsc::unbounded_channel::<Cmd>();
        let (events, _) = broadcast::channel(4096);
        let tip = Arc::new(Mutex::new(None));
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (tx, last_tip, gauge) = (events.clone(), tip.clone(), count.clone());
        let done = cmds.clone();
        tokio::spawn(async move {
            let mut subs = PoolSubscriptions::new(servers);
            let subscriber = subs.subscriber();
            let mut watched: HashMap<String, Value> = HashMap::new();
            // Streams watching each script hash.
            let mut streams: HashMap<String, usize> = HashMap::new();
            // Subscriptions under way, and who waits for each: many are made
            // at once (a server may take a second to answer each).
            let mut pending: HashMap<String, Vec<oneshot::Sender<Result<Value, String>>>> =
                HashMap::new();
            let mut tip_subscribed = false;
            let mut retry = tokio::time::interval(Duration::from_secs(2));
            loop {
                tokio::select! {
                    update = subs.next() => {
                        let Some(n) = update else { return };
                        let params: Value = n.params.deserialize().unwrap_or(Value::Null);
                        match &*n.method {
                            "blockchain.headers.subscribe" => {
                                if let Some(e) = tip_event(&params[0]) {
                                    remember(&last_tip, &e);
                                    let _ = tx.send(e);
                                }
                            }
                            "blockchain.scripthash.subscribe" => {
                                if let Some(sh) = params[0].as_str() {
                                    watched.insert(sh.to_owned(), params[1].clone());
                                    let _ = tx.send(Event::Status {
                                        scripthash: sh.to_owned(),
                                        status: params[1].clone(),
                                    });
                                }
                            }
                            _ => {}
                        }
                    }
                    request = requests.recv() => {
                        let (sh, reply) = match request {
                            None => return,
                            Some(Cmd::Release(sh)) => {
                                if let Some(n) = streams.get_mut(&sh) {
                                    *n -= 1;
                                    if *n == 0 {
                                        streams.remove(&sh);
                                        watched.remove(&sh);
                                        subs.unsubscribe(&sh);
                                    }
                                }
                                gauge.store(streams.len(), std::sync::atomic::Ordering::Relaxed);
                                continue;
                            }
                            Some(Cmd::Watch(sh, reply)) => (sh, reply),
                            Some(Cmd::Subscribed(sh, answer)) => {
                                let waiting = pending.remove(&sh).unwrap_or_default();
                                let mut delivered = 0;
                                for reply in waiting {
                                    delivered += usize::from(reply.send(answer.clone()).is_ok());
                                }
                                match answer {
                                    Ok(status) if delivered > 0 => {
                                        watched.insert(sh.clone(), status);
                                        *streams.entry(sh).or_default() += delivered;
                                    }
                                    // Every waiter left: nobody wants it.
                                    Ok(_) => subscriber.unsubscribe(&sh),
                                    Err(_) => {}
                                }
                                gauge.store(streams.len(), std::sync::atomic::Ordering::Relaxed);
                                continue;
                            }
                        };
                        if let Some(status) = watched.get(&sh) {
                            if reply.send(Ok(status.clone())).is_ok() {
                                *streams.entry(sh).or_default() += 1;
                            }
                            continue;
                        }
                        if let Some(waiting) = pending.get_mut(&sh) {
                            waiting.push(reply);
                            continue;
                        }
                        if streams.len() + pending.len() >= max_watched {
                            let _ = reply.send(Err(format!(
                                "the gateway watches at most {max_watched} addresses at once"
                            )));
                            continue;
                        }
                        pending.insert(sh.clone(), vec![reply]);
                        let (subscriber, done) = (subscriber.clone(), done.clone());
                        tokio::spawn(async move {
                            let answer = match RawJson::from_serialize(&json!([sh])) {
                                Err(e) => Err(e.to_string()),
                                Ok(p) => match subscriber.subscribe("blockchain.scripthash.subscribe", p).await {
                                    Ok(resp) => Ok(resp
                                        .result_json()
                                        .and_then(|r| r.deserialize::<Value>().ok())
                                        .unwrap_or(Value::Null)),
                                    Err(e) => Err(e.to_error_object().message().to_owned()),
                                },
                            };
                            let _ = done.send(Cmd::Subscribed(sh, answer));
                        });
                    }
                    _ = retry.tick(), if !tip_subscribed => {
                        if let Ok(p) = RawJson::from_static("[]") {
                            if let Ok(resp) = subs.subscribe("blockchain.headers.subscribe", p).await {
                                tip_subscribed = true;
                                if let Some(e) = resp
                                    .result_json()
                                    .and_then(|r| r.deserialize::<Value>().ok())
                                    .as_ref()
                                    .and_then(tip_event)
                                {
                                    remember(&last_tip, &e);
                                    let _ = tx.send(e);
                                }
                            }
                        }
                    }
                }
            }
        });
        Hub {
            cmds,
            events,
            tip,
            watched: count,
        }
    }

    /// How many script hashes are watched (subscribed on the servers) now.
    pub fn watched(&self) -> usize {
        self.watched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Watches a script hash on every server; its current status. The
    /// caller releases it (through a [`Release`]) when done.
    async fn watch(&self, scripthash: String) -> Result<Value, String> {
        let (reply, answer) = oneshot::channel();
        self.cmds
            .send(Cmd::Watch(scripthash, reply))
            .map_err(|_| "the event hub stopped".to_owned())?;
        match tokio::time::timeout(Duration::from_secs(15), answer).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the event hub stopped".to_owned()),
            Err(_) => Err("no server answered the subscription in time".to_owned()),
        }
    }
}

fn tip_event(v: &Value) -> Option<Event> {
    Some(Event::Tip {
        height: v["height"].as_u64()?,
        header: v["hex"].as_str()?.to_owned(),
    })
}

fn remember(last: &Mutex<Option<(u64, String)>>, e: &Event) {
    if let (Event::Tip { height, header }, Ok(mut last)) = (e, last.lock()) {
        if last.as_ref().is_none_or(|(h, _)| h <= height) {
            *last = Some((*height, header.clone()));
        }
    }
}

fn frame(event: &str, data: &Value) -> Result<Frame<Bytes>, Infallible> {
    Ok(Frame::data(Bytes::from(format!(
        "event: {event}\ndata: {data}\n\n"
    ))))
}

/// The event stream for `?address=A&address=B...` (no address: tips only).
pub async fn stream(gw: &Gateway, query: &str) -> http::Response<Body> {
    let mut watched: HashMap<String, String> = HashMap::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k != "address" {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!("unknown parameter `{k}` (use address=...)"),
            );
        }
        if watched.len() >= MAX_ADDRESSES {
            return error_response(
                StatusCode::BAD_REQUEST,
                "too_many_addresses",
                format!("at most {MAX_ADDRESSES} addresses per stream"),
            );
        }
        let address = v.into_owned();
        match crate::rest::scripthash_of(gw, &address) {
            Ok(sh) => {
                watched.insert(sh, address);
            }
            Err(e) => return e.into_response(),
        }
    }
    // Current state first: the tip, and each address's status.
    let mut first = Vec::new();
    let receiver = gw.events.events.subscribe();
    let current = gw.events.tip.lock().ok().and_then(|t| t.clone());
    if let Some((height, header)) = &current {
        first.push(frame("tip", &json!({"height": height, "header": header})));
    }
    // Whatever happens from here (an error below, the client leaving), the
    // script hashes this stream watched are released.
    let mut release = Release {
        cmds: gw.events.cmds.clone(),
        scripthashes: Vec::with_capacity(watched.len()),
    };
    // Every address at once: a server may take a second per answer.
    let answers =
        futures_util::future::join_all(watched.keys().map(|sh| gw.events.watch(sh.clone()))).await;
    let mut failed = None;
    for ((sh, address), answer) in watched.iter().zip(answers) {
        match answer {
            Ok(status) => {
                release.scripthashes.push(sh.clone());
                first.push(frame(
                    "address",
                    &json!({"address": address, "status": status}),
                ))
            }
            Err(why) => failed = Some(why),
        }
    }
    if let Some(why) = failed {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why);
    }
    struct State {
        first: std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>,
        rx: broadcast::Receiver<Event>,
        watched: HashMap<String, String>,
        last_tip: Option<(u64, String)>,
        _release: Release,
    }
    let state = State {
        first: first.into_iter(),
        rx: receiver,
        watched,
        last_tip: current,
        _release: release,
    };
    let events = futures_util::stream::unfold(state, |mut st| async move {
        if let Some(f) = st.first.next() {
            return Some((f, st));
        }
        loop {
            let next = tokio::time::timeout(Duration::from_secs(15), st.rx.recv()).await;
            let item = match next {
                Err(_) => Ok(Frame::data(Bytes::from_static(b": keep-alive\n\n"))),
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => frame("resync", &json!({})),
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                Ok(Ok(Event::Tip { height, header })) => {
                    // A new height, or another block at the same height (a
                    // reorganisation that did not lengthen the chain).
                    let same = st
                        .last_tip
                        .as_ref()
                        .is_some_and(|(h, hex)| height < *h || (height == *h && header == *hex));
                    if same {
                        continue;
                    }
                    let item = frame("tip", &json!({"height": height, "header": &header}));
                    st.last_tip = Some((height, header));
                    item
                }
                Ok(Ok(Event::Status { scripthash, status })) => match st.watched.get(&scripthash) {
                    Some(address) => {
                        frame("address", &json!({"address": address, "status": status}))
                    }
                    None => continue,
                },
            };
            return Some((item, st));
        }
    });
    let mut resp = http::Response::new(StreamBody::new(events).boxed_unsync());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
