//! A cheap monotonic clock for the hot path.
//!
//! `open` and `release` each read the clock once (to know how long a handle was parked, and
//! since when it is held). `Instant::now()` costs about 25 ns here; `CLOCK_MONOTONIC_COARSE`
//! is read from the vDSO in a few nanoseconds at a resolution of one scheduler tick (1–4 ms),
//! far finer than anything the pool times (validation window 500 ms, idle timeout 2 min).

use std::time::Duration;

/// Nanoseconds on the coarse monotonic clock. Only differences mean anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Tick(u64);

impl Tick {
    /// Now, on the coarse clock.
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
        Tick(self.0.saturating_add(d.as_nanos() as u64))
    }
}

#[cfg(test)]
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
}
