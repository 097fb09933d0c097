//! The driver's own exchanges on the wire: the one-round-trip reset, the rollback-only cleanup
//! and the liveness ping, each ending in `PING <nonce>` and read up to that nonce.
//!
//! Why a nonce: a released session may still have unread data in its socket — pub/sub messages,
//! RESP3 pushes (tracking invalidations), replies to commands the user sent through the native
//! client and never read, a late reply to a command whose read timed out. Counting replies
//! would misalign on any of those. The nonce is fresh per exchange, so only *this* exchange's
//! `PING` can return it; everything before the exchange's own replies is skipped (bounded in
//! count and time), and a missing or wrong reply fails the exchange, which closes the connection.
//!
//! What the exchanges never do is decide from the text of the commands the session ran. The
//! full reset is the same pipeline for every used session; the rollback-only cleanup undoes
//! what it can unconditionally and asks the server (`CLIENT INFO`) about the rest.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pool_driver::{ConnArgs, DriverError, DriverErrorKind};
use redis::{Connection, Value as Reply};

use crate::error::{self, Phase};
use crate::opts::Handshake;

/// Most stale messages skipped before an exchange's own replies; more means a flood (a busy
/// subscription), and the connection is closed rather than drained.
const MAX_SKIPPED: usize = 10_000;

/// What the driver has learnt about one server (host and port, or socket), shared by every
/// connection to it.
#[derive(Debug, Default)]
pub(crate) struct ServerFacts {
    /// The server said it has no `RESET` (Redis < 6.2): releases go straight to the
    /// rollback-only cleanup and the handshake.
    pub(crate) no_reset: AtomicBool,
    /// The server could not report a session's state to the rollback-only cleanup (`CLIENT
    /// INFO` unknown before Redis 6.2, or denied to the user); logged once, at INFO.
    pub(crate) unreported: AtomicBool,
    /// The commands that cannot change a connection, as the server classifies them (see
    /// `commands.rs`), asked once: `None` inside when the server could not say (then every
    /// used session is reset). Unset until a connect got an answer.
    pub(crate) data_only: std::sync::OnceLock<Option<std::sync::Arc<crate::commands::DataOnly>>>,
    /// How this server tells its role ([`role`]): 0 `ROLE` (until refused), 1 `HELLO`'s `role`
    /// field (`ROLE` is `@admin @dangerous`, denied to most application users), 2 neither
    /// (both refused: the role cannot be checked, only liveness).
    pub(crate) role_by: std::sync::atomic::AtomicU8,
}

/// What a node says it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// `master` (ROLE) or `master` (HELLO).
    Master,
    /// `slave` (ROLE) or `replica` (HELLO).
    Replica,
    /// Something else (`sentinel`…), as the server wrote it.
    Other(String),
    /// The server would not say (both commands refused).
    Unknown,
}

/// What the full reset found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reset {
    /// `RESET` ran and the handshake was replayed: the session is as new.
    Done,
    /// The server does not know `RESET` (Redis < 6.2; now recorded); the rest of the pipeline
    /// (handshake, nonce) succeeded, so the caller finishes with the rollback-only cleanup.
    Unsupported,
}

