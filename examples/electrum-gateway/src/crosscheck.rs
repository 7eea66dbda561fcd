//! `--verify cross-check`: balances and unspent outputs, which no merkle
//! proof covers, asked of two servers (in distinct networks first) and
//! compared.
//!
//! * Two healthy, trusted servers agree: the answer is `"cross-checked"`.
//! * They disagree: after a moment (a block or a mempool transaction may
//!   have reached one first) every healthy server is asked. An answer that
//!   at least two servers and a strict majority give wins; the servers that
//!   still gave another are distrusted (out of rotation for the backend's
//!   distrust period). No majority: `502 disagreement`, nobody blamed.
//! * Fewer than two healthy servers answer: the one answer, `"unverified"`.
//!
//! Cost: two server calls per balance or UTXO request (the stack's 1 s
//! cache is not used: a cached answer was one server's word), more only
//! when servers disagree.

use std::time::Duration;

use futures_util::future::join_all;
use http::StatusCode;
use rpc_core::{Deadline, Id, Payload, RawJson, Request};
use rpc_electrum::ElectrumBackend;
use serde_json::Value;
use tower::ServiceExt;

use crate::rest::ApiError;
use crate::Gateway;

/// How long to wait before asking everyone when two servers disagree.
const SETTLE: Duration = Duration::from_millis(300);

/// What the answer's `"verified"` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    /// Two or more servers gave it.
    CrossChecked,
    /// One server's word.
    Unverified,
}

impl Checked {
    pub fn as_str(self) -> &'static str {
        match self {
            Checked::CrossChecked => "cross-checked",
            Checked::Unverified => "unverified",
        }
    }
}

/// Healthy, trusted, connected servers; one per network first.
fn candidates(gw: &Gateway) -> Vec<ElectrumBackend> {
    let healthy: Vec<ElectrumBackend> = gw
        .servers
        .iter()
        .filter(|s| s.is_connected() && s.distrusted().is_none())
        .filter(|s| {
            gw.group
                .members()
                .any(|m| &*m.name == s.name() && m.in_service && !m.lagging)
        })
        .cloned()
        .collect();
    rpc_electrum::netgroup::spread(&healthy, |s| s.network_group())
}

/// One server's answer, as JSON (`None`: no usable answer in time).
async fn ask(
    server: ElectrumBackend,
    method: &'static str,
    params: RawJson,
    timeout: Duration,
) -> Option<Value> {
    let mut req = Request::new(method)
        .with_id(Id::from(1u64))
        .with_params(params);
    req.extensions_mut().insert(Deadline::after(timeout));
    match server.oneshot(req).await {
        Ok(resp) => match resp.payload() {
            Payload::Result(raw) => raw.deserialize::<Value>().ok(),
            Payload::Error(_) => None,
        },
        Err(_) => None,
    }
}

/// `method(params)` asked of two servers (more when they disagree);
/// `normalize` makes answers comparable (for example, lists in any
/// order). `None`: fewer than two healthy servers, ask through the stack.
pub async fn cross_check(
    gw: &Gateway,
    method: &'static str,
    params: RawJson,
    normalize: fn(&Value) -> Value,
) -> Result<Option<(Value, Checked)>, ApiError> {
    let servers = candidates(gw);
    if servers.len() < 2 {
        // Nothing to compare with: the caller asks through the stack.
        return Ok(None);
    }
    let timeout = gw.args.request_timeout;
    // Round 1: the first two that answer (a failed one is replaced by the
    // next candidate).
    let mut answers: Vec<(String, Value)> = Vec::new();
    let mut next = 0;
    while answers.len() < 2 && next < servers.len() {
        let want = 2 - answers.len();
        let batch: Vec<ElectrumBackend> = servers[next..].iter().take(want).cloned().collect();
        next += batch.len();
        let got = join_all(batch.into_iter().map(|s| {
            let name = s.name().to_owned();
            let params = params.clone();
            async move { (name, ask(s, method, params, timeout).await) }
        }))
        .await;
        answers.extend(got.into_iter().filter_map(|(n, v)| v.map(|v| (n, v))));
    }
    match answers.as_slice() {
        [] => return Ok(None),
        [(_, only)] => return Ok(Some((only.clone(), Checked::Unverified))),
        [(_, a), (_, b), ..] if normalize(a) == normalize(b) => {
            return Ok(Some((a.clone(), Checked::CrossChecked)))
        }
        _ => {}
    }
    // Round 2: everyone healthy, after a moment.
    tokio::time::sleep(SETTLE).await;
    let servers = candidates(gw);
    let got: Vec<(String, Option<Value>)> = join_all(servers.into_iter().map(|s| {
        let name = s.name().to_owned();
        let params = params.clone();
        async move { (name, ask(s, method, params, timeout).await) }
    }))
    .await;
    let answered: Vec<(String, Value)> = got
        .into_iter()
        .filter_map(|(n, v)| v.map(|v| (n, v)))
        .collect();
    let mut tally: Vec<(Value, Value, usize)> = Vec::new();
    for (_, v) in &answered {
        let key = normalize(v);
        match tally.iter_mut().find(|(k, _, _)| *k == key) {
            Some(entry) => entry.2 += 1,
            None => tally.push((key, v.clone(), 1)),
        }
    }
    tally.sort_by_key(|t| std::cmp::Reverse(t.2));
    let majority = match tally.first() {
        Some((key, v, n)) if *n >= 2 && 2 * n > answered.len() => Some((key.clone(), v.clone())),
        _ => None,
    };
    let Some((key, value)) = majority else {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "disagreement",
            format!(
                "the servers disagree about this {method} ({} answers, no majority); try again",
                answered.len()
            ),
        ));
    };
    for (name, v) in &answered {
        if normalize(v) != key {
            if let Some(s) = gw.servers.iter().find(|s| s.name() == name) {
                let why = format!("its {method} answer differs from the majority of servers");
                tracing::warn!(server = %name, why, "electrum server distrusted");
                s.distrust(&why);
            }
        }
    }
    Ok(Some((value, Checked::CrossChecked)))
}

/// Balances compare as they are.
pub fn as_is(v: &Value) -> Value {
    v.clone()
}

/// Unspent outputs compare as a set (servers may list them in any order).
pub fn as_set(v: &Value) -> Value {
    let mut items: Vec<Value> = v.as_array().cloned().unwrap_or_default();
    items.sort_by_key(|u| (u["tx_hash"].to_string(), u["tx_pos"].as_u64()));
    Value::Array(items)
}
