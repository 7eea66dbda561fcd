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
    /// and the chain with the most work wins (Bitcoin Cash, whose ASERT
    /// rule is not checked here).
    WorkOnly,
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
    /// The highest (easiest) target a block may have.
    pub pow_limit: U256,
    /// How `bits` move.
    pub rule: DifficultyRule,
    /// The block verification starts after.
    pub checkpoint: Checkpoint,
}

/// Blocks per Bitcoin difficulty period.
pub const RETARGET_INTERVAL: u32 = 2016;
/// The time a period should take: two weeks.
pub const TARGET_TIMESPAN: u32 = 14 * 24 * 60 * 60;

impl ChainParams {
    /// Bitcoin's regression test network from its genesis block.
    pub fn bitcoin_regtest() -> Self {
        ChainParams {
            pow_limit: target_or_max(0x207f_ffff),
            rule: DifficultyRule::NoRetarget,
            checkpoint: Checkpoint {
                height: 0,
                hash: genesis("0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"),
                time: 1_296_688_602,
                next_bits: 0x207f_ffff,
            },
        }
    }

    /// Bitcoin main network from its genesis block (verifying from here
    /// downloads every header; configure a recent [`Checkpoint`] instead).
    pub fn bitcoin() -> Self {
        ChainParams {
            pow_limit: target_or_max(0x1d00_ffff),
            rule: DifficultyRule::Retarget,
            checkpoint: Checkpoint {
                height: 0,
                hash: genesis("000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"),
                time: 1_231_006_505,
                next_bits: 0x1d00_ffff,
            },
        }
    }

    /// Bitcoin's test network (testnet3) from its genesis block; `bits`
    /// are checked against the limit only
    /// ([`MinDifficultyAllowed`](DifficultyRule::MinDifficultyAllowed)).
    pub fn bitcoin_testnet() -> Self {
        ChainParams {
            pow_limit: target_or_max(0x1d00_ffff),
            rule: DifficultyRule::MinDifficultyAllowed,
            checkpoint: Checkpoint {
                height: 0,
                hash: genesis("000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943"),
                time: 1_296_688_602,
                next_bits: 0x1d00_ffff,
            },
        }
    }

    /// Bitcoin Cash main network from the shared genesis block, with
    /// [`WorkOnly`](DifficultyRule::WorkOnly) (its ASERT rule is not
    /// checked: a branch still needs more work to win).
    pub fn bitcoin_cash() -> Self {
        Self::bitcoin().rule(DifficultyRule::WorkOnly)
    }

    /// With verification starting after `checkpoint`.
    pub fn checkpoint(mut self, checkpoint: Checkpoint) -> Self {
        self.checkpoint = checkpoint;
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
