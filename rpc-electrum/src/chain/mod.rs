//! Verified chain facts: block headers checked from a checkpoint (linkage,
//! proof of work, the network's difficulty rule, most work wins) and merkle
//! proofs checked against them, so a server cannot forge a tip or a
//! confirmation.
//!
//! ```
//! use rpc_electrum::chain::{ChainParams, HeaderChain};
//!
//! let mut chain = HeaderChain::new(ChainParams::bitcoin_regtest());
//! // Headers a server sent (none here); the first at height 1.
//! assert!(chain.connect(1, &[]).is_ok());
//! assert_eq!(chain.tip_height(), 0);
//! ```

mod file;
mod header;
mod params;
mod spv;
mod store;
mod verifier;

pub use header::{
    bits_from_target, hash_from_hex, hash_to_hex, hash_value, hex_bytes, sha256d, target_from_bits,
    work, Hash, Header,
};
pub use params::{
    asert_bits, retarget, AsertAnchor, ChainParams, Checkpoint, DifficultyRule, RETARGET_INTERVAL,
    TARGET_TIMESPAN,
};
pub use spv::{reads_as_transaction, verify_merkle, SpvError};
pub use store::{ChainError, Connected, HeaderChain};
pub use verifier::{ChainVerifier, ServerView, Verdict, VerifyError};
