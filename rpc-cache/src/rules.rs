//! Which calls may be cached, for how long, and what a call's key is.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use rpc_core::methods::hex_quantity;
use rpc_core::{Payload, Response};
use serde_json::Value;

/// How one method is cached.
///
/// The parameter-dependent rules decide per call: a call pinned to a block
/// hash never changes; a call pinned to an explicit block number or height is
/// immutable once that block is `confirmations` deep below the head the cache
/// has seen, and gets the short `tip_ttl` until then; a call on the moving tip
/// (`latest`, no tag) gets `tip_ttl`; `pending` is never cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule {
    /// Never cached (writes, per-node state, anything unknown).
    Never,
    /// Cached until evicted (the answer cannot change: `eth_chainId`).
    Forever,
    /// Cached for this long.
    Ttl(Duration),
    /// Cached for the rule set's `tip_ttl`: the answer follows the chain tip.
    Tip,
    /// Ethereum: the param at this index is a block tag, number, hash or an
    /// EIP-1898 `{"blockHash"|"blockNumber": ..}` object (missing = `latest`).
    BlockParam(usize),
    /// Ethereum: `eth_getLogs`' filter object (`blockHash`, or
    /// `fromBlock`/`toBlock`).
    LogsFilter,
    /// Ethereum: decided by the result's `blockNumber` (transactions and
    /// receipts by hash; a pending or unknown one is not cached).
    BlockInResult,
    /// Electrum: the param at this index is a block height.
    HeightParam(usize),
    /// Electrum: `blockchain.block.headers`' `start_height` and `count`.
    HeightRange,
    /// Electrum: `blockchain.transaction.get`: forever when not verbose
    /// (the raw transaction), `tip_ttl` when verbose (confirmations change).
    ElectrumTransaction,
}

/// Where the cache learns the chain head from answers passing through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HeadFormat {
    /// A hex quantity result (`eth_blockNumber`).
    HexQuantity,
    /// A `{"height": n, ..}` result (`blockchain.headers.subscribe`).
    HeightField,
}

/// Per-method cache rules, with the shipped sets for Ethereum and Electrum.
///
/// ```
/// use std::time::Duration;
/// use rpc_cache::{CacheRules, Rule};
///
/// let rules = CacheRules::ethereum()
///     .method("eth_getLogs", Rule::Never)                 // we do not cache logs
///     .method("myco_price", Rule::Ttl(Duration::from_secs(5)))
///     .tip_ttl(Duration::from_millis(500))
///     .confirmations(32);
/// assert_eq!(rules.rule("eth_chainId"), Rule::Forever);
/// assert_eq!(rules.rule("eth_getLogs"), Rule::Never);
/// assert_eq!(rules.rule("eth_sendRawTransaction"), Rule::Never);
/// ```
#[derive(Clone)]
pub struct CacheRules {
    methods: HashMap<Box<str>, Rule>,
    tip_ttl: Duration,
    confirmations: u64,
    lowercase_hex: bool,
    head_from: Option<(Box<str>, HeadFormat)>,
    /// Methods (exact, or prefixes when ending in `*`) whose success makes
    /// every tip answer stale: writes.
    writes: Vec<Box<str>>,
}

impl fmt::Debug for CacheRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheRules")
            .field("methods", &self.methods.len())
            .field("tip_ttl", &self.tip_ttl)
            .field("confirmations", &self.confirmations)
            .field("lowercase_hex", &self.lowercase_hex)
            .finish_non_exhaustive()
    }
}

impl CacheRules {
    /// No method is cached until added; hex strings are compared as given.
    pub fn empty() -> Self {
        CacheRules {
            methods: HashMap::new(),
            tip_ttl: Duration::from_secs(1),
            confirmations: 64,
            lowercase_hex: false,
            head_from: None,
            writes: Vec::new(),
        }
    }

