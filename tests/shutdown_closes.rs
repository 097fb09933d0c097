//! After `shutdown`, releasing a connection that broke never waits for its close (a client
//! library may wait on a silent network while closing it). Its own binary: `shutdown` is
//! process-wide.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::engine::{configure, db, open};
use common::fake::{quiet, FakeDb};
use common::{wait_until, SOON};
use rstest::rstest;

#[rstest]
fn after_shutdown_a_broken_release_does_not_wait_for_its_close(db: Arc<FakeDb>) {
    configure(&db, quiet());
    let mut conn = open(&db);
    pool::shutdown();
    db.close_gate.close();
    conn.execute("BREAK", &[]).unwrap();
    let started = Instant::now();
    conn.release().unwrap();
    let took = started.elapsed();
    db.close_gate.open();
    assert!(took < Duration::from_millis(200), "release waited {took:?}");
    wait_until("the connection is closed", SOON, || db.live() == 0);
    assert_eq!(db.connects.load(SeqCst), 1);
}
