//! # pool
//!
//! A cross-thread detach/attach connection pool: getting a database connection in a web
//! handler costs microseconds instead of the milliseconds of a fresh connect. (The package is
//! `pool-db` on crates.io; the library is `pool`.)
//!
//! ## Open, use, release
//!
//! ```no_run
//! # fn handler() -> Result<(), pool::Error> {
//! let mut db = pool::open("postgres", "host=/run/postgresql user=app dbname=shop")?;
//! let rows = db.query("SELECT name FROM items WHERE id = $1", &[42.into()])?;
//! # let _ = rows;
//! db.release()?; // rollback + reset + park; dropping `db` does the same
//! # Ok(()) }
//! ```
//!
//! [`open`] takes the driver name (`"postgres"`, `"mysql"`, `"redis"`, or one you
//! [`register`]) and its connection arguments (`key=value` text or a URL). The first `open` of
//! a key creates its pool; later ones hand out the most recently released connection in
//! microseconds. [`Conn::release`] (or dropping the [`Conn`]) gives it back; the pool resets
//! the session before anyone else gets it. [`Conn::native_mut`] reaches the driver's own
//! client for everything the small uniform API (`execute`, `query`) lacks.
//!
//! ## Settings
//!
//! ```no_run
//! # fn set_up(args: &str) -> Result<(), pool::Error> {
//! use std::time::Duration;
//! pool::configure("postgres", args, pool::Settings {
//!     max_open: 16,
//!     acquire_timeout: Duration::from_secs(5),
//!     statement_timeout: Some(Duration::from_secs(10)),
//!     ..pool::Settings::default()
//! })?;
//! # Ok(()) }
//! ```
//!
//! [`Settings`] per key ([`configure`]) or for every key ([`configure_defaults`]): the limit,
//! the waits, idle expiry, `max_lifetime`, the warm floor, leak detection, load shedding, the
//! reset mode and the statement deadline. [`stats`] and [`all_stats`] report each pool;
//! [`shutdown`] closes everything.
//!
//! ## Errors
//!
//! [`Error`] has a variant per situation a handler acts on ([`Error::Timeout`],
//! [`Error::TooManyWaiting`], [`Error::StatementTimeout`], [`Error::Connect`],
//! [`Error::Query`], [`Error::WouldDeadlock`], …); [`Error::is_transient`] says which to answer
//! with 503 and retry. No error, log line or `Debug` output holds a password.
//!
//! ## What the pool guarantees
//!
//! * Nothing of one request reaches the next: every used session is reset (transaction,
//!   roles, settings, temp tables, locks, prepared statements), deciding from what the server
//!   reports, never from the text of the statements.
//! * Every wait is bounded: at the limit by `acquire_timeout`, connects and checks by their
//!   timeouts, statements by `statement_timeout` with a server-side cancel; a thread that holds
//!   every connection and asks for another gets [`Error::WouldDeadlock`] at once.
//! * A database restart or a silent network costs requests in flight, not the service:
//!   parked connections are validated, dead ones closed off the caller's thread.
//! * Never more than `max_open` connections per key; a broken connection or one whose holder
//!   panicked is closed, never parked.
//!
//! ## Features
//!
//! `postgres`, `mysql`, `redis` (the built-in drivers, all on by default) and `metrics` (the
//! pools' gauges, counters and histograms through the `metrics` facade).
//!
//! ## How it works
//!
//! * One process-wide registry keyed by driver name + normalised connection arguments
//!   (credentials included): each key owns one pool, and keys never block each other.
//! * Parked connections sit in a LIFO stack; `open` takes the most recently released one.
//! * When `open` takes the last parked connection, a per-key primer thread opens one more.
//! * A reaper thread closes connections idle longer than `idle_timeout` or no longer
//!   `connected`, and keeps one warm per key.
//! * At `max_open`, `open` waits first come first served up to `acquire_timeout`.
//! * `release` (or `Drop`) rolls back, resets session state and parks; a broken connection,
//!   a failed reset or a panicking holder closes it instead.
//!
//! See `ARCHITECTURE.md` for the threads, the lock order and the connection states.

#![deny(missing_docs)]
#![warn(unreachable_pub)]

/// The README's code blocks, compiled (and the ones that need no server run) as doctests, so
/// the examples a newcomer copies cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod clock;
mod closer;
mod conn;
mod core;
mod erased;
mod error;
mod guard;
mod held;
mod key_pool;
mod lease;
mod metrics;
mod primer;
mod reaper;
mod registry;
mod resetter;
mod settings;
mod stats;
mod sync;
mod unsettled;
#[cfg(pool_model)]
mod violations;

/// Hooks for the model checker (`dev/model`): only in the build with `--cfg pool_model`.
#[cfg(pool_model)]
pub mod model {
    /// Moves this execution's virtual clock forward by `by`.
    pub fn advance(by: std::time::Duration) {
        crate::clock::model::advance(by)
    }

    /// Checks the registry's invariants: no pool it hands out is shut, and a reaper runs
    /// while it holds pools.
    pub fn check_registry() -> Result<(), String> {
        violation()?;
        crate::registry::registry().check_invariants()
    }

    /// The first invariant the engine found broken on itself in this execution, on any
    /// thread (see `violations`); `check_registry` and `settle` report it too.
    pub fn violation() -> Result<(), String> {
        crate::violations::first()
    }

    /// The virtual clock's reading, as time since an arbitrary start.
    pub fn now() -> std::time::Duration {
        crate::clock::Tick::now().since(crate::clock::Tick::default())
    }

