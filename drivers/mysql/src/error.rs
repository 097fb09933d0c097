//! `mysql::Error` → `DriverError`.
//!
//! The pool acts on the kind: `Connect`/`Timeout` while connecting, `Broken` when the connection
//! must be closed instead of parked, `Query` when the server refused a statement but the session
//! is fine. Messages carry the server's own text and error number (as the code) and never a
//! password: nothing here formats the options, and every message is scrubbed of the argument's
//! secret values as a second line of defence.

use std::io;

use mysql::{DriverError as MyDriverError, Error as MyError};
use pool_driver::{ConnArgs, DriverError, DriverErrorKind};

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
        Some(code) => error.with_code(code.to_string()),
        None => error,
    }
}

/// The kind, the message and the server's error number for `err`.
fn classify(
    err: &MyError,
    phase: Phase,
    version: Option<(u16, u16, u16)>,
) -> (DriverErrorKind, String, Option<u16>) {
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
            (kind, e.message.clone(), Some(e.code))
        }
        MyError::IoError(e) => io_error(e, connecting),
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
        MyError::UrlError(e) => (InvalidArgs, e.to_string(), None),
        // Conversions happen in this driver's own code paths only if someone uses `from_row`;
        // the connection itself is fine.
        MyError::FromValueError(_) | MyError::FromRowError(_) => (Query, err.to_string(), None),
    }
}

/// An I/O error: a timeout (`EAGAIN` is what a socket read timeout gives) or a lost connection.
fn io_error(e: &io::Error, connecting: bool) -> (DriverErrorKind, String, Option<u16>) {
    use DriverErrorKind::{Broken, Connect, Timeout};
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
}
