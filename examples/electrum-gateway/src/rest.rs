//! The REST API under `/v1` (documented in the example's README and
//! `openapi.yaml`). Reads go through the same stack as JSON-RPC (allow-list,
//! cache, retry, failover with head tracking); a broadcast goes to several
//! servers at once.

use std::sync::Arc;

use futures_util::StreamExt as _;
use http::StatusCode;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use rpc_core::{Deadline, Id, Payload, RawJson, Request, RpcError, ServedBy};
use rpc_electrum::address::{self, AddressError};
use rpc_electrum::chain::{ChainVerifier, VerifyError};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::args::VerifyArg;
use crate::crosscheck::{self, Checked};
use crate::http::{error_response, json_response, Body};
use crate::{tx, Gateway};

/// How long a `POST` body may take to arrive.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The largest transaction accepted for broadcast (hex or JSON body).
const MAX_TX_BODY: usize = 2 * 1024 * 1024;

/// Why a REST call failed, with the HTTP status it maps to.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn into_response(self) -> http::Response<Body> {
        error_response(self.status, self.code, self.message)
    }

    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

type Reply = Result<http::Response<Body>, ApiError>;

pub async fn handle(gw: Arc<Gateway>, req: http::Request<Incoming>) -> http::Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let parts: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    let post = req.method() == http::Method::POST;
    let reply = match (post, parts.as_slice()) {
        (false, ["address", a, "balance"]) => balance(&gw, &percent_decode(a)).await,
        (false, ["address", a, "utxos"]) => utxos(&gw, &percent_decode(a)).await,
        (false, ["address", a, "history"]) => history(&gw, &percent_decode(a)).await,
        (false, ["tx", txid]) => get_tx(&gw, txid).await,
        (true, ["tx"]) => broadcast(&gw, req.into_body()).await,
        (false, ["tip"]) => tip(&gw).await,
        (false, ["block", height, "header"]) => header(&gw, height).await,
        (false, ["events"]) => Ok(crate::events::stream(&gw, &query).await),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route {path} (see GET /v1/... in the README)"),
        )),
    };
    reply.unwrap_or_else(ApiError::into_response)
}

/// Percent-decodes a path segment (cashaddr's `:` may arrive as `%3A`);
/// invalid escapes stay as they are.
pub fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The Electrum script hash of an address (already percent-decoded), or a 400.
pub fn scripthash_of(gw: &Gateway, address: &str) -> Result<String, ApiError> {
    address::scripthash(address, gw.args.network).map_err(|e| {
        let message = match e {
            AddressError::WrongNetwork => format!(
                "`{address}` is an address for another network (this gateway serves {:?})",
                gw.args.network
            ),
            other => format!("`{address}`: {other}"),
        };
        ApiError::new(StatusCode::BAD_REQUEST, "bad_address", message)
    })
}

/// One call through the stack; the result as JSON.
async fn call(gw: &Gateway, method: &str, params: Value) -> Result<Value, ApiError> {
    call_served(gw, method, params).await.map(|(v, _)| v)
}

/// One call through the stack; the result as JSON and the server that gave
/// it (when a group says; a cache hit names none).
async fn call_served(
    gw: &Gateway,
    method: &str,
    params: Value,
) -> Result<(Value, Option<Arc<str>>), ApiError> {
    call_through(gw, method, params, false).await
}

/// [`call_served`], optionally past the cache (`refresh`: the kept answer
/// was found false; the new one replaces it).
async fn call_through(
    gw: &Gateway,
    method: &str,
    params: Value,
    refresh: bool,
) -> Result<(Value, Option<Arc<str>>), ApiError> {
    let params = RawJson::from_serialize(&params)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let mut req = Request::new(method)
        .with_id(Id::from(1u64))
        .with_params(params);
    req.extensions_mut()
        .insert(Deadline::after(gw.args.call_deadline()));
    if refresh {
        req.extensions_mut().insert(rpc_cache::Refresh);
    }
    match gw.stack.clone().oneshot(req).await {
        Ok(resp) => match resp.payload() {
            Payload::Result(raw) => {
                let served = resp.extensions().get::<ServedBy>().map(|s| s.0.clone());
                raw.deserialize::<Value>()
                    .map(|v| (v, served))
                    .map_err(|e| {
                        ApiError::new(StatusCode::BAD_GATEWAY, "bad_backend_answer", e.to_string())
                    })
            }
            Payload::Error(e) => {
                let message = e.message().to_owned();
                let lower = message.to_ascii_lowercase();
                if lower.contains("no such")
                    || lower.contains("not found")
                    || lower.contains("height") && lower.contains("out of range")
                {
                    Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", message))
                } else {
                    Err(ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "server_error",
                        message,
                    ))
                }
            }
        },
        Err(e) => Err(rpc_error(&e)),
    }
}

