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

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rpc_core::{Request, Response};

/// Whether a method may be sent more than once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Idempotency {
    /// Reads state; repeating it, sending it to several backends or racing it
    /// is harmless. Hedging and quorum fan-out apply only to reads.
    Read,
    /// Changes state, but repeating it has no further effect (a signed
    /// transaction broadcast: the same transaction cannot be included twice).
    Idempotent,
    /// Repeating it may do the work twice (`eth_sendTransaction` signs with the
    /// next nonce; filters and subscriptions are per-node state). Never
    /// repeated once it may have been delivered.
    Unsafe,
}

impl Idempotency {
    /// `true` for [`Read`](Self::Read) and [`Idempotent`](Self::Idempotent).
    pub fn is_safe_to_repeat(self) -> bool {
        !matches!(self, Idempotency::Unsafe)
    }
}

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

/// A named block in a block param.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockTag {
    /// `latest`.
    Latest,
    /// `safe`.
    Safe,
    /// `finalized`.
    Finalized,
    /// `pending`.
    Pending,
    /// `earliest`.
    Earliest,
}

impl BlockTag {
    /// The tag for its name.
    pub fn parse(name: &str) -> Option<BlockTag> {
        Some(match name {
            "latest" => BlockTag::Latest,
            "safe" => BlockTag::Safe,
            "finalized" => BlockTag::Finalized,
            "pending" => BlockTag::Pending,
            "earliest" => BlockTag::Earliest,
            _ => return None,
        })
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
    exact: HashMap<Box<str>, Idempotency>,
    prefixes: Vec<(Box<str>, Idempotency)>,
    default: Idempotency,
    /// Method → index of its block-number (or height) param.
    block_params: HashMap<Box<str>, usize>,
}

impl fmt::Debug for MethodRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MethodRules")
            .field("methods", &self.exact.len())
            .field("prefixes", &self.prefixes)
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

/// Ethereum methods that only read.
const ETHEREUM_READS: &[&str] = &[
    "eth_accounts",
    "eth_blobBaseFee",
    "eth_blockNumber",
    "eth_call",
    "eth_chainId",
    "eth_coinbase",
    "eth_createAccessList",
    "eth_estimateGas",
    "eth_feeHistory",
    "eth_gasPrice",
    "eth_getBalance",
    "eth_getBlockByHash",
    "eth_getBlockByNumber",
    "eth_getBlockReceipts",
    "eth_getBlockTransactionCountByHash",
    "eth_getBlockTransactionCountByNumber",
    "eth_getCode",
    "eth_getLogs",
    "eth_getProof",
    "eth_getStorageAt",
    "eth_getTransactionByBlockHashAndIndex",
    "eth_getTransactionByBlockNumberAndIndex",
    "eth_getTransactionByHash",
    "eth_getTransactionCount",
    "eth_getTransactionReceipt",
    "eth_getUncleByBlockHashAndIndex",
    "eth_getUncleByBlockNumberAndIndex",
    "eth_getUncleCountByBlockHash",
    "eth_getUncleCountByBlockNumber",
    "eth_maxPriorityFeePerGas",
    "eth_mining",
    "eth_hashrate",
    "eth_protocolVersion",
    "eth_simulateV1",
    "eth_syncing",
    "net_listening",
    "net_peerCount",
    "net_version",
    "web3_clientVersion",
    "web3_sha3",
];

/// Ethereum methods that broadcast a signed transaction (repeatable).
const ETHEREUM_BROADCASTS: &[&str] = &[
    "eth_sendRawTransaction",
    "eth_sendRawTransactionConditional",
    "eth_sendRawTransactionSync",
];

/// Electrum methods that only read. Subscriptions are reads too: subscribing
/// twice is harmless and returns the current status.
const ELECTRUM_READS: &[&str] = &[
    "blockchain.block.header",
    "blockchain.block.headers",
    "blockchain.estimatefee",
    "blockchain.headers.subscribe",
    "blockchain.relayfee",
    "blockchain.scripthash.get_balance",
    "blockchain.scripthash.get_history",
    "blockchain.scripthash.get_mempool",
    "blockchain.scripthash.listunspent",
    "blockchain.scripthash.subscribe",
    "blockchain.transaction.get",
    "blockchain.transaction.get_merkle",
    "blockchain.transaction.id_from_pos",
    "mempool.get_fee_histogram",
    "server.banner",
    "server.donation_address",
    "server.features",
    "server.peers.subscribe",
    "server.ping",
];

impl MethodRules {
    /// A table that knows no method; everything is
    /// [`Unsafe`](Idempotency::Unsafe) until added.
    pub fn empty() -> Self {
        MethodRules {
            exact: HashMap::new(),
            prefixes: Vec::new(),
            default: Idempotency::Unsafe,
            block_params: HashMap::new(),
        }
    }

