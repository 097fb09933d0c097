//! `max_open` is never exceeded, even by 64 threads; callers over the limit wait, are served first
//! come first served, and are handed a released connection directly, with no release lost; a
//! timeout says what held the pool (in use, parked, waiting, the longest-held lease, the last
//! connect error); raising the limit serves waiters at once.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use common::engine::{configure, db, id, open};
use common::fake::{args, quiet, stats, FakeDb};
use common::{wait_until, SOON};
use pool::{Error, Settings};
use rstest::rstest;

// ---- The limit -----------------------------------------------------------------------------

#[rstest]
fn never_more_than_max_open_with_64_threads(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            max_open: 8,
            acquire_timeout: Duration::from_secs(30),
            ..quiet()
        },
    );
    let start = Arc::new(Barrier::new(64));
    let threads: Vec<_> = (0..64)
        .map(|_| {
            let (a, start) = (args(&db), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                for _ in 0..200 {
                    let mut conn = pool::open("fake", &a).unwrap();
                    conn.execute("SET x", &[]).unwrap();
                    thread::yield_now();
                    conn.release().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(db.peak.load(SeqCst) <= 8, "peak {}", db.peak.load(SeqCst));
    let s = stats(&db);
    assert!(s.idle + s.in_use + s.opening <= 8);
    assert_eq!((s.in_use, s.waiting, s.timeouts), (0, 0, 0));
}

#[rstest]
fn no_release_is_lost_between_the_fast_slot_and_the_waiter_queue(db: Arc<FakeDb>) {
    // One connection, eight threads: every release races a caller that is about to wait. A
    // release parked where no waiter looks would leave a waiter asleep until its timeout.
    configure(
        &db,
        Settings {
            max_open: 1,
            acquire_timeout: Duration::from_secs(20),
            ..quiet()
        },
    );
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let a = args(&db);
            thread::spawn(move || {
                for _ in 0..2_000 {
                    pool::open("fake", &a).unwrap().release().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = stats(&db);
    assert_eq!((s.timeouts, s.in_use, s.waiting, s.opened), (0, 0, 0, 1));
    assert_eq!(s.idle, 1);
}

// ---- Waiting -------------------------------------------------------------------------------

#[rstest]
fn waiters_are_served_first_come_first_served(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            max_open: 1,
            ..quiet()
        },
    );
    let held = open(&db);
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for n in 1..=4 {
        let (a, order) = (args(&db), Arc::clone(&order));
        threads.push(thread::spawn(move || {
            let conn = pool::open("fake", &a).unwrap();
            order.lock().unwrap().push(n);
            conn.release().unwrap();
        }));
        wait_until("the waiter is queued", SOON, || stats(&db).waiting == n);
    }
    held.release().unwrap();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![1, 2, 3, 4]);
    assert_eq!(
        stats(&db).opened,
        1,
        "every waiter got the same connection handed over"
    );
}

#[rstest]
fn a_waiter_that_has_waited_is_not_overtaken_by_a_newcomer(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            max_open: 1,
            ..quiet()
        },
    );
    let held = open(&db);
    let order = Arc::new(Mutex::new(Vec::new()));
    let (a, o) = (args(&db), Arc::clone(&order));
    let waiter = thread::spawn(move || {
        let conn = pool::open("fake", &a).unwrap();
        o.lock().unwrap().push("waiter");
        conn.release().unwrap();
    });
    wait_until("the waiter is queued", SOON, || stats(&db).waiting == 1);
    thread::sleep(Duration::from_millis(5)); // past the 1 ms hand-off window
    held.release().unwrap();
    let again = open(&db); // released and asked again at once: the waiter goes first
    order.lock().unwrap().push("newcomer");
    waiter.join().unwrap();
    drop(again);
    assert_eq!(*order.lock().unwrap(), vec!["waiter", "newcomer"]);
}

#[rstest]
fn a_waiter_is_handed_the_released_connection_directly(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            max_open: 1,
            ..quiet()
        },
    );
    let held = open(&db);
    let held_id = id(&held);
    let a = args(&db);
    let waiter = thread::spawn(move || id(&pool::open("fake", &a).unwrap()));
    wait_until("the waiter is queued", SOON, || stats(&db).waiting == 1);
    held.release().unwrap();
    assert_eq!(waiter.join().unwrap(), held_id);
    assert_eq!(stats(&db).waits, 1);
}

// ---- Timeouts ------------------------------------------------------------------------------

