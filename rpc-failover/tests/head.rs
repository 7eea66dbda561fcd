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

/// A node with a settable head: `eth_blockNumber` answers it, anything else
/// answers the node's name.
#[derive(Clone)]
struct Node {
    name: Arc<str>,
    head: Arc<AtomicU64>,
    block_number_calls: Arc<AtomicU32>,
    other_calls: Arc<AtomicU32>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl Node {
    fn new(name: &str, head: u64) -> Self {
        Node {
            name: name.into(),
            head: Arc::new(AtomicU64::new(head)),
            block_number_calls: Arc::default(),
            other_calls: Arc::default(),
            down: Arc::default(),
        }
    }
    fn set(&self, head: u64) {
        self.head.store(head, Ordering::SeqCst);
    }
    fn probes(&self) -> u32 {
        self.block_number_calls.load(Ordering::SeqCst)
    }
    fn member(&self) -> Member<Node> {
        Member::new(self.name.clone(), self.clone())
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
        let text = if req.method() == "eth_blockNumber" {
            self.block_number_calls.fetch_add(1, Ordering::SeqCst);
            format!("\"{:#x}\"", self.head.load(Ordering::SeqCst))
        } else {
            self.other_calls.fetch_add(1, Ordering::SeqCst);
            format!("\"{}\"", self.name)
        };
        Box::pin(async move {
            Ok(Response::result(
                id,
                RawJson::from_bytes(text).expect("json"),
            ))
        })
    }
}

fn group(nodes: &[&Node], policy: HeadPolicy) -> Failover<Node> {
    FailoverLayer::new()
        .head_tracking(policy)
        .build(nodes.iter().map(|n| n.member()).collect())
        .expect("group")
}

fn call(method: &str, params: &'static str) -> Request {
    Request::new(method)
        .with_id(Id::from(1u64))
        .with_params(RawJson::from_static(params).expect("json"))
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
        (Some(100), false),
        "a head never goes down"
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
