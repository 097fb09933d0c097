//! A cheap monotonic clock for the hot path.
//!
//! `open` and `release` each read the clock once (to know how long a handle was parked, and
//! since when it is held). `Instant::now()` costs about 25 ns here; `CLOCK_MONOTONIC_COARSE`
//! is read from the vDSO in a few nanoseconds at a resolution of one scheduler tick (1–4 ms),
//! far finer than anything the pool times (validation window 500 ms, idle timeout 2 min).
//!
//! This module is the engine's one clock seam: every reading of time (`Tick::now` for the
//! coarse clock, `Instant::now` for wait deadlines) comes from here. Under the model checker
//! (`--cfg pool_model`) both read a virtual clock that only the checker's threads move (see
//! `model`), so time-dependent decisions (hand-off to a starving waiter, validation windows,
//! idle expiry, timeouts) are explored as deterministic schedules.

use std::time::Duration;

#[cfg(not(pool_model))]
pub(crate) use std::time::Instant;

/// Nanoseconds on the coarse monotonic clock. Only differences mean anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Tick(u64);

impl Tick {
    /// Now, on the coarse clock.
    #[cfg(pool_model)]
    pub(crate) fn now() -> Tick {
        model::now()
    }

    /// Now, on the coarse clock.
    #[cfg(not(pool_model))]
    #[inline]
    pub(crate) fn now() -> Tick {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes to it.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
        if rc != 0 {
            return Tick::fallback();
        }
        Tick((ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64)
    }

    /// `Instant`-based reading, for kernels without the coarse clock.
    #[cfg(not(pool_model))]
    #[cold]
    fn fallback() -> Tick {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        let start = *START.get_or_init(Instant::now);
        Tick(start.elapsed().as_nanos() as u64)
    }

    /// The reading as nanoseconds, for storing in an atomic.
    #[inline]
    pub(crate) fn as_nanos(self) -> u64 {
        self.0
    }

    /// A reading stored with `as_nanos`.
    #[inline]
    pub(crate) fn from_nanos(nanos: u64) -> Tick {
        Tick(nanos)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    #[inline]
    pub(crate) fn since(self, earlier: Tick) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Tick {
    type Output = Tick;

    fn add(self, d: Duration) -> Tick {
        Tick(self.0.saturating_add(saturating_nanos(d)))
    }
}

/// Nanoseconds in `d`, saturating at `u64::MAX` (about 584 years) instead of wrapping, for
/// settings stored in atomics: `Duration::MAX` must mean "very long", never "zero".
pub(crate) fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// When a wait must end. `None` inside means never: a timeout too long to represent
/// (`Duration::MAX`) waits until it is woken, instead of overflowing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// `timeout` from now, saturating to "never".
    pub(crate) fn after(timeout: Duration) -> Deadline {
        Deadline(Instant::now().checked_add(timeout))
    }

    /// Whichever of the two comes first.
    pub(crate) fn earlier(self, other: Deadline) -> Deadline {
        match (self.0, other.0) {
            (Some(a), Some(b)) => Deadline(Some(a.min(b))),
            (a, b) => Deadline(a.or(b)),
        }
    }

    /// Time left, `Duration::ZERO` once passed; `None` for a deadline that never comes.
    pub(crate) fn left(&self) -> Option<Duration> {
        self.0
            .map(|at| at.saturating_duration_since(Instant::now()))
    }
}

/// The virtual clock of the model checker: every checked execution gets its own (shuttle's
/// `lazy_static` is per execution, so executions of tests running in parallel never share
/// one), starting at the same point, so a schedule replays with the same times.
///
/// It moves in two ways. A checker thread moves it (`pool_model::model::advance`). And, once
/// a test has let time pass (`pool_model::model::let_time_pass`), time jumps from one deadline
/// to the next, as a paused test clock does: every timed wait of the engine, and every driver
/// call the model blocks on a silent network, records its thread's deadline; a thread still
/// waiting may, when the schedule so chooses, move the clock to the **earliest deadline any
/// thread has recorded**, never further. So a 1 s patience fires before a 30 s acquire
/// timeout, a watchdog's 1 s grace before a close that hangs for 10 s, and every deadline is
/// reached in a bounded number of steps.
///
/// Waits of [`UNTIMED`] or longer are not timers: they are the sleeps of a thread with
/// nothing to do (the reaper with no pool due, the closer's watchdog with nothing pending, a
/// waiter's longest single sleep), whose timing out changes nothing but the clock. In the
/// model they block until woken, so a test can tell a wait nobody ends (a reported deadlock)
/// from one a timer ends, and so they cannot make time leap past what the test is timing.
///
/// A thread's deadline stays recorded after its wait returns (until it waits again or the
/// clock passes it): a thread woken a moment ago may be about to wait again for the same
/// deadline, and time must not jump past it in between. A stale deadline only makes time
/// stop there on its way, which is harmless.
#[cfg(pool_model)]
pub(crate) mod model {
    use super::Tick;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    use std::sync::{Mutex, MutexGuard, PoisonError};
    use std::time::Duration;

    use shuttle::thread::ThreadId;

    /// Waits at least this long never time out in the model (see the module doc).
    pub(crate) const UNTIMED: Duration = Duration::from_secs(60);

    crate::sync::process_global! {
        static NOW: AtomicU64 = AtomicU64::new(1_000_000_000);
    }
    crate::sync::process_global! {
        /// Whether timed waits of this execution may time out (`let_time_pass`).
        static TIME_PASSES: AtomicBool = AtomicBool::new(false);
    }
    crate::sync::process_global! {
        /// Each thread's last recorded deadline, in nanoseconds. A std mutex is enough:
        /// shuttle runs one thread at a time and nothing here is a scheduling point.
        static DEADLINES: Mutex<HashMap<ThreadId, u64>> = Mutex::new(HashMap::new());
    }

    pub(crate) fn now() -> Tick {
        Tick(NOW.load(SeqCst))
    }

    /// Moves the virtual clock forward by `by`.
    pub(crate) fn advance(by: Duration) {
        NOW.fetch_add(super::saturating_nanos(by), SeqCst);
    }

    /// From now on in this execution, timed waits time out (see the module doc).
    pub(crate) fn let_time_pass() {
        TIME_PASSES.store(true, SeqCst);
    }

    /// Whether a wait of `timeout` is a timer (see the module doc).
    pub(crate) fn is_timer(timeout: Duration) -> bool {
        TIME_PASSES.load(SeqCst) && timeout < UNTIMED
    }

    /// The calling thread's wait until a deadline.
    pub(crate) struct Timer {
        at: u64,
    }

    impl Timer {
        /// Records a deadline `timeout` from now for the calling thread (saturating: a timeout
        /// too long to represent is a deadline at the end of time).
        pub(crate) fn after(timeout: Duration) -> Timer {
            let at = now().0.saturating_add(super::saturating_nanos(timeout));
            deadlines().insert(shuttle::thread::current().id(), at);
            Timer { at }
        }

        /// Its deadline has passed.
        pub(crate) fn due(&self) -> bool {
            now().0 >= self.at
        }

        /// Lets the other threads run (and record their deadlines: a thread about to wait
        /// must not see time leap past its deadline first); then, if the schedule so chooses,
        /// time passes: the clock moves to the earliest deadline any thread has recorded (see
        /// the module doc). True once this deadline has passed.
        pub(crate) fn fire_maybe(&self) -> bool {
            shuttle::thread::yield_now();
            if !self.due() && crate::sync::choice() {
                let mut deadlines = deadlines();
                if let Some(next) = deadlines.values().copied().min() {
                    let now = NOW.fetch_max(next, SeqCst).max(next);
                    deadlines.retain(|_, at| *at > now);
                }
            }
            self.due()
        }
    }

    fn deadlines() -> MutexGuard<'static, HashMap<ThreadId, u64>> {
        DEADLINES.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The precise clock of wait deadlines, virtual under the model checker.
#[cfg(pool_model)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Instant(Tick);

#[cfg(pool_model)]
impl Instant {
    pub(crate) fn now() -> Instant {
        Instant(model::now())
    }

    pub(crate) fn checked_add(self, d: Duration) -> Option<Instant> {
        self.0
             .0
            .checked_add(u64::try_from(d.as_nanos()).ok()?)
            .map(|n| Instant(Tick(n)))
    }

    pub(crate) fn saturating_duration_since(self, earlier: Instant) -> Duration {
        self.0.since(earlier.0)
    }

    pub(crate) fn elapsed(self) -> Duration {
        Instant::now().saturating_duration_since(self)
    }
}

#[cfg(all(test, not(pool_model)))]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_forward() {
        let a = Tick::now();
        std::thread::sleep(Duration::from_millis(20));
        let b = Tick::now();
        assert!(b.since(a) >= Duration::from_millis(10), "{:?}", b.since(a));
        assert_eq!(a.since(b), Duration::ZERO);
    }

    #[test]
    fn durations_too_long_saturate_instead_of_wrapping() {
        assert_eq!(saturating_nanos(Duration::MAX), u64::MAX);
        assert_eq!(Tick::now() + Duration::MAX, Tick::from_nanos(u64::MAX));
        assert_eq!(Deadline::after(Duration::MAX).left(), None);
        assert_eq!(Deadline::after(Duration::ZERO).left(), Some(Duration::ZERO));
    }
}
