//! The gateway's own routes, as an HTTP layer in front of rpc-core's JSON-RPC
//! front: `/v1/...` (REST and events), `/healthz` and `/metrics` are answered
//! here; everything else (`POST /`) goes to the front.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use rpc_electrum::chain::Verdict;
use serde_json::{json, Value};
use tower::{Layer, Service};

use crate::Gateway;

/// Every response body of the gateway (full bodies and event streams).
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A JSON response.
pub fn json_response(status: StatusCode, value: &Value) -> http::Response<Body> {
    let mut resp = http::Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A JSON error: `{"error": {"code": CODE, "message": MESSAGE}}`.
pub fn error_response(
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
) -> http::Response<Body> {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message.into()}}),
    )
}

/// Puts the gateway's routes in front of the JSON-RPC front.
pub struct RoutesLayer {
    gateway: Arc<Gateway>,
}

impl RoutesLayer {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        RoutesLayer { gateway }
    }
}

impl<S> Layer<S> for RoutesLayer {
    type Service = Routes<S>;

    fn layer(&self, inner: S) -> Routes<S> {
        Routes {
            inner,
            gateway: self.gateway.clone(),
        }
    }
}

/// The service built by [`RoutesLayer`].
#[derive(Clone)]
pub struct Routes<S> {
    inner: S,
    gateway: Arc<Gateway>,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

impl<S> Service<http::Request<Incoming>> for Routes<S>
where
    S: Service<http::Request<Incoming>, Response = http::Response<Full<Bytes>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Incoming>) -> BoxFuture {
        let gateway = self.gateway.clone();
        let path = req.uri().path();
        if path == "/metrics" || path == "/healthz" || path.starts_with("/v1/") {
            return Box::pin(async move { Ok(route(gateway, req).await) });
        }
        let front = self.inner.clone().call(req);
        Box::pin(async move {
            let resp = front.await?;
            Ok(resp.map(|b| b.boxed_unsync()))
        })
    }
}

async fn route(gw: Arc<Gateway>, req: http::Request<Incoming>) -> http::Response<Body> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::GET, "/metrics") => match &gw.metrics {
            Some(handle) => {
                let mut resp = http::Response::new(full(handle.render()));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                resp
            }
            None => error_response(StatusCode::NOT_FOUND, "not_found", "metrics are off"),
        },
        (Method::GET, "/healthz") => health(&gw),
        (Method::GET, _) | (Method::POST, _) => crate::rest::handle(gw, req).await,
        _ => error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use GET (or POST /v1/tx)",
        ),
    }
}

/// 200 while at least one server is connected, in service, current (not
/// lagging) and trusted, and (with `--verify spv`) the servers agree on a
/// verified tip; 503 otherwise (`"status": "verifying"` while headers are
/// being verified). The body lists every server.
fn health(gw: &Gateway) -> http::Response<Body> {
    let mut healthy = false;
    let servers: Vec<Value> = gw
        .group
        .members()
        .map(|m| {
            let connected = gw
                .servers
                .iter()
                .find(|s| s.name() == &*m.name)
                .is_some_and(|s| s.is_connected());
            let backend = gw.servers.iter().find(|s| s.name() == &*m.name);
            let distrusted = backend.and_then(|b| b.distrusted());
            let ok = connected && m.in_service && !m.lagging && distrusted.is_none();
            healthy |= ok;
            let mut entry = json!({
                "name": &*m.name,
                "subscriptions": backend.map(|b| b.subscriptions()),
                "connected": connected,
                "in_service": m.in_service,
                "lagging": m.lagging,
                "tip": m.head,
                "healthy": ok,
            });
            if let Some(v) = &gw.verifier {
                let verdict = v
                    .servers()
                    .into_iter()
                    .find(|s| s.name == m.name)
                    .map(|s| s.verdict);
                entry["verified"] = Value::String(match verdict {
                    Some(Verdict::OnChain) => "on_chain".to_owned(),
                    Some(Verdict::Fork { .. }) => "fork".to_owned(),
                    Some(Verdict::Lied(why)) => format!("lied: {why}"),
                    _ => "unknown".to_owned(),
                });
            }
            if let Some(why) = distrusted {
                entry["distrusted"] = Value::String(why.to_string());
            }
            if let Some(why) = backend
                .filter(|_| !connected)
                .and_then(|b| b.last_failure())
            {
                entry["last_failure"] = Value::String(why.to_string());
            }
            entry
        })
        .collect();
    // With verification, ready once the servers agree on a verified tip.
    let verifying = gw
        .verifier
        .as_ref()
        .is_some_and(|v| v.agreed_tip().is_none());
    let text = match (healthy, verifying) {
        (false, _) => "unavailable",
        (true, true) => "verifying",
        (true, false) => "ok",
    };
    let status = if text == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body =
        json!({"status": text, "servers": servers, "watched_addresses": gw.events.watched()});
    if let Some(v) = &gw.verifier {
        body["verified_tip"] = json!(v.tip_height());
        body["agreed_tip"] = json!(v.agreed_tip());
    }
    json_response(status, &body)
}
