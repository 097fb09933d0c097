//! The driver against a private Redis (shared by this file's tests; none stops it).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use pool_driver::{Connection, Driver, DriverErrorKind, Value};
use pool_redis::RedisDriver;
use pool_testservers::{shared_redis, RedisServer};

mod common;
use common::{client_field, connect_with, cycle, key, q, text, TIMEOUT};

fn server() -> &'static RedisServer {
    shared_redis()
}

#[test]
fn commands_run_over_tcp_socket_and_url() {
    let driver = RedisDriver::new();
    for args in [server().args(), server().socket_args(), server().url()] {
        let mut conn = connect_with(&driver, &args);
        assert_eq!(text(&mut conn, "ACL WHOAMI", &[]), "pool_user", "{args}");
        let k = key("commands");
        let set = conn.execute("SET", &[Value::from(k.as_str()), Value::from("v1")]);
        assert_eq!(set.expect("SET"), 1, "OK counts as 1");
        assert_eq!(text(&mut conn, "GET", &[&k]), "v1");
        assert_eq!(
            conn.execute("DEL", &[Value::from(k.as_str())])
                .expect("DEL"),
            1
        );
        assert_eq!(q(&mut conn, "GET", &[&k]).scalar(), Some(&Value::Null));
        let pushed = conn.execute("RPUSH", &[k.as_str().into(), "a".into(), 2.into()]);
        assert_eq!(pushed.expect("RPUSH"), 2);
        let list = q(&mut conn, "LRANGE", &[&k, "0", "-1"]);
        assert_eq!(list.columns(), ["value"]);
        let cells: Vec<&Value> = list.rows().iter().map(|r| &r[0]).collect();
        assert_eq!(cells, [&Value::from("a"), &Value::from("2")]);
        assert_eq!(q(&mut conn, "LLEN", &[&k]).scalar(), Some(&Value::Int(2)));
        // A refused command is a query error; the session goes on.
        let wrong = conn
            .query("INCR", &[k.as_str().into()])
            .expect_err("WRONGTYPE");
        assert_eq!(wrong.kind(), DriverErrorKind::Query);
        assert_eq!(wrong.code(), Some("WRONGTYPE"), "{wrong}");
        let denied = conn
            .query("CONFIG GET", &["maxmemory".into()])
            .expect_err("ACL");
        assert_eq!(denied.code(), Some("NOPERM"), "{denied}");
        assert!(!conn.is_broken());
        conn.execute("DEL", &[k.as_str().into()]).expect("DEL");
    }
}

#[test]
fn native_client_is_reachable_and_marks_the_session() {
    let driver = RedisDriver::new();
    let mut conn = connect_with(&driver, &server().args());
    assert!(!conn.needs_reset(), "a fresh session needs no reset");
    let native = conn
        .native_mut()
        .downcast_mut::<redis::Connection>()
        .expect("native is redis::Connection");
    let pong: String = redis::cmd("PING").query(native).expect("PING");
    assert_eq!(pong, "PONG");
    assert!(conn.needs_reset());
    let mut conn = cycle(&driver, conn);
    assert!(!conn.needs_reset(), "reset clears the mark");
    assert_eq!(text(&mut conn, "PING", &[]), "PONG");
}

#[test]
fn wrong_password_is_a_clear_error_without_the_password() {
    let driver = RedisDriver::new();
    let s = server();
    let args = format!(
        "host=127.0.0.1 port={} user=pool_user password=Wr0ngPw-77",
        s.port()
    );
    let args = driver.parse_args(&args).expect("args");
    let err = driver.connect(&args, TIMEOUT).expect_err("wrong password");
    assert_eq!(err.kind(), DriverErrorKind::Connect, "{err}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("Wr0ngPw-77"), "{shown}");
    assert!(
        shown.contains("WRONGPASS") || shown.to_lowercase().contains("auth"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("127.0.0.1:{}", s.port())),
        "{shown}"
    );
}

#[test]
fn unused_port_is_a_clear_and_quick_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let driver = RedisDriver::new();
    let args = driver
        .parse_args(&format!("host=127.0.0.1 port={port} password=Secret-9"))
        .expect("args");
    let started = Instant::now();
    let err = driver.connect(&args, TIMEOUT).expect_err("nothing listens");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(err.kind(), DriverErrorKind::Connect, "{err}");
    let shown = format!("{err:?}");
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
    assert!(shown.to_lowercase().contains("refused"), "{shown}");
    assert!(!shown.contains("Secret-9"), "{shown}");
}

