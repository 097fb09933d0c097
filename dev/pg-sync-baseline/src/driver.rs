//! [`PgDriver`]: connect, detach, attach and check PostgreSQL connections.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use pool_driver::{ConnArgs, Driver, DriverError, DriverErrorKind, ResetMode};
use postgres::NoTls;

use crate::error::{self, Phase};
use crate::{config, reset, PgConn};

/// The old PostgreSQL driver, registered as `"postgres-sync"` (the new one is `"postgres"`).
#[derive(Clone, Copy, Debug, Default)]
pub struct PgDriver;

impl Driver for PgDriver {
    type Conn = PgConn;
    type Handle = PgConn;

    fn name(&self) -> &str {
        "postgres-sync"
    }

    /// Accepts `key=value` strings and `postgres://`/`postgresql://` URLs, renames aliases
    /// (`database`, `username`, `pass`…) and rejects keys and values this driver cannot honour.
    fn parse_args(&self, args: &str) -> Result<ConnArgs, DriverError> {
        config::normalise(ConnArgs::parse(args)?)
    }

    /// Connects on a helper thread and waits at most `timeout` for it.
    ///
    /// `connect_timeout` in `postgres` only bounds the socket connect; the startup and
    /// authentication exchange that follows has no bound, so a server (or proxy) that accepts
    /// and then goes silent would hang the caller forever. The helper thread is abandoned on
    /// timeout: it ends, dropping the late connection, when the socket finally fails.
    fn connect(&self, args: &ConnArgs, timeout: Duration) -> Result<PgConn, DriverError> {
        let config = config::build(args, Some(timeout))?;
        let (sender, receiver) = mpsc::sync_channel(1);
        thread::Builder::new()
            .name("pool-postgres-connect".into())
            .spawn(move || {
                // The receiver is gone if the caller gave up; the client is then dropped.
                let _ = sender.send(config.connect(NoTls));
            })
            .map_err(|e| {
                DriverError::new(
                    DriverErrorKind::Connect,
                    format!("cannot start a connect thread: {e}"),
                )
            })?;
        match receiver.recv_timeout(timeout) {
            Ok(Ok(client)) => Ok(PgConn::new(client, args.clone())),
            Ok(Err(err)) => {
                let mapped = error::map(&err, Phase::Connect, args);
                tracing::debug!(args = %args, error = %mapped, "postgres connect failed");
                Err(mapped)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(DriverError::new(
                DriverErrorKind::Timeout,
                format!("connecting to postgres ({args}) took longer than {timeout:?}"),
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(DriverError::new(
                DriverErrorKind::Connect,
                "the postgres connect thread ended without an answer (it panicked)",
            )),
        }
    }

    /// Rolls back and resets in one round trip (see [`crate::reset`]), the same for every used
    /// session whatever ran on it (no decision reads the SQL); a connection nothing ran on and
    /// whose native client nobody reached since it was opened or last reset is parked as it is. A broken connection or a
    /// failed reset is an error of kind `Broken`: the pool closes the connection.
    fn detach(&self, mut conn: PgConn, mode: ResetMode) -> Result<PgConn, DriverError> {
        if conn.broken || conn.client.is_closed() {
            return Err(DriverError::new(
                DriverErrorKind::Broken,
                "the postgres connection is broken; it is closed instead of parked",
            ));
        }
        if !conn.touched.get() {
            return Ok(conn);
        }
        match reset::reset(&mut conn.client, mode) {
            Ok(()) => {
                conn.touched.set(false);
                Ok(conn)
            }
            Err(err) => {
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
    /// though `Client::is_closed` stays false until something reads the socket.
    fn connected(&self, handle: &mut PgConn, timeout: Duration) -> bool {
        if handle.broken || handle.client.is_closed() {
            return false;
        }
        match handle.client.is_valid(timeout) {
            Ok(()) => true,
            Err(err) => {
                handle.broken = true;
                tracing::debug!(error = %handle.fail(&err), "postgres connection check failed");
                false
            }
        }
    }
}
