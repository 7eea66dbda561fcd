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
    // The current head first.
    assert_eq!(next(&mut sub).await, (10, "0xa0010".to_owned()));
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
    for s in subs.iter_mut() {
        assert_eq!(next(s).await.0, 5);
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
    let pending = RawJson::from_static(r#"["newPendingTransactions"]"#).expect("json");
    let err = hub.subscribe(Some(&pending)).err().expect("refused");
    assert_eq!(err.code(), -32602);
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
    // The head at subscription time, then each new block's log.
    assert_eq!(next_log(&mut sub).await, ("0xa0003".to_owned(), false));
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
    assert_eq!(next(&mut sub).await.0, 4);
    chain.lock().expect("lock").grow(Some(3), 3, "a");
    for n in 5..=7 {
        assert_eq!(next(&mut sub).await.0, n);
    }
}
