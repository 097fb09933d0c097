//! TLS: the arguments (`rediss://`, `tls`, `cacert`, `cert`, `key`, `insecure`), the files they
//! name, the crypto provider, and what a failed handshake was about.
//!
//! # Why the files are read on every connect
//!
//! The arguments hold paths, never certificate bytes: the registry key stays short and free of
//! key material, and a certificate rotated on disk (a renewed client certificate, a new CA
//! bundle) is used by the very next connect, with no restart and no new pool. Reading three
//! small files costs microseconds next to a handshake's milliseconds.
//!
//! # Which certificates are trusted
//!
//! Only one of two sets, never both: the CAs in `cacert` when it is given (a private CA
//! replaces the platform's, as `redis-cli --cacert` does), or else the platform's roots, which
//! the `redis` crate loads through `rustls-native-certs` on every connect (on Debian the
//! `ca-certificates` bundle; `SSL_CERT_FILE`/`SSL_CERT_DIR` override it). A machine without a
//! CA store trusts nothing without `cacert`. With `insecure` nothing is verified at all.
//!
//! What that costs, and a limit of `redis` 0.32: it rescans the platform store on *every* TLS
//! connect, even when `cacert` replaces it or `insecure` ignores it — about 3 ms of a 4 ms
//! loopback TLS connect on Debian with `ca-certificates` (≈140 roots, the directory of hash
//! links read file by file; `examples/connect_cost.rs` measures it). A pool pays that only on a
//! cold connect (the primer's, usually), never on `open`. And one unreadable file in that
//! store fails every TLS connect, `cacert` or not (`TLS_PLATFORM_ROOTS`). `redis` 2.0 loads
//! the store only when it is used, but needs Rust 1.88.
//!
//! # The crypto provider
//!
//! The `redis` crate (0.32, sync) builds its `rustls::ClientConfig` itself with
//! `ClientConfig::builder()`, which uses rustls' *process-wide* provider; it offers no way to
//! hand it a config of our own (`TlsConnParams` is opaque, its fields crate-private). When no
//! provider is installed, `builder()` picks the one compiled in — and panics when there is none
//! or more than one (`ring` from this crate plus `aws-lc-rs`, rustls' default, from any other
//! crate in the same build). So before every TLS connect [`ensure_provider`] installs `ring`
//! as the process default **only if none is installed yet**: an application that chose its own
//! provider (FIPS `aws-lc-rs`, say) keeps it, provided it installs it before its first TLS
//! connect; everyone else gets `ring`, whatever else the build links.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use pool_driver::{ConnArgs, DriverError, DriverErrorKind};
use redis::{ClientTlsConfig, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The TLS settings of one set of arguments: where the files are, not what they hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsArgs {
    /// PEM file of the CAs to trust instead of the platform's roots.
    pub(crate) cacert: Option<PathBuf>,
    /// PEM files of the client certificate (chain) and its private key, for servers that ask
    /// for one (`tls-auth-clients yes|optional`). Both or neither.
    pub(crate) client: Option<(PathBuf, PathBuf)>,
    /// Skip all verification (`redis-cli --insecure`): encrypted, but to anyone.
    pub(crate) insecure: bool,
}

/// The keys that only mean something with TLS on.
pub(crate) const TLS_ONLY_KEYS: &[&str] = &["cacert", "cert", "key", "insecure"];

/// A flag's value as users write it: empty (a bare `?insecure` in a URL), `on`/`off`,
/// `true`/`false`, `yes`/`no`, `1`/`0`. `None`: not a flag value.
pub(crate) fn flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// The TLS settings in normalised arguments (`tls` is `on` or absent, see `opts::normalise`);
/// `None` for a plain connection.
pub(crate) fn from_args(args: &ConnArgs) -> Result<Option<TlsArgs>, DriverError> {
    if args.get("tls") != Some("on") {
        return Ok(None);
    }
    let path = |key: &str| args.get(key).map(PathBuf::from);
    let client = match (path("cert"), path("key")) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            return Err(invalid(
                "redis `cert` and `key` go together: give both files (the client certificate \
                 and its private key) or neither",
            ))
        }
    };
    Ok(Some(TlsArgs {
        cacert: path("cacert"),
        client,
        insecure: args.get("insecure") == Some("on"),
    }))
}

