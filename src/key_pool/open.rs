//! `open` for one key: ask the core, then check, attach or connect outside every lock.
//!
//! As in `release.rs`: every count the core hands out (a connection taken in use, room
//! reserved for a connect) is held in an `Unsettled` until it is settled, and nothing is
//! logged before that, so a panicking logging layer cannot keep a room counted.

use std::mem;
use std::panic::Location;
use std::sync::Arc;

use super::entry::{Entry, Slot};
use super::{Item, KeyPool};
use crate::clock::Tick;
use crate::conn::Conn;
use crate::core::{Attempt, Dropped, Got, Reservation};
use crate::error::Error;
use crate::guard::{self, guarded};
use crate::held;
use crate::lease::LeaseId;
use crate::stats::Counters;
use crate::unsettled::Unsettled;
use pool_driver::{Driver, DriverError};

impl<D: Driver> KeyPool<D> {
    /// `pool::open` for this key.
    pub(crate) fn open_conn(&'static self, at: &'static Location<'static>) -> Result<Conn, Error> {
        let held = || held::count(self.id());
        let prime = || self.wake_primer();
        let mut attempt = Attempt::new(&held, &prime);
        let started = Tick::now();
        let mut got = self.core.open(&mut attempt, started)?;
        loop {
            match got {
                Got::Parked(taken) => {
                    // Counted in use: given back if anything unwinds before it is settled.
                    let lease = taken.lease;
                    let in_use =
                        Unsettled::new(lease, |lease| self.core.discard(lease, false, None));
                    if taken.prime {
                        self.wake_primer();
                    }
                    let now = Tick::now();
                    if taken
                        .item
                        .past_lifetime(self.core.max_lifetime_nanos(), now)
                    {
                        guard::close(taken.item);
                        got = self
                            .core
                            .open_after_aged(in_use.settle(), &mut attempt, now)?;
                        continue;
                    }
                    let validated = taken.validate;
                    match self.revive(taken.item, validated) {
                        Ok(entry) => {
                            // A validation is a round trip: the hand-out is after it.
                            let handed_out = || if validated { Tick::now() } else { now };
                            // Settled once the `Conn` exists: from then on its drop gives
                            // the room back.
                            let conn = self.lease_out(entry, lease, now, at);
                            in_use.settle();
                            // After the lease: from here a panic drops a `Conn`, which
                            // gives its room back (the record is guarded anyway).
                            self.metrics.acquired(started, handed_out);
                            return Ok(conn);
                        }
                        Err(mut failed) => {
                            // Counted as closing first, then handed to the closer, which
                            // uncounts it when it is gone; logged once that is settled.
                            let why = failed.why;
                            let evicted = self.core.drop_dead(in_use.settle(), why);
                            match failed.handle.take() {
                                Some(handle) => self.close_dead(handle),
                                None => self.core.closed_one(),
                            }
                            for parked in evicted {
                                self.close_dead(parked);
                            }
                            self.request_sweep();
                            failed.report(self.label());
                            got = self.core.open_again(why, &mut attempt, now)?;
                        }
                    }
                }
                Got::Connect(reservation) => {
                    let conn = self.connect_reserved(reservation, at);
                    if conn.is_ok() {
                        self.metrics.acquired(started, Tick::now);
                    }
                    return conn;
                }
            }
        }
    }

    /// Turns a parked entry back into an attached one, checking it first if asked. `Err`
    /// means it was dead (with the handle to close, unless the driver consumed it) or would
    /// not attach. `Dropped::Silent`: the check used up most of `check_timeout` (the network
    /// may have gone quiet), so the caller should connect fresh rather than check the other
    /// parked connections one by one.
    fn revive(&self, mut entry: Item<D>, validate: bool) -> Result<Item<D>, NotRevived<D>> {
        let Slot::Parked(mut handle) = mem::replace(&mut entry.slot, Slot::Empty) else {
            return Err(NotRevived {
                why: Dropped::Dead,
                handle: None,
                attach_error: None,
            });
        };
        if validate {
            let timeout = self.core.setting(|s| s.check_timeout);
            if let Some(why) = self.check(&mut handle, timeout) {
                // Its close may wait on the silent network: the caller hands it to the closer.
                return Err(NotRevived {
                    why,
                    handle: Some(handle),
                    attach_error: None,
                });
            }
        }
        match guarded("attach", || self.driver.attach(handle)) {
            Ok(conn) => {
                entry.slot = Slot::Attached(conn);
                Ok(entry)
            }
            Err(error) => Err(NotRevived {
                why: Dropped::Dead,
                handle: None,
                attach_error: Some(self.scrub(error)),
            }),
        }
    }

