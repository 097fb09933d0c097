//! State: nothing one user does with a session reaches the next user of it.

use pool_driver::{Connection, Driver, DriverErrorKind, ResetMode, Value};

use crate::reuse::{run, value};
use crate::subject::{StateProbe, Subject};

/// For every probe: set the state, detach with the full reset, attach: the next user sees the
/// baseline. The same session comes back (the check would prove nothing on a new one), unless
/// the driver refuses to reuse it (`NotReusable`: it is closed, which is also safe).
pub fn no_session_state_reaches_the_next_user<S: Subject>(subject: &S) {
    let driver = subject.driver();
    let probes = subject.state_probes();
    assert!(!probes.is_empty(), "a driver has session state to probe");
    for probe in probes {
        let (conn, id, baseline) = dirty_session(subject, &probe);
        let handle = match driver.detach(conn, ResetMode::Full) {
            Ok(handle) => handle,
            Err(e) if e.kind() == DriverErrorKind::NotReusable => continue,
            Err(e) => panic!("{}: the full reset failed: {e}", probe.name),
        };
        let mut next = driver.attach(handle).expect("attach");
        assert_eq!(
            subject.session_id(&mut next),
            id,
            "{}: same session",
            probe.name
        );
        assert_eq!(
            value(&mut next, &probe.observe),
            baseline,
            "{}: reached the next user",
            probe.name
        );
        assert!(!next.is_broken());
    }
}

/// A rollback-only reset ends an open transaction (its write is gone) and keeps the session.
pub fn rollback_only_ends_the_transaction_and_keeps_the_session<S: Subject>(subject: &S) {
    let driver = subject.driver();
    let probe = subject.transaction_probe();
    let (conn, id, baseline) = dirty_session(subject, &probe);
    let handle = driver
        .detach(conn, ResetMode::RollbackOnly)
        .expect("rollback-only detach");
    let mut next = driver.attach(handle).expect("attach");
    assert_eq!(subject.session_id(&mut next), id, "the session is kept");
    assert_eq!(value(&mut next, &probe.observe), baseline, "rolled back");
}

/// A fresh session with `probe`'s state set: the connection, its session id, and the value
/// `probe.observe` read before the state was set (asserted to differ from the value now).
fn dirty_session<S: Subject>(
    subject: &S,
    probe: &StateProbe,
) -> (<S::Driver as Driver>::Conn, Value, Value) {
    let mut conn = subject.connect(&subject.args(None)).expect("connect");
    for statement in &probe.prepare {
        run(&mut conn, statement);
    }
    let id = subject.session_id(&mut conn);
    let baseline = value(&mut conn, &probe.observe);
    for statement in &probe.set {
        run(&mut conn, statement);
    }
    assert_ne!(
        value(&mut conn, &probe.observe),
        baseline,
        "{}: the probe must see the state",
        probe.name
    );
    (conn, id, baseline)
}
