//! `release` for one key: hand the connection to the resetter (or reset it here), then to the
//! core to park, or close it; never under a lock.
//!
//! Every path settles the connection's count (parked, or its room freed) before it logs: a
//! logging layer is user code and may panic, and a panic between a count change and its
//! settlement would keep the room counted for good (with `max_open` 1, every later `open`
//! would time out). A reset that fails is the pool's business, never the caller's: `release`
//! returns `Ok` once the request's work is done, whatever happens to the connection after.
//!
//! Every log line here goes through `guard::log`, which catches a panicking layer: `release`
//! also runs from `Conn`'s `Drop`, while the caller's thread unwinds, where a second panic
//! would abort the process.

use std::mem;

use super::entry::Slot;
use super::{Item, KeyPool};
use crate::clock::Tick;
use crate::error::Error;
use crate::guard::{self, guarded};
use crate::held;
use crate::resetter::{Rejected, Resets, Resetter};
use crate::stats::Counters;
use crate::unsettled::Unsettled;
use pool_driver::{Connection, Driver, DriverError, DriverErrorKind};

impl<D: Driver> KeyPool<D> {
    /// `Conn::release`: reset and park, or close. Always `Ok`: see the module doc.
    pub(crate) fn release(&'static self, mut entry: Item<D>) -> Result<(), Error> {
        held::remove(self.id());
        entry.record.end();
        entry.released = self.core.release_order();
        let lease = entry.lease;
        let Slot::Attached(conn) = mem::replace(&mut entry.slot, Slot::Empty) else {
            self.core.discard(lease, false, None);
            return Ok(());
        };
        let panicking = std::thread::panicking();
        // A driver that panics while answering is treated as broken.
        let broken = guarded("is_broken", || Ok(conn.is_broken())).unwrap_or(true);
        if panicking || broken || !self.parks || self.core.is_closed() {
            if broken {
                // It may have died mid-request: its close could wait on a silent network, so
                // the closer does it; its room stays counted until then.
                self.core.discard_closing(lease);
                self.close_dead(conn);
                self.request_sweep();
            } else {
                guard::close(conn);
                self.core.discard(lease, false, None);
            }
            if panicking || broken {
                guard::log(
                    || tracing::warn!(pool = %self.label(), panicking, broken, "closed a connection instead of parking it"),
                );
            }
            return Ok(());
        }
        let now = Tick::now();
        if entry.past_lifetime(self.core.max_lifetime_nanos(), now) {
            guard::close(conn);
            if self.core.rotated(lease) {
                self.wake_primer();
            }
            guard::log(
                || tracing::debug!(pool = %self.label(), "closed a connection past max_lifetime on release"),
            );
            return Ok(());
        }
        let needs_reset = guarded("needs_reset", || Ok(conn.needs_reset())).unwrap_or(true);
        entry.slot = Slot::Attached(conn);
        if !needs_reset {
            // Nothing to reset: detaching is free, and the fast slot takes it.
            match self.detach(&mut entry) {
                Ok(()) => self.core.park(entry),
                Err(failure) => {
                    self.core.discard(lease, failure.dead, failure.suspect);
                    failure.report(self.label());
                }
            }
            return Ok(());
        }
        self.core.begin_reset();
        if !self.core.background_reset() {
            self.reset_and_park(entry);
            return Ok(());
        }
        if let Err(rejected) = self.resetter.submit(self, entry) {
            // Backlog (or no thread): this caller resets it, as without a resetter.
            let Rejected { item, spawn_error } = rejected;
            self.reset_and_park(item);
            if let Some(error) = spawn_error {
                guard::log(
                    || tracing::warn!(pool = %self.label(), %error, "could not start a resetter thread; reset on the caller's thread"),
                );
            }
        }
        Ok(())
    }

