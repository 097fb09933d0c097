//! Per-key pool settings.

use std::time::Duration;

use pool_driver::ResetMode;

/// How one pool (one driver + connection arguments) behaves.
///
/// Build with struct update syntax: `Settings { max_open: 8, ..Settings::default() }`.
/// Apply with [`crate::configure`] for one key or [`crate::configure_defaults`] for all keys
/// not configured on their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Most connections open at once for this key: parked + in use + being opened or checked.
    /// Default 32.
    pub max_open: usize,
    /// A parked connection unused for longer than this is closed by the reaper (the pool never
    /// reaps its last connection for idleness, so a quiet service keeps one warm). Default 120 s.
    pub idle_timeout: Duration,
    /// How often the reaper looks at this key. Default 20 s.
    pub reap_interval: Duration,
    /// How long `open` waits at the limit before `Error::Timeout`. Default 30 s.
    pub acquire_timeout: Duration,
    /// A connection parked longer than this is checked with `connected` before it is handed
    /// out (HikariCP's bypass window). Default 500 ms.
    pub validate_after: Duration,
    /// Bound on one connect attempt. Default 10 s.
    pub connect_timeout: Duration,
    /// Bound on one `connected` check. Default 5 s.
    pub check_timeout: Duration,
    /// What `release` resets. Default [`ResetMode::Full`]; use `RollbackOnly` behind a
    /// transaction-mode PgBouncer (README, "Scaling out"). A `RollbackOnly` reset runs on the
    /// releasing thread (see `background_reset`).
    pub reset_mode: ResetMode,
    /// A connection older than this is closed instead of being parked again (on release, by
    /// the reaper while parked, or when `open` finds it parked), never while in use, and
    /// replaced by the primer: credentials, server-side memory and load-balancer targets get
    /// rotated. Each connection's lifetime is shortened by up to 5 % at random, so connections
    /// opened together do not all expire together. Default 30 min; `None` keeps connections
    /// for as long as they work.
    pub max_lifetime: Option<Duration>,
    /// The warm floor: the reaper never closes idle connections below this many open, and the
    /// primer fills the pool up to it (one connection after another) whenever it is below, so
    /// a quiet service keeps this many parked after a spike. Default 1 (one kept warm); 0 lets
    /// an idle pool drop to no connection at all. At most `max_open`.
    pub min_idle: usize,
    /// Leak detection (HikariCP's `leakDetectionThreshold`): a connection held longer than this
    /// is reported once, at WARN through `tracing`, with the backtrace of the `open` that took
    /// it. Backtraces are captured only while this is set, so with the default `None` `open`
    /// costs what it did. Checked by the reaper at least this often.
    pub leak_threshold: Option<Duration>,
    /// Most callers that may wait at the limit at once; one more fails at once with
    /// [`crate::Error::TooManyWaiting`] instead of queueing (load shedding). Default `None`:
    /// no bound (each waiter is still bounded by `acquire_timeout`).
    pub max_waiting: Option<usize>,
    /// Reset released connections on the pool's resetter thread (one per pool), so `release`
    /// returns at once; the connection counts against `max_open` and cannot be taken until its
    /// reset is done, and a failed reset closes it (logged at WARN, counted in
    /// [`crate::Stats::reset_failures`]) without failing the caller. Default `true`; `false`
    /// resets on the releasing thread, which then waits for the reset (a failed one is handled
    /// the same way: closed, counted, logged; `release` still returns `Ok`). (Under a burst the resetter's short queue fills and releases reset
    /// inline either way.) Applies to [`ResetMode::Full`] only: a `RollbackOnly` reset always
    /// runs on the releasing thread (see `resets_in_background`).
    pub background_reset: bool,
    /// The deadline of every statement (`Conn::execute`, `Conn::query`, and the native client
    /// where the driver bounds it too: see the driver's docs). On expiry the driver cancels the
    /// statement on the server (PostgreSQL's cancel request, MariaDB's `KILL QUERY`; Redis has
    /// no cancel, so its connection is closed) and the call fails with
    /// [`crate::Error::StatementTimeout`] within the deadline plus a short grace, even when the
    /// server has stopped answering. A session whose statement the server cancelled goes back
    /// to the pool after its reset; any other is closed. Override it for one lease with
    /// [`crate::Conn::set_statement_timeout`] (the one slow report).
    ///
    /// Default 30 s: the same as `acquire_timeout`, since a web handler that waited longer than
    /// that for its statement has lost its client anyway (load balancers give up at 30–60 s),
    /// and an unbounded default is how one stuck lock wait or one silent proxy takes a whole
    /// service's worker threads (README, "When a statement hangs"). `None` removes the bound
    /// (for batch jobs and migrations; prefer the per-lease override).
    pub statement_timeout: Option<Duration>,
    /// Longest pause between two failed primer attempts (the pause doubles from 50 ms up to
    /// this, with jitter). Default 10 s.
    pub primer_backoff_max: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_open: 32,
            idle_timeout: Duration::from_secs(120),
            reap_interval: Duration::from_secs(20),
            acquire_timeout: Duration::from_secs(30),
            validate_after: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(10),
            check_timeout: Duration::from_secs(5),
            reset_mode: ResetMode::Full,
            min_idle: 1,
            leak_threshold: None,
            max_waiting: None,
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            primer_backoff_max: Duration::from_secs(10),
            background_reset: true,
            statement_timeout: Some(Duration::from_secs(30)),
        }
    }
}

