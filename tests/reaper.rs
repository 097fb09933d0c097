//! The reaper: connections idle past `idle_timeout` are closed down to one kept warm, without
//! churn; dead parked connections are dropped and a fresh one primed; it checks one connection at
//! a time while the others stay parked and usable.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use common::engine::{configure, db, id, open};
use common::fake::{args, quiet, reaping_quickly, stats, FakeConn, FakeDb};
use common::{wait_until, SOON};
use pool::Settings;
use rstest::rstest;

fn reaping() -> Settings {
    Settings {
        validate_after: Duration::from_millis(5),
        ..reaping_quickly()
    }
}

#[rstest]
fn reaper_closes_idle_connections_but_keeps_one_and_does_not_churn(db: Arc<FakeDb>) {
    configure(&db, reaping());
    let conns: Vec<_> = (0..5).map(|_| open(&db)).collect();
    drop(conns);
    wait_until("idle connections are reaped down to one", SOON, || {
        db.live() == 1
    });
    let s = stats(&db);
    assert_eq!((s.idle, s.reaped_idle), (1, 4));
    let opened = s.opened;
    // Let the reaper sweep several more times (each sweep checks the one left).
    let checks = db.checks.load(SeqCst);
    wait_until("three more sweeps", SOON, || {
        db.checks.load(SeqCst) >= checks + 3
    });
    let s = stats(&db);
    assert_eq!(
        (db.live(), s.opened, s.reaped_idle),
        (1, opened, 4),
        "no churn"
    );
}

#[rstest]
fn reaper_drops_dead_connections_and_primes_one(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            idle_timeout: Duration::from_secs(3600),
            ..reaping()
        },
    );
    let conns: Vec<_> = (0..3).map(|_| open(&db)).collect();
    drop(conns);
    db.restart();
    wait_until("dead ones dropped and one primed", SOON, || {
        let s = stats(&db);
        s.dropped_dead == 3 && s.idle == 1
    });
    let conn = open(&db);
    assert_eq!(
        conn.native::<FakeConn>().unwrap().id,
        4,
        "a fresh connection"
    );
}

#[rstest]
fn reaper_checks_one_at_a_time_and_leaves_the_rest_usable(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            idle_timeout: Duration::from_secs(3600),
            ..reaping()
        },
    );
    let conns: Vec<_> = (0..3).map(|_| open(&db)).collect();
    db.check_gate.close();
    drop(conns);
    wait_until("the reaper is checking one", SOON, || {
        db.check_gate.arrived() >= 1
    });
    let s = stats(&db);
    assert_eq!(
        (s.idle, s.opening),
        (2, 1),
        "one taken out for the check, two still parked"
    );
    // validate_after is 5 ms and the handles are older, so an open would check too (and block
    // at the gate): give the caller a window in which no check is needed.
    pool::configure(
        "fake",
        &args(&db),
        Settings {
            validate_after: Duration::from_secs(3600),
            // As above: this test is about checks, not idle expiry (settings changed on a live
            // pool apply at once, so a short idle_timeout here would reap the parked ones).
            idle_timeout: Duration::from_secs(3600),
            ..reaping()
        },
    )
    .unwrap();
    let conn = open(&db);
    assert_eq!(stats(&db).idle, 1);
    drop(conn);
    db.check_gate.open();
    wait_until("the checked one is back", SOON, || stats(&db).idle == 3);
}

/// Settings changed on a pool that already exists take effect at once, not after the old
/// `reap_interval` (an hour here).
#[rstest]
fn a_new_reap_schedule_applies_to_an_existing_pool(db: Arc<FakeDb>) {
    configure(&db, quiet());
    let conns: Vec<_> = (0..4).map(|_| open(&db)).collect();
    drop(conns);
    assert_eq!(stats(&db).idle, 4);
    configure(
        &db,
        Settings {
            idle_timeout: Duration::from_millis(20),
            reap_interval: Duration::from_millis(10),
            ..quiet()
        },
    );
    wait_until("the spike is reaped under the new settings", SOON, || {
        stats(&db).idle == 1
    });
}

