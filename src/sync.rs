//! The synchronisation primitives the concurrent core uses, in one place.
//!
//! Everything that locks goes through here, so a model checker (`loom`, `shuttle`) can later
//! swap these for its own instrumented versions without touching the core.
//!
//! Poisoning: no pool lock is ever held while calling a driver or user code, so a panic inside
//! a critical section can only come from the pool itself, and the state it guards is kept
//! consistent at every step. A poisoned lock is therefore recovered, not propagated: one
//! panicking thread must not take the pool down for every other thread.

pub(crate) use std::sync::{Condvar, Mutex, MutexGuard, RwLock};

use std::sync::{PoisonError, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, recovering the guard if a previous holder panicked.
#[inline]
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
    guard: MutexGuard<'a, T>,
    timeout: std::time::Duration,
) -> MutexGuard<'a, T> {
    match condvar.wait_timeout(guard, timeout) {
        Ok((guard, _)) => guard,
        Err(poisoned) => poisoned.into_inner().0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_lock_is_recovered_not_propagated() {
        let shared = Arc::new(Mutex::new(1));
        let poisoner = Arc::clone(&shared);
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.lock().unwrap();
            panic!("poison the lock");
        })
        .join();
        assert!(shared.is_poisoned());
        *lock(&shared) += 1;
        assert_eq!(*lock(&shared), 2);
    }
}
