//! [`RedisDriver`]: connect, detach (reset), attach, and the bounded liveness check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pool_driver::{ConnArgs, Connection, Driver, DriverError, DriverErrorKind, ResetMode};
use redis::{ConnectionLike, Value as Reply};

use crate::commands::DataOnly;
use crate::conn::RedisConn;
use crate::error::{self, Phase};
use crate::opts;
use crate::reset::{self, Reset, ServerFacts};
use crate::tls;

/// The `redis` driver, on the `redis` crate's synchronous connection.
///
/// It remembers, per server (host and port, or socket), whether that server lacks `RESET`
/// (Redis < 6.2), so only the first release there pays for finding out, and whether it was
/// seen unable to report a session's state (logged once).
#[derive(Debug, Default)]
pub struct RedisDriver {
    servers: Mutex<HashMap<String, Arc<ServerFacts>>>,
}

impl RedisDriver {
    /// A new driver (what `pool` registers as `"redis"`).
    pub fn new() -> Self {
        Self::default()
    }

    fn server_facts(&self, target: String) -> Arc<ServerFacts> {
        let mut map = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(target).or_default())
    }
}

impl Driver for RedisDriver {
    type Conn = RedisConn;
    type Handle = RedisConn;

    fn name(&self) -> &str {
        "redis"
    }

    /// Accepts `key=value` text and `redis://user:password@host:port/db` URLs (`rediss://`
    /// for TLS, recorded as `tls=on`), folds aliases and flag spellings so every spelling of
    /// the same target shares one pool, and rejects unknown keys, TLS arguments without TLS,
    /// and TLS on a unix socket.
    fn parse_args(&self, args: &str) -> Result<ConnArgs, DriverError> {
        let scheme = opts::check_scheme(args)?;
        let mut parsed = ConnArgs::parse(args)?;
        opts::apply_scheme(&mut parsed, scheme)?;
        opts::normalise(&mut parsed)?;
        Ok(parsed)
    }

    /// Connects (TCP connect, TLS handshake and Redis handshake bounded by `timeout`, or a
    /// smaller `connect_timeout=`), authenticates (`AUTH user password`, or `AUTH password`
    /// for `default`), selects the db, sets the client name if one is given, then puts the
    /// session's read/write timeouts on the socket.
    ///
    /// With TLS the `cacert`, `cert` and `key` files are read here, on every connect (a rotated
    /// certificate is used by the next one), and the connect always ends in one round trip of
    /// its own (`CLIENT SETNAME`, or `PING`): rustls shakes hands on the first read or write,
    /// and that round trip makes sure it happened, and failed if it must, inside this bound
    /// and as a `Connect` error, whatever the `redis` crate's own setup sent.
    fn connect(&self, args: &ConnArgs, timeout: Duration) -> Result<RedisConn, DriverError> {
        let mut args = args.clone();
        opts::normalise(&mut args)?;
        let plan = opts::plan(&args, timeout)?;
        let target = opts::target(&args);
        let context = match plan.tls {
            Some(_) => format!("connecting to redis at {target} over TLS"),
            None => format!("connecting to redis at {target}"),
        };
        let fail = |e: &redis::RedisError| error::map(e, Phase::Connect, &args, &context);
        let started = Instant::now();
        let client = match &plan.tls {
            Some(settings) => {
                let certificates = tls::certificates(settings)?;
                tls::ensure_provider();
                redis::Client::build_with_tls(plan.info.clone(), certificates)
            }
            None => redis::Client::open(plan.info.clone()),
        }
        .map_err(|e| fail(&e))?;
        let mut conn = match &plan.tls {
            Some(_) => connect_tls(&client, &plan, &args, &context)?,
            None => connect_plain(&client, &plan, &args, &context)?,
        };
        let confirm = match &plan.handshake.name {
            Some(name) => Some(redis::cmd("CLIENT").arg("SETNAME").arg(name).clone()),
            None if plan.tls.is_some() => Some(redis::cmd("PING")),
            None => None,
        };
        if let Some(command) = confirm {
            // What is left of the connect bound: connect + this stay within one timeout.
            let left = plan.connect_timeout.saturating_sub(started.elapsed());
            let bound = Some(left.max(Duration::from_millis(1)));
            conn.set_read_timeout(bound)
                .and_then(|()| conn.set_write_timeout(bound))
                .map_err(|e| fail(&e))?;
            let reply = conn.req_command(&command).map_err(|e| fail(&e))?;
            if let Reply::ServerError(e) = reply {
                let text = error::server_text(&e.into());
                let what = if plan.handshake.name.is_some() {
                    "CLIENT SETNAME"
                } else {
                    "PING"
                };
                return Err(DriverError::new(
                    DriverErrorKind::Connect,
                    args.scrub(&format!("{context}: {what} failed: {text}")),
                ));
            }
        }
        let facts = self.server_facts(target);
        let left = plan.connect_timeout.saturating_sub(started.elapsed());
        let data_only = data_only(&facts, &mut conn, left);
        let mut conn = RedisConn::new(
            conn,
            plan.session,
            plan.connect_timeout,
            Arc::new(plan.handshake),
            facts,
            Arc::new(args),
            data_only,
        );
        conn.restore_timeouts()
            .map_err(|e| DriverError::new(DriverErrorKind::Connect, e.message()))?;
        Ok(conn)
    }

