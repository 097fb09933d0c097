//! [`MysqlDriver`]: connect, detach (rollback + reset), attach, and the bounded liveness check.

use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{DriverError as MyDriverError, Error as MyError};
use pool_driver::{ConnArgs, Driver, DriverError, DriverErrorKind, ResetMode};

use crate::conn::MyConn;
use crate::deadline::KillTarget;
use crate::error::{self, Phase, TlsFailure};
use crate::opts::ConnectPlan;
use crate::tls::{self, SslMode};
use crate::{opts, reset, socket};

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
    /// with the TCP connect and every handshake read and write, the TLS handshake's included,
    /// bounded by `timeout` (or a smaller `connect_timeout=`). A unix-socket `connect()` itself
    /// has no timeout in std; it fails or succeeds at once unless the server's listen backlog
    /// is full, and the handshake after it is bounded like TCP's. TLS as `ssl-mode` says (see
    /// `connect_stream` in `driver.rs`). Then one query, under the same bound, reads the
    /// session's role, database and account as the server reports them: what every full reset
    /// must find again (see `reset.rs`).
    ///
    /// The `mysql` crate is synchronous and starts no thread: a connect that times out leaves
    /// nothing behind but its closed socket.
    fn connect(&self, args: &ConnArgs, timeout: Duration) -> Result<MyConn, DriverError> {
        let started = Instant::now();
        // Arguments that did not come through `parse_args` still get their aliases folded.
        let mut args = args.clone();
        opts::normalise(&mut args)?;
        let plan = opts::plan(&args, timeout)?;
        let context = format!("connecting to mysql at {}", opts::target(&args));
        let (mut conn, encrypted) = connect_stream(&plan, &args, &context, started)?;
        // Still under the handshake's socket bound: what every full reset must restore.
        let identity = reset::identity_at_connect(&mut conn).map_err(|e| {
            let version = Some(conn.server_version());
            error::map(&e, Phase::Connect, version, &args, &context)
        })?;
        socket::set_timeouts(&conn, plan.session).map_err(|e| {
            DriverError::new(
                DriverErrorKind::Connect,
                format!("{context}: cannot set the socket timeouts: {e}"),
            )
        })?;
        let op_bound = timeout.max(Duration::from_millis(1));
        let session = plan.session;
        // The plan stays with the connection: a statement past its deadline is killed from a
        // side connection made the same way (see `deadline.rs`).
        let kill_target = KillTarget::new(plan, encrypted, args.clone());
        Ok(MyConn::new(
            conn,
            session,
            op_bound,
            args,
            identity,
            kill_target,
            encrypted,
        ))
    }

    /// `Full`: `COM_RESET_CONNECTION` (the crate's `Conn::reset`; it falls back to
    /// `COM_CHANGE_USER` on servers older than MySQL 5.7.3 / MariaDB 10.2.7), then, in one
    /// more round trip, the server is asked for the session's role, database and account and
    /// its statement profiles, which the reset keeps. Whatever differs from what the session
    /// was when opened is restored and checked again; a session that cannot be restored is
    /// refused (`NotReusable`: the pool closes it). The decision rests only on what the server
    /// reports, never on the text of the statements that ran: a procedure or dynamic SQL can
    /// change the role without saying so (see `reset.rs` for what the reset keeps, how it is
    /// restored, and the cost). `RollbackOnly`: one `ROLLBACK`.
    ///
    /// Either runs under the connect timeout as a bound, so a hung server cannot hold a
    /// releasing thread; a reset that fails or times out returns a `Broken` error and the pool
    /// closes the connection (the server then rolls back on its own). A session on which
    /// nothing ran and whose native client nobody reached since it was opened or last reset
    /// is parked as it is, with no round trip.
    fn detach(&self, mut conn: MyConn, reset: ResetMode) -> Result<MyConn, DriverError> {
        if !conn.is_touched() {
            // Nothing ran and nobody reached the native client since the connection was
            // opened or last reset: nothing to undo.
            return Ok(conn);
        }
        let bound = conn.op_bound();
        let outcome = match reset {
            ResetMode::Full => reset::full(&mut conn, bound),
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

/// Opens the connection and runs the handshake, TLS as the plan says; returns it and whether it
/// is encrypted.
///
/// * A TLS attempt first checks that the certificate files can be read (so the error names
///   the file) and that rustls has a crypto provider ([`tls::ensure_provider`]).
/// * `PREFERRED`: the `mysql` crate has no "TLS if offered" mode; it fails with
///   `TlsNotSupported` right after the greeting of a server without TLS. Then this connects
///   again without TLS, bounded by what is left of the connect timeout (DEBUG log line: the
///   connection is plain). Only that answer falls back: a handshake that fails (no common TLS
///   version, the server refusing our certificate) fails the connect, as in the mysql client.
/// * Every other mode makes one attempt.
fn connect_stream(
    plan: &ConnectPlan,
    args: &ConnArgs,
    context: &str,
    started: Instant,
) -> Result<(mysql::Conn, bool), DriverError> {
    let asks_for_tls = plan.tls.asks_for_tls();
    if asks_for_tls {
        plan.tls
            .check_files(args)
            .map_err(|e| DriverError::new(e.kind(), format!("{context}: {}", e.message())))?;
        tls::ensure_provider();
    }
    let first = mysql::Conn::new(plan.first_opts());
    match first {
        Ok(conn) => Ok((conn, asks_for_tls)),
        Err(MyError::DriverError(MyDriverError::TlsNotSupported))
            if asks_for_tls && plan.tls.falls_back_to_plain() =>
        {
            let left = plan.bound.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(DriverError::new(
                    DriverErrorKind::Timeout,
                    format!(
                        "{context}: the server offers no TLS, and the connect timeout ran out \
                         before a plain connect (ssl-mode=PREFERRED) could be made"
                    ),
                ));
            }
            tracing::debug!(
                target = %opts::target(args),
                "mysql: the server offers no TLS; ssl-mode=PREFERRED connects without it"
            );
            mysql::Conn::new(plan.opts(false, left))
                .map(|conn| (conn, false))
                .map_err(|e| connect_error(&e, plan, args, context, false))
        }
        Err(e) => Err(connect_error(&e, plan, args, context, asks_for_tls)),
    }
}

/// Maps a failed connect, with advice where the server's answer does not say enough.
///
/// MariaDB answers a connection without TLS that the server (`require_secure_transport=ON`)
/// or the account (`REQUIRE SSL`, `REQUIRE X509`) requires it of, or one without the client
/// certificate the account requires, with the same "Access denied" (1045) as a wrong
/// password. The driver knows what the connection lacked, so it says so.
fn connect_error(
    e: &MyError,
    plan: &ConnectPlan,
    args: &ConnArgs,
    context: &str,
    encrypted: bool,
) -> DriverError {
    let mapped = error::map(e, Phase::Connect, None, args, context);
    if mapped.code() == Some(INSECURE_TRANSPORT) {
        return error::as_tls_failure(&mapped, TlsFailure::Required);
    }
    if mapped.code() != Some(ACCESS_DENIED) {
        return mapped;
    }
    if !encrypted {
        let why = if args.get("socket").is_some() {
            "TLS is not used on a unix socket"
        } else if plan.tls.mode() == SslMode::Disabled {
            if args.get(tls::MODE).is_some() {
                "ssl-mode=DISABLED"
            } else {
                "no ssl-mode given: the default is DISABLED"
            }
        } else {
            "the server offers no TLS"
        };
        error::with_advice(
            mapped,
            &format!(
                "If the password is right, the server or the account may require TLS \
                 (require_secure_transport=ON, REQUIRE SSL or X509: MariaDB answers all of \
                 them with this error), and this connection was not encrypted ({why}): \
                 connect over TCP with ssl-mode=VERIFY_IDENTITY (or REQUIRED to encrypt \
                 without verifying)"
            ),
        )
    } else if !plan.tls.has_client_cert() {
        error::with_advice(
            mapped,
            "If the password is right, the account may require a client certificate \
             (REQUIRE X509, SUBJECT or ISSUER): give ssl-cert and ssl-key",
        )
    } else {
        mapped
    }
}

/// `ER_ACCESS_DENIED_ERROR`: also MariaDB's answer to a plain connect when the server or the
/// account requires TLS (`require_secure_transport`, `REQUIRE SSL`/`X509`).
const ACCESS_DENIED: &str = "1045";

/// `ER_SECURE_TRANSPORT_REQUIRED`: MySQL's answer to a plain connect when
/// `require_secure_transport=ON` (MariaDB answers 1045).
const INSECURE_TRANSPORT: &str = "3159";
