//! The verified header chain: linkage, proof of work, difficulty, most work.

use ruint::aliases::U256;

use super::header::{target_from_bits, work, Hash, Header};
use super::params::ChainParams;

/// Why headers were not connected. Every variant but
/// [`LessWork`](Self::LessWork) means the headers are invalid: whoever sent
/// them is not telling the truth about the chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The header does not name the block before it as its parent.
    #[error("header {height} does not link to the block before it")]
    Linkage {
        /// Its height.
        height: u32,
    },
    /// The header's hash does not meet its target.
    #[error("header {height} fails its proof of work")]
    ProofOfWork {
        /// Its height.
        height: u32,
    },
    /// The header's `bits` are not what the chain's difficulty rule gives.
    #[error("header {height} claims bits {found:#010x}; the chain requires {expected:#010x}")]
    Bits {
        /// Its height.
        height: u32,
        /// What the rule gives.
        expected: u32,
        /// What the header says.
        found: u32,
    },
    /// The header's target is invalid or easier than the network allows.
    #[error("header {height} has a target above the network's limit")]
    AboveLimit {
        /// Its height.
        height: u32,
    },
    /// The header at the checkpoint's height is not the checkpoint.
    #[error("header {height} contradicts the checkpoint")]
    Checkpoint {
        /// The checkpoint's height.
        height: u32,
    },
    /// The headers start above the tip + 1: the ones between are missing.
    #[error("headers start at {start}, but the chain ends at {tip}")]
    Gap {
        /// The first header's height.
        start: u32,
        /// The chain's tip height.
        tip: u32,
    },
    /// A valid fork that does not have more work than the chain from the
    /// fork point: the chain stays (first seen wins a tie).
    #[error("a fork at {fork} without more work than the chain")]
    LessWork {
        /// The first height where the fork differs.
        fork: u32,
    },
}

impl ChainError {
    /// Whether the headers were invalid (as opposed to a valid fork with
    /// less work).
    pub fn is_invalid(&self) -> bool {
        !matches!(self, ChainError::LessWork { .. } | ChainError::Gap { .. })
    }
}

/// What connecting headers did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connected {
    /// Every header was already in the chain.
    Known,
    /// The chain grew from `from` to `to`.
    Extended {
        /// The first new height.
        from: u32,
        /// The new tip height.
        to: u32,
    },
    /// Headers from `fork` up were replaced by a chain with more work.
    Reorganized {
        /// The first replaced height.
        fork: u32,
        /// The old tip height.
        old_tip: u32,
        /// The new tip height.
        new_tip: u32,
    },
}

/// A header chain verified from a checkpoint: each header links to its
/// parent, meets its target, has the `bits` the difficulty rule gives and a
/// target within the network's limit; of two valid branches, the one with
/// more work wins.
///
/// Headers are kept in memory, 80 bytes each above the checkpoint (1 M
/// headers: 80 MB; start from a recent checkpoint to keep it small).
///
/// ```
/// use rpc_electrum::chain::{ChainParams, HeaderChain};
///
/// let chain = HeaderChain::new(ChainParams::bitcoin_regtest());
/// assert_eq!(chain.tip_height(), 0);
/// assert_eq!(chain.hash_at(0), Some(ChainParams::bitcoin_regtest().checkpoint.hash));
/// ```
#[derive(Clone, Debug)]
pub struct HeaderChain {
    params: ChainParams,
    /// Index `i` is the header at `checkpoint.height + 1 + i`.
    headers: Vec<Header>,
    /// The work of `headers`.
    work: U256,
}

impl HeaderChain {
    /// An empty chain at the checkpoint of `params`.
    pub fn new(params: ChainParams) -> Self {
        HeaderChain {
            params,
            headers: Vec::new(),
            work: U256::ZERO,
        }
    }

    /// The rules.
    pub fn params(&self) -> &ChainParams {
        &self.params
    }

    fn base(&self) -> u32 {
        self.params.checkpoint.height
    }

    /// The tip's height.
    pub fn tip_height(&self) -> u32 {
        self.base() + self.headers.len() as u32
    }

    /// The tip's hash.
    pub fn tip_hash(&self) -> Hash {
        self.headers
            .last()
            .map_or(self.params.checkpoint.hash, Header::hash)
    }

    /// The work above the checkpoint.
    pub fn work(&self) -> U256 {
        self.work
    }

    /// The header at `height`, above the checkpoint and at most the tip.
    pub fn header(&self, height: u32) -> Option<Header> {
        let i = height.checked_sub(self.base() + 1)?;
        self.headers.get(i as usize).copied()
    }

