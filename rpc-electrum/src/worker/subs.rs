//! Subscriptions: their keys, what each last reported, notifications, and
//! the headers they carry.

use super::*;

/// What a subscription last reported, to tell after a reconnect whether the
/// subscriber missed an update.
pub(super) struct Sub {
    pub(super) method: Arc<str>,
    pub(super) params: RawJson,
    pub(super) last: Option<RawJson>,
}

/// The subscription key of a call (`None` if it is not a subscription), and
/// whether it ends one. Scripthash keys use the scripthash as JSON text, the
/// same as [`notification`] builds from a server's notification.
pub(super) fn sub_key(method: &str, params: Option<&RawJson>) -> Option<(String, bool)> {
    let first = || -> Option<String> {
        let args: Vec<serde_json::Value> = params?.deserialize().ok()?;
        Some(args.first()?.to_string())
    };
    match method {
        "blockchain.headers.subscribe" => Some((method.to_owned(), false)),
        "blockchain.scripthash.subscribe" => Some((
            format!("blockchain.scripthash.subscribe[{}]", first()?),
            false,
        )),
        "blockchain.scripthash.unsubscribe" => Some((
            format!("blockchain.scripthash.subscribe[{}]", first()?),
            true,
        )),
        _ => None,
    }
}

/// The params of the notification a subscriber would have received.
pub(super) fn missed_params(method: &str, sub_params: &RawJson, now: &RawJson) -> Option<RawJson> {
    let text = match method {
        "blockchain.headers.subscribe" => format!("[{}]", String::from_utf8_lossy(now.as_bytes())),
        "blockchain.scripthash.subscribe" => {
            let args: Vec<serde_json::Value> = sub_params.deserialize().ok()?;
            let sh = args.first()?;
            format!("[{},{}]", sh, String::from_utf8_lossy(now.as_bytes()))
        }
        _ => return None,
    };
    RawJson::from_bytes(text).ok()
}

pub(super) fn notification(
    shared: &Shared,
    method: &str,
    params: Option<Result<RawJson, serde_json::Error>>,
) {
    let params = match params {
        Some(Ok(p)) => p,
        _ => no_params(),
    };
    // Remember the status, so a reconnect can tell whether it changed.
    let key = match method {
        "blockchain.headers.subscribe" => Some(method.to_owned()),
        "blockchain.scripthash.subscribe" => {
            let args: Vec<serde_json::Value> = params.deserialize().unwrap_or_default();
            args.first()
                .map(|sh| format!("blockchain.scripthash.subscribe[{sh}]"))
        }
        _ => None,
    };
    if let Some(key) = key {
        let status: Option<RawJson> = match method {
            "blockchain.headers.subscribe" => {
                let args: Vec<&RawValue> =
                    serde_json::from_slice(params.as_bytes()).unwrap_or_default();
                args.first().and_then(|h| {
                    RawJson::from_bytes(Bytes::copy_from_slice(h.get().as_bytes())).ok()
                })
            }
            _ => {
                let args: Vec<&RawValue> =
                    serde_json::from_slice(params.as_bytes()).unwrap_or_default();
                args.get(1).and_then(|s| {
                    RawJson::from_bytes(Bytes::copy_from_slice(s.get().as_bytes())).ok()
                })
            }
        };
        if method == "blockchain.headers.subscribe" {
            if let Some(header) = &status {
                shared.saw_header(header.as_bytes());
            }
        }
        if let (Some(status), Ok(mut subs)) = (status, shared.subs.lock()) {
            if let Some(s) = subs.get_mut(&key) {
                s.last = Some(status);
            }
        }
    }
    shared.publish(Arc::from(method), params);
}

/// Fingerprints (first eight bytes, in the header's own byte order) of a
/// block header's hash (double SHA-256) and of the parent hash it names.
pub(super) fn header_fingerprints(hex: &str) -> Option<(u64, u64)> {
    let header = crate::chain::Header::from_hex(hex.get(..160)?)?;
    let first8 =
        |b: &[u8]| -> Option<u64> { Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?)) };
    Some((first8(&header.hash())?, first8(&header.prev())?))
}
