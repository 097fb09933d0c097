//! A logging layer that panics on the pool's background threads must not kill them: not the
//! resetter, stranding the connections queued for it (their `resetting` count would never come
//! back, and with a small `max_open` the key would wedge), not the reaper, the one thread
//! for every pool, which would then never close an idle or dead connection again, not the
//! primer, and not the closer's watchdog. On a caller's thread it may fail that caller, but
//! never keep a connection's room counted. The subscriber is process-global, so these tests
//! have a binary of their own.

mod common;

use std::sync::Arc;
use std::thread;

use common::engine::{configure, db, open};
use common::fake::{quiet, reaping_quickly, stats};
use common::{after_resets, wait_until, SOON};
use pool::Settings;
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Callers whose thread name starts with this have every event they log panic.
const PANICS_ON_LOG: &str = "panics-on-log";

/// Panics on every event logged on a pool background thread (`pool-reset`, `pool-reaper`,
/// `pool-primer`, `pool-closer`) or a caller thread named `panics-on-log…`.
struct PanicsOnBackgroundThreads;

impl<S: Subscriber> Layer<S> for PanicsOnBackgroundThreads {
    fn on_event(&self, _event: &Event<'_>, _ctx: Context<'_, S>) {
        let current = thread::current();
        let Some(name) = current.name() else { return };
        if matches!(
            name,
            "pool-reset" | "pool-reaper" | "pool-primer" | "pool-closer"
        ) || name.starts_with(PANICS_ON_LOG)
        {
            panic!("a logging layer panicked on the {name} thread");
        }
    }
}

/// Runs `body` on a caller thread whose logging panics; whether it panicked.
fn on_a_panicking_caller(body: impl FnOnce() + Send + 'static) -> bool {
    thread::Builder::new()
        .name(format!("{PANICS_ON_LOG}-caller"))
        .spawn(body)
        .expect("spawn")
        .join()
        .is_err()
}

/// Once the closes in flight are done, every one of `db`'s `max_open` rooms can be held at
/// once: none was lost.
fn every_room_comes_back(db: &common::fake::FakeDb) {
    wait_until("the closes in flight are done", SOON, || {
        let s = stats(db);
        s.opening == 0 && s.in_use == 0
    });
    every_room_is_free(db);
}

/// Every one of `db`'s `max_open` rooms can be held at once: none was lost.
fn every_room_is_free(db: &common::fake::FakeDb) {
    let max_open = stats(db).max_open;
    let all: Vec<_> = (0..max_open).map(|_| open(db)).collect();
    assert_eq!(all.len(), max_open, "every room is free");
}

fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(PanicsOnBackgroundThreads);
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    });
}

#[test]
fn a_panicking_logger_does_not_strand_queued_resets() {
    install();
    let db = db();
    configure(
        &db,
        Settings {
            max_open: 2,
            ..quiet()
        },
    );
    for round in 0..4 {
        let mut conn = open(&db);
        conn.execute("SET leaked", &[]).expect("a statement");
        conn.release().expect("release");
        let s = after_resets(|| stats(&db));
        assert_eq!((s.resetting, s.in_use), (0, 0), "round {round}: {s:?}");
    }
    let s = stats(&db);
    // The reset connection is parked (the primer may have parked a spare beside it).
    assert!((1..=2).contains(&s.idle), "{s:?}");
}

#[test]
fn a_panicking_logger_does_not_kill_the_reaper() {
    install();
    let db = db();
    configure(&db, reaping_quickly());
    // Each sweep that reaps logs it (and the logger panics): the reaper must go on sweeping,
    // and the connections it took to close must not stay counted.
    for round in 0..3 {
        let held: Vec<_> = (0..3).map(|_| open(&db)).collect();
        drop(held);
        wait_until(
            "the reaper closes idle connections down to one",
            SOON,
            || {
                let s = stats(&db);
                s.idle == 1 && s.opening == 0 && s.reaped_idle >= 2 * (round + 1)
            },
        );
    }
    let s = stats(&db);
    assert_eq!((s.in_use, s.resetting, s.opening), (0, 0, 0), "{s:?}");
    let all: Vec<_> = (0..s.max_open).map(|_| open(&db)).collect();
    assert_eq!(all.len(), s.max_open, "every room is free");
}

