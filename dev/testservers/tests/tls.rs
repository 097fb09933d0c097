//! The TLS servers against real clients none of us wrote: `psql` (libpq), `mariadb`
//! (Connector/C), `redis-cli` (hiredis) and `openssl s_client`, all on OpenSSL. Each server
//! kind is started once per server certificate ([`ServerCert`]); every test checks what a
//! verifying client must accept, what it must refuse, and that a plain connect is refused where
//! the server requires TLS.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pool_testservers::{
    ClientCerts, MariaServer, PgServer, Preamble, RedisServer, ServerCert, SilentListener, TestPki,
};

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout).trim(),
        String::from_utf8_lossy(&o.stderr).trim()
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[track_caller]
fn assert_ok(o: &Output) -> String {
    assert!(o.status.success(), "expected success: {}", text(o));
    stdout(o)
}

/// Asserts the command failed and its stderr contains `needle` (case-insensitive).
#[track_caller]
fn assert_refused(o: &Output, needle: &str) {
    assert!(!o.status.success(), "expected a refusal: {}", text(o));
    let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
    assert!(
        err.contains(&needle.to_lowercase()),
        "expected {needle:?} in stderr: {}",
        text(o)
    );
}

fn pki() -> TestPki {
    TestPki::generate().unwrap_or_else(|e| panic!("making the test PKI: {e}"))
}

