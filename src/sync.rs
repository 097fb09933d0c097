//! Every synchronisation primitive the engine uses, in one place: the seam for the model
//! checker.
//!
//! Locks, condition variables, atomics, channels, thread spawns and thread-locals of the whole
//! engine (registry, key pools, primer, reaper, stats, lease records) come from here and from
//! nowhere else. A normal build gets the real ones. The model-checking build (package
//! `pool-model` in `dev/model`, which compiles this same source with `--cfg pool_model`) gets
//! `shuttle`'s instrumented versions, so the checker can explore thread interleavings of the
//! real engine code (see ARCHITECTURE.md, "Proving it").
//!
//! The pool and waiter locks are `parking_lot`'s: under contention (more threads than cores,
//! the normal case for a busy service) they spin briefly, then park, and hand the lock over
//! fairly now and then, which measured 2–4× the throughput of `std::sync::Mutex` in the
//! contended benchmarks (`cargo bench --bench engine`). They do not poison: a panic inside a
//! critical section (only the pool's own code runs there, never a driver or user code) unlocks
//! the lock, and the state it guards is consistent at every step, so one panicking thread cannot
//! take the pool down. The registry's `RwLock`s are std's; their poison is recovered here.

#[cfg(not(pool_model))]
mod real {
    pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard};
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
    pub(crate) use std::sync::mpsc::{
        channel, sync_channel, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError,
    };
    pub(crate) use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
    pub(crate) use std::thread;

    /// Locks `mutex`.
    #[inline]
    pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex.lock()
    }

    /// Waits on `condvar` for at most `timeout` (or a notification, or spuriously). `guard`
    /// locks `mutex` (the model checker's version lets go of it and takes it again).
    pub(crate) fn wait_timeout<'a, T>(
        condvar: &Condvar,
        _mutex: &'a Mutex<T>,
        mut guard: MutexGuard<'a, T>,
        timeout: std::time::Duration,
    ) -> MutexGuard<'a, T> {
        condvar.wait_for(&mut guard, timeout);
        guard
    }

    /// Receives from `receiver`, waiting at most `timeout`.
    pub(crate) fn recv_timeout<T>(
        receiver: &Receiver<T>,
        timeout: std::time::Duration,
    ) -> Result<T, RecvTimeoutError> {
        receiver.recv_timeout(timeout)
    }
}

#[cfg(pool_model)]
mod real {
    pub(crate) use shuttle::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
    pub(crate) use shuttle::sync::mpsc::{
        channel, sync_channel, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError,
    };
    pub(crate) use shuttle::sync::{
        Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
    };
    pub(crate) use shuttle::thread;
    use std::sync::PoisonError;

    /// Locks `mutex` (shuttle's locks poison like std's; the state is consistent anyway).
    #[inline]
    pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A choice the model checker makes, replayed with its schedule: where real code decides
    /// by the clock on a path the virtual clock seldom reaches, the checker explores both.
    pub(crate) fn choice() -> bool {
        use rand::RngCore;
        shuttle::rand::thread_rng().next_u64().is_multiple_of(2)
    }

    /// Waits on `condvar` for at most `timeout`.
    ///
    /// Until the test lets time pass, and for waits of `clock::model::UNTIMED` or longer,
    /// shuttle's wait, which never times out: a waiter nobody wakes is reported as a deadlock,
    /// exactly the lost wake-up the checker hunts for.
    ///
    /// Otherwise the wait is a timer (`crate::clock::model`): it lets go of the lock, lets the
    /// others run, and returns, with its deadline passed if time jumped to it (the schedule
    /// chooses) or spuriously otherwise; every caller re-checks its condition and its
    /// deadline, as it must after any wake-up. So every deadline is reached in a bounded
    /// number of steps.
    pub(crate) fn wait_timeout<'a, T>(
        condvar: &Condvar,
        mutex: &'a Mutex<T>,
        guard: MutexGuard<'a, T>,
        timeout: std::time::Duration,
    ) -> MutexGuard<'a, T> {
        if !crate::clock::model::is_timer(timeout) {
            return match condvar.wait_timeout(guard, timeout) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        let timer = crate::clock::model::Timer::after(timeout);
        drop(guard);
        timer.fire_maybe();
        lock(mutex)
    }

    /// Receives from `receiver`, waiting at most `timeout`: shuttle's `recv`, which never
    /// times out, unless the wait is a timer, as in [`wait_timeout`].
    pub(crate) fn recv_timeout<T>(
        receiver: &Receiver<T>,
        timeout: std::time::Duration,
    ) -> Result<T, RecvTimeoutError> {
        use shuttle::sync::mpsc::TryRecvError;
        if !crate::clock::model::is_timer(timeout) {
            return receiver.recv_timeout(timeout);
        }
        let timer = crate::clock::model::Timer::after(timeout);
        loop {
            match receiver.try_recv() {
                Ok(value) => return Ok(value),
                Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {}
            }
            if timer.fire_maybe() {
                return Err(RecvTimeoutError::Timeout);
            }
        }
    }
}

pub(crate) use real::*;

use std::sync::PoisonError;

/// Read-locks `lock`, recovering from poison.
#[inline]
pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks `lock`, recovering from poison.
pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Declares a per-thread variable: std's `thread_local!` normally, shuttle's under the model
/// checker (whose threads all run on one OS thread, so std's would be shared between them).
macro_rules! per_thread {
    ($(#[$meta:meta])* static $name:ident: $ty:ty = $init:expr;) => {
        #[cfg(not(pool_model))]
        std::thread_local! { $(#[$meta])* static $name: $ty = const { $init }; }
        #[cfg(pool_model)]
        shuttle::thread_local! { $(#[$meta])* static $name: $ty = $init; }
    };
}
pub(crate) use per_thread;

/// Declares a process-wide value created on first use: std's `LazyLock` normally, shuttle's
/// `lazy_static` under the model checker (one fresh value per checked execution).
macro_rules! process_global {
    ($(#[$meta:meta])* static $name:ident: $ty:ty = $init:expr;) => {
        #[cfg(not(pool_model))]
        $(#[$meta])*
        static $name: std::sync::LazyLock<$ty> = std::sync::LazyLock::new(|| $init);
        #[cfg(pool_model)]
        shuttle::lazy_static! { $(#[$meta])* static ref $name: $ty = $init; }
    };
}
pub(crate) use process_global;

/// Spawns a named background thread of the engine. Under the model checker a test may have
/// refused threads of this name (`pool_model::model::refuse_spawns`): the spawn then fails as
/// it does on a system out of threads, so the paths that cope with that are checked too.
pub(crate) fn spawn(
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<thread::JoinHandle<()>> {
    #[cfg(pool_model)]
    if refused::is_refused(name) {
        return Err(std::io::Error::other("thread refused by the model checker"));
    }
    thread::Builder::new().name(name.to_owned()).spawn(body)
}

/// The thread names a model-checked execution refuses to spawn.
#[cfg(pool_model)]
pub(crate) mod refused {
    use std::sync::{Mutex, PoisonError};

    crate::sync::process_global! {
        static REFUSED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    }

    /// From now on in this execution, spawning a thread named `name` fails.
    pub(crate) fn refuse(name: &str) {
        REFUSED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(name.to_owned());
    }

    pub(super) fn is_refused(name: &str) -> bool {
        REFUSED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|refused| refused == name)
    }
}

#[cfg(all(test, not(pool_model)))]
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
