//! `redis::RedisError` and server error replies → `DriverError`.
//!
//! The pool acts on the kind: `Connect`/`Timeout` while connecting, `Broken` when the
//! connection must be closed (any I/O error or timeout: a reply may be half-read, so the stream
//! is out of step), `Query` when the server refused a command and the session is fine. Messages
//! never hold a password: nothing here formats the connection info, and every message is
//! scrubbed of the arguments' secret values as a second line of defence.

use pool_driver::{ConnArgs, DriverError, DriverErrorKind};
use redis::RedisError;

use crate::tls;

/// Which operation failed: it decides the kind of the same underlying error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Opening a connection: a timeout is `Timeout`, everything else `Connect`.
    Connect,
    /// Using an open connection: I/O trouble is `Broken`, a refused command `Query`.
    Session,
}

/// Maps an error from the `redis` crate. `context` starts the message and must hold no secret.
///
/// While connecting with TLS, a failed handshake becomes a `Connect` error that says what
/// failed and what to do, with a code a handler can match on ([`tls_failure`]).
pub(crate) fn map(err: &RedisError, phase: Phase, args: &ConnArgs, context: &str) -> DriverError {
    if phase == Phase::Connect {
        if let Some(error) = tls_failure(err, args, context) {
            return error;
        }
    }
    let broken = err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_unrecoverable_error();
    let kind = match phase {
        Phase::Connect if err.is_timeout() => DriverErrorKind::Timeout,
        Phase::Connect => DriverErrorKind::Connect,
        Phase::Session if broken => DriverErrorKind::Broken,
        Phase::Session => DriverErrorKind::Query,
    };
    let text = if err.is_timeout() {
        format!("timed out waiting for the server ({err})")
    } else {
        err.to_string()
    };
    let message = if context.is_empty() {
        text
    } else {
        format!("{context}: {text}")
    };
    let error = DriverError::new(kind, args.scrub(&message));
    match err.code() {
        Some(code) => error.with_code(code),
        None => error,
    }
}

/// A server's error reply (`-ERR …`, `-NOPERM …`): the command was refused, the session lives.
pub(crate) fn server(err: &RedisError, args: &ConnArgs, context: &str) -> DriverError {
    let text = server_text(err);
    let message = if context.is_empty() {
        text
    } else {
        format!("{context}: {text}")
    };
    let error = DriverError::new(DriverErrorKind::Query, args.scrub(&message));
    match err.code() {
        Some(code) => error.with_code(code),
        None => error,
    }
}

/// `CODE detail`, as the server sent it (an error reply converted with `RedisError::from`: the
/// `redis` crate does not export the reply's own error type).
pub(crate) fn server_text(err: &RedisError) -> String {
    match (err.code(), err.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_owned(),
        _ => err.to_string(),
    }
}

/// The error for using a connection that already saw a fatal error.
pub(crate) fn already_broken() -> DriverError {
    DriverError::new(
        DriverErrorKind::Broken,
        "the redis connection is broken (an earlier error ended its session)",
    )
}

/// A `Broken` error with `message` (already free of secrets).
pub(crate) fn broken(message: impl Into<String>) -> DriverError {
    DriverError::new(DriverErrorKind::Broken, message)
}

/// The `Connect` error for a failed TLS handshake (TLS on and a TLS cause found in `err`), or
/// `None`. The message is the context, the advice, then the underlying error (rustls' wording:
/// it names certificate fields and times, never key material); the code is
/// [`tls::Failure::code`] (`TLS_UNTRUSTED_CERTIFICATE`, `TLS_HOST_NAME_MISMATCH`, …).
pub(crate) fn tls_failure(err: &RedisError, args: &ConnArgs, context: &str) -> Option<DriverError> {
    // Without TLS no rustls error can arise; a text match would be something else.
    args.get("tls")?;
    let failure = tls::cause(err)?;
    Some(tls_error(failure, args, context, &err.to_string()))
}

/// The `Connect` error for `failure`: context, advice, then `detail` (no secrets in any).
pub(crate) fn tls_error(
    failure: tls::Failure,
    args: &ConnArgs,
    context: &str,
    detail: &str,
) -> DriverError {
    let message = format!("{context}: {} ({detail})", failure.advice());
    DriverError::new(DriverErrorKind::Connect, args.scrub(&message)).with_code(failure.code())
}

/// Whether the server hung up (reset, closed, or a write into a closed socket) — what a
/// TLS-only port does to a plain client's first bytes.
pub(crate) fn hung_up(err: &RedisError) -> bool {
    use std::io::ErrorKind;
    let io_kind = std::error::Error::source(err)
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    matches!(
        io_kind,
        Some(
            ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::UnexpectedEof
                | ErrorKind::BrokenPipe
        )
    ) || err.is_connection_dropped()
}
