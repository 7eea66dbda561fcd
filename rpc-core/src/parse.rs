//! Parsing incoming JSON-RPC messages and backend responses without building
//! JSON trees: params, results and ids stay zero-copy slices of the body.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json_scan::{Fields, Scan, Scanner};
use crate::{ErrorObject, Id, Payload, RawJson, Request, Response};

/// A parsed HTTP body: one call or a batch of them.
///
/// Each call is parsed on its own, so one invalid item in a batch does not spoil
/// the others: it becomes an [`InvalidCall`] answered in its place.
#[derive(Debug)]
pub enum Incoming {
    /// A single call (the body was a JSON object).
    Single(Result<Request, InvalidCall>),
    /// A batch (the body was a non-empty JSON array), items in request order.
    Batch(Vec<Result<Request, InvalidCall>>),
}

/// A call that is not valid JSON-RPC 2.0: the error to answer with, and the id
/// to answer it under (the call's own id when it could be read, else `null`).
#[derive(Debug, Clone)]
pub struct InvalidCall {
    /// The id to answer under.
    pub id: Id,
    /// The error to answer with (`-32600` or `-32602`).
    pub error: ErrorObject,
}

impl InvalidCall {
    fn new(id: Id, error: ErrorObject) -> Self {
        InvalidCall { id, error }
    }

    /// The error response for this call.
    pub fn into_response(self) -> Response {
        Response::error(self.id, self.error)
    }
}

