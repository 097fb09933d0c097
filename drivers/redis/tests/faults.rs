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

/// A user that may switch protocols and track keys but not run `CLIENT INFO` (the server
/// cannot report this session's state to the cleanup) nor `CLIENT SETNAME` (the full reset's
/// `CLIENT SETNAME ""` is denied, which must not cost the connection).
const NO_INFO_USER: [&str; 10] = [
    "--user",
    "noinfo",
    "on",
    ">noinfo-pw",
    "~*",
    "&*",
    "+@all",
    "-@dangerous",
    "-client|info",
    "-client|setname",
];

fn no_info_args(server: &RedisServer) -> String {
    format!(
        "host=127.0.0.1 port={} user=noinfo password=noinfo-pw",
        server.port()
    )
}

/// The protocol of this session as `HELLO` (no arguments: report, switch nothing) tells it.
fn protocol(conn: &mut pool_redis::RedisConn) -> String {
    let hello = q(conn, "HELLO", &[]);
    let cells: Vec<String> = hello.rows().iter().map(|r| r[0].to_string()).collect();
    let at = cells
        .iter()
        .position(|c| c == "proto")
        .expect("proto in HELLO");
    cells[at + 1].clone()
}

/// Whether `CLIENT TRACKINGINFO` says tracking is on.
fn tracking(conn: &mut pool_redis::RedisConn) -> bool {
    let info = q(conn, "CLIENT TRACKINGINFO", &[]);
    let cells: Vec<String> = info.rows().iter().map(|r| r[0].to_string()).collect();
    cells.get(1).map(String::as_str) != Some("[off]")
}

/// Sends `cmd` through the native client and reads its one reply (or none, for a RESP3
/// `SUBSCRIBE`, whose confirmation is a push).
fn native_cmd(conn: &mut pool_redis::RedisConn, cmd: &redis::Cmd, reply: bool) -> redis::Value {
    let native = conn
        .native_mut()
        .downcast_mut::<redis::Connection>()
        .expect("native");
    if reply {
        cmd.query(native).expect("native command")
    } else {
        native
            .send_packed_command(&cmd.get_packed_command())
            .expect("send");
        redis::Value::Nil
    }
}

/// Whatever the first release on a RESET-less server must find out, done before the test's
/// own release.
fn learn_no_reset(driver: &RedisDriver, args: &str) {
    let mut conn = connect_with(driver, args);
    q(&mut conn, "PING", &[]);
    let _ = cycle(driver, conn);
}

/// On a server without `RESET`, the full release is the rollback-only cleanup plus the
/// handshake. State only `RESET` clears, set through the native client where no command text
/// shows it: RESP3, client tracking, a RESP3 subscription. The cleanup undoes RESP3 and
/// tracking and, from what the server reports, refuses what it cannot undo.
#[test]
fn server_without_reset_never_hands_on_resp3_or_tracking_set_natively() {
    let server = start(&["--rename-command", "RESET", ""]);
    let driver = RedisDriver::new();
    learn_no_reset(&driver, &server.args());

    let mut conn = connect_with(&driver, &server.args());
    native_cmd(&mut conn, redis::cmd("HELLO").arg(3), true);
    native_cmd(
        &mut conn,
        redis::cmd("CLIENT").arg("TRACKING").arg("ON"),
        true,
    );
    assert_eq!(client_field(&mut conn, "resp"), "3");
    let mut conn = cycle(&driver, conn);
    assert_eq!(
        client_field(&mut conn, "resp"),
        "2",
        "RESP3 reached the next user"
    );
    assert!(
        !client_field(&mut conn, "flags").contains('t'),
        "tracking reached the next user"
    );

    let mut conn = connect_with(&driver, &server.args());
    native_cmd(&mut conn, redis::cmd("HELLO").arg(3), true);
    native_cmd(&mut conn, redis::cmd("SUBSCRIBE").arg("natively"), false);
    let err = driver
        .detach(conn, ResetMode::Full)
        .expect_err("a subscribed session is not parked");
    assert_eq!(err.kind(), DriverErrorKind::NotReusable, "{err}");

    // A name set inside MULTI…EXEC, and one set through the native client: cleared.
    let mut conn = connect_with(&driver, &server.args());
    q(&mut conn, "MULTI", &[]);
    q(&mut conn, "CLIENT SETNAME", &["in-multi"]);
    q(&mut conn, "EXEC", &[]);
    let mut conn = cycle(&driver, conn);
    assert_eq!(
        q(&mut conn, "CLIENT GETNAME", &[]).scalar(),
        Some(&Value::Null)
    );
}

