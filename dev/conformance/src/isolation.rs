//! Keeps the suite's other checks still while one check counts the process's threads.
//!
//! The test harness runs checks in parallel threads of one process, and most checks start and
//! end threads of their own (proxies, the driver's own helpers, the harness's thread per
//! test). A check that asks "are we back at the thread count we started with?" would see
//! those come and go. So every check the [`conformance_tests!`](crate::conformance_tests)
//! macro generates holds [`shared`] while it runs, and a check that counts threads holds
//! `exclusive`: it starts once the checks running now have finished, and the others wait
//! (blocked, starting no thread) until it is done. Checks holding [`shared`] never wait for
//! each other.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

static SUITE: RwLock<()> = RwLock::new(());

/// Held by every generated check while it runs (the macro takes it; driver authors never
/// need to).
#[doc(hidden)]
pub fn shared() -> RwLockReadGuard<'static, ()> {
    // A check that panicked while holding `exclusive` poisons the lock; the others go on.
    SUITE.read().unwrap_or_else(PoisonError::into_inner)
}

/// Held by a check that counts the process's threads: no other generated check runs meanwhile.
pub(crate) fn exclusive() -> RwLockWriteGuard<'static, ()> {
    SUITE.write().unwrap_or_else(PoisonError::into_inner)
}