/// A body that cannot be answered call by call: the whole request fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Not JSON, invalid UTF-8, trailing garbage or a truncated body: `-32700`.
    #[error("parse error")]
    Parse,
    /// Valid JSON but neither an object nor an array (`1`, `"x"`): `-32600`.
    #[error("invalid request: expected an object or an array")]
    NotACall,
    /// `[]`: `-32600`.
    #[error("invalid request: empty batch")]
    EmptyBatch,
    /// More calls than allowed: `-32014`.
    #[error("batch of {len} calls is over the limit of {max}")]
    BatchTooLarge {
        /// Calls in the batch.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl MessageError {
    /// The error object to answer with (under id `null`).
    pub fn to_error_object(&self) -> ErrorObject {
        match self {
            MessageError::Parse => ErrorObject::parse_error(),
            MessageError::NotACall => {
                ErrorObject::invalid_request("invalid request: expected an object or an array")
            }
            MessageError::EmptyBatch => {
                ErrorObject::invalid_request("invalid request: empty batch")
            }
            MessageError::BatchTooLarge { max, .. } => ErrorObject::batch_too_large(*max),
        }
    }

    /// The HTTP status to answer with.
    pub fn http_status(&self) -> StatusCode {
        match self {
            MessageError::BatchTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Parses an HTTP body holding one JSON-RPC call or a batch.
///
/// The batch size is checked while the array is scanned, before any item is
/// parsed, and items past `max_batch` are skipped without being stored.
///
/// ```
/// use bytes::Bytes;
/// use rpc_core::parse::{parse_message, Incoming};
///
/// let body = Bytes::from_static(br#"[{"jsonrpc":"2.0","id":1,"method":"a"}, 7]"#);
/// let Ok(Incoming::Batch(items)) = parse_message(body, 100) else { panic!() };
/// assert_eq!(items[0].as_ref().unwrap().method(), "a");
/// assert_eq!(items[1].as_ref().unwrap_err().error.code(), -32600);
/// ```
pub fn parse_message(body: Bytes, max_batch: usize) -> Result<Incoming, MessageError> {
    // The scanner reads the common message in one pass; whatever it cannot
    // decide alone (a duplicate or escaped member name, text that is not
    // JSON) is read again by serde_json, whose verdict and words stand.
    if let Some(parsed) = scan_message(&body, max_batch) {
        return parsed;
    }
    parse_message_serde(body, max_batch)
}

/// The members of a call, as raw JSON text (whichever parser read them;
/// valid UTF-8, each was scanned or parsed whole).
struct CallFields<'a> {
    jsonrpc: Option<&'a [u8]>,
    id: Option<&'a [u8]>,
    method: Option<&'a [u8]>,
    params: Option<&'a [u8]>,
}

impl<'a> CallFields<'a> {
    const NAMES: [&'static str; 4] = ["jsonrpc", "id", "method", "params"];

    fn from_scan([jsonrpc, id, method, params]: [Option<&'a [u8]>; 4]) -> Self {
        CallFields {
            jsonrpc,
            id,
            method,
            params,
        }
    }
}

/// [`parse_message`] with [`json_scan`](crate::json_scan): `None` when
/// only serde_json can tell (the message or one of its calls has a
/// member name twice or escaped, or is not JSON).
fn scan_message(body: &Bytes, max_batch: usize) -> Option<Result<Incoming, MessageError>> {
    let mut scan = Scanner::new(body);
    scan.ws();
    if scan.peek() == Some(b'{') {
        let fields = scan.members(&CallFields::NAMES).ok()?;
        scan.end().ok()?;
        return Some(Ok(Incoming::Single(validate_call(
            body,
            CallFields::from_scan(fields),
        ))));
    }
    if !scan.eat(b'[') {
        return None;
    }
    if scan.eat(b']') {
        scan.end().ok()?;
        return Some(Err(MessageError::EmptyBatch));
    }
    // Room for the calls a body this long likely holds (a short call is
    // about 50 bytes), within the batch limit: no regrowth for most.
    let mut calls = Vec::with_capacity((body.len() / 48 + 1).min(max_batch).min(1024));
    let mut len = 0usize;
    loop {
        len += 1;
        if len > max_batch {
            // Only counted from here on.
            scan.value().ok()?;
        } else {
            scan.ws();
            let start = scan.position();
            let call = if scan.peek() == Some(b'{') {
                match scan.members(&CallFields::NAMES) {
                    Ok(fields) => validate_call(body, CallFields::from_scan(fields)),
                    // This call only: serde_json's words for it.
                    Err(Scan::Duplicate(_) | Scan::EscapedKey) => {
                        scan.rewind(start);
                        parse_call(body, scan.value().ok()?)
                    }
                    Err(Scan::Malformed(_)) => return None,
                }
            } else {
                scan.value().ok()?;
                Err(not_an_object())
            };
            calls.push(call);
        }
        if scan.eat(b']') {
            break;
        }
        scan.eat(b',').then_some(())?;
    }
    scan.end().ok()?;
    Some(if len > max_batch {
        Err(MessageError::BatchTooLarge {
            len,
            max: max_batch,
        })
    } else {
        Ok(Incoming::Batch(calls))
    })
}

/// [`parse_message`] with serde_json alone: what decides when the scanner
/// cannot, and the reference the tests hold the scanner to.
fn parse_message_serde(body: Bytes, max_batch: usize) -> Result<Incoming, MessageError> {
    match body.iter().copied().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {
            // One pass: the call's fields straight from the body.
            let mut de = serde_json::Deserializer::from_slice(&body);
            let wire = WireCall::deserialize(&mut de).and_then(|w| de.end().map(|()| w));
            match wire {
                Ok(wire) => Ok(Incoming::Single(validate_call(&body, wire.fields()))),
                // Valid JSON but not a valid call object (a duplicate field).
                Err(e) if e.is_data() => Ok(Incoming::Single(Err(malformed_object(&e)))),
                Err(_) => Err(MessageError::Parse),
            }
        }
        Some(b'[') => {
            let mut de = serde_json::Deserializer::from_slice(&body);
            let scan = (&mut de)
                .deserialize_seq(BatchVisitor { max: max_batch })
                .map_err(|_| MessageError::Parse)?;
            de.end().map_err(|_| MessageError::Parse)?;
            match scan {
                BatchScan::Items(items) if items.is_empty() => Err(MessageError::EmptyBatch),
                BatchScan::Items(items) => Ok(Incoming::Batch(
                    items
                        .into_iter()
                        .map(|raw| parse_call(&body, raw_bytes(raw)))
                        .collect(),
                )),
                BatchScan::TooLarge(len) => Err(MessageError::BatchTooLarge {
                    len,
                    max: max_batch,
                }),
            }
        }
        _ => match serde_json::from_slice::<IgnoredAny>(&body) {
            Ok(_) => Err(MessageError::NotACall),
            Err(_) => Err(MessageError::Parse),
        },
    }
}

/// The result of scanning a batch array: raw items, or only a count once the
/// limit is passed.
enum BatchScan<'a> {
    Items(Vec<&'a RawValue>),
    TooLarge(usize),
}

/// Scans a batch array, keeping at most `max` raw items.
struct BatchVisitor {
    max: usize,
}

impl<'de> Visitor<'de> for BatchVisitor {
    type Value = BatchScan<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC batch")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let cap = seq.size_hint().unwrap_or(0).min(self.max).min(1024);
        let mut items = Vec::with_capacity(cap);
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            if items.len() == self.max {
                // Count the rest without storing it.
                let mut len = self.max + 1;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    len += 1;
                }
                return Ok(BatchScan::TooLarge(len));
            }
            items.push(item);
        }
        Ok(BatchScan::Items(items))
    }
}

