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
                // The reset's answer carries what the server last reported about its role. After
                // a full reset no `SET` of the session's own is left, so the whole role must
                // fit (a server fenced read-only too); after a rollback only, a change of role.
                let why = match mode {
                    ResetMode::Full => conn
                        .reported_role()
                        .filter(|role| conn.attrs.is_checked() && !conn.attrs.accepts(*role))
                        .map(|role| conn.attrs.mismatch(role)),
                    _ => conn.role_moved(),
                };
                if let Some(why) = why {
                    conn.broken = true;
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
    /// `primary`, `standby`) the query asks the server's role instead (`role::ROLE_QUERY`):
    /// the same one round trip, and a connection on a server that changed role in a failover
    /// fails the check, so it is closed instead of handed out. It asks rather than reading
    /// what the server reported: behind a proxy the reports may be another server's.
    fn connected(&self, handle: &mut PgConn, timeout: Duration) -> bool {
        if handle.broken || handle.client.is_closed() {
            return false;
        }
        let attrs = handle.attrs;
        if !attrs.is_checked() {
            return ask(handle, "", timeout).is_some();
        }
        let role = match ask(handle, role::ROLE_QUERY, timeout) {
            Some(answer) => role::parse_answer(&answer),
            None => return false,
        };
        match role {
            Some(role) if attrs.accepts(role) => true,
            role => {
                handle.broken = true;
                let why = role.map_or_else(
                    || "the role check's answer made no sense".to_owned(),
                    |role| attrs.mismatch(role),
                );
                tracing::info!(%why, "postgres connection's server changed role; closing it");
                false
            }
        }
    }
}

/// Runs `query` on a parked connection as a liveness check, bounded by `timeout`: its answer,
/// or `None` with the connection marked broken (a check that timed out leaves its request in
/// flight).
fn ask(
    handle: &mut PgConn,
    query: &str,
    timeout: Duration,
) -> Option<Vec<tokio_postgres::SimpleQueryMessage>> {
    let check = handle.client.client().simple_query(query);
    match handle.client.within(timeout, check) {
        Some(Ok(answer)) => Some(answer),
        Some(Err(err)) => {
            handle.broken = true;
            tracing::debug!(error = %handle.fail(&err), "postgres connection check failed");
            None
        }
        None => {
            handle.broken = true;
            tracing::debug!(?timeout, "postgres connection check timed out");
            None
        }
    }
}
