//! TLS: what every driver that speaks TLS must do, against real TLS servers.
//!
//! A driver claims TLS by returning `Some` from [`Subject::tls`]: a [`TlsSubject`], the
//! arguments for each case below against private TLS servers from `pool-testservers`
//! ([`pool_testservers::TestPki`] makes their certificates). A driver whose `tls()` is `None`
//! (the default) has every TLS check skipped with a note on stderr; a driver that returns
//! `Some` runs all of them, and every required case must pass: there is no way to claim TLS
//! and skip a case.
//!
//! # The cases and why each matters
//!
//! | check | the driver must | because |
//! | --- | --- | --- |
//! | [`tls_verified_connect_works`] | connect with the CA and the right host name, run a statement, and detach/attach the TLS session across threads | the pool parks TLS sessions like any other |
//! | [`tls_wrong_ca_is_refused`] | refuse a server whose certificate another CA signed | otherwise anyone on the path can pose as the server |
//! | [`tls_wrong_host_is_refused`] | refuse a certificate issued for another host | a certificate for any host of a trusted CA would do |
//! | [`tls_expired_certificate_is_refused`] | refuse an expired certificate | |
//! | [`tls_without_verification_connects`] | connect encrypted without verifying (`sslmode=require`, `REQUIRED`, `insecure`) | what users ask for when they only want encryption |
//! | [`tls_plain_connect_to_tls_only_server_is_refused`] | report the server's refusal of a plain connect as a clear `Connect` error | the usual first mistake |
//! | [`tls_client_certificate_login_works`] | log in with a client certificate, and fail without it | mutual TLS |
//! | [`tls_prefer_falls_back_to_plain`] | with `prefer`, connect plain to a server without TLS and encrypted to one with it | libpq's and MySQL's default |
//! | [`tls_handshake_with_silent_peer_is_bounded`] | give up within `connect_timeout` on a peer that stops answering, closing its socket and leaving no thread behind | a hung handshake must not hang `pool::open`, nor leak a thread per attempt |
//! | [`tls_errors_and_debug_hold_no_secrets`] | never show a password, a key passphrase or key material in an error or `Debug` | errors are logged |
//! | [`tls_driver_specific_cases`] | pass the driver's own extra cases ([`TlsSubject::also_accepts`], [`TlsSubject::also_refuses`]) | channel binding, another CA's client certificate, ... |
//!
//! # The error contract for refusals
//!
//! A refused TLS connect is a [`DriverErrorKind::Connect`] error (never `Timeout`: the server
//! answered), returned well within the connect timeout, with a message a person can act on.
//! For the certificate failures the message must say so in words any TLS stack's can be
//! mapped to (checked case-insensitively):
//!
//! * wrong CA: `certificate`;
//! * wrong host: `certificate`, and `host` or `name`;
//! * expired: `certificate` and `expired`.
//!
//! (rustls's own texts satisfy the first and the last: "invalid peer certificate:
//! UnknownIssuer", "certificate expired: ..."; for the host, "certificate not valid for name
//! ..." does too.) A driver may add a code ([`pool_driver::DriverError::with_code`]) saying
//! which failure it was; the suite does not require one yet.
//!
//! # Writing `tls()` for a driver
//!
//! Start the servers once (in a `OnceLock` of the subject: the checks call `tls()` each) and
//! build the arguments from their accessors. PostgreSQL (the plain server of the subject is the
//! "without TLS" one):
//!
//! ```ignore
//! fn tls(&self) -> Option<TlsSubject> {
//!     let t = self.tls.get_or_init(PgTls::start); // PgServer::start_tls for each ServerCert
//!     let pki = &t.pki;
//!     let ca = pki.ca_cert().display();
//!     let (valid, wrong_host, expired) = (t.valid.port(), t.wrong_host.port(), t.expired.port());
//!     let login = "user=pool_scram password=scram-secret-pw dbname=pool_test";
//!     let key = pki.client("pool_cert").ok()?.key().display().to_string();
//!     Some(
//!         TlsSubject::new(
//!             pki.clone(),
//!             TlsCases {
//!                 verified: t.valid.tls_args("verify-full"),
//!                 wrong_ca: format!("host=localhost port={valid} {login} sslmode=verify-full sslrootcert={}", pki.other_ca_cert().display()),
//!                 wrong_host: t.wrong_host.tls_args("verify-full"),
//!                 expired: t.expired.tls_args("verify-full"),
//!                 unverified: format!("host=localhost port={wrong_host} {login} sslmode=require"),
//!                 plain_to_tls_only: format!("host=127.0.0.1 port={valid} {login} sslmode=disable"),
//!                 client_cert: t.valid.cert_args(),
//!                 client_cert_missing: format!("host=localhost port={valid} user=pool_cert dbname=pool_test sslmode=verify-full sslrootcert={ca}"),
//!                 key_as_ca: format!("host=localhost port={valid} {login} sslmode=verify-full sslrootcert={key}"),
//!             },
//!             move |port| format!("host=localhost port={port} {login} sslmode=verify-full sslrootcert={ca}"),
//!         )
//!         .preferring(
//!             format!("{} sslmode=prefer", self.server.scram_args()),   // the plain server
//!             Some(format!("host=localhost port={valid} {login} sslmode=prefer")),
//!         )
//!         .probed_by(Statement::new("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))
//!         .silent_preamble(Preamble::Answer(b"S".to_vec())) // 'S' to the SSLRequest
//!         .also_accepts("channel binding required", format!("{} channel_binding=require", t.valid.tls_args("verify-full")))
//!         .also_accepts("the IP address in the certificate", format!("host=127.0.0.1 port={valid} {login} sslmode=verify-full sslrootcert={ca}")),
//!     )
//! }
//! ```
//!
//! MariaDB: `verified` is [`MariaServer::tls_args`](pool_testservers::MariaServer::tls_args)`("VERIFY_IDENTITY")`
//! on the valid server, `unverified` `ssl-mode=REQUIRED` without `ssl-ca` against the
//! wrong-host server, `plain_to_tls_only` `pool_user` with `ssl-mode=DISABLED` against a
//! [`MariaServer::start_tls_only`](pool_testservers::MariaServer::start_tls_only) server (or
//! `pool_tls`, which is `REQUIRE SSL`, against any TLS server), `client_cert`
//! [`MariaServer::x509_args`](pool_testservers::MariaServer::x509_args), `client_cert_missing`
//! the same without `ssl-cert`/`ssl-key`, `preferring` `ssl-mode=PREFERRED` against the
//! subject's plain server and the valid TLS server, the probe `SELECT VARIABLE_VALUE FROM
//! information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher'`, and the silent
//! preamble [`Preamble::Greet`] with [`MariaServer::greeting`](pool_testservers::MariaServer::greeting)
//! of a TLS server (the client then asks for TLS and waits in its handshake).
//!
//! Redis: `verified` is [`RedisServer::tls_url`](pool_testservers::RedisServer::tls_url) of the
//! valid server, `unverified` the wrong-host server's with `insecure=true` and no `cacert`,
//! `plain_to_tls_only` `redis://` (plain) to the valid TLS server's port, `client_cert`
//! [`RedisServer::tls_client_url`](pool_testservers::RedisServer::tls_client_url) of a
//! [`ClientCerts::Required`](pool_testservers::ClientCerts::Required) server and
//! `client_cert_missing` its `tls_url`; no `preferring` (Redis has no such mode) and no probe
//! (a TLS-only port is encrypted by construction); the silent preamble is
//! [`Preamble::Nothing`] (the client speaks TLS first).
//!
//! The silent-peer check counts the test process's threads; it holds the suite's exclusive
//! lock meanwhile (see `isolation.rs`). Tests of your own in the same test binary do not take
//! that lock: keep them in another file, or the count may see their threads (the check
//! retries a few times before it fails on threads alone).

