//! Bounded label values.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use metrics::SharedString;

/// The label for methods outside the known set.
pub(crate) const OTHER: &str = "other";

/// Standard Ethereum JSON-RPC methods (labelled by name by default).
const ETHEREUM: &[&str] = &[
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
    "eth_getFilterChanges",
    "eth_getFilterLogs",
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
    "eth_newBlockFilter",
    "eth_newFilter",
    "eth_newPendingTransactionFilter",
    "eth_sendRawTransaction",
    "eth_sendTransaction",
    "eth_sign",
    "eth_signTransaction",
    "eth_signTypedData_v4",
    "eth_simulateV1",
    "eth_subscribe",
    "eth_syncing",
    "eth_uninstallFilter",
    "eth_unsubscribe",
    "net_listening",
    "net_peerCount",
    "net_version",
    "web3_clientVersion",
    "web3_sha3",
    "debug_traceBlockByHash",
    "debug_traceBlockByNumber",
    "debug_traceCall",
    "debug_traceTransaction",
    "trace_block",
    "trace_call",
    "trace_filter",
    "trace_replayTransaction",
    "trace_transaction",
];

/// Electrum protocol methods (labelled by name by default).
const ELECTRUM: &[&str] = &[
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
    "blockchain.scripthash.unsubscribe",
    "blockchain.transaction.broadcast",
    "blockchain.transaction.get",
    "blockchain.transaction.get_merkle",
    "blockchain.transaction.id_from_pos",
    "mempool.get_fee_histogram",
    "server.add_peer",
    "server.banner",
    "server.donation_address",
    "server.features",
    "server.peers.subscribe",
    "server.ping",
    "server.version",
];

/// Which method names become label values; every other method is counted as
/// `other`, so a client sending random method names cannot grow the number
/// of series.
#[derive(Clone, Debug)]
pub struct MethodLabels {
    known: HashSet<SharedString>,
}

impl Default for MethodLabels {
    /// The standard Ethereum and Electrum methods.
    fn default() -> Self {
        MethodLabels::none()
            .with_static(ETHEREUM)
            .with_static(ELECTRUM)
    }
}

impl MethodLabels {
    /// No method is labelled by name: everything is `other`.
    pub fn none() -> Self {
        MethodLabels {
            known: HashSet::new(),
        }
    }

    fn with_static(mut self, names: &'static [&'static str]) -> Self {
        self.known
            .extend(names.iter().map(|m| SharedString::const_str(m)));
        self
    }

    /// Also label these methods by name (the methods a filter allows, a
    /// private API).
    pub fn with(mut self, methods: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.known
            .extend(methods.into_iter().map(|m| SharedString::from(m.into())));
        self
    }

    /// The label value for `method`: itself if known, else `other`.
    pub fn label(&self, method: &str) -> SharedString {
        match self.known.get(method) {
            Some(known) => known.clone(),
            None => SharedString::const_str(OTHER),
        }
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &SharedString> {
        self.known.iter()
    }
}

/// Error codes seen so far; at most `MAX` distinct ones are labelled, the
/// rest are `other` (a misbehaving backend cannot grow the series without
/// bound). Touched only on error paths.
pub(crate) struct CodeLabels {
    seen: Mutex<HashMap<i64, SharedString>>,
}

impl CodeLabels {
    const MAX: usize = 64;

    pub(crate) fn new() -> Self {
        CodeLabels {
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn label(&self, code: i64) -> SharedString {
        let Ok(mut seen) = self.seen.lock() else {
            return SharedString::const_str(OTHER);
        };
        if let Some(l) = seen.get(&code) {
            return l.clone();
        }
        if seen.len() >= Self::MAX {
            return SharedString::const_str(OTHER);
        }
        let l = SharedString::from(code.to_string());
        seen.insert(code, l.clone());
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_are_other() {
        let l = MethodLabels::default().with(["myco_quote"]);
        assert_eq!(&*l.label("eth_call"), "eth_call");
        assert_eq!(
            &*l.label("blockchain.transaction.get"),
            "blockchain.transaction.get"
        );
        assert_eq!(&*l.label("myco_quote"), "myco_quote");
        assert_eq!(&*l.label("x".repeat(10_000).as_str()), OTHER);
        assert_eq!(&*MethodLabels::none().label("eth_call"), OTHER);
    }

    #[test]
    fn at_most_64_distinct_codes() {
        let c = CodeLabels::new();
        for code in 0..64 {
            assert_eq!(&*c.label(code), code.to_string());
        }
        assert_eq!(&*c.label(1000), OTHER);
        assert_eq!(&*c.label(5), "5", "codes seen before keep their label");
    }
}
