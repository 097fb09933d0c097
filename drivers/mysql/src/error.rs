//! `mysql::Error` → `DriverError`.
//!
//! The pool acts on the kind: `Connect`/`Timeout` while connecting, `Broken` when the connection
//! must be closed instead of parked, `Query` when the server refused a statement but the session
//! is fine. Messages carry the server's own text and error number (as the code) and never a
//! password: nothing here formats the options, and every message is scrubbed of the argument's
//! secret values as a second line of defence.
//!
//! A failed TLS connect is a `Connect` error whose code says what failed, in the vocabulary the
//! Redis driver uses too (`TLS_UNTRUSTED_CERTIFICATE`, `TLS_HOST_NAME_MISMATCH`,
//! `TLS_CERTIFICATE_EXPIRED`, `TLS_NOT_OFFERED`, `TLS_REQUIRED`, `TLS_CLIENT_CERTIFICATE_*`…,
//! see [`TlsFailure`]), and whose message says what to do. rustls reports a failed handshake
//! as an I/O error carrying its own error; the crate reports its configuration (the files)
//! as `TlsError`, and a server without TLS as `TlsNotSupported`.

use std::io;

use mysql::error::tls::TlsError;
use mysql::{DriverError as MyDriverError, Error as MyError};
use pool_driver::{ConnArgs, DriverError, DriverErrorKind};
use rustls::{AlertDescription, CertificateError};

/// Which operation failed: it decides the kind of the same underlying error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Opening a connection: everything but a timeout is a `Connect` error.
    Connect,
    /// Using an open connection: fatal errors are `Broken`, the rest `Query`.
    Session,
}

/// Server error numbers after which the server has closed (or is closing) the session.
///
/// * 1053 `ER_SERVER_SHUTDOWN`: shutdown in progress.
/// * 1152/1184 `ER_ABORTING_CONNECTION`/`ER_NEW_ABORTING_CONNECTION`: the server aborted us.
/// * 1153 `ER_NET_PACKET_TOO_LARGE`: sent before the server drops the connection.
/// * 1156–1161 `ER_NET_*`: packets out of order, read/write errors and timeouts on the wire.
/// * 1927 `ER_CONNECTION_KILLED` (MariaDB): `KILL CONNECTION` or shutdown.
/// * 2006/2013 `CR_SERVER_GONE_ERROR`/`CR_SERVER_LOST`: client-side codes; the `mysql` crate
///   reports these conditions as I/O errors instead, but a proxy may forward them.
/// * 3169 `ER_SESSION_WAS_KILLED` (MySQL 8).
///
/// 4031 (`ER_CLIENT_INTERACTION_TIMEOUT`, MySQL ≥ 8.0.24: the server closed an idle session)
/// is handled by [`is_fatal_code`] because MariaDB uses the same number for an ordinary
/// statement error (`ER_REFERENCED_TRG_DOES_NOT_EXIST`).
const FATAL_CODES: &[u16] = &[
    1053, 1152, 1153, 1156, 1157, 1158, 1159, 1160, 1161, 1184, 1927, 2006, 2013, 3169,
];

/// Whether server error `code` ends the session on a server reporting `version`.
///
/// `version` is `mysql::Conn::server_version()`: MariaDB 10.x reports `5.5.5` there (its
/// handshake still starts with the old `5.5.5-` compatibility prefix) and MariaDB ≥ 11 reports
/// ≥ 11, so only MySQL 8.0.24 up to (not including) 10 gets the MySQL meaning of 4031.
pub(crate) fn is_fatal_code(code: u16, version: Option<(u16, u16, u16)>) -> bool {
    FATAL_CODES.contains(&code)
        || (code == 4031 && version.is_some_and(|v| ((8, 0, 24)..(10, 0, 0)).contains(&v)))
}

