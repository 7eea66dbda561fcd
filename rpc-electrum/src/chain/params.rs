//! Which chain: its genesis or checkpoint, its proof-of-work limit and its
//! difficulty rule.

use ruint::aliases::{U256, U512};

use super::header::{bits_from_target, hash_from_hex, target_from_bits, Hash, Header};

/// How the next block's `bits` follow from the chain before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DifficultyRule {
    /// Bitcoin: constant for 2 016 blocks, then retargeted from the time
    /// the period took (two weeks wanted; at most ×4 or ÷4).
    Retarget,
    /// Bitcoin's test networks: [`Retarget`](Self::Retarget), except that a
    /// block more than 20 minutes after its parent may use the minimum
    /// difficulty; `bits` are only checked against the proof-of-work limit
    /// (a chain is still chosen by its work).
    MinDifficultyAllowed,
    /// Regression test networks: always the proof-of-work limit.
    NoRetarget,
    /// Any `bits` up to the proof-of-work limit; the block must meet them
    /// and the chain with the most work wins.
    WorkOnly,
    /// Bitcoin Cash's aserti3-2d (since November 2020): every block's
    /// target follows from its parent's height and time relative to an
    /// anchor block (two-day half-life, 600 s blocks). Blocks up to the
    /// anchor are checked as [`WorkOnly`](Self::WorkOnly).
    Asert(AsertAnchor),
}

/// The block Bitcoin Cash's ASERT rule counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsertAnchor {
    /// The anchor block's height (the last block before the rule).
    pub height: u32,
    /// The anchor block's `bits`.
    pub bits: u32,
    /// The time of the anchor block's parent.
    pub parent_time: u32,
}

impl AsertAnchor {
    /// Bitcoin Cash main network's anchor (Bitcoin Cash Node's chain
    /// parameters): block 661 647.
    pub const BITCOIN_CASH: AsertAnchor = AsertAnchor {
        height: 661_647,
        bits: 0x1804_dafe,
        parent_time: 1_605_447_844,
    };
}

/// ASERT's ideal time between blocks.
const ASERT_SPACING: i64 = 600;
/// ASERT's half-life: the target doubles (or halves) for every two days
/// the chain is behind (or ahead of) schedule.
const ASERT_HALF_LIFE: i64 = 2 * 24 * 60 * 60;

/// The `bits` aserti3-2d gives the block after one at `parent_height`
/// with `parent_time`; integer arithmetic exactly as the specification
/// (and Bitcoin Cash Node) computes it.
pub fn asert_bits(
    anchor: &AsertAnchor,
    parent_height: u64,
    parent_time: i64,
    pow_limit: U256,
) -> u32 {
    let anchor_target = target_from_bits(anchor.bits).unwrap_or(pow_limit);
    let height_diff = parent_height.saturating_sub(u64::from(anchor.height)) as i64;
    let time_diff = parent_time - i64::from(anchor.parent_time);
    // Truncating division (as C++ divides), then a flooring shift.
    let exponent = (time_diff - ASERT_SPACING * (height_diff + 1)) * 65536 / ASERT_HALF_LIFE;
    let shifts = exponent >> 16;
    let frac = u128::from(exponent as u16);
    // 65536 × 2^(frac / 65536), by the specification's cubic.
    let factor = 65536
        + ((195_766_423_245_049 * frac
            + 971_821_376 * frac * frac
            + 5_127 * frac * frac * frac
            + (1 << 47))
            >> 48);
    // At most 2^224 × 2^17: fits in 512 bits, whatever the shift.
    let mut next = U512::from(anchor_target) * U512::from(factor as u64);
    let shifts = shifts - 16;
    if shifts <= 0 {
        let right = (-shifts) as usize;
        next = if right >= 512 {
            U512::ZERO
        } else {
            next >> right
        };
    } else if shifts >= 512 - i64::from(next.bit_len() as u32) {
        next = U512::from(pow_limit);
    } else {
        next <<= shifts as usize;
    }
    let target = if next == U512::ZERO {
        U256::from(1u8)
    } else if next > U512::from(pow_limit) {
        pow_limit
    } else {
        U256::from(next)
    };
    bits_from_target(target)
}

