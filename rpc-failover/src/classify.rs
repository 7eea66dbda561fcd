//! Which calls may be repeated, and which answers count against a backend.
//!
//! Failover, retry, hedging and quorum all ask the same two questions:
//!
//! * *May this call be sent again?* — [`Classifier`] answers with an
//!   [`Idempotency`]. A call that certainly was not sent may always go to
//!   another backend; a call that *may* have been delivered is repeated only
//!   when the method is [safe to repeat](Idempotency::is_safe_to_repeat).
//!   [`MethodRules`] is the shipped classifier, with rule sets for
//!   [Ethereum](MethodRules::ethereum) and [Electrum](MethodRules::electrum).
//! * *Did the backend answer, or did it refuse?* — [`FailureRules`] picks out
//!   the JSON-RPC error objects (rate limits, a nested proxy's "no backend")
//!   that mean "this backend could not serve you" rather than "your call
//!   failed" (`execution reverted` is an answer and is passed through).

use std::fmt;
use std::sync::Arc;

use rpc_core::protocol::{block_at, MethodTable, Pattern, Protocol};
use rpc_core::{codes, Request, Response};

pub use rpc_core::protocol::{BlockTag, Idempotency};

/// Decides how a call may be repeated. Implement it to classify by params as
/// well as by method; [`MethodRules`] covers the common case.
///
/// ```
/// use rpc_core::Request;
/// use rpc_failover::{Classifier, Idempotency};
///
/// /// Everything is a read, except methods starting with `write_`.
/// struct MyRules;
///
/// impl Classifier for MyRules {
///     fn classify(&self, request: &Request) -> Idempotency {
///         if request.method().starts_with("write_") {
///             Idempotency::Unsafe
///         } else {
///             Idempotency::Read
///         }
///     }
/// }
///
/// assert_eq!(MyRules.classify(&Request::new("get_x")), Idempotency::Read);
/// ```
pub trait Classifier: Send + Sync + 'static {
    /// How `request` may be repeated.
    fn classify(&self, request: &Request) -> Idempotency;

    /// The lowest chain head that can answer `request`: the explicit block
    /// number or height it names, if any (`None` for `latest`, hashes and
    /// methods without a block). A head-tracking group sends the call only to
    /// members that have that block, when one does. Default: `None`.
    fn min_head(&self, request: &Request) -> Option<u64> {
        let _ = request;
        None
    }

    /// The block tag `request` names in its block param (`safe`,
    /// `finalized`, ...), if any. A head-tracking group sends calls for
    /// `safe` / `finalized` only to members at or past the group's agreed
    /// safe / finalized block, when one is. Default: `None`.
    fn block_tag(&self, request: &Request) -> Option<BlockTag> {
        let _ = request;
        None
    }

    /// [`min_head`](Self::min_head) and [`block_tag`](Self::block_tag) at
    /// once (implement it to read the params once; the default asks both).
    fn block(&self, request: &Request) -> (Option<u64>, Option<BlockTag>) {
        (self.min_head(request), self.block_tag(request))
    }
}

impl<C: Classifier + ?Sized> Classifier for Arc<C> {
    fn classify(&self, request: &Request) -> Idempotency {
        (**self).classify(request)
    }

    fn min_head(&self, request: &Request) -> Option<u64> {
        (**self).min_head(request)
    }

    fn block_tag(&self, request: &Request) -> Option<BlockTag> {
        (**self).block_tag(request)
    }

    fn block(&self, request: &Request) -> (Option<u64>, Option<BlockTag>) {
        (**self).block(request)
    }
}

