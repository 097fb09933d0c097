//! Each pool's numbers through the `metrics` facade crate (cargo feature `metrics`).
//!
//! Two kinds of numbers, recorded two ways, so that the hot path pays nothing it need not:
//!
//! * **Histograms** (`pool_acquire_seconds`, `pool_reset_seconds`) are observations of single
//!   events, so they are recorded where the event happens: every `open` that hands out a
//!   connection records the time since it was called (parked hand-outs, connects and waits at
//!   the limit alike), every reset on release records how long the driver's reset took
//!   (whether it parked the connection or failed). The handles are resolved on a pool's first
//!   record, outside every lock: install the recorder (for example
//!   `metrics-exporter-prometheus`) before the first `pool::open`, or a pool that recorded
//!   before it keeps recording nowhere. The acquire time is read off the coarse
//!   clock readings `open` takes anyway (`Tick`, resolution one scheduler tick, 1–4 ms): a
//!   precise clock read at each end measured +150 ns per `open` + `release` on this machine's
//!   engine bench, three times the rest of the feature. So a hand-out from the parked stack
//!   records 0 (it takes well under a microsecond), and the histogram shows what it is for:
//!   waits at the limit, connects, validations, to within a tick. Resets (tens of microseconds
//!   of server work, off the caller's thread) are timed with the precise clock.
//! * **Gauges and counters** (idle, in use, opening, resetting, waiting, max_open; opened,
//!   closed, reaped, dead, rotated, timeouts, connect failures, …) already live in the pool as
//!   counts and relaxed atomics (`Stats`). Mirroring every change into the facade would put a
//!   registry call on every `open` and `release`; instead [`publish`] copies a snapshot, with
//!   counters set to their absolute values. `pool::publish_metrics()` does it for every pool
//!   (an exporter's scrape handler calls it right before rendering, so a scrape is exact), and
//!   the reaper does it for each pool it sweeps (so push-based exporters see fresh numbers at
//!   least every `reap_interval`).
//!
//! Every call into the facade runs the installed recorder, which is user code: it is caught if
//! it panics (logged at ERROR, the number lost), so a faulty recorder cannot kill the reaper
//! thread or unwind through `open` with a connection's room counted.
//!
//! Every metric carries the labels `driver` and `pool` (the redacted connection arguments:
//! no password ever reaches a label).
//!
//! Without the feature, [`PoolMetrics`] is an empty struct whose methods are empty and
//! inlined, and [`ResetStarted`] is an empty struct: the hot path is the same machine code as before.

#[cfg(feature = "metrics")]
pub(crate) use enabled::*;

#[cfg(not(feature = "metrics"))]
pub(crate) use disabled::*;

/// Converts a duration to the facade's unit for `_seconds` histograms.
#[cfg(feature = "metrics")]
fn seconds(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(feature = "metrics")]
mod enabled {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::OnceLock;

    use super::seconds;
    use crate::clock::Tick;
    use crate::stats::Stats;
    use ::metrics::{counter, gauge, histogram, Histogram, Label};

    /// When a reset began (precise clock).
    pub(crate) type ResetStarted = std::time::Instant;

    /// Runs a call into the facade, which calls the installed recorder: user code. A recorder
    /// that panics must not unwind into the pool (the reaper thread publishes, a caller
    /// records), so the panic is caught and logged, and the number is lost.
    fn guarded(what: &'static str, call: impl FnOnce()) {
        if catch_unwind(AssertUnwindSafe(call)).is_err() {
            tracing::error!(
                what,
                "the metrics recorder panicked; this number is not recorded"
            );
        }
    }

    /// The histogram handles of one pool, resolved on first use (never when the pool is
    /// created: that runs under the registry's lock, and resolving calls the recorder).
    pub(crate) struct PoolMetrics {
        labels: [Label; 2],
        acquire: OnceLock<Histogram>,
        reset: OnceLock<Histogram>,
    }

    impl PoolMetrics {
        pub(crate) fn new(driver: &str, pool: &str) -> Self {
            Self {
                labels: labels(driver, pool),
                acquire: OnceLock::new(),
                reset: OnceLock::new(),
            }
        }