/// Where verification starts: a block everyone agrees on (a checkpoint
/// compiled in or configured), and what the block after it must claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Its height.
    pub height: u32,
    /// Its hash (internal byte order).
    pub hash: Hash,
    /// Its time (the median-time rules are not checked; the retarget
    /// needs the time of the period's first block, see below).
    pub time: u32,
    /// The `bits` of the block after it (for a retargeting chain the
    /// checkpoint is the last block of a period, so this is the next
    /// period's target).
    pub next_bits: u32,
}

/// One chain's rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainParams {
    /// The network's genesis block hash (internal byte order): servers are
    /// checked to serve this network (`server.features`), whatever the
    /// checkpoint.
    pub genesis: Hash,
    /// The highest (easiest) target a block may have.
    pub pow_limit: U256,
    /// How `bits` move.
    pub rule: DifficultyRule,
    /// The block verification starts after.
    pub checkpoint: Checkpoint,
    /// The merkle root of the block hashes from genesis to the checkpoint
    /// (what `blockchain.block.header(h, cp_height)` proofs lead to), when
    /// known: headers at or below the checkpoint can then be proven one
    /// by one, so older confirmations verify too.
    pub checkpoint_root: Option<Hash>,
}

/// Blocks per Bitcoin difficulty period.
pub const RETARGET_INTERVAL: u32 = 2016;
/// The time a period should take: two weeks.
pub const TARGET_TIMESPAN: u32 = 14 * 24 * 60 * 60;

impl ChainParams {
    /// Bitcoin's regression test network from its genesis block.
    pub fn bitcoin_regtest() -> Self {
        ChainParams {
            genesis: genesis("0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"),
            pow_limit: target_or_max(0x207f_ffff),
            rule: DifficultyRule::NoRetarget,
            checkpoint: Checkpoint {
                height: 0,
                hash: genesis("0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"),
                time: 1_296_688_602,
                next_bits: 0x207f_ffff,
            },
            checkpoint_root: None,
        }
    }

    /// Bitcoin main network from its genesis block (verifying from here
    /// downloads every header; configure a recent [`Checkpoint`] instead).
    pub fn bitcoin() -> Self {
        ChainParams {
            genesis: genesis("000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"),
            pow_limit: target_or_max(0x1d00_ffff),
            rule: DifficultyRule::Retarget,
            checkpoint: Checkpoint {
                height: 0,
                hash: genesis("000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"),
                time: 1_231_006_505,
                next_bits: 0x1d00_ffff,
            },
            checkpoint_root: None,
        }
    }

    /// Bitcoin's test network (testnet3) from its genesis block; `bits`
    /// are checked against the limit only
    /// ([`MinDifficultyAllowed`](DifficultyRule::MinDifficultyAllowed)).
    pub fn bitcoin_testnet() -> Self {
        ChainParams {
            genesis: genesis("000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943"),
            pow_limit: target_or_max(0x1d00_ffff),
            rule: DifficultyRule::MinDifficultyAllowed,
            checkpoint: Checkpoint {
                height: 0,
                hash: genesis("000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943"),
                time: 1_296_688_602,
                next_bits: 0x1d00_ffff,
            },
            checkpoint_root: None,
        }
    }

    /// Bitcoin Cash main network from the shared genesis block: its ASERT
    /// rule after block 661 647; before it (the earlier difficulty
    /// algorithms are not checked) any `bits` up to the limit, the most
    /// work winning.
    pub fn bitcoin_cash() -> Self {
        let mut params = Self::bitcoin().rule(DifficultyRule::Asert(AsertAnchor::BITCOIN_CASH));
        // 2^224 - 1, as Bitcoin Cash Node writes it (its compact form is
        // the same 0x1d00ffff).
        params.pow_limit = (U256::from(1u8) << 224) - U256::from(1u8);
        params
    }

    /// With verification starting after `checkpoint` (a root set for
    /// another checkpoint is dropped).
    pub fn checkpoint(mut self, checkpoint: Checkpoint) -> Self {
        if self.checkpoint != checkpoint {
            self.checkpoint_root = None;
        }
        self.checkpoint = checkpoint;
        self
    }

