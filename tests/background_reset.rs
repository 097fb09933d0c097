//! Resets off the caller's thread: `release` returns before the reset runs, yet no request ever
//! runs on a session whose reset has not finished, a failed reset closes the connection, an
//! `open` that finds only connections being reset waits for one instead of connecting, a hung
//! reset holds a caller up at most `RESET_PATIENCE` (1 s), and a burst of releases resets
//! inline once the resetter's short queue is full.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::engine::{configure, db, id, open};
use common::fake::{args, quiet, stats, FakeConn, FakeDb};
use common::{after_resets, wait_until, SOON};
use pool::Settings;
use rstest::rstest;

/// A connection whose session was changed (so its release needs a reset): in a transaction,
/// with a setting.
fn dirty(db: &FakeDb) -> (pool::Conn, u64) {
    let mut conn = open(db);
    conn.execute("BEGIN", &[]).unwrap();
    conn.execute("SET leaked", &[]).unwrap();
    let id = id(&conn);
    (conn, id)
}

/// Releases on another thread and says whether it came back within `SOON`.
fn release_returns(conn: pool::Conn) -> bool {
    // `Conn` is not `Send`: release here, but watch from a helper that the call returns.
    let (done, returned) = mpsc::channel();
    let watcher = thread::spawn(move || returned.recv_timeout(SOON).is_ok());
    conn.release().unwrap();
    done.send(()).unwrap();
    watcher.join().unwrap()
}

/// Opens on a helper thread; the answer comes back on the channel as (id, in_tx, var).
fn open_elsewhere(db: &Arc<FakeDb>) -> mpsc::Receiver<(u64, bool, Option<String>)> {
    let (tx, rx) = mpsc::channel();
    let a = args(db);
    thread::spawn(move || {
        let conn = pool::open("fake", &a).unwrap();
        let fake = conn.native::<FakeConn>().unwrap();
        let _ = tx.send((fake.id, fake.in_tx, fake.var.clone()));
        conn.release().unwrap();
    });
    rx
}

#[rstest]
fn release_returns_before_the_reset_runs(db: Arc<FakeDb>) {
    configure(&db, quiet());
    let (conn, _) = dirty(&db);
    db.detach_gate.close();
    assert!(release_returns(conn), "release waited for the reset");
    wait_until("the reset started", SOON, || db.detach_gate.arrived() == 1);
    let s = stats(&db);
    assert_eq!((s.in_use, s.resetting, s.idle), (0, 1, 0), "{s:?}");
    db.detach_gate.open();
    let s = after_resets(|| stats(&db));
    assert_eq!((s.resetting, s.idle), (0, 1), "{s:?}");
}

#[rstest]
fn an_open_during_the_reset_waits_for_it_and_never_sees_the_old_session(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            max_open: 1,
            ..quiet()
        },
    );
    let (conn, first) = dirty(&db);
    db.detach_gate.close();
    conn.release().unwrap();
    let answer = open_elsewhere(&db);
    wait_until("the open waits", SOON, || stats(&db).waiting == 1);
    assert!(answer.try_recv().is_err(), "handed out before its reset");
    db.detach_gate.open();
    let (got, in_tx, var) = answer.recv_timeout(SOON).expect("served after the reset");
    assert_eq!(
        (got, in_tx, var),
        (first, false, None),
        "the same session, reset"
    );
}

/// With room to connect, an `open` that finds only a connection being reset still waits for it
/// (a reset is a round trip; a connect is several): it never connects on its own thread. The
/// primer is asked for a spare as for any emptied stack; here it is held at its gate.
#[rstest]
fn an_open_with_room_waits_for_the_reset_instead_of_connecting(db: Arc<FakeDb>) {
    configure(&db, quiet());
    let (conn, first) = dirty(&db);
    let caller_connects = db.caller_connects.load(SeqCst);
    db.primer_gate.close();
    db.detach_gate.close();
    conn.release().unwrap();
    let answer = open_elsewhere(&db);
    wait_until("the open waits", SOON, || stats(&db).waiting == 1);
    db.detach_gate.open();
    let (got, in_tx, _) = answer.recv_timeout(SOON).expect("served after the reset");
    assert_eq!((got, in_tx), (first, false));
    assert_eq!(
        db.caller_connects.load(SeqCst),
        caller_connects,
        "the caller connected cold while a reset was in flight"
    );
    db.primer_gate.open();
}