use std::io::Write;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use pool_driver::{Connection, Driver, DriverError, DriverErrorKind, ResetMode, Value};
use pool_testservers::{Preamble, SilentListener, TestPki};

use crate::isolation;
use crate::reuse::{value, TIMEOUT};
use crate::subject::{Statement, Subject};

/// The connect timeout the silent-peer check gives the driver.
pub const SILENT_TIMEOUT: Duration = Duration::from_secs(1);
/// How much longer than its timeout a connect may take on a silent peer (scheduling, closing
/// the socket).
pub const SILENT_GRACE: Duration = Duration::from_millis(500);
/// How soon after a connect returned its socket must be closed and its threads gone.
pub const CLEANUP_WITHIN: Duration = Duration::from_millis(500);
/// How long `connected` may take on a parked TLS session.
const CHECK: Duration = Duration::from_millis(300);

/// The required cases of a driver's TLS section: each an argument string the driver parses.
/// Every field is checked; see the module docs for what each must point at.
#[derive(Clone)]
pub struct TlsCases {
    /// Full verification (the CA given, the host name checked) against the server with the
    /// valid certificate ([`pool_testservers::ServerCert::Valid`]), with a password login:
    /// must connect, and a statement must run.
    pub verified: String,
    /// As `verified`, with [`TestPki::other_ca_cert`] as the CA: must be refused.
    pub wrong_ca: String,
    /// Full verification against the server whose certificate names another host
    /// ([`pool_testservers::ServerCert::WrongHost`]): must be refused.
    pub wrong_host: String,
    /// Full verification against the server with the expired certificate
    /// ([`pool_testservers::ServerCert::Expired`]): must be refused.
    pub expired: String,
    /// Encryption without verification (no CA given) against the wrong-host server: must
    /// connect (and, with a probe, be encrypted).
    pub unverified: String,
    /// A plain (TLS off) connect to a server that accepts TLS only: must be refused with a
    /// `Connect` error.
    pub plain_to_tls_only: String,
    /// A login by client certificate (certificate and key of [`TestPki::client`]): must
    /// connect.
    pub client_cert: String,
    /// The same login without the client certificate: must be refused.
    pub client_cert_missing: String,
    /// `verified` with the CA file replaced by a private key file (a misconfiguration): must
    /// be refused (`InvalidArgs` or `Connect`) without showing any of the key.
    pub key_as_ca: String,
}