    /// With the merkle root of the block hashes from genesis to the
    /// checkpoint (internal byte order), for proving older headers with
    /// `cp_height` proofs. Obtain it as you obtain the checkpoint: from a
    /// node you run (`blockchain.block.header(H, H)` on your own ElectrumX
    /// answers it as `root`).
    pub fn checkpoint_root(mut self, root: Hash) -> Self {
        self.checkpoint_root = Some(root);
        self
    }

    /// With `bits` moving by `rule`.
    pub fn rule(mut self, rule: DifficultyRule) -> Self {
        self.rule = rule;
        self
    }

    /// The `bits` the block at `height` must have, given its parent chain
    /// (`header_at` answers heights from the checkpoint + 1 up to `height -
    /// 1`); `None` when the rule does not fix one (it is only bounded by
    /// the proof-of-work limit).
    pub(crate) fn expected_bits(
        &self,
        height: u32,
        header: &Header,
        header_at: impl Fn(u32) -> Option<Header>,
    ) -> Option<u32> {
        let cp = &self.checkpoint;
        let parent_bits = |h: u32| {
            if h == cp.height + 1 {
                Some(cp.next_bits)
            } else {
                header_at(h - 1).map(|p| p.bits())
            }
        };
        match self.rule {
            DifficultyRule::NoRetarget => Some(bits_from_target(self.pow_limit)),
            DifficultyRule::WorkOnly => None,
            DifficultyRule::Asert(anchor) => {
                if height <= anchor.height {
                    return None;
                }
                let parent_time = if height == cp.height + 1 {
                    cp.time
                } else {
                    header_at(height - 1)?.time()
                };
                Some(asert_bits(
                    &anchor,
                    u64::from(height - 1),
                    i64::from(parent_time),
                    self.pow_limit,
                ))
            }
            DifficultyRule::MinDifficultyAllowed => None,
            DifficultyRule::Retarget => {
                if height == cp.height + 1 {
                    return Some(cp.next_bits);
                }
                if height % RETARGET_INTERVAL != 0 {
                    return parent_bits(height);
                }
                // A new period: from the previous one's first and last times.
                let last = header_at(height - 1)?;
                let first_time = if height - RETARGET_INTERVAL == cp.height {
                    cp.time
                } else {
                    header_at(height - RETARGET_INTERVAL)?.time()
                };
                let _ = header;
                Some(retarget(
                    last.bits(),
                    last.time().saturating_sub(first_time),
                    self.pow_limit,
                ))
            }
        }
    }
}

/// Bitcoin's retarget: the old target scaled by how long the period took
/// (clamped to a quarter / four times two weeks), capped at the limit.
pub fn retarget(old_bits: u32, timespan: u32, pow_limit: U256) -> u32 {
    let timespan = timespan.clamp(TARGET_TIMESPAN / 4, TARGET_TIMESPAN * 4);
    let Some(old) = target_from_bits(old_bits) else {
        return bits_from_target(pow_limit);
    };
    // In 512 bits: old × timespan may not fit in 256 with an easy limit.
    let scaled = U512::from(old) * U512::from(timespan) / U512::from(TARGET_TIMESPAN);
    let scaled = if scaled > U512::from(pow_limit) {
        pow_limit
    } else {
        U256::from(scaled)
    };
    bits_from_target(scaled)
}

fn target_or_max(bits: u32) -> U256 {
    target_from_bits(bits).unwrap_or(U256::MAX)
}

