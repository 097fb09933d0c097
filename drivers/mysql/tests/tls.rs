//! TLS against private MariaDB servers (dev/testservers): one with a valid certificate, one
//! whose certificate names another host, one with an expired certificate, one that requires
//! TLS of every TCP login, and the shared plain server. Each is started on first use and shared
//! by this file's tests.
//!
//! What each `ssl-mode` does, and why: `src/tls.rs`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use pool_driver::{ConnArgs, Connection, Driver, DriverError, DriverErrorKind, ResetMode, Value};
use pool_mysql::{MyConn, MysqlDriver};
use pool_testservers::{shared_maria, MariaServer, ServerCert, TestPki};

const TIMEOUT: Duration = Duration::from_secs(5);

fn pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| TestPki::generate().unwrap_or_else(|e| panic!("making the PKI: {e}")))
}

fn server(cert: ServerCert) -> &'static MariaServer {
    static VALID: OnceLock<MariaServer> = OnceLock::new();
    static WRONG_HOST: OnceLock<MariaServer> = OnceLock::new();
    static EXPIRED: OnceLock<MariaServer> = OnceLock::new();
    let cell = match cert {
        ServerCert::Valid => &VALID,
        ServerCert::WrongHost => &WRONG_HOST,
        ServerCert::Expired => &EXPIRED,
    };
    cell.get_or_init(|| {
        MariaServer::start_tls(pki(), cert)
            .unwrap_or_else(|e| panic!("starting MariaDB with {cert:?}: {e}"))
    })
}

/// `require_secure_transport=ON`: every TCP login needs TLS.
fn tls_only_server() -> &'static MariaServer {
    static TLS_ONLY: OnceLock<MariaServer> = OnceLock::new();
    TLS_ONLY.get_or_init(|| {
        MariaServer::start_tls_only(pki(), ServerCert::Valid)
            .unwrap_or_else(|e| panic!("starting MariaDB with TLS required: {e}"))
    })
}

fn connect(args: &str) -> Result<MyConn, DriverError> {
    let driver = MysqlDriver;
    driver.connect(&driver.parse_args(args)?, TIMEOUT)
}

/// `args` as a failing test may print them: the password replaced by `***`.
fn shown(args: &str) -> String {
    ConnArgs::parse(args).map_or_else(|e| e.to_string(), |a| a.redacted())
}

fn connected(args: &str) -> MyConn {
    connect(args).unwrap_or_else(|e| panic!("{}: {e}", shown(args)))
}

fn refused(args: &str) -> DriverError {
    match connect(args) {
        Ok(_) => panic!("{}: connected, expected a refusal", shown(args)),
        Err(e) => e,
    }
}

/// The session's cipher as the server reports it: empty on a plain connection.
fn cipher(conn: &mut MyConn) -> String {
    let rows = conn
        .query("SHOW SESSION STATUS LIKE 'Ssl_cipher'", &[])
        .expect("Ssl_cipher");
    match rows.get(0, 1) {
        Some(Value::Text(cipher)) => cipher.clone(),
        other => panic!("Ssl_cipher: {other:?}"),
    }
}

fn quoted(path: &Path) -> String {
    format!("'{}'", path.display())
}

/// `args` with `key=value` replaced (or added).
fn with(args: &str, key: &str, value: &str) -> String {
    let mut kept: Vec<&str> = args
        .split_whitespace()
        .filter(|pair| !pair.starts_with(&format!("{key}=")))
        .collect();
    let pair = format!("{key}={value}");
    kept.push(&pair);
    kept.join(" ")
}

/// Fails if `error` holds the password, a line of any private key of the PKI, or the key
/// passphrase; in its message or its `Debug` form.
fn assert_no_secrets(error: &DriverError, passwords: &[&str]) {
    let shown = format!("{error} {error:?}");
    for password in passwords {
        assert!(!shown.contains(password), "password in: {shown}");
    }
    assert!(
        !shown.contains(pki().key_passphrase()),
        "passphrase in: {shown}"
    );
    for key in pki().private_keys() {
        let text = fs::read_to_string(&key).unwrap_or_default();
        for line in text
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 16)
        {
            assert!(!shown.contains(line), "key material of {key:?} in: {shown}");
        }
    }
}

