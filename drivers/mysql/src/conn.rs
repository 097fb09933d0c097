//! [`MyConn`]: an open `mysql::Conn`, the uniform SQL surface on it, and its broken flag.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use pool_driver::{ConnArgs, Connection, DriverError, DriverErrorKind, Rows, Value};

use crate::convert::{self, Outcome};
use crate::deadline::{self, Fired, KillTarget, KILL_GRACE};
use crate::error::{self, Phase};
use crate::literals;
use crate::opts::SessionTimeouts;
use crate::reset::Identity;
use crate::socket;

/// How long closing a connection may block on its goodbye (`COM_STMT_CLOSE`s and `COM_QUIT`,
/// writes only). Normally they go straight into the socket buffer; the bound matters only for
/// a peer that vanished with the buffer full, which must not hang the thread that closes it.
const CLOSE_BOUND: Duration = Duration::from_millis(500);

/// A MySQL/MariaDB connection: both the attached connection and the parked handle of
/// [`crate::MysqlDriver`] (a `mysql::Conn` is `Send`, so detaching needs no conversion).
///
/// **Statement deadlines** ([`Connection::set_statement_timeout`], which the pool calls on
/// every `open`): every statement of `execute` and `query` is killed on the server
/// (`KILL QUERY` from a side connection) at its deadline, and the caller is back within the
/// deadline plus a grace of `min(1 s, connect timeout)`; see the `deadline` module's source
/// documentation. Statements run through the native client (`native_mut`) are *not* bounded
/// (the session's own socket timeouts apply, none by default), except through
/// [`MyConn::with_deadline`], which only driver-level users can reach: the pool hands out the
/// `mysql::Conn` itself.
///
/// Once an error ends its session (the server went away, a reply timed out half-read, the server
/// killed it) the connection is marked broken: every later call fails fast without touching the
/// socket, and the pool closes it instead of parking it.
pub struct MyConn {
    conn: mysql::Conn,
    broken: bool,
    /// The socket timeouts the user's statements run under (none unless asked for).
    session: SessionTimeouts,
    /// The bound on the driver's own reset and rollback: the connect timeout it was opened with.
    op_bound: Duration,
    /// For the server version, which decides whether error 4031 is fatal (MySQL) or not (MariaDB).
    version: (u16, u16, u16),
    /// The arguments it was opened with, to scrub secrets from every message.
    args: ConnArgs,
    /// What the server said the session's role, database and account were right after
    /// connect: what every full reset must find again (see `reset.rs`).
    identity: Identity,
    /// Whether the server may keep statement profiles; cleared once it refuses `SHOW PROFILES`.
    profiling: bool,
    /// Whether the connection runs over TLS (see `tls.rs`): `PREFERRED` may have fallen back.
    encrypted: bool,
    /// Whether anything may have changed the session since it was opened or last reset: a
    /// statement ran, or the native client was reached (`native` or `native_mut`). An untouched
    /// session has nothing to reset, so release parks it with no round trip. Which statement
    /// ran does not matter: the reset asks the server what it kept. A `Cell`, because
    /// `native(&self)` sets it: through `&mysql::Conn` nobody can run a statement, but the
    /// socket is reachable (`AsRawFd`), and the driver cannot prove nothing changed.
    touched: Cell<bool>,
    /// The bound on each statement of the uniform API (`None`: none); see `deadline.rs`.
    statement_timeout: Option<Duration>,
    /// How long past a deadline the kill and the probe may take: `min(1 s, connect timeout)`.
    grace: Duration,
    /// Where a statement past its deadline is killed from: a side connection like this one.
    kill_target: Arc<KillTarget>,
    /// The timeouts on the socket now (`None`: unknown), so that each is set only when it
    /// changes. A `Cell`, because `native(&self)` puts the session's own back.
    applied: Cell<Option<SessionTimeouts>>,
}

