//! `KeyPool`: the pool of one driver + connection-arguments key.
//!
//! It does every driver call of the key (connect, check, attach, detach, close) around the
//! decisions of its concurrent core (`crate::core::KeyCore`), which owns all shared state. No
//! lock is ever held here: the core is asked, the I/O is done, the core is told.
//!
//! `open.rs`, `release.rs` and `background.rs` hold the three paths; `entry.rs` the boxed
//! connection they move; this file the pool itself and its registry-facing `AnyPool` surface.

mod background;
mod entry;
mod open;
mod release;

use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Instant, Tick};
use crate::closer::Closer;
use crate::conn::Conn;
use crate::core::{Dropped, KeyCore};
use crate::erased::{AnyDriver, AnyPool};
use crate::error::Error;
use crate::guard::guarded;
use crate::metrics::PoolMetrics;
use crate::primer::{Primed, Primer};
use crate::reaper::{Reaped, ReaperWake};
use crate::resetter::Resetter;
use crate::settings::Settings;
use crate::stats::{Counters, Stats};
use crate::sync::{lock, AtomicBool, Mutex, Ordering};
use entry::Entry;
use pool_driver::{ConnArgs, Driver, DriverError};

type Item<D> = Box<Entry<D>>;

/// The pool of one key.
pub(crate) struct KeyPool<D: Driver> {
    driver: Arc<D>,
    args: ConnArgs,
    /// Every piece of shared state: the locked state, the fast slot, the mirrors, counters.
    core: KeyCore<Entry<D>>,
    /// `Driver::can_detach`, asked once (guarded): false means nothing is ever parked.
    parks: bool,
    /// `open` found a dead connection: the reaper should check the rest now.
    sweep_requested: AtomicBool,
    /// The warning that this driver cannot bound statements was logged (once per pool).
    warned_unbounded: AtomicBool,
    /// When the reaper should next look at this pool. Touched only by the reaper thread.
    next_reap: Mutex<Tick>,
    primer: Primer,
    /// Closes dead connections off the caller's (and the reaper's) thread.
    closer: Closer,
    /// Resets released connections off the caller's thread.
    resetter: Resetter<Item<D>>,
    reaper: ReaperWake,
    /// The acquire and reset histograms (feature `metrics`; nothing without it).
    metrics: PoolMetrics,
}

impl<D: Driver> KeyPool<D> {
    pub(crate) fn new(
        driver: Arc<D>,
        args: ConnArgs,
        settings: Settings,
        parks: bool,
        explicit: bool,
        reaper: ReaperWake,
    ) -> &'static Self {
        let redacted = args.redacted();
        let label = format!("{} {redacted}", driver.name());
        let metrics = PoolMetrics::new(driver.name(), &redacted);
        // Pools live as long as the process (see ARCHITECTURE.md, "Lifetimes"): leasing a
        // connection then needs no reference count, which keeps two atomic operations off
        // every open/release.
        let core = KeyCore::new(label, settings.clone(), parks);
        if explicit {
            core.configure(settings.clone(), true);
        }
        Box::leak(Box::new(Self {
            next_reap: Mutex::new(Tick::now() + settings.sweep_interval()),
            core,
            parks,
            driver,
            args,
            sweep_requested: AtomicBool::new(false),
            warned_unbounded: AtomicBool::new(false),
            primer: Primer::default(),
            closer: Closer::default(),
            resetter: Resetter::default(),
            reaper,
            metrics,
        }))
    }

    pub(crate) fn label(&self) -> &str {
        self.core.label()
    }

    /// Counts a statement that ran past its deadline.
    pub(crate) fn count_statement_timeout(&self) {
        Counters::bump(&self.core.counters.statement_timeouts);
    }

    /// Logs, once for this pool, that its driver ignores `statement_timeout`.
    fn warn_unbounded_statements(&self) {
        if !self.warned_unbounded.swap(true, Ordering::Relaxed) {
            crate::guard::log(|| {
                tracing::warn!(
                    pool = self.label(),
                    "this driver cannot bound statements: statement_timeout has no effect here"
                );
            });
        }
    }

    /// Identifies this pool in the per-thread held counts.
    fn id(&self) -> usize {
        self as *const Self as usize
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

    /// Checks a parked connection with `connected`, guarded: `None` if it is alive, else
    /// `Dead`, or `Silent` when the check used up most of `timeout` (the network may have gone
    /// quiet, so the caller should not check the other parked connections one by one).
    fn check(&self, handle: &mut D::Handle, timeout: Duration) -> Option<Dropped> {
        let started = Instant::now();
        let alive =
            guarded("connected", || Ok(self.driver.connected(handle, timeout))).unwrap_or(false);
        match (alive, started.elapsed() >= timeout / 2) {
            (true, _) => None,
            (false, true) => Some(Dropped::Silent),
            (false, false) => Some(Dropped::Dead),
        }
    }

    /// Asks the primer thread for one more parked connection.
    fn wake_primer(&'static self) {
        self.primer.wake(self);
    }
}

impl<D: Driver> Primed for KeyPool<D> {
    fn prime_once(&self) -> crate::primer::PrimeOutcome {
        KeyPool::prime_once(self)
    }

