//! A caller of `open` waiting at the limit, and the hand-off it waits for.
//!
//! Waiters queue first come first served in the pool state. Whoever frees capacity (a release,
//! a closed connection, a primer that finished) grants the front waiter directly while holding
//! the pool lock, so a released connection can never be taken by a later caller that happened
//! to arrive first at the lock.
//!
//! Lock order: pool state, then a waiter's slot. The waiter itself takes only its slot while
//! waiting, and takes the pool state (then its slot) only when it gives up.

use std::panic::Location;
use std::time::{Duration, Instant};

use crate::core::LeaseId;
use crate::sync::{lock, wait_timeout, Condvar, Mutex};

/// What a waiter is handed.
pub(crate) enum Grant<E> {
    /// A parked connection, already counted in use under `LeaseId`.
    Item(E, LeaseId),
    /// Room under the limit: the waiter may connect (already counted as opening).
    Permit,
    /// The pool shut down.
    Closed,
}

/// One waiting `open` call.
pub(crate) struct Waiter<E> {
    slot: Mutex<Option<Grant<E>>>,
    wake: Condvar,
    /// Where the waiting `open` was called: recorded as the lease's origin if it is served.
    pub(crate) opened_at: &'static Location<'static>,
}

impl<E> Waiter<E> {
    pub(crate) fn new(opened_at: &'static Location<'static>) -> Self {
        Self {
            slot: Mutex::new(None),
            wake: Condvar::new(),
            opened_at,
        }
    }

    /// Hands `grant` to the waiter and wakes it. Called with the pool state locked.
    pub(crate) fn grant(&self, grant: Grant<E>) {
        *lock(&self.slot) = Some(grant);
        self.wake.notify_one();
    }

    /// Takes the grant if one arrived.
    pub(crate) fn take(&self) -> Option<Grant<E>> {
        lock(&self.slot).take()
    }

    /// Blocks until granted or `deadline`; `None` means the deadline passed first.
    pub(crate) fn wait_until(&self, deadline: Instant) -> Option<Grant<E>> {
        let mut slot = lock(&self.slot);
        loop {
            if let Some(grant) = slot.take() {
                return Some(grant);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left == Duration::ZERO {
                return None;
            }
            slot = wait_timeout(&self.wake, slot, left);
        }
    }
}
