//! Model checking of what the pool must *do*, not only what it must not: validate a connection
//! parked too long (and only then), sweep at once when asked, refill an emptied stack, keep
//! the `min_idle` floor, cope with threads that cannot start, and keep keys apart.
//!
//! Each test drives one short scenario (the engine's background threads race it under
//! shuttle's schedulers) against a driver that counts what it is asked to do. Time passes only
//! when a test moves the clock (`model::advance`), so a window's edge can be hit exactly.
//!
//! `POOL_MODEL_ITERATIONS` (default 1000) sets the schedules per test and scheduler; these run
//! a quarter of that. A failure prints a schedule that `shuttle::replay` reproduces.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use pool_model::{
    model, ConnArgs, Driver, DriverError, DriverErrorKind, Error, ResetMode, Settings,
};
use shuttle::thread;

const ARGS: &str = "db=duties";
const OTHER_ARGS: &str = "db=duties-other";

/// How long a check that must happen may take to happen, in yields.
const PATIENCE: usize = 5_000;

/// What the driver was asked to do.
#[derive(Default)]
struct Server {
    connects: AtomicUsize,
    /// `connected` calls (liveness checks).
    checks: AtomicUsize,
    /// Connections closed (dropped).
    closes: AtomicUsize,
    /// A reset ran on the resetter thread, and one in the `RollbackOnly` mode.
    background_resets: AtomicUsize,
    rollback_resets: AtomicUsize,
    /// `can_detach` says no (asked when a pool is created).
    cannot_detach: AtomicBool,
    /// Liveness checks hang for their whole timeout, then say dead (a silent network).
    silent: AtomicBool,
    /// The connection whose number is one less than this is dead (0: none).
    dead: AtomicUsize,
    /// Connects wait here while it is shut.
    connects_gate: Gate,
    /// Resets of a changed session wait here while it is shut.
    resets_gate: Gate,
    /// Closes wait here while it is shut.
    closes_gate: Gate,
}

/// Where a driver call waits (yielding) while the test holds it shut; open unless shut. Plain
/// atomics, so a connection dropped after the execution passes without touching shuttle.
#[derive(Default)]
struct Gate(AtomicBool);

impl Gate {
    fn shut(&self) {
        self.0.store(true, SeqCst);
    }

    fn open(&self) {
        self.0.store(false, SeqCst);
    }

    fn pass(&self) {
        while self.0.load(SeqCst) {
            thread::yield_now();
        }
    }
}

struct CountingDriver(Arc<Server>);

struct CountedConn {
    server: Arc<Server>,
    /// Which server connection it is (its connect's number).
    id: usize,
    broken: bool,
    dirty: bool,
    /// Its session holds state the driver cannot reset (its reset says `NotReusable`).
    cannot_reset: bool,
    /// Its reset fails.
    reset_fails: bool,
}

impl Drop for CountedConn {
    fn drop(&mut self) {
        self.server.closes_gate.pass();
        self.server.closes.fetch_add(1, SeqCst);
    }
}

common::model_connection!(CountedConn);

impl Driver for CountingDriver {
    type Conn = CountedConn;
    type Handle = CountedConn;

    fn name(&self) -> &str {
        "counting"
    }

    fn connect(&self, _: &ConnArgs, _: Duration) -> Result<CountedConn, DriverError> {
        self.0.connects_gate.pass();
        Ok(CountedConn {
            server: Arc::clone(&self.0),
            id: self.0.connects.fetch_add(1, SeqCst),
            broken: false,
            dirty: false,
            cannot_reset: false,
            reset_fails: false,
        })
    }

    fn detach(&self, mut conn: CountedConn, mode: ResetMode) -> Result<CountedConn, DriverError> {
        if conn.cannot_reset {
            return Err(DriverError::new(DriverErrorKind::NotReusable, "SET ROLE"));
        }
        if conn.reset_fails {
            return Err(DriverError::new(DriverErrorKind::Broken, "reset failed"));
        }
        if conn.dirty {
            self.0.resets_gate.pass();
            if thread::current().name() == Some("pool-reset") {
                self.0.background_resets.fetch_add(1, SeqCst);
            }
            if mode == ResetMode::RollbackOnly {
                self.0.rollback_resets.fetch_add(1, SeqCst);
            }
        }
        conn.dirty = false;
        Ok(conn)
    }