/// One expected reply.
enum Expect {
    /// `+OK` from a handshake command, named for the error message.
    Ok(&'static str),
    /// `+OK`, or `NOPERM`: a command the user may not run (so cannot have run either).
    OkUnlessDenied(&'static str),
    /// `+OK` from a command that undoes a piece of state (`CLIENT REPLY ON`, `CLIENT TRACKING
    /// OFF`) — or `NOPERM` (the user may not run it, so cannot have set that state either), or
    /// "unknown" (the server predates the feature, so the state cannot exist).
    Undo(&'static str),
    /// `HELLO 2`'s reply, which must say `proto` 2 — or, as for [`Expect::Undo`], `NOPERM` or
    /// "unknown" (`HELLO` is the only way to RESP3, and came with it in Redis 6.0).
    Hello,
    /// `CLIENT INFO`'s report on the session — or that the server cannot give one.
    Report,
    /// The nonce back from `PING`.
    Nonce,
}

impl Expect {
    fn name(&self) -> &'static str {
        match self {
            Expect::Ok(name) | Expect::OkUnlessDenied(name) | Expect::Undo(name) => name,
            Expect::Hello => "HELLO 2",
            Expect::Report => "CLIENT INFO",
            Expect::Nonce => "PING <nonce>",
        }
    }
}

/// What the server said about the session (the reply to `CLIENT INFO`).
enum Report {
    /// The `key=value` line; `resp3` when it came as a RESP3 verbatim string (so the session
    /// still speaks RESP3, whatever the line says).
    Given { line: String, resp3: bool },
    /// The server cannot report: its error (no secrets: the server's text about the command).
    Unavailable(String),
}

/// Why one reply is not the one expected.
enum Wrong {
    /// A handshake command failed (`AUTH` with a changed password…): the connection is unfit.
    Failed(DriverError),
    /// A reply of the wrong shape: the session answers out of step with the exchange (it
    /// monitors, is subscribed, or still queues in `MULTI`).
    OutOfStep(String),
}

/// `RESET`, the handshake again and `PING <nonce>`, written at once and read in one go: the
/// same pipeline for every used session, whatever it ran.
///
/// `RESET` (Redis ≥ 6.2) discards `MULTI`, unwatches, leaves pub/sub and `MONITOR`, turns off
/// tracking, sets `CLIENT REPLY ON`, switches back to RESP2, selects db 0, clears the client
/// name and logs the connection out to `default` (and, from Redis 7.2, ends `CLIENT NO-EVICT`
/// and `NO-TOUCH`). So the handshake follows: `AUTH` (essential: otherwise the next user would
/// be `default`, or unauthenticated), `SELECT` when the db is not 0, and `CLIENT SETNAME`
/// with the configured name or `""` (`RESET`'s documentation does not list the name, so it is
/// cleared here whatever the server did). Nothing depends on what the session ran: a name set
/// inside `MULTI`, by `HELLO … SETNAME` or through the native client goes like any other.
/// Known to survive: `CLIENT SETINFO`'s library name and version (Redis ≥ 7.2, informational),
/// and `CLIENT NO-EVICT` on Redis 7.0 (an `@dangerous` command; 7.2's `RESET` ends it).
///
/// A server without `RESET` is recorded in `facts` the moment it says so, before the rest of
/// the replies are checked: even when this connection must be closed (a `MULTI` left open
/// queues the handshake instead of running it), later releases skip straight to the fallback.
pub(crate) fn full(
    conn: &mut Connection,
    handshake: &Handshake,
    bound: Duration,
    args: &ConnArgs,
    facts: &ServerFacts,
) -> Result<Reset, DriverError> {
    let nonce = nonce();
    let mut pipe = redis::pipe();
    pipe.cmd("RESET");
    let mut expect = replay(&mut pipe, handshake, After::Reset);
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
                    facts.no_reset.store(true, Ordering::Relaxed);
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

/// What the handshake is replayed after.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    /// `RESET`: user `default`, db 0.
    Reset,
    /// The rollback-only cleanup on a server without `RESET`: user, db and name are whatever
    /// the session left, so each is set, unconditionally.
    Rollback,
}

/// The handshake commands (see [`After`]): what each must answer. The name is always set (the
/// configured one, or `""`); a user denied `CLIENT SETNAME` may leave the name alone only when
/// none is configured (connecting would have failed otherwise).
fn replay(pipe: &mut redis::Pipeline, handshake: &Handshake, after: After) -> Vec<Expect> {
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
    } else if after == After::Rollback {
        pipe.cmd("SELECT").arg(0);
        expect.push(Expect::OkUnlessDenied("SELECT"));
    }
    match &handshake.name {
        Some(name) => {
            pipe.cmd("CLIENT").arg("SETNAME").arg(name);
            expect.push(Expect::Ok("CLIENT SETNAME"));
        }
        None => {
            // Cleared whatever the session did. Redis 7 clears the name in `RESET` too, but
            // `RESET`'s documentation never promised it; after the rollback nothing else does.
            // A user denied CLIENT SETNAME may still have named the session with `HELLO …
            // SETNAME`: after the rollback the server's report (`name=`) decides, when it can
            // give one.
            pipe.cmd("CLIENT").arg("SETNAME").arg("");
            expect.push(Expect::OkUnlessDenied("CLIENT SETNAME"));
        }
    }
    expect
}

/// The rollback-only cleanup, in one round trip; with `restore` (a full release on a server
/// without `RESET`) also the handshake again. It decides nothing from what the session ran:
///
/// 1. `DISCARD` ends a `MULTI` (its reply, or its "without MULTI" error, is not looked at:
///    whatever it was, the server's report below says whether a `MULTI` is still open).
/// 2. It undoes, unconditionally, what it can: `CLIENT REPLY ON` (first, so every later
///    command answers), `UNWATCH`, `CLIENT TRACKING OFF`, `HELLO 2` (back to RESP2). Each may
///    be refused as denied (the user may not run it, so cannot have set that state) or
///    unknown (the server predates the feature).
/// 3. With `restore`: `AUTH`, `SELECT`, `CLIENT SETNAME` (the configured name, or `""`).
/// 4. `CLIENT INFO`: the server's own report on the session, and `PING <nonce>`.
///
/// Then it refuses the session (`NotReusable`: the pool closes it) when the server shows
/// state only `RESET` undoes — still subscribed (`PING` answered as a pub/sub message, `sub`/
/// `psub`/`ssub` counts, flag `P`), monitoring (flag `O`; a monitor's own commands also come
/// back to it, so its replies are out of step), still RESP3 or tracking, still in `MULTI` —,
/// any other flag it does not know to be harmless, and, with `restore`, a db or name that is
/// not the configured one or a flag the handshake cannot undo (`CLIENT NO-EVICT`, `NO-TOUCH`,
/// `READONLY`). Rollback-only without `restore` keeps the selected db, the name, the user and
/// those flags: it rolls back, by design, and nothing more.
///
/// Without a report (`CLIENT INFO` is unknown before Redis 6.2, or denied to the user; logged
/// once per server) the cleanup rests on step 2 and on the server's refusals: a subscribed
/// RESP2 session refuses everything, a RESP3 one is switched to RESP2 by `HELLO 2` and then
/// refuses the rest, a monitoring one answers out of step. What stays uncovered there: state
/// set by a more privileged user the session had switched to with `AUTH` (the undo runs as the
/// current user, who may not run it), and, with `restore`, a name set with `HELLO … SETNAME`
/// by a user that may not run `CLIENT SETNAME`.
///
/// A user that may not run one of these commands makes the server add a `NOPERM` entry to its
/// ACL log on each release (grouped, with a count); the commands are in `@connection`, not
/// `@dangerous`, so granting them is the usual fix.
pub(crate) fn rollback(
    conn: &mut Connection,
    restore: Option<&Handshake>,
    bound: Duration,
    args: &ConnArgs,
    facts: &ServerFacts,
) -> Result<(), DriverError> {
    let what = "rolling back";
    let nonce = nonce();
    let mut pipe = redis::pipe();
    pipe.cmd("DISCARD");
    pipe.cmd("CLIENT").arg("REPLY").arg("ON");
    pipe.cmd("UNWATCH");
    pipe.cmd("CLIENT").arg("TRACKING").arg("OFF");
    pipe.cmd("HELLO").arg(2);
    let mut expect = vec![
        Expect::Undo("CLIENT REPLY ON"),
        Expect::Ok("UNWATCH"),
        Expect::Undo("CLIENT TRACKING OFF"),
        Expect::Hello,
    ];
    if let Some(handshake) = restore {
        expect.extend(replay(&mut pipe, handshake, After::Rollback));
    }
    pipe.cmd("CLIENT").arg("INFO");
    expect.push(Expect::Report);
    pipe.cmd("PING").arg(&nonce);

    let deadline = Instant::now() + bound;
    send(conn, &pipe.get_packed_pipeline(), bound, args, what)?;
    let (replies, subscribed) = read_to_nonce(conn, &nonce, expect.len(), deadline, args, what)?;
    let refuse = |why: String| {
        DriverError::new(
            DriverErrorKind::NotReusable,
            args.scrub(&format!(
                "{what}: {why}; only RESET undoes that, so the connection is not reused"
            )),
        )
    };
    if subscribed {
        return Err(refuse(
            "the session is subscribed (it answered PING as a pub/sub message)".to_owned(),
        ));
    }
    if replies.len() < expect.len() {
        return Err(refuse(format!(
            "the session answered out of step ({} replies to {} commands)",
            replies.len(),
            expect.len()
        )));
    }
    let mut report = None;
    for (step, reply) in expect.iter().zip(replies) {
        match check_step(step, reply, args, what) {
            Ok(Some(given)) => report = Some(given),
            Ok(None) => {}
            Err(Wrong::Failed(e)) => return Err(e),
            Err(Wrong::OutOfStep(why)) => {
                return Err(refuse(format!(
                    "the session answered out of step, as a monitoring or subscribed one \
                     does ({why})"
                )))
            }
        }
    }
    match report {
        Some(Report::Given { line, resp3 }) => match unfit(&line, resp3, restore) {
            Some(why) => Err(refuse(format!("the server reports {why}"))),
            None => Ok(()),
        },
        Some(Report::Unavailable(reason)) => {
            if !facts.unreported.swap(true, Ordering::Relaxed) {
                tracing::info!(
                    args = %args,
                    reason = %args.scrub(&reason),
                    "redis: the server cannot report session state (CLIENT INFO); the \
                     rollback-only cleanup rests on its undos and on the server refusing \
                     commands in pub/sub and monitor mode"
                );
            }
            Ok(())
        }
        None => Err(refuse(
            "the session answered out of step (no report)".to_owned(),
        )),
    }
}

/// Reads every message up to this exchange's nonce, keeping the last `keep` replies before it
/// (pushes are skipped; everything counts against [`MAX_SKIPPED`] and the deadline). `true`
/// when the nonce came back as a pub/sub message (`["pong", nonce]`): a subscribed RESP2
/// session answers `PING` that way.
fn read_to_nonce(
    conn: &mut Connection,
    nonce: &str,
    keep: usize,
    deadline: Instant,
    args: &ConnArgs,
    what: &str,
) -> Result<(VecDeque<Reply>, bool), DriverError> {
    let mut kept = VecDeque::with_capacity(keep + 1);
    let mut seen = 0;
    loop {
        let reply = read(conn, deadline, seen > 0, args, what)?;
        if is_nonce(&reply, nonce) {
            return Ok((kept, false));
        }
        match reply {
            Reply::Array(items) if items.len() == 2 && is_nonce(&items[1], nonce) => {
                return Ok((kept, true))
            }
            Reply::Push { .. } => {}
            reply => {
                if kept.len() == keep {
                    kept.pop_front();
                }
                kept.push_back(reply);
            }
        }
        skip(&mut seen, deadline, what)?;
    }
}

/// Checks one reply against what `step` expects; `Some` for `CLIENT INFO`'s report.
fn check_step(
    step: &Expect,
    reply: Reply,
    args: &ConnArgs,
    what: &str,
) -> Result<Option<Report>, Wrong> {
    match (step, reply) {
        (Expect::Ok(_) | Expect::OkUnlessDenied(_) | Expect::Undo(_), Reply::Okay) => Ok(None),
        (Expect::OkUnlessDenied(_), Reply::ServerError(e)) if e.code() == "NOPERM" => Ok(None),
        (Expect::Undo(_) | Expect::Hello, Reply::ServerError(e)) if unable(&e.clone().into()) => {
            Ok(None)
        }
        (Expect::Hello, reply @ (Reply::Map(_) | Reply::Array(_))) => {
            if hello_proto(&reply) == Some(2) {
                Ok(None)
            } else {
                Err(Wrong::OutOfStep(
                    "HELLO 2 did not answer with protocol 2".to_owned(),
                ))
            }
        }
        (Expect::Report, Reply::BulkString(bytes)) => Ok(Some(Report::Given {
            line: String::from_utf8_lossy(&bytes).into_owned(),
            resp3: false,
        })),
        (Expect::Report, Reply::VerbatimString { text, .. }) => Ok(Some(Report::Given {
            line: text,
            resp3: true,
        })),
        (Expect::Report, Reply::ServerError(e)) if unable(&e.clone().into()) => {
            Ok(Some(Report::Unavailable(error::server_text(&e.into()))))
        }
        (Expect::Ok(name) | Expect::OkUnlessDenied(name), Reply::ServerError(e)) => {
            Err(Wrong::Failed(error::broken(args.scrub(&format!(
                "{what}: {name} failed: {}",
                error::server_text(&e.into())
            )))))
        }
        (step, other) => Err(Wrong::OutOfStep(format!(
            "{}: {}",
            step.name(),
            shape(&other)
        ))),
    }
}

/// A refusal that means "cannot have set this state": `NOPERM` (the user may not run the
/// command), or the server does not know the command (`unknown command`, `Unknown subcommand`,
/// Redis 5's `Syntax error` for `CLIENT` subcommands). Not a refusal for the session's mode
/// (`Can't execute … in this context`, a subscribed session): that is out of step.
fn unable(e: &redis::RedisError) -> bool {
    if e.code() == Some("NOPERM") {
        return true;
    }
    let text = error::server_text(e).to_ascii_lowercase();
    e.code() == Some("ERR") && (text.contains("unknown") || text.contains("syntax error"))
}

/// The `proto` entry of a `HELLO` reply (a map on RESP3, alternating keys and values on RESP2).
fn hello_proto(reply: &Reply) -> Option<i64> {
    let is_proto = |key: &Reply| matches!(key, Reply::BulkString(k) if k == b"proto");
    match reply {
        Reply::Map(pairs) => pairs.iter().find_map(|(k, v)| match v {
            Reply::Int(n) if is_proto(k) => Some(*n),
            _ => None,
        }),
        Reply::Array(items) => items.chunks(2).find_map(|pair| match pair {
            [k, Reply::Int(n)] if is_proto(k) => Some(*n),
            _ => None,
        }),
        _ => None,
    }
}

/// Client flags (`CLIENT INFO`'s `flags=`) that say nothing about state a later user could
/// meet: `N` none, `U` unix socket, `u` just unblocked, `d` a watched key changed (`UNWATCH`
/// clears it; harmless once unwatched).
const HARMLESS_FLAGS: &str = "NUud";

/// Flags for settings rollback-only keeps by design (like the db and the name), which only
/// `RESET` ends: `e` `CLIENT NO-EVICT`, `T` `CLIENT NO-TOUCH`, `r` `READONLY` (cluster).
const SETTING_FLAGS: &str = "eTr";

/// Why the session `line` describes must not be reused, if it must not: state only `RESET`
/// undoes (see [`rollback`]). Names fields and flags, never values a user chose (the name).
fn unfit(line: &str, resp3: bool, restore: Option<&Handshake>) -> Option<String> {
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
    };
    if resp3 || field("resp").is_some_and(|v| v != "2") {
        return Some("the session still speaks RESP3".to_owned());
    }
    for key in ["sub", "psub", "ssub"] {
        if field(key).is_some_and(|v| v != "0") {
            return Some(format!("the session is subscribed (`{key}`)"));
        }
    }
    if field("multi").is_some_and(|v| v != "-1") {
        return Some("the session is still inside MULTI".to_owned());
    }
    let flags = field("flags").unwrap_or("");
    let kept = if restore.is_some() { "" } else { SETTING_FLAGS };
    if let Some(flag) = flags
        .chars()
        .find(|c| !HARMLESS_FLAGS.contains(*c) && !kept.contains(*c))
    {
        return Some(format!("client flag `{flag}` ({})", flag_meaning(flag)));
    }
    if let Some(handshake) = restore {
        if field("db").and_then(|v| v.parse::<i64>().ok()) != Some(handshake.db) {
            return Some("a db other than the configured one".to_owned());
        }
        if field("name") != Some(handshake.name.as_deref().unwrap_or("")) {
            return Some("a client name other than the configured one".to_owned());
        }
    }
    None
}

