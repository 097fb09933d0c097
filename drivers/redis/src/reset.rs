//! The driver's own exchanges on the wire: the one-round-trip reset, the rollback-only cleanup
//! and the liveness ping, each ending in `PING <nonce>` and read up to that nonce.
//!
//! Why a nonce: a released session may still have unread data in its socket — pub/sub messages,
//! RESP3 pushes (tracking invalidations), replies to commands the user sent through the native
//! client and never read, a late reply to a command whose read timed out. Counting replies
//! would misalign on any of those. The nonce is fresh per exchange, so only *this* exchange's
//! `PING` can return it; everything before the first expected reply is skipped (bounded in
//! count and time), and a missing or wrong reply fails the exchange, which closes the connection.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pool_driver::{ConnArgs, DriverError};
use redis::{Connection, Value as Reply};

use crate::error::{self, Phase};
use crate::opts::Handshake;

/// Most stale messages skipped before an exchange's first reply; more means a flood (a busy
/// subscription), and the connection is closed rather than drained.
const MAX_SKIPPED: usize = 10_000;

/// What the full reset found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reset {
    /// `RESET` ran and the handshake was replayed: the session is as new.
    Done,
    /// The server does not know `RESET` (Redis < 6.2; now recorded); the rest of the pipeline
    /// (handshake, nonce) succeeded, so the caller finishes with the rollback-only cleanup.
    Unsupported,
}

