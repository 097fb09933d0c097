//! A logging layer that panics on the pool's background threads must not kill them: not the
//! resetter, stranding the connections queued for it (their `resetting` count would never come
//! back, and with a small `max_open` the key would wedge), and not the reaper, the one thread
//! for every pool, which would then never close an idle or dead connection again. The
//! subscriber is process-global, so these tests have a binary of their own.

mod common;

use std::thread;

use common::engine::{configure, db, open};
use common::fake::{quiet, reaping_quickly, stats};
use common::{after_resets, wait_until, SOON};
use pool::Settings;
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Panics on every event logged on a `pool-reset` or `pool-reaper` thread.
struct PanicsOnBackgroundThreads;

impl<S: Subscriber> Layer<S> for PanicsOnBackgroundThreads {
    fn on_event(&self, _event: &Event<'_>, _ctx: Context<'_, S>) {
        if let Some(name @ ("pool-reset" | "pool-reaper")) = thread::current().name() {
            panic!("a logging layer panicked on the {name} thread");
        }
    }
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
