//! `KeyPool`: the pool of one driver + connection-arguments key.
//!
//! It drives the concurrent core (`crate::core`) and does all I/O outside the state lock:
//! every method locks, asks the core for a decision, unlocks, then connects, checks, attaches,
//! detaches or closes. Lock order: this pool's state, then a waiter's slot (inside the core).
//! No pool lock is ever held across a driver call or user code.

use std::mem;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::Tick;
use crate::conn::Conn;
use crate::core::{Acquire, LeaseId, Released, Retried, State};
use crate::entry::{guarded, Entry, Slot};
use crate::erased::AnyPool;
use crate::error::TimeoutDetail;
use crate::fast_slot::FastSlot;
use crate::primer::Primer;
use crate::reaper::ReaperWake;
use crate::settings::Settings;
use crate::stats::{Counters, Stats};
use crate::sync::{lock, Mutex, MutexGuard};
use crate::waiter::{Grant, Waiter};
use crate::{held, ConnArgs, Connection, Driver, DriverError, Error, ResetMode};

/// What one primer attempt achieved.
pub(crate) enum PrimeOutcome {
    /// A connection was parked (or handed to a waiter).
    Done,
    /// Nothing to do: the pool is at its limit.
    NotNeeded,
    /// The connect failed; try again after a pause.
    Failed,
    /// The pool is shut down.
    Closed,
}

type Item<D> = Box<Entry<D>>;

/// The pool of one key.
pub(crate) struct KeyPool<D: Driver> {
    driver: Arc<D>,
    args: ConnArgs,
    /// `driver redacted-args`: the only way this pool names itself in errors and logs.
    label: String,
    state: Mutex<State<Item<D>>>,
    /// Mirror of `settings.reset_mode`, read by `release` without taking the lock.
    rollback_only: AtomicBool,
    /// Mirror of the state's closed flag, read by `release` without taking the lock.
    closed: AtomicBool,
    /// Configured for this key on its own: `configure_defaults` leaves it alone.
    explicit: AtomicBool,
    /// `open` found a dead connection: the reaper should check the rest now.
    sweep_requested: AtomicBool,
    /// When the reaper should next look at this pool. Touched only by the reaper thread.
    next_reap: Mutex<Tick>,
    /// The most recently released connection, kept outside the lock (see `crate::fast_slot`).
    fast: FastSlot<Entry<D>>,
    /// Mirror of "some caller is queued", written under the state lock when it changes.
    waiters_present: AtomicBool,
    /// Mirror of "the locked stack is empty", for the prime rule on the fast path.
    stack_empty: AtomicBool,
    /// Mirror of the state's `suspect_before` (`Tick` nanoseconds).
    suspect_before: AtomicU64,
    /// Mirror of `settings.validate_after` in nanoseconds.
    validate_after: AtomicU64,
    counters: Counters,
    primer: Primer,
    reaper: ReaperWake,
}

impl<D: Driver> KeyPool<D> {
    pub(crate) fn new(
        driver: Arc<D>,
        args: ConnArgs,
        settings: Settings,
        explicit: bool,
        reaper: ReaperWake,
    ) -> &'static Self {
        let label = format!("{} {}", driver.name(), args.redacted());
        // Pools live as long as the process (see ARCHITECTURE.md, "Lifetimes"): leasing a
        // connection then needs no reference count, which keeps two atomic operations off
        // every open/release.
        Box::leak(Box::new(Self {
            rollback_only: AtomicBool::new(settings.reset_mode == ResetMode::RollbackOnly),
            next_reap: Mutex::new(Tick::now() + settings.reap_interval),
            fast: FastSlot::default(),
            waiters_present: AtomicBool::new(false),
            stack_empty: AtomicBool::new(true),
            suspect_before: AtomicU64::new(0),
            validate_after: AtomicU64::new(settings.validate_after.as_nanos() as u64),
            state: Mutex::new(State::new(settings)),
            driver,
            args,
            label,
            closed: AtomicBool::new(false),
            explicit: AtomicBool::new(explicit),
            sweep_requested: AtomicBool::new(false),
            counters: Counters::default(),
            primer: Primer::default(),
            reaper,
        }))
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Identifies this pool in the per-thread held counts.
    fn id(&self) -> usize {
        self as *const Self as usize
    }

    /// Runs `change` under the state lock, then notifies the waiters it granted something to,
    /// after unlocking.
    fn locked<T>(&self, change: impl FnOnce(&mut State<Item<D>>) -> T) -> T {
        let mut state = lock(&self.state);
        let out = change(&mut state);
        self.unlock_and_wake(state);
        out
    }

