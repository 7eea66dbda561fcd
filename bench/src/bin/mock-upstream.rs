//! A fast JSON-RPC upstream for the benchmark rig: answers every call at once
//! with a small fixed result under the caller's id (batches too), over
//! HTTP/1.1 keep-alive. `mock-upstream 127.0.0.1:19001`.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::value::RawValue;

#[derive(serde::Deserialize)]
struct Call<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
}

fn answer(call: &Call<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(call.id.map_or("null", |r| r.get()).as_bytes());
    out.extend_from_slice(br#","result":"0x1b4"}"#);
}

async fn handle(
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(64);
    if body.first() == Some(&b'[') {
        let calls: Vec<Call<'_>> = serde_json::from_slice(&body).unwrap_or_default();
        out.push(b'[');
        for (i, c) in calls.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            answer(c, &mut out);
        }
        out.push(b']');
    } else {
        let call = serde_json::from_slice(&body).unwrap_or(Call { id: None });
        answer(&call, &mut out);
    }
    let mut resp = http::Response::new(Full::new(Bytes::from(out)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

#[tokio::main]
async fn main() {
    let addr: SocketAddr = match std::env::args().nth(1).map(|a| a.parse()) {
        Some(Ok(a)) => a,
        _ => {
            eprintln!("usage: mock-upstream 127.0.0.1:PORT");
            std::process::exit(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mock-upstream: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!("mock-upstream listening on http://{addr}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(handle);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
