//! The work the primer and reaper threads do for one key: one primer attempt, one sweep.

use crate::sync::Ordering;
use std::sync::Arc;

use super::{Item, KeyPool, PrimeOutcome};
use crate::clock::Tick;
use crate::core::Released;
use crate::entry::{guarded, Entry, Slot};
use crate::stats::Counters;
use crate::sync::lock;
use crate::{Driver, ResetMode};

impl<D: Driver> KeyPool<D> {
    /// One primer attempt (called on the primer thread).
    pub(crate) fn prime_once(&self) -> PrimeOutcome {
        {
            let mut state = lock(&self.state);
            if state.is_closed() {
                return PrimeOutcome::Closed;
            }
            if !state.prime_begin() {
                return PrimeOutcome::NotNeeded;
            }
        }
        match self.connect() {
            Ok(conn) => {
                let mode = if self.rollback_only.load(Ordering::Relaxed) {
                    ResetMode::RollbackOnly
                } else {
                    ResetMode::Full
                };
                let item = match self.park_fresh(conn, mode) {
                    Some(item) => item,
                    None => return PrimeOutcome::Failed,
                };
                let record = Arc::clone(&item.record);
                let released = self.locked(|s| s.prime_done(item, record, Tick::now()));
                match released {
                    Released::Close(item) => {
                        drop(item);
                        self.count_closed(false);
                        PrimeOutcome::Closed
                    }
                    Released::Parked | Released::Handed => {
                        tracing::debug!(pool = %self.label, "primer parked a fresh connection");
                        PrimeOutcome::Done
                    }
                }
            }
            Err(error) => {
                self.locked(|s| s.prime_failed(error.to_string()));
                PrimeOutcome::Failed
            }
        }
    }

    /// Detaches a freshly opened connection for parking; on failure frees its reservation.
    pub(super) fn park_fresh(&self, conn: D::Conn, mode: ResetMode) -> Option<Item<D>> {
        let detached = if self.driver.can_detach() {
            guarded("detach", || self.driver.detach(conn, mode))
        } else {
            drop(conn);
            self.locked(|s| s.prime_failed("the driver cannot detach; nothing to prime".into()));
            return None;
        };
        match detached {
            Ok(handle) => Some(Entry::parked(handle)),
            Err(error) => {
                let error = self.scrub(error);
                self.count_closed(true);
                self.locked(|s| s.prime_failed(error.to_string()));
                None
            }
        }
    }

    /// Asks the reaper to check this pool's parked connections now.
    pub(super) fn request_sweep(&self) {
        self.sweep_requested.store(true, Ordering::Release);
        self.reaper.wake();
    }

    /// One reaper sweep: idle expiry, then liveness checks one at a time, then a prime if the
    /// pool emptied. Called only on the reaper thread.
    pub(super) fn sweep(&'static self) {
        self.flush_fast();
        let expired = self.locked(|s| s.expire_idle(Tick::now()));
        if !expired.is_empty() {
            let reaped = expired.len();
            drop(expired);
            for _ in 0..reaped {
                Counters::bump(&self.counters.closed);
                Counters::bump(&self.counters.reaped_idle);
            }
            tracing::info!(pool = %self.label, reaped, "reaped idle connections");
        }
        let sweep_start = Tick::now();
        let timeout = self.setting(|s| s.check_timeout);
        loop {
            let taken = self.locked(|s| s.take_for_check(sweep_start, Tick::now()));
            let Some((index, mut idle)) = taken else {
                break;
            };
            let alive = match &mut idle.item.slot {
                Slot::Parked(handle) => {
                    guarded("connected", || Ok(self.driver.connected(handle, timeout)))
                        .unwrap_or(false)
                }
                _ => false,
            };
            let dead = self.locked(|s| s.check_done(index, idle, alive, Tick::now()));
            if let Some(dead) = dead {
                drop(dead);
                self.count_closed(!alive);
                if !alive {
                    tracing::warn!(pool = %self.label, "reaper dropped a dead parked connection");
                }
            }
        }
        if self.locked(|s| s.want_prime_if_empty()) {
            self.primer.wake(self);
        }
    }
}