/// The server cannot report this session's state (`CLIENT INFO` is denied to the user, as it
/// is missing before Redis 6.2): the rollback-only cleanup still undoes RESP3 and tracking
/// (`HELLO 2`, `CLIENT TRACKING OFF`, which this user may run), and a subscription shows in
/// the replies themselves.
#[test]
fn rollback_only_without_client_info_undoes_resp3_and_tracking() {
    let server = start(&NO_INFO_USER);
    let driver = RedisDriver::new();
    let args = no_info_args(&server);
    let mut conn = connect_with(&driver, &args);
    assert!(
        conn.query("CLIENT INFO", &[]).is_err(),
        "CLIENT INFO is denied"
    );
    assert!(
        conn.query("CLIENT SETNAME", &["x".into()]).is_err(),
        "SETNAME is denied"
    );
    let id = text(&mut conn, "CLIENT ID", &[]);
    let handle = driver
        .detach(conn, ResetMode::Full)
        .expect("a full reset without CLIENT SETNAME");
    let mut conn = driver.attach(handle).expect("attach");
    assert_eq!(text(&mut conn, "CLIENT ID", &[]), id, "kept");
    // Set and checked through the native client only: no command text shows the state.
    let hello = native_cmd(&mut conn, redis::cmd("HELLO").arg(3), true);
    let proto = match &hello {
        redis::Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| *k == redis::Value::BulkString(b"proto".to_vec()))
            .map(|(_, v)| v.clone()),
        _ => None,
    };
    assert_eq!(proto, Some(redis::Value::Int(3)), "{hello:?}");
    let on = native_cmd(
        &mut conn,
        redis::cmd("CLIENT").arg("TRACKING").arg("ON"),
        true,
    );
    assert_eq!(on, redis::Value::Okay);
    let handle = driver
        .detach(conn, ResetMode::RollbackOnly)
        .unwrap_or_else(|e| panic!("RESP3 and tracking can be undone: {e}"));
    let mut conn = driver.attach(handle).expect("attach");
    assert_eq!(text(&mut conn, "CLIENT ID", &[]), id);
    assert_eq!(protocol(&mut conn), "2", "RESP3 reached the next user");
    assert!(!tracking(&mut conn), "tracking reached the next user");

    let mut conn = connect_with(&driver, &args);
    native_cmd(&mut conn, redis::cmd("HELLO").arg(3), true);
    native_cmd(&mut conn, redis::cmd("SUBSCRIBE").arg("natively"), false);
    let err = driver
        .detach(conn, ResetMode::RollbackOnly)
        .expect_err("a subscribed session is not parked");
    assert_eq!(err.kind(), DriverErrorKind::NotReusable, "{err}");
}

/// A plain connect to a server that accepts and never answers stays within its timeout,
/// whatever the handshake holds. (The `redis` crate reads each reply of its setup pipeline
/// under the whole bound even after one timed out: before the driver ran the handshake itself
/// under one deadline (`src/setup.rs`), giving the crate the whole bound took 2, 3 and
/// 4 times the timeout.)
#[test]
fn a_plain_connect_to_a_silent_server_stays_within_its_timeout() {
    let silent = pool_testservers::SilentListener::start().expect("silent listener");
    let driver = RedisDriver::new();
    let bound = Duration::from_secs(1);
    for extra in [
        "",
        " password=x",
        " password=x db=2",
        " user=u password=x db=2",
    ] {
        let text = format!("host=127.0.0.1 port={}{extra}", silent.port());
        let args = driver.parse_args(&text).expect("args");
        let started = Instant::now();
        let err = driver.connect(&args, bound).expect_err("silent");
        let took = started.elapsed();
        assert_eq!(err.kind(), DriverErrorKind::Timeout, "{text}: {err}");
        assert!(
            took < bound + Duration::from_millis(200),
            "{text}: {took:?}"
        );
    }
}