fn p(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: psql (libpq)

/// `psql "<conninfo>" -c <sql>` with nothing inherited (no `PG*` variables, no `~/.postgresql`).
fn psql(conninfo: &str, sql: &str) -> Output {
    Command::new("psql")
        .env_clear()
        .env("PGCONNECT_TIMEOUT", "10")
        // No default root certificate or client certificate from a home directory.
        .env("HOME", "/nonexistent")
        .args(["-X", "-A", "-t", "-q", "-w", "-d", conninfo, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .expect("run psql")
}

const PG_SSL_IN_USE: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

fn start_pg(pki: &TestPki, cert: ServerCert) -> PgServer {
    PgServer::start_tls(pki, cert).unwrap_or_else(|e| panic!("starting PostgreSQL: {e}"))
}

#[test]
fn pg_tls_valid_certificate() {
    let pki = pki();
    let pg = start_pg(&pki, ServerCert::Valid);
    assert_eq!(pg.tls().map(|t| t.server_cert()), Some(ServerCert::Valid));
    let port = pg.port();
    let ca = p(pki.ca_cert());

    // Fully verified, by name and by IP address (both are in the certificate).
    assert_eq!(
        assert_ok(&psql(&pg.tls_args("verify-full"), PG_SSL_IN_USE)),
        "t"
    );
    let by_ip = format!(
        "host=127.0.0.1 port={port} user=pool_scram password={} dbname=pool_test \
         sslmode=verify-full sslrootcert={ca}",
        pg.scram_password()
    );
    assert_eq!(assert_ok(&psql(&by_ip, PG_SSL_IN_USE)), "t");
    // The trust role over TLS, and SCRAM with channel binding required (SCRAM-SHA-256-PLUS).
    let trust = format!(
        "host=localhost port={port} user=pool_trust dbname=pool_test sslmode=verify-full \
         sslrootcert={ca}"
    );
    assert_eq!(
        assert_ok(&psql(&trust, "SELECT current_user")),
        "pool_trust"
    );
    let bound = format!("{} channel_binding=require", pg.tls_args("verify-full"));
    assert_eq!(
        assert_ok(&psql(&bound, "SELECT current_user")),
        "pool_scram"
    );

    // Plain TCP is refused by the server, for every role.
    let plain = format!("{} sslmode=disable", pg.scram_args());
    assert_refused(&psql(&plain, "SELECT 1"), "no encryption");
    assert_refused(
        &psql(&format!("{} sslmode=disable", pg.trust_args()), "SELECT 1"),
        "no encryption",
    );
    // The unix socket stays plain (the crate's own psql uses it).
    assert_eq!(pg.psql("SELECT 1").expect("psql over the socket"), "1");

    // The wrong CA: refused by the client.
    let wrong_ca = format!(
        "host=localhost port={port} user=pool_trust dbname=pool_test sslmode=verify-ca \
         sslrootcert={}",
        p(pki.other_ca_cert())
    );
    assert_refused(&psql(&wrong_ca, "SELECT 1"), "certificate verify failed");

    // Client-certificate login: with the certificate it works, without it, or with one from
    // the other CA, it does not.
    assert_eq!(
        assert_ok(&psql(&pg.cert_args(), "SELECT current_user")),
        "pool_cert"
    );
    let no_cert = format!(
        "host=localhost port={port} user=pool_cert dbname=pool_test sslmode=verify-full \
         sslrootcert={ca}"
    );
    assert_refused(&psql(&no_cert, "SELECT 1"), "certificate");
    let untrusted = pki.untrusted_client("pool_cert").expect("untrusted client");
    let foreign = format!(
        "{no_cert} sslcert={} sslkey={}",
        p(untrusted.cert()),
        p(untrusted.key())
    );
    assert!(!psql(&foreign, "SELECT 1").status.success());
    // A certificate whose CN is another user does not log in as pool_cert.
    let other = pki.client("pool_trust").expect("client cert");
    let mismatched = format!(
        "{no_cert} sslcert={} sslkey={}",
        p(other.cert()),
        p(other.key())
    );
    assert_refused(
        &psql(&mismatched, "SELECT 1"),
        "certificate authentication failed",
    );

    // The encrypted client key, with its passphrase (libpq's sslpassword).
    let encrypted = pki
        .encrypted_client_key("pool_cert")
        .expect("encrypted key");
    let cert = pki.client("pool_cert").expect("client cert");
    let with_passphrase = format!(
        "{no_cert} sslcert={} sslkey={} sslpassword={}",
        p(cert.cert()),
        p(&encrypted),
        pki.key_passphrase()
    );
    assert_eq!(
        assert_ok(&psql(&with_passphrase, "SELECT current_user")),
        "pool_cert"
    );
    let wrong_passphrase = format!(
        "{no_cert} sslcert={} sslkey={} sslpassword=wrong",
        p(cert.cert()),
        p(&encrypted)
    );
    assert!(!psql(&wrong_passphrase, "SELECT 1").status.success());
}

#[test]
fn pg_tls_wrong_host_certificate() {
    let pki = pki();
    let pg = start_pg(&pki, ServerCert::WrongHost);
    // The CA is right, the name is not: verify-ca connects, verify-full refuses.
    assert_eq!(
        assert_ok(&psql(&pg.tls_args("verify-ca"), PG_SSL_IN_USE)),
        "t"
    );
    assert_refused(
        &psql(&pg.tls_args("verify-full"), "SELECT 1"),
        "does not match host name",
    );
    // Encryption without verification connects.
    let require = format!(
        "host=localhost port={} user=pool_scram password={} dbname=pool_test sslmode=require",
        pg.port(),
        pg.scram_password()
    );
    assert_eq!(assert_ok(&psql(&require, PG_SSL_IN_USE)), "t");
}

#[test]
fn pg_tls_expired_certificate() {
    let pki = pki();
    let pg = start_pg(&pki, ServerCert::Expired);
    // libpq says only "certificate verify failed"; openssl names the reason
    // (pg_tls_certificates_seen_by_openssl).
    assert_refused(
        &psql(&pg.tls_args("verify-ca"), "SELECT 1"),
        "certificate verify failed",
    );
    assert_refused(
        &psql(&pg.tls_args("verify-full"), "SELECT 1"),
        "certificate verify failed",
    );
    let require = format!(
        "host=localhost port={} user=pool_scram password={} dbname=pool_test sslmode=require",
        pg.port(),
        pg.scram_password()
    );
    assert_eq!(assert_ok(&psql(&require, PG_SSL_IN_USE)), "t");
}

// ---------------------------------------------------------------------------------------------
// MariaDB: the mariadb client (Connector/C)

/// `mariadb` over TCP to `localhost:<port>` as `user` with `password`, plus `tls` options.
fn mariadb(port: u16, user: &str, password: &str, tls: &[String], sql: &str) -> Output {
    Command::new("mariadb")
        .env_clear()
        .args(["--no-defaults", "--protocol=tcp", "-h", "localhost"])
        .arg(format!("--port={port}"))
        .arg(format!("--user={user}"))
        .arg(format!("--password={password}"))
        .arg("--connect-timeout=10")
        .args(tls)
        .args(["-N", "-B", "pool_test", "-e", sql])
        .stdin(Stdio::null())
        .output()
        .expect("run mariadb")
}

/// The session's TLS cipher: empty when the session is plain.
const MARIA_CIPHER: &str = "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS \
                            WHERE VARIABLE_NAME = 'Ssl_cipher'";

fn verified(ca: &Path) -> Vec<String> {
    vec![
        "--ssl".into(),
        format!("--ssl-ca={}", ca.display()),
        "--ssl-verify-server-cert".into(),
    ]
}

fn start_maria(pki: &TestPki, cert: ServerCert) -> MariaServer {
    MariaServer::start_tls(pki, cert).unwrap_or_else(|e| panic!("starting MariaDB: {e}"))
}

#[test]
fn maria_tls_valid_certificate() {
    let pki = pki();
    let m = start_maria(&pki, ServerCert::Valid);
    assert!(!m.requires_tls());
    let port = m.port();
    let (user, pw) = (m.tls_user(), m.tls_password());

    // Fully verified: the session is encrypted.
    let cipher = assert_ok(&mariadb(
        port,
        user,
        pw,
        &verified(pki.ca_cert()),
        MARIA_CIPHER,
    ));
    assert!(!cipher.is_empty(), "a TLS cipher is in use");
    // REQUIRE SSL: pool_tls cannot log in plain; pool_user (no REQUIRE) still can.
    let plain = vec!["--skip-ssl".to_string()];
    assert_refused(
        &mariadb(port, user, pw, &plain, "SELECT 1"),
        "access denied",
    );
    assert_eq!(
        assert_ok(&mariadb(port, m.user(), m.password(), &plain, MARIA_CIPHER)),
        "",
        "pool_user's plain session is not encrypted"
    );

    // The wrong CA.
    let wrong_ca = verified(pki.other_ca_cert());
    assert!(
        !mariadb(port, user, pw, &wrong_ca, "SELECT 1")
            .status
            .success(),
        "the wrong CA must be refused"
    );

    // REQUIRE X509: with the client certificate it works, without it it does not, nor with
    // one from the other CA.
    let (x509, x509_pw) = (m.x509_user(), m.x509_password());
    let cert = pki.client(x509).expect("client cert");
    let mut with_cert = verified(pki.ca_cert());
    with_cert.push(format!("--ssl-cert={}", cert.cert().display()));
    with_cert.push(format!("--ssl-key={}", cert.key().display()));
    assert_eq!(
        assert_ok(&mariadb(
            port,
            x509,
            x509_pw,
            &with_cert,
            "SELECT CURRENT_USER()"
        )),
        "pool_x509@%"
    );
    assert_refused(
        &mariadb(port, x509, x509_pw, &verified(pki.ca_cert()), "SELECT 1"),
        "access denied",
    );
    let untrusted = pki.untrusted_client(x509).expect("untrusted client");
    let mut foreign = verified(pki.ca_cert());
    foreign.push(format!("--ssl-cert={}", untrusted.cert().display()));
    foreign.push(format!("--ssl-key={}", untrusted.key().display()));
    assert!(!mariadb(port, x509, x509_pw, &foreign, "SELECT 1")
        .status
        .success());
}

#[test]
fn maria_tls_only_refuses_plain_logins() {
    let pki = pki();
    let m = MariaServer::start_tls_only(&pki, ServerCert::Valid)
        .unwrap_or_else(|e| panic!("starting MariaDB: {e}"));
    assert!(m.requires_tls());
    let plain = vec!["--skip-ssl".to_string()];
    // MariaDB answers a plain login under require_secure_transport with "Access denied"
    // (1045), not MySQL's 3159; pool_user may log in plain on a start_tls server
    // (maria_tls_valid_certificate), so the refusal here is the server's requirement.
    assert_refused(
        &mariadb(m.port(), m.user(), m.password(), &plain, "SELECT 1"),
        "access denied",
    );
    let cipher = assert_ok(&mariadb(
        m.port(),
        m.user(),
        m.password(),
        &verified(pki.ca_cert()),
        MARIA_CIPHER,
    ));
    assert!(!cipher.is_empty());
    // The private socket counts as secure: the crate's own client still works.
    assert_eq!(m.sql("SELECT 1").expect("sql over the socket"), "1");
}

#[test]
fn maria_tls_wrong_host_and_expired_certificates() {
    let pki = pki();
    let (wrong_host, expired) = std::thread::scope(|s| {
        let a = s.spawn(|| start_maria(&pki, ServerCert::WrongHost));
        let b = s.spawn(|| start_maria(&pki, ServerCert::Expired));
        (a.join().expect("start"), b.join().expect("start"))
    });
    for m in [&wrong_host, &expired] {
        let (port, user, pw) = (m.port(), m.tls_user(), m.tls_password());
        assert!(
            !mariadb(port, user, pw, &verified(pki.ca_cert()), "SELECT 1")
                .status
                .success(),
            "{:?} must be refused by a verifying client",
            m.tls().map(|t| t.server_cert())
        );
        // Encryption without verification connects.
        let unverified = vec!["--ssl".to_string(), "--skip-ssl-verify-server-cert".into()];
        let cipher = assert_ok(&mariadb(port, user, pw, &unverified, MARIA_CIPHER));
        assert!(!cipher.is_empty());
    }
    // Checking the CA only (no host name): the wrong-host certificate is signed by the CA,
    // so openssl accepts its chain; with the host name it does not.
    let chain = s_client(wrong_host.port(), pki.ca_cert(), None, Some("mysql"));
    assert!(chain.contains("Verify return code: 0 (ok)"), "{chain}");
    let named = s_client(
        wrong_host.port(),
        pki.ca_cert(),
        Some("localhost"),
        Some("mysql"),
    );
    assert!(named.contains("hostname mismatch"), "{named}");
    let old = s_client(expired.port(), pki.ca_cert(), None, Some("mysql"));
    assert!(old.contains("certificate has expired"), "{old}");
}

#[test]
fn maria_greeting_offers_tls() {
    let pki = pki();
    let m = start_maria(&pki, ServerCert::Valid);
    let greeting = m.greeting().expect("greeting");
    // Protocol 10, then the server version (NUL-terminated), the connection id, 8 bytes of
    // scramble and a filler byte; then the lower capability flags, where CLIENT_SSL is 0x0800.
    assert_eq!(greeting[4], 10, "protocol version 10");
    let version_end = 5 + greeting[5..].iter().position(|&b| b == 0).expect("NUL");
    let caps =
        usize::from(greeting[version_end + 14]) | usize::from(greeting[version_end + 15]) << 8;
    assert_ne!(caps & 0x0800, 0, "CLIENT_SSL offered");
    let plain = MariaServer::start().expect("start");
    let greeting = plain.greeting().expect("greeting");
    let version_end = 5 + greeting[5..].iter().position(|&b| b == 0).expect("NUL");
    let caps =
        usize::from(greeting[version_end + 14]) | usize::from(greeting[version_end + 15]) << 8;
    assert_eq!(caps & 0x0800, 0, "no CLIENT_SSL without TLS");
}

// ---------------------------------------------------------------------------------------------
// Redis: redis-cli (hiredis) and openssl s_client

fn redis_cli(r: &RedisServer, tls: &[String], command: &[&str]) -> Output {
    Command::new("redis-cli")
        .env_clear()
        .args(["-h", "localhost", "-p", &r.port().to_string()])
        .args([
            "--user",
            r.user(),
            "--pass",
            r.password(),
            "--no-auth-warning",
        ])
        .args(tls)
        .args(command)
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli")
}

/// redis-cli exits 0 on most server and connection errors and prints them on stdout: its
/// answer is what it printed.
fn redis_answer(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout).trim(),
        String::from_utf8_lossy(&o.stderr).trim()
    )
}

/// `openssl s_client` against 127.0.0.1:`port`: the chain is verified against `ca`, and the
/// host name against `host` when given; `starttls` for protocols that negotiate TLS first
/// (`mysql`, `postgres`). Returns everything it printed.
fn s_client(port: u16, ca: &Path, host: Option<&str>, starttls: Option<&str>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.env_clear()
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .arg("-CAfile")
        .arg(ca)
        .arg("-brief");
    if let Some(host) = host {
        cmd.args(["-verify_hostname", host]);
    }
    if let Some(proto) = starttls {
        cmd.args(["-starttls", proto]);
    }
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    // -brief prints "Verification: OK" or the error; keep the old wording too.
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if all.contains("Verification: OK") {
        format!("{all}\nVerify return code: 0 (ok)")
    } else {
        all
    }
}

fn start_redis(pki: &TestPki, cert: ServerCert, client_certs: ClientCerts) -> RedisServer {
    RedisServer::start_tls(pki, cert, client_certs)
        .unwrap_or_else(|e| panic!("starting Redis: {e}"))
}

fn cacert(ca: &Path) -> Vec<String> {
    vec!["--tls".into(), "--cacert".into(), p(ca)]
}

#[test]
fn redis_tls_without_client_certificates() {
    let pki = pki();
    let r = start_redis(&pki, ServerCert::Valid, ClientCerts::NotRequested);
    assert_eq!(r.client_certs(), Some(ClientCerts::NotRequested));
    assert_eq!(
        redis_answer(&redis_cli(&r, &cacert(pki.ca_cert()), &["PING"])),
        "PONG"
    );
    assert_eq!(
        redis_answer(&redis_cli(&r, &cacert(pki.ca_cert()), &["ACL", "WHOAMI"])),
        "pool_user"
    );
    // The wrong CA, and plain RESP on the TLS port: no PONG.
    let wrong = redis_answer(&redis_cli(&r, &cacert(pki.other_ca_cert()), &["PING"]));
    assert!(wrong.contains("certificate verify failed"), "{wrong}");
    let plain = redis_answer(&redis_cli(&r, &[], &["PING"]));
    assert_ne!(plain, "PONG", "plain RESP on the TLS port must fail");
    // openssl verifies the name too.
    let named = s_client(r.port(), pki.ca_cert(), Some("localhost"), None);
    assert!(named.contains("Verify return code: 0 (ok)"), "{named}");
    let ip = s_client(r.port(), pki.ca_cert(), None, None);
    assert!(ip.contains("Verify return code: 0 (ok)"), "{ip}");
}

#[test]
fn redis_tls_requiring_client_certificates() {
    let pki = pki();
    let r = start_redis(&pki, ServerCert::Valid, ClientCerts::Required);
    let cert = pki.client(r.user()).expect("client cert");
    let mut with_cert = cacert(pki.ca_cert());
    with_cert.extend([
        "--cert".into(),
        p(cert.cert()),
        "--key".into(),
        p(cert.key()),
    ]);
    assert_eq!(redis_answer(&redis_cli(&r, &with_cert, &["PING"])), "PONG");
    let without = redis_answer(&redis_cli(&r, &cacert(pki.ca_cert()), &["PING"]));
    assert_ne!(without, "PONG", "no client certificate must fail");
    let untrusted = pki.untrusted_client(r.user()).expect("client cert");
    let mut foreign = cacert(pki.ca_cert());
    foreign.extend([
        "--cert".into(),
        p(untrusted.cert()),
        "--key".into(),
        p(untrusted.key()),
    ]);
    assert_ne!(
        redis_answer(&redis_cli(&r, &foreign, &["PING"])),
        "PONG",
        "a client certificate from the other CA must fail"
    );
    // The helper URLs name the right files.
    assert!(r.tls_client_url().starts_with("rediss://pool_user:"));
    assert!(r
        .tls_client_url()
        .contains(&format!("&key={}", p(cert.key()))));
}

#[test]
fn redis_tls_wrong_host_and_expired_certificates() {
    let pki = pki();
    let wrong_host = start_redis(&pki, ServerCert::WrongHost, ClientCerts::NotRequested);
    let expired = start_redis(&pki, ServerCert::Expired, ClientCerts::Optional);
    let old = redis_answer(&redis_cli(&expired, &cacert(pki.ca_cert()), &["PING"]));
    assert!(old.contains("certificate verify failed"), "{old}");
    let old = s_client(expired.port(), pki.ca_cert(), None, None);
    assert!(old.contains("certificate has expired"), "{old}");
    let named = s_client(wrong_host.port(), pki.ca_cert(), Some("localhost"), None);
    assert!(named.contains("hostname mismatch"), "{named}");
    let chain = s_client(wrong_host.port(), pki.ca_cert(), None, None);
    assert!(chain.contains("Verify return code: 0 (ok)"), "{chain}");
    // Encryption without verification connects to both.
    let insecure = vec!["--tls".to_string(), "--insecure".into()];
    assert_eq!(
        redis_answer(&redis_cli(&wrong_host, &insecure, &["PING"])),
        "PONG"
    );
    assert_eq!(
        redis_answer(&redis_cli(&expired, &insecure, &["PING"])),
        "PONG"
    );
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL through openssl (STARTTLS-style negotiation)

#[test]
fn pg_tls_certificates_seen_by_openssl() {
    let pki = pki();
    let pg = start_pg(&pki, ServerCert::WrongHost);
    let chain = s_client(pg.port(), pki.ca_cert(), None, Some("postgres"));
    assert!(chain.contains("Verify return code: 0 (ok)"), "{chain}");
    let named = s_client(
        pg.port(),
        pki.ca_cert(),
        Some("localhost"),
        Some("postgres"),
    );
    assert!(named.contains("hostname mismatch"), "{named}");
    // PostgreSQL sends the CA with its certificate (OpenSSL completes the chain from
    // ssl_ca_file), so a client trusting another CA sees an untrusted self-signed root.
    let wrong_ca = s_client(pg.port(), pki.other_ca_cert(), None, Some("postgres"));
    assert!(
        wrong_ca.contains("self-signed certificate in certificate chain"),
        "{wrong_ca}"
    );
    let expired = start_pg(&pki, ServerCert::Expired);
    let old = s_client(expired.port(), pki.ca_cert(), None, Some("postgres"));
    assert!(old.contains("certificate has expired"), "{old}");
}

// ---------------------------------------------------------------------------------------------
// Restarts keep TLS; silent peers stall real clients inside their TLS handshake

#[test]
fn tls_survives_restart() {
    let pki = pki();
    let mut pg = start_pg(&pki, ServerCert::Valid);
    let mut r = start_redis(&pki, ServerCert::Valid, ClientCerts::NotRequested);
    pg.restart().expect("restart PostgreSQL");
    r.restart().expect("restart Redis");
    assert_eq!(
        assert_ok(&psql(&pg.tls_args("verify-full"), PG_SSL_IN_USE)),
        "t"
    );
    assert_eq!(
        redis_answer(&redis_cli(&r, &cacert(pki.ca_cert()), &["PING"])),
        "PONG"
    );
    let mut m = MariaServer::start_tls_only(&pki, ServerCert::Valid).expect("start MariaDB");
    m.restart().expect("restart MariaDB");
    let plain = vec!["--skip-ssl".to_string()];
    assert!(
        !mariadb(m.port(), m.user(), m.password(), &plain, "SELECT 1")
            .status
            .success()
    );
    let cipher = assert_ok(&mariadb(
        m.port(),
        m.tls_user(),
        m.tls_password(),
        &verified(pki.ca_cert()),
        MARIA_CIPHER,
    ));
    assert!(!cipher.is_empty());
}

/// Starts `client`, waits until `silent` received a TLS ClientHello (a few hundred bytes after
/// whatever preamble the protocol has), checks the client still waits, and kills it.
fn stalls_in_handshake(what: &str, silent: &SilentListener, mut client: Command) {
    let mut child = client
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the client");
    let deadline = Instant::now() + Duration::from_secs(10);
    while silent.received() < 150 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let still_waiting = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        silent.received() >= 150,
        "{what}: no ClientHello arrived ({} bytes)",
        silent.received()
    );
    assert!(
        still_waiting,
        "{what}: the client should wait for the silent peer"
    );
}

#[test]
fn silent_peers_stall_real_clients_in_the_tls_handshake() {
    let pki = pki();
    let pg_peer = SilentListener::start_with(Preamble::Answer(b"S".to_vec())).expect("listener");
    let mut psql_cmd = Command::new("psql");
    psql_cmd.env_clear().env("HOME", "/nonexistent").args([
        "-X",
        "-w",
        "-d",
        &format!(
            "host=localhost port={} user=pool_trust dbname=pool_test sslmode=verify-full \
             sslrootcert={}",
            pg_peer.port(),
            p(pki.ca_cert())
        ),
        "-c",
        "SELECT 1",
    ]);
    stalls_in_handshake("psql", &pg_peer, psql_cmd);

    let maria = start_maria(&pki, ServerCert::Valid);
    let maria_peer =
        SilentListener::start_with(Preamble::Greet(maria.greeting().expect("greeting")))
            .expect("listener");
    let mut maria_cmd = Command::new("mariadb");
    maria_cmd
        .env_clear()
        .args(["--no-defaults", "--protocol=tcp", "-h", "localhost"])
        .arg(format!("--port={}", maria_peer.port()))
        .args(["--user=pool_tls", "--password=x", "--connect-timeout=30"])
        .args(verified(pki.ca_cert()))
        .args(["-e", "SELECT 1"]);
    stalls_in_handshake("mariadb", &maria_peer, maria_cmd);

    let redis_peer = SilentListener::start().expect("listener");
    let mut redis_cmd = Command::new("redis-cli");
    redis_cmd
        .env_clear()
        .args(["-h", "localhost", "-p", &redis_peer.port().to_string()])
        .args(cacert(pki.ca_cert()))
        .arg("PING");
    stalls_in_handshake("redis-cli", &redis_peer, redis_cmd);
}
