//! The TLS checks themselves, checked before any real driver speaks TLS: a tiny RESP client on
//! rustls (the same stack the drivers use), wrapped as a `Driver`, runs them against private
//! TLS Redis servers. Done right, it passes every check; with verification off, with a thread
//! left blocked on a silent peer, or with key material in an error, the matching check fails.

use std::any::Any;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use pool_conformance::{
    isolation, says_encrypted, StateProbe, Statement, Subject, TestPki, TlsCases, TlsSubject,
};
use pool_driver::{
    ConnArgs, Connection, Driver, DriverError, DriverErrorKind, ResetMode, Rows, Value,
};
use pool_testservers::{ClientCerts, RedisServer, ServerCert};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, StreamOwned};

// ---------------------------------------------------------------------------------------------
// A tiny RESP driver on rustls

/// How the fake driver misbehaves, for the negative tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flaw {
    None,
    /// Never verifies the server's certificate.
    NoVerification,
    /// Runs the handshake on a helper thread without a read timeout and gives up waiting for
    /// it at the deadline: the thread stays blocked on the socket.
    LeaksHandshakeThread,
    /// Puts the CA file's contents into the error when it holds no certificate.
    EchoesFiles,
    /// Starts a helper thread on every connect that outlives it (without the socket).
    LeaksIdleThread,
}

struct FakeDriver {
    flaw: Flaw,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

struct FakeConn {
    stream: Stream,
    broken: bool,
}

fn connect_error(message: String) -> DriverError {
    DriverError::new(DriverErrorKind::Connect, message)
}

fn invalid(message: String) -> DriverError {
    DriverError::new(DriverErrorKind::InvalidArgs, message)
}

/// Maps an I/O error of the connect to a driver error, looking for rustls's reason inside.
fn io_error(e: &io::Error, target: &str) -> DriverError {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        return DriverError::new(
            DriverErrorKind::Timeout,
            format!("connecting to {target}: timed out"),
        );
    }
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(cause)) => connect_error(format!(
            "TLS to {target}: the server's certificate was refused: {cause}"
        )),
        Some(other) => connect_error(format!("TLS to {target}: {other}")),
        None => connect_error(format!("connecting to {target}: {e}")),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl FakeDriver {
    fn tls_config(&self, args: &ConnArgs) -> Result<ClientConfig, DriverError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS: {e}")))?;
        let insecure = args.get("insecure") == Some("on") || self.flaw == Flaw::NoVerification;
        let builder = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
        } else {
            let ca = args
                .get("cacert")
                .ok_or_else(|| invalid("TLS: `cacert` is needed to verify".into()))?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
                .map_err(|_| invalid(format!("TLS: `cacert` {ca} cannot be read")))?
                .filter_map(Result::ok)
                .collect();
            if certs.is_empty() {
                let mut message = format!("TLS: `cacert` {ca} holds no certificate");
                if self.flaw == Flaw::EchoesFiles {
                    message.push_str(&format!(
                        ": {}",
                        std::fs::read_to_string(ca).unwrap_or_default()
                    ));
                }
                return Err(invalid(message));
            }
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| invalid(format!("TLS: `cacert` {ca}: {e}")))?;
            }
            builder.with_root_certificates(roots)
        };
        match (args.get("cert"), args.get("key")) {
            (Some(cert), Some(key)) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                    .map_err(|_| invalid(format!("TLS: `cert` {cert} cannot be read")))?
                    .filter_map(Result::ok)
                    .collect();
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|_| invalid(format!("TLS: `key` {key} holds no usable key")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| invalid(format!("TLS: the client certificate: {e}")))
            }
            _ => Ok(builder.with_no_client_auth()),
        }
    }

    fn handshake(
        &self,
        mut tls: ClientConnection,
        mut tcp: TcpStream,
        target: &str,
        deadline: Instant,
    ) -> Result<StreamOwned<ClientConnection, TcpStream>, DriverError> {
        if self.flaw == Flaw::LeaksHandshakeThread {
            let (tx, rx) = mpsc::channel();
            let _ = tcp.set_read_timeout(None);
            thread::spawn(move || {
                let outcome = tls.complete_io(&mut tcp).map(|_| ());
                let _ = tx.send(outcome.map(|()| StreamOwned::new(tls, tcp)));
            });
            return match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok(stream)) => Ok(stream),
                Ok(Err(e)) => Err(io_error(&e, target)),
                Err(_) => Err(DriverError::new(
                    DriverErrorKind::Timeout,
                    format!("TLS to {target}: timed out"),
                )),
            };
        }
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp)
                .map_err(|e| io_error(&e, target))?;
        }
        Ok(StreamOwned::new(tls, tcp))
    }
}