fn rpc_error(e: &RpcError) -> ApiError {
    let status = match e {
        RpcError::Timeout { .. } | RpcError::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    // The error object's message: names servers, never their addresses.
    ApiError::new(
        status,
        "unavailable",
        e.to_error_object().message().to_owned(),
    )
}

/// A balance or UTXO query: cross-checked with `--verify cross-check`,
/// else one server's word through the stack. The second value is what
/// `"verified"` says (`None` with `--verify off`).
async fn unprovable(
    gw: &Gateway,
    method: &'static str,
    sh: &str,
    normalize: fn(&Value) -> Value,
) -> Result<(Value, Option<&'static str>), ApiError> {
    if gw.args.verify == VerifyArg::CrossCheck {
        let params = RawJson::from_serialize(&json!([sh])).map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })?;
        if let Some((v, checked)) = crosscheck::cross_check(gw, method, params, normalize).await? {
            return Ok((v, Some(checked.as_str())));
        }
    }
    let v = call(gw, method, json!([sh])).await?;
    let said = (gw.args.verify != VerifyArg::Off).then_some(Checked::Unverified.as_str());
    Ok((v, said))
}

async fn balance(gw: &Gateway, address: &str) -> Reply {
    let sh = scripthash_of(gw, address)?;
    let (v, verified) = unprovable(
        gw,
        "blockchain.scripthash.get_balance",
        &sh,
        crosscheck::as_is,
    )
    .await?;
    let mut body = json!({
        "address": address,
        "scripthash": sh,
        "confirmed": v["confirmed"],
        "unconfirmed": v["unconfirmed"],
    });
    if let Some(said) = verified {
        body["verified"] = json!(said);
    }
    Ok(json_response(StatusCode::OK, &body))
}

async fn utxos(gw: &Gateway, address: &str) -> Reply {
    let sh = scripthash_of(gw, address)?;
    let (v, verified) = unprovable(
        gw,
        "blockchain.scripthash.listunspent",
        &sh,
        crosscheck::as_set,
    )
    .await?;
    let list: Vec<Value> = v
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|u| json!({"txid": u["tx_hash"], "vout": u["tx_pos"], "value": u["value"], "height": u["height"]}))
                .collect()
        })
        .unwrap_or_default();
    let mut body = json!({"address": address, "utxos": list});
    if let Some(said) = verified {
        body["verified"] = json!(said);
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// At most this many of a history's most recent confirmed entries are
/// proven by merkle proof per call (older ones say `unverified`); proofs of
/// settled blocks are cached, so a repeated call costs no server calls.
const MAX_PROVEN_ENTRIES: usize = 200;

/// Merkle proofs fetched at once for one history.
const PROOFS_AT_ONCE: usize = 16;

async fn history(gw: &Gateway, address: &str) -> Reply {
    let sh = scripthash_of(gw, address)?;
    // A history with a confirmation no server can prove came from a liar:
    // it is distrusted (out of rotation) and the history asked again.
    for attempt in 0..2 {
        // The second time past the cache: the kept history was false.
        let (v, served_by) = call_through(
            gw,
            "blockchain.scripthash.get_history",
            json!([sh]),
            attempt > 0,
        )
        .await?;
        let items: Vec<Value> = v.as_array().cloned().unwrap_or_default();
        // Which entries to prove: the most recent confirmed ones.
        let confirmed: Vec<usize> = items
            .iter()
            .enumerate()
            .filter(|(_, t)| t["height"].as_i64().is_some_and(|h| h > 0))
            .map(|(i, _)| i)
            .collect();
        let to_prove = &confirmed[confirmed.len().saturating_sub(MAX_PROVEN_ENTRIES)..];
        // Proven at most PROOFS_AT_ONCE at a time (a server may take a
        // moment per answer; settled proofs come from the cache).
        let statuses: Vec<Proven> = match &gw.verifier {
            None => Vec::new(),
            Some(verifier) => {
                let jobs: Vec<(String, u32)> = to_prove
                    .iter()
                    .map(|&i| {
                        let t = &items[i];
                        let txid = t["tx_hash"].as_str().unwrap_or("").to_owned();
                        (txid, t["height"].as_i64().unwrap_or(0) as u32)
                    })
                    .collect();
                futures_util::stream::iter(jobs)
                    .map(|(txid, height)| async move { prove(gw, verifier, &txid, height).await })
                    .buffered(PROOFS_AT_ONCE)
                    .collect()
                    .await
            }
        };
        let false_entry = statuses.iter().find_map(|p| match p {
            Proven::False(why) => Some(why.clone()),
            _ => None,
        });
        let list: Vec<Value> = items
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut e = json!({"txid": t["tx_hash"], "height": t["height"]});
                if let Some(fee) = t.get("fee") {
                    e["fee"] = fee.clone();
                }
                if gw.verifier.is_some() {
                    let proven = to_prove
                        .iter()
                        .position(|&j| j == i)
                        .and_then(|k| statuses.get(k));
                    e["verified"] = json!(match proven {
                        Some(Proven::Spv) => "spv",
                        _ => "unverified",
                    });
                }
                e
            })
            .collect();
        match (false_entry, served_by, &gw.verifier) {
            (None, _, _) => {
                return Ok(json_response(
                    StatusCode::OK,
                    &json!({"address": address, "history": list}),
                ))
            }
            (Some(why), Some(server), Some(_)) => distrust(gw, &server, &why),
            // A cached history (no server named): asked again past the
            // cache; its server was caught when it was first served.
            (Some(_), None, Some(_)) if attempt == 0 => {}
            (Some(why), _, _) => {
                return Err(ApiError::new(StatusCode::BAD_GATEWAY, "unverifiable", why))
            }
        }
    }
    Err(ApiError::new(
        StatusCode::BAD_GATEWAY,
        "unverifiable",
        "two servers in a row answered with a history whose confirmations no server can prove",
    ))
}

