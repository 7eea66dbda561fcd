//! Broadcasts that tell the truth, on both routes (`POST /v1/tx` and
//! `blockchain.transaction.broadcast` through `POST /`): a transaction goes
//! to `--broadcast-to` healthy servers at once, and the outcome is exact.
//!
//! | outcome | when | REST | JSON-RPC |
//! |---|---|---|---|
//! | `accepted` | a server accepted it, or said it already has it (mempool or chain) | 200 | the txid |
//! | `rejected` | servers refused it and none may have taken it | 422 | the first refusal's error object |
//! | `unknown` | no server accepted, but one may have received it (a timeout, a connection lost mid-call) | 504, code `outcome_unknown` | `-32022` with `{"txid"}` in `data` |
//! | `not_sent` | no server could be reached at all: it certainly was not sent | 503 | `-32011` |
//!
//! Every answer carries the txid (computed from the transaction itself), so
//! a wallet can always look it up instead of paying twice.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::join_all;
use http::StatusCode;
use rpc_core::{
    codes, Deadline, Delivery, ErrorObject, Id, Payload, RawJson, Request, Response, RpcError,
};
use rpc_electrum::ElectrumBackend;
use serde_json::{json, Value};
use tower::{Layer, Service, ServiceExt};

use crate::tx;

/// The broadcast method.
pub const METHOD: &str = "blockchain.transaction.broadcast";

/// What became of a broadcast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A server has it.
    Accepted,
    /// Refused, and nothing may have taken it.
    Rejected,
    /// It may have been received; no answer says.
    Unknown,
    /// It certainly was not sent.
    NotSent,
}

/// One broadcast's result, server by server.
#[derive(Debug)]
pub struct Report {
    pub txid: String,
    pub outcome: Outcome,
    accepted: Vec<Value>,
    rejected: Vec<(String, i64, String)>,
    unreachable: Vec<Value>,
}

impl Report {
    /// The REST body.
    pub fn json(&self) -> Value {
        json!({
            "txid": self.txid,
            "outcome": match self.outcome {
                Outcome::Accepted => "accepted",
                Outcome::Rejected => "rejected",
                Outcome::Unknown => "unknown",
                Outcome::NotSent => "not_sent",
            },
            "accepted_by": self.accepted,
            "rejected_by": self.rejected.iter().map(|(s, c, m)| json!({"server": s, "code": c, "message": m})).collect::<Vec<_>>(),
            "unreachable": self.unreachable,
        })
    }

