//! Shared helpers for integration tests.

#![allow(dead_code)]

pub mod engine;
pub mod fake;
pub mod logs;
pub mod real;

use std::time::{Duration, Instant};

/// Polls `cond` every few milliseconds until it holds; panics with `what` after `limit`.
/// Tests wait for an observable state, never for a fixed time.
pub fn wait_until(what: &str, limit: Duration, cond: impl FnMut() -> bool) {
    assert!(eventually(limit, cond), "timed out waiting until {what}");
}

/// Polls `cond` every few milliseconds until it holds or `limit` passes; whether it held (for
/// an assertion whose message reads the state at the end).
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// Generous bound for background work that normally takes milliseconds.
pub const SOON: Duration = Duration::from_secs(10);

/// The pool's stats once no released connection is still being reset (resets run on the
/// pool's resetter thread after `release` returned), so the counts a test reads are settled.
pub fn after_resets(mut stats: impl FnMut() -> pool::Stats) -> pool::Stats {
    wait_until("the resets in flight are done", SOON, || {
        stats().resetting == 0
    });
    stats()
}
