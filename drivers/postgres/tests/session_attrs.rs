//! `target_session_attrs` on one private server, seen through the driver: each of libpq's six
//! values picks or refuses the server as libpq does, over `key=value` and the URL host list;
//! `prefer-standby` falls back without connecting twice; a refused write (SQLSTATE 25006)
//! breaks a `read-write` key's connection and no other. The failover itself (a standby
//! promoted, parked connections on a server that changed role) is in the pool's
//! tests/failover.rs, on real replication.
//!
//! A primary whose sessions default to read-only (`options=-c default_transaction_read_only=on`)
//! stands in for a read-only server here: it is `read-only` to libpq but still a `primary`.

mod common;

use std::net::{SocketAddr, TcpListener};

use pool_driver::{Connection, Driver, DriverErrorKind};
use pool_postgres::PgDriver;
use pool_testservers::Proxy;

/// A port nothing listens on.
fn unused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn connect(args: &str) -> Result<pool_postgres::PgConn, pool_driver::DriverError> {
    let args = PgDriver.parse_args(args).expect("valid arguments");
    PgDriver.connect(&args, common::TIMEOUT)
}

#[test]
fn each_value_picks_the_servers_libpq_picks() {
    let port = pool_testservers::shared_pg().port();
    // (value, fits a writable primary, fits a primary with read-only sessions)
    let table = [
        ("any", true, true),
        ("read-write", true, false),
        ("read-only", false, true),
        ("primary", true, true),
        ("standby", false, false),
        ("prefer-standby", true, true),
    ];
    for (value, writable, read_only) in table {
        for (sessions_read_only, fits) in [(false, writable), (true, read_only)] {
            let args = format!(
                "host=127.0.0.1 port={port} {} target_session_attrs={value}",
                common::tcp_login(sessions_read_only)
            );
            match connect(&args) {
                Ok(mut conn) => {
                    assert!(fits, "{value} took a server it must refuse ({args})");
                    assert_eq!(common::int(&mut conn, "SELECT 1"), 1);
                }
                Err(err) => {
                    assert!(!fits, "{value} refused a server that fits: {err}");
                    assert_eq!(err.kind(), DriverErrorKind::Connect, "{err}");
                    assert!(err.message().contains(value), "{err}");
                }
            }
        }
    }
}

/// libpq's words for the refusals, and each host's own answer in a failed connect over a list.
#[test]
fn a_failed_connect_over_a_host_list_says_what_each_host_answered() {
    let port = pool_testservers::shared_pg().port();
    let unused = unused_port();
    let args = format!(
        "host=127.0.0.1,127.0.0.1 port={unused},{port} {} target_session_attrs=standby",
        common::tcp_login(false)
    );
    let err = connect(&args).expect_err("no standby here");
    let message = err.message();
    assert!(message.contains(&format!("127.0.0.1:{unused}")), "{err}");
    assert!(
        message.contains(&format!(
            "127.0.0.1:{port}: server is not in hot standby mode"
        )),
        "{err}"
    );
    let args = format!(
        "host=127.0.0.1 port={port} {} target_session_attrs=read-write",
        common::tcp_login(true)
    );
    let err = connect(&args).expect_err("sessions are read-only");
    assert!(err.message().contains("session is read-only"), "{err}");
}

/// With no standby among the hosts, `prefer-standby` takes the first host that answered, on
/// the connection it already has: each host is connected to once.
#[test]
fn prefer_standby_falls_back_without_connecting_twice() {
    let pg = pool_testservers::shared_pg();
    let upstream: SocketAddr = ([127, 0, 0, 1], pg.port()).into();
    let first = Proxy::start(upstream).expect("proxy");
    let second = Proxy::start(upstream).expect("proxy");
    let args = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} {} target_session_attrs=prefer-standby",
        first.port(),
        second.port(),
        common::tcp_login(false)
    );
    let mut conn = connect(&args).expect("falls back to a primary");
    assert_eq!(common::int(&mut conn, "SELECT 1"), 1);
    assert_eq!(
        (first.accepted(), second.accepted()),
        (1, 1),
        "each host once: both were asked for a standby, the first kept as the fallback"
    );
}