impl Driver for FakeDriver {
    type Conn = FakeConn;
    type Handle = FakeConn;

    fn name(&self) -> &str {
        "fake-resp-over-rustls"
    }

    fn connect(&self, args: &ConnArgs, timeout: Duration) -> Result<FakeConn, DriverError> {
        let deadline = Instant::now() + timeout;
        if self.flaw == Flaw::LeaksIdleThread {
            thread::spawn(|| thread::sleep(Duration::from_secs(5)));
        }
        let host = args.get("host").unwrap_or("localhost");
        let port: u16 = args
            .get("port")
            .unwrap_or("6379")
            .parse()
            .map_err(|_| invalid("`port` is not a number".into()))?;
        let target = format!("{host}:{port}");
        let addr: SocketAddr = (host, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| connect_error(format!("{target}: no address")))?;
        let tls = match args.get("tls") {
            Some("on") => Some(self.tls_config(args)?),
            _ => None,
        };
        let tcp = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| connect_error(format!("connecting to {target}: {e}")))?;
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        tcp.set_read_timeout(Some(remaining))
            .and_then(|()| tcp.set_write_timeout(Some(remaining)))
            .map_err(|e| connect_error(format!("{target}: {e}")))?;
        let stream = match tls {
            None => Stream::Plain(tcp),
            Some(config) => {
                let name = ServerName::try_from(host.to_string())
                    .map_err(|_| invalid(format!("TLS: {host} is not a name")))?;
                let conn = ClientConnection::new(Arc::new(config), name)
                    .map_err(|e| connect_error(format!("TLS to {target}: {e}")))?;
                Stream::Tls(Box::new(self.handshake(conn, tcp, &target, deadline)?))
            }
        };
        let mut conn = FakeConn {
            stream,
            broken: false,
        };
        if let (Some(user), Some(password)) = (args.get("user"), args.get("password")) {
            match conn.command(&["AUTH", user, password]) {
                Ok(_) => {}
                Err(e) if e.kind() == DriverErrorKind::Query => {
                    return Err(connect_error(format!("{target}: {}", e.message())))
                }
                Err(e) => {
                    return Err(connect_error(format!(
                        "{target}: the server closed the connection ({})",
                        e.message()
                    )))
                }
            }
        }
        Ok(conn)
    }

    fn detach(&self, conn: FakeConn, _: ResetMode) -> Result<FakeConn, DriverError> {
        if conn.broken {
            return Err(DriverError::new(DriverErrorKind::Broken, "broken"));
        }
        Ok(conn)
    }

    fn attach(&self, handle: FakeConn) -> Result<FakeConn, DriverError> {
        Ok(handle)
    }

    fn connected(&self, handle: &mut FakeConn, timeout: Duration) -> bool {
        let _ = handle.stream.tcp().set_read_timeout(Some(timeout));
        handle.command(&["PING"]).is_ok()
    }
}

impl FakeConn {
    fn command(&mut self, words: &[&str]) -> Result<Value, DriverError> {
        let mut out = format!("*{}\r\n", words.len());
        for w in words {
            out.push_str(&format!("${}\r\n{w}\r\n", w.len()));
        }
        let broken = |e: io::Error| DriverError::new(DriverErrorKind::Broken, e.to_string());
        self.stream
            .write_all(out.as_bytes())
            .and_then(|()| self.stream.flush())
            .map_err(broken)
            .inspect_err(|_| self.broken = true)?;
        self.reply().inspect_err(|e| self.broken |= e.is_fatal())
    }

    fn line(&mut self) -> Result<String, DriverError> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            match self.stream.read(&mut byte) {
                Ok(0) => {
                    return Err(DriverError::new(
                        DriverErrorKind::Broken,
                        "the server closed the connection",
                    ))
                }
                Ok(_) => line.push(byte[0]),
                Err(e) => return Err(DriverError::new(DriverErrorKind::Broken, e.to_string())),
            }
        }
        line.truncate(line.len() - 2);
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    fn reply(&mut self) -> Result<Value, DriverError> {
        let line = self.line()?;
        let (kind, rest) = line.split_at(1.min(line.len()));
        match kind {
            "+" => Ok(Value::Text(rest.to_string())),
            "-" => Err(DriverError::new(DriverErrorKind::Query, rest.to_string())),
            ":" => Ok(Value::Int(rest.parse().unwrap_or_default())),
            "$" if rest == "-1" => Ok(Value::Null),
            "$" => {
                let text = self.line()?;
                Ok(Value::Text(text))
            }
            _ => Err(DriverError::new(
                DriverErrorKind::Broken,
                format!("unexpected reply {line:?}"),
            )),
        }
    }
}