/// Deserialises a field as `Some(raw)` even when it is `null` (serde would
/// otherwise turn `null` into `None`).
pub(crate) fn some_raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct WireCall<'a> {
    #[serde(borrow, default, deserialize_with = "some_raw")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "some_raw")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "some_raw")]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "some_raw")]
    params: Option<&'a RawValue>,
}

impl<'a> WireCall<'a> {
    fn fields(&self) -> CallFields<'a> {
        CallFields {
            jsonrpc: self.jsonrpc.map(raw_bytes),
            id: self.id.map(raw_bytes),
            method: self.method.map(raw_bytes),
            params: self.params.map(raw_bytes),
        }
    }
}

/// A batch item that is not an object: no call (an array is not read as
/// a call's members in order, as serde would).
fn not_an_object() -> InvalidCall {
    InvalidCall::new(
        Id::Null,
        ErrorObject::invalid_request("invalid request: a call must be an object"),
    )
}

/// A raw value's JSON text as bytes.
fn raw_bytes(raw: &RawValue) -> &[u8] {
    raw.get().as_bytes()
}

/// Parses and validates one call of a batch, `raw` (valid JSON text
/// borrowed from `body`), with serde_json.
fn parse_call(body: &Bytes, raw: &[u8]) -> Result<Request, InvalidCall> {
    if raw.first() != Some(&b'{') {
        return Err(not_an_object());
    }
    let wire: WireCall<'_> = serde_json::from_slice(raw).map_err(|e| malformed_object(&e))?;
    validate_call(body, wire.fields())
}

/// An object that is valid JSON but cannot be read as a call (a duplicate
/// field): `-32600` under id `null`, since the id cannot be trusted.
fn malformed_object(e: &serde_json::Error) -> InvalidCall {
    InvalidCall::new(
        Id::Null,
        ErrorObject::invalid_request(format!("invalid request: {e}")),
    )
}

/// The method name as a shared string: the names the standard protocols
/// know ([`Protocol::ethereum`](crate::protocol::Protocol::ethereum),
/// [`electrum`](crate::protocol::Protocol::electrum)) are made once and
/// shared by every call (a lookup instead of an allocation per call);
/// others are copied.
/// `None` when `name` is not UTF-8.
fn interned(name: &[u8]) -> Option<Arc<str>> {
    // By the name's bytes, so that a known name needs no UTF-8 check.
    static KNOWN: std::sync::OnceLock<
        std::collections::HashMap<Box<[u8]>, Arc<str>, foldhash::fast::RandomState>,
    > = std::sync::OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        let (eth, electrum) = (
            crate::protocol::Protocol::ethereum(),
            crate::protocol::Protocol::electrum(),
        );
        eth.methods()
            .exact_names()
            .chain(electrum.methods().exact_names())
            .map(|name| (Box::from(name.as_bytes()), Arc::from(name)))
            .collect()
    });
    match known.get(name) {
        Some(shared) => Some(shared.clone()),
        None => std::str::from_utf8(name).ok().map(Arc::from),
    }
}

