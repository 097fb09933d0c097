//! [`RedisConn`]: an open `redis::Connection`, the uniform command surface on it, and what the
//! driver must know to reset it: whether it was touched, whether it is broken.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pool_driver::{ConnArgs, Connection, DriverError, Rows, Value};
use redis::{ConnectionLike, Value as Reply};

use crate::convert;
use crate::error::{self, Phase};
use crate::opts::{Handshake, SessionTimeouts};

/// A Redis connection: both the attached connection and the parked handle of
/// [`crate::RedisDriver`] (a `redis::Connection` is `Send`, so detaching needs no conversion).
pub struct RedisConn {
    conn: redis::Connection,
    broken: bool,
    /// Anything ran (or the native client was borrowed mutably) since open or the last reset.
    touched: bool,
    /// The session may have set its own client name (`CLIENT SETNAME`/`HELLO` ran, or native
    /// access):
    /// the reset then names it again, or clears the name.
    renamed: bool,
    /// The session may be subscribed, on RESP3 or otherwise changed in a way only `RESET` undoes
    /// (`SUBSCRIBE`-family, `HELLO`, `MONITOR`, `CLIENT TRACKING`/`REPLY` ran):
    /// the rollback-only cleanup cannot undo that, so it closes the connection instead.
    sticky: bool,
    session: SessionTimeouts,
    /// The bound on the driver's own exchanges (reset, rollback): the connect timeout.
    op_bound: Duration,
    handshake: Arc<Handshake>,
    /// Shared by every connection to the same server: set once the server said it has no
    /// `RESET` (Redis < 6.2), so later releases go straight to the rollback-only cleanup.
    no_reset: Arc<AtomicBool>,
    /// The arguments it was opened with, to scrub secrets from every message.
    args: Arc<ConnArgs>,
}

/// A [`RedisConn`] taken apart for one of the driver's exchanges (see `reset`).
pub(crate) struct Parts<'a> {
    pub(crate) raw: &'a mut redis::Connection,
    pub(crate) handshake: &'a Handshake,
    /// The session may have set its own name.
    pub(crate) renamed: bool,
    /// The session may hold state only `RESET` undoes.
    pub(crate) sticky: bool,
    /// The bound on the exchange.
    pub(crate) bound: Duration,
    pub(crate) args: &'a ConnArgs,
    /// Set when the server turns out to lack `RESET` (shared per server).
    pub(crate) no_reset: &'a AtomicBool,
}

impl RedisConn {
    pub(crate) fn new(
        conn: redis::Connection,
        session: SessionTimeouts,
        op_bound: Duration,
        handshake: Arc<Handshake>,
        no_reset: Arc<AtomicBool>,
        args: Arc<ConnArgs>,
    ) -> Self {
        Self {
            conn,
            broken: false,
            touched: false,
            renamed: false,
            sticky: false,
            session,
            op_bound,
            handshake,
            no_reset,
            args,
        }
    }

    pub(crate) fn is_touched(&self) -> bool {
        self.touched
    }

    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }

    pub(crate) fn args(&self) -> &ConnArgs {
        &self.args
    }

    /// Whether this server is known to lack `RESET`.
    pub(crate) fn server_lacks_reset(&self) -> bool {
        self.no_reset.load(Ordering::Relaxed)
    }

    /// The raw connection and what the driver's own exchanges need, borrowed at once.
    pub(crate) fn parts(&mut self) -> Parts<'_> {
        Parts {
            raw: &mut self.conn,
            handshake: &self.handshake,
            renamed: self.renamed,
            sticky: self.sticky,
            bound: self.op_bound,
            args: &self.args,
            no_reset: &self.no_reset,
        }
    }

    /// After a successful reset: as fresh as a new session, under the session's own timeouts
    /// again (the driver's exchange, or a handler through the native client, changed them).
    pub(crate) fn reset_done(&mut self) -> Result<(), DriverError> {
        self.restore_timeouts()?;
        self.touched = false;
        self.renamed = false;
        self.sticky = false;
        Ok(())
    }

    /// Puts the session's read and write timeouts back on the socket.
    pub(crate) fn restore_timeouts(&mut self) -> Result<(), DriverError> {
        let result = self
            .conn
            .set_read_timeout(self.session.read)
            .and_then(|()| self.conn.set_write_timeout(self.session.write));
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
        if self.is_broken() {
            return Err(error::already_broken());
        }
        let cmd = convert::command(sql, params)?;
        self.touched = true;
        self.note(sql, params);
        match self.conn.req_command(&cmd) {
            Ok(Reply::ServerError(e)) => Err(error::server(&e.into(), &self.args, "")),
            Ok(reply) => Ok(reply),
            Err(e) => {
                let mapped = error::map(&e, Phase::Session, &self.args, "");
                if mapped.is_fatal() {
                    self.broken = true;
                }
                Err(mapped)
            }
        }
    }

    /// Remembers what the command may leave behind that a reset must look after. The
    /// subcommand may be the second word of `sql` or the first parameter.
    fn note(&mut self, sql: &str, params: &[Value]) {
        let mut words = sql.split_whitespace();
        let command = words.next().unwrap_or("");
        let sub = words
            .next()
            .or_else(|| params.first().and_then(Value::as_str))
            .unwrap_or("");
        let is = |name: &str| command.eq_ignore_ascii_case(name);
        let client = |name: &str| is("CLIENT") && sub.eq_ignore_ascii_case(name);
        if is("HELLO") || client("SETNAME") {
            self.renamed = true;
        }
        if is("HELLO")
            || is("MONITOR")
            || is("SUBSCRIBE")
            || is("PSUBSCRIBE")
            || is("SSUBSCRIBE")
            || client("TRACKING")
            || client("REPLY")
        {
            self.sticky = true;
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
    /// the server close the connection (also through the native client).
    fn is_broken(&self) -> bool {
        self.broken || !self.conn.is_open()
    }

    fn native(&self) -> &dyn Any {
        &self.conn
    }

    /// Marks the session touched, renamed and (for the rollback-only cleanup, which cannot see
    /// RESP3 subscriptions) nothing more: the full reset undoes everything native code can do.
    fn native_mut(&mut self) -> &mut dyn Any {
        self.touched = true;
        self.renamed = true;
        &mut self.conn
    }

    fn native_type_name(&self) -> &'static str {
        std::any::type_name::<redis::Connection>()
    }

    fn needs_reset(&self) -> bool {
        self.touched
    }
}

/// Shows the state and the redacted arguments, never the password.
impl fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConn")
            .field("broken", &self.broken)
            .field("touched", &self.touched)
            .field("args", &*self.args)
            .finish()
    }
}
