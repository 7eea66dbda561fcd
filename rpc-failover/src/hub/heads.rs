use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use rpc_core::subscription::{PushSource, Subscription, SubscriptionSource};
use rpc_core::{Deadline, ErrorObject, Id, JsonRpcService, Payload, RawJson, Request};
use serde_json::Value;
use tokio::sync::{broadcast, Notify};
use tower::ServiceExt;

/// Notifications a slow subscriber may fall behind by before its
/// subscription ends (its socket's own queue is far smaller).
const CHANNEL: usize = 1024;
/// Delivered heads remembered (to link new ones and never repeat one).
const REMEMBERED: usize = 256;
/// Pending transaction hashes remembered, to send each once.
const PENDING_REMEMBERED: usize = 50_000;
/// Re-polls (50 ms apart) when a push announced a head the group does not
/// answer yet.
const CHASES: u32 = 10;

/// Serves `newHeads`, `logs` and `newPendingTransactions` subscriptions
/// from shared sources; see the
/// [module docs](super).
///
/// | setting | default |
/// |---|---|
/// | [`poll_interval`](SubscriptionHubBuilder::poll_interval) | 1 s |
/// | [`max_backfill`](SubscriptionHubBuilder::max_backfill) | 128 blocks |
/// | [`call_timeout`](SubscriptionHubBuilder::call_timeout) | 10 s |
/// | [`max_log_filters`](SubscriptionHubBuilder::max_log_filters) | 1 000 distinct filters |
/// | [`push_source`](SubscriptionHubBuilder::push_source) | none (polling only) |
pub struct SubscriptionHub<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for SubscriptionHub<S> {
    fn clone(&self) -> Self {
        SubscriptionHub {
            inner: self.inner.clone(),
        }
    }
}

impl<S> std::fmt::Debug for SubscriptionHub<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionHub")
            .field("poll_interval", &self.inner.poll)
            .finish_non_exhaustive()
    }
}

struct Inner<S> {
    /// Behind a lock so a service that is `Send` but not `Sync` (a boxed
    /// stack) can be shared: cloned under it per call.
    service: Mutex<S>,
    poll: Duration,
    max_backfill: usize,
    call_timeout: Duration,
    max_log_filters: usize,
    /// The chain events channel while a head poller runs.
    heads: Mutex<Option<broadcast::Sender<Event>>>,
    /// One channel (and poller) per distinct `logs` filter.
    logs: Mutex<std::collections::HashMap<String, broadcast::Sender<RawJson>>>,
    /// Backends that push (WebSocket members): new heads wake the poller,
    /// pending transactions come from them.
    push: Vec<Arc<dyn PushSource>>,
    /// The pending transactions channel while its source runs.
    pending: Mutex<Option<broadcast::Sender<RawJson>>>,
}

/// What the head poller tells its followers, in chain order.
#[derive(Clone, Debug)]
enum Event {
    /// A new block (the header as notified).
    Head { hash: Arc<str>, json: RawJson },
    /// A block delivered before that a reorganisation replaced (sent
    /// before the replacing blocks, newest first).
    Removed { hash: Arc<str> },
}

/// Builds a [`SubscriptionHub`].
#[derive(Debug)]
#[must_use]
pub struct SubscriptionHubBuilder<S> {
    service: S,
    poll: Duration,
    max_backfill: usize,
    call_timeout: Duration,
    max_log_filters: usize,
    push: Vec<Arc<dyn PushSource>>,
}

impl<S> SubscriptionHub<S> {
    /// A hub polling through `service` (a group's stack).
    pub fn builder(service: S) -> SubscriptionHubBuilder<S> {
        SubscriptionHubBuilder {
            service,
            poll: Duration::from_secs(1),
            max_backfill: 128,
            call_timeout: Duration::from_secs(10),
            max_log_filters: 1000,
            push: Vec::new(),
        }
    }
}

