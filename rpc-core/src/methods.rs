//! Facts about well-known methods that several layers need (shared here so
//! feature crates, which never depend on each other, use one table).

/// Ethereum methods that take a block (number, tag, hash or an EIP-1898
/// object), and the index of that param. The cache keys answers by it
/// (`rpc_cache`'s `Rule::BlockParam`); a head-tracking group sends a call for
/// an explicit block only to members that have it (`rpc_failover`'s
/// `Classifier::min_head`).
///
/// ```
/// let (_, index) = rpc_core::methods::ETHEREUM_BLOCK_PARAMS
///     .iter()
///     .find(|(m, _)| *m == "eth_call")
///     .unwrap();
/// assert_eq!(*index, 1);
/// ```
pub const ETHEREUM_BLOCK_PARAMS: &[(&str, usize)] = &[
    ("eth_getBalance", 1),
    ("eth_getCode", 1),
    ("eth_getTransactionCount", 1),
    ("eth_getStorageAt", 2),
    ("eth_call", 1),
    ("eth_estimateGas", 1),
    ("eth_createAccessList", 1),
    ("eth_getProof", 2),
    ("eth_getBlockByNumber", 0),
    ("eth_getBlockReceipts", 0),
    ("eth_getBlockTransactionCountByNumber", 0),
    ("eth_getTransactionByBlockNumberAndIndex", 0),
    ("eth_getUncleByBlockNumberAndIndex", 0),
    ("eth_getUncleCountByBlockNumber", 0),
    ("eth_feeHistory", 1),
];