    fn attach(&self, handle: CountedConn) -> Result<CountedConn, DriverError> {
        Ok(handle)
    }

    fn connected(&self, conn: &mut CountedConn, timeout: Duration) -> bool {
        self.0.checks.fetch_add(1, SeqCst);
        let id = conn.id;
        if self.0.dead.load(SeqCst) == id + 1 {
            return false;
        }
        if self.0.silent.load(SeqCst) {
            model::block_for(timeout);
            return false;
        }
        true
    }

    fn can_detach(&self) -> bool {
        !self.0.cannot_detach.load(SeqCst)
    }
}

fn check(body: fn()) {
    common::check(body, common::iterations(4));
}

const VALIDATE_AFTER: Duration = Duration::from_millis(10);

/// Nothing happens on its own: no sweep falls due (a minute or more), nothing expires.
fn quiet(max_open: usize) -> Settings {
    Settings {
        max_open,
        acquire_timeout: Duration::from_secs(3600),
        validate_after: VALIDATE_AFTER,
        reap_interval: Duration::from_secs(120),
        idle_timeout: Duration::from_secs(3600),
        max_lifetime: None,
        min_idle: 0,
        ..Settings::default()
    }
}

fn start() -> Arc<Server> {
    let server = Arc::new(Server::default());
    pool_model::register(CountingDriver(Arc::clone(&server))).expect("register");
    server
}

fn open(args: &str) -> pool_model::Conn {
    match pool_model::open("counting", args) {
        Ok(conn) => conn,
        Err(error) => panic!("open failed: {error}"),
    }
}

/// Yields until `done` holds, at most [`PATIENCE`] times.
fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..PATIENCE {
        if done() {
            return;
        }
        thread::yield_now();
    }
    assert!(done(), "{what} never happened");
}

fn id(conn: &pool_model::Conn) -> usize {
    conn.native::<CountedConn>()
        .expect("a counted connection")
        .id
}

/// Lets the reaper finish the passes it was woken for, until it waits for a wake again (no
/// pass for a while: it blocks, as time does not pass on its own here).
fn reaper_quiet() {
    loop {
        let passes = model::reaper_passes();
        for _ in 0..50 {
            thread::yield_now();
        }
        if model::reaper_passes() == passes {
            return;
        }
    }
}

/// Wakes the reaper (applying `settings` does) and waits for the pass that follows.
fn sweep_with(settings: &Settings) {
    sweep_of(ARGS, settings);
}

/// Applies `settings` to the pool of `args` and waits for the reaper pass that follows.
fn sweep_of(args: &str, settings: &Settings) {
    reaper_quiet();
    let before = model::reaper_passes();
    pool_model::configure("counting", args, settings.clone()).expect("configure");
    eventually("a reaper pass", || model::reaper_passes() > before);
}

fn stats(args: &str) -> pool_model::Stats {
    pool_model::stats("counting", args).expect("stats")
}

fn idle(args: &str) -> usize {
    pool_model::stats("counting", args).expect("stats").idle
}

/// A connection parked exactly `validate_after` is handed out without a round trip, from the
/// fast slot and from the stack; one parked longer is checked first. The pool exists on the
/// defaults before it is configured, so the setting must reach the fast path's copy of it.
#[test]
fn a_connection_parked_past_validate_after_is_checked_and_only_then() {
    check(|| {
        let server = start();
        pool_model::stats("counting", ARGS).expect("the pool, on the defaults");
        pool_model::configure("counting", ARGS, quiet(2)).expect("configure");
        let (a, b) = (open(ARGS), open(ARGS));
        // b ends in the fast slot, a on the stack.
        a.release().expect("release");
        b.release().expect("release");
        model::advance(VALIDATE_AFTER);
        let (b, a) = (open(ARGS), open(ARGS));
        assert_eq!(
            server.checks.load(SeqCst),
            0,
            "checked a connection parked no longer than validate_after"
        );
        a.release().expect("release");
        b.release().expect("release");
        model::advance(VALIDATE_AFTER + Duration::from_millis(1));
        let held = (open(ARGS), open(ARGS));
        assert_eq!(
            server.checks.load(SeqCst),
            2,
            "handed out a connection parked longer than validate_after unchecked"
        );
        drop(held);
        pool_model::shutdown();
    });
}

