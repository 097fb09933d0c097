//! `tokio_postgres::Error` on an open connection → [`DriverError`] (a failed connect is
//! described by `connect/failure.rs`, which uses [`db_message`] and [`chain`] from here).
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
use tokio_postgres::error::{DbError, Severity};

/// Maps a `tokio_postgres::Error` seen on a connection opened with `args`.
pub(crate) fn map(err: &tokio_postgres::Error, args: &ConnArgs) -> DriverError {
    let (kind, message, code) = match err.as_db_error() {
        Some(db) => (db_kind(db), db_message(db), Some(db.code().code())),
        None => (client_kind(err), chain(err), None),
    };
    let error = DriverError::new(kind, args.scrub(&message));
    match code {
        Some(code) => error.with_code(code),
        None => error,
    }
}

/// Whether a server error ends the session.
fn db_kind(db: &DbError) -> DriverErrorKind {
    let code = db.code().code();
    let fatal = matches!(
        db.parsed_severity(),
        Some(Severity::Fatal | Severity::Panic)
    );
    let session_gone = code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    match fatal || session_gone {
        true => DriverErrorKind::Broken,
        false => DriverErrorKind::Query,
    }
}

/// The kind of an error the client raised itself. `tokio_postgres::Error` keeps its own kind
/// private, so this looks at what it exposes: `is_closed`, the source, and a fixed message.
fn client_kind(err: &tokio_postgres::Error) -> DriverErrorKind {
    let io_error = err.source().and_then(|s| s.downcast_ref::<io::Error>());
    if err.is_closed() || io_error.is_some() || err.to_string() == "unexpected message from server"
    {
        // An I/O, encoding or parse failure leaves the protocol state unknown.
        DriverErrorKind::Broken
    } else {
        // Parameter conversion, column decoding, parameter count: the session is intact.
        DriverErrorKind::Query
    }
}

/// The server's message in libpq's layout: message, then DETAIL and HINT when present.
pub(crate) fn db_message(db: &DbError) -> String {
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

/// The error and its causes, `outer: inner: innermost`.
pub(crate) fn chain(err: &tokio_postgres::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