/// Maps `err` from an operation in `phase`. `version` is the server's, once known.
///
/// `context` starts the message (for example `connecting to 127.0.0.1:3306`), so a log line
/// says what was being done; it must not contain secrets (it is scrubbed anyway).
pub(crate) fn map(
    err: &MyError,
    phase: Phase,
    version: Option<(u16, u16, u16)>,
    args: &ConnArgs,
    context: &str,
) -> DriverError {
    let (kind, text, code) = classify(err, phase, version);
    let message = if context.is_empty() {
        text
    } else {
        format!("{context}: {text}")
    };
    let error = DriverError::new(kind, args.scrub(&message));
    match code {
        Some(code) => error.with_code(code),
        None => error,
    }
}

/// The kind, the message and the server's error number for `err`.
fn classify(
    err: &MyError,
    phase: Phase,
    version: Option<(u16, u16, u16)>,
) -> (DriverErrorKind, String, Option<String>) {
    use DriverErrorKind::{Broken, Connect, InvalidArgs, Query, Timeout};
    let connecting = phase == Phase::Connect;
    match err {
        MyError::MySqlError(e) => {
            let kind = if connecting {
                Connect
            } else if is_fatal_code(e.code, version) {
                Broken
            } else {
                Query
            };
            (kind, e.message.clone(), Some(e.code.to_string()))
        }
        MyError::IoError(e) => io_error(e, connecting),
        MyError::DriverError(MyDriverError::TlsNotSupported) => {
            let kind = if connecting { Connect } else { Broken };
            tls_failure(kind, TlsFailure::NotOffered, None)
        }
        MyError::DriverError(e) => {
            let kind = match e {
                MyDriverError::ConnectTimeout | MyDriverError::Timeout => Timeout,
                _ if connecting => Connect,
                MyDriverError::MismatchedStmtParams(..)
                | MyDriverError::Params(_)
                | MyDriverError::MixedParams
                | MyDriverError::ReadOnlyTransNotSupported
                | MyDriverError::BulkExecute(_) => Query,
                // Out-of-sync packets, unexpected packets, protocol trouble: the session is lost.
                _ => Broken,
            };
            (kind, e.to_string(), None)
        }
        // Reads and writes go through the packet codec, which wraps their I/O errors
        // (a socket timeout among them) in its own type.
        MyError::CodecError(e) => match std::error::Error::source(e)
            .and_then(|source| source.downcast_ref::<io::Error>())
        {
            Some(io) => io_error(io, connecting),
            None => {
                let kind = if connecting { Connect } else { Broken };
                (kind, format!("protocol error: {e}"), None)
            }
        },
        // Building the TLS configuration, before any byte of the handshake: the files.
        MyError::TlsError(e) => {
            let kind = if connecting { Connect } else { Broken };
            tls_failure(kind, TlsFailure::of_setup(e), Some(e.to_string()))
        }
        MyError::UrlError(e) => (InvalidArgs, e.to_string(), None),
        // Conversions happen in this driver's own code paths only if someone uses `from_row`;
        // the connection itself is fine.
        MyError::FromValueError(_) | MyError::FromRowError(_) => (Query, err.to_string(), None),
    }
}

/// Whether `err` is a socket timeout (a read or write that waited its whole bound).
pub(crate) fn is_timeout(err: &MyError) -> bool {
    let io = match err {
        MyError::IoError(e) => Some(e),
        MyError::CodecError(e) => {
            std::error::Error::source(e).and_then(|source| source.downcast_ref::<io::Error>())
        }
        _ => None,
    };
    io.is_some_and(|e| {
        matches!(
            e.kind(),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
        )
    })
}

/// An I/O error: a timeout (`EAGAIN` is what a socket read timeout gives), a failed TLS
/// handshake (rustls reports it as an I/O error carrying its own), or a lost connection.
fn io_error(e: &io::Error, connecting: bool) -> (DriverErrorKind, String, Option<String>) {
    use DriverErrorKind::{Broken, Connect, Timeout};
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        let kind = if connecting { Connect } else { Broken };
        return tls_failure(kind, TlsFailure::of_handshake(tls), Some(tls.to_string()));
    }
    let timed_out = matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    );
    let kind = match (connecting, timed_out) {
        (true, true) => Timeout,
        (true, false) => Connect,
        // A timed-out read leaves a reply half-read: the session is out of step.
        (false, _) => Broken,
    };
    let text = if timed_out {
        "timed out waiting for the server".to_owned()
    } else if matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
    ) {
        format!("the server closed the connection ({e})")
    } else {
        format!("connection error: {e}")
    };
    (kind, text, None)
}