#[test]
fn a_panicking_logger_on_the_reaper_loses_no_room_when_a_driver_panics_closing() {
    install();
    let db = db();
    db.panic_on_close
        .store(true, std::sync::atomic::Ordering::SeqCst);
    configure(&db, reaping_quickly());
    // The reaper closes two idle connections; the driver panics in each close, the guard
    // logs it, and the logger panics on the reaper thread: the rooms must still come back.
    let held: Vec<_> = (0..3).map(|_| open(&db)).collect();
    drop(held);
    wait_until(
        "the idle connections are closed and uncounted",
        SOON,
        || {
            let s = stats(&db);
            s.idle == 1 && s.opening == 0 && s.reaped_idle >= 2
        },
    );
    db.panic_on_close
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let s = stats(&db);
    let all: Vec<_> = (0..s.max_open).map(|_| open(&db)).collect();
    assert_eq!(all.len(), s.max_open, "every room is free");
}

#[test]
fn a_panicking_logger_on_the_reaper_does_not_stop_the_primer_after_a_rotation() {
    install();
    let db = db();
    configure(
        &db,
        Settings {
            max_lifetime: Some(std::time::Duration::from_millis(60)),
            ..reaping_quickly()
        },
    );
    open(&db).release().expect("release");
    // The reaper rotates the parked connection out (and logs it: the logger panics); the
    // primer must still be asked for a fresh one, again and again.
    wait_until(
        "rotated several times, a fresh one primed each time",
        SOON,
        || {
            let s = stats(&db);
            s.rotated >= 3 && s.idle == 1
        },
    );
}

/// Releasing a broken connection logs it: the room must be settled first (it was left counted
/// in use for good, and with `max_open` 1 every later `open` timed out).
#[test]
fn a_panicking_logger_on_a_caller_loses_no_room_releasing_a_broken_connection() {
    install();
    let db = db();
    configure(
        &db,
        Settings {
            max_open: 1,
            ..quiet()
        },
    );
    let caller_db = Arc::clone(&db);
    on_a_panicking_caller(move || {
        let mut conn = open(&caller_db);
        conn.execute("BREAK", &[]).expect("a statement");
        let _ = conn.release();
    });
    every_room_comes_back(&db);
}

/// `open` that finds its parked connection dead logs it: the dead one's room must be settled
/// first (it stayed counted in use).
#[test]
fn a_panicking_logger_on_a_caller_loses_no_room_dropping_a_dead_parked_connection() {
    install();
    let db = db();
    configure(
        &db,
        Settings {
            max_open: 2,
            ..quiet()
        },
    );
    let (parked, mut broken) = (open(&db), open(&db));
    parked.release().expect("release");
    // A broken release makes every parked connection suspect: checked before hand-out.
    broken.execute("BREAK", &[]).expect("a statement");
    broken.release().expect("release");
    db.restart();
    let caller_db = Arc::clone(&db);
    let panicked = on_a_panicking_caller(move || {
        let _ = pool::open("fake", &common::fake::args(&caller_db));
    });
    assert!(panicked, "the caller's log line panicked");
    every_room_comes_back(&db);
}

/// The closer's watchdog frees the room of a close that hangs after 1 s, and logs it: the
/// room must be freed first (its panic kept the room until the close finished, here never).
#[test]
fn a_panicking_logger_on_the_closer_watchdog_still_frees_a_hung_close_in_time() {
    install();
    let db = db();
    configure(
        &db,
        Settings {
            max_open: 1,
            acquire_timeout: std::time::Duration::from_secs(5),
            ..quiet()
        },
    );
    let mut conn = open(&db);
    conn.execute("BREAK", &[]).expect("a statement");
    db.close_gate.close();
    conn.release().expect("release");
    // The close hangs at the gate; the watchdog frees its room after its 1 s grace.
    let next = pool::open("fake", &common::fake::args(&db));
    db.close_gate.open();
    next.expect("the hung close's room came back within the grace period");
}

/// The primer's own log lines panic: it goes on priming whenever the stack empties, and a
/// success it could not log is still a success (no connection added beyond the one asked).
#[test]
fn a_panicking_logger_on_the_primer_does_not_stop_priming() {
    install();
    let db = db();
    configure(&db, quiet());
    open(&db).release().expect("release");
    for round in 1..=3 {
        // `round` are parked: taking the last of them asks the primer for one more.
        let held: Vec<_> = (0..round).map(|_| open(&db)).collect();
        wait_until("the primer parked a spare", SOON, || {
            let s = stats(&db);
            s.idle == 1 && s.opening == 0
        });
        drop(held);
        let s = after_resets(|| stats(&db));
        assert_eq!(
            s.opened,
            round + 1,
            "round {round}: one spare per emptied stack: {s:?}"
        );
    }
}
