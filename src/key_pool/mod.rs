//! `KeyPool`: the pool of one driver + connection-arguments key.
//!
//! It drives the concurrent core (`crate::core`) and does all I/O outside the state lock:
//! every method locks, asks the core for a decision, unlocks, then connects, checks, attaches,
//! detaches or closes. Lock order: this pool's state, then a waiter's slot (inside the core).
//! No pool lock is ever held across a driver call or user code.
//!
//! `open.rs`, `release.rs` and `background.rs` hold the three paths; this file the pool's
//! state, its helpers and the registry-facing `AnyPool` surface.

mod background;
mod open;
mod release;

use crate::sync::{AtomicBool, AtomicU64, Ordering};
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Tick;
use crate::conn::Conn;
use crate::core::State;
use crate::entry::Entry;
use crate::erased::AnyPool;
use crate::fast_slot::FastSlot;
use crate::primer::Primer;
use crate::reaper::ReaperWake;
use crate::settings::Settings;
use crate::stats::{Counters, Stats};
use crate::sync::{lock, Mutex, MutexGuard};
use crate::{ConnArgs, Driver, DriverError, Error, ResetMode};

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
    /// Mirror of "the primer could be asked for one more" (no prime pending, room, open).
    prime_possible: AtomicBool,
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
            prime_possible: AtomicBool::new(true),
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
        let could_prime = state.could_prime();
        if self.prime_possible.load(Ordering::Relaxed) != could_prime {
            self.prime_possible.store(could_prime, Ordering::Relaxed);
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
    use crate::{Connection, Rows, Value};

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
