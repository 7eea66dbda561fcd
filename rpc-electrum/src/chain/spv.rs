//! Merkle proofs (`blockchain.transaction.get_merkle`) checked against a
//! verified header, with the guards a naive check lacks.

use super::header::{hash_from_hex, sha256d, Hash};

/// Why a merkle proof was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpvError {
    /// The branch is longer than any block's tree (more than 32 levels).
    #[error("merkle branch of {0} levels is longer than any block's tree")]
    BranchTooLong(usize),
    /// The position does not fit in the branch (it names a leaf the tree
    /// of that depth does not have).
    #[error("position {pos} does not fit a branch of {levels} levels")]
    PositionTooLarge {
        /// The claimed position.
        pos: u64,
        /// The branch length.
        levels: usize,
    },
    /// A branch item is not a 32-byte hash in hex.
    #[error("merkle branch item {0} is not a hash")]
    BadHash(usize),
    /// The proof does not lead to the block's merkle root.
    #[error("the merkle proof does not lead to the block's merkle root")]
    RootMismatch,
    /// Two children of one node are 64 bytes that read as a transaction:
    /// the proof may show an inner node as a transaction (CVE-2017-12842).
    #[error("an inner node of the merkle proof reads as a transaction (CVE-2017-12842)")]
    InnerNodeIsTransaction,
    /// The proof puts the transaction at the copy of a duplicated last
    /// node, a position that does not exist (CVE-2012-2459).
    #[error("the merkle proof uses a duplicated last node (CVE-2012-2459)")]
    DuplicatedNode,
}

/// Checks that `txid` (internal byte order) is the leaf at `pos` of the
/// tree whose root is `merkle_root`, given the sibling hashes from the leaf
/// up (`branch`, hex as the protocol sends them).
///
/// Refused as well as wrong roots: branches over 32 levels, positions that
/// do not fit the branch, a level where the 64 bytes of two children read
/// as a transaction (so an inner node cannot pose as a transaction), and a
/// level where the node is the right child and equal to its left sibling
/// (the copy made for an odd level is not a real position).
///
/// ```
/// use rpc_electrum::chain::{sha256d, verify_merkle};
///
/// // A two-transaction block: root = sha256d(a ‖ b).
/// let (a, b) = ([0x11; 32], [0x22; 32]);
/// let root = sha256d(&[a, b].concat());
/// let b_hex: String = b.iter().rev().map(|x| format!("{x:02x}")).collect();
/// assert!(verify_merkle(&a, 0, &[b_hex.as_str()], &root).is_ok());
/// assert!(verify_merkle(&a, 1, &[b_hex.as_str()], &root).is_err());
/// ```
pub fn verify_merkle(
    txid: &Hash,
    pos: u64,
    branch: &[&str],
    merkle_root: &Hash,
) -> Result<(), SpvError> {
    if branch.len() > 32 {
        return Err(SpvError::BranchTooLong(branch.len()));
    }
    if pos >> branch.len() != 0 {
        return Err(SpvError::PositionTooLarge {
            pos,
            levels: branch.len(),
        });
    }
    let mut node = *txid;
    let mut pair = [0u8; 64];
    for (level, item) in branch.iter().enumerate() {
        let sibling = hash_from_hex(item).ok_or(SpvError::BadHash(level))?;
        if (pos >> level) & 1 == 1 {
            if sibling == node {
                return Err(SpvError::DuplicatedNode);
            }
            pair[..32].copy_from_slice(&sibling);
            pair[32..].copy_from_slice(&node);
        } else {
            pair[..32].copy_from_slice(&node);
            pair[32..].copy_from_slice(&sibling);
        }
        if reads_as_transaction(&pair) {
            return Err(SpvError::InnerNodeIsTransaction);
        }
        node = sha256d(&pair);
    }
    if node == *merkle_root {
        Ok(())
    } else {
        Err(SpvError::RootMismatch)
    }
}