/// A named extra case ([`TlsSubject::also_accepts`], [`TlsSubject::also_refuses`]).
#[derive(Clone)]
pub struct TlsCase {
    /// What it is, for failure messages.
    pub name: &'static str,
    /// The arguments.
    pub args: String,
}

/// A driver's TLS section: the [`TlsCases`], the PKI their servers use, and the optional
/// parts. Build it with [`TlsSubject::new`] and the builder methods; see the module docs for a
/// complete example per driver.
pub struct TlsSubject {
    /// The PKI the servers' certificates come from (its private keys and passphrase are
    /// secrets the checks look for in every error).
    pub pki: TestPki,
    /// The required cases.
    pub cases: TlsCases,
    /// Arguments for a verified TLS connect to `127.0.0.1:<port>` (host `localhost` or
    /// `127.0.0.1`, the CA given): the silent-peer check puts a [`SilentListener`] there.
    pub silent_peer: Box<dyn Fn(u16) -> String>,
    /// What the silent peer says before it goes silent (see [`TlsSubject::silent_preamble`]).
    pub preamble: Preamble,
    /// `prefer` against a server without TLS (must connect, plain), and optionally against a
    /// TLS server (must connect, encrypted). `None`: the driver has no such mode.
    pub prefer: Option<(String, Option<String>)>,
    /// A statement whose first value says whether the session is encrypted: true, a non-zero
    /// number, or non-empty text other than `false`/`off`/`no`/`f`/`0` when it is; NULL,
    /// false, zero or such text when it is not.
    pub probe: Option<Statement>,
    /// More values that must never appear in an error or `Debug` output (the passwords in the
    /// cases' arguments and the PKI's keys and passphrase are found on their own).
    pub secrets: Vec<String>,
    /// Extra cases that must connect (a statement must run).
    pub accepted: Vec<TlsCase>,
    /// Extra cases that must be refused (`Connect` or `InvalidArgs`).
    pub refused: Vec<TlsCase>,
}

impl std::fmt::Debug for TlsSubject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The arguments hold passwords: only the shape is shown.
        f.debug_struct("TlsSubject")
            .field("pki", &self.pki)
            .field("preamble", &self.preamble)
            .field("prefer", &self.prefer.is_some())
            .field("probe", &self.probe)
            .field("accepted", &self.accepted.len())
            .field("refused", &self.refused.len())
            .finish_non_exhaustive()
    }
}

impl TlsSubject {
    /// The required parts: the PKI, the cases, and the silent-peer arguments for a port.
    pub fn new(
        pki: TestPki,
        cases: TlsCases,
        silent_peer: impl Fn(u16) -> String + 'static,
    ) -> Self {
        TlsSubject {
            pki,
            cases,
            silent_peer: Box::new(silent_peer),
            preamble: Preamble::Nothing,
            prefer: None,
            probe: None,
            secrets: Vec::new(),
            accepted: Vec::new(),
            refused: Vec::new(),
        }
    }