    /// From now on in this execution, the engine's timed waits shorter than a minute time out:
    /// each records its deadline, and time jumps from one recorded deadline to the next when
    /// the schedule chooses (see `clock::model`). Until then, and for longer waits, they never
    /// time out, so a waiter nobody wakes is a reported deadlock.
    pub fn let_time_pass() {
        crate::clock::model::let_time_pass()
    }

    /// Blocks the calling thread for `how_long` of virtual time, as a driver call waiting on a
    /// silent network does: a timer like the engine's waits, yielding to the other threads
    /// meanwhile. Call it only after [`let_time_pass`], or nothing may move the clock.
    pub fn block_for(how_long: std::time::Duration) {
        let timer = crate::clock::model::Timer::after(how_long);
        while !timer.fire_maybe() {}
    }

    /// How many passes over the pools the reaper has finished in this execution. A pass that
    /// starts after a change (time moved, settings applied, which wakes the reaper) has seen
    /// it: wait for two more than before the change.
    pub fn reaper_passes() -> usize {
        crate::reaper::passes::count()
    }

    /// From now on in this execution, the engine's threads named `name` (`pool-primer`,
    /// `pool-reset`, `pool-close`, `pool-closer`, `pool-reaper`) cannot be started: each spawn
    /// fails as on a system out of threads.
    pub fn refuse_spawns(name: &str) {
        crate::sync::refused::refuse(name)
    }

    /// Lets the other threads run until every pool of this execution (shut ones too) has
    /// nothing in flight and neglects no duty, yielding at most `steps` times; the last duty
    /// still neglected otherwise. See `State::quiescence_violation`.
    pub fn settle(steps: usize) -> Result<(), String> {
        violation()?;
        let registry = crate::registry::registry();
        for _ in 0..steps {
            if registry.quiescence_violation().is_none() {
                return Ok(());
            }
            crate::sync::thread::yield_now();
        }
        violation()?;
        registry.quiescence_violation().map_or(Ok(()), Err)
    }
}

pub use conn::Conn;
pub use error::{Error, TimeoutDetail};
pub use pool_driver::{
    ConnArgs, Connection, Driver, DriverError, DriverErrorKind, ResetMode, Rows, Value,
};
pub use settings::Settings;
pub use stats::Stats;

/// The driver contract crate, for driver authors.
pub use pool_driver as driver;

/// The built-in PostgreSQL driver (`"postgres"`).
#[cfg(feature = "postgres")]
pub use pool_postgres as postgres_driver;

/// The built-in MySQL/MariaDB driver (`"mysql"`).
#[cfg(feature = "mysql")]
pub use pool_mysql as mysql_driver;

/// The built-in Redis driver (`"redis"`).
#[cfg(feature = "redis")]
pub use pool_redis as redis_driver;

use registry::registry;

/// A connection for `driver` with `args`, from any thread.
///
/// Returns the most recently released connection of that key, checking it first if it was
/// parked longer than `validate_after`; connects if none is parked and the key is under
/// `max_open`; waits first come first served otherwise, up to `acquire_timeout`.
///
/// `args` are libpq-style `key=value` pairs or a URL; option order and spacing do not matter.
#[track_caller]
#[inline]
pub fn open(driver: &str, args: &str) -> Result<Conn, Error> {
    let at = std::panic::Location::caller();
    registry().pool(driver, args)?.open(at)
}

/// Registers a driver that is not built in. Call once at start-up; a second driver with the
/// same name is an error.
pub fn register<D: Driver>(driver: D) -> Result<(), Error> {
    registry().register(driver)
}

/// Applies `settings` to the pool of one key (creating it if needed). Later calls replace
/// earlier ones; `configure_defaults` no longer affects this key.
pub fn configure(driver: &str, args: &str, settings: Settings) -> Result<(), Error> {
    registry().configure(driver, args, settings)
}

/// Sets the settings of every pool not configured on its own, now and for pools created later.
pub fn configure_defaults(settings: Settings) -> Result<(), Error> {
    registry().configure_defaults(settings)
}

/// Counts and counters of the pool for one key (creating it if needed).
pub fn stats(driver: &str, args: &str) -> Result<Stats, Error> {
    registry().stats(driver, args)
}

/// Counts and counters of every pool.
pub fn all_stats() -> Vec<Stats> {
    let mut all: Vec<Stats> = registry().all_pools().iter().map(|p| p.stats()).collect();
    all.sort_by(|a, b| (&a.driver, &a.pool).cmp(&(&b.driver, &b.pool)));
    all
}

/// Copies every pool's gauges and counters into the `metrics` facade (feature `metrics`).
///
/// Call it right before an exporter renders (a Prometheus scrape handler, say) so the scrape
/// is exact; the reaper also publishes each pool it sweeps. The acquire and reset histograms
/// are recorded as events happen and need no call. Labels: `driver` and `pool` (the redacted
/// connection arguments). See `README.md`, "Metrics", for the names.
#[cfg(feature = "metrics")]
pub fn publish_metrics() {
    for pool in registry().all_pools() {
        crate::metrics::publish(&pool.stats());
    }
}

/// Closes every parked connection, fails every waiting `open` with `Error::ShutDown`, and
/// joins the primer and reaper threads. Connections still held are closed when released.
/// A later `open` starts a fresh pool, with a fresh `max_open` count: connections of the old
/// pool still held are not counted against it. A second concurrent call returns once the first
/// has finished.
pub fn shutdown() {
    registry().shutdown()
}
