//! Model checking of the engine with shuttle: the real engine code (registry, key pool, core,
//! fast slot, waiters, primer, reaper), compiled against shuttle's primitives, driven by 2–3
//! threads on a small pool, under shuttle's randomized and PCT schedulers.
//!
//! What every execution asserts:
//! * **no lost wake-up**: a caller waiting at the limit is always woken once a connection is
//!   free (shuttle's timed waits never time out, so a waiter nobody wakes is reported as a
//!   deadlock);
//! * **no over-allocation**: the driver never sees more than `max_open` live connections;
//! * **no count leaked, no connection lost**: at the end one caller can hold all `max_open`
//!   connections at once, and after shutdown the driver has no live connection left;
//! * **shutdown always completes**: it joins the primer and reaper (a thread left running is
//!   reported as a deadlock), after which no connection is left open;
//! * **the registry never hands out a shut pool** and runs a reaper while it holds pools;
//! * **reset before reuse**: a connection released dirty is reset on the pool's resetter thread
//!   (racing the callers), and `open` never hands out a session whose reset has not finished.
//!
//! `POOL_MODEL_ITERATIONS` (default 1000) sets the schedules per test and scheduler; a failure
//! prints a schedule that `shuttle::replay` reproduces. See ARCHITECTURE.md, "Proving it".

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use pool_model::{
    model, ConnArgs, Driver, DriverError, DriverErrorKind, Error, ResetMode, Settings,
};
use shuttle::thread;

/// Live connections as the "server" counts them, and the most ever live at once.
#[derive(Default)]
struct Server {
    /// Set by a test once its `shutdown` returned.
    shut: AtomicBool,
    live: AtomicUsize,
    peak: AtomicUsize,
    next: AtomicUsize,
}

struct ModelDriver(Arc<Server>);

struct ModelConn {
    server: Arc<Server>,
    /// Which server connection it is.
    id: usize,
    broken: bool,
    /// A statement changed its session and no reset ran since: it must never be handed out.
    dirty: bool,
    /// Its connect finished after a `shutdown` of its pool had returned.
    opened_after_shutdown: bool,
}

impl Drop for ModelConn {
    fn drop(&mut self) {
        self.server.live.fetch_sub(1, SeqCst);
    }
}

impl Driver for ModelDriver {
    type Conn = ModelConn;
    type Handle = ModelConn;

    fn name(&self) -> &str {
        "model"
    }

    fn connect(&self, _: &ConnArgs, _: Duration) -> Result<ModelConn, DriverError> {
        let server = &self.0;
        // Every third connect fails: exercises freed reservations.
        let id = server.next.fetch_add(1, SeqCst);
        if id % 3 == 2 {
            return Err(DriverError::new(DriverErrorKind::Connect, "refused"));
        }
        let live = server.live.fetch_add(1, SeqCst) + 1;
        server.peak.fetch_max(live, SeqCst);
        Ok(ModelConn {
            server: Arc::clone(server),
            id,
            broken: false,
            dirty: false,
            opened_after_shutdown: server.shut.load(SeqCst),
        })
    }

    fn detach(&self, mut conn: ModelConn, _: ResetMode) -> Result<ModelConn, DriverError> {
        conn.dirty = false;
        Ok(conn)
    }

    fn attach(&self, handle: ModelConn) -> Result<ModelConn, DriverError> {
        Ok(handle)
    }

    fn connected(&self, _: &mut ModelConn, _: Duration) -> bool {
        true
    }
}

common::model_connection!(ModelConn);

const ARGS: &str = "db=model";

/// Runs `body` under the random scheduler and the PCT scheduler (depth 3).
fn check(body: fn()) {
    common::check(body, common::iterations(1));
}

/// A fresh execution (its own registry and virtual clock): the model driver registered.
fn start(max_open: usize, acquire_timeout: Duration) -> Arc<Server> {
    let server = Arc::new(Server::default());
    pool_model::register(ModelDriver(Arc::clone(&server))).expect("register");
    pool_model::configure("model", ARGS, settings(max_open, acquire_timeout)).expect("configure");
    server
}

