//! Failover group behaviour under paused time: every state transition.

mod common;

use std::time::Duration;

use common::{req, result_of, slow, MemberOf, Mock, Step};
use rpc_core::{Attempts, Deadline, Id, RpcError, ServedBy};
use rpc_failover::{AttemptDeadline, FailoverLayer, Member, Spread, WhenAllDown};
use tower::{Service, ServiceExt};

type Group = rpc_failover::Failover<Mock>;

async fn call(group: &Group, method: &str) -> Result<rpc_core::Response, RpcError> {
    group.clone().oneshot(req(method)).await
}

fn group(layer: FailoverLayer, mocks: &[&Mock]) -> Group {
    layer
        .build(mocks.iter().map(|m| m.member()).collect())
        .expect("valid group")
}

#[tokio::test(start_paused = true)]
async fn moves_on_when_the_first_member_refuses_and_marks_it_out_after_the_threshold() {
    let a = Mock::new("a", |_| Step::Refused);
    let b = Mock::ok("b", "\"0xb\"");
    let g = group(FailoverLayer::new().failure_threshold(2), &[&a, &b]);

    for _ in 0..2 {
        let r = call(&g, "eth_blockNumber").await.expect("b answers");
        assert_eq!(result_of(&r), "\"0xb\"");
        assert_eq!(r.id(), &Id::from(7u64));
        assert_eq!(r.extensions().get::<ServedBy>().map(|s| &*s.0), Some("b"));
        assert_eq!(r.extensions().get::<Attempts>(), Some(&Attempts(2)));
    }
    assert_eq!(a.calls(), 2);
    let status: Vec<_> = g.members().collect();
    assert!(!status[0].in_service, "two failures reach the threshold");
    assert_eq!(status[0].consecutive_failures, 2);
    assert!(status[1].in_service);

    // While out of service, `a` is not asked.
    for _ in 0..5 {
        call(&g, "eth_blockNumber").await.expect("b answers");
    }
    assert_eq!(a.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn after_the_window_one_trial_call_decides() {
    // a fails twice, then works.
    let a = Mock::new("a", |n| {
        if n < 2 {
            Step::Refused
        } else {
            Step::Ok("\"a\"")
        }
    });
    let b = Mock::ok("b", "\"b\"");
    let g = group(
        FailoverLayer::new()
            .failure_threshold(2)
            .out_of_service(Duration::from_secs(5)),
        &[&a, &b],
    );
    call(&g, "eth_chainId").await.expect("answer");
    call(&g, "eth_chainId").await.expect("answer");
    assert!(!g.members().next().expect("a").in_service);

    tokio::time::advance(Duration::from_millis(4_999)).await;
    assert_eq!(
        result_of(&call(&g, "eth_chainId").await.expect("answer")),
        "\"b\""
    );
    assert_eq!(a.calls(), 2, "window not over yet");

    tokio::time::advance(Duration::from_millis(2)).await;
    assert_eq!(
        result_of(&call(&g, "eth_chainId").await.expect("answer")),
        "\"a\""
    );
    assert_eq!(a.calls(), 3, "the trial call");
    assert!(
        g.members().next().expect("a").in_service,
        "the trial succeeded"
    );
    assert_eq!(g.members().next().expect("a").consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_trial_takes_the_member_out_again_at_once() {
    let a = Mock::new("a", |_| Step::Status(503, None));
    let b = Mock::ok("b", "\"b\"");
    let g = group(
        FailoverLayer::new()
            .failure_threshold(3)
            .out_of_service(Duration::from_secs(2)),
        &[&a, &b],
    );
    for _ in 0..3 {
        call(&g, "eth_chainId").await.expect("b");
    }
    assert_eq!(a.calls(), 3);
    tokio::time::advance(Duration::from_secs(2)).await;
    call(&g, "eth_chainId").await.expect("b");
    assert_eq!(a.calls(), 4, "one trial");
    // Not three more failures: the failed trial closes the door again.
    call(&g, "eth_chainId").await.expect("b");
    assert_eq!(a.calls(), 4);
    let a_status = g.members().next().expect("a");
    assert!(!a_status.in_service);
    assert_eq!(a_status.out_for, Some(Duration::from_secs(2)));
}

#[tokio::test(start_paused = true)]
async fn only_one_trial_call_while_the_window_has_ended() {
    // The trial takes 1 s; concurrent calls meanwhile go to b.
    let a = Mock::new("a", |n| {
        if n == 0 {
            Step::Refused
        } else {
            slow(1_000, Step::Ok("\"a\""))
        }
    });
    let b = Mock::ok("b", "\"b\"");
    let g = group(
        FailoverLayer::new()
            .failure_threshold(1)
            .out_of_service(Duration::from_secs(1)),
        &[&a, &b],
    );
    call(&g, "eth_chainId").await.expect("b");
    tokio::time::advance(Duration::from_secs(1)).await;

    let trial = tokio::spawn({
        let g = g.clone();
        async move { call(&g, "eth_chainId").await }
    });
    tokio::task::yield_now().await;
    for _ in 0..5 {
        assert_eq!(
            result_of(&call(&g, "eth_chainId").await.expect("b")),
            "\"b\""
        );
    }
    assert_eq!(a.calls(), 2, "exactly one trial in flight");
    let r = trial.await.expect("join").expect("a answers");
    assert_eq!(result_of(&r), "\"a\"");
    assert!(g.members().next().expect("a").in_service);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_trial_frees_the_trial_slot() {
    let a = Mock::new("a", |n| if n == 0 { Step::Refused } else { Step::Hang });
    let b = Mock::ok("b", "\"b\"");
    let g = group(
        FailoverLayer::new()
            .failure_threshold(1)
            .out_of_service(Duration::from_secs(1)),
        &[&a, &b],
    );
    call(&g, "eth_chainId").await.expect("b");
    tokio::time::advance(Duration::from_secs(1)).await;
    // The trial call hangs and its client gives up.
    let r = tokio::time::timeout(Duration::from_millis(10), call(&g, "eth_chainId")).await;
    assert!(r.is_err());
    // The next call may try again (the slot was released), instead of the
    // member being stuck half-open forever.
    let r = tokio::time::timeout(Duration::from_millis(10), call(&g, "eth_chainId")).await;
    assert!(r.is_err());
    assert_eq!(a.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn maybe_sent_calls_of_unsafe_methods_are_not_moved() {
    let a = Mock::new("a", |_| Step::Closed);
    let b = Mock::ok("b", "\"b\"");
    let g = group(FailoverLayer::new(), &[&a, &b]);

    let err = call(&g, "eth_sendTransaction")
        .await
        .expect_err("not repeated");
    assert!(matches!(err, RpcError::ConnectionClosed { .. }), "{err}");
    assert_eq!(b.calls(), 0, "never sent twice");

    // A read, or a broadcast of a signed transaction, moves on.
    for m in ["eth_call", "eth_sendRawTransaction"] {
        call(&g, m).await.expect("b answers");
    }
    assert_eq!(b.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn unsent_calls_move_on_whatever_the_method() {
    let a = Mock::new("a", |_| Step::Refused);
    let b = Mock::ok("b", "\"b\"");
    let g = group(FailoverLayer::new(), &[&a, &b]);
    call(&g, "eth_sendTransaction").await.expect("b answers");
    assert_eq!((a.calls(), b.calls()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn an_ordinary_error_object_is_an_answer() {
    let a = Mock::new("a", |_| Step::Error(3, "execution reverted"));
    let b = Mock::ok("b", "\"b\"");
    let g = group(FailoverLayer::new().failure_threshold(1), &[&a, &b]);
    for _ in 0..3 {
        let r = call(&g, "eth_call").await.expect("answer");
        assert_eq!(r.error_object().map(|e| e.code()), Some(3));
    }
    assert_eq!(b.calls(), 0);
    assert!(g.members().next().expect("a").in_service, "not counted");
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_error_object_counts_and_moves_on() {
    let a = Mock::new("a", |_| {
        Step::Error(-32005, "daily request count exceeded, request rate limited")
    });
    let b = Mock::ok("b", "\"b\"");
    let g = group(FailoverLayer::new().failure_threshold(1), &[&a, &b]);
    let r = call(&g, "eth_call").await.expect("answer");
    assert_eq!(result_of(&r), "\"b\"");
    assert!(!g.members().next().expect("a").in_service);

    // When nobody else can answer, the provider's own refusal is passed on.
    let solo = Mock::new("solo", |_| Step::Error(429, "Too Many Requests"));
    let g = group(FailoverLayer::new(), &[&solo]);
    let r = call(&g, "eth_call")
        .await
        .expect("the refusal is an answer");
    assert_eq!(r.error_object().map(|e| e.code()), Some(429));
}

#[tokio::test(start_paused = true)]
async fn when_all_are_down_try_the_one_back_soonest() {
    let a = Mock::new("a", |n| {
        if n == 0 {
            Step::Refused
        } else {
            Step::Ok("\"a\"")
        }
    });
    let b = Mock::new("b", |n| {
        if n == 0 {
            Step::Refused
        } else {
            Step::Ok("\"b\"")
        }
    });
    let g = group(
        FailoverLayer::new()
            .failure_threshold(1)
            .out_of_service(Duration::from_secs(10)),
        &[&a, &b],
    );
    // a fails at t=0, b at t=1: a is due back first.
    let _ = call(&g, "eth_chainId").await; // a fails, b... fails too
    assert_eq!((a.calls(), b.calls()), (1, 1));
    let r = call(&g, "eth_chainId").await.expect("a tried although out");
    assert_eq!(result_of(&r), "\"a\"");
    assert!(g.members().next().expect("a").in_service);
}

#[tokio::test(start_paused = true)]
async fn when_all_are_down_fail_fast_says_when_to_come_back() {
    let a = Mock::new("a", |_| Step::Refused);
    let g = group(
        FailoverLayer::new()
            .failure_threshold(1)
            .out_of_service(Duration::from_secs(3))
            .when_all_down(WhenAllDown::FailFast),
        &[&a],
    );
    let first = call(&g, "eth_chainId").await.expect_err("refused");
    assert!(matches!(first, RpcError::Connect { .. }));
    tokio::time::advance(Duration::from_secs(1)).await;
    let err = call(&g, "eth_chainId").await.expect_err("none available");
    match err {
        RpcError::NoBackendAvailable { retry_after } => {
            assert_eq!(retry_after, Some(Duration::from_secs(2)));
        }
        other => panic!("{other}"),
    }
    assert_eq!(a.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn priorities_decide_the_order() {
    let a = Mock::ok("a", "\"a\"");
    let b = Mock::ok("b", "\"b\"");
    let g = FailoverLayer::new()
        .build(vec![a.member().priority(5), b.member().priority(1)])
        .expect("group");
    assert_eq!(
        result_of(&call(&g, "eth_chainId").await.expect("answer")),
        "\"b\""
    );
    let names: Vec<_> = g.members().map(|m| m.name.to_string()).collect();
    assert_eq!(names, ["b", "a"]);
}

#[tokio::test(start_paused = true)]
async fn round_robin_spreads_over_equal_priority_only() {
    let a = Mock::ok("a", "\"a\"");
    let b = Mock::ok("b", "\"b\"");
    let c = Mock::ok("c", "\"c\"");
    let g = FailoverLayer::new()
        .spread(Spread::RoundRobin)
        .build(vec![a.member(), b.member(), c.member().priority(1)])
        .expect("group");
    for _ in 0..10 {
        call(&g, "eth_chainId").await.expect("answer");
    }
    assert_eq!((a.calls(), b.calls(), c.calls()), (5, 5, 0));
}

#[tokio::test(start_paused = true)]
async fn least_latency_prefers_the_faster_member() {
    let a = Mock::new("a", |_| slow(50, Step::Ok("\"a\"")));
    let b = Mock::new("b", |_| slow(5, Step::Ok("\"b\"")));
    let g = group(
        FailoverLayer::new().spread(Spread::least_latency()),
        &[&a, &b],
    );
    for _ in 0..20 {
        call(&g, "eth_chainId").await.expect("answer");
    }
    assert!(b.calls() >= 18, "a {} b {}", a.calls(), b.calls());
}

#[tokio::test(start_paused = true)]
async fn a_saturated_member_is_skipped_not_waited_for() {
    use tower::limit::ConcurrencyLimit;
    let a = Mock::new("a", |_| slow(10_000, Step::Ok("\"a\"")));
    let b = Mock::ok("b", "\"b\"");
    let members = vec![
        Member::new(
            "a",
            rpc_core::BoxJsonRpcService::new(ConcurrencyLimit::new(a.clone(), 1)),
        ),
        Member::new("b", rpc_core::BoxJsonRpcService::new(b.clone())),
    ];
    let g = FailoverLayer::new().build(members).expect("group");
    // Occupy a's only slot.
    let busy = tokio::spawn(g.clone().oneshot(req("eth_chainId")));
    tokio::task::yield_now().await;
    assert_eq!(a.calls(), 1);
    let started = tokio::time::Instant::now();
    let r = g
        .clone()
        .oneshot(req("eth_chainId"))
        .await
        .expect("b answers");
    assert_eq!(result_of(&r), "\"b\"");
    assert_eq!(started.elapsed(), Duration::ZERO, "did not wait for a");
    assert!(
        g.members().next().expect("a").in_service,
        "busy is not a failure"
    );
    busy.abort();
}

#[tokio::test(start_paused = true)]
async fn a_frozen_member_is_left_at_its_stall_deadline_and_counted() {
    let a = Mock::new("a", |_| Step::Hang);
    let b = Mock::ok("b", "\"b\"");
    let g = group(FailoverLayer::new().failure_threshold(1), &[&a, &b]);
    let mut request = req("eth_chainId");
    request.extensions_mut().insert(Deadline(
        tokio::time::Instant::now() + Duration::from_secs(10),
    ));
    let started = tokio::time::Instant::now();
    let r = g.clone().oneshot(request).await.expect("b answers");
    assert_eq!(result_of(&r), "\"b\"");
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(3),
        "the initial stall deadline, not the call's 10 s"
    );
    let a_status = g.members().next().expect("a");
    assert!(!a_status.in_service, "the frozen member is out");
    assert_eq!(a_status.reason, Some(rpc_failover::OutReason::Stall));
    assert_eq!(a.finished(), 0, "its attempt was left, not awaited");
}

#[tokio::test(start_paused = true)]
async fn a_frozen_member_is_cut_at_the_deadline_and_counted() {
    let a = Mock::new("a", |_| Step::Hang);
    let b = Mock::ok("b", "\"b\"");
    // Stall deadlines beyond the call's: the call's deadline decides.
    let g = group(
        FailoverLayer::new()
            .failure_threshold(1)
            .attempt_deadline(AttemptDeadline::fixed(Duration::from_secs(10))),
        &[&a, &b],
    );
    let mut request = req("eth_chainId");
    request.extensions_mut().insert(Deadline(
        tokio::time::Instant::now() + Duration::from_secs(2),
    ));
    let started = tokio::time::Instant::now();
    let err = g.clone().oneshot(request).await.expect_err("deadline");
    assert!(matches!(err, RpcError::Timeout { .. }), "{err}");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(b.calls(), 0, "no time left for b");
    assert!(
        !g.members().next().expect("a").in_service,
        "the frozen member is out"
    );
    // The next call skips it.
    call(&g, "eth_chainId").await.expect("b answers");
    assert_eq!(a.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_got_little_time_is_not_blamed() {
    // a eats 1.5 s of a 2 s deadline before failing; b then hangs 0.5 s.
    let a = Mock::new("a", |_| slow(1_500, Step::Status(502, None)));
    let b = Mock::new("b", |_| Step::Hang);
    let g = group(
        FailoverLayer::new()
            .failure_threshold(1)
            .attempt_deadline(AttemptDeadline::fixed(Duration::from_secs(10))),
        &[&a, &b],
    );
    let mut request = req("eth_chainId");
    request.extensions_mut().insert(Deadline(
        tokio::time::Instant::now() + Duration::from_secs(2),
    ));
    let err = g.clone().oneshot(request).await.expect_err("deadline");
    assert!(matches!(err, RpcError::Timeout { .. }));
    let status: Vec<_> = g.members().collect();
    assert!(!status[0].in_service);
    assert!(status[1].in_service, "b had only a quarter of the time");
}

#[tokio::test(start_paused = true)]
async fn errors_that_are_the_same_everywhere_are_returned_at_once() {
    let a = Mock::new("a", |_| Step::Error(-32602, "bad params"));
    let b = Mock::ok("b", "\"b\"");
    let g = group(FailoverLayer::new(), &[&a, &b]);
    let r = call(&g, "eth_call").await.expect("answer");
    assert_eq!(r.error_object().map(|e| e.code()), Some(-32602));
    assert_eq!(b.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn empty_and_oversized_groups() {
    let g: Group = FailoverLayer::new()
        .build(Vec::new())
        .expect("empty is allowed");
    let err = call(&g, "eth_chainId").await.expect_err("nobody");
    assert!(matches!(
        err,
        RpcError::NoBackendAvailable { retry_after: None }
    ));

    let many: Vec<_> = (0..65)
        .map(|i| Mock::ok(&format!("m{i}"), "1").member())
        .collect();
    let err = FailoverLayer::new().build(many).expect_err("too many");
    assert!(err.to_string().contains("at most 64"), "{err}");

    let dup = vec![Mock::ok("x", "1").member(), Mock::ok("x", "2").member()];
    assert!(FailoverLayer::new().build(dup).is_err());
}

#[tokio::test(start_paused = true)]
async fn groups_nest() {
    let a = Mock::new("a", |_| Step::Refused);
    let b = Mock::ok("b", "\"b\"");
    let inner = group(FailoverLayer::new(), &[&a]);
    let outer = FailoverLayer::new()
        .build(vec![
            Member::new("inner", rpc_core::BoxJsonRpcService::new(inner)),
            Member::new("b", rpc_core::BoxJsonRpcService::new(b.clone())),
        ])
        .expect("group");
    let r = outer
        .clone()
        .oneshot(req("eth_chainId"))
        .await
        .expect("answer");
    assert_eq!(result_of(&r), "\"b\"");
    assert_eq!(a.calls(), 1);
    let mut svc = outer.clone();
    svc.ready().await.expect("always ready");
    let r = svc.call(req("eth_chainId")).await.expect("answer");
    assert_eq!(result_of(&r), "\"b\"");
}

#[tokio::test(start_paused = true)]
async fn when_all_are_down_a_call_makes_one_attempt_not_one_per_member() {
    let a = Mock::new("a", |_| Step::Refused);
    let b = Mock::new("b", |_| Step::Refused);
    let c = Mock::new("c", |_| Step::Refused);
    let g = group(
        FailoverLayer::new()
            .failure_threshold(1)
            .out_of_service(Duration::from_secs(10)),
        &[&a, &b, &c],
    );
    // The first call finds them in service and goes round all three.
    let _ = call(&g, "eth_chainId").await;
    assert_eq!(a.calls() + b.calls() + c.calls(), 3);
    // Now every member is out: each call tries the one due back first, once.
    for n in 1..=10 {
        let r = call(&g, "eth_chainId").await;
        assert!(r.is_err() || r.is_ok_and(|r| r.error_object().is_some()));
        assert_eq!(a.calls() + b.calls() + c.calls(), 3 + n, "call {n}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_member_that_declines_is_skipped_without_blame() {
    // a serves no traces: it declines; b answers. a stays in service.
    let a = Mock::new("a", |_| Step::Decline);
    let b = Mock::ok("b", "\"b\"");
    let g = group(FailoverLayer::new().failure_threshold(1), &[&a, &b]);
    for _ in 0..3 {
        let r = call(&g, "debug_traceTransaction").await.expect("b answers");
        assert_eq!(result_of(&r), "\"b\"");
    }
    let status = g.members().next().expect("a");
    assert!(status.in_service, "declining is not failing");
    assert_eq!(status.consecutive_failures, 0);
    // When every member declines, the client gets the refusal itself.
    let only = group(FailoverLayer::new(), &[&a]);
    let err = call(&only, "debug_traceTransaction")
        .await
        .expect_err("declined");
    assert_eq!(err.to_error_object().code(), -32601);
    assert_eq!(err.http_status().as_u16(), 400);
}

// ---- Multicall: a broadcast goes to every member at once ----

#[tokio::test(start_paused = true)]
async fn a_broadcast_reaches_every_member_and_the_first_acceptance_answers() {
    // `a` knows the transaction already, `b` accepts it after 50 ms, `c`
    // after 1 s: the client gets b's hash at 50 ms, and c still gets it.
    let a = Mock::new("a", |_| Step::Error(-32000, "already known"));
    let b = Mock::new("b", |_| slow(50, Step::Ok("\"0xhash\"")));
    let c = Mock::new("c", |_| slow(1_000, Step::Ok("\"0xhash\"")));
    let g = group(FailoverLayer::new().multicall(true), &[&a, &b, &c]);
    let started = tokio::time::Instant::now();
    let r = call(&g, "eth_sendRawTransaction").await.expect("answer");
    assert_eq!(result_of(&r), "\"0xhash\"");
    assert_eq!(started.elapsed(), Duration::from_millis(50));
    assert_eq!((a.calls(), b.calls(), c.calls()), (1, 1, 1));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        c.finished(),
        1,
        "the slow member's attempt was not cancelled"
    );
    // "already known" is an answer, not a failure: `a` stays in service.
    for m in g.members() {
        assert!(m.in_service && m.consecutive_failures == 0, "{m:?}");
    }
    // Reads are not multicast.
    let _ = call(&g, "eth_blockNumber").await;
    assert_eq!(a.calls() + b.calls() + c.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_broadcast_nobody_accepts_answers_already_known_if_a_member_said_so() {
    let a = Mock::new("a", |_| Step::Refused);
    let b = Mock::new("b", |_| Step::Error(-32000, "nonce too low"));
    let c = Mock::new("c", |_| slow(20, Step::Error(-32000, "already known")));
    let g = group(FailoverLayer::new().multicall(true), &[&a, &b, &c]);
    let r = call(&g, "eth_sendRawTransaction").await.expect("an answer");
    let error = r.error_object().expect("an error object");
    assert_eq!(error.message(), "already known");
    // Without an "already known", the last answer or error.
    let b2 = Mock::new("b", |_| Step::Error(-32000, "nonce too low"));
    let g = group(FailoverLayer::new().multicall(true), &[&b2]);
    let r = call(&g, "eth_sendRawTransaction").await.expect("an answer");
    assert_eq!(r.error_object().map(|e| e.message()), Some("nonce too low"));
}

#[tokio::test(start_paused = true)]
async fn without_multicall_a_broadcast_goes_to_one_member() {
    let (a, b) = (Mock::ok("a", "\"0xhash\""), Mock::ok("b", "\"0xhash\""));
    let g = group(FailoverLayer::new(), &[&a, &b]);
    call(&g, "eth_sendRawTransaction").await.expect("answer");
    assert_eq!((a.calls(), b.calls()), (1, 0));
}