/// Reads and checks the files `tls` names, now (see the module docs: a rotated file is used by
/// the next connect). Messages name the file and what is wrong with it, never its contents.
pub(crate) fn certificates(tls: &TlsArgs) -> Result<TlsCertificates, DriverError> {
    let root_cert = match &tls.cacert {
        Some(path) => {
            let pem = read(path, "cacert")?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| bad_file("cacert", path, "is not a PEM file of certificates"))?;
            if certs.is_empty() {
                return Err(bad_file("cacert", path, "holds no PEM certificate"));
            }
            Some(pem)
        }
        None => None,
    };
    let client_tls = match &tls.client {
        Some((cert_path, key_path)) => {
            let client_cert = read(cert_path, "cert")?;
            let certs = CertificateDer::pem_slice_iter(&client_cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| bad_file("cert", cert_path, "is not a PEM file of certificates"))?;
            if certs.is_empty() {
                return Err(bad_file("cert", cert_path, "holds no PEM certificate"));
            }
            let client_key = read(key_path, "key")?;
            // The parser's error is not shown: it may quote a line of the file.
            if PrivateKeyDer::from_pem_slice(&client_key).is_err() {
                return Err(bad_file(
                    "key",
                    key_path,
                    "holds no unencrypted private key in PEM form (PKCS#8 `BEGIN PRIVATE \
                     KEY`, PKCS#1 `BEGIN RSA PRIVATE KEY` or SEC1 `BEGIN EC PRIVATE KEY`; \
                     encrypted keys are not supported)",
                ));
            }
            Some(ClientTlsConfig {
                client_cert,
                client_key,
            })
        }
        None => None,
    };
    Ok(TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// Installs `ring` as rustls' process-wide crypto provider unless one is installed already
/// (see the module docs for why the process default, and why only if unset). Checked once per
/// process: after the first call a provider is always installed, ours or the application's.
pub(crate) fn ensure_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // `Err` means another thread installed one between the check and here: it is used.
            let installed = rustls::crypto::ring::default_provider()
                .install_default()
                .is_ok();
            tracing::debug!(
                installed,
                "redis: rustls had no process-wide crypto provider; installed ring"
            );
        }
    });
}

/// The part of the connect bound kept back from a TLS connect for [`plain_redis_at`]: a fifth,
/// at most 500 ms (a TCP connect and one round trip, on any network a pool should span).
pub(crate) fn probe_reserve(connect_timeout: Duration) -> Duration {
    (connect_timeout / 5).min(Duration::from_millis(500))
}

/// Whether a *plain* Redis answers at `host:port` within `bound`: a fresh TCP connection,
/// `PING` in RESP's inline form, and the first byte of the answer (`+PONG`, or `-NOAUTH …`
/// from a server with a password; a TLS server answers a non-TLS byte with an alert or by
/// hanging up, never with `+` or `-`). No credentials are sent.
///
/// Why: a TLS hello sent to a plain Redis port usually gets *no* answer. Redis reads it as the
/// start of an inline command and waits for the newline that ends one; only when one of the
/// hello's random bytes happens to be `\n` does it answer (with an error, which rustls reports
/// as not TLS). So `rediss://` to a plain port mostly looks like a silent server, and this
/// probe, run with the bound [`probe_reserve`] kept back, tells the two apart. Everything is a
/// blocking call with its own timeout on this thread: nothing is left running.
pub(crate) fn plain_redis_at(host: &str, port: u16, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, left) else {
            continue;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut first = [0u8; 1];
        let answered = stream
            .set_write_timeout(Some(left))
            .and_then(|()| stream.set_read_timeout(Some(left)))
            .and_then(|()| stream.write_all(b"PING\r\n"))
            .and_then(|()| stream.read_exact(&mut first));
        return answered.is_ok() && matches!(first[0], b'+' | b'-');
    }
    false
}

