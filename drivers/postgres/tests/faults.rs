//! Connect failures, timeouts and a server restart, seen through the driver.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{connect, int};
use pool_driver::{Connection, Driver, DriverErrorKind, ResetMode};
use pool_postgres::PgDriver;
use pool_testservers::PgServer;

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
fn an_unused_port_fails_fast() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let args = PgDriver
        .parse_args(&format!(
            "host=127.0.0.1 port={port} user=x password=hunter2 dbname=y"
        ))
        .unwrap();
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = PgDriver.connect(&args, timeout).unwrap_err();
    assert!(started.elapsed() < timeout, "took {:?}", started.elapsed());
    assert_eq!(err.kind(), DriverErrorKind::Connect, "{err}");
    assert!(
        err.message().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.message().contains("refused"), "{err}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
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
fn a_restart_is_noticed_by_parked_and_attached_connections() {
    let mut server = PgServer::start().expect("start a private server");
    let args = server.trust_args();
    let mut parked = PgDriver.detach(connect(&args), ResetMode::Full).unwrap();
    let mut attached = connect(&args);
    let timeout = Duration::from_secs(2);
    assert!(PgDriver.connected(&mut parked, timeout));

    server.restart().expect("restart");

    let started = Instant::now();
    assert!(
        !PgDriver.connected(&mut parked, timeout),
        "the old handle is dead"
    );
    assert!(started.elapsed() < timeout);

    let err = attached.query("SELECT 1", &[]).unwrap_err();
    assert_eq!(err.kind(), DriverErrorKind::Broken, "{err}");
    assert!(attached.is_broken());
    let err = PgDriver.detach(attached, ResetMode::Full).unwrap_err();
    assert_eq!(err.kind(), DriverErrorKind::Broken);

    let mut fresh = connect(&args);
    assert_eq!(int(&mut fresh, "SELECT 1"), 1);
    assert!(PgDriver.connected(
        &mut PgDriver.detach(fresh, ResetMode::Full).unwrap(),
        timeout
    ));
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