#[test]
fn untouched_session_needs_no_reset() {
    let driver = RedisDriver::new();
    let conn = connect_with(&driver, &server().args());
    assert!(!conn.needs_reset());
    let conn = cycle(&driver, conn);
    assert!(!conn.needs_reset());
}

#[test]
fn open_multi_is_discarded() {
    let driver = RedisDriver::new();
    let k = key("multi");
    let mut conn = connect_with(&driver, &server().args());
    q(&mut conn, "MULTI", &[]);
    assert_eq!(text(&mut conn, "SET", &[&k, "leaked"]), "QUEUED");
    let mut conn = cycle(&driver, conn);
    assert_eq!(q(&mut conn, "GET", &[&k]).scalar(), Some(&Value::Null));
    let exec = conn.query("EXEC", &[]).expect_err("no MULTI any more");
    assert!(exec.message().contains("without MULTI"), "{exec}");
    assert_eq!(client_field(&mut conn, "multi"), "-1");
}

#[test]
fn watch_is_cleared() {
    let driver = RedisDriver::new();
    let k = key("watch");
    let mut conn = connect_with(&driver, &server().args());
    q(&mut conn, "WATCH", &[&k]);
    let mut conn = cycle(&driver, conn);
    // Someone changes the key the previous user watched: this user's transaction must not care.
    let mut other = connect_with(&driver, &server().args());
    q(&mut other, "SET", &[&k, "changed"]);
    q(&mut conn, "MULTI", &[]);
    q(&mut conn, "SET", &[&k, "mine"]);
    let exec = q(&mut conn, "EXEC", &[]);
    assert_eq!(
        exec.len(),
        1,
        "EXEC ran (a watch would abort it with nil): {exec:?}"
    );
    assert_eq!(text(&mut other, "GET", &[&k]), "mine");
    q(&mut other, "DEL", &[&k]);
}

#[test]
fn select_is_undone_and_configured_db_restored() {
    let driver = RedisDriver::new();
    let mut conn = connect_with(&driver, &server().args());
    q(&mut conn, "SELECT", &["3"]);
    assert_eq!(client_field(&mut conn, "db"), "3");
    let mut conn = cycle(&driver, conn);
    assert_eq!(client_field(&mut conn, "db"), "0");

    let mut in_db5 = connect_with(&driver, &format!("{} db=5", server().args()));
    assert_eq!(client_field(&mut in_db5, "db"), "5");
    q(&mut in_db5, "SELECT", &["2"]);
    let mut in_db5 = cycle(&driver, in_db5);
    assert_eq!(
        client_field(&mut in_db5, "db"),
        "5",
        "RESET selects 0; the driver selects 5 again"
    );
}

#[test]
fn subscription_ends_and_pending_messages_never_reach_the_next_user() {
    let driver = RedisDriver::new();
    let channel = key("channel");
    let mut conn = connect_with(&driver, &server().args());
    q(&mut conn, "SUBSCRIBE", &[&channel]);
    q(&mut conn, "PSUBSCRIBE", &[&format!("{channel}*")]);
    let mut publisher = connect_with(&driver, &server().args());
    for i in 0..50 {
        q(&mut publisher, "PUBLISH", &[&channel, &format!("m{i}")]);
    }
    let mut conn = cycle(&driver, conn);
    assert_eq!(client_field(&mut conn, "sub"), "0");
    assert_eq!(client_field(&mut conn, "psub"), "0");
    assert_eq!(text(&mut conn, "PING", &["after"]), "after");
    assert_eq!(text(&mut conn, "ECHO", &["clean"]), "clean");
}