/// A connection that broke in use makes the reaper sweep now, not at its next interval: the
/// parked connection is checked at once, and, alive, stays parked.
#[test]
fn a_requested_sweep_checks_the_parked_connections_at_once() {
    check(|| {
        let server = start();
        pool_model::configure("counting", ARGS, quiet(2)).expect("configure");
        let (a, mut b) = (open(ARGS), open(ARGS));
        let a_id = id(&a);
        a.release().expect("release");
        // A sweep checks only what was parked before it started.
        model::advance(Duration::from_millis(1));
        b.execute("BREAK", &[]).expect("execute");
        b.release().expect("release");
        eventually("the requested sweep's check", || {
            server.checks.load(SeqCst) >= 1
        });
        model::settle(PATIENCE).expect("a duty neglected");
        let again = open(ARGS);
        assert_eq!(id(&again), a_id, "the sweep dropped a live connection");
        drop(again);
        pool_model::shutdown();
    });
}

/// `open` taking the last parked connection wakes the primer, which parks a fresh one.
#[test]
fn the_primer_refills_an_emptied_stack() {
    check(|| {
        let server = start();
        pool_model::configure("counting", ARGS, quiet(2)).expect("configure");
        open(ARGS).release().expect("release");
        let held = open(ARGS);
        eventually("the primer's connection", || idle(ARGS) == 1);
        assert_eq!(server.connects.load(SeqCst), 2);
        drop(held);
        pool_model::shutdown();
    });
}

/// A sweep finds the pool below `min_idle` and the primer fills it.
#[test]
fn the_primer_fills_the_min_idle_floor() {
    check(|| {
        start();
        let settings = Settings {
            min_idle: 2,
            reap_interval: Duration::from_millis(1),
            ..quiet(3)
        };
        pool_model::configure("counting", ARGS, settings.clone()).expect("configure");
        model::advance(Duration::from_millis(2));
        // Applying settings wakes the reaper; its sweep is due.
        pool_model::configure("counting", ARGS, settings).expect("configure");
        eventually("the min_idle floor", || idle(ARGS) == 2);
        pool_model::shutdown();
    });
}

/// No background thread can start: the pool still serves (resets on the releasing thread,
/// closes in place, connects on demand), and leaves no prime pending that would stop it from
/// ever asking the primer again.
#[test]
fn a_pool_whose_threads_cannot_start_still_serves_and_neglects_nothing() {
    check(|| {
        start();
        for name in ["pool-primer", "pool-reset", "pool-close", "pool-closer"] {
            model::refuse_spawns(name);
        }
        pool_model::configure("counting", ARGS, quiet(2)).expect("configure");
        let mut dirty = open(ARGS);
        dirty.query("SET x", &[]).expect("query");
        dirty.release().expect("release");
        // Takes the last parked one: the primer is asked, and cannot start.
        let mut broken = open(ARGS);
        broken.execute("BREAK", &[]).expect("execute");
        broken.release().expect("release");
        let again = open(ARGS);
        again.release().expect("release");
        model::settle(PATIENCE).expect("a duty neglected");
        pool_model::shutdown();
        model::settle(PATIENCE).expect("a duty neglected after shutdown");
    });
}