        /// An `open` called at `started` hands out a connection at `now()`.
        #[inline]
        pub(crate) fn acquired(&self, started: Tick, now: impl FnOnce() -> Tick) {
            let took = seconds(now().since(started));
            guarded("pool_acquire_seconds", || {
                self.acquire
                    .get_or_init(|| histogram!("pool_acquire_seconds", self.labels.iter()))
                    .record(took)
            });
        }

        /// The start of a reset on release.
        #[inline]
        pub(crate) fn reset_started(&self) -> ResetStarted {
            std::time::Instant::now()
        }

        /// A reset that began at `started` is done (parked or failed).
        #[inline]
        pub(crate) fn reset_finished(&self, started: ResetStarted) {
            let took = seconds(started.elapsed());
            guarded("pool_reset_seconds", || {
                self.reset
                    .get_or_init(|| histogram!("pool_reset_seconds", self.labels.iter()))
                    .record(took)
            });
        }

        /// Copies this pool's snapshot (taken by `stats`) into the gauges and counters.
        pub(crate) fn publish(&self, stats: impl FnOnce() -> Stats) {
            publish(&stats());
        }
    }

    fn labels(driver: &str, pool: &str) -> [Label; 2] {
        [
            Label::new("driver", driver.to_owned()),
            Label::new("pool", pool.to_owned()),
        ]
    }

    /// Copies one pool's snapshot into the facade: gauges set, counters set to their absolute
    /// values (they only grow, so this is what a scrape of an ever-incremented counter shows).
    pub(crate) fn publish(stats: &Stats) {
        guarded("pool gauges and counters", || {
            let labels = labels(&stats.driver, &stats.pool);
            let gauges = [
                ("pool_idle_connections", stats.idle),
                ("pool_in_use_connections", stats.in_use),
                ("pool_opening_connections", stats.opening),
                ("pool_resetting_connections", stats.resetting),
                ("pool_waiting_callers", stats.waiting),
                ("pool_max_open_connections", stats.max_open),
            ];
            for (name, value) in gauges {
                gauge!(name, labels.iter()).set(value as f64);
            }
            let counters = [
                ("pool_connections_opened_total", stats.opened),
                ("pool_connections_closed_total", stats.closed),
                ("pool_connections_reaped_total", stats.reaped_idle),
                ("pool_connections_dead_total", stats.dropped_dead),
                ("pool_connections_rotated_total", stats.rotated),
                ("pool_connections_not_reusable_total", stats.not_reusable),
                ("pool_reset_failures_total", stats.reset_failures),
                ("pool_connect_failures_total", stats.connect_failures),
                ("pool_acquire_waits_total", stats.waits),
                ("pool_acquire_timeouts_total", stats.timeouts),
                ("pool_acquire_shed_total", stats.shed),
                ("pool_statement_timeouts_total", stats.statement_timeouts),
            ];
            for (name, value) in counters {
                counter!(name, labels.iter()).absolute(value);
            }
        });
    }
}

#[cfg(not(feature = "metrics"))]
mod disabled {
    use crate::clock::Tick;
    use crate::stats::Stats;

    /// Nothing: without the feature no clock is read for metrics.
    #[derive(Clone, Copy)]
    pub(crate) struct ResetStarted;

    /// Without the feature: nothing, and every method inlines to nothing.
    pub(crate) struct PoolMetrics;

    impl PoolMetrics {
        #[inline(always)]
        pub(crate) fn new(_driver: &str, _pool: &str) -> Self {
            PoolMetrics
        }

        /// Does not even read the clock `now` would.
        #[inline(always)]
        pub(crate) fn acquired(&self, _started: Tick, _now: impl FnOnce() -> Tick) {}

        #[inline(always)]
        pub(crate) fn reset_started(&self) -> ResetStarted {
            ResetStarted
        }

        #[inline(always)]
        pub(crate) fn reset_finished(&self, _started: ResetStarted) {}

        /// Does not even take the snapshot.
        #[inline(always)]
        pub(crate) fn publish(&self, _stats: impl FnOnce() -> Stats) {}
    }
}
