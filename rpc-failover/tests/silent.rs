//! Silent and slow members under paused time: stall deadlines learned per
//! member, the budget for extra calls, concurrency limits and their queue,
//! and recovery without client traffic.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{req, result_of, slow, MemberOf, Mock, Step};
use rpc_core::{Deadline, RpcError};
use rpc_failover::{
    AttemptDeadline, ConcurrencyLimit, FailoverLayer, HealthCheck, HedgePolicy, OutReason,
    RetryBudget, RetryLayer,
};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

type Group = rpc_failover::Failover<Mock>;

fn group(layer: FailoverLayer, members: Vec<rpc_failover::Member<Mock>>) -> Group {
    layer.build(members).expect("valid group")
}

fn with_deadline(method: &str, after: Duration) -> rpc_core::Request {
    let mut r = req(method);
    r.extensions_mut().insert(Deadline(Instant::now() + after));
    r
}

/// A switch a mock reads on every call.
fn switch(on: bool) -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(on))
}

/// A mock that does `on` while `flag` is set, else `off`.
fn switched(name: &str, flag: &Arc<AtomicBool>, on: Step, off: Step) -> Mock {
    let flag = flag.clone();
    Mock::new(name, move |_| {
        if flag.load(Ordering::SeqCst) {
            on.clone()
        } else {
            off.clone()
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_fast_member_that_freezes_is_left_at_its_learned_deadline() {
    let frozen = switch(false);
    let a = switched("a", &frozen, Step::Hang, slow(2, Step::Ok("\"a\"")));
    let b = Mock::ok("b", "\"b\"");
    let g = group(FailoverLayer::new(), vec![a.member(), b.member()]);
    for _ in 0..50 {
        g.clone().oneshot(req("eth_getBalance")).await.expect("a");
    }
    assert_eq!(b.calls(), 0);

    frozen.store(true, Ordering::SeqCst);
    // A client with a 10 s timeout: answered by b after a's learned stall
    // deadline (2 ms × 4 is under the 150 ms floor), not after 10 s.
    for expected in [150, 150] {
        let started = Instant::now();
        let r = g
            .clone()
            .oneshot(with_deadline("eth_getBalance", Duration::from_secs(10)))
            .await
            .expect("b answers");
        assert_eq!(result_of(&r), "\"b\"");
        assert_eq!(started.elapsed(), Duration::from_millis(expected));
    }
    let a_status = g.members().next().expect("a");
    assert!(!a_status.in_service, "two stalls: out of rotation");
    assert_eq!(a_status.reason, Some(OutReason::Stall));
    // Now calls go straight to b.
    let started = Instant::now();
    g.clone().oneshot(req("eth_getBalance")).await.expect("b");
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_slow_but_correct_member_is_not_punished() {
    // a always takes 400 ms (heavy eth_getLogs); b is not needed.
    let a = Mock::new("a", |_| slow(400, Step::Ok("[]")));
    let b = Mock::ok("b", "\"b\"");
    let g = group(FailoverLayer::new(), vec![a.member(), b.member()]);
    for _ in 0..100 {
        let r = g.clone().oneshot(req("eth_getLogs")).await.expect("a");
        assert_eq!(result_of(&r), "[]");
    }
    assert_eq!(
        b.calls(),
        0,
        "never cut: its deadline was learned (≈ 1.6-3 s)"
    );
    let a_status = g.members().next().expect("a");
    assert!(a_status.in_service);
    assert_eq!(a_status.consecutive_failures, 0);
}

/// A one-member group (nowhere to move) whose member learned a short stall
/// deadline from 30 quick answers and now never answers.
async fn one_member_that_learned_then_hangs() -> Group {
    let a = Mock::new("a", |n| if n < 30 { Step::Ok("1") } else { Step::Hang });
    let g = group(FailoverLayer::new().failure_threshold(1), vec![a.member()]);
    for _ in 0..30 {
        g.clone().oneshot(req("eth_call")).await.expect("a");
    }
    g
}

#[tokio::test(start_paused = true)]
async fn a_stall_counts_even_when_the_call_cannot_move_and_the_client_leaves() {
    // One member (nowhere to move): the attempt is not left, but the stall
    // is charged at the deadline, before the client gives up.
    let g = one_member_that_learned_then_hangs().await;
    let client = tokio::time::timeout(Duration::from_secs(5), g.clone().oneshot(req("eth_call")));
    assert!(client.await.is_err(), "the client left");
    let status = g.members().next().expect("a");
    assert!(!status.in_service, "charged although the client left");
    assert_eq!(status.reason, Some(OutReason::Stall));
}

#[tokio::test(start_paused = true)]
async fn a_stalled_call_that_cannot_move_ends_at_its_own_deadline() {
    // One member (nowhere to move): at its stall deadline the attempt is
    // charged but not left, and the call then ends at its own deadline, as
    // the member's timeout: not at the stall, not later.
    let g = one_member_that_learned_then_hangs().await;
    let started = Instant::now();
    let call = g
        .clone()
        .oneshot(with_deadline("eth_call", Duration::from_secs(3)));
    let err = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("ended by its own deadline, not left waiting")
        .expect_err("no answer");
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert!(
        matches!(&err, RpcError::Timeout { backend: Some(b), .. } if &**b == "a"),
        "{err:?}"
    );
    let status = g.members().next().expect("a");
    assert_eq!(
        status.reason,
        Some(OutReason::Stall),
        "the stall was charged on the way"
    );
}

#[tokio::test(start_paused = true)]
async fn unsafe_calls_are_never_left_but_the_stall_is_counted() {
    let a = Mock::new("a", |n| {
        if n < 30 {
            Step::Ok("1")
        } else {
            slow(1_000, Step::Ok("\"0xhash\""))
        }
    });
    let b = Mock::ok("b", "\"b\"");
    let g = group(
        FailoverLayer::new().failure_threshold(1),
        vec![a.member(), b.member()],
    );
    for _ in 0..30 {
        g.clone()
            .oneshot(req("eth_sendTransaction"))
            .await
            .expect("a");
    }
    let r = g
        .clone()
        .oneshot(req("eth_sendTransaction"))
        .await
        .expect("a's late answer");
    assert_eq!(result_of(&r), "\"0xhash\"", "not repeated on b");
    assert_eq!(b.calls(), 0);
    assert!(!g.members().next().expect("a").in_service, "but a stalled");
}

#[tokio::test(start_paused = true)]
async fn extra_calls_stay_under_the_budget_in_a_brownout() {
    // Every member fails every other call with a 503 (maybe processed):
    // moving such a call on is extra load.
    let a = Mock::new("a", |n| {
        if n % 2 == 0 {
            Step::Status(503, None)
        } else {
            Step::Ok("1")
        }
    });
    let b = Mock::new("b", |n| {
        if n % 2 == 1 {
            Step::Status(503, None)
        } else {
            Step::Ok("1")
        }
    });
    let budget = RetryBudget::new(0.1);
    let g = group(
        FailoverLayer::new()
            .failure_threshold(u32::MAX)
            .budget(budget.clone()),
        vec![a.member(), b.member()],
    );
    let svc = RetryLayer::new()
        .jitter(0.0)
        .backoff(Duration::from_millis(1), Duration::from_millis(1))
        .budget(budget)
        .layer(g);
    let calls = 10_000u32;
    for _ in 0..calls {
        let _ = svc.clone().oneshot(req("eth_call")).await;
    }
    let upstream = a.calls() + b.calls();
    let extra = upstream - calls;
    assert!(
        f64::from(extra) <= f64::from(calls) * 0.1 + 10.0,
        "{extra} extra upstream calls for {calls}"
    );
}

#[tokio::test(start_paused = true)]
async fn hedges_stay_under_the_budget_when_a_member_is_slow() {
    let a = Mock::new("a", |_| slow(100, Step::Ok("\"a\"")));
    let b = Mock::new("b", |_| slow(100, Step::Ok("\"b\"")));
    let g = group(
        FailoverLayer::new()
            .hedge(HedgePolicy::fixed(Duration::from_millis(10)))
            .budget(RetryBudget::new(0.1)),
        vec![a.member(), b.member()],
    );
    let calls = 10_000u32;
    for _ in 0..calls {
        g.clone().oneshot(req("eth_call")).await.expect("answer");
    }
    let extra = a.calls() + b.calls() - calls;
    assert!(
        f64::from(extra) <= f64::from(calls) * 0.1 + 10.0,
        "{extra} hedges for {calls} calls"
    );
    assert!(extra >= 900, "the allowance is used: {extra}");
}

#[tokio::test(start_paused = true)]
async fn a_concurrency_limit_sends_the_overflow_elsewhere() {
    let a = Mock::new("a", |_| slow(1_000, Step::Ok("\"a\"")));
    let b = Mock::new("b", |_| slow(1_000, Step::Ok("\"b\"")));
    let g = group(
        FailoverLayer::new(),
        vec![
            a.member().max_concurrency(ConcurrencyLimit::fixed(2)),
            b.member(),
        ],
    );
    let calls: Vec<_> = (0..5)
        .map(|_| tokio::spawn(g.clone().oneshot(req("eth_call"))))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!((a.calls(), b.calls()), (2, 3));
    let status = g.members().next().expect("a");
    assert_eq!((status.in_flight, status.concurrency_limit), (2, Some(2)));
    for c in calls {
        c.await.expect("task").expect("answer");
    }
    assert_eq!(g.members().next().expect("a").in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn calls_beyond_every_limit_wait_in_a_bounded_queue() {
    let a = Mock::new("a", |_| slow(100, Step::Ok("\"a\"")));
    let g = group(
        FailoverLayer::new().queue(2, Duration::from_secs(5)),
        vec![a.member().max_concurrency(ConcurrencyLimit::fixed(1))],
    );
    let started = Instant::now();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let g = g.clone();
            tokio::spawn(async move {
                let r = g.oneshot(req("eth_call")).await;
                (r, Instant::now())
            })
        })
        .collect();
    let mut done = Vec::new();
    for c in calls {
        done.push(c.await.expect("task"));
    }
    let mut answered: Vec<u128> = done
        .iter()
        .filter(|(r, _)| r.is_ok())
        .map(|(_, at)| (*at - started).as_millis())
        .collect();
    answered.sort_unstable();
    assert_eq!(answered, vec![100, 200, 300], "one at a time, in turn");
    let refused: Vec<_> = done.iter().filter(|(r, _)| r.is_err()).collect();
    assert_eq!(refused.len(), 1, "the queue holds two");
    assert!(matches!(refused[0].0, Err(RpcError::Overloaded)));
    assert_eq!(a.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_gives_up_at_its_deadline() {
    let a = Mock::new("a", |_| Step::Hang);
    let g = group(
        FailoverLayer::new().attempt_deadline(AttemptDeadline::fixed(Duration::from_secs(60))),
        vec![a.member().max_concurrency(ConcurrencyLimit::fixed(1))],
    );
    let _busy = tokio::spawn(g.clone().oneshot(req("eth_call")));
    tokio::task::yield_now().await;
    let started = Instant::now();
    let err = g
        .clone()
        .oneshot(with_deadline("eth_call", Duration::from_millis(300)))
        .await
        .expect_err("no room in time");
    assert!(matches!(err, RpcError::Overloaded), "{err}");
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn a_429_halves_an_adaptive_limit_and_never_reaches_the_client() {
    let a = Mock::new("a", |n| {
        if n == 0 {
            Step::Status(429, None)
        } else {
            Step::Ok("\"a\"")
        }
    });
    let b = Mock::ok("b", "\"b\"");
    let g = group(
        FailoverLayer::new(),
        vec![
            a.member().max_concurrency(ConcurrencyLimit::adaptive(64)),
            b.member(),
        ],
    );
    let r = g.clone().oneshot(req("eth_call")).await.expect("b answers");
    assert_eq!(result_of(&r), "\"b\"", "the 429 went to another member");
    assert_eq!(
        g.members().next().expect("a").concurrency_limit,
        Some(32),
        "halved at once"
    );
    // Successes grow it back, one slot per limit's worth of answers.
    for _ in 0..(32 + 33) {
        g.clone().oneshot(req("eth_call")).await.expect("a");
    }
    assert_eq!(g.members().next().expect("a").concurrency_limit, Some(34));
}

#[tokio::test(start_paused = true)]
async fn a_member_out_of_service_comes_back_without_any_client_call() {
    let down = switch(true);
    let a = switched("a", &down, Step::Refused, Step::Ok("1"));
    let b = Mock::ok("b", "\"b\"");
    let g = group(
        FailoverLayer::new()
            .failure_threshold(1)
            .out_of_service(Duration::from_secs(5))
            .health_check(HealthCheck::method("eth_chainId").interval(Duration::ZERO)),
        vec![a.member(), b.member()],
    );
    g.clone().oneshot(req("eth_call")).await.expect("b");
    assert!(!g.members().next().expect("a").in_service);

    // Its window ends with a still down: re-tested every second.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(!g.members().next().expect("a").in_service);
    let asked = a.calls();
    assert!((2..=5).contains(&(asked - 1)), "re-tests: {asked}");

    // It recovers: back within a second, no client call needed.
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let status = g.members().next().expect("a");
    assert!(status.in_service, "{status:?}");
    assert!(g.can_serve());
}

#[tokio::test(start_paused = true)]
async fn a_quiet_member_that_stops_answering_probes_leaves_rotation() {
    let frozen = switch(false);
    let a = switched("a", &frozen, Step::Hang, Step::Ok("1"));
    let b = Mock::ok("b", "\"b\"");
    let g = group(
        FailoverLayer::new().health_check(
            HealthCheck::method("eth_chainId")
                .interval(Duration::from_secs(1))
                .timeout(Duration::from_millis(500)),
        ),
        vec![a.member(), b.member()],
    );
    g.clone().oneshot(req("eth_call")).await.expect("a");
    frozen.store(true, Ordering::SeqCst);
    // No client traffic: two failed checks (threshold 2) take it out.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = g.members().next().expect("a");
    assert!(!status.in_service, "{status:?}");
    assert_eq!(status.reason, Some(OutReason::Probe));
    let started = Instant::now();
    let r = g.clone().oneshot(req("eth_call")).await.expect("b");
    assert_eq!(result_of(&r), "\"b\"");
    assert_eq!(started.elapsed(), Duration::ZERO, "no client paid for it");
}

#[tokio::test(start_paused = true)]
async fn answers_from_just_before_a_freeze_do_not_make_a_frozen_member_look_alive() {
    // Two calls start on a at once; the first is answered 10 ms in, then a
    // freezes. The second stalls at 200 ms: a's last answer is no sign of
    // life by then, so leaving it is free — even with the budget spent.
    let a = Mock::new("a", |n| {
        if n == 0 {
            slow(10, Step::Ok("\"a\""))
        } else {
            Step::Hang
        }
    });
    let b = Mock::ok("b", "\"b\"");
    let budget = RetryBudget::new(0.0).max_tokens(2);
    budget.record_failure();
    budget.record_failure();
    let g = group(
        FailoverLayer::new()
            .failure_threshold(100)
            .attempt_deadline(AttemptDeadline::fixed(Duration::from_millis(200)))
            .budget(budget),
        vec![a.member(), b.member()],
    );
    let first = tokio::spawn(g.clone().oneshot(req("eth_call")));
    tokio::task::yield_now().await;
    let started = Instant::now();
    let second = g
        .clone()
        .oneshot(with_deadline("eth_call", Duration::from_secs(5)))
        .await
        .expect("b answers");
    assert_eq!(result_of(&second), "\"b\"");
    assert_eq!(started.elapsed(), Duration::from_millis(200));
    assert_eq!(result_of(&first.await.expect("task").expect("a")), "\"a\"");
}