/// Each key counts only its own connections: a thread holding key A's only connection waits
/// for key B's (held by another thread) instead of being told it would wait for itself.
#[test]
fn keys_count_their_own_held_connections() {
    check(|| {
        start();
        pool_model::configure("counting", ARGS, quiet(1)).expect("configure");
        pool_model::configure("counting", OTHER_ARGS, quiet(1)).expect("configure");
        let holder = thread::spawn(|| {
            let other = open(OTHER_ARGS);
            // Holds it until the main thread has queued for it.
            eventually("the other caller's wait", || {
                pool_model::stats("counting", OTHER_ARGS).map_or(0, |s| s.waiting) == 1
            });
            other.release().expect("release");
        });
        eventually("the holder's connection", || {
            pool_model::stats("counting", OTHER_ARGS).map_or(0, |s| s.in_use) == 1
        });
        let mine = open(ARGS);
        match pool_model::open("counting", OTHER_ARGS) {
            Ok(conn) => drop(conn),
            Err(error @ Error::WouldDeadlock { .. }) => {
                panic!("another key's connection counted as this one's: {error}")
            }
            Err(error) => panic!("open failed: {error}"),
        }
        drop(mine);
        holder.join().expect("holder");
        pool_model::shutdown();
    });
}

/// A thread that holds every connection and opens again is told so at once
/// (`WouldDeadlock`) instead of waiting for itself; with `max_waiting` reached, a caller is
/// shed at once (`TooManyWaiting`).
#[test]
fn a_wait_that_cannot_end_or_cannot_queue_is_refused_at_once() {
    check(|| {
        start();
        pool_model::configure("counting", ARGS, quiet(1)).expect("configure");
        let held = open(ARGS);
        match pool_model::open("counting", ARGS) {
            Err(Error::WouldDeadlock { .. }) => {}
            Ok(_) => panic!("handed out a second connection with max_open 1"),
            Err(error) => panic!("not refused as a self-deadlock: {error}"),
        }
        let shed = Settings {
            max_waiting: Some(0),
            ..quiet(1)
        };
        pool_model::configure("counting", OTHER_ARGS, shed).expect("configure");
        let refused = Arc::new(shuttle::sync::atomic::AtomicBool::new(false));
        let answered = Arc::clone(&refused);
        let holder = thread::spawn(move || {
            let other = open(OTHER_ARGS);
            eventually("the main thread's answer", || answered.load(SeqCst));
            drop(other);
        });
        eventually("the holder's connection", || {
            pool_model::stats("counting", OTHER_ARGS).map_or(0, |s| s.in_use) == 1
        });
        match pool_model::open("counting", OTHER_ARGS) {
            Err(Error::TooManyWaiting { .. }) => {}
            Ok(_) => panic!("handed out a second connection with max_open 1"),
            Err(error) => panic!("not shed with max_waiting 0: {error}"),
        }
        refused.store(true, SeqCst);
        drop(held);
        holder.join().expect("holder");
        pool_model::shutdown();
    });
}

const IDLE_TIMEOUT: Duration = Duration::from_millis(50);
const MAX_LIFETIME: Duration = Duration::from_millis(100);

/// A due sweep, at each window's edge and past it: a connection parked exactly
/// `validate_after` is not checked, one parked longer is; none parked exactly `idle_timeout`
/// is closed, and past it all but the floor (one) are; past `max_lifetime` the rest is
/// rotated out and the primer refills the emptied stack.
#[test]
fn due_sweeps_check_expire_and_rotate_at_their_windows_edges() {
    check(|| {
        let server = start();
        let settings = Settings {
            reap_interval: Duration::from_millis(1),
            idle_timeout: IDLE_TIMEOUT,
            max_lifetime: Some(MAX_LIFETIME),
            ..quiet(3)
        };
        // The sweep is due: its interval is 1 ms.
        let sweep_after = |by: Duration| {
            reaper_quiet();
            model::advance(by);
            sweep_with(&settings);
        };
        pool_model::configure("counting", ARGS, settings.clone()).expect("configure");
        let held: Vec<_> = (0..3).map(|_| open(ARGS)).collect();
        drop(held);
        sweep_after(VALIDATE_AFTER);
        assert_eq!(
            server.checks.load(SeqCst),
            0,
            "checked one parked exactly validate_after"
        );
        sweep_after(IDLE_TIMEOUT - VALIDATE_AFTER);
        assert_eq!(
            server.checks.load(SeqCst),
            3,
            "stale parked connections not checked"
        );
        assert_eq!(
            server.closes.load(SeqCst),
            0,
            "expired one parked exactly idle_timeout"
        );
        sweep_after(Duration::from_millis(1));
        eventually("idle expiry above the floor", || {
            server.closes.load(SeqCst) == 2
        });
        sweep_after(MAX_LIFETIME);
        eventually("rotation and a fresh primed connection", || {
            server.closes.load(SeqCst) == 3 && idle(ARGS) == 1
        });
        model::settle(PATIENCE).expect("a duty neglected");
        pool_model::shutdown();
    });
}