/// What a confirmation's check found.
enum Proven {
    /// Proven by a merkle proof against a verified header.
    Spv,
    /// Not checkable (yet): unconfirmed, above the agreed tip, or old.
    Unverified,
    /// No server could prove it: the entry is false.
    False(String),
}

/// Proves that `txid` is in the block at `height`: a proof through the
/// stack (cached once settled), else from each trusted server directly.
async fn prove(gw: &Gateway, verifier: &ChainVerifier, txid: &str, height: u32) -> Proven {
    if verifier.agreed_tip().is_none_or(|tip| height > tip) {
        return Proven::Unverified;
    }
    // At or below the checkpoint: its header proven against the
    // configured checkpoint root first, else nothing to check against.
    if height <= verifier.checkpoint().height
        && (verifier.proves_old_headers().is_none()
            || !prove_old_header(gw, verifier, height).await)
    {
        return Proven::Unverified;
    }
    let params = json!([txid, height]);
    if let Ok((proof, served_by)) =
        call_served(gw, "blockchain.transaction.get_merkle", params).await
    {
        match verifier.check_proof(txid, height, proof.to_string().as_bytes()) {
            Ok(()) => return Proven::Spv,
            Err(VerifyError::Proof(_)) => {
                if let Some(server) = served_by {
                    let why = format!("its merkle proof for {txid} at {height} does not hold");
                    distrust(gw, &server, &why);
                }
            }
            // No verified header there (yet): nothing to hold it against.
            Err(VerifyError::NoHeader(_)) => return Proven::Unverified,
            Err(_) => {}
        }
    }
    for server in gw.servers.iter().filter(|s| s.distrusted().is_none()) {
        if verifier.verify_tx(server, txid, height).await.is_ok() {
            return Proven::Spv;
        }
    }
    Proven::False(format!(
        "no server proves that {txid} is in the block at {height}"
    ))
}

/// Proves the header at `height` (at or below the checkpoint) from the
/// first trusted server that can; a server whose proof does not lead to
/// the configured root is distrusted.
async fn prove_old_header(gw: &Gateway, verifier: &ChainVerifier, height: u32) -> bool {
    for server in gw.servers.iter().filter(|s| s.distrusted().is_none()) {
        match verifier.prove_old_header(server, height).await {
            Ok(_) => return true,
            Err(VerifyError::Proof(_)) => {
                let why =
                    format!("its proof of header {height} does not lead to the checkpoint's root");
                distrust(gw, server.name(), &why);
            }
            Err(_) => {}
        }
    }
    false
}

fn distrust(gw: &Gateway, server: &str, why: &str) {
    if let Some(s) = gw.servers.iter().find(|s| s.name() == server) {
        tracing::warn!(server, why, "electrum server distrusted");
        s.distrust(why);
    }
}

fn bad_txid(txid: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_txid",
        format!("`{txid}` is not a transaction id (64 hex digits)"),
    )
}

