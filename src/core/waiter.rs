//! A caller of `open` waiting at the limit, and the hand-off it waits for.
//!
//! Waiters queue first come first served in the pool state, and only the front waiter is ever
//! served or woken, so waiters are served in arrival order. Whoever frees capacity (a release,
//! a closed connection, a primer that finished) acts while holding the pool lock:
//!
//! * a connection released while the front waiter has waited at least `HANDOFF_AFTER` (1 ms)
//!   is handed to it directly (`Grant::Item`): no later caller can take it;
//! * before that, it is parked and the front waiter is woken to come and take it
//!   (`Grant::Retry`, keeping its place); a caller already running may take it first. This is
//!   Go's `sync.Mutex` rule: strict hand-off to a sleeping thread on every release makes every
//!   operation pay a wake-up (a lock convoy), while a short window of barging keeps throughput
//!   and still bounds how long the front waiter can be overtaken;
//! * freed room under the limit is a permit to connect (`Grant::Permit`).
//!
//! Lock order: pool state, then a waiter's slot. The waiter itself takes only its slot while
//! waiting, and takes the pool state (then its slot) only when it gives up.

use std::time::Duration;

use super::reservation::Reservation;
use crate::clock::{Deadline, Tick};
use crate::lease::LeaseId;
use crate::sync::{lock, wait_timeout, Condvar, Mutex};

/// How long the front waiter may be overtaken before released connections go to it directly.
pub(crate) const HANDOFF_AFTER: Duration = Duration::from_millis(1);

/// Longest single sleep of a waiter whose deadline never comes (`acquire_timeout` too long to
/// represent): it re-checks its slot and sleeps again, so no wait is one unbounded call.
const LONGEST_SLEEP: Duration = Duration::from_secs(3600);

/// What a waiter is handed.
pub(crate) enum Grant<E> {
    /// A parked connection, already counted in use under `LeaseId`.
    Item(E, LeaseId),
    /// Room under the limit: the waiter may connect (already counted as opening).
    Permit(Reservation),
    /// A connection was parked: try to take it, keeping your place at the front if it is gone.
    Retry,
    /// The pool shut down.
    Closed,
}

/// One waiting `open` call.
pub(crate) struct Waiter<E> {
    slot: Mutex<Option<Grant<E>>>,
    wake: Condvar,
    /// When it started waiting (coarse clock: the hand-off window is at least `HANDOFF_AFTER`
    /// and at most one clock tick more).
    since: Tick,
}

impl<E> Waiter<E> {
    pub(crate) fn new(now: Tick) -> Self {
        Self {
            slot: Mutex::new(None),
            wake: Condvar::new(),
            since: now,
        }
    }

    /// Whether released connections must now go to this waiter directly.
    pub(crate) fn is_starving(&self, now: Tick) -> bool {
        now.since(self.since) >= HANDOFF_AFTER
    }

    /// Hands `grant` to the waiter. Called with the pool state locked; the wake-up itself
    /// (`notify`, a system call) comes after the pool lock is released, so the critical section
    /// never includes it. The waiter checks its slot under the slot lock before it sleeps, so a
    /// grant set before it sleeps is never missed.
    pub(crate) fn grant(&self, grant: Grant<E>) {
        *lock(&self.slot) = Some(grant);
    }

    /// Wakes the waiter to look at its slot.
    pub(crate) fn notify(&self) {
        self.wake.notify_one();
    }

    /// Takes the grant if one arrived.
    pub(crate) fn take(&self) -> Option<Grant<E>> {
        lock(&self.slot).take()
    }

    /// What the slot holds now, without taking it (for the state-machine test).
    #[cfg(all(test, not(pool_model)))]
    pub(crate) fn peek<R>(&self, look: impl FnOnce(Option<&Grant<E>>) -> R) -> R {
        look(lock(&self.slot).as_ref())
    }

    /// Blocks until granted or `deadline`; `None` means the deadline passed first.
    pub(crate) fn wait_until(&self, deadline: Deadline) -> Option<Grant<E>> {
        let mut slot = lock(&self.slot);
        loop {
            if let Some(grant) = slot.take() {
                return Some(grant);
            }
            let left = deadline.left().unwrap_or(LONGEST_SLEEP);
            if left == Duration::ZERO {
                return None;
            }
            slot = wait_timeout(&self.wake, &self.slot, slot, left.min(LONGEST_SLEEP));
        }
    }
}
