//! Settings at the edge of what a `Duration` can hold mean "very long", never an overflow:
//! `acquire_timeout: Duration::MAX` waits until it is served, and a pool configured with every
//! duration at `Duration::MAX` works.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::engine::{configure, db, open};
use common::fake::{args, quiet, stats, FakeDb};
use common::{wait_until, SOON};
use pool::Settings;
use rstest::rstest;

#[rstest]
fn an_acquire_timeout_of_duration_max_waits_until_served(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            max_open: 1,
            acquire_timeout: Duration::MAX,
            ..quiet()
        },
    );
    let held = open(&db);
    let waiter = {
        let args = args(&db);
        thread::spawn(move || {
            let conn = pool::open("fake", &args)?;
            conn.release()
        })
    };
    wait_until("the second caller waits", SOON, || stats(&db).waiting == 1);
    held.release().unwrap();
    let served = waiter.join().expect("the waiting caller must not panic");
    assert!(served.is_ok(), "{served:?}");
    let s = stats(&db);
    assert_eq!((s.in_use, s.waiting, s.idle), (0, 0, 1), "{s:?}");
    // The released connection is not absorbed by a ghost waiter: it serves the next caller.
    open(&db).release().unwrap();
}

#[rstest]
fn every_duration_at_its_maximum_is_honoured(db: Arc<FakeDb>) {
    let max = Duration::MAX;
    configure(
        &db,
        Settings {
            max_open: 2,
            idle_timeout: max,
            reap_interval: max,
            acquire_timeout: max,
            validate_after: max,
            connect_timeout: max,
            check_timeout: max,
            primer_backoff_max: max,
            ..Settings::default()
        },
    );
    let a = open(&db);
    let b = open(&db);
    a.release().unwrap();
    b.release().unwrap();
    let c = open(&db);
    c.release().unwrap();
    let s = stats(&db);
    assert_eq!((s.in_use, s.idle), (0, 2), "{s:?}");
    assert_eq!(db.checks.load(std::sync::atomic::Ordering::SeqCst), 0);
}
