//! Dead and broken connections are closed off the caller's thread, all at once: a close that
//! hangs (a client library waiting on a silent network) holds its room for at most the
//! closer's 1 s grace, never one grace after another, and never blocks a caller (after
//! shutdown too: `shutdown_closes.rs`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::engine::{configure, db, open};
use common::fake::{quiet, stats, FakeDb};
use common::{wait_until, SOON};
use pool::Settings;
use rstest::rstest;

#[rstest]
fn hanging_closes_hold_their_room_for_one_grace_together(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            max_open: 4,
            acquire_timeout: Duration::from_secs(5),
            ..quiet()
        },
    );
    let mut conns: Vec<_> = (0..4).map(|_| open(&db)).collect();
    db.close_gate.close();
    // Whatever happens below, the hung closes are let go when the test ends.
    struct Reopen<'a>(&'a common::fake::Gate);
    impl Drop for Reopen<'_> {
        fn drop(&mut self) {
            self.0.open();
        }
    }
    let _reopen = Reopen(&db.close_gate);
    let released = Instant::now();
    for conn in &mut conns {
        conn.execute("BREAK", &[]).unwrap();
    }
    drop(conns);
    assert!(
        released.elapsed() < Duration::from_millis(200),
        "release never waits for a close"
    );
    // All four rooms come back after one grace (1 s), not after four. On a thread of its own,
    // so that a regression fails this test instead of hanging it.
    let (done, opened) = std::sync::mpsc::channel();
    let opener = Arc::clone(&db);
    std::thread::spawn(move || {
        let fresh: Vec<_> = (0..4).map(|_| open(&opener)).collect();
        let _ = done.send(released.elapsed());
        drop(fresh);
    });
    let took = opened
        .recv_timeout(Duration::from_secs(8))
        .expect("four opens did not finish within 8 s");
    eprintln!("four fresh connections {took:?} after four hanging closes");
    assert!(
        took < Duration::from_millis(1800),
        "rooms came back only after {took:?}"
    );
    assert_eq!(db.close_gate.arrived(), 4, "the four closes ran at once");
    db.close_gate.open();
    wait_until("the hung closes finished", SOON, || {
        db.live() == stats(&db).idle + stats(&db).in_use
    });
}