/// A table of methods and their [`Idempotency`]: exact names first, then the
/// longest matching prefix, then a default.
///
/// The default for methods the table does not know is
/// [`Unsafe`](Idempotency::Unsafe): an unknown method is never repeated once
/// it may have been delivered.
///
/// ```
/// use rpc_core::Request;
/// use rpc_failover::{Classifier, Idempotency, MethodRules};
///
/// let rules = MethodRules::ethereum()
///     // A private method of our node that only reads:
///     .method("myco_getQuote", Idempotency::Read)
///     // We consider these unsafe even though the shipped set says read:
///     .prefix("debug_trace", Idempotency::Unsafe);
///
/// assert_eq!(rules.classify(&Request::new("eth_call")), Idempotency::Read);
/// assert_eq!(rules.classify(&Request::new("eth_sendRawTransaction")), Idempotency::Idempotent);
/// assert_eq!(rules.classify(&Request::new("eth_sendTransaction")), Idempotency::Unsafe);
/// assert_eq!(rules.classify(&Request::new("myco_getQuote")), Idempotency::Read);
/// assert_eq!(rules.classify(&Request::new("debug_traceCall")), Idempotency::Unsafe);
/// assert_eq!(rules.classify(&Request::new("who_knows")), Idempotency::Unsafe);
/// ```
#[derive(Clone)]
pub struct MethodRules {
    classes: MethodTable<Idempotency>,
    default: Idempotency,
    /// Method → index of its block-number (or height) param.
    block_params: MethodTable<usize>,
}

impl fmt::Debug for MethodRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MethodRules")
            .field("methods", &self.classes.len())
            .field("default", &self.default)
            .finish()
    }
}

impl Default for MethodRules {
    /// An empty table: every method is [`Unsafe`](Idempotency::Unsafe).
    fn default() -> Self {
        MethodRules::empty()
    }
}

impl MethodRules {
    /// A table that knows no method; everything is
    /// [`Unsafe`](Idempotency::Unsafe) until added.
    pub fn empty() -> Self {
        MethodRules {
            classes: MethodTable::new(),
            default: Idempotency::Unsafe,
            block_params: MethodTable::new(),
        }
    }

    /// The rules of a [`Protocol`]: each method's
    /// [`repeat`](rpc_core::protocol::MethodFacts::repeat) class and
    /// [`block`](rpc_core::protocol::MethodFacts::block) param.
    pub fn for_protocol(protocol: &Protocol) -> Self {
        let table = protocol.methods();
        let mut block_params = MethodTable::new();
        for (pattern, facts) in table.iter() {
            if let Some(i) = facts.block {
                block_params.insert_pattern(pattern, i);
            }
        }
        let mut classes = table.map(|f| f.repeat);
        // A name the vocabulary lists only to label it, with its prefix's
        // class, is left to the prefix: overriding the prefix
        // (`.prefix("debug_trace", ..)`) then covers it too.
        classes.retain(|p, class| match p {
            Pattern::Exact(name) => table.get_by_prefix(name).map(|f| f.repeat) != Some(*class),
            Pattern::Prefix(_) => true,
        });
        MethodRules {
            classes,
            default: Idempotency::Unsafe,
            block_params,
        }
    }

    /// The Ethereum rule set ([`Protocol::ethereum`]): standard reads
    /// (`eth_call`, `eth_getLogs`, `eth_getBalance`, ... `net_*`, `web3_*`)
    /// and the `debug_trace*` / `trace_*` families are
    /// [`Read`](Idempotency::Read); `eth_sendRawTransaction` (and its
    /// conditional / sync variants) is [`Idempotent`](Idempotency::Idempotent);
    /// everything else, including `eth_sendTransaction`, `eth_sign*`,
    /// `personal_*`, filter methods (node-local state), `eth_subscribe` and
    /// dev-node methods (`evm_*`, `anvil_*`, `hardhat_*`), is
    /// [`Unsafe`](Idempotency::Unsafe).
    pub fn ethereum() -> Self {
        Self::for_protocol(&Protocol::ethereum())
    }

    /// The Electrum rule set ([`Protocol::electrum`]): `blockchain.*` reads,
    /// `server.ping`, `server.features`, `server.banner`, ... are
    /// [`Read`](Idempotency::Read); `blockchain.transaction.broadcast` is
    /// [`Idempotent`](Idempotency::Idempotent); `server.version` (a
    /// per-connection negotiation), `server.add_peer` and unknown methods are
    /// [`Unsafe`](Idempotency::Unsafe).
    pub fn electrum() -> Self {
        Self::for_protocol(&Protocol::electrum())
    }