/// One expected reply after the first.
enum Expect {
    /// `+OK` from a handshake command, named for the error message.
    Ok(&'static str),
    /// `+OK`, or `NOPERM`: a `SELECT` the user may not run (so cannot have run either).
    OkUnlessDenied(&'static str),
    /// The nonce back from `PING`.
    Nonce,
}

/// `RESET`, the handshake again and `PING <nonce>`, written at once and read in one go.
///
/// `RESET` (Redis ≥ 6.2) discards `MULTI`, unwatches, leaves pub/sub and `MONITOR`, turns off
/// tracking, sets `CLIENT REPLY ON`, switches back to RESP2, selects db 0 and logs the
/// connection out to `default`. It keeps the client name. So the handshake follows: `AUTH`
/// (essential: otherwise the next user would be `default`, or unauthenticated), `SELECT` when
/// the db is not 0, and `CLIENT SETNAME` with the configured name — or `""` to clear a name the
/// session may have set (`rename`), which the ACL user must be allowed to run.
///
/// A server without `RESET` is recorded in `no_reset` the moment it says so, before the rest of
/// the replies are checked: even when this connection must be closed (a `MULTI` left open
/// queues the handshake instead of running it), later releases skip straight to the fallback.
pub(crate) fn full(
    conn: &mut Connection,
    handshake: &Handshake,
    rename: bool,
    bound: Duration,
    args: &ConnArgs,
    no_reset: &AtomicBool,
) -> Result<Reset, DriverError> {
    let nonce = nonce();
    let mut pipe = redis::pipe();
    pipe.cmd("RESET");
    let mut expect = replay(&mut pipe, handshake, rename, false);
    pipe.cmd("PING").arg(&nonce);
    expect.push(Expect::Nonce);

    let deadline = Instant::now() + bound;
    send(conn, &pipe.get_packed_pipeline(), bound, args, "resetting")?;
    // Everything before RESET's own reply is stale: skip it.
    let mut skipped = 0;
    let outcome = loop {
        match read(conn, deadline, skipped > 0, args, "resetting")? {
            Reply::SimpleString(s) if s == "RESET" => break Reset::Done,
            Reply::ServerError(e) if mentions(&e.clone().into(), "reset") => {
                let text = error::server_text(&e.into());
                if text.to_ascii_lowercase().contains("unknown command") {
                    no_reset.store(true, Ordering::Relaxed);
                    tracing::info!(
                        args = %args,
                        "redis: the server has no RESET (Redis < 6.2); releases there roll \
                         back and replay the handshake instead"
                    );
                    break Reset::Unsupported;
                }
                return Err(error::broken(args.scrub(&format!("RESET failed: {text}"))));
            }
            _ => skip(&mut skipped, deadline, "RESET")?,
        }
    };
    for step in &expect {
        check(conn, step, &nonce, deadline, args, "resetting")?;
    }
    Ok(outcome)
}

/// The handshake commands after `RESET` (or, with `select_always`, after the rollback on a
/// server without `RESET`, where the db was not reset to 0): what each must answer.
fn replay(
    pipe: &mut redis::Pipeline,
    handshake: &Handshake,
    rename: bool,
    select_always: bool,
) -> Vec<Expect> {
    let mut expect = Vec::new();
    if let Some(password) = &handshake.password {
        let auth = pipe.cmd("AUTH");
        if let Some(user) = &handshake.user {
            auth.arg(user);
        }
        auth.arg(password);
        expect.push(Expect::Ok("AUTH"));
    }
    if handshake.db != 0 {
        pipe.cmd("SELECT").arg(handshake.db);
        expect.push(Expect::Ok("SELECT"));
    } else if select_always {
        pipe.cmd("SELECT").arg(0);
        expect.push(Expect::OkUnlessDenied("SELECT"));
    }
    if handshake.name.is_some() || rename {
        let name = handshake.name.as_deref().unwrap_or("");
        pipe.cmd("CLIENT").arg("SETNAME").arg(name);
        expect.push(Expect::Ok("CLIENT SETNAME"));
    }
    expect
}

/// `DISCARD` (ends a `MULTI`; its "without MULTI" error is fine), `UNWATCH`, then — when
/// `replay` is given (a full reset on a server without `RESET`) — the handshake again, and
/// `PING <nonce>`. A subscribed RESP2 session refuses `DISCARD` and `UNWATCH`, which fails the
/// exchange: a subscribed connection is closed, never parked.
pub(crate) fn rollback(
    conn: &mut Connection,
    replay_handshake: Option<(&Handshake, bool)>,
    bound: Duration,
    args: &ConnArgs,
) -> Result<(), DriverError> {
    let nonce = nonce();
    let mut pipe = redis::pipe();
    pipe.cmd("DISCARD").cmd("UNWATCH");
    let mut expect = vec![Expect::Ok("UNWATCH")];
    if let Some((handshake, rename)) = replay_handshake {
        expect.extend(replay(&mut pipe, handshake, rename, true));
    }
    pipe.cmd("PING").arg(&nonce);
    expect.push(Expect::Nonce);
    let deadline = Instant::now() + bound;
    let what = "rolling back";
    send(conn, &pipe.get_packed_pipeline(), bound, args, what)?;
    match read_reply(conn, deadline, args, what)? {
        Reply::Okay => {}
        Reply::ServerError(e)
            if error::server_text(&e.clone().into()).contains("without MULTI") => {}
        other => return Err(unexpected("DISCARD", &other)),
    }
    for step in &expect {
        check(conn, step, &nonce, deadline, args, what)?;
    }
    Ok(())
}

/// `PING <nonce>` under `timeout` for the write and every read; only the nonce means alive.
pub(crate) fn ping(
    conn: &mut Connection,
    timeout: Duration,
    args: &ConnArgs,
) -> Result<(), DriverError> {
    let nonce = nonce();
    let deadline = Instant::now() + timeout;
    let packed = redis::cmd("PING").arg(&nonce).get_packed_command();
    send(conn, &packed, timeout, args, "pinging")?;
    check(conn, &Expect::Nonce, &nonce, deadline, args, "pinging")
}

/// Reads the reply `step` expects, skipping RESP3 pushes only.
fn check(
    conn: &mut Connection,
    step: &Expect,
    nonce: &str,
    deadline: Instant,
    args: &ConnArgs,
    what: &str,
) -> Result<(), DriverError> {
    let reply = read_reply(conn, deadline, args, what)?;
    match (step, reply) {
        (Expect::Ok(_) | Expect::OkUnlessDenied(_), Reply::Okay) => Ok(()),
        (Expect::OkUnlessDenied(_), Reply::ServerError(e)) if e.code() == "NOPERM" => Ok(()),
        (Expect::Nonce, Reply::BulkString(b)) if b == nonce.as_bytes() => Ok(()),
        (Expect::Nonce, Reply::SimpleString(s)) if s == nonce => Ok(()),
        (Expect::Ok(name) | Expect::OkUnlessDenied(name), Reply::ServerError(e)) => {
            Err(error::broken(args.scrub(&format!(
                "{what}: {name} failed: {}",
                error::server_text(&e.into())
            ))))
        }
        (Expect::Ok(name) | Expect::OkUnlessDenied(name), other) => Err(unexpected(name, &other)),
        (Expect::Nonce, other) => Err(unexpected("PING <nonce>", &other)),
    }
}

/// The next reply that is not a push message.
fn read_reply(
    conn: &mut Connection,
    deadline: Instant,
    args: &ConnArgs,
    what: &str,
) -> Result<Reply, DriverError> {
    let mut skipped = 0;
    loop {
        match read(conn, deadline, skipped > 0, args, what)? {
            Reply::Push { .. } => skip(&mut skipped, deadline, what)?,
            reply => return Ok(reply),
        }
    }
}

/// Writes `bytes` with the write timeout set to `bound`, and arms the read timeout with it.
fn send(
    conn: &mut Connection,
    bytes: &[u8],
    bound: Duration,
    args: &ConnArgs,
    what: &str,
) -> Result<(), DriverError> {
    let bound = Some(bound.max(Duration::from_millis(1)));
    conn.set_write_timeout(bound)
        .and_then(|()| conn.set_read_timeout(bound))
        .and_then(|()| conn.send_packed_command(bytes))
        .map_err(|e| error::map(&e, Phase::Session, args, what))
}

/// One message; `rearm` sets the read timeout to what is left before `deadline` first (needed
/// only once stale messages were skipped: the first read runs under the timeout `send` set).
fn read(
    conn: &mut Connection,
    deadline: Instant,
    rearm: bool,
    args: &ConnArgs,
    what: &str,
) -> Result<Reply, DriverError> {
    if rearm {
        let left = deadline.saturating_duration_since(Instant::now());
        conn.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(|e| error::map(&e, Phase::Session, args, what))?;
    }
    // Server errors arrive as `Reply::ServerError`; an `Err` is I/O or protocol trouble.
    conn.recv_response().map_err(|e| {
        let mapped = error::map(&e, Phase::Session, args, what);
        error::broken(mapped.message())
    })
}

fn skip(skipped: &mut usize, deadline: Instant, what: &str) -> Result<(), DriverError> {
    *skipped += 1;
    if *skipped > MAX_SKIPPED || Instant::now() >= deadline {
        return Err(error::broken(format!(
            "{what}: gave up after skipping {skipped} stale messages"
        )));
    }
    Ok(())
}

fn mentions(e: &redis::RedisError, word: &str) -> bool {
    error::server_text(e).to_ascii_lowercase().contains(word)
}

fn unexpected(step: &str, reply: &Reply) -> DriverError {
    let shape = match reply {
        Reply::Nil => "nil".to_owned(),
        Reply::Int(_) => "an integer".to_owned(),
        Reply::BulkString(_) => "a different string".to_owned(),
        Reply::SimpleString(s) => format!("status `{s}`"),
        Reply::Okay => "OK".to_owned(),
        Reply::ServerError(e) => format!("error `{}`", error::server_text(&e.clone().into())),
        _ => "an aggregate or push".to_owned(),
    };
    error::broken(format!("{step}: unexpected reply ({shape})"))
}

/// A token no earlier exchange on any connection used: process id, a process-wide counter and
/// the clock, so a stale `PONG` can never pass for a fresh one.
fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("pool-{:x}-{n:x}-{nanos:x}", std::process::id())
}
