//! The JSON-RPC error object and the codes this project answers with.

use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::RawJson;

/// Error codes used by this crate family. They match Optimism's proxyd where it
/// has an equivalent, so alerts and clients keep working after a switch.
pub mod codes {
    /// The body is not valid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a valid request object (version, id type, no method, empty batch).
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist or is not allowed here.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The params failed one of our own checks.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Something went wrong inside the proxy.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// No healthy backend could be reached, or every attempt failed.
    pub const NO_BACKEND: i64 = -32011;
    /// The batch has more items than allowed.
    pub const BATCH_TOO_LARGE: i64 = -32014;
    /// The call's deadline passed before an answer arrived.
    pub const GATEWAY_TIMEOUT: i64 = -32015;
    /// The client is over its rate limit.
    pub const RATE_LIMITED: i64 = -32016;
    /// The transaction's sender is over its rate limit.
    pub const SENDER_RATE_LIMITED: i64 = -32017;
    /// Backends did not agree, or too few answered, for a quorum.
    pub const QUORUM_NOT_REACHED: i64 = -32019;
    /// A backend's response was larger than allowed.
    pub const RESPONSE_TOO_LARGE: i64 = -32020;
    /// The request body was larger than allowed.
    pub const REQUEST_TOO_LARGE: i64 = -32021;
    /// The server is over a resource budget (request bytes in flight): retry
    /// shortly (the code Ethereum nodes use for "limit exceeded").
    pub const LIMIT_EXCEEDED: i64 = -32005;
    /// A call that changes state (a broadcast) may have reached a backend,
    /// but no answer says whether it took effect: its outcome is unknown.
    /// Not "not sent": a client must not act as if it never happened.
    pub const OUTCOME_UNKNOWN: i64 = -32022;

    /// Codes that mean *the backend could not serve the call* rather than
    /// *the call failed*: `429` (provider rate limits), [`NO_BACKEND`],
    /// [`GATEWAY_TIMEOUT`] and [`RATE_LIMITED`] (a nested proxy's refusals).
    /// Failover counts them against the backend (`rpc_failover::FailureRules`);
    /// the cache never stores them.
    pub const BACKEND_REFUSALS: &[i64] = &[429, NO_BACKEND, GATEWAY_TIMEOUT, RATE_LIMITED];
}

/// A JSON-RPC error object: `{"code": .., "message": .., "data": ..}`.
///
/// Parsing is tolerant, because real providers are not strict: unknown fields
/// are ignored, codes outside the reserved range or written as `-32000.0` are
/// accepted, a missing message becomes empty, and `data` is kept as raw JSON.
///
/// ```
/// use rpc_core::ErrorObject;
///
/// let e = ErrorObject::new(3, "execution reverted");
/// assert_eq!(e.code(), 3);
/// assert_eq!(e.to_json(), r#"{"code":3,"message":"execution reverted"}"#);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ErrorObject {
    code: i64,
    message: Cow<'static, str>,
    data: Option<RawJson>,
}