    /// `prefer`-mode arguments: `without_tls` against a server that does not offer TLS (must
    /// connect plain), `with_tls` against one that does (must connect encrypted).
    pub fn preferring(mut self, without_tls: String, with_tls: Option<String>) -> Self {
        self.prefer = Some((without_tls, with_tls));
        self
    }

    /// The statement that tells whether the session is encrypted (see [`TlsSubject::probe`]).
    pub fn probed_by(mut self, probe: Statement) -> Self {
        self.probe = Some(probe);
        self
    }

    /// What the silent peer says first, so the silence starts inside the TLS handshake:
    /// PostgreSQL `Preamble::Answer(b"S".to_vec())` (yes to the `SSLRequest`), MySQL
    /// `Preamble::Greet(server.greeting()?)`, Redis nothing (the default). The check runs a
    /// wholly silent peer too.
    pub fn silent_preamble(mut self, preamble: Preamble) -> Self {
        self.preamble = preamble;
        self
    }

    /// More values that must never be shown.
    pub fn with_secrets(mut self, secrets: Vec<String>) -> Self {
        self.secrets = secrets;
        self
    }

    /// An extra case that must connect.
    pub fn also_accepts(mut self, name: &'static str, args: String) -> Self {
        self.accepted.push(TlsCase { name, args });
        self
    }

    /// An extra case that must be refused.
    pub fn also_refuses(mut self, name: &'static str, args: String) -> Self {
        self.refused.push(TlsCase { name, args });
        self
    }
}

/// Writes a note where the test harness does not hide it (it captures only the print
/// macros), so a skipped TLS check is visible in every run.
fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "note: {text}");
}

/// The subject's TLS section, or `None` after a note that `check` was skipped.
fn tls_of<S: Subject>(subject: &S, check: &str) -> Option<TlsSubject> {
    let tls = subject.tls();
    if tls.is_none() {
        note(&format!(
            "driver `{}` does not claim TLS (Subject::tls is None): {check} skipped",
            subject.driver().name()
        ));
    }
    tls
}

/// Parses and connects with `timeout`; panics if it took longer than `timeout` plus grace.
fn attempt<S: Subject>(
    subject: &S,
    what: &str,
    args: &str,
    timeout: Duration,
) -> Result<<S::Driver as Driver>::Conn, DriverError> {
    let parsed = subject.driver().parse_args(args)?;
    let started = Instant::now();
    let outcome = subject.driver().connect(&parsed, timeout);
    let took = started.elapsed();
    assert!(
        took < timeout + SILENT_GRACE,
        "{what}: connect took {took:?} with a timeout of {timeout:?}"
    );
    outcome
}

/// Connects; panics with the driver's error if it fails.
fn must_connect<S: Subject>(subject: &S, what: &str, args: &str) -> <S::Driver as Driver>::Conn {
    match attempt(subject, what, args, TIMEOUT) {
        Ok(conn) => conn,
        Err(e) => panic!("{what}: must connect, but: {e} ({:?})", e.kind()),
    }
}

/// Connects, which must fail with one of `kinds`, a message, and well within the timeout.
fn must_refuse<S: Subject>(
    subject: &S,
    what: &str,
    args: &str,
    kinds: &[DriverErrorKind],
) -> DriverError {
    let started = Instant::now();
    let error = match attempt(subject, what, args, TIMEOUT) {
        Ok(_) => panic!("{what}: connected, but must be refused"),
        Err(error) => error,
    };
    assert!(
        kinds.contains(&error.kind()),
        "{what}: a {kinds:?} error, not {:?}: {error}",
        error.kind()
    );
    assert!(
        started.elapsed() < TIMEOUT,
        "{what}: the refusal took {:?}: a server that answers is no timeout",
        started.elapsed()
    );
    assert!(
        !error.message().trim().is_empty(),
        "{what}: the error says nothing"
    );
    error
}

/// Asserts `error`'s message holds every word of `all` and one of `any` (case-insensitive).
fn assert_says(what: &str, error: &DriverError, all: &[&str], any: &[&str]) {
    let message = error.message().to_lowercase();
    for word in all {
        assert!(
            message.contains(word),
            "{what}: the message must say `{word}`: {error}"
        );
    }
    assert!(
        any.is_empty() || any.iter().any(|w| message.contains(w)),
        "{what}: the message must say one of {any:?}: {error}"
    );
}

