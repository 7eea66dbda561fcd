//! The cache layer under paused time with a counting upstream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_cache::{Cache, CacheLayer, CacheRules, CacheStatus, MemoryStore, Rule};
use rpc_core::test_util::MockBackend;
use rpc_core::{Deadline, ErrorObject, Id, Payload, RawJson, Request, Response, RpcError};
use tower::{Layer, ServiceExt};

/// The upstream of these tests: rpc-core's scripted backend, answering
/// with a closure (any response or error), counting calls.
type Upstream = MockBackend;

fn upstream(
    answer: impl Fn(&Request) -> Result<Response, RpcError> + Send + Sync + 'static,
) -> Upstream {
    MockBackend::answering("up", answer)
}

/// Answers every call with this raw result.
fn answers(raw: &'static str) -> Upstream {
    MockBackend::ok("up", raw)
}

fn ok(r: &Request, raw: &'static str) -> Response {
    Response::result(
        r.id().cloned().unwrap_or_default(),
        RawJson::from_static(raw).expect("json"),
    )
}

fn req(id: u64, method: &str, params: &'static str) -> Request {
    Request::new(method)
        .with_id(Id::from(id))
        .with_params(RawJson::from_static(params).expect("json"))
}

fn status(r: &Response) -> CacheStatus {
    *r.extensions().get::<CacheStatus>().expect("tagged")
}

fn cache(up: &Upstream) -> Cache<Upstream> {
    CacheLayer::new(CacheRules::ethereum()).layer(up.clone())
}