async fn get_tx(gw: &Gateway, txid: &str) -> Reply {
    if !tx::is_txid(txid) {
        return Err(bad_txid(txid));
    }
    let txid = txid.to_ascii_lowercase();
    let v = call(gw, "blockchain.transaction.get", json!([txid, false])).await?;
    let hex = v.as_str().ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "bad_backend_answer",
            "not a hex string",
        )
    })?;
    let raw = tx::from_hex(hex)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_GATEWAY, "bad_backend_answer", "not hex"))?;
    let mut decoded = tx::decode(&raw)
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "bad_backend_answer", e.to_string()))?;
    if decoded["txid"] != txid.as_str() {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "bad_backend_answer",
            "the server answered with another transaction",
        ));
    }
    decoded["hex"] = Value::String(hex.to_owned());
    Ok(json_response(StatusCode::OK, &decoded))
}

async fn tip(gw: &Gateway) -> Reply {
    // Verified: the tip `agree` servers report on the verified chain, with
    // its verified header; never one server's word.
    if let Some(verifier) = &gw.verifier {
        let Some(height) = verifier.agreed_tip() else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_agreed_tip",
                "the servers have not agreed on a verified tip yet",
            ));
        };
        if let Some(header) = verifier.header(height) {
            return Ok(json_response(
                StatusCode::OK,
                &json!({"height": height, "header": header_hex(&header), "verified": "spv"}),
            ));
        }
        // At the checkpoint itself (no header held): the servers' word.
    }
    let v = call(gw, "blockchain.headers.subscribe", json!([])).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"height": v["height"], "header": v["hex"]}),
    ))
}

async fn header(gw: &Gateway, height: &str) -> Reply {
    let h: u64 = height.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_height",
            format!("`{height}` is not a block height"),
        )
    })?;
    // A verified header, when there is one up to the agreed tip.
    if let Some(verifier) = &gw.verifier {
        let agreed = verifier.agreed_tip().map_or(0, u64::from);
        let verified = u32::try_from(h)
            .ok()
            .filter(|_| h <= agreed)
            .and_then(|h| verifier.header(h));
        if let Some(header) = verified {
            return Ok(json_response(
                StatusCode::OK,
                &json!({"height": h, "header": header_hex(&header), "verified": "spv"}),
            ));
        }
    }
    let v = call(gw, "blockchain.block.header", json!([h])).await?;
    let mut body = json!({"height": h, "header": v});
    if let Some(verifier) = &gw.verifier {
        // The checkpoint's (or genesis) header is checked against its
        // hash; others outside the verified chain are one server's word.
        let cp = verifier.checkpoint();
        let is_checkpoint = h == u64::from(cp.height)
            && v.as_str()
                .and_then(rpc_electrum::chain::hex_bytes)
                .is_some_and(|raw| rpc_electrum::chain::sha256d(&raw) == cp.hash);
        if h == u64::from(cp.height) && !is_checkpoint {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "bad_backend_answer",
                "the server's header does not hash to the checkpoint",
            ));
        }
        body["verified"] = json!(if is_checkpoint { "spv" } else { "unverified" });
    }
    Ok(json_response(StatusCode::OK, &body))
}

fn header_hex(header: &rpc_electrum::chain::Header) -> String {
    header
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `POST /v1/tx`: the transaction goes to up to `--broadcast-to` healthy
/// servers at once; the outcome is exact (see [`crate::broadcast`]).
async fn broadcast(gw: &Gateway, body: Incoming) -> Reply {
    // A client sending its body a byte at a time does not hold the
    // connection: the body has BODY_READ_TIMEOUT to arrive.
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, MAX_TX_BODY).collect());
    let bytes = read
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the body did not arrive within {BODY_READ_TIMEOUT:?}"),
            )
        })?
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("a transaction body is at most {MAX_TX_BODY} bytes"),
            )
        })?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    let hex = if text.starts_with('{') {
        serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v["hex"].as_str().map(str::to_owned))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_transaction",
                    "expected {\"hex\": \"...\"}",
                )
            })?
    } else {
        text.to_owned()
    };
    let raw = tx::from_hex(&hex).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_transaction",
            "the body is not hex",
        )
    })?;
    let decoded = tx::decode(&raw)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_transaction", e.to_string()))?;
    let txid = decoded["txid"].as_str().unwrap_or_default().to_owned();
    let report = gw.broadcaster.send(&hex, txid).await;
    Ok(json_response(report.status(), &report.json()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("bchreg%3Aqr99"), "bchreg:qr99");
        assert_eq!(percent_decode("abc"), "abc");
        assert_eq!(percent_decode("a%zz"), "a%zz");
        assert_eq!(percent_decode("a%"), "a%");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
