//! The Electrum protocol's methods: the one list every crate reads.

use super::CacheRule::{ElectrumTransaction, HeightParam, HeightRange, Tip};
use super::MethodFacts as F;

pub(super) const METHODS: &[(&str, F)] = &[
    // Headers and transactions by height: settled once deep enough.
    (
        "blockchain.block.header",
        F::read().cache(HeightParam(0)).block(0),
    ),
    (
        "blockchain.block.headers",
        F::read().cache(HeightRange).block(0),
    ),
    (
        "blockchain.transaction.get_merkle",
        F::read().cache(HeightParam(1)).block(1),
    ),
    (
        "blockchain.transaction.id_from_pos",
        F::read().cache(HeightParam(0)).block(0),
    ),
    // The raw transaction never changes; the verbose form counts confirmations.
    (
        "blockchain.transaction.get",
        F::read().cache(ElectrumTransaction),
    ),
    // Address (script hash) state, fees and the tip: follow the tip.
    ("blockchain.scripthash.get_balance", F::read().cache(Tip)),
    ("blockchain.scripthash.get_history", F::read().cache(Tip)),
    ("blockchain.scripthash.get_mempool", F::read().cache(Tip)),
    ("blockchain.scripthash.listunspent", F::read().cache(Tip)),
    ("blockchain.estimatefee", F::read().cache(Tip)),
    ("blockchain.relayfee", F::read().cache(Tip)),
    ("mempool.get_fee_histogram", F::read().cache(Tip)),
    // Answers with the tip, and subscribes the connection to new ones.
    (
        "blockchain.headers.subscribe",
        F::read().cache(Tip).stateful(),
    ),
    // Subscriptions: harmless to repeat (each answers the current status),
    // but they hold state on the connection.
    ("blockchain.scripthash.subscribe", F::read().stateful()),
    ("blockchain.scripthash.unsubscribe", F::unsafe_().stateful()),
    ("server.peers.subscribe", F::read().stateful()),
    // Each server answers for itself.
    ("server.banner", F::read()),
    ("server.donation_address", F::read()),
    ("server.features", F::read()),
    ("server.ping", F::read()),
    // A signed transaction's broadcast: may be repeated.
    ("blockchain.transaction.broadcast", F::broadcast()),
    // The connection's own negotiation; peer announcements.
    ("server.version", F::unsafe_().stateful()),
    ("server.add_peer", F::unsafe_()),
];
