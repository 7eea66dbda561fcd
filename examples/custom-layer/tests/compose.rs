//! The custom layer and adapter in a stack with the crate family's layers.

use custom_layer::{MaxParamsLayer, StaticBackend};
use rpc_core::{Id, RawJson, Request, RpcError, ServedBy};
use rpc_failover::{FailoverLayer, Member, RetryLayer};
use tower::{ServiceBuilder, ServiceExt};

fn request(method: &str, params: &'static str) -> Request {
    Request::new(method)
        .with_id(Id::from(7u64))
        .with_params(RawJson::from_static(params).expect("JSON"))
}

/// Retry over the custom layer over a one-member group of the adapter,
/// which answers `eth_call` with `"0x"`; params over 16 bytes refused.
fn stack() -> impl rpc_core::JsonRpcBatchService {
    let node =
        StaticBackend::new("a").answer("eth_call", RawJson::from_static("\"0x\"").expect("JSON"));
    let group = FailoverLayer::new()
        .build(vec![Member::new("a", node)])
        .expect("group");
    ServiceBuilder::new()
        .layer(RetryLayer::new())
        .layer(MaxParamsLayer::new(16))
        .service(group)
}

#[tokio::test]
async fn the_layer_refuses_large_params_before_the_backend() {
    let svc = stack();

    let ok = svc
        .clone()
        .oneshot(request("eth_call", "[]"))
        .await
        .expect("answer");
    assert_eq!(ok.result_json().map(|r| r.as_bytes()), Some(&b"\"0x\""[..]));
    assert_eq!(ok.id(), &Id::from(7u64));
    assert_eq!(ok.extensions().get::<ServedBy>().map(|s| &*s.0), Some("a"));

    let err = svc
        .oneshot(request(
            "eth_call",
            r#"["a long string, longer than sixteen bytes"]"#,
        ))
        .await
        .expect_err("refused");
    assert!(matches!(err, RpcError::InvalidParams { .. }), "{err}");
    assert_eq!(err.to_error_object().code(), -32602);
}

#[tokio::test]
async fn the_adapter_answers_unknown_methods_with_its_own_error() {
    let svc = StaticBackend::new("a");
    let r = svc.oneshot(request("nope", "[]")).await.expect("an answer");
    assert_eq!(r.error_object().map(|e| e.code()), Some(-32601));
}

/// A client batch through the custom layer, the group and the adapter as
/// one unit: the refusal answered in place, the other calls answered by
/// the backend in one go, in the client's order.
#[tokio::test]
async fn a_batch_goes_through_the_layer_and_the_adapter_whole() {
    let svc = stack();
    let calls = vec![
        request("eth_call", "[]").with_id(Id::from(1u64)),
        request(
            "eth_call",
            r#"["a long string, longer than sixteen bytes"]"#,
        )
        .with_id(Id::from(2u64)),
        request("eth_call", "[]").with_id(Id::from(3u64)),
    ];
    let answers = rpc_core::batch::call_batch(svc, rpc_core::Batch::new(calls)).await;
    let ok = |i: usize| {
        answers[i]
            .as_ref()
            .and_then(|a| a.as_ref().ok())
            .expect("answer")
    };
    assert_eq!(ok(0).id(), &Id::from(1u64));
    assert_eq!(ok(2).id(), &Id::from(3u64));
    assert_eq!(
        ok(2).extensions().get::<ServedBy>().map(|s| &*s.0),
        Some("a")
    );
    assert!(matches!(
        answers[1],
        Some(Err(RpcError::InvalidParams { .. }))
    ));
}
