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

type Watch = (String, oneshot::Sender<Result<Value, String>>);

/// The one subscriber to the pool; streams register with it.
pub struct Hub {
    watch: mpsc::Sender<Watch>,
    events: broadcast::Sender<Event>,
    tip: Arc<Mutex<Option<(u64, String)>>>,
}

impl Hub {
    /// Starts the subscription task over `servers`.
    pub fn start(servers: Vec<ElectrumBackend>) -> Hub {
        let (watch, mut requests) = mpsc::channel::<Watch>(256);
        let (events, _) = broadcast::channel(4096);
        let tip = Arc::new(Mutex::new(None));
        let (tx, last_tip) = (events.clone(), tip.clone());
        tokio::spawn(async move {
            let mut subs = PoolSubscriptions::new(servers);
            let mut watched: HashMap<String, Value> = HashMap::new();
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
                        let Some((sh, reply)) = request else { return };
                        let answer = match watched.get(&sh) {
                            Some(status) => Ok(status.clone()),
                            None => match RawJson::from_serialize(&json!([sh])) {
                                Err(e) => Err(e.to_string()),
                                Ok(p) => match subs.subscribe("blockchain.scripthash.subscribe", p).await {
                                    Ok(resp) => {
                                        let status = resp
                                            .result_json()
                                            .and_then(|r| r.deserialize::<Value>().ok())
                                            .unwrap_or(Value::Null);
                                        watched.insert(sh.clone(), status.clone());
                                        Ok(status)
                                    }
                                    Err(e) => Err(e.to_error_object().message().to_owned()),
                                },
                            },
                        };
                        let _ = reply.send(answer);
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
        Hub { watch, events, tip }
    }

    /// Watches a script hash on every server; its current status.
    async fn watch(&self, scripthash: String) -> Result<Value, String> {
        let (reply, answer) = oneshot::channel();
        self.watch
            .send((scripthash, reply))
            .await
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
    for (sh, address) in &watched {
        match gw.events.watch(sh.clone()).await {
            Ok(status) => first.push(frame(
                "address",
                &json!({"address": address, "status": status}),
            )),
            Err(why) => {
                return error_response(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why);
            }
        }
    }
    struct State {
        first: std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>,
        rx: broadcast::Receiver<Event>,
        watched: HashMap<String, String>,
        last_tip: Option<(u64, String)>,
    }
    let state = State {
        first: first.into_iter(),
        rx: receiver,
        watched,
        last_tip: current,
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
