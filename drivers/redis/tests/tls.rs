//! The driver over TLS, against private TLS-only Redis servers (`--port 0 --tls-port`) whose
//! certificates `pool_testservers::TestPki` makes at test time: a valid one, one for the wrong
//! host, an expired one, and servers that require or ignore client certificates.
//!
//! A TLS-only port refuses plain clients, so every session that works here is encrypted.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pool_driver::{Driver, DriverError, DriverErrorKind, ResetMode};
use pool_redis::{RedisConn, RedisDriver};
use pool_testservers::{ClientCerts, Proxy, ProxyMode, RedisServer, ServerCert, TestPki};

mod common;
use common::{client_field, key, q, text, TIMEOUT};

/// One PKI for every test here (the certificates are read-only; servers copy what they need).
fn pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| TestPki::generate().unwrap_or_else(|e| panic!("making the PKI: {e}")))
}

fn start(cert: ServerCert, client_certs: ClientCerts) -> RedisServer {
    RedisServer::start_tls(pki(), cert, client_certs)
        .unwrap_or_else(|e| panic!("starting a TLS redis: {e}"))
}

fn connect(driver: &RedisDriver, args: &str) -> Result<RedisConn, DriverError> {
    let parsed = driver.parse_args(args)?;
    driver.connect(&parsed, TIMEOUT)
}

fn connected(driver: &RedisDriver, args: &str) -> RedisConn {
    connect(driver, args).unwrap_or_else(|e| panic!("connects over TLS: {e}"))
}

/// The error of a connect that must fail, checked to be a `Connect` error with `code` whose
/// message says `says`, and free of the password.
fn refused(driver: &RedisDriver, args: &str, code: &str, says: &str) -> DriverError {
    let error = connect(driver, args)
        .err()
        .unwrap_or_else(|| panic!("{args}: connected, but must be refused"));
    assert_eq!(error.kind(), DriverErrorKind::Connect, "{error}");
    assert_eq!(error.code(), Some(code), "{error}");
    assert!(error.message().contains(says), "{error}");
    assert!(
        !format!("{error} {error:?}").contains("redis-secret-pw"),
        "{error:?}"
    );
    error
}

/// `key=value` spelling of a TLS server's arguments, verified against `ca`, as `pool_user`.
fn kv_args(server: &RedisServer, host: &str, ca: &Path) -> String {
    format!(
        "host={host} port={} user={} password={} tls=on cacert={}",
        server.port(),
        server.user(),
        server.password(),
        ca.display()
    )
}

fn with_client(args: &str, cert: &Path, key: &Path) -> String {
    format!("{args} cert={} key={}", cert.display(), key.display())
}

#[test]
fn verified_connect_runs_commands_resets_and_pings() {
    let server = start(ServerCert::Valid, ClientCerts::NotRequested);
    let driver = RedisDriver::new();
    // The URL form (redis-cli's names as query parameters), by name and by IP address (the
    // certificate has both): each verified against the host as written.
    for args in [
        server.tls_url(),
        server.tls_url().replace("@localhost:", "@127.0.0.1:"),
    ] {
        let mut conn = connected(&driver, &args);
        assert_eq!(text(&mut conn, "PING", &[]), "PONG");
    }
    let mut conn = connected(&driver, &kv_args(&server, "localhost", pki().ca_cert()));
    let k = key("tls-commands");
    q(&mut conn, "SET", &[&k, "over tls"]);
    assert_eq!(text(&mut conn, "GET", &[&k]), "over tls");
    assert_eq!(text(&mut conn, "ACL WHOAMI", &[]), "pool_user");

    // The full reset over TLS: db, name and MULTI undone, the user kept.
    let id = client_field(&mut conn, "id");
    q(&mut conn, "SELECT", &["3"]);
    q(&mut conn, "CLIENT SETNAME", &["dirty"]);
    q(&mut conn, "MULTI", &[]);
    let handle = driver.detach(conn, ResetMode::Full).expect("full reset");
    let mut conn = driver.attach(handle).expect("attach");
    assert_eq!(client_field(&mut conn, "id"), id, "the same session");
    assert_eq!(client_field(&mut conn, "db"), "0");
    assert_eq!(client_field(&mut conn, "name"), "");
    assert_eq!(client_field(&mut conn, "multi"), "-1");
    assert_eq!(text(&mut conn, "ACL WHOAMI", &[]), "pool_user");

    // Rollback-only over TLS: the queued write never happens, the session stays.
    let queued = key("tls-rollback");
    q(&mut conn, "DEL", &[&queued]);
    q(&mut conn, "MULTI", &[]);
    q(&mut conn, "SET", &[&queued, "1"]);
    let handle = driver
        .detach(conn, ResetMode::RollbackOnly)
        .expect("rollback-only reset");
    let mut conn = driver.attach(handle).expect("attach");
    assert_eq!(client_field(&mut conn, "id"), id, "the same session");
    assert_eq!(text(&mut conn, "EXISTS", &[&queued]), "0");

    // The liveness ping over TLS, and a session the server ends is seen as gone.
    let mut handle = driver.detach(conn, ResetMode::Full).expect("reset");
    assert!(driver.connected(&mut handle, Duration::from_secs(1)));
    let mut admin = connected(
        &driver,
        &server.tls_url().replace(
            "pool_user:redis-secret-pw",
            &format!(":{}", server.default_password()),
        ),
    );
    q(&mut admin, "CLIENT KILL", &["ID", &id]);
    assert!(!driver.connected(&mut handle, Duration::from_secs(1)));
}

