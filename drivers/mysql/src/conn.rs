//! [`MyConn`]: an open `mysql::Conn`, the uniform SQL surface on it, and its broken flag.

use std::any::Any;
use std::fmt;
use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::Params;
use pool_driver::{ConnArgs, Connection, DriverError, DriverErrorKind, Rows, Value};

use crate::convert::{self, Outcome};
use crate::error::{self, Phase};
use crate::opts::SessionTimeouts;
use crate::socket;

/// How long closing a connection may block on its goodbye (`COM_STMT_CLOSE`s and `COM_QUIT`,
/// writes only). Normally they go straight into the socket buffer; the bound matters only for
/// a peer that vanished with the buffer full, which must not hang the thread that closes it.
const CLOSE_BOUND: Duration = Duration::from_millis(500);

/// A MySQL/MariaDB connection: both the attached connection and the parked handle of
/// [`crate::MysqlDriver`] (a `mysql::Conn` is `Send`, so detaching needs no conversion).
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
    /// Set when the session may hold state that `COM_RESET_CONNECTION` does not undo: another
    /// current database (`USE`) or role (`SET ROLE`), or anything done through the native client.
    sticky_state: bool,
    /// Whether anything ran on the session (or the native client was borrowed mutably) since it
    /// was opened or last reset. An untouched session has nothing to reset, so release skips
    /// the round trip.
    touched: bool,
}

impl MyConn {
    pub(crate) fn new(
        conn: mysql::Conn,
        session: SessionTimeouts,
        op_bound: Duration,
        args: ConnArgs,
    ) -> Self {
        let version = conn.server_version();
        Self {
            conn,
            broken: false,
            session,
            op_bound,
            version,
            args,
            sticky_state: false,
            touched: false,
        }
    }

    /// The server's id for this session (`CONNECTION_ID()`), for logs and `KILL`.
    pub fn connection_id(&self) -> u32 {
        self.conn.connection_id()
    }

    pub(crate) fn op_bound(&self) -> Duration {
        self.op_bound
    }

    /// Whether the session may hold state a plain reset leaves behind (see [`Self::run`]).
    pub(crate) fn has_sticky_state(&self) -> bool {
        self.sticky_state
    }

    /// Whether the session was used since it was opened or last reset.
    pub(crate) fn is_touched(&self) -> bool {
        self.touched
    }

    /// After a successful reset: the session is as fresh as a new one.
    pub(crate) fn reset_done(&mut self) {
        self.touched = false;
    }

    /// After a reset that also cleared the sticky state.
    pub(crate) fn sticky_state_cleared(&mut self) {
        self.sticky_state = false;
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
        if let Err(e) = socket::set_bound(&self.conn, bound) {
            self.broken = true;
            return Err(DriverError::new(
                DriverErrorKind::Broken,
                format!("{what}: cannot set the socket timeout: {e}"),
            ));
        }
        let result = op(&mut self.conn);
        let restored = socket::set_timeouts(&self.conn, self.session);
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

    /// Maps an error from this connection and marks it broken if the error was fatal.
    fn fail(&mut self, err: &mysql::Error, context: &str) -> DriverError {
        let mapped = error::map(err, Phase::Session, Some(self.version), &self.args, context);
        if mapped.is_fatal() {
            self.broken = true;
        }
        mapped
    }

    /// Runs `sql`: the text protocol without parameters (one round trip, nothing prepared), the
    /// binary protocol with them (prepared once per connection, then cached by the `mysql` crate).
    fn run(
        &mut self,
        sql: &str,
        params: &[Value],
        keep_rows: bool,
    ) -> Result<Outcome, DriverError> {
        if self.broken {
            return Err(error::already_broken());
        }
        self.touched = true;
        if may_set_sticky_state(sql) {
            self.sticky_state = true;
        }
        let result = if params.is_empty() {
            self.conn
                .query_iter(sql)
                .and_then(|r| convert::drain(r, keep_rows))
        } else {
            let params = Params::Positional(params.iter().map(convert::param).collect());
            self.conn
                .exec_iter(sql, params)
                .and_then(|r| convert::drain(r, keep_rows))
        };
        result.map_err(|e| self.fail(&e, ""))
    }
}

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

    fn native(&self) -> &dyn Any {
        &self.conn
    }

    /// Marks the session as possibly holding sticky state: the native client can `select_db`
    /// or `SET ROLE`, so the next full reset is the thorough one.
    fn native_mut(&mut self) -> &mut dyn Any {
        self.sticky_state = true;
        self.touched = true;
        &mut self.conn
    }

    fn native_type_name(&self) -> &'static str {
        std::any::type_name::<mysql::Conn>()
    }

    /// The same rule `detach` applies: an untouched session is parked with no round trip.
    fn needs_reset(&self) -> bool {
        self.touched || self.sticky_state
    }
}

/// Whether `sql` may change what `COM_RESET_CONNECTION` keeps: the current database (`USE db`)
/// or the current role (`SET ROLE r`). Looks at words, ignoring case: any word `use`, or `role`
/// right after `set`. False positives (`WHERE note = 'use it'`) only make the next release use
/// the slower thorough reset; there are no false negatives for SQL sent through this API.
fn may_set_sticky_state(sql: &str) -> bool {
    let bytes = sql.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
    let mut previous: &[u8] = b"";
    let mut at = 0;
    while at < bytes.len() {
        if !is_word(bytes[at]) {
            at += 1;
            continue;
        }
        let start = at;
        while at < bytes.len() && is_word(bytes[at]) {
            at += 1;
        }
        let word = &bytes[start..at];
        if word.eq_ignore_ascii_case(b"use") {
            return true;
        }
        if word.eq_ignore_ascii_case(b"role") && previous.eq_ignore_ascii_case(b"set") {
            // `UPDATE t SET role = 'x'` assigns a column; `SET ROLE r` names a role.
            let next = bytes[at..].iter().find(|b| !b.is_ascii_whitespace());
            if !matches!(next, Some(b'=' | b':')) {
                return true;
            }
        }
        previous = word;
    }
    false
}

/// Shows the session id and state, never the options: `mysql::Conn`'s own `Debug` prints the
/// password.
impl fmt::Debug for MyConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MyConn")
            .field("connection_id", &self.conn.connection_id())
            .field("broken", &self.broken)
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

#[cfg(test)]
mod tests {
    use super::may_set_sticky_state;

    #[test]
    fn sticky_statements_are_noticed() {
        for sql in [
            "USE shop",
            "use`shop`",
            "SELECT 1; use other",
            "USE/**/x",
            "\tuse x",
            "SET ROLE admin",
            "set  role NONE",
            "SET/**/ROLE r",
        ] {
            assert!(may_set_sticky_state(sql), "{sql}");
        }
        for sql in [
            "SELECT user FROM users",
            "SELECT reuse, used FROM t",
            "SELECT role FROM members",
            "UPDATE t SET role = 'x'",
            "UPDATE t SET role:='x'",
            "SELECT 1",
            "house",
        ] {
            assert!(!may_set_sticky_state(sql), "{sql}");
        }
    }
}