impl ErrorObject {
    /// An error object with the given code and message, without data.
    pub fn new(code: i64, message: impl Into<Cow<'static, str>>) -> Self {
        ErrorObject {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Adds a `data` member.
    pub fn with_data(mut self, data: RawJson) -> Self {
        self.data = Some(data);
        self
    }

    /// The error code.
    pub fn code(&self) -> i64 {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `data` member, if any, as raw JSON.
    pub fn data(&self) -> Option<&RawJson> {
        self.data.as_ref()
    }

    /// `-32700`: the body is not valid JSON.
    pub fn parse_error() -> Self {
        Self::new(codes::PARSE_ERROR, "parse error")
    }

    /// `-32600` with a message saying what is wrong.
    pub fn invalid_request(why: impl Into<Cow<'static, str>>) -> Self {
        Self::new(codes::INVALID_REQUEST, why)
    }

    /// `-32014`: more batch items than `max`.
    pub fn batch_too_large(max: usize) -> Self {
        Self::new(
            codes::BATCH_TOO_LARGE,
            format!("batch too large: at most {max} calls per batch"),
        )
    }

    /// `-32021`: request body over `max` bytes.
    pub fn request_too_large(max: usize) -> Self {
        Self::new(
            codes::REQUEST_TOO_LARGE,
            format!("request body too large: at most {max} bytes"),
        )
    }

    /// `-32603`.
    pub fn internal_error() -> Self {
        Self::new(codes::INTERNAL_ERROR, "internal error")
    }

    /// Writes the object as compact JSON.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"code\":");
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{}", self.code);
        out.extend_from_slice(b",\"message\":");
        write_json_str(out, &self.message);
        if let Some(data) = &self.data {
            out.extend_from_slice(b",\"data\":");
            out.extend_from_slice(data.as_bytes());
        }
        out.push(b'}');
    }

    /// The object as a compact JSON string.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(48 + self.message.len());
        self.write_json(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Parses an error object from its JSON text (as [`write_json`](Self::write_json)
    /// writes it), tolerantly; `None` when it is not one.
    ///
    /// ```
    /// use rpc_core::ErrorObject;
    ///
    /// let e = ErrorObject::new(-32000, "header not found");
    /// assert_eq!(ErrorObject::from_json(e.to_json().into_bytes()), Some(e));
    /// ```
    pub fn from_json(json: impl Into<Bytes>) -> Option<Self> {
        let body: Bytes = json.into();
        let raw: &RawValue = serde_json::from_slice(&body).ok()?;
        Self::from_raw(&body, raw)
    }

    /// Parses an error object borrowed from `body`, tolerantly.
    pub(crate) fn from_raw(body: &Bytes, raw: &RawValue) -> Option<Self> {
        Self::from_raw_bytes(body, raw.get().as_bytes())
    }

    /// [`from_raw`](Self::from_raw) for the JSON text of an error object,
    /// as bytes.
    pub(crate) fn from_raw_bytes(body: &Bytes, raw: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct Wire<'a> {
            #[serde(borrow, default)]
            code: Option<&'a RawValue>,
            #[serde(borrow, default)]
            message: Option<&'a RawValue>,
            #[serde(borrow, default, deserialize_with = "crate::parse::some_raw")]
            data: Option<&'a RawValue>,
        }
        let wire: Wire<'_> = serde_json::from_slice(raw).ok()?;
        let code = match wire.code {
            Some(code) => parse_code(code.get())?,
            None => return None,
        };
        let message = match wire.message {
            Some(m) if m.get().starts_with('"') => {
                Cow::Owned(serde_json::from_str::<String>(m.get()).ok()?)
            }
            Some(m) if m.get() == "null" => Cow::Borrowed(""),
            // A non-string message is kept as its JSON text rather than dropped.
            Some(m) => Cow::Owned(m.get().to_owned()),
            None => Cow::Borrowed(""),
        };
        Some(ErrorObject {
            code,
            message,
            data: wire.data.map(|d| RawJson::slice_of(body, d)),
        })
    }
}

/// Accepts `-32000`, `-32000.0`, `3e4` and out-of-range numbers (saturated).
fn parse_code(text: &str) -> Option<i64> {
    if let Ok(n) = text.parse::<i64>() {
        return Some(n);
    }
    let f: f64 = text.parse().ok()?;
    if f.is_finite() {
        // `as` saturates at the i64 bounds.
        Some(f.trunc() as i64)
    } else {
        None
    }
}

/// Writes `s` as a JSON string literal.
pub(crate) fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // Method names and most messages need no escape: copied between quotes
    // as they are (what serde_json writes too: it escapes only `"`, `\`
    // and control characters). The scanner's search finds those a word at
    // a time (and stops at non-ASCII too: such text goes to serde_json,
    // which writes it unescaped all the same).
    if crate::json_scan::find_special(s.as_bytes()).is_none() {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // Serialising a `&str` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

impl fmt::Debug for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The copy without escapes writes what serde_json writes, for plain
    /// names and for every character that needs an escape.
    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let mut texts: Vec<String> = [
            "eth_blockNumber",
            "",
            "a\"b",
            "back\\slash",
            "tab\tnew\nline",
            "\u{1}\u{1f}\u{7f}",
            "é ✓ 𝄞",
            "</script>",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        texts.extend((0u8..=0x7f).map(|b| format!("x{}y", b as char)));
        for text in texts {
            let mut ours = Vec::new();
            write_json_str(&mut ours, &text);
            assert_eq!(ours, serde_json::to_vec(&text).unwrap(), "{text:?}");
        }
    }

    fn parse(text: &'static str) -> Option<ErrorObject> {
        let body = Bytes::from_static(text.as_bytes());
        let raw: &RawValue = serde_json::from_slice(&body).ok()?;
        ErrorObject::from_raw(&body, raw)
    }

    #[test]
    fn tolerant_parsing() {
        let e =
            parse(r#"{"code":-32000.0,"message":"header not found","extra":1}"#).expect("parses");
        assert_eq!(e.code(), -32000);
        assert_eq!(e.message(), "header not found");

        let e = parse(r#"{"code":99999999999999999999,"message":"x"}"#).expect("parses");
        assert_eq!(e.code(), i64::MAX);

        let e = parse(r#"{"code":3,"message":"execution reverted","data":"0x08c379a0"}"#)
            .expect("parses");
        assert_eq!(e.data().map(|d| d.as_bytes()), Some(&b"\"0x08c379a0\""[..]));

        let e = parse(r#"{"code":1,"data":null}"#).expect("parses");
        assert_eq!(e.message(), "");
        assert_eq!(e.data().map(|d| d.as_bytes()), Some(&b"null"[..]));

        assert!(parse(r#"{"message":"no code"}"#).is_none());
        assert!(parse(r#"{"code":"x","message":"bad code"}"#).is_none());
    }

    #[test]
    fn writes_escaped_message() {
        let e = ErrorObject::new(-1, "quote \" and \n newline");
        assert_eq!(
            e.to_json(),
            r#"{"code":-1,"message":"quote \" and \n newline"}"#
        );
    }
}
