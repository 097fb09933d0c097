//! Measured costs of the driver's operations against the private MariaDB: medians over 200
//! runs. No assertions on time; run with
//! `cargo test -p pool-mysql --release --test costs -- --ignored --nocapture`
//! (`tls_costs` for the cold connects with and without TLS).

use std::time::{Duration, Instant};

use pool_driver::{Connection, Driver, ResetMode};
use pool_mysql::MysqlDriver;
use pool_testservers::{shared_maria, MariaServer, ServerCert, TestPki};

mod common;
use common::{connect, TIMEOUT};

const RUNS: usize = 200;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn measure(name: &str, mut once: impl FnMut() -> Duration) {
    for _ in 0..10 {
        once();
    }
    let samples: Vec<Duration> = (0..RUNS).map(|_| once()).collect();
    let (min, max) = (samples.iter().min().copied(), samples.iter().max().copied());
    println!(
        "{name:<44} median {:>9.1?}  (min {:?}, max {:?})",
        median(samples),
        min.unwrap_or_default(),
        max.unwrap_or_default()
    );
}

#[test]
#[ignore = "measurement; run with --ignored --nocapture"]
fn costs() {
    let server = shared_maria();
    let driver = MysqlDriver;

    let mut slot = Some(connect(&server.args()));
    measure("detach Full, untouched session (no I/O)", || {
        let conn = slot.take().expect("conn");
        let started = Instant::now();
        let handle = driver.detach(conn, ResetMode::Full).expect("detach");
        let took = started.elapsed();
        slot = Some(driver.attach(handle).expect("attach"));
        took
    });

    for (name, mode) in [
        (
            "detach Full after a SELECT (reset + check)",
            ResetMode::Full,
        ),
        (
            "detach RollbackOnly after a SELECT (ROLLBACK)",
            ResetMode::RollbackOnly,
        ),
    ] {
        let mut slot = Some(connect(&server.args()));
        measure(name, || {
            let mut conn = slot.take().expect("conn");
            // A used session: an untouched one is parked without a round trip.
            conn.query("SELECT 1", &[]).expect("select");
            let started = Instant::now();
            let handle = driver.detach(conn, mode).expect("detach");
            let took = started.elapsed();
            slot = Some(driver.attach(handle).expect("attach"));
            took
        });
    }

    // The restoring paths: the reset keeps the database and the role, the driver puts them
    // back in one more round trip (USE / SET ROLE, and the check again).
    server
        .sql("CREATE ROLE IF NOT EXISTS pool_cost_role; GRANT pool_cost_role TO pool_user")
        .expect("role");
    for (name, statement) in [
        (
            "detach Full after USE (+ restore + check)",
            "USE information_schema",
        ),
        (
            "detach Full after SET ROLE (+ restore + check)",
            "SET ROLE pool_cost_role",
        ),
    ] {
        let mut slot = Some(connect(&server.args()));
        measure(name, || {
            let mut conn = slot.take().expect("conn");
            conn.execute(statement, &[]).expect(statement);
            let started = Instant::now();
            let handle = driver.detach(conn, ResetMode::Full).expect("detach");
            let took = started.elapsed();
            slot = Some(driver.attach(handle).expect("attach"));
            took
        });
    }

    let mut handle = driver
        .detach(connect(&server.args()), ResetMode::Full)
        .expect("detach");
    measure("connected (bounded COM_PING)", || {
        let started = Instant::now();
        assert!(driver.connected(&mut handle, TIMEOUT));
        started.elapsed()
    });

    let tcp = driver.parse_args(&server.args()).expect("args");
    measure("cold connect, TCP (prefer_socket=false)", || {
        let started = Instant::now();
        let conn = driver.connect(&tcp, TIMEOUT).expect("connect");
        let took = started.elapsed();
        drop(conn);
        took
    });
    let socket = driver.parse_args(&server.socket_args()).expect("args");
    measure("cold connect, unix socket", || {
        let started = Instant::now();
        let conn = driver.connect(&socket, TIMEOUT).expect("connect");
        let took = started.elapsed();
        drop(conn);
        took
    });
    // For comparison: the crate's default, which asks for @@socket and connects again.
    let opts: mysql::Opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(server.port())
        .user(Some(server.user()))
        .pass(Some(server.password()))
        .db_name(Some("pool_test"))
        .prefer_socket(true)
        .into();
    measure("cold connect, TCP, crate default prefer_socket", || {
        let started = Instant::now();
        let conn = mysql::Conn::new(opts.clone()).expect("connect");
        let took = started.elapsed();
        drop(conn);
        took
    });
}

/// A cold connect with each `ssl-mode`, against a TLS server (ECDSA P-256 certificates from
/// dev/testservers) and, for `PREFERRED`'s fallback, the plain one. Interleaved in rounds so
/// that a noisy neighbour on the machine hits every row alike.
#[test]
#[ignore = "measurement; run with --ignored --nocapture"]
fn tls_costs() {
    const ROUNDS: usize = 10;
    let pki = TestPki::generate().expect("pki");
    let tls = MariaServer::start_tls(&pki, ServerCert::Valid).expect("TLS server");
    let plain = shared_maria();
    let driver = MysqlDriver;
    let plain_tcp = format!(
        "host=localhost port={} user={} password={} dbname=pool_test",
        tls.port(),
        tls.user(),
        tls.password()
    );
    let rows: Vec<(&str, String)> = vec![
        ("plain (DISABLED), TLS server", plain_tcp.clone()),
        (
            "REQUIRED (no verification)",
            format!("{plain_tcp} ssl-mode=REQUIRED"),
        ),
        ("VERIFY_CA", tls.tls_args("VERIFY_CA")),
        ("VERIFY_IDENTITY", tls.tls_args("VERIFY_IDENTITY")),
        ("VERIFY_IDENTITY + client certificate", tls.x509_args()),
        ("plain (DISABLED), plain server", plain.args()),
        (
            "PREFERRED, plain server (falls back)",
            format!("{} ssl-mode=PREFERRED", plain.args()),
        ),
    ];
    let parsed: Vec<_> = rows
        .iter()
        .map(|(_, args)| driver.parse_args(args).expect("args"))
        .collect();
    let mut samples = vec![Vec::new(); rows.len()];
    for _ in 0..ROUNDS {
        for (i, args) in parsed.iter().enumerate() {
            for _ in 0..RUNS / ROUNDS {
                let started = Instant::now();
                let conn = driver.connect(args, TIMEOUT).expect("connect");
                samples[i].push(started.elapsed());
                drop(conn);
            }
        }
    }
    for ((name, _), samples) in rows.iter().zip(samples) {
        let (min, max) = (samples.iter().min().copied(), samples.iter().max().copied());
        println!(
            "cold connect, {name:<38} median {:>9.1?}  (min {:?}, max {:?})",
            median(samples),
            min.unwrap_or_default(),
            max.unwrap_or_default()
        );
    }
}
