//! Large body buffers kept for reuse: a backend's answer read whole, a
//! front's answer written whole.
//!
//! Why: an answer of a few hundred kilobytes (a 100-block batch, a block
//! with its transactions) is read into one fresh buffer and written into
//! another. Freed, such buffers go back to the top of glibc's heap, which
//! then returns the pages to the kernel (`madvise`) once it holds more than
//! its trim threshold; the next answer faults them back in, zeroed, one
//! page at a time. On a 100-call batch of 175 KB that was one `madvise` and
//! about fifty page faults per batch, ≈ 100 µs of a 915 µs round trip
//! (BENCHMARKS.md). Buffers kept here keep their pages.
//!
//! What is kept is bounded: only buffers of [`MIN_KEPT`] to [`MAX_KEPT`]
//! bytes, at most [`MAX_COUNT`] of them, and at most [`retained_limit`]
//! bytes in all (8 MiB unless [`set_retained_limit`] says otherwise; `0`
//! keeps nothing). A buffer only comes back when the last `Bytes` slice of
//! it is dropped, so an answer held somewhere (a slow client) is never
//! reused under it. Smaller buffers are plain allocations: the allocator's
//! own caches serve them well.
//!
//! Kept as our own code rather than a pool crate: the buffers must come back
//! through `Bytes::from_owner`, with a bound in bytes as well as in count,
//! and best-fit reuse for sizes that vary by a few percent from one answer
//! to the next; this file is that and nothing else.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

/// Buffers smaller than this are not kept (64 KiB).
pub const MIN_KEPT: usize = 64 * 1024;
/// Buffers larger than this are not kept (4 MiB).
pub const MAX_KEPT: usize = 4 * 1024 * 1024;
/// At most this many buffers are kept.
pub const MAX_COUNT: usize = 16;
/// The default of [`retained_limit`]: 8 MiB.
pub const DEFAULT_RETAINED: usize = 8 * 1024 * 1024;

/// The process's buffers.
static SHELF: Shelf = Shelf::new(DEFAULT_RETAINED);

/// Sets how many bytes of idle buffers the process keeps, in all (`0`:
/// none); kept buffers beyond it are freed now, the largest first.
/// Process-wide: every backend and front of the process shares the buffers.
///
/// ```
/// rpc_core::buffers::set_retained_limit(2 * 1024 * 1024);
/// assert_eq!(rpc_core::buffers::retained_limit(), 2 * 1024 * 1024);
/// # rpc_core::buffers::set_retained_limit(rpc_core::buffers::DEFAULT_RETAINED);
/// ```
pub fn set_retained_limit(bytes: usize) {
    SHELF.set_limit(bytes);
}

/// How many bytes of idle buffers the process keeps at most
/// ([`DEFAULT_RETAINED`] unless [`set_retained_limit`] was called).
pub fn retained_limit() -> usize {
    SHELF.limit()
}

/// How many bytes of idle buffers are kept now (for tests and diagnostics).
pub fn retained() -> usize {
    SHELF.stock().bytes
}

/// An empty buffer with room for at least `len` bytes: a kept one when one
/// fits (the smallest that does), else a new one. A new large buffer is
/// rounded up (by at most an eighth), so that the next answer a little
/// longer still fits it. Hand it back with [`freeze`] once written (an
/// adapter of your own can read its bodies this way too).
///
/// ```
/// use rpc_core::buffers::{freeze, take};
///
/// let mut buf = take(200_000);
/// buf.extend_from_slice(b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"0x1\"}]");
/// let body = freeze(buf); // back on the shelf when `body` and its slices are dropped
/// assert!(body.starts_with(b"[{"));
/// ```
pub fn take(len: usize) -> Vec<u8> {
    SHELF.take(len)
}

/// `buf` as `Bytes` (no copy); a buffer of a size that is kept goes back
/// to the shelf when the last slice of it is dropped. A smaller one is
/// `Bytes::from(buf)`. See [`take`].
pub fn freeze(buf: Vec<u8>) -> Bytes {
    SHELF.freeze(buf)
}

/// [`freeze`], with `then` dropped when the bytes are (a body's leftovers,
/// dropped once it is written rather than before).
#[cfg(feature = "server")]
pub(crate) fn freeze_then<T: Send + 'static>(buf: Vec<u8>, then: T) -> Bytes {
    SHELF.freeze_then(buf, then)
}

/// Kept buffers and their bound (one per process; the tests make their
/// own).
struct Shelf {
    limit: AtomicUsize,
    stock: Mutex<Stock>,
}

struct Stock {
    /// Smallest capacity first.
    bufs: Vec<Vec<u8>>,
    /// The capacities of `bufs`, summed.
    bytes: usize,
}