fn flag_meaning(flag: char) -> &'static str {
    match flag {
        'O' => "monitoring",
        'P' => "subscribed",
        'x' => "inside MULTI",
        't' => "tracking keys",
        'R' => "tracking, redirect broken",
        'B' => "broadcast tracking",
        'b' => "blocked",
        'S' | 'M' => "a replication link",
        'A' | 'c' => "about to be closed by the server",
        'e' => "CLIENT NO-EVICT",
        'T' => "CLIENT NO-TOUCH",
        'r' => "READONLY",
        _ => "not known to be harmless",
    }
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

/// `ROLE` (or `HELLO`, see [`ServerFacts::role_by`]) and `PING <nonce>` in one round trip
/// within `timeout`: what the node is, and that it is alive and in step. A refused `ROLE` is
/// remembered for the server and asked again as `HELLO` (a second round trip, once per
/// server); when both are refused the answer is [`Role::Unknown`].
///
/// `HELLO` without arguments only reports (protocol, id, mode, role…): it changes nothing on
/// the connection (Redis ≥ 6.2; 6.0 wants a protocol version and refuses it).
pub(crate) fn role(
    conn: &mut Connection,
    timeout: Duration,
    args: &ConnArgs,
    facts: &ServerFacts,
) -> Result<Role, DriverError> {
    let deadline = Instant::now() + timeout;
    loop {
        let by = facts.role_by.load(Ordering::Relaxed);
        let nonce = nonce();
        let mut pipe = redis::pipe();
        match by {
            0 => {
                pipe.cmd("ROLE");
            }
            1 => {
                pipe.cmd("HELLO");
            }
            _ => {}
        }
        pipe.cmd("PING").arg(&nonce);
        let left = deadline.saturating_duration_since(Instant::now());
        send(
            conn,
            &pipe.get_packed_pipeline(),
            left,
            args,
            "checking the role",
        )?;
        let answer = if by < 2 {
            Some(read_reply(conn, deadline, args, "checking the role")?)
        } else {
            None
        };
        check(
            conn,
            &Expect::Nonce,
            &nonce,
            deadline,
            args,
            "checking the role",
        )?;
        let Some(answer) = answer else {
            return Ok(Role::Unknown);
        };
        match (by, answer) {
            // `NOPERM` (ACL), unknown (renamed away), or `HELLO` on Redis 6.0 (wants a
            // protocol version): ask the next way.
            (_, Reply::ServerError(_)) => {
                facts.role_by.store(by + 1, Ordering::Relaxed);
                tracing::debug!(
                    args = %args,
                    refused = if by == 0 { "ROLE" } else { "HELLO" },
                    "redis: the server refused the role question; asking another way"
                );
            }
            (0, reply) => return role_of(&reply, "role"),
            (_, reply) => return role_of(&reply, "hello"),
        }
    }
}

