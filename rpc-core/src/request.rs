//! The request type that travels through every layer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::Extensions;
use tokio::time::Instant;

use crate::error_object::write_json_str;
use crate::{Id, RawJson};

/// One JSON-RPC call on its way to a backend.
///
/// The method is a shared string and the params stay raw JSON, so cloning a
/// request for a retry or a fan-out copies no params bytes. Per-call context
/// (a [`Deadline`], the client's address, anything a user's layer adds) lives in
/// the [`Extensions`], which clones share until one of them changes its own
/// (copy on write): a retry, failover or hedge attempt allocates nothing.
///
/// ```
/// use rpc_core::{Id, RawJson, Request};
///
/// let req = Request::new("eth_getBalance")
///     .with_id(Id::from(1u64))
///     .with_params(RawJson::from_static(r#"["0xabc","latest"]"#).unwrap());
/// assert_eq!(req.method(), "eth_getBalance");
/// assert!(!req.is_notification());
/// assert_eq!(
///     String::from_utf8(req.to_json()).unwrap(),
///     r#"{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0xabc","latest"]}"#
/// );
/// ```
#[derive(Clone)]
pub struct Request {
    id: Option<Id>,
    method: Arc<str>,
    params: Option<RawJson>,
    /// `None` until something is inserted; shared by clones until one of
    /// them is changed.
    extensions: Option<Arc<Extensions>>,
}

impl Request {
    /// A notification (no id) of `method` without params; add them with the
    /// `with_*` methods.
    pub fn new(method: impl Into<Arc<str>>) -> Self {
        Request {
            id: None,
            method: method.into(),
            params: None,
            extensions: None,
        }
    }

    /// Sets the id, which makes this a call rather than a notification.
    pub fn with_id(mut self, id: Id) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the params (a JSON array or object).
    pub fn with_params(mut self, params: RawJson) -> Self {
        self.params = Some(params);
        self
    }

    /// The id; `None` for a notification.
    pub fn id(&self) -> Option<&Id> {
        self.id.as_ref()
    }

    /// Replaces the id; `None` makes the request a notification.
    pub fn set_id(&mut self, id: Option<Id>) {
        self.id = id;
    }

    /// `true` when the request has no id and expects no answer.
    pub fn is_notification(&self) -> bool {
        self.id.is_none()
    }

    /// The method name.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The method name as the shared string (cheap to keep, e.g. as a label).
    pub fn method_arc(&self) -> &Arc<str> {
        &self.method
    }

    /// The params, raw, if present.
    pub fn params(&self) -> Option<&RawJson> {
        self.params.as_ref()
    }

    /// Replaces the params.
    pub fn set_params(&mut self, params: Option<RawJson>) {
        self.params = params;
    }

    /// Per-call context.
    pub fn extensions(&self) -> &Extensions {
        match &self.extensions {
            Some(e) => e,
            None => Extensions::empty(),
        }
    }

