//! The client batch a call belongs to, so a backend can send the calls of
//! one client batch that reach it together as one upstream batch.
//!
//! The front puts a [`BatchGroup`] in each batch item's extensions (beside
//! [`BatchPosition`](crate::BatchPosition)). Items still go through every
//! layer one by one — filter, rate limit, cache, routing, retry, failover,
//! metrics — and a backend that batches (`HttpBackendBuilder::max_batch`)
//! gathers the items of one group that reach it. It sends them when every
//! item of the group that is in flight has either reached a backend or been
//! answered above (the cache, a refusal), when `max_batch` are gathered, or
//! after a short window (an item held elsewhere, e.g. waiting for a
//! concurrency permit), whichever comes first.
//!
//! ```
//! use rpc_core::batch::BatchGroup;
//!
//! let group = BatchGroup::new(2);
//! assert_eq!(group.len(), 2);
//! let (a, b) = (group.item(0), group.item(1));
//! assert_eq!(group.unsettled(), 0);
//! a.start();
//! b.start();
//! assert_eq!(group.unsettled(), 2);
//! a.settle(); // reached a backend
//! a.settle(); // again (a retry): counted once
//! b.settle(); // answered by the cache
//! assert_eq!(group.unsettled(), 0);
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// One client batch; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct BatchGroup {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Items started and not yet settled.
    unsettled: AtomicUsize,
    /// Per item: settled already (a retried item is counted once).
    settled: Box<[AtomicBool]>,
    /// Woken when `unsettled` reaches 0.
    all_settled: Notify,
}

impl BatchGroup {
    /// A group of `len` calls.
    pub fn new(len: usize) -> Self {
        BatchGroup {
            shared: Arc::new(Shared {
                unsettled: AtomicUsize::new(0),
                settled: (0..len).map(|_| AtomicBool::new(false)).collect(),
                all_settled: Notify::new(),
            }),
        }
    }

    /// The handle of item `index` (put in its request's extensions).
    pub fn item(&self, index: usize) -> BatchItem {
        BatchItem {
            group: self.clone(),
            index,
        }
    }

    /// The number of calls in the client batch.
    pub fn len(&self) -> usize {
        self.shared.settled.len()
    }

    /// Whether the client batch has no calls.
    pub fn is_empty(&self) -> bool {
        self.shared.settled.is_empty()
    }

    /// Items started and not yet settled.
    pub fn unsettled(&self) -> usize {
        self.shared.unsettled.load(Ordering::Acquire)
    }

    /// Waits until no started item is unsettled.
    pub async fn all_settled(&self) {
        loop {
            let notified = self.shared.all_settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.unsettled() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// A key naming this group (equal for its clones).
    pub fn key(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }
}

/// One call of a [`BatchGroup`], in the call's extensions.
#[derive(Clone, Debug)]
pub struct BatchItem {
    group: BatchGroup,
    index: usize,
}

impl BatchItem {
    /// The group.
    pub fn group(&self) -> &BatchGroup {
        &self.group
    }

    /// The front started the call: counted until settled.
    pub fn start(&self) {
        self.group.shared.unsettled.fetch_add(1, Ordering::AcqRel);
    }

    /// The call is on its way again (a backend failed the whole upstream
    /// batch it was in): the next backend's batch waits for it as before,
    /// so the calls of a failed batch fail over together.
    pub fn unsettle(&self) {
        let shared = &self.group.shared;
        let Some(flag) = shared.settled.get(self.index) else {
            return;
        };
        if flag.swap(false, Ordering::AcqRel) {
            shared.unsettled.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The call reached a backend, or was answered: no longer waited for.
    /// Only the first call counts.
    pub fn settle(&self) {
        let shared = &self.group.shared;
        let Some(flag) = shared.settled.get(self.index) else {
            return;
        };
        if flag.swap(true, Ordering::AcqRel) {
            return;
        }
        let before = shared
            .unsettled
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if before == Ok(1) {
            shared.all_settled.notify_waiters();
        }
    }
}