/// Small windows, so the moving virtual clock reaches them: hand-off to a starving waiter
/// (1 ms), validation before hand-out, idle expiry, rotation and reaping.
fn settings(max_open: usize, acquire_timeout: Duration) -> Settings {
    Settings {
        max_open,
        acquire_timeout,
        validate_after: Duration::from_millis(2),
        idle_timeout: Duration::from_millis(3),
        reap_interval: Duration::from_millis(1),
        // Connections age out too: rotation on release, on open and by the reaper races the rest.
        max_lifetime: Some(Duration::from_millis(2)),
        ..Settings::default()
    }
}

/// After every worker is done: no count leaked (all `max_open` connections can be held at
/// once; a leaked count would leave this caller waiting forever, which shuttle reports as a
/// deadlock), the limit held, and shutdown completes and closes everything.
fn finish(server: &Server, max_open: usize) {
    // Waits may be long now: a count leaked would make this caller wait forever.
    pool_model::configure("model", ARGS, settings(max_open, Duration::from_secs(30)))
        .expect("configure");
    let mut held = Vec::new();
    while held.len() < max_open {
        match pool_model::open("model", ARGS) {
            Ok(conn) => held.push(conn),
            Err(Error::Connect { .. }) => {}
            Err(error) => panic!("open at the end failed: {error}"),
        }
    }
    drop(held);
    assert!(
        server.peak.load(SeqCst) <= max_open,
        "the server saw {} connections with max_open {max_open}",
        server.peak.load(SeqCst)
    );
    model::check_registry().expect("registry invariants");
    pool_model::shutdown();
    assert_eq!(
        server.live.load(SeqCst),
        0,
        "a connection outlived shutdown"
    );
}

/// One worker: open, maybe break it, let time pass, release; `rounds` times.
fn worker(rounds: usize, break_it: bool, allow_timeout: bool) {
    for round in 0..rounds {
        match pool_model::open("model", ARGS) {
            Ok(mut conn) => {
                let dirty = conn
                    .native::<ModelConn>()
                    .expect("a model connection")
                    .dirty;
                assert!(
                    !dirty,
                    "open handed out a session whose reset had not finished"
                );
                if break_it && round == 0 {
                    conn.execute("BREAK", &[]).expect("execute");
                } else if round % 2 == 0 {
                    // Released dirty: reset on the resetter thread, racing the other callers.
                    conn.query("SET x", &[]).expect("query");
                }
                model::advance(Duration::from_micros(700));
                let _ = conn.release();
            }
            Err(Error::Connect { .. }) => {}
            Err(Error::Timeout(_)) if allow_timeout => {}
            Err(error) => panic!("open failed: {error}"),
        }
    }
}

/// Runs `others` on threads of their own and `here` on this one, joins them all, then checks
/// the end state (`finish`).
fn run(server: &Server, max_open: usize, others: Vec<fn()>, here: fn()) {
    let threads: Vec<_> = others.into_iter().map(thread::spawn).collect();
    here();
    for handle in threads {
        handle.join().expect("a checked thread panicked");
    }
    finish(server, max_open);
}

/// Two or three callers on one or two connections, one of them breaking its connection, with
/// time passing (hand-off window, validation) and a configure that wakes the reaper.
#[test]
fn callers_at_the_limit_are_always_served() {
    check(|| {
        let server = start(1, Duration::from_secs(30));
        let others: Vec<fn()> = vec![|| worker(2, true, false), || worker(2, false, false)];
        run(&server, 1, others, || worker(1, false, false));
    });
}