    /// The Ethereum set. Forever: `eth_chainId`, `net_version`, and calls by
    /// block hash (`eth_getBlockByHash`, ...). By block param:
    /// `eth_getBalance`, `eth_getCode`, `eth_getTransactionCount`,
    /// `eth_getStorageAt`, `eth_call`, `eth_estimateGas`,
    /// `eth_createAccessList`, `eth_getProof`, `eth_getBlockByNumber`,
    /// `eth_getBlockReceipts`, `eth_feeHistory`, the `...ByNumber...` counts.
    /// `eth_getLogs` by its filter; transactions and receipts by hash by
    /// their `blockNumber`. Tip: `eth_blockNumber`, `eth_gasPrice`,
    /// `eth_maxPriorityFeePerGas`, `eth_blobBaseFee`. Everything else
    /// (writes, filters, `web3_clientVersion`, traces) is never cached.
    ///
    /// `tip_ttl` 1 s, 64 confirmations, hex case ignored in keys (addresses,
    /// hashes and data are case-insensitive), the head learned from
    /// `eth_blockNumber` answers.
    pub fn ethereum() -> Self {
        let mut r = CacheRules::empty();
        r.lowercase_hex = true;
        r.head_from = Some(("eth_blockNumber".into(), HeadFormat::HexQuantity));
        r.writes = [
            "eth_sendRawTransaction",
            "eth_sendRawTransactionConditional",
            "eth_sendRawTransactionSync",
            "eth_sendTransaction",
            // Dev-node controls that change the chain (anvil, hardhat, ganache).
            "evm_*",
            "anvil_*",
            "hardhat_*",
        ]
        .into_iter()
        .map(Box::from)
        .collect();
        for m in ["eth_chainId", "net_version"] {
            r.methods.insert(m.into(), Rule::Forever);
        }
        for m in [
            "eth_getBlockByHash",
            "eth_getBlockTransactionCountByHash",
            "eth_getTransactionByBlockHashAndIndex",
            "eth_getUncleByBlockHashAndIndex",
            "eth_getUncleCountByBlockHash",
        ] {
            r.methods.insert(m.into(), Rule::Forever);
        }
        for &(m, i) in rpc_core::methods::ETHEREUM_BLOCK_PARAMS {
            r.methods.insert(m.into(), Rule::BlockParam(i));
        }
        r.methods.insert("eth_getLogs".into(), Rule::LogsFilter);
        for m in ["eth_getTransactionByHash", "eth_getTransactionReceipt"] {
            r.methods.insert(m.into(), Rule::BlockInResult);
        }
        for m in [
            "eth_blockNumber",
            "eth_gasPrice",
            "eth_maxPriorityFeePerGas",
            "eth_blobBaseFee",
        ] {
            r.methods.insert(m.into(), Rule::Tip);
        }
        r
    }

    /// The Electrum set. Forever: `blockchain.transaction.get` (not
    /// verbose). By height: `blockchain.block.header`,
    /// `blockchain.block.headers`, `blockchain.transaction.get_merkle`,
    /// `blockchain.transaction.id_from_pos`. Tip: address (`scripthash`)
    /// queries, `blockchain.headers.subscribe`, fee estimates,
    /// `mempool.get_fee_histogram`. Never: `server.*` (each server answers
    /// for itself), broadcasts, unknown methods.
    ///
    /// `tip_ttl` 1 s, 6 confirmations, hex case ignored, the head learned
    /// from `blockchain.headers.subscribe` answers.
    pub fn electrum() -> Self {
        let mut r = CacheRules::empty();
        r.lowercase_hex = true;
        r.confirmations = 6;
        r.head_from = Some((
            "blockchain.headers.subscribe".into(),
            HeadFormat::HeightField,
        ));
        r.writes = vec!["blockchain.transaction.broadcast".into()];
        r.methods.insert(
            "blockchain.transaction.get".into(),
            Rule::ElectrumTransaction,
        );
        r.methods
            .insert("blockchain.block.header".into(), Rule::HeightParam(0));
        r.methods
            .insert("blockchain.block.headers".into(), Rule::HeightRange);
        r.methods.insert(
            "blockchain.transaction.get_merkle".into(),
            Rule::HeightParam(1),
        );
        r.methods.insert(
            "blockchain.transaction.id_from_pos".into(),
            Rule::HeightParam(0),
        );
        for m in [
            "blockchain.scripthash.get_balance",
            "blockchain.scripthash.get_history",
            "blockchain.scripthash.get_mempool",
            "blockchain.scripthash.listunspent",
            "blockchain.headers.subscribe",
            "blockchain.estimatefee",
            "blockchain.relayfee",
            "mempool.get_fee_histogram",
        ] {
            r.methods.insert(m.into(), Rule::Tip);
        }
        r
    }

    /// Sets the rule of one method (overrides the shipped one).
    pub fn method(mut self, method: impl Into<Box<str>>, rule: Rule) -> Self {
        self.methods.insert(method.into(), rule);
        self
    }