    /// The block hash at `height`, from the checkpoint to the tip.
    pub fn hash_at(&self, height: u32) -> Option<Hash> {
        if height == self.base() {
            return Some(self.params.checkpoint.hash);
        }
        // A header's hash is the next header's `prev`: one hash to compute
        // at most.
        match self.header(height + 1) {
            Some(next) => Some(next.prev()),
            None => self.header(height).map(|h| h.hash()),
        }
    }

    /// Connects `headers`, the first at `start`: extends the chain, or
    /// replaces its top with a branch that has more work. Nothing changes
    /// on an error.
    pub fn connect(&mut self, start: u32, headers: &[Header]) -> Result<Connected, ChainError> {
        let (mut start, mut headers) = (start, headers);
        // Headers at or below the checkpoint: only the checkpoint itself is
        // checked; the rest is trusted as the checkpoint's past.
        while start <= self.base() {
            let Some((first, rest)) = headers.split_first() else {
                return Ok(Connected::Known);
            };
            if start == self.base() && first.hash() != self.params.checkpoint.hash {
                return Err(ChainError::Checkpoint { height: start });
            }
            start += 1;
            headers = rest;
        }
        let tip = self.tip_height();
        if start > tip + 1 {
            return Err(ChainError::Gap { start, tip });
        }
        // Skip what the chain already has.
        while let Some((first, rest)) = headers.split_first() {
            if self.header(start) != Some(*first) {
                break;
            }
            start += 1;
            headers = rest;
        }
        if headers.is_empty() {
            return Ok(Connected::Known);
        }
        let fork = start;
        let mut branch_work = U256::ZERO;
        for (i, header) in headers.iter().enumerate() {
            let height = fork + i as u32;
            let parent = if i == 0 {
                self.hash_at(height - 1)
            } else {
                Some(headers[i - 1].hash())
            };
            if parent != Some(header.prev()) {
                return Err(ChainError::Linkage { height });
            }
            let header_at = |h: u32| {
                if h >= fork {
                    headers.get((h - fork) as usize).copied()
                } else {
                    self.header(h)
                }
            };
            if let Some(expected) = self.params.expected_bits(height, header, header_at) {
                if header.bits() != expected {
                    return Err(ChainError::Bits {
                        height,
                        expected,
                        found: header.bits(),
                    });
                }
            }
            let target = target_from_bits(header.bits())
                .filter(|t| *t <= self.params.pow_limit)
                .ok_or(ChainError::AboveLimit { height })?;
            if !header.meets_own_target() {
                return Err(ChainError::ProofOfWork { height });
            }
            branch_work += work(target);
        }
        let new_tip = fork + headers.len() as u32 - 1;
        if fork == tip + 1 {
            self.headers.extend_from_slice(headers);
            self.work += branch_work;
            return Ok(Connected::Extended {
                from: fork,
                to: new_tip,
            });
        }
        let keep = (fork - self.base() - 1) as usize;
        let replaced_work = self.headers[keep..]
            .iter()
            .filter_map(|h| target_from_bits(h.bits()))
            .fold(U256::ZERO, |acc, t| acc + work(t));
        if branch_work <= replaced_work {
            return Err(ChainError::LessWork { fork });
        }
        self.headers.truncate(keep);
        self.headers.extend_from_slice(headers);
        self.work = self.work - replaced_work + branch_work;
        Ok(Connected::Reorganized {
            fork,
            old_tip: tip,
            new_tip,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::chain::header::{hash_value, sha256d};
    use crate::chain::params::{Checkpoint, DifficultyRule, RETARGET_INTERVAL, TARGET_TIMESPAN};

    /// Mines a header on `prev` (regtest targets: about two tries).
    pub(crate) fn mine(prev: Hash, time: u32, bits: u32, tag: u8) -> Header {
        let target = target_from_bits(bits).expect("valid bits");
        let mut raw = [0u8; 80];
        raw[0..4].copy_from_slice(&0x2000_0000u32.to_le_bytes());
        raw[4..36].copy_from_slice(&prev);
        raw[36..68].copy_from_slice(&sha256d(&[tag]));
        raw[68..72].copy_from_slice(&time.to_le_bytes());
        raw[72..76].copy_from_slice(&bits.to_le_bytes());
        for nonce in 0u32.. {
            raw[76..80].copy_from_slice(&nonce.to_le_bytes());
            if hash_value(&sha256d(&raw)) <= target {
                break;
            }
        }
        Header::from_bytes(raw)
    }

    /// `n` regtest headers on `prev` starting at `time`.
    pub(crate) fn branch(prev: Hash, time: u32, n: usize, tag: u8) -> Vec<Header> {
        let mut out: Vec<Header> = Vec::with_capacity(n);
        let mut prev = prev;
        for i in 0..n {
            let h = mine(prev, time + 600 * i as u32, 0x207f_ffff, tag);
            prev = h.hash();
            out.push(h);
        }
        out
    }

    pub(crate) fn regtest() -> HeaderChain {
        HeaderChain::new(ChainParams::bitcoin_regtest())
    }

    #[test]
    fn a_valid_chain_extends_and_known_headers_are_skipped() {
        let mut c = regtest();
        let genesis = c.tip_hash();
        let hs = branch(genesis, 1_700_000_000, 10, 1);
        assert_eq!(
            c.connect(1, &hs[..6]),
            Ok(Connected::Extended { from: 1, to: 6 })
        );
        assert_eq!(
            c.connect(1, &hs),
            Ok(Connected::Extended { from: 7, to: 10 })
        );
        assert_eq!(c.connect(3, &hs[2..5]), Ok(Connected::Known));
        assert_eq!(c.tip_height(), 10);
        assert_eq!(c.tip_hash(), hs[9].hash());
        assert_eq!(c.hash_at(4), Some(hs[3].hash()));
        assert_eq!(c.work(), U256::from(20u8), "two hashes a regtest block");
    }

    #[test]
    fn lies_are_refused_and_change_nothing() {
        let mut c = regtest();
        let hs = branch(c.tip_hash(), 1_700_000_000, 5, 1);
        c.connect(1, &hs[..3]).expect("valid");
        // Not linked to the tip.
        let stray = branch([7; 32], 1_700_000_000, 1, 2);
        assert_eq!(c.connect(4, &stray), Err(ChainError::Linkage { height: 4 }));
        // A header whose hash misses its target: find a nonce that fails.
        let mut raw = *hs[3].as_bytes();
        let bad = (0u32..)
            .find_map(|n| {
                raw[76..80].copy_from_slice(&n.to_le_bytes());
                let h = Header::from_bytes(raw);
                (!h.meets_own_target()).then_some(h)
            })
            .expect("half of all nonces fail");
        assert_eq!(
            c.connect(4, &[bad]),
            Err(ChainError::ProofOfWork { height: 4 })
        );
        // Easier bits than regtest's fixed ones.
        let easy = mine(hs[2].hash(), 1_700_000_000, 0x2100ffff, 3);
        assert!(matches!(
            c.connect(4, &[easy]),
            Err(ChainError::Bits { height: 4, .. })
        ));
        // A gap.
        assert_eq!(
            c.connect(6, &hs[4..]),
            Err(ChainError::Gap { start: 6, tip: 3 })
        );
        // Not the checkpoint at its height.
        assert_eq!(
            c.connect(0, &stray),
            Err(ChainError::Checkpoint { height: 0 })
        );
        assert_eq!((c.tip_height(), c.tip_hash()), (3, hs[2].hash()));
    }

    #[test]
    fn most_work_wins_a_fork_and_first_seen_wins_a_tie() {
        let mut c = regtest();
        let main = branch(c.tip_hash(), 1_700_000_000, 6, 1);
        c.connect(1, &main).expect("valid");
        // A fork from height 4 as long as ours: not more work.
        let tie = branch(main[2].hash(), 1_700_000_001, 3, 2);
        assert_eq!(c.connect(4, &tie), Err(ChainError::LessWork { fork: 4 }));
        assert_eq!(c.tip_hash(), main[5].hash());
        // One block longer: more work, the chain reorganises.
        let longer = branch(main[2].hash(), 1_700_000_001, 4, 3);
        assert_eq!(
            c.connect(4, &longer),
            Ok(Connected::Reorganized {
                fork: 4,
                old_tip: 6,
                new_tip: 7
            })
        );
        assert_eq!((c.tip_height(), c.tip_hash()), (7, longer[3].hash()));
        assert_eq!(c.hash_at(3), Some(main[2].hash()));
        assert_eq!(c.work(), U256::from(14u8));
    }

    #[test]
    fn a_retargeting_chain_checks_bits_within_and_between_periods() {
        // A chain whose checkpoint ends a period, with a (made-up) easy
        // limit so the test mines quickly.
        let start_bits = 0x2003_ffff;
        let mut params = ChainParams::bitcoin_regtest()
            .rule(DifficultyRule::Retarget)
            .checkpoint(Checkpoint {
                height: RETARGET_INTERVAL - 1,
                hash: [1; 32],
                time: 1_700_000_000,
                next_bits: start_bits,
            });
        params.pow_limit = target_from_bits(0x207f_ffff).expect("valid");
        let mut c = HeaderChain::new(params);
        // One period at twice the speed (300 s a block).
        let mut prev = [1; 32];
        let mut period = Vec::new();
        for i in 0..RETARGET_INTERVAL {
            let h = mine(prev, 1_700_000_000 + 300 * (i + 1), start_bits, 1);
            prev = h.hash();
            period.push(h);
        }
        // Bits that change inside a period: refused where they change.
        let mut changed = period[..6].to_vec();
        changed[5] = mine(period[4].hash(), period[5].time(), 0x2003_fffe, 2);
        assert_eq!(
            c.connect(RETARGET_INTERVAL, &changed),
            Err(ChainError::Bits {
                height: RETARGET_INTERVAL + 5,
                expected: start_bits,
                found: 0x2003_fffe
            })
        );
        c.connect(RETARGET_INTERVAL, &period)
            .expect("a valid period");
        // The next period's target follows the time the period took, from
        // its first block to its last (Bitcoin's 2 015 intervals).
        let took = period[period.len() - 1].time() - period[0].time();
        assert_eq!(took, 300 * (RETARGET_INTERVAL - 1));
        let expected = crate::chain::params::retarget(start_bits, took, c.params().pow_limit);
        assert!(
            target_from_bits(expected) < target_from_bits(start_bits),
            "harder: {expected:#x} from {start_bits:#x} over {took} s"
        );
        let last_time = period[period.len() - 1].time();
        let unchanged = mine(prev, last_time + 600, start_bits, 4);
        assert_eq!(
            c.connect(2 * RETARGET_INTERVAL, &[unchanged]),
            Err(ChainError::Bits {
                height: 2 * RETARGET_INTERVAL,
                expected,
                found: start_bits
            })
        );
        let next = mine(prev, last_time + 600, expected, 3);
        assert_eq!(
            c.connect(2 * RETARGET_INTERVAL, &[next]),
            Ok(Connected::Extended {
                from: 2 * RETARGET_INTERVAL,
                to: 2 * RETARGET_INTERVAL
            })
        );
        let _ = TARGET_TIMESPAN;
    }

    #[test]
    fn an_asert_chain_checks_every_blocks_bits_from_its_parent() {
        use crate::chain::params::{asert_bits, AsertAnchor};
        // An anchor at the checkpoint with easy bits so the test mines
        // quickly; each block's bits follow from its parent's time.
        let anchor = AsertAnchor {
            height: 100,
            bits: 0x2003_ffff,
            parent_time: 1_700_000_000,
        };
        let mut params = ChainParams::bitcoin_regtest()
            .rule(DifficultyRule::Asert(anchor))
            .checkpoint(Checkpoint {
                height: 100,
                hash: [1; 32],
                time: 1_700_000_600,
                next_bits: 0,
            });
        params.pow_limit = target_from_bits(0x207f_ffff).expect("valid");
        let limit = params.pow_limit;
        let mut c = HeaderChain::new(params);
        let (mut prev, mut prev_time) = ([1; 32], 1_700_000_600u32);
        let mut blocks = Vec::new();
        // Fast blocks (60 s): the target shrinks block by block.
        for i in 0..20u32 {
            let bits = asert_bits(&anchor, u64::from(100 + i), i64::from(prev_time), limit);
            let h = mine(prev, prev_time + 60, bits, 1);
            (prev, prev_time) = (h.hash(), h.time());
            blocks.push(h);
        }
        assert!(target_from_bits(blocks[19].bits()) < target_from_bits(blocks[0].bits()));
        // The first block keeps the anchor's bits (its parent is on time).
        assert_eq!(blocks[0].bits(), anchor.bits);
        // A block claiming its parent's (easier) bits instead is refused.
        let lazy = mine(blocks[9].hash(), blocks[9].time() + 60, blocks[0].bits(), 2);
        let mut forged = blocks[..10].to_vec();
        forged.push(lazy);
        assert!(matches!(
            c.connect(101, &forged),
            Err(ChainError::Bits { height: 111, .. })
        ));
        c.connect(101, &blocks).expect("a valid ASERT chain");
        assert_eq!(c.tip_height(), 120);
    }
}