#[test]
fn monitor_mode_ends() {
    let driver = RedisDriver::new();
    let mut conn = connect_with(&driver, &server().default_user_args());
    q(&mut conn, "MONITOR", &[]);
    let mut other = connect_with(&driver, &server().args());
    for i in 0..20 {
        q(&mut other, "ECHO", &[&format!("seen-by-monitor-{i}")]);
    }
    let mut conn = cycle(&driver, conn);
    assert_eq!(text(&mut conn, "ECHO", &["mine"]), "mine");
    assert!(
        !client_field(&mut conn, "flags").contains('O'),
        "no longer a monitor"
    );
}

#[test]
fn secrets_never_show() {
    let driver = RedisDriver::new();
    let s = server();
    let conn = connect_with(&driver, &s.args());
    let args = driver.parse_args(&s.url()).expect("url");
    let shown = format!("{conn:?} {args} {args:?} {driver:?}");
    assert!(!shown.contains(s.password()), "{shown}");
    assert!(shown.contains("pool_user"), "{shown}");
}

#[test]
fn client_name_is_cleared_or_restored() {
    let driver = RedisDriver::new();
    let mut conn = connect_with(&driver, &server().args());
    q(&mut conn, "CLIENT SETNAME", &["leaky"]);
    let mut conn = cycle(&driver, conn);
    assert_eq!(
        q(&mut conn, "CLIENT GETNAME", &[]).scalar(),
        Some(&Value::Null)
    );

    let mut named = connect_with(&driver, &format!("{} name=web", server().args()));
    assert_eq!(text(&mut named, "CLIENT GETNAME", &[]), "web");
    q(&mut named, "CLIENT SETNAME", &["leaky"]);
    let mut named = cycle(&driver, named);
    assert_eq!(text(&mut named, "CLIENT GETNAME", &[]), "web");
}

#[test]
fn client_reply_off_through_the_native_client_is_undone() {
    let driver = RedisDriver::new();
    let k = key("reply-off");
    let mut conn = connect_with(&driver, &server().args());
    let native = conn
        .native_mut()
        .downcast_mut::<redis::Connection>()
        .expect("native");
    for cmd in [
        redis::cmd("CLIENT").arg("REPLY").arg("OFF").clone(),
        redis::cmd("SET").arg(&k).arg("silent").clone(),
    ] {
        native
            .send_packed_command(&cmd.get_packed_command())
            .expect("send");
    }
    let mut conn = cycle(&driver, conn);
    assert_eq!(
        text(&mut conn, "GET", &[&k]),
        "silent",
        "replies are on again"
    );
    q(&mut conn, "DEL", &[&k]);
}

#[test]
fn resp3_and_tracking_are_undone_and_pushes_skipped() {
    let driver = RedisDriver::new();
    let k = key("tracking");
    let mut conn = connect_with(&driver, &server().args());
    q(&mut conn, "HELLO", &["3"]);
    q(&mut conn, "CLIENT TRACKING", &["on"]);
    q(&mut conn, "SET", &[&k, "v"]);
    q(&mut conn, "GET", &[&k]);
    assert_eq!(client_field(&mut conn, "resp"), "3");
    // An invalidation push is now on its way to this session.
    let mut other = connect_with(&driver, &server().args());
    q(&mut other, "SET", &[&k, "v2"]);
    let mut conn = cycle(&driver, conn);
    assert_eq!(client_field(&mut conn, "resp"), "2");
    let tracking = q(&mut conn, "CLIENT TRACKINGINFO", &[]);
    let cells: Vec<String> = tracking.rows().iter().map(|r| r[0].to_string()).collect();
    assert_eq!(cells.get(1).map(String::as_str), Some("[off]"), "{cells:?}");
    assert_eq!(text(&mut conn, "GET", &[&k]), "v2");
    q(&mut conn, "DEL", &[&k]);
}