    /// The TTL of answers that follow the chain tip (default 1 s).
    pub fn tip_ttl(mut self, ttl: Duration) -> Self {
        self.tip_ttl = ttl;
        self
    }

    /// How deep below the head a block must be before answers pinned to it
    /// are cached forever (Ethereum 64, Electrum 6).
    pub fn confirmations(mut self, n: u64) -> Self {
        self.confirmations = n;
        self
    }

    /// Whether `0x..` and plain hex strings in params are lowercased in the
    /// key (on in both shipped sets).
    pub fn lowercase_hex(mut self, on: bool) -> Self {
        self.lowercase_hex = on;
        self
    }

    /// Marks `pattern` (an exact method name, or a prefix ending in `*`) as a
    /// write: once such a call succeeds, every answer cached by a TTL (the
    /// tip's, or a method's own) is treated as stale, so a client reads its
    /// own writes. Shipped: Ethereum's `eth_sendRawTransaction`,
    /// `eth_sendRawTransactionConditional`, `eth_sendRawTransactionSync`,
    /// `eth_sendTransaction` and the dev-node `evm_*`, `anvil_*`,
    /// `hardhat_*`; Electrum's `blockchain.transaction.broadcast`.
    pub fn write(mut self, pattern: impl Into<Box<str>>) -> Self {
        self.writes.push(pattern.into());
        self
    }

    /// Whether a successful `method` makes cached tip answers stale.
    pub fn is_write(&self, method: &str) -> bool {
        self.writes.iter().any(|w| match w.strip_suffix('*') {
            Some(prefix) => method.starts_with(prefix),
            None => **w == *method,
        })
    }

    /// The rule for `method`.
    pub fn rule(&self, method: &str) -> Rule {
        self.methods.get(method).copied().unwrap_or(Rule::Never)
    }

    /// The head this answer reveals, if the rule set learns from it.
    pub(crate) fn head_in(&self, method: &str, response: &Response) -> Option<u64> {
        let (m, format) = self.head_from.as_ref()?;
        if **m != *method {
            return None;
        }
        let raw = response.result_json()?;
        match format {
            HeadFormat::HexQuantity => {
                let s: &str = serde_json::from_slice(raw.as_bytes()).ok()?;
                hex_quantity(s)
            }
            HeadFormat::HeightField => {
                #[derive(serde::Deserialize)]
                struct Tip {
                    height: u64,
                }
                serde_json::from_slice::<Tip>(raw.as_bytes())
                    .ok()
                    .map(|t| t.height)
            }
        }
    }

    /// What to do with a call under `rule` (its method's [`rule`](Self::rule)),
    /// before it is made.
    pub(crate) fn plan(&self, rule: Rule, params: &Value, line: Line) -> Plan {
        let arg = |i: usize| -> Option<&Value> {
            match params {
                Value::Array(a) => a.get(i),
                _ => None,
            }
        };
        match rule {
            Rule::Never => Plan::Skip,
            Rule::Forever => Plan::Store(None),
            Rule::Ttl(d) => Plan::Store(Some(d)),
            Rule::Tip => Plan::Store(Some(self.tip_ttl)),
            Rule::BlockParam(i) => self.by_block(block_ref(arg(i)), line),
            Rule::LogsFilter => match arg(0) {
                Some(Value::Object(filter)) => {
                    if filter.contains_key("blockHash") {
                        return Plan::Store(None);
                    }
                    let from = block_ref(filter.get("fromBlock"));
                    let to = block_ref(filter.get("toBlock"));
                    match (from, to) {
                        (BlockRef::Number(a), BlockRef::Number(b)) => {
                            self.by_block(BlockRef::Number(a.max(b)), line)
                        }
                        (BlockRef::Pending, _) | (_, BlockRef::Pending) => Plan::Skip,
                        (BlockRef::Unknown, _) | (_, BlockRef::Unknown) => Plan::Skip,
                        _ => Plan::Store(Some(self.tip_ttl)),
                    }
                }
                _ => Plan::Skip,
            },
            Rule::BlockInResult => Plan::AfterResult,
            Rule::HeightParam(i) => match arg(i).and_then(Value::as_u64) {
                Some(h) => self.by_height(h, line),
                None => Plan::Skip,
            },
            Rule::HeightRange => match (
                arg(0).and_then(Value::as_u64),
                arg(1).and_then(Value::as_u64),
            ) {
                (Some(start), Some(count)) if count > 0 => {
                    self.by_height(start.saturating_add(count - 1), line)
                }
                _ => Plan::Skip,
            },
            Rule::ElectrumTransaction => match arg(1) {
                None | Some(Value::Bool(false)) => Plan::Store(None),
                Some(Value::Bool(true)) => Plan::Store(Some(self.tip_ttl)),
                Some(_) => Plan::Skip,
            },
        }
    }