    /// The REST status.
    pub fn status(&self) -> StatusCode {
        match self.outcome {
            Outcome::Accepted => StatusCode::OK,
            Outcome::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
            Outcome::Unknown => StatusCode::GATEWAY_TIMEOUT,
            Outcome::NotSent => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The JSON-RPC answer to call `id`.
    fn response(&self, id: Id) -> Result<Response, RpcError> {
        let txid_json = || RawJson::from_serialize(&self.txid).unwrap_or(RawJson::NULL);
        match self.outcome {
            Outcome::Accepted => Ok(Response::result(id, txid_json())),
            Outcome::Rejected => {
                let (_, code, message) = self.rejected.first().cloned().unwrap_or_default();
                Ok(Response::error(id, ErrorObject::new(code, message)))
            }
            Outcome::Unknown => {
                let data = RawJson::from_serialize(
                    &json!({"txid": self.txid, "unreachable": self.unreachable}),
                )
                .unwrap_or(RawJson::NULL);
                Ok(Response::error(
                    id,
                    ErrorObject::new(
                        codes::OUTCOME_UNKNOWN,
                        "the transaction may have been received; no server confirmed it: look it up by its txid before sending anything else",
                    )
                    .with_data(data),
                ))
            }
            Outcome::NotSent => Err(RpcError::NoBackendAvailable { retry_after: None }),
        }
    }
}

/// Whether a server's refusal means it already has the transaction (which
/// counts as accepted: it is not lost).
pub fn already_known(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("already in block chain")
        || m.contains("already known")
        || m.contains("already-known")
        || m.contains("already in the mempool")
        || m.contains("already-in-mempool")
        || m.contains("txn-already")
        || m.contains("already have transaction")
}

/// Sends transactions to several servers at once.
#[derive(Clone)]
pub struct Broadcaster {
    servers: Vec<ElectrumBackend>,
    /// Which servers are healthy now (in service, current).
    healthy: std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>,
    fan_out: usize,
    timeout: Duration,
}

impl Broadcaster {
    pub fn new(
        servers: Vec<ElectrumBackend>,
        healthy: impl Fn(&str) -> bool + Send + Sync + 'static,
        fan_out: usize,
        timeout: Duration,
    ) -> Self {
        Broadcaster {
            servers,
            healthy: std::sync::Arc::new(healthy),
            fan_out: fan_out.max(1),
            timeout,
        }
    }

    /// Sends `hex` (a transaction whose id is `txid`) to `fan_out` servers:
    /// healthy, trusted and connected ones first, then any connected one.
    pub async fn send(&self, hex: &str, txid: String) -> Report {
        let usable = |s: &&ElectrumBackend| s.is_connected() && s.distrusted().is_none();
        // One server per network first (a transaction should reach
        // independent operators), then the others, in the order given.
        let servers = rpc_electrum::netgroup::spread(&self.servers, |s| s.network_group());
        let mut chosen: Vec<&ElectrumBackend> = servers
            .iter()
            .filter(usable)
            .filter(|s| (self.healthy)(s.name()))
            .take(self.fan_out)
            .collect();
        for s in servers.iter().filter(usable) {
            if chosen.len() >= self.fan_out {
                break;
            }
            if !chosen.iter().any(|c| c.name() == s.name()) {
                chosen.push(s);
            }
        }
        let hex = hex.to_ascii_lowercase();
        let attempts = chosen.iter().map(|server| {
            let server = (*server).clone();
            let params = RawJson::from_serialize(&json!([hex]));
            let timeout = self.timeout;
            async move {
                let name = server.name().to_owned();
                let outcome = match params {
                    Err(e) => Err((Delivery::NotSent, e.to_string())),
                    Ok(params) => {
                        let mut req = Request::new(METHOD)
                            .with_id(Id::from(1u64))
                            .with_params(params);
                        req.extensions_mut().insert(Deadline::after(timeout));
                        match tokio::time::timeout(timeout, server.oneshot(req)).await {
                            Ok(Ok(resp)) => Ok(resp),
                            Ok(Err(e)) => {
                                Err((e.delivery(), e.to_error_object().message().to_owned()))
                            }
                            // The call was made: it may have arrived.
                            Err(_) => Err((Delivery::MaybeSent, "timed out".to_owned())),
                        }
                    }
                };
                (name, outcome)
            }
        });
        let mut report = Report {
            txid,
            outcome: Outcome::NotSent,
            accepted: Vec::new(),
            rejected: Vec::new(),
            unreachable: Vec::new(),
        };
        let mut maybe_sent = false;
        for (name, outcome) in join_all(attempts).await {
            match outcome {
                Ok(resp) => match resp.payload() {
                    Payload::Result(_) => report
                        .accepted
                        .push(json!({"server": name, "already_known": false})),
                    Payload::Error(e) if already_known(e.message()) => report
                        .accepted
                        .push(json!({"server": name, "already_known": true})),
                    Payload::Error(e) => {
                        report
                            .rejected
                            .push((name, e.code(), e.message().to_owned()))
                    }
                },
                Err((delivery, why)) => {
                    maybe_sent |= delivery == Delivery::MaybeSent;
                    let delivery = match delivery {
                        Delivery::NotSent => "not_sent",
                        Delivery::MaybeSent => "maybe_sent",
                    };
                    report
                        .unreachable
                        .push(json!({"server": name, "message": why, "delivery": delivery}));
                }
            }
        }
        report.outcome = if !report.accepted.is_empty() {
            Outcome::Accepted
        } else if maybe_sent {
            Outcome::Unknown
        } else if !report.rejected.is_empty() {
            Outcome::Rejected
        } else {
            Outcome::NotSent
        };
        report
    }
}

/// Sends `blockchain.transaction.broadcast` calls through the
/// [`Broadcaster`] instead of the stack (one server at a time, with retries
/// that could turn "accepted" into "already in block chain").
#[derive(Clone)]
pub struct BroadcastLayer(pub Broadcaster);

impl<S> Layer<S> for BroadcastLayer {
    type Service = BroadcastRoute<S>;
    fn layer(&self, inner: S) -> BroadcastRoute<S> {
        BroadcastRoute {
            inner,
            broadcaster: self.0.clone(),
        }
    }
}

/// See [`BroadcastLayer`].
#[derive(Clone)]
pub struct BroadcastRoute<S> {
    inner: S,
    broadcaster: Broadcaster,
}

type BoxFut = Pin<Box<dyn Future<Output = Result<Response, RpcError>> + Send>>;

impl<S> Service<Request> for BroadcastRoute<S>
where
    S: Service<Request, Response = Response, Error = RpcError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = RpcError;
    type Future = BoxFut;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> BoxFut {
        if req.method() != METHOD {
            return Box::pin(self.inner.call(req));
        }
        let broadcaster = self.broadcaster.clone();
        Box::pin(async move {
            let id = req.id().cloned().unwrap_or_default();
            let hex = req
                .params()
                .and_then(|p| serde_json::from_slice::<(String,)>(p.as_bytes()).ok())
                .map(|(h,)| h);
            let decoded = hex
                .as_deref()
                .and_then(tx::from_hex)
                .and_then(|raw| tx::decode(&raw).ok());
            let (Some(hex), Some(decoded)) = (hex, decoded) else {
                return Ok(Response::error(
                    id,
                    ErrorObject::new(codes::INVALID_PARAMS, "expected [raw transaction hex]"),
                ));
            };
            let txid = decoded["txid"].as_str().unwrap_or_default().to_owned();
            broadcaster.send(&hex, txid).await.response(id)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn already_known_refusals_count_as_accepted() {
        for m in [
            "the transaction was rejected by network rules.\n\ntransaction already in block chain",
            "txn-already-known",
            "txn-already-in-mempool",
            "Transaction already in the mempool",
        ] {
            assert!(already_known(m), "{m}");
        }
        assert!(!already_known("bad-txns-inputs-missingorspent"));
    }

    fn report(outcome: Outcome) -> Report {
        Report {
            txid: "ab".repeat(32),
            outcome,
            accepted: Vec::new(),
            rejected: vec![("a".into(), 1, "bad-txns".into())],
            unreachable: vec![json!({"server": "b", "delivery": "maybe_sent"})],
        }
    }

    #[test]
    fn each_outcome_has_its_own_status_and_answer_and_names_the_txid() {
        let id = Id::from(3u64);
        let r = report(Outcome::Accepted);
        assert_eq!(r.status(), StatusCode::OK);
        let ok = r.response(id.clone()).expect("an answer");
        assert_eq!(
            ok.result_json().map(|j| j.as_bytes().to_vec()),
            Some(format!("\"{}\"", "ab".repeat(32)).into_bytes())
        );
        let unknown = report(Outcome::Unknown);
        assert_eq!(unknown.status(), StatusCode::GATEWAY_TIMEOUT);
        let e = unknown.response(id.clone()).expect("an answer");
        let obj = e.error_object().expect("an error");
        assert_eq!(obj.code(), codes::OUTCOME_UNKNOWN);
        assert!(obj
            .data()
            .is_some_and(|d| String::from_utf8_lossy(d.as_bytes()).contains(&"ab".repeat(32))));
        assert_eq!(unknown.json()["outcome"], "unknown");
        let rejected = report(Outcome::Rejected);
        assert_eq!(rejected.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            rejected
                .response(id.clone())
                .expect("an answer")
                .error_object()
                .map(|e| e.code()),
            Some(1)
        );
        let not_sent = report(Outcome::NotSent);
        assert_eq!(not_sent.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(matches!(
            not_sent.response(id),
            Err(RpcError::NoBackendAvailable { .. })
        ));
        assert_eq!(not_sent.json()["txid"], "ab".repeat(32));
    }
}