/// What a failed TLS connect was about. Each has a code (the same vocabulary as the other
/// drivers', for [`DriverError::code`]) so that a handler can match on it, and advice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlsFailure {
    /// No CA in `ssl-ca` (nor a public root) signed the server's certificate.
    Untrusted,
    /// The certificate is valid, but not for the host connected to.
    WrongHost,
    /// The server's certificate has expired.
    Expired,
    /// The server's certificate is not valid yet.
    NotYetValid,
    /// Any other problem with the server's certificate (revoked, bad signature, wrong usage).
    BadCertificate,
    /// TLS was required and the server's greeting does not offer it (the crate's
    /// `TlsNotSupported`).
    NotOffered,
    /// The server requires TLS of every TCP connection (MySQL's 3159).
    Required,
    /// The server asked for a client certificate and got none.
    ClientCertRequired,
    /// The server refused the client certificate it was sent.
    ClientCertRefused,
    /// The host is neither a DNS name nor an IP address, so it cannot be verified.
    BadHostName,
    /// `ssl-key` is not the key of `ssl-cert`.
    KeyMismatch,
    /// The `ssl-ca` file holds no certificate (a key given as the CA, say).
    BadCaFile,
    /// The client certificate or key could not be used (an unusable key).
    BadFiles,
    /// No TLS version or cipher in common.
    NoCommonProtocol,
    /// Something else.
    Other,
}

