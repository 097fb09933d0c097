//! State: nothing one user does with a session reaches the next user of it.

use pool_driver::{Connection, Driver, DriverErrorKind, ResetMode, Value};

use crate::reuse::{run, value};
use crate::subject::{NativeProbe, StateProbe, Subject};

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
    assert!(
        conn.needs_reset(),
        "{}: a session that ran the probe must need its reset",
        probe.name
    );
    assert_ne!(
        value(&mut conn, &probe.observe),
        baseline,
        "{}: the probe must see the state",
        probe.name
    );
    (conn, id, baseline)
}

/// For every native probe ([`Subject::native_probes`]): the state it sets through the native
/// client is gone after a full reset. Each probe is checked alone: a witness session first
/// shows the probe sees its state; then on a session just reset (so nothing marks it used but
/// the probe), the probe's `set` is the only access before the release, and the next user of
/// the same session must see the baseline (or the driver refuses the session: `NotReusable`).
pub fn no_native_session_state_reaches_the_next_user<S: Subject>(subject: &S) {
    for probe in subject.native_probes() {
        probe_alone(subject, &probe, ResetMode::Full);
    }
}

/// For every rollback-only probe ([`Subject::rollback_only_probes`]): a rollback-only release
/// after it either hands the same session on without the state, or fails (any error: the pool
/// closes a connection whose `detach` failed, so nothing reaches the next user). State
/// rollback-only keeps by design (for example a selected database) is not probed here.
pub fn rollback_only_never_hands_on_what_it_cannot_undo<S: Subject>(subject: &S) {
    for probe in subject.rollback_only_probes() {
        probe_alone(subject, &probe, ResetMode::RollbackOnly);
    }
}

/// One probe, the strict way: its `set` is the only thing that runs on the session between
/// two resets, so a driver that does not notice that access (and skips the reset of a session
/// it takes for unused) fails. First a witness session shows the probe works (the state is
/// seen while set, the witness is then dropped); then a session is connected, used once (its
/// id), reset and attached, the probe's `set` runs, and `detach` with `mode` must either fail
/// (the connection is closed, which is safe) or hand on the same session without the state.
fn probe_alone<S: Subject>(
    subject: &S,
    probe: &NativeProbe<<S::Driver as Driver>::Conn>,
    mode: ResetMode,
) {
    let driver = subject.driver();
    let mut witness = subject.connect(&subject.args(None)).expect("connect");
    for statement in &probe.prepare {
        run(&mut witness, statement);
    }
    let baseline = (probe.observe)(&mut witness);
    (probe.set)(&mut witness);
    assert_ne!(
        (probe.observe)(&mut witness),
        baseline,
        "{}: the probe must see the state",
        probe.name
    );
    drop(witness);

    let mut conn = subject.connect(&subject.args(None)).expect("connect");
    let id = subject.session_id(&mut conn);
    let handle = driver
        .detach(conn, ResetMode::Full)
        .unwrap_or_else(|e| panic!("{}: the reset before the probe failed: {e}", probe.name));
    let mut conn = driver.attach(handle).expect("attach");
    (probe.set)(&mut conn);
    let handle = match driver.detach(conn, mode) {
        Ok(handle) => handle,
        Err(e) if mode == ResetMode::RollbackOnly || e.kind() == DriverErrorKind::NotReusable => {
            return
        }
        Err(e) => panic!("{}: the {mode:?} reset failed: {e}", probe.name),
    };
    let mut next = driver.attach(handle).expect("attach");
    assert_eq!(
        subject.session_id(&mut next),
        id,
        "{}: same session",
        probe.name
    );
    assert_eq!(
        (probe.observe)(&mut next),
        baseline,
        "{}: reached the next user after a {mode:?} release",
        probe.name
    );
    assert!(!next.is_broken(), "{}", probe.name);
}