/// Checks a call's fields and builds the request; ids, params and method are
/// slices of `body`.
fn validate_call(body: &Bytes, wire: CallFields<'_>) -> Result<Request, InvalidCall> {
    let id = match wire.id {
        None => None,
        Some(raw_id) => match Id::from_raw(body, raw_id) {
            Some(id) => Some(id),
            None => {
                return Err(InvalidCall::new(
                    Id::Null,
                    ErrorObject::invalid_request(
                        "invalid request: id must be a string, a number or null",
                    ),
                ))
            }
        },
    };
    let fail = |why: &'static str| {
        InvalidCall::new(
            id.clone().unwrap_or(Id::Null),
            ErrorObject::invalid_request(why),
        )
    };

    match wire.jsonrpc {
        Some(b"\"2.0\"") => {}
        Some(_) => return Err(fail("invalid request: jsonrpc must be \"2.0\"")),
        None => return Err(fail("invalid request: missing jsonrpc \"2.0\"")),
    }

    let method: Arc<str> = match wire.method {
        Some(m) if m.first() == Some(&b'"') => {
            let not_a_string = || fail("invalid request: method must be a string");
            let name: Arc<str> = if m.contains(&b'\\') {
                serde_json::from_slice::<String>(m)
                    .map_err(|_| not_a_string())?
                    .into()
            } else {
                // No escapes: the text between the quotes is the name
                // (UTF-8, checked by whichever parser read it; an unknown
                // name is checked again as it becomes a `str`).
                let inner = m.get(1..m.len() - 1).unwrap_or_default();
                interned(inner).ok_or_else(not_a_string)?
            };
            if name.is_empty() {
                return Err(fail("invalid request: method is empty"));
            }
            name
        }
        Some(_) => return Err(fail("invalid request: method must be a string")),
        None => return Err(fail("invalid request: missing method")),
    };

    let params = match wire.params {
        None => None,
        Some(p) => match p.first() {
            Some(b'[' | b'{') => Some(RawJson::slice_of_bytes(body, p)),
            Some(b'n') => None,
            _ => {
                return Err(InvalidCall::new(
                    id.unwrap_or(Id::Null),
                    ErrorObject::new(
                        crate::error_object::codes::INVALID_PARAMS,
                        "invalid params: params must be an array or an object",
                    ),
                ))
            }
        },
    };

    let mut req = Request::new(method);
    if let Some(id) = id {
        req = req.with_id(id);
    }
    if let Some(params) = params {
        req = req.with_params(params);
    }
    Ok(req)
}

#[derive(Deserialize)]
struct WireResponse<'a> {
    #[serde(borrow, default, deserialize_with = "some_raw")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "some_raw")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "some_raw")]
    error: Option<&'a RawValue>,
}

impl<'a> WireResponse<'a> {
    fn fields(&self) -> Fields<'a> {
        Fields {
            id: self.id.map(raw_bytes),
            result: self.result.map(raw_bytes),
            error: self.error.map(raw_bytes),
        }
    }
}

/// The payload of one answer object: tolerant of `"error": null` beside a
/// result and `"result": null` beside an error (common and harmless),
/// strict about two real values or none.
fn payload_of(body: &Bytes, wire: &Fields<'_>) -> Result<Payload, String> {
    let error = wire.error.filter(|e| *e != b"null");
    let result = match (wire.result, error) {
        (Some(b"null"), Some(_)) => None,
        (result, _) => result,
    };
    Ok(match (result, error) {
        (Some(result), None) => Payload::Result(RawJson::slice_of_bytes(body, result)),
        (None, Some(error)) => match ErrorObject::from_raw_bytes(body, error) {
            Some(obj) => Payload::Error(obj),
            None => return Err("malformed error object".to_owned()),
        },
        (Some(_), Some(_)) => return Err("both result and error".to_owned()),
        (None, None) => return Err("neither result nor error".to_owned()),
    })
}

/// Why an answer is not JSON, in the words the callers report.
fn malformed(e: impl fmt::Display) -> String {
    format!("malformed JSON: {e}")
}

/// One answer object, or a batch's array of them, to its end.
fn scan_into<'a>(
    scan: &mut Scanner<'a>,
    batch: bool,
    each: &mut impl FnMut(Fields<'a>),
) -> Result<(), Scan> {
    if batch {
        scan.expect_open_array()?;
        if !scan.eat(b']') {
            loop {
                each(scan.answer()?);
                if scan.eat(b']') {
                    break;
                }
                scan.expect_comma()?;
            }
        }
    } else {
        each(scan.answer()?);
    }
    scan.end()
}

