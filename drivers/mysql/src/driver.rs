//! [`MysqlDriver`]: connect, detach (rollback + reset), attach, and the bounded liveness check.

use std::time::Duration;

use mysql::prelude::Queryable;
use pool_driver::{ConnArgs, Driver, DriverError, DriverErrorKind, ResetMode};

use crate::conn::MyConn;
use crate::error::{self, Phase};
use crate::{opts, socket};

/// The `mysql` driver: MySQL and MariaDB through the `mysql` crate.
///
/// A connection detaches as itself (`Handle = MyConn`): `mysql::Conn` is `Send`, so parking it
/// needs no conversion, and `attach` does no I/O.
#[derive(Clone, Copy, Debug, Default)]
pub struct MysqlDriver;

impl Driver for MysqlDriver {
    type Conn = MyConn;
    type Handle = MyConn;

    fn name(&self) -> &str {
        "mysql"
    }

    /// Accepts `key=value` text and `mysql://`/`mariadb://` URLs, folds aliases (`database`,
    /// `db` → `dbname`; `username` → `user`; `pass` → `password`; `unix_socket`, `host=/path` →
    /// `socket`) so that every spelling of the same target shares one pool, and rejects unknown
    /// keys and malformed values now rather than at the first connect.
    fn parse_args(&self, args: &str) -> Result<ConnArgs, DriverError> {
        let mut parsed = ConnArgs::parse(args)?;
        opts::normalise(&mut parsed)?;
        Ok(parsed)
    }

    /// Connects exactly where the arguments say (TCP, or the unix socket given by `socket=`),
    /// with the TCP connect and every handshake read and write bounded by `timeout` (or a
    /// smaller `connect_timeout=`). A unix-socket `connect()` itself has no timeout in std; it
    /// fails or succeeds at once unless the server's listen backlog is full, and the handshake
    /// after it is bounded like TCP's.
    fn connect(&self, args: &ConnArgs, timeout: Duration) -> Result<MyConn, DriverError> {
        // Arguments that did not come through `parse_args` still get their aliases folded.
        let mut args = args.clone();
        opts::normalise(&mut args)?;
        let plan = opts::plan(&args, timeout)?;
        let context = format!("connecting to mysql at {}", opts::target(&args));
        let conn = mysql::Conn::new(plan.opts)
            .map_err(|e| error::map(&e, Phase::Connect, None, &args, &context))?;
        socket::set_timeouts(&conn, plan.session).map_err(|e| {
            DriverError::new(
                DriverErrorKind::Connect,
                format!("{context}: cannot set the socket timeouts: {e}"),
            )
        })?;
        let op_bound = timeout.max(Duration::from_millis(1));
        Ok(MyConn::new(conn, plan.session, op_bound, args))
    }

    /// `Full`: one `COM_RESET_CONNECTION` (the crate's `Conn::reset`, one round trip; it falls
    /// back to `COM_CHANGE_USER` on servers older than MySQL 5.7.3 / MariaDB 10.2.7). It rolls
    /// back, drops temporary tables, clears user variables, restores session variables to the
    /// global defaults, releases `GET_LOCK` locks and table locks, and deallocates prepared
    /// statements (the crate clears its statement cache to match). It keeps the current
    /// database and role, so a session that may have run `USE` or `SET ROLE` gets the thorough
    /// `COM_CHANGE_USER` and a role check instead. `RollbackOnly`: one
    /// `ROLLBACK`. Either runs under the connect timeout as a bound, so a hung server cannot
    /// hold a releasing thread; a reset that fails or times out returns a `Broken` error and the
    /// pool closes the connection (the server then rolls back on its own). A session on which
    /// nothing ran since it was opened or last reset is parked as it is, with no round trip.
    fn detach(&self, mut conn: MyConn, reset: ResetMode) -> Result<MyConn, DriverError> {
        if !conn.is_touched() && !conn.has_sticky_state() {
            // Nothing ran since the connection was opened or last reset: nothing to undo.
            return Ok(conn);
        }
        let bound = conn.op_bound();
        let outcome = match reset {
            ResetMode::Full => full_reset(&mut conn, bound),
            ResetMode::RollbackOnly => {
                conn.bounded(bound, "rolling back", |c| c.query_drop("ROLLBACK"))
            }
        };
        match outcome {
            Ok(()) => {
                conn.reset_done();
                Ok(conn)
            }
            Err(e) => {
                tracing::debug!(
                    connection_id = conn.connection_id(),
                    ?reset,
                    error = %e,
                    "mysql: reset on release failed; the connection will be closed"
                );
                conn.mark_broken();
                if e.kind() == DriverErrorKind::NotReusable {
                    return Err(e);
                }
                let broken = DriverError::new(DriverErrorKind::Broken, e.message());
                Err(match e.code() {
                    Some(code) => broken.with_code(code),
                    None => broken,
                })
            }
        }
    }

    /// No I/O: the handle is the connection.
    fn attach(&self, handle: MyConn) -> Result<MyConn, DriverError> {
        Ok(handle)
    }

    /// One `COM_PING` with the socket's read and write timeouts set to `timeout` for just that
    /// exchange (one write, one read), then put back. So the check is bounded even on a
    /// blackholed TCP path, while user queries keep running without a read timeout. A failed
    /// or late ping marks the handle broken.
    fn connected(&self, handle: &mut MyConn, timeout: Duration) -> bool {
        match handle.bounded(timeout, "pinging", |c| c.ping()) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(
                    connection_id = handle.connection_id(),
                    error = %e,
                    "mysql: ping failed"
                );
                handle.mark_broken();
                false
            }
        }
    }
}

/// `COM_RESET_CONNECTION`, or `COM_CHANGE_USER` plus a role check when the session may hold
/// state the former keeps.
///
/// Measured on MariaDB 10.11: `COM_RESET_CONNECTION` keeps the current database (after `USE`)
/// and the current role (after `SET ROLE`); `COM_CHANGE_USER` restores the database (or none)
/// but also keeps the role. So when the session may have changed either (see
/// [`MyConn::has_sticky_state`]: `USE`, `SET ROLE`, or any native access), the driver sends
/// `COM_CHANGE_USER` with the connection's own credentials (it re-authenticates: a round trip
/// or two and the server's auth work), then asks `SELECT CURRENT_ROLE()`. A role still active
/// cannot be told apart from the account's default role without more privileges, so the
/// connection is then refused for reuse (closed) rather than risk handing a role to the next
/// user. The `mysql` crate clears its statement cache on both paths.
fn full_reset(conn: &mut MyConn, bound: Duration) -> Result<(), DriverError> {
    if !conn.has_sticky_state() {
        return conn.bounded(bound, "resetting the session", |c| c.reset());
    }
    let role = conn.bounded(bound, "resetting the session (change user)", |c| {
        c.change_user(mysql::ChangeUserOpts::DEFAULT)?;
        c.query_first::<Option<String>, _>("SELECT CURRENT_ROLE()")
    })?;
    // MariaDB says NULL when no role is active, MySQL 8 says `NONE`.
    if let Some(Some(role)) = role.filter(|r| r.as_deref() != Some("NONE")) {
        return Err(DriverError::new(
            DriverErrorKind::NotReusable,
            format!(
                "role `{role}` is still active after the session reset (MariaDB keeps SET ROLE \
                 across COM_RESET_CONNECTION and COM_CHANGE_USER); the connection is not reused"
            ),
        ));
    }
    conn.sticky_state_cleared();
    Ok(())
}
