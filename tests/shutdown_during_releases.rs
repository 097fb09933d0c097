//! `shutdown` while threads keep opening and releasing leaves no connection open: neither those
//! the old pool parked or had in flight, nor those of pools the threads recreated after it. Own
//! binary: `shutdown` is process-wide.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::fake::new_db;
use common::{wait_until, SOON};
use pool::Settings;

#[test]
fn shutdown_racing_fast_releases_leaves_nothing_open() {
    for round in 0..40 {
        let db = new_db("shut");
        let a = format!("db={}", db.name);
        pool::configure(
            "fake",
            &a,
            Settings {
                max_open: 3,
                acquire_timeout: Duration::from_secs(5),
                ..Settings::default()
            },
        )
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (a, stop, ops) = (a.clone(), Arc::clone(&stop), Arc::clone(&ops));
                thread::spawn(move || {
                    while !stop.load(SeqCst) {
                        if let Ok(conn) = pool::open("fake", &a) {
                            let _ = conn.release();
                        }
                        ops.fetch_add(1, SeqCst);
                    }
                })
            })
            .collect();
        wait_until("threads are busy", SOON, || ops.load(SeqCst) > 200);
        pool::shutdown();
        stop.store(true, SeqCst);
        for t in threads {
            t.join().unwrap();
        }
        // Pools created after the first shutdown by the still-running threads:
        pool::shutdown();
        wait_until(
            &format!("round {round}: every connection closed"),
            Duration::from_secs(3),
            || db.live() == 0,
        );
    }
}
