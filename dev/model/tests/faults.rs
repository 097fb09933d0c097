//! Model checking with a driver that fails, panics and hangs, and with time passing.
//!
//! The engine's own code runs under shuttle as in `model.rs`, with two differences:
//!
//! * **Time passes** (`model::let_time_pass`): every timed wait of the engine (a waiter's
//!   patience and acquire deadline, the closer watchdog's grace, the reaper's interval, the
//!   primer's backoff, the resetter's idle exit, shutdown's bounded joins) is a timer that the
//!   schedule may fire once no earlier deadline is waited for. So the time-driven paths run,
//!   in every order the schedule picks, in a bounded number of steps.
//! * **The driver misbehaves on demand** ([`FaultyDriver`]): connect, reset (`detach`), the
//!   liveness check (`connected`) and close (dropping a connection) each succeed, fail, panic,
//!   or block for a while of virtual time (a silent network), as shuttle's random choices say,
//!   so the schedule explores them like interleavings.
//!
//! Besides the engine's own checks (on every unlock: a shut pool parks nothing and has nobody
//! waiting; on every idle expiry: never below `min_idle`), every execution asserts, once the
//! callers are done and the background threads have settled (`model::settle`): every room
//! counted for work in flight came back (`resetting`, `opening`, `checking`, `closing` are
//! zero), nobody waits, no prime is left pending while there is room for it; and then that one
//! caller can hold all `max_open` connections (no room leaked across failures and panics),
//! and that shutdown leaves no connection open and nothing parked.
//!
//! `POOL_MODEL_ITERATIONS` (default 1000) sets the schedules per test and scheduler; these
//! tests run a quarter of that (their executions are longer). A failure prints a schedule
//! that `shuttle::replay` reproduces. Caught panics of the misbehaving driver print shuttle's
//! "test panicked" notice once per run; only a failed assertion fails the test.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use pool_model::{
    model, ConnArgs, Driver, DriverError, DriverErrorKind, Error, ResetMode, Settings,
};
use rand::Rng;
use shuttle::thread;

const ARGS: &str = "db=faults";

/// How long a hung call blocks: longer than every deadline that should end the wait for it
/// (patience 1 s, the closer's grace 1 s, the acquire timeout here 5 s).
const HANG: Duration = Duration::from_secs(10);

/// Yields `model::settle` may take for the background threads to finish their work.
const SETTLE_STEPS: usize = 5_000;

/// What a driver call does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Works,
    Fails,
    Panics,
    Hangs,
}

/// The server side: live connections, and which misbehaviour is allowed now.
#[derive(Default)]
struct Server {
    /// Sessions the server holds. (Not checked against `max_open`: once time passes, a close
    /// that outlives the closer's grace keeps its session while its room is used again, by
    /// design; `model.rs` checks the limit where no grace expires.)
    live: AtomicUsize,
    /// Calls may fail, panic or hang for [`HANG`] (else every call works).
    misbehave: AtomicBool,
    /// Connects on the primer's thread wait at the gate (so that only the caller's own
    /// patience can serve it, in the patience test).
    gate_primer: AtomicBool,
    /// The next reset on the resetter thread waits at the gate (once).
    gate_next_reset: AtomicBool,
    /// The next close waits at the gate (once).
    gate_next_close: AtomicBool,
    gate: Gate,
    /// A connection that failed a liveness check was attached for a caller.
    handed_out_dead: AtomicBool,
}

/// Where a call hangs until the test opens it: however much time passes. A hang nothing
/// else can end, so a caller that waits for it instead of its own deadline is a reported
/// deadlock.
#[derive(Default)]
struct Gate {
    open: shuttle::sync::Mutex<bool>,
    opened: shuttle::sync::Condvar,
}

impl Gate {
    fn pass(&self) {
        let mut open = self.open.lock().expect("gate");
        while !*open {
            open = self.opened.wait(open).expect("gate");
        }
    }

    fn open(&self) {
        *self.open.lock().expect("gate") = true;
        self.opened.notify_all();
    }
}

impl Server {
    fn outcome(&self) -> Outcome {
        if !self.misbehave.load(SeqCst) {
            return Outcome::Works;
        }
        match shuttle::rand::thread_rng().gen_range(0..8) {
            0 => Outcome::Fails,
            1 => Outcome::Panics,
            2 => Outcome::Hangs,
            _ => Outcome::Works,
        }
    }
}

struct FaultyDriver(Arc<Server>);

