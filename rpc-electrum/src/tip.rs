//! The pool's tip, agreed among servers: one server's word cannot move it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The tip of a pool of servers, shared by their backends (see
/// [`ElectrumBackendBuilder::tip_board`](crate::ElectrumBackendBuilder::tip_board)).
///
/// Each server posts its **current** tip (it can go down: a server that
/// rolls back is behind from its next header on). The board keeps the
/// rules of `rpc_failover`'s head tracking:
///
/// * the **agreed tip** is the highest tip reached by `agree` servers
///   (default 2, or every server of a smaller pool); it only moves up,
///   except when `agree` servers are below it; while fewer servers than
///   `agree` have posted, it holds still;
/// * a tip more than `max_ahead` blocks (default 1 024) above the agreed tip
///   is not believed (an unconfirmed, implausible tip);
/// * [`best`](Self::best), which backends compare their own tip with, is the
///   highest believed tip.
///
/// ```
/// use rpc_electrum::TipBoard;
///
/// let board = TipBoard::new();
/// let (a, b, liar) = (board.slot(), board.slot(), board.slot());
/// a.post(100);
/// b.post(100);
/// liar.post(4_000_000_000);
/// assert_eq!(board.agreed(), Some(100));
/// assert_eq!(board.best(), 100, "the liar is not believed");
/// a.post(101); // a block ahead: believed
/// assert_eq!(board.best(), 101);
/// b.post(90); // b rolled back: its tip is current, it is behind now
/// assert_eq!((board.agreed(), board.best()), (Some(100), 101));
/// ```
#[derive(Clone, Debug, Default)]
pub struct TipBoard(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// Current tips + 1 (0: not posted), by slot.
    tips: Mutex<Vec<u64>>,
    /// Agreed tip + 1.
    agreed: AtomicU64,
    /// Best believed tip + 1.
    best: AtomicU64,
    agree: AtomicU64,
    max_ahead: AtomicU64,
}

/// One server's place on a [`TipBoard`].
#[derive(Clone, Debug)]
pub struct TipSlot {
    board: TipBoard,
    index: usize,
}

impl TipSlot {
    /// Posts this server's current tip.
    pub fn post(&self, height: u64) {
        self.board.post(self.index, height);
    }
}

impl TipBoard {
    /// An empty board (agree 2, max ahead 1 024).
    pub fn new() -> Self {
        let board = TipBoard::default();
        board.0.agree.store(2, Ordering::Relaxed);
        board.0.max_ahead.store(1024, Ordering::Relaxed);
        board
    }

    /// How many servers must reach a tip before it is agreed (default 2,
    /// clamped to the number of servers on the board).
    pub fn agree(self, servers: usize) -> Self {
        self.0.agree.store(servers.max(1) as u64, Ordering::Relaxed);
        self
    }

    /// How far above the agreed tip a server's tip is still believed
    /// (default 1 024 blocks).
    pub fn max_ahead(self, blocks: u64) -> Self {
        self.0.max_ahead.store(blocks, Ordering::Relaxed);
        self
    }

    /// A place on the board for one more server.
    pub fn slot(&self) -> TipSlot {
        let index = match self.0.tips.lock() {
            Ok(mut tips) => {
                tips.push(0);
                tips.len() - 1
            }
            Err(_) => 0,
        };
        TipSlot {
            board: self.clone(),
            index,
        }
    }

    /// The agreed tip, once enough servers posted.
    pub fn agreed(&self) -> Option<u64> {
        self.0.agreed.load(Ordering::Relaxed).checked_sub(1)
    }

    /// The highest believed tip (0 before any).
    pub fn best(&self) -> u64 {
        self.0.best.load(Ordering::Relaxed).saturating_sub(1)
    }

    fn post(&self, index: usize, height: u64) {
        let Ok(mut tips) = self.0.tips.lock() else {
            return;
        };
        let Some(slot) = tips.get_mut(index) else {
            return;
        };
        let stored = height.saturating_add(1);
        if *slot == stored {
            return;
        }
        *slot = stored;
        let k = (self.0.agree.load(Ordering::Relaxed) as usize).clamp(1, tips.len().max(1));
        let posted: Vec<u64> = tips.iter().copied().filter(|&t| t != 0).collect();
        let mut agreed = self.0.agreed.load(Ordering::Relaxed);
        let max_ahead = self.0.max_ahead.load(Ordering::Relaxed);
        // An unbelievable tip does not vote.
        let mut votes: Vec<u64> = posted
            .iter()
            .copied()
            .filter(|&t| agreed == 0 || t <= agreed.saturating_add(max_ahead))
            .collect();
        if votes.len() >= k {
            votes.sort_unstable_by(|a, b| b.cmp(a));
            let candidate = votes[k - 1];
            let below = votes.iter().filter(|&&t| t < agreed).count();
            if candidate > agreed || (candidate < agreed && below >= k) {
                agreed = candidate;
                self.0.agreed.store(agreed, Ordering::Relaxed);
            }
        }
        let best = if agreed == 0 {
            // Nothing agreed yet: believe no more than the lowest posted tip
            // plus the allowance (a lone liar cannot jump far).
            let low = posted.iter().copied().min().unwrap_or(0);
            posted
                .iter()
                .copied()
                .filter(|&t| t - low <= max_ahead)
                .max()
                .unwrap_or(0)
        } else {
            posted
                .iter()
                .copied()
                .filter(|&t| t <= agreed.saturating_add(max_ahead))
                .max()
                .unwrap_or(0)
                .max(agreed)
        };
        self.0.best.store(best, Ordering::Relaxed);
    }
}