#[test]
fn acl_user_stays_the_acl_user_after_reset() {
    let driver = RedisDriver::new();
    let s = server();
    let mut conn = connect_with(&driver, &s.args());
    assert_eq!(text(&mut conn, "ACL WHOAMI", &[]), "pool_user");
    // The session switches itself to `default`; RESET would leave it there (or logged out).
    q(&mut conn, "AUTH", &["default", s.default_password()]);
    assert_eq!(text(&mut conn, "ACL WHOAMI", &[]), "default");
    let mut conn = cycle(&driver, conn);
    assert_eq!(text(&mut conn, "ACL WHOAMI", &[]), "pool_user");
    let denied = conn
        .query("CONFIG GET", &["port".into()])
        .expect_err("restricted again");
    assert_eq!(denied.code(), Some("NOPERM"), "{denied}");

    let mut dflt = connect_with(&driver, &s.default_user_args());
    q(&mut dflt, "SELECT", &["1"]);
    let mut dflt = cycle(&driver, dflt);
    assert_eq!(text(&mut dflt, "ACL WHOAMI", &[]), "default");
}

#[test]
fn rollback_only_discards_and_closes_subscribed_sessions() {
    let driver = RedisDriver::new();
    let k = key("rollback-only");
    let mut conn = connect_with(&driver, &server().args());
    q(&mut conn, "MULTI", &[]);
    q(&mut conn, "SET", &[&k, "x"]);
    let handle = driver
        .detach(conn, pool_driver::ResetMode::RollbackOnly)
        .expect("rollback");
    let mut conn = driver.attach(handle).expect("attach");
    assert_eq!(q(&mut conn, "GET", &[&k]).scalar(), Some(&Value::Null));
    assert_eq!(client_field(&mut conn, "multi"), "-1");

    q(&mut conn, "SUBSCRIBE", &[&k]);
    let err = driver
        .detach(conn, pool_driver::ResetMode::RollbackOnly)
        .expect_err("a subscribed session is not parked");
    assert_eq!(err.kind(), DriverErrorKind::NotReusable, "{err}");
}

#[test]
fn connected_answers_with_the_nonce() {
    let driver = RedisDriver::new();
    let mut conn = connect_with(&driver, &server().args());
    assert!(driver.connected(&mut conn, TIMEOUT));
    assert!(!conn.needs_reset(), "a check does not touch the session");
    assert_eq!(text(&mut conn, "PING", &[]), "PONG");
}

#[test]
fn blocking_command_gets_its_timeout_from_the_native_client() {
    let driver = RedisDriver::new();
    let k = key("blpop");
    let args = format!("{} read_timeout=0.3", server().args());
    let mut conn = connect_with(&driver, &args);
    let native = conn
        .native_mut()
        .downcast_mut::<redis::Connection>()
        .expect("native");
    native
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let popped: Option<(String, String)> = redis::cmd("BLPOP")
        .arg(&k)
        .arg(1)
        .query(native)
        .expect("BLPOP under 3 s");
    assert_eq!(popped, None);
    // The release puts the session's own 0.3 s back: a 1 s block now times out.
    let mut conn = cycle(&driver, conn);
    let err = conn
        .query("BLPOP", &[k.as_str().into(), 1.into()])
        .expect_err("0.3 s read timeout");
    assert_eq!(err.kind(), DriverErrorKind::Broken, "{err}");
    assert!(conn.is_broken());
    assert!(driver.detach(conn, pool_driver::ResetMode::Full).is_err());
}

