//! [`RedisDriver`]: connect, detach (reset), attach, and the bounded liveness check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pool_driver::{ConnArgs, Connection, Driver, DriverError, DriverErrorKind, ResetMode};
use redis::ConnectionLike;

use crate::commands::DataOnly;
use crate::conn::RedisConn;
use crate::error::{self, Phase};
use crate::opts;
use crate::reset::{self, Reset, Role, ServerFacts};
use crate::sentinel::{self, SentinelArgs, Watches};
use crate::setup;
use crate::tls;

/// The `redis` driver, on the `redis` crate's synchronous connection.
///
/// It remembers, per server (host and port, or socket), whether that server lacks `RESET`
/// (Redis < 6.2), so only the first release there pays for finding out, and whether it was
/// seen unable to report a session's state (logged once).
///
/// For Sentinel keys it also keeps one watch per Sentinel service (the master as last seen,
/// and the watcher thread that follows `+switch-master`: see the crate docs, "Redis
/// Sentinel").
#[derive(Debug, Default)]
pub struct RedisDriver {
    servers: Mutex<HashMap<String, Arc<ServerFacts>>>,
    watches: Watches,
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

    /// The normal path to one node, as `plan` says (TCP or socket, TLS, `AUTH`, `SELECT`,
    /// name): the connection, its server's facts, its data-only commands. The socket's
    /// timeouts are the connect's until the caller restores the session's.
    ///
    /// The `redis` crate opens the socket only; the handshake (`AUTH`, `SELECT`, `CLIENT
    /// SETINFO`, `CLIENT SETNAME`) is the driver's, one pipeline whose every read is bounded
    /// by what is left of the one connect deadline (see `crate::setup`): a silent server fails
    /// within `connect_timeout`, a slow link has all of it. With TLS the `cacert`, `cert` and
    /// `key` files are read here, on every connect; rustls shakes hands on the handshake's
    /// first write, so a failed TLS handshake fails here too, inside the bound and as a
    /// `Connect` error.
    fn open(
        &self,
        args: ConnArgs,
        plan: opts::Plan,
        target: String,
        context: &str,
    ) -> Result<RedisConn, DriverError> {
        let fail = |e: &redis::RedisError| error::map(e, Phase::Connect, &args, context);
        let started = Instant::now();
        let bare = setup::bare(&plan.info);
        let client = match &plan.tls {
            Some(settings) => {
                let certificates = tls::certificates(settings)?;
                tls::ensure_provider();
                redis::Client::build_with_tls(bare, certificates)
            }
            None => redis::Client::open(bare),
        }
        .map_err(|e| fail(&e))?;
        let mut conn = match &plan.tls {
            Some(_) => connect_tls(&client, &plan, &args, context)?,
            None => connect_plain(&client, &plan, &args, context)?,
        };
        let facts = self.server_facts(target);
        let left = plan.connect_timeout.saturating_sub(started.elapsed());
        let data_only = data_only(&facts, &mut conn, left);
        Ok(RedisConn::new(
            conn,
            plan.session,
            plan.connect_timeout,
            Arc::new(plan.handshake),
            facts,
            Arc::new(args),
            data_only,
        ))
    }