/// Scans the answer objects of `body` (one, or a batch's) with
/// [`json_scan`](crate::json_scan), handing each to `each`; `Ok(false)`
/// when only serde_json can tell (an escaped member name).
fn scan_answers<'a>(
    body: &'a Bytes,
    batch: bool,
    mut each: impl FnMut(Fields<'a>),
) -> Result<bool, String> {
    let mut scan = Scanner::new(body);
    match scan_into(&mut scan, batch, &mut each) {
        Ok(()) => Ok(true),
        Err(Scan::EscapedKey) => Ok(false),
        Err(Scan::Duplicate(name)) => Err(malformed(format_args!("duplicate field `{name}`"))),
        Err(Scan::Malformed(at)) => Err(malformed(format_args!("at byte {at}"))),
    }
}

/// One answer of a batch: its wire id, and its payload or why it is not one.
pub type BatchAnswerItem = (u64, Result<Payload, String>);

/// Parses a backend's answer to a batch sent with numeric wire ids, in one
/// pass: each answer's wire id and payload (or why it is not one), in the
/// answer's order, zero-copy. Answers without a numeric id are left out
/// (the caller finds their calls missing).
///
/// ```
/// use bytes::Bytes;
/// use rpc_core::parse::parse_batch_response;
///
/// let body = Bytes::from_static(br#"[{"id":2,"result":"0x2"},{"id":1,"error":{"code":-32000,"message":"no"}}]"#);
/// let items = parse_batch_response(&body).unwrap();
/// assert_eq!(items.len(), 2);
/// assert_eq!(items[0].0, 2);
/// assert!(matches!(items[1].1, Ok(rpc_core::Payload::Error(_))));
/// assert!(parse_batch_response(&Bytes::from_static(b"{}")).is_err());
/// ```
pub fn parse_batch_response(body: &Bytes) -> Result<Vec<BatchAnswerItem>, String> {
    parse_batch_response_of(body, 0)
}

/// [`parse_batch_response`] of the answer to `calls` calls (room made for
/// that many answers at once).
///
/// ```
/// use bytes::Bytes;
/// use rpc_core::parse::parse_batch_response_of;
///
/// let body = Bytes::from_static(br#"[{"id":1,"result":"0x1"},{"id":2,"result":"0x2"}]"#);
/// assert_eq!(parse_batch_response_of(&body, 2).unwrap().len(), 2);
/// ```
pub fn parse_batch_response_of(body: &Bytes, calls: usize) -> Result<Vec<BatchAnswerItem>, String> {
    if body.iter().copied().find(|b| !b.is_ascii_whitespace()) != Some(b'[') {
        return Err("a batch answer that is not a JSON array".to_owned());
    }
    let mut wires = Vec::with_capacity(calls);
    let serde;
    if !scan_answers(body, true, |f| wires.push(f))? {
        serde = serde_json::from_slice::<Vec<WireResponse<'_>>>(body).map_err(malformed)?;
        wires = serde.iter().map(WireResponse::fields).collect();
    }
    let mut items = Vec::with_capacity(wires.len());
    items.extend(wires.iter().filter_map(|wire| {
        let id = crate::id::plain_u64(wire.id?)?;
        Some((id, payload_of(body, wire)))
    }));
    Ok(items)
}

/// Parses a backend's answer to one call sent with id `wire_id`.
///
/// Tolerant of what real providers send (a missing `jsonrpc`, extra fields,
/// `"error": null` beside a result, an error answered under id `null`), strict
/// about what would make the answer wrong (another call's id, a batch, neither
/// or both of result and error). The result stays a zero-copy slice of `body`.
///
/// Returns the reason on failure, for [`RpcError::InvalidResponse`](crate::RpcError::InvalidResponse).
pub fn parse_response(body: &Bytes, wire_id: &Id) -> Result<Payload, String> {
    parse_response_to(body, wire_id.as_json())
}