    /// Updates the mirrors the fast path reads, releases the lock, then notifies the waiters
    /// granted something under it.
    fn unlock_and_wake(&self, mut state: MutexGuard<'_, State<Item<D>>>) {
        let waiting = state.has_waiters();
        if self.waiters_present.load(Ordering::Relaxed) != waiting {
            // Sequentially consistent: pairs with the releaser's re-check (see fast_slot.rs).
            self.waiters_present.store(waiting, Ordering::SeqCst);
        }
        let empty = state.stack_is_empty();
        if self.stack_empty.load(Ordering::Relaxed) != empty {
            self.stack_empty.store(empty, Ordering::Relaxed);
        }
        let suspect = state.suspect_before().as_nanos();
        if self.suspect_before.load(Ordering::Relaxed) != suspect {
            self.suspect_before.store(suspect, Ordering::Relaxed);
        }
        if !state.has_wakes() {
            return;
        }
        let wakes = state.take_wakes();
        drop(state);
        for waiter in wakes {
            waiter.notify();
        }
    }

    fn setting<T>(&self, read: impl FnOnce(&Settings) -> T) -> T {
        read(&lock(&self.state).settings)
    }

    pub(crate) fn primer_backoff_max(&self) -> Duration {
        self.setting(|s| s.primer_backoff_max)
    }

    /// Rewrites a driver error without any of this key's secrets.
    fn scrub(&self, error: DriverError) -> DriverError {
        let message = self.args.scrub(error.message());
        let scrubbed = DriverError::new(error.kind(), message);
        match error.code() {
            Some(code) => scrubbed.with_code(code),
            None => scrubbed,
        }
    }

