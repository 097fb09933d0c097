//! Driver calls run outside the pool's lock: while a connect or a reset hangs inside the driver,
//! the same pool still answers stats, releases and opens; a driver that panics in connect yields
//! an error and gives its room back.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::thread;

use common::engine::{configure, db, id, open};
use common::fake::{args, quiet, stats, FakeDb};
use common::{wait_until, SOON};
use pool::Settings;
use rstest::rstest;

#[rstest]
fn no_pool_lock_is_held_while_connecting(db: Arc<FakeDb>) {
    configure(&db, quiet());
    let mine = open(&db);
    let mine_id = id(&mine);
    db.connect_gate.close();
    let a = args(&db);
    let blocked = thread::spawn(move || pool::open("fake", &a).map(|c| id(&c)));
    wait_until("a connect is blocked inside the driver", SOON, || {
        db.connect_gate.arrived() == 2
    });
    // Meanwhile the same pool still answers: stats, release and open of a parked connection.
    assert_eq!(stats(&db).opening, 1);
    mine.release().unwrap();
    let again = open(&db);
    assert_eq!(id(&again), mine_id);
    db.connect_gate.open();
    assert!(blocked.join().unwrap().is_ok());
}

#[rstest]
fn no_pool_lock_is_held_while_resetting_or_checking(db: Arc<FakeDb>) {
    configure(&db, quiet());
    let mine = open(&db);
    db.detach_gate.close();
    let a = args(&db);
    let releasing = thread::spawn(move || {
        pool::open("fake", &a)
            .unwrap()
            .release()
            .map_err(|e| e.to_string())
    });
    wait_until("a reset is blocked inside the driver", SOON, || {
        db.detach_gate.arrived() == 1
    });
    assert_eq!(stats(&db).in_use, 2);
    let other = open(&db); // connects a third while the reset hangs
    assert_eq!(stats(&db).in_use, 3);
    db.detach_gate.open();
    releasing.join().unwrap().unwrap();
    drop((mine, other));
}

#[rstest]
fn a_panicking_driver_does_not_leak_capacity(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            max_open: 1,
            ..quiet()
        },
    );
    db.panic_connect.store(true, SeqCst);
    let err = pool::open("fake", &args(&db)).unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
    db.panic_connect.store(false, SeqCst);
    let conn = open(&db);
    assert_eq!(stats(&db).in_use, 1);
    drop(conn);
}
