//! Many threads opening and releasing against few connections, with server restarts, broken
//! connections and a busy reaper: no caller sleeps until its timeout (no lost wake-up), the limit
//! is never exceeded, `stats` never reports more than the limit, and the counts settle back to
//! "all parked" matching the server's own count (no drift, no leak).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::fake::{args, new_db, quiet, stats, FakeDb};
use common::{wait_until, SOON};
use pool::{Error, Settings};

/// Counts must settle back to "everything parked, nothing in use" and match the server's view.
fn assert_settled(db: &FakeDb, max_open: usize) {
    wait_until("counts settle", SOON, || {
        let s = stats(db);
        s.in_use == 0 && s.waiting == 0 && s.opening == 0 && s.idle == db.live()
    });
    let s = stats(db);
    assert!(s.idle <= max_open, "{s:?}");
}

/// Many threads, few connections, broken connections, server restarts and an aggressive
/// reaper: no timeouts (a lost wake-up), no count drift, no leak.
#[test]
fn stress_with_restarts_broken_and_reaper() {
    for round in 0..3 {
        let db = new_db("stress");
        let max_open = 3;
        pool::configure(
            "fake",
            &args(&db),
            Settings {
                max_open,
                acquire_timeout: Duration::from_secs(4),
                validate_after: Duration::from_millis(1),
                reap_interval: Duration::from_millis(3),
                idle_timeout: Duration::from_millis(5),
                ..Settings::default()
            },
        )
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let timeouts = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..10)
            .map(|t| {
                let (a, timeouts) = (args(&db), Arc::clone(&timeouts));
                thread::spawn(move || {
                    for i in 0..3_000u32 {
                        match pool::open("fake", &a) {
                            Ok(mut conn) => {
                                if (i + t) % 97 == 0 {
                                    let _ = conn.execute("BREAK", &[]);
                                }
                                let _ = conn.release();
                            }
                            Err(Error::Timeout(d)) => {
                                eprintln!("round {round}: timeout: {d:?}");
                                timeouts.fetch_add(1, SeqCst);
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        let restarter = {
            let (db, stop) = (Arc::clone(&db), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(SeqCst) {
                    db.restart();
                    thread::sleep(Duration::from_millis(7));
                }
            })
        };
        for t in threads {
            t.join().unwrap();
        }
        stop.store(true, SeqCst);
        restarter.join().unwrap();
        assert_eq!(timeouts.load(SeqCst), 0, "a waiter slept until its timeout");
        assert_settled(&db, max_open);
    }
}

/// Churn at the limit: eight threads open and release as fast as they can with room for two
/// connections: no timeouts, never more than two connections, and the counts settle.
#[test]
fn fast_slot_churn_at_limit_two() {
    for _ in 0..3 {
        let db = new_db("churn");
        pool::configure(
            "fake",
            &args(&db),
            Settings {
                max_open: 2,
                acquire_timeout: Duration::from_secs(10),
                ..quiet()
            },
        )
        .unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let a = args(&db);
                thread::spawn(move || {
                    for _ in 0..5_000 {
                        pool::open("fake", &a).unwrap().release().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = stats(&db);
        assert_eq!((s.timeouts, s.in_use, s.waiting), (0, 0, 0), "{s:?}");
        assert!(db.peak.load(SeqCst) <= 2);
        assert_settled(&db, 2);
    }
}

/// `stats` taken while four threads churn at a limit of two never counts more than two
/// connections (parked + in use + opening).
#[test]
fn stats_snapshot_is_sane_under_churn() {
    let db = new_db("stats");
    pool::configure(
        "fake",
        &args(&db),
        Settings {
            max_open: 2,
            ..quiet()
        },
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (a, stop) = (args(&db), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(SeqCst) {
                    pool::open("fake", &a).unwrap().release().unwrap();
                }
            })
        })
        .collect();
    let bad = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        let s = stats(&db);
        if s.idle + s.in_use + s.opening > 2 {
            bad.lock().unwrap().push(format!("{s:?}"));
        }
    }
    stop.store(true, SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    assert!(
        bad.lock().unwrap().is_empty(),
        "{:?}",
        bad.lock().unwrap().first()
    );
}