    /// Wraps an attached entry in the caller's guard.
    fn lease_out(
        &'static self,
        mut entry: Item<D>,
        lease: LeaseId,
        now: Tick,
        at: &'static Location<'static>,
    ) -> Conn {
        held::add(self.id());
        if self.core.leak_detection() {
            entry.record.trace_origin();
        }
        entry.record.begin(now, at);
        entry.lease = lease;
        entry.pool = Some(self);
        let mut conn = Conn::new(entry);
        // On the guard, not the entry: a driver that panics here unwinds through the guard's
        // drop, which gives the room back.
        let timeout = self.core.statement_timeout();
        if !conn.apply_statement_timeout(timeout) && timeout.is_some() {
            self.warn_unbounded_statements();
        }
        conn
    }

    /// Opens a connection for a caller whose room is reserved.
    fn connect_reserved(
        &'static self,
        reservation: Reservation,
        at: &'static Location<'static>,
    ) -> Result<Conn, Error> {
        let reserved = Unsettled::new(reservation, |reservation| {
            self.core.connect_failed(reservation, UNWOUND.to_owned())
        });
        let connected = self.connect();
        match connected {
            Ok(conn) => {
                let entry = Entry::attached(conn);
                let record = Arc::clone(&entry.record);
                let lease = self.core.connected(reserved.settle(), record);
                let conn = match lease {
                    Some(lease) => Ok(self.lease_out(entry, lease, Tick::now(), at)),
                    None => {
                        guard::close(entry);
                        self.core.count_closed(false);
                        Err(Error::ShutDown)
                    }
                };
                self.report_connect(None);
                conn
            }
            Err(source) => {
                self.core
                    .connect_failed(reserved.settle(), source.to_string());
                self.report_connect(Some(&source));
                Err(Error::Connect {
                    pool: self.label().to_owned(),
                    source,
                })
            }
        }
    }

    /// One connect attempt, counted; the error comes back scrubbed. Not logged here: the
    /// caller holds reserved room, and logs with `report_connect` once that is settled.
    pub(super) fn connect(&self) -> Result<D::Conn, DriverError> {
        let timeout = self.core.setting(|s| s.connect_timeout);
        match guarded("connect", || self.driver.connect(&self.args, timeout)) {
            Ok(conn) => {
                Counters::bump(&self.core.counters.opened);
                Ok(conn)
            }
            Err(error) => {
                Counters::bump(&self.core.counters.connect_failures);
                Err(self.scrub(error))
            }
        }
    }

    /// Logs a connect attempt's outcome (`failed`: its scrubbed error), after its reserved
    /// room was settled.
    pub(super) fn report_connect(&self, failed: Option<&DriverError>) {
        match failed {
            None => tracing::debug!(pool = %self.label(), "opened a connection"),
            Some(error) => tracing::warn!(pool = %self.label(), %error, "connect failed"),
        }
    }
}

/// What a reserved connect that unwound (a panic outside the guarded driver call) reports as
/// its connect error.
pub(super) const UNWOUND: &str = "the connect was interrupted by a panic";

/// A parked connection `revive` could not hand out: why, the handle to close (unless the
/// driver consumed it), and the attach error to report.
struct NotRevived<D: Driver> {
    why: Dropped,
    handle: Option<D::Handle>,
    attach_error: Option<DriverError>,
}

impl<D: Driver> NotRevived<D> {
    /// Logs it; called only once its count is settled.
    fn report(&self, pool: &str) {
        match &self.attach_error {
            Some(error) => {
                tracing::warn!(pool = %pool, %error, "attach failed; closed the connection");
            }
            None => {
                let why = self.why;
                tracing::warn!(pool = %pool, ?why, "dropped a dead parked connection before hand-out");
            }
        }
    }
}
