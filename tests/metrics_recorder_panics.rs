//! A `metrics` recorder that panics (it is user code, called by the facade) must not take the
//! pool down: not the reaper thread, which publishes each pool's gauges after its sweep, and
//! not a connection's room, when the acquire histogram is recorded on the way out of `open`.
//! The recorder is process-global, so this file is a binary of its own. Feature `metrics`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use common::engine::{configure, open};
use common::fake::{new_db, quiet, reaping_quickly, stats};
use common::{wait_until, SOON};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use pool::Settings;

/// Panics on every registration while `PANICS` is set; records nowhere otherwise.
struct PanickingRecorder;

static PANICS: AtomicBool = AtomicBool::new(true);

fn maybe_panic(what: &str, key: &Key) {
    if PANICS.load(SeqCst) {
        panic!("the recorder panicked registering {what} {}", key.name());
    }
}

impl Recorder for PanickingRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        maybe_panic("counter", key);
        Counter::noop()
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        maybe_panic("gauge", key);
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        maybe_panic("histogram", key);
        Histogram::noop()
    }
}

fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        metrics::set_global_recorder(PanickingRecorder).expect("the only recorder");
    });
}

#[test]
fn a_panicking_recorder_does_not_kill_the_reaper() {
    install();
    let db = new_db("reaper");
    configure(&db, reaping_quickly());
    // The reaper publishes (and the recorder panics) after every sweep of this pool.
    let held: Vec<_> = (0..3).map(|_| open(&db)).collect();
    drop(held);
    wait_until(
        "the reaper closes idle connections down to one",
        SOON,
        || stats(&db).idle == 1,
    );
    // Still sweeping: more connections go idle and are reaped again.
    let held: Vec<_> = (0..3).map(|_| open(&db)).collect();
    drop(held);
    wait_until("the reaper, after many panics, still reaps", SOON, || {
        let s = stats(&db);
        s.idle == 1 && s.reaped_idle >= 4
    });
}

#[test]
fn a_panicking_acquire_histogram_costs_no_room() {
    install();
    let db = new_db("acquire");
    configure(
        &db,
        Settings {
            max_open: 1,
            acquire_timeout: Duration::from_millis(500),
            ..quiet()
        },
    );
    // Connect, then hand-outs from the parked stack: each records the acquire histogram, and
    // with max_open 1 a leaked room would make the next open time out.
    for _ in 0..5 {
        let conn = std::panic::catch_unwind(|| open(&db)).expect("open survives the recorder");
        conn.release().expect("release");
    }
    let s = stats(&db);
    assert_eq!((s.in_use, s.idle, s.timeouts), (0, 1, 0), "{s:?}");
}
