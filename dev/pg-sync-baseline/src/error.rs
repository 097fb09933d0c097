//! `postgres::Error` → [`DriverError`].
//!
//! The pool decides what to do with a connection from the error's kind alone: `Broken` closes it
//! on release, `Query` keeps it. So the mapping errs towards `Broken` whenever the protocol state
//! is in doubt: a closed socket, any I/O or protocol error, a FATAL or PANIC from the server, and
//! the SQLSTATEs that mean the session is gone (class 08, 57P01–57P03).
//!
//! Messages are the server's own text plus its DETAIL and HINT, with the SQLSTATE as the code.
//! They are built from the error only (never from the config or the arguments), and the
//! connection's secrets are scrubbed from them anyway, in case a server echoes one back.

use std::error::Error as _;
use std::io;

use pool_driver::{ConnArgs, DriverError, DriverErrorKind};
use postgres::error::{DbError, Severity};

/// Where the error happened, which decides the kind of errors that are not the server's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Opening the connection: failures are `Connect` (or `Timeout`).
    Connect,
    /// Running a statement on an open connection: failures are `Query` or `Broken`.
    Statement,
}

/// Maps a `postgres::Error` seen during `phase` on a connection opened with `args`.
pub(crate) fn map(err: &postgres::Error, phase: Phase, args: &ConnArgs) -> DriverError {
    let (kind, message, code) = match err.as_db_error() {
        Some(db) => (db_kind(db, phase), db_message(db), Some(db.code().code())),
        None if phase == Phase::Connect => {
            let message = format!("connecting to {}: {}", target(args), chain(err));
            (client_kind(err, phase), message, None)
        }
        None => (client_kind(err, phase), chain(err), None),
    };
    let error = DriverError::new(kind, args.scrub(&message));
    match code {
        Some(code) => error.with_code(code),
        None => error,
    }
}

/// Whether a server error ends the session.
fn db_kind(db: &DbError, phase: Phase) -> DriverErrorKind {
    let code = db.code().code();
    let fatal = matches!(
        db.parsed_severity(),
        Some(Severity::Fatal | Severity::Panic)
    );
    let session_gone = code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    match phase {
        // Authentication, unknown database, "the database system is starting up"...
        Phase::Connect => DriverErrorKind::Connect,
        Phase::Statement if fatal || session_gone => DriverErrorKind::Broken,
        Phase::Statement => DriverErrorKind::Query,
    }
}

/// The kind of an error the client raised itself. `postgres::Error` keeps its own kind private,
/// so this looks at what it exposes: `is_closed`, the source, and two fixed messages.
fn client_kind(err: &postgres::Error, phase: Phase) -> DriverErrorKind {
    let io_error = err.source().and_then(|s| s.downcast_ref::<io::Error>());
    if phase == Phase::Connect {
        return match io_error {
            Some(e) if e.kind() == io::ErrorKind::TimedOut => DriverErrorKind::Timeout,
            _ => DriverErrorKind::Connect,
        };
    }
    let text = err.to_string();
    if err.is_closed()
        || io_error.is_some()
        || text == "unexpected message from server"
        || text == "timeout waiting for server"
    {
        // An I/O, encoding or parse failure leaves the protocol state unknown.
        DriverErrorKind::Broken
    } else {
        // Parameter conversion, column decoding, parameter count: the session is intact.
        DriverErrorKind::Query
    }
}

/// The server's message in libpq's layout: message, then DETAIL and HINT when present.
fn db_message(db: &DbError) -> String {
    let mut message = db.message().to_owned();
    if let Some(detail) = db.detail() {
        message.push_str("\nDETAIL: ");
        message.push_str(detail);
    }
    if let Some(hint) = db.hint() {
        message.push_str("\nHINT: ");
        message.push_str(hint);
    }
    message
}

/// Where a connect went, `host:port` as the user gave them (never a secret).
fn target(args: &ConnArgs) -> String {
    let host = args
        .get("host")
        .or_else(|| args.get("hostaddr"))
        .unwrap_or("?");
    format!("{host}:{}", args.get("port").unwrap_or("5432"))
}

/// The error and its causes, `outer: inner: innermost`.
fn chain(err: &postgres::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
