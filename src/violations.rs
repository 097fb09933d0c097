//! Under the model checker only: where the engine reports a broken invariant it checks on
//! itself (a duty on unlock, the `min_idle` floor on expiry, the resetter's backlog bound).
//!
//! Not a panic: these checks run on the engine's background threads too, whose work is
//! wrapped in `catch_unwind` (a reaper or resetter must outlive a panicking driver), so a
//! panic there would be caught and logged, never seen by the test; and a panic under a lock
//! breaks that lock for shuttle, failing some later step under a misleading name. So the first
//! violation of an execution is recorded here, and the checker's calls that end a scenario
//! (`model::violation`, `model::settle`, `model::check_registry`) report it.

use std::sync::{Mutex, PoisonError};

crate::sync::process_global! {
    static FIRST: Mutex<Option<String>> = Mutex::new(None);
}

/// Records `what` unless an earlier violation of this execution was recorded.
pub(crate) fn report(what: String) {
    let mut first = FIRST.lock().unwrap_or_else(PoisonError::into_inner);
    if first.is_none() {
        *first = Some(what);
    }
}

/// The first violation of this execution, if any.
pub(crate) fn first() -> Result<(), String> {
    match FIRST.lock().unwrap_or_else(PoisonError::into_inner).clone() {
        Some(what) => Err(what),
        None => Ok(()),
    }
}
