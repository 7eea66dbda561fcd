//! What one line from an Electrum server is.

use super::*;

/// What one line from an Electrum server is (see [`parse_line`]).
#[derive(Debug)]
pub enum Line {
    /// An answer to the call sent under this wire id (its payload, or why it
    /// is not a valid answer).
    Answer {
        /// The id the call was sent under.
        wire_id: u64,
        /// The result or error object.
        payload: Result<rpc_core::Payload, String>,
    },
    /// A notification (a subscription update).
    Notification {
        /// Its method.
        method: String,
        /// Its params, raw.
        params: Option<RawJson>,
    },
    /// Neither: not a JSON object, or an answer under an id this client never
    /// uses (ignored, as a late or foreign line).
    Ignored,
}

#[derive(serde::Deserialize)]
pub(super) struct Head<'a> {
    #[serde(borrow, default)]
    pub(super) id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(super) method: Option<&'a str>,
    #[serde(borrow, default)]
    pub(super) params: Option<&'a RawValue>,
}

/// Classifies one line (without its newline) from an Electrum server. Never
/// panics, whatever the bytes (a fuzz target checks it).
pub fn parse_line(line: &Bytes) -> Line {
    let Ok(head) = serde_json::from_slice::<Head<'_>>(line) else {
        return Line::Ignored;
    };
    match head.id.and_then(|id| id.get().parse::<u64>().ok()) {
        Some(wire_id) => Line::Answer {
            wire_id,
            payload: parse_response(line, &Id::from(wire_id)),
        },
        None => match head.method {
            Some(method) => Line::Notification {
                method: method.to_owned(),
                params: head.params.and_then(|p| {
                    RawJson::from_bytes(Bytes::copy_from_slice(p.get().as_bytes())).ok()
                }),
            },
            None => Line::Ignored,
        },
    }
}
