//! The fast slot: one parked connection kept outside the pool lock.
//!
//! The most recently released connection goes here with one atomic swap instead of a lock
//! round trip, and the next `open` takes it with one atomic swap. It is the top of the LIFO
//! stack, kept where the common case (release, then open again soon) does not need the lock:
//! two atomic operations per open+release instead of four.
//!
//! Rules that keep it consistent with the locked state (see ARCHITECTURE.md, "The fast slot"):
//! * the connection in the slot stays counted as *in use* in the pool state, so the limit holds
//!   without the slot touching any count;
//! * it is never used while waiters are queued: a releaser that sees waiters (or shutdown) after
//!   filling the slot takes it back and goes through the lock, and a caller about to wait checks
//!   the slot after publishing that it waits (both sides use sequentially consistent atomics,
//!   so at least one of them sees the other);
//! * the reaper and shutdown empty it through the lock like any other release.

use crate::sync::{AtomicPtr, Ordering::SeqCst};
use std::marker::PhantomData;
use std::ptr;

/// A slot owning at most one boxed `T`.
pub(crate) struct FastSlot<T> {
    ptr: AtomicPtr<T>,
    _owns: PhantomData<Box<T>>,
}

// SAFETY: the slot owns its `T` exclusively and hands it over whole through atomic swaps, like a
// `Mutex<Option<Box<T>>>`, which is `Sync` whenever `T` is `Send`.
unsafe impl<T: Send> Sync for FastSlot<T> {}

impl<T> Default for FastSlot<T> {
    fn default() -> Self {
        Self {
            ptr: AtomicPtr::new(ptr::null_mut()),
            _owns: PhantomData,
        }
    }
}

impl<T> FastSlot<T> {
    /// Takes what is in the slot.
    #[inline]
    pub(crate) fn take(&self) -> Option<Box<T>> {
        let taken = self.ptr.swap(ptr::null_mut(), SeqCst);
        // SAFETY: a non-null pointer in the slot came from `Box::into_raw` in `put`, and the
        // swap made this call its only owner.
        (!taken.is_null()).then(|| unsafe { Box::from_raw(taken) })
    }

    /// Puts `item` in the slot, returning what was there.
    #[inline]
    pub(crate) fn put(&self, item: Box<T>) -> Option<Box<T>> {
        let displaced = self.ptr.swap(Box::into_raw(item), SeqCst);
        // SAFETY: as in `take`.
        (!displaced.is_null()).then(|| unsafe { Box::from_raw(displaced) })
    }

    /// Whether something is in the slot (a snapshot, for stats).
    pub(crate) fn is_occupied(&self) -> bool {
        !self.ptr.load(SeqCst).is_null()
    }
}

impl<T> Drop for FastSlot<T> {
    fn drop(&mut self) {
        drop(self.take());
    }
}

#[cfg(all(test, not(pool_model)))]
mod tests {
    use super::*;

    #[test]
    fn the_slot_hands_over_whole_items() {
        let slot = FastSlot::default();
        assert!(slot.take().is_none());
        assert!(slot.put(Box::new(1)).is_none());
        assert!(slot.is_occupied());
        assert_eq!(slot.put(Box::new(2)).map(|b| *b), Some(1));
        assert_eq!(slot.take().map(|b| *b), Some(2));
        assert!(!slot.is_occupied());
    }

    #[test]
    fn dropping_the_slot_drops_its_item() {
        let item = std::sync::Arc::new(());
        let slot = FastSlot::default();
        slot.put(Box::new(std::sync::Arc::clone(&item)));
        drop(slot);
        assert_eq!(std::sync::Arc::strong_count(&item), 1);
    }
}
