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
/// While connecting, a TLS failure becomes a `Connect` error that says what failed and what to
/// do, with a code a handler can match on ([`tls_failure`]); so does a plain connection the
/// server hung up on during the handshake, the mark of a port that speaks only TLS.
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

/// The `Connect` error for a failed TLS handshake, or for a plain connect the server hung up on
/// (a TLS-only port drops a client whose first bytes are not a TLS hello), or `None` when `err`
/// is neither. The message is the context, the advice, then the underlying error (rustls'
/// wording: it names certificate fields and times, never key material); the code is
/// [`tls::Failure::code`] (`TLS_UNTRUSTED_CERTIFICATE`, `TLS_HOST_NAME_MISMATCH`, …, and
/// `TLS_REQUIRED` for the plain hang-up).
pub(crate) fn tls_failure(err: &RedisError, args: &ConnArgs, context: &str) -> Option<DriverError> {
    let tls_on = args.get("tls").is_some();
    let (code, advice) = match tls::cause(err) {
        Some(failure) if tls_on => (failure.code(), failure.advice()),
        // Without TLS no rustls error can arise; the crate's text matched something else.
        Some(_) => return None,
        None if !tls_on && hung_up(err) => (
            "TLS_REQUIRED",
            "the server closed the connection during the handshake: a port that speaks only \
             TLS (redis tls-port) does that to plain clients; connect with rediss:// (or \
             tls=on and `cacert`)",
        ),
        None => return None,
    };
    let message = format!("{context}: {advice} ({err})");
    Some(DriverError::new(DriverErrorKind::Connect, args.scrub(&message)).with_code(code))
}

/// The server hung up: reset, closed (end of file) or a write into a closed socket.
fn hung_up(err: &RedisError) -> bool {
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