    /// The Ethereum rule set: standard reads (`eth_call`, `eth_getLogs`,
    /// `eth_getBalance`, ... `net_*`, `web3_*`) and the `debug_trace*` /
    /// `trace_*` families are [`Read`](Idempotency::Read);
    /// `eth_sendRawTransaction` (and its conditional / sync variants) is
    /// [`Idempotent`](Idempotency::Idempotent); everything else, including
    /// `eth_sendTransaction`, `eth_sign*`, `personal_*`, filter methods
    /// (node-local state), `eth_subscribe` and dev-node methods (`evm_*`,
    /// `anvil_*`, `hardhat_*`), is [`Unsafe`](Idempotency::Unsafe).
    pub fn ethereum() -> Self {
        let mut rules = MethodRules::empty();
        for m in ETHEREUM_READS {
            rules.exact.insert((*m).into(), Idempotency::Read);
        }
        for m in ETHEREUM_BROADCASTS {
            rules.exact.insert((*m).into(), Idempotency::Idempotent);
        }
        for &(m, i) in rpc_core::methods::ETHEREUM_BLOCK_PARAMS {
            rules.block_params.insert(m.into(), i);
        }
        rules
            .prefix("debug_trace", Idempotency::Read)
            .prefix("trace_", Idempotency::Read)
    }

    /// The Electrum rule set: `blockchain.*` reads, `server.ping`,
    /// `server.features`, `server.banner`, ... are [`Read`](Idempotency::Read);
    /// `blockchain.transaction.broadcast` is
    /// [`Idempotent`](Idempotency::Idempotent); `server.version` (a
    /// per-connection negotiation), `server.add_peer` and unknown methods are
    /// [`Unsafe`](Idempotency::Unsafe).
    pub fn electrum() -> Self {
        let mut rules = MethodRules::empty();
        for m in ELECTRUM_READS {
            rules.exact.insert((*m).into(), Idempotency::Read);
        }
        rules.exact.insert(
            "blockchain.transaction.broadcast".into(),
            Idempotency::Idempotent,
        );
        for (m, i) in [
            ("blockchain.block.header", 0),
            ("blockchain.block.headers", 0),
            ("blockchain.transaction.id_from_pos", 0),
        ] {
            rules.block_params.insert(m.into(), i);
        }
        rules
    }

    /// Names the param (by index) of `method` that is a block number or
    /// height, for [`Classifier::min_head`]. The shipped sets know
    /// Ethereum's `eth_getBalance`, `eth_call`, `eth_getBlockByNumber`, ...
    /// and Electrum's `blockchain.block.header(s)` and
    /// `blockchain.transaction.id_from_pos`.
    pub fn block_param(mut self, method: impl Into<Box<str>>, index: usize) -> Self {
        self.block_params.insert(method.into(), index);
        self
    }

    /// Classifies one method by its exact name (overrides any prefix rule).
    pub fn method(mut self, method: impl Into<Box<str>>, class: Idempotency) -> Self {
        self.exact.insert(method.into(), class);
        self
    }

