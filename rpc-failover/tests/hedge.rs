//! Hedged reads under paused time.

mod common;

use std::time::Duration;

use common::{req, result_of, slow, MemberOf, Mock, Step};
use rpc_failover::{Failover, FailoverLayer, HedgePolicy};
use tokio::time::Instant;
use tower::ServiceExt;

fn hedged(policy: HedgePolicy, mocks: &[&Mock]) -> Failover<Mock> {
    FailoverLayer::new()
        .hedge(policy)
        .build(mocks.iter().map(|m| m.member()).collect())
        .expect("group")
}

#[tokio::test(start_paused = true)]
async fn a_slow_first_member_is_raced_and_cancelled() {
    let a = Mock::new("a", |_| slow(1_000, Step::Ok("\"a\"")));
    let b = Mock::new("b", |_| slow(10, Step::Ok("\"b\"")));
    let g = hedged(HedgePolicy::fixed(Duration::from_millis(100)), &[&a, &b]);
    let start = Instant::now();
    let r = g.oneshot(req("eth_getBalance")).await.expect("answer");
    assert_eq!(result_of(&r), "\"b\"");
    assert_eq!(start.elapsed(), Duration::from_millis(110));
    assert_eq!(b.call_times_ms(start), [100]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(a.finished(), 0, "the losing attempt was cancelled");
}

#[tokio::test(start_paused = true)]
async fn no_hedge_when_the_first_answer_is_in_time() {
    let a = Mock::new("a", |_| slow(50, Step::Ok("\"a\"")));
    let b = Mock::ok("b", "\"b\"");
    let g = hedged(HedgePolicy::fixed(Duration::from_millis(100)), &[&a, &b]);
    let r = g.oneshot(req("eth_call")).await.expect("answer");
    assert_eq!(result_of(&r), "\"a\"");
    assert_eq!(b.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn only_reads_are_hedged() {
    let a = Mock::new("a", |_| slow(500, Step::Ok("\"a\"")));
    let b = Mock::ok("b", "\"b\"");
    let g = hedged(HedgePolicy::fixed(Duration::from_millis(100)), &[&a, &b]);
    for m in ["eth_sendRawTransaction", "eth_sendTransaction"] {
        let r = g.clone().oneshot(req(m)).await.expect("answer");
        assert_eq!(result_of(&r), "\"a\"", "{m}");
    }
    assert_eq!(b.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn hedges_are_capped_and_spaced_by_the_delay() {
    let a = Mock::new("a", |_| slow(1_000, Step::Ok("\"a\"")));
    let b = Mock::new("b", |_| slow(1_000, Step::Ok("\"b\"")));
    let c = Mock::new("c", |_| slow(1_000, Step::Ok("\"c\"")));
    let d = Mock::new("d", |_| slow(1_000, Step::Ok("\"d\"")));
    let g = hedged(
        HedgePolicy::fixed(Duration::from_millis(100)).max_hedges(2),
        &[&a, &b, &c, &d],
    );
    let start = Instant::now();
    let r = g.oneshot(req("eth_call")).await.expect("answer");
    assert_eq!(result_of(&r), "\"a\"", "the first attempt finishes first");
    assert_eq!(start.elapsed(), Duration::from_millis(1_000));
    assert_eq!(b.call_times_ms(start), [100]);
    assert_eq!(c.call_times_ms(start), [200]);
    assert_eq!(d.calls(), 0, "two hedges at most");
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_fails_over_without_waiting_for_the_delay() {
    let a = Mock::new("a", |_| slow(5, Step::Refused));
    let b = Mock::new("b", |_| slow(5, Step::Ok("\"b\"")));
    let g = hedged(HedgePolicy::fixed(Duration::from_millis(500)), &[&a, &b]);
    let start = Instant::now();
    let r = g.oneshot(req("eth_call")).await.expect("answer");
    assert_eq!(result_of(&r), "\"b\"");
    assert_eq!(start.elapsed(), Duration::from_millis(10));
}

#[tokio::test(start_paused = true)]
async fn the_quantile_delay_learns_per_method() {
    // a answers in 20 ms, except every 10th call takes 2 s.
    let a = Mock::new("a", |n| {
        slow(if n % 10 == 9 { 2_000 } else { 20 }, Step::Ok("\"a\""))
    });
    let b = Mock::new("b", |_| slow(20, Step::Ok("\"b\"")));
    let g = FailoverLayer::new()
        .hedge(HedgePolicy::quantile(0.8).fallback_delay(Duration::from_secs(5)))
        .build(vec![a.member(), b.member()])
        .expect("group");
    for _ in 0..30 {
        g.clone().oneshot(req("eth_call")).await.expect("answer");
    }
    // With 30 samples the p80 is ~20 ms: a slow call is hedged after ~20 ms
    // instead of waiting 2 s.
    let b_before = b.calls();
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let start = Instant::now();
        g.clone().oneshot(req("eth_call")).await.expect("answer");
        worst = worst.max(start.elapsed());
    }
    assert!(b.calls() > b_before, "the slow call was hedged");
    assert!(worst < Duration::from_millis(100), "worst {worst:?}");
}
