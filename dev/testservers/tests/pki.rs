//! The test PKI, checked with the TLS stack the drivers use (rustls on `ring`, webpki
//! verification) in memory, without a server: each certificate is accepted or refused for the
//! reason its name promises, so a driver test that sees a refusal knows why. Also: the file
//! permissions libpq and PostgreSQL insist on, and the silent listener's silence.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pool_testservers::{Preamble, ServerCert, SilentListener, TestPki};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore, ServerConfig};
use rustls::{ServerConnection, SupportedProtocolVersion};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

const VERSIONS: &[&SupportedProtocolVersion] = rustls::DEFAULT_VERSIONS;

fn pki() -> TestPki {
    TestPki::generate().unwrap_or_else(|e| panic!("making the test PKI: {e}"))
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .expect("open certificate")
        .collect::<Result<_, _>>()
        .expect("parse certificate")
}

fn key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).expect("parse key")
}

fn roots(ca: &Path) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs(ca) {
        roots.add(cert).expect("add root");
    }
    Arc::new(roots)
}

/// Which side refused the handshake (the errors are read through `Debug`, in failure
/// messages).
#[derive(Debug)]
#[allow(dead_code)]
enum Refused {
    Client(rustls::Error),
    Server(rustls::Error),
}

/// A full TLS handshake in memory: a client trusting `ca`, connecting to `name`, optionally
/// with a client certificate, against a server presenting `server` that, when
/// `verify_clients_with` is given, requires client certificates signed by that CA.
fn handshake(
    pki: &TestPki,
    server: ServerCert,
    ca: &Path,
    name: &str,
    client_cert: Option<(&Path, &Path)>,
    verify_clients_with: Option<&Path>,
) -> Result<(), Refused> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .expect("versions");
    let builder = match verify_clients_with {
        Some(client_ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(roots(client_ca), provider())
                .build()
                .expect("client verifier"),
        ),
        None => builder.with_no_client_auth(),
    };
    let server_config = builder
        .with_single_cert(
            certs(&pki.server_cert(server)),
            key(&pki.server_key(server)),
        )
        .expect("server config");
    let client_builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .expect("versions")
        .with_webpki_verifier(
            WebPkiServerVerifier::builder_with_provider(roots(ca), provider())
                .build()
                .expect("server verifier"),
        );
    let client_config = match client_cert {
        Some((cert, k)) => client_builder
            .with_client_auth_cert(certs(cert), key(k))
            .expect("client cert"),
        None => client_builder.with_no_client_auth(),
    };
    let name = ServerName::try_from(name.to_string()).expect("server name");
    let mut client = ClientConnection::new(Arc::new(client_config), name).expect("client");
    let mut server = ServerConnection::new(Arc::new(server_config)).expect("server");
    for _ in 0..20 {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).expect("client write");
        }
        server.read_tls(&mut &wire[..]).expect("server read");
        let server_state = server.process_new_packets();
        wire.clear();
        while server.wants_write() {
            server.write_tls(&mut wire).expect("server write");
        }
        client.read_tls(&mut &wire[..]).expect("client read");
        client.process_new_packets().map_err(Refused::Client)?;
        server_state.map_err(Refused::Server)?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    panic!("the handshake did not finish");
}

#[test]
fn valid_certificate_verifies_for_every_right_name() {
    let pki = pki();
    for name in ServerCert::Valid.names() {
        handshake(&pki, ServerCert::Valid, pki.ca_cert(), name, None, None)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
}

#[test]
fn wrong_ca_wrong_host_and_expired_are_refused_for_their_reason() {
    let pki = pki();
    let wrong_ca = handshake(
        &pki,
        ServerCert::Valid,
        pki.other_ca_cert(),
        "localhost",
        None,
        None,
    );
    assert!(
        matches!(
            wrong_ca,
            Err(Refused::Client(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            )))
        ),
        "{wrong_ca:?}"
    );

    let wrong_host = handshake(
        &pki,
        ServerCert::WrongHost,
        pki.ca_cert(),
        "localhost",
        None,
        None,
    );
    assert!(
        matches!(
            wrong_host,
            Err(Refused::Client(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )))
        ),
        "{wrong_host:?}"
    );
    // The same certificate is fine for the name it was issued for.
    handshake(
        &pki,
        ServerCert::WrongHost,
        pki.ca_cert(),
        "wrong.example",
        None,
        None,
    )
    .expect("wrong.example is the certificate's own name");

    let expired = handshake(
        &pki,
        ServerCert::Expired,
        pki.ca_cert(),
        "localhost",
        None,
        None,
    );
    assert!(
        matches!(
            expired,
            Err(Refused::Client(rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            )))
        ),
        "{expired:?}"
    );
    // What a driver's error message will say (the conformance suite's keyword contract).
    let shown = match expired {
        Err(Refused::Client(e)) => e.to_string(),
        other => panic!("{other:?}"),
    };
    assert!(shown.contains("certificate expired"), "{shown}");
}

/// The server refused: it says so itself, or (TLS 1.3, where the client may finish first) the
/// client got its alert.
fn refused_by_server(outcome: &Result<(), Refused>) -> bool {
    matches!(
        outcome,
        Err(Refused::Server(_) | Refused::Client(rustls::Error::AlertReceived(_)))
    )
}