    fn count_closed(&self, dead: bool) {
        Counters::bump(&self.counters.closed);
        if dead {
            Counters::bump(&self.counters.dropped_dead);
        }
    }

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
    fn settle(
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
    fn grant_decision(&self, grant: Grant<Item<D>>) -> Acquire<Item<D>> {
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
    fn fast_take_decision(&self, entry: Item<D>, now: Tick) -> Acquire<Item<D>> {
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
    fn needs_validation(&self, entry: &Entry<D>, now: Tick) -> bool {
        entry.parked_at.as_nanos() <= self.suspect_before.load(Ordering::Relaxed)
            || now.since(entry.parked_at).as_nanos() as u64
                > self.validate_after.load(Ordering::Relaxed)
    }

    /// `open` took the fast slot's connection (already counted in use). `None`: it was dead
    /// and is closed; the caller goes the locked way.
    #[inline]
    fn open_from_fast(
        &'static self,
        entry: Item<D>,
        now: Tick,
        at: &'static Location<'static>,
    ) -> Option<Conn> {
        if self.stack_empty.load(Ordering::Relaxed)
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

    /// Parks a released (or displaced) entry through the lock: onto the stack, or to a waiter.
    fn park_locked(&self, entry: Item<D>) {
        let (lease, parked_at) = (entry.lease, entry.parked_at);
        let released = self.locked(|s| s.release(entry, lease, parked_at));
        if let Released::Close(entry) = released {
            drop(entry);
            self.count_closed(false);
        }
    }

    fn timeout_error(&self, state: &State<Item<D>>, waited: Duration, held: usize) -> Error {
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
    fn revive(&self, mut entry: Item<D>, validate: bool) -> Option<Item<D>> {
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
    fn lease_out(
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
    fn connect_reserved(&'static self, at: &'static Location<'static>) -> Result<Conn, Error> {
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
    fn connect(&self) -> Result<D::Conn, DriverError> {
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
    fn park(&self, entry: Item<D>) {
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

    /// Moves the fast slot's connection onto the stack, so the reaper and shutdown see it.
    fn flush_fast(&self) {
        if let Some(entry) = self.fast.take() {
            self.park_locked(entry);
        }
    }

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
    fn park_fresh(&self, conn: D::Conn, mode: ResetMode) -> Option<Item<D>> {
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
    fn request_sweep(&self) {
        self.sweep_requested.store(true, Ordering::Release);
        self.reaper.wake();
    }

    /// One reaper sweep: idle expiry, then liveness checks one at a time, then a prime if the
    /// pool emptied. Called only on the reaper thread.
    fn sweep(&'static self) {
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

impl<D: Driver> AnyPool for KeyPool<D> {
    fn open(&'static self, at: &'static Location<'static>) -> Result<Conn, Error> {
        self.open_conn(at)
    }

    fn configure(&self, settings: Settings, explicit: bool) {
        let mut state = lock(&self.state);
        if explicit {
            self.explicit.store(true, Ordering::Relaxed);
        } else if self.explicit.load(Ordering::Relaxed) {
            return;
        }
        self.rollback_only.store(
            settings.reset_mode == ResetMode::RollbackOnly,
            Ordering::Relaxed,
        );
        self.validate_after
            .store(settings.validate_after.as_nanos() as u64, Ordering::Relaxed);
        state.reconfigure(settings);
        self.unlock_and_wake(state);
    }

    fn stats(&self) -> Stats {
        let mut counts = lock(&self.state).counts();
        if self.fast.is_occupied() && counts.in_use > 0 {
            // The fast slot's connection is counted in use by the state, but it is parked.
            counts.in_use -= 1;
            counts.idle += 1;
        }
        let mut stats = Stats {
            driver: self.driver.name().to_owned(),
            pool: self.args.redacted(),
            idle: counts.idle,
            in_use: counts.in_use,
            opening: counts.opening,
            waiting: counts.waiting,
            max_open: counts.max_open,
            ..Stats::default()
        };
        self.counters.fill(&mut stats);
        stats
    }

    fn reap(&'static self, now: Tick) -> Duration {
        let forced = self.sweep_requested.swap(false, Ordering::AcqRel);
        let interval = self.setting(|s| s.reap_interval);
        let mut next = lock(&self.next_reap);
        if !forced && now < *next {
            return next.since(now).min(interval);
        }
        *next = now + interval;
        drop(next);
        self.sweep();
        interval
    }

    fn shutdown(&self) {
        // Sequentially consistent: pairs with `park`'s re-check after filling the fast slot.
        self.closed.store(true, Ordering::SeqCst);
        let parked = self.locked(|s| s.close());
        // Released into the fast slot before `closed` was seen: closed through the lock.
        self.flush_fast();
        let closed = parked.len();
        drop(parked);
        for _ in 0..closed {
            Counters::bump(&self.counters.closed);
        }
        self.primer.stop();
        tracing::info!(pool = %self.label, closed, "pool shut down");
    }
}

#[cfg(test)]
mod tests {
    use std::any::Any;
    use std::panic::Location;

    use super::*;
    use crate::reaper::Reaper;
    use crate::{Rows, Value};

    /// The smallest driver: connections are numbers.
    struct Numbers;
    struct Number(u32);

    impl Connection for Number {
        fn execute(&mut self, _: &str, _: &[Value]) -> Result<u64, DriverError> {
            Ok(0)
        }
        fn query(&mut self, _: &str, _: &[Value]) -> Result<Rows, DriverError> {
            Ok(Rows::default())
        }
        fn is_broken(&self) -> bool {
            false
        }
        fn native(&self) -> &dyn Any {
            self
        }
        fn native_mut(&mut self) -> &mut dyn Any {
            self
        }
        fn native_type_name(&self) -> &'static str {
            "Number"
        }
    }

    impl Driver for Numbers {
        type Conn = Number;
        type Handle = Number;
        fn name(&self) -> &str {
            "numbers"
        }
        fn connect(&self, _: &ConnArgs, _: Duration) -> Result<Number, DriverError> {
            Ok(Number(7))
        }
        fn detach(&self, conn: Number, _: ResetMode) -> Result<Number, DriverError> {
            Ok(conn)
        }
        fn attach(&self, handle: Number) -> Result<Number, DriverError> {
            Ok(handle)
        }
        fn connected(&self, _: &mut Number, _: Duration) -> bool {
            true
        }
    }

    #[test]
    fn a_panic_while_holding_the_state_lock_does_not_take_the_pool_down() {
        let reaper = Reaper::start(Vec::new);
        let pool = KeyPool::new(
            Arc::new(Numbers),
            ConnArgs::default(),
            Settings::default(),
            true,
            reaper.wake_handle(),
        );
        let at = Location::caller();
        pool.open_conn(at).unwrap().release().unwrap();
        let _ = std::thread::spawn(move || {
            let _guard = lock(&pool.state);
            panic!("panic while holding the pool's state lock");
        })
        .join();
        let conn = pool.open_conn(at).unwrap();
        assert_eq!(conn.native::<Number>().unwrap().0, 7);
        conn.release().unwrap();
        assert_eq!(pool.stats().idle, 1);
        reaper.stop();
    }
}
