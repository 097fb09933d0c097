//! Shutdown while a released connection is being reset on the resetter thread: the connection
//! is closed when its reset returns, never parked, and nothing stays open. Its own binary:
//! `shutdown` is process-wide.

mod common;

use std::sync::Arc;
use std::thread;

use common::engine::{configure, db, open};
use common::fake::{quiet, FakeDb};
use common::{wait_until, SOON};
use rstest::rstest;

#[rstest]
fn shutdown_during_a_reset_closes_the_connection(db: Arc<FakeDb>) {
    configure(&db, quiet());
    let mut conn = open(&db);
    conn.execute("SET leaked", &[]).unwrap();
    db.detach_gate.close();
    conn.release().unwrap();
    wait_until("the reset started", SOON, || db.detach_gate.arrived() == 1);
    // Shutdown waits for the resetter (at most 1 s) while the reset is held at the gate.
    let shutdown = thread::spawn(pool::shutdown);
    // The registry lets go of its pools first, then shuts each.
    wait_until("shutdown began", SOON, || pool::all_stats().is_empty());
    db.detach_gate.open();
    shutdown.join().unwrap();
    wait_until("every connection is closed", SOON, || db.live() == 0);
}