#[test]
fn client_certificates_verify_against_the_ca_only() {
    let pki = pki();
    let client = pki.client("pool_cert").expect("client cert");
    handshake(
        &pki,
        ServerCert::Valid,
        pki.ca_cert(),
        "localhost",
        Some((client.cert(), client.key())),
        Some(pki.ca_cert()),
    )
    .expect("a client certificate signed by the CA");
    assert_eq!(pki.client("pool_cert").expect("again"), client, "made once");

    let untrusted = pki.untrusted_client("pool_cert").expect("untrusted");
    let refused = handshake(
        &pki,
        ServerCert::Valid,
        pki.ca_cert(),
        "localhost",
        Some((untrusted.cert(), untrusted.key())),
        Some(pki.ca_cert()),
    );
    assert!(refused_by_server(&refused), "{refused:?}");
    let missing = handshake(
        &pki,
        ServerCert::Valid,
        pki.ca_cert(),
        "localhost",
        None,
        Some(pki.ca_cert()),
    );
    assert!(refused_by_server(&missing), "{missing:?}");

    // CN = the user name (PostgreSQL `cert` auth compares it with the login).
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(client.cert())
        .output()
        .expect("openssl x509");
    let subject = String::from_utf8_lossy(&text.stdout);
    assert!(subject.contains("CN = pool_cert"), "{subject}");
}

#[test]
fn keys_are_private_and_listed() {
    let pki = pki();
    let client = pki.client("someone").expect("client");
    let encrypted = pki.encrypted_client_key("someone").expect("encrypted key");
    let keys = pki.private_keys();
    assert!(keys.contains(&client.key().to_path_buf()));
    assert!(keys.contains(&encrypted));
    assert!(keys.contains(&pki.server_key(ServerCert::Expired)));
    for key in &keys {
        let mode = std::fs::metadata(key).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", key.display());
    }
    let dir_mode = std::fs::metadata(pki.dir())
        .expect("dir")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    let enc = std::fs::read_to_string(&encrypted).expect("read");
    assert!(
        enc.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        "{enc}"
    );
    // The passphrase opens it, a wrong one does not.
    let open = |pass: &str| {
        std::process::Command::new("openssl")
            .args(["pkey", "-noout", "-in"])
            .arg(&encrypted)
            .args(["-passin", &format!("pass:{pass}")])
            .output()
            .expect("openssl pkey")
            .status
            .success()
    };
    assert!(open(pki.key_passphrase()));
    assert!(!open("wrong"));
    // The directory goes away with the last clone.
    let dir = pki.dir().to_path_buf();
    let clone = pki.clone();
    drop(pki);
    assert!(dir.exists());
    drop(clone);
    assert!(!dir.exists());
}

/// The silent-listener tests run one at a time: one of them counts the listener threads.
static SILENT_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SILENT_TESTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads what arrives within `wait`.
fn read_for(stream: &mut TcpStream, wait: Duration) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    got
}

#[test]
fn silent_listener_says_nothing_and_counts() {
    let _one = one_at_a_time();
    let silent = SilentListener::start().expect("listener");
    let mut a = TcpStream::connect(("127.0.0.1", silent.port())).expect("connect");
    a.write_all(b"hello, anyone?").expect("write");
    assert!(
        read_for(&mut a, Duration::from_millis(300)).is_empty(),
        "silent"
    );
    let _b = TcpStream::connect(("127.0.0.1", silent.port())).expect("connect");
    let deadline = Instant::now() + Duration::from_secs(2);
    while silent.open_connections() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!((silent.accepted(), silent.open_connections()), (2, 2));
    assert_eq!(silent.received(), 14);
    drop(a);
    assert!(
        !silent.wait_all_closed(Duration::from_millis(200)),
        "b is open"
    );
    assert_eq!(silent.open_connections(), 1);
    drop(_b);
    assert!(silent.wait_all_closed(Duration::from_secs(2)));
}

#[test]
fn silent_listener_preambles() {
    let _one = one_at_a_time();
    let answer = SilentListener::start_with(Preamble::Answer(b"S".to_vec())).expect("listener");
    let mut c = TcpStream::connect(("127.0.0.1", answer.port())).expect("connect");
    assert!(
        read_for(&mut c, Duration::from_millis(100)).is_empty(),
        "nothing before a request"
    );
    c.write_all(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f])
        .expect("SSLRequest");
    assert_eq!(read_for(&mut c, Duration::from_millis(300)), b"S");
    c.write_all(b"a ClientHello").expect("write");
    assert!(
        read_for(&mut c, Duration::from_millis(200)).is_empty(),
        "then silent"
    );

    let greet = SilentListener::start_with(Preamble::Greet(b"hello".to_vec())).expect("listener");
    let mut c = TcpStream::connect(("127.0.0.1", greet.port())).expect("connect");
    assert_eq!(read_for(&mut c, Duration::from_millis(300)), b"hello");
    c.write_all(b"a ClientHello").expect("write");
    assert!(
        read_for(&mut c, Duration::from_millis(200)).is_empty(),
        "then silent"
    );
}

#[test]
fn silent_listener_is_one_thread_and_ends_with_its_last_owner() {
    let _one = one_at_a_time();
    let named = || {
        std::fs::read_dir("/proc/self/task")
            .expect("tasks")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|n| n.trim() == "test-silent-pee")
            .count()
    };
    let before = named();
    let silent = SilentListener::start().expect("listener");
    let conns: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(("127.0.0.1", silent.port())).expect("connect"))
        .collect();
    assert!(
        named() <= before + 1,
        "one thread for any number of clients"
    );
    drop(silent);
    drop(conns);
    assert!(named() <= before);
}
