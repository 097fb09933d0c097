//! Room under the limit, reserved for one connect, as a value.
//!
//! Whoever is allowed to connect (a caller with room, a waiter handed a permit, the primer)
//! receives a `Reservation`: the pool state has already counted it as `opening`. The token is
//! not `Clone` or `Copy`, and only the state's "connected" and "connect failed" paths
//! (`State::connected`, `State::connect_failed`, `State::prime_done`, `State::prime_failed`)
//! consume it, so the type system makes sure every reserved room ends in exactly one of them.
//! (bb8's `Approval` is the model.)

/// One connect's worth of room under `max_open`, already counted as opening.
#[must_use = "reserved room stays counted until `connected` or `connect_failed` consumes it"]
#[derive(Debug)]
pub(crate) struct Reservation {
    _only_the_state_makes_these: (),
}

impl Reservation {
    /// Only the pool state calls this, right after counting `opening += 1`.
    pub(super) fn new() -> Reservation {
        Reservation {
            _only_the_state_makes_these: (),
        }
    }

    /// Consumed by the state when the connect finished (either way).
    pub(super) fn redeem(self) {}
}