impl MyConn {
    pub(crate) fn new(
        conn: mysql::Conn,
        session: SessionTimeouts,
        op_bound: Duration,
        args: ConnArgs,
        identity: Identity,
        kill_target: KillTarget,
        encrypted: bool,
    ) -> Self {
        let version = conn.server_version();
        Self {
            conn,
            broken: false,
            session,
            op_bound,
            version,
            args,
            identity,
            profiling: true,
            encrypted,
            touched: Cell::new(false),
            statement_timeout: None,
            grace: KILL_GRACE.min(op_bound),
            kill_target: Arc::new(kill_target),
            applied: Cell::new(Some(session)),
        }
    }

    /// Whether the connection is encrypted with TLS. With `ssl-mode=PREFERRED` (the default)
    /// a server without TLS gets a plain connection; a unix socket is never encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// The server's id for this session (`CONNECTION_ID()`), for logs and `KILL`.
    pub fn connection_id(&self) -> u32 {
        self.conn.connection_id()
    }

    pub(crate) fn op_bound(&self) -> Duration {
        self.op_bound
    }

    pub(crate) fn server_version(&self) -> (u16, u16, u16) {
        self.version
    }

    /// What the session was when it was opened (see [`Identity`]).
    pub(crate) fn identity(&self) -> &Identity {
        &self.identity
    }

    pub(crate) fn has_profiling(&self) -> bool {
        self.profiling
    }

    /// The server refused `SHOW PROFILES`: it keeps none, later resets do not ask.
    pub(crate) fn profiling_refused(&mut self) {
        self.profiling = false;
    }

