//! The synchronisation primitives the concurrent core uses, in one place.
//!
//! Everything that locks goes through here, so a model checker (`loom`, `shuttle`) can later
//! swap these for its own instrumented versions without touching the core.
//!
//! The pool and waiter locks are `parking_lot`'s: under contention (more threads than cores,
//! the normal case for a busy service) they spin briefly, then park, and hand the lock over
//! fairly now and then, which measured 2–4× the throughput of `std::sync::Mutex` in the
//! contended benchmarks (`cargo bench --bench engine`). They do not poison: a panic inside a
//! critical section (only the pool's own code runs there, never a driver or user code) unlocks
//! the lock, and the state it guards is consistent at every step, so one panicking thread cannot
//! take the pool down. The registry's `RwLock`s are std's; their poison is recovered here.

pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard};
/// The atomics of the lock-free parts (the fast slot, the mirrors, lease records), from here
/// too so a model checker can swap them with the locks.
pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
pub(crate) use std::sync::RwLock;

use std::sync::{PoisonError, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`.
#[inline]
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock()
}

/// Read-locks `lock`, recovering from poison.
#[inline]
pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks `lock`, recovering from poison.
pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `condvar` for at most `timeout`, recovering from poison.
pub(crate) fn wait_timeout<'a, T>(
    condvar: &Condvar,
    mut guard: MutexGuard<'a, T>,
    timeout: std::time::Duration,
) -> MutexGuard<'a, T> {
    condvar.wait_for(&mut guard, timeout);
    guard
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_registry_lock_is_recovered_not_propagated() {
        let shared = Arc::new(RwLock::new(1));
        let poisoner = Arc::clone(&shared);
        let _ = std::thread::spawn(move || {
            let _guard = write(&poisoner);
            panic!("poison the lock");
        })
        .join();
        assert!(shared.is_poisoned());
        *write(&shared) += 1;
        assert_eq!(*read(&shared), 2);
    }

    #[test]
    fn a_panic_inside_a_pool_lock_leaves_it_usable() {
        let shared = Arc::new(Mutex::new(1));
        let panicker = Arc::clone(&shared);
        let _ = std::thread::spawn(move || {
            let _guard = lock(&panicker);
            panic!("panic while holding the lock");
        })
        .join();
        *lock(&shared) += 1;
        assert_eq!(*lock(&shared), 2);
    }
}