/// Whether `host:port` answers a TLS hello in TLS, within `bound`: a fresh TCP connection, a
/// `ClientHello` (rustls on `ring`, whatever the process default is; no certificate is checked,
/// as the handshake goes no further), and the first byte of the answer: a TLS handshake record
/// (`0x16`) or alert (`0x15`). A plain Redis sends `-` or nothing.
///
/// Why: a TLS-only port hangs up on a plain client, and so may a server for other reasons
/// (killed mid-connect, a proxy in between); asking is what makes "use rediss://" advice
/// rather than a guess. Blocking calls with timeouts on this thread: nothing is left running.
pub(crate) fn speaks_tls_at(host: &str, port: u16, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    let Ok(config) = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions() else {
        return false;
    };
    let config = Arc::new(
        config
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    );
    let name = ServerName::try_from(host.to_owned())
        .or_else(|_| ServerName::try_from("redis"))
        .map(|n| n.to_owned());
    let (Ok(name), Ok(addrs)) = (name, (host, port).to_socket_addrs()) else {
        return false;
    };
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, left) else {
            continue;
        };
        let Ok(mut hello) = rustls::ClientConnection::new(Arc::clone(&config), name.clone()) else {
            return false;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut first = [0u8; 1];
        let sent = stream
            .set_write_timeout(Some(left))
            .and_then(|()| stream.set_read_timeout(Some(left)))
            .and_then(|()| {
                while hello.wants_write() {
                    hello.write_tls(&mut stream)?;
                }
                Ok(())
            })
            .and_then(|()| stream.read_exact(&mut first));
        return sent.is_ok() && matches!(first[0], 0x15 | 0x16);
    }
    false
}

fn read(path: &Path, key: &str) -> Result<Vec<u8>, DriverError> {
    fs::read(path).map_err(|e| {
        DriverError::new(
            DriverErrorKind::Connect,
            format!(
                "cannot read the redis `{key}` file {}: {e} (the file is read on every \
                 connect, so it must stay readable by this process)",
                path.display()
            ),
        )
    })
}

fn bad_file(key: &str, path: &Path, what: &str) -> DriverError {
    DriverError::new(
        DriverErrorKind::Connect,
        format!("the redis `{key}` file {} {what}", path.display()),
    )
}

fn invalid(message: &str) -> DriverError {
    DriverError::new(DriverErrorKind::InvalidArgs, message)
}

/// What a failed TLS handshake (or a failed plain one against a TLS port) was about, each with
/// the advice a person needs. Found by [`cause`] in the error chain of the `redis` crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The server's certificate is not signed by a trusted CA.
    Untrusted,
    /// The certificate is valid, but not for the host connected to.
    WrongHost,
    /// The certificate (or one in its chain) has expired, or is not valid yet.
    Expired,
    /// Any other problem with the server's certificate (bad signature, revoked…).
    BadCertificate,
    /// The server answered the TLS hello with something that is not TLS: a plain port.
    NotTls,
    /// The server wants a client certificate and got none.
    ClientCertRequired,
    /// The server refused the client certificate it was sent.
    ClientCertRefused,
    /// The host is neither a DNS name nor an IP address, so it cannot be verified.
    BadHostName,
    /// `cert` and `key` do not belong together.
    KeyMismatch,
    /// The platform's CA store could not be read (see the module docs: `redis` 0.32 reads it
    /// on every TLS connect, even with `cacert`).
    PlatformRoots,
    /// A plain connection to a port that answers in TLS (the server hung up on the plain
    /// client, and a TLS hello on a fresh connection is answered).
    Required,
    /// Some other TLS failure (no common protocol version or cipher…).
    Other,
}

