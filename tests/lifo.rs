//! Parked connections are reused most recently released first (LIFO), also across the fast slot
//! and the stack; a steady open/release loop never connects; a connection released on one thread
//! is attached on another.

mod common;

use std::sync::{mpsc, Arc};
use std::thread;

use common::engine::{configure, db, id, open};
use common::fake::{args, new_db, quiet, stats, FakeDb};
use common::{after_resets, wait_until, SOON};
use pool::Settings;
use rstest::rstest;

#[rstest]
fn lifo_hands_out_the_most_recently_released(db: Arc<FakeDb>) {
    configure(&db, quiet());
    let (a, b, c) = (open(&db), open(&db), open(&db));
    let ids = [id(&a), id(&b), id(&c)];
    a.release().unwrap();
    b.release().unwrap();
    c.release().unwrap();
    let first = open(&db);
    let second = open(&db);
    assert_eq!((id(&first), id(&second)), (ids[2], ids[1]));
}

/// LIFO across the slot and the stack: released a, b, c (the slot displacing onto the stack)
/// come back c, b, a.
#[test]
fn lifo_across_slot_and_stack() {
    let db = new_db("lifo");
    pool::configure(
        "fake",
        &args(&db),
        Settings {
            max_open: 3,
            ..quiet()
        },
    )
    .unwrap();
    let a = pool::open("fake", &args(&db)).unwrap();
    let b = pool::open("fake", &args(&db)).unwrap();
    let c = pool::open("fake", &args(&db)).unwrap();
    let ids = [id(&a), id(&b), id(&c)];
    a.release().unwrap();
    b.release().unwrap();
    c.release().unwrap();
    let x = pool::open("fake", &args(&db)).unwrap();
    let y = pool::open("fake", &args(&db)).unwrap();
    let z = pool::open("fake", &args(&db)).unwrap();
    assert_eq!([id(&x), id(&y), id(&z)], [ids[2], ids[1], ids[0]]);
}

#[rstest]
fn steady_state_reuses_without_connecting(db: Arc<FakeDb>) {
    configure(&db, quiet());
    open(&db).release().unwrap();
    open(&db).release().unwrap(); // took the last parked one: the primer adds a second
    wait_until("the primer parks its connection", SOON, || {
        stats(&db).idle == 2
    });
    let opened = stats(&db).opened;
    for _ in 0..100 {
        open(&db).release().unwrap();
    }
    assert_eq!(stats(&db).opened, opened, "no connects in steady state");
}

#[rstest]
fn released_on_one_thread_attached_on_another(db: Arc<FakeDb>) {
    configure(&db, quiet());
    let a = args(&db);
    let first = thread::spawn(move || {
        let conn = pool::open("fake", &a).unwrap();
        let id = id(&conn);
        conn.release().unwrap();
        id
    })
    .join()
    .unwrap();
    let a = args(&db);
    let second = thread::spawn(move || id(&pool::open("fake", &a).unwrap()))
        .join()
        .unwrap();
    assert_eq!(first, second);
}

/// LIFO is by release order, also when a reset finishes after a later release parked: a
/// connection released clean (parked at once, in the fast slot) before one released dirty
/// (parked only once the resetter is done) comes back after it.
#[test]
fn a_reset_finishing_late_keeps_its_place_by_release_order() {
    let db = new_db("lifo-reset");
    configure(
        &db,
        Settings {
            max_open: 2,
            ..quiet()
        },
    );
    let (mut dirty, clean) = (open(&db), open(&db));
    let ids = [id(&dirty), id(&clean)];
    dirty.execute("SET x", &[]).unwrap();
    clean.release().unwrap();
    dirty.release().unwrap();
    after_resets(|| stats(&db));
    let (first, second) = (open(&db), open(&db));
    assert_eq!([id(&first), id(&second)], [ids[0], ids[1]]);
}

/// Released dirty a, b, c, d while the resetter is held up on a: b and c queue behind it, d
/// finds the queue full and is reset on its releasing thread. Whichever reset finishes first,
/// the next opens get d, c, b, a.
#[test]
fn resets_in_the_background_and_inline_keep_release_order() {
    let db = new_db("lifo-inline");
    configure(
        &db,
        Settings {
            max_open: 4,
            ..quiet()
        },
    );
    let mut held: Vec<_> = (0..3).map(|_| open(&db)).collect();
    for conn in &mut held {
        conn.execute("SET x", &[]).unwrap();
    }
    let mut ids: Vec<u64> = held.iter().map(id).collect();
    // d is `!Send`: opened, used and released on a thread of its own, when told to.
    let (opened_tx, opened) = mpsc::channel();
    let (release_d, release_rx) = mpsc::channel::<()>();
    let d_args = args(&db);
    let d = thread::spawn(move || {
        let mut d = pool::open("fake", &d_args).unwrap();
        d.execute("SET x", &[]).unwrap();
        opened_tx.send(id(&d)).unwrap();
        release_rx.recv().unwrap();
        d.release().unwrap();
    });
    ids.push(opened.recv().unwrap());
    let mut held = held.into_iter();
    db.detach_gate.close();
    held.next().unwrap().release().unwrap();
    wait_until("the resetter is resetting a", SOON, || {
        db.detach_gate.arrived() == 1
    });
    held.next().unwrap().release().unwrap();
    held.next().unwrap().release().unwrap();
    release_d.send(()).unwrap();
    wait_until("d is reset on its own thread", SOON, || {
        db.detach_gate.arrived() == 2
    });
    db.detach_gate.open();
    d.join().unwrap();
    after_resets(|| stats(&db));
    let got: Vec<_> = (0..4).map(|_| open(&db)).collect();
    let got: Vec<u64> = got.iter().map(id).collect();
    assert_eq!(got, [ids[3], ids[2], ids[1], ids[0]]);
}
