//! PostgreSQL TLS beyond what the conformance suite checks for every driver: libpq's modes one
//! by one, the words of each refusal, channel binding, client certificates, certificate
//! rotation, unix sockets, and that no secret reaches an error.

mod common;

use std::sync::OnceLock;

use pool_driver::{Connection, Driver, DriverError, DriverErrorKind, Value};
use pool_postgres::{PgConn, PgDriver};
use pool_testservers::{PgServer, ServerCert, TestPki};

/// The TLS servers (one per server certificate) and their PKI, shared by this file's tests.
struct Servers {
    pki: TestPki,
    valid: PgServer,
    wrong_host: PgServer,
    expired: PgServer,
}

fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let pki = TestPki::generate().expect("certificates");
        let start = |cert| PgServer::start_tls(&pki, cert).expect("a TLS server");
        Servers {
            valid: start(ServerCert::Valid),
            wrong_host: start(ServerCert::WrongHost),
            expired: start(ServerCert::Expired),
            pki,
        }
    })
}

fn try_connect(args: &str) -> Result<PgConn, DriverError> {
    let args = PgDriver.parse_args(args)?;
    PgDriver.connect(&args, common::TIMEOUT)
}

fn refused(args: &str) -> DriverError {
    match try_connect(args) {
        Ok(_) => panic!("connected, but must be refused: {args}"),
        Err(e) => e,
    }
}

