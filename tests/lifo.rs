//! Parked connections are reused most recently released first (LIFO), also across the fast slot
//! and the stack; a steady open/release loop never connects; a connection released on one thread
//! is attached on another.

mod common;

use std::sync::Arc;
use std::thread;

use common::engine::{configure, db, id, open};
use common::fake::{args, new_db, quiet, stats, FakeDb};
use common::{wait_until, SOON};
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