struct FaultyConn {
    server: Arc<Server>,
    broken: bool,
    dirty: bool,
    /// It failed a liveness check: the pool must close it, never hand it out.
    dead: bool,
}

impl Drop for FaultyConn {
    /// Closing: may hang on a silent network (the socket is gone only afterwards), or panic
    /// (never while the thread already unwinds: that would abort).
    fn drop(&mut self) {
        let _closed = Closed(&self.server);
        // Dropped while a panic of this driver unwinds: close at once. (Shuttle's threads share
        // one OS thread, so letting the others run now would show them a panic in progress,
        // and shuttle would take each lock they release for poisoned.)
        if std::thread::panicking() {
            return;
        }
        if self.server.gate_next_close.swap(false, SeqCst) {
            self.server.gate.pass();
        }
        match self.server.outcome() {
            Outcome::Hangs => model::block_for(HANG),
            Outcome::Panics => panic!("model driver: close panicked"),
            Outcome::Works | Outcome::Fails => {}
        }
    }
}

/// A close ended (returned or panicked): the session is gone.
struct Closed<'a>(&'a Server);

impl Drop for Closed<'_> {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, SeqCst);
    }
}

impl Driver for FaultyDriver {
    type Conn = FaultyConn;
    type Handle = FaultyConn;

    fn name(&self) -> &str {
        "faulty"
    }

    fn connect(&self, _: &ConnArgs, timeout: Duration) -> Result<FaultyConn, DriverError> {
        let server = &self.0;
        let on_primer = thread::current().name() == Some("pool-primer");
        if on_primer && server.gate_primer.load(SeqCst) {
            server.gate.pass();
        }
        match server.outcome() {
            Outcome::Fails => return Err(DriverError::new(DriverErrorKind::Connect, "refused")),
            Outcome::Panics => panic!("model driver: connect panicked"),
            Outcome::Hangs => {
                model::block_for(timeout);
                return Err(DriverError::new(DriverErrorKind::Timeout, "silent"));
            }
            Outcome::Works => {}
        }
        server.live.fetch_add(1, SeqCst);
        Ok(FaultyConn {
            server: Arc::clone(server),
            broken: false,
            dirty: false,
            dead: false,
        })
    }

    fn detach(&self, mut conn: FaultyConn, _: ResetMode) -> Result<FaultyConn, DriverError> {
        // Only a used session's reset on the resetter thread: a fresh one is detached by the
        // primer too, and a release resets inline when the resetter's backlog is full.
        let on_resetter = thread::current().name() == Some("pool-reset");
        if conn.dirty && on_resetter && conn.server.gate_next_reset.swap(false, SeqCst) {
            conn.server.gate.pass();
        }
        let outcome = conn.server.outcome();
        match outcome {
            Outcome::Works => {
                conn.dirty = false;
                Ok(conn)
            }
            Outcome::Fails => Err(DriverError::new(DriverErrorKind::Broken, "reset failed")),
            Outcome::Panics => panic!("model driver: reset panicked"),
            Outcome::Hangs => {
                model::block_for(HANG);
                Err(DriverError::new(
                    DriverErrorKind::Timeout,
                    "reset timed out",
                ))
            }
        }
    }

    fn attach(&self, handle: FaultyConn) -> Result<FaultyConn, DriverError> {
        if handle.dead {
            self.0.handed_out_dead.store(true, SeqCst);
        }
        Ok(handle)
    }

    fn connected(&self, conn: &mut FaultyConn, timeout: Duration) -> bool {
        match conn.server.outcome() {
            Outcome::Works => true,
            Outcome::Fails => {
                conn.dead = true;
                false
            }
            Outcome::Panics => panic!("model driver: liveness check panicked"),
            Outcome::Hangs => {
                model::block_for(timeout);
                conn.dead = true;
                false
            }
        }
    }
}

common::model_connection!(FaultyConn);

/// Runs `body` under the random scheduler and the PCT scheduler (depth 3).
///
/// `POOL_MODEL_REPLAY=<schedule>` replays one failing schedule instead, with the engine's and
/// shuttle's log lines on stderr (filtered by `RUST_LOG`, e.g. `pool_model=trace,shuttle=trace`).
fn check(body: fn()) {
    if let Ok(schedule) = std::env::var("POOL_MODEL_REPLAY") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
        shuttle::replay(move || quiet_driver_panics(body), &schedule);
        return;
    }
    common::check(move || quiet_driver_panics(body), common::iterations(4));
}

