//! What release does to a session: a full reset (transaction rolled back, session settings
//! cleared), or in rollback-only mode a rollback that keeps the settings; a connection whose reset
//! fails, that is broken, or whose holder panicked is closed, never parked; with a driver that
//! cannot detach, release closes and the next open connects fresh.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::thread;

use common::engine::{configure, db, id, open};
use common::fake::{args, quiet, stats, FakeConn, FakeDb};
use common::{after_resets, wait_until, SOON};
use pool::{ResetMode, Settings};
use rstest::rstest;

#[rstest]
fn release_resets_the_session(db: Arc<FakeDb>) {
    configure(&db, quiet());
    let mut conn = open(&db);
    let first = id(&conn);
    conn.execute("BEGIN", &[]).unwrap();
    conn.execute("SET role_x", &[]).unwrap();
    conn.release().unwrap();
    after_resets(|| stats(&db));
    let conn = open(&db);
    let fake = conn.native::<FakeConn>().unwrap();
    assert_eq!(
        (fake.id, fake.in_tx, fake.var.clone()),
        (first, false, None)
    );
}

#[rstest]
fn rollback_only_mode_rolls_back_but_keeps_session_settings(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            reset_mode: ResetMode::RollbackOnly,
            ..quiet()
        },
    );
    let mut conn = open(&db);
    conn.execute("BEGIN", &[]).unwrap();
    conn.execute("SET kept", &[]).unwrap();
    conn.release().unwrap();
    after_resets(|| stats(&db));
    let conn = open(&db);
    let fake = conn.native::<FakeConn>().unwrap();
    assert_eq!((fake.in_tx, fake.var.as_deref()), (false, Some("kept")));
}

#[rstest]
fn a_failed_reset_closes_instead_of_parking(db: Arc<FakeDb>) {
    configure(&db, quiet());
    let conn = open(&db);
    db.fail_detach.store(true, SeqCst);
    conn.release()
        .expect("the request's work is done: release succeeds");
    let s = stats(&db);
    assert_eq!((s.idle, s.in_use, db.live()), (0, 0, 0));
    assert_eq!(s.reset_failures, 1, "{s:?}");
}

/// A reset on the releasing thread (`RollbackOnly`, or `background_reset` off) that fails,
/// after a statement that did its work (a committed write, say), must not turn the request
/// into an error: the connection is closed, counted and logged, as the resetter does it.
#[rstest]
fn a_failed_reset_on_the_releasing_thread_does_not_fail_the_release(
    db: Arc<FakeDb>,
    #[values(ResetMode::RollbackOnly, ResetMode::Full)] reset_mode: ResetMode,
) {
    configure(
        &db,
        Settings {
            reset_mode,
            background_reset: false,
            ..quiet()
        },
    );
    let mut conn = open(&db);
    conn.execute("SET done", &[]).unwrap();
    db.fail_detach.store(true, SeqCst);
    conn.release()
        .expect("a reset failure after the work is done is the pool's business");
    let s = stats(&db);
    assert_eq!(
        (s.idle, s.in_use, s.resetting, db.live()),
        (0, 0, 0, 0),
        "{s:?}"
    );
    assert_eq!(s.reset_failures, 1, "{s:?}");
}

#[rstest]
fn a_broken_connection_is_closed_on_release(db: Arc<FakeDb>) {
    configure(&db, quiet());
    let mut conn = open(&db);
    let broken = id(&conn);
    conn.execute("BREAK", &[]).unwrap();
    conn.release().unwrap();
    let s = stats(&db);
    assert_eq!((s.in_use, s.dropped_dead), (0, 1), "{s:?}");
    // Closed on the pool's closer thread (a broken connection's close may block); the only
    // live connection left may be one the primer parked to keep the pool warm.
    wait_until("the broken connection is closed", SOON, || {
        db.live() == stats(&db).idle
    });
    assert_ne!(id(&open(&db)), broken, "never handed out again");
}

#[rstest]
fn a_panic_while_holding_closes_the_connection(db: Arc<FakeDb>) {
    configure(&db, quiet());
    let a = args(&db);
    let result = thread::spawn(move || {
        let mut conn = pool::open("fake", &a).unwrap();
        conn.execute("BEGIN", &[]).unwrap();
        panic!("handler bug");
    })
    .join();
    assert!(result.is_err());
    let s = stats(&db);
    assert_eq!(
        (s.idle, s.in_use, db.live()),
        (0, 0, 0),
        "closed, not parked dirty"
    );
    let conn = open(&db);
    assert!(!conn.native::<FakeConn>().unwrap().in_tx);
}

#[rstest]
fn a_driver_that_cannot_detach_closes_on_release_and_connects_fresh(db: Arc<FakeDb>) {
    let a = args(&db);
    pool::configure("fake-nodetach", &a, quiet()).unwrap();
    let first = pool::open("fake-nodetach", &a).unwrap();
    let first_id = id(&first);
    first.release().unwrap();
    assert_eq!(db.live(), 0);
    let second = pool::open("fake-nodetach", &a).unwrap();
    assert_ne!(id(&second), first_id);
    assert_eq!(db.detaches.load(SeqCst), 0);
}