/// `native()` hands out `&redis::Connection`, and `set_read_timeout` takes `&self`: a handler
/// can change the socket's timeout without a mutable borrow. That access alone must make the
/// release reset the session, which puts the session's own timeouts back.
#[test]
fn read_only_native_access_counts_as_use() {
    let driver = RedisDriver::new();
    let k = key("native-ref");
    let conn = connect_with(&driver, &server().args());
    let native = conn
        .native()
        .downcast_ref::<redis::Connection>()
        .expect("native is redis::Connection");
    native
        .set_read_timeout(Some(Duration::from_millis(1)))
        .expect("timeout");
    assert!(conn.needs_reset(), "native() counts as use");
    let mut conn = cycle(&driver, conn);
    // Blocks 100 ms on the server: a timeout error under the leaked 1 ms, nil under 30 s.
    let popped = conn
        .query("BLPOP", &[k.as_str().into(), Value::Float(0.1)])
        .unwrap_or_else(|e| panic!("the session's own read timeout is back: {e}"));
    assert_eq!(popped.scalar(), Some(&Value::Null));
}

/// `CLIENT REPLY OFF` through the native client, then a rollback-only release: the cleanup
/// turns replies back on first, and the server's report shows nothing else to undo, so the
/// session is kept and answers again.
#[test]
fn rollback_only_turns_replies_back_on() {
    let driver = RedisDriver::new();
    let k = key("rollback-reply-off");
    let mut conn = connect_with(&driver, &server().args());
    let id = text(&mut conn, "CLIENT ID", &[]);
    let handle = driver
        .detach(conn, pool_driver::ResetMode::Full)
        .expect("detach");
    let mut conn = driver.attach(handle).expect("attach");
    let native = conn
        .native_mut()
        .downcast_mut::<redis::Connection>()
        .expect("native");
    for cmd in [
        redis::cmd("CLIENT").arg("REPLY").arg("OFF").clone(),
        redis::cmd("SET").arg(&k).arg("silent").clone(),
    ] {
        native
            .send_packed_command(&cmd.get_packed_command())
            .expect("send");
    }
    let handle = driver
        .detach(conn, pool_driver::ResetMode::RollbackOnly)
        .unwrap_or_else(|e| panic!("replies can be turned back on: {e}"));
    let mut conn = driver.attach(handle).expect("attach");
    assert_eq!(text(&mut conn, "CLIENT ID", &[]), id, "the same session");
    assert_eq!(text(&mut conn, "GET", &[&k]), "silent");
    q(&mut conn, "DEL", &[&k]);
}

/// Rollback-only keeps what it is documented to keep (the selected db, the name): only a
/// transaction is rolled back.
#[test]
fn rollback_only_keeps_the_db_and_the_name() {
    let driver = RedisDriver::new();
    let mut conn = connect_with(&driver, &server().args());
    q(&mut conn, "SELECT", &["2"]);
    q(&mut conn, "CLIENT SETNAME", &["kept"]);
    let handle = driver
        .detach(conn, pool_driver::ResetMode::RollbackOnly)
        .expect("rollback");
    let mut conn = driver.attach(handle).expect("attach");
    assert_eq!(client_field(&mut conn, "db"), "2");
    assert_eq!(text(&mut conn, "CLIENT GETNAME", &[]), "kept");
}

/// `MONITOR` (the `default` user may) through the native client: only `RESET` leaves monitor
/// mode, so the rollback-only cleanup refuses the session, as the server reports it
/// monitoring (its own commands come back to it as monitor lines, and `CLIENT INFO` shows
/// flag `O`).
#[test]
fn rollback_only_refuses_a_monitoring_session() {
    let driver = RedisDriver::new();
    let mut conn = connect_with(&driver, &server().default_user_args());
    let native = conn
        .native_mut()
        .downcast_mut::<redis::Connection>()
        .expect("native");
    let _: () = redis::cmd("MONITOR").query(native).expect("MONITOR");
    let err = driver
        .detach(conn, pool_driver::ResetMode::RollbackOnly)
        .expect_err("a monitoring session is not parked");
    assert_eq!(err.kind(), DriverErrorKind::NotReusable, "{err}");
}