impl Connection for FakeConn {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DriverError> {
        self.query(sql, params).map(|_| 0)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Rows, DriverError> {
        let params: Vec<String> = params
            .iter()
            .map(|v| v.as_str().map(str::to_string).unwrap_or_default())
            .collect();
        let words: Vec<&str> = sql
            .split_whitespace()
            .chain(params.iter().map(String::as_str))
            .collect();
        let value = self.command(&words)?;
        Ok(Rows::new(vec!["reply".into()], vec![vec![value]]))
    }

    fn is_broken(&self) -> bool {
        self.broken
    }

    fn native(&self) -> &dyn Any {
        &self.broken
    }

    fn native_mut(&mut self) -> &mut dyn Any {
        &mut self.broken
    }

    fn native_type_name(&self) -> &'static str {
        "bool"
    }
}

// ---------------------------------------------------------------------------------------------
// The subject: four TLS Redis servers

struct Servers {
    pki: TestPki,
    valid: RedisServer,
    wrong_host: RedisServer,
    expired: RedisServer,
    client_certs: RedisServer,
}

fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let pki = TestPki::generate().unwrap_or_else(|e| panic!("making the PKI: {e}"));
        let start = |cert, client_certs| {
            RedisServer::start_tls(&pki, cert, client_certs)
                .unwrap_or_else(|e| panic!("starting a TLS Redis: {e}"))
        };
        Servers {
            valid: start(ServerCert::Valid, ClientCerts::NotRequested),
            wrong_host: start(ServerCert::WrongHost, ClientCerts::NotRequested),
            expired: start(ServerCert::Expired, ClientCerts::NotRequested),
            client_certs: start(ServerCert::Valid, ClientCerts::Required),
            pki,
        }
    })
}

struct Fake {
    driver: FakeDriver,
}

fn login(server: &RedisServer) -> String {
    format!("user={} password={}", server.user(), server.password())
}

impl Subject for Fake {
    type Driver = FakeDriver;
    type Native = bool;

    fn driver(&self) -> &FakeDriver {
        &self.driver
    }

    fn args(&self, _: Option<u16>) -> String {
        unimplemented!("not used by the TLS checks")
    }

    fn port(&self) -> u16 {
        unimplemented!("not used by the TLS checks")
    }

    fn wrong_password_args(&self, _: &str) -> String {
        unimplemented!("not used by the TLS checks")
    }

    fn session_id(&self, conn: &mut FakeConn) -> Value {
        conn.command(&["CLIENT", "ID"]).expect("CLIENT ID")
    }

    fn kill_session(&self, _: &Value) {
        unimplemented!("not used by the TLS checks")
    }

    fn state_probes(&self) -> Vec<StateProbe> {
        unimplemented!("not used by the TLS checks")
    }

    fn transaction_probe(&self) -> StateProbe {
        unimplemented!("not used by the TLS checks")
    }

    fn restart(&self) {
        unimplemented!("not used by the TLS checks")
    }

    fn trivial(&self) -> Statement {
        Statement::new("PING")
    }

    fn tls(&self) -> Option<TlsSubject> {
        let s = servers();
        let ca = s.pki.ca_cert().display().to_string();
        let verified = |server: &RedisServer, ca: &str| {
            format!(
                "host=localhost port={} {} tls=on cacert={ca}",
                server.port(),
                login(server)
            )
        };
        let client = s.pki.client(s.client_certs.user()).ok()?;
        let silent_login = login(&s.valid);
        let silent_ca = ca.clone();
        Some(
            TlsSubject::new(
                s.pki.clone(),
                TlsCases {
                    verified: verified(&s.valid, &ca),
                    wrong_ca: verified(&s.valid, &s.pki.other_ca_cert().display().to_string()),
                    wrong_host: verified(&s.wrong_host, &ca),
                    expired: verified(&s.expired, &ca),
                    unverified: format!(
                        "host=localhost port={} {} tls=on insecure=on",
                        s.wrong_host.port(),
                        login(&s.wrong_host)
                    ),
                    plain_to_tls_only: format!(
                        "host=localhost port={} {}",
                        s.valid.port(),
                        login(&s.valid)
                    ),
                    client_cert: format!(
                        "{} cert={} key={}",
                        verified(&s.client_certs, &ca),
                        client.cert().display(),
                        client.key().display()
                    ),
                    client_cert_missing: verified(&s.client_certs, &ca),
                    key_as_ca: verified(&s.valid, &client.key().display().to_string()),
                },
                move |port| {
                    format!("host=localhost port={port} {silent_login} tls=on cacert={silent_ca}")
                },
            )
            .also_refuses(
                "a client certificate from another CA",
                format!(
                    "{} cert={} key={}",
                    verified(&s.client_certs, &ca),
                    s.pki.untrusted_client("pool_user").ok()?.cert().display(),
                    s.pki.untrusted_client("pool_user").ok()?.key().display()
                ),
            )
            .also_accepts(
                "the IP address in the certificate",
                format!(
                    "host=127.0.0.1 port={} {} tls=on cacert={ca}",
                    s.valid.port(),
                    login(&s.valid)
                ),
            ),
        )
    }
}