#[test]
fn an_untrusted_ca_is_refused() {
    let server = start(ServerCert::Valid, ClientCerts::NotRequested);
    let driver = RedisDriver::new();
    let error = refused(
        &driver,
        &kv_args(&server, "localhost", pki().other_ca_cert()),
        "TLS_UNTRUSTED_CERTIFICATE",
        "not signed by a trusted CA",
    );
    assert!(error.message().contains("cacert"), "the advice: {error}");
    // Without `cacert` only the platform's roots are trusted, and no public CA signed it.
    let no_ca = format!(
        "rediss://{}:{}@localhost:{}/0",
        server.user(),
        server.password(),
        server.port()
    );
    refused(
        &driver,
        &no_ca,
        "TLS_UNTRUSTED_CERTIFICATE",
        "not signed by a trusted CA",
    );
}

#[test]
fn a_certificate_for_another_host_is_refused() {
    let server = start(ServerCert::WrongHost, ClientCerts::NotRequested);
    let driver = RedisDriver::new();
    refused(
        &driver,
        &server.tls_url(),
        "TLS_HOST_NAME_MISMATCH",
        "not valid for the host name",
    );
}

#[test]
fn an_expired_certificate_is_refused() {
    let server = start(ServerCert::Expired, ClientCerts::NotRequested);
    let driver = RedisDriver::new();
    refused(
        &driver,
        &server.tls_url(),
        "TLS_CERTIFICATE_EXPIRED",
        "has expired",
    );
}

/// `insecure` (redis-cli's `--insecure`) verifies nothing: an untrusted CA, the wrong host and
/// an expired certificate all connect, still encrypted (the port speaks nothing else).
#[test]
fn insecure_connects_without_verification() {
    let driver = RedisDriver::new();
    for cert in [ServerCert::WrongHost, ServerCert::Expired] {
        let server = start(cert, ClientCerts::NotRequested);
        for args in [
            format!(
                "{} insecure=on",
                kv_args(&server, "127.0.0.1", pki().other_ca_cert())
            ),
            format!(
                "rediss://{}:{}@localhost:{}/0?insecure",
                server.user(),
                server.password(),
                server.port()
            ),
        ] {
            let mut conn = connected(&driver, &args);
            assert_eq!(text(&mut conn, "PING", &[]), "PONG", "{cert:?}");
        }
    }
}

