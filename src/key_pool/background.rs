//! The work the primer and reaper threads do for one key: one primer attempt, one sweep.

use std::sync::Arc;

use super::entry::{Entry, Slot};
use super::open::UNWOUND;
use super::KeyPool;
use crate::clock::Tick;
use crate::core::{Dropped, PrimeStart};
use crate::guard::{self, guarded};
use crate::primer::PrimeOutcome;
use crate::sync::Ordering;
use crate::unsettled::Unsettled;
use pool_driver::Driver;

impl<D: Driver> KeyPool<D> {
    /// One primer attempt (called on the primer thread). Like `open`, it holds its reserved
    /// room in an `Unsettled` and logs only once the room is settled.
    pub(crate) fn prime_once(&self) -> PrimeOutcome {
        let reservation = match self.core.prime_begin() {
            PrimeStart::Go(reservation) => reservation,
            PrimeStart::NotNeeded => return PrimeOutcome::NotNeeded,
            PrimeStart::Closed => return PrimeOutcome::Closed,
        };
        let reserved = Unsettled::new(reservation, |reservation| {
            self.core.prime_failed(reservation, UNWOUND.to_owned())
        });
        let conn = match self.connect() {
            Ok(conn) => conn,
            Err(error) => {
                self.core.prime_failed(reserved.settle(), error.to_string());
                self.report_connect(Some(&error));
                return PrimeOutcome::Failed;
            }
        };
        let mode = self.core.reset_mode();
        match guarded("detach", || self.driver.detach(conn, mode)) {
            Ok(handle) => {
                let item = Entry::parked(handle);
                let record = Arc::clone(&item.record);
                let parked = self.core.prime_done(reserved.settle(), item, record);
                // A panicking logging layer must not turn this success into a failure (the
                // primer would retry, and add a connection nobody asked for).
                guard::log(|| self.report_connect(None));
                match parked {
                    Some(more) => {
                        guard::log(|| {
                            tracing::debug!(pool = %self.label(), "primer parked a fresh connection");
                        });
                        PrimeOutcome::Done { more }
                    }
                    None => PrimeOutcome::Closed,
                }
            }
            Err(error) => {
                let error = self.scrub(error);
                self.core.count_closed(true);
                self.core.prime_failed(reserved.settle(), error.to_string());
                tracing::warn!(pool = %self.label(), %error, "primer could not reset a fresh connection; closed it");
                PrimeOutcome::Failed
            }
        }
    }

    /// Reports, once each, connections held longer than `leak_threshold` (outside every lock:
    /// formatting a backtrace resolves symbols).
    fn report_leaks(&self) {
        let now = Tick::now();
        for record in self.core.overdue_leases(now) {
            if let Some(leak) = record.leak(now) {
                tracing::warn!(
                    pool = %self.label(),
                    held_for = ?leak.held_for,
                    opened_at = %leak.at,
                    backtrace = leak.backtrace.as_deref().unwrap_or("(not captured)"),
                    "a connection has been held longer than leak_threshold: possible leak"
                );
            }
        }
    }

    /// Hands a dead connection, counted as closing, to the closer thread, which frees its room
    /// (`closed_one`) once it is closed or after the closer's grace period.
    pub(super) fn close_dead<T: Send + 'static>(&'static self, dead: T) {
        self.closer.close(dead, move || self.core.closed_one());
    }

    /// Asks the reaper to check this pool's parked connections now.
    pub(super) fn request_sweep(&self) {
        self.sweep_requested.store(true, Ordering::Release);
        self.reaper.wake();
    }

    /// One reaper sweep: idle expiry, then liveness checks one at a time, then a prime if the
    /// pool emptied. Called only on the reaper thread.
    pub(super) fn sweep(&'static self) {
        self.core.flush_fast();
        let reaped = self.core.expire_idle(Tick::now());
        if reaped > 0 {
            tracing::info!(pool = %self.label(), reaped, "reaped idle connections");
        }
        let max_lifetime = self.core.max_lifetime_nanos();
        let now = Tick::now();
        let (rotated, prime) = self
            .core
            .rotate_parked(|entry| entry.past_lifetime(max_lifetime, now));
        // The primer first: the core counted the prime as pending, and only the primer clears
        // that, so a log line that panics must not come between.
        if prime {
            self.wake_primer();
        }
        if rotated > 0 {
            tracing::info!(pool = %self.label(), rotated, "closed parked connections past max_lifetime");
        }
        let sweep_start = Tick::now();
        let timeout = self.core.setting(|s| s.check_timeout);
        while let Some(mut checked) = self.core.take_for_check(sweep_start) {
            let verdict = match &mut checked.idle.item.slot {
                Slot::Parked(handle) => self.check(handle, timeout),
                _ => Some(Dropped::Dead),
            };
            if let Some(dead) = self.core.check_done(checked, verdict.is_none()) {
                self.close_dead(dead);
            }
            // Logged once the counts are settled: a logger that panics here unwinds into the
            // reaper's catch with nothing taken out of the pool.
            if let Some(why) = verdict {
                tracing::warn!(pool = %self.label(), ?why, "reaper dropped a dead parked connection");
            }
            if verdict == Some(Dropped::Silent) {
                // Its network may have gone quiet: checking the rest one by one would hold
                // the reaper, and every other key, for a `check_timeout` each. They are
                // suspect now (checked before hand-out) and this key's next sweep goes on.
                break;
            }
        }
        self.report_leaks();
        if self.core.want_prime_below_floor() {
            self.wake_primer();
        }
    }
}
