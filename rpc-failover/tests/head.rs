//! Head tracking under paused time: lagging and frozen members out of
//! rotation, probes capped, live answers learned, explicit blocks and
//! session heads honoured.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rpc_core::{ChainHead, Id, MinHead, RawJson, Request, Response, RpcError, ServedBy};
use rpc_failover::{Failover, FailoverLayer, HeadPolicy, Member, Spread};
use tower::{Service, ServiceExt};

/// A node with a settable head, chain (fork) and finality:
/// `eth_blockNumber` answers its head, `eth_getBlockByNumber` a block of its
/// chain (hash and parent derived from the fork and number), anything else
/// answers the node's name.
#[derive(Clone)]
struct Node {
    name: Arc<str>,
    head: Arc<AtomicU64>,
    /// Which chain it is on: blocks above `fork_from` get hashes of this fork.
    fork: Arc<AtomicU64>,
    fork_from: Arc<AtomicU64>,
    /// Finalized block + 1 (0: the node does not report finality).
    finalized: Arc<AtomicU64>,
    block_number_calls: Arc<AtomicU32>,
    other_calls: Arc<AtomicU32>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

fn hash_of(fork: u64, number: u64) -> String {
    format!(
        "0x{:016x}{}",
        fork * 1_000_000_007 + number + 1,
        "00".repeat(24)
    )
}

impl Node {
    fn new(name: &str, head: u64) -> Self {
        Node {
            name: name.into(),
            head: Arc::new(AtomicU64::new(head)),
            fork: Arc::default(),
            fork_from: Arc::default(),
            finalized: Arc::default(),
            block_number_calls: Arc::default(),
            other_calls: Arc::default(),
            down: Arc::default(),
        }
    }
    fn set(&self, head: u64) {
        self.head.store(head, Ordering::SeqCst);
    }
    /// Blocks above `from` are of chain `fork` from now on.
    fn fork(&self, fork: u64, from: u64) {
        self.fork_from.store(from, Ordering::SeqCst);
        self.fork.store(fork, Ordering::SeqCst);
    }
    fn finalize(&self, n: u64) {
        self.finalized.store(n + 1, Ordering::SeqCst);
    }
    /// Head requests (probes and clients' `eth_blockNumber`).
    fn probes(&self) -> u32 {
        self.block_number_calls.load(Ordering::SeqCst)
    }
    fn member(&self) -> Member<Node> {
        Member::new(self.name.clone(), self.clone())
    }
    fn block(&self, number: u64) -> String {
        let fork = if number > self.fork_from.load(Ordering::SeqCst) {
            self.fork.load(Ordering::SeqCst)
        } else {
            0
        };
        let parent_fork = if number > self.fork_from.load(Ordering::SeqCst) + 1 {
            fork
        } else {
            0
        };
        format!(
            r#"{{"number":"{number:#x}","hash":"{}","parentHash":"{}","transactions":[]}}"#,
            hash_of(fork, number),
            hash_of(parent_fork, number.saturating_sub(1))
        )
    }
}

impl Service<Request> for Node {
    type Response = Response;
    type Error = RpcError;
    type Future = Pin<Box<dyn Future<Output = Result<Response, RpcError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let id = req.id().cloned().unwrap_or_default();
        if self.down.load(Ordering::SeqCst) {
            let backend = self.name.clone();
            return Box::pin(async move {
                Err(RpcError::Connect {
                    backend,
                    source: "refused".into(),
                })
            });
        }
        let params = req
            .params()
            .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned())
            .unwrap_or_default();
        let head = self.head.load(Ordering::SeqCst);
        let text = match req.method() {
            "eth_blockNumber" => {
                self.block_number_calls.fetch_add(1, Ordering::SeqCst);
                format!("\"{head:#x}\"")
            }
            "eth_getBlockByNumber" if params.contains("latest") => {
                self.block_number_calls.fetch_add(1, Ordering::SeqCst);
                self.block(head)
            }
            "eth_getBlockByNumber" if params.contains("finalized") || params.contains("safe") => {
                match self.finalized.load(Ordering::SeqCst) {
                    0 => "null".to_owned(),
                    f => self.block(f - 1),
                }
            }
            "eth_getBlockByNumber" => {
                self.other_calls.fetch_add(1, Ordering::SeqCst);
                let n = params
                    .split('"')
                    .nth(1)
                    .and_then(|t| u64::from_str_radix(t.trim_start_matches("0x"), 16).ok())
                    .unwrap_or(0);
                if n <= head {
                    self.block(n)
                } else {
                    "null".to_owned()
                }
            }
            _ => {
                self.other_calls.fetch_add(1, Ordering::SeqCst);
                format!("\"{}\"", self.name)
            }
        };
        Box::pin(async move {
            Ok(Response::result(
                id,
                RawJson::from_bytes(text).expect("json"),
            ))
        })
    }
}

