//! `release` for one key: hand the connection to the resetter (or reset it here), then to the
//! core to park, or close it; never under a lock.

use std::mem;

use super::entry::Slot;
use super::{Item, KeyPool};
use crate::clock::Tick;
use crate::error::Error;
use crate::guard::{self, guarded};
use crate::held;
use crate::lease::LeaseId;
use crate::resetter::{Resets, Resetter};
use crate::stats::Counters;
use pool_driver::{Connection, Driver, DriverErrorKind};

impl<D: Driver> KeyPool<D> {
    /// `Conn::release`: reset and park, or close.
    pub(crate) fn release(&'static self, mut entry: Item<D>) -> Result<(), Error> {
        held::remove(self.id());
        entry.record.end();
        let lease = entry.lease;
        let Slot::Attached(conn) = mem::replace(&mut entry.slot, Slot::Empty) else {
            self.core.discard(lease, false, None);
            return Ok(());
        };
        let panicking = std::thread::panicking();
        // A driver that panics while answering is treated as broken.
        let broken = guarded("is_broken", || Ok(conn.is_broken())).unwrap_or(true);
        if panicking || broken || !self.parks || self.core.is_closed() {
            if panicking || broken {
                tracing::warn!(pool = %self.label(), panicking, broken, "closed a connection instead of parking it");
            }
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
            return Ok(());
        }
        let now = Tick::now();
        if entry.past_lifetime(self.core.max_lifetime_nanos(), now) {
            guard::close(conn);
            tracing::debug!(pool = %self.label(), "closed a connection past max_lifetime on release");
            if self.core.rotated(lease) {
                self.wake_primer();
            }
            return Ok(());
        }
        let needs_reset = guarded("needs_reset", || Ok(conn.needs_reset())).unwrap_or(true);
        entry.slot = Slot::Attached(conn);
        if !needs_reset {
            // Nothing to reset: detaching is free, and the fast slot takes it.
            return match self.detach(&mut entry) {
                Ok(()) => {
                    self.core.park(entry);
                    Ok(())
                }
                Err(failure) => {
                    self.core.discard(lease, failure.dead, failure.suspect);
                    failure.result
                }
            };
        }
        self.core.begin_reset();
        if !self.core.background_reset() {
            return self.reset_and_park(entry);
        }
        match self.resetter.submit(self, entry) {
            Ok(()) => Ok(()),
            // Backlog (or no thread): this caller resets it, as without a resetter.
            Err(entry) => self.reset_and_park(entry),
        }
    }

    /// Resets a released entry counted as resetting (`KeyCore::begin_reset`), then parks it,
    /// or closes it if the reset failed. Runs on the resetter thread or, as a fallback, on the
    /// releasing thread (whose `release` returns the error).
    ///
    /// `counted` gives the room back if anything unwinds before the count is settled; it is
    /// disarmed right before (so a panic after cannot give it back twice).
    pub(super) fn reset_and_park(&self, mut entry: Item<D>) -> Result<(), Error> {
        let started = self.metrics.reset_started();
        let mut counted = Uncounted::new(self, entry.lease);
        let lease = entry.lease;
        if self.core.is_closed() {
            // Shut meanwhile: no point resetting what is closed next.
            guard::close(entry);
            counted.disarm();
            self.core.reset_failed(lease, false, None);
            return Ok(());
        }
        let detached = self.detach(&mut entry);
        self.metrics.reset_finished(started);
        match detached {
            Ok(()) => {
                counted.disarm();
                self.core.reset_done(entry);
                tracing::trace!(pool = %self.label(), "reset and parked a connection");
                Ok(())
            }
            Err(failure) => {
                counted.disarm();
                self.core.reset_failed(lease, failure.dead, failure.suspect);
                failure.result
            }
        }
    }

    /// Detaches the attached connection in `entry` with the pool's reset mode, leaving the
    /// parked handle in it. On failure the connection is gone and the failure says how to
    /// count it (and is already logged and counted).
    fn detach(&self, entry: &mut Item<D>) -> Result<(), DetachFailure> {
        let Slot::Attached(conn) = mem::replace(&mut entry.slot, Slot::Empty) else {
            return Err(DetachFailure {
                dead: false,
                suspect: None,
                result: Ok(()),
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
                tracing::info!(pool = %self.label(), reason = %self.scrub(error), "closed a connection whose session cannot be reset");
                Err(DetachFailure {
                    dead: false,
                    suspect: None,
                    result: Ok(()),
                })
            }
            Err(error) => {
                let source = self.scrub(error);
                Counters::bump(&self.core.counters.reset_failures);
                tracing::warn!(pool = %self.label(), error = %source, "reset failed on release; closed the connection");
                Err(DetachFailure {
                    dead: true,
                    suspect: source.is_fatal().then(Tick::now),
                    result: Err(Error::Reset {
                        pool: self.label().to_owned(),
                        source,
                    }),
                })
            }
        }
    }
}

/// Gives a connection's `resetting` room back if the reset path unwinds before it settled the
/// count (a panic outside the guarded driver calls, say in a logging subscriber): the entry is
/// dropped (closed) by the unwinding, and without this the room would stay counted for good.
struct Uncounted<'a, D: Driver> {
    pool: &'a KeyPool<D>,
    lease: LeaseId,
    armed: bool,
}

impl<'a, D: Driver> Uncounted<'a, D> {
    fn new(pool: &'a KeyPool<D>, lease: LeaseId) -> Self {
        Self {
            pool,
            lease,
            armed: true,
        }
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl<D: Driver> Drop for Uncounted<'_, D> {
    fn drop(&mut self) {
        if self.armed {
            self.pool.core.reset_failed(self.lease, false, None);
        }
    }
}

/// A detach that failed: the connection is closed; how to count it, and what `release`
/// returns for it (when it ran on the caller's thread).
struct DetachFailure {
    /// Count it as dropped dead.
    dead: bool,
    /// Mark the parked connections suspect as of this moment (the error was fatal).
    suspect: Option<Tick>,
    result: Result<(), Error>,
}

impl<D: Driver> Resets for KeyPool<D> {
    type Item = Item<D>;

    fn reset_released(&self, item: Item<D>) {
        // The caller's `release` returned long ago: a failure is logged and counted in
        // `detach`, which is all that can be done with it here.
        let _ = self.reset_and_park(item);
    }

    fn resetter(&self) -> &Resetter<Item<D>> {
        &self.resetter
    }
}