    fn backoff_max(&self) -> Duration {
        self.core.setting(|s| s.primer_backoff_max)
    }

    fn prime_abandoned(&self) {
        self.core.prime_abandoned();
    }
}

impl<D: Driver> AnyDriver for Arc<D> {
    fn name(&self) -> &str {
        D::name(self)
    }

    fn parse(&self, args: &str) -> Result<ConnArgs, DriverError> {
        self.parse_args(args)
    }

    fn parks(&self) -> bool {
        guarded("can_detach", || Ok(self.can_detach())).unwrap_or(false)
    }

    fn new_pool(
        &self,
        args: ConnArgs,
        settings: Settings,
        parks: bool,
        explicit: bool,
        reaper: ReaperWake,
    ) -> &'static dyn AnyPool {
        KeyPool::new(Arc::clone(self), args, settings, parks, explicit, reaper)
    }
}

impl<D: Driver> Reaped for KeyPool<D> {
    fn reap(&'static self, now: Tick) -> Duration {
        let forced = self.sweep_requested.swap(false, Ordering::AcqRel);
        let interval = self.core.setting(Settings::sweep_interval);
        let mut next = lock(&self.next_reap);
        if !forced && now < *next {
            return next.since(now).min(interval);
        }
        *next = now + interval;
        drop(next);
        self.sweep();
        self.metrics.publish(|| AnyPool::stats(self));
        interval
    }
}

impl<D: Driver> AnyPool for KeyPool<D> {
    fn open(&'static self, at: &'static Location<'static>) -> Result<Conn, Error> {
        self.open_conn(at)
    }

    fn configure(&self, settings: Settings, explicit: bool) {
        if !self.core.configure(settings, explicit) {
            return;
        }
        // The reaper's schedule follows the new settings now, not after the old interval: the
        // registry wakes the reaper after every configure, and this makes it sweep this pool
        // (which sets the next sweep from the new `reap_interval`).
        self.sweep_requested.store(true, Ordering::Release);
    }

    fn stats(&self) -> Stats {
        let counts = self.core.counts();
        let mut stats = Stats {
            driver: self.driver.name().to_owned(),
            pool: self.args.redacted(),
            idle: counts.idle,
            in_use: counts.in_use,
            resetting: counts.resetting,
            opening: counts.opening,
            waiting: counts.waiting,
            max_open: counts.max_open,
            ..Stats::default()
        };
        self.core.counters.fill(&mut stats);
        stats
    }

    fn reaped(&'static self) -> &'static dyn Reaped {
        self
    }

    #[cfg(pool_model)]
    fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    #[cfg(pool_model)]
    fn quiescence_violation(&self) -> Option<String> {
        self.core.quiescence_violation()
    }

    fn shutdown(&self) {
        let closed = self.core.shutdown();
        self.primer.stop();
        self.resetter.stop();
        self.closer.stop();
        // Caught: `shutdown` goes on to the next pool whatever a logging layer does.
        crate::guard::log(|| tracing::info!(pool = %self.label(), closed, "pool shut down"));
    }
}

#[cfg(all(test, not(pool_model)))]
mod tests {
    use std::any::Any;
    use std::panic::Location;

    use super::*;
    use crate::reaper::Reaper;
    use pool_driver::{Connection, ResetMode, Rows, Value};

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
        fn needs_reset(&self) -> bool {
            false
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
    fn lifetimes_are_cut_by_up_to_five_percent_and_spread() {
        // Read before the entries are born: each one's age at `now + d` is at most `d`.
        let now = Tick::now();
        let entries: Vec<_> = (0..200)
            .map(|i| Entry::<Numbers>::parked(Number(i)))
            .collect();
        let max = 1_000_000_000_u64; // 1 s
        let mut retire_at = std::collections::BTreeSet::new();
        for entry in &entries {
            // Younger than 95 % of the lifetime: never past it; well past all of it: always.
            assert!(!entry.past_lifetime(max, now + Duration::from_millis(949)));
            assert!(entry.past_lifetime(max, now + Duration::from_millis(1010)));
            assert!(!entry.past_lifetime(u64::MAX, now + Duration::from_secs(3600)));
            let first_past =
                (950..=1010).find(|ms| entry.past_lifetime(max, now + Duration::from_millis(*ms)));
            retire_at.insert(first_past);
        }
        assert!(retire_at.len() > 10, "lifetimes spread: {retire_at:?}");
    }

    #[test]
    fn a_panic_while_holding_the_state_lock_does_not_take_the_pool_down() {
        let reaper = Reaper::start(Vec::new);
        let pool = KeyPool::new(
            Arc::new(Numbers),
            ConnArgs::default(),
            Settings::default(),
            true,
            true,
            reaper.wake_handle(),
        );
        let at = Location::caller();
        pool.open_conn(at).unwrap().release().unwrap();
        let _ = std::thread::spawn(move || {
            pool.core.panic_under_lock();
        })
        .join();
        let conn = pool.open_conn(at).unwrap();
        assert_eq!(conn.native::<Number>().unwrap().0, 7);
        conn.release().unwrap();
        assert_eq!(pool.stats().idle, 1);
        reaper.stop();
    }
}