    /// `text` without the secret values of the connection's arguments.
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.args.scrub(text)
    }

    /// Whether the session was used since it was opened or last reset.
    pub(crate) fn is_touched(&self) -> bool {
        self.touched.get()
    }

    /// After a successful reset: the session is as fresh as a new one.
    pub(crate) fn reset_done(&mut self) {
        self.touched.set(false);
    }

    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Runs one of the driver's own short operations with both socket timeouts set to `bound`,
    /// then puts the session's timeouts back. A timeout leaves a reply half-read, so it marks
    /// the connection broken (as every fatal error does).
    pub(crate) fn bounded<T>(
        &mut self,
        bound: Duration,
        what: &str,
        op: impl FnOnce(&mut mysql::Conn) -> mysql::Result<T>,
    ) -> Result<T, DriverError> {
        if self.broken {
            return Err(error::already_broken());
        }
        let both = SessionTimeouts {
            read: Some(bound),
            write: Some(bound),
        };
        if let Err(e) = self.apply(both) {
            self.broken = true;
            return Err(DriverError::new(
                DriverErrorKind::Broken,
                format!("{what}: cannot set the socket timeout: {e}"),
            ));
        }
        let result = op(&mut self.conn);
        let restored = self.apply(self.session);
        let value = result.map_err(|e| self.fail(&e, what))?;
        if let Err(e) = restored {
            self.broken = true;
            return Err(DriverError::new(
                DriverErrorKind::Broken,
                format!("{what}: cannot restore the socket timeout: {e}"),
            ));
        }
        Ok(value)
    }

    /// Puts `timeouts` on the socket unless they are there already (one `setsockopt` each,
    /// about a microsecond, but a statement runs in a few dozen).
    fn apply(&self, timeouts: SessionTimeouts) -> std::io::Result<()> {
        if self.applied.get() == Some(timeouts) {
            return Ok(());
        }
        self.applied.set(None);
        socket::set_timeouts(&self.conn, timeouts)?;
        self.applied.set(Some(timeouts));
        Ok(())
    }

    /// The socket timeouts a statement runs under: the session's, each capped at the deadline
    /// plus the grace, so that a silent server cannot hold the caller longer.
    fn statement_timeouts(&self) -> SessionTimeouts {
        let Some(timeout) = self.statement_timeout else {
            return self.session;
        };
        let cap = timeout.saturating_add(self.grace.min(deadline::ANSWER_PATIENCE));
        let capped = |own: Option<Duration>| Some(own.map_or(cap, |own| own.min(cap)));
        SessionTimeouts {
            read: capped(self.session.read),
            write: capped(self.session.write),
        }
    }

    /// Maps an error from this connection and marks it broken if the error was fatal.
    fn fail(&mut self, err: &mysql::Error, context: &str) -> DriverError {
        let mapped = error::map(err, Phase::Session, Some(self.version), &self.args, context);
        if mapped.is_fatal() {
            self.broken = true;
        }
        mapped
    }

    /// Runs `sql` through the text protocol, its parameters as literals (`literals.rs`): one
    /// round trip, nothing prepared on the server.
    fn run(
        &mut self,
        sql: &str,
        params: &[Value],
        keep_rows: bool,
    ) -> Result<Outcome, DriverError> {
        if self.broken {
            return Err(error::already_broken());
        }
        self.touched.set(true);
        // Parameters go into the text as literals (`literals.rs`): one round trip, nothing
        // prepared on the server for the release's reset to drop.
        let text;
        let sql = if params.is_empty() {
            sql
        } else {
            text = literals::interpolate(sql, params)?;
            text.as_str()
        };
        self.under_deadline(|c| c.query_iter(sql).and_then(|r| convert::drain(r, keep_rows)))
    }

    /// Runs `op` on the native client under the statement deadline
    /// ([`Connection::set_statement_timeout`]) exactly as `execute` and `query` run: at the
    /// deadline the statement is killed on the server (`KILL QUERY` from a side connection),
    /// and a statement past its deadline fails with `StatementTimeout`, whatever `op` got.
    /// Meant for one statement (or one exchange) per call: the deadline covers the whole
    /// call. Without a deadline, `op` simply runs. (A `QueryResult` that `op` drops is read to
    /// its end by the crate, so the session is idle again when `op` returns.)
    pub fn with_deadline<T>(
        &mut self,
        op: impl FnOnce(&mut mysql::Conn) -> mysql::Result<T>,
    ) -> Result<T, DriverError> {
        if self.broken {
            return Err(error::already_broken());
        }
        self.touched.set(true);
        self.under_deadline(op)
    }

    /// Runs `op` under the statement deadline (see `deadline.rs`).
    fn under_deadline<T>(
        &mut self,
        op: impl FnOnce(&mut mysql::Conn) -> mysql::Result<T>,
    ) -> Result<T, DriverError> {
        if let Err(e) = self.apply(self.statement_timeouts()) {
            self.broken = true;
            return Err(DriverError::new(
                DriverErrorKind::Broken,
                format!("cannot set the socket timeouts: {e}"),
            ));
        }
        let Some(timeout) = self.statement_timeout else {
            let result = op(&mut self.conn);
            return result.map_err(|e| self.fail(&e, ""));
        };
        let deadline = Instant::now() + timeout;
        let armed = deadline::arm(
            deadline,
            self.grace,
            self.conn.connection_id(),
            self.kill_target.clone(),
        );
        let result = op(&mut self.conn);
        match armed.disarm() {
            Fired::No => match result {
                // No kill was issued (the watchdog could not run, or lagged): the socket's
                // timeout ended the wait, and the reply is half-read.
                Err(e) if error::is_timeout(&e) => {
                    self.broken = true;
                    Err(self.expired(timeout))
                }
                result => result.map_err(|e| self.fail(&e, "")),
            },
            Fired::Killed => {
                let answered = match &result {
                    Ok(_) => true,
                    Err(e) => !self.fail(e, "").is_fatal(),
                };
                if !answered || !self.probe(deadline + self.grace) {
                    self.broken = true;
                }
                Err(self.expired(timeout))
            }
            Fired::Failed => {
                self.broken = true;
                Err(self.expired(timeout))
            }
        }
    }

    /// Before the native client is handed out: the session's own socket timeouts, so native
    /// statements run as they always did (see [`MyConn`]). A failure leaves the statement
    /// bound on the socket, which is still a bound.
    fn native_timeouts(&self) {
        if let Err(e) = self.apply(self.session) {
            tracing::debug!(error = %e, "mysql: cannot put the session's socket timeouts back");
        }
    }

    /// After a kill: `DO 0` on this session, done by `until`, makes sure no kill of ours is
    /// left for a later statement (see `deadline.rs`). A pending kill fails the probe with
    /// 1317 (`ER_QUERY_INTERRUPTED`) and is gone; any other answer but success means the
    /// session cannot be trusted.
    fn probe(&mut self, until: Instant) -> bool {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match self.bounded(left, "probing the session after a kill", |c| {
            c.query_drop("DO 0")
        }) {
            Ok(()) => true,
            Err(e) => e.code() == Some(QUERY_INTERRUPTED),
        }
    }

    /// The error for a statement that ran past `timeout`, saying whether the session lives on.
    fn expired(&self, timeout: Duration) -> DriverError {
        let message = if self.broken {
            format!(
                "the statement ran past its deadline ({timeout:?}) and the server did not \
                 confirm killing it in time; the connection was closed"
            )
        } else {
            format!(
                "the statement ran past its deadline ({timeout:?}) and the server killed it \
                 (KILL QUERY); the session is still usable"
            )
        };
        DriverError::new(DriverErrorKind::StatementTimeout, message)
    }
}