#[test]
fn three_callers_on_two_connections_with_the_reaper_sweeping() {
    check(|| {
        let server = start(2, Duration::from_secs(30));
        let reaper_nudge: fn() = || {
            model::advance(Duration::from_millis(4));
            // Re-applying settings wakes the reaper: a sweep races the callers.
            pool_model::configure("model", ARGS, settings(2, Duration::from_secs(30)))
                .expect("configure");
        };
        let others: Vec<fn()> = vec![
            || worker(2, false, false),
            || worker(2, true, false),
            reaper_nudge,
        ];
        run(&server, 2, others, || worker(2, false, false));
    });
}

/// Zero acquire timeout: every wait gives up at once, racing the grants being handed to it.
#[test]
fn timeouts_racing_grants_lose_nothing() {
    check(|| {
        let server = start(1, Duration::ZERO);
        let others: Vec<fn()> = vec![|| worker(2, false, true), || worker(2, true, true)];
        run(&server, 1, others, || worker(2, false, true));
    });
}

/// Shutdown racing callers: every call ends (served or `ShutDown`), nothing stays open, and
/// the registry never keeps a shut pool (a later `open` gets a fresh one).
#[test]
fn shutdown_racing_callers_completes_and_leaves_nothing_open() {
    check(|| {
        let max_open = 1;
        let server = start(max_open, Duration::from_secs(30));
        let caller = |rounds| {
            move || {
                for _ in 0..rounds {
                    match pool_model::open("model", ARGS) {
                        Ok(conn) => drop(conn),
                        Err(Error::ShutDown | Error::Connect { .. }) => {}
                        Err(error) => panic!("open failed: {error}"),
                    }
                }
            }
        };
        let a = thread::spawn(caller(2));
        let b = thread::spawn(caller(1));
        pool_model::shutdown();
        a.join().expect("caller a");
        b.join().expect("caller b");
        model::check_registry().expect("registry invariants");
        // Whatever the interleaving, the same args work again afterwards.
        loop {
            match pool_model::open("model", ARGS) {
                Ok(conn) => {
                    drop(conn);
                    break;
                }
                Err(Error::Connect { .. }) => {}
                Err(error) => panic!("open after shutdown failed: {error}"),
            }
        }
        pool_model::shutdown();
        assert_eq!(
            server.live.load(SeqCst),
            0,
            "a connection outlived shutdown"
        );
    });
}

/// Opens, retrying the model driver's refused connects.
fn open_retrying() -> pool_model::Conn {
    loop {
        match pool_model::open("model", ARGS) {
            Ok(conn) => return conn,
            Err(Error::Connect { .. }) => {}
            Err(error) => panic!("open failed: {error}"),
        }
    }
}

/// A waiter granted room just before a shutdown must not be handed a connection whose connect
/// finished after the shutdown returned (a connection the shut pool would never close).
#[test]
fn room_granted_before_shutdown_opens_nothing_after_it() {
    check(|| {
        let server = start(1, Duration::from_secs(30));
        let mut held = open_retrying();
        let waiter = thread::spawn(|| match pool_model::open("model", ARGS) {
            Ok(conn) => {
                let conn_state = conn.native::<ModelConn>().expect("a model connection");
                assert!(
                    !conn_state.opened_after_shutdown,
                    "open handed out a connection opened after shutdown returned"
                );
                drop(conn);
            }
            Err(Error::ShutDown | Error::Connect { .. }) => {}
            Err(error) => panic!("open failed: {error}"),
        });
        while pool_model::stats("model", ARGS).map_or(0, |s| s.waiting) == 0 {
            thread::yield_now();
        }
        // Breaking the held connection frees its room: a permit for the waiter.
        held.execute("BREAK", &[]).expect("execute");
        drop(held);
        pool_model::shutdown();
        server.shut.store(true, SeqCst);
        waiter.join().expect("waiter");
        pool_model::shutdown();
        assert_eq!(
            server.live.load(SeqCst),
            0,
            "a connection outlived shutdown"
        );
    });
}

