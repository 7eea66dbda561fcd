//! Filters pinned to the member that made them, under round-robin, with
//! two members that hand out the same filter ids.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{result_of, MemberOf, Mock};
use rpc_core::protocol::Protocol;
use rpc_core::{Id, RawJson, Request, Response, RpcError};
use rpc_failover::{FailoverLayer, HandleLayer, Spread};
use tower::{Layer, ServiceExt};

/// A node: `eth_newFilter` answers "0x1" on every node (ids collide
/// across nodes); `eth_getFilterChanges [id]` answers "NAME saw ID";
/// `down` makes every call fail as not sent.
fn node(name: &'static str, down: Arc<AtomicBool>) -> Mock {
    Mock::answering(name, move |r: &Request| {
        if down.load(Ordering::SeqCst) {
            return Err(RpcError::Connect {
                backend: name.into(),
                source: "down".into(),
            });
        }
        let id = r.id().cloned().unwrap_or_default();
        let text = match r.method() {
            "eth_newFilter" | "eth_newBlockFilter" => "\"0x1\"".to_owned(),
            "eth_uninstallFilter" => "true".to_owned(),
            _ => {
                let params = r.params().map(|p| p.to_string()).unwrap_or_default();
                format!("\"{name} saw {}\"", params.replace('"', "'"))
            }
        };
        Ok(Response::result(
            id,
            RawJson::from_bytes(text).expect("json"),
        ))
    })
}

fn call(method: &str, params: &str) -> Request {
    Request::new(method)
        .with_id(Id::from(1u64))
        .with_params(RawJson::from_bytes(params.to_owned()).expect("json"))
}

#[tokio::test(start_paused = true)]
async fn a_filter_is_used_on_the_node_that_made_it_whatever_the_spread() {
    let (a_down, b_down) = (Arc::default(), Arc::default());
    let a = node("a", Arc::clone(&a_down));
    let b = node("b", Arc::clone(&b_down));
    let group = FailoverLayer::new()
        .spread(Spread::RoundRobin)
        .build(vec![a.member(), b.member()])
        .expect("group");
    let svc = HandleLayer::new(&Protocol::ethereum()).layer(group);

    // Two filters: round-robin puts them on different nodes, which both
    // call theirs "0x1"; the clients get distinct ids.
    let first = result_of(
        &svc.clone()
            .oneshot(call("eth_newFilter", "[{}]"))
            .await
            .expect("ok"),
    );
    let second = result_of(
        &svc.clone()
            .oneshot(call("eth_newBlockFilter", "[]"))
            .await
            .expect("ok"),
    );
    assert_ne!(first, second);
    assert!(first.starts_with("\"0x") && first.len() == 36, "{first}");
    let owner = |answer: &str| {
        answer
            .split(' ')
            .next()
            .unwrap_or("")
            .trim_matches('"')
            .to_owned()
    };
    let mut owners = Vec::new();
    for id in [&first, &second] {
        let mut seen = Vec::new();
        for _ in 0..6 {
            let r = svc
                .clone()
                .oneshot(call("eth_getFilterChanges", &format!("[{id}]")))
                .await
                .expect("answer");
            let text = result_of(&r);
            // The node got its own id back, never the client's.
            assert!(text.ends_with("saw ['0x1']\""), "{text}");
            seen.push(owner(&text));
        }
        seen.dedup();
        assert_eq!(seen.len(), 1, "one node answered every poll: {seen:?}");
        owners.push(seen[0].clone());
    }
    assert_ne!(owners[0], owners[1], "round-robin made them on both nodes");

    // An unknown id: "filter not found", no node asked.
    let calls = a.calls() + b.calls();
    let r = svc
        .clone()
        .oneshot(call("eth_getFilterChanges", "[\"0xdeadbeef\"]"))
        .await
        .expect("answer");
    assert_eq!(result_of(&r), "error -32000");
    assert_eq!(a.calls() + b.calls(), calls);

    // The node holding the first filter goes down: the call fails as
    // unavailable (the filter is kept for when it is back), and is never
    // sent to the other node, whose "0x1" is another filter.
    let (down, other) = if owners[0] == "a" {
        (&a_down, &b)
    } else {
        (&b_down, &a)
    };
    down.store(true, Ordering::SeqCst);
    let before = other.calls();
    let err = svc
        .clone()
        .oneshot(call("eth_getFilterLogs", &format!("[{first}]")))
        .await
        .expect_err("unavailable");
    assert!(matches!(err, RpcError::Connect { .. }), "{err}");
    assert_eq!(other.calls(), before, "never sent to the other node");
    down.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(30)).await;
    let r = svc
        .clone()
        .oneshot(call("eth_getFilterLogs", &format!("[{first}]")))
        .await
        .expect("back");
    let text = result_of(&r);
    assert!(text.starts_with(&format!("\"{}", owners[0])), "{text}");

    // Uninstalled: forgotten.
    let r = svc
        .clone()
        .oneshot(call("eth_uninstallFilter", &format!("[{second}]")))
        .await
        .expect("answer");
    assert_eq!(result_of(&r), "true");
    let r = svc
        .clone()
        .oneshot(call("eth_getFilterChanges", &format!("[{second}]")))
        .await
        .expect("answer");
    assert_eq!(result_of(&r), "error -32000");
}

#[tokio::test(start_paused = true)]
async fn unused_filters_expire_and_the_table_is_bounded() {
    let up = Arc::default();
    let group = FailoverLayer::new()
        .build(vec![node("a", up).member()])
        .expect("group");
    let svc = HandleLayer::new(&Protocol::ethereum())
        .ttl(Duration::from_secs(60))
        .max_handles(2)
        .layer(group);
    let new = || async {
        result_of(
            &svc.clone()
                .oneshot(call("eth_newFilter", "[{}]"))
                .await
                .expect("ok"),
        )
    };
    let poll = |id: String| {
        let svc = svc.clone();
        async move {
            result_of(
                &svc.oneshot(call("eth_getFilterChanges", &format!("[{id}]")))
                    .await
                    .expect("answer"),
            )
        }
    };
    let old = new().await;
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(
        poll(old).await,
        "error -32000",
        "expired after its TTL unused"
    );
    // Three filters in a table of two: the least recently used goes.
    let (x, y) = (new().await, new().await);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(poll(x.clone()).await.contains("saw"));
    let z = new().await;
    assert!(poll(x).await.contains("saw"));
    assert!(poll(z).await.contains("saw"));
    assert_eq!(poll(y).await, "error -32000");
}
