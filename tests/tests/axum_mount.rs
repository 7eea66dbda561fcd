//! The HTTP front mounted inside an axum router, next to the app's own routes,
//! forwarding to a real backend through `HttpBackend`.

use rpc_core::filter::{MethodFilter, MethodFilterLayer};
use rpc_core::server::{HttpFront, ServerConfig};
use rpc_core::HttpBackend;
use serde_json::Value;
use tests::{post_to, FaultUpstream};
use tower::ServiceBuilder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_front_mounts_in_axum() {
    let upstream = FaultUpstream::start().await;
    let backend = HttpBackend::builder("up", upstream.url())
        .build()
        .expect("backend");
    let stack = ServiceBuilder::new()
        .layer(MethodFilterLayer::new(
            MethodFilter::allow_all()
                .deny(["admin_*"])
                .expect("patterns"),
        ))
        .service(backend);
    let front = HttpFront::new(stack, ServerConfig::default());
    let app = axum::Router::new().route_service("/rpc", front);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let (status, _, body) = post_to(
        addr,
        "/rpc",
        r#"{"jsonrpc":"2.0","id":"x","method":"eth_chainId"}"#,
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (v["id"].as_str(), v["result"]["method"].as_str()),
        (Some("x"), Some("eth_chainId"))
    );

    let (status, _, body) = post_to(
        addr,
        "/rpc",
        r#"{"jsonrpc":"2.0","id":1,"method":"admin_peers"}"#,
        &[],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["error"]["code"],
        -32601
    );

    let (status, _, body) = post_to(addr, "/rpc", "{oops", &[]).await;
    assert_eq!(
        (
            status.as_u16(),
            serde_json::from_str::<Value>(&body).expect("json")["error"]["code"].as_i64()
        ),
        (400, Some(-32700))
    );
    server.abort();
}
