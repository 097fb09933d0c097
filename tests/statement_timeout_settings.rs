//! The pool's side of statement deadlines, over the fake driver: every `open` gives the
//! connection the pool's `statement_timeout` (so a lease's own override ends with the lease, and
//! new settings reach the next `open`); a deadline past is `Error::StatementTimeout`, transient,
//! counted, and a session its driver kept usable is parked again; a driver that cannot bound
//! statements says so. The real drivers' cancels are in `tests/statement_deadlines.rs`.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use common::after_resets;
use common::engine::{configure, db, id, open};
use common::fake::{quiet, stats, FakeConn, FakeDb};
use pool::{Error, Settings};
use rstest::rstest;

fn deadline(conn: &pool::Conn) -> Option<Duration> {
    conn.native::<FakeConn>().unwrap().deadline
}

#[rstest]
fn every_open_gives_the_pools_deadline(db: Arc<FakeDb>) {
    configure(
        &db,
        Settings {
            statement_timeout: Some(Duration::from_millis(100)),
            max_open: 1,
            ..quiet()
        },
    );
    let mut conn = open(&db);
    let first = id(&conn);
    assert_eq!(deadline(&conn), Some(Duration::from_millis(100)));
    let err = conn
        .execute("SLEEP 200", &[])
        .expect_err("past the deadline");
    match &err {
        Error::StatementTimeout { timeout, source } => {
            assert_eq!(*timeout, Duration::from_millis(100));
            assert_eq!(source.kind(), pool::DriverErrorKind::StatementTimeout);
        }
        other => panic!("expected StatementTimeout, got {other:?}"),
    }
    assert!(err.is_transient());
    assert_eq!(conn.execute("SLEEP 50", &[]).expect("within it"), 50);

    // This lease's own deadline...
    conn.set_statement_timeout(Some(Duration::from_secs(1)))
        .expect("override");
    assert_eq!(
        conn.execute("SLEEP 200", &[]).expect("within the override"),
        200
    );
    conn.release().unwrap();
    let s = after_resets(|| stats(&db));
    assert_eq!(s.statement_timeouts, 1);
    assert_eq!(
        s.idle, 1,
        "a session its driver kept usable is parked again"
    );

    // ...ends with the lease: the same connection, the pool's deadline again.
    let mut conn = open(&db);
    assert_eq!(id(&conn), first);
    assert_eq!(deadline(&conn), Some(Duration::from_millis(100)));
    assert!(matches!(
        conn.execute("SLEEP 200", &[]),
        Err(Error::StatementTimeout { .. })
    ));
    conn.set_statement_timeout(None).expect("no bound");
    assert_eq!(deadline(&conn), None);
    assert!(matches!(
        conn.set_statement_timeout(Some(Duration::ZERO)),
        Err(Error::InvalidSettings { .. })
    ));
    conn.release().unwrap();

    // New settings reach the next open.
    configure(
        &db,
        Settings {
            statement_timeout: None,
            max_open: 1,
            ..quiet()
        },
    );
    let mut conn = open(&db);
    assert_eq!(id(&conn), first);
    assert_eq!(deadline(&conn), None);
    assert_eq!(conn.execute("SLEEP 5000", &[]).expect("no bound"), 5000);
    conn.release().unwrap();
    assert_eq!(after_resets(|| stats(&db)).statement_timeouts, 2);
}

#[rstest]
fn the_default_deadline_is_30_seconds_and_zero_is_refused(db: Arc<FakeDb>) {
    assert_eq!(
        Settings::default().statement_timeout,
        Some(Duration::from_secs(30))
    );
    let conn = open(&db);
    assert_eq!(deadline(&conn), Some(Duration::from_secs(30)));
    conn.release().unwrap();
    let bad = pool::configure(
        "fake",
        &common::fake::args(&db),
        Settings {
            statement_timeout: Some(Duration::ZERO),
            ..quiet()
        },
    );
    match bad {
        Err(Error::InvalidSettings { message }) => {
            assert!(message.contains("statement_timeout"), "{message}")
        }
        other => panic!("expected InvalidSettings, got {other:?}"),
    }
}

#[rstest]
fn a_driver_that_cannot_bound_statements_says_so(db: Arc<FakeDb>) {
    db.unbounded_statements.store(true, SeqCst);
    let mut conn = open(&db);
    assert_eq!(deadline(&conn), None, "the driver ignored it");
    assert!(matches!(
        conn.set_statement_timeout(Some(Duration::from_secs(1))),
        Err(Error::InvalidSettings { .. })
    ));
    conn.set_statement_timeout(None)
        .expect("asking for no bound is fine");
    assert_eq!(
        conn.execute("SLEEP 100000", &[]).expect("unbounded"),
        100000
    );
    conn.release().unwrap();
}