/// Runs `body` with the model driver's own panics (which the engine catches) kept out of
/// shuttle's panic hook: that hook reports the first panic of an execution as the failure,
/// caught or not, and would then miss the real one. Installed once, inside an execution
/// (shuttle installs its hook when the first check starts), in front of shuttle's.
fn quiet_driver_panics(body: fn()) {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let shuttles = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str));
            if !message.is_some_and(|m| m.starts_with(DRIVER_PANIC)) {
                shuttles(info);
            }
        }));
    });
    body();
}

/// How every panic of the model driver begins.
const DRIVER_PANIC: &str = "model driver:";

/// Short windows, so that time passing reaches them: validation, idle expiry, rotation,
/// sweeps; a warm floor for expiry to respect.
fn settings(max_open: usize) -> Settings {
    Settings {
        max_open,
        acquire_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        check_timeout: Duration::from_millis(500),
        validate_after: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(300),
        reap_interval: Duration::from_millis(250),
        max_lifetime: Some(Duration::from_millis(700)),
        // Two where there is room: a floor of one is what expiry keeps anyway (never the last).
        min_idle: max_open.min(2),
        ..Settings::default()
    }
}

/// A fresh execution with time passing, the faulty driver registered and configured.
fn start(settings: Settings) -> Arc<Server> {
    model::let_time_pass();
    let server = Arc::new(Server::default());
    pool_model::register(FaultyDriver(Arc::clone(&server))).expect("register");
    pool_model::configure("faulty", ARGS, settings).expect("configure");
    server
}

/// Opens, taking the answers a misbehaving driver and passing time may give; `None` if it
/// gave up.
fn open_or_give_up() -> Option<pool_model::Conn> {
    match pool_model::open("faulty", ARGS) {
        Ok(conn) => Some(conn),
        Err(Error::Connect { .. } | Error::Timeout(_) | Error::ShutDown) => None,
        Err(error) => panic!("open failed: {error}"),
    }
}

/// One caller: open, use (broken on its first round if `break_it`, else dirty on even rounds,
/// untouched on odd ones: a clean release detaches on the caller's thread), let time pass,
/// release; `rounds` times.
fn caller(rounds: usize, break_it: bool) {
    for round in 0..rounds {
        let Some(mut conn) = open_or_give_up() else {
            continue;
        };
        let dirty = conn
            .native::<FaultyConn>()
            .expect("a faulty connection")
            .dirty;
        assert!(
            !dirty,
            "open handed out a session whose reset had not finished"
        );
        if break_it && round == 0 {
            conn.execute("BREAK", &[]).expect("execute");
        } else if round % 2 == 0 {
            conn.query("SET x", &[]).expect("query");
        }
        model::advance(Duration::from_millis(100));
        let _ = conn.release();
    }
}

/// After the callers, with the driver behaving again: the background threads settle with
/// every duty done; then one caller can hold all `max_open` (nothing leaked), the server never
/// saw more than `max_open`, and shutdown leaves nothing open and nothing parked.
fn finish(server: &Server, max_open: usize) {
    // The driver behaves from here on; what it started before still ends as it does (a hung
    // call when its time is up, a failed prime after its backoff).
    server.misbehave.store(false, SeqCst);
    server.gate_primer.store(false, SeqCst);
    server.gate.open();
    model::settle(SETTLE_STEPS).expect("a duty neglected once the callers were done");
    let long = Settings {
        acquire_timeout: Duration::from_secs(3600),
        ..settings(max_open)
    };
    pool_model::configure("faulty", ARGS, long).expect("configure");
    let mut held = Vec::new();
    while held.len() < max_open {
        match pool_model::open("faulty", ARGS) {
            Ok(conn) => held.push(conn),
            Err(error) => panic!("open at the end failed (room leaked?): {error}"),
        }
    }
    drop(held);
    model::check_registry().expect("registry invariants");
    assert!(
        !server.handed_out_dead.load(SeqCst),
        "a connection that failed its liveness check was handed out"
    );
    pool_model::shutdown();
    model::settle(SETTLE_STEPS).expect("a duty neglected after shutdown");
    // A close that hung goes on after its room was freed: it ends when its network does.
    for _ in 0..SETTLE_STEPS {
        if server.live.load(SeqCst) == 0 {
            break;
        }
        thread::yield_now();
    }
    assert_eq!(
        server.live.load(SeqCst),
        0,
        "a connection outlived shutdown"
    );
}