/// Runs the subject's trivial statement; panics with `what` if it fails.
fn runs_statement<S: Subject>(subject: &S, what: &str, conn: &mut <S::Driver as Driver>::Conn) {
    let trivial = subject.trivial();
    if let Err(e) = conn.query(&trivial.text, &trivial.params) {
        panic!("{what}: {:?} failed over TLS: {e}", trivial.text);
    }
}

/// What the probe's value says (see [`TlsSubject::probe`]).
pub fn says_encrypted(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::Text(_) | Value::Bytes(_) => {
            let text = value.as_str().unwrap_or("?").trim().to_ascii_lowercase();
            !matches!(text.as_str(), "" | "f" | "false" | "off" | "no" | "0")
        }
    }
}

/// Asserts the session is (or is not) encrypted when the subject has a probe; notes once when
/// it has none.
fn assert_encryption<S: Subject>(
    tls: &TlsSubject,
    what: &str,
    conn: &mut <S::Driver as Driver>::Conn,
    encrypted: bool,
) {
    match &tls.probe {
        Some(probe) => {
            let seen = value(conn, probe);
            assert_eq!(
                says_encrypted(&seen),
                encrypted,
                "{what}: the session must {}be encrypted (the probe says {seen:?})",
                if encrypted { "" } else { "not " }
            );
        }
        None => note(&format!(
            "{what}: no TLS probe (TlsSubject::probed_by), encryption not confirmed"
        )),
    }
}

/// Full verification against the right server connects; a statement runs; the session is
/// encrypted; it detaches (full reset over TLS), is alive when parked, and attaches on another
/// thread as the same session.
pub fn tls_verified_connect_works<S: Subject>(subject: &S) {
    let Some(tls) = tls_of(subject, "tls_verified_connect_works") else {
        return;
    };
    let what = "verified connect";
    let driver = subject.driver();
    let mut conn = must_connect(subject, what, &tls.cases.verified);
    runs_statement(subject, what, &mut conn);
    assert_encryption::<S>(&tls, what, &mut conn, true);
    let id = subject.session_id(&mut conn);
    let mut handle = driver
        .detach(conn, ResetMode::Full)
        .unwrap_or_else(|e| panic!("{what}: the full reset over TLS failed: {e}"));
    assert!(
        driver.connected(&mut handle, CHECK),
        "{what}: a parked TLS session is alive"
    );
    let (moved, handle) = thread::scope(|scope| {
        scope
            .spawn(|| {
                let mut conn = driver
                    .attach(handle)
                    .unwrap_or_else(|e| panic!("{what}: attach on another thread: {e}"));
                runs_statement(subject, what, &mut conn);
                let id = subject.session_id(&mut conn);
                let handle = driver
                    .detach(conn, ResetMode::Full)
                    .unwrap_or_else(|e| panic!("{what}: detach again: {e}"));
                (id, handle)
            })
            .join()
            .unwrap_or_else(|_| panic!("{what}: the other thread panicked"))
    });
    assert_eq!(
        moved, id,
        "{what}: the same TLS session on the other thread"
    );
    let mut conn = driver
        .attach(handle)
        .unwrap_or_else(|e| panic!("{what}: attach back: {e}"));
    runs_statement(subject, what, &mut conn);
}

/// A certificate signed by a CA the client was not given is refused.
pub fn tls_wrong_ca_is_refused<S: Subject>(subject: &S) {
    let Some(tls) = tls_of(subject, "tls_wrong_ca_is_refused") else {
        return;
    };
    let what = "the wrong CA";
    let error = must_refuse(
        subject,
        what,
        &tls.cases.wrong_ca,
        &[DriverErrorKind::Connect],
    );
    assert_says(what, &error, &["certificate"], &[]);
}

/// A certificate issued for another host name is refused.
pub fn tls_wrong_host_is_refused<S: Subject>(subject: &S) {
    let Some(tls) = tls_of(subject, "tls_wrong_host_is_refused") else {
        return;
    };
    let what = "a certificate for another host";
    let error = must_refuse(
        subject,
        what,
        &tls.cases.wrong_host,
        &[DriverErrorKind::Connect],
    );
    assert_says(what, &error, &["certificate"], &["host", "name"]);
}

