//! A network that goes silent (a proxy that keeps sockets open but never answers) or resets,
//! between the pool and a real server. `open` returns within its bound even when several
//! parked connections are silent; once traffic passes again the next `open` succeeds within
//! 2 s; a reset connection fails with a clear error and is closed, not parked.
//!
//! Each runs on PostgreSQL in plain text, on PostgreSQL over verified TLS (a server of the
//! test's own that accepts only TLS, so the silence or the reset hits TLS sessions: the
//! liveness check's write and read, the close, and a new connect's TLS handshake), and on
//! MariaDB.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::real::{fresh_user, Backend, CaseServer, Server};
use pool::{Error, Settings};
use pool_testservers::{Proxy, ProxyMode};
use rstest::rstest;

const CHECK: Duration = Duration::from_secs(1);
const CONNECT: Duration = Duration::from_secs(1);

/// A fresh user's pool arguments pointed at a new proxy in front of `server`.
fn behind_proxy(server: Server<'_>, tag: &str) -> (Proxy, String) {
    let user = fresh_user(server, tag);
    let port = server.port();
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], port))).expect("proxy");
    let args = user
        .args
        .replace(&format!("port={port}"), &format!("port={}", proxy.port()));
    pool::configure(
        server.backend().driver(),
        &args,
        Settings {
            max_open: 4,
            check_timeout: CHECK,
            connect_timeout: CONNECT,
            acquire_timeout: Duration::from_secs(2),
            validate_after: Duration::from_millis(1),
            ..Settings::default()
        },
    )
    .expect("configure");
    (proxy, args)
}

fn query_one(driver: &str, args: &str) -> Result<(), Error> {
    let mut conn = pool::open(driver, args)?;
    conn.query("SELECT 1", &[])?;
    conn.release()
}

#[rstest]
#[case::postgres(CaseServer::Shared(Backend::Postgres))]
#[case::postgres_tls(CaseServer::pg_tls())]
#[case::mariadb(CaseServer::Shared(Backend::Maria))]
fn open_is_bounded_when_parked_connections_go_silent(#[case] case: CaseServer) {
    let server = case.server();
    let (driver, label) = (server.backend().driver(), server.label());
    let (proxy, args) = behind_proxy(server, "silent");
    let conns: Vec<_> = (0..3).map(|_| pool::open(driver, &args).unwrap()).collect();
    drop(conns);
    std::thread::sleep(Duration::from_millis(20)); // parked past validate_after
    proxy.set_mode(ProxyMode::Blackhole);

    // On a thread of its own, so an `open` that hangs fails this test instead of hanging it.
    let (done, outcome) = std::sync::mpsc::channel();
    let silent_args = args.clone();
    let started = Instant::now();
    std::thread::spawn(move || {
        let _ = done.send(query_one(driver, &silent_args));
    });
    let limit = CHECK + CONNECT + Duration::from_secs(1);
    let Ok(result) = outcome.recv_timeout(limit * 3) else {
        proxy.set_mode(ProxyMode::Pass); // lets the hung call finish
        panic!("{label}: open still blocked after {:?}", started.elapsed());
    };
    let took = started.elapsed();
    eprintln!("{label}: open with 3 silent parked connections returned after {took:?}: {result:?}");
    assert!(
        took < limit,
        "open took {took:?} with check_timeout {CHECK:?} and connect_timeout {CONNECT:?}"
    );
    let error = result.expect_err("nothing can answer");
    assert!(error.is_transient(), "{error:?}");

    proxy.set_mode(ProxyMode::Pass);
    let back = Instant::now();
    loop {
        match query_one(driver, &args) {
            Ok(()) => break,
            Err(e) => assert!(
                back.elapsed() < Duration::from_secs(2),
                "not back 2 s after the network: {e}"
            ),
        }
    }
    eprintln!(
        "{label}: first success {:?} after the network came back",
        back.elapsed()
    );
}

#[rstest]
#[case::postgres(CaseServer::Shared(Backend::Postgres))]
#[case::postgres_tls(CaseServer::pg_tls())]
#[case::mariadb(CaseServer::Shared(Backend::Maria))]
fn a_reset_connection_is_a_clear_error_and_is_closed(#[case] case: CaseServer) {
    let server = case.server();
    let driver = server.backend().driver();
    let (proxy, args) = behind_proxy(server, "reset");
    let mut conn = pool::open(driver, &args).unwrap();
    proxy.set_mode(ProxyMode::Reset);
    let error = conn
        .query("SELECT 1", &[])
        .expect_err("the connection was reset");
    assert!(error.is_transient(), "a broken connection: {error:?}");
    conn.release()
        .expect("release of a broken connection is not the caller's error");
    let stats = pool::stats(driver, &args).unwrap();
    assert_eq!(
        (stats.idle, stats.in_use),
        (0, 0),
        "closed, not parked: {stats:?}"
    );
    proxy.set_mode(ProxyMode::Pass);
    query_one(driver, &args).expect("a fresh connection works");
}