impl<S> SubscriptionHubBuilder<S> {
    /// How often the head is polled.
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll = d.max(Duration::from_millis(10));
        self
    }

    /// How many blocks a gap or a reorganisation is walked back at most.
    pub fn max_backfill(mut self, n: usize) -> Self {
        self.max_backfill = n.max(1);
        self
    }

    /// The deadline of each call the poller makes.
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = d;
        self
    }

    /// Distinct `logs` filters served at once, all clients together (each
    /// is one `eth_getLogs` per block upstream); past it a new filter is
    /// refused with `-32005` (subscribers of a filter already served are
    /// not counted).
    pub fn max_log_filters(mut self, n: usize) -> Self {
        self.max_log_filters = n.max(1);
        self
    }

    /// Follows `source`'s own `newHeads` (a WebSocket member of the
    /// group): each new block it announces wakes the head poller at once
    /// instead of at its next tick. The announcement is only a cue: the
    /// head is still read through the service (its failover and head
    /// tracking), so a source that lies, lags or freezes changes nothing
    /// but how soon a poll happens. A source that fails is subscribed to
    /// again (backing off to 30 s). `newPendingTransactions` come from
    /// these sources when there are any (one at a time, the next when one
    /// fails), else from polling a pending-transaction filter.
    pub fn push_source(mut self, source: Arc<dyn PushSource>) -> Self {
        self.push.push(source);
        self
    }

    /// The hub (its pollers start with their first subscriber).
    pub fn build(self) -> SubscriptionHub<S> {
        SubscriptionHub {
            inner: Arc::new(Inner {
                service: Mutex::new(self.service),
                poll: self.poll,
                max_backfill: self.max_backfill,
                max_log_filters: self.max_log_filters,
                call_timeout: self.call_timeout,
                heads: Mutex::new(None),
                logs: Mutex::new(std::collections::HashMap::new()),
                push: self.push,
                pending: Mutex::new(None),
            }),
        }
    }
}

impl<S> SubscriptionSource for SubscriptionHub<S>
where
    S: JsonRpcService,
{
    fn subscribe(&self, params: Option<&RawJson>) -> Result<Subscription, ErrorObject> {
        let kind: Option<String> = params
            .and_then(|p| serde_json::from_slice::<Vec<Value>>(p.as_bytes()).ok())
            .and_then(|v| v.first().and_then(Value::as_str).map(str::to_owned));
        match kind.as_deref() {
            Some("newHeads") => Ok(self.new_heads()),
            Some("logs") => {
                let filter = params
                    .and_then(|p| serde_json::from_slice::<Vec<Value>>(p.as_bytes()).ok())
                    .and_then(|v| v.get(1).cloned())
                    .unwrap_or_else(|| Value::Object(Default::default()));
                self.logs(filter)
            }
            Some("newPendingTransactions") => {
                let full = params
                    .and_then(|p| serde_json::from_slice::<Vec<Value>>(p.as_bytes()).ok())
                    .and_then(|v| v.get(1).and_then(Value::as_bool))
                    .unwrap_or(false);
                if full {
                    return Err(ErrorObject::new(
                        rpc_core::codes::INVALID_PARAMS,
                        "newPendingTransactions is served as hashes; subscribe without `true` and fetch transactions by hash",
                    ));
                }
                Ok(self.pending())
            }
            Some(other) => Err(ErrorObject::new(
                rpc_core::codes::INVALID_PARAMS,
                format!(
                    "unsupported subscription `{other}` (served: newHeads, logs, newPendingTransactions)"
                ),
            )),
            None => Err(ErrorObject::new(
                rpc_core::codes::INVALID_PARAMS,
                "expected [\"newHeads\"]",
            )),
        }
    }
}

