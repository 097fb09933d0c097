//! A driver that panics anywhere (answering `is_broken`, closing a connection on release,
//! closing a dead parked connection before hand-out) cannot take the pool down or leave a
//! connection counted: the caller gets on, and the room comes back.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use common::engine::{configure, db, id, open};
use common::fake::{quiet, stats, FakeDb};
use common::{wait_until, SOON};
use pool::Settings;
use rstest::rstest;

fn one_connection() -> Settings {
    Settings {
        max_open: 1,
        acquire_timeout: Duration::from_secs(2),
        ..quiet()
    }
}

/// Every live connection is one the pool holds: the closed one is gone (the primer may have
/// parked a fresh one meanwhile, to keep the pool warm).
fn only_the_pools_own_are_live(db: &FakeDb) -> bool {
    let s = stats(db);
    db.live() == s.idle + s.in_use
}

/// Nothing is counted in use, and the one connection's room serves a new caller.
fn assert_room_came_back(db: &FakeDb) {
    let s = stats(db);
    assert_eq!((s.in_use, s.waiting), (0, 0), "{s:?}");
    open(db).release().unwrap();
}

#[rstest]
fn a_panic_in_is_broken_closes_the_connection_and_returns_its_room(db: Arc<FakeDb>) {
    configure(&db, one_connection());
    let conn = open(&db);
    let panicked = id(&conn);
    db.panic_is_broken.store(true, SeqCst);
    conn.release().unwrap();
    db.panic_is_broken.store(false, SeqCst);
    // Treated as broken: closed (on the pool's closer thread), not parked.
    wait_until("the connection is closed", SOON, || {
        only_the_pools_own_are_live(&db)
    });
    assert_ne!(id(&open(&db)), panicked, "never handed out again");
    assert_room_came_back(&db);
}

#[rstest]
fn a_panic_while_closing_a_broken_connection_returns_its_room(db: Arc<FakeDb>) {
    configure(&db, one_connection());
    let mut conn = open(&db);
    conn.execute("BREAK", &[]).unwrap();
    db.panic_on_close.store(true, SeqCst);
    conn.release().unwrap();
    // Closed on the pool's closer thread, which survives the panic.
    wait_until("the connection is closed", SOON, || {
        only_the_pools_own_are_live(&db)
    });
    db.panic_on_close.store(false, SeqCst);
    assert_eq!(stats(&db).dropped_dead, 1);
    assert_room_came_back(&db);
}

#[rstest]
fn a_panic_while_closing_a_dead_parked_connection_still_serves_the_caller(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            validate_after: Duration::from_millis(1),
            ..one_connection()
        },
    );
    open(&db).release().unwrap();
    // Parked past `validate_after` (the coarse clock ticks every few ms): checked at hand-out.
    std::thread::sleep(Duration::from_millis(20));
    db.restart();
    db.panic_on_close.store(true, SeqCst);
    let conn = open(&db);
    wait_until("the dead connection is closed", SOON, || {
        only_the_pools_own_are_live(&db)
    });
    db.panic_on_close.store(false, SeqCst);
    assert_eq!(
        db.checks.load(SeqCst),
        1,
        "the parked connection was checked"
    );
    assert_eq!(db.connects.load(SeqCst), 2, "and replaced by a fresh one");
    conn.release().unwrap();
    assert_room_came_back(&db);
}
