//! Statement deadlines on a real Redis (issue 19). Redis cannot cancel a command, so a command
//! past its deadline (a blocking `BLPOP key 0`, a silent server) closes the connection: the
//! caller is back in time, the server drops the blocked client, and a fresh connection works.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{connect_with, q, text};
use pool_driver::{Connection, DriverErrorKind, Value};
use pool_redis::{RedisConn, RedisDriver};
use pool_testservers::{shared_redis, Proxy, ProxyMode};

const DEADLINE: Duration = Duration::from_millis(500);

fn connect() -> RedisConn {
    connect_with(&RedisDriver::new(), &shared_redis().args())
}

/// The server's id for this client.
fn client_id(conn: &mut RedisConn) -> String {
    text(conn, "CLIENT ID", &[])
}

/// Whether the server still lists client `id`.
fn listed(observer: &mut RedisConn, id: &str) -> bool {
    text(observer, "CLIENT LIST", &["ID", id]).contains(&format!("id={id} "))
}

/// `BLPOP key 0` (blocks for ever) under a 500 ms deadline: `StatementTimeout` within 600 ms,
/// the connection is closed, and the server forgets the blocked client.
#[test]
fn a_blocking_command_is_bounded_and_its_connection_closed() {
    // The `default` user may list clients; the test user may not.
    let mut observer = connect_with(&RedisDriver::new(), &shared_redis().default_user_args());
    for round in 0..3 {
        let mut conn = connect();
        let id = client_id(&mut conn);
        assert!(conn.set_statement_timeout(Some(DEADLINE)));
        let started = Instant::now();
        let err = conn
            .query("BLPOP", &[Value::from("deadline:never"), Value::from("0")])
            .expect_err("bounded");
        let took = started.elapsed();
        eprintln!("round {round}: {err} after {took:?}");
        assert_eq!(err.kind(), DriverErrorKind::StatementTimeout, "{err}");
        assert!(took >= DEADLINE, "{took:?}");
        assert!(took <= DEADLINE + Duration::from_millis(100), "{took:?}");
        assert!(conn.is_broken(), "closed, never parked");
        drop(conn);
        let gone = Instant::now();
        while listed(&mut observer, &id) {
            assert!(
                gone.elapsed() < Duration::from_secs(2),
                "client {id} still listed"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A blocking command whose own timeout is shorter than the deadline answers as usual, and a
/// lease's longer deadline lets a long one finish.
#[test]
fn a_blocking_command_within_its_deadline_answers() {
    let mut conn = connect();
    assert!(conn.set_statement_timeout(Some(DEADLINE)));
    let reply = q(&mut conn, "BLPOP", &["deadline:empty", "0.1"]);
    assert_eq!(reply.scalar(), Some(&Value::Null));
    assert!(conn.set_statement_timeout(Some(Duration::from_secs(2))));
    let reply = q(&mut conn, "BLPOP", &["deadline:empty", "0.7"]);
    assert_eq!(reply.scalar(), Some(&Value::Null));
    assert!(!conn.is_broken());
    assert_eq!(text(&mut conn, "PING", &[]), "PONG");
}

/// A network that goes silent mid-command: the caller is back by the deadline, the
/// connection is closed, and once the network is back a fresh connection works.
#[test]
fn a_silent_network_costs_the_connection_not_the_caller() {
    let server = shared_redis();
    let proxy = Proxy::start(([127, 0, 0, 1], server.port()).into()).expect("proxy");
    let args = format!(
        "host=127.0.0.1 port={} user={} password={}",
        proxy.port(),
        server.user(),
        server.password()
    );
    let mut conn = connect_with(&RedisDriver::new(), &args);
    assert!(conn.set_statement_timeout(Some(DEADLINE)));
    proxy.set_mode(ProxyMode::Blackhole);
    let started = Instant::now();
    let err = conn.query("PING", &[]).expect_err("silent");
    let took = started.elapsed();
    eprintln!("{err} after {took:?}");
    assert_eq!(err.kind(), DriverErrorKind::StatementTimeout, "{err}");
    assert!(took <= DEADLINE + Duration::from_millis(100), "{took:?}");
    assert!(conn.is_broken());
    proxy.set_mode(ProxyMode::Pass);
    let mut fresh = connect_with(&RedisDriver::new(), &args);
    assert_eq!(text(&mut fresh, "PING", &[]), "PONG");
}

/// The deadline binds the native client too, and `None` removes it.
#[test]
fn the_native_client_is_bounded_too() {
    let mut conn = connect();
    assert!(conn.set_statement_timeout(Some(Duration::from_millis(200))));
    let native = conn
        .native_mut()
        .downcast_mut::<redis::Connection>()
        .expect("redis::Connection");
    let started = Instant::now();
    let err = redis::cmd("BLPOP")
        .arg("deadline:never")
        .arg(0)
        .query::<Option<(String, String)>>(native)
        .expect_err("bounded");
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() < Duration::from_millis(400));
    drop(conn);
    let mut conn = connect();
    assert!(conn.set_statement_timeout(None));
    let reply = q(&mut conn, "BLPOP", &["deadline:empty", "0.3"]);
    assert_eq!(reply.scalar(), Some(&Value::Null));
}
