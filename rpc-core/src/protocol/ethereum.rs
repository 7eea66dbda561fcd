//! Ethereum JSON-RPC's methods: the one list every crate reads.

use super::CacheRule::{BlockInResult, BlockParam, Forever, LogsFilter, Tip};
use super::MethodFacts as F;
use super::{Handle, MinedAt};

/// A read whose answer is pinned by the block param at `i`.
const fn at_block(i: usize) -> F {
    F::read().cache(BlockParam(i)).block(i)
}

/// A transaction or receipt by hash: settled once its block is.
const fn by_hash() -> F {
    F::read().cache(BlockInResult).mined(MinedAt::BlockNumber)
}

/// Filters and subscriptions live on the node that created them.
const FILTER: F = F::unsafe_().stateful();

pub(super) const METHODS: &[(&str, F)] = &[
    // Chain identity: never changes.
    ("eth_chainId", F::read().cache(Forever)),
    ("net_version", F::read().cache(Forever)),
    // The tip and fee market.
    ("eth_blockNumber", F::read().cache(Tip)),
    ("eth_gasPrice", F::read().cache(Tip)),
    ("eth_maxPriorityFeePerGas", F::read().cache(Tip)),
    ("eth_blobBaseFee", F::read().cache(Tip)),
    // By block hash: immutable.
    (
        "eth_getBlockByHash",
        F::read().cache(Forever).mined(MinedAt::Number),
    ),
    (
        "eth_getBlockTransactionCountByHash",
        F::read().cache(Forever),
    ),
    (
        "eth_getTransactionByBlockHashAndIndex",
        F::read().cache(Forever),
    ),
    ("eth_getUncleByBlockHashAndIndex", F::read().cache(Forever)),
    ("eth_getUncleCountByBlockHash", F::read().cache(Forever)),
    // State and blocks at a block (tag, number, hash or EIP-1898 object).
    ("eth_getBalance", at_block(1)),
    ("eth_getCode", at_block(1)),
    ("eth_getTransactionCount", at_block(1)),
    ("eth_getStorageAt", at_block(2)),
    ("eth_call", at_block(1)),
    ("eth_estimateGas", at_block(1)),
    ("eth_createAccessList", at_block(1)),
    ("eth_getProof", at_block(2)),
    ("eth_getBlockByNumber", at_block(0).mined(MinedAt::Number)),
    ("eth_getBlockReceipts", at_block(0)),
    ("eth_getBlockTransactionCountByNumber", at_block(0)),
    ("eth_getTransactionByBlockNumberAndIndex", at_block(0)),
    ("eth_getUncleByBlockNumberAndIndex", at_block(0)),
    ("eth_getUncleCountByBlockNumber", at_block(0)),
    ("eth_feeHistory", at_block(1)),
    ("eth_getLogs", F::read().cache(LogsFilter)),
    // By transaction hash: settled once its block is.
    ("eth_getTransactionByHash", by_hash()),
    ("eth_getTransactionReceipt", by_hash()),
    // Reads each node answers for itself (not cached).
    ("eth_accounts", F::read()),
    ("eth_coinbase", F::read()),
    ("eth_hashrate", F::read()),
    ("eth_mining", F::read()),
    ("eth_protocolVersion", F::read()),
    ("eth_simulateV1", F::read()),
    ("eth_syncing", F::read()),
    ("net_listening", F::read()),
    ("net_peerCount", F::read()),
    ("web3_clientVersion", F::read()),
    ("web3_sha3", F::read()),
    // Traces: reads (heavy ones; never cached).
    ("debug_trace*", F::read()),
    ("debug_traceBlockByHash", F::read()),
    ("debug_traceBlockByNumber", F::read()),
    ("debug_traceCall", F::read()),
    ("debug_traceTransaction", F::read()),
    ("trace_*", F::read()),
    ("trace_block", F::read()),
    ("trace_call", F::read()),
    ("trace_filter", F::read()),
    ("trace_replayTransaction", F::read()),
    ("trace_transaction", F::read()),
    // A signed transaction's broadcast: the same transaction cannot be
    // included twice, so it may be repeated.
    ("eth_sendRawTransaction", F::broadcast()),
    ("eth_sendRawTransactionConditional", F::broadcast()),
    ("eth_sendRawTransactionSync", F::broadcast()),
    // Signed by the node with its next nonce: never repeated.
    ("eth_sendTransaction", F::unsafe_write()),
    ("eth_sign", F::unsafe_()),
    ("eth_signTransaction", F::unsafe_()),
    ("eth_signTypedData_v4", F::unsafe_()),
    // Per-node state.
    ("eth_newFilter", FILTER.handle(Handle::Creates)),
    ("eth_newBlockFilter", FILTER.handle(Handle::Creates)),
    (
        "eth_newPendingTransactionFilter",
        FILTER.handle(Handle::Creates),
    ),
    ("eth_getFilterChanges", FILTER.handle(Handle::Uses)),
    ("eth_getFilterLogs", FILTER.handle(Handle::Uses)),
    ("eth_uninstallFilter", FILTER.handle(Handle::Removes)),
    ("eth_subscribe", FILTER),
    ("eth_unsubscribe", FILTER),
    // Dev-node controls that change the chain (anvil, hardhat, ganache).
    ("evm_*", F::unsafe_write()),
    ("anvil_*", F::unsafe_write()),
    ("hardhat_*", F::unsafe_write()),
];
