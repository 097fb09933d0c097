//! The concurrent core of one key: every piece of state that threads share, in one module.
//!
//! `KeyCore` owns the pool's locked [`State`], the fast slot (the most recently released
//! connection, outside the lock), the atomic mirrors of the state that the lock-free paths read,
//! the waiters and the counters. Nothing outside this module touches any of them, so this
//! module alone decides every interleaving question, and the model checker exercises it
//! whole (ARCHITECTURE.md, "Proving it"). The caller (`crate::key_pool`) does the driver I/O
//! around it: it asks the core for a decision, acts outside every lock, and reports back.
//!
//! # Rules
//!
//! * **One lock.** The state lock, then (inside the state) a waiter's slot lock. No driver call,
//!   connect, close, sleep, user code or wake-up system call happens under it.
//! * **One place publishes.** Every unlock goes through `unlock`, which lets the state restore
//!   its invariants (`State::settle`: pass wake-ups on, turn free room into permits) and then
//!   writes the mirrors the lock-free paths read. No other code writes a mirror.
//! * **The fast slot pairing.** The connection in the fast slot stays counted in use, and the
//!   slot is used only while nobody waits and the pool is open. A releaser fills the slot and
//!   then re-reads `waiters_present` and `closed`; a caller about to wait publishes itself
//!   (enqueue, then `waiters_present` in `unlock`) and then takes the slot; shutdown publishes
//!   `closed` and then empties the slot. Each side does a sequentially consistent write and
//!   then a sequentially consistent read of the other's flag, so at least one of them sees the
//!   other: a release is never left in the slot while a waiter sleeps or after shutdown.
//! * **Closing happens outside the lock, through `guard::close`**: here for healthy ones
//!   (idle, aged, shut), on `crate::closer`'s helpers for dead ones (whose close may wait on a
//!   silent network). Room held by a connection being closed is freed only after the close
//!   (`State::closed`), or for a dead one after the closer's grace.

mod fast_slot;
mod reservation;
mod state;
#[cfg(all(test, not(pool_model)))]
mod state_machine;
mod waiter;

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{saturating_nanos, Deadline, Instant, Tick};
use crate::error::{Error, TimeoutDetail};
use crate::guard;
use crate::lease::{LeaseId, LeaseRecord};
use crate::settings::Settings;
use crate::stats::Counters;
use crate::sync::{lock, AtomicBool, AtomicU64, Mutex, MutexGuard, Ordering};
use crate::unsettled::Unsettled;
use fast_slot::FastSlot;
use pool_driver::ResetMode;
pub(crate) use reservation::Reservation;
use state::{Acquire, Decided, Released, Retried, State};
pub(crate) use state::{Checking, Counts, Dropped, PrimeStart, Taken};
use waiter::{Grant, Waiter};

/// What the core needs to know about a connection it parks: its lease slot, when it was
/// parked (for the fast slot's validation rule) and its release order (from
/// `KeyCore::release_order`, taken when its release began: where it belongs in the LIFO).
pub(crate) trait Parkable: Send + 'static {
    fn lease(&self) -> LeaseId;
    fn parked_at(&self) -> Tick;
    fn released(&self) -> u64;
}

/// What `open` gets from the core.
pub(crate) enum Got<T> {
    /// A parked connection, counted in use: check it if `validate`, wake the primer if `prime`.
    Parked(Taken<Box<T>>),
    /// Room to connect.
    Connect(Reservation),
}

/// One `open` call's progress across its decisions: the acquire deadline is set on its first
/// wait and kept if it has to wait again (after finding a dead connection).
pub(crate) struct Attempt<'a> {
    /// How many of this pool's connections the calling thread holds; read only when it is
    /// about to wait.
    held: &'a dyn Fn() -> usize,
    /// Wakes the primer (when the caller waits for a reset, the stack emptied).
    prime: &'a dyn Fn(),
    deadline: Option<Deadline>,
}

impl<'a> Attempt<'a> {
    pub(crate) fn new(held: &'a dyn Fn() -> usize, prime: &'a dyn Fn()) -> Self {
        Self {
            held,
            prime,
            deadline: None,
        }
    }
}

/// How long a caller waits for a connection being reset before it may connect instead (if
/// there is room): every waiter wakes this often and takes room `settle` held back for the
/// resets in flight (`State::impatient`), and does so at its deadline too. A reset takes one
/// round trip, so this only matters when one hangs (a silent network, where a connect would
/// most likely hang too) or the machine is starved; it is long enough that a loaded server's
/// resets still win over a cold connect, and bounded so a hung reset cannot hold a caller up to
/// its whole `acquire_timeout`.
pub(crate) const RESET_PATIENCE: Duration = Duration::from_secs(1);

