//! When a caller finds the connection it took dead, the room that connection frees goes to a
//! caller (itself or a waiter), never to nobody: with one of two connections held for the whole
//! test and the server restarting every few milliseconds, no caller sleeps until its timeout
//! while there is room to connect.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::fake::new_db;
use pool::{Error, Settings};

#[test]
fn freed_room_after_a_dead_take_reaches_the_waiters() {
    let db = new_db("lostroom");
    let a = format!("db={}", db.name);
    pool::configure(
        "fake",
        &a,
        Settings {
            max_open: 2,
            acquire_timeout: Duration::from_secs(2),
            validate_after: Duration::ZERO, // anything parked a tick ago is checked first
            reap_interval: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(3600),
            ..Settings::default()
        },
    )
    .unwrap();
    let holder = pool::open("fake", &a).unwrap(); // held for the whole test
    let stop = Arc::new(AtomicBool::new(false));
    let timeouts = Arc::new(AtomicUsize::new(0));
    let restarter = {
        let (db, stop) = (Arc::clone(&db), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(SeqCst) {
                db.restart();
                thread::sleep(Duration::from_millis(3));
            }
        })
    };
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let (a, stop, timeouts) = (a.clone(), Arc::clone(&stop), Arc::clone(&timeouts));
            thread::spawn(move || {
                for _ in 0..1_000 {
                    if stop.load(SeqCst) {
                        break;
                    }
                    match pool::open("fake", &a) {
                        Ok(conn) => {
                            thread::sleep(Duration::from_micros(200));
                            let _ = conn.release();
                        }
                        Err(Error::Timeout(detail)) => {
                            eprintln!("timed out with room to connect: {detail:?}");
                            timeouts.fetch_add(1, SeqCst);
                            stop.store(true, SeqCst);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    stop.store(true, SeqCst);
    restarter.join().unwrap();
    drop(holder);
    assert_eq!(
        timeouts.load(SeqCst),
        0,
        "waiters slept until their timeout"
    );
}