/// Three callers on two connections while every driver call may fail, panic or hang, the
/// reaper sweeping (checks, idle expiry above the floor, rotation) as time passes: no room
/// leaks, no duty is neglected, nothing dirty is handed out.
#[test]
fn a_misbehaving_driver_leaks_no_room_and_no_duty() {
    check(|| {
        let server = start(settings(2));
        server.misbehave.store(true, SeqCst);
        let others: Vec<fn()> = vec![|| caller(2, true), || caller(2, false)];
        let others: Vec<_> = others.into_iter().map(thread::spawn).collect();
        caller(2, false);
        for other in others {
            other.join().expect("a caller panicked");
        }
        finish(&server, 2);
    });
}

/// Shutdown racing releases whose resets and closes misbehave: a reset or close finishing
/// after shutdown parks nothing (checked on every unlock), and everything settles.
#[test]
fn shutdown_racing_misbehaving_resets_parks_nothing() {
    check(|| {
        let server = start(settings(2));
        server.misbehave.store(true, SeqCst);
        let releaser = thread::spawn(|| caller(2, false));
        let breaker = thread::spawn(|| caller(1, true));
        pool_model::shutdown();
        releaser.join().expect("releaser");
        breaker.join().expect("breaker");
        pool_model::shutdown();
        model::settle(SETTLE_STEPS).expect("a duty neglected after shutdown");
    });
}

/// Settings for the gate tests: no sweeps and a long acquire timeout, so that no timer runs
/// but the ones the test is about (a wait of a minute or more never times out in the model).
fn only_the_engines_own_timers(max_open: usize) -> Settings {
    Settings {
        acquire_timeout: Duration::from_secs(3600),
        reap_interval: Duration::from_secs(120),
        idle_timeout: Duration::from_secs(3600),
        validate_after: Duration::from_secs(3600),
        max_lifetime: None,
        min_idle: 0,
        ..settings(max_open)
    }
}

/// A caller whose only hope is a reset that hangs (the primer, woken because the stack is
/// empty, takes one room and hangs connecting too) connects on its own with the last room
/// after its patience (1 s). Were it to keep waiting for the reset, no thread could ever run
/// again: a reported deadlock.
#[test]
fn a_waiter_counting_on_a_hung_reset_connects_after_its_patience() {
    check(|| {
        let server = start(only_the_engines_own_timers(3));
        server.gate_primer.store(true, SeqCst);
        let mut first = pool_model::open("faulty", ARGS).expect("first open");
        first.query("SET x", &[]).expect("query");
        server.gate_next_reset.store(true, SeqCst);
        first.release().expect("release");
        let before = model::now();
        let second = pool_model::open("faulty", ARGS).expect("served after its patience");
        let waited = model::now() - before;
        assert!(waited >= Duration::from_secs(1), "served after {waited:?}");
        drop(second);
        finish(&server, 3);
    });
}

/// A dead connection whose close hangs keeps its room at most the closer's grace (1 s): a
/// caller waiting at the limit then connects. Were the room kept until the close ends, no
/// thread could ever run again: a reported deadlock.
#[test]
fn a_close_that_hangs_frees_its_room_within_the_grace() {
    check(|| {
        let server = start(only_the_engines_own_timers(1));
        let mut only = pool_model::open("faulty", ARGS).expect("first open");
        only.execute("BREAK", &[]).expect("execute");
        server.gate_next_close.store(true, SeqCst);
        let before = model::now();
        drop(only);
        let next = pool_model::open("faulty", ARGS).expect("served within the grace");
        let waited = model::now() - before;
        assert!(waited >= Duration::from_secs(1), "served after {waited:?}");
        drop(next);
        finish(&server, 1);
    });
}

/// Releases while the resetter hangs: its backlog stays within its bound (the engine asserts
/// it on every submit), the releases beyond it reset on their own threads, and everything
/// settles once the reset ends.
#[test]
fn the_resetters_backlog_stays_bounded_while_a_reset_hangs() {
    check(|| {
        let server = start(only_the_engines_own_timers(4));
        let held: Vec<_> = (0..4)
            .map(|_| pool_model::open("faulty", ARGS).expect("open"))
            .collect();
        server.gate_next_reset.store(true, SeqCst);
        for mut conn in held {
            conn.query("SET x", &[]).expect("query");
            conn.release().expect("release");
        }
        finish(&server, 4);
    });
}