/// A batch is the node's calls answered together (one batch counted).
impl Service<rpc_core::Batch> for Node {
    type Response = rpc_core::BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = rpc_core::batch::BoxedBatchFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: rpc_core::Batch) -> Self::Future {
        rpc_core::batch::BoxedBatchFuture::new(rpc_core::batch::per_call(self.clone(), batch))
    }
}

fn group(nodes: &[&Node], policy: HeadPolicy) -> Failover<Node> {
    FailoverLayer::new()
        .head_tracking(policy)
        .build(nodes.iter().map(|n| n.member()).collect())
        .expect("group")
}

/// A round-robin group (every member gets calls unless kept out) with its
/// prober started.
fn spread_group(nodes: &[&Node], policy: HeadPolicy) -> Failover<Node> {
    let g = FailoverLayer::new()
        .spread(Spread::RoundRobin)
        .head_tracking(policy)
        .build(nodes.iter().map(|n| n.member()).collect())
        .expect("group");
    g.start_head_probes();
    g
}

fn call(method: &str, params: &'static str) -> Request {
    Request::new(method)
        .with_id(Id::from(1u64))
        .with_params(RawJson::from_static(params).expect("json"))
}

/// Asks the group for the block number: the raw result.
async fn block_number(g: &Failover<Node>) -> String {
    let resp = g
        .clone()
        .oneshot(call("eth_blockNumber", "[]"))
        .await
        .expect("answer");
    String::from_utf8_lossy(resp.result_json().expect("a result").as_bytes()).into_owned()
}

async fn served_by(g: &Failover<Node>, req: Request) -> String {
    let resp = g.clone().oneshot(req).await.expect("answer");
    resp.extensions()
        .get::<ServedBy>()
        .map(|s| s.0.to_string())
        .unwrap_or_default()
}

fn status(g: &Failover<Node>, name: &str) -> (Option<u64>, bool) {
    let s = g.members().find(|m| &*m.name == name).expect("member");
    (s.head, s.lagging)
}

/// Lets the prober run for `d` of paused time.
async fn run_for(d: Duration) {
    let step = Duration::from_millis(50);
    let mut left = d;
    while left > Duration::ZERO {
        let s = step.min(left);
        tokio::time::sleep(s).await;
        left -= s;
    }
}

#[tokio::test(start_paused = true)]
async fn a_member_far_behind_leaves_rotation_until_it_catches_up() {
    let (a, b) = (Node::new("a", 100), Node::new("b", 110));
    let g = group(&[&a, &b], HeadPolicy::ethereum().max_lag(3));
    g.start_head_probes();
    run_for(Duration::from_millis(500)).await;
    assert_eq!(status(&g, "a"), (Some(100), true), "10 behind, more than 3");
    assert_eq!(status(&g, "b"), (Some(110), false));
    for _ in 0..5 {
        assert_eq!(served_by(&g, call("eth_getBalance", "[]")).await, "b");
    }
    // It catches up: the next probe sees it, and it is first again.
    a.set(110);
    run_for(Duration::from_secs(3)).await;
    assert_eq!(status(&g, "a"), (Some(110), false));
    assert_eq!(served_by(&g, call("eth_getBalance", "[]")).await, "a");
}

#[tokio::test(start_paused = true)]
async fn a_frozen_member_a_little_behind_leaves_after_max_stall() {
    let (a, b) = (Node::new("a", 100), Node::new("b", 100));
    let g = group(
        &[&a, &b],
        HeadPolicy::ethereum()
            .max_lag(3)
            .max_stall(Duration::from_secs(30)),
    );
    g.start_head_probes();
    run_for(Duration::from_secs(1)).await;
    b.set(101);
    run_for(Duration::from_secs(3)).await;
    assert_eq!(
        status(&g, "a"),
        (Some(100), false),
        "one behind: still fine"
    );
    assert_eq!(served_by(&g, call("eth_getBalance", "[]")).await, "a");
    // a never moves again while b does.
    run_for(Duration::from_secs(30)).await;
    b.set(102);
    run_for(Duration::from_secs(3)).await;
    assert_eq!(
        status(&g, "a"),
        (Some(100), true),
        "stalled behind for over 30 s"
    );
    assert_eq!(served_by(&g, call("eth_getBalance", "[]")).await, "b");
}

#[tokio::test(start_paused = true)]
async fn a_member_that_keeps_moving_one_block_behind_stays() {
    let (a, b) = (Node::new("a", 100), Node::new("b", 101));
    let g = group(
        &[&a, &b],
        HeadPolicy::ethereum().max_stall(Duration::from_secs(10)),
    );
    g.start_head_probes();
    for h in 101..140 {
        // b is always one block ahead, but a moves every 2 s.
        a.set(h - 1);
        b.set(h);
        run_for(Duration::from_secs(2)).await;
    }
    assert!(!status(&g, "a").1, "moving, within max_lag: in rotation");
    assert_eq!(served_by(&g, call("eth_getBalance", "[]")).await, "a");
}