    /// Names the param (by index) of `method` that is a block number or
    /// height, for [`Classifier::min_head`]. The shipped sets know
    /// Ethereum's `eth_getBalance`, `eth_call`, `eth_getBlockByNumber`, ...
    /// and Electrum's `blockchain.block.header(s)` and
    /// `blockchain.transaction.id_from_pos`.
    pub fn block_param(mut self, method: &str, index: usize) -> Self {
        self.block_params
            .insert_pattern(Pattern::Exact(method.trim()), index);
        self
    }

    /// Classifies one method by its exact name (overrides any prefix rule).
    pub fn method(mut self, method: &str, class: Idempotency) -> Self {
        self.classes
            .insert_pattern(Pattern::Exact(method.trim()), class);
        self
    }

    /// Classifies every method starting with `prefix`; the longest matching
    /// prefix wins.
    pub fn prefix(mut self, prefix: &str, class: Idempotency) -> Self {
        self.classes.insert_pattern(Pattern::Prefix(prefix), class);
        self
    }

    /// The class of methods no rule matches. Defaults to
    /// [`Unsafe`](Idempotency::Unsafe).
    pub fn default_class(mut self, class: Idempotency) -> Self {
        self.default = class;
        self
    }

    /// The class of `method`.
    pub fn class_of(&self, method: &str) -> Idempotency {
        self.classes.get(method).copied().unwrap_or(self.default)
    }
}

impl Classifier for MethodRules {
    fn classify(&self, request: &Request) -> Idempotency {
        self.class_of(request.method())
    }

    fn min_head(&self, request: &Request) -> Option<u64> {
        self.block(request).0
    }

    fn block_tag(&self, request: &Request) -> Option<BlockTag> {
        self.block(request).1
    }

    fn block(&self, request: &Request) -> (Option<u64>, Option<BlockTag>) {
        match self.block_params.get(request.method()) {
            Some(&index) => block_at(request, index),
            None => (None, None),
        }
    }
}

/// Which JSON-RPC error objects mean *the backend could not serve the call*
/// (so it counts against the backend and the call may move on), as opposed to
/// an answer that is passed through to the client.
///
/// The defaults match common provider and proxy refusals:
///
/// * codes `429` (Alchemy-style rate limit), `-32011` (a proxy's "no backend
///   available"), `-32015` (a proxy's gateway timeout) and `-32016` (a proxy's
///   rate limit);
/// * messages containing, case-insensitively, `rate limit`, `too many
///   requests` or `exceeded its compute units`.
///
/// ```
/// use rpc_core::{ErrorObject, Id, Response};
/// use rpc_failover::FailureRules;
///
/// let rules = FailureRules::default().code(-32098);
/// let limited = Response::error(Id::from(1u64), ErrorObject::new(-32005, "daily request count exceeded, request rate limited"));
/// let reverted = Response::error(Id::from(1u64), ErrorObject::new(3, "execution reverted"));
/// let custom = Response::error(Id::from(1u64), ErrorObject::new(-32098, "capacity"));
/// assert!(rules.is_backend_failure(&limited));
/// assert!(!rules.is_backend_failure(&reverted));
/// assert!(rules.is_backend_failure(&custom));
/// ```
#[derive(Clone, Debug)]
pub struct FailureRules {
    codes: Vec<i64>,
    messages: Vec<Box<str>>,
}

impl Default for FailureRules {
    fn default() -> Self {
        FailureRules {
            codes: codes::BACKEND_REFUSALS.to_vec(),
            messages: vec![
                "rate limit".into(),
                "too many requests".into(),
                "exceeded its compute units".into(),
            ],
        }
    }
}

impl FailureRules {
    /// No error object counts against a backend.
    pub fn none() -> Self {
        FailureRules {
            codes: Vec::new(),
            messages: Vec::new(),
        }
    }

    /// Error objects with this code count against the backend.
    pub fn code(mut self, code: i64) -> Self {
        if !self.codes.contains(&code) {
            self.codes.push(code);
        }
        self
    }

