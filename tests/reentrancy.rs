//! A thread asking for one more connection at the limit: if it holds every connection itself it
//! gets `WouldDeadlock` at once instead of hanging; if other threads hold the rest it times out,
//! and the error says how many this thread itself holds.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::engine::{configure, db, open};
use common::fake::{args, quiet, stats, FakeDb};
use common::{wait_until, SOON};
use pool::{Error, Settings};
use rstest::rstest;

#[rstest]
fn a_thread_holding_every_connection_gets_an_error_not_a_hang(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            max_open: 2,
            acquire_timeout: Duration::from_secs(3600),
            ..quiet()
        },
    );
    let _held = (open(&db), open(&db));
    let err = pool::open("fake", &args(&db)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::WouldDeadlock {
                held_by_this_thread: 2,
                max_open: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(stats(&db).waits, 0, "failed at once");
}

#[rstest]
fn a_thread_holding_some_while_others_hold_the_rest_times_out(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            max_open: 2,
            acquire_timeout: Duration::from_millis(50),
            ..quiet()
        },
    );
    let _mine = open(&db);
    let a = args(&db);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let other = thread::spawn(move || {
        let _theirs = pool::open("fake", &a).unwrap();
        let _ = rx.recv();
    });
    wait_until("the other thread holds one", SOON, || {
        stats(&db).in_use == 2
    });
    let err = pool::open("fake", &args(&db)).unwrap_err();
    let Error::Timeout(detail) = &err else {
        panic!("expected a timeout, got {err}")
    };
    assert_eq!(detail.held_by_this_thread, 1);
    assert!(err.to_string().contains("this thread itself holds 1"));
    tx.send(()).unwrap();
    other.join().unwrap();
}