/// `RollbackOnly` (for a transaction-mode PgBouncer) resets on the releasing thread, in that
/// mode, never queued behind another connection's reset on the resetter.
#[test]
fn rollback_only_resets_on_the_releasing_thread_in_that_mode() {
    check(|| {
        let server = start();
        let settings = Settings {
            reset_mode: ResetMode::RollbackOnly,
            ..quiet(1)
        };
        pool_model::configure("counting", ARGS, settings).expect("configure");
        let mut conn = open(ARGS);
        conn.query("BEGIN", &[]).expect("query");
        conn.release().expect("release");
        assert_eq!(
            server.rollback_resets.load(SeqCst),
            1,
            "not reset in RollbackOnly"
        );
        assert_eq!(
            server.background_resets.load(SeqCst),
            0,
            "reset on the resetter"
        );
        pool_model::shutdown();
    });
}

/// New settings rule the pool's sweeps at once, not after the old interval: a connection
/// stale under the new `validate_after` is checked by the sweep that applying them causes.
#[test]
fn new_settings_take_effect_in_the_next_sweep_at_once() {
    check(|| {
        let server = start();
        // Created on the defaults: a sweep falls due only every 20 s.
        open(ARGS).release().expect("release");
        model::advance(VALIDATE_AFTER + Duration::from_millis(1));
        sweep_with(&quiet(2));
        assert_eq!(
            server.checks.load(SeqCst),
            1,
            "the sweep after new settings did not run, or not by them"
        );
        pool_model::shutdown();
    });
}

/// A liveness check that used up its timeout (the network may be silent) ends the sweep's
/// checks: the reaper does not wait a `check_timeout` for each parked connection in turn.
#[test]
fn a_silent_check_ends_the_sweeps_checks() {
    check(|| {
        let server = start();
        model::let_time_pass();
        pool_model::configure("counting", ARGS, quiet(2)).expect("configure");
        let held = (open(ARGS), open(ARGS));
        drop(held);
        server.silent.store(true, SeqCst);
        model::advance(VALIDATE_AFTER + Duration::from_millis(1));
        sweep_with(&quiet(2));
        assert_eq!(
            server.checks.load(SeqCst),
            1,
            "the sweep went on checking after a silent check"
        );
        server.silent.store(false, SeqCst);
        pool_model::shutdown();
    });
}

/// A driver that cannot detach: nothing is ever parked, every release closes.
#[test]
fn a_driver_that_cannot_detach_never_parks() {
    check(|| {
        let server = start();
        server.cannot_detach.store(true, SeqCst);
        pool_model::configure("counting", ARGS, quiet(1)).expect("configure");
        open(ARGS).release().expect("release");
        assert_eq!(
            idle(ARGS),
            0,
            "parked a connection the driver cannot detach"
        );
        assert_eq!(
            server.closes.load(SeqCst),
            1,
            "the release did not close it"
        );
        pool_model::shutdown();
    });
}

// ---- What operators see: stats, errors and reports ------------------------------------------

const STATS_ARGS: &str = "db=duties-stats";