    /// Error objects whose message contains `needle` (ASCII case-insensitive)
    /// count against the backend.
    pub fn message(mut self, needle: impl Into<Box<str>>) -> Self {
        self.messages.push(needle.into());
        self
    }

    /// Whether `response` is a refusal that counts against the backend.
    pub fn is_backend_failure(&self, response: &Response) -> bool {
        let Some(err) = response.error_object() else {
            return false;
        };
        self.codes.contains(&err.code())
            || self
                .messages
                .iter()
                .any(|needle| contains_ignore_ascii_case(err.message(), needle))
    }
}

fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_params_come_from_the_protocol_and_can_be_added() {
        let with = |m: &str, p: &'static str| {
            Request::new(m).with_params(rpc_core::RawJson::from_static(p).expect("json"))
        };
        let eth = MethodRules::ethereum();
        assert_eq!(
            eth.min_head(&with("eth_getBalance", r#"["0xabc","0x20"]"#)),
            Some(0x20)
        );
        assert_eq!(
            eth.block_tag(&with("eth_call", r#"[{},"finalized"]"#)),
            Some(BlockTag::Finalized)
        );
        let electrum = MethodRules::electrum();
        assert_eq!(
            electrum.min_head(&with("blockchain.block.headers", "[100, 5]")),
            Some(100)
        );
        let custom = MethodRules::empty().block_param("myco_at", 0);
        assert_eq!(custom.min_head(&with("myco_at", r#"["0x5"]"#)), Some(5));
    }

    #[test]
    fn ethereum_table() {
        let r = MethodRules::ethereum();
        for (m, c) in [
            ("eth_chainId", Idempotency::Read),
            ("eth_getLogs", Idempotency::Read),
            ("debug_traceTransaction", Idempotency::Read),
            ("trace_block", Idempotency::Read),
            ("eth_sendRawTransaction", Idempotency::Idempotent),
            ("eth_sendTransaction", Idempotency::Unsafe),
            ("eth_newFilter", Idempotency::Unsafe),
            ("eth_getFilterChanges", Idempotency::Unsafe),
            ("eth_subscribe", Idempotency::Unsafe),
            ("personal_sign", Idempotency::Unsafe),
            ("evm_mine", Idempotency::Unsafe),
            ("debug_setHead", Idempotency::Unsafe),
            ("blockchain.transaction.get", Idempotency::Unsafe),
        ] {
            assert_eq!(r.class_of(m), c, "{m}");
        }
    }

    #[test]
    fn electrum_table() {
        let r = MethodRules::electrum();
        for (m, c) in [
            ("blockchain.transaction.get", Idempotency::Read),
            ("blockchain.scripthash.get_balance", Idempotency::Read),
            ("blockchain.headers.subscribe", Idempotency::Read),
            ("server.ping", Idempotency::Read),
            ("blockchain.transaction.broadcast", Idempotency::Idempotent),
            ("server.version", Idempotency::Unsafe),
            ("server.add_peer", Idempotency::Unsafe),
            ("eth_call", Idempotency::Unsafe),
        ] {
            assert_eq!(r.class_of(m), c, "{m}");
        }
    }

    #[test]
    fn exact_beats_prefix_and_longest_prefix_wins() {
        let r = MethodRules::empty()
            .prefix("a_", Idempotency::Read)
            .prefix("a_b", Idempotency::Idempotent)
            .method("a_bc", Idempotency::Unsafe)
            .default_class(Idempotency::Read);
        assert_eq!(r.class_of("a_x"), Idempotency::Read);
        assert_eq!(r.class_of("a_bx"), Idempotency::Idempotent);
        assert_eq!(r.class_of("a_bc"), Idempotency::Unsafe);
        assert_eq!(r.class_of("zzz"), Idempotency::Read);
    }

    #[test]
    fn case_insensitive_message_match() {
        assert!(contains_ignore_ascii_case(
            "Too Many Requests!",
            "too many requests"
        ));
        assert!(!contains_ignore_ascii_case("too many", "too many requests"));
    }
}
