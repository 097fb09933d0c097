//! `redis::RedisError` and server error replies → `DriverError`.
//!
//! The pool acts on the kind: `Connect`/`Timeout` while connecting, `Broken` when the
//! connection must be closed (any I/O error or timeout: a reply may be half-read, so the stream
//! is out of step), `Query` when the server refused a command and the session is fine. Messages
//! never hold a password: nothing here formats the connection info, and every message is
//! scrubbed of the arguments' secret values as a second line of defence.

use pool_driver::{ConnArgs, DriverError, DriverErrorKind};
use redis::RedisError;

/// Which operation failed: it decides the kind of the same underlying error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Opening a connection: a timeout is `Timeout`, everything else `Connect`.
    Connect,
    /// Using an open connection: I/O trouble is `Broken`, a refused command `Query`.
    Session,
}

/// Maps an error from the `redis` crate. `context` starts the message and must hold no secret.
pub(crate) fn map(err: &RedisError, phase: Phase, args: &ConnArgs, context: &str) -> DriverError {
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