    /// For [`Plan::AfterResult`]: how long to keep this answer.
    pub(crate) fn after_result(&self, response: &Response, line: Line) -> Option<Option<Duration>> {
        let raw = response.result_json()?;
        #[derive(serde::Deserialize)]
        struct Mined<'a> {
            #[serde(rename = "blockNumber", borrow)]
            block_number: Option<&'a str>,
        }
        let mined: Mined<'_> = serde_json::from_slice(raw.as_bytes()).ok()?;
        let n = hex_quantity(mined.block_number?)?;
        match self.by_block(BlockRef::Number(n), line) {
            Plan::Store(ttl) => Some(ttl),
            Plan::Settled => Some(None),
            _ => None,
        }
    }

    fn by_block(&self, block: BlockRef, line: Line) -> Plan {
        match block {
            BlockRef::Hash => Plan::Store(None),
            BlockRef::Earliest => Plan::Settled,
            BlockRef::Tip => Plan::Store(Some(self.tip_ttl)),
            BlockRef::Number(n) => self.by_height(n, line),
            BlockRef::Pending | BlockRef::Unknown => Plan::Skip,
        }
    }

    fn by_height(&self, height: u64, line: Line) -> Plan {
        if line.settles(height, self.confirmations) {
            Plan::Settled
        } else {
            Plan::Store(Some(self.tip_ttl))
        }
    }

    /// The block number an answer shows was mined (receipts' and
    /// transactions' `blockNumber`, blocks' `number`): after a client holds
    /// it, no answer from before that block may be served to it.
    pub(crate) fn block_in(&self, method: &str, response: &Response) -> Option<u64> {
        let blocks = self.rule(method) == Rule::BlockInResult;
        let is_block = self
            .head_from
            .as_ref()
            .is_some_and(|(_, f)| *f == HeadFormat::HexQuantity)
            && matches!(method, "eth_getBlockByNumber" | "eth_getBlockByHash");
        if !blocks && !is_block {
            return None;
        }
        let raw = response.result_json()?;
        #[derive(serde::Deserialize)]
        struct Mined<'a> {
            #[serde(rename = "blockNumber", borrow)]
            block_number: Option<&'a str>,
            #[serde(borrow)]
            number: Option<&'a str>,
        }
        let mined: Mined<'_> = serde_json::from_slice(raw.as_bytes()).ok()?;
        let text = if blocks {
            mined.block_number
        } else {
            mined.number
        };
        hex_quantity(text?)
    }

    pub(crate) fn confirmations_of(&self) -> u64 {
        self.confirmations
    }

    pub(crate) fn lowercases_hex(&self) -> bool {
        self.lowercase_hex
    }
}

/// Where the cache takes blocks as permanent: at or below the finalized
/// block when the chain reports one, else `confirmations` below the head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Line {
    /// The trusted head (0: unknown).
    pub(crate) head: u64,
    /// The agreed finalized block, when known.
    pub(crate) finalized: Option<u64>,
}

impl Line {
    /// A line from a head alone (no finality known).
    #[cfg(test)]
    pub(crate) fn head(head: u64) -> Line {
        Line {
            head,
            finalized: None,
        }
    }

    pub(crate) fn settles(self, height: u64, confirmations: u64) -> bool {
        match self.finalized {
            Some(f) => height <= f,
            None => self.head != 0 && height.saturating_add(confirmations) <= self.head,
        }
    }

    /// The highest settled height, if any.
    pub(crate) fn settled_to(self, confirmations: u64) -> Option<u64> {
        match self.finalized {
            Some(f) => Some(f),
            None if self.head != 0 => self.head.checked_sub(confirmations),
            None => None,
        }
    }
}