impl Settings {
    /// Whether released connections are reset on the resetter thread: `background_reset`,
    /// and only with the full reset.
    ///
    /// `RollbackOnly` is the mode for a transaction-pooling PgBouncer, where resets queued on
    /// one thread deadlock: a connection released inside a transaction holds one of
    /// PgBouncer's server connections until its rollback runs, and one that ran only
    /// autocommit statements needs a free server connection for its rollback. At the head of a
    /// resetter's queue the second waits for a server connection that only the first kind,
    /// queued behind it (in this pool or another), would free, and PgBouncer's whole server
    /// pool stays stuck until its `query_wait_timeout` (`tests/pgbouncer.rs`). Reset on the
    /// releasing thread, each rollback waits only for its own server connection, and a
    /// rollback is one round trip: there is little to hide from the caller anyway.
    pub(crate) fn resets_in_background(&self) -> bool {
        self.background_reset && self.reset_mode == ResetMode::Full
    }

    /// How often the reaper sweeps this key: `reap_interval`, or more often if leak detection
    /// needs it (at least every `leak_threshold`).
    pub(crate) fn sweep_interval(&self) -> Duration {
        self.leak_threshold
            .map_or(self.reap_interval, |t| self.reap_interval.min(t))
    }

    /// Rejects settings the pool cannot honour, saying which field is wrong.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.max_open == 0 {
            return Err("max_open must be at least 1".into());
        }
        if self.min_idle > self.max_open {
            return Err(format!(
                "min_idle ({}) must not exceed max_open ({})",
                self.min_idle, self.max_open
            ));
        }
        for (name, value) in [
            ("reap_interval", self.reap_interval),
            ("connect_timeout", self.connect_timeout),
            ("check_timeout", self.check_timeout),
            ("primer_backoff_max", self.primer_backoff_max),
        ] {
            if value.is_zero() {
                return Err(format!("{name} must be longer than zero"));
            }
        }
        for (name, value) in [
            ("leak_threshold", self.leak_threshold),
            ("max_lifetime", self.max_lifetime),
            ("statement_timeout", self.statement_timeout),
        ] {
            if value.is_some_and(|v| v.is_zero()) {
                return Err(format!(
                    "{name} must be longer than zero (or None to turn it off)"
                ));
            }
        }
        Ok(())
    }
}
