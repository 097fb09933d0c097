//! Room that must be given back if a path unwinds before it settled the count.
//!
//! Used by `key_pool` (reserved room, a taken lease, a connection handed over for its reset)
//! and by `core` (a queued waiter whose `open` has not started waiting yet).
//!
//! Between a count change (room reserved for a connect, a connection taken out in use or
//! handed over for a reset) and its settlement, a path runs code the pool does not control:
//! a logging layer, a metrics recorder, an allocation. Driver calls are guarded on their own
//! (`crate::guard`), and the rule is to log only after settling, but a panic anywhere in
//! between must still not keep the room counted for good (with `max_open` 1, every later
//! `open` would time out). So the value that stands for the room (a `Reservation`, a lease) is
//! held in an `Unsettled` together with what gives it back; the normal path takes it out with
//! [`Unsettled::settle`] and settles it itself, and only an unwinding path runs the give-back.

/// `value`, and what gives its room back if it is dropped unsettled.
pub(crate) struct Unsettled<V, F: FnOnce(V)> {
    held: Option<(V, F)>,
}

impl<V, F: FnOnce(V)> Unsettled<V, F> {
    /// Holds `value`; `give_back` runs if this is dropped before [`Unsettled::settle`].
    pub(crate) fn new(value: V, give_back: F) -> Self {
        Self {
            held: Some((value, give_back)),
        }
    }

    /// Takes the value out for the normal path, which settles its count from here on.
    pub(crate) fn settle(mut self) -> V {
        match self.held.take() {
            Some((value, _)) => value,
            // `held` is only emptied here and in `drop`, each of which consumes `self`.
            None => unreachable!("an Unsettled is settled once"),
        }
    }
}

impl<V, F: FnOnce(V)> Drop for Unsettled<V, F> {
    fn drop(&mut self) {
        if let Some((value, give_back)) = self.held.take() {
            give_back(value);
        }
    }
}
