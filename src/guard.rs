//! The guard around every call into driver code: a panicking driver becomes an error (or a
//! "not alive" answer), never an unwinding pool.
//!
//! Every driver call the engine makes goes through here: `connect`, `detach`, `attach`,
//! `connected`, `is_broken`, `can_detach`, and dropping a connection or handle (which runs the
//! driver's close code). The callers then return any count they reserved, so a buggy driver can
//! never leave room or a lease counted forever.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pool_driver::{DriverError, DriverErrorKind};

/// Runs a driver call, turning a panic inside the driver into a `Broken` error.
pub(crate) fn guarded<T>(
    what: &str,
    call: impl FnOnce() -> Result<T, DriverError>,
) -> Result<T, DriverError> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(result) => result,
        Err(_) => Err(DriverError::new(
            DriverErrorKind::Broken,
            format!("the driver panicked in {what}"),
        )),
    }
}

/// Closes a connection, handle or entry by dropping it, catching a panic in the driver's drop
/// code. Returns false if the driver panicked (the connection is gone either way).
///
/// Never unwinds, not even when the report of a driver's panic panics (a logging layer):
/// callers close while rooms are counted as closing and settle them after, sometimes for
/// several connections in a row.
pub(crate) fn close<T>(connection: T) -> bool {
    let closed = catch_unwind(AssertUnwindSafe(move || drop(connection))).is_ok();
    if !closed {
        log(|| {
            tracing::error!("the driver panicked while closing a connection; it is gone anyway");
        });
    }
    closed
}

/// Emits a log event (`event` is a `tracing` macro call) on a path whose next step must not
/// depend on the logging layer: a layer is user code and may panic, and the event is not worth
/// a thread (the primer's, the closer's watchdog) or a changed outcome.
pub(crate) fn log(event: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(event));
}