#[test]
fn verified_connect_runs_statements_over_tls() {
    let s = server(ServerCert::Valid);
    let driver = MysqlDriver;
    for args in [
        s.tls_args("VERIFY_IDENTITY"),
        // The certificate names 127.0.0.1 too: an IP address is checked as one.
        s.tls_args("VERIFY_IDENTITY")
            .replace("host=localhost", "host=127.0.0.1"),
        // The URL form, with the mysql client's spellings.
        format!(
            "mysql://{}:{}@localhost:{}/pool_test?ssl-mode=verify_identity&ssl-ca={}",
            s.tls_user(),
            s.tls_password(),
            s.port(),
            pki().ca_cert().display()
        ),
        // ssl-ca alone means VERIFY_CA.
        s.tls_args("VERIFY_CA").replace(" ssl-mode=VERIFY_CA", ""),
    ] {
        let mut conn = connected(&args);
        assert!(conn.is_encrypted(), "{}", shown(&args));
        let cipher = cipher(&mut conn);
        assert!(!cipher.is_empty(), "{}: no cipher", shown(&args));
        assert_eq!(
            conn.query("SELECT CURRENT_USER(), 6 * 7", &[])
                .expect("select")
                .rows()[0],
            vec![Value::Text("pool_tls@%".into()), Value::Int(42)]
        );
        // Reset, liveness check and reuse over TLS, as the pool does them.
        conn.execute("SET @left_behind = 1", &[]).expect("set");
        let mut parked = driver.detach(conn, ResetMode::Full).expect("reset");
        assert!(driver.connected(&mut parked, TIMEOUT));
        let mut conn = driver.attach(parked).expect("attach");
        assert_eq!(
            conn.query("SELECT @left_behind", &[])
                .expect("select")
                .scalar(),
            Some(&Value::Null)
        );
        println!(
            "{}: {cipher}",
            args.split_whitespace().last().unwrap_or_default()
        );
    }
}

#[test]
fn a_wrong_ca_is_refused_as_untrusted() {
    let s = server(ServerCert::Valid);
    for mode in ["VERIFY_CA", "VERIFY_IDENTITY", "REQUIRED"] {
        let args = with(&s.tls_args(mode), "ssl-ca", &quoted(pki().other_ca_cert()));
        let error = refused(&args);
        assert_eq!(error.kind(), DriverErrorKind::Connect, "{mode}: {error}");
        assert_eq!(
            error.code(),
            Some("TLS_UNTRUSTED_CERTIFICATE"),
            "{mode}: {error}"
        );
        assert!(error.message().contains("not trusted"), "{error}");
        assert!(error.message().contains("ssl-ca"), "{error}");
        assert_no_secrets(&error, &[s.tls_password()]);
    }
}

#[test]
fn a_wrong_host_name_is_refused_by_verify_identity_only() {
    let s = server(ServerCert::WrongHost);
    let error = refused(&s.tls_args("VERIFY_IDENTITY"));
    assert_eq!(error.kind(), DriverErrorKind::Connect, "{error}");
    assert_eq!(error.code(), Some("TLS_HOST_NAME_MISMATCH"), "{error}");
    assert!(error.message().contains("host name mismatch"), "{error}");
    // rustls' detail names what was expected.
    assert!(error.message().contains("localhost"), "{error}");
    assert_no_secrets(&error, &[s.tls_password()]);
    // The CA is right: VERIFY_CA (and REQUIRED with ssl-ca, which verifies the chain) connect.
    for mode in ["VERIFY_CA", "REQUIRED"] {
        let mut conn = connected(&s.tls_args(mode));
        assert!(!cipher(&mut conn).is_empty(), "{mode}");
    }
}

#[test]
fn an_expired_certificate_is_refused_unless_unverified() {
    let s = server(ServerCert::Expired);
    for mode in ["VERIFY_CA", "VERIFY_IDENTITY", "REQUIRED"] {
        let error = refused(&s.tls_args(mode));
        assert_eq!(error.kind(), DriverErrorKind::Connect, "{mode}: {error}");
        assert_eq!(
            error.code(),
            Some("TLS_CERTIFICATE_EXPIRED"),
            "{mode}: {error}"
        );
        assert!(error.message().contains("has expired"), "{error}");
        assert_no_secrets(&error, &[s.tls_password()]);
    }
    // REQUIRED without ssl-ca encrypts without verifying: it connects.
    let unverified = s
        .tls_args("REQUIRED")
        .replace(&format!(" ssl-ca={}", pki().ca_cert().display()), "");
    assert!(!unverified.contains("ssl-ca"), "{}", shown(&unverified));
    let mut conn = connected(&unverified);
    assert!(conn.is_encrypted());
    assert!(!cipher(&mut conn).is_empty());
}

