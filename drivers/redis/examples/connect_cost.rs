//! Cold connect cost, plain vs TLS, against private Redis servers on loopback (no pool: each
//! iteration is `RedisDriver::connect` and a drop, what a pool saves on every `open`).
//!
//! `cargo run --release -p pool-redis --example connect_cost [iterations]`
//!
//! Loopback only, so this is the client's and server's CPU cost of the handshakes (TCP,
//! TLS 1.3 with an ECDSA certificate, AUTH), with no network round-trip time in it.

use std::time::{Duration, Instant};

use pool_driver::Driver;
use pool_redis::RedisDriver;
use pool_testservers::{ClientCerts, RedisServer, ServerCert, TestPki};

fn measure(driver: &RedisDriver, label: &str, args: &str, n: usize) {
    let parsed = driver.parse_args(args).expect("args");
    // Warm-up: the first TLS connect also installs the crypto provider.
    for _ in 0..10 {
        drop(
            driver
                .connect(&parsed, Duration::from_secs(5))
                .expect("connect"),
        );
    }
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let started = Instant::now();
            let conn = driver
                .connect(&parsed, Duration::from_secs(5))
                .expect("connect");
            let took = started.elapsed();
            drop(conn);
            took
        })
        .collect();
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "{label:<38} median {:>8.1?}  p90 {:>8.1?}  min {:>8.1?}",
        at(0.5),
        at(0.9),
        times[0]
    );
}

/// A bare rustls handshake (TCP connect + TLS 1.3 to the same server, same CA, no Redis
/// command, no platform roots loaded): the floor under the driver's TLS connect.
fn bare_handshake(port: u16, ca: &std::path::Path, n: usize) {
    use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(cert.expect("ca cert")).expect("add");
    }
    let config = std::sync::Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let mut times: Vec<Duration> = (0..n + 10)
        .map(|_| {
            let started = Instant::now();
            let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("tcp");
            let name = ServerName::try_from("localhost").expect("name");
            let mut tls = rustls::ClientConnection::new(config.clone(), name).expect("tls");
            while tls.is_handshaking() {
                tls.complete_io(&mut tcp).expect("handshake");
            }
            started.elapsed()
        })
        .skip(10)
        .collect();
    times.sort();
    println!(
        "{:<38} median {:>8.1?}  p90 {:>8.1?}  min {:>8.1?}",
        "bare rustls handshake (no redis)",
        times[times.len() / 2],
        times[(times.len() - 1) * 9 / 10],
        times[0]
    );
}

fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let pki = TestPki::generate().expect("pki");
    let plain = RedisServer::start().expect("plain redis");
    let tls = RedisServer::start_tls(&pki, ServerCert::Valid, ClientCerts::Optional).expect("tls");
    let driver = RedisDriver::new();
    println!("{n} cold connects each (connect + AUTH as pool_user, then drop), loopback:");
    measure(&driver, "plain redis://", &plain.url(), n);
    bare_handshake(tls.port(), pki.ca_cert(), n);
    measure(&driver, "TLS rediss:// ?cacert", &tls.tls_url(), n);
    measure(
        &driver,
        "TLS rediss://127.0.0.1 ?cacert",
        &tls.tls_url().replace("@localhost:", "@127.0.0.1:"),
        n,
    );
    measure(
        &driver,
        "plain redis://localhost",
        &plain.url().replace("@127.0.0.1:", "@localhost:"),
        n,
    );
    measure(
        &driver,
        "TLS rediss:// ?cacert&cert&key",
        &tls.tls_client_url(),
        n,
    );
    measure(
        &driver,
        "TLS rediss:// ?insecure",
        &format!(
            "rediss://{}:{}@localhost:{}/0?insecure",
            tls.user(),
            tls.password(),
            tls.port()
        ),
        n,
    );
}
