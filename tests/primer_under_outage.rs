//! The primer while the server is unreachable (a proxy that resets every connection): its
//! connect attempts per second stay bounded by the backoff, and once the server is reachable
//! again a parked connection is back within `primer_backoff_max`. On PostgreSQL in plain text
//! and over verified TLS (a server of the test's own that accepts only TLS: every refill is a
//! TLS handshake), and on MariaDB.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::real::{fresh_user, Backend, CaseServer};
use common::wait_until;
use pool::Settings;
use pool_testservers::{Proxy, ProxyMode};
use rstest::rstest;

const BACKOFF_MAX: Duration = Duration::from_millis(400);
const OUTAGE: Duration = Duration::from_secs(3);

#[rstest]
#[case::postgres(CaseServer::Shared(Backend::Postgres))]
#[case::postgres_tls(CaseServer::pg_tls())]
#[case::mariadb(CaseServer::Shared(Backend::Maria))]
fn the_primer_backs_off_during_an_outage_and_refills_after_it(#[case] case: CaseServer) {
    let server = case.server();
    let user = fresh_user(server, "primeout");
    let port = server.port();
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], port))).expect("proxy");
    let args = user
        .args
        .replace(&format!("port={port}"), &format!("port={}", proxy.port()));
    let (driver, label) = (server.backend().driver(), server.label());
    pool::configure(
        driver,
        &args,
        Settings {
            primer_backoff_max: BACKOFF_MAX,
            connect_timeout: Duration::from_secs(1),
            ..Settings::default()
        },
    )
    .unwrap();
    pool::open(driver, &args).unwrap().release().unwrap();

    proxy.set_mode(ProxyMode::Reset);
    // Taking the last parked connection asks the primer for another: it fails, and retries.
    let mut dead = pool::open(driver, &args).unwrap();
    assert!(
        dead.query("SELECT 1", &[]).is_err(),
        "the connection was reset"
    );
    let before = proxy.accepted();
    let started = Instant::now();
    std::thread::sleep(OUTAGE);
    let attempts = proxy.accepted() - before;
    let per_second = attempts as f64 / started.elapsed().as_secs_f64();
    dead.release().unwrap(); // broken: closed, not parked
    assert_eq!(pool::stats(driver, &args).unwrap().idle, 0);

    proxy.set_mode(ProxyMode::Pass);
    let back = Instant::now();
    wait_until("a parked connection is back", BACKOFF_MAX * 3, || {
        pool::stats(driver, &args).unwrap().idle >= 1
    });
    let refilled = back.elapsed();
    eprintln!(
        "{label}: {attempts} primer connect attempts in {OUTAGE:?} ({per_second:.1}/s, \
         primer_backoff_max {BACKOFF_MAX:?}); parked again {refilled:?} after the server was back"
    );
    // Pauses double from 50 ms to 400 ms and are jittered to half..whole: after the first
    // few, at most one attempt per 200 ms.
    assert!(attempts >= 2, "the primer kept trying: {attempts}");
    assert!(per_second <= 8.0, "{attempts} attempts in {OUTAGE:?}");
    assert!(
        refilled <= BACKOFF_MAX + Duration::from_millis(500),
        "parked again only after {refilled:?}"
    );
}