/// A reset that hangs (a silent network) holds a caller up at most `RESET_PATIENCE`: then it
/// connects with the free room itself.
#[rstest]
fn a_hung_reset_holds_an_open_up_only_for_its_patience(db: Arc<FakeDb>) {
    configure(&db, quiet());
    let (conn, first) = dirty(&db);
    db.primer_gate.close();
    db.detach_gate.close();
    conn.release().unwrap();
    let started = Instant::now();
    let fresh = open(&db);
    let waited = started.elapsed();
    assert_ne!(id(&fresh), first, "got the connection whose reset hangs");
    assert!(
        waited < Duration::from_secs(5),
        "bounded by RESET_PATIENCE (1 s), waited {waited:?}"
    );
    eprintln!("open behind a hung reset returned after {waited:?}");
    db.detach_gate.open();
    db.primer_gate.open();
    drop(fresh);
}

#[rstest]
fn a_failed_background_reset_closes_the_connection_and_is_counted(db: Arc<FakeDb>) {
    configure(&db, quiet());
    let (conn, first) = dirty(&db);
    db.fail_detach.store(true, SeqCst);
    conn.release()
        .expect("the caller's work is done: release is Ok");
    let s = after_resets(|| stats(&db));
    assert_eq!((s.reset_failures, s.idle, s.in_use), (1, 0, 0), "{s:?}");
    db.fail_detach.store(false, SeqCst);
    wait_until("the failed connection is closed", SOON, || {
        db.live() == stats(&db).idle
    });
    assert_ne!(id(&open(&db)), first, "never handed out again");
}

/// One connection is reset on the resetter and two wait in its queue; the next release finds
/// the queue full and resets on its own thread (backpressure, not an unbounded queue).
#[rstest]
fn a_full_queue_makes_the_releasing_thread_reset_inline(db: Arc<FakeDb>) {
    configure(&db, quiet());
    let held: Vec<pool::Conn> = (0..4).map(|_| dirty(&db).0).collect();
    db.detach_gate.close();
    let mut held = held.into_iter();
    for conn in held.by_ref().take(3) {
        assert!(release_returns(conn), "a queued release waited");
    }
    wait_until("the resetter is busy", SOON, || {
        db.detach_gate.arrived() == 1
    });
    assert_eq!(stats(&db).resetting, 3);
    let last = held.next().unwrap();
    let watcher_db = Arc::clone(&db);
    let opener = thread::spawn(move || {
        // The fourth release must be blocked at the gate on its own thread, next to the
        // resetter: two arrivals. (Queued instead, it would return and this would time out.)
        wait_until("the fourth release resets inline", SOON, || {
            watcher_db.detach_gate.arrived() == 2
        });
        watcher_db.detach_gate.open();
    });
    last.release().unwrap();
    opener.join().expect("the fourth release reset inline");
    let s = after_resets(|| stats(&db));
    assert_eq!((s.resetting, s.in_use), (0, 0), "{s:?}");
}

/// What a helper thread's `open` came to: the connection's id or the error, and how long it took.
type Outcome = (Result<u64, String>, Duration);

/// Opens on a helper thread and keeps the connection until the returned sender is dropped;
/// the open's outcome (the connection's id, or the error) and its duration come back.
fn open_and_hold(db: &Arc<FakeDb>) -> (mpsc::Receiver<Outcome>, mpsc::Sender<()>) {
    let (tx, rx) = mpsc::channel();
    let (hold, held) = mpsc::channel::<()>();
    let a = args(db);
    thread::spawn(move || {
        let started = Instant::now();
        match pool::open("fake", &a) {
            Ok(conn) => {
                let id = conn.native::<FakeConn>().unwrap().id;
                let _ = tx.send((Ok(id), started.elapsed()));
                let _ = held.recv();
                let _ = conn.release();
            }
            Err(error) => {
                let _ = tx.send((Err(error.to_string()), started.elapsed()));
            }
        }
    });
    (rx, hold)
}

