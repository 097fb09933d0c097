//! The one error type of this crate.
//!
//! Every failure says what to do next: a missing binary names the Debian package that provides it,
//! a server that did not come up carries the tail of its own log.

use std::fmt;
use std::io;

/// Why a throwaway server could not be started, queried or stopped.
#[derive(Debug)]
pub enum ServerError {
    /// A program this crate needs is not installed.
    MissingBinary {
        /// The program that was looked for, e.g. `initdb` or `mariadbd`.
        binary: String,
        /// The Debian package that provides it, e.g. `postgresql` or `mariadb-client`.
        debian_package: &'static str,
    },
    /// A file system or process operation failed.
    Io {
        /// What was being done, e.g. `creating the temporary directory`.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A server process exited or did not become ready in time.
    StartFailed {
        /// What went wrong, e.g. `postgres exited with exit status: 1`.
        what: String,
        /// The last lines of the server's log.
        log_tail: String,
    },
    /// A helper command (`initdb`, `psql`, `mariadb`, ...) failed.
    Command {
        /// The command line, for a human to re-run.
        command: String,
        /// Its exit status as text.
        status: String,
        /// Its standard error (trimmed).
        stderr: String,
    },
    /// A test certificate or key could not be made.
    Certificate {
        /// What was being made and why it failed.
        what: String,
    },
}

impl ServerError {
    /// Wraps an [`io::Error`] with a description of what was being attempted.
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> ServerError {
        ServerError::Io {
            what: what.into(),
            source,
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::MissingBinary {
                binary,
                debian_package,
            } => write!(
                f,
                "`{binary}` not found: install the Debian package `{debian_package}` \
                 (apt-get install {debian_package})"
            ),
            ServerError::Io { what, source } => write!(f, "{what}: {source}"),
            ServerError::StartFailed { what, log_tail } => {
                write!(
                    f,
                    "server did not start: {what}\n--- server log (tail) ---\n{log_tail}"
                )
            }
            ServerError::Command {
                command,
                status,
                stderr,
            } => write!(f, "`{command}` failed ({status}): {stderr}"),
            ServerError::Certificate { what } => write!(f, "test certificates: {what}"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