    /// A Sentinel key's connect, all within the connect timeout: ask the Sentinels for the
    /// master ([`sentinel::ask`]), connect to it by the normal path, check it says it is the
    /// master ([`reset::role`]), and bind the connection to the service's watch (which starts
    /// the watcher thread if none runs). A node that answers as a replica, or an answer the
    /// watcher saw overtaken by a switch, is tried again (the Sentinels asked anew) while time
    /// is left; the error then says what the Sentinels named and what the node said.
    fn connect_via_sentinels(
        &self,
        args: ConnArgs,
        sentinels: &SentinelArgs,
        timeout: Duration,
    ) -> Result<RedisConn, DriverError> {
        let total = opts::connect_timeout(&args, timeout)?;
        let started = Instant::now();
        let deadline = started + total;
        let watch = self.watches.get(sentinels, total);
        let mut refused = Vec::new();
        loop {
            let asked_at = watch.generation();
            let answer = sentinel::ask(sentinels, &watch, total, deadline, &args)?;
            let (host, port) = (answer.addr.0.as_str(), answer.addr.1);
            let node = sentinel::show(host, port);
            let left = deadline.saturating_duration_since(Instant::now());
            let plan = opts::plan_at(&args, left, Some((host, port)))?;
            let context = format!(
                "connecting to redis at {node}{} (the master of `{}` as Sentinel {} named it)",
                if plan.tls.is_some() { " over TLS" } else { "" },
                sentinels.service,
                answer.sentinel,
            );
            let mut conn = self.open(args.clone(), plan, node.clone(), &context)?;
            let left = deadline.saturating_duration_since(Instant::now());
            let parts = conn.parts();
            let role = reset::role(
                parts.raw,
                left.max(Duration::from_millis(1)),
                parts.args,
                parts.facts,
            )
            .map_err(|e| {
                DriverError::new(
                    DriverErrorKind::Connect,
                    format!("{context}: checking its role: {}", e.message()),
                )
            })?;
            match role {
                Role::Master | Role::Unknown => {
                    if let Some(bound) = watch.bind(answer.addr.clone(), asked_at) {
                        conn.bind_sentinel(bound);
                        watch.ensure_running();
                        conn.restore_timeouts()
                            .map_err(|e| DriverError::new(DriverErrorKind::Connect, e.message()))?;
                        return Ok(conn);
                    }
                    refused.push(format!(
                        "{node} is being replaced by a failover, or the master moved while \
                         connecting"
                    ));
                }
                Role::Replica => refused.push(format!("{node} answers as a replica")),
                Role::Other(what) => refused.push(format!("{node} answers as `{what}`")),
            }
            drop(conn);
            // A failover in progress: the Sentinels' view lags the nodes'. Ask again shortly,
            // while the bound allows.
            let pause = Duration::from_millis(50);
            if refused.len() >= 3 || deadline.saturating_duration_since(Instant::now()) <= pause {
                return Err(DriverError::new(
                    DriverErrorKind::Connect,
                    args.scrub(&format!(
                        "connecting to the master of `{}` through the redis Sentinels: the \
                         node named is not the master ({}; a failover may be in progress)",
                        sentinels.service,
                        refused.join("; ")
                    )),
                )
                .with_code("SENTINEL_NOT_MASTER"));
            }
            std::thread::sleep(pause);
        }
    }
}

impl Driver for RedisDriver {
    type Conn = RedisConn;
    type Handle = RedisConn;

    fn name(&self) -> &str {
        "redis"
    }

