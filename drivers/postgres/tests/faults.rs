//! PostgreSQL-specific connect failures and timeouts, seen through the driver. What every
//! driver must do (unused port, restart, killed sessions) is in the conformance suite
//! (tests/conformance.rs).

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use pool_driver::{Connection, Driver, DriverErrorKind};
use pool_postgres::PgDriver;
use pool_testservers::{PgServer, SilentListener};

#[test]
fn a_wrong_password_reports_the_server_message_without_the_password() {
    let pg = pool_testservers::shared_pg();
    let wrong = "not-the-pw-8451";
    for args in [
        pg.scram_args().replace(pg.scram_password(), wrong),
        pg.scram_url().replace(pg.scram_password(), wrong),
    ] {
        let args = PgDriver.parse_args(&args).unwrap();
        let err = PgDriver.connect(&args, common::TIMEOUT).unwrap_err();
        assert_eq!(err.kind(), DriverErrorKind::Connect, "{err}");
        assert_eq!(err.code(), Some("28P01"));
        assert!(
            err.message()
                .contains("password authentication failed for user \"pool_scram\""),
            "{err}"
        );
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains(wrong) && !shown.contains(pg.scram_password()),
            "{shown}"
        );
    }
}

#[test]
fn an_unknown_database_is_a_connect_error() {
    let pg = pool_testservers::shared_pg();
    let args = PgDriver
        .parse_args(&pg.trust_args().replace("pool_test", "no_such_db"))
        .unwrap();
    let err = PgDriver.connect(&args, common::TIMEOUT).unwrap_err();
    assert_eq!(
        (err.kind(), err.code()),
        (DriverErrorKind::Connect, Some("3D000")),
        "{err}"
    );
}

#[test]
fn a_server_that_never_answers_times_out() {
    // Accepts the TCP connection (the kernel does, backlog) and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let args = PgDriver
        .parse_args(&format!("host=127.0.0.1 port={port} user=x dbname=y"))
        .unwrap();
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = PgDriver.connect(&args, timeout).unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), DriverErrorKind::Timeout, "{err}");
    assert!(took >= timeout && took < timeout * 10, "took {took:?}");
    drop(silent);
}

#[test]
fn a_stopped_server_refuses_connects() {
    let mut server = PgServer::start().expect("start a private server");
    let args = PgDriver.parse_args(&server.trust_socket_args()).unwrap();
    let mut conn = PgDriver.connect(&args, common::TIMEOUT).unwrap();
    server.stop().expect("stop");
    assert!(conn.query("SELECT 1", &[]).is_err());
    assert!(conn.is_broken());
    let err = PgDriver.connect(&args, common::TIMEOUT).unwrap_err();
    assert_eq!(err.kind(), DriverErrorKind::Connect, "{err}");
}

/// libpq's host list: a host that accepts and never answers is given up after
/// `connect_timeout` (which bounds each host's whole attempt, not only its socket connect), and
/// the next host is tried within the pool's deadline.
#[test]
fn a_silent_first_host_is_skipped_after_connect_timeout() {
    let pg = pool_testservers::shared_pg();
    let silent = SilentListener::start().expect("a silent peer");
    let args = PgDriver
        .parse_args(&format!(
            "host=127.0.0.1,127.0.0.1 port={},{} user={} dbname={} connect_timeout=1",
            silent.port(),
            pg.port(),
            pg.trust_user(),
            pg.database()
        ))
        .unwrap();
    let started = Instant::now();
    let mut conn = PgDriver
        .connect(&args, common::TIMEOUT)
        .expect("the second host");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert_eq!(common::int(&mut conn, "SELECT 1"), 1);
    assert_eq!(silent.accepted(), 1, "the first host was tried");
    // Every host silent: a Timeout error naming each.
    let args = PgDriver
        .parse_args(&format!(
            "host=127.0.0.1,localhost port={},{} user=x dbname=y connect_timeout=1",
            silent.port(),
            silent.port()
        ))
        .unwrap();
    let err = PgDriver.connect(&args, common::TIMEOUT).unwrap_err();
    assert_eq!(err.kind(), DriverErrorKind::Timeout, "{err}");
    assert!(
        err.message().contains("127.0.0.1:") && err.message().contains("localhost:"),
        "{err}"
    );
}

/// `target_session_attrs` picks the host that fits: the primary is read-write, so
/// `read-only` skips it (and fails when it is the only one).
#[test]
fn target_session_attrs_choose_among_hosts() {
    let pg = pool_testservers::shared_pg();
    let unused = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let login = format!("user={} dbname={}", pg.trust_user(), pg.database());
    let args = PgDriver
        .parse_args(&format!(
            "host=127.0.0.1,127.0.0.1 port={unused},{} {login} target_session_attrs=read-write",
            pg.port()
        ))
        .unwrap();
    let mut conn = PgDriver
        .connect(&args, common::TIMEOUT)
        .expect("the writable host");
    assert_eq!(common::int(&mut conn, "SELECT 1"), 1);
    let args = PgDriver
        .parse_args(&format!(
            "host=127.0.0.1 port={} {login} target_session_attrs=read-only",
            pg.port()
        ))
        .unwrap();
    let err = PgDriver.connect(&args, common::TIMEOUT).unwrap_err();
    assert_eq!(err.kind(), DriverErrorKind::Connect, "{err}");
    assert!(err.message().contains("not read only"), "{err}");
}
