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
            Id::Number(raw) => plain_u64(raw.as_bytes()),
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

/// The value of a JSON number that is a non-negative integer written
/// plainly (no sign, fraction, exponent or leading zero), read from its
/// digits: an id's [`as_u64`](Id::as_u64), and a backend's wire ids in a
/// batch answer (no UTF-8 check or `str::parse` on the way).
pub(crate) fn plain_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 1 && text[0] == b'0' {
        return None;
    }
    text.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain integers are read as `str::parse::<u64>` reads the same text.
    #[test]
    fn plain_integers_are_read_as_str_parse_reads_them() {
        for text in [
            "0",
            "7",
            "00",
            "01",
            "42",
            "-1",
            "+1",
            "1.0",
            "1e3",
            "",
            "a",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999",
            "\"1\"",
        ] {
            // A JSON number has no leading zero or plus sign (valid JSON
            // never brings one here); `parse` would take "01" and "+1".
            let want = text
                .parse::<u64>()
                .ok()
                .filter(|_| !(text.len() > 1 && text.starts_with('0') || text.starts_with('+')));
            assert_eq!(plain_u64(text.as_bytes()), want, "{text}");
        }
    }
}