/// [`parse_response`] with the wire id as its JSON text.
pub(crate) fn parse_response_to(body: &Bytes, wire_id: &[u8]) -> Result<Payload, String> {
    let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'{') => {}
        Some(b'[') => return Err("a batch answer to a single call".to_owned()),
        None => return Err("empty body".to_owned()),
        Some(_) => return Err("not a JSON-RPC response object".to_owned()),
    }
    let mut one = None;
    let wire = if scan_answers(body, false, |f| one = Some(f))? {
        one.unwrap_or_default()
    } else {
        serde_json::from_slice::<WireResponse<'_>>(body)
            .map_err(malformed)?
            .fields()
    };
    let payload = payload_of(body, &wire)?;
    let id_ok = match wire.id {
        Some(id) => id == wire_id || matches!(payload, Payload::Error(_)) && id == b"null",
        None => matches!(payload, Payload::Error(_)),
    };
    if !id_ok {
        return Err("id does not match the request".to_owned());
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_scan::tests::mutations;

    /// A parsed message as text: each call as it would be forwarded, or
    /// the error it is answered with.
    fn describe(parsed: &Result<Incoming, MessageError>) -> String {
        let call = |c: &Result<Request, InvalidCall>| match c {
            Ok(req) => String::from_utf8_lossy(&req.to_json()).into_owned(),
            Err(e) => String::from_utf8_lossy(&e.clone().into_response().to_json()).into_owned(),
        };
        match parsed {
            Ok(Incoming::Single(c)) => format!("single {}", call(c)),
            Ok(Incoming::Batch(calls)) => {
                format!(
                    "batch {}",
                    calls.iter().map(call).collect::<Vec<_>>().join(" | ")
                )
            }
            Err(e) => format!("error {e:?}"),
        }
    }

    /// Random changes to real-looking calls and batches: what the
    /// scanner's path makes of each is what serde_json's makes of it
    /// (the same calls forwarded, the same errors with the same words).
    #[test]
    fn mutated_calls_get_serde_jsons_verdict() {
        let seeds = [
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x407d73d8a49eeb85d32cf465507dd71d507100c1","latest"]}"#,
            r#"[{"jsonrpc":"2.0","id":"a\"b","method":"eth_call","params":[{"to":"0x01","data":"0x70a08231"},"0x1b4"]},{"jsonrpc":"2.0","method":"eth_blockNumber"},{"jsonrpc":"2.0","id":null,"method":"m\u0065","params":{"k":[1.5e3,-2,true,false,null]}}]"#,
            r#" [ {"id":7, "jsonrpc":"2.0", "method":"net_version", "params":[], "extra":{"x":[]}} , 3 ] "#,
        ];
        let (mut checked, mut not_utf8, mut scanned) = (0, 0, 0);
        for seed in seeds {
            for text in std::iter::once(seed.as_bytes().to_vec()).chain(mutations(seed, 15_000)) {
                let utf8 = std::str::from_utf8(&text).is_ok();
                for max in [1, 2, 10] {
                    let body = Bytes::from(text.clone());
                    if utf8 {
                        scanned += usize::from(scan_message(&body, max).is_some());
                    }
                    let fast = describe(&parse_message(body.clone(), max));
                    let serde = describe(&parse_message_serde(body, max));
                    assert_eq!(fast, serde, "{}", String::from_utf8_lossy(&text));
                }
                checked += 1;
                not_utf8 += usize::from(!utf8);
            }
        }
        assert!(checked > 40_000, "{checked}");
        assert!(not_utf8 > 5_000, "{not_utf8}");
        // Most texts were decided by the scanner, not handed back.
        let utf8 = checked - not_utf8;
        assert!(scanned > utf8, "{scanned} of {utf8} (x3)");
    }

    /// What serde would read as a call's members in order (an array) is
    /// no call, in a batch as alone.
    #[test]
    fn an_array_is_not_a_call() {
        let body = Bytes::from_static(
            br#"[["2.0",1,"eth_blockNumber",[]],{"jsonrpc":"2.0","id":2,"method":"m"}]"#,
        );
        let Ok(Incoming::Batch(calls)) = parse_message(body, 10) else {
            panic!("a batch");
        };
        let first = calls[0].as_ref().expect_err("not a call");
        assert_eq!(first.id, Id::Null);
        assert!(first.error.message().contains("must be an object"));
        assert!(calls[1].is_ok());
        let alone = parse_message(Bytes::from_static(br#"["2.0",1,"eth_blockNumber",[]]"#), 10);
        let Ok(Incoming::Batch(calls)) = alone else {
            panic!("a batch of four");
        };
        assert!(calls.iter().all(Result::is_err));
    }

    /// Each answer's id text and payload, or why the whole body is refused.
    type Answers = Result<Vec<(Option<Vec<u8>>, Result<Payload, String>)>, String>;

    /// What the answers of `body` are, by serde_json alone (answers that
    /// are not objects refused, as the scanner does: serde would read an
    /// array as the struct's fields in order).
    fn serde_only(body: &Bytes, batch: bool) -> Answers {
        let objects: Vec<&RawValue> = if batch {
            serde_json::from_slice(body).map_err(malformed)?
        } else {
            vec![serde_json::from_slice(body).map_err(malformed)?]
        };
        let mut out = Vec::new();
        for raw in objects {
            if !raw.get().starts_with('{') {
                return Err(malformed("not an object"));
            }
            let wire = serde_json::from_str::<WireResponse<'_>>(raw.get()).map_err(malformed)?;
            let fields = wire.fields();
            out.push((fields.id.map(<[u8]>::to_vec), payload_of(body, &fields)));
        }
        Ok(out)
    }

    /// `None` when the scanner leaves the answer to serde_json.
    fn scanned(body: &Bytes, batch: bool) -> Option<Answers> {
        let mut answers = Vec::new();
        match scan_answers(body, batch, |f| answers.push(f)) {
            Ok(false) => None,
            Ok(true) => Some(Ok(answers
                .iter()
                .map(|f| (f.id.map(<[u8]>::to_vec), payload_of(body, f)))
                .collect())),
            Err(e) => Some(Err(e)),
        }
    }

    /// On thousands of damaged answers, the scanner finds exactly the
    /// answers, ids and payloads serde_json finds, and refuses exactly
    /// what it refuses.
    #[test]
    fn the_scanner_reads_answers_as_serde_json_does() {
        let single = r#"{"jsonrpc":"2.0","id":17,"result":{"hash":"0xab","txs":[{"v":"0x1"}],"n":null},"error":null}"#;
        let batch = r#"[{"jsonrpc":"2.0","id":1,"result":"0x1"},{"id":2,"error":{"code":-32000,"message":"m\u00e9","data":[1]}},{"id":3,"result":null,"error":{"code":1,"message":"x"}}]"#;
        let mut compared = 0;
        for (seed, is_batch) in [(single, false), (batch, true)] {
            for text in std::iter::once(seed.as_bytes().to_vec()).chain(mutations(seed, 20_000)) {
                let body = Bytes::from(text.clone());
                let Some(fast) = scanned(&body, is_batch) else {
                    // An escaped member name: serde_json decides.
                    continue;
                };
                let slow = serde_only(&body, is_batch);
                compared += 1;
                match (&fast, &slow) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", String::from_utf8_lossy(&text)),
                    (Err(_), Err(_)) => {}
                    _ => {
                        panic!(
                            "{}: scanner {fast:?}, serde {slow:?}",
                            String::from_utf8_lossy(&text)
                        );
                    }
                }
            }
        }
        assert!(compared > 30_000, "{compared}");
    }

    #[test]
    fn escaped_member_names_are_read_by_serde_json() {
        let body = Bytes::from_static(br#"{"\u0069d":5,"result":"0x1"}"#);
        assert_eq!(
            parse_response(&body, &Id::from(5u64)),
            Ok(Payload::Result(RawJson::from_static(r#""0x1""#).unwrap()))
        );
        let body = Bytes::from_static(br#"[{"id":5,"r\u0065sult":"0x1"}]"#);
        let items = parse_batch_response(&body).unwrap();
        assert_eq!(items[0].0, 5);
        assert!(items[0].1.is_ok());
    }

    #[test]
    fn answers_that_are_not_utf8_or_repeat_a_member_are_malformed() {
        let body = Bytes::from_static(b"{\"id\":1,\"result\":\"\xff\"}");
        assert!(parse_response(&body, &Id::from(1u64))
            .unwrap_err()
            .starts_with("malformed JSON"));
        let body = Bytes::from_static(br#"{"id":1,"result":"0x1","result":"0x2"}"#);
        assert_eq!(
            parse_response(&body, &Id::from(1u64)),
            Err("malformed JSON: duplicate field `result`".to_owned())
        );
        let body = Bytes::from_static(br#"[{"id":1,"result":"0x1"},[1,"0x2",null]]"#);
        assert!(parse_batch_response(&body)
            .unwrap_err()
            .starts_with("malformed JSON"));
    }
}