    /// Nothing for a session that ran only the server's data-only commands (no I/O; the native
    /// client counts as a change, even through `native(&self)`). Otherwise the same exchange
    /// whatever the session ran — `Full`: one
    /// round trip of `RESET`, the handshake again and `PING <nonce>` (see `reset::full`); on a
    /// server without `RESET`, the rollback-only cleanup with the handshake. `RollbackOnly`:
    /// one round trip that rolls back, undoes replies-off, tracking and RESP3, and asks the
    /// server (`CLIENT INFO`) whether anything only `RESET` undoes is left, refusing the
    /// session (`NotReusable`) if so (see `reset::rollback`). Every exchange is bounded by the
    /// connect timeout; any failure closes the connection.
    fn detach(&self, mut conn: RedisConn, reset: ResetMode) -> Result<RedisConn, DriverError> {
        if conn.is_broken() {
            return Err(error::already_broken());
        }
        if !conn.needs_reset() {
            return Ok(conn);
        }
        let outcome = match reset {
            ResetMode::Full if !conn.server_lacks_reset() => full(&mut conn),
            ResetMode::Full => rollback_only(&mut conn, true),
            ResetMode::RollbackOnly => rollback_only(&mut conn, false),
        };
        match outcome.and_then(|()| conn.reset_done()) {
            Ok(()) => Ok(conn),
            Err(e) => {
                tracing::debug!(
                    args = %conn.args(),
                    ?reset,
                    error = %e,
                    "redis: reset on release failed; the connection will be closed"
                );
                conn.mark_broken();
                Err(e)
            }
        }
    }

    /// No I/O: the handle is the connection.
    fn attach(&self, handle: RedisConn) -> Result<RedisConn, DriverError> {
        Ok(handle)
    }

    /// `PING <nonce>` with the socket's timeouts set to `timeout`; only the nonce counts.
    fn connected(&self, handle: &mut RedisConn, timeout: Duration) -> bool {
        if handle.is_broken() {
            return false;
        }
        let parts = handle.parts();
        let pinged = reset::ping(parts.raw, timeout, parts.args);
        match pinged.and_then(|()| handle.restore_timeouts()) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(args = %handle.args(), error = %e, "redis: ping failed");
                handle.mark_broken();
                false
            }
        }
    }
}

/// The `redis` crate's plain connect. When the server hangs up during the handshake (what a
/// TLS-only port does to plain bytes), whatever is left of the bound asks the port whether it
/// answers a TLS hello ([`tls::speaks_tls_at`]): if it does, the error is `TLS_REQUIRED` with
/// "use rediss://"; otherwise the plain error, with that as a hint only.
fn connect_plain(
    client: &redis::Client,
    plan: &opts::Plan,
    args: &ConnArgs,
    context: &str,
) -> Result<redis::Connection, DriverError> {
    let started = Instant::now();
    let err = match client.get_connection_with_timeout(plan.connect_timeout) {
        Ok(conn) => return Ok(conn),
        Err(err) => err,
    };
    let mapped = error::map(&err, Phase::Connect, args, context);
    let redis::ConnectionAddr::Tcp(host, port) = &plan.info.addr else {
        return Err(mapped);
    };
    if !error::hung_up(&err) {
        return Err(mapped);
    }
    let left = plan.connect_timeout.saturating_sub(started.elapsed());
    if tls::speaks_tls_at(host, *port, left) {
        return Err(error::tls_error(
            tls::Failure::Required,
            args,
            context,
            &err.to_string(),
        ));
    }
    Err(DriverError::new(
        mapped.kind(),
        format!(
            "{} (the server hung up during the handshake; if this port serves TLS, connect \
             with rediss://)",
            mapped.message()
        ),
    ))
}

