//! The `newHeads` hub against a scripted chain (paused time): every head
//! once, gaps backfilled in order, a reorganisation announced from the
//! fork, a head behind ignored, one poller for many subscribers, stopped
//! with the last.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Mock;
use futures_util::StreamExt;
use rpc_core::subscription::{Subscription, SubscriptionSource};
use rpc_core::{RawJson, Request, Response};
use rpc_failover::SubscriptionHub;
use serde_json::{json, Value};

/// A node's chain: blocks by hash, the canonical tip; `lag` makes "latest"
/// answer an older block (a member behind).
#[derive(Default)]
struct Chain {
    blocks: Vec<(u64, String, String)>,
    tip: usize,
    lag: Option<usize>,
    /// A source without `eth_getBlockByHash`.
    no_by_hash: bool,
}

impl Chain {
    /// Extends the canonical chain from block index `on` with `n` blocks
    /// tagged `tag`; the new tip is the last.
    fn grow(&mut self, on: Option<usize>, n: u64, tag: &str) {
        let (mut number, mut parent) = match on {
            Some(i) => (self.blocks[i].0, self.blocks[i].1.clone()),
            None => (0, "0x00".to_owned()),
        };
        for _ in 0..n {
            number += 1;
            let hash = format!("0x{tag}{number:04}");
            self.blocks.push((number, hash.clone(), parent));
            parent = hash;
        }
        self.tip = self.blocks.len() - 1;
    }

    fn json(&self, i: usize) -> Value {
        let (n, h, p) = &self.blocks[i];
        json!({"number": format!("{n:#x}"), "hash": h, "parentHash": p, "transactions": ["0xt"]})
    }
}

fn node(chain: Arc<Mutex<Chain>>) -> Mock {
    Mock::answering("node", move |r: &Request| {
        let c = chain.lock().expect("lock");
        let params: Value = r
            .params()
            .map(|p| serde_json::from_slice(p.as_bytes()).expect("json"))
            .unwrap_or(Value::Null);
        if r.method() == "eth_getLogs" {
            // One log per block, from contract 0xc0ffee; none for others.
            let q = &params[0];
            let result = match c.blocks.iter().find(|b| b.1 == q["blockHash"]) {
                Some((n, h, _)) if q["address"].is_null() || q["address"] == "0xc0ffee" => json!([{
                    "address": "0xc0ffee", "blockHash": h, "blockNumber": format!("{n:#x}"),
                    "logIndex": "0x0", "data": "0x", "topics": [], "removed": false,
                }]),
                _ => json!([]),
            };
            return Ok(Response::result(
                r.id().cloned().unwrap_or_default(),
                RawJson::from_serialize(&result).expect("json"),
            ));
        }
        let found = match (r.method(), params[0].as_str()) {
            ("eth_getBlockByNumber", Some("latest")) => Some(c.lag.unwrap_or(c.tip)),
            // A number on the canonical chain (walked back from the tip).
            ("eth_getBlockByNumber", Some(n)) => {
                let n = u64::from_str_radix(n.trim_start_matches("0x"), 16).expect("hex");
                let mut i = Some(c.tip);
                while let Some(j) = i.filter(|&j| c.blocks[j].0 > n) {
                    i = c.blocks.iter().position(|b| b.1 == c.blocks[j].2);
                }
                i.filter(|&j| c.blocks[j].0 == n)
            }
            ("eth_getBlockByHash", _) if c.no_by_hash => None,
            ("eth_getBlockByHash", _) => c.blocks.iter().position(|b| b.1 == params[0]),
            _ => None,
        };
        let result = match found {
            Some(i) => c.json(i),
            None => Value::Null,
        };
        Ok(Response::result(
            r.id().cloned().unwrap_or_default(),
            RawJson::from_serialize(&result).expect("json"),
        ))
    })
}

/// The next notification's (number, hash), within `within` of paused time.
async fn next(sub: &mut Subscription) -> (u64, String) {
    let raw = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a head in time")
        .expect("open");
    let v: Value = raw.deserialize().expect("json");
    assert!(v.get("transactions").is_none(), "no transaction list: {v}");
    let n = u64::from_str_radix(
        v["number"].as_str().expect("n").trim_start_matches("0x"),
        16,
    )
    .expect("hex");
    (n, v["hash"].as_str().expect("hash").to_owned())
}

/// Lets the poller start (its first poll is where it starts from).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn nothing_for(sub: &mut Subscription, d: Duration) {
    assert!(
        tokio::time::timeout(d, sub.next()).await.is_err(),
        "nothing expected"
    );
}