impl<S> SubscriptionHub<S>
where
    S: JsonRpcService,
{
    /// `newHeads`: the chain events' new blocks.
    fn new_heads(&self) -> Subscription {
        let rx = events(&self.inner);
        futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(Event::Head { json, .. }) => return Some((json, rx)),
                    Ok(Event::Removed { .. }) => continue,
                    // Fell behind the channel, or the poller ended: the
                    // subscription ends (never a silent gap).
                    Err(_) => return None,
                }
            }
        })
        .boxed()
    }

    /// `newPendingTransactions`: hashes from one shared source.
    fn pending(&self) -> Subscription {
        let rx = {
            let mut slot = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_ref() {
                Some(tx) => tx.subscribe(),
                None => {
                    let (tx, rx) = broadcast::channel(CHANNEL);
                    *slot = Some(tx.clone());
                    tokio::spawn(follow_pending(self.inner.clone(), tx));
                    rx
                }
            }
        };
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.ok().map(|v| (v, rx)) },
        )
        .boxed()
    }

    /// `logs` matching `filter` (`address`, `topics`): one poller per
    /// distinct filter, following the chain events.
    fn logs(&self, filter: Value) -> Result<Subscription, ErrorObject> {
        let mut query = serde_json::Map::new();
        match filter {
            Value::Object(mut f) => {
                for key in ["address", "topics"] {
                    if let Some(v) = f.remove(key) {
                        query.insert(key.to_owned(), v);
                    }
                }
                if let Some(other) = f.keys().next() {
                    return Err(ErrorObject::new(
                        rpc_core::codes::INVALID_PARAMS,
                        format!("a logs subscription filters by address and topics, not `{other}`"),
                    ));
                }
            }
            _ => {
                return Err(ErrorObject::new(
                    rpc_core::codes::INVALID_PARAMS,
                    "expected [\"logs\", {\"address\": .., \"topics\": [..]}]",
                ))
            }
        }
        // One key per distinct filter (object keys come sorted).
        let key = Value::Object(query.clone()).to_string();
        let rx = {
            let mut map = self.inner.logs.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(&key) {
                Some(tx) => tx.subscribe(),
                None if map.len() >= self.inner.max_log_filters => {
                    return Err(ErrorObject::new(
                        rpc_core::codes::LIMIT_EXCEEDED,
                        format!(
                            "at most {} distinct logs filters at once; subscribe to one already served or retry later",
                            self.inner.max_log_filters
                        ),
                    ));
                }
                None => {
                    let (tx, rx) = broadcast::channel(CHANNEL);
                    map.insert(key.clone(), tx.clone());
                    let events = events(&self.inner);
                    tokio::spawn(poll_logs(self.inner.clone(), key, query, events, tx));
                    rx
                }
            }
        };
        Ok(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.ok().map(|v| (v, rx))
        })
        .boxed())
    }
}

/// A receiver of the chain events (the head poller started if none runs).
fn events<S: JsonRpcService>(inner: &Arc<Inner<S>>) -> broadcast::Receiver<Event> {
    let mut slot = inner.heads.lock().unwrap_or_else(|e| e.into_inner());
    match slot.as_ref() {
        Some(tx) => tx.subscribe(),
        None => {
            let (tx, rx) = broadcast::channel(CHANNEL);
            *slot = Some(tx.clone());
            tokio::spawn(poll_heads(inner.clone(), tx));
            rx
        }
    }
}

/// Blocks whose logs are remembered, to mark them removed on a reorg
/// (deeper reorganisations are not seen on live chains; a broad filter's
/// logs of 32 blocks are what one poller holds at most).
const LOGS_REMEMBERED: usize = 32;

/// The poller of one `logs` filter: for every new block its logs (by block
/// hash, EIP-234), for every replaced block its logs again with
/// `"removed": true`; until its last subscriber leaves.
async fn poll_logs<S: JsonRpcService>(
    inner: Arc<Inner<S>>,
    key: String,
    query: serde_json::Map<String, Value>,
    mut events: broadcast::Receiver<Event>,
    tx: broadcast::Sender<RawJson>,
) {
    let mut sent: VecDeque<(Arc<str>, Vec<Value>)> = VecDeque::new();
    loop {
        let event = events.recv().await;
        {
            let mut map = inner.logs.lock().unwrap_or_else(|e| e.into_inner());
            if tx.receiver_count() == 0 {
                map.remove(&key);
                return;
            }
        }
        match event {
            Ok(Event::Head { hash, .. }) => {
                let mut q = query.clone();
                q.insert("blockHash".to_owned(), Value::String(hash.to_string()));
                let mut logs = None;
                for attempt in 0..3u64 {
                    logs = get_logs(&inner, Value::Object(q.clone())).await;
                    if logs.is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
                }
                let Some(logs) = logs else {
                    tracing::warn!(block = %hash, "logs: the block's logs could not be fetched; subscribers see a gap");
                    continue;
                };
                for log in &logs {
                    if let Ok(raw) = RawJson::from_serialize(log) {
                        let _ = tx.send(raw);
                    }
                }
                sent.push_back((hash, logs));
                while sent.len() > LOGS_REMEMBERED {
                    sent.pop_front();
                }
            }
            Ok(Event::Removed { hash }) => {
                let Some(i) = sent.iter().position(|(h, _)| *h == hash) else {
                    continue;
                };
                let (_, logs) = sent.remove(i).unwrap_or_default();
                // Newest first, as a node announces removals.
                for mut log in logs.into_iter().rev() {
                    log["removed"] = Value::Bool(true);
                    if let Ok(raw) = RawJson::from_serialize(&log) {
                        let _ = tx.send(raw);
                    }
                }
            }
            // Fell behind the chain events: its subscribers end (never a
            // silent gap).
            Err(_) => {
                let mut map = inner.logs.lock().unwrap_or_else(|e| e.into_inner());
                map.remove(&key);
                return;
            }
        }
    }
}