/// `ER_QUERY_INTERRUPTED`: what a statement that `KILL QUERY` reached answers.
const QUERY_INTERRUPTED: &str = "1317";

impl Connection for MyConn {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DriverError> {
        self.run(sql, params, false).map(|o| o.affected)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Rows, DriverError> {
        self.run(sql, params, true).map(|o| o.rows)
    }

    fn is_broken(&self) -> bool {
        self.broken
    }

    /// Bounds every statement of `execute` and `query` (see `deadline.rs`: `KILL QUERY` from a
    /// side connection at the deadline, the caller back by the deadline plus the grace). Not
    /// the native client's: see [`MyConn`].
    fn set_statement_timeout(&mut self, timeout: Option<Duration>) -> bool {
        self.statement_timeout = timeout.map(|t| t.max(Duration::from_millis(1)));
        true
    }

    /// Marks the session used, as `native_mut` does: through `&mysql::Conn` no statement can
    /// run, but its socket can be reached (`AsRawFd`) and its options changed, so the next
    /// release runs the full reset, which also puts the socket timeouts back.
    fn native(&self) -> &dyn Any {
        self.touched.set(true);
        self.native_timeouts();
        &self.conn
    }

    /// Marks the session used: the native client can run anything (`select_db`, `SET ROLE`,
    /// `change_user`…); the reset finds out what from the server.
    fn native_mut(&mut self) -> &mut dyn Any {
        self.touched.set(true);
        self.native_timeouts();
        &mut self.conn
    }

    fn native_type_name(&self) -> &'static str {
        std::any::type_name::<mysql::Conn>()
    }

    /// The same rule `detach` applies: an untouched session is parked with no round trip.
    fn needs_reset(&self) -> bool {
        self.touched.get()
    }
}

/// Shows the session id and state, never the options: `mysql::Conn`'s own `Debug` prints the
/// password.
impl fmt::Debug for MyConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MyConn")
            .field("connection_id", &self.conn.connection_id())
            .field("broken", &self.broken)
            .field("encrypted", &self.encrypted)
            .field("args", &self.args)
            .finish()
    }
}

impl Drop for MyConn {
    fn drop(&mut self) {
        // `mysql::Conn`'s own drop runs next and writes its goodbye; bound those writes.
        let _ = socket::set_bound(&self.conn, CLOSE_BOUND);
    }
}
