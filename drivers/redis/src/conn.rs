//! [`RedisConn`]: an open `redis::Connection`, the uniform command surface on it, and what the
//! driver must know to reset it: whether anything ran that may have changed it, whether it is
//! broken.
//!
//! It never guesses *which* state a session holds from the text it ran: a list of "commands
//! that set state" misses what the text does not show (queued in `MULTI` and run by `EXEC`,
//! sent through the native client, a command the list forgot). The one fact kept is whether
//! something ran that the *server* does not class as data-only (`commands.rs`: `MULTI`,
//! `SELECT`, `CLIENT`, scripts, an unknown command all count), or the native client was
//! reached; the reset of such a session is unconditional (`RESET` and the whole handshake), and
//! the rollback-only cleanup decides from what the server reports (see `crate::reset`).

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pool_driver::{ConnArgs, Connection, DriverError, DriverErrorKind, Rows, Value};
use redis::{ConnectionLike, Value as Reply};

use crate::commands::DataOnly;
use crate::convert;
use crate::error::{self, Phase};
use crate::opts::{Handshake, SessionTimeouts};
use crate::reset::ServerFacts;
use crate::sentinel::{self, Bound};

/// A Redis connection: both the attached connection and the parked handle of
/// [`crate::RedisDriver`] (a `redis::Connection` is `Send`, so detaching needs no conversion).
pub struct RedisConn {
    conn: redis::Connection,
    broken: bool,
    /// Something ran that may have changed the session since open or the last reset: a command
    /// the server does not class as data-only (`commands.rs`), or the native client was reached
    /// at all. Only a changed session is reset on release; one that ran data-only commands is
    /// parked with no I/O.
    ///
    /// A `Cell`, because `native(&self)` must set it too: `redis::Connection::set_read_timeout`
    /// and `set_write_timeout` take `&self`, so a handler can change the socket through a
    /// shared borrow, and only the reset puts the session's own timeouts back. (`Cell<bool>` is
    /// `Send`, which is all the pool needs: a connection is used by one thread at a time.)
    changed: Cell<bool>,
    /// The server's data-only commands (`None`: it could not say, so every command changes).
    data_only: Option<Arc<DataOnly>>,
    /// The socket timeouts the arguments asked for (none unless `read_timeout`/`write_timeout`).
    session: SessionTimeouts,
    /// The statement deadline (`Connection::set_statement_timeout`): the socket's read and
    /// write timeouts are the shorter of it and `session`'s.
    deadline: Option<Duration>,
    /// The bound on the driver's own exchanges (reset, rollback): the connect timeout.
    op_bound: Duration,
    handshake: Arc<Handshake>,
    /// Shared by every connection to the same server: whether it lacks `RESET` (Redis < 6.2,
    /// so later releases go straight to the rollback-only cleanup) or cannot report a
    /// session's state.
    facts: Arc<ServerFacts>,
    /// The arguments it was opened with, to scrub secrets from every message.
    args: Arc<ConnArgs>,
    /// For a Sentinel key: the service and master this connection was opened to. Checked
    /// before every command and by `is_broken`: once the Sentinels name another master, the
    /// connection is broken (see `crate::sentinel`).
    sentinel: Option<Bound>,
}

/// A [`RedisConn`] taken apart for one of the driver's exchanges (see `reset`).
pub(crate) struct Parts<'a> {
    pub(crate) raw: &'a mut redis::Connection,
    pub(crate) handshake: &'a Handshake,
    /// The bound on the exchange.
    pub(crate) bound: Duration,
    pub(crate) args: &'a ConnArgs,
    /// What the driver knows about the server (shared per server).
    pub(crate) facts: &'a ServerFacts,
}

impl RedisConn {
    pub(crate) fn new(
        conn: redis::Connection,
        session: SessionTimeouts,
        op_bound: Duration,
        handshake: Arc<Handshake>,
        facts: Arc<ServerFacts>,
        args: Arc<ConnArgs>,
        data_only: Option<Arc<DataOnly>>,
    ) -> Self {
        Self {
            conn,
            broken: false,
            changed: Cell::new(false),
            data_only,
            session,
            deadline: None,
            op_bound,
            handshake,
            facts,
            args,
            sentinel: None,
        }
    }

    /// Ties the connection to the Sentinel service whose master it was opened to.
    pub(crate) fn bind_sentinel(&mut self, bound: Bound) {
        self.sentinel = Some(bound);
    }

    /// Whether the connection came through the Sentinels (its role is checked by the
    /// liveness check).
    pub(crate) fn via_sentinel(&self) -> bool {
        self.sentinel.is_some()
    }

    /// Whether the Sentinels moved the master away from this connection's node.
    fn master_moved(&self) -> bool {
        self.sentinel.as_ref().is_some_and(Bound::stale)
    }