/// The counts and counters a pool reports follow what happened, exactly: a connect in flight
/// counts as opening; a session the driver cannot reset is closed and counted as not reusable,
/// a failed reset as a reset failure and dropped dead; a parked connection found dead at
/// `open` is dropped and the caller served by the next parked one (a fresh connect only after
/// a silent check); and the stats' opened and closed are the server's connects and closes.
#[test]
fn stats_count_exactly_what_happened() {
    check(|| {
        // No primer: every connect below is a caller's. No reaper: none of its checks takes a
        // parked connection out from under an `open` below.
        model::refuse_spawns("pool-primer");
        model::refuse_spawns("pool-reaper");
        let server = start();
        pool_model::configure("counting", STATS_ARGS, quiet(3)).expect("configure");
        let empty = stats(STATS_ARGS);
        assert_eq!(
            (empty.driver.as_str(), empty.pool.as_str(), empty.max_open),
            ("counting", STATS_ARGS, 3),
            "the stats do not name their pool and limit"
        );
        server.connects_gate.shut();
        let opener = thread::spawn(|| open(STATS_ARGS).release().expect("release"));
        eventually("a connect in flight counted as opening", || {
            stats(STATS_ARGS).opening == 1
        });
        server.connects_gate.open();
        opener.join().expect("opener");

        // Two of one kind and one of the other: a mix-up of the two cannot add up the same.
        let mut released = [open(STATS_ARGS), open(STATS_ARGS), open(STATS_ARGS)];
        counted(&mut released[0]).cannot_reset = true;
        counted(&mut released[1]).cannot_reset = true;
        counted(&mut released[2]).reset_fails = true;
        for conn in released {
            conn.release().expect("release");
        }
        let after_resets = stats(STATS_ARGS);
        assert_eq!(
            (
                after_resets.not_reusable,
                after_resets.reset_failures,
                after_resets.dropped_dead,
                after_resets.closed,
                after_resets.idle,
            ),
            (2, 1, 1, 3, 0),
            "(not_reusable, reset_failures, dropped_dead, closed, idle) after two releases \
             the driver cannot reset and one whose reset failed"
        );

        let (a, b) = (open(STATS_ARGS), open(STATS_ARGS));
        let (a_id, b_id) = (id(&a), id(&b));
        a.release().expect("release");
        b.release().expect("release");
        model::advance(VALIDATE_AFTER + Duration::from_millis(1));
        server.dead.store(b_id + 1, SeqCst);
        let again = open(STATS_ARGS);
        assert_eq!(
            id(&again),
            a_id,
            "after dropping a dead parked connection, not served by the next parked one"
        );
        again.release().expect("release");
        model::settle(PATIENCE).expect("a duty neglected");
        let end = stats(STATS_ARGS);
        assert_eq!(
            (
                end.opened,
                end.closed,
                end.dropped_dead,
                end.idle,
                end.in_use
            ),
            (5, 4, 2, 1, 0),
            "(opened, closed, dropped_dead, idle, in_use) at the end"
        );
        assert_eq!(
            (server.connects.load(SeqCst), server.closes.load(SeqCst)),
            (5, 4),
            "the server's (connects, closes)"
        );
        pool_model::shutdown();
    });
}

fn counted(conn: &mut pool_model::Conn) -> &mut CountedConn {
    conn.native_mut::<CountedConn>()
        .expect("a counted connection")
}

const TIMEOUT_ARGS: &str = "db=duties-timeout";

