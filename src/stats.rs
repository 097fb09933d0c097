//! Pool statistics: live counts and lifetime counters.

use std::time::Duration;

use crate::clock::saturating_nanos;
use crate::sync::{AtomicU64, Ordering::Relaxed};

/// A snapshot of one pool, from [`crate::stats`] or [`crate::all_stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// The driver name.
    pub driver: String,
    /// The pool's connection arguments, redacted.
    pub pool: String,
    /// Connections parked, ready to hand out.
    pub idle: usize,
    /// Connections held by callers.
    pub in_use: usize,
    /// Released connections whose session reset is still running (on the pool's resetter
    /// thread): they count against `max_open` and are parked when it is done.
    pub resetting: usize,
    /// Connects in flight, plus parked connections the reaper is checking or closing (they
    /// count against `max_open` until they are gone).
    pub opening: usize,
    /// Callers waiting at the limit.
    pub waiting: usize,
    /// The limit.
    pub max_open: usize,
    /// Connections opened since the pool was created.
    pub opened: u64,
    /// Connections closed, for any reason.
    pub closed: u64,
    /// Connections closed by the reaper for idleness.
    pub reaped_idle: u64,
    /// Connections closed because they were found dead or broken.
    pub dropped_dead: u64,
    /// Connections closed because they reached `max_lifetime` (rotated).
    pub rotated: u64,
    /// Connections closed on release because they held session state their driver cannot
    /// reset (for example a MariaDB role after `SET ROLE`); `release` still returns `Ok`.
    pub not_reusable: u64,
    /// Connections closed because their reset on release failed (with a background reset the
    /// caller's `release` has already returned `Ok`; the failure is logged at WARN).
    pub reset_failures: u64,
    /// Failed connect attempts (by callers and the primer).
    pub connect_failures: u64,
    /// `open` calls that had to wait at the limit.
    pub waits: u64,
    /// `open` calls that gave up with `Error::Timeout`.
    pub timeouts: u64,
    /// `open` calls refused with `Error::TooManyWaiting` (load shedding).
    pub shed: u64,
    /// Statements that ran past their deadline (`Error::StatementTimeout`).
    pub statement_timeouts: u64,
    /// Total time spent waiting at the limit.
    pub total_wait: Duration,
}

/// The lifetime counters of one pool. Relaxed atomics: they are reports, not synchronisation,
/// and none of them is touched on the fast path of `open` and `release`.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) opened: AtomicU64,
    pub(crate) closed: AtomicU64,
    pub(crate) reaped_idle: AtomicU64,
    pub(crate) dropped_dead: AtomicU64,
    pub(crate) not_reusable: AtomicU64,
    pub(crate) rotated: AtomicU64,
    pub(crate) reset_failures: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) waits: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) shed: AtomicU64,
    pub(crate) statement_timeouts: AtomicU64,
    pub(crate) wait_nanos: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn add_wait(&self, waited: Duration) {
        self.wait_nanos.fetch_add(saturating_nanos(waited), Relaxed);
    }

    /// Fills the counter fields of `stats`.
    pub(crate) fn fill(&self, stats: &mut Stats) {
        stats.opened = self.opened.load(Relaxed);
        stats.closed = self.closed.load(Relaxed);
        stats.reaped_idle = self.reaped_idle.load(Relaxed);
        stats.dropped_dead = self.dropped_dead.load(Relaxed);
        stats.not_reusable = self.not_reusable.load(Relaxed);
        stats.rotated = self.rotated.load(Relaxed);
        stats.reset_failures = self.reset_failures.load(Relaxed);
        stats.connect_failures = self.connect_failures.load(Relaxed);
        stats.waits = self.waits.load(Relaxed);
        stats.timeouts = self.timeouts.load(Relaxed);
        stats.shed = self.shed.load(Relaxed);
        stats.statement_timeouts = self.statement_timeouts.load(Relaxed);
        stats.total_wait = Duration::from_nanos(self.wait_nanos.load(Relaxed));
    }
}