#[tokio::test(start_paused = true)]
async fn hit_miss_and_expiry_of_a_tip_answer() {
    let up = answers("\"0x10\"");
    let c = cache(&up);
    let r = c
        .clone()
        .oneshot(req(1, "eth_blockNumber", "[]"))
        .await
        .expect("answer");
    assert_eq!(status(&r), CacheStatus::Miss);
    let r = c
        .clone()
        .oneshot(req(2, "eth_blockNumber", "[]"))
        .await
        .expect("answer");
    assert_eq!((status(&r), r.id()), (CacheStatus::Hit, &Id::from(2u64)));
    assert_eq!(up.calls(), 1);

    tokio::time::advance(Duration::from_millis(999)).await;
    let r = c
        .clone()
        .oneshot(req(3, "eth_blockNumber", "[]"))
        .await
        .expect("answer");
    assert_eq!(status(&r), CacheStatus::Hit);
    tokio::time::advance(Duration::from_millis(1)).await;
    let r = c
        .clone()
        .oneshot(req(4, "eth_blockNumber", "[]"))
        .await
        .expect("answer");
    assert_eq!(status(&r), CacheStatus::Miss, "the 1 s tip TTL ran out");
    assert_eq!(up.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn forever_answers_stay_and_formatting_does_not_miss() {
    let up = answers("{\"number\":\"0x1\"}");
    let c = cache(&up);
    let hash = "0xAB00000000000000000000000000000000000000000000000000000000000001";
    let a = Request::new("eth_getBlockByHash")
        .with_id(Id::from(1u64))
        .with_params(RawJson::from_bytes(format!("[\"{hash}\", false]")).expect("json"));
    let b = Request::new("eth_getBlockByHash")
        .with_id(Id::from("b"))
        .with_params(
            RawJson::from_bytes(format!("[ \"{}\" ,false ]", hash.to_lowercase())).expect("json"),
        );
    c.clone().oneshot(a).await.expect("answer");
    tokio::time::advance(Duration::from_secs(86_400)).await;
    let r = c.clone().oneshot(b).await.expect("answer");
    assert_eq!((status(&r), r.id()), (CacheStatus::Hit, &Id::from("b")));
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_refresh_asks_upstream_and_replaces_the_kept_answer() {
    let n = Arc::new(AtomicUsize::new(0));
    let counter = n.clone();
    let up = upstream(move |r| {
        let i = counter.fetch_add(1, Ordering::SeqCst);
        Ok(ok(
            r,
            if i == 0 {
                "{\"number\":\"0xbad\"}"
            } else {
                "{\"number\":\"0x600d\"}"
            },
        ))
    });
    let c = cache(&up);
    let hash = "[\"0x0000000000000000000000000000000000000000000000000000000000000001\", false]";
    let first = c
        .clone()
        .oneshot(req(1, "eth_getBlockByHash", hash))
        .await
        .expect("answer");
    assert_eq!(
        first.payload(),
        &Payload::Result(RawJson::from_static("{\"number\":\"0xbad\"}").expect("json"))
    );
    let mut fresh = req(2, "eth_getBlockByHash", hash);
    fresh.extensions_mut().insert(rpc_cache::Refresh);
    let r = c.clone().oneshot(fresh).await.expect("answer");
    assert_eq!(status(&r), CacheStatus::Miss);
    // The kept answer is the refreshed one.
    let r = c
        .clone()
        .oneshot(req(3, "eth_getBlockByHash", hash))
        .await
        .expect("answer");
    assert_eq!(status(&r), CacheStatus::Hit);
    assert_eq!(
        r.payload(),
        &Payload::Result(RawJson::from_static("{\"number\":\"0x600d\"}").expect("json"))
    );
    assert_eq!(up.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn writes_and_unknown_methods_pass_through() {
    let up = answers("\"0xabc\"");
    let c = cache(&up);
    for _ in 0..3 {
        for m in [
            "eth_sendRawTransaction",
            "eth_sendTransaction",
            "eth_newFilter",
            "who_knows",
        ] {
            let r = c
                .clone()
                .oneshot(req(1, m, "[\"0x00\"]"))
                .await
                .expect("answer");
            assert_eq!(status(&r), CacheStatus::Bypass, "{m}");
        }
    }
    assert_eq!(up.calls(), 12);
    // Params that cannot be keyed exactly are not cached either.
    for _ in 0..2 {
        let r = c
            .clone()
            .oneshot(req(1, "eth_chainId", "[1.5]"))
            .await
            .expect("answer");
        assert_eq!(status(&r), CacheStatus::Bypass);
    }
}

#[tokio::test(start_paused = true)]
async fn errors_and_nulls_are_not_cached_by_default() {
    let up = upstream(|r| {
        Ok(match r.method() {
            "eth_getBalance" => Response::error(
                r.id().cloned().unwrap_or_default(),
                ErrorObject::new(-32000, "header not found"),
            ),
            _ => ok(r, "null"),
        })
    });
    let c = cache(&up);
    for _ in 0..2 {
        let r = c
            .clone()
            .oneshot(req(1, "eth_getBalance", r#"["0x1","0x5"]"#))
            .await
            .expect("answer");
        assert_eq!(status(&r), CacheStatus::Miss);
        let r = c
            .clone()
            .oneshot(req(1, "eth_getBlockByHash", HASH_PARAMS))
            .await
            .expect("answer");
        assert_eq!(status(&r), CacheStatus::Miss);
    }
    assert_eq!(up.calls(), 4);

    let failing = upstream(|r| {
        Err(RpcError::Connect {
            backend: "n".into(),
            source: format!("refused {}", r.method()).into(),
        })
    });
    let c = cache(&failing);
    for _ in 0..2 {
        assert!(c
            .clone()
            .oneshot(req(1, "eth_chainId", "[]"))
            .await
            .is_err());
    }
    assert_eq!(failing.calls(), 2, "a failure is never cached");
}

const HASH_PARAMS: &str =
    r#"["0xab00000000000000000000000000000000000000000000000000000000000001",false]"#;

#[tokio::test(start_paused = true)]
async fn negative_caching_has_its_own_short_ttl_and_skips_refusals() {
    let up = upstream(|r| {
        let id = r.id().cloned().unwrap_or_default();
        Ok(match r.method() {
            "eth_getBlockByHash" => ok(r, "null"),
            "eth_call" => Response::error(id, ErrorObject::new(3, "execution reverted")),
            _ => Response::error(id, ErrorObject::new(429, "rate limited")),
        })
    });
    let c = CacheLayer::new(CacheRules::ethereum())
        .negative_ttl(Duration::from_millis(200))
        .layer(up.clone());
    let calls = [
        ("eth_getBlockByHash", HASH_PARAMS),
        ("eth_call", r#"[{"to":"0x1"},"0x1"]"#),
        ("eth_chainId", "[]"),
    ];
    for (m, p) in calls {
        c.clone().oneshot(req(1, m, p)).await.expect("answer");
    }
    let mut statuses = Vec::new();
    for (m, p) in calls {
        statuses.push(status(
            &c.clone().oneshot(req(1, m, p)).await.expect("answer"),
        ));
    }
    assert_eq!(
        statuses,
        [CacheStatus::Hit, CacheStatus::Hit, CacheStatus::Miss],
        "429 is never cached"
    );
    tokio::time::advance(Duration::from_millis(200)).await;
    let r = c
        .clone()
        .oneshot(req(1, calls[0].0, calls[0].1))
        .await
        .expect("answer");
    assert_eq!(
        status(&r),
        CacheStatus::Miss,
        "negative entries expire after 200 ms, not forever"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hundred_identical_calls_share_one_upstream_call() {
    let up = answers("\"0x2a\"").delay(Duration::from_millis(100));
    let c = cache(&up);
    let calls: Vec<_> = (0..100u64)
        .map(|i| {
            tokio::spawn(
                c.clone()
                    .oneshot(req(i, "eth_getBalance", r#"["0x1","latest"]"#)),
            )
        })
        .collect();
    let mut misses = 0;
    for (i, call) in calls.into_iter().enumerate() {
        let r = call.await.expect("join").expect("answer");
        assert_eq!(r.id(), &Id::from(i as u64), "each caller's own id");
        match status(&r) {
            CacheStatus::Miss => misses += 1,
            CacheStatus::Coalesced => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((up.calls(), misses), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn when_the_shared_call_fails_every_waiter_gets_the_error() {
    let up = upstream(|_| {
        Err(RpcError::Timeout {
            backend: Some("n".into()),
            elapsed: Duration::from_secs(1),
        })
    })
    .delay(Duration::from_millis(100));
    let c = cache(&up);
    let calls: Vec<_> = (0..20u64)
        .map(|i| tokio::spawn(c.clone().oneshot(req(i, "eth_blockNumber", "[]"))))
        .collect();
    for call in calls {
        let err = call.await.expect("join").expect_err("shared failure");
        assert!(matches!(err, RpcError::Timeout { .. }), "{err}");
    }
    assert_eq!(up.calls(), 1);
    // Not cached, not stuck in flight: the next call goes upstream again.
    let _ = c.clone().oneshot(req(99, "eth_blockNumber", "[]")).await;
    assert_eq!(up.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_with_an_earlier_deadline_leaves_without_hurting_the_others() {
    let up = answers("\"0x1\"").delay(Duration::from_secs(2));
    let c = cache(&up);
    let patient = tokio::spawn(c.clone().oneshot(req(1, "eth_blockNumber", "[]")));
    tokio::task::yield_now().await;
    let mut hurried = req(2, "eth_blockNumber", "[]");
    hurried.extensions_mut().insert(Deadline(
        tokio::time::Instant::now() + Duration::from_millis(500),
    ));
    let err = c.clone().oneshot(hurried).await.expect_err("its deadline");
    assert!(matches!(err, RpcError::DeadlineExceeded));
    let r = patient.await.expect("join").expect("answer");
    assert_eq!(status(&r), CacheStatus::Miss);
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn when_every_waiter_leaves_the_upstream_call_is_cancelled() {
    let up = answers("\"0x1\"").delay(Duration::from_secs(10));
    let c = cache(&up);
    let r = tokio::time::timeout(
        Duration::from_millis(10),
        c.clone().oneshot(req(1, "eth_blockNumber", "[]")),
    )
    .await;
    assert!(r.is_err(), "the caller gave up");
    // A new call starts a new flight instead of joining an abandoned one.
    let started = tokio::time::Instant::now();
    c.clone()
        .oneshot(req(2, "eth_blockNumber", "[]"))
        .await
        .expect("answer");
    assert_eq!(up.calls(), 2);
    assert_eq!(started.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn the_head_seen_makes_deep_blocks_permanent() {
    let up = upstream(|r| {
        Ok(match r.method() {
            "eth_blockNumber" => ok(r, "\"0x100\""),
            _ => ok(r, "{\"number\":\"0x10\"}"),
        })
    });
    let c = cache(&up);
    let deep = r#"["0x10",false]"#;
    let shallow = r#"["0xf0",false]"#;
    // Head unknown: even an old block gets only the tip TTL.
    c.clone()
        .oneshot(req(1, "eth_getBlockByNumber", deep))
        .await
        .expect("answer");
    tokio::time::advance(Duration::from_secs(1)).await;
    let r = c
        .clone()
        .oneshot(req(1, "eth_getBlockByNumber", deep))
        .await
        .expect("answer");
    assert_eq!(status(&r), CacheStatus::Miss);

    c.clone()
        .oneshot(req(1, "eth_blockNumber", "[]"))
        .await
        .expect("answer");
    assert_eq!(c.head(), 0x100);
    // (The entry stored with the tip TTL runs out first; the next miss
    // stores the block for good.)
    tokio::time::advance(Duration::from_secs(1)).await;
    for p in [deep, shallow] {
        c.clone()
            .oneshot(req(1, "eth_getBlockByNumber", p))
            .await
            .expect("answer");
    }
    tokio::time::advance(Duration::from_secs(3600)).await;
    let r = c
        .clone()
        .oneshot(req(1, "eth_getBlockByNumber", deep))
        .await
        .expect("answer");
    assert_eq!(
        status(&r),
        CacheStatus::Hit,
        "0x10 is 240 blocks deep: kept"
    );
    let r = c
        .clone()
        .oneshot(req(1, "eth_getBlockByNumber", shallow))
        .await
        .expect("answer");
    assert_eq!(
        status(&r),
        CacheStatus::Miss,
        "0xf0 is 16 deep (< 64): tip TTL"
    );
}

#[tokio::test(start_paused = true)]
async fn electrum_rules() {
    let up = upstream(|r| {
        Ok(match r.method() {
            "blockchain.headers.subscribe" => ok(r, r#"{"height":1000,"hex":"00"}"#),
            "blockchain.transaction.get" => ok(r, "\"0100000001\""),
            _ => ok(r, "\"00000020\""),
        })
    });
    let c = CacheLayer::new(CacheRules::electrum()).layer(up.clone());
    let txid = r#"["AB00000000000000000000000000000000000000000000000000000000000001"]"#;
    let txid_lower = r#"["ab00000000000000000000000000000000000000000000000000000000000001"]"#;
    c.clone()
        .oneshot(req(1, "blockchain.headers.subscribe", "[]"))
        .await
        .expect("answer");
    c.clone()
        .oneshot(req(1, "blockchain.transaction.get", txid))
        .await
        .expect("answer");
    c.clone()
        .oneshot(req(1, "blockchain.block.header", "[990]"))
        .await
        .expect("answer");
    c.clone()
        .oneshot(req(1, "server.features", "[]"))
        .await
        .expect("answer");
    tokio::time::advance(Duration::from_secs(3600)).await;
    let r = c
        .clone()
        .oneshot(req(2, "blockchain.transaction.get", txid_lower))
        .await
        .expect("answer");
    assert_eq!(status(&r), CacheStatus::Hit);
    let r = c
        .clone()
        .oneshot(req(2, "blockchain.block.header", "[990]"))
        .await
        .expect("answer");
    assert_eq!(status(&r), CacheStatus::Hit, "10 deep, 6 needed");
    let r = c
        .clone()
        .oneshot(req(2, "server.features", "[]"))
        .await
        .expect("answer");
    assert_eq!(
        status(&r),
        CacheStatus::Bypass,
        "per-server answers are never shared"
    );
}

#[tokio::test(start_paused = true)]
async fn user_rules_override_the_shipped_ones() {
    let up = answers("\"0x1\"");
    let c = CacheLayer::new(
        CacheRules::ethereum()
            .method("eth_chainId", Rule::Never)
            .method("myco_price", Rule::Ttl(Duration::from_secs(5))),
    )
    .layer(up.clone());
    for _ in 0..2 {
        c.clone()
            .oneshot(req(1, "eth_chainId", "[]"))
            .await
            .expect("answer");
        c.clone()
            .oneshot(req(1, "myco_price", "[]"))
            .await
            .expect("answer");
    }
    assert_eq!(up.calls(), 3);
}

#[test]
fn the_store_is_bounded_by_bytes_and_entries_evicting_least_recently_used() {
    let key = |i: u32| {
        rpc_cache::CacheKey::for_request(
            &req(1, "m", "[]")
                .with_params(RawJson::from_bytes(format!("[\"{i:036}\"]")).expect("json")),
            false,
        )
        .expect("key")
    };
    let value = Payload::Result(RawJson::from_static("\"12345\"").expect("json"));
    // The size one entry is counted at (key + answer + bookkeeping).
    let probe = MemoryStore::new().shards(1);
    probe.put_now(key(0), value.clone(), None);
    let size = probe.bytes();
    let store = MemoryStore::new()
        .shards(1)
        .max_bytes(4 * size)
        .max_entries(1000);
    for i in 0..4 {
        store.put_now(key(i), value.clone(), None);
    }
    assert_eq!(store.len(), 4);
    assert!(store.get_now(&key(0)).is_some(), "touch 0: now most recent");
    store.put_now(key(4), value.clone(), None);
    assert_eq!(store.len(), 4);
    assert!(
        store.get_now(&key(1)).is_none(),
        "1 was least recently used"
    );
    assert!(store.get_now(&key(0)).is_some());
    assert!(store.bytes() <= 4 * size);

    let counted = MemoryStore::new().shards(1).max_entries(3);
    for i in 0..10 {
        counted.put_now(key(i), value.clone(), None);
    }
    assert_eq!(counted.len(), 3);
    assert!(counted.get_now(&key(9)).is_some() && counted.get_now(&key(6)).is_none());

    // An answer larger than the whole budget is not stored (and evicts nothing).
    let big =
        Payload::Result(RawJson::from_bytes(format!("\"{}\"", "x".repeat(10_000))).expect("json"));
    store.put_now(key(50), big, None);
    assert!(store.get_now(&key(50)).is_none());
    assert_eq!(store.len(), 4);
}

/// The statuses of calls made one after the other.
async fn statuses(c: &Cache<Upstream>, calls: &[(&str, &'static str)]) -> Vec<CacheStatus> {
    let mut out = Vec::new();
    for (i, (method, params)) in calls.iter().enumerate() {
        let r = c
            .clone()
            .oneshot(req(i as u64, method, params))
            .await
            .expect("answer");
        out.push(status(&r));
    }
    out
}

const BALANCE: (&str, &str) = (
    "eth_getBalance",
    r#"["0x0000000000000000000000000000000000000001","latest"]"#,
);

#[tokio::test(start_paused = true)]
async fn a_write_makes_tip_answers_stale_at_once() {
    use CacheStatus::*;
    let up = upstream(|r| {
        Ok(match r.method() {
            "eth_blockNumber" => ok(r, "\"0x10\""),
            "eth_chainId" => ok(r, "\"0x1\""),
            _ => ok(r, "\"0xabc\""),
        })
    });
    let c = cache(&up);
    let write = ("eth_sendRawTransaction", r#"["0x02f8"]"#);
    let chain_id = ("eth_chainId", "[]");
    assert_eq!(
        statuses(
            &c,
            &[BALANCE, BALANCE, chain_id, write, BALANCE, BALANCE, chain_id]
        )
        .await,
        [Miss, Hit, Miss, Bypass, Miss, Hit, Hit],
        "after the write the balance is asked again; answers kept forever stay"
    );
    // Dev-node controls count as writes too.
    assert_eq!(
        statuses(&c, &[("evm_mine", "[]"), BALANCE]).await,
        [Bypass, Miss]
    );
    // A failed write changes nothing.
    let failing = upstream(|r| {
        Ok(match r.method() {
            "eth_sendRawTransaction" => Response::error(
                r.id().cloned().unwrap_or_default(),
                ErrorObject::new(-32000, "nonce too low"),
            ),
            _ => ok(r, "\"0xabc\""),
        })
    });
    let c = cache(&failing);
    assert_eq!(
        statuses(&c, &[BALANCE, write, BALANCE]).await,
        [Miss, Bypass, Hit]
    );
}

#[tokio::test(start_paused = true)]
async fn a_higher_head_makes_tip_answers_stale_but_its_own_answer_is_kept() {
    use CacheStatus::*;
    let head = Arc::new(AtomicUsize::new(0x10));
    let h = head.clone();
    let up = upstream(move |r| {
        Ok(match r.method() {
            "eth_blockNumber" => Response::result(
                r.id().cloned().unwrap_or_default(),
                RawJson::from_bytes(format!("\"{:#x}\"", h.load(Ordering::SeqCst))).expect("json"),
            ),
            _ => ok(r, "\"0xabc\""),
        })
    });
    let c = cache(&up);
    let block_number = ("eth_blockNumber", "[]");
    assert_eq!(
        statuses(&c, &[block_number, BALANCE, block_number, BALANCE]).await,
        [Miss, Miss, Hit, Hit]
    );
    // A new block, learned when the head's TTL runs out.
    head.store(0x11, Ordering::SeqCst);
    tokio::time::advance(Duration::from_millis(1000)).await;
    assert_eq!(
        statuses(&c, &[block_number, block_number, BALANCE]).await,
        [Miss, Hit, Miss],
        "the new head is kept; the balance from the old head is not used"
    );
    assert_eq!(c.head(), 0x11);
    // A head learned elsewhere does the same.
    c.observe_head(0x12);
    assert_eq!(statuses(&c, &[BALANCE, block_number]).await, [Miss, Miss]);
}

#[tokio::test(start_paused = true)]
async fn a_read_in_flight_during_a_write_is_not_kept_for_later() {
    use CacheStatus::*;
    let up = answers("\"0xabc\"").delay(Duration::from_millis(100));
    let c = cache(&up);
    // The write is sent first and lands while the read is still in flight.
    let write = tokio::spawn({
        let c = c.clone();
        async move {
            c.oneshot(req(1, "eth_sendRawTransaction", r#"["0x02"]"#))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let read = c
        .clone()
        .oneshot(req(2, BALANCE.0, BALANCE.1))
        .await
        .expect("read");
    assert_eq!(status(&read), Miss);
    assert_eq!(status(&write.await.expect("join").expect("write")), Bypass);
    // The read may have seen the state before the write: asked again.
    assert_eq!(statuses(&c, &[BALANCE, BALANCE]).await, [Miss, Hit]);
    assert_eq!(up.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn answers_from_a_backend_behind_the_known_head_are_not_kept() {
    use rpc_core::ChainHead;
    use CacheStatus::*;
    // The group below says which head each answer comes from.
    let head = Arc::new(AtomicUsize::new(100));
    let h = head.clone();
    let up = upstream(move |r| {
        let mut resp = ok(r, "\"0xabc\"");
        resp.extensions_mut()
            .insert(ChainHead(h.load(Ordering::SeqCst) as u64));
        Ok(resp)
    });
    let c = cache(&up);
    assert_eq!(statuses(&c, &[BALANCE, BALANCE]).await, [Miss, Hit]);
    assert_eq!(c.head(), 100, "learned from the answer's ChainHead");
    c.observe_head(105);
    // Served by a member still at 100: passed on, not kept.
    assert_eq!(statuses(&c, &[BALANCE, BALANCE]).await, [Miss, Miss]);
    head.store(105, Ordering::SeqCst);
    assert_eq!(statuses(&c, &[BALANCE, BALANCE]).await, [Miss, Hit]);
}

// ---- Chain truth: the group's agreed chain steers the cache ----

/// An upstream standing for a head-tracking group: every answer carries the
/// group's [`AgreedChain`](rpc_core::AgreedChain), settable by the test.
#[derive(Clone, Default)]
struct Agreed(Arc<Mutex<rpc_core::AgreedChain>>);

impl Agreed {
    fn set(&self, f: impl FnOnce(&mut rpc_core::AgreedChain)) {
        f(&mut self.0.lock().expect("lock"));
    }
    fn upstream(&self, result: fn(&Request) -> String) -> Upstream {
        let agreed = self.clone();
        upstream(move |r| Ok(agreed.respond(r, result(r))))
    }

    /// An answer with `result`, carrying the agreed chain.
    fn respond(&self, r: &Request, result: String) -> Response {
        let mut resp = Response::result(
            r.id().cloned().unwrap_or_default(),
            RawJson::from_bytes(result).expect("json"),
        );
        resp.extensions_mut().insert(*self.0.lock().expect("lock"));
        resp
    }
}

#[tokio::test(start_paused = true)]
async fn a_member_s_lie_in_an_answer_does_not_settle_near_tip_blocks() {
    use CacheStatus::*;
    let agreed = Agreed::default();
    agreed.set(|a| a.head = 0x100);
    // The answering member's eth_blockNumber says 0xffffffff (a liar the
    // group served as a last resort); the group's agreed head is 0x100.
    let up = agreed.upstream(|r| match r.method() {
        "eth_blockNumber" => "\"0xffffffff\"".to_owned(),
        _ => "\"0x1\"".to_owned(),
    });
    let c = cache(&up);
    let _ = statuses(&c, &[("eth_blockNumber", "[]")]).await;
    assert_eq!(c.head(), 0x100, "the agreed head, not the member's word");
    const NEAR_TIP: (&str, &str) = (
        "eth_getBalance",
        r#"["0x0000000000000000000000000000000000000001","0xff"]"#,
    );
    assert_eq!(statuses(&c, &[NEAR_TIP, NEAR_TIP]).await, [Miss, Hit]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        statuses(&c, &[NEAR_TIP]).await,
        [Miss],
        "a block 1 below the head is kept for the tip TTL only"
    );
}

#[tokio::test(start_paused = true)]
async fn blocks_settle_at_the_agreed_finalized_block() {
    use CacheStatus::*;
    let agreed = Agreed::default();
    agreed.set(|a| {
        a.head = 1000;
        a.finalized = Some(900);
    });
    let up = agreed.upstream(|_| "\"0x1\"".to_owned());
    let c = cache(&up);
    let _ = statuses(&c, &[("eth_chainId", "[]")]).await;
    const FINAL: (&str, &str) = ("eth_getBlockByNumber", r#"["0x384",false]"#);
    // 950 is 50 deep (below the 64-block rule would say "not yet"), 920 is
    // 80 deep but not finalized: finality decides.
    const NOT_FINAL: (&str, &str) = ("eth_getBlockByNumber", r#"["0x398",false]"#);
    assert_eq!(statuses(&c, &[FINAL, NOT_FINAL]).await, [Miss, Miss]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(statuses(&c, &[FINAL, NOT_FINAL]).await, [Hit, Miss]);
}

#[tokio::test(start_paused = true)]
async fn a_reorganisation_drops_answers_about_replaced_blocks() {
    use CacheStatus::*;
    let agreed = Agreed::default();
    agreed.set(|a| a.head = 100);
    let up = agreed.upstream(|_| "\"0x1\"".to_owned());
    let c = cache(&up);
    let _ = statuses(&c, &[("web3_clientVersion", "[]")]).await;
    const RECENT: (&str, &str) = ("eth_getBlockByNumber", r#"["0x63",false]"#);
    const OLD: (&str, &str) = ("eth_getBlockByNumber", r#"["0x10",false]"#);
    assert_eq!(
        statuses(&c, &[RECENT, RECENT, OLD, OLD]).await,
        [Miss, Hit, Miss, Hit]
    );
    // A same-height reorganisation of the last blocks: recent answers go.
    agreed.set(|a| {
        a.reorgs = 1;
        a.reorg_floor = 98;
    });
    let _ = statuses(&c, &[("web3_clientVersion", "[]")]).await;
    assert_eq!(statuses(&c, &[RECENT, OLD]).await, [Miss, Hit]);
    // One of unknown depth (no finality on this chain): settled ones too.
    agreed.set(|a| {
        a.reorgs = 2;
        a.reorg_floor = 0;
    });
    let _ = statuses(&c, &[("web3_clientVersion", "[]")]).await;
    assert_eq!(statuses(&c, &[RECENT, OLD]).await, [Miss, Miss]);
    assert_eq!(statuses(&c, &[RECENT, OLD]).await, [Hit, Hit]);
}

#[tokio::test(start_paused = true)]
async fn a_read_after_a_receipt_is_never_answered_from_before_its_block() {
    use CacheStatus::*;
    // A chain at block 10 whose next block holds the client's transaction.
    let mined = Arc::new(AtomicUsize::new(0));
    let m = mined.clone();
    let up = upstream(move |r| {
        let n = m.load(Ordering::SeqCst);
        let text = match r.method() {
            "eth_getTransactionReceipt" if n == 0 => "null".to_owned(),
            "eth_getTransactionReceipt" => {
                r#"{"blockNumber":"0xb","status":"0x1","transactionHash":"0xaa"}"#.to_owned()
            }
            "eth_getBalance" => format!("\"{:#x}\"", 100 - n),
            _ => "\"0xa\"".to_owned(),
        };
        Ok(Response::result(
            r.id().cloned().unwrap_or_default(),
            RawJson::from_bytes(text).expect("json"),
        ))
    });
    let c = cache(&up);
    const RECEIPT: (&str, &str) = (
        "eth_getTransactionReceipt",
        r#"["0x00000000000000000000000000000000000000000000000000000000000000aa"]"#,
    );
    let _ = statuses(&c, &[("eth_blockNumber", "[]")]).await;
    let _ = statuses(&c, &[("eth_sendRawTransaction", r#"["0x02"]"#)]).await;
    // Read before it is mined: cached for the tip TTL.
    assert_eq!(statuses(&c, &[BALANCE, BALANCE]).await, [Miss, Hit]);
    mined.store(1, Ordering::SeqCst);
    let receipt = c
        .clone()
        .oneshot(req(9, RECEIPT.0, RECEIPT.1))
        .await
        .expect("receipt");
    assert!(receipt.result_json().is_some());
    // The client holds a receipt for block 11: the balance from block 10
    // must not come back.
    let after = c
        .clone()
        .oneshot(req(10, BALANCE.0, BALANCE.1))
        .await
        .expect("read");
    assert_eq!(status(&after), Miss);
    assert_eq!(
        after.result_json().map(|r| r.as_bytes().to_vec()),
        Some(b"\"0x63\"".to_vec())
    );
}

#[tokio::test(start_paused = true)]
async fn tip_answers_are_kept_only_from_the_tip_and_say_so() {
    use rpc_core::{ChainHead, MinHead};
    use CacheStatus::*;
    let agreed = Agreed::default();
    // b is at the agreed head 0x104; a is a block ahead (the tip).
    agreed.set(|a| {
        a.head = 0x104;
        a.tip = 0x105;
    });
    let at = Arc::new(AtomicUsize::new(0x104));
    let h = at.clone();
    let inner = agreed.clone();
    let up = upstream(move |r| {
        let mut resp = inner.respond(r, "\"0x1\"".to_owned());
        resp.extensions_mut()
            .insert(ChainHead(h.load(Ordering::SeqCst) as u64));
        Ok(resp)
    });
    let c = cache(&up);
    // From the member one block behind the tip: passed on, not kept.
    assert_eq!(statuses(&c, &[BALANCE, BALANCE]).await, [Miss, Miss]);
    // From the member at the tip: kept, and a hit says which head it is.
    at.store(0x105, Ordering::SeqCst);
    assert_eq!(statuses(&c, &[BALANCE]).await, [Miss]);
    let hit = c
        .clone()
        .oneshot(req(5, BALANCE.0, BALANCE.1))
        .await
        .expect("hit");
    assert_eq!(status(&hit), Hit);
    assert_eq!(hit.extensions().get::<ChainHead>(), Some(&ChainHead(0x105)));
    // A session that has seen more than the tip is not served from memory.
    let mut ahead = req(6, BALANCE.0, BALANCE.1);
    ahead.extensions_mut().insert(MinHead(0x106));
    let r = c.clone().oneshot(ahead).await.expect("answer");
    assert_eq!(status(&r), Bypass);
}

#[tokio::test(start_paused = true)]
async fn a_cache_continued_on_reload_finds_permanent_answers_not_tip_ones() {
    let running = CacheLayer::new(CacheRules::ethereum());
    let old_up = answers("\"0x1\"");
    let old = running.layer(old_up.clone());
    for (id, method) in [(1, "eth_chainId"), (2, "eth_blockNumber")] {
        let r = old
            .clone()
            .oneshot(req(id, method, "[]"))
            .await
            .expect("answer");
        assert_eq!(status(&r), CacheStatus::Miss);
    }
    // The stack built on reload: new upstream, same entries.
    let new_up = answers("\"0x1\"");
    let reloaded = CacheLayer::new(CacheRules::ethereum()).continue_from(&running);
    let new = reloaded.layer(new_up.clone());
    let r = new
        .clone()
        .oneshot(req(3, "eth_chainId", "[]"))
        .await
        .expect("answer");
    assert_eq!(status(&r), CacheStatus::Hit, "kept forever: carried over");
    let r = new
        .clone()
        .oneshot(req(4, "eth_blockNumber", "[]"))
        .await
        .expect("answer");
    assert_eq!(
        status(&r),
        CacheStatus::Miss,
        "a tip answer the new cache never saw the head of"
    );
    assert_eq!((old_up.calls(), new_up.calls()), (2, 1));

    // A layer that does not continue the running one shares nothing.
    let fresh = CacheLayer::new(CacheRules::ethereum()).layer(new_up.clone());
    let r = fresh
        .oneshot(req(5, "eth_chainId", "[]"))
        .await
        .expect("answer");
    assert_eq!(status(&r), CacheStatus::Miss);
}

/// The statuses of a batch's answers, in order.
fn batch_statuses(answers: &rpc_core::BatchAnswers) -> Vec<CacheStatus> {
    answers
        .iter()
        .map(|a| match a {
            Some(Ok(r)) => status(r),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_batch_takes_hits_from_the_store_and_sends_the_rest_upstream_as_one_batch() {
    let up = answers("\"0x1\"");
    let c = cache(&up);
    let balance = |id| req(id, "eth_getBalance", r#"["0x01","0x10"]"#);
    // eth_getBalance at a block number is kept; a method the rules do not
    // know, never (a write would also make tip answers stale: not here).
    let send = |id| req(id, "x_unknown", "[]");
    let batch = || {
        rpc_core::Batch::new(vec![
            balance(1),
            send(2),
            req(3, "eth_getBalance", r#"["0x02","0x10"]"#),
        ])
    };
    let first = rpc_core::batch::call_batch(c.clone(), batch()).await;
    assert_eq!(
        batch_statuses(&first),
        [CacheStatus::Miss, CacheStatus::Bypass, CacheStatus::Miss]
    );
    assert_eq!((up.batches(), up.calls()), (1, 3));
    // Kept: the balances are hits now; only the broadcast goes upstream.
    let second = rpc_core::batch::call_batch(c.clone(), batch()).await;
    assert_eq!(
        batch_statuses(&second),
        [CacheStatus::Hit, CacheStatus::Bypass, CacheStatus::Hit]
    );
    assert_eq!((up.batches(), up.calls()), (2, 4));
    // Ids are each call's own.
    for (answers, ids) in [(&first, [1u64, 2, 3]), (&second, [1, 2, 3])] {
        for (a, id) in answers.iter().zip(ids) {
            let r = a.as_ref().and_then(|r| r.as_ref().ok()).expect("answer");
            assert_eq!(r.id(), &Id::from(id));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_waits_for_an_identical_call_already_in_flight() {
    let up = MockBackend::ok("up", "\"0x5\"").delay(Duration::from_millis(100));
    let c = cache(&up);
    let call = || req(1, "eth_getBalance", r#"["0x01","0x10"]"#);
    // A single call is on its way upstream...
    let single = tokio::spawn(c.clone().oneshot(call()));
    tokio::time::sleep(Duration::from_millis(10)).await;
    // ...a batch asking the same (twice) shares its answer.
    let batch = rpc_core::Batch::new(vec![call(), call().with_id(Id::from(9u64))]);
    let answers = rpc_core::batch::call_batch(c.clone(), batch).await;
    assert_eq!(
        batch_statuses(&answers),
        [CacheStatus::Coalesced, CacheStatus::Coalesced]
    );
    let r = answers[1]
        .as_ref()
        .and_then(|r| r.as_ref().ok())
        .expect("answer");
    assert_eq!(r.id(), &Id::from(9u64));
    assert_eq!(
        status(&single.await.expect("task").expect("answer")),
        CacheStatus::Miss
    );
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_same_call_twice_in_a_batch_goes_upstream_once() {
    let up = answers("\"0x1\"");
    let c = cache(&up);
    let call = |id| req(id, "eth_getBalance", r#"["0x01","0x10"]"#);
    let answers =
        rpc_core::batch::call_batch(c.clone(), rpc_core::Batch::new(vec![call(1), call(2)])).await;
    assert_eq!(
        batch_statuses(&answers),
        [CacheStatus::Miss, CacheStatus::Coalesced]
    );
    assert_eq!(up.calls(), 1);
}