impl Shelf {
    const fn new(limit: usize) -> Self {
        Shelf {
            limit: AtomicUsize::new(limit),
            stock: Mutex::new(Stock {
                bufs: Vec::new(),
                bytes: 0,
            }),
        }
    }

    fn stock(&self) -> MutexGuard<'_, Stock> {
        // Nothing panics while the lock is held: a poisoned stock is whole.
        self.stock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    fn set_limit(&self, bytes: usize) {
        self.limit.store(bytes, Ordering::Relaxed);
        let mut freed = Vec::new();
        {
            let mut stock = self.stock();
            while stock.bytes > bytes {
                let Some(buf) = stock.bufs.pop() else { break };
                stock.bytes -= buf.capacity();
                freed.push(buf);
            }
        }
        drop(freed);
    }

    fn take(&self, len: usize) -> Vec<u8> {
        if !self.keeps(len) {
            return Vec::with_capacity(len);
        }
        let found = {
            let mut stock = self.stock();
            let fits = stock.bufs.iter().position(|b| b.capacity() >= len);
            fits.map(|i| {
                let buf = stock.bufs.remove(i);
                stock.bytes -= buf.capacity();
                buf
            })
        };
        found.unwrap_or_else(|| Vec::with_capacity(rounded(len)))
    }

    fn freeze(&'static self, buf: Vec<u8>) -> Bytes {
        if self.keeps(buf.capacity()) {
            Bytes::from_owner(Kept {
                buf,
                shelf: Some(self),
                _then: (),
            })
        } else {
            Bytes::from(buf)
        }
    }

    #[cfg(any(test, feature = "server"))]
    fn freeze_then<T: Send + 'static>(&'static self, buf: Vec<u8>, then: T) -> Bytes {
        let shelf = self.keeps(buf.capacity()).then_some(self);
        Bytes::from_owner(Kept {
            buf,
            shelf,
            _then: then,
        })
    }

    /// Whether a buffer of `size` bytes (asked for, or held) is of a size
    /// kept (and anything is).
    fn keeps(&self, size: usize) -> bool {
        (MIN_KEPT..=MAX_KEPT).contains(&size) && self.limit() > 0
    }

    /// Keeps `buf` if there is room: within the count and the byte limit,
    /// making room by freeing smaller kept buffers when that is enough (so
    /// the shelf comes to hold the sizes in use). What is not kept is freed
    /// after the lock is released.
    fn give_back(&self, mut buf: Vec<u8>) {
        let cap = buf.capacity();
        let limit = self.limit();
        if !(MIN_KEPT..=MAX_KEPT).contains(&cap) || cap > limit {
            return;
        }
        buf.clear();
        let mut freed = Vec::new();
        {
            let mut stock = self.stock();
            // Kept buffers at least as large stay whatever happens.
            let at = stock.bufs.partition_point(|b| b.capacity() < cap);
            let larger = stock.bufs.len() - at;
            let larger_bytes: usize = stock.bufs[at..].iter().map(Vec::capacity).sum();
            if larger < MAX_COUNT && larger_bytes + cap <= limit {
                let mut at = at;
                while stock.bufs.len() >= MAX_COUNT || stock.bytes + cap > limit {
                    let small = stock.bufs.remove(0);
                    stock.bytes -= small.capacity();
                    freed.push(small);
                    at -= 1;
                }
                stock.bytes += cap;
                stock.bufs.insert(at, buf);
            } else {
                freed.push(buf);
            }
        }
        drop(freed);
    }
}

/// `len` rounded up to a sixteenth of the power of two above it (an
/// eighth of the one below: at most 12.5 % more), within [`MAX_KEPT`].
fn rounded(len: usize) -> usize {
    let step = (len.next_power_of_two() / 16).max(1);
    len.div_ceil(step)
        .saturating_mul(step)
        .min(MAX_KEPT)
        .max(len)
}

/// A buffer lent out as `Bytes`: back on its shelf (if it has one) when
/// dropped, and `then` dropped with it.
struct Kept<T> {
    buf: Vec<u8>,
    shelf: Option<&'static Shelf>,
    /// Held only to be dropped with the buffer.
    _then: T,
}