/// `method(params)` through the service, under the call timeout: its
/// result, if it answered one.
async fn call<S: JsonRpcService>(inner: &Inner<S>, method: &str, params: Value) -> Option<Value> {
    let params = RawJson::from_serialize(&params).ok()?;
    let mut req = Request::new(method)
        .with_id(Id::from(1u64))
        .with_params(params);
    req.extensions_mut()
        .insert(Deadline::after(inner.call_timeout));
    let service = inner
        .service
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let resp = service.oneshot(req).await.ok()?;
    match resp.payload() {
        Payload::Result(raw) => raw.deserialize().ok(),
        Payload::Error(_) => None,
    }
}

/// `eth_getLogs(query)` through the service.
async fn get_logs<S: JsonRpcService>(inner: &Inner<S>, query: Value) -> Option<Vec<Value>> {
    serde_json::from_value(call(inner, "eth_getLogs", serde_json::json!([query])).await?).ok()
}

/// A block as the poller needs it.
struct Block {
    number: u64,
    hash: String,
    parent: String,
    /// The notification: the block without its transaction list.
    json: RawJson,
}

fn hex_u64(v: &Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.strip_prefix("0x")?, 16).ok()
}

/// `method(params)` through the service; the block it answers, if any.
async fn fetch<S: JsonRpcService>(inner: &Inner<S>, method: &str, params: Value) -> Option<Block> {
    let mut block = call(inner, method, params).await?;
    let number = hex_u64(&block["number"])?;
    let hash = block["hash"].as_str()?.to_ascii_lowercase();
    let parent = block["parentHash"].as_str()?.to_ascii_lowercase();
    if let Some(obj) = block.as_object_mut() {
        obj.remove("transactions");
    }
    Some(Block {
        number,
        hash,
        parent,
        json: RawJson::from_serialize(&block).ok()?,
    })
}

/// Aborts its task when dropped (a follower lives as long as its poller).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What push sources and the head poller share.
#[derive(Default)]
struct Cues {
    wake: Notify,
    /// The last block number a push announced above the delivered head.
    announced: AtomicU64,
    /// The number of the last head delivered.
    delivered: AtomicU64,
}

