//! Validation on open: a connection parked longer than `validate_after` is checked and a dead one
//! replaced; one parked inside the window is handed out unchecked; one connection found dead makes
//! every parked one suspect, so the next open hands out a live connection.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::engine::{configure, db, id, open};
use common::fake::{quiet, stats, FakeDb};
use pool::Settings;
use rstest::rstest;

#[rstest]
fn a_handle_parked_past_the_window_is_checked_and_a_dead_one_replaced(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            validate_after: Duration::from_millis(30),
            ..quiet()
        },
    );
    let old = {
        let c = open(&db);
        id(&c)
    };
    thread::sleep(Duration::from_millis(40)); // park past the validation window
    db.restart();
    let conn = open(&db);
    assert_ne!(id(&conn), old);
    assert!(db.checks.load(SeqCst) >= 1);
    assert_eq!(stats(&db).dropped_dead, 1);
}

#[rstest]
fn a_handle_inside_the_window_is_not_checked(db: Arc<FakeDb>) {
    configure(&db, quiet());
    open(&db).release().unwrap();
    open(&db).release().unwrap();
    assert_eq!(db.checks.load(SeqCst), 0);
}

#[rstest]
fn one_dead_connection_makes_every_parked_one_suspect(db: Arc<FakeDb>) {
    configure(&db, quiet()); // a one-hour window: age alone never triggers a check
    let conns: Vec<_> = (0..3).map(|_| open(&db)).collect();
    drop(conns);
    db.restart();
    let mut conn = open(&db);
    assert!(
        conn.query("SELECT", &[]).is_err(),
        "the server restarted under us"
    );
    drop(conn); // broken: closed, and the parked ones become suspect
    let mut conn = open(&db);
    let rows = conn
        .query("SELECT", &[])
        .expect("the next open hands out a live connection");
    assert_eq!(
        rows.get_named(0, "epoch").and_then(|v| v.as_i64()),
        Some(db.epoch() as i64)
    );
    assert_eq!(stats(&db).dropped_dead, 3);
}

/// At the limit, a check that runs into `check_timeout` (a silent network) does not lead to
/// checking the other parked connections one by one: they are closed, and the caller connects
/// fresh once their (quick) closes are done.
#[rstest]
fn a_silent_check_at_the_limit_connects_fresh_instead_of_checking_the_rest(db: Arc<FakeDb>) {
    const CHECK: Duration = Duration::from_millis(300);
    configure(
        &db,
        Settings {
            max_open: 3,
            validate_after: Duration::from_millis(1),
            check_timeout: CHECK,
            ..quiet()
        },
    );
    let conns: Vec<_> = (0..3).map(|_| open(&db)).collect();
    drop(conns);
    std::thread::sleep(Duration::from_millis(20)); // parked past validate_after
    db.check_delay_ms.store(CHECK.as_millis() as u64, SeqCst);
    db.restart();
    let started = std::time::Instant::now();
    let conn = open(&db);
    let took = started.elapsed();
    assert_eq!(db.checks.load(SeqCst), 1, "one silent check, not three");
    assert!(took < CHECK * 2, "open took {took:?}");
    drop(conn);
}