/// Whether the session runs over TLS, as the server sees it.
fn encrypted(conn: &mut PgConn) -> bool {
    let rows = conn
        .query(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .expect("pg_stat_ssl");
    rows.scalar() == Some(&Value::Bool(true))
}

/// The scram login of `server` to `host` with extra arguments.
fn login(server: &PgServer, host: &str, extra: &str) -> String {
    format!(
        "host={host} port={} user={} password={} dbname={} {extra}",
        server.port(),
        server.scram_user(),
        server.scram_password(),
        server.database()
    )
}

fn assert_says(error: &DriverError, words: &[&str]) {
    assert_eq!(error.kind(), DriverErrorKind::Connect, "{error}");
    for word in words {
        assert!(error.message().contains(word), "`{word}` missing: {error}");
    }
}

#[test]
fn verify_full_connects_by_name_and_by_address_and_is_encrypted() {
    let s = servers();
    let ca = s.pki.ca_cert().display();
    for args in [
        s.valid.tls_args("verify-full"),
        login(
            &s.valid,
            "127.0.0.1",
            &format!("sslmode=verify-full sslrootcert={ca}"),
        ),
        format!(
            "postgres://{}:{}@localhost:{}/{}?sslmode=verify-full&sslrootcert={ca}",
            s.valid.scram_user(),
            s.valid.scram_password(),
            s.valid.port(),
            s.valid.database()
        ),
    ] {
        let mut conn = try_connect(&args).unwrap_or_else(|e| panic!("{args}: {e}"));
        assert!(encrypted(&mut conn), "{args}");
    }
}

#[test]
fn each_certificate_failure_says_what_failed() {
    let s = servers();
    let other_ca = s.pki.other_ca_cert().display();
    let error = refused(&login(
        &s.valid,
        "localhost",
        &format!("sslmode=verify-full sslrootcert={other_ca}"),
    ));
    assert_says(&error, &["untrusted", "unknown CA", "sslrootcert"]);
    // The same codes the MariaDB and Redis drivers set, for a handler to match on.
    assert_eq!(error.code(), Some("TLS_UNTRUSTED_CERTIFICATE"), "{error}");

    let error = refused(&s.wrong_host.tls_args("verify-full"));
    assert_eq!(error.code(), Some("TLS_HOST_NAME_MISMATCH"), "{error}");
    assert_says(
        &error,
        &[
            "host name mismatch",
            "`localhost`",
            "wrong.example",
            "verify-ca",
        ],
    );

    let error = refused(&s.expired.tls_args("verify-full"));
    assert_says(&error, &["certificate has expired"]);
    assert_eq!(error.code(), Some("TLS_CERTIFICATE_EXPIRED"), "{error}");
    // verify-ca checks the dates too.
    let error = refused(&s.expired.tls_args("verify-ca"));
    assert_says(&error, &["certificate has expired"]);
}

/// libpq's table: verify-ca ignores the name; require checks nothing without sslrootcert and
/// acts as verify-ca with it.
#[test]
fn verify_ca_and_require_check_what_libpq_checks() {
    let s = servers();
    let mut conn = try_connect(&s.wrong_host.tls_args("verify-ca")).expect("verify-ca");
    assert!(encrypted(&mut conn));
    let mut conn = try_connect(&s.wrong_host.tls_args("require")).expect("require + CA");
    assert!(encrypted(&mut conn));
    let mut conn = try_connect(&login(&s.expired, "localhost", "sslmode=require"))
        .expect("require without a CA accepts any certificate");
    assert!(encrypted(&mut conn));
    let error = refused(&s.expired.tls_args("require"));
    assert_says(&error, &["certificate has expired"]);
}

/// A TLS-only server refuses a plain login; the error says the server may require TLS.
/// `allow` then retries with TLS; `prefer` and the default use TLS from the start.
#[test]
fn a_server_that_requires_tls() {
    let s = servers();
    let error = refused(&login(&s.valid, "127.0.0.1", "sslmode=disable"));
    assert_says(
        &error,
        &["no encryption", "requires TLS", "sslmode=require"],
    );
    assert_eq!(error.code(), Some("28000"), "{error}");
    for mode in ["sslmode=allow", "sslmode=prefer", ""] {
        let mut conn = try_connect(&login(&s.valid, "127.0.0.1", mode))
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert!(encrypted(&mut conn), "{mode}");
    }
}

/// A server without TLS: `prefer` (the default) and `allow` connect plain, `require` is
/// refused with words saying the server refuses TLS.
#[test]
fn a_server_without_tls() {
    let pg = pool_testservers::shared_pg();
    for mode in ["", "sslmode=prefer", "sslmode=allow"] {
        let mut conn = try_connect(&format!("{} {mode}", pg.scram_args()))
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert!(!encrypted(&mut conn), "{mode}");
    }
    let error = refused(&format!("{} sslmode=require", pg.scram_args()));
    assert_says(&error, &["refuses TLS", "sslmode=prefer"]);
}

/// Unix sockets never use TLS (the server does not offer it there), whatever sslmode says,
/// as in libpq.
#[test]
fn unix_sockets_ignore_sslmode() {
    let s = servers();
    let args = format!(
        "host={} port={} user={} dbname={} sslmode=require",
        s.valid.socket_dir().display(),
        s.valid.port(),
        s.valid.trust_user(),
        s.valid.database()
    );
    let mut conn = try_connect(&args).expect("unix socket");
    assert!(!encrypted(&mut conn));
}

#[test]
fn channel_binding() {
    let s = servers();
    let mut conn = try_connect(&format!(
        "{} channel_binding=require",
        s.valid.tls_args("verify-full")
    ))
    .expect("SCRAM-SHA-256-PLUS over TLS");
    assert!(encrypted(&mut conn));
    // Without TLS (prefer falls back on a server without it): refused, and says why.
    let pg = pool_testservers::shared_pg();
    let error = refused(&format!("{} channel_binding=require", pg.scram_args()));
    assert_says(&error, &["channel binding", "not encrypted"]);
    // Over TLS but with a login that uses no SCRAM (trust): no channel binding either.
    let error = refused(&format!(
        "host=localhost port={} user={} dbname={} sslmode=verify-full sslrootcert={} \
         channel_binding=require",
        s.valid.port(),
        s.valid.trust_user(),
        s.valid.database(),
        s.pki.ca_cert().display()
    ));
    assert_says(&error, &["channel binding", "scram-sha-256"]);
    // sslmode=disable contradicts it: refused when parsed.
    let error = PgDriver
        .parse_args(&format!(
            "{} sslmode=disable channel_binding=require",
            pg.scram_args()
        ))
        .unwrap_err();
    assert_eq!(error.kind(), DriverErrorKind::InvalidArgs, "{error}");
}

#[test]
fn client_certificates() {
    let s = servers();
    let mut conn = try_connect(&s.valid.cert_args()).expect("cert auth");
    assert!(encrypted(&mut conn));
    let user = s.valid.cert_user();
    let base = format!(
        "host=localhost port={} user={user} dbname={} sslmode=verify-full sslrootcert={}",
        s.valid.port(),
        s.valid.database(),
        s.pki.ca_cert().display()
    );
    // Without a certificate: the server's refusal.
    let error = refused(&base);
    assert_eq!(error.kind(), DriverErrorKind::Connect, "{error}");
    // Signed by a CA the server does not trust: the server's TLS alert, explained.
    let untrusted = s.pki.untrusted_client(user).expect("untrusted client cert");
    let error = refused(&format!(
        "{base} sslcert={} sslkey={}",
        untrusted.cert().display(),
        untrusted.key().display()
    ));
    assert_says(&error, &["alert", "sslcert"]);
    // An encrypted key: refused before any I/O, without the key or its passphrase.
    let client = s.pki.client(user).expect("client cert");
    let encrypted_key = s.pki.encrypted_client_key(user).expect("encrypted key");
    let error = refused(&format!(
        "{base} sslcert={} sslkey={}",
        client.cert().display(),
        encrypted_key.display()
    ));
    assert_says(&error, &["encrypted private key", "sslpassword"]);
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(s.pki.key_passphrase()), "{shown}");
    let pem = std::fs::read_to_string(&encrypted_key).expect("read key");
    for line in pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
    {
        assert!(!shown.contains(line), "key material in: {shown}");
    }
    // The certificate given as the key: no key in it.
    let error = refused(&format!(
        "{base} sslcert={} sslkey={}",
        client.cert().display(),
        client.cert().display()
    ));
    assert_says(&error, &["holds no private key"]);
    // A missing file names the argument.
    let error = refused(&format!(
        "{base} sslcert=/nonexistent/c.pem sslkey=/nonexistent/c.key"
    ));
    assert_says(&error, &["cannot read the sslcert file"]);
}

