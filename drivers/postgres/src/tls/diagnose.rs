//! What went wrong with TLS, in words a user can act on.
//!
//! A failed handshake reaches the driver as a `tokio_postgres::Error` whose cause is an
//! `io::Error` wrapping the `rustls::Error` (tokio-rustls' convention). The cases a user meets
//! (an untrusted certificate, a host name mismatch, an expired certificate, the server refusing
//! TLS or a client certificate, channel binding that could not happen) each get a message that
//! says so in plain words, names the setting involved, and says what to do. The words
//! "unknown CA", "host name mismatch", "expired" and "refuses TLS" are in the messages so a
//! handler (or a test) can tell them apart without parsing rustls' wording.
//!
//! Each also gets a code a handler can match on, the same `TLS_*` codes the MariaDB and Redis
//! drivers set (`TLS_UNTRUSTED_CERTIFICATE`, `TLS_HOST_NAME_MISMATCH`, `TLS_CERTIFICATE_EXPIRED`,
//! `TLS_NOT_OFFERED`, …).
//!
//! tokio-postgres reports "the server refuses TLS" and "no channel binding" with fixed texts
//! of its own (its error kinds are private); the tests pin both, so a version that rewords them
//! fails a test instead of silently losing the advice.

use std::error::Error as StdError;
use std::io;

use pool_driver::ConnArgs;
use rustls::{CertificateError, Error as TlsError};

use super::SslMode;

/// tokio-postgres' message when the server answers the SSLRequest with `N` under `require`.
const SERVER_REFUSES_TLS: &str = "server does not support TLS";

/// tokio-postgres' message when `channel_binding=require` could not be honoured.
const NO_CHANNEL_BINDING: &str = "server did not use channel binding";

/// Describes `err` if it is a TLS or channel-binding failure, with its `TLS_*` code; `None`
/// for anything else. `host` is the name the certificate was checked against, `encrypted`
/// whether the session was under TLS when it failed.
pub(crate) fn describe(
    err: &tokio_postgres::Error,
    mode: SslMode,
    host: &str,
    encrypted: bool,
    args: &ConnArgs,
) -> Option<(String, &'static str)> {
    if let Some(tls) = rustls_cause(err) {
        return Some((
            rustls_message(tls, mode, host, args),
            rustls_code(tls, args),
        ));
    }
    let innermost = causes(err).last().map(ToString::to_string);
    let text = match innermost.as_deref() {
        Some(SERVER_REFUSES_TLS) => format!(
            "the server refuses TLS (it answered the TLS request with 'N': is ssl = on in \
                 its postgresql.conf?), and sslmode={} needs it; use sslmode=prefer to fall \
                 back to an unencrypted connection",
            mode.as_str()
        ),
        Some(NO_CHANNEL_BINDING) => format!(
            "channel_binding=require, but the server did not use channel binding \
                 (SCRAM-SHA-256-PLUS): that needs an encrypted connection (this one was {}) \
                 and scram-sha-256 password authentication for this user (not trust, md5 or \
                 cert) on a server with ssl = on",
            if encrypted {
                "encrypted"
            } else {
                "not encrypted"
            }
        ),
        _ => return None,
    };
    let code = match innermost.as_deref() {
        Some(SERVER_REFUSES_TLS) => "TLS_NOT_OFFERED",
        _ => "TLS_NO_CHANNEL_BINDING",
    };
    Some((text, code))
}

/// The `TLS_*` code for a rustls failure (see the module doc).
fn rustls_code(error: &TlsError, args: &ConnArgs) -> &'static str {
    match error {
        TlsError::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer => "TLS_UNTRUSTED_CERTIFICATE",
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "TLS_HOST_NAME_MISMATCH"
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "TLS_CERTIFICATE_EXPIRED"
            }
            _ => "TLS_BAD_CERTIFICATE",
        },
        TlsError::AlertReceived(_) if args.get("sslcert").is_some() => {
            "TLS_CLIENT_CERTIFICATE_REFUSED"
        }
        TlsError::AlertReceived(_) => "TLS_CLIENT_CERTIFICATE_REQUIRED",
        _ => "TLS_FAILED",
    }
}