/// The `redis` crate's connect over TLS, with [`tls::probe_reserve`] of the bound kept back:
/// when the handshake times out, that reserve asks the port in plain Redis whether it is a
/// plain port (see [`tls::plain_redis_at`]: a plain Redis port mostly stays silent to a TLS
/// hello), so the error says "this port speaks plain Redis" instead of only "timed out". The
/// whole stays within `plan.connect_timeout`.
fn connect_tls(
    client: &redis::Client,
    plan: &opts::Plan,
    args: &ConnArgs,
    context: &str,
) -> Result<redis::Connection, DriverError> {
    let started = Instant::now();
    let reserve = tls::probe_reserve(plan.connect_timeout);
    let handshake = plan
        .connect_timeout
        .saturating_sub(reserve)
        .max(Duration::from_millis(1));
    let err = match client.get_connection_with_timeout(handshake) {
        Ok(conn) => return Ok(conn),
        Err(err) => err,
    };
    let mapped = error::map(&err, Phase::Connect, args, context);
    if !err.is_timeout() {
        return Err(mapped);
    }
    let left = plan.connect_timeout.saturating_sub(started.elapsed());
    let plain = match &plan.info.addr {
        redis::ConnectionAddr::TcpTls { host, port, .. } => tls::plain_redis_at(host, *port, left),
        _ => false,
    };
    if plain {
        return Err(error::tls_error(
            tls::Failure::NotTls,
            args,
            context,
            "no answer to the TLS hello, but a plain Redis answers on this port",
        ));
    }
    Err(DriverError::new(
        mapped.kind(),
        format!(
            "{} (no TLS answer: the server is silent, or too slow for connect_timeout)",
            mapped.message()
        ),
    ))
}

fn full(conn: &mut RedisConn) -> Result<(), DriverError> {
    let parts = conn.parts();
    let outcome = reset::full(
        parts.raw,
        parts.handshake,
        parts.bound,
        parts.args,
        parts.facts,
    )?;
    if outcome == Reset::Unsupported {
        return rollback_only(conn, true);
    }
    Ok(())
}

/// The rollback-only cleanup; with `replay` (a full reset on a server without `RESET`) also the
/// handshake again, so the user, db and name are the configured ones.
fn rollback_only(conn: &mut RedisConn, replay: bool) -> Result<(), DriverError> {
    let parts = conn.parts();
    let restore = replay.then_some(parts.handshake);
    reset::rollback(parts.raw, restore, parts.bound, parts.args, parts.facts)
}

/// The server's data-only commands (`commands.rs`), asked with `COMMAND` on the first connect
/// to this server that gets an answer, within what is left of the connect bound (`left`).
/// `None`: the server cannot say (remembered), or this connect could not ask (asked again by
/// the next one); every used session is then reset.
fn data_only(
    facts: &ServerFacts,
    conn: &mut redis::Connection,
    left: Duration,
) -> Option<Arc<DataOnly>> {
    if let Some(known) = facts.data_only.get() {
        return known.clone();
    }
    let bound = Some(left.max(Duration::from_millis(1)));
    let asked = conn
        .set_read_timeout(bound)
        .and_then(|()| conn.set_write_timeout(bound))
        .and_then(|()| conn.req_command(&redis::cmd("COMMAND")));
    let reply = match asked {
        Ok(reply) => reply,
        Err(e) => {
            tracing::debug!(error = %e, "redis: COMMAND failed; this session is reset on every release");
            return None;
        }
    };
    let classes = DataOnly::from_reply(&reply);
    match &classes {
        Some(classes) => tracing::debug!(
            data_only = classes.len(),
            "redis: the server's data-only commands are known; sessions that ran only those need no reset"
        ),
        None => tracing::info!(
            "redis: the server does not classify its commands (COMMAND refused or without ACL \
             categories); every used session is reset on release"
        ),
    }
    facts.data_only.get_or_init(|| classes).clone()
}
