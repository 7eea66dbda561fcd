//! Raw JSON values kept as bytes.

use std::fmt;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

/// One complete JSON value kept as the exact bytes it arrived in.
///
/// `params` and `result` travel through the stack as `RawJson`: the proxy never
/// builds a `serde_json::Value` tree for data it only forwards. Values parsed by
/// this crate are zero-copy slices of the received body, so cloning a `RawJson`
/// (for a retry, a fan-out or a cache entry) is a reference-count bump.
///
/// The bytes are always valid UTF-8 JSON: every constructor checks it or takes it
/// from a parser that did.
///
/// ```
/// use rpc_core::RawJson;
///
/// let params = RawJson::from_serialize(&("0x1", true)).unwrap();
/// assert_eq!(params.as_bytes(), br#"["0x1",true]"#);
///
/// let parsed: (String, bool) = params.deserialize().unwrap();
/// assert_eq!(parsed, ("0x1".to_string(), true));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RawJson(Bytes);

impl RawJson {
    /// The JSON value `null`.
    pub const NULL: RawJson = RawJson(Bytes::from_static(b"null"));

    /// Wraps bytes after checking that they hold exactly one JSON value
    /// (surrounding whitespace is kept as it is).
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Result<Self, serde_json::Error> {
        let bytes = bytes.into();
        serde_json::from_slice::<&RawValue>(&bytes)?;
        Ok(RawJson(bytes))
    }

    /// Serialises `value` to compact JSON.
    pub fn from_serialize<T: serde::Serialize + ?Sized>(
        value: &T,
    ) -> Result<Self, serde_json::Error> {
        serde_json::to_vec(value).map(|v| RawJson(Bytes::from(v)))
    }

    /// A static JSON text such as `"[]"`; checked.
    ///
    /// # Errors
    /// When `text` is not exactly one JSON value.
    pub fn from_static(text: &'static str) -> Result<Self, serde_json::Error> {
        Self::from_bytes(Bytes::from_static(text.as_bytes()))
    }

    /// Takes a slice of `body` that a serde_json parser borrowed from it.
    ///
    /// `raw` must point into `body`; when it does not (which would be a bug in
    /// the caller) the value is copied instead, so the result is still right.
    pub(crate) fn slice_of(body: &Bytes, raw: &RawValue) -> Self {
        Self::slice_of_bytes(body, raw.get().as_bytes())
    }

    /// [`slice_of`](Self::slice_of) for JSON text (valid UTF-8) the caller
    /// validated as bytes.
    pub(crate) fn slice_of_bytes(body: &Bytes, text: &[u8]) -> Self {
        let start = body.as_ptr() as usize;
        let at = text.as_ptr() as usize;
        if at >= start && at + text.len() <= start + body.len() {
            RawJson(body.slice_ref(text))
        } else {
            RawJson(Bytes::copy_from_slice(text))
        }
    }

    /// Wraps bytes this crate produced or validated itself.
    pub(crate) fn from_trusted(bytes: Bytes) -> Self {
        RawJson(bytes)
    }

    /// A copy in its own exact-size buffer.
    ///
    /// A `RawJson` is usually a slice of the whole body it arrived in, and
    /// keeps that body alive. Anything that keeps a value for long (a cache)
    /// should detach it, so a 20-byte result does not pin a 64 KiB read
    /// buffer.
    ///
    /// ```
    /// use rpc_core::RawJson;
    ///
    /// let body = bytes::Bytes::from_static(br#"{"result":"0x1","padding":"..."}"#);
    /// let slice = RawJson::from_bytes(body.slice(10..15))?;
    /// let own = slice.detached();
    /// assert_eq!(own.as_bytes(), b"\"0x1\"");
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn detached(&self) -> RawJson {
        RawJson(Bytes::copy_from_slice(&self.0))
    }

    /// The JSON text as bytes, exactly as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The JSON text as the underlying shared buffer.
    pub fn as_shared_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Length of the JSON text in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `true` for an empty buffer, which a valid `RawJson` never is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `true` when the value is the JSON literal `null`.
    pub fn is_null(&self) -> bool {
        self.first_byte() == Some(b'n')
    }

    /// The first non-whitespace byte: `{`, `[`, `"`, `t`, `f`, `n`, `-` or a digit.
    pub fn first_byte(&self) -> Option<u8> {
        self.0.iter().copied().find(|b| !b.is_ascii_whitespace())
    }