/// Certificate files are read on every connect: replacing the CA file takes effect on the
/// next connect, with no restart and no new pool.
#[test]
fn a_replaced_ca_file_is_used_by_the_next_connect() {
    let s = servers();
    let dir = s.pki.dir().join(format!("rotation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let ca = dir.join("ca.pem");
    std::fs::copy(s.pki.other_ca_cert(), &ca).expect("copy");
    let args = PgDriver
        .parse_args(&login(
            &s.valid,
            "localhost",
            &format!("sslmode=verify-full sslrootcert={}", ca.display()),
        ))
        .expect("args");
    let error = PgDriver.connect(&args, common::TIMEOUT).unwrap_err();
    assert!(error.message().contains("unknown CA"), "{error}");
    std::fs::copy(s.pki.ca_cert(), &ca).expect("rotate");
    let mut conn = PgDriver
        .connect(&args, common::TIMEOUT)
        .expect("the same arguments with the new CA file");
    assert!(encrypted(&mut conn));
}

/// The password of a refused TLS login, the key passphrase and the key material never appear
/// in an error or in `Debug` output.
#[test]
fn no_secret_in_tls_errors() {
    let s = servers();
    let wrong = "not-the-pw-5521";
    let args = login(
        &s.valid,
        "localhost",
        &format!(
            "sslmode=verify-full sslrootcert={}",
            s.pki.ca_cert().display()
        ),
    )
    .replace(s.valid.scram_password(), wrong);
    let error = refused(&args);
    assert_eq!(error.code(), Some("28P01"), "{error}");
    let conn = try_connect(&s.valid.tls_args("verify-full")).expect("connect");
    for shown in [format!("{error} {error:?}"), format!("{conn:?}")] {
        assert!(!shown.contains(wrong), "{shown}");
        assert!(!shown.contains(s.valid.scram_password()), "{shown}");
    }
}

/// `hostaddr` gives the address to connect to; the certificate is still checked against the
/// name in `host`.
#[test]
fn hostaddr_connects_by_address_and_verifies_the_host_name() {
    let s = servers();
    let args = format!("{} hostaddr=127.0.0.1", s.valid.tls_args("verify-full"));
    let mut conn = try_connect(&args).expect("host=localhost hostaddr=127.0.0.1");
    assert!(encrypted(&mut conn));
    let error = refused(&format!(
        "{} hostaddr=127.0.0.1",
        s.wrong_host.tls_args("verify-full")
    ));
    assert_says(&error, &["host name mismatch", "`localhost`"]);
}