    /// Classifies every method starting with `prefix`; the longest matching
    /// prefix wins.
    pub fn prefix(mut self, prefix: impl Into<Box<str>>, class: Idempotency) -> Self {
        let prefix = prefix.into();
        self.prefixes.retain(|(p, _)| *p != prefix);
        self.prefixes.push((prefix, class));
        // Longest first, so the first match is the most specific.
        self.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
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
        if let Some(class) = self.exact.get(method) {
            return *class;
        }
        for (prefix, class) in &self.prefixes {
            if method.starts_with(&**prefix) {
                return *class;
            }
        }
        self.default
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
        let Some(&index) = self.block_params.get(request.method()) else {
            return (None, None);
        };
        let Some(params) = request.params() else {
            return (None, None);
        };
        // Borrowed: only the one param is looked at, once.
        let Ok(list) =
            serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(params.as_bytes())
        else {
            return (None, None);
        };
        let Some(raw) = list.get(index).map(|r| r.get()) else {
            return (None, None);
        };
        match block_number(raw) {
            Some(n) => (Some(n), None),
            None => (
                None,
                serde_json::from_str::<&str>(raw)
                    .ok()
                    .and_then(BlockTag::parse),
            ),
        }
    }
}

/// An explicit block number in a param: `"0x10f"`, `271`, or an EIP-1898
/// `{"blockNumber": "0x10f"}`; `None` for tags, hashes and anything else.
fn block_number(raw: &str) -> Option<u64> {
    let raw = raw.trim();
    if let Ok(n) = raw.parse::<u64>() {
        return Some(n);
    }
    if raw.starts_with('{') {
        #[derive(serde::Deserialize)]
        struct ByNumber<'a> {
            #[serde(rename = "blockNumber", borrow)]
            block_number: Option<&'a str>,
        }
        let by: ByNumber<'_> = serde_json::from_str(raw).ok()?;
        return rpc_core::methods::hex_quantity(by.block_number?);
    }
    let text: &str = serde_json::from_str(raw).ok()?;
    rpc_core::methods::hex_quantity(text)
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
            codes: vec![429, -32011, -32015, -32016],
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
    fn explicit_blocks_are_read_from_params() {
        let eth = MethodRules::ethereum();
        let with = |m: &str, p: &'static str| {
            Request::new(m).with_params(rpc_core::RawJson::from_static(p).expect("json"))
        };
        for (method, params, expected) in [
            ("eth_getBlockByNumber", r#"["0x10f",false]"#, Some(0x10f)),
            ("eth_getBalance", r#"["0xabc","0x20"]"#, Some(0x20)),
            (
                "eth_call",
                r#"[{"to":"0x1"},{"blockNumber":"0x30"}]"#,
                Some(0x30),
            ),
            ("eth_call", r#"[{"to":"0x1"},{"blockHash":"0xaa"}]"#, None),
            ("eth_getBalance", r#"["0xabc","latest"]"#, None),
            ("eth_getBalance", r#"["0xabc"]"#, None),
            ("eth_getStorageAt", r#"["0xabc","0x0","0x40"]"#, Some(0x40)),
            ("eth_getBlockByNumber", r#"["0x",false]"#, None),
            (
                "eth_getBlockByNumber",
                r#"["0x1ffffffffffffffff",false]"#,
                None,
            ),
            ("eth_blockNumber", "[]", None),
            ("eth_getBlockByNumber", r#"{"not":"a list"}"#, None),
        ] {
            assert_eq!(
                eth.min_head(&with(method, params)),
                expected,
                "{method} {params}"
            );
        }
        let electrum = MethodRules::electrum();
        assert_eq!(
            electrum.min_head(&with("blockchain.block.header", "[271]")),
            Some(271)
        );
        assert_eq!(
            electrum.min_head(&with("blockchain.block.headers", "[100, 5]")),
            Some(100)
        );
        assert_eq!(
            electrum.min_head(&with("blockchain.scripthash.get_balance", r#"["ab"]"#)),
            None
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