/// A TLS-only port hangs up on a plain client: a `Connect` error that says to use TLS, once a
/// TLS hello on a fresh connection confirmed the port speaks it. A port that hangs up on
/// everyone is not called TLS-only.
#[test]
fn plain_to_a_tls_only_port_is_refused_clearly() {
    let server = start(ServerCert::Valid, ClientCerts::NotRequested);
    let driver = RedisDriver::new();
    for args in [
        format!(
            "redis://{}:{}@localhost:{}/0",
            server.user(),
            server.password(),
            server.port()
        ),
        format!("host=127.0.0.1 port={}", server.port()),
    ] {
        let error = refused(&driver, &args, "TLS_REQUIRED", "rediss://");
        assert!(error.message().contains("answers in TLS"), "{error}");
    }

    let upstream: SocketAddr = format!("127.0.0.1:{}", server.port())
        .parse()
        .expect("addr");
    let proxy = Proxy::start(upstream).expect("proxy");
    proxy.set_mode(ProxyMode::Reset);
    let error = connect(&driver, &format!("host=127.0.0.1 port={}", proxy.port()))
        .err()
        .unwrap_or_else(|| panic!("connected through a resetting proxy"));
    assert_eq!(error.kind(), DriverErrorKind::Connect, "{error}");
    assert_eq!(error.code(), None, "not known to be TLS: {error}");
    assert!(
        error.message().contains("if this port serves TLS"),
        "{error}"
    );
}

/// `rediss://` to a plain port: Redis mostly stays silent to a TLS hello (it waits for the end
/// of an inline command), sometimes answers it with an error; either way the error says the
/// port speaks plain Redis, within the connect timeout.
#[test]
fn tls_to_a_plain_port_is_refused_clearly() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("starting redis: {e}"));
    let driver = RedisDriver::new();
    let args = format!(
        "rediss://{}:{}@localhost:{}/0?cacert={}&connect_timeout=0.5",
        server.user(),
        server.password(),
        server.port(),
        pki().ca_cert().display()
    );
    for _ in 0..3 {
        let started = Instant::now();
        refused(&driver, &args, "TLS_NOT_OFFERED", "speaks plain Redis");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
    }
}

#[test]
fn client_certificate_auth_works_and_a_missing_one_is_refused() {
    let server = start(ServerCert::Valid, ClientCerts::Required);
    let driver = RedisDriver::new();
    let mut conn = connected(&driver, &server.tls_client_url());
    assert_eq!(text(&mut conn, "ACL WHOAMI", &[]), "pool_user");
    let client = pki().client("pool_user").expect("client certificate");
    let kv = with_client(
        &kv_args(&server, "localhost", pki().ca_cert()),
        client.cert(),
        client.key(),
    );
    let mut conn = connected(&driver, &kv);
    assert_eq!(text(&mut conn, "PING", &[]), "PONG");

    refused(
        &driver,
        &server.tls_url(),
        "TLS_CLIENT_CERTIFICATE_REQUIRED",
        "requires a client certificate",
    );
    let untrusted = pki()
        .untrusted_client("pool_user")
        .expect("untrusted client certificate");
    // A certificate with another certificate's key: refused before anything is sent.
    refused(
        &driver,
        &with_client(
            &kv_args(&server, "localhost", pki().ca_cert()),
            client.cert(),
            untrusted.key(),
        ),
        "TLS_KEY_MISMATCH",
        "do not belong together",
    );
    refused(
        &driver,
        &with_client(
            &kv_args(&server, "localhost", pki().ca_cert()),
            untrusted.cert(),
            untrusted.key(),
        ),
        "TLS_CLIENT_CERTIFICATE_REFUSED",
        "refused the client certificate",
    );
}

/// The files are read on every connect: replacing them on disk changes the very next connect,
/// with the same arguments (so the same pool), no restart.
#[test]
fn rotated_files_are_used_by_the_next_connect() {
    let server = start(ServerCert::Valid, ClientCerts::Required);
    let driver = RedisDriver::new();
    let dir = tempdir("rotation");
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("client.pem"),
        dir.join("client.key"),
    );
    let install = |ca_from: &Path, client: &pool_testservers::ClientCert| {
        fs::copy(ca_from, &ca).expect("copy ca");
        fs::copy(client.cert(), &cert).expect("copy cert");
        fs::copy(client.key(), &key).expect("copy key");
    };
    let good = pki().client("pool_user").expect("client certificate");
    let bad = pki().untrusted_client("pool_user").expect("untrusted");
    let args = with_client(&kv_args(&server, "localhost", &ca), &cert, &key);

    install(pki().ca_cert(), &good);
    let mut conn = connected(&driver, &args);
    assert_eq!(text(&mut conn, "PING", &[]), "PONG");

    install(pki().ca_cert(), &bad);
    refused(
        &driver,
        &args,
        "TLS_CLIENT_CERTIFICATE_REFUSED",
        "refused the client certificate",
    );
    install(pki().other_ca_cert(), &good);
    refused(
        &driver,
        &args,
        "TLS_UNTRUSTED_CERTIFICATE",
        "not signed by a trusted CA",
    );
    install(pki().ca_cert(), &good);
    let mut conn = connected(&driver, &args);
    assert_eq!(text(&mut conn, "PING", &[]), "PONG");
    // The session opened before the rotation goes on: files matter only when connecting.
    let _ = fs::remove_dir_all(&dir);
}

