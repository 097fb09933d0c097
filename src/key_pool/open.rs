//! `open` for one key: ask the core, then check, attach or connect outside every lock.

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
                    if taken.prime {
                        self.wake_primer();
                    }
                    let lease = taken.lease;
                    let now = Tick::now();
                    if taken
                        .item
                        .past_lifetime(self.core.max_lifetime_nanos(), now)
                    {
                        guard::close(taken.item);
                        got = self.core.open_after_aged(lease, &mut attempt, now)?;
                        continue;
                    }
                    let validated = taken.validate;
                    match self.revive(taken.item, validated) {
                        Ok(entry) => {
                            // A validation is a round trip: the hand-out is after it.
                            let handed_out = || if validated { Tick::now() } else { now };
                            let conn = self.lease_out(entry, lease, now, at);
                            // After the lease: from here a panic drops a `Conn`, which
                            // gives its room back (the record is guarded anyway).
                            self.metrics.acquired(started, handed_out);
                            return Ok(conn);
                        }
                        Err((why, dead)) => {
                            // Counted as closing first, then handed to the closer, which
                            // uncounts it when it is gone.
                            let evicted = self.core.drop_dead(lease, why);
                            match dead {
                                Some(handle) => self.close_dead(handle),
                                None => self.core.closed_one(),
                            }
                            for parked in evicted {
                                self.close_dead(parked);
                            }
                            self.request_sweep();
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
    fn revive(
        &self,
        mut entry: Item<D>,
        validate: bool,
    ) -> Result<Item<D>, (Dropped, Option<D::Handle>)> {
        let Slot::Parked(mut handle) = mem::replace(&mut entry.slot, Slot::Empty) else {
            return Err((Dropped::Dead, None));
        };
        if validate {
            let timeout = self.core.setting(|s| s.check_timeout);
            if let Some(why) = self.check(&mut handle, timeout) {
                tracing::warn!(pool = %self.label(), ?why, "dropped a dead parked connection before hand-out");
                // Its close may wait on the silent network: the caller hands it to the closer.
                return Err((why, Some(handle)));
            }
        }
        match guarded("attach", || self.driver.attach(handle)) {
            Ok(conn) => {
                entry.slot = Slot::Attached(conn);
                Ok(entry)
            }
            Err(error) => {
                tracing::warn!(pool = %self.label(), error = %self.scrub(error), "attach failed; closed the connection");
                Err((Dropped::Dead, None))
            }
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
        Conn::new(entry)
    }

    /// Opens a connection for a caller whose room is reserved.
    fn connect_reserved(
        &'static self,
        reservation: Reservation,
        at: &'static Location<'static>,
    ) -> Result<Conn, Error> {
        match self.connect() {
            Ok(conn) => {
                let entry = Entry::attached(conn);
                let record = Arc::clone(&entry.record);
                match self.core.connected(reservation, record) {
                    Some(lease) => Ok(self.lease_out(entry, lease, Tick::now(), at)),
                    None => {
                        guard::close(entry);
                        self.core.count_closed(false);
                        Err(Error::ShutDown)
                    }
                }
            }
            Err(source) => {
                self.core.connect_failed(reservation, source.to_string());
                Err(Error::Connect {
                    pool: self.label().to_owned(),
                    source,
                })
            }
        }
    }

    /// One connect attempt, logged; the error comes back scrubbed.
    pub(super) fn connect(&self) -> Result<D::Conn, DriverError> {
        let timeout = self.core.setting(|s| s.connect_timeout);
        match guarded("connect", || self.driver.connect(&self.args, timeout)) {
            Ok(conn) => {
                Counters::bump(&self.core.counters.opened);
                tracing::debug!(pool = %self.label(), "opened a connection");
                Ok(conn)
            }
            Err(error) => {
                let error = self.scrub(error);
                Counters::bump(&self.core.counters.connect_failures);
                tracing::warn!(pool = %self.label(), %error, "connect failed");
                Err(error)
            }
        }
    }
}