impl TlsFailure {
    /// A failed handshake, as rustls reports it. The server's certificate is checked by this
    /// client (`InvalidCertificate`); the server's verdict on ours, or on the protocol,
    /// arrives as an alert (`AlertReceived`).
    pub(crate) fn of_handshake(e: &rustls::Error) -> TlsFailure {
        use rustls::Error as E;
        match e {
            E::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer => TlsFailure::Untrusted,
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => TlsFailure::WrongHost,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    TlsFailure::Expired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    TlsFailure::NotYetValid
                }
                _ => TlsFailure::BadCertificate,
            },
            E::AlertReceived(alert) => match alert {
                AlertDescription::CertificateRequired => TlsFailure::ClientCertRequired,
                AlertDescription::BadCertificate
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateRevoked
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnknownCA
                | AlertDescription::AccessDenied => TlsFailure::ClientCertRefused,
                AlertDescription::ProtocolVersion
                | AlertDescription::HandshakeFailure
                | AlertDescription::InsufficientSecurity => TlsFailure::NoCommonProtocol,
                _ => TlsFailure::Other,
            },
            E::PeerIncompatible(_) => TlsFailure::NoCommonProtocol,
            E::InconsistentKeys(_) => TlsFailure::KeyMismatch,
            _ => TlsFailure::Other,
        }
    }

    /// The crate could not build its TLS configuration from the files, before any byte of
    /// the handshake.
    fn of_setup(e: &TlsError) -> TlsFailure {
        match e {
            TlsError::Tls(rustls::Error::InconsistentKeys(_)) => TlsFailure::KeyMismatch,
            // Only the CA file is parsed as certificates while the configuration is built
            // (the client's chain is sent as it is).
            TlsError::Tls(rustls::Error::InvalidCertificate(_)) => TlsFailure::BadCaFile,
            TlsError::InvalidDnsName(_) => TlsFailure::BadHostName,
            _ => TlsFailure::BadFiles,
        }
    }

    /// The code for [`DriverError::code`]: the Redis driver's vocabulary, so one handler can
    /// match any driver's TLS failures.
    pub(crate) fn code(self) -> &'static str {
        match self {
            TlsFailure::Untrusted => "TLS_UNTRUSTED_CERTIFICATE",
            TlsFailure::WrongHost => "TLS_HOST_NAME_MISMATCH",
            TlsFailure::Expired | TlsFailure::NotYetValid => "TLS_CERTIFICATE_EXPIRED",
            TlsFailure::BadCertificate => "TLS_BAD_CERTIFICATE",
            TlsFailure::NotOffered => "TLS_NOT_OFFERED",
            TlsFailure::Required => "TLS_REQUIRED",
            TlsFailure::ClientCertRequired => "TLS_CLIENT_CERTIFICATE_REQUIRED",
            TlsFailure::ClientCertRefused => "TLS_CLIENT_CERTIFICATE_REFUSED",
            TlsFailure::BadHostName => "TLS_BAD_HOST_NAME",
            TlsFailure::KeyMismatch => "TLS_KEY_MISMATCH",
            TlsFailure::BadCaFile
            | TlsFailure::BadFiles
            | TlsFailure::NoCommonProtocol
            | TlsFailure::Other => "TLS_FAILED",
        }
    }

    /// What failed and what to do about it.
    pub(crate) fn advice(self) -> &'static str {
        match self {
            TlsFailure::Untrusted => {
                "TLS: the server's certificate is not trusted: no CA in ssl-ca (nor a public \
                 root) signed it. Give the CA that issued it as ssl-ca=/path/to/ca.pem, or use \
                 ssl-mode=REQUIRED to encrypt without verifying the server"
            }
            TlsFailure::WrongHost => {
                "TLS: host name mismatch: the server's certificate is not valid for the host \
                 connected to (checked against `host` as written). Connect by a name or IP \
                 address the certificate lists, or use ssl-mode=VERIFY_CA to verify the CA \
                 but not the name"
            }
            TlsFailure::Expired => {
                "TLS: the server's certificate has expired. Renew it on the server (ssl_cert; \
                 MariaDB reloads it on FLUSH SSL)"
            }
            TlsFailure::NotYetValid => {
                "TLS: the server's certificate is not valid yet: check this machine's clock"
            }
            TlsFailure::BadCertificate => {
                "TLS: the server's certificate was rejected (revoked, a bad signature, or not \
                 meant for a server): check it with `openssl s_client -starttls mysql`"
            }
            TlsFailure::NotOffered => {
                "TLS: the server does not offer TLS (its greeting lacks the SSL capability: \
                 started without ssl_cert and ssl_key, have_ssl is DISABLED), and the ssl-mode \
                 requires it. Enable TLS on the server, or accept a plain connection with \
                 ssl-mode=PREFERRED or DISABLED"
            }
            TlsFailure::Required => {
                "TLS: the server requires TLS of every TCP connection \
                 (require_secure_transport=ON): connect with ssl-mode=VERIFY_IDENTITY (or \
                 REQUIRED to encrypt without verifying)"
            }
            TlsFailure::ClientCertRequired => {
                "TLS: the server requires a client certificate: give ssl-cert and ssl-key"
            }
            TlsFailure::ClientCertRefused => {
                "TLS: the server refused the client certificate: ssl-cert must be signed by a \
                 CA the server trusts (its ssl_ca) and be valid today; a server that requires \
                 one refuses a connection without it too"
            }
            TlsFailure::BadHostName => {
                "TLS: the host is not a DNS name or an IP address, so the certificate cannot \
                 be checked against it"
            }
            TlsFailure::KeyMismatch => "TLS: ssl-key is not the private key of ssl-cert",
            TlsFailure::BadCaFile => {
                "TLS: the ssl-ca file holds no usable certificate: it must hold the CA \
                 certificate(s), PEM or DER (not a private key, not the server's key)"
            }
            TlsFailure::BadFiles => {
                "TLS: the client certificate files could not be used: ssl-cert must hold a \
                 PEM certificate (chain) and ssl-key its unencrypted PEM private key (PKCS#8, \
                 PKCS#1 or SEC1)"
            }
            TlsFailure::NoCommonProtocol => {
                "TLS: the server and this client share no TLS version or cipher (this client \
                 speaks TLS 1.2 and 1.3 only; a server limited to TLS 1.0/1.1 needs \
                 upgrading, or ssl-mode=DISABLED)"
            }
            TlsFailure::Other => "TLS: the handshake failed",
        }
    }
}