impl<T> AsRef<[u8]> for Kept<T> {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl<T> Drop for Kept<T> {
    fn drop(&mut self) {
        if let Some(shelf) = self.shelf {
            shelf.give_back(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shelf of the test's own (the process's is shared by every test).
    fn shelf(limit: usize) -> &'static Shelf {
        Box::leak(Box::new(Shelf::new(limit)))
    }

    fn kept(shelf: &Shelf) -> usize {
        shelf.stock().bytes
    }

    #[test]
    fn a_large_buffer_comes_back_when_its_last_slice_is_dropped() {
        let shelf = shelf(DEFAULT_RETAINED);
        let mut buf = shelf.take(100_000);
        let ptr = buf.as_ptr();
        buf.extend_from_slice(&[7; 100_000]);
        let whole = shelf.freeze(buf);
        let part = whole.slice(10..20);
        drop(whole);
        assert_eq!(kept(shelf), 0, "a slice still holds it");
        assert_eq!(&part[..], &[7; 10]);
        drop(part);
        assert!(kept(shelf) >= 100_000);
        let again = shelf.take(99_000);
        assert_eq!(again.as_ptr(), ptr, "the same buffer is lent again");
        assert!(again.is_empty());
        assert_eq!(kept(shelf), 0);
    }

    #[test]
    fn what_goes_with_a_body_is_dropped_with_it() {
        let shelf = shelf(DEFAULT_RETAINED);
        let later = std::sync::Arc::new(());
        for len in [100, 100_000] {
            let mut buf = shelf.take(len);
            buf.extend_from_slice(&vec![1; len]);
            let body = shelf.freeze_then(buf, later.clone());
            assert_eq!(std::sync::Arc::strong_count(&later), 2);
            assert_eq!(body.len(), len);
            drop(body);
            assert_eq!(std::sync::Arc::strong_count(&later), 1);
        }
        assert!(kept(shelf) >= 100_000, "the large one was kept");
    }

    #[test]
    fn small_and_huge_buffers_are_not_kept() {
        let shelf = shelf(DEFAULT_RETAINED);
        drop(shelf.freeze(shelf.take(1000)));
        drop(shelf.freeze(vec![0; MAX_KEPT + 1]));
        assert_eq!(kept(shelf), 0);
    }

    #[test]
    fn the_smallest_buffer_that_fits_is_lent() {
        let shelf = shelf(DEFAULT_RETAINED);
        let big = shelf.take(1_000_000);
        let small = shelf.take(100_000);
        let small_ptr = small.as_ptr();
        drop(shelf.freeze(big));
        drop(shelf.freeze(small));
        let lent = shelf.take(90_000);
        assert_eq!(lent.as_ptr(), small_ptr);
    }

    #[test]
    fn what_is_kept_stays_within_the_count_and_the_byte_limit() {
        let shelf = shelf(1024 * 1024);
        let bufs: Vec<_> = (0..40).map(|_| shelf.take(200_000)).collect();
        for b in bufs {
            drop(shelf.freeze(b));
            assert!(kept(shelf) <= 1024 * 1024);
        }
        assert!(kept(shelf) > 0);
        let many: Vec<_> = (0..40).map(|_| shelf.take(MIN_KEPT)).collect();
        shelf.set_limit(DEFAULT_RETAINED);
        for b in many {
            drop(shelf.freeze(b));
        }
        assert!(shelf.stock().bufs.len() <= MAX_COUNT);
        let caps: Vec<usize> = shelf.stock().bufs.iter().map(Vec::capacity).collect();
        assert!(caps.windows(2).all(|w| w[0] <= w[1]), "kept smallest first");
        shelf.set_limit(0);
        assert_eq!(kept(shelf), 0, "a limit of 0 frees what was kept");
        drop(shelf.freeze(shelf.take(200_000)));
        assert_eq!(kept(shelf), 0);
    }

    #[test]
    fn a_larger_buffer_takes_the_place_of_smaller_ones_when_full() {
        let shelf = shelf(300 * 1024);
        drop(shelf.freeze(shelf.take(100_000)));
        drop(shelf.freeze(shelf.take(150_000)));
        let before = kept(shelf);
        drop(shelf.freeze(shelf.take(250_000)));
        assert!(kept(shelf) <= 300 * 1024);
        assert_ne!(
            kept(shelf),
            before,
            "the larger buffer replaced smaller ones"
        );
        let lent = shelf.take(240_000);
        assert_eq!(kept(shelf), 0, "it was the one kept");
        drop(lent);
    }

    #[test]
    fn a_buffer_is_not_kept_in_place_of_larger_ones() {
        let shelf = shelf(300 * 1024);
        let (big, small) = (shelf.take(250_000), shelf.take(100_000));
        drop(shelf.freeze(big));
        let before = kept(shelf);
        drop(shelf.freeze(small));
        assert_eq!(kept(shelf), before, "no room, and nothing smaller to free");
    }

    #[test]
    fn new_buffers_are_rounded_up_by_at_most_an_eighth() {
        for len in [MIN_KEPT, 100_000, 175_000, 1_000_001, MAX_KEPT] {
            let r = rounded(len);
            assert!(r >= len && r <= len + len / 8 + 1, "{len} -> {r}");
        }
    }
}
