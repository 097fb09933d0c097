//! Statement deadlines: a driver that says it bounds statements
//! ([`Connection::set_statement_timeout`] returns `true`) must stop a statement past its
//! deadline in time, with [`DriverErrorKind::StatementTimeout`], and leave either a usable
//! session (the server cancelled the statement) or a broken one that `detach` refuses; a
//! statement within its deadline is untouched.

use std::time::{Duration, Instant};

use pool_driver::{Connection, Driver, DriverErrorKind, ResetMode};

use crate::reuse::{run, value};
use crate::subject::Subject;

/// The deadline the check sets.
const DEADLINE: Duration = Duration::from_millis(300);
/// How far past the deadline the caller may come back when the server acknowledges the
/// cancel at once (a private server on loopback).
const SLACK: Duration = Duration::from_millis(200);

/// A slow statement under a deadline fails in time with `StatementTimeout`; then the session
/// is the same and works (and parks and attaches as itself), or it is broken and never
/// parked. A statement well within a longer deadline, and one with the deadline removed,
/// run as usual.
pub fn statement_past_its_deadline_is_stopped_in_time<S: Subject>(subject: &S) {
    let driver = subject.driver();
    let mut conn = subject.connect(&subject.args(None)).expect("connect");
    if !conn.set_statement_timeout(Some(DEADLINE)) {
        eprintln!("note: this driver does not bound statements; deadline check skipped");
        return;
    }
    let slow = subject
        .slow_statement(5.0)
        .expect("a driver that bounds statements names a slow statement (Subject::slow_statement)");
    let id = subject.session_id(&mut conn);
    let started = Instant::now();
    let err = conn
        .query(&slow.text, &slow.params)
        .expect_err("a 5 s statement under a 300 ms deadline fails");
    let took = started.elapsed();
    assert_eq!(err.kind(), DriverErrorKind::StatementTimeout, "{err}");
    assert!(took >= DEADLINE, "stopped before its deadline: {took:?}");
    assert!(took <= DEADLINE + SLACK, "stopped late: {took:?}");
    if conn.is_broken() {
        assert!(
            driver.detach(conn, ResetMode::Full).is_err(),
            "a connection broken by its deadline is never parked"
        );
        conn = subject.connect(&subject.args(None)).expect("connect");
    } else {
        run(&mut conn, &subject.trivial());
        assert_eq!(subject.session_id(&mut conn), id, "the same session");
        let handle = driver.detach(conn, ResetMode::Full).expect("detach");
        conn = driver.attach(handle).expect("attach");
        assert_eq!(subject.session_id(&mut conn), id, "parked as itself");
    }
    assert!(conn.set_statement_timeout(Some(Duration::from_secs(5))));
    let quick = subject.slow_statement(0.05).expect("slow statement");
    value(&mut conn, &quick);
    assert!(conn.set_statement_timeout(None));
    let quick = subject.slow_statement(0.4).expect("slow statement");
    value(&mut conn, &quick);
    assert!(!conn.is_broken());
}