    /// Parses the value into any deserialisable type.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.0)
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Valid UTF-8 by construction; `from_utf8_lossy` borrows in that case.
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Display for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl From<&RawValue> for RawJson {
    fn from(raw: &RawValue) -> Self {
        RawJson(Bytes::copy_from_slice(raw.get().as_bytes()))
    }
}

impl From<Box<RawValue>> for RawJson {
    fn from(raw: Box<RawValue>) -> Self {
        let boxed: Box<str> = raw.into();
        RawJson(Bytes::from(boxed.into_boxed_bytes()))
    }
}

impl From<serde_json::Value> for RawJson {
    fn from(value: serde_json::Value) -> Self {
        // Serialising a `Value` cannot fail: its map keys are strings.
        RawJson(Bytes::from(value.to_string().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_of_is_zero_copy() {
        let body = Bytes::from_static(br#"{"params":[1,2,3]}"#);
        #[derive(serde::Deserialize)]
        struct P<'a> {
            #[serde(borrow)]
            params: &'a RawValue,
        }
        let p: P<'_> = serde_json::from_slice(&body).expect("valid");
        let raw = RawJson::slice_of(&body, p.params);
        assert_eq!(raw.as_bytes(), b"[1,2,3]");
        assert_eq!(raw.as_bytes().as_ptr(), body[10..].as_ptr());
    }

    #[test]
    fn from_bytes_rejects_invalid_json() {
        assert!(RawJson::from_bytes(&b"{"[..]).is_err());
        assert!(RawJson::from_bytes(&b"1 2"[..]).is_err());
        assert!(RawJson::from_bytes(&b" [1] "[..]).is_ok());
    }

    #[test]
    fn null_detection() {
        assert!(RawJson::NULL.is_null());
        assert!(!RawJson::from_static("0").expect("valid").is_null());
    }
}

/// Joins JSON arrays into one without parsing their items again (each
/// part is valid JSON already): for answers assembled from several
/// upstream answers, such as an `eth_getLogs` range split into chunks.
/// Parts are appended as they come, so each can be dropped once added.
///
/// ```
/// use rpc_core::{ArrayJoiner, RawJson};
///
/// let mut joined = ArrayJoiner::new(1024);
/// for part in [r#"[1, {"a": 2}]"#, "[]", "[3]"] {
///     joined.push(&RawJson::from_static(part)?).expect("within the limit");
/// }
/// assert_eq!(joined.finish().as_bytes(), br#"[1, {"a": 2},3]"#);
/// let mut small = ArrayJoiner::new(4);
/// assert!(small.push(&RawJson::from_static("[123456]")?).is_err());
/// assert!(ArrayJoiner::new(8).push(&RawJson::from_static("{}")?).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug)]
pub struct ArrayJoiner {
    items: Vec<u8>,
    max: usize,
}

/// Why [`ArrayJoiner::push`] refused a part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The joined array would be larger than the limit (in bytes).
    #[error("the joined answer would be larger than {0} bytes")]
    TooLarge(usize),
    /// The part is not a JSON array.
    #[error("not a JSON array")]
    NotAnArray,
}

impl ArrayJoiner {
    /// An empty array, at most `max_bytes` long when finished.
    pub fn new(max_bytes: usize) -> Self {
        ArrayJoiner {
            items: Vec::new(),
            max: max_bytes,
        }
    }

    /// Appends the items of `part`, a JSON array.
    pub fn push(&mut self, part: &RawJson) -> Result<(), JoinError> {
        let bytes = part.as_bytes();
        let open = bytes.iter().position(|b| !b.is_ascii_whitespace());
        let close = bytes.iter().rposition(|b| !b.is_ascii_whitespace());
        let (Some(open), Some(close)) = (open, close) else {
            return Err(JoinError::NotAnArray);
        };
        if bytes[open] != b'[' || bytes[close] != b']' || close <= open {
            return Err(JoinError::NotAnArray);
        }
        let inside = &bytes[open + 1..close];
        if inside.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let comma = usize::from(!self.items.is_empty());
        if self.items.len() + comma + inside.len() + 2 > self.max {
            return Err(JoinError::TooLarge(self.max));
        }
        if comma == 1 {
            self.items.push(b',');
        }
        self.items.extend_from_slice(inside);
        Ok(())
    }

    /// The joined array.
    pub fn finish(self) -> RawJson {
        let mut out = Vec::with_capacity(self.items.len() + 2);
        out.push(b'[');
        out.extend_from_slice(&self.items);
        out.push(b']');
        RawJson::from_trusted(Bytes::from(out))
    }
}