/// The release order of a connection no user has released yet (a primed one): below every
/// release. The release counter starts above it.
pub(crate) const NEVER_RELEASED: u64 = 0;

/// All shared state of one key's pool.
pub(crate) struct KeyCore<T> {
    /// `driver redacted-args`: how errors and logs name this pool.
    label: String,
    state: Mutex<State<Box<T>>>,
    /// The most recently released connection, kept outside the lock.
    fast: FastSlot<T>,
    /// Mirror: some caller is queued (sequentially consistent: the fast slot pairing).
    waiters_present: AtomicBool,
    /// Mirror: the pool is shut (sequentially consistent: the fast slot pairing).
    closed: AtomicBool,
    /// Mirror: the locked stack is empty (the prime rule on the fast path).
    stack_empty: AtomicBool,
    /// Mirror: the primer could be asked for one more (no prime pending, room, open).
    prime_possible: AtomicBool,
    /// Mirror of the state's `suspect_before` (`Tick` nanoseconds).
    suspect_before: AtomicU64,
    /// Mirror of `settings.validate_after` in nanoseconds.
    validate_after: AtomicU64,
    /// Mirror of `settings.reset_mode == RollbackOnly`.
    rollback_only: AtomicBool,
    /// Mirror of `settings.max_lifetime` in nanoseconds (`u64::MAX`: none).
    max_lifetime: AtomicU64,
    /// Mirror of `settings.leak_threshold.is_some()`: capture backtraces at `open`.
    leak_detection: AtomicBool,
    /// Mirror of `settings.resets_in_background()`.
    background_reset: AtomicBool,
    /// Mirror of `settings.statement_timeout` in nanoseconds (`u64::MAX`: none).
    statement_timeout: AtomicU64,
    /// The release counter: each release takes the next number, its place in the LIFO order
    /// (`State`'s invariant 5).
    releases: AtomicU64,
    /// Mirror: the release order of the top of the locked stack (0: empty). Sequentially
    /// consistent, paired with the fast slot (see `park` and `push_by_order`).
    top_released: AtomicU64,
    pub(crate) counters: Counters,
}