    /// **For tests only** (the negative control of the leak tests): forgets that the session
    /// changed, so its next release parks it without a reset, as a wrong command class would.
    /// A leak test must then see the state reach the next user.
    #[doc(hidden)]
    pub fn negative_control_forget_changes(&mut self) {
        self.changed.set(false);
    }

    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }

    pub(crate) fn args(&self) -> &ConnArgs {
        &self.args
    }

    /// Whether this server is known to lack `RESET`.
    pub(crate) fn server_lacks_reset(&self) -> bool {
        self.facts.no_reset.load(Ordering::Relaxed)
    }

    /// The raw connection and what the driver's own exchanges need, borrowed at once.
    pub(crate) fn parts(&mut self) -> Parts<'_> {
        Parts {
            raw: &mut self.conn,
            handshake: &self.handshake,
            bound: self.op_bound,
            args: &self.args,
            facts: &self.facts,
        }
    }

    /// After a successful reset: as fresh as a new session, under the session's own timeouts
    /// again (the driver's exchange, or a handler through the native client, changed them).
    pub(crate) fn reset_done(&mut self) -> Result<(), DriverError> {
        self.restore_timeouts()?;
        self.changed.set(false);
        Ok(())
    }

    /// The socket timeouts commands run under: the session's, shortened to the deadline.
    fn command_timeouts(&self) -> SessionTimeouts {
        let shorter = |own: Option<Duration>| match (own, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        SessionTimeouts {
            read: shorter(self.session.read),
            write: shorter(self.session.write),
        }
    }

    /// Whether the statement deadline is what bounds a command's read (not a shorter
    /// `read_timeout` of the arguments).
    fn deadline_bounds_reads(&self) -> bool {
        self.deadline.is_some() && self.command_timeouts().read == self.deadline
    }

    /// Puts the session's read and write timeouts (shortened to the deadline) back on the
    /// socket.
    pub(crate) fn restore_timeouts(&mut self) -> Result<(), DriverError> {
        let timeouts = self.command_timeouts();
        let result = self
            .conn
            .set_read_timeout(timeouts.read)
            .and_then(|()| self.conn.set_write_timeout(timeouts.write));
        result.map_err(|e| {
            self.broken = true;
            error::map(
                &e,
                Phase::Session,
                &self.args,
                "restoring the socket timeouts",
            )
        })
    }

    /// Runs one command of the uniform surface (see the crate docs).
    fn run(&mut self, sql: &str, params: &[Value]) -> Result<Reply, DriverError> {
        if let Some(bound) = self.sentinel.as_ref().filter(|b| b.stale()) {
            // Not sent: on the old master it would be acknowledged and then lost.
            self.broken = true;
            return Err(bound.moved());
        }
        if self.is_broken() {
            return Err(error::already_broken());
        }
        let cmd = convert::command(sql, params)?;
        // Decided by the command's name, which `convert::command` sends as the command
        // itself, against the server's own classes: never by what the arguments say.
        let name = sql.split_whitespace().next().unwrap_or_default();
        if !self.data_only.as_ref().is_some_and(|d| d.contains(name)) {
            self.changed.set(true);
        }
        match self.conn.req_command(&cmd) {
            Ok(Reply::ServerError(e)) => {
                let e = e.into();
                let refused = error::server(&e, &self.args, "");
                if self.sentinel.is_some() && sentinel::demoted(e.code()) {
                    return Err(self.demoted(refused));
                }
                Err(refused)
            }
            Ok(reply) => Ok(reply),
            Err(e) if e.is_timeout() && self.deadline_bounds_reads() => {
                // Redis has no cancel: the reply may still come, so the connection cannot be
                // used again.
                self.broken = true;
                Err(DriverError::new(
                    DriverErrorKind::StatementTimeout,
                    "past its deadline, the command could not be cancelled (Redis has no \
                     cancel), so the connection was closed",
                ))
            }
            Err(e) => {
                let mapped = error::map(&e, Phase::Session, &self.args, "");
                if self.sentinel.is_some() && sentinel::demoted(e.code()) {
                    return Err(self.demoted(mapped));
                }
                if mapped.is_fatal() {
                    self.broken = true;
                }
                Err(mapped)
            }
        }
    }

    /// Closes a Sentinel key's connection to a node that is no longer (or soon no longer) the
    /// master, before the native client is handed out: `QUIT` (the server closes its end once
    /// it answered), then one more read, which finds the end of the stream and makes the
    /// `redis` crate shut the socket down and call the connection closed. Each step within the
    /// driver's bound; whatever fails, the connection is marked broken (closed on release).
    fn close_for_native(&mut self) {
        self.broken = true;
        if !self.conn.is_open() {
            return;
        }
        let bound = Some(self.op_bound.max(Duration::from_millis(1)));
        let quit = self
            .conn
            .set_read_timeout(bound)
            .and_then(|()| self.conn.set_write_timeout(bound))
            .and_then(|()| self.conn.req_command(&redis::cmd("QUIT")));
        if quit.is_ok() {
            // The end of the stream: the crate shuts the socket down (`is_open` false).
            let _ = self.conn.recv_response();
        }
        tracing::debug!(
            args = %self.args,
            closed = !self.conn.is_open(),
            "redis: the native client of a connection to a replaced master was asked for; \
             the connection was closed first"
        );
    }

    /// A Sentinel key's connection got `READONLY` or `MASTERDOWN`: its node is no longer the
    /// master. Broken (closed on release, the parked ones checked before hand-out), with the
    /// server's code and a word on what happened.
    fn demoted(&mut self, refused: DriverError) -> DriverError {
        self.broken = true;
        let service = self.sentinel.as_ref().map_or("", Bound::service);
        let error = DriverError::new(
            DriverErrorKind::Broken,
            format!(
                "{} (this node is no longer the master of `{service}`: the connection is closed \
                 and the next one asks the Sentinels; the command did not run, so it may be \
                 retried)",
                refused.message()
            ),
        );
        match refused.code() {
            Some(code) => error.with_code(code),
            None => error,
        }
    }
}