impl Failure {
    /// A short code for [`DriverError::code`], so a handler can match on what failed.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Failure::Untrusted => "TLS_UNTRUSTED_CERTIFICATE",
            Failure::WrongHost => "TLS_HOST_NAME_MISMATCH",
            Failure::Expired => "TLS_CERTIFICATE_EXPIRED",
            Failure::BadCertificate => "TLS_BAD_CERTIFICATE",
            Failure::NotTls => "TLS_NOT_OFFERED",
            Failure::ClientCertRequired => "TLS_CLIENT_CERTIFICATE_REQUIRED",
            Failure::ClientCertRefused => "TLS_CLIENT_CERTIFICATE_REFUSED",
            Failure::BadHostName => "TLS_BAD_HOST_NAME",
            Failure::KeyMismatch => "TLS_KEY_MISMATCH",
            Failure::PlatformRoots => "TLS_PLATFORM_ROOTS",
            Failure::Required => "TLS_REQUIRED",
            Failure::Other => "TLS_FAILED",
        }
    }

    /// What failed and what to do about it.
    pub(crate) fn advice(self) -> &'static str {
        match self {
            Failure::Untrusted => {
                "the server's certificate is not signed by a trusted CA: give the CA that \
                 signed it as `cacert=<file.pem>` (without `cacert` only the platform's roots \
                 are trusted), or, for a test server only, `insecure=on`"
            }
            Failure::WrongHost => {
                "the server's certificate is not valid for the host name connected to: connect \
                 with a `host` the certificate names (the name is checked against `host`, as \
                 written)"
            }
            Failure::Expired => {
                "the server's certificate has expired or is not valid yet: renew it on the \
                 server (or check this machine's clock)"
            }
            Failure::BadCertificate => {
                "the server's certificate was rejected: check it with `openssl s_client`"
            }
            Failure::NotTls => {
                "the server did not answer in TLS: this port speaks plain Redis; use redis:// \
                 (without `tls`), or the port of the server's `tls-port`"
            }
            Failure::ClientCertRequired => {
                "the server requires a client certificate (tls-auth-clients yes): give \
                 `cert=<client.pem> key=<client.key>`"
            }
            Failure::ClientCertRefused => {
                "the server refused the client certificate: it must be signed by a CA the \
                 server trusts (its tls-ca-cert-file) and be valid now"
            }
            Failure::BadHostName => {
                "the host is not a DNS name or an IP address, so the certificate cannot be \
                 checked against it"
            }
            Failure::KeyMismatch => {
                "the client certificate (`cert`) and the private key (`key`) do not belong \
                 together, or the key type is not supported"
            }
            Failure::PlatformRoots => {
                "reading the platform's CA certificates failed (the redis client reads them on \
                 every TLS connect, even with `cacert`): fix or remove the unreadable file, or \
                 point SSL_CERT_FILE/SSL_CERT_DIR at a readable store"
            }
            Failure::Required => {
                "the server hung up on a plain connection and answers in TLS on this port \
                 (redis tls-port): connect with rediss:// (or tls=on), with `cacert` for a \
                 private CA"
            }
            Failure::Other => "the TLS handshake failed",
        }
    }
}

/// What a `redis` crate error says about TLS, when it is a TLS failure: the rustls error
/// inside it (an `io::Error` whose inner error is `rustls::Error`, as rustls' stream reports
/// handshake failures), or the crate's own TLS messages (a host that is no DNS name, a key
/// that does not fit).
pub(crate) fn cause(err: &redis::RedisError) -> Option<Failure> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(classify(tls));
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                return Some(classify(tls));
            }
        }
        source = current.source();
    }
    // Converted to text by the `redis` crate (`From<rustls::Error>` and friends keep no
    // source): only its fixed wording is matched.
    let text = err.to_string().to_ascii_lowercase();
    if text.contains("invalid dns name") || text.contains("invalid server name") {
        Some(Failure::BadHostName)
    } else if text.contains("fetch certs error") {
        Some(Failure::PlatformRoots)
    } else if text.contains("unable to build client with tls parameters") {
        Some(Failure::KeyMismatch)
    } else if text.contains("tls error") {
        Some(Failure::Other)
    } else {
        None
    }
}