/// Follows one push source's `newHeads`: a block numbered above the last
/// one delivered wakes the poller. Resubscribes when the stream ends.
async fn follow_heads(source: Arc<dyn PushSource>, cues: Arc<Cues>) {
    let params = RawJson::from_static(r#"["newHeads"]"#).expect("static JSON");
    let mut backoff = Duration::from_millis(250);
    loop {
        match source.subscribe(params.clone()).await {
            Ok(mut heads) => {
                backoff = Duration::from_millis(250);
                while let Some(head) = heads.next().await {
                    let number = head
                        .deserialize::<Value>()
                        .ok()
                        .and_then(|h| hex_u64(&h["number"]));
                    if let Some(n) = number.filter(|&n| n > cues.delivered.load(Ordering::Relaxed))
                    {
                        cues.announced.store(n, Ordering::Relaxed);
                        cues.wake.notify_one();
                    }
                }
                tracing::debug!(
                    source = source.name(),
                    "newHeads: the push subscription ended; subscribing again"
                );
            }
            Err(e) => {
                tracing::debug!(source = source.name(), error = %e, "newHeads: push subscription failed");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// The poller of one `newHeads` channel: until its last subscriber leaves.
async fn poll_heads<S: JsonRpcService>(inner: Arc<Inner<S>>, tx: broadcast::Sender<Event>) {
    let mut delivered: VecDeque<(u64, String)> = VecDeque::with_capacity(REMEMBERED);
    let mut tick = tokio::time::interval(inner.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Push sources wake the poller.
    let cues = Arc::new(Cues::default());
    let _followers: Vec<AbortOnDrop> = inner
        .push
        .iter()
        .map(|source| AbortOnDrop(tokio::spawn(follow_heads(source.clone(), cues.clone()))))
        .collect();
    let (mut chased_for, mut chases) = (0u64, 0u32);
    let mut chase_at: Option<tokio::time::Instant> = None;
    loop {
        let chase = async {
            match chase_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {}
            () = cues.wake.notified() => {}
            () = chase => {}
        }
        chase_at = None;
        {
            let mut slot = inner.heads.lock().unwrap_or_else(|e| e.into_inner());
            if tx.receiver_count() == 0 {
                *slot = None;
                return;
            }
        }
        poll_once(&inner, &tx, &mut delivered).await;
        let last = delivered.back().map_or(0, |(n, _)| *n);
        cues.delivered.store(last, Ordering::Relaxed);
        // A head announced but not read yet (the group's member has not
        // seen it, or the source lied): look again shortly, a few times per
        // announcement.
        let announced = cues.announced.load(Ordering::Relaxed);
        let behind = last < announced;
        if behind {
            if chased_for != announced {
                (chased_for, chases) = (announced, 0);
            }
            if chases < CHASES {
                chases += 1;
                chase_at = Some(tokio::time::Instant::now() + Duration::from_millis(50));
            }
        }
    }
}

/// One poll: the head, linked to what was delivered (backfilled or walked
/// back across a reorganisation), its new blocks sent in order.
async fn poll_once<S: JsonRpcService>(
    inner: &Inner<S>,
    tx: &broadcast::Sender<Event>,
    delivered: &mut VecDeque<(u64, String)>,
) {
    let Some(head) = fetch(
        inner,
        "eth_getBlockByNumber",
        serde_json::json!(["latest", false]),
    )
    .await
    else {
        return;
    };
    let known =
        |n: u64, h: &str, d: &VecDeque<(u64, String)>| d.iter().any(|(dn, dh)| *dn == n && dh == h);
    let Some((last_number, _)) = delivered.back().cloned() else {
        // The head when the poller starts is where it starts from: like a
        // node, subscribers are told of the blocks after it.
        delivered.push_back((head.number, head.hash.clone()));
        return;
    };
    // Seen, or behind what was delivered (a member behind): nothing.
    if known(head.number, &head.hash, delivered) || head.number < last_number {
        return;
    }
    // Walk back by parent hash to a delivered block (a gap, or a
    // branch that replaces some).
    let mut chain = vec![head];
    let linked = loop {
        let top = chain.last().expect("non-empty");
        if delivered.iter().any(|(_, h)| *h == top.parent) {
            break true;
        }
        if chain.len() >= inner.max_backfill || top.number == 0 {
            break false;
        }
        let (parent, below) = (top.parent.clone(), top.number - 1);
        // By hash (exact under a reorganisation); else by number, taken
        // only if it is that parent (a source without the by-hash call).
        let by_hash = fetch(
            inner,
            "eth_getBlockByHash",
            serde_json::json!([parent, false]),
        )
        .await;
        let found = match by_hash {
            Some(b) => Some(b),
            None => fetch(
                inner,
                "eth_getBlockByNumber",
                serde_json::json!([format!("{below:#x}"), false]),
            )
            .await
            .filter(|b| b.hash == parent),
        };
        match found {
            Some(b) => chain.push(b),
            None => break false,
        }
    };
    if !linked && chain.len() < inner.max_backfill && chain.last().is_some_and(|b| b.number != 0) {
        // A parent could not be fetched (a source that lost it, or
        // failed): the next poll tries again, nothing skipped.
        return;
    }
    if !linked {
        tracing::warn!(
            blocks = chain.len(),
            "newHeads: the new head does not link to what was delivered within max_backfill; subscribers see a gap"
        );
    }
    for block in chain.into_iter().rev() {
        if known(block.number, &block.hash, delivered) {
            return;
        }
        // Blocks of a replaced branch are announced removed (newest
        // first) and forgotten: their heights get the new hashes.
        while delivered.back().is_some_and(|(n, _)| *n >= block.number) {
            if let Some((_, replaced)) = delivered.pop_back() {
                let _ = tx.send(Event::Removed {
                    hash: Arc::from(replaced.as_str()),
                });
            }
        }
        let hash: Arc<str> = Arc::from(block.hash.as_str());
        delivered.push_back((block.number, block.hash));
        while delivered.len() > REMEMBERED {
            delivered.pop_front();
        }
        metrics::counter!("rpc_hub_heads_total").increment(1);
        if tx
            .send(Event::Head {
                hash,
                json: block.json,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Remembers the last `PENDING_REMEMBERED` hashes sent.
#[derive(Default)]
struct Seen {
    order: VecDeque<Arc<str>>,
    set: HashSet<Arc<str>>,
}

impl Seen {
    /// Whether `hash` is new (and remembers it).
    fn insert(&mut self, hash: &str) -> bool {
        if self.set.contains(hash) {
            return false;
        }
        let hash: Arc<str> = Arc::from(hash);
        self.set.insert(hash.clone());
        self.order.push_back(hash);
        while self.order.len() > PENDING_REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// Sends `hash` if it is new; whether anyone still listens.
fn send_pending(tx: &broadcast::Sender<RawJson>, seen: &mut Seen, hash: &str) -> bool {
    if seen.insert(hash) {
        if let Ok(raw) = RawJson::from_serialize(hash) {
            metrics::counter!("rpc_hub_pending_total").increment(1);
            return tx.send(raw).is_ok();
        }
    }
    tx.receiver_count() > 0
}

/// Whether the pending channel has no subscriber left (and, if so, frees
/// its slot so the next subscriber starts a new source).
fn pending_done<S>(inner: &Inner<S>, tx: &broadcast::Sender<RawJson>) -> bool {
    let mut slot = inner.pending.lock().unwrap_or_else(|e| e.into_inner());
    if tx.receiver_count() == 0 {
        *slot = None;
        return true;
    }
    false
}

/// The source of `newPendingTransactions`: the push sources' own
/// subscriptions, one at a time (the next when one ends or refuses), else
/// a pending-transaction filter polled through the service (made again
/// on another member when it is lost). A mempool has no history, so a
/// hash announced while no source was reachable is not backfilled; no
/// hash is sent twice (the last 50 000 are remembered).
async fn follow_pending<S: JsonRpcService>(inner: Arc<Inner<S>>, tx: broadcast::Sender<RawJson>) {
    let mut seen = Seen::default();
    let params = RawJson::from_static(r#"["newPendingTransactions"]"#).expect("static JSON");
    let mut tick = tokio::time::interval(inner.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_source = 0usize;
    let mut refused = 0usize;
    let mut filter: Option<Value> = None;
    loop {
        if pending_done(&inner, &tx) {
            if let Some(id) = filter.take() {
                let _ = call(&inner, "eth_uninstallFilter", serde_json::json!([id])).await;
            }
            return;
        }
        // Push sources first, while any of them serves the subscription.
        if !inner.push.is_empty() && refused < inner.push.len() {
            let source = inner.push[next_source % inner.push.len()].clone();
            next_source += 1;
            match source.subscribe(params.clone()).await {
                Ok(mut hashes) => {
                    refused = 0;
                    let mut check = tokio::time::interval(inner.poll);
                    loop {
                        tokio::select! {
                            hash = hashes.next() => match hash {
                                Some(h) => {
                                    if let Ok(h) = h.deserialize::<String>() {
                                        send_pending(&tx, &mut seen, &h);
                                    }
                                }
                                None => break,
                            },
                            _ = check.tick() => {
                                if pending_done(&inner, &tx) {
                                    return;
                                }
                            }
                        }
                    }
                    tracing::debug!(
                        source = source.name(),
                        "newPendingTransactions: the push subscription ended; moving on"
                    );
                }
                Err(rpc_core::RpcError::Rejected { error, .. }) => {
                    tracing::debug!(source = source.name(), error = %error.message(), "newPendingTransactions: refused by the source");
                    refused += 1;
                }
                Err(e) => {
                    tracing::debug!(source = source.name(), error = %e, "newPendingTransactions: push subscription failed");
                }
            }
            tick.tick().await;
            continue;
        }
        tick.tick().await;
        let id = match filter.clone() {
            Some(id) => id,
            None => match call(
                &inner,
                "eth_newPendingTransactionFilter",
                serde_json::json!([]),
            )
            .await
            {
                Some(id) => {
                    filter = Some(id.clone());
                    id
                }
                None => continue,
            },
        };
        match call(&inner, "eth_getFilterChanges", serde_json::json!([id])).await {
            Some(Value::Array(hashes)) => {
                for h in hashes.iter().filter_map(Value::as_str) {
                    send_pending(&tx, &mut seen, h);
                }
            }
            // Lost with its member ("filter not found"), or a failure:
            // a new filter next tick.
            _ => filter = None,
        }
    }
}