#[rstest]
fn timeout_says_how_many_are_in_use_parked_and_waiting(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            max_open: 2,
            acquire_timeout: Duration::from_millis(100),
            ..quiet()
        },
    );
    let _held = (open(&db), open(&db));
    let a = args(&db);
    let err = thread::spawn(move || pool::open("fake", &a).unwrap_err())
        .join()
        .unwrap();
    let Error::Timeout(detail) = &err else {
        panic!("expected a timeout, got {err}")
    };
    assert_eq!(
        (detail.in_use, detail.idle, detail.waiting, detail.max_open),
        (2, 0, 0, 2)
    );
    assert_eq!(detail.held_by_this_thread, 0);
    let (at, _) = detail
        .longest_held
        .as_ref()
        .expect("the longest-held lease is reported");
    // `open` (tests/common/engine.rs, not `#[track_caller]`) is where the lease was taken.
    assert!(at.contains("engine.rs"), "{at}");
    let text = err.to_string();
    assert!(
        text.contains("2 in use") && text.contains("engine.rs"),
        "{text}"
    );
    let s = stats(&db);
    assert_eq!((s.timeouts, s.waits), (1, 1));
    assert!(s.total_wait >= Duration::from_millis(100));
}

#[rstest]
fn timeout_reports_the_last_connect_error(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            max_open: 1,
            acquire_timeout: Duration::from_millis(50),
            ..quiet()
        },
    );
    db.fail_connect.store(true, SeqCst);
    assert!(matches!(
        pool::open("fake", &args(&db)),
        Err(Error::Connect { .. })
    ));
    db.fail_connect.store(false, SeqCst);
    let _held = open(&db);
    let a = args(&db);
    let err = thread::spawn(move || pool::open("fake", &a).unwrap_err())
        .join()
        .unwrap();
    let Error::Timeout(detail) = err else {
        panic!("expected a timeout")
    };
    assert!(detail
        .last_connect_error
        .unwrap()
        .contains("connection refused"));
}

// ---- Raising the limit ---------------------------------------------------------------------

#[rstest]
fn raising_the_limit_serves_waiters_at_once(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            max_open: 1,
            ..quiet()
        },
    );
    let _held = open(&db);
    let a = args(&db);
    let waiter = thread::spawn(move || pool::open("fake", &a).map(|c| id(&c)));
    wait_until("the waiter is queued", SOON, || stats(&db).waiting == 1);
    configure(
        &db,
        Settings {
            max_open: 2,
            ..quiet()
        },
    );
    assert!(waiter.join().unwrap().is_ok());
}

/// A connection the reaper is closing still counts against the limit until the close is done:
/// the server never sees more than `max_open` sessions, even for a moment.
#[rstest]
fn a_closing_connection_keeps_its_room_until_it_is_gone(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            max_open: 2,
            idle_timeout: Duration::from_millis(1),
            reap_interval: Duration::from_millis(5),
            ..quiet()
        },
    );
    let (a, b) = (open(&db), open(&db));
    a.release().unwrap();
    b.release().unwrap();
    db.close_gate.close();
    wait_until("the reaper is closing an idle connection", SOON, || {
        db.close_gate.arrived() == 1
    });
    let caller = {
        let args = args(&db);
        thread::spawn(move || {
            let x = pool::open("fake", &args).unwrap();
            let y = pool::open("fake", &args).unwrap();
            drop((x, y));
        })
    };
    wait_until("the caller waits (or, wrongly, connects)", SOON, || {
        stats(&db).waiting == 1 || db.connect_attempts.load(SeqCst) == 3
    });
    db.close_gate.open();
    caller.join().unwrap();
    assert!(
        db.peak.load(SeqCst) <= 2,
        "the server saw {} connections with max_open 2",
        db.peak.load(SeqCst)
    );
}

/// Load shedding: with `max_waiting` callers already queued, one more fails at once with a
/// distinct error instead of queueing; the queued ones are still served.
#[rstest]
fn beyond_max_waiting_open_fails_at_once(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            max_open: 1,
            max_waiting: Some(1),
            acquire_timeout: Duration::from_secs(5),
            ..quiet()
        },
    );
    // The holder is another thread: this one, holding nothing, must be shed, not refused
    // with `WouldDeadlock`.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = {
        let args = args(&db);
        thread::spawn(move || {
            let conn = pool::open("fake", &args).unwrap();
            released.recv().unwrap();
            conn.release().unwrap();
        })
    };
    wait_until("the connection is held", SOON, || stats(&db).in_use == 1);
    let queued = {
        let args = args(&db);
        thread::spawn(move || pool::open("fake", &args).map(|c| c.release()))
    };
    wait_until("one caller waits", SOON, || stats(&db).waiting == 1);
    match pool::open("fake", &args(&db)) {
        Err(error @ Error::TooManyWaiting { .. }) => {
            assert!(error.is_transient());
            assert!(error.to_string().contains("max_waiting is 1"), "{error}");
        }
        other => panic!("expected TooManyWaiting, got {other:?}"),
    }
    assert_eq!(stats(&db).shed, 1);
    release.send(()).unwrap();
    holder.join().unwrap();
    queued.join().unwrap().unwrap().unwrap();
}