fn classify(err: &rustls::Error) -> Failure {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error};
    match err {
        Error::InvalidCertificate(cert) => match cert {
            Cert::UnknownIssuer => Failure::Untrusted,
            Cert::NotValidForName | Cert::NotValidForNameContext { .. } => Failure::WrongHost,
            Cert::Expired
            | Cert::ExpiredContext { .. }
            | Cert::NotValidYet
            | Cert::NotValidYetContext { .. } => Failure::Expired,
            _ => Failure::BadCertificate,
        },
        // Plain RESP (`-ERR …`) where a TLS record should be.
        Error::InvalidMessage(_) => Failure::NotTls,
        // TLS 1.3 says `certificate_required`; OpenSSL on TLS 1.2 says `handshake_failure`
        // to a client that sent no certificate (seen only as a guess: see `advice`).
        Error::AlertReceived(Alert::CertificateRequired) => Failure::ClientCertRequired,
        Error::AlertReceived(
            Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::CertificateExpired
            | Alert::CertificateRevoked
            | Alert::UnsupportedCertificate,
        ) => Failure::ClientCertRefused,
        Error::InconsistentKeys(_) => Failure::KeyMismatch,
        _ => Failure::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        for on in ["", "on", "TRUE", "yes", "1"] {
            assert_eq!(flag(on), Some(true), "{on}");
        }
        for off in ["off", "false", "No", "0"] {
            assert_eq!(flag(off), Some(false), "{off}");
        }
        assert_eq!(flag("maybe"), None);
    }

    #[test]
    fn rustls_errors_are_classified() {
        use rustls::{AlertDescription, CertificateError, Error};
        let redis_error = |e: Error| {
            redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        };
        for (error, failure) in [
            (
                Error::InvalidCertificate(CertificateError::UnknownIssuer),
                Failure::Untrusted,
            ),
            (
                Error::InvalidCertificate(CertificateError::NotValidForName),
                Failure::WrongHost,
            ),
            (
                Error::InvalidCertificate(CertificateError::Expired),
                Failure::Expired,
            ),
            (
                Error::AlertReceived(AlertDescription::CertificateRequired),
                Failure::ClientCertRequired,
            ),
            (
                Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                Failure::NotTls,
            ),
        ] {
            assert_eq!(cause(&redis_error(error)), Some(failure));
        }
        let plain =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(cause(&plain), None);
    }

    /// This test process's scratch directory.
    fn scratch_dir() -> PathBuf {
        std::env::temp_dir().join(format!("pool-redis-tls-{}", std::process::id()))
    }

    fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
        let dir = scratch_dir();
        fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        fs::write(&path, contents).expect("write");
        path
    }

    /// A key file that is not a key: the error names the file and never shows its contents.
    #[test]
    fn bad_files_are_named_without_their_contents() {
        let secret = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END";
        let key = temp_file("broken.key", secret.as_bytes());
        let cert = temp_file("empty.pem", b"");
        let tls = TlsArgs {
            cacert: None,
            client: Some((cert.clone(), key.clone())),
            insecure: false,
        };
        let error = certificates(&tls).err().expect("an empty cert file");
        assert!(error.message().contains("`cert`"), "{}", error.message());
        assert!(
            error.message().contains("no PEM certificate"),
            "{}",
            error.message()
        );

        let cacert = temp_file("not-a-ca.pem", b"hello");
        let tls = TlsArgs {
            cacert: Some(cacert),
            client: None,
            insecure: false,
        };
        let error = certificates(&tls).err().expect("not a CA file");
        assert_eq!(error.kind(), DriverErrorKind::Connect);
        assert!(error.message().contains("`cacert`"), "{}", error.message());

        let missing = TlsArgs {
            cacert: Some(PathBuf::from("/nonexistent/ca.pem")),
            client: None,
            insecure: false,
        };
        let error = certificates(&missing).err().expect("missing file");
        assert!(
            error.message().contains("/nonexistent/ca.pem"),
            "{}",
            error.message()
        );

        // A certificate that parses, with a key that does not: the key's bytes never show.
        let real_cert = b"-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n";
        let cert = temp_file("one.pem", real_cert);
        let tls = TlsArgs {
            cacert: None,
            client: Some((cert, key)),
            insecure: false,
        };
        let error = certificates(&tls).err().expect("a broken key");
        let shown = format!("{error} {error:?}");
        assert!(shown.contains("`key`"), "{shown}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        let _ = fs::remove_dir_all(scratch_dir());
    }
}
