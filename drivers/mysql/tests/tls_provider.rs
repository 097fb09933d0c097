//! An application's own rustls provider is kept and used: the driver installs `ring`'s as the
//! process default only when none is set (see `ensure_provider` in `src/tls.rs`). In a test
//! binary of its own: the process default can be set once.

use std::time::Duration;

use pool_driver::{Connection, Driver, Value};
use pool_mysql::MysqlDriver;
use pool_testservers::{MariaServer, ServerCert, TestPki};
use rustls::crypto::{ring, CryptoProvider};

#[test]
fn an_applications_provider_is_kept_and_used() {
    // The application's choice: ring limited to one cipher suite the server would not pick on
    // its own (it prefers AES-256-GCM), so the session's cipher shows whose provider ran.
    let only_chacha = CryptoProvider {
        cipher_suites: vec![ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256],
        ..ring::default_provider()
    };
    only_chacha
        .install_default()
        .expect("no provider installed yet");

    let pki = TestPki::generate().expect("pki");
    let server = MariaServer::start_tls(&pki, ServerCert::Valid).expect("TLS server");
    let driver = MysqlDriver;
    let args = driver
        .parse_args(&server.tls_args("VERIFY_IDENTITY"))
        .expect("args");
    let mut conn = driver
        .connect(&args, Duration::from_secs(5))
        .expect("connect");
    let rows = conn
        .query("SHOW SESSION STATUS LIKE 'Ssl_cipher'", &[])
        .expect("Ssl_cipher");
    assert_eq!(
        rows.get(0, 1),
        Some(&Value::Text("TLS_CHACHA20_POLY1305_SHA256".into()))
    );
    let installed = CryptoProvider::get_default().expect("a default");
    assert_eq!(installed.cipher_suites.len(), 1, "still the application's");
}