#[test]
fn required_without_verification_connects_encrypted() {
    for s in [server(ServerCert::Valid), server(ServerCert::WrongHost)] {
        let args = format!(
            "host=127.0.0.1 port={} user={} password={} dbname=pool_test ssl-mode=REQUIRED",
            s.port(),
            s.tls_user(),
            s.tls_password()
        );
        let mut conn = connected(&args);
        assert!(conn.is_encrypted());
        assert!(!cipher(&mut conn).is_empty(), "{}", shown(&args));
    }
}

#[test]
fn required_against_a_server_without_tls_is_refused() {
    let plain = shared_maria();
    for mode in ["REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"] {
        let error = refused(&format!("{} ssl-mode={mode}", plain.args()));
        assert_eq!(error.kind(), DriverErrorKind::Connect, "{mode}: {error}");
        assert_eq!(error.code(), Some("TLS_NOT_OFFERED"), "{mode}: {error}");
        assert!(error.message().contains("does not offer TLS"), "{error}");
        assert_no_secrets(&error, &[plain.password()]);
    }
}

#[test]
fn preferred_encrypts_when_offered_and_falls_back_when_not() {
    let plain = shared_maria();
    let mut conn = connected(&format!("{} ssl-mode=PREFERRED", plain.args()));
    assert!(!conn.is_encrypted());
    assert_eq!(cipher(&mut conn), "");
    assert_eq!(
        conn.query("SELECT 1", &[]).expect("select").scalar(),
        Some(&Value::Int(1))
    );
    // A TLS server: encrypted, and (as in the mysql client) not verified: the expired
    // certificate is accepted.
    let expired = server(ServerCert::Expired);
    let args = format!(
        "host=localhost port={} user={} password={} ssl-mode=PREFERRED",
        expired.port(),
        expired.tls_user(),
        expired.tls_password()
    );
    let mut conn = connected(&args);
    assert!(conn.is_encrypted());
    assert!(!cipher(&mut conn).is_empty());
}

/// The default is plain, as it was before TLS existed in this driver.
#[test]
fn the_default_is_plain() {
    let s = server(ServerCert::Valid);
    let mut conn = connected(&s.args());
    assert!(!conn.is_encrypted());
    assert_eq!(cipher(&mut conn), "");
}

/// MariaDB answers a plain login that the account (`REQUIRE SSL`) or the server
/// (`require_secure_transport`) requires TLS for with "Access denied", like a wrong password;
/// the driver says what the connection lacked.
#[test]
fn a_plain_login_where_tls_is_required_says_so() {
    let s = server(ServerCert::Valid);
    let require_ssl = format!(
        "host=127.0.0.1 port={} user={} password={} dbname=pool_test",
        s.port(),
        s.tls_user(),
        s.tls_password()
    );
    let only = tls_only_server();
    for (args, password) in [
        (require_ssl.clone(), s.tls_password()),
        (format!("{require_ssl} ssl-mode=DISABLED"), s.tls_password()),
        (only.args(), only.password()),
    ] {
        let error = refused(&args);
        assert_eq!(error.kind(), DriverErrorKind::Connect, "{error}");
        assert_eq!(error.code(), Some("1045"), "{error}");
        assert!(
            error.message().contains("may require TLS"),
            "{}: {error}",
            shown(&args)
        );
        assert!(
            error.message().contains("ssl-mode=VERIFY_IDENTITY"),
            "{error}"
        );
        assert_no_secrets(&error, &[password]);
        println!("{error}");
    }
    // Over TLS both work.
    connected(&s.tls_args("VERIFY_IDENTITY"));
    let mut conn = connected(&format!("{} ssl-mode=REQUIRED", only.args()));
    assert!(!cipher(&mut conn).is_empty());
}