/// Two concurrent `shutdown` calls both return only once everything is closed.
#[test]
fn concurrent_shutdowns_both_complete() {
    check(|| {
        let server = start(1, Duration::from_secs(30));
        open_retrying().release().expect("release");
        let other = {
            let server = Arc::clone(&server);
            thread::spawn(move || {
                pool_model::shutdown();
                assert_eq!(server.live.load(SeqCst), 0, "shutdown returned too early");
            })
        };
        pool_model::shutdown();
        assert_eq!(server.live.load(SeqCst), 0, "shutdown returned too early");
        other.join().expect("other shutdown");
    });
}

/// A `RollbackOnly` reset runs on the releasing thread, a full one on the resetter: a
/// configure switching the mode back and forth races releases that have already counted their
/// reset, so some of them reset inline and some on the resetter. Nothing leaks, nothing dirty
/// is handed out.
#[test]
fn resets_inline_and_in_background_while_the_reset_mode_switches() {
    check(|| {
        let server = start(2, Duration::from_secs(30));
        let switch: fn() = || {
            for reset_mode in [
                ResetMode::RollbackOnly,
                ResetMode::Full,
                ResetMode::RollbackOnly,
            ] {
                let s = Settings {
                    reset_mode,
                    ..settings(2, Duration::from_secs(30))
                };
                pool_model::configure("model", ARGS, s).expect("configure");
            }
        };
        let others: Vec<fn()> = vec![|| worker(2, false, false), switch];
        run(&server, 2, others, || worker(3, false, false));
    });
}

/// `configure` for a key racing `configure_defaults`: once `configure` has returned, its
/// settings hold, whichever of the two ran first (the defaults never overwrite a key
/// configured on its own).
#[test]
fn configure_wins_over_a_racing_configure_defaults() {
    check(|| {
        let server = Arc::new(Server::default());
        pool_model::register(ModelDriver(Arc::clone(&server))).expect("register");
        // The pool exists on the defaults, not configured on its own yet.
        pool_model::stats("model", ARGS).expect("stats");
        let defaults = thread::spawn(|| {
            pool_model::configure_defaults(settings(1, Duration::from_secs(30)))
                .expect("configure_defaults");
        });
        pool_model::configure("model", ARGS, settings(3, Duration::from_secs(30)))
            .expect("configure");
        defaults.join().expect("configure_defaults thread");
        let max_open = pool_model::stats("model", ARGS).expect("stats").max_open;
        assert_eq!(max_open, 3, "the defaults overwrote the key's own settings");
        pool_model::shutdown();
    });
}

/// LIFO by release order, whatever the resets do: three connections released in order a
/// (dirty), b (clean: parked at once, in the fast slot), c (dirty), while the resetter thread
/// races the releases (a reset may finish before or after the next release, and a release may
/// find the resetter's queue full and reset inline). Once every reset is done, the next opens
/// get c, b, a.
#[test]
fn hand_out_order_is_release_order_whatever_the_resets_do() {
    check(|| {
        let server = start(3, Duration::from_secs(30));
        let mut held: Vec<_> = (0..3).map(|_| open_retrying()).collect();
        let ids: Vec<usize> = held
            .iter()
            .map(|c| c.native::<ModelConn>().expect("a model connection").id)
            .collect();
        for (index, conn) in held.iter_mut().enumerate() {
            if index != 1 {
                conn.query("SET x", &[]).expect("query");
            }
        }
        for conn in held {
            conn.release().expect("release");
        }
        while pool_model::stats("model", ARGS).expect("stats").resetting > 0 {
            thread::yield_now();
        }
        let again: Vec<_> = (0..3).map(|_| open_retrying()).collect();
        let got: Vec<usize> = again
            .iter()
            .map(|c| c.native::<ModelConn>().expect("a model connection").id)
            .collect();
        assert_eq!(
            got,
            [ids[2], ids[1], ids[0]],
            "not the reverse of the release order"
        );
        drop(again);
        finish(&server, 3);
    });
}
