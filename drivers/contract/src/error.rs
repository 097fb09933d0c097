//! The error a driver reports.

use std::fmt;

/// What kind of failure a driver saw; the pool maps these onto its own `Error` variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DriverErrorKind {
    /// The arguments could not be parsed or are not supported.
    InvalidArgs,
    /// Connecting failed: refused, unreachable, authentication failed.
    Connect,
    /// A bounded operation (connect, ping) ran out of time.
    Timeout,
    /// The server rejected a statement; the connection is still usable.
    Query,
    /// A statement ran past its deadline ([`crate::Connection::set_statement_timeout`]) and the
    /// driver stopped waiting for it: it asked the server to cancel it (PostgreSQL's cancel
    /// request, MariaDB's `KILL QUERY`) or closed the connection (Redis, or a server that did
    /// not answer the cancel in time). [`crate::Connection::is_broken`] says which: a
    /// connection whose statement the server acknowledged cancelling stays usable.
    StatementTimeout,
    /// The connection is unusable (server gone, socket closed, fatal server error).
    Broken,
    /// The driver cannot do what was asked (for example detach).
    Unsupported,
    /// From `detach`: the connection works, but holds session state the driver cannot reset
    /// (for example a MariaDB role after `SET ROLE`). The pool closes it instead of parking it;
    /// the caller's work is not affected, so `release` still succeeds.
    NotReusable,
}

/// An error from a driver. The message must never contain a password: drivers build it from
/// the server's message and the redacted arguments only.
#[derive(Clone, PartialEq, Eq)]
pub struct DriverError {
    kind: DriverErrorKind,
    message: String,
    code: Option<String>,
}

impl DriverError {
    /// A new error of `kind` with a message for people.
    pub fn new(kind: DriverErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            code: None,
        }
    }

    /// Attaches the server's error code (SQLSTATE for PostgreSQL, error number for MySQL).
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> DriverErrorKind {
        self.kind
    }

    /// The message, without kind or code.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The server's error code, if it sent one.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// Whether the connection that produced this error must not be reused.
    pub fn is_fatal(&self) -> bool {
        self.kind == DriverErrorKind::Broken
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} (code {code})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl fmt::Debug for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("code", &self.code)
            .finish()
    }
}

impl std::error::Error for DriverError {}
