//! The driver against private Redis servers that tests kill, restart, or cut off.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pool_driver::{Connection, Driver, DriverErrorKind, ResetMode, Value};
use pool_redis::RedisDriver;
use pool_testservers::{Proxy, ProxyMode, RedisServer};

mod common;
use common::{client_field, connect_with, cycle, key, q, text, TIMEOUT};

fn start(extra: &[&str]) -> RedisServer {
    RedisServer::start_with(extra).unwrap_or_else(|e| panic!("starting redis: {e}"))
}

#[test]
fn untouched_session_detaches_without_io() {
    let mut server = start(&[]);
    let driver = RedisDriver::new();
    let conn = connect_with(&driver, &server.args());
    server.kill().expect("kill");
    // Any round trip would fail now: the detach must not make one.
    let handle = driver
        .detach(conn, ResetMode::Full)
        .expect("no I/O, no error");
    let mut conn = driver.attach(handle).expect("attach");
    assert!(!driver.connected(&mut conn, TIMEOUT), "the server is gone");
}

#[test]
fn connected_is_false_and_quick_on_a_killed_server_and_restart_works() {
    let mut server = start(&[]);
    let driver = RedisDriver::new();
    let mut conn = connect_with(&driver, &server.args());
    q(&mut conn, "PING", &[]);
    let mut parked = driver.detach(conn, ResetMode::Full).expect("detach");
    assert!(driver.connected(&mut parked, TIMEOUT));
    server.kill().expect("kill");
    assert!(!server.is_running());
    let started = Instant::now();
    assert!(!driver.connected(&mut parked, TIMEOUT));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    let args = driver.parse_args(&server.args()).expect("args");
    let err = driver.connect(&args, TIMEOUT).expect_err("server down");
    assert_eq!(err.kind(), DriverErrorKind::Connect, "{err}");

    server.restart().expect("restart");
    assert!(server.is_running());
    let mut fresh = connect_with(&driver, &server.args());
    assert_eq!(text(&mut fresh, "ACL WHOAMI", &[]), "pool_user");
    let mut fresh = cycle(&driver, fresh);
    assert_eq!(text(&mut fresh, "PING", &[]), "PONG");
}

#[test]
fn a_dying_server_breaks_the_session_in_use() {
    let mut server = start(&[]);
    let driver = RedisDriver::new();
    let mut conn = connect_with(&driver, &server.args());
    q(&mut conn, "SET", &["k", "v"]);
    server.kill().expect("kill");
    let err = conn.query("GET", &["k".into()]).expect_err("server gone");
    assert_eq!(err.kind(), DriverErrorKind::Broken, "{err}");
    assert!(conn.is_broken());
    assert!(driver.detach(conn, ResetMode::Full).is_err());
}

#[test]
fn silent_network_bounds_the_check_and_the_reset() {
    let server = start(&[]);
    let upstream: SocketAddr = format!("127.0.0.1:{}", server.port())
        .parse()
        .expect("addr");
    let proxy = Proxy::start(upstream).expect("proxy");
    let driver = RedisDriver::new();
    let args = format!(
        "host=127.0.0.1 port={} user={} password={} connect_timeout=0.5",
        proxy.port(),
        server.user(),
        server.password()
    );
    let mut conn = connect_with(&driver, &args);
    q(&mut conn, "PING", &[]);
    let mut parked = driver.detach(conn, ResetMode::Full).expect("detach");
    proxy.set_mode(ProxyMode::Blackhole);
    let started = Instant::now();
    assert!(!driver.connected(&mut parked, Duration::from_millis(300)));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );

    proxy.set_mode(ProxyMode::Pass);
    let mut conn = connect_with(&driver, &args);
    q(&mut conn, "PING", &[]);
    proxy.set_mode(ProxyMode::Blackhole);
    let started = Instant::now();
    let err = driver.detach(conn, ResetMode::Full).expect_err("no answer");
    assert_eq!(err.kind(), DriverErrorKind::Broken, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// A server without `RESET` (as before Redis 6.2): the first release finds out and falls back
/// to the rollback-only cleanup, which later releases use directly.
#[test]
fn server_without_reset_falls_back_to_rollback() {
    let server = start(&["--rename-command", "RESET", ""]);
    let driver = RedisDriver::new();
    let k = key("no-reset");
    let mut probe = connect_with(&driver, &server.default_user_args());
    let err = probe.query("RESET", &[]).expect_err("no RESET here");
    assert!(err.message().contains("unknown command"), "{err}");
    let mut conn = connect_with(&driver, &server.args());
    q(&mut conn, "SELECT", &["2"]);
    q(&mut conn, "AUTH", &["default", server.default_password()]);
    let mut conn = cycle(&driver, conn);
    // The handshake runs again after the rollback: configured user and db (0) are back.
    assert_eq!(text(&mut conn, "ACL WHOAMI", &[]), "pool_user");
    assert_eq!(client_field(&mut conn, "db"), "0");
    q(&mut conn, "SELECT", &["3"]);
    let mut conn = cycle(&driver, conn);
    assert_eq!(
        client_field(&mut conn, "db"),
        "0",
        "known now: rollback and handshake directly"
    );
    q(&mut conn, "MULTI", &[]);
    q(&mut conn, "SET", &[&k, "x"]);
    let mut conn = cycle(&driver, conn);
    assert_eq!(q(&mut conn, "GET", &[&k]).scalar(), Some(&Value::Null));
    assert_eq!(client_field(&mut conn, "multi"), "-1");
    q(&mut conn, "SUBSCRIBE", &[&k]);
    let err = driver
        .detach(conn, ResetMode::Full)
        .expect_err("subscribed");
    assert_eq!(err.kind(), DriverErrorKind::NotReusable, "{err}");
}

/// The first release on a server without `RESET` has a `MULTI` open: the handshake behind the
/// failed `RESET` is queued instead of run, so that connection is closed — but the server's
/// lack of `RESET` is remembered, and the next such release rolls back and is reused.
#[test]
fn server_without_reset_is_remembered_even_when_the_first_release_fails() {
    let server = start(&["--rename-command", "RESET", ""]);
    let driver = RedisDriver::new();
    let mut conn = connect_with(&driver, &server.args());
    q(&mut conn, "MULTI", &[]);
    let err = driver
        .detach(conn, ResetMode::Full)
        .expect_err("handshake was queued");
    assert_eq!(err.kind(), DriverErrorKind::Broken, "{err}");

    let mut conn = connect_with(&driver, &server.args());
    q(&mut conn, "MULTI", &[]);
    q(&mut conn, "SET", &["k", "queued"]);
    let mut conn = cycle(&driver, conn);
    assert_eq!(client_field(&mut conn, "multi"), "-1");
    assert_eq!(q(&mut conn, "GET", &["k"]).scalar(), Some(&Value::Null));
    assert_eq!(text(&mut conn, "ACL WHOAMI", &[]), "pool_user");
}