/// The role in `ROLE`'s reply (its first element) or `HELLO`'s (the `role` field of a map,
/// or of a flat array of pairs on RESP2).
fn role_of(reply: &Reply, asked: &str) -> Result<Role, DriverError> {
    let text = |v: &Reply| match v {
        Reply::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let word = match (asked, reply) {
        ("role", Reply::Array(items)) => items.first().and_then(text),
        (_, Reply::Array(items)) => items
            .chunks(2)
            .find(|pair| pair.first().and_then(text).as_deref() == Some("role"))
            .and_then(|pair| pair.get(1).and_then(text)),
        (_, Reply::Map(pairs)) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some("role"))
            .and_then(|(_, v)| text(v)),
        _ => None,
    };
    match word.as_deref() {
        Some("master") => Ok(Role::Master),
        Some("slave" | "replica") => Ok(Role::Replica),
        Some(other) => Ok(Role::Other(other.to_owned())),
        None => Err(unexpected(
            if asked == "role" { "ROLE" } else { "HELLO" },
            reply,
        )),
    }
}

/// Reads the reply `step` expects, skipping RESP3 pushes only (the full reset and the ping:
/// their replies after the first are read one by one, in order).
fn check(
    conn: &mut Connection,
    step: &Expect,
    nonce: &str,
    deadline: Instant,
    args: &ConnArgs,
    what: &str,
) -> Result<(), DriverError> {
    let reply = read_reply(conn, deadline, args, what)?;
    if let Expect::Nonce = step {
        return if is_nonce(&reply, nonce) {
            Ok(())
        } else {
            Err(unexpected(step.name(), &reply))
        };
    }
    match check_step(step, reply, args, what) {
        Ok(_) => Ok(()),
        Err(Wrong::Failed(e)) => Err(e),
        Err(Wrong::OutOfStep(why)) => {
            Err(error::broken(format!("{what}: unexpected reply: {why}")))
        }
    }
}

/// Whether `reply` is `PING <nonce>`'s answer (bulk on RESP2 and RESP3; a status, should a
/// server send one).
fn is_nonce(reply: &Reply, nonce: &str) -> bool {
    match reply {
        Reply::BulkString(b) => b == nonce.as_bytes(),
        Reply::SimpleString(s) => s == nonce,
        _ => false,
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
    error::broken(format!("{step}: unexpected reply ({})", shape(reply)))
}

/// A reply's kind, for messages. A status is shown only when it is one short word (`QUEUED`):
/// a monitoring session's status lines quote other clients' commands and their arguments.
fn shape(reply: &Reply) -> String {
    match reply {
        Reply::Nil => "nil".to_owned(),
        Reply::Int(_) => "an integer".to_owned(),
        Reply::BulkString(_) => "a different string".to_owned(),
        Reply::SimpleString(s) if s.len() <= 16 && s.chars().all(|c| c.is_ascii_uppercase()) => {
            format!("status `{s}`")
        }
        Reply::SimpleString(_) => "a status line".to_owned(),
        Reply::Okay => "OK".to_owned(),
        Reply::ServerError(e) => format!("error `{}`", error::server_text(&e.clone().into())),
        _ => "an aggregate or push".to_owned(),
    }
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