/// An `open` that times out at the limit says which pool, what holds its connections (a
/// connection being reset counts as in use: it was a moment ago), and where the longest-held
/// one was opened and for how long; a reset in flight shows in the stats.
#[test]
fn a_timeout_names_its_pool_counts_and_longest_holder() {
    check(|| {
        let server = start();
        model::let_time_pass();
        let settings = Settings {
            acquire_timeout: Duration::from_secs(3),
            ..quiet(2)
        };
        pool_model::configure("counting", TIMEOUT_ARGS, settings).expect("configure");
        let held = open(TIMEOUT_ARGS);
        let mut dirty = open(TIMEOUT_ARGS);
        dirty.query("SET x", &[]).expect("query");
        server.resets_gate.shut();
        dirty.release().expect("release");
        let during = stats(TIMEOUT_ARGS);
        assert_eq!(
            (during.resetting, during.in_use, during.idle),
            (1, 1, 0),
            "(resetting, in_use, idle) with one reset in flight"
        );
        model::advance(Duration::from_millis(5));
        let detail = match pool_model::open("counting", TIMEOUT_ARGS) {
            Err(Error::Timeout(detail)) => detail,
            Ok(_) => panic!("handed out a third connection with max_open 2"),
            Err(error) => panic!("not a timeout: {error}"),
        };
        server.resets_gate.open();
        assert_eq!(
            detail.pool,
            format!("counting {TIMEOUT_ARGS}"),
            "{detail:?}"
        );
        assert_eq!(
            (
                detail.in_use,
                detail.idle,
                detail.max_open,
                detail.held_by_this_thread
            ),
            (2, 0, 2, 1),
            "(in_use, idle, max_open, held_by_this_thread): {detail:?}"
        );
        match &detail.longest_held {
            Some((at, held_for)) => assert!(
                at.contains("duties.rs") && *held_for >= Duration::from_millis(5),
                "the longest holder misreported: {detail:?}"
            ),
            None => panic!("no longest holder reported: {detail:?}"),
        }
        let after = stats(TIMEOUT_ARGS);
        assert_eq!((after.waits, after.timeouts), (1, 1), "(waits, timeouts)");
        drop(held);
        pool_model::shutdown();
    });
}

/// Only a prime per emptied stack: while the prime asked for is pending (its connect waits
/// here), taking the fast slot's connection again asks for none, whatever the lock-free
/// mirrors say; the pool never opens a connection nobody asked for.
#[test]
fn a_prime_is_asked_for_once_per_emptied_stack() {
    check(|| {
        let server = start();
        pool_model::configure("counting", ARGS, quiet(3)).expect("configure");
        let mut conn = open(ARGS);
        server.connects_gate.shut();
        for _ in 0..3 {
            conn.release().expect("release");
            conn = open(ARGS);
        }
        server.connects_gate.open();
        eventually("the primed connection", || idle(ARGS) == 1);
        model::settle(PATIENCE).expect("a duty neglected");
        assert_eq!(
            server.connects.load(SeqCst),
            2,
            "primed more than one connection for one emptied stack"
        );
        drop(conn);
        pool_model::shutdown();
    });
}

/// Below a microsecond a lifetime has no cut (thousandths of it round to zero), so its edge
/// is exact: a connection exactly `max_lifetime` old is kept on release, one a nanosecond
/// older is closed.
#[test]
fn a_release_rotates_only_past_max_lifetime() {
    check(|| {
        let server = start();
        let settings = Settings {
            max_lifetime: Some(Duration::from_nanos(999)),
            ..quiet(1)
        };
        pool_model::configure("counting", ARGS, settings).expect("configure");
        let conn = open(ARGS);
        model::advance(Duration::from_nanos(999));
        conn.release().expect("release");
        let conn = open(ARGS);
        assert_eq!(
            (server.closes.load(SeqCst), server.connects.load(SeqCst)),
            (0, 1),
            "rotated a connection exactly max_lifetime old"
        );
        model::advance(Duration::from_nanos(1));
        conn.release().expect("release");
        assert_eq!(
            server.closes.load(SeqCst),
            1,
            "kept a connection past max_lifetime"
        );
        pool_model::shutdown();
    });
}

/// A dead connection still being closed does not count toward the `min_idle` floor: the
/// primer fills the floor meanwhile.
#[test]
fn the_floor_is_filled_while_a_dead_connection_is_closing() {
    check(|| {
        let server = start();
        pool_model::configure("counting", ARGS, quiet(3)).expect("configure");
        let mut conn = open(ARGS);
        conn.execute("BREAK", &[]).expect("execute");
        server.closes_gate.shut();
        conn.release().expect("release");
        let floor = Settings {
            min_idle: 2,
            ..quiet(3)
        };
        pool_model::configure("counting", ARGS, floor).expect("configure");
        eventually("the min_idle floor while a close is in flight", || {
            idle(ARGS) == 2
        });
        server.closes_gate.open();
        model::settle(PATIENCE).expect("a duty neglected");
        pool_model::shutdown();
    });
}

