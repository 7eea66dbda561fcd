//! Quorum k-of-n under paused time.

mod common;

use std::time::Duration;

use common::{req, result_of, slow, MemberOf, Mock, Step};
use rpc_core::RpcError;
use rpc_failover::{Quorum, QuorumLayer};
use tokio::time::Instant;
use tower::ServiceExt;

fn quorum(layer: QuorumLayer, mocks: &[&Mock]) -> Quorum<Mock> {
    layer
        .build(mocks.iter().map(|m| m.member()).collect())
        .expect("quorum")
}

#[tokio::test(start_paused = true)]
async fn answers_when_k_agree_without_waiting_for_the_slowest() {
    let a = Mock::new("a", |_| slow(10, Step::Ok("\"0x10\"")));
    let b = Mock::new("b", |_| slow(30, Step::Ok("\"0x10\"")));
    let c = Mock::new("c", |_| slow(10_000, Step::Ok("\"0x10\"")));
    let q = quorum(QuorumLayer::new(2), &[&a, &b, &c]);
    let start = Instant::now();
    let r = q.oneshot(req("eth_blockNumber")).await.expect("agreed");
    assert_eq!(result_of(&r), "\"0x10\"");
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(30),
        "the 2nd fastest"
    );
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(c.finished(), 0, "the straggler was cancelled");
}

#[tokio::test(start_paused = true)]
async fn a_fast_disagreeing_member_does_not_block_agreement() {
    let a = Mock::new("a", |_| slow(5, Step::Ok("\"0x9\"")));
    let b = Mock::new("b", |_| slow(20, Step::Ok("\"0x10\"")));
    let c = Mock::new("c", |_| slow(40, Step::Ok("\"0x10\"")));
    let q = quorum(QuorumLayer::new(2), &[&a, &b, &c]);
    let start = Instant::now();
    let r = q.oneshot(req("eth_blockNumber")).await.expect("agreed");
    assert_eq!(result_of(&r), "\"0x10\"");
    assert_eq!(start.elapsed(), Duration::from_millis(40));
}

#[tokio::test(start_paused = true)]
async fn fails_as_soon_as_agreement_is_impossible() {
    let a = Mock::new("a", |_| slow(10, Step::Refused));
    let b = Mock::new("b", |_| slow(20, Step::Status(503, None)));
    let c = Mock::new("c", |_| Step::Hang);
    let q = quorum(QuorumLayer::new(2), &[&a, &b, &c]);
    let start = Instant::now();
    let err = q
        .oneshot(req("eth_blockNumber"))
        .await
        .expect_err("impossible");
    assert_eq!(start.elapsed(), Duration::from_millis(20), "no wait for c");
    match &err {
        RpcError::QuorumNotReached { votes, .. } => {
            let by_name: Vec<(&str, &str)> = votes
                .iter()
                .map(|v| (&*v.backend, v.answer.as_str()))
                .collect();
            assert_eq!(by_name.len(), 3);
            assert!(
                by_name[0].0 == "a" && by_name[0].1.starts_with("failed:"),
                "{by_name:?}"
            );
            assert!(
                by_name[1].0 == "b" && by_name[1].1.contains("503"),
                "{by_name:?}"
            );
            assert_eq!(by_name[2], ("c", "no answer"));
        }
        other => panic!("{other}"),
    }
}

#[tokio::test(start_paused = true)]
async fn disagreement_lists_who_said_what() {
    let a = Mock::new("a", |_| slow(1, Step::Ok("\"0x1\"")));
    let b = Mock::new("b", |_| slow(2, Step::Ok("\"0x2\"")));
    let c = Mock::new("c", |_| slow(3, Step::Error(-32000, "header not found")));
    let q = quorum(QuorumLayer::new(2), &[&a, &b, &c]);
    let err = q
        .oneshot(req("eth_getBalance"))
        .await
        .expect_err("no agreement");
    let obj = err.to_error_object();
    assert_eq!(obj.code(), -32019);
    assert_eq!(err.http_status(), 502);
    let data: serde_json::Value =
        serde_json::from_slice(obj.data().expect("votes").as_bytes()).expect("json");
    assert_eq!(
        data,
        serde_json::json!({"votes": [
            {"backend": "a", "answer": "result \"0x1\""},
            {"backend": "b", "answer": "result \"0x2\""},
            {"backend": "c", "answer": "error -32000: header not found"},
        ]})
    );
    assert!(err.to_string().contains("a: result \"0x1\""), "{err}");
}

#[tokio::test(start_paused = true)]
async fn equal_error_objects_agree() {
    let a = Mock::new("a", |_| Step::Error(3, "execution reverted"));
    let b = Mock::new("b", |_| Step::Error(3, "execution reverted"));
    let c = Mock::ok("c", "\"0x\"");
    let q = quorum(QuorumLayer::new(2), &[&a, &b, &c]);
    let r = q.oneshot(req("eth_call")).await.expect("agreed");
    assert_eq!(r.error_object().map(|e| e.code()), Some(3));
}

#[tokio::test(start_paused = true)]
async fn the_timeout_bounds_the_wait() {
    let a = Mock::ok("a", "1");
    let b = Mock::new("b", |_| Step::Hang);
    let c = Mock::new("c", |_| Step::Hang);
    let q = quorum(
        QuorumLayer::new(2).timeout(Duration::from_secs(1)),
        &[&a, &b, &c],
    );
    let start = Instant::now();
    let err = q.oneshot(req("eth_chainId")).await.expect_err("timeout");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert!(matches!(err, RpcError::QuorumNotReached { .. }), "{err}");
}

#[tokio::test(start_paused = true)]
async fn unsafe_methods_go_to_one_member_only() {
    let a = Mock::ok("a", "\"a\"");
    let b = Mock::ok("b", "\"b\"");
    let c = Mock::ok("c", "\"c\"");
    let q = quorum(QuorumLayer::new(2), &[&a, &b, &c]);
    let r = q.oneshot(req("eth_sendTransaction")).await.expect("answer");
    assert_eq!(result_of(&r), "\"a\"");
    assert_eq!((a.calls(), b.calls(), c.calls()), (1, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn asks_only_n_and_only_healthy_members() {
    let a = Mock::new("a", |n| if n == 0 { Step::Refused } else { Step::Ok("1") });
    let b = Mock::ok("b", "1");
    let c = Mock::ok("c", "1");
    let d = Mock::ok("d", "1");
    let q = quorum(
        QuorumLayer::new(2)
            .of(2)
            .group(rpc_failover::FailoverLayer::new().failure_threshold(1)),
        &[&a, &b, &c, &d],
    );
    // a fails: b alone cannot make 2 of 2.
    let err = q
        .clone()
        .oneshot(req("eth_chainId"))
        .await
        .expect_err("1 of 2");
    assert!(matches!(err, RpcError::QuorumNotReached { .. }));
    // a is out of service now: b and c are asked (b's first call was
    // cancelled before it was sent: a's failure settled the first call).
    q.clone()
        .oneshot(req("eth_chainId"))
        .await
        .expect("b and c agree");
    assert_eq!((a.calls(), c.calls(), d.calls()), (1, 1, 0));
    assert!(b.calls() >= 1);
}

#[test]
fn impossible_quorums_are_refused() {
    let m = || vec![Mock::ok("a", "1").member(), Mock::ok("b", "1").member()];
    assert!(QuorumLayer::new(0).build(m()).is_err());
    assert!(QuorumLayer::new(3).build(m()).is_err());
    assert!(QuorumLayer::new(1).of(3).build(m()).is_err());
    assert!(QuorumLayer::new(2).build(m()).is_ok());
}
