//! Faults: broken sessions are never parked, checks are bounded, restarts are survived.

use std::time::{Duration, Instant};

use pool_driver::{Connection, Driver, ResetMode};
use pool_testservers::ProxyMode;

use crate::reuse::proxy;
use crate::subject::Subject;

/// How long the suite lets `connected` take on a dead or silent peer.
const CHECK: Duration = Duration::from_millis(300);

/// A session the server killed: the next statement fails, the connection says it is broken,
/// and `detach` refuses it (the pool closes it instead of parking it). A parked handle whose
/// session was killed fails `connected`.
pub fn killed_session_is_broken_and_not_parked<S: Subject>(subject: &S) {
    let driver = subject.driver();
    let mut victim = subject.connect(&subject.args(None)).expect("connect");
    let id = subject.session_id(&mut victim);
    subject.kill_session(&id);
    let mut failed = false;
    // A kill can take a moment to land; a few statements are enough for any driver.
    for _ in 0..20 {
        let trivial = subject.trivial();
        if victim.query(&trivial.text, &trivial.params).is_err() {
            failed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(failed, "a statement on a killed session fails");
    assert!(victim.is_broken(), "a killed session is broken");
    assert!(
        driver.detach(victim, ResetMode::Full).is_err(),
        "never parked"
    );

    let mut parked = subject.connect(&subject.args(None)).expect("connect");
    let id = subject.session_id(&mut parked);
    let mut handle = driver.detach(parked, ResetMode::Full).expect("detach");
    subject.kill_session(&id);
    let started = Instant::now();
    assert!(
        !driver.connected(&mut handle, CHECK),
        "a killed parked session is dead"
    );
    assert!(started.elapsed() < CHECK * 10, "{:?}", started.elapsed());
}

/// `connected` on a peer that went silent (a network that drops everything) answers `false`
/// within its bound instead of hanging.
pub fn connected_is_bounded_on_a_silent_peer<S: Subject>(subject: &S) {
    let driver = subject.driver();
    let proxy = proxy(subject);
    let conn = subject
        .connect(&subject.args(Some(proxy.port())))
        .expect("connect through the proxy");
    let mut handle = driver.detach(conn, ResetMode::Full).expect("detach");
    assert!(
        driver.connected(&mut handle, CHECK),
        "alive through the proxy"
    );
    proxy.set_mode(ProxyMode::Blackhole);
    let started = Instant::now();
    assert!(!driver.connected(&mut handle, CHECK), "silent is not alive");
    let took = started.elapsed();
    // The proxy goes first: dropping the handle may close the client, which can wait for the
    // (silent) server's goodbye; the pool closes on helper threads for this reason.
    drop(proxy);
    drop(handle);
    assert!(
        took < CHECK * 10,
        "connected took {took:?} on a silent peer"
    );
}

/// After the server restarts, an old parked handle is dead (`connected` says so, in bound), an
/// attached session fails and is broken, and a fresh connect works.
pub fn restart_recovery<S: Subject>(subject: &S) {
    let driver = subject.driver();
    let mut parked = driver
        .detach(
            subject.connect(&subject.args(None)).expect("connect"),
            ResetMode::Full,
        )
        .expect("detach");
    let mut attached = subject.connect(&subject.args(None)).expect("connect");
    assert!(driver.connected(&mut parked, CHECK));

    subject.restart();

    let started = Instant::now();
    assert!(
        !driver.connected(&mut parked, CHECK),
        "the old handle is dead"
    );
    assert!(started.elapsed() < CHECK * 10, "{:?}", started.elapsed());
    let trivial = subject.trivial();
    assert!(
        attached.query(&trivial.text, &trivial.params).is_err(),
        "the old session is gone"
    );
    assert!(attached.is_broken());
    assert!(driver.detach(attached, ResetMode::Full).is_err());

    let mut fresh = subject
        .connect(&subject.args(None))
        .expect("a fresh connect");
    let _ = subject.session_id(&mut fresh);
    let mut handle = driver.detach(fresh, ResetMode::Full).expect("detach");
    assert!(driver.connected(&mut handle, CHECK));
}
