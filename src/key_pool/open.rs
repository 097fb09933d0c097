//! `open` for one key: the fast slot, the locked decision, waiting at the limit, validation,
//! attaching, and connecting when there is room.

use crate::sync::Ordering;
use std::mem;
use std::panic::Location;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Item, KeyPool};
use crate::clock::Tick;
use crate::conn::Conn;
use crate::core::{Acquire, LeaseId, Retried, State};
use crate::entry::{guarded, Entry, Slot};
use crate::error::TimeoutDetail;
use crate::stats::Counters;
use crate::sync::{lock, MutexGuard};
use crate::waiter::{Grant, Waiter};
use crate::{held, Driver, DriverError, Error};

impl<D: Driver> KeyPool<D> {
    /// `pool::open` for this key.
    pub(crate) fn open_conn(&'static self, at: &'static Location<'static>) -> Result<Conn, Error> {
        let now = Tick::now();
        if let Some(entry) = self.fast.take() {
            if self.closed.load(Ordering::SeqCst) {
                // Shutdown began after this connection was parked: close it, like the rest.
                self.park_locked(entry);
                return Err(Error::ShutDown);
            }
            if let Some(conn) = self.open_from_fast(entry, now, at) {
                return Ok(conn);
            }
        }
        let mut deadline = None;
        let state = lock(&self.state);
        let mut decision = self.settle(state, |s| s.acquire(now), &mut deadline)?;
        loop {
            match decision {
                Acquire::Take {
                    item,
                    lease,
                    validate,
                    prime,
                } => {
                    if prime {
                        self.primer.wake(self);
                    }
                    match self.revive(item, validate) {
                        Some(entry) => return Ok(self.lease_out(entry, lease, Tick::now(), at)),
                        None => {
                            self.request_sweep();
                            let state = lock(&self.state);
                            decision = self.settle(
                                state,
                                |s| s.retry_after_dead(lease, Tick::now()),
                                &mut deadline,
                            )?;
                        }
                    }
                }
                Acquire::Connect => return self.connect_reserved(at),
                Acquire::Wait => {
                    // `settle` never returns Wait; treat it as a decision to look again.
                    let state = lock(&self.state);
                    decision = self.settle(state, |s| s.acquire(Tick::now()), &mut deadline)?;
                }
                Acquire::WouldDeadlock => {
                    return Err(Error::WouldDeadlock {
                        pool: self.label.clone(),
                        held_by_this_thread: held::count(self.id()),
                        max_open: self.setting(|s| s.max_open),
                    })
                }
                Acquire::Closed => return Err(Error::ShutDown),
            }
        }
    }

    /// Runs `decide` under the lock already held; if it says wait, queues a waiter, unlocks
    /// and waits (up to the acquire deadline, set on the first wait of this `open`) for a grant.
    pub(super) fn settle(
        &self,
        mut state: MutexGuard<'_, State<Item<D>>>,
        decide: impl FnOnce(&mut State<Item<D>>) -> Acquire<Item<D>>,
        deadline: &mut Option<Instant>,
    ) -> Result<Acquire<Item<D>>, Error> {
        let decision = decide(&mut state);
        if !matches!(decision, Acquire::Wait) {
            self.unlock_and_wake(state);
            return Ok(decision);
        }
        // Only a caller about to wait needs its own count of held connections.
        let held = held::count(self.id());
        if state.would_deadlock(held) {
            self.unlock_and_wake(state);
            return Ok(Acquire::WouldDeadlock);
        }
        let waiter = Arc::new(Waiter::new(Tick::now()));
        state.enqueue(Arc::clone(&waiter));
        let timeout = state.settings.acquire_timeout;
        self.unlock_and_wake(state);
        // Waiters are now published: a connection released into the fast slot just before that
        // would otherwise sit there unseen (see fast_slot.rs).
        if let Some(entry) = self.fast.take() {
            let mut state = lock(&self.state);
            let granted = state.cancel_wait(&waiter);
            self.unlock_and_wake(state);
            match granted {
                None => return Ok(self.fast_take_decision(entry, Tick::now())),
                Some(grant) => {
                    self.park_locked(entry);
                    return Ok(self.grant_decision(grant));
                }
            }
        }
        let started = Instant::now();
        let deadline = *deadline.get_or_insert(started + timeout);
        Counters::bump(&self.counters.waits);
        let grant = loop {
            match waiter.wait_until(deadline) {
                Some(Grant::Retry) => {
                    let retried = self.locked(|s| s.retry(&waiter, Tick::now()));
                    match retried {
                        Retried::Decided(decision) => {
                            self.counters.add_wait(started.elapsed());
                            return Ok(decision);
                        }
                        Retried::Granted(grant) => break grant,
                        Retried::StillWaiting => {}
                    }
                }
                Some(grant) => break grant,
                None => {
                    let mut state = lock(&self.state);
                    let cancelled = state.cancel_wait(&waiter);
                    let error = self.timeout_error(&state, started.elapsed(), held);
                    self.unlock_and_wake(state);
                    match cancelled {
                        Some(grant) => break grant,
                        None => {
                            self.counters.add_wait(started.elapsed());
                            Counters::bump(&self.counters.timeouts);
                            tracing::warn!(%error, "open timed out at the limit");
                            return Err(error);
                        }
                    }
                }
            }
        };
        self.counters.add_wait(started.elapsed());
        Ok(self.grant_decision(grant))
    }

