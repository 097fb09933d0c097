//! A new connection's setup (`AUTH`, `SELECT`, `CLIENT SETINFO`, `CLIENT SETNAME`), run by the
//! driver under one deadline.
//!
//! The `redis` crate (0.32) is given only the address (no password, db 0, and no `CLIENT
//! SETINFO`: the crate's `disable-client-setinfo` feature), so its connect is the TCP connect
//! alone (and, with TLS, nothing more: rustls shakes hands on the first write, here). Why: the
//! crate sets the socket's timeouts once, to what the TCP connect left of its bound, then reads
//! *every* reply of its setup pipeline even after one read timed out, so against a silent
//! server each read waited the whole bound (2, 3, 4 times the timeout). Splitting its bound
//! by the number of replies kept a silent server within the timeout but refused slow links
//! whose one round trip exceeded the share. Here every read is rearmed to what is left of the
//! one deadline: a silent server fails at the deadline, a slow one has all of it.

use std::time::{Duration, Instant};

use redis::{ConnectionInfo, RedisConnectionInfo, Value as Reply};

use crate::error;

/// What the crate's connect is given: `info`'s address, no credentials, db 0, RESP2.
pub(crate) fn bare(info: &ConnectionInfo) -> ConnectionInfo {
    ConnectionInfo {
        addr: info.addr.clone(),
        redis: RedisConnectionInfo::default(),
    }
}

/// The handshake of one connection.
pub(crate) struct Setup<'a> {
    pub(crate) user: Option<&'a str>,
    pub(crate) password: Option<&'a str>,
    pub(crate) db: i64,
    pub(crate) name: Option<&'a str>,
}

/// Why the setup failed.
pub(crate) enum Failure {
    /// I/O trouble or a timeout (a TLS handshake's failure too): the caller maps it as a
    /// connect error (and may probe the port, see `driver`).
    Io(redis::RedisError),
    /// The server refused a step: which, its `CODE detail` text and code. No secret: the
    /// server's error replies never quote the password.
    Refused {
        step: &'static str,
        text: String,
        code: Option<String>,
    },
}

/// Sends the handshake as one pipeline, then reads its replies, each read under what is left
/// before `deadline`. `AUTH`, `SELECT` and `CLIENT SETNAME` must answer `OK`; `CLIENT SETINFO`'s
/// replies are read and ignored (a server before 7.2 does not know it; a Sentinel may refuse
/// it), as the `redis` crate does. A server that refuses `AUTH user password` with "wrong
/// number of arguments" (Redis < 6) is asked again with `AUTH password`, as the crate did.
pub(crate) fn run(
    conn: &mut redis::Connection,
    setup: &Setup<'_>,
    deadline: Instant,
) -> Result<(), Failure> {
    match attempt(conn, setup, setup.user, deadline) {
        Err(Failure::Refused {
            step: "AUTH", text, ..
        }) if setup.user.is_some() && text.contains("wrong number of arguments") => {
            attempt(conn, setup, None, deadline)
        }
        other => other,
    }
}

fn attempt(
    conn: &mut redis::Connection,
    setup: &Setup<'_>,
    user: Option<&str>,
    deadline: Instant,
) -> Result<(), Failure> {
    let mut pipe = redis::pipe();
    // What each reply must be: `Some(step)` an `OK`, `None` ignored.
    let mut expect: Vec<Option<&'static str>> = Vec::new();
    if let Some(password) = setup.password {
        let auth = pipe.cmd("AUTH");
        if let Some(user) = user {
            auth.arg(user);
        }
        auth.arg(password);
        expect.push(Some("AUTH"));
    }
    if setup.db != 0 {
        pipe.cmd("SELECT").arg(setup.db);
        expect.push(Some("SELECT"));
    }
    pipe.cmd("CLIENT")
        .arg("SETINFO")
        .arg("LIB-NAME")
        .arg("redis-rs");
    pipe.cmd("CLIENT")
        .arg("SETINFO")
        .arg("LIB-VER")
        .arg(REDIS_CRATE_VERSION);
    expect.extend([None, None]);
    if let Some(name) = setup.name {
        pipe.cmd("CLIENT").arg("SETNAME").arg(name);
        expect.push(Some("CLIENT SETNAME"));
    }
    arm(conn, deadline, true).map_err(Failure::Io)?;
    conn.send_packed_command(&pipe.get_packed_pipeline())
        .map_err(Failure::Io)?;
    // Every reply is read before a refusal is reported: the connection stays in step (the
    // retry of `AUTH` runs on it).
    let mut refused = None;
    for step in expect {
        arm(conn, deadline, false).map_err(Failure::Io)?;
        let reply = conn.recv_response().map_err(Failure::Io)?;
        let Some(step) = step else { continue };
        if refused.is_some() {
            continue;
        }
        match reply {
            Reply::Okay => {}
            Reply::ServerError(e) => {
                let e: redis::RedisError = e.into();
                refused = Some(Failure::Refused {
                    step,
                    text: error::server_text(&e),
                    code: e.code().map(str::to_owned),
                });
            }
            _ => {
                refused = Some(Failure::Refused {
                    step,
                    text: "an unexpected reply (not OK)".to_owned(),
                    code: None,
                });
            }
        }
    }
    refused.map_or(Ok(()), Err)
}

/// Sets the read (and with `write`, the write) timeout to what is left before `deadline` (at
/// least 1 ms: a zero timeout is an error). Past the deadline: a timeout error.
fn arm(conn: &redis::Connection, deadline: Instant, write: bool) -> redis::RedisResult<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the connect timeout ran out during the handshake",
        )
        .into());
    }
    let left = Some(left.max(Duration::from_millis(1)));
    conn.set_read_timeout(left)?;
    if write {
        conn.set_write_timeout(left)?;
    }
    Ok(())
}

/// The version `CLIENT SETINFO LIB-VER` reports: the `redis` crate's line, as the crate itself
/// would (it sends its own `CARGO_PKG_VERSION`, which this crate cannot read).
const REDIS_CRATE_VERSION: &str = "0.32";
