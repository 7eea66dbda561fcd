//! The response type.

use std::fmt;

use crate::Extensions;

use crate::{ErrorObject, Id, RawJson};

/// What a call produced: a result or the backend's own error object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// The `result` member, raw.
    Result(RawJson),
    /// The `error` member. A backend that answers with an error object still
    /// answered: this is a successful [`Response`], not an [`RpcError`](crate::RpcError).
    Error(ErrorObject),
}

/// The answer to one call: the id it answers, a [`Payload`] and per-call
/// context (which backend served it, cache outcome, ...) in the extensions.
///
/// ```
/// use rpc_core::{Id, RawJson, Response};
///
/// let resp = Response::result(Id::from(1u64), RawJson::from_static(r#""0x1""#).unwrap());
/// assert_eq!(
///     String::from_utf8(resp.to_json()).unwrap(),
///     r#"{"jsonrpc":"2.0","id":1,"result":"0x1"}"#
/// );
/// ```
#[derive(Clone)]
pub struct Response {
    id: Id,
    payload: Payload,
    /// `None` until a layer puts something in (one allocation then).
    extensions: Option<Box<Extensions>>,
}

impl Response {
    /// A response with the given payload.
    pub fn new(id: Id, payload: Payload) -> Self {
        Response {
            id,
            payload,
            extensions: None,
        }
    }

    /// A successful result.
    pub fn result(id: Id, result: RawJson) -> Self {
        Self::new(id, Payload::Result(result))
    }

    /// An error object.
    pub fn error(id: Id, error: ErrorObject) -> Self {
        Self::new(id, Payload::Error(error))
    }

    /// The id this answers.
    pub fn id(&self) -> &Id {
        &self.id
    }

    /// Replaces the id (layers that rewrite ids restore the client's here).
    pub fn set_id(&mut self, id: Id) {
        self.id = id;
    }

    /// The payload.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// The result, when the payload is one.
    pub fn result_json(&self) -> Option<&RawJson> {
        match &self.payload {
            Payload::Result(r) => Some(r),
            Payload::Error(_) => None,
        }
    }

    /// The error object, when the payload is one.
    pub fn error_object(&self) -> Option<&ErrorObject> {
        match &self.payload {
            Payload::Error(e) => Some(e),
            Payload::Result(_) => None,
        }
    }

    /// Consumes the response into its parts.
    pub fn into_parts(self) -> (Id, Payload, Extensions) {
        (
            self.id,
            self.payload,
            self.extensions.map(|e| *e).unwrap_or_default(),
        )
    }

    /// Per-call context.
    pub fn extensions(&self) -> &Extensions {
        match &self.extensions {
            Some(e) => e,
            None => Extensions::empty(),
        }
    }

    /// Per-call context, mutable.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        self.extensions.get_or_insert_with(Box::default)
    }

    /// Writes the response as compact JSON.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
        out.extend_from_slice(self.id.as_json());
        match &self.payload {
            Payload::Result(r) => {
                out.extend_from_slice(b",\"result\":");
                out.extend_from_slice(r.as_bytes());
            }
            Payload::Error(e) => {
                out.extend_from_slice(b",\"error\":");
                e.write_json(out);
            }
        }
        out.push(b'}');
    }

    /// The response as compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        self.write_json(&mut out);
        out
    }

    /// A capacity that fits the encoded response: exact for a result (a
    /// buffer of exactly its size becomes a `Bytes` without an allocation
    /// of its own), room enough for most errors.
    pub fn encoded_len_hint(&self) -> usize {
        const HEAD: usize = r#"{"jsonrpc":"2.0","id":"#.len();
        const RESULT: usize = r#","result":"#.len();
        HEAD + self.id.as_json().len()
            + match &self.payload {
                Payload::Result(r) => RESULT + r.len() + 1,
                Payload::Error(e) => 48 + e.message().len() + e.data().map_or(0, RawJson::len),
            }
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Response");
        d.field("id", &self.id);
        match &self.payload {
            Payload::Result(r) => d.field("result", r),
            Payload::Error(e) => d.field("error", e),
        };
        d.finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_is_written_into_exactly_its_size() {
        for (id, result) in [
            (Id::from(1u64), "\"0x10\""),
            (Id::from("some \"id\""), r#"{"a":[1,2,{"b":null}]}"#),
            (Id::Null, "null"),
        ] {
            let resp = Response::new(
                id,
                Payload::Result(RawJson::from_static(result).expect("json")),
            );
            let written = resp.to_json();
            assert_eq!(resp.encoded_len_hint(), written.len(), "{resp:?}");
            assert_eq!(written.capacity(), written.len(), "{resp:?}");
        }
        let failed = Response::error(Id::from(2u64), ErrorObject::new(-32000, "nope"));
        assert!(failed.encoded_len_hint() >= failed.to_json().len());
    }
}