impl<T: Parkable> KeyCore<T> {
    /// A core for a new pool; `parks` is false for a driver that cannot detach (nothing is
    /// then ever parked or primed).
    pub(crate) fn new(label: String, settings: Settings, parks: bool) -> Self {
        let core = Self {
            label,
            fast: FastSlot::default(),
            waiters_present: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            stack_empty: AtomicBool::new(true),
            prime_possible: AtomicBool::new(false),
            suspect_before: AtomicU64::new(0),
            validate_after: AtomicU64::new(0),
            rollback_only: AtomicBool::new(false),
            max_lifetime: AtomicU64::new(u64::MAX),
            leak_detection: AtomicBool::new(false),
            background_reset: AtomicBool::new(false),
            statement_timeout: AtomicU64::new(u64::MAX),
            releases: AtomicU64::new(NEVER_RELEASED + 1),
            top_released: AtomicU64::new(0),
            state: Mutex::new(State::new(settings, parks)),
            counters: Counters::default(),
        };
        core.locked(|_| ());
        core
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Runs `change` under the state lock, then unlocks through `unlock`.
    fn locked<R>(&self, change: impl FnOnce(&mut State<Box<T>>) -> R) -> R {
        let mut state = lock(&self.state);
        let out = change(&mut state);
        self.unlock(state);
        out
    }

    /// The one way the state lock is released: restores the state's invariants, publishes the
    /// mirrors, unlocks, then notifies the waiters granted something under the lock.
    fn unlock(&self, mut state: MutexGuard<'_, State<Box<T>>>) {
        let mirrors = state.settle();
        #[cfg(pool_model)]
        if let Some(broken) = state.duty_violation() {
            crate::violations::report(format!("{}: {broken}", self.label));
        }
        if self.waiters_present.load(Ordering::Relaxed) != mirrors.waiting {
            self.waiters_present
                .store(mirrors.waiting, Ordering::SeqCst);
        }
        if self.closed.load(Ordering::Relaxed) != mirrors.closed {
            self.closed.store(mirrors.closed, Ordering::SeqCst);
        }
        publish(&self.stack_empty, mirrors.stack_empty);
        publish(&self.prime_possible, mirrors.could_prime);
        publish_u64(&self.suspect_before, mirrors.suspect_before.as_nanos());
        if self.top_released.load(Ordering::Relaxed) != mirrors.top_released {
            self.top_released
                .store(mirrors.top_released, Ordering::SeqCst);
        }
        let settings = &state.settings;
        publish_u64(
            &self.validate_after,
            saturating_nanos(settings.validate_after),
        );
        publish(
            &self.rollback_only,
            settings.reset_mode == ResetMode::RollbackOnly,
        );
        publish_u64(
            &self.max_lifetime,
            settings.max_lifetime.map_or(u64::MAX, saturating_nanos),
        );
        publish(&self.leak_detection, settings.leak_threshold.is_some());
        publish(&self.background_reset, settings.resets_in_background());
        publish_u64(
            &self.statement_timeout,
            settings
                .statement_timeout
                .map_or(u64::MAX, saturating_nanos),
        );
        if !state.has_wakes() {
            return;
        }
        let wakes = state.take_wakes();
        drop(state);
        for waiter in wakes {
            waiter.notify();
        }
    }

    // ---- open ---------------------------------------------------------------------------

    /// A connection for `open`: the fast slot, else the locked decision, waiting at the limit
    /// up to `acquire_timeout`.
    #[inline]
    pub(crate) fn open(&self, attempt: &mut Attempt<'_>, now: Tick) -> Result<Got<T>, Error> {
        if let Some(item) = self.fast.take() {
            if self.closed.load(Ordering::SeqCst) {
                // Shutdown began after this connection was parked: close it, like the rest.
                self.park_locked(item);
                return Err(Error::ShutDown);
            }
            let prime = self.stack_empty.load(Ordering::Relaxed)
                && self.prime_possible.load(Ordering::Relaxed)
                && self.locked(|s| s.want_prime_if_stack_empty());
            return Ok(Got::Parked(self.fast_taken(item, now, prime)));
        }
        let state = lock(&self.state);
        self.decide(state, |s| s.acquire(now), attempt, now)
    }

    /// `open` found the connection it took dead or silent (see `State::dropped`): it stays
    /// counted until the caller's closer calls `closed_one`. Returns the parked connections
    /// evicted with it (silent, no room), each counted the same way, for the caller to close.
    #[must_use = "evicted connections must be closed, then `closed_one` called for each"]
    pub(crate) fn drop_dead(&self, lease: LeaseId, why: Dropped) -> Vec<Box<T>> {
        let evicted = self.locked(|s| s.dropped(lease, Tick::now(), why));
        Counters::add(&self.counters.closed, 1 + evicted.len());
        Counters::bump(&self.counters.dropped_dead);
        evicted
    }

    /// `open` closed the connection it took for its age: decides again for the caller, in the
    /// same critical section, so the room it freed is the caller's, not a waiter's.
    pub(crate) fn open_after_aged(
        &self,
        lease: LeaseId,
        attempt: &mut Attempt<'_>,
        now: Tick,
    ) -> Result<Got<T>, Error> {
        Counters::bump(&self.counters.closed);
        Counters::bump(&self.counters.rotated);
        let state = lock(&self.state);
        self.decide(
            state,
            |s| {
                let none = s.dropped(lease, now, Dropped::Aged);
                debug_assert!(none.is_empty());
                s.retry_after_dropped(now, Dropped::Aged)
            },
            attempt,
            now,
        )
    }

    /// Decides again for a caller whose taken connection was dropped, ahead of the queue
    /// (see `State::retry_after_dropped`).
    pub(crate) fn open_again(
        &self,
        why: Dropped,
        attempt: &mut Attempt<'_>,
        now: Tick,
    ) -> Result<Got<T>, Error> {
        let state = lock(&self.state);
        self.decide(state, |s| s.retry_after_dropped(now, why), attempt, now)
    }

    /// The fast slot's connection as a parked connection taken by `open`.
    fn fast_taken(&self, item: Box<T>, now: Tick, prime: bool) -> Taken<Box<T>> {
        let parked_at = item.parked_at();
        let validate = parked_at.as_nanos() <= self.suspect_before.load(Ordering::Relaxed)
            || saturating_nanos(now.since(parked_at)) > self.validate_after.load(Ordering::Relaxed);
        Taken {
            lease: item.lease(),
            item,
            validate,
            prime,
        }
    }

    /// Runs `decide` under the lock already held; if it says wait, refuses a thread that would
    /// wait on itself, else queues a waiter, unlocks and waits for a grant.
    fn decide(
        &self,
        mut state: MutexGuard<'_, State<Box<T>>>,
        decide: impl FnOnce(&mut State<Box<T>>) -> Acquire<Box<T>>,
        attempt: &mut Attempt<'_>,
        now: Tick,
    ) -> Result<Got<T>, Error> {
        let decided = match decide(&mut state) {
            Acquire::Take(taken) => Decided::Take(taken),
            Acquire::Connect(reservation) => Decided::Connect(reservation),
            Acquire::Closed => Decided::Closed,
            Acquire::Wait => {
                return self.wait(state, attempt, now, false);
            }
            Acquire::WaitForReset { prime } => {
                return self.wait(state, attempt, now, prime);
            }
        };
        self.unlock(state);
        self.answer(decided)
    }

    fn answer(&self, decided: Decided<Box<T>>) -> Result<Got<T>, Error> {
        match decided {
            Decided::Take(taken) => Ok(Got::Parked(taken)),
            Decided::Connect(reservation) => Ok(Got::Connect(reservation)),
            Decided::Closed => Err(Error::ShutDown),
        }
    }

    /// Queues the caller at the limit, or behind the resets in flight (`prime`: the stack
    /// emptied, wake the primer once queued), and waits for its turn.
    fn wait(
        &self,
        mut state: MutexGuard<'_, State<Box<T>>>,
        attempt: &mut Attempt<'_>,
        now: Tick,
        prime: bool,
    ) -> Result<Got<T>, Error> {
        // Only a caller about to wait needs its own count of held connections.
        let held = (attempt.held)();
        if state.would_deadlock(held) {
            let max_open = state.settings.max_open;
            self.unlock(state);
            return Err(Error::WouldDeadlock {
                pool: self.label.clone(),
                held_by_this_thread: held,
                max_open,
            });
        }
        if let Some(waiting) = state.queue_full() {
            let max_waiting = state.settings.max_waiting.unwrap_or(waiting);
            self.unlock(state);
            Counters::bump(&self.counters.shed);
            return Err(Error::TooManyWaiting {
                pool: self.label.clone(),
                waiting,
                max_waiting,
            });
        }
        // The deadline is computed (saturating) before the waiter is queued, and the primer's
        // wake never unwinds: nothing between queueing and waiting should fail. `queued`
        // makes sure anyway that a waiter whose `open` unwinds leaves the queue and gives back
        // what it was granted: a ghost waiter would be handed connections nobody takes.
        let timeout = state.settings.acquire_timeout;
        let deadline = *attempt
            .deadline
            .get_or_insert_with(|| Deadline::after(timeout));
        let waiter = Arc::new(Waiter::new(now));
        state.enqueue(Arc::clone(&waiter));
        self.unlock(state);
        let queued = Unsettled::new(Arc::clone(&waiter), |waiter| self.leave_queue(&waiter));
        if prime {
            (attempt.prime)();
        }
        // From here on this function answers for the waiter itself.
        queued.settle();
        // Waiters are now published: a connection released into the fast slot just before
        // that would otherwise sit there unseen (the fast slot pairing).
        if let Some(item) = self.fast.take() {
            let cancelled = self.locked(|s| s.cancel_wait(&waiter));
            return match cancelled {
                None => Ok(Got::Parked(self.fast_taken(item, Tick::now(), false))),
                Some(decided) => {
                    self.park_locked(item);
                    // A clean release may have filled the slot meanwhile (see `flush_fast`).
                    self.flush_fast();
                    self.answer(decided)
                }
            };
        }
        let started = Instant::now();
        Counters::bump(&self.counters.waits);
        // Every waiter also wakes on its own every RESET_PATIENCE: room `settle` held back for
        // a reset in flight (which may hang) is then its (`State::impatient`).
        let mut patience = Deadline::after(RESET_PATIENCE);
        let result = loop {
            match waiter.wait_until(patience.earlier(deadline)) {
                Some(Grant::Retry) => match self.locked(|s| s.retry(&waiter, Tick::now())) {
                    Retried::Decided(decided) => break self.answer(decided),
                    Retried::StillWaiting => {}
                },
                Some(grant) => {
                    if let Some(decided) = State::decided(grant) {
                        break self.answer(decided);
                    }
                }
                None => {
                    let timed_out = deadline.left() == Some(Duration::ZERO);
                    let mut state = lock(&self.state);
                    // A grant that raced the wake-up, or room held back for a late reset, is
                    // this caller's answer, also at its deadline.
                    if let Retried::Decided(decided) = state.impatient(&waiter, Tick::now()) {
                        self.unlock(state);
                        break self.answer(decided);
                    }
                    if !timed_out {
                        self.unlock(state);
                        patience = Deadline::after(RESET_PATIENCE);
                        continue;
                    }
                    // Still queued, with nothing granted: leave the queue.
                    if let Some(decided) = state.cancel_wait(&waiter) {
                        self.unlock(state);
                        break self.answer(decided);
                    }
                    let error = self.timeout_error(&state, started.elapsed(), held);
                    self.unlock(state);
                    Counters::bump(&self.counters.timeouts);
                    tracing::warn!(%error, "open timed out at the limit");
                    break Err(error);
                }
            }
        };
        self.counters.add_wait(started.elapsed());
        result
    }

    fn timeout_error(&self, state: &State<Box<T>>, waited: Duration, held: usize) -> Error {
        let counts = state.counts();
        Error::Timeout(Box::new(TimeoutDetail {
            pool: self.label.clone(),
            waited,
            // A connection being reset is not free yet: it was in use a moment ago.
            in_use: counts.in_use + counts.resetting,
            idle: counts.idle,
            opening: counts.opening,
            waiting: counts.waiting,
            max_open: counts.max_open,
            longest_held: state.longest_held(Tick::now()),
            held_by_this_thread: held,
            last_connect_error: state.last_connect_error.clone(),
        }))
    }

    /// A reserved connect succeeded: the new connection is in use. `None` if the pool shut
    /// meanwhile: the caller closes it and reports `ShutDown`.
    pub(crate) fn connected(
        &self,
        reservation: Reservation,
        record: Arc<LeaseRecord>,
    ) -> Option<LeaseId> {
        self.locked(|s| s.connected(reservation, record))
    }

    /// A reserved connect failed: its room goes back (to the front waiter, if any).
    pub(crate) fn connect_failed(&self, reservation: Reservation, error: String) {
        self.locked(|s| s.connect_failed(reservation, error));
    }

    // ---- release ------------------------------------------------------------------------

    /// Parks a released, reset connection: into the fast slot when nobody waits (no lock),
    /// else through the lock. See the module doc for why the re-check is enough.
    ///
    /// LIFO by release order: the slot is the top only while its connection is newer than the
    /// stack's top. A reset that finishes after a later release parked in the slot puts an
    /// older connection on the stack; `push_by_order` then moves the slot's one down to its
    /// place. The other way round (the slot filled with an older connection right after a
    /// newer one reached the stack) is caught here: both sides write, then read the other's
    /// (sequentially consistent), so at least one of them sees the other.
    #[inline]
    pub(crate) fn park(&self, item: Box<T>) {
        if self.waiters_present.load(Ordering::SeqCst) {
            self.park_locked(item);
            return;
        }
        let released = item.released();
        if let Some(older) = self.fast.put(item) {
            // The slot held an earlier release: it goes onto the stack, under the newer one.
            self.park_locked(older);
        }
        if self.waiters_present.load(Ordering::SeqCst)
            || self.closed.load(Ordering::SeqCst)
            || self.top_released.load(Ordering::SeqCst) > released
        {
            // A waiter queued (or shutdown began) meanwhile: serve it through the lock. Or a
            // newer release is on the stack: the slot's one goes below it.
            self.flush_fast();
        }
    }

    /// Parks through the lock: onto the stack by its release order, or to the front waiter;
    /// closed if shut.
    fn park_locked(&self, item: Box<T>) {
        let lease = item.lease();
        if let Some(item) = self.locked(|s| released_to(s, item, lease)) {
            self.close(item, false);
        }
    }

    /// A waiter whose `open` unwound before it waited (see `wait`) leaves the queue, and what
    /// it was granted meanwhile goes back.
    fn leave_queue(&self, waiter: &Arc<Waiter<Box<T>>>) {
        match self.locked(|s| s.cancel_wait(waiter)) {
            Some(Decided::Take(taken)) => {
                // Its lease as the state handed it out: a primed connection's entry does not
                // know its lease until it is first leased out.
                let lease = taken.lease;
                if let Some(item) = self.locked(|s| released_to(s, taken.item, lease)) {
                    self.close(item, false);
                }
            }
            Some(Decided::Connect(reservation)) => {
                self.connect_failed(reservation, "the waiting open unwound".to_owned())
            }
            Some(Decided::Closed) | None => {}
        }
    }

    /// Runs `push`, which puts something on the stack by its release order (a finished reset,
    /// a primed or checked connection), in one critical section with moving the fast slot's
    /// connection to its place on the stack: it may be older than what is pushed, and `open`
    /// takes the slot first. Each time the stack's top may have changed, the new top is
    /// published (`top_released`) before the slot is looked at again, so a clean release
    /// racing this either is taken here or reads the final top and moves itself (the pairing
    /// in `park`). So when the push settles (a reset's `resetting` count drops) the order
    /// already holds. Each pass moves one connection, which then stays on the stack while the
    /// lock is held: at most `max_open` passes.
    fn push_by_order<R>(&self, push: impl FnOnce(&mut State<Box<T>>) -> R) -> R {
        let mut state = lock(&self.state);
        let pushed = push(&mut state);
        let mut shut = Vec::new();
        loop {
            self.top_released
                .store(state.top_released(), Ordering::SeqCst);
            let Some(item) = self.fast.take() else { break };
            let lease = item.lease();
            shut.extend(released_to(&mut state, item, lease));
        }
        self.unlock(state);
        for item in shut {
            self.close(item, false);
        }
        pushed
    }

    /// The next number of the release counter: a release's place in the LIFO order, taken
    /// when the release begins (`KeyPool::release`), before its reset, however long that takes.
    #[inline]
    pub(crate) fn release_order(&self) -> u64 {
        self.releases.fetch_add(1, Ordering::Relaxed)
    }

    /// Moves the fast slot's connection onto the stack, so the reaper and shutdown see it.
    ///
    /// Until the slot is found empty: a clean release may fill it again while the previous one
    /// is parked, having read the stack's top from before that park (so it kept itself in the
    /// slot, older than the top it then missed). Each pass parks one released connection, and a
    /// release that fills the slot after a pass found it empty reads the new top.
    pub(crate) fn flush_fast(&self) {
        while let Some(item) = self.fast.take() {
            self.park_locked(item);
        }
    }

    /// A connection in use was closed by the caller (broken, failed reset, panicking holder,
    /// driver that cannot park, pool shut): its room is free. `dead` counts it as dropped
    /// dead and (with `suspect`) marks the parked ones for a check.
    pub(crate) fn discard(&self, lease: LeaseId, dead: bool, suspect: Option<Tick>) {
        self.count_closed(dead);
        self.locked(|s| s.discard(lease, suspect));
    }

    /// A released connection goes to be reset (see `State::begin_reset`).
    pub(crate) fn begin_reset(&self) {
        self.locked(|s| s.begin_reset());
    }

    /// Its reset succeeded: parked through the lock by its release order (or handed to a
    /// waiter); closed if shut.
    pub(crate) fn reset_done(&self, item: Box<T>) {
        let (lease, parked_at, released) = (item.lease(), item.parked_at(), item.released());
        let done = self.push_by_order(|s| s.reset_done(item, lease, parked_at, released));
        if let Released::Close(item) = done {
            self.close(item, false);
        }
    }

    /// Its reset failed and the caller closed it: its room is free (see `State::reset_failed`).
    pub(crate) fn reset_failed(&self, lease: LeaseId, dead: bool, suspect: Option<Tick>) {
        self.count_closed(dead);
        self.locked(|s| s.reset_failed(lease, suspect));
    }

    /// How `release` (and the primer, for a fresh connection) resets, without the lock.
    #[inline]
    pub(crate) fn reset_mode(&self) -> ResetMode {
        if self.rollback_only.load(Ordering::Relaxed) {
            ResetMode::RollbackOnly
        } else {
            ResetMode::Full
        }
    }

    /// Whether `release` hands resets to the resetter thread, without the lock.
    #[inline]
    pub(crate) fn background_reset(&self) -> bool {
        self.background_reset.load(Ordering::Relaxed)
    }

    /// `max_lifetime` in nanoseconds (`u64::MAX`: none), without the lock.
    #[inline]
    pub(crate) fn max_lifetime_nanos(&self) -> u64 {
        self.max_lifetime.load(Ordering::Relaxed)
    }

    /// The statement deadline every `open` gives its connection (`settings.statement_timeout`).
    #[inline]
    pub(crate) fn statement_timeout(&self) -> Option<Duration> {
        match self.statement_timeout.load(Ordering::Relaxed) {
            u64::MAX => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// Whether `open` should capture a backtrace for leak reports.
    #[inline]
    pub(crate) fn leak_detection(&self) -> bool {
        self.leak_detection.load(Ordering::Relaxed)
    }

    /// Leases held longer than `leak_threshold` and not reported yet (marked reported now).
    pub(crate) fn overdue_leases(&self, now: Tick) -> Vec<Arc<LeaseRecord>> {
        let state = lock(&self.state);
        let overdue = match state.settings.leak_threshold {
            Some(threshold) => state.overdue_leases(now, threshold),
            None => Vec::new(),
        };
        drop(state);
        overdue
    }

    /// A connection was closed for its age outside the core (on release): counts it, frees
    /// its room, and returns whether the primer should replace it (nothing is parked).
    pub(crate) fn rotated(&self, lease: LeaseId) -> bool {
        Counters::bump(&self.counters.closed);
        Counters::bump(&self.counters.rotated);
        self.locked(|s| {
            s.discard(lease, None);
            s.want_prime_if_stack_empty()
        })
    }

    /// Closes the parked connections `expired` says are past their lifetime; returns how many,
    /// and whether the primer should replace them (nothing is parked any more).
    pub(crate) fn rotate_parked(&self, expired: impl Fn(&T) -> bool) -> (usize, bool) {
        let taken = self.locked(|s| s.take_expired(|item| expired(item)));
        let rotated = self.close_taken(taken, &self.counters.rotated);
        if rotated == 0 {
            return (0, false);
        }
        let prime = self.locked(|s| {
            s.closed(rotated);
            s.want_prime_if_stack_empty()
        });
        (rotated, prime)
    }

    /// Whether the pool is shut (a hint for `release`; the state decides under the lock).
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    // ---- primer and reaper --------------------------------------------------------------

    /// The primer wants to connect.
    pub(crate) fn prime_begin(&self) -> PrimeStart {
        self.locked(|s| s.prime_begin())
    }

    /// The primer connected and detached `item`. `Some(more)`: parked (or handed to a
    /// waiter), and `more` says the pool is still below `min_idle`; `None`: the pool shut
    /// meanwhile and the connection was closed.
    pub(crate) fn prime_done(
        &self,
        reservation: Reservation,
        item: Box<T>,
        record: Arc<LeaseRecord>,
    ) -> Option<bool> {
        // Never released: older than every release, so it sits below the released ones.
        let done = self.push_by_order(|s| {
            s.prime_done(reservation, item, record, Tick::now(), NEVER_RELEASED)
        });
        match done {
            Released::Kept { more } => Some(more),
            Released::Close(item) => {
                self.close(item, false);
                None
            }
        }
    }

    /// No primer thread can run: the pending prime will never come (see `State::prime_abandoned`).
    pub(crate) fn prime_abandoned(&self) {
        self.locked(|s| s.prime_abandoned());
    }

    /// The primer's connect or detach failed.
    pub(crate) fn prime_failed(&self, reservation: Reservation, error: String) {
        self.locked(|s| s.prime_failed(reservation, error));
    }

    /// The reaper's rule: true if the pool is below `min_idle` open connections and the
    /// primer must be woken.
    pub(crate) fn want_prime_below_floor(&self) -> bool {
        self.locked(|s| s.want_prime_below_floor())
    }

    /// Closes parked connections idle past `idle_timeout` (never the last one); returns how
    /// many.
    pub(crate) fn expire_idle(&self, now: Tick) -> usize {
        let expired = self.locked(|s| {
            #[cfg(pool_model)]
            let (open_before, floor) = (s.open_count(), s.settings.min_idle.max(1));
            let expired = s.expire_idle(now);
            // The warm floor: expiry never takes the pool below `min_idle` open connections.
            #[cfg(pool_model)]
            if s.open_count() < open_before.min(floor) {
                crate::violations::report(format!(
                    "{}: idle expiry went from {open_before} open to {}, below min_idle {floor}",
                    self.label,
                    s.open_count()
                ));
            }
            expired
        });
        let reaped = self.close_taken(expired, &self.counters.reaped_idle);
        if reaped > 0 {
            self.locked(|s| s.closed(reaped));
        }
        reaped
    }

    /// The oldest parked connection due for a liveness check in this sweep, taken out.
    pub(crate) fn take_for_check(&self, sweep_start: Tick) -> Option<Checking<Box<T>>> {
        self.locked(|s| s.take_for_check(sweep_start, Tick::now()))
    }

    /// The check of `checked` finished: alive ones go back.
    /// A dead one is returned for the caller to close on the closer thread (its close may
    /// block on a silent network), counted as closing until `closed_one`.
    #[must_use = "a dead connection must be closed, then `closed_one` called"]
    pub(crate) fn check_done(&self, checked: Checking<Box<T>>, alive: bool) -> Option<Box<T>> {
        let dead = self.push_by_order(|s| s.check_done(checked, alive, Tick::now()))?;
        self.count_closed(!alive);
        Some(dead)
    }

    /// A connection counted as closing (handed to the closer) is closed, or the closer gave
    /// up waiting for it: its room is free.
    pub(crate) fn closed_one(&self) {
        self.locked(|s| s.closed(1));
    }

    /// A connection in use broke; the caller hands it to the closer, which calls `closed_one`
    /// when it is gone. Every parked connection becomes suspect.
    pub(crate) fn discard_closing(&self, lease: LeaseId) {
        self.count_closed(true);
        self.locked(|s| s.discard_closing(lease, Tick::now()));
    }

    /// Shuts the pool: fails the waiters, closes the parked connections (the fast slot's
    /// included); returns how many were closed. Held connections are closed when released.
    pub(crate) fn shutdown(&self) -> usize {
        // Publishes `closed` before emptying the fast slot (the fast slot pairing).
        let parked = self.locked(|s| s.close());
        let mut closed = parked.len();
        for item in parked {
            self.close(item, false);
        }
        if let Some(item) = self.fast.take() {
            closed += 1;
            self.park_locked(item);
        }
        closed
    }

    // ---- settings and stats -------------------------------------------------------------

    /// Applies `settings` (see `State::configure`); false if the defaults were refused
    /// because the key has settings of its own.
    pub(crate) fn configure(&self, settings: Settings, explicit: bool) -> bool {
        self.locked(|s| s.configure(settings, explicit))
    }

    /// Reads a setting under the lock.
    pub(crate) fn setting<R>(&self, read: impl FnOnce(&Settings) -> R) -> R {
        read(&lock(&self.state).settings)
    }

    /// The counts as users see them: the fast slot's connection is parked, not in use.
    pub(crate) fn counts(&self) -> Counts {
        let mut counts = lock(&self.state).counts();
        if self.fast.is_occupied() && counts.in_use > 0 {
            counts.in_use -= 1;
            counts.idle += 1;
        }
        counts
    }

    /// Closes parked connections the state took out for closing (still counted as closing:
    /// the caller frees their room with `State::closed` afterwards), counting each under
    /// `reason` too. Returns how many.
    fn close_taken(&self, taken: Vec<Box<T>>, reason: &AtomicU64) -> usize {
        let count = taken.len();
        for item in taken {
            self.close(item, false);
            Counters::bump(reason);
        }
        count
    }

    /// Closes a connection outside the lock, guarded, and counts it.
    fn close(&self, item: Box<T>, dead: bool) {
        guard::close(item);
        self.count_closed(dead);
    }

    /// Counts a closed connection in the stats (`dead`: also as dropped dead).
    pub(crate) fn count_closed(&self, dead: bool) {
        Counters::bump(&self.counters.closed);
        if dead {
            Counters::bump(&self.counters.dropped_dead);
        }
    }
}

#[cfg(pool_model)]
impl<T: Parkable> KeyCore<T> {
    /// What is wrong with this pool now that nothing is in flight (see
    /// `State::quiescence_violation`), or with a shut pool that still holds a connection in
    /// its fast slot.
    pub(crate) fn quiescence_violation(&self) -> Option<String> {
        let state = lock(&self.state);
        let broken = state.quiescence_violation();
        let total = state.total();
        let closed = self.closed.load(Ordering::SeqCst);
        drop(state);
        let broken = broken.or_else(|| {
            (closed && self.fast.is_occupied())
                .then(|| "a connection sits in the fast slot after shutdown".to_owned())
        });
        // The stats count every connection the pool opened and closed: with nothing in
        // flight, what they leave open is exactly what the pool holds (parked or in use).
        let broken = broken.or_else(|| {
            let opened = self.counters.opened.load(Ordering::Relaxed);
            let shut = self.counters.closed.load(Ordering::Relaxed);
            (opened.checked_sub(shut) != Some(total as u64)).then(|| {
                format!("the stats say {opened} opened and {shut} closed, the pool holds {total}")
            })
        });
        broken.map(|broken| format!("{}: {broken}", self.label))
    }
}

#[cfg(all(test, not(pool_model)))]
impl<T: Parkable> KeyCore<T> {
    /// Panics while holding the state lock (a test that the pool survives it).
    pub(crate) fn panic_under_lock(&self) {
        let _state = lock(&self.state);
        panic!("panic while holding the pool's state lock");
    }
}

/// Under the state lock: `item`, held in use under `lease`, goes back onto the stack by its
/// release order (or to a starving waiter); returned if the pool is shut, to be closed.
fn released_to<T: Parkable>(
    state: &mut State<Box<T>>,
    item: Box<T>,
    lease: LeaseId,
) -> Option<Box<T>> {
    let (parked_at, released) = (item.parked_at(), item.released());
    match state.release(item, lease, parked_at, released) {
        Released::Close(item) => Some(item),
        Released::Kept { .. } => None,
    }
}

fn publish(mirror: &AtomicBool, value: bool) {
    if mirror.load(Ordering::Relaxed) != value {
        mirror.store(value, Ordering::Relaxed);
    }
}

fn publish_u64(mirror: &AtomicU64, value: u64) {
    if mirror.load(Ordering::Relaxed) != value {
        mirror.store(value, Ordering::Relaxed);
    }
}