/// The decision before a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Do not cache.
    Skip,
    /// Cache an answer for this long (`None`: until evicted; the answer
    /// cannot change, e.g. pinned to a block hash).
    Store(Option<Duration>),
    /// Cache an answer about a block taken as permanent (at or below the
    /// finalized block, or deep enough) until evicted or until a
    /// reorganisation reaches it.
    Settled,
    /// Decide from the result.
    AfterResult,
}

/// What a block parameter points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockRef {
    Hash,
    Earliest,
    Tip,
    Pending,
    Number(u64),
    Unknown,
}

fn block_ref(v: Option<&Value>) -> BlockRef {
    match v {
        None | Some(Value::Null) => BlockRef::Tip,
        Some(Value::String(s)) => match s.as_str() {
            "latest" | "safe" | "finalized" => BlockRef::Tip,
            "pending" => BlockRef::Pending,
            "earliest" => BlockRef::Earliest,
            s if s.len() == 66 && s.starts_with("0x") => BlockRef::Hash,
            s => hex_quantity(s).map_or(BlockRef::Unknown, BlockRef::Number),
        },
        Some(Value::Object(o)) => {
            if o.contains_key("blockHash") {
                BlockRef::Hash
            } else {
                match o.get("blockNumber") {
                    Some(n) => block_ref(Some(n)),
                    None => BlockRef::Unknown,
                }
            }
        }
        Some(_) => BlockRef::Unknown,
    }
}