#[tokio::test(start_paused = true)]
async fn live_answers_teach_heads_and_probes_skip_members_traffic_covers() {
    let (a, b) = (Node::new("a", 100), Node::new("b", 100));
    let g = FailoverLayer::new()
        .spread(Spread::RoundRobin)
        .head_tracking(HeadPolicy::ethereum().probe_interval(Duration::from_secs(2)))
        .build(vec![a.member(), b.member()])
        .expect("group");
    // Clients ask for the block number ten times a second: both members are
    // covered by live answers, so the prober has nothing to ask.
    for _ in 0..50 {
        g.clone()
            .oneshot(call("eth_blockNumber", "[]"))
            .await
            .expect("answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // 25 client calls each, plus at most the first pass of the prober (which
    // starts with the first call, before either member was seen).
    assert!(
        a.probes() <= 26 && b.probes() <= 26,
        "probes beyond live traffic: a {} b {}",
        a.probes(),
        b.probes()
    );
    // b falls behind: the next live answer from it shows it.
    b.set(90);
    for _ in 0..2 {
        g.clone()
            .oneshot(call("eth_blockNumber", "[]"))
            .await
            .expect("answer");
    }
    assert_eq!(
        status(&g, "b"),
        (Some(90), true),
        "a head is the current one: 10 behind, out of rotation"
    );
    a.set(110);
    for _ in 0..2 {
        g.clone()
            .oneshot(call("eth_blockNumber", "[]"))
            .await
            .expect("answer");
    }
    assert_eq!(status(&g, "a"), (Some(110), false));
    assert!(status(&g, "b").1, "10 behind the best, learned live");
}

#[tokio::test(start_paused = true)]
async fn probes_are_capped_per_member() {
    let (a, b) = (Node::new("a", 100), Node::new("b", 100));
    let g = group(
        &[&a, &b],
        HeadPolicy::ethereum()
            .probe_interval(Duration::from_millis(100))
            .max_probes_per_second(2.0),
    );
    g.start_head_probes();
    run_for(Duration::from_secs(10)).await;
    for n in [&a, &b] {
        let p = n.probes();
        assert!(
            (15..=21).contains(&p),
            "{} probed {p} times in 10 s at 2/s",
            n.name
        );
    }
    // Without probes, nothing is asked.
    let c = Node::new("c", 1);
    let quiet = group(&[&c], HeadPolicy::ethereum().max_probes_per_second(0.0));
    quiet.start_head_probes();
    run_for(Duration::from_secs(10)).await;
    assert_eq!(c.probes(), 0);
}

#[tokio::test(start_paused = true)]
async fn explicit_blocks_go_to_members_that_have_them() {
    let (a, b) = (Node::new("a", 100), Node::new("b", 102));
    let g = group(&[&a, &b], HeadPolicy::ethereum().max_lag(3));
    g.start_head_probes();
    run_for(Duration::from_millis(500)).await;
    assert_eq!(
        served_by(&g, call("eth_getBlockByNumber", r#"["0x66",false]"#)).await,
        "b"
    );
    assert_eq!(
        served_by(
            &g,
            call("eth_getBalance", r#"["0x01",{"blockNumber":"0x65"}]"#)
        )
        .await,
        "b"
    );
    assert_eq!(
        served_by(&g, call("eth_getBlockByNumber", r#"["0x64",false]"#)).await,
        "a"
    );
    assert_eq!(
        served_by(&g, call("eth_getBlockByNumber", r#"["latest",false]"#)).await,
        "a"
    );
    // A block nobody has yet still gets an answer (the node says what it says).
    assert_eq!(
        served_by(&g, call("eth_getBlockByNumber", r#"["0x1000",false]"#)).await,
        "a"
    );
}

#[tokio::test(start_paused = true)]
async fn answers_carry_the_head_and_a_session_head_is_honoured() {
    let (a, b) = (Node::new("a", 100), Node::new("b", 102));
    let g = group(&[&a, &b], HeadPolicy::ethereum().max_lag(3));
    g.start_head_probes();
    run_for(Duration::from_millis(500)).await;
    let resp = g
        .clone()
        .oneshot(call("eth_chainId", "[]"))
        .await
        .expect("answer");
    assert_eq!(resp.extensions().get::<ChainHead>(), Some(&ChainHead(100)));

    // The session saw 102: a (at 100) must not answer it.
    let mut req = call("eth_getBalance", "[]");
    req.extensions_mut().insert(MinHead(102));
    assert_eq!(served_by(&g, req).await, "b");

    // Nobody has 103 yet: the call waits, and b gets there within the wait.
    let waiting = tokio::spawn({
        let g = g.clone();
        async move {
            let mut req = call("eth_getBalance", "[]");
            req.extensions_mut().insert(MinHead(103));
            g.oneshot(req).await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "waits for a member at 103");
    b.set(103);
    let resp = waiting
        .await
        .expect("join")
        .expect("answered once b had 103");
    assert_eq!(
        resp.extensions().get::<ServedBy>().map(|s| &*s.0),
        Some("b")
    );

    // Nobody reaches 200 within the wait: a clear error, not an old chain.
    let started = tokio::time::Instant::now();
    let mut req = call("eth_getBalance", "[]");
    req.extensions_mut().insert(MinHead(200));
    let err = g.clone().oneshot(req).await.expect_err("no member at 200");
    assert!(
        matches!(err, RpcError::NoBackendAvailable { .. }),
        "{err:?}"
    );
    assert_eq!(err.to_error_object().code(), -32011);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2100),
        "waited {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lagging_member_still_answers_when_no_other_can() {
    let (a, b) = (Node::new("a", 100), Node::new("b", 90));
    let g = group(&[&a, &b], HeadPolicy::ethereum().max_lag(3));
    g.start_head_probes();
    run_for(Duration::from_millis(500)).await;
    assert!(status(&g, "b").1);
    assert_eq!(served_by(&g, call("eth_getBalance", "[]")).await, "a");
    // a goes down: better an answer from b than none.
    a.down.store(true, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(served_by(&g, call("eth_getBalance", "[]")).await, "b");
    }
}

#[tokio::test(start_paused = true)]
async fn the_prober_stops_with_its_group() {
    let (a, b) = (Node::new("a", 100), Node::new("b", 90));
    let g = group(&[&a, &b], HeadPolicy::ethereum().max_lag(3));
    g.start_head_probes();
    run_for(Duration::from_millis(500)).await;
    assert!(a.probes() >= 1);
    drop(g);
    let before = a.probes();
    run_for(Duration::from_secs(10)).await;
    assert!(
        a.probes() <= before + 1,
        "probes after the group was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_run_on_a_real_clock_too() {
    let (a, b) = (Node::new("a", 100), Node::new("b", 110));
    let g = group(
        &[&a, &b],
        HeadPolicy::ethereum()
            .probe_interval(Duration::from_millis(50))
            .max_probes_per_second(100.0),
    );
    g.start_head_probes();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        a.probes() >= 3 && b.probes() >= 3,
        "a {} b {}",
        a.probes(),
        b.probes()
    );
}

// ---- Chain truth: no single witness, current heads, forks, finality ----

fn answer_heads(resp: &Response) -> (Option<u64>, Option<rpc_core::AgreedChain>) {
    (
        resp.extensions().get::<ChainHead>().map(|h| h.0),
        resp.extensions().get::<rpc_core::AgreedChain>().copied(),
    )
}

fn suspect(g: &Failover<Node>, name: &str) -> Option<&'static str> {
    g.members()
        .find(|m| &*m.name == name)
        .expect("member")
        .suspect
        .map(|s| s.as_str())
}

#[tokio::test(start_paused = true)]
async fn a_liar_cannot_take_the_traffic_or_poison_the_head() {
    let (honest, liar) = (Node::new("honest", 0x100), Node::new("liar", 0x100));
    let g = spread_group(&[&honest, &liar], HeadPolicy::ethereum().max_lag(3));
    run_for(Duration::from_secs(1)).await;
    // The liar answers a client's eth_blockNumber with a huge head: that
    // very answer is not passed on (the honest member answers instead).
    liar.set(0xffff_ffff);
    for _ in 0..4 {
        assert_eq!(
            block_number(&g).await,
            "\"0x100\"",
            "the lie reached a client"
        );
    }
    assert_eq!(suspect(&g, "liar"), Some("ahead"));
    assert_eq!(
        status(&g, "honest"),
        (Some(0x100), false),
        "honest stays in"
    );
    let mut by_liar = 0;
    for _ in 0..20 {
        let resp = g
            .clone()
            .oneshot(call("eth_getBalance", "[]"))
            .await
            .expect("answer");
        let (head, agreed) = answer_heads(&resp);
        assert!(head.is_some_and(|h| h <= 0x100), "head {head:?}");
        assert_eq!(agreed.map(|a| a.head), Some(0x100));
        if resp.extensions().get::<ServedBy>().map(|s| &*s.0) == Some("liar") {
            by_liar += 1;
        }
    }
    assert_eq!(by_liar, 0, "the liar got calls");
    // eth_blockNumber answers never show the lie.
    for _ in 0..10 {
        assert_eq!(block_number(&g).await, "\"0x100\"");
    }
    // Back to the truth: believed again, and its head is its current one.
    liar.set(0x101);
    honest.set(0x101);
    run_for(Duration::from_secs(3)).await;
    assert_eq!(suspect(&g, "liar"), None);
    assert_eq!(status(&g, "liar"), (Some(0x101), false));
    assert_eq!(status(&g, "honest"), (Some(0x101), false));
}

#[tokio::test(start_paused = true)]
async fn a_lie_seen_before_anyone_else_is_not_believed_once_the_others_answer() {
    let (liar, honest) = (Node::new("liar", 0xffff_ffff), Node::new("honest", 0x100));
    let g = group(&[&liar, &honest], HeadPolicy::ethereum());
    // Only the liar has spoken: nothing to compare with yet.
    let _ = g.clone().oneshot(call("eth_blockNumber", "[]")).await;
    g.start_head_probes();
    run_for(Duration::from_secs(1)).await;
    assert_eq!(suspect(&g, "liar"), Some("ahead"));
    assert_eq!(status(&g, "honest"), (Some(0x100), false));
    assert_eq!(served_by(&g, call("eth_getBalance", "[]")).await, "honest");
}

#[tokio::test(start_paused = true)]
async fn a_member_restored_backwards_leaves_rotation_at_once() {
    let (a, b) = (Node::new("a", 0x105), Node::new("b", 0x105));
    let g = spread_group(&[&a, &b], HeadPolicy::ethereum().max_lag(3));
    run_for(Duration::from_secs(1)).await;
    // b is restored from an old snapshot; the next answer shows it.
    b.set(0x10);
    block_number(&g).await;
    block_number(&g).await;
    assert_eq!(status(&g, "b"), (Some(0x10), true));
    for _ in 0..10 {
        assert_eq!(served_by(&g, call("eth_getBalance", "[]")).await, "a");
    }
    assert_eq!(
        served_by(&g, call("eth_getBlockByNumber", r#"["0x104",false]"#)).await,
        "a"
    );
    // Without a client call, the probes show it too (a member that goes back
    // while idle).
    a.set(0x106);
    b.set(0x106);
    run_for(Duration::from_secs(3)).await;
    assert_eq!(status(&g, "b"), (Some(0x106), false));
    b.set(0x20);
    run_for(Duration::from_secs(3)).await;
    assert_eq!(status(&g, "b"), (Some(0x20), true));
}

#[tokio::test(start_paused = true)]
async fn a_session_never_goes_backwards_through_a_rollback() {
    let (a, b) = (Node::new("a", 0x105), Node::new("b", 0x105));
    let g = spread_group(&[&a, &b], HeadPolicy::ethereum().max_lag(3));
    run_for(Duration::from_secs(1)).await;
    let stack = tower::ServiceBuilder::new()
        .layer(rpc_failover::ConsistencyLayer::new())
        .service(g.clone());
    let mut last = 0u64;
    for i in 0..200u32 {
        if i == 20 {
            // b rolls back two blocks (within max_lag: it stays in rotation).
            b.set(0x103);
        }
        if i == 120 {
            b.set(0x106);
            a.set(0x106);
        }
        let mut req = call("eth_blockNumber", "[]");
        req.extensions_mut().insert(rpc_core::ConnectionId(7));
        let resp = stack.clone().oneshot(req).await.expect("answer");
        let text = String::from_utf8_lossy(resp.result_json().expect("result").as_bytes())
            .trim_matches('"')
            .to_owned();
        let n = u64::from_str_radix(text.trim_start_matches("0x"), 16).expect("hex");
        assert!(n >= last, "call {i}: {n:#x} after {last:#x}");
        last = n;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last, 0x106);
}

#[tokio::test(start_paused = true)]
async fn eth_block_number_never_goes_below_the_agreed_head_without_sessions() {
    let (a, b) = (Node::new("a", 0x105), Node::new("b", 0x105));
    let g = spread_group(&[&a, &b], HeadPolicy::ethereum().max_lag(3));
    run_for(Duration::from_secs(1)).await;
    b.set(0x103);
    for _ in 0..50 {
        assert_eq!(block_number(&g).await, "\"0x105\"");
    }
}

#[tokio::test(start_paused = true)]
async fn a_member_on_a_minority_fork_leaves_rotation_until_it_agrees() {
    let (a, b, c) = (
        Node::new("a", 200),
        Node::new("b", 200),
        Node::new("c", 200),
    );
    let g = spread_group(&[&a, &b, &c], HeadPolicy::ethereum());
    run_for(Duration::from_secs(1)).await;
    assert_eq!(suspect(&g, "a"), None);
    // c is on another chain from block 199 on, at the same height.
    c.fork(7, 198);
    run_for(Duration::from_secs(3)).await;
    assert_eq!(suspect(&g, "c"), Some("fork"));
    assert_eq!(suspect(&g, "a"), None);
    for _ in 0..9 {
        assert_ne!(served_by(&g, call("eth_getBalance", "[]")).await, "c");
    }
    // It comes back to the majority chain.
    c.fork(0, 0);
    run_for(Duration::from_secs(3)).await;
    assert_eq!(suspect(&g, "c"), None);
    let mut seen_c = false;
    for _ in 0..9 {
        seen_c |= served_by(&g, call("eth_getBalance", "[]")).await == "c";
    }
    assert!(seen_c, "c back in rotation");
}

#[tokio::test(start_paused = true)]
async fn a_fork_is_seen_while_clients_only_ask_block_numbers() {
    let (a, b, c) = (
        Node::new("a", 200),
        Node::new("b", 200),
        Node::new("c", 200),
    );
    let g = spread_group(&[&a, &b, &c], HeadPolicy::ethereum());
    run_for(Duration::from_secs(1)).await;
    c.fork(4, 198);
    // Busy eth_blockNumber traffic keeps every head fresh without probes;
    // blocks are still asked every five probe intervals.
    for _ in 0..75 {
        let _ = g.clone().oneshot(call("eth_blockNumber", "[]")).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(suspect(&g, "c"), Some("fork"));
}

#[tokio::test(start_paused = true)]
async fn an_even_split_has_no_minority() {
    let (a, b) = (Node::new("a", 50), Node::new("b", 50));
    b.fork(3, 0);
    let g = group(&[&a, &b], HeadPolicy::ethereum());
    g.start_head_probes();
    run_for(Duration::from_secs(3)).await;
    assert_eq!(suspect(&g, "a"), None);
    assert_eq!(suspect(&g, "b"), None);
}

#[tokio::test(start_paused = true)]
async fn a_reorg_is_announced_to_the_layers_above() {
    let (a, b) = (Node::new("a", 50), Node::new("b", 50));
    let g = group(&[&a, &b], HeadPolicy::ethereum());
    g.start_head_probes();
    run_for(Duration::from_secs(3)).await;
    let before = answer_heads(
        &g.clone()
            .oneshot(call("eth_chainId", "[]"))
            .await
            .expect("answer"),
    )
    .1
    .expect("agreed");
    // Both replace blocks 49 and 50 (anvil_reorg-like: same height).
    a.fork(5, 48);
    b.fork(5, 48);
    run_for(Duration::from_secs(3)).await;
    let after = answer_heads(
        &g.clone()
            .oneshot(call("eth_chainId", "[]"))
            .await
            .expect("answer"),
    )
    .1
    .expect("agreed");
    assert!(after.reorgs > before.reorgs, "{before:?} -> {after:?}");
    assert!(after.reorg_floor <= 50, "{after:?}");
    assert_eq!(suspect(&g, "a"), None);
    assert_eq!(suspect(&g, "b"), None);
}

#[tokio::test(start_paused = true)]
async fn a_lead_the_others_never_confirm_is_not_believed() {
    let (a, b, liar) = (
        Node::new("a", 100),
        Node::new("b", 100),
        Node::new("liar", 150),
    );
    let g = FailoverLayer::new()
        .head_tracking(
            HeadPolicy::ethereum()
                .max_lag(3)
                .confirm_within(Duration::from_secs(10)),
        )
        .build(vec![liar.member(), a.member(), b.member()])
        .expect("group");
    g.start_head_probes();
    run_for(Duration::from_secs(1)).await;
    // Fifty ahead is plausible at first (within max_ahead): a and b look
    // behind the liar.
    assert_eq!(suspect(&g, "liar"), None);
    // The chain moves a block a second; the liar stays fifty ahead of it, so
    // none of its claims is reached within 10 s.
    for h in 101..=115 {
        a.set(h);
        b.set(h);
        liar.set(h + 50);
        run_for(Duration::from_secs(1)).await;
    }
    run_for(Duration::from_secs(3)).await;
    assert_eq!(suspect(&g, "liar"), Some("unconfirmed"));
    assert_eq!(status(&g, "a"), (Some(115), false));
    assert_eq!(served_by(&g, call("eth_getBalance", "[]")).await, "a");
}

#[tokio::test(start_paused = true)]
async fn a_node_always_a_block_ahead_stays_believed() {
    // A fast chain (a block a second): `fast` always sees each block first.
    let (fast, slow) = (Node::new("fast", 100), Node::new("slow", 99));
    let g = group(
        &[&fast, &slow],
        HeadPolicy::ethereum().confirm_within(Duration::from_secs(10)),
    );
    g.start_head_probes();
    for h in 101..=180 {
        fast.set(h);
        slow.set(h - 1);
        run_for(Duration::from_secs(1)).await;
    }
    assert_eq!(suspect(&g, "fast"), None, "each of its claims was reached");
    assert_eq!(served_by(&g, call("eth_getBalance", "[]")).await, "fast");
}

#[tokio::test(start_paused = true)]
async fn finalized_calls_go_to_members_past_the_agreed_finalized_block() {
    let (slow, a, b) = (
        Node::new("slow", 100),
        Node::new("a", 100),
        Node::new("b", 100),
    );
    slow.finalize(60);
    a.finalize(90);
    b.finalize(90);
    let g = FailoverLayer::new()
        .head_tracking(HeadPolicy::ethereum().finality_interval(Duration::from_secs(1)))
        .build(vec![slow.member(), a.member(), b.member()])
        .expect("group");
    g.start_head_probes();
    run_for(Duration::from_secs(3)).await;
    // slow is first in priority and at the head, but its finality lags.
    assert_eq!(
        served_by(&g, call("eth_getBalance", r#"["0x01","latest"]"#)).await,
        "slow"
    );
    assert_eq!(
        served_by(&g, call("eth_getBalance", r#"["0x01","finalized"]"#)).await,
        "a"
    );
    assert_eq!(
        served_by(&g, call("eth_getBlockByNumber", r#"["safe",false]"#)).await,
        "a"
    );
    let resp = g
        .clone()
        .oneshot(call("eth_chainId", "[]"))
        .await
        .expect("answer");
    assert_eq!(answer_heads(&resp).1.and_then(|a| a.finalized), Some(90));
}

#[tokio::test(start_paused = true)]
async fn a_single_member_group_follows_its_member_down() {
    let a = Node::new("a", 100);
    let g = group(&[&a], HeadPolicy::ethereum());
    g.start_head_probes();
    run_for(Duration::from_secs(1)).await;
    a.set(90);
    run_for(Duration::from_secs(3)).await;
    assert_eq!(status(&g, "a"), (Some(90), false));
    let resp = g
        .clone()
        .oneshot(call("eth_chainId", "[]"))
        .await
        .expect("answer");
    let (head, agreed) = answer_heads(&resp);
    assert_eq!(head, Some(90));
    let agreed = agreed.expect("agreed");
    assert_eq!(agreed.head, 90);
    assert!(agreed.reorgs >= 1, "the chain went back: {agreed:?}");
}

/// What probing costs a paid provider, per member and minute, with the
/// defaults (BENCHMARKS.md quotes this test's output).
#[tokio::test(start_paused = true)]
async fn probe_calls_per_member_per_minute_are_bounded() {
    #[derive(Clone, Default)]
    struct Count(Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>);
    let idle = Node::new("idle", 100);
    let busy = Node::new("busy", 100);
    idle.finalize(36);
    busy.finalize(36);
    let calls = Count::default();
    let counted = |node: &Node| {
        let (calls, node) = (calls.clone(), node.clone());
        Member::new(
            node.name.clone(),
            tower::service_fn(move |req: Request| {
                let key = format!(
                    "{} {} {}",
                    node.name,
                    req.method(),
                    req.params()
                        .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned())
                        .unwrap_or_default()
                );
                *calls.0.lock().expect("lock").entry(key).or_default() += 1;
                node.clone().oneshot(req)
            }),
        )
    };
    // Defaults: probe_interval 2 s, 1 probe/s cap, finality every 30 s.
    let g = FailoverLayer::new()
        .spread(Spread::RoundRobin)
        .head_tracking(HeadPolicy::ethereum())
        .build(vec![counted(&idle), counted(&busy)])
        .expect("group");
    g.start_head_probes();
    // Settle the first pass, then count one minute. Clients call
    // eth_blockNumber 5 times a second: with round robin, each member's
    // head is learned from live answers, so no head probe is needed.
    run_for(Duration::from_secs(2)).await;
    calls.0.lock().expect("lock").clear();
    for _ in 0..300 {
        let _ = g.clone().oneshot(call("eth_blockNumber", "[]")).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let live = calls.0.lock().expect("lock").clone();
    calls.0.lock().expect("lock").clear();
    // The next minute without client traffic: probes alone.
    run_for(Duration::from_secs(60)).await;
    let quiet = calls.0.lock().expect("lock").clone();
    let probes = |seen: &std::collections::HashMap<String, u32>, who: &str| -> (u32, u32) {
        let mut head = 0;
        let mut finality = 0;
        for (k, n) in seen {
            if !k.starts_with(who) {
                continue;
            }
            if k.contains("finalized") || k.contains("safe") {
                finality += n;
            } else if k.contains("latest") {
                head += n;
            }
        }
        (head, finality)
    };
    for who in ["idle", "busy"] {
        let (head, finality) = probes(&live, who);
        println!("with live eth_blockNumber traffic: {who}: {head} head probes, {finality} finality probes per minute");
        // Numbers come live; a block (its hash, for fork checks) is still
        // asked every five probe intervals: 6 a minute.
        assert!(
            head <= 7,
            "{who}: {head} head probes while traffic covers it"
        );
        assert!((2..=6).contains(&finality), "{who}: {finality}");
        let (head, finality) = probes(&quiet, who);
        println!(
            "without traffic: {who}: {head} head probes, {finality} finality probes per minute"
        );
        assert!(
            (28..=32).contains(&head),
            "{who}: {head} head probes in a quiet minute"
        );
        assert!((2..=6).contains(&finality), "{who}: {finality}");
    }
}

// ---- A reload: a new group takes over what the old one learned ----

#[tokio::test(start_paused = true)]
async fn a_group_built_on_reload_keeps_suspicions_health_and_the_agreed_head() {
    let (honest, liar, dead) = (
        Node::new("honest", 0x100),
        Node::new("liar", 0x100),
        Node::new("dead", 0x100),
    );
    let policy = || HeadPolicy::ethereum().max_lag(3);
    let old = spread_group(&[&honest, &liar, &dead], policy());
    run_for(Duration::from_secs(1)).await;
    liar.set(0xffff_ffff);
    dead.down.store(true, Ordering::SeqCst);
    for _ in 0..12 {
        let _ = block_number(&old).await;
    }
    assert_eq!(suspect(&old, "liar"), Some("ahead"));
    let out = |g: &Failover<Node>, name: &str| {
        !g.members()
            .find(|m| &*m.name == name)
            .expect("member")
            .in_service
    };
    assert!(out(&old, "dead"), "dead is out of service");

    // The new configuration keeps all three (same nodes) and adds one.
    let fresh = Node::new("fresh", 0x100);
    let build = || {
        FailoverLayer::new()
            .spread(Spread::RoundRobin)
            .head_tracking(policy())
            .build(
                [&honest, &liar, &dead, &fresh]
                    .iter()
                    .map(|n| n.member())
                    .collect(),
            )
            .expect("group")
    };
    let (new, inherited) = build().inherit(&old, |_| true);
    assert_eq!(inherited, 3);
    // Before the new group probed anything: the liar is still not believed,
    // the dead member still out, the agreed head where it was.
    assert_eq!(suspect(&new, "liar"), Some("ahead"));
    assert!(out(&new, "dead"));
    assert_eq!(status(&new, "honest"), (Some(0x100), false));
    let view = new.chain_view().expect("tracked");
    assert_eq!(view.get().head, 0x100);
    for _ in 0..10 {
        let by = served_by(&new, call("eth_getBalance", "[]")).await;
        assert!(by == "honest" || by == "fresh", "served by {by}");
    }

    // A member whose node changed (here: not kept) starts afresh.
    let (renewed, inherited) = build().inherit(&old, |name| name != "liar");
    assert_eq!(inherited, 2);
    assert_eq!(suspect(&renewed, "liar"), None);
    assert_eq!(
        status(&renewed, "liar").0,
        None,
        "its head is learned again"
    );
}

// ---- Batches sent whole: the same chain truth ----

/// Who served each answer of a batch sent to the group whole, and each
/// answer's result.
async fn batch_served(g: &Failover<Node>, calls: Vec<Request>) -> Vec<(String, String)> {
    let calls = calls
        .into_iter()
        .enumerate()
        .map(|(i, c)| c.with_id(Id::from(i as u64)))
        .collect();
    let answers = rpc_core::batch::call_batch(g.clone(), rpc_core::Batch::new(calls)).await;
    answers
        .into_iter()
        .map(|a| {
            let r = a.expect("answered").expect("an answer");
            let by = r.extensions().get::<ServedBy>().map(|s| s.0.to_string());
            let text =
                String::from_utf8_lossy(r.result_json().expect("result").as_bytes()).into_owned();
            (by.unwrap_or_default(), text)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_batch_goes_to_a_member_with_the_heads_its_calls_need() {
    let (a, b) = (Node::new("a", 100), Node::new("b", 102));
    let g = group(&[&a, &b], HeadPolicy::ethereum().max_lag(3));
    g.start_head_probes();
    run_for(Duration::from_millis(500)).await;
    // Without needs the batch goes to the first member...
    let plain = batch_served(
        &g,
        vec![call("eth_chainId", "[]"), call("eth_chainId", "[]")],
    )
    .await;
    assert!(plain.iter().all(|(by, _)| by == "a"), "{plain:?}");
    // ...with a block only b has, or a session b alone has reached, to b:
    // every call of it, together.
    let mut session = call("eth_getBalance", "[]");
    session.extensions_mut().insert(MinHead(101));
    let before = b.other_calls.load(Ordering::SeqCst);
    let served = batch_served(
        &g,
        vec![
            call("eth_getBlockByNumber", r#"["0x66",false]"#),
            call("eth_chainId", "[]"),
            session,
        ],
    )
    .await;
    assert!(served.iter().all(|(by, _)| by == "b"), "{served:?}");
    assert_ne!(served[0].1, "null", "b has block 0x66");
    assert_eq!(b.other_calls.load(Ordering::SeqCst) - before, 3);
}

#[tokio::test(start_paused = true)]
async fn a_liars_answers_in_a_batch_are_answered_by_a_believed_member() {
    let (honest, liar) = (Node::new("honest", 0x100), Node::new("liar", 0x100));
    let g = spread_group(&[&honest, &liar], HeadPolicy::ethereum().max_lag(3));
    run_for(Duration::from_secs(1)).await;
    liar.set(0xffff_ffff);
    for _ in 0..4 {
        let served = batch_served(
            &g,
            vec![
                call("eth_blockNumber", "[]"),
                call("eth_getBalance", "[]"),
                call("eth_blockNumber", "[]"),
            ],
        )
        .await;
        for (by, text) in &served {
            assert_eq!(by, "honest", "{served:?}");
            assert_ne!(text, "\"0xffffffff\"", "the lie reached a client");
        }
    }
    assert_eq!(suspect(&g, "liar"), Some("ahead"));
}