    /// Resets a released entry counted as resetting (`KeyCore::begin_reset`), then parks it,
    /// or closes it if the reset failed (counted, and logged once its room is free). Runs on
    /// the resetter thread or, as a fallback, on the releasing thread.
    ///
    /// `counted` gives the room back if anything unwinds before the count is settled (the
    /// entry is then dropped, so closed, by the unwinding); it is settled right before the
    /// count is, so a panic after cannot give it back twice.
    pub(super) fn reset_and_park(&self, mut entry: Item<D>) {
        let started = self.metrics.reset_started();
        let counted = Unsettled::new(entry.lease, |lease| {
            self.core.reset_failed(lease, false, None)
        });
        if self.core.is_closed() {
            // Shut meanwhile: no point resetting what is closed next.
            guard::close(entry);
            self.core.reset_failed(counted.settle(), false, None);
            return;
        }
        let detached = self.detach(&mut entry);
        self.metrics.reset_finished(started);
        match detached {
            Ok(()) => {
                counted.settle();
                self.core.reset_done(entry);
                guard::log(
                    || tracing::trace!(pool = %self.label(), "reset and parked a connection"),
                );
            }
            Err(failure) => {
                self.core
                    .reset_failed(counted.settle(), failure.dead, failure.suspect);
                failure.report(self.label());
            }
        }
    }

    /// Detaches the attached connection in `entry` with the pool's reset mode, leaving the
    /// parked handle in it. On failure the connection is gone (closed) and counted in `Stats`;
    /// the failure says how to settle its room, and the caller reports it after settling.
    fn detach(&self, entry: &mut Item<D>) -> Result<(), DetachFailure> {
        let Slot::Attached(conn) = mem::replace(&mut entry.slot, Slot::Empty) else {
            return Err(DetachFailure {
                dead: false,
                suspect: None,
                why: None,
            });
        };
        // Read before the reset: the reset's own time counts as parked, which can only make
        // validation and idle expiry come a little sooner.
        let now = Tick::now();
        let mode = self.core.reset_mode();
        match guarded("detach", || self.driver.detach(conn, mode)) {
            Ok(handle) => {
                entry.slot = Slot::Parked(handle);
                entry.parked_at = now;
                Ok(())
            }
            Err(error) if error.kind() == DriverErrorKind::NotReusable => {
                // The session holds state the driver cannot reset: closed, and not the
                // caller's failure (their work is done; the next user gets a fresh session).
                Counters::bump(&self.core.counters.not_reusable);
                Err(DetachFailure {
                    dead: false,
                    suspect: None,
                    why: Some(Why::NotReusable(self.scrub(error))),
                })
            }
            Err(error) => {
                let source = self.scrub(error);
                Counters::bump(&self.core.counters.reset_failures);
                Err(DetachFailure {
                    dead: true,
                    suspect: source.is_fatal().then(Tick::now),
                    why: Some(Why::Failed(source)),
                })
            }
        }
    }
}

/// A detach that failed: the connection is closed; how to settle its count, and what to
/// report once that is done.
struct DetachFailure {
    /// Count it as dropped dead.
    dead: bool,
    /// Mark the parked connections suspect as of this moment (the error was fatal).
    suspect: Option<Tick>,
    /// What to log (nothing for an entry that held no connection).
    why: Option<Why>,
}

/// Why a detach failed, scrubbed of the key's secrets.
enum Why {
    /// The session holds state the driver cannot reset (`DriverErrorKind::NotReusable`).
    NotReusable(DriverError),
    /// The reset failed (the server went away, timed out, refused).
    Failed(DriverError),
}

impl DetachFailure {
    /// Logs the failure; called only once its count is settled (see the module doc).
    fn report(self, pool: &str) {
        match self.why {
            Some(Why::NotReusable(reason)) => {
                guard::log(
                    || tracing::info!(pool = %pool, %reason, "closed a connection whose session cannot be reset"),
                );
            }
            Some(Why::Failed(error)) => {
                guard::log(
                    || tracing::warn!(pool = %pool, %error, "reset failed on release; closed the connection"),
                );
            }
            None => {}
        }
    }
}

impl<D: Driver> Resets for KeyPool<D> {
    type Item = Item<D>;

    fn reset_released(&self, item: Item<D>) {
        self.reset_and_park(item);
    }

    fn resetter(&self) -> &Resetter<Item<D>> {
        &self.resetter
    }
}
