//! The traits a driver implements.

use std::any::Any;
use std::time::Duration;

use crate::{ConnArgs, DriverError, Rows, Value};

/// How much session state `detach` clears before a connection is parked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ResetMode {
    /// Roll back any open transaction and reset all session state (roles, settings, temp
    /// tables, prepared statements, locks, variables). The default: nothing one request does
    /// with its session can reach the next request.
    #[default]
    Full,
    /// Only roll back an open transaction. For setups where a full reset is wrong or wasted,
    /// such as transaction-mode PgBouncer, where the server session is not the client's.
    RollbackOnly,
}

/// A database driver: how to open, detach, attach and check connections.
///
/// The pool never holds one of its locks while calling any of these methods, so a driver may
/// block (within the bounds it is given) without stalling other users of the pool.
///
/// `Conn` is the attached connection a thread uses; the pool hands it out inside a guard that
/// stays on the thread that opened it (the guard is not `Send`). `Handle` is the parked form,
/// moved to whichever thread calls `open` next. Both must be `Send`, because the pool's stack
/// is shared between threads; a client with real thread affinity keeps it behind the handle
/// and re-binds it in `attach`.
///
/// A driver that cannot detach returns `false` from [`Driver::can_detach`]; the pool then closes
/// every released connection and connects fresh on every `open` (TDBC's fallback). Its
/// `detach`/`attach`/`connected` are never called and may simply return errors.
pub trait Driver: Send + Sync + 'static {
    /// The attached connection, used by one thread at a time.
    type Conn: Connection + Send;
    /// The detached, parked form of a connection, movable between threads.
    type Handle: Send + 'static;

    /// The name users pass to `pool::open` (for example `"postgres"`).
    fn name(&self) -> &str;

    /// Parses user-supplied arguments. The default accepts libpq-style `key=value` strings and
    /// `scheme://user:password@host:port/dbname?key=value` URLs; override it to add aliases
    /// (see [`ConnArgs::rename`]) or reject unknown options early.
    fn parse_args(&self, args: &str) -> Result<ConnArgs, DriverError> {
        ConnArgs::parse(args)
    }

    /// Opens a fresh connection. Must give up after `timeout`.
    fn connect(&self, args: &ConnArgs, timeout: Duration) -> Result<Self::Conn, DriverError>;

    /// Rolls back any open transaction, resets session state as `reset` says, and returns the
    /// parkable handle. An error means the connection is not fit to be reused; the pool closes it.
    fn detach(&self, conn: Self::Conn, reset: ResetMode) -> Result<Self::Handle, DriverError>;

    /// Turns a parked handle back into a usable connection on the calling thread.
    fn attach(&self, handle: Self::Handle) -> Result<Self::Conn, DriverError>;

    /// Is the server behind this handle still there? Must answer within `timeout` (a ping with
    /// a read timeout, never an unbounded wait). `false` makes the pool close the handle.
    fn connected(&self, handle: &mut Self::Handle, timeout: Duration) -> bool;

    /// Whether `detach`/`attach` work at all. Defaults to `true`.
    fn can_detach(&self) -> bool {
        true
    }
}

/// An attached connection: the uniform SQL surface every driver offers, plus its native client.
pub trait Connection: 'static {
    /// Runs a statement and returns the number of rows it affected.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DriverError>;

    /// Runs a query and returns all its rows.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Rows, DriverError>;

    /// True once the connection saw an error that makes it unusable (the server closed it,
    /// the socket broke, the server is shutting down). A broken connection is closed on
    /// release instead of being parked.
    fn is_broken(&self) -> bool;

    /// The driver's own client (for example `postgres::Client`), for everything the uniform
    /// surface lacks. The pool downcasts it for `Conn::native::<T>()`.
    ///
    /// Reaching the native client counts as using the session, through `&` as well as `&mut`
    /// (a shared reference can still change socket options, or run statements through a
    /// client with interior mutability): from then on [`Connection::needs_reset`] must say
    /// `true` unless the driver can prove nothing changed. Keep the flag in a `Cell`.
    fn native(&self) -> &dyn Any;

    /// Mutable access to the driver's own client.
    fn native_mut(&mut self) -> &mut dyn Any;

    /// The type name of the native client, used in the error for a mismatched downcast.
    fn native_type_name(&self) -> &'static str;

    /// Bounds every statement run from now on, through `execute` and `query` and through the
    /// native client where the driver can (its docs say how far), to `timeout` (`None`: no
    /// bound). The pool calls it on every `open` with the pool's `statement_timeout`, and
    /// `Conn::set_statement_timeout` for one lease.
    ///
    /// On expiry the driver cancels the statement on the server (bounded: a silent server
    /// cannot hold the caller much past the deadline), then returns
    /// [`DriverErrorKind::StatementTimeout`](crate::DriverErrorKind::StatementTimeout). If the
    /// server acknowledged the cancel and the session is idle again, the connection stays
    /// usable (its release resets it as usual); otherwise it is marked broken, so the pool
    /// closes it. A cancel must never reach a later statement.
    ///
    /// Returns whether the driver enforces the bound. The default does not (`false`): the pool
    /// then warns once per pool that statements there are unbounded.
    fn set_statement_timeout(&mut self, timeout: Option<Duration>) -> bool {
        let _ = timeout;
        false
    }

    /// Whether anything could have changed the session since it was opened or last reset (a
    /// statement ran, the native client was reached, by `native` or `native_mut`). `false`
    /// promises that
    /// [`Driver::detach`] needs no I/O for it, so the pool detaches it on the releasing thread;
    /// otherwise the reset runs on the pool's resetter thread and `release` returns at once.
    /// Defaults to `true` (always reset in the background).
    fn needs_reset(&self) -> bool {
        true
    }
}