#[test]
fn client_certificate_auth() {
    let s = server(ServerCert::Valid);
    let mut conn = connected(&s.x509_args());
    assert!(!cipher(&mut conn).is_empty());
    assert_eq!(
        conn.query("SELECT CURRENT_USER()", &[])
            .expect("select")
            .scalar(),
        Some(&Value::Text("pool_x509@%".into()))
    );
    let client = pki().client(s.x509_user()).expect("client cert");
    // Without the certificate: access denied, and the driver says a certificate may be needed.
    let without = s
        .x509_args()
        .replace(&format!(" ssl-cert={}", client.cert().display()), "")
        .replace(&format!(" ssl-key={}", client.key().display()), "");
    assert!(!without.contains("ssl-cert"), "{}", shown(&without));
    let error = refused(&without);
    assert_eq!(
        (error.kind(), error.code()),
        (DriverErrorKind::Connect, Some("1045")),
        "{error}"
    );
    assert!(error.message().contains("client certificate"), "{error}");
    assert_no_secrets(&error, &[s.x509_password()]);

    // A certificate from a CA the server does not trust.
    let foreign = pki().untrusted_client(s.x509_user()).expect("untrusted");
    let args = with(
        &with(&s.x509_args(), "ssl-cert", &quoted(foreign.cert())),
        "ssl-key",
        &quoted(foreign.key()),
    );
    let error = refused(&args);
    assert_eq!(error.kind(), DriverErrorKind::Connect, "{error}");
    println!("untrusted client certificate: {error}");
    assert_no_secrets(&error, &[s.x509_password()]);

    // A certificate with another certificate's key.
    let other = pki().client("someone_else").expect("other client");
    let error = refused(&with(&s.x509_args(), "ssl-key", &quoted(other.key())));
    assert_eq!(
        (error.kind(), error.code()),
        (DriverErrorKind::Connect, Some("TLS_KEY_MISMATCH")),
        "{error}"
    );
    assert_no_secrets(&error, &[s.x509_password()]);

    // An encrypted key: named before connecting; the passphrase is nowhere (there is no
    // argument for it, as in the mysql client).
    let encrypted = pki()
        .encrypted_client_key(s.x509_user())
        .expect("encrypted key");
    let error = refused(&with(&s.x509_args(), "ssl-key", &quoted(&encrypted)));
    assert_eq!(error.kind(), DriverErrorKind::Connect, "{error}");
    assert!(error.message().contains("encrypted private key"), "{error}");
    assert_no_secrets(&error, &[s.x509_password()]);
}

/// The files are read on every connect: replacing the CA file under the same arguments (the
/// same pool key) changes what the next connect trusts.
#[test]
fn a_rotated_ca_file_is_read_by_the_next_connect() {
    let s = server(ServerCert::Valid);
    let dir = tempdir();
    let ca = dir.join("rotating-ca.pem");
    fs::copy(pki().other_ca_cert(), &ca).expect("copy");
    let driver = MysqlDriver;
    let args: ConnArgs = driver
        .parse_args(&with(
            &s.tls_args("VERIFY_IDENTITY"),
            "ssl-ca",
            &quoted(&ca),
        ))
        .expect("args");
    let error = driver.connect(&args, TIMEOUT).expect_err("the wrong CA");
    assert_eq!(error.code(), Some("TLS_UNTRUSTED_CERTIFICATE"), "{error}");
    fs::copy(pki().ca_cert(), &ca).expect("rotate");
    let mut conn = driver.connect(&args, TIMEOUT).expect("the rotated CA");
    assert!(!cipher(&mut conn).is_empty());
    fs::remove_file(&ca).expect("remove");
    let error = driver.connect(&args, TIMEOUT).expect_err("no CA file");
    assert_eq!(error.kind(), DriverErrorKind::Connect);
    assert!(
        error.message().contains("cannot read the ssl-ca file"),
        "{error}"
    );
    let _ = fs::remove_dir_all(&dir);
}

/// A misconfiguration: the client's private key given as the CA file.
#[test]
fn a_key_given_as_the_ca_is_refused_without_showing_it() {
    let s = server(ServerCert::Valid);
    let client = pki().client(s.x509_user()).expect("client cert");
    let error = refused(&with(
        &s.tls_args("VERIFY_IDENTITY"),
        "ssl-ca",
        &quoted(client.key()),
    ));
    assert_eq!(
        (error.kind(), error.code()),
        (DriverErrorKind::Connect, Some("TLS_FAILED")),
        "{error}"
    );
    assert!(
        error
            .message()
            .contains("the ssl-ca file holds no usable certificate"),
        "{error}"
    );
    assert_no_secrets(&error, &[s.tls_password()]);
    println!("{error}");
}

#[test]
fn tls_on_a_unix_socket_is_refused_as_an_argument() {
    let s = server(ServerCert::Valid);
    let driver = MysqlDriver;
    let error = driver
        .parse_args(&format!("{} ssl-mode=REQUIRED", s.socket_args()))
        .expect_err("no TLS on a socket");
    assert_eq!(error.kind(), DriverErrorKind::InvalidArgs, "{error}");
    // PREFERRED on the socket is plain, as in the mysql client.
    let mut conn = connected(&format!("{} ssl-mode=PREFERRED", s.socket_args()));
    assert!(!conn.is_encrypted());
    assert_eq!(cipher(&mut conn), "");
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pool-mysql-tls-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    fs::create_dir_all(&dir).expect("temp dir");
    dir
}
