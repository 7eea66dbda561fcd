//! The floor for the forwarding-cost benchmark (`bench/cost.sh`): the least a
//! JSON-RPC-aware HTTP proxy can do. hyper 1's server, the request body
//! buffered and parsed as a JSON-RPC call with serde_json (borrowed fields),
//! forwarded over hyper-util's pooled client to one upstream, the answer
//! buffered and parsed the same way, then relayed. No deadlines, limits,
//! metrics or failover: what `rpc-proxy` is compared against.
//!
//! `thin-proxy 127.0.0.1:19005 http://127.0.0.1:19001/`

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::value::RawValue;

#[derive(serde::Deserialize)]
#[allow(dead_code)] // parsed to be checked, not read
struct Call<'a> {
    #[serde(borrow)]
    jsonrpc: &'a str,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: &'a str,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Answer<'a> {
    #[serde(borrow)]
    jsonrpc: &'a str,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

type Pool = Client<HttpConnector, Full<Bytes>>;

fn reply(status: http::StatusCode, body: Bytes) -> http::Response<Full<Bytes>> {
    let mut resp = http::Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn handle(
    pool: Pool,
    upstream: http::Uri,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return Ok(reply(http::StatusCode::BAD_REQUEST, Bytes::new()));
    };
    if serde_json::from_slice::<Call<'_>>(&body).is_err() {
        return Ok(reply(
            http::StatusCode::OK,
            Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#,
            ),
        ));
    }
    let mut up = http::Request::new(Full::new(body));
    *up.method_mut() = http::Method::POST;
    *up.uri_mut() = upstream;
    up.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let answer = match pool.request(up).await {
        Ok(resp) => resp.into_body().collect().await.map(|b| b.to_bytes()).ok(),
        Err(_) => None,
    };
    match answer {
        Some(bytes) if serde_json::from_slice::<Answer<'_>>(&bytes).is_ok() => {
            Ok(reply(http::StatusCode::OK, bytes))
        }
        _ => Ok(reply(http::StatusCode::BAD_GATEWAY, Bytes::new())),
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: thin-proxy LISTEN_ADDR UPSTREAM_URL";
    let addr: SocketAddr = args.next().and_then(|a| a.parse().ok()).expect(usage);
    let upstream: http::Uri = args.next().and_then(|a| a.parse().ok()).expect(usage);
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let pool: Pool = Client::builder(TokioExecutor::new()).build(connector);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("thin-proxy: cannot listen on {addr}: {e}"));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (pool, upstream) = (pool.clone(), upstream.clone());
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req| handle(pool.clone(), upstream.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