/// Whether an answer is "empty": `null` results and error objects are cached
/// only with negative caching on.
pub(crate) fn is_negative(payload: &Payload) -> bool {
    match payload {
        Payload::Error(_) => true,
        Payload::Result(raw) => raw.as_bytes() == b"null",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(rules: &CacheRules, method: &str, params: Value, head: u64) -> Plan {
        rules.plan(rules.rule(method), &params, Line::head(head))
    }

    const S: Option<Duration> = Some(Duration::from_secs(1));

    #[test]
    fn ethereum_table() {
        let r = CacheRules::ethereum();
        let hash = format!("0x{}", "ab".repeat(32));
        let addr = "0x6b175474e89094c44da98b954eedeac495271d0f";
        for (method, params, head, expected) in [
            ("eth_chainId", json!([]), 0, Plan::Store(None)),
            ("eth_blockNumber", json!([]), 0, Plan::Store(S)),
            ("eth_sendRawTransaction", json!(["0x00"]), 0, Plan::Skip),
            ("eth_sendTransaction", json!([{}]), 0, Plan::Skip),
            ("eth_newFilter", json!([{}]), 0, Plan::Skip),
            ("web3_clientVersion", json!([]), 0, Plan::Skip),
            (
                "eth_getBlockByHash",
                json!([hash, false]),
                0,
                Plan::Store(None),
            ),
            (
                "eth_getBalance",
                json!([addr, "latest"]),
                100,
                Plan::Store(S),
            ),
            ("eth_getBalance", json!([addr]), 100, Plan::Store(S)),
            ("eth_getBalance", json!([addr, "pending"]), 100, Plan::Skip),
            (
                "eth_getBalance",
                json!([addr, "earliest"]),
                100,
                Plan::Settled,
            ),
            ("eth_getBalance", json!([addr, "0x10"]), 100, Plan::Settled),
            ("eth_getBalance", json!([addr, "0x60"]), 100, Plan::Store(S)),
            ("eth_getBalance", json!([addr, "0x10"]), 0, Plan::Store(S)),
            (
                "eth_getBalance",
                json!([addr, {"blockHash": hash}]),
                0,
                Plan::Store(None),
            ),
            (
                "eth_getBalance",
                json!([addr, {"blockNumber": "0x1"}]),
                100,
                Plan::Settled,
            ),
            ("eth_getBalance", json!([addr, 7]), 100, Plan::Skip),
            (
                "eth_call",
                json!([{"to": addr}, "0x1"]),
                1000,
                Plan::Settled,
            ),
            (
                "eth_getBlockByNumber",
                json!(["0x1", true]),
                1000,
                Plan::Settled,
            ),
            (
                "eth_getBlockByNumber",
                json!(["latest", true]),
                1000,
                Plan::Store(S),
            ),
            ("eth_getBlockReceipts", json!([hash]), 0, Plan::Store(None)),
            (
                "eth_getLogs",
                json!([{"blockHash": hash}]),
                0,
                Plan::Store(None),
            ),
            (
                "eth_getLogs",
                json!([{"fromBlock": "0x1", "toBlock": "0x2"}]),
                1000,
                Plan::Settled,
            ),
            (
                "eth_getLogs",
                json!([{"fromBlock": "0x1", "toBlock": "0x3e0"}]),
                1000,
                Plan::Store(S),
            ),
            (
                "eth_getLogs",
                json!([{"fromBlock": "0x1"}]),
                1000,
                Plan::Store(S),
            ),
            (
                "eth_getLogs",
                json!([{"toBlock": "pending"}]),
                1000,
                Plan::Skip,
            ),
            ("eth_getLogs", json!([]), 1000, Plan::Skip),
            (
                "eth_getTransactionReceipt",
                json!([hash]),
                0,
                Plan::AfterResult,
            ),
        ] {
            assert_eq!(
                plan(&r, method, params.clone(), head),
                expected,
                "{method} {params} head {head}"
            );
        }
    }

    #[test]
    fn electrum_table() {
        let r = CacheRules::electrum();
        let txid = "ab".repeat(32);
        for (method, params, head, expected) in [
            (
                "blockchain.transaction.get",
                json!([txid]),
                0,
                Plan::Store(None),
            ),
            (
                "blockchain.transaction.get",
                json!([txid, false]),
                0,
                Plan::Store(None),
            ),
            (
                "blockchain.transaction.get",
                json!([txid, true]),
                0,
                Plan::Store(S),
            ),
            ("blockchain.block.header", json!([100]), 106, Plan::Settled),
            ("blockchain.block.header", json!([101]), 106, Plan::Store(S)),
            ("blockchain.block.header", json!([100]), 0, Plan::Store(S)),
            ("blockchain.block.header", json!(["x"]), 106, Plan::Skip),
            (
                "blockchain.block.headers",
                json!([90, 11]),
                106,
                Plan::Settled,
            ),
            (
                "blockchain.block.headers",
                json!([90, 12]),
                106,
                Plan::Store(S),
            ),
            ("blockchain.block.headers", json!([90, 0]), 106, Plan::Skip),
            (
                "blockchain.transaction.get_merkle",
                json!([txid, 5]),
                106,
                Plan::Settled,
            ),
            (
                "blockchain.scripthash.get_balance",
                json!([txid]),
                0,
                Plan::Store(S),
            ),
            ("blockchain.headers.subscribe", json!([]), 0, Plan::Store(S)),
            ("server.version", json!(["x", "1.4"]), 0, Plan::Skip),
            ("server.features", json!([]), 0, Plan::Skip),
            ("server.peers.subscribe", json!([]), 0, Plan::Skip),
            (
                "blockchain.transaction.broadcast",
                json!(["00"]),
                0,
                Plan::Skip,
            ),
        ] {
            assert_eq!(
                plan(&r, method, params.clone(), head),
                expected,
                "{method} {params} head {head}"
            );
        }
    }

    #[test]
    fn heads_are_learned_from_the_right_answers() {
        use rpc_core::{Id, RawJson};
        let eth = CacheRules::ethereum();
        let r = Response::result(Id::Null, RawJson::from_static("\"0x1b4\"").expect("json"));
        assert_eq!(eth.head_in("eth_blockNumber", &r), Some(436));
        assert_eq!(eth.head_in("eth_gasPrice", &r), None);
        let el = CacheRules::electrum();
        let r = Response::result(
            Id::Null,
            RawJson::from_static(r#"{"hex":"00","height":812345}"#).expect("json"),
        );
        assert_eq!(el.head_in("blockchain.headers.subscribe", &r), Some(812345));
    }

    #[test]
    fn receipts_are_kept_by_their_block() {
        use rpc_core::{Id, RawJson};
        let r = CacheRules::ethereum();
        let mined = Response::result(
            Id::Null,
            RawJson::from_static(r#"{"blockNumber":"0x10","status":"0x1"}"#).expect("json"),
        );
        assert_eq!(r.after_result(&mined, Line::head(1000)), Some(None));
        assert_eq!(r.after_result(&mined, Line::head(20)), Some(S));
        let pending = Response::result(
            Id::Null,
            RawJson::from_static(r#"{"blockNumber":null}"#).expect("json"),
        );
        assert_eq!(r.after_result(&pending, Line::head(1000)), None);
        let unknown = Response::result(Id::Null, RawJson::NULL);
        assert_eq!(r.after_result(&unknown, Line::head(1000)), None);
    }
}