    /// Per-call context, mutable. A request cloned before gets its own copy
    /// here (the first change after a clone copies the map; reads never do).
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        Arc::make_mut(self.extensions.get_or_insert_with(Default::default))
    }

    /// Puts every fact of `ext` in: as the request's extensions when it has
    /// none yet (one allocation, however many facts `ext` holds), else
    /// over what it has.
    #[cfg(feature = "server")]
    pub(crate) fn put_extensions(&mut self, ext: Extensions) {
        match &mut self.extensions {
            None => self.extensions = Some(Arc::new(ext)),
            Some(have) => Arc::make_mut(have).extend(ext),
        }
    }

    /// The call's [`Deadline`], if one was set.
    pub fn deadline(&self) -> Option<Instant> {
        self.extensions.as_deref()?.get::<Deadline>().map(|d| d.0)
    }

    /// Writes the request as compact JSON with the given id on the wire
    /// (`wire_id: None` keeps the request's own id).
    pub fn write_json(&self, wire_id: Option<&Id>, out: &mut Vec<u8>) {
        self.write_json_with(wire_id.map(Id::as_json), out);
    }

    /// [`write_json`](Self::write_json) with the wire id as JSON text
    /// (a backend's numeric wire id, formatted on the stack).
    pub(crate) fn write_json_with(&self, wire_id: Option<&[u8]>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"jsonrpc\":\"2.0\"");
        if let Some(id) = wire_id.or(self.id.as_ref().map(Id::as_json)) {
            out.extend_from_slice(b",\"id\":");
            out.extend_from_slice(id);
        }
        out.extend_from_slice(b",\"method\":");
        write_json_str(out, &self.method);
        if let Some(params) = &self.params {
            out.extend_from_slice(b",\"params\":");
            out.extend_from_slice(params.as_bytes());
        }
        out.push(b'}');
    }

    /// The request as compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        self.write_json(None, &mut out);
        out
    }

    /// The length of the request as compact JSON under its own id: exact
    /// unless the method name needs escaping (then a lower bound).
    pub fn encoded_len_hint(&self) -> usize {
        self.encoded_len_with(self.id.as_ref().map(Id::as_json))
    }

    /// The length of [`write_json_with`](Self::write_json_with) under
    /// `wire_id`: exact unless the method name needs escaping. A buffer of
    /// exactly this size becomes a `Bytes` without an allocation of its own
    /// (one with spare room gets a shared header allocated).
    pub(crate) fn encoded_len_with(&self, wire_id: Option<&[u8]>) -> usize {
        const JSONRPC: usize = r#"{"jsonrpc":"2.0""#.len();
        const ID: usize = r#","id":"#.len();
        const METHOD: usize = r#","method":"""#.len();
        const PARAMS: usize = r#","params":"#.len();
        let id = wire_id
            .or(self.id.as_ref().map(Id::as_json))
            .map_or(0, |id| ID + id.len());
        let params = self.params.as_ref().map_or(0, |p| PARAMS + p.len());
        JSONRPC + id + METHOD + self.method.len() + params + 1
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// The moment by which a call must be answered, carried in the request's
/// extensions. Backends and layers never wait past it.
///
/// ```
/// use std::time::Duration;
/// use rpc_core::{Deadline, Request};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut req = Request::new("eth_chainId");
/// req.extensions_mut().insert(Deadline::after(Duration::from_secs(5)));
/// assert!(req.deadline().is_some());
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// A deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Deadline(Instant::now() + timeout)
    }

    /// Time left until the deadline; zero once it has passed.
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// The client's socket address, put into each call's extensions by the HTTP
/// front when it is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteAddr(pub std::net::SocketAddr);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_lengths_are_exact_so_bodies_need_no_second_allocation() {
        let params = RawJson::from_static(r#"["0xabc", {"a": 1}]"#).expect("json");
        let calls = [
            Request::new("eth_blockNumber"),
            Request::new("eth_blockNumber").with_id(Id::from(7u64)),
            Request::new("eth_getBalance")
                .with_id(Id::from("a \"quoted\" id"))
                .with_params(params.clone()),
            Request::new("eth_call").with_params(params),
        ];
        for req in &calls {
            let written = req.to_json();
            assert_eq!(req.encoded_len_hint(), written.len(), "{req:?}");
            assert_eq!(written.capacity(), written.len(), "{req:?}");
            for wire in [&b"1"[..], b"18446744073709551615", b"\"w\""] {
                let mut out = Vec::new();
                req.write_json_with(Some(wire), &mut out);
                assert_eq!(req.encoded_len_with(Some(wire)), out.len(), "{req:?}");
            }
        }
        // A method name that needs escaping: a lower bound (the buffer grows).
        let odd = Request::new("a\"b\\c").with_id(Id::from(1u64));
        assert!(odd.encoded_len_hint() < odd.to_json().len());
    }
}
