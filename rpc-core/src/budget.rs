//! A process-wide budget of bytes held in memory: request bodies being read
//! by the front, answers being read from backends. Every body is bounded on
//! its own; the budget bounds them all together, so many large bodies at
//! once cannot exhaust memory.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes that may be held at once, shared by clones.
///
/// ```
/// use rpc_core::ByteBudget;
///
/// let budget = ByteBudget::new(1024);
/// let mut held = budget.try_take(600).expect("room");
/// assert!(budget.try_take(600).is_none(), "only 424 bytes left");
/// assert!(held.try_grow(400));
/// assert_eq!(budget.available(), 24);
/// drop(held);
/// assert_eq!(budget.available(), 1024);
/// ```
#[derive(Clone)]
pub struct ByteBudget {
    semaphore: Arc<Semaphore>,
    total: usize,
}

impl std::fmt::Debug for ByteBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteBudget")
            .field("total", &self.total)
            .field("available", &self.available())
            .finish()
    }
}

/// Bytes taken from a [`ByteBudget`], given back on drop.
#[derive(Debug)]
pub struct BytePermit {
    budget: ByteBudget,
    permit: Option<OwnedSemaphorePermit>,
}

impl ByteBudget {
    /// A budget of `bytes` (capped at what a semaphore can count).
    pub fn new(bytes: usize) -> Self {
        let total = bytes.min(Semaphore::MAX_PERMITS);
        ByteBudget {
            semaphore: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// The budget's size.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes not taken now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// An empty permit, to grow as bytes arrive.
    pub fn empty(&self) -> BytePermit {
        BytePermit {
            budget: self.clone(),
            permit: None,
        }
    }

    /// Takes `bytes` now, or `None` if they are not free.
    pub fn try_take(&self, bytes: usize) -> Option<BytePermit> {
        let mut p = self.empty();
        p.try_grow(bytes).then_some(p)
    }
}

impl BytePermit {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Takes `more` bytes now; `false` (nothing taken) if they are not free.
    pub fn try_grow(&mut self, more: usize) -> bool {
        if more == 0 {
            return true;
        }
        let Ok(n) = u32::try_from(more) else {
            return false;
        };
        match self.budget.semaphore.clone().try_acquire_many_owned(n) {
            Ok(p) => {
                self.merge(p);
                true
            }
            Err(_) => false,
        }
    }

    /// Takes `more` bytes, waiting for them to be given back by others
    /// (put a deadline around it). `false` if `more` exceeds the whole
    /// budget.
    pub async fn grow(&mut self, more: usize) -> bool {
        if more == 0 {
            return true;
        }
        if more > self.budget.total {
            return false;
        }
        let Ok(n) = u32::try_from(more) else {
            return false;
        };
        match self.budget.semaphore.clone().acquire_many_owned(n).await {
            Ok(p) => {
                self.merge(p);
                true
            }
            Err(_) => false,
        }
    }

    fn merge(&mut self, p: OwnedSemaphorePermit) {
        match &mut self.permit {
            Some(held) => held.merge(p),
            None => self.permit = Some(p),
        }
    }
}

/// The bytes of an answer read under a [`ByteBudget`], held (in the
/// answer's extensions) until the answer is dropped (every answer of an
/// upstream batch holds the one body they share).
#[derive(Clone)]
#[cfg_attr(not(feature = "http-backend"), allow(dead_code))]
pub(crate) struct HeldBytes(#[allow(dead_code)] pub(crate) std::sync::Arc<BytePermit>);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_growth_gets_bytes_given_back() {
        let budget = ByteBudget::new(100);
        let first = budget.try_take(80).expect("room");
        let mut second = budget.empty();
        assert!(!second.try_grow(30));
        let waiter = tokio::spawn(async move {
            assert!(second.grow(30).await);
            second.bytes()
        });
        tokio::task::yield_now().await;
        drop(first);
        assert_eq!(waiter.await.expect("task"), 30);
        assert_eq!(budget.available(), 100);
        assert!(
            !budget.empty().grow(101).await,
            "more than the whole budget"
        );
    }
}