fn subject(flaw: Flaw) -> &'static Fake {
    static SUBJECTS: OnceLock<[Fake; 5]> = OnceLock::new();
    let all = SUBJECTS.get_or_init(|| {
        [
            Flaw::None,
            Flaw::NoVerification,
            Flaw::LeaksHandshakeThread,
            Flaw::EchoesFiles,
            Flaw::LeaksIdleThread,
        ]
        .map(|flaw| Fake {
            driver: FakeDriver { flaw },
        })
    });
    all.iter()
        .find(|s| s.driver.flaw == flaw)
        .expect("every flaw has a subject")
}

/// The failure message of `check`, which must fail.
fn failure(check: impl FnOnce()) -> String {
    match catch_unwind(AssertUnwindSafe(check)) {
        Ok(()) => panic!("the check passed, but must fail"),
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// A correct TLS driver passes every check

#[test]
fn a_correct_driver_passes_every_tls_check() {
    let _shared = isolation::shared();
    let s = subject(Flaw::None);
    pool_conformance::tls_verified_connect_works(s);
    pool_conformance::tls_wrong_ca_is_refused(s);
    pool_conformance::tls_wrong_host_is_refused(s);
    pool_conformance::tls_expired_certificate_is_refused(s);
    pool_conformance::tls_without_verification_connects(s);
    pool_conformance::tls_plain_connect_to_tls_only_server_is_refused(s);
    pool_conformance::tls_client_certificate_login_works(s);
    pool_conformance::tls_prefer_falls_back_to_plain(s);
    pool_conformance::tls_errors_and_debug_hold_no_secrets(s);
    pool_conformance::tls_driver_specific_cases(s);
}

#[test]
fn a_correct_driver_is_bounded_on_a_silent_peer() {
    let s = subject(Flaw::None);
    pool_conformance::tls_handshake_with_silent_peer_is_bounded(s);
}

// ---------------------------------------------------------------------------------------------
// Each flaw is caught by its check

#[test]
fn a_driver_that_does_not_verify_fails_the_refusal_checks() {
    let _shared = isolation::shared();
    let s = subject(Flaw::NoVerification);
    for check in [
        pool_conformance::tls_wrong_ca_is_refused::<Fake> as fn(&Fake),
        pool_conformance::tls_wrong_host_is_refused::<Fake>,
        pool_conformance::tls_expired_certificate_is_refused::<Fake>,
    ] {
        let message = failure(|| check(s));
        assert!(
            message.contains("connected, but must be refused"),
            "{message}"
        );
    }
}

#[test]
fn a_driver_that_leaks_a_handshake_thread_fails_the_silent_peer_check() {
    let s = subject(Flaw::LeaksHandshakeThread);
    let message = failure(|| pool_conformance::tls_handshake_with_silent_peer_is_bounded(s));
    assert!(message.contains("still open"), "{message}");
}

#[test]
fn a_driver_that_leaks_any_thread_fails_the_silent_peer_check() {
    let s = subject(Flaw::LeaksIdleThread);
    let message = failure(|| pool_conformance::tls_handshake_with_silent_peer_is_bounded(s));
    assert!(message.contains("left a thread behind"), "{message}");
}

#[test]
fn a_driver_that_echoes_a_key_fails_the_secrets_check() {
    let _shared = isolation::shared();
    let s = subject(Flaw::EchoesFiles);
    let message = failure(|| pool_conformance::tls_errors_and_debug_hold_no_secrets(s));
    assert!(message.contains("a piece of a private key"), "{message}");
}

#[test]
fn probe_values_read_as_encrypted_or_not() {
    for yes in [
        Value::Bool(true),
        Value::Int(1),
        Value::Text("TLS_AES_256_GCM_SHA384".into()),
        Value::Text("t".into()),
    ] {
        assert!(says_encrypted(&yes), "{yes:?}");
    }
    for no in [
        Value::Null,
        Value::Bool(false),
        Value::Int(0),
        Value::Text(String::new()),
        Value::Text("f".into()),
        Value::Text("OFF".into()),
    ] {
        assert!(!says_encrypted(&no), "{no:?}");
    }
}
