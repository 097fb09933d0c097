//! The primer: when an open takes the last parked connection, a background connect parks one
//! more; a failing connect is retried with growing back-off, never given up, until the database
//! heals; a key whose connects hang does not delay priming of another key.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use common::engine::{configure, db, open};
use common::fake::{new_db, quiet, stats, FakeDb};
use common::{wait_until, SOON};
use pool::Settings;
use rstest::rstest;

#[rstest]
fn primer_parks_one_more_when_the_stack_empties(db: Arc<FakeDb>) {
    configure(&db, quiet());
    open(&db).release().unwrap();
    let held = open(&db); // takes the last parked one
    wait_until("the primer parks a connection", SOON, || {
        stats(&db).idle == 1
    });
    assert_eq!(db.live(), 2);
    drop(held);
    assert_eq!(stats(&db).idle, 2);
}

#[rstest]
fn failing_primer_backs_off_and_never_gives_up(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            primer_backoff_max: Duration::from_millis(200),
            ..quiet()
        },
    );
    open(&db).release().unwrap();
    db.fail_connect.store(true, SeqCst);
    let before = db.connect_attempts.load(SeqCst);
    // Empties the stack: the primer starts failing.
    let held = open(&db);
    // Backoff 50, 100, 200, 200 ms (each with jitter down to half): attempt 5 happens
    // after at least 25+50+100+100 ms; a busy loop would reach it in microseconds.
    let started = std::time::Instant::now();
    wait_until("the primer retries several times", SOON, || {
        db.connect_attempts.load(SeqCst) >= before + 5
    });
    assert!(
        started.elapsed() >= Duration::from_millis(275),
        "retries too fast: {:?}",
        started.elapsed()
    );
    assert_eq!(stats(&db).idle, 0);
    db.fail_connect.store(false, SeqCst);
    wait_until("the primer succeeds after the database heals", SOON, || {
        stats(&db).idle == 1
    });
    assert!(stats(&db).connect_failures >= 5);
    drop(held);
}

#[rstest]
fn a_slow_key_does_not_delay_priming_of_another(db: Arc<FakeDb>) {
    let other = new_db("engine-other");
    configure(&db, quiet());
    configure(&other, quiet());
    open(&db).release().unwrap();
    open(&other).release().unwrap();
    db.connect_gate.close(); // db's connects now hang
    let held_slow = open(&db);
    wait_until("the slow primer is stuck connecting", SOON, || {
        db.connect_gate.arrived() == 2
    });
    let held_fast = open(&other);
    wait_until("the other key is primed", SOON, || stats(&other).idle == 1);
    assert_eq!(stats(&db).opening, 1, "the slow key is still connecting");
    db.connect_gate.open();
    wait_until("the slow key is primed too", SOON, || stats(&db).idle == 1);
    drop((held_slow, held_fast));
}

/// A driver that cannot detach has nothing to park: the reaper's "keep one warm" rule must not
/// make the primer connect and close again and again.
#[test]
fn a_driver_that_cannot_detach_is_never_primed() {
    let nodetach = new_db("nodetach");
    let settings = Settings {
        reap_interval: Duration::from_millis(5),
        ..quiet()
    };
    let nodetach_args = format!("db={}", nodetach.name);
    pool::configure("fake-nodetach", &nodetach_args, settings.clone()).unwrap();
    pool::open("fake-nodetach", &nodetach_args)
        .unwrap()
        .release()
        .unwrap();
    assert_eq!(nodetach.live(), 0);
    // Watch the reaper sweep twice through another pool it serves, which shrinks when swept.
    let other = new_db("swept");
    configure(
        &other,
        Settings {
            idle_timeout: Duration::from_millis(1),
            ..settings
        },
    );
    for sweeps in 1..=2 {
        let (a, b) = (open(&other), open(&other));
        a.release().unwrap();
        b.release().unwrap();
        wait_until("the reaper swept", SOON, || {
            stats(&other).reaped_idle >= sweeps
        });
    }
    assert_eq!(
        nodetach.connect_attempts.load(SeqCst),
        1,
        "only the caller's own connect"
    );
    assert_eq!(stats_of_nodetach(&nodetach_args).opened, 1);
}

fn stats_of_nodetach(args: &str) -> pool::Stats {
    pool::stats("fake-nodetach", args).unwrap()
}
