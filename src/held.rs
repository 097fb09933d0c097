//! How many connections of each pool the current thread holds.
//!
//! `open` at the limit from a thread that already holds every connection in use can never be
//! served: nobody else can release one. The pool answers that with `Error::WouldDeadlock` at
//! once instead of hanging until the acquire timeout. Knowing it needs a per-thread count, kept
//! here; `Conn` is `!Send`, so a connection is always released on the thread that opened it
//! and the count stays exact.

use std::cell::RefCell;

use crate::sync::per_thread;

per_thread! {
    /// (pool id, connections held) for every pool this thread has held connections of.
    static HELD: RefCell<Vec<(usize, usize)>> = RefCell::new(Vec::new());
}

/// Connections of pool `id` this thread holds.
#[inline]
pub(crate) fn count(id: usize) -> usize {
    HELD.try_with(|held| {
        held.try_borrow()
            .ok()
            .and_then(|h| h.iter().find(|(p, _)| *p == id).map(|(_, n)| *n))
            .unwrap_or(0)
    })
    .unwrap_or(0)
}

/// This thread took one more connection of pool `id`.
#[inline]
pub(crate) fn add(id: usize) {
    let _ = HELD.try_with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            match held.iter_mut().find(|(p, _)| *p == id) {
                Some((_, n)) => *n += 1,
                None => held.push((id, 1)),
            }
        }
    });
}

/// This thread gave back a connection of pool `id`. The entry stays (at zero) so the next
/// `open` of the same pool does not grow the list again: a thread uses few pools.
#[inline]
pub(crate) fn remove(id: usize) {
    let _ = HELD.try_with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            if let Some((_, n)) = held.iter_mut().find(|(p, _)| *p == id) {
                *n = n.saturating_sub(1);
            }
        }
    });
}