/// `max_lifetime`: a connection is never closed while in use; past its lifetime it is closed on
/// release, a parked one is rotated out by the reaper, and each is replaced by the primer so
/// the pool does not drop to zero.
#[rstest]
fn connections_past_max_lifetime_are_rotated_never_while_in_use(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            max_lifetime: Some(Duration::from_millis(40)),
            reap_interval: Duration::from_millis(10),
            ..quiet()
        },
    );
    let held = open(&db);
    let first = id(&held);
    // Time passes beyond the lifetime while the reaper sweeps every 10 ms.
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(db.live(), 1, "never closed while in use");
    assert_eq!(stats(&db).rotated, 0);
    held.release().unwrap();
    wait_until("it was rotated on release and replaced", SOON, || {
        let s = stats(&db);
        s.rotated == 1 && s.idle == 1
    });
    let replacement = open(&db);
    let second = id(&replacement);
    assert_ne!(second, first);
    replacement.release().unwrap();
    // Parked, it ages out too: the reaper rotates it and the primer parks a new one.
    wait_until(
        "the parked one is rotated by the reaper and replaced",
        SOON,
        || {
            let s = stats(&db);
            s.rotated >= 2 && s.idle == 1
        },
    );
    let latest = open(&db);
    assert_ne!(id(&latest), second);
    assert!(db.peak.load(SeqCst) <= 2, "peak {}", db.peak.load(SeqCst));
}

/// `min_idle`: after a spike the reaper shrinks the pool to the warm floor, not below, and a
/// pool below its floor is filled by the primer, one connection after another.
#[rstest]
fn a_warm_floor_of_min_idle_connections_is_kept_and_filled(db: Arc<FakeDb>) {
    let floor_of_three = Settings {
        max_open: 5,
        min_idle: 3,
        idle_timeout: Duration::from_millis(20),
        reap_interval: Duration::from_millis(10),
        ..quiet()
    };
    configure(&db, floor_of_three.clone());
    let spike: Vec<_> = (0..5).map(|_| open(&db)).collect();
    drop(spike);
    wait_until("the spike shrinks to the floor", SOON, || {
        stats(&db).idle == 3 && db.live() == 3
    });
    // Rotate everything away by restarting the server: the reaper finds them dead and the
    // primer fills the floor again.
    db.restart();
    configure(
        &db,
        Settings {
            validate_after: Duration::from_millis(1),
            ..floor_of_three
        },
    );
    wait_until("the floor is filled with live connections", SOON, || {
        let s = stats(&db);
        s.idle == 3 && s.dropped_dead >= 3 && db.live() == 3
    });
    assert!(db.peak.load(SeqCst) <= 5, "peak {}", db.peak.load(SeqCst));
}

#[test]
fn min_idle_above_max_open_is_refused() {
    let settings = Settings {
        max_open: 2,
        min_idle: 3,
        ..Settings::default()
    };
    match pool::configure("fake", "db=unused_min_idle", settings) {
        Err(pool::Error::InvalidSettings { message }) => {
            assert!(message.contains("min_idle"), "{message}")
        }
        other => panic!("expected InvalidSettings, got {other:?}"),
    }
}

/// Keys never hold each other up in the reaper: when one key's parked connections sit on a
/// silent network (each check runs into `check_timeout`), the reaper checks one of them per
/// sweep instead of all, so another key's idle connections are still reaped on time.
#[rstest]
fn a_silent_key_does_not_hold_up_the_reaper_for_others(db: Arc<FakeDb>) {
    const CHECK: Duration = Duration::from_millis(400);
    let silent = db;
    configure(
        &silent,
        Settings {
            validate_after: Duration::from_millis(1),
            check_timeout: CHECK,
            reap_interval: Duration::from_millis(20),
            ..quiet()
        },
    );
    let conns: Vec<_> = (0..4).map(|_| open(&silent)).collect();
    drop(conns);
    silent
        .check_delay_ms
        .store(CHECK.as_millis() as u64, SeqCst);
    silent.restart();

    let busy = common::fake::new_db("busy");
    configure(
        &busy,
        Settings {
            idle_timeout: Duration::from_millis(100),
            reap_interval: Duration::from_millis(20),
            ..quiet()
        },
    );
    // Released once the reaper is inside the silent key's first check, so they expire while
    // the reaper works on the silent key.
    wait_until("the reaper checks the silent key", SOON, || {
        silent.checks.load(SeqCst) >= 1
    });
    let conns: Vec<_> = (0..4).map(|_| open(&busy)).collect();
    drop(conns);
    let released = std::time::Instant::now();
    wait_until("the busy key is reaped", SOON, || stats(&busy).idle == 1);
    let took = released.elapsed();
    eprintln!(
        "busy key reaped {took:?} after release; silent key checks so far: {}",
        silent.checks.load(SeqCst)
    );
    // idle_timeout 100 ms + at most one silent check (400 ms) + sweeps: well under the four
    // checks (1.6 s) a full sweep of the silent key would take.
    assert!(
        took < CHECK * 3,
        "the busy key waited {took:?} for the silent one"
    );
}