/// `postgres://u@h1:p1,h2:p2/db?target_session_attrs=read-write`, as libpq writes a host list
/// (it used to be refused: "invalid port number").
#[test]
fn a_url_host_list_connects_to_the_host_that_fits() {
    let pg = pool_testservers::shared_pg();
    let url = format!(
        "postgres://{}@127.0.0.1:{},127.0.0.1:{}/{}?sslmode=disable&target_session_attrs=read-write",
        pg.trust_user(),
        unused_port(),
        pg.port(),
        pg.database()
    );
    let mut conn = connect(&url).expect("the second host");
    assert_eq!(common::int(&mut conn, "SELECT 1"), 1);
}

/// SQLSTATE 25006 on a session whose server reports it no longer takes writes, for a key
/// that asked for a writable server: the connection is broken, so the pool closes it and the
/// error is transient. Here the session's default turned read-only (as a fenced server's
/// does): a `read-write` key no longer fits, a `primary` key still does (a read-only primary
/// is a primary). For any other key it is the caller's own mistake, and the session stays.
#[test]
fn a_refused_write_breaks_only_a_key_that_asked_for_writes() {
    let port = pool_testservers::shared_pg().port();
    let write = "CREATE TEMP TABLE refused (id int)";
    for (value, breaks) in [
        ("read-write", true),
        ("primary", false),
        ("any", false),
        ("read-only", false),
    ] {
        let args = format!(
            "host=127.0.0.1 port={port} {} target_session_attrs={value}",
            common::tcp_login(value == "read-only")
        );
        let mut conn = connect(&args).expect("connects");
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", &[])
            .expect("set");
        let err = conn
            .execute(write, &[])
            .expect_err("a read-only transaction");
        assert_eq!(err.code(), Some("25006"), "{value}: {err}");
        let expected = match breaks {
            true => DriverErrorKind::Broken,
            false => DriverErrorKind::Query,
        };
        assert_eq!(err.kind(), expected, "{value}: {err}");
        assert_eq!(conn.is_broken(), breaks, "{value}");
    }
}

/// A parked connection's liveness check sees a server that stopped fitting the key: here the
/// server turned read-only for everyone (`ALTER SYSTEM` and a reload), which a `read-write`
/// key must not keep using and a `read-only` key now may. The check is the same empty query as
/// for any key; the role comes from what the server reported with its answer. On a private
/// server: the setting is server-wide.
#[test]
fn the_liveness_check_sees_a_server_that_no_longer_fits() {
    let pg = pool_testservers::PgServer::start().expect("a private server");
    let login = format!("{} sslmode=disable", pg.trust_args());
    let open = |value: &str| {
        let args = PgDriver
            .parse_args(&format!("{login} target_session_attrs={value}"))
            .expect("args");
        PgDriver.connect(&args, common::TIMEOUT)
    };
    let mut read_write = open("read-write").expect("a writable server");
    let mut any = open("any").expect("any server");
    assert!(PgDriver.connected(&mut read_write, common::TIMEOUT));
    assert!(open("read-only").is_err(), "not read-only yet");

    pg.psql("ALTER SYSTEM SET default_transaction_read_only = on")
        .expect("read-only for everyone");
    pg.psql("SELECT pg_reload_conf()").expect("reload");
    // The reload reaches the postmaster, then new sessions: a moment.
    let started = std::time::Instant::now();
    let mut read_only = loop {
        match open("read-only") {
            Ok(conn) => break conn,
            Err(err) => assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "the server never turned read-only: {err}"
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(
        PgDriver.connected(&mut any, common::TIMEOUT),
        "any key: fits"
    );
    assert!(PgDriver.connected(&mut read_only, common::TIMEOUT));
    assert!(
        !PgDriver.connected(&mut read_write, common::TIMEOUT),
        "a read-write key's parked connection on a read-only server must fail its check"
    );
    assert!(read_write.is_broken());
}