impl Connection for RedisConn {
    /// Runs the command; the count is an integer reply (negative as 0), 1 for `OK` and other
    /// status replies, 0 for nil, an aggregate's length.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DriverError> {
        self.run(sql, params).map(|reply| convert::count(&reply))
    }

    /// Runs the command; one column `value`, one row per element of an aggregate reply, one row
    /// for anything else (nil → `Null`).
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Rows, DriverError> {
        self.run(sql, params).map(convert::rows)
    }

    /// Broken after an I/O error or timeout through this surface, or once the `redis` crate saw
    /// the server close the connection (also through the native client). A Sentinel key's
    /// connection is also broken once the Sentinels moved the master away from its node, or
    /// began replacing it (one atomic load while nothing changed), and after `READONLY` or
    /// `MASTERDOWN`.
    fn is_broken(&self) -> bool {
        self.broken || !self.conn.is_open() || self.master_moved()
    }

    /// The deadline is the socket's read and write timeout (the shorter of it and the
    /// arguments' own `read_timeout`/`write_timeout`), so it bounds the native client's
    /// commands too. Redis cannot cancel a command: one past its deadline (a blocking
    /// `BLPOP key 0`, a slow script, a silent server) closes the connection. Give blocking
    /// commands a server timeout shorter than the deadline (`BLPOP key 5`), or raise the
    /// lease's deadline above it with `Conn::set_statement_timeout`.
    fn set_statement_timeout(&mut self, timeout: Option<Duration>) -> bool {
        if self.deadline != timeout {
            self.deadline = timeout;
            // A socket that refuses a timeout is broken: `restore_timeouts` marks it.
            let _ = self.restore_timeouts();
        }
        true
    }

    /// Marks the session used: even a shared borrow can change it (the socket timeouts).
    ///
    /// No command can be sent through a shared `redis::Connection` (they need `&mut`), so a
    /// Sentinel key's connection to a replaced master is not closed here (see `native_mut`).
    fn native(&self) -> &dyn Any {
        self.changed.set(true);
        &self.conn
    }

    /// Marks the session used: native code can do anything to it, which the release's reset
    /// undoes (or, rollback-only, refuses: see `crate::reset::rollback`).
    ///
    /// A Sentinel key's connection whose node the Sentinels replaced (or are replacing: the
    /// fence) is closed first (`QUIT`, then the end of the stream read, so the `redis` crate
    /// shuts its socket) and marked broken: every command sent through the native client then
    /// fails, none reaches the old master. The check is made here only: a native connection
    /// obtained before the switch and kept through the lease is not fenced mid-lease.
    fn native_mut(&mut self) -> &mut dyn Any {
        self.changed.set(true);
        if self.master_moved() {
            self.close_for_native();
        }
        &mut self.conn
    }

    fn native_type_name(&self) -> &'static str {
        std::any::type_name::<redis::Connection>()
    }

    /// Only when something ran that may have changed the session (see `changed`): a
    /// session that ran only data-only commands is parked with no I/O.
    fn needs_reset(&self) -> bool {
        self.changed.get()
    }
}

/// Shows the state and the redacted arguments, never the password.
impl fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConn")
            .field("broken", &self.broken)
            .field("changed", &self.changed.get())
            .field("args", &*self.args)
            .field("sentinel", &self.sentinel)
            .finish()
    }
}