/// The engine's log events, captured for the tests that check what it reports (a subscriber
/// for the whole test binary, installed once; each event as its fields, by name). Only the
/// events at INFO and above of the pools a test watches are kept: the others cost nothing.
mod captured {
    use std::fmt;
    use std::sync::{Mutex, Once, PoisonError};

    use tracing::field::{Field, Visit};
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    pub(crate) type Event = Vec<(String, String)>;

    static EVENTS: Mutex<Vec<Event>> = Mutex::new(Vec::new());
    static WATCHED: Mutex<Vec<String>> = Mutex::new(Vec::new());

    struct Fields(Event);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.0.push((field.name().to_owned(), format!("{value:?}")));
        }

        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.push((field.name().to_owned(), value.to_owned()));
        }
    }

    struct Capture;

    impl<S: tracing::Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let mut fields = Fields(Vec::new());
            event.record(&mut fields);
            let watched = WATCHED.lock().unwrap_or_else(PoisonError::into_inner);
            if watched.iter().any(|pool| of_pool(&fields.0, pool)) {
                events().push(fields.0);
            }
        }
    }

    fn events() -> std::sync::MutexGuard<'static, Vec<Event>> {
        EVENTS.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps the events of `pool` from now on.
    pub(crate) fn watch(pool: &str) {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let subscriber =
                tracing_subscriber::registry().with(Capture.with_filter(LevelFilter::INFO));
            tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        });
        let mut watched = WATCHED.lock().unwrap_or_else(PoisonError::into_inner);
        if !watched.iter().any(|watching| watching == pool) {
            watched.push(pool.to_owned());
        }
    }

    pub(crate) fn field<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
        event
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }

    fn of_pool(event: &Event, pool: &str) -> bool {
        field(event, "pool") == Some(pool)
    }

    /// Drops the events of `pool` (each execution starts afresh).
    pub(crate) fn forget(pool: &str) {
        events().retain(|event| !of_pool(event, pool));
    }

    /// The events of `pool` whose message contains `text`.
    pub(crate) fn of(pool: &str, text: &str) -> Vec<Event> {
        events()
            .iter()
            .filter(|event| of_pool(event, pool))
            .filter(|event| field(event, "message").is_some_and(|m| m.contains(text)))
            .cloned()
            .collect()
    }
}

const LEAK_ARGS: &str = "db=duties-leaks";
const LEAK_THRESHOLD: Duration = Duration::from_millis(20);

/// A connection held longer than `leak_threshold` is reported by the next sweep, once, naming
/// its pool, where it was opened and the backtrace of that `open`; one held exactly
/// `leak_threshold` is not.
#[test]
fn a_connection_held_past_leak_threshold_is_reported_once_with_its_origin() {
    let body = || {
        start();
        let pool = format!("counting {LEAK_ARGS}");
        captured::watch(&pool);
        captured::forget(&pool);
        let leaks = || captured::of(&pool, "possible leak");
        let settings = Settings {
            leak_threshold: Some(LEAK_THRESHOLD),
            ..quiet(2)
        };
        sweep_of(LEAK_ARGS, &settings);
        let held = open(LEAK_ARGS);
        model::advance(LEAK_THRESHOLD);
        sweep_of(LEAK_ARGS, &settings);
        assert_eq!(
            leaks(),
            Vec::<captured::Event>::new(),
            "held exactly leak_threshold"
        );
        model::advance(Duration::from_millis(1));
        sweep_of(LEAK_ARGS, &settings);
        let reported = leaks();
        assert_eq!(reported.len(), 1, "not reported once: {reported:?}");
        let opened_at = captured::field(&reported[0], "opened_at").unwrap_or_default();
        let backtrace = captured::field(&reported[0], "backtrace").unwrap_or_default();
        assert!(
            opened_at.contains("duties.rs") && backtrace != "(not captured)",
            "the report misses where it was opened: {reported:?}"
        );
        sweep_of(LEAK_ARGS, &settings);
        assert_eq!(leaks().len(), 1, "reported again");
        drop(held);
        pool_model::shutdown();
    };
    // Fewer schedules: each report formats a backtrace, and what it checks is sequential.
    common::check(body, common::iterations(40));
}