/// The kind, message and code of a TLS failure; `detail` (rustls' or the crate's own text:
/// it names the expected and presented host names, the dates) follows the advice in
/// parentheses. Nothing in either is secret: certificates are public, key material never
/// reaches an error.
fn tls_failure(
    kind: DriverErrorKind,
    failure: TlsFailure,
    detail: Option<String>,
) -> (DriverErrorKind, String, Option<String>) {
    let text = match detail {
        Some(detail) => format!("{} ({detail})", failure.advice()),
        None => failure.advice().to_owned(),
    };
    (kind, text, Some(failure.code().to_owned()))
}

/// `error` with the code and advice of `failure` (MySQL's 3159 becomes `TLS_REQUIRED`; the
/// server's number stays in the message).
pub(crate) fn as_tls_failure(error: &DriverError, failure: TlsFailure) -> DriverError {
    let number = error
        .code()
        .map(|c| format!(" (error {c})"))
        .unwrap_or_default();
    DriverError::new(
        error.kind(),
        format!("{}{number}. {}", error.message(), failure.advice()),
    )
    .with_code(failure.code())
}

/// `error` with `advice` added to its message (same kind and code).
pub(crate) fn with_advice(error: DriverError, advice: &str) -> DriverError {
    let message = format!("{}. {advice}", error.message());
    let advised = DriverError::new(error.kind(), message);
    match error.code() {
        Some(code) => advised.with_code(code),
        None => advised,
    }
}

