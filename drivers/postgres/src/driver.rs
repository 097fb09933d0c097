//! [`PgDriver`]: connect, detach, attach and check PostgreSQL connections.

use std::time::Duration;

use pool_driver::{ConnArgs, Driver, DriverError, DriverErrorKind, ResetMode};

use crate::{config, connect, reset, role, PgConn};

/// The built-in PostgreSQL driver, registered as `"postgres"`.
#[derive(Clone, Copy, Debug, Default)]
pub struct PgDriver;

impl Driver for PgDriver {
    type Conn = PgConn;
    type Handle = PgConn;

    fn name(&self) -> &str {
        "postgres"
    }

    /// Accepts `key=value` strings and `postgres://`/`postgresql://` URLs, renames aliases
    /// (`database`, `username`, `pass`…) and rejects keys and values this driver cannot honour.
    fn parse_args(&self, args: &str) -> Result<ConnArgs, DriverError> {
        config::normalise(ConnArgs::parse(args)?)
    }

    /// Connects on the calling thread, the whole connect (every host: socket, TLS, startup,
    /// login) bounded by `timeout` (see `connect/mod.rs`); no thread is started or left behind.
    fn connect(&self, args: &ConnArgs, timeout: Duration) -> Result<PgConn, DriverError> {
        let client = connect::connect(args, timeout)?;
        Ok(PgConn::new(client, args.clone(), timeout))
    }

    /// Rolls back and resets in one round trip (see [`crate::reset`]), the same for every used
    /// session whatever ran on it (no decision reads the SQL); a connection nothing ran on and
    /// whose native client nobody reached since it was opened or last reset is parked as it
    /// is. A broken connection or a failed reset is an error of kind `Broken`: the pool closes
    /// the connection. The reset is bounded by the connect timeout the connection was opened
    /// with, also on a peer that acknowledges the bytes but never answers (a stopped server),
    /// where `tcp_user_timeout` never fires. A session whose cancel token was handed out is
    /// `NotReusable` (the token would outlive the reset).
    fn detach(&self, mut conn: PgConn, mode: ResetMode) -> Result<PgConn, DriverError> {
        if conn.broken || conn.client.is_closed() {
            return Err(DriverError::new(
                DriverErrorKind::Broken,
                "the postgres connection is broken; it is closed instead of parked",
            ));
        }
        if conn.client.cancel_handed_out.get() {
            return Err(DriverError::new(
                DriverErrorKind::NotReusable,
                "a cancel token was handed out for this session (PgClient::cancel_token): it \
                 could cancel the next user's statements, so the session is closed, not reused",
            ));
        }
        if !conn.touched.get() {
            return Ok(conn);
        }
        match reset::reset(&conn.client, mode, conn.reset_bound) {
            Ok(()) => {
                // The reset's answer carries what the server last reported about its role.
                if let Some(why) = conn.role_moved() {
                    return Err(conn.attrs.moved(&why));
                }
                conn.touched.set(false);
                Ok(conn)
            }
            Err(reset::Failed::TimedOut(bound)) => {
                conn.broken = true;
                Err(DriverError::new(
                    DriverErrorKind::Broken,
                    format!(
                        "resetting the postgres session got no answer within {bound:?} (the \
                         connect timeout): the server or the network is silent; the \
                         connection is closed"
                    ),
                ))
            }
            Err(reset::Failed::Pg(err)) => {
                let mapped = conn.fail(&err);
                tracing::debug!(?mode, error = %mapped, "postgres session reset failed");
                let error = DriverError::new(
                    DriverErrorKind::Broken,
                    format!(
                        "resetting the postgres session failed: {}",
                        mapped.message()
                    ),
                );
                Err(match mapped.code() {
                    Some(code) => error.with_code(code),
                    None => error,
                })
            }
        }
    }

    /// No I/O: a parked `PgConn` is already a usable connection.
    fn attach(&self, handle: PgConn) -> Result<PgConn, DriverError> {
        Ok(handle)
    }

    /// An empty simple query, bounded by `timeout`. A server restart is noticed here even
    /// though `is_closed` stays false until something reads the socket. A check that timed
    /// out leaves its request in flight, so the connection is marked broken either way.
    ///
    /// For a key whose `target_session_attrs` must keep holding (`read-write`, `read-only`,
    /// `primary`, `standby`), the server's role is then read from what it reported with that
    /// answer (PostgreSQL 14+ reports `in_hot_standby` and `default_transaction_read_only`
    /// before every ReadyForQuery in which they changed, so a promotion is in by then): the
    /// same one round trip as any key. Only an older server, which reports neither, is asked
    /// [`role::ROLE_QUERY`] as well. A connection on a server that changed role fails the
    /// check, so it is closed instead of handed out.
    fn connected(&self, handle: &mut PgConn, timeout: Duration) -> bool {
        if handle.broken || handle.client.is_closed() {
            return false;
        }
        if !ask(handle, "", timeout) {
            return false;
        }
        let attrs = handle.attrs;
        if !attrs.is_checked() {
            return true;
        }
        let role = match handle.reported_role() {
            Some(role) => Some(role),
            None => {
                let asked = handle.client.client().simple_query(role::ROLE_QUERY);
                match handle.client.within(timeout, asked) {
                    Some(Ok(answer)) => role::parse_answer(&answer),
                    _ => None,
                }
            }
        };
        match role {
            Some(role) if attrs.accepts(role) => true,
            role => {
                handle.broken = true;
                let why = role.map_or_else(
                    || "the role check got no answer that made sense".to_owned(),
                    |role| attrs.mismatch(role),
                );
                tracing::info!(%why, "postgres connection's server changed role; closing it");
                false
            }
        }
    }
}

/// Runs `query` on a parked connection as a liveness check, bounded by `timeout`; a failure or
/// a timeout marks it broken (a check that timed out leaves its request in flight).
fn ask(handle: &mut PgConn, query: &str, timeout: Duration) -> bool {
    let check = handle.client.client().simple_query(query);
    match handle.client.within(timeout, check) {
        Some(Ok(_)) => true,
        Some(Err(err)) => {
            handle.broken = true;
            tracing::debug!(error = %handle.fail(&err), "postgres connection check failed");
            false
        }
        None => {
            handle.broken = true;
            tracing::debug!(?timeout, "postgres connection check timed out");
            false
        }
    }
}