fn genesis(hex: &str) -> Hash {
    hash_from_hex(hex).unwrap_or([0; 32])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines of the aserti3-2d specification's test vectors (Bitcoin Cash
    /// Node's qa-assets, `test_vectors/aserti3-2d`): the anchor (height,
    /// parent time, bits), then `parent height, parent time, next bits`.
    /// An anchor (height, parent time, bits) and its steps.
    type Run = ((u32, u32, u32), &'static [(u64, i64, u32)]);

    const ASERT_RUNS: &[Run] = &[
        // run1: steady 600 s blocks at the limit.
        (
            (1, 0, 0x1d00ffff),
            &[
                (2, 1200, 0x1d00ffff),
                (3, 1800, 0x1d00ffff),
                (11, 6600, 0x1d00ffff),
            ],
        ),
        // run3: steady at the smallest target.
        (
            (1, 0, 0x01010000),
            &[(2, 1200, 0x01010000), (11, 6600, 0x01010000)],
        ),
        // run5: half-life height jumps without time: the target halves,
        // down to the smallest (1).
        (
            (1, 0, 0x1d00ffff),
            &[
                (2, 0, 0x1d00fec5),
                (290, 0, 0x1c7f62c0),
                (578, 0, 0x1c3fb160),
                (2306, 0, 0x1c00fec5),
                (60194, 0, 0x027f6200),
                (62498, 0, 0x017f0000),
                (64226, 0, 0x01010000),
                (64514, 0, 0x01010000),
            ],
        ),
        // run7: random solve times for a rising hash rate near real bits.
        (
            (1, 0, 0x1802aee8),
            &[
                (2, 1200, 0x1802aee8),
                (3, 1310, 0x1802ad91),
                (4, 1327, 0x1802abf8),
                (9, 7099, 0x1802b39c),
                (10, 7099, 0x1802b1f2),
                (17, 9708, 0x1802ad8f),
                (22, 12701, 0x1802ad89),
                (160, 22709, 0x1801ffea),
                (459, 29064, 0x1800ffb4),
            ],
        ),
        // run9: 300 s blocks around the 32-bit signed height limit.
        (
            (2147483642, 1234567290, 0x1802aee8),
            &[
                (2147483643, 1234568190, 0x1802ae16),
                (2147483647, 1234569390, 0x1802aacd),
                (2147483648, 1234569690, 0x1802a9fa),
                (2147483652, 1234570890, 0x1802a6b7),
            ],
        ),
    ];

    #[test]
    fn asert_matches_the_specification_vectors() {
        let limit = (U256::from(1u8) << 224) - U256::from(1u8);
        for ((height, parent_time, bits), steps) in ASERT_RUNS {
            let anchor = AsertAnchor {
                height: *height,
                bits: *bits,
                parent_time: *parent_time,
            };
            for (h, t, want) in steps.iter() {
                assert_eq!(
                    asert_bits(&anchor, *h, *t, limit),
                    *want,
                    "anchor {anchor:?}, parent {h} at {t}"
                );
            }
        }
    }

    #[test]
    fn asert_on_schedule_keeps_the_anchor_target() {
        // A block exactly one spacing after the anchor's parent keeps the
        // anchor's bits; a chain a half-life late doubles the target.
        let params = ChainParams::bitcoin_cash();
        let a = AsertAnchor::BITCOIN_CASH;
        let t0 = i64::from(a.parent_time);
        assert_eq!(asert_bits(&a, 661_647, t0 + 600, params.pow_limit), a.bits);
        assert_eq!(
            asert_bits(&a, 661_647, t0 + 600 + 172_800, params.pow_limit),
            0x1809_b5fc
        );
        // An absurd jump in time saturates at the limit, never panics.
        assert_eq!(
            asert_bits(
                &AsertAnchor::BITCOIN_CASH,
                661_648,
                i64::from(u32::MAX),
                params.pow_limit
            ),
            0x1d00ffff
        );
    }

    #[test]
    fn retarget_scales_and_clamps() {
        let limit = target_from_bits(0x1d00ffff).expect("valid");
        // On schedule: unchanged.
        assert_eq!(retarget(0x1c0ffff0, TARGET_TIMESPAN, limit), 0x1c0ffff0);
        // Twice as fast: the target halves (difficulty doubles).
        assert_eq!(retarget(0x1c0ffff0, TARGET_TIMESPAN / 2, limit), 0x1c07fff8);
        // Ten times as fast: clamped at a quarter.
        assert_eq!(
            retarget(0x1c0ffff0, TARGET_TIMESPAN / 10, limit),
            0x1c03fffc
        );
        // Slow at the limit: stays at the limit.
        assert_eq!(retarget(0x1d00ffff, TARGET_TIMESPAN * 3, limit), 0x1d00ffff);
        // Four times as slow from below the limit: four times the target.
        assert_eq!(retarget(0x1b0404cb, TARGET_TIMESPAN * 4, limit), 0x1b10132c);
    }
}
