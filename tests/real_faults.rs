//! Fault tests against real servers: each test starts its own private server, which it may stop,
//! kill and restart without disturbing any other test.

mod common;

use std::time::{Duration, Instant};

use common::real::{fresh_user, Backend, OwnServer, TestUser};
use common::{after_resets, wait_until};
use pool::{DriverErrorKind, Error, Settings};
use rstest::rstest;

/// How the server goes away between two requests.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// A clean stop (PostgreSQL fast shutdown / MariaDB SIGTERM), then a start.
    Restart,
    /// SIGKILL, then a start (crash recovery).
    KillAndRestart,
}

fn outage(server: &mut OwnServer, how: Outage) {
    if let Outage::KillAndRestart = how {
        server.kill();
    }
    server.restart();
}

/// Opens two connections at once and releases both, so two handles are parked. Returns their
/// server session ids.
fn park_two(user: &TestUser<'_>) -> [i64; 2] {
    let mut a = user.open();
    let mut b = user.open();
    let ids = [
        user.backend.session_id(&mut a),
        user.backend.session_id(&mut b),
    ];
    a.release().expect("release a");
    b.release().expect("release b");
    assert_eq!(after_resets(|| user.stats()).idle, 2, "two parked handles");
    ids
}

/// 6. The server restarts between two requests. The parked handles are older than
/// `validate_after` (50 ms here), so `open` checks them, drops both dead ones and connects
/// afresh: the caller sees no error at all.
#[rstest]
#[case::postgres_restart(Backend::Postgres, Outage::Restart)]
#[case::mariadb_restart(Backend::Maria, Outage::Restart)]
#[case::postgres_kill(Backend::Postgres, Outage::KillAndRestart)]
#[case::mariadb_kill(Backend::Maria, Outage::KillAndRestart)]
fn restart_between_requests_is_invisible_to_the_caller(
    #[case] backend: Backend,
    #[case] how: Outage,
) {
    const VALIDATE_AFTER: Duration = Duration::from_millis(50);
    let mut server = OwnServer::start(backend);
    let user = fresh_user(server.server(), "restart");
    let (name, args) = (user.name.clone(), user.args.clone());
    user.configure(Settings {
        validate_after: VALIDATE_AFTER,
        ..Settings::default()
    });
    let before = park_two(&user);
    let parked_at = Instant::now();
    drop(user);

    let started = Instant::now();
    outage(&mut server, how);
    eprintln!(
        "{backend:?} {how:?}: server back after {:?}",
        started.elapsed()
    );
    let user = TestUser {
        backend,
        name,
        args,
        server: server.server(),
    };
    // The handles must be older than the validation window (the restart alone normally takes
    // longer; this makes it certain).
    wait_until(
        "the parked handles are older than validate_after",
        Duration::from_secs(1),
        || parked_at.elapsed() > VALIDATE_AFTER * 2,
    );

    let mut conn = user.open();
    let after = backend.session_id(&mut conn);
    assert!(
        !before.contains(&after),
        "a fresh session: {after} vs {before:?}"
    );
    let rows = conn.query("SELECT 1", &[]).expect("the first query works");
    assert_eq!(rows.scalar().and_then(pool::Value::as_i64), Some(1));
    conn.release().expect("release");

    // Both stale handles were found dead (by this open, or by the sweep it asked for).
    wait_until(
        "both stale handles dropped",
        Duration::from_secs(10),
        || user.stats().dropped_dead == 2,
    );
    let stats = user.stats();
    assert_eq!(stats.connect_failures, 0, "{stats:?}");
}

/// 6b. The server restarts, and the next request comes while the parked handle is still inside
/// the validation window, so it is handed out unchecked (the point of the window: no round trip
/// on a busy pool). Here is what the caller sees then:
///
/// * `open` succeeds (no check);
/// * the first statement fails with `Error::Query` whose kind is `Broken` (PostgreSQL: the
///   SQLSTATE 57P01 "terminating connection due to administrator command" the old backend left
///   in the socket, or a closed connection after a kill; MariaDB: the server went away);
/// * `release` returns `Ok`: the driver marked the connection broken, so the pool closes it
///   instead of parking it, and marks every other parked handle suspect;
/// * the next `open` validates the suspect handle, drops it, connects afresh, and works.
///
/// The window is set to 30 s rather than left at the default 500 ms: a restart takes about
/// 130–420 ms here (measured), too close to 500 ms on a loaded machine, where the handle would
/// sometimes already be outside the window (and checked, as in the test above), making this
/// test flaky. The behaviour inside the window is the same whatever its length.
#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::mariadb(Backend::Maria)]
fn restart_inside_the_validate_window_fails_one_statement(#[case] backend: Backend) {
    let mut server = OwnServer::start(backend);
    let user = fresh_user(server.server(), "window");
    let (name, args) = (user.name.clone(), user.args.clone());
    user.configure(Settings {
        validate_after: Duration::from_secs(30),
        ..Settings::default()
    });
    let before = park_two(&user);
    drop(user);

    outage(&mut server, Outage::Restart);
    let user = TestUser {
        backend,
        name,
        args,
        server: server.server(),
    };

    let mut conn = user.open();
    let err = conn
        .query("SELECT 1", &[])
        .expect_err("the stale session cannot answer");
    eprintln!("{backend:?}: the first statement after the restart: {err}");
    match &err {
        Error::Query(e) => assert_eq!(e.kind(), DriverErrorKind::Broken, "{err:?}"),
        other => panic!("expected Error::Query, got {other:?}"),
    }
    conn.release()
        .expect("release of a broken connection closes it");
    // Closed, not parked (the next open below also gets neither stale session). The other
    // parked handle may already be in the reaper's hands (the broken one asked for a sweep),
    // so only the counts that cannot race are exact here.
    let stats = user.stats();
    assert_eq!(stats.in_use, 0, "{stats:?}");
    assert!(stats.dropped_dead >= 1, "{stats:?}");

    let mut conn = user.open();
    let after = backend.session_id(&mut conn);
    assert!(
        !before.contains(&after),
        "a fresh session: {after} vs {before:?}"
    );
    conn.query("SELECT 1", &[])
        .expect("the next request is clean");
    conn.release().expect("release");
    wait_until(
        "the suspect handle was checked and dropped",
        Duration::from_secs(10),
        || user.stats().dropped_dead == 2,
    );
}
