//! `release` for one key: reset, then park in the fast slot or through the lock, or close.

use crate::sync::Ordering;
use std::mem;

use super::{Item, KeyPool};
use crate::clock::Tick;
use crate::core::Released;
use crate::entry::{guarded, Slot};
use crate::{held, Connection, Driver, Error, ResetMode};

impl<D: Driver> KeyPool<D> {
    /// `Conn::release`: reset and park, or close.
    pub(crate) fn release(&'static self, mut entry: Item<D>) -> Result<(), Error> {
        held::remove(self.id());
        entry.record.end();
        let lease = entry.lease;
        let Slot::Attached(conn) = mem::replace(&mut entry.slot, Slot::Empty) else {
            self.locked(|s| s.discard(lease, None));
            return Ok(());
        };
        let panicking = std::thread::panicking();
        let broken = conn.is_broken();
        if panicking || broken || !self.driver.can_detach() || self.closed.load(Ordering::Acquire) {
            drop(conn);
            self.count_closed(broken);
            if panicking || broken {
                tracing::warn!(pool = %self.label, panicking, broken, "closed a connection instead of parking it");
            }
            self.locked(|s| s.discard(lease, broken.then(Tick::now)));
            if broken {
                self.request_sweep();
            }
            return Ok(());
        }
        let mode = if self.rollback_only.load(Ordering::Relaxed) {
            ResetMode::RollbackOnly
        } else {
            ResetMode::Full
        };
        match guarded("detach", || self.driver.detach(conn, mode)) {
            Ok(handle) => {
                entry.slot = Slot::Parked(handle);
                entry.parked_at = Tick::now();
                self.park(entry);
                tracing::trace!(pool = %self.label, "parked a connection");
                Ok(())
            }
            Err(error) => {
                let source = self.scrub(error);
                self.count_closed(true);
                tracing::warn!(pool = %self.label, error = %source, "reset failed on release; closed the connection");
                self.locked(|s| s.discard(lease, source.is_fatal().then(Tick::now)));
                Err(Error::Reset {
                    pool: self.label.clone(),
                    source,
                })
            }
        }
    }

    /// Parks a released entry: into the fast slot when nobody waits (no lock), else through the
    /// lock. See `crate::fast_slot` for why the re-check after filling the slot is enough.
    #[inline]
    pub(super) fn park(&self, entry: Item<D>) {
        if self.waiters_present.load(Ordering::SeqCst) {
            self.park_locked(entry);
            return;
        }
        let displaced = self.fast.put(entry);
        if let Some(older) = displaced {
            // The slot held an earlier release: it goes onto the stack, under the newer one.
            self.park_locked(older);
        }
        if self.waiters_present.load(Ordering::SeqCst) || self.closed.load(Ordering::SeqCst) {
            // A waiter queued (or shutdown began) meanwhile: serve it through the lock.
            if let Some(entry) = self.fast.take() {
                self.park_locked(entry);
            }
        }
    }

    /// Parks a released (or displaced) entry through the lock: onto the stack, or to a waiter.
    pub(super) fn park_locked(&self, entry: Item<D>) {
        let (lease, parked_at) = (entry.lease, entry.parked_at);
        let released = self.locked(|s| s.release(entry, lease, parked_at));
        if let Released::Close(entry) = released {
            drop(entry);
            self.count_closed(false);
        }
    }

    /// Moves the fast slot's connection onto the stack, so the reaper and shutdown see it.
    pub(super) fn flush_fast(&self) {
        if let Some(entry) = self.fast.take() {
            self.park_locked(entry);
        }
    }
}
