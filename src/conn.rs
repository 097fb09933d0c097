//! `Conn`: the guard a caller holds between `open` and `release`.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use crate::error::Error;
use pool_driver::{Connection, DriverError, DriverErrorKind, Rows, Value};

/// A leased connection as the guard sees it: the attached connection, and the way back to the
/// pool it came from. Implemented by the pool's entry type for each driver.
pub(crate) trait Lease {
    fn connection(&mut self) -> Option<&mut dyn Connection>;
    fn connection_ref(&self) -> Option<&dyn Connection>;
    /// Resets and parks the connection (or closes it); consumes the lease.
    fn release(self: Box<Self>) -> Result<(), Error>;
    /// The pool's redacted label, for `Debug`.
    fn label(&self) -> &str;
    /// Counts a statement that ran past its deadline in the pool's stats.
    fn count_statement_timeout(&self);
}

/// A connection from the pool, attached to the thread that opened it.
///
/// Release it with [`Conn::release`] to see a reset error, or just drop it: `Drop` does the
/// same, so a `?` or a panic can never leak a connection. A connection dropped while its thread
/// panics, or that saw a fatal error, is closed instead of parked.
///
/// `Conn` is not `Send`: a connection is released on the thread that attached it, and the next
/// `open` on any thread attaches it again.
pub struct Conn {
    lease: Option<Box<dyn Lease>>,
    /// The deadline the driver was given for this lease's statements (for the error).
    statement_timeout: Option<Duration>,
    _attached_to_this_thread: PhantomData<*const ()>,
}

fn released() -> Error {
    Error::Query(DriverError::new(
        DriverErrorKind::Broken,
        "the connection was already released",
    ))
}

impl Conn {
    pub(crate) fn new(lease: Box<dyn Lease>) -> Self {
        Self {
            lease: Some(lease),
            statement_timeout: None,
            _attached_to_this_thread: PhantomData,
        }
    }

    /// Gives the driver the pool's statement deadline for this lease (every `open` does, so a
    /// lease's own override never reaches the next one). Whether the driver enforces it.
    pub(crate) fn apply_statement_timeout(&mut self, timeout: Option<Duration>) -> bool {
        self.statement_timeout = timeout;
        match self.lease.as_mut().and_then(|l| l.connection()) {
            Some(conn) => conn.set_statement_timeout(timeout),
            None => false,
        }
    }

    /// Sets the deadline of this lease's statements (`None`: no bound), instead of the pool's
    /// `statement_timeout`, until the connection is released: for the one slow report query.
    ///
    /// ```no_run
    /// # fn f() -> Result<(), pool::Error> {
    /// # use std::time::Duration;
    /// let mut db = pool::open("postgres", "host=localhost dbname=shop")?;
    /// db.set_statement_timeout(Some(Duration::from_secs(120)))?;
    /// let report = db.query("SELECT region, sum(total) FROM orders GROUP BY region", &[])?;
    /// db.release()?;
    /// # Ok(()) }
    /// ```
    ///
    /// Fails with [`Error::InvalidSettings`] when the driver cannot bound statements and a
    /// deadline was asked for (all built-in drivers can).
    pub fn set_statement_timeout(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        if timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::InvalidSettings {
                message: "a statement timeout must be longer than zero (or None for no bound)"
                    .into(),
            });
        }
        self.connection()?;
        if !self.apply_statement_timeout(timeout) && timeout.is_some() {
            return Err(Error::InvalidSettings {
                message: "this driver cannot bound its statements; \
                          Conn::set_statement_timeout has no effect on it"
                    .into(),
            });
        }
        Ok(())
    }

    /// Maps a statement's error: a deadline that passed becomes `Error::StatementTimeout`,
    /// counted and logged.
    fn statement_error(&self, error: DriverError) -> Error {
        if error.kind() != DriverErrorKind::StatementTimeout {
            return Error::Query(error);
        }
        let timeout = self.statement_timeout.unwrap_or_default();
        if let Some(lease) = &self.lease {
            lease.count_statement_timeout();
            crate::guard::log(|| {
                tracing::warn!(pool = lease.label(), ?timeout, %error, "a statement ran past its deadline");
            });
        }
        Error::StatementTimeout {
            timeout,
            source: error,
        }
    }

    fn connection(&mut self) -> Result<&mut dyn Connection, Error> {
        self.lease
            .as_mut()
            .and_then(|l| l.connection())
            .ok_or_else(released)
    }

    /// Runs a statement with `params` (`$1`/`?` placeholders, as the driver expects) and
    /// returns the number of rows it affected.
    pub fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, Error> {
        let outcome = self.connection()?.execute(sql, params);
        outcome.map_err(|e| self.statement_error(e))
    }

    /// Runs a query with `params` and returns every row.
    pub fn query(&mut self, sql: &str, params: &[Value]) -> Result<Rows, Error> {
        let outcome = self.connection()?.query(sql, params);
        outcome.map_err(|e| self.statement_error(e))
    }

    /// The driver's own client, for example `postgres::Client` or `mysql::Conn`.
    /// Asking for another type is an error, not a panic.
    pub fn native<T: Any>(&self) -> Result<&T, Error> {
        let conn = self
            .lease
            .as_ref()
            .and_then(|l| l.connection_ref())
            .ok_or_else(released)?;
        let actual = conn.native_type_name();
        conn.native().downcast_ref::<T>().ok_or(Error::NativeType {
            requested: std::any::type_name::<T>(),
            actual,
        })
    }

    /// Mutable access to the driver's own client. Work done through it is reset on release
    /// like everything else; if it breaks the connection, the reset fails and the connection
    /// is closed instead of parked.
    pub fn native_mut<T: Any>(&mut self) -> Result<&mut T, Error> {
        let conn = self.connection()?;
        let actual = conn.native_type_name();
        conn.native_mut()
            .downcast_mut::<T>()
            .ok_or(Error::NativeType {
                requested: std::any::type_name::<T>(),
                actual,
            })
    }

    /// Rolls back, resets and parks the connection for the next `open` on any thread.
    ///
    /// Returns `Ok` in every case today: once the request's work is done there is nothing
    /// left for the caller to act on. Whatever happens to the connection after that is the
    /// pool's business: it broke, its holder panicked, the pool is shut down, its reset failed
    /// (the server went away or timed out mid-reset: [`crate::Stats::reset_failures`], logged
    /// at WARN), or its session holds state the driver cannot reset ([`crate::Stats::not_reusable`],
    /// for example a MariaDB role): the connection is closed instead of parked, its room comes
    /// back, and the work already committed stands. A handler can write `db.release()?` without
    /// turning a write that happened into an error response. The `Result` is kept so that a
    /// future failure a caller could act on can be reported without breaking callers.
    pub fn release(mut self) -> Result<(), Error> {
        match self.lease.take() {
            Some(lease) => lease.release(),
            None => Ok(()),
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            if let Err(error) = lease.release() {
                crate::guard::log(|| {
                    tracing::warn!(%error, "connection dropped without release could not be reset; closed it");
                });
            }
        }
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.lease {
            Some(lease) => write!(f, "Conn({})", lease.label()),
            None => f.write_str("Conn(released)"),
        }
    }
}