    /// What a waiter does with what it was handed.
    pub(super) fn grant_decision(&self, grant: Grant<Item<D>>) -> Acquire<Item<D>> {
        match grant {
            Grant::Item(item, lease) => Acquire::Take {
                item,
                lease,
                validate: false,
                prime: false,
            },
            Grant::Permit => Acquire::Connect,
            Grant::Closed => Acquire::Closed,
            // `cancel_wait` never returns a retry; look again as a newcomer would.
            Grant::Retry => self.locked(|s| s.acquire(Tick::now())),
        }
    }

    /// The fast slot's connection as a decision: it is already counted in use.
    pub(super) fn fast_take_decision(&self, entry: Item<D>, now: Tick) -> Acquire<Item<D>> {
        Acquire::Take {
            lease: entry.lease,
            validate: self.needs_validation(&entry, now),
            prime: false,
            item: entry,
        }
    }

    /// Whether a parked entry must be checked before hand-out: parked longer than
    /// `validate_after`, or parked before a dead connection was found.
    #[inline]
    pub(super) fn needs_validation(&self, entry: &Entry<D>, now: Tick) -> bool {
        entry.parked_at.as_nanos() <= self.suspect_before.load(Ordering::Relaxed)
            || now.since(entry.parked_at).as_nanos() as u64
                > self.validate_after.load(Ordering::Relaxed)
    }

    /// `open` took the fast slot's connection (already counted in use). `None`: it was dead
    /// and is closed; the caller goes the locked way.
    #[inline]
    pub(super) fn open_from_fast(
        &'static self,
        entry: Item<D>,
        now: Tick,
        at: &'static Location<'static>,
    ) -> Option<Conn> {
        if self.stack_empty.load(Ordering::Relaxed)
            && self.prime_possible.load(Ordering::Relaxed)
            && self.locked(|s| s.want_prime_after_fast_take())
        {
            self.primer.wake(self);
        }
        let lease = entry.lease;
        let validate = self.needs_validation(&entry, now);
        match self.revive(entry, validate) {
            Some(entry) => Some(self.lease_out(entry, lease, now, at)),
            None => {
                self.request_sweep();
                self.locked(|s| s.discard(lease, Some(now)));
                None
            }
        }
    }

    pub(super) fn timeout_error(
        &self,
        state: &State<Item<D>>,
        waited: Duration,
        held: usize,
    ) -> Error {
        let counts = state.counts();
        Error::Timeout(Box::new(TimeoutDetail {
            pool: self.label.clone(),
            waited,
            in_use: counts.in_use,
            idle: counts.idle,
            opening: counts.opening,
            waiting: counts.waiting,
            max_open: counts.max_open,
            longest_held: state.longest_held_for(Tick::now()),
            held_by_this_thread: held,
            last_connect_error: state.last_connect_error.clone(),
        }))
    }

    /// Turns a parked entry back into an attached one, checking it first if asked. `None`
    /// means it was dead (or would not attach) and has been closed.
    pub(super) fn revive(&self, mut entry: Item<D>, validate: bool) -> Option<Item<D>> {
        let Slot::Parked(mut handle) = mem::replace(&mut entry.slot, Slot::Empty) else {
            return None;
        };
        if validate {
            let timeout = self.setting(|s| s.check_timeout);
            let alive = guarded("connected", || {
                Ok(self.driver.connected(&mut handle, timeout))
            })
            .unwrap_or(false);
            if !alive {
                drop(handle);
                self.count_closed(true);
                tracing::warn!(pool = %self.label, "dropped a dead parked connection before hand-out");
                return None;
            }
        }
        match guarded("attach", || self.driver.attach(handle)) {
            Ok(conn) => {
                entry.slot = Slot::Attached(conn);
                Some(entry)
            }
            Err(error) => {
                self.count_closed(true);
                tracing::warn!(pool = %self.label, error = %self.scrub(error), "attach failed; closed the connection");
                None
            }
        }
    }

    /// Wraps an attached entry in the caller's guard.
    pub(super) fn lease_out(
        &'static self,
        mut entry: Item<D>,
        lease: LeaseId,
        now: Tick,
        at: &'static Location<'static>,
    ) -> Conn {
        held::add(self.id());
        entry.record.begin(now, at);
        entry.lease = lease;
        entry.pool = Some(self);
        Conn::new(entry)
    }

    /// Opens a connection for a caller whose room is already reserved (`opening`).
    pub(super) fn connect_reserved(
        &'static self,
        at: &'static Location<'static>,
    ) -> Result<Conn, Error> {
        match self.connect() {
            Ok(conn) => {
                let entry = Entry::attached(conn);
                let record = Arc::clone(&entry.record);
                let lease = self.locked(|s| s.connected(record));
                Ok(self.lease_out(entry, lease, Tick::now(), at))
            }
            Err(source) => {
                self.locked(|s| s.connect_failed(source.to_string()));
                Err(Error::Connect {
                    pool: self.label.clone(),
                    source,
                })
            }
        }
    }

    /// One connect attempt, counted and logged; the error comes back scrubbed.
    pub(super) fn connect(&self) -> Result<D::Conn, DriverError> {
        let timeout = self.setting(|s| s.connect_timeout);
        match guarded("connect", || self.driver.connect(&self.args, timeout)) {
            Ok(conn) => {
                Counters::bump(&self.counters.opened);
                tracing::debug!(pool = %self.label, "opened a connection");
                Ok(conn)
            }
            Err(error) => {
                let error = self.scrub(error);
                Counters::bump(&self.counters.connect_failures);
                tracing::warn!(pool = %self.label, %error, "connect failed");
                Err(error)
            }
        }
    }
}
