//! Retry policy under paused time: schedule, Retry-After, deadline, budget,
//! safety.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{req, result_of, MemberOf, Mock, Step};
use rpc_core::{Deadline, RpcError};
use rpc_failover::{FailoverLayer, RetryBudget, RetryLayer, WhenAllDown};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

fn exact() -> RetryLayer {
    RetryLayer::new()
        .jitter(0.0)
        .no_budget()
        .backoff(Duration::from_millis(100), Duration::from_millis(400))
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_up_to_the_cap() {
    let m = Mock::new("m", |n| {
        if n < 4 {
            Step::Status(503, None)
        } else {
            Step::Ok("1")
        }
    });
    let svc = exact().max_retries(5).layer(m.clone());
    let start = Instant::now();
    let r = svc
        .oneshot(req("eth_chainId"))
        .await
        .expect("fifth call works");
    assert_eq!(result_of(&r), "1");
    // waits 100, 200, 400, 400 (capped)
    assert_eq!(m.call_times_ms(start), [0, 100, 300, 700, 1100]);
}

#[tokio::test(start_paused = true)]
async fn jitter_keeps_waits_within_half_and_full() {
    let m = Mock::new("m", |n| if n < 3 { Step::Refused } else { Step::Ok("1") });
    let svc = RetryLayer::new()
        .no_budget()
        .backoff(Duration::from_millis(1000), Duration::from_millis(4000))
        .layer(m.clone());
    let start = Instant::now();
    svc.oneshot(req("eth_chainId")).await.expect("works");
    let t = m.call_times_ms(start);
    let waits: Vec<u128> = t.windows(2).map(|w| w[1] - w[0]).collect();
    for (wait, full) in waits.iter().zip([1000u128, 2000, 4000]) {
        assert!(*wait >= full / 2 && *wait <= full, "wait {wait} for {full}");
    }
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_retries_with_the_last_error() {
    let m = Mock::new("m", |_| Step::Status(502, None));
    let svc = exact().max_retries(2).layer(m.clone());
    let err = svc.oneshot(req("eth_chainId")).await.expect_err("fails");
    assert!(matches!(err, RpcError::HttpStatus { .. }));
    assert_eq!(m.calls(), 3);

    let m = Mock::new("m", |_| Step::Refused);
    let err = exact()
        .max_retries(0)
        .layer(m.clone())
        .oneshot(req("x"))
        .await;
    assert!(err.is_err());
    assert_eq!(m.calls(), 1, "max_retries 0 turns retrying off");
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_and_clamped() {
    let m = Mock::new("m", |n| match n {
        0 => Step::Status(429, Some(Duration::from_millis(1500))),
        1 => Step::Status(429, Some(Duration::from_secs(60))),
        _ => Step::Ok("1"),
    });
    let svc = exact()
        .max_retry_after(Duration::from_secs(3))
        .layer(m.clone());
    let start = Instant::now();
    svc.oneshot(req("eth_chainId")).await.expect("works");
    assert_eq!(m.call_times_ms(start), [0, 1500, 4500]);
}

#[tokio::test(start_paused = true)]
async fn no_retry_that_cannot_finish_before_the_deadline() {
    let m = Mock::new("m", |_| Step::Status(503, None));
    let svc = exact().max_retries(10).layer(m.clone());
    let mut request = req("eth_chainId");
    request
        .extensions_mut()
        .insert(Deadline(Instant::now() + Duration::from_millis(350)));
    let start = Instant::now();
    let err = svc.oneshot(request).await.expect_err("fails");
    assert!(matches!(err, RpcError::HttpStatus { .. }));
    // 0, 100, 300; the next would start at 700 > 350.
    assert_eq!(m.call_times_ms(start), [0, 100, 300]);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(300),
        "answered at once"
    );
}

#[tokio::test(start_paused = true)]
async fn unsafe_methods_are_retried_only_when_not_sent() {
    let m = Mock::new("m", |n| if n == 0 { Step::Closed } else { Step::Ok("1") });
    let err = exact()
        .layer(m.clone())
        .oneshot(req("eth_sendTransaction"))
        .await;
    assert!(matches!(err, Err(RpcError::ConnectionClosed { .. })));
    assert_eq!(m.calls(), 1, "maybe sent: not repeated");

    let m = Mock::new("m", |n| if n == 0 { Step::Refused } else { Step::Ok("1") });
    exact()
        .layer(m.clone())
        .oneshot(req("eth_sendTransaction"))
        .await
        .expect("not sent: retried");
    assert_eq!(m.calls(), 2);

    let m = Mock::new("m", |n| if n == 0 { Step::Closed } else { Step::Ok("1") });
    exact()
        .layer(m.clone())
        .oneshot(req("eth_sendRawTransaction"))
        .await
        .expect("a broadcast may be repeated");
    assert_eq!(m.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn answers_are_not_retried_but_rate_limits_are() {
    let m = Mock::new("m", |_| Step::Error(3, "execution reverted"));
    let r = exact()
        .layer(m.clone())
        .oneshot(req("eth_call"))
        .await
        .expect("answer");
    assert_eq!(r.error_object().map(|e| e.code()), Some(3));
    assert_eq!(m.calls(), 1);

    let m = Mock::new("m", |n| {
        if n == 0 {
            Step::Error(-32005, "rate limit exceeded")
        } else {
            Step::Ok("1")
        }
    });
    let r = exact()
        .layer(m.clone())
        .oneshot(req("eth_call"))
        .await
        .expect("answer");
    assert_eq!(result_of(&r), "1");
    assert_eq!(m.calls(), 2);

    let m = Mock::new("m", |_| Step::Error(-32602, "invalid params"));
    exact()
        .layer(m.clone())
        .oneshot(req("eth_call"))
        .await
        .expect("answer");
    assert_eq!(m.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_budget_stops_a_retry_storm_and_successes_refill_it() {
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = failing.clone();
    let m = Mock::new("m", move |_| {
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            Step::Status(503, None)
        } else {
            Step::Ok("1")
        }
    });
    // Half a token per success, a bucket of 4 (never below 2).
    let layer = exact()
        .max_retries(3)
        .budget(RetryBudget::new(0.5).max_tokens(4));
    let svc = layer.layer(m.clone());

    // The failure drains one token (3 left), the retry takes one (2), its
    // failure drains another: no second retry.
    let _ = svc.clone().oneshot(req("eth_chainId")).await;
    assert_eq!(m.calls(), 2, "one retry from the bucket");
    for _ in 0..4 {
        let _ = svc.clone().oneshot(req("eth_chainId")).await;
    }
    assert_eq!(m.calls(), 2 + 4, "a storm gets no retries");

    // Successes refill it: eight of them fill the bucket again.
    failing.store(false, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..8 {
        svc.clone()
            .oneshot(req("eth_chainId"))
            .await
            .expect("answer");
    }
    failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let before = m.calls();
    let _ = svc.clone().oneshot(req("eth_chainId")).await;
    assert_eq!(m.calls() - before, 2, "a retry once refilled");
}

#[tokio::test(start_paused = true)]
async fn budget_counts_are_exact() {
    let b = RetryBudget::new(0.25).max_tokens(10);
    for _ in 0..5 {
        assert!(b.withdraw());
    }
    assert!(!b.withdraw(), "never below half full");
    for _ in 0..8 {
        b.record_success();
    }
    assert!(b.withdraw());
    assert!(b.withdraw());
    assert!(!b.withdraw(), "8 successes × 0.25 = 2 extra calls");
    b.record_failure();
    assert_eq!(b.tokens(), 4.0);
    // Time alone refills nothing.
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(!b.withdraw());
}

#[tokio::test(start_paused = true)]
async fn over_a_group_retry_waits_for_the_member_to_come_back() {
    let a = Mock::new("a", |n| {
        if n == 0 {
            Step::Refused
        } else {
            Step::Ok("\"a\"")
        }
    });
    let group = FailoverLayer::new()
        .failure_threshold(1)
        .out_of_service(Duration::from_secs(2))
        .when_all_down(WhenAllDown::FailFast)
        .build(vec![a.member()])
        .expect("group");
    let svc = exact().max_retries(3).layer(group);
    let start = Instant::now();
    let r = svc.oneshot(req("eth_chainId")).await.expect("a is back");
    assert_eq!(result_of(&r), "\"a\"");
    // Refused at 0; the group says "back in 2 s"; retry then.
    assert_eq!(a.call_times_ms(start), [0, 2000]);
}