#[tokio::test(start_paused = true)]
async fn every_head_once_gaps_backfilled_and_reorgs_announced_from_the_fork() {
    let chain = Arc::new(Mutex::new(Chain::default()));
    chain.lock().expect("lock").grow(None, 10, "a");
    let up = node(chain.clone());
    let hub = SubscriptionHub::builder(up.clone())
        .poll_interval(Duration::from_secs(1))
        .build();
    let params = RawJson::from_static(r#"["newHeads"]"#).expect("json");
    let mut sub = hub.subscribe(Some(&params)).expect("newHeads");
    // Like a node: only the blocks after the current one.
    nothing_for(&mut sub, Duration::from_secs(2)).await;
    // One new block.
    chain.lock().expect("lock").grow(Some(9), 1, "a");
    assert_eq!(next(&mut sub).await.0, 11);
    // Three between two polls: all three, in order.
    chain.lock().expect("lock").grow(Some(10), 3, "a");
    for n in 12..=14 {
        assert_eq!(next(&mut sub).await.0, n);
    }
    // A reorganisation: 13 and 14 replaced by 13', 14', 15'.
    {
        let mut c = chain.lock().expect("lock");
        c.grow(Some(11), 3, "b");
    }
    assert_eq!(next(&mut sub).await, (13, "0xb0013".to_owned()));
    assert_eq!(next(&mut sub).await, (14, "0xb0014".to_owned()));
    assert_eq!(next(&mut sub).await, (15, "0xb0015".to_owned()));
    // A member behind answers an old head: nothing is sent.
    {
        let mut c = chain.lock().expect("lock");
        c.lag = Some(c.blocks.iter().position(|b| b.0 == 12).expect("12"));
    }
    nothing_for(&mut sub, Duration::from_secs(5)).await;
    chain.lock().expect("lock").lag = None;
    nothing_for(&mut sub, Duration::from_secs(3)).await;
}

#[tokio::test(start_paused = true)]
async fn subscribers_share_one_poller_which_stops_with_the_last() {
    let chain = Arc::new(Mutex::new(Chain::default()));
    chain.lock().expect("lock").grow(None, 5, "a");
    let up = node(chain.clone());
    let hub = SubscriptionHub::builder(up.clone())
        .poll_interval(Duration::from_secs(1))
        .build();
    let params = RawJson::from_static(r#"["newHeads"]"#).expect("json");
    let mut subs: Vec<Subscription> = (0..50)
        .map(|_| hub.subscribe(Some(&params)).expect("newHeads"))
        .collect();
    settle().await;
    chain.lock().expect("lock").grow(Some(4), 1, "a");
    for s in subs.iter_mut() {
        assert_eq!(next(s).await.0, 6);
    }
    let before = up.calls();
    tokio::time::sleep(Duration::from_secs(10)).await;
    // One poll a second, whatever the number of subscribers.
    let polls = up.calls() - before;
    assert!(
        (9..=11).contains(&polls),
        "{polls} polls in 10 s for 50 subscribers"
    );
    drop(subs);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopped = up.calls();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        up.calls(),
        stopped,
        "the poller stopped with its last subscriber"
    );
    // Other kinds are refused clearly.
    for refused in [r#"["newPendingTransactions", true]"#, r#"["syncing"]"#] {
        let params = RawJson::from_static(refused).expect("json");
        let err = hub.subscribe(Some(&params)).err().expect("refused");
        assert_eq!(err.code(), -32602, "{refused}");
    }
    let bad = RawJson::from_static(r#"["logs", {"fromBlock": "0x1"}]"#).expect("json");
    assert_eq!(
        hub.subscribe(Some(&bad)).err().expect("refused").code(),
        -32602
    );
}

/// The next log notification: (block hash, removed).
async fn next_log(sub: &mut Subscription) -> (String, bool) {
    let raw = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a log in time")
        .expect("open");
    let v: Value = raw.deserialize().expect("json");
    (
        v["blockHash"].as_str().expect("hash").to_owned(),
        v["removed"] == true,
    )
}

#[tokio::test(start_paused = true)]
async fn logs_follow_the_chain_and_a_reorg_marks_replaced_logs_removed() {
    let chain = Arc::new(Mutex::new(Chain::default()));
    chain.lock().expect("lock").grow(None, 3, "a");
    let hub = SubscriptionHub::builder(node(chain.clone()))
        .poll_interval(Duration::from_secs(1))
        .build();
    let mine = RawJson::from_static(r#"["logs", {"address": "0xc0ffee"}]"#).expect("json");
    let theirs = RawJson::from_static(r#"["logs", {"address": "0xbeef"}]"#).expect("json");
    let mut sub = hub.subscribe(Some(&mine)).expect("logs");
    let mut none = hub.subscribe(Some(&theirs)).expect("logs");
    // Each block's log after the head at subscription time.
    settle().await;
    chain.lock().expect("lock").grow(Some(2), 2, "a");
    assert_eq!(next_log(&mut sub).await, ("0xa0004".to_owned(), false));
    assert_eq!(next_log(&mut sub).await, ("0xa0005".to_owned(), false));
    // A reorganisation from block 4: 5 then 4 removed (newest first), then
    // the new branch's logs.
    chain.lock().expect("lock").grow(Some(2), 3, "b");
    assert_eq!(next_log(&mut sub).await, ("0xa0005".to_owned(), true));
    assert_eq!(next_log(&mut sub).await, ("0xa0004".to_owned(), true));
    for h in ["0xb0004", "0xb0005", "0xb0006"] {
        assert_eq!(next_log(&mut sub).await, (h.to_owned(), false));
    }
    // Distinct filters are bounded (the two above count).
    let bounded = SubscriptionHub::builder(node(chain.clone()))
        .max_log_filters(1)
        .build();
    let _first = bounded.subscribe(Some(&mine)).expect("the first filter");
    let _same = bounded
        .subscribe(Some(&mine))
        .expect("the same filter again");
    let refused = bounded
        .subscribe(Some(&theirs))
        .err()
        .expect("a second filter");
    assert_eq!(refused.code(), -32005);
    // Another contract's filter saw nothing.
    assert!(
        tokio::time::timeout(Duration::from_secs(2), none.next())
            .await
            .is_err(),
        "no logs for another address"
    );
}

#[tokio::test(start_paused = true)]
async fn a_source_without_blocks_by_hash_is_backfilled_by_number() {
    let chain = Arc::new(Mutex::new(Chain {
        no_by_hash: true,
        ..Chain::default()
    }));
    chain.lock().expect("lock").grow(None, 4, "a");
    let hub = SubscriptionHub::builder(node(chain.clone()))
        .poll_interval(Duration::from_secs(1))
        .build();
    let params = RawJson::from_static(r#"["newHeads"]"#).expect("json");
    let mut sub = hub.subscribe(Some(&params)).expect("newHeads");
    settle().await;
    chain.lock().expect("lock").grow(Some(3), 3, "a");
    for n in 5..=7 {
        assert_eq!(next(&mut sub).await.0, n);
    }
}

/// A push source whose notifications the test sends: each subscription
/// takes the next receiver queued with `feed`; `subscriptions` counts them.
#[derive(Clone, Default)]
struct Pusher {
    queue: Arc<Mutex<std::collections::VecDeque<tokio::sync::mpsc::Receiver<Value>>>>,
    subscriptions: Arc<std::sync::atomic::AtomicUsize>,
}

impl Pusher {
    /// The sender of the next subscription's notifications.
    fn feed(&self) -> tokio::sync::mpsc::Sender<Value> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        self.queue.lock().expect("lock").push_back(rx);
        tx
    }
}

impl rpc_core::subscription::PushSource for Pusher {
    fn name(&self) -> &str {
        "pusher"
    }
    fn subscribe(
        &self,
        _params: RawJson,
    ) -> futures_util::future::BoxFuture<'static, Result<Subscription, rpc_core::RpcError>> {
        use futures_util::FutureExt;
        self.subscriptions
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let next = self.queue.lock().expect("lock").pop_front();
        async move {
            match next {
                Some(rx) => Ok(futures_util::stream::unfold(rx, |mut rx| async move {
                    let v = rx.recv().await?;
                    Some((RawJson::from_serialize(&v).expect("json"), rx))
                })
                .boxed()),
                None => Err(rpc_core::RpcError::Connect {
                    backend: "pusher".into(),
                    source: "down".into(),
                }),
            }
        }
        .boxed()
    }
}

#[tokio::test(start_paused = true)]
async fn a_push_source_wakes_the_poller_but_its_claims_are_read_through_the_service() {
    let chain = Arc::new(Mutex::new(Chain::default()));
    chain.lock().expect("lock").grow(None, 5, "a");
    let up = node(chain.clone());
    let pusher = Pusher::default();
    let push = pusher.feed();
    // Polling alone would look every 60 s.
    let hub = SubscriptionHub::builder(up.clone())
        .poll_interval(Duration::from_secs(60))
        .push_source(Arc::new(pusher.clone()))
        .build();
    let params = RawJson::from_static(r#"["newHeads"]"#).expect("json");
    let mut sub = hub.subscribe(Some(&params)).expect("newHeads");
    settle().await;
    // A new block announced: delivered at once, not at the next poll.
    chain.lock().expect("lock").grow(Some(4), 1, "a");
    let started = tokio::time::Instant::now();
    push.send(json!({"number": "0x6", "hash": "0xa0006"}))
        .await
        .expect("push");
    assert_eq!(next(&mut sub).await, (6, "0xa0006".to_owned()));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // A block the service does not know yet: looked for again shortly,
    // delivered when the node has it.
    push.send(json!({"number": "0x7", "hash": "0xa0007"}))
        .await
        .expect("push");
    tokio::time::sleep(Duration::from_millis(120)).await;
    chain.lock().expect("lock").grow(Some(5), 1, "a");
    assert_eq!(next(&mut sub).await, (7, "0xa0007".to_owned()));
    // A lie (a block far ahead, a hash nobody has) is only a cue: nothing
    // is delivered, and the service is asked a bounded number of times.
    let before = up.calls();
    push.send(json!({"number": "0xf4240", "hash": "0xdead"}))
        .await
        .expect("push");
    nothing_for(&mut sub, Duration::from_secs(5)).await;
    let asked = up.calls() - before;
    assert!((1..=12).contains(&asked), "{asked} polls after one lie");
    // The source ends: it is subscribed to again, and polling goes on.
    drop(push);
    let again = pusher.feed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        pusher
            .subscriptions
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    chain.lock().expect("lock").grow(Some(6), 1, "a");
    again.send(json!({"number": "0x8"})).await.expect("push");
    assert_eq!(next(&mut sub).await.0, 8);
}

/// The next pending transaction hash.
async fn next_hash(sub: &mut Subscription) -> String {
    let raw = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a hash in time")
        .expect("open");
    raw.deserialize().expect("a string")
}

#[tokio::test(start_paused = true)]
async fn pending_transactions_poll_a_filter_made_again_when_lost_each_hash_once() {
    // The node's filter answers the batches queued in `changes`; "lost"
    // answers "filter not found" once (its member went away).
    let changes: Arc<Mutex<std::collections::VecDeque<Value>>> = Arc::default();
    let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (c, m) = (changes.clone(), made.clone());
    let up = Mock::answering("node", move |r: &Request| {
        let id = r.id().cloned().unwrap_or_default();
        match r.method() {
            "eth_newPendingTransactionFilter" => {
                let n = m.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(Response::result(
                    id,
                    RawJson::from_serialize(&format!("0xf{n}")).expect("json"),
                ))
            }
            "eth_getFilterChanges" => match c.lock().expect("lock").pop_front() {
                Some(Value::String(lost)) if lost == "lost" => Ok(Response::error(
                    id,
                    rpc_core::ErrorObject::new(-32000, "filter not found"),
                )),
                Some(batch) => Ok(Response::result(
                    id,
                    RawJson::from_serialize(&batch).expect("json"),
                )),
                None => Ok(Response::result(
                    id,
                    RawJson::from_static("[]").expect("json"),
                )),
            },
            _ => Ok(Response::result(id, RawJson::NULL)),
        }
    });
    let hub = SubscriptionHub::builder(up.clone())
        .poll_interval(Duration::from_millis(500))
        .build();
    let params = RawJson::from_static(r#"["newPendingTransactions"]"#).expect("json");
    let mut a = hub.subscribe(Some(&params)).expect("pending");
    let mut b = hub.subscribe(Some(&params)).expect("pending");
    {
        let mut q = changes.lock().expect("lock");
        q.push_back(json!(["0x01", "0x02"]));
        q.push_back(json!("lost"));
        // The new filter's node knew 0x02 too: not sent twice.
        q.push_back(json!(["0x02", "0x03"]));
    }
    for sub in [&mut a, &mut b] {
        for want in ["0x01", "0x02", "0x03"] {
            assert_eq!(next_hash(sub).await, want);
        }
    }
    nothing_for(&mut a, Duration::from_secs(3)).await;
    // One filter for both subscribers, made again once after it was lost.
    assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn pending_transactions_come_from_push_sources_moving_on_when_one_ends() {
    let up = node(Arc::new(Mutex::new(Chain::default())));
    let first = Pusher::default();
    let second = Pusher::default();
    let (one, two) = (first.feed(), second.feed());
    let hub = SubscriptionHub::builder(up.clone())
        .poll_interval(Duration::from_millis(200))
        .push_source(Arc::new(first.clone()))
        .push_source(Arc::new(second.clone()))
        .build();
    let params = RawJson::from_static(r#"["newPendingTransactions"]"#).expect("json");
    let mut sub = hub.subscribe(Some(&params)).expect("pending");
    one.send(json!("0xa1")).await.expect("push");
    one.send(json!("0xa2")).await.expect("push");
    assert_eq!(next_hash(&mut sub).await, "0xa1");
    assert_eq!(next_hash(&mut sub).await, "0xa2");
    // The first source dies; the second (which also saw 0xa2) takes over.
    drop(one);
    two.send(json!("0xa2")).await.expect("push");
    two.send(json!("0xa3")).await.expect("push");
    assert_eq!(next_hash(&mut sub).await, "0xa3");
    assert_eq!(
        second
            .subscriptions
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}
