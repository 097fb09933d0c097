//! `release` for one key: reset outside every lock, then hand the connection to the core to
//! park, or close it.

use std::mem;

use super::entry::Slot;
use super::{Item, KeyPool};
use crate::clock::Tick;
use crate::error::Error;
use crate::guard::{self, guarded};
use crate::held;
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
        let mode = self.core.reset_mode();
        match guarded("detach", || self.driver.detach(conn, mode)) {
            Ok(handle) => {
                entry.slot = Slot::Parked(handle);
                // Read before the reset: the reset's own time counts as parked, which can only
                // make validation and idle expiry come a little sooner.
                entry.parked_at = now;
                self.core.park(entry);
                tracing::trace!(pool = %self.label(), "parked a connection");
                Ok(())
            }
            Err(error) if error.kind() == DriverErrorKind::NotReusable => {
                // The session holds state the driver cannot reset: closed, and not the
                // caller's failure (their work is done; the next user gets a fresh session).
                Counters::bump(&self.core.counters.not_reusable);
                tracing::info!(pool = %self.label(), reason = %self.scrub(error), "closed a connection whose session cannot be reset");
                self.core.discard(lease, false, None);
                Ok(())
            }
            Err(error) => {
                let source = self.scrub(error);
                tracing::warn!(pool = %self.label(), error = %source, "reset failed on release; closed the connection");
                self.core
                    .discard(lease, true, source.is_fatal().then(Tick::now));
                Err(Error::Reset {
                    pool: self.label().to_owned(),
                    source,
                })
            }
        }
    }
}