/// An expired certificate is refused.
pub fn tls_expired_certificate_is_refused<S: Subject>(subject: &S) {
    let Some(tls) = tls_of(subject, "tls_expired_certificate_is_refused") else {
        return;
    };
    let what = "an expired certificate";
    let error = must_refuse(
        subject,
        what,
        &tls.cases.expired,
        &[DriverErrorKind::Connect],
    );
    assert_says(what, &error, &["certificate", "expired"], &[]);
}

/// Encryption without verification connects to a server whose certificate would fail
/// verification, and the session is encrypted.
pub fn tls_without_verification_connects<S: Subject>(subject: &S) {
    let Some(tls) = tls_of(subject, "tls_without_verification_connects") else {
        return;
    };
    let what = "TLS without verification";
    let mut conn = must_connect(subject, what, &tls.cases.unverified);
    runs_statement(subject, what, &mut conn);
    assert_encryption::<S>(&tls, what, &mut conn, true);
}

/// A plain connect to a server that accepts only TLS is a clear `Connect` error.
pub fn tls_plain_connect_to_tls_only_server_is_refused<S: Subject>(subject: &S) {
    let Some(tls) = tls_of(subject, "tls_plain_connect_to_tls_only_server_is_refused") else {
        return;
    };
    must_refuse(
        subject,
        "a plain connect to a TLS-only server",
        &tls.cases.plain_to_tls_only,
        &[DriverErrorKind::Connect],
    );
}

/// A login by client certificate works, and fails without the certificate.
pub fn tls_client_certificate_login_works<S: Subject>(subject: &S) {
    let Some(tls) = tls_of(subject, "tls_client_certificate_login_works") else {
        return;
    };
    let what = "a client-certificate login";
    let mut conn = must_connect(subject, what, &tls.cases.client_cert);
    runs_statement(subject, what, &mut conn);
    assert_encryption::<S>(&tls, what, &mut conn, true);
    must_refuse(
        subject,
        "the client-certificate login without its certificate",
        &tls.cases.client_cert_missing,
        &[DriverErrorKind::Connect],
    );
}

/// `prefer` connects plain to a server without TLS, and encrypted to one with it.
pub fn tls_prefer_falls_back_to_plain<S: Subject>(subject: &S) {
    let Some(tls) = tls_of(subject, "tls_prefer_falls_back_to_plain") else {
        return;
    };
    let Some((without_tls, with_tls)) = &tls.prefer else {
        note(&format!(
            "driver `{}` has no `prefer` mode (TlsSubject::preferring not set): \
             tls_prefer_falls_back_to_plain skipped",
            subject.driver().name()
        ));
        return;
    };
    let what = "prefer against a server without TLS";
    let mut conn = must_connect(subject, what, without_tls);
    runs_statement(subject, what, &mut conn);
    assert_encryption::<S>(&tls, what, &mut conn, false);
    if let Some(with_tls) = with_tls {
        let what = "prefer against a TLS server";
        let mut conn = must_connect(subject, what, with_tls);
        runs_statement(subject, what, &mut conn);
        assert_encryption::<S>(&tls, what, &mut conn, true);
    }
}

/// The number of threads of this process.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| tasks.count())
        .unwrap_or_else(|e| panic!("reading /proc/self/task: {e}"))
}

/// Waits (up to 2 s) until the thread count held still for 100 ms, and returns it: threads
/// of checks that just finished are gone, and the harness started the next test's thread.
fn settled_thread_count() -> usize {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut last = thread_count();
    let mut still_since = Instant::now();
    while Instant::now() < deadline && still_since.elapsed() < Duration::from_millis(100) {
        thread::sleep(Duration::from_millis(10));
        let now = thread_count();
        if now != last {
            last = now;
            still_since = Instant::now();
        }
    }
    last
}