/// The error for using a connection that already saw a fatal error.
pub(crate) fn already_broken() -> DriverError {
    DriverError::new(
        DriverErrorKind::Broken,
        "the mysql connection is broken (an earlier error ended its session)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16, message: &str) -> MyError {
        MyError::MySqlError(mysql::MySqlError {
            state: "HY000".into(),
            message: message.into(),
            code,
        })
    }

    #[test]
    fn server_errors_keep_message_and_code() {
        let args = ConnArgs::parse("user=u password=hunter2").expect("parses");
        let e = map(
            &server(1064, "You have an error"),
            Phase::Session,
            None,
            &args,
            "",
        );
        assert_eq!((e.kind(), e.code()), (DriverErrorKind::Query, Some("1064")));
        assert_eq!(e.message(), "You have an error");
        let e = map(
            &server(1045, "Access denied for user 'u'@'h' (hunter2)"),
            Phase::Connect,
            None,
            &args,
            "connecting to h:1",
        );
        assert_eq!(e.kind(), DriverErrorKind::Connect);
        assert_eq!(
            e.message(),
            "connecting to h:1: Access denied for user 'u'@'h' (***)"
        );
    }

    #[test]
    fn fatal_codes() {
        let maria = Some((5, 5, 5));
        let mysql8 = Some((8, 0, 36));
        assert!(is_fatal_code(1927, maria) && is_fatal_code(1053, mysql8));
        assert!(is_fatal_code(4031, mysql8));
        assert!(!is_fatal_code(4031, maria) && !is_fatal_code(4031, Some((11, 4, 2))));
        assert!(
            !is_fatal_code(1317, maria),
            "KILL QUERY leaves the session usable"
        );
        assert!(
            !is_fatal_code(1213, maria),
            "a deadlock rolls back, the session lives"
        );
    }

    #[test]
    fn io_errors_by_phase() {
        let args = ConnArgs::default();
        let timeout = MyError::IoError(io::Error::new(io::ErrorKind::WouldBlock, "x"));
        let kind = |e: &MyError, p| map(e, p, None, &args, "").kind();
        assert_eq!(kind(&timeout, Phase::Connect), DriverErrorKind::Timeout);
        assert_eq!(kind(&timeout, Phase::Session), DriverErrorKind::Broken);
        let gone = MyError::server_disconnected();
        assert_eq!(kind(&gone, Phase::Connect), DriverErrorKind::Connect);
        assert_eq!(kind(&gone, Phase::Session), DriverErrorKind::Broken);
        let t = MyError::DriverError(MyDriverError::ConnectTimeout);
        assert_eq!(kind(&t, Phase::Connect), DriverErrorKind::Timeout);
    }

    /// A rustls handshake error as the crate surfaces it: an `io::Error` carrying it, bare or
    /// inside the packet codec's error.
    fn handshake(e: rustls::Error) -> [MyError; 2] {
        let io = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        [
            MyError::IoError(io(e.clone())),
            MyError::CodecError(io(e).into()),
        ]
    }

    #[test]
    fn tls_failures_have_their_code_and_advice() {
        let args = ConnArgs::parse("host=h password=hunter2").expect("parses");
        let name = rustls::pki_types::ServerName::try_from("db.example").expect("name");
        for (error, code, says) in [
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                "TLS_UNTRUSTED_CERTIFICATE",
                "not trusted",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                    expected: name.to_owned(),
                    presented: vec!["DnsName(\"localhost\")".into()],
                }),
                "TLS_HOST_NAME_MISMATCH",
                "host name mismatch",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Expired),
                "TLS_CERTIFICATE_EXPIRED",
                "has expired",
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
                "TLS_CLIENT_CERTIFICATE_REQUIRED",
                "give ssl-cert and ssl-key",
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::UnknownCA),
                "TLS_CLIENT_CERTIFICATE_REFUSED",
                "refused the client certificate",
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::ProtocolVersion),
                "TLS_FAILED",
                "no TLS version or cipher",
            ),
        ] {
            for err in handshake(error.clone()) {
                let e = map(
                    &err,
                    Phase::Connect,
                    None,
                    &args,
                    "connecting to mysql at h:1",
                );
                assert_eq!(e.kind(), DriverErrorKind::Connect, "{e}");
                assert_eq!(e.code(), Some(code), "{e}");
                assert!(e.message().contains(says), "{e}");
                assert!(
                    e.message().starts_with("connecting to mysql at h:1: TLS: "),
                    "{e}"
                );
                let e = map(&err, Phase::Session, None, &args, "");
                assert_eq!(e.kind(), DriverErrorKind::Broken, "{error}: {e}");
            }
        }
        let mismatch = map(
            &handshake(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForNameContext {
                    expected: name.to_owned(),
                    presented: vec!["DnsName(\"localhost\")".into()],
                },
            ))[0],
            Phase::Connect,
            None,
            &args,
            "",
        );
        assert!(mismatch.message().contains("db.example"), "{mismatch}");

        let refused = MyError::DriverError(MyDriverError::TlsNotSupported);
        let e = map(&refused, Phase::Connect, None, &args, "");
        assert_eq!(
            (e.kind(), e.code()),
            (DriverErrorKind::Connect, Some("TLS_NOT_OFFERED"))
        );
        assert!(e.message().contains("does not offer TLS"), "{e}");
    }

    #[test]
    fn mysqls_insecure_transport_error_becomes_tls_required() {
        let args = ConnArgs::parse("host=h password=hunter2").expect("parses");
        let e = map(
            &server(
                3159,
                "Connections using insecure transport are prohibited while \
                 --require_secure_transport=ON.",
            ),
            Phase::Connect,
            None,
            &args,
            "",
        );
        let e = as_tls_failure(&e, TlsFailure::Required);
        assert_eq!(
            (e.kind(), e.code()),
            (DriverErrorKind::Connect, Some("TLS_REQUIRED"))
        );
        assert!(e.message().contains("(error 3159)"), "{e}");
        assert!(e.message().contains("ssl-mode=VERIFY_IDENTITY"), "{e}");
    }
}