/// No password and no byte of any private key in an error or a `Debug`, whatever failed.
#[test]
fn no_secret_or_key_material_in_errors_or_debug() {
    let server = start(ServerCert::Valid, ClientCerts::Required);
    let driver = RedisDriver::new();
    let client = pki().client("pool_user").expect("client certificate");
    let untrusted = pki().untrusted_client("pool_user").expect("untrusted");
    let base = kv_args(&server, "localhost", pki().ca_cert());
    let mut shown = Vec::new();
    for args in [
        base.clone(),
        with_client(&base, untrusted.cert(), untrusted.key()),
        with_client(
            &kv_args(&server, "localhost", pki().other_ca_cert()),
            client.cert(),
            client.key(),
        ),
        // The key file given as the certificate and the reverse: parse errors name the file.
        with_client(&base, client.key(), client.cert()),
        with_client(&base, client.cert(), client.cert()),
        format!(
            "{base} cert={} key=/nonexistent/key.pem",
            client.cert().display()
        ),
    ] {
        let error = connect(&driver, &args)
            .err()
            .unwrap_or_else(|| panic!("{args}: must fail"));
        shown.push(format!("{error} {error:?}"));
    }
    let conn = connected(&driver, &with_client(&base, client.cert(), client.key()));
    shown.push(format!("{conn:?}"));

    let secrets = [server.password(), server.default_password()];
    for text in &shown {
        for secret in secrets {
            assert!(!text.contains(secret), "password in {text}");
        }
        for key_file in pki().private_keys() {
            let pem = fs::read_to_string(&key_file).unwrap_or_default();
            for line in pem
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() >= 16)
            {
                assert!(
                    !text.contains(line),
                    "key material of {key_file:?} in {text}"
                );
                assert!(
                    !text.contains(&line[..16]),
                    "key material of {key_file:?} in {text}"
                );
            }
        }
    }
}

/// The reset and the ping set their socket timeouts on the TCP stream under the TLS session:
/// on a silent network both give up within their bound, and closing the connection does no
/// I/O.
#[test]
fn silent_network_bounds_the_check_the_reset_and_the_close_over_tls() {
    let server = start(ServerCert::Valid, ClientCerts::NotRequested);
    let upstream: SocketAddr = format!("127.0.0.1:{}", server.port())
        .parse()
        .expect("addr");
    let proxy = Proxy::start(upstream).expect("proxy");
    let driver = RedisDriver::new();
    let args = format!(
        "host=localhost port={} user={} password={} tls=on cacert={} connect_timeout=0.5",
        proxy.port(),
        server.user(),
        server.password(),
        pki().ca_cert().display()
    );
    let mut conn = connected(&driver, &args);
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

    for mode in [ResetMode::Full, ResetMode::RollbackOnly] {
        proxy.set_mode(ProxyMode::Pass);
        let mut conn = connected(&driver, &args);
        q(&mut conn, "PING", &[]);
        proxy.set_mode(ProxyMode::Blackhole);
        let started = Instant::now();
        let err = driver.detach(conn, mode).expect_err("no answer");
        assert_eq!(err.kind(), DriverErrorKind::Broken, "{mode:?}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{mode:?}: {:?}",
            started.elapsed()
        );
    }

    proxy.set_mode(ProxyMode::Pass);
    let mut conn = connected(&driver, &args);
    q(&mut conn, "PING", &[]);
    proxy.set_mode(ProxyMode::Blackhole);
    let started = Instant::now();
    drop(conn);
    drop(parked);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

fn tempdir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pool-redis-tls-{what}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    dir
}
