//! The one error type of the pool.
//!
//! Every variant carries what a caller needs to decide what to do, and its message says what
//! happened and what to do about it. Connection arguments only ever appear redacted (passwords
//! replaced by `***`), and driver messages are scrubbed of the key's secrets, so neither
//! `Display` nor `Debug` can leak a password into a log.

use std::fmt;
use std::time::Duration;

use pool_driver::{DriverError, DriverErrorKind};

/// Everything `pool` can report.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No driver is registered under this name.
    UnknownDriver {
        /// The name asked for.
        name: String,
        /// The names that are registered.
        registered: Vec<String>,
    },
    /// `register` was called twice with the same driver name.
    DriverAlreadyRegistered {
        /// The name.
        name: String,
    },
    /// The connection arguments could not be parsed.
    InvalidArgs {
        /// The driver.
        driver: String,
        /// What is wrong (never the arguments themselves).
        message: String,
    },
    /// The settings passed to `configure` cannot be honoured.
    InvalidSettings {
        /// What is wrong.
        message: String,
    },
    /// Opening a connection failed.
    Connect {
        /// Which pool, redacted.
        pool: String,
        /// The driver's error (the server's message, scrubbed of secrets).
        source: DriverError,
    },
    /// `open` waited `acquire_timeout` at the limit and no connection came free.
    Timeout(Box<TimeoutDetail>),
    /// `open` at the limit from a thread that holds every connection in use: waiting could
    /// never end, so it fails at once.
    WouldDeadlock {
        /// Which pool, redacted.
        pool: String,
        /// How many this thread holds.
        held_by_this_thread: usize,
        /// The pool's limit.
        max_open: usize,
    },
    /// `open` at the limit found `max_waiting` callers already waiting: it fails at once instead
    /// of queueing (load shedding). Answer 503 and let the client retry later.
    TooManyWaiting {
        /// Which pool, redacted.
        pool: String,
        /// Callers waiting when this one was refused.
        waiting: usize,
        /// The pool's `max_waiting`.
        max_waiting: usize,
    },
    /// A statement failed; the connection may still be usable unless the driver marked it broken.
    Query(DriverError),
    /// A statement ran past its deadline (`Settings::statement_timeout`, or
    /// `Conn::set_statement_timeout` for this lease). The driver cancelled it on the server;
    /// the connection goes back to the pool on release if the server acknowledged the cancel,
    /// and is closed otherwise. Transient: answer 503 (or 504) and let the client retry.
    StatementTimeout {
        /// The deadline the statement ran past.
        timeout: Duration,
        /// What the driver saw (the server's cancel error, or that the server stayed silent).
        source: DriverError,
    },
    /// `native::<T>()` asked for a type the driver does not have.
    NativeType {
        /// The type asked for.
        requested: &'static str,
        /// The type the driver offers.
        actual: &'static str,
    },
    /// The pool was shut down while this call was waiting.
    ShutDown,
}

/// What `Error::Timeout` reports about the pool when the wait ended.
#[derive(Debug, Clone)]
pub struct TimeoutDetail {
    /// Which pool, redacted.
    pub pool: String,
    /// How long the caller waited.
    pub waited: Duration,
    /// Connections held by callers.
    pub in_use: usize,
    /// Connections parked (normally zero at a timeout).
    pub idle: usize,
    /// Connects in flight.
    pub opening: usize,
    /// Other callers still waiting.
    pub waiting: usize,
    /// The limit.
    pub max_open: usize,
    /// Where the longest-held connection was opened, and for how long it has been held.
    pub longest_held: Option<(String, Duration)>,
    /// How many connections of this pool the waiting thread itself holds.
    pub held_by_this_thread: usize,
    /// The last connect error for this key, if any (scrubbed).
    pub last_connect_error: Option<String>,
}

impl Error {
    /// True for errors worth retrying later (answer 503 with `Retry-After`): timeouts,
    /// connect failures, load shedding, a shut-down pool, and a statement that failed because
    /// its connection broke or timed out (the pool closes that connection; the next `open` gets
    /// a working one). False for what retrying cannot fix: a statement the server rejected,
    /// wrong arguments or settings, an unknown driver, `WouldDeadlock`.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Timeout(_)
            | Error::Connect { .. }
            | Error::TooManyWaiting { .. }
            | Error::StatementTimeout { .. }
            | Error::ShutDown => true,
            Error::Query(e) => {
                matches!(e.kind(), DriverErrorKind::Broken | DriverErrorKind::Timeout)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownDriver { name, registered } => write!(
                f,
                "no driver named `{name}` is registered; registered drivers: {}. \
                 Check the name, enable its cargo feature, or call pool::register first",
                if registered.is_empty() {
                    "none".to_owned()
                } else {
                    registered.join(", ")
                }
            ),
            Error::DriverAlreadyRegistered { name } => {
                write!(
                    f,
                    "a driver named `{name}` is already registered; register each driver once"
                )
            }
            Error::InvalidArgs { driver, message } => {
                write!(f, "invalid connection arguments for `{driver}`: {message}")
            }
            Error::InvalidSettings { message } => write!(f, "invalid pool settings: {message}"),
            Error::Connect { pool, source } => write!(
                f,
                "could not connect ({pool}): {source}. Check that the server is up and the \
                 arguments are right; the pool retries on the next open"
            ),
            Error::Timeout(d) => {
                write!(
                    f,
                    "no connection free after waiting {:.1?} ({}): {} in use, {} parked, \
                     {} opening, {} other callers waiting, limit {}",
                    d.waited, d.pool, d.in_use, d.idle, d.opening, d.waiting, d.max_open
                )?;
                if let Some((at, held)) = &d.longest_held {
                    write!(
                        f,
                        "; the longest-held connection was opened at {at}, {held:.1?} ago"
                    )?;
                }
                if d.held_by_this_thread > 0 {
                    write!(
                        f,
                        "; this thread itself holds {} of them (release before opening again)",
                        d.held_by_this_thread
                    )?;
                }
                if let Some(e) = &d.last_connect_error {
                    write!(f, "; last connect error: {e}")?;
                }
                f.write_str(
                    ". Raise max_open or acquire_timeout, or find who holds connections too long",
                )
            }
            Error::WouldDeadlock {
                pool,
                held_by_this_thread,
                max_open,
            } => write!(
                f,
                "this thread already holds {held_by_this_thread} of the {max_open} connections \
                 allowed ({pool}) and asked for another: waiting would never end. Release a \
                 connection first, or raise max_open"
            ),
            Error::TooManyWaiting {
                pool,
                waiting,
                max_waiting,
            } => write!(
                f,
                "too many callers waiting for a connection ({pool}): {waiting} already wait and \
                 max_waiting is {max_waiting}; shed this request (503) and retry later, or raise \
                 max_open or max_waiting"
            ),
            Error::Query(e) => write!(f, "query failed: {e}"),
            Error::StatementTimeout { timeout, source } => write!(
                f,
                "statement timeout after {timeout:.1?}: {source}. \
                 Find what it waited for (a lock, a slow plan, a silent server), or raise \
                 statement_timeout (or Conn::set_statement_timeout for this one query)"
            ),
            Error::NativeType { requested, actual } => write!(
                f,
                "this connection's native client is `{actual}`, not `{requested}`"
            ),
            Error::ShutDown => {
                f.write_str("the pool was shut down; open again to start a fresh one")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. }
            | Error::Query(source)
            | Error::StatementTimeout { source, .. } => Some(source),
            _ => None,
        }
    }
}
