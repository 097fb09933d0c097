//! Failed host attempts → one [`DriverError`] that says what failed where, with advice.
//!
//! The kind is `Timeout` when the pool's deadline ran out or every attempt hit
//! `connect_timeout`, and `Connect` otherwise; the code is the SQLSTATE of the last server
//! refusal, or the `TLS_*` code of the last TLS failure. One attempt gives its own message; several (more hosts, or a TLS fallback) are
//! listed, each after its host, so a user sees why each was given up. The messages are built
//! from the errors and the redacted arguments only, and scrubbed of the password anyway.

use std::time::Duration;

use pool_driver::{ConnArgs, DriverError, DriverErrorKind};

use crate::error;
use crate::tls::{self, SslMode};

/// One failed attempt at one host.
#[derive(Debug)]
pub(super) struct Failure {
    /// `host:port` as written (never a secret).
    pub(super) target: String,
    /// The `sslmode` the user asked for.
    pub(super) mode: SslMode,
    /// Whether a TLS handshake was started.
    pub(super) encrypted: bool,
    pub(super) cause: Cause,
}

#[derive(Debug)]
pub(super) enum Cause {
    /// tokio-postgres' error, and the name the certificate was checked against.
    Pg(tokio_postgres::Error, String),
    /// The attempt ran past `connect_timeout`.
    TimedOut(Duration),
    /// The server answered but is not what `target_session_attrs` asks for (or its answer to
    /// the role check made no sense); why, without secrets.
    WrongRole(String),
}

/// SQLSTATE `invalid_authorization_specification`: among others, pg_hba.conf has no line
/// for this connection, which for a plain connection often means "TLS only".
const NO_HBA_ENTRY: &str = "28000";

/// The error for a connect that failed after `failures` (`overall`: the pool's deadline, if
/// it ran out).
pub(super) fn report(
    failures: &[Failure],
    args: &ConnArgs,
    overall: Option<Duration>,
) -> DriverError {
    let described: Vec<(String, Option<String>)> =
        failures.iter().map(|f| describe(f, args)).collect();
    let timed_out = overall.is_some()
        || (!failures.is_empty()
            && failures
                .iter()
                .all(|f| matches!(f.cause, Cause::TimedOut(_))));
    let listed = failures.len() > 1 || overall.is_some();
    let parts: Vec<String> = failures
        .iter()
        .zip(&described)
        .map(|(failure, (text, code))| match (listed, code) {
            (true, _) => format!("{}: {text}", failure.target),
            // The server's own message is about this connection already.
            (false, Some(code)) if !code.starts_with("TLS_") => text.clone(),
            (false, _) => format!("connecting to {}: {text}", failure.target),
        })
        .collect();
    let message = match (overall, parts.is_empty()) {
        (Some(timeout), true) => {
            format!("connecting to postgres ({args}) took longer than {timeout:?}")
        }
        (Some(timeout), false) => format!(
            "connecting to postgres ({args}) took longer than {timeout:?} (before that: {})",
            parts.join("; ")
        ),
        (None, false) => parts.join("; "),
        (None, true) => format!("connecting to postgres ({args}) failed: no host to try"),
    };
    let kind = match timed_out {
        true => DriverErrorKind::Timeout,
        false => DriverErrorKind::Connect,
    };
    let error = DriverError::new(kind, args.scrub(&message));
    match described.iter().rev().find_map(|(_, code)| code.clone()) {
        Some(code) => error.with_code(code),
        None => error,
    }
}

/// The message and SQLSTATE (for a server's refusal) of one failure, without the host.
fn describe(failure: &Failure, args: &ConnArgs) -> (String, Option<String>) {
    let err = match &failure.cause {
        Cause::TimedOut(bound) => {
            return (
                format!("no answer within connect_timeout ({bound:?})"),
                None,
            )
        }
        Cause::WrongRole(why) => return (why.clone(), None),
        Cause::Pg(err, _) => err,
    };
    if let Some(db) = err.as_db_error() {
        let mut message = error::db_message(db);
        let code = db.code().code();
        if code == NO_HBA_ENTRY && !failure.encrypted {
            message.push_str(&format!(
                "\n(pool: this connection was not encrypted (sslmode={}); if the server \
                 requires TLS for it (a hostssl line in pg_hba.conf), use sslmode=require or \
                 stronger)",
                failure.mode.as_str()
            ));
        }
        return (message, Some(code.to_owned()));
    }
    let host = match &failure.cause {
        Cause::Pg(_, host) => host.as_str(),
        Cause::TimedOut(_) | Cause::WrongRole(_) => "",
    };
    match tls::describe(err, failure.mode, host, failure.encrypted, args) {
        Some((described, code)) => (described, Some(code.to_owned())),
        None => (error::chain(err), None),
    }
}