/// One connect against a fresh silent listener. Panics on what is deterministic (not
/// bounded, not refused, socket left open); returns `Err` when only the thread count did not
/// come back (the one measurement other tests of the process can disturb).
fn silent_attempt<S: Subject + 'static>(
    subject: &'static S,
    tls: &TlsSubject,
    what: &str,
    preamble: &Preamble,
) -> Result<(), String> {
    let listener = SilentListener::start_with(preamble.clone())
        .unwrap_or_else(|e| panic!("starting a silent listener: {e}"));
    let args = (tls.silent_peer)(listener.port());
    let parsed = subject
        .driver()
        .parse_args(&args)
        .unwrap_or_else(|e| panic!("{what}: the silent-peer arguments do not parse: {e}"));
    let baseline = settled_thread_count();
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    let connecting = thread::Builder::new()
        .name("conformance-silent-connect".into())
        .spawn(move || {
            let outcome = subject.driver().connect(&parsed, SILENT_TIMEOUT);
            let _ = tx.send((outcome.err(), started.elapsed()));
        })
        .unwrap_or_else(|e| panic!("spawning the connecting thread: {e}"));
    // Never wait forever: a driver that hangs fails here, and its thread is left behind.
    let hard_limit = SILENT_TIMEOUT + SILENT_GRACE + Duration::from_secs(5);
    let (error, took) = match rx.recv_timeout(hard_limit) {
        Ok(outcome) => outcome,
        Err(_) => panic!(
            "{what}: connect with a {SILENT_TIMEOUT:?} timeout had not returned after \
             {hard_limit:?}"
        ),
    };
    let _ = connecting.join();
    let Some(error) = error else {
        panic!("{what}: connected to a peer that never answered")
    };
    assert!(
        took <= SILENT_TIMEOUT + SILENT_GRACE,
        "{what}: connect took {took:?} with a timeout of {SILENT_TIMEOUT:?}"
    );
    assert!(
        matches!(
            error.kind(),
            DriverErrorKind::Timeout | DriverErrorKind::Connect
        ),
        "{what}: a Timeout or Connect error, not {:?}: {error}",
        error.kind()
    );
    assert!(
        listener.accepted() >= 1,
        "{what}: the driver never reached the silent peer (port {}): the check proves nothing",
        listener.port()
    );
    assert!(
        listener.wait_all_closed(CLEANUP_WITHIN),
        "{what}: {} connection(s) to the silent peer still open {CLEANUP_WITHIN:?} after \
         connect returned: something still holds the socket (a thread blocked in the \
         handshake?)",
        listener.open_connections()
    );
    let deadline = Instant::now() + CLEANUP_WITHIN;
    loop {
        let now = thread_count();
        if now <= baseline {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{what}: {now} threads {CLEANUP_WITHIN:?} after connect returned, {baseline} \
                 before: the connect left a thread behind"
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A TLS connect to a peer that accepts and then never answers returns within its
/// `connect_timeout` (plus [`SILENT_GRACE`]) with a `Timeout` or `Connect` error; within
/// [`CLEANUP_WITHIN`] after that its socket is closed and the process has no more threads
/// than before. Run twice: against a wholly silent peer, and against one that answers the
/// protocol's preamble first ([`TlsSubject::silent_preamble`]), so the silence falls inside
/// the TLS handshake itself.
///
/// Takes `&'static S`: a driver that hangs must not hang the test, so the connect runs on a
/// thread of its own that the check can leave behind.
pub fn tls_handshake_with_silent_peer_is_bounded<S: Subject + 'static>(subject: &'static S) {
    let Some(tls) = tls_of(subject, "tls_handshake_with_silent_peer_is_bounded") else {
        return;
    };
    // Threads are counted: no other check of this process runs meanwhile.
    let _alone = isolation::exclusive();
    // Whatever the driver starts once per process (a runtime, a resolver) starts now, not
    // during the count.
    drop(must_connect(
        subject,
        "verified connect (before counting threads)",
        &tls.cases.verified,
    ));
    let mut peers = vec![("a silent peer", Preamble::Nothing)];
    if tls.preamble != Preamble::Nothing {
        peers.push((
            "a peer that goes silent in the TLS handshake",
            tls.preamble.clone(),
        ));
    }
    for (what, preamble) in peers {
        let mut failures = Vec::new();
        while failures.len() < 3 {
            match silent_attempt(subject, &tls, what, &preamble) {
                Ok(()) => break,
                Err(failure) => failures.push(failure),
            }
        }
        assert!(failures.len() < 3, "{}", failures.join("\n"));
    }
}

/// Pieces of `text` that look like base64 and are at least this long are compared with the
/// private keys.
const KEY_PIECE: usize = 24;

/// Everything that must never be shown: explicit secrets, the secret values of every case's
/// arguments, the key passphrase, and the base64 bodies of every private key.
fn secrets<S: Subject>(
    subject: &S,
    tls: &TlsSubject,
    all_args: &[String],
) -> (Vec<String>, Vec<String>) {
    let mut words: Vec<String> = tls.secrets.clone();
    words.push(tls.pki.key_passphrase().to_string());
    for args in all_args {
        if let Ok(parsed) = subject.driver().parse_args(args) {
            words.extend(parsed.secrets().map(str::to_string));
        }
    }
    // Very short values would match by chance.
    words.retain(|w| w.len() >= 6);
    words.sort();
    words.dedup();
    let keys = tls
        .pki
        .private_keys()
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|pem| {
            pem.lines()
                .filter(|line| !line.starts_with("-----"))
                .collect::<String>()
        })
        .collect();
    (words, keys)
}

/// Panics if `shown` holds a secret word or a piece of a key.
fn assert_no_secret(what: &str, shown: &str, words: &[String], keys: &[String]) {
    for word in words {
        assert!(
            !shown.contains(word.as_str()),
            "{what}: shows a secret (a password or passphrase): {shown}"
        );
    }
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    for run in shown
        .split(|c: char| !is_b64(c))
        .filter(|r| r.len() >= KEY_PIECE)
    {
        for start in 0..=run.len() - KEY_PIECE {
            let piece = &run[start..start + KEY_PIECE];
            assert!(
                !keys.iter().any(|key| key.contains(piece)),
                "{what}: shows a piece of a private key: {shown}"
            );
        }
    }
}

/// No password, key passphrase or piece of a private key appears in any refused case's error
/// (`Display` and `Debug`) nor in the parsed arguments of any case (`Debug` and `Display`);
/// the CA-is-a-private-key misconfiguration is refused without quoting the key.
pub fn tls_errors_and_debug_hold_no_secrets<S: Subject>(subject: &S) {
    let Some(tls) = tls_of(subject, "tls_errors_and_debug_hold_no_secrets") else {
        return;
    };
    let c = &tls.cases;
    let refusing: Vec<(&str, &String)> = [
        ("the wrong CA", &c.wrong_ca),
        ("a certificate for another host", &c.wrong_host),
        ("an expired certificate", &c.expired),
        ("a plain connect to a TLS-only server", &c.plain_to_tls_only),
        (
            "a client-certificate login without it",
            &c.client_cert_missing,
        ),
        ("a private key as the CA", &c.key_as_ca),
    ]
    .into_iter()
    .chain(tls.refused.iter().map(|case| (case.name, &case.args)))
    .collect();
    let mut all_args: Vec<String> = [&c.verified, &c.unverified, &c.client_cert]
        .into_iter()
        .chain(refusing.iter().map(|(_, args)| *args))
        .chain(tls.accepted.iter().map(|case| &case.args))
        .cloned()
        .collect();
    all_args.push((tls.silent_peer)(1));
    let (words, keys) = secrets(subject, &tls, &all_args);
    for args in &all_args {
        match subject.driver().parse_args(args) {
            Ok(parsed) => assert_no_secret(
                "parsed arguments",
                &format!("{parsed:?} {parsed}"),
                &words,
                &keys,
            ),
            Err(e) => assert_no_secret("a parse error", &format!("{e} {e:?}"), &words, &keys),
        }
    }
    for (what, args) in refusing {
        let error = match attempt(subject, what, args, TIMEOUT) {
            Ok(_) => panic!("{what}: connected, but must be refused"),
            Err(error) => error,
        };
        if what == "a private key as the CA" {
            assert!(
                matches!(
                    error.kind(),
                    DriverErrorKind::InvalidArgs | DriverErrorKind::Connect
                ),
                "{what}: InvalidArgs or Connect, not {:?}: {error}",
                error.kind()
            );
        }
        assert_no_secret(what, &format!("{error} {error:?}"), &words, &keys);
    }
}

/// The driver's own extra cases: [`TlsSubject::also_accepts`] connect and run a statement,
/// [`TlsSubject::also_refuses`] are refused (`Connect` or `InvalidArgs`).
pub fn tls_driver_specific_cases<S: Subject>(subject: &S) {
    let Some(tls) = tls_of(subject, "tls_driver_specific_cases") else {
        return;
    };
    if tls.accepted.is_empty() && tls.refused.is_empty() {
        note(&format!(
            "driver `{}` has no extra TLS cases (TlsSubject::also_accepts / also_refuses)",
            subject.driver().name()
        ));
    }
    for case in &tls.accepted {
        let mut conn = must_connect(subject, case.name, &case.args);
        runs_statement(subject, case.name, &mut conn);
    }
    for case in &tls.refused {
        must_refuse(
            subject,
            case.name,
            &case.args,
            &[DriverErrorKind::Connect, DriverErrorKind::InvalidArgs],
        );
    }
}
