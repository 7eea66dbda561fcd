//! The answers of one upstream batch's calls, handed to the calls waiting
//! for them: one allocation per upstream batch, not one channel per call.
//!
//! Kept as our own code (a `tokio::sync::oneshot` per call did this before):
//! a batch's calls are answered by one task, together, and a channel per
//! call cost an allocation each, ten of them in flight for a 10-call batch,
//! past glibc's per-thread cache. [`replies`] makes the slots of a whole
//! batch at once; each call holds a [`Reply`] (the batch's side) and waits
//! on its [`Answer`]. A reply dropped unsent (the batch's task ended without
//! answering the call) closes its answer, as a dropped `oneshot::Sender`
//! does.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// One call's place in the batch's answers.
struct Slot<T> {
    state: Mutex<State<T>>,
    waker: AtomicWaker,
}

enum State<T> {
    /// Not answered yet.
    Waiting,
    /// Answered, not yet taken.
    Ready(T),
    /// Taken by the call, closed unanswered, or no longer waited for.
    Done,
}

/// The slots of `n` calls; [`Slots::pair`] hands out each one's two ends.
pub(super) struct Slots<T> {
    slots: Box<[Slot<T>]>,
}

/// Room for the answers of `n` calls, in one allocation.
pub(super) fn replies<T>(n: usize) -> Arc<Slots<T>> {
    Arc::new(Slots {
        slots: (0..n)
            .map(|_| Slot {
                state: Mutex::new(State::Waiting),
                waker: AtomicWaker::new(),
            })
            .collect(),
    })
}

impl<T> Slots<T> {
    /// How many calls there is room for.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Call `index`'s two ends (each index handed out once).
    pub(super) fn pair(self: &Arc<Self>, index: usize) -> (Reply<T>, Answer<T>) {
        (
            Reply {
                slots: Some(self.clone()),
                index,
            },
            Answer {
                slots: self.clone(),
                index,
            },
        )
    }

    fn lock(&self, index: usize) -> std::sync::MutexGuard<'_, State<T>> {
        self.slots[index]
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// The batch's side of one call: answers it once.
pub(super) struct Reply<T> {
    /// `None` once sent.
    slots: Option<Arc<Slots<T>>>,
    index: usize,
}

impl<T> Reply<T> {
    /// Answers the call. The answer of a call that stopped waiting is
    /// dropped here, at once: it may hold bytes of the response budget.
    pub(super) fn send(mut self, value: T) {
        self.settle(State::Ready(value));
    }

    /// [`send`](Self::send), keeping the handle (a second send does
    /// nothing).
    pub(super) fn send_now(&mut self, value: T) {
        self.settle(State::Ready(value));
    }

    /// Whether the call was answered (or its handle already used).
    pub(super) fn is_sent(&self) -> bool {
        self.slots.is_none()
    }

    /// Puts `to` in the call's slot and wakes the call, once, if it still
    /// waits (`to` is dropped otherwise).
    fn settle(&mut self, to: State<T>) {
        if let Some(slots) = self.slots.take() {
            let mut state = slots.lock(self.index);
            if matches!(*state, State::Waiting) {
                *state = to;
                drop(state);
                slots.slots[self.index].waker.wake();
            }
        }
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        // Unanswered: the call is told its batch is gone.
        self.settle(State::Done);
    }
}

/// The call's side: the answer, or `Err(Closed)` when the batch's side was
/// dropped unanswered.
pub(super) struct Answer<T> {
    slots: Arc<Slots<T>>,
    index: usize,
}

impl<T> Drop for Answer<T> {
    fn drop(&mut self) {
        // No longer waited for: an answer already in is dropped now, and
        // one sent later is dropped by its sender (not kept in the slots
        // until the batch's last end is gone).
        *self.slots.lock(self.index) = State::Done;
    }
}

/// The batch's side of a call was dropped without an answer.
#[derive(Debug)]
pub(super) struct Closed;

impl<T> Future for Answer<T> {
    type Output = Result<T, Closed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // Registered before the state is read: an answer put in after the
        // read wakes this waker.
        this.slots.slots[this.index].waker.register(cx.waker());
        let mut state = this.slots.lock(this.index);
        match std::mem::replace(&mut *state, State::Done) {
            State::Ready(value) => Poll::Ready(Ok(value)),
            State::Done => Poll::Ready(Err(Closed)),
            State::Waiting => {
                *state = State::Waiting;
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each call gets its own answer, whatever the order they are sent in
    /// and whether the call waits before or after; a reply dropped unsent
    /// closes its answer (the others are untouched).
    #[tokio::test]
    async fn each_call_gets_its_own_answer_or_learns_its_batch_is_gone() {
        let slots = replies::<String>(3);
        assert_eq!(slots.len(), 3);
        let [(r0, a0), (r1, a1), (r2, a2)] = [0, 1, 2].map(|i| slots.pair(i));
        let waiting = tokio::spawn(a1);
        tokio::task::yield_now().await;
        r2.send("two".to_owned());
        r1.send("one".to_owned());
        drop(r0);
        assert_eq!(waiting.await.expect("task").expect("answered"), "one");
        assert_eq!(a2.await.expect("answered"), "two");
        assert!(a0.await.is_err(), "closed unanswered");
    }

    /// The answer of a call that stopped waiting is dropped at once, sent
    /// before or after it stopped, while the batch's other calls still
    /// wait: it may hold bytes of the response budget.
    #[test]
    fn an_answer_nobody_waits_for_is_dropped_at_once() {
        let slots = replies::<Arc<()>>(3);
        let [(r0, a0), (r1, a1), (_r2, _a2)] = [0, 1, 2].map(|i| slots.pair(i));
        let held = Arc::new(());
        r0.send(held.clone());
        assert_eq!(Arc::strong_count(&held), 2, "kept for its call");
        drop(a0);
        assert_eq!(Arc::strong_count(&held), 1, "dropped with its call");
        drop(a1);
        r1.send(held.clone());
        assert_eq!(Arc::strong_count(&held), 1, "not kept for nobody");
    }

    /// The slots are freed when the last end is dropped, answers inside.
    #[test]
    fn slots_are_freed_with_their_last_end() {
        let slots = replies::<Arc<()>>(2);
        let held = Arc::new(());
        let (reply, answer) = slots.pair(0);
        let (other_reply, other_answer) = slots.pair(1);
        reply.send(held.clone());
        drop((answer, other_reply, other_answer, slots));
        assert_eq!(Arc::strong_count(&held), 1);
    }
}