/// The error and its causes, outermost first, looking inside `io::Error`s (whose `source`
/// skips the error they wrap).
fn causes(err: &tokio_postgres::Error) -> Vec<&(dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut next = err.source();
    while let Some(cause) = next {
        out.push(cause);
        next = match cause
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => cause.source(),
        };
    }
    out
}

/// Whether `err` is the TLS handshake itself failing (a `rustls::Error` behind it), as opposed
/// to something after the handshake (the login, `target_session_attrs`, a dropped socket).
pub(crate) fn is_handshake_failure(err: &tokio_postgres::Error) -> bool {
    rustls_cause(err).is_some()
}

/// The `rustls::Error` behind `err`, if any.
fn rustls_cause(err: &tokio_postgres::Error) -> Option<&TlsError> {
    causes(err)
        .into_iter()
        .find_map(|cause| cause.downcast_ref::<TlsError>())
}

fn rustls_message(error: &TlsError, mode: SslMode, host: &str, args: &ConnArgs) -> String {
    match error {
        TlsError::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer => format!(
                "the server's certificate is untrusted (unknown CA): no CA in the sslrootcert \
                 file{} signed it; point sslrootcert at the CA that issued the server's \
                 certificate (sslmode={})",
                super::files::shown_path(args, "sslrootcert"),
                mode.as_str()
            ),
            CertificateError::NotValidForName => name_mismatch(host, &[]),
            CertificateError::NotValidForNameContext { presented, .. } => {
                name_mismatch(host, presented)
            }
            CertificateError::ExpiredContext { time, not_after } => format!(
                "the server's certificate has expired ({} ago; expired certificate); renew it \
                 on the server",
                ago(time.as_secs().saturating_sub(not_after.as_secs()))
            ),
            CertificateError::Expired => {
                "the server's certificate has expired (expired certificate); renew it on the \
                 server"
                    .to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!(
                    "the server's certificate is not valid yet ({certificate}); check the \
                     clocks of the server and of this machine"
                )
            }
            other => format!("the server's certificate was rejected: {other}"),
        },
        TlsError::AlertReceived(alert) => format!(
            "the server ended the TLS handshake with the alert {alert:?}: if it requires a \
             client certificate (cert authentication, clientcert=verify-ca/verify-full), give \
             sslcert and sslkey; if one was given, the server does not trust the CA that \
             issued it"
        ),
        other => format!("the TLS handshake failed: {other}"),
    }
}

fn name_mismatch(host: &str, presented: &[String]) -> String {
    let names = match presented {
        [] => String::new(),
        names => format!(
            " (it names {})",
            names
                .iter()
                .map(|n| plain_name(n))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "the server's certificate does not match the host name `{host}` (host name \
         mismatch){names}; sslmode=verify-full checks it: connect with a name the certificate \
         lists, or use sslmode=verify-ca to check only that a trusted CA signed it"
    )
}

/// A name as rustls lists it (`DnsName("db.example")`, `IpAddress(V4(…))`) without the
/// wrapping, where it has the simple form.
fn plain_name(name: &str) -> &str {
    name.strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .unwrap_or(name)
}

/// `seconds` as a person would say it: "3 days", "5 hours", "12 minutes", "40 seconds".
fn ago(seconds: u64) -> String {
    let (n, unit) = match seconds {
        s if s >= 2 * 86_400 => (s / 86_400, "days"),
        s if s >= 2 * 3_600 => (s / 3_600, "hours"),
        s if s >= 2 * 60 => (s / 60, "minutes"),
        s => (s, "seconds"),
    };
    format!("{n} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ages_read_plainly() {
        assert_eq!(plain_name("DnsName(\"wrong.example\")"), "wrong.example");
        assert_eq!(plain_name("IpAddress(V4(…))"), "IpAddress(V4(…))");
        assert_eq!(ago(86_406), "24 hours");
        assert_eq!(ago(3 * 86_400 + 5), "3 days");
        assert_eq!(ago(59), "59 seconds");
    }
}