    /// Accepts `key=value` text and `redis://user:password@host:port/db` URLs (`rediss://`
    /// for TLS, recorded as `tls=on`; `redis+sentinel://s1:p1,s2:p2/service[/db]` recorded as
    /// `sentinel=s1:p1,s2:p2 service_name=service`), folds aliases and flag spellings so every
    /// spelling of the same target shares one pool, and rejects unknown keys, TLS arguments
    /// without TLS, TLS on a unix socket, and `host`/`port`/`socket` with `sentinel`.
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
    /// The `redis` crate opens the socket only; the handshake (`AUTH`, `SELECT`, `CLIENT
    /// SETINFO`, `CLIENT SETNAME`) is one pipeline of the driver's, every reply read under what
    /// is left of the same bound: a silent server fails within it, a slow link has all of it.
    ///
    /// With TLS the `cacert`, `cert` and `key` files are read here, on every connect (a rotated
    /// certificate is used by the next one); rustls shakes hands on the handshake pipeline's
    /// first write, so a failed TLS handshake fails inside this bound and as a `Connect` error.
    ///
    /// A Sentinel key (`sentinel=…`, `redis+sentinel://`) first asks the Sentinels for the
    /// master, then connects to it the same way and checks its role, all within the same
    /// bound (see `connect_via_sentinels`).
    fn connect(&self, args: &ConnArgs, timeout: Duration) -> Result<RedisConn, DriverError> {
        let mut args = args.clone();
        opts::normalise(&mut args)?;
        if let Some(sentinels) = SentinelArgs::from_args(&args)? {
            return self.connect_via_sentinels(args, &sentinels, timeout);
        }
        let plan = opts::plan(&args, timeout)?;
        let target = opts::target(&args);
        let context = match plan.tls {
            Some(_) => format!("connecting to redis at {target} over TLS"),
            None => format!("connecting to redis at {target}"),
        };
        let mut conn = self.open(args, plan, target, &context)?;
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

    /// No I/O: the handle is the connection. A Sentinel key's connection whose master moved
    /// since it was parked is refused (`Broken`, so the pool closes it and takes another).
    fn attach(&self, handle: RedisConn) -> Result<RedisConn, DriverError> {
        if handle.is_broken() {
            return Err(error::already_broken());
        }
        Ok(handle)
    }

    /// `PING <nonce>` with the socket's timeouts set to `timeout`; only the nonce counts.
    ///
    /// A Sentinel key's connection is refused at once if the master moved away from its node
    /// (no I/O), and otherwise asked its role in the same round trip (`ROLE` + `PING`, see
    /// `reset::role`): a node that is now a replica (an old master brought back, or demoted
    /// by the Sentinels) is not handed out.
    fn connected(&self, handle: &mut RedisConn, timeout: Duration) -> bool {
        if handle.is_broken() {
            return false;
        }
        let via_sentinel = handle.via_sentinel();
        let parts = handle.parts();
        let pinged = if via_sentinel {
            reset::role(parts.raw, timeout, parts.args, parts.facts).and_then(|role| match role {
                Role::Master | Role::Unknown => Ok(()),
                Role::Replica | Role::Other(_) => Err(error::broken(
                    "the node is no longer the master (its role changed since the connect)",
                )),
            })
        } else {
            reset::ping(parts.raw, timeout, parts.args)
        };
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

/// The `redis` crate's connect (the socket only) and the driver's handshake on it
/// ([`setup::run`]), both before `deadline`. A refused handshake step is a `Connect` error
/// already; I/O trouble comes back as the crate's error, for the caller to map or probe.
fn establish(
    client: &redis::Client,
    plan: &opts::Plan,
    deadline: Instant,
    args: &ConnArgs,
    context: &str,
) -> Result<Result<redis::Connection, redis::RedisError>, DriverError> {
    let bound = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let mut conn = match client.get_connection_with_timeout(bound) {
        Ok(conn) => conn,
        Err(e) => return Ok(Err(e)),
    };
    let handshake = &plan.handshake;
    let wanted = setup::Setup {
        user: handshake.user.as_deref(),
        password: handshake.password.as_deref(),
        db: handshake.db,
        name: handshake.name.as_deref(),
    };
    match setup::run(&mut conn, &wanted, deadline) {
        Ok(()) => Ok(Ok(conn)),
        Err(setup::Failure::Io(e)) => Ok(Err(e)),
        Err(setup::Failure::Refused { step, text, code }) => {
            let error = DriverError::new(
                DriverErrorKind::Connect,
                args.scrub(&format!("{context}: {step} failed: {text}")),
            );
            Err(match code {
                Some(code) => error.with_code(code),
                None => error,
            })
        }
    }
}

/// The plain connect ([`establish`]). When the server hangs up during the handshake (what a
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
    let err = match establish(client, plan, started + plan.connect_timeout, args, context)? {
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

/// The TLS connect ([`establish`]), with [`tls::probe_reserve`] of the bound kept back: when
/// the handshake times out, that reserve asks the port in plain Redis whether it is a plain
/// port (see [`tls::plain_redis_at`]: a plain Redis port mostly stays silent to a TLS hello),
/// so the error says "this port speaks plain Redis" instead of only "timed out". The whole
/// stays within `plan.connect_timeout`.
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
    let err = match establish(client, plan, started + handshake, args, context)? {
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