/// A waits for the one reset in flight (with patience). B arrives with 30 rooms free: it is
/// queued as a plain waiter (`Acquire::Wait`, no patience); its arrival makes settle give A a
/// permit, and B is left counting on the hung reset until `acquire_timeout`.
#[rstest]
fn a_second_open_behind_a_hung_reset_is_bounded_by_patience(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            acquire_timeout: Duration::from_secs(4),
            ..quiet()
        },
    );
    let (conn, _) = dirty(&db);
    db.primer_gate.close();
    db.detach_gate.close();
    conn.release().unwrap();
    let (a, hold_a) = open_and_hold(&db);
    wait_until("A waits for the reset", SOON, || stats(&db).waiting == 1);
    let (b, hold_b) = open_and_hold(&db);
    let (b_got, b_waited) = b.recv_timeout(SOON).unwrap();
    let (a_got, _) = a.recv_timeout(SOON).unwrap();
    db.detach_gate.open();
    db.primer_gate.open();
    drop((hold_a, hold_b));
    assert!(a_got.is_ok(), "A: {a_got:?}");
    assert!(
        b_got.is_ok() && b_waited < Duration::from_secs(2),
        "B held up by a hung reset with free room: {b_got:?} after {b_waited:?}"
    );
}

/// `max_waiting: Some(1)`: one caller waiting for a reset makes the next one be shed with
/// `TooManyWaiting` although 31 rooms are free (shedding is meant for a pool at its limit).
#[rstest]
fn a_reset_in_flight_does_not_shed_an_open_with_room(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            max_waiting: Some(1),
            ..quiet()
        },
    );
    let (conn, _) = dirty(&db);
    db.primer_gate.close();
    db.detach_gate.close();
    conn.release().unwrap();
    let (a, hold_a) = open_and_hold(&db);
    wait_until("A waits for the reset", SOON, || stats(&db).waiting == 1);
    let (b, hold_b) = open_and_hold(&db);
    let (b_got, _) = b.recv_timeout(SOON).unwrap();
    db.detach_gate.open();
    db.primer_gate.open();
    let _ = a.recv_timeout(SOON);
    drop((hold_a, hold_b));
    assert!(b_got.is_ok(), "shed with free room: {b_got:?}");
}

/// `acquire_timeout` shorter than `RESET_PATIENCE`: a hung reset makes `open` time out although
/// the pool has free room (before background reset it would have connected).
#[rstest]
fn a_short_acquire_timeout_behind_a_hung_reset_still_gets_room(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            acquire_timeout: Duration::from_millis(300),
            ..quiet()
        },
    );
    let (conn, _) = dirty(&db);
    db.primer_gate.close();
    db.detach_gate.close();
    conn.release().unwrap();
    // Kept until the gates open: releasing it would reach the closed detach gate.
    let got = pool::open("fake", &args(&db));
    db.detach_gate.open();
    db.primer_gate.open();
    assert!(got.is_ok(), "timed out with free room: {:?}", got.err());
}

/// A caller queued at the limit (no patience); then room frees (a broken connection is closed)
/// while the only reset in flight hangs: `settle` keeps the room back for the reset
/// (waiters <= resetting) and the caller waits out its whole `acquire_timeout`.
#[rstest]
fn room_freed_while_a_reset_hangs_reaches_a_waiter_queued_at_the_limit(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            max_open: 2,
            acquire_timeout: Duration::from_secs(4),
            ..quiet()
        },
    );
    let mut x = open(&db);
    let (y, _) = dirty(&db);
    db.primer_gate.close();
    db.detach_gate.close();
    y.release().unwrap();
    let (b, hold_b) = open_and_hold(&db);
    wait_until("B waits at the limit", SOON, || stats(&db).waiting == 1);
    x.execute("BREAK", &[]).unwrap();
    x.release().unwrap();
    let (b_got, b_waited) = b.recv_timeout(SOON).unwrap();
    db.detach_gate.open();
    db.primer_gate.open();
    drop(hold_b);
    assert!(
        b_got.is_ok() && b_waited < Duration::from_secs(2),
        "room freed but B waited on the hung reset: {b_got:?} after {b_waited:?}"
    );
}
