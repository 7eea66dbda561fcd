//! Request ids, echoed byte for byte.

use std::fmt;

use bytes::Bytes;

use crate::RawJson;

/// A JSON-RPC request id: `null`, a number or a string.
///
/// The id is kept as the exact JSON text the client sent, so `1.0`, `-5`,
/// `1e3` and `"a\u0041"` come back exactly as they went in.
///
/// ```
/// use rpc_core::Id;
///
/// assert_eq!(Id::from(7u64).to_string(), "7");
/// assert_eq!(Id::from("abc").to_string(), r#""abc""#);
/// assert_eq!(Id::Null.to_string(), "null");
/// assert_eq!(Id::from(7u64).as_u64(), Some(7));
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub enum Id {
    /// The id `null`.
    #[default]
    Null,
    /// A numeric id, kept as its JSON text (`1`, `-5`, `1.0`, `1e3`).
    Number(RawJson),
    /// A string id, kept as its JSON text including the quotes and escapes.
    String(RawJson),
}

impl Id {
    /// Classifies a raw JSON value as an id; `None` when it is an object,
    /// array or boolean, which JSON-RPC 2.0 does not allow.
    pub(crate) fn from_raw(body: &Bytes, text: &[u8]) -> Option<Id> {
        match text.first()? {
            b'n' => Some(Id::Null),
            b'"' => Some(Id::String(RawJson::slice_of_bytes(body, text))),
            b'-' | b'0'..=b'9' => Some(Id::Number(RawJson::slice_of_bytes(body, text))),
            _ => None,
        }
    }

    /// The id's JSON text.
    pub fn as_json(&self) -> &[u8] {
        match self {
            Id::Null => b"null",
            Id::Number(raw) | Id::String(raw) => raw.as_bytes(),
        }
    }

    /// The numeric value when the id is a non-negative integer written plainly.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Id::Number(raw) => std::str::from_utf8(raw.as_bytes()).ok()?.parse().ok(),
            _ => None,
        }
    }

    /// The string value (escapes decoded) when the id is a string.
    pub fn as_str(&self) -> Option<String> {
        match self {
            Id::String(raw) => raw.deserialize().ok(),
            _ => None,
        }
    }
}

impl From<u64> for Id {
    fn from(n: u64) -> Self {
        Id::Number(RawJson::from_trusted(Bytes::from(
            n.to_string().into_bytes(),
        )))
    }
}

impl From<i64> for Id {
    fn from(n: i64) -> Self {
        Id::Number(RawJson::from_trusted(Bytes::from(
            n.to_string().into_bytes(),
        )))
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        match RawJson::from_serialize(s) {
            Ok(raw) => Id::String(raw),
            // Serialising a `&str` cannot fail.
            Err(_) => Id::Null,
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_json()))
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({self})")
    }
}