/// Whether these bytes parse, exactly, as a legacy-serialised transaction
/// with at least one input and one output (what a 64-byte inner node must
/// not be; the guard Electrum applies).
pub fn reads_as_transaction(bytes: &[u8]) -> bool {
    // A zero byte where the input count goes would be a segwit marker (or
    // no inputs): neither is a legacy transaction with inputs.
    bytes.get(4) != Some(&0)
        && crate::tx::Transaction::parse(bytes)
            .is_ok_and(|t| !t.segwit && !t.inputs.is_empty() && !t.outputs.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::header::hash_to_hex;

    /// The merkle tree of `leaves` (Bitcoin's: an odd level repeats its last
    /// node): its root and the branch of `pos`.
    fn tree(leaves: &[Hash], pos: usize) -> (Hash, Vec<String>) {
        let mut level = leaves.to_vec();
        let mut pos = pos;
        let mut branch = Vec::new();
        while level.len() > 1 {
            if level.len() % 2 == 1 {
                level.push(*level.last().expect("non-empty"));
            }
            branch.push(hash_to_hex(&level[pos ^ 1]));
            level = level
                .chunks(2)
                .map(|p| sha256d(&[p[0], p[1]].concat()))
                .collect();
            pos /= 2;
        }
        (level[0], branch)
    }

    fn leaves(n: u8) -> Vec<Hash> {
        (0..n).map(|i| sha256d(&[i])).collect()
    }

    fn refs(b: &[String]) -> Vec<&str> {
        b.iter().map(String::as_str).collect()
    }

    #[test]
    fn every_leaf_of_odd_and_even_trees_verifies_and_nothing_else_does() {
        for n in [1u8, 2, 3, 5, 8, 13] {
            let ls = leaves(n);
            for pos in 0..n as usize {
                let (root, branch) = tree(&ls, pos);
                assert_eq!(
                    verify_merkle(&ls[pos], pos as u64, &refs(&branch), &root),
                    Ok(())
                );
                // Another txid, another position, another root: refused.
                assert!(verify_merkle(&sha256d(b"x"), pos as u64, &refs(&branch), &root).is_err());
                if n > 1 {
                    assert!(
                        verify_merkle(&ls[pos], (pos ^ 1) as u64, &refs(&branch), &root).is_err()
                    );
                }
                assert_eq!(
                    verify_merkle(&ls[pos], pos as u64, &refs(&branch), &[0; 32]),
                    Err(SpvError::RootMismatch)
                );
            }
        }
    }

    #[test]
    fn the_copy_of_a_duplicated_last_node_is_not_a_position() {
        // Three leaves: the last is copied to make a pair. Its copy's
        // position (3) is not a transaction of the block.
        let ls = leaves(3);
        let (root, branch) = tree(&ls, 2);
        assert_eq!(verify_merkle(&ls[2], 2, &refs(&branch), &root), Ok(()));
        // The same branch claiming position 3 would pass a naive check.
        assert_eq!(
            verify_merkle(&ls[2], 3, &refs(&branch), &root),
            Err(SpvError::DuplicatedNode)
        );
    }

    #[test]
    fn an_inner_node_cannot_pose_as_a_transaction() {
        // 64 bytes that read as a transaction: 1 input with an empty
        // script, 1 output with a 4-byte script. Its second half is the
        // "txid" of a transaction that does not exist.
        let mut t = [0u8; 64];
        t[0..4].copy_from_slice(&1u32.to_le_bytes());
        t[4] = 1; // one input
                  // outpoint 5..41, script length at 41 = 0, sequence 42..46
        t[46] = 1; // one output
                   // value 47..55, script length at 55 = 4, script 56..60, lock time 60..64
        t[55] = 4;
        t[20] = 0xab; // some outpoint bytes
        assert!(reads_as_transaction(&t));
        // A block with the 64-byte transaction t and another one.
        let t_id = sha256d(&t);
        let other = sha256d(b"other");
        let (root, branch) = tree(&[t_id, other], 0);
        assert_eq!(verify_merkle(&t_id, 0, &refs(&branch), &root), Ok(()));
        // The fake: the "transaction" t[32..], proven with t[..32] as its
        // sibling one level below t.
        let fake: Hash = t[32..].try_into().expect("32 bytes");
        let mut fake_branch = vec![hash_to_hex(&t[..32].try_into().expect("32 bytes"))];
        fake_branch.extend(branch);
        assert_eq!(
            verify_merkle(&fake, 0b01, &refs(&fake_branch), &root),
            Err(SpvError::InnerNodeIsTransaction)
        );
        // Ordinary inner nodes do not read as transactions.
        assert!(!reads_as_transaction(&[[0x11; 32], [0x22; 32]].concat()));
    }

    #[test]
    fn bounds_are_checked_before_hashing() {
        let long: Vec<String> = (0..33).map(|_| "00".repeat(32)).collect();
        assert_eq!(
            verify_merkle(&[0; 32], 0, &refs(&long), &[0; 32]),
            Err(SpvError::BranchTooLong(33))
        );
        let short = vec!["00".repeat(32)];
        assert_eq!(
            verify_merkle(&[0; 32], 2, &refs(&short), &[0; 32]),
            Err(SpvError::PositionTooLarge { pos: 2, levels: 1 })
        );
        assert_eq!(
            verify_merkle(&[0; 32], 0, &["zz"], &[0; 32]),
            Err(SpvError::BadHash(0))
        );
    }
}
