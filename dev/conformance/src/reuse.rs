//! Reuse: a detached session moves between threads, an untouched one detaches without I/O,
//! and the native client is reachable.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use pool_driver::{Connection, Driver, ResetMode, Value};
use pool_testservers::{Proxy, ProxyMode};

use crate::subject::{Statement, Subject};

/// The connect timeout the suite gives the driver.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `statement` through the uniform API.
pub(crate) fn run<C: Connection>(conn: &mut C, statement: &Statement) {
    if let Err(e) = conn.execute(&statement.text, &statement.params) {
        panic!("{:?} failed: {e}", statement.text);
    }
}

/// Runs `statement` and returns the first value of its first row.
pub(crate) fn value<C: Connection>(conn: &mut C, statement: &Statement) -> Value {
    match conn.query(&statement.text, &statement.params) {
        Ok(rows) => rows.scalar().cloned().unwrap_or(Value::Null),
        Err(e) => panic!("{:?} failed: {e}", statement.text),
    }
}

/// A proxy in front of the subject's server.
pub(crate) fn proxy<S: Subject>(subject: &S) -> Proxy {
    let upstream = SocketAddr::from(([127, 0, 0, 1], subject.port()));
    Proxy::start(upstream).unwrap_or_else(|e| panic!("starting a proxy: {e}"))
}

/// A session detached on one thread and attached on another is the same server session,
/// and works there.
pub fn detached_session_moves_between_threads<S: Subject>(subject: &S) {
    let driver = subject.driver();
    let mut conn = subject.connect(&subject.args(None)).expect("connect");
    let id = subject.session_id(&mut conn);
    let handle = driver.detach(conn, ResetMode::Full).expect("detach");
    let moved = thread::scope(|scope| {
        scope
            .spawn(|| {
                let mut conn = driver.attach(handle).expect("attach on another thread");
                let id = subject.session_id(&mut conn);
                let handle = driver.detach(conn, ResetMode::Full).expect("detach again");
                (id, handle)
            })
            .join()
            .expect("the other thread")
    });
    assert_eq!(moved.0, id, "the same session on the other thread");
    let mut conn = driver.attach(moved.1).expect("attach back");
    assert_eq!(subject.session_id(&mut conn), id);
}

/// A session nobody used since it was connected (or attached) needs no reset: `detach` sends
/// nothing. Proven through a proxy that swallows all traffic once the session is open: any
/// I/O would hang or fail.
pub fn untouched_session_detaches_without_io<S: Subject>(subject: &S) {
    let proxy = proxy(subject);
    let conn = subject
        .connect(&subject.args(Some(proxy.port())))
        .expect("connect through the proxy");
    assert!(!conn.needs_reset(), "a fresh session needs no reset");
    assert!(
        detaches_without_io(subject, conn, proxy),
        "detaching an untouched session must succeed without I/O"
    );
}

/// A session that ran only statements the driver promises leave it unchanged
/// ([`Subject::unchanging_statements`], for example Redis `GET`/`SET`) says it needs no reset
/// and detaches with no I/O (proven through the silent proxy); each state probe's statements
/// make it need the reset.
pub fn unchanged_session_detaches_without_io<S: Subject>(subject: &S) {
    let statements = subject.unchanging_statements();
    if statements.is_empty() {
        eprintln!("note: this driver resets every used session; check skipped");
        return;
    }
    let proxy = proxy(subject);
    let mut conn = subject
        .connect(&subject.args(Some(proxy.port())))
        .expect("connect through the proxy");
    for statement in &statements {
        run(&mut conn, statement);
        assert!(
            !conn.needs_reset(),
            "`{}` leaves the session unchanged, so it needs no reset",
            statement.text
        );
    }
    assert!(
        detaches_without_io(subject, conn, proxy),
        "detaching a session that changed nothing must succeed without I/O"
    );

    // Every state probe, on a session that ran only unchanging statements before it (its
    // `prepare` too, where that is one of them): the probe alone must make it need the reset.
    // A driver that skips the reset of a session it believes unchanged must never believe
    // that of one that ran a probe.
    let mut checked = 0;
    for probe in subject.state_probes() {
        let mut conn = subject.connect(&subject.args(None)).expect("connect");
        for statement in statements.iter().chain(&probe.prepare) {
            run(&mut conn, statement);
        }
        if conn.needs_reset() {
            continue; // its `prepare` changed the session: it cannot be checked alone
        }
        for statement in &probe.set {
            run(&mut conn, statement);
        }
        assert!(conn.needs_reset(), "{}: the session changed", probe.name);
        checked += 1;
    }
    assert!(checked > 0, "at least one state probe can be checked alone");
}

/// Detaches `conn` (connected through `proxy`) with the proxy silent, on a thread of its own:
/// whether it succeeded within 2 s, which a driver doing I/O there cannot.
fn detaches_without_io<S: Subject>(
    subject: &S,
    conn: <S::Driver as Driver>::Conn,
    proxy: Proxy,
) -> bool {
    proxy.set_mode(ProxyMode::Blackhole);
    let (tx, rx) = mpsc::channel();
    let detached = thread::scope(|scope| {
        scope.spawn(move || {
            let handle = subject.driver().detach(conn, ResetMode::Full);
            let _ = tx.send(handle.is_ok());
        });
        let detached = rx.recv_timeout(Duration::from_secs(2));
        // Closing the proxy's links ends whatever still waits on them (a blocked detach, or
        // the handle's close: a client may say goodbye to the server when dropped).
        drop(proxy);
        detached
    });
    detached == Ok(true)
}

/// `native`/`native_mut` reach the driver's own client by its type, and the type name says it.
pub fn native_client_is_reachable_by_its_type<S: Subject>(subject: &S) {
    let mut conn = subject.connect(&subject.args(None)).expect("connect");
    assert_eq!(conn.native_type_name(), std::any::type_name::<S::Native>());
    assert!(conn.native().downcast_ref::<S::Native>().is_some());
    assert!(conn.native_mut().downcast_mut::<S::Native>().is_some());
    assert!(conn.needs_reset(), "native access counts as use");
}
