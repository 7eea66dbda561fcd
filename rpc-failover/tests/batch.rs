//! A client batch sent to a group whole (`Service<Batch>`), under paused
//! time: one member and one attempt for the calls that go together, moving
//! on together, and the calls that go alone.

mod common;

use std::time::Duration;

use common::{result_of, slow, MemberOf, Mock, Step};
use rpc_core::batch::call_batch;
use rpc_core::test_util::call;
use rpc_core::{Attempts, Batch, BatchAnswers, Deadline, Response, RpcError, ServedBy};
use rpc_failover::{AttemptDeadline, FailoverLayer, Pin, RetryLayer};
use tower::Layer;

type Group = rpc_failover::Failover<Mock>;

fn group(layer: FailoverLayer, mocks: &[&Mock]) -> Group {
    layer
        .build(mocks.iter().map(|m| m.member()).collect())
        .expect("valid group")
}

/// `n` reads with ids 0.. and a deadline `secs` from now.
fn reads(n: u64, secs: u64) -> Batch {
    let deadline = Deadline::after(Duration::from_secs(secs));
    Batch::new(
        (0..n)
            .map(|i| {
                let mut c = call(i, "eth_getBalance", r#"["0x01","0x1"]"#);
                c.extensions_mut().insert(deadline);
                c
            })
            .collect(),
    )
}

fn answer(answers: &BatchAnswers, i: usize) -> &Response {
    match &answers[i] {
        Some(Ok(r)) => r,
        other => panic!("call {i}: {other:?}"),
    }
}

fn served_by(r: &Response) -> &str {
    r.extensions().get::<ServedBy>().map_or("", |s| &s.0)
}

#[tokio::test(start_paused = true)]
async fn a_batch_goes_to_one_member_as_one_attempt() {
    let (a, b) = (Mock::ok("a", "\"a\""), Mock::ok("b", "\"b\""));
    let g = group(FailoverLayer::new(), &[&a, &b]);
    let answers = call_batch(g.clone(), reads(5, 10)).await;
    assert_eq!(answers.len(), 5);
    for (i, _) in answers.iter().enumerate() {
        let r = answer(&answers, i);
        assert_eq!(r.id(), &rpc_core::Id::from(i as u64));
        assert_eq!(result_of(r), "\"a\"");
        assert_eq!(served_by(r), "a");
        assert_eq!(r.extensions().get::<Attempts>(), Some(&Attempts(1)));
    }
    assert_eq!((a.batches(), a.calls()), (1, 5));
    assert_eq!(b.calls(), 0);
    let status: Vec<_> = g.members().collect();
    assert_eq!(status[0].in_flight, 0, "the member is released");
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_moves_on_together_and_counts_as_one_failure() {
    let a = Mock::new("a", |_| Step::Status(503, None));
    let b = Mock::ok("b", "\"b\"");
    let g = group(FailoverLayer::new().failure_threshold(2), &[&a, &b]);
    let answers = call_batch(g.clone(), reads(6, 10)).await;
    for i in 0..6 {
        let r = answer(&answers, i);
        assert_eq!(served_by(r), "b");
        assert_eq!(r.extensions().get::<Attempts>(), Some(&Attempts(2)));
    }
    // One batch each: the calls moved on together.
    assert_eq!((a.batches(), a.calls()), (1, 6));
    assert_eq!((b.batches(), b.calls()), (1, 6));
    // One upstream exchange failed: one failure, not six.
    let status: Vec<_> = g.members().collect();
    assert_eq!(status[0].consecutive_failures, 1);
    assert!(status[0].in_service);
}

#[tokio::test(start_paused = true)]
async fn a_call_unsafe_to_repeat_is_answered_where_the_others_move_on() {
    // The connection closed mid-batch: the calls may have been delivered.
    let a = Mock::new("a", |_| Step::Closed);
    let b = Mock::ok("b", "\"b\"");
    let g = group(FailoverLayer::new(), &[&a, &b]);
    let mut batch = reads(3, 10).into_calls();
    batch[1] = call(1, "eth_sendTransaction", r#"[{}]"#);
    let answers = call_batch(g, Batch::new(batch)).await;
    assert!(matches!(
        answers[1],
        Some(Err(RpcError::ConnectionClosed { .. }))
    ));
    assert_eq!(served_by(answer(&answers, 0)), "b");
    assert_eq!(served_by(answer(&answers, 2)), "b");
    assert_eq!(b.methods(), ["eth_getBalance", "eth_getBalance"]);
}

#[tokio::test(start_paused = true)]
async fn a_pinned_call_goes_alone_to_its_member() {
    let (a, b) = (Mock::ok("a", "\"a\""), Mock::ok("b", "\"b\""));
    let g = group(FailoverLayer::new(), &[&a, &b]);
    let mut calls = reads(3, 10).into_calls();
    calls[2].extensions_mut().insert(Pin("b".into()));
    let answers = call_batch(g, Batch::new(calls)).await;
    assert_eq!(result_of(answer(&answers, 0)), "\"a\"");
    assert_eq!(result_of(answer(&answers, 1)), "\"a\"");
    assert_eq!(result_of(answer(&answers, 2)), "\"b\"");
    assert_eq!((a.batches(), a.calls()), (1, 2));
    assert_eq!((b.batches(), b.calls()), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_stalled_batch_moves_on_at_its_stall_deadline() {
    let a = Mock::new("a", |_| Step::Hang);
    let b = Mock::ok("b", "\"b\"");
    let g = group(
        FailoverLayer::new().attempt_deadline(AttemptDeadline::fixed(Duration::from_millis(200))),
        &[&a, &b],
    );
    let start = tokio::time::Instant::now();
    let answers = call_batch(g.clone(), reads(4, 10)).await;
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    for i in 0..4 {
        assert_eq!(served_by(answer(&answers, i)), "b");
    }
    let status: Vec<_> = g.members().collect();
    assert_eq!(
        status[0].consecutive_failures, 1,
        "the stall is charged once"
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_answers_every_call_of_a_batch_nobody_answers() {
    let a = Mock::new("a", |_| Step::Hang);
    let b = Mock::new("b", |_| Step::Hang);
    let g = group(FailoverLayer::new(), &[&a, &b]);
    let start = tokio::time::Instant::now();
    let answers = call_batch(g, reads(3, 2)).await;
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    for a in &answers {
        assert!(matches!(a, Some(Err(RpcError::Timeout { .. }))), "{a:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_with_one_slow_call_moves_on_whole_at_the_stall_deadline() {
    // a answers one call of the batch slowly, past the stall deadline,
    // the others at once: the whole attempt waits, then moves on whole.
    let a = Mock::with_requests("a", |_, req| {
        if req.id() == Some(&rpc_core::Id::from(1u64)) {
            slow(5_000, Step::Ok("\"late\""))
        } else {
            Step::Ok("\"a\"")
        }
    });
    let b = Mock::ok("b", "\"b\"");
    let g = group(
        FailoverLayer::new().attempt_deadline(AttemptDeadline::fixed(Duration::from_millis(300))),
        &[&a, &b],
    );
    let answers = call_batch(g, reads(3, 10)).await;
    for i in 0..3 {
        assert_eq!(served_by(answer(&answers, i)), "b");
    }
    assert_eq!((b.batches(), b.calls()), (1, 3));
}

#[tokio::test(start_paused = true)]
async fn retry_over_a_batch_retries_only_the_calls_that_failed() {
    // Call 1 is refused the first time it is seen; the others answer.
    let m = Mock::with_requests("m", |n, req| {
        if n == 1 && req.id() == Some(&rpc_core::Id::from(1u64)) {
            Step::Refused
        } else {
            Step::Ok("\"ok\"")
        }
    });
    let svc = RetryLayer::new()
        .no_budget()
        .jitter(0.0)
        .backoff(Duration::from_millis(100), Duration::from_millis(100))
        .layer(m.clone());
    let start = tokio::time::Instant::now();
    let answers = call_batch(svc, reads(3, 10)).await;
    for i in 0..3 {
        assert_eq!(result_of(answer(&answers, i)), "\"ok\"");
    }
    // The batch (3 calls), then call 1 alone after the backoff.
    assert_eq!((m.batches(), m.calls()), (1, 4));
    assert_eq!(m.call_times_ms(start), [0, 0, 0, 100]);
}
