//! The host list, and the TLS fallbacks of `sslmode=allow` and `prefer`, as libpq walks them.
//!
//! Hosts are tried in the order written (shuffled for `load_balance_hosts=random`), each
//! attempt bounded by `connect_timeout` when set, until one accepts the login and fits
//! `target_session_attrs`. Each attempt is `tokio_postgres::Config::connect` for that one
//! host: it resolves the name, tries each address, sets keepalives and `tcp_user_timeout`,
//! negotiates TLS, logs in, and keeps the host in the client so a `CancelToken` can reach it.
//! Then the driver checks the server's role itself (`crate::role`: `tokio-postgres` knows only
//! three of libpq's six values), inside the same per-host bound. What each failed attempt
//! says is kept for the final error, so a failover's error names every host's answer.
//!
//! Per host, by `sslmode`:
//!
//! * `disable`, and every unix socket: one plain attempt.
//! * `allow`: plain; if the server refuses the login, once more with TLS.
//! * `prefer`: TLS if the server offers it; if a TLS attempt fails (the handshake, or the
//!   server refusing the encrypted login), once more without TLS. Not after a wrong password
//!   (28P01): the same password would fail again, and the error would only get less clear.
//!   Not when the encrypted login worked but the server was not what `target_session_attrs`
//!   asked for: libpq moves on to the next host, and a plain retry would only send the login
//!   unencrypted.
//! * `require`, `verify-ca`, `verify-full`: TLS or nothing.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::hash::{BuildHasher, RandomState};
use std::pin::pin;
use std::sync::atomic::Ordering;

use tokio_postgres::config::SslMode as WireMode;
use tokio_postgres::Client;

use super::failure::{Cause, Failure};
use crate::client::{self, PgConnection};
use crate::config::{Plan, Target};
use crate::role::{self, Role, SessionAttrs};
use crate::tls::{MakeTls, SslMode};

/// SQLSTATE `invalid_password`: no point retrying with other encryption.
const INVALID_PASSWORD: &str = "28P01";

/// A host that accepted the login and fits.
pub(super) struct Answer<'p> {
    pub(super) client: Client,
    pub(super) connection: PgConnection,
    pub(super) target: &'p Target,
    /// Whether the role the server reported at login matched what the role query answered: a
    /// proxy (PgBouncer) hands every client the values of its own first login and never
    /// updates them, so its reports must not be read as the server's (see `crate::role`).
    pub(super) reports_trusted: bool,
}

/// The first host that accepts the login and fits `target_session_attrs`, or `None` with every
/// failure in `failures`. For `prefer-standby`, the first host that answered but is not a
/// standby is kept in `fallback` while the others are tried, and is the answer when none is a
/// standby; the caller takes it from there if its overall deadline ends the walk first.
pub(super) async fn first_that_answers<'p>(
    plan: &'p Plan,
    tls: &MakeTls,
    failures: &RefCell<Vec<Failure>>,
    fallback: &RefCell<Option<Answer<'p>>>,
) -> Option<Answer<'p>> {
    let mut order: Vec<&Target> = plan.targets.iter().collect();
    if plan.random_order {
        shuffle(&mut order);
    }
    let wanted = match plan.attrs {
        SessionAttrs::PreferStandby => SessionAttrs::Standby,
        attrs => attrs,
    };
    for target in order {
        let attempt = async {
            let (client, connection) = one_host(plan, tls, target, failures).await?;
            let checked = fits(wanted, &client, connection).await;
            Some((client, checked))
        };
        let answered = match plan.per_host {
            None => attempt.await,
            Some(bound) => match tokio::time::timeout(bound, attempt).await {
                Ok(answered) => answered,
                Err(_elapsed) => {
                    failures.borrow_mut().push(Failure {
                        target: target.label(),
                        mode: plan.tls.mode,
                        encrypted: false,
                        cause: Cause::TimedOut(bound),
                    });
                    None
                }
            },
        };
        let Some((client, checked)) = answered else {
            continue;
        };
        let answer = |connection, reports_trusted| Answer {
            client,
            connection,
            target,
            reports_trusted,
        };
        let cause = match checked {
            Checked::Fits(connection, trusted) => return Some(answer(connection, trusted)),
            Checked::Other(connection, trusted, _) if plan.attrs == SessionAttrs::PreferStandby => {
                let mut kept = fallback.borrow_mut();
                if kept.is_none() {
                    *kept = Some(answer(connection, trusted));
                }
                continue;
            }
            Checked::Other(_, _, why) => Cause::WrongRole(why),
            Checked::Failed(Cause::Pg(err, _)) => Cause::Pg(err, target.tls_name()),
            Checked::Failed(cause) => cause,
        };
        failures.borrow_mut().push(Failure {
            target: target.label(),
            mode: plan.tls.mode,
            encrypted: false,
            cause,
        });
    }
    fallback.borrow_mut().take()
}

/// What [`fits`] found; `bool`: whether the server's own reports can be trusted.
enum Checked {
    /// The server fits the key's `target_session_attrs`.
    Fits(PgConnection, bool),
    /// It answered but does not fit; why, in libpq's words.
    Other(PgConnection, bool, String),
    /// The check itself failed (the connection broke, or the answer made no sense).
    Failed(Cause),
}

/// Whether the server behind a fresh connection fits `wanted`, by asking it
/// ([`role::ROLE_QUERY`]: one round trip, none for `any`). Not from what it reported at login,
/// as libpq does on PostgreSQL 14+: a PgBouncer in front reports the values of its own first
/// login, which after a failover describe another server (pgbouncer/pgbouncer#859). The
/// reports are trusted later only if they agree with the answer here.
async fn fits(wanted: SessionAttrs, client: &Client, connection: PgConnection) -> Checked {
    if !wanted.is_checked() {
        return Checked::Fits(connection, false);
    }
    let reported = reported_role(&connection);
    let (connection, role) = match ask(client, connection).await {
        Ok(asked) => asked,
        Err(cause) => return Checked::Failed(cause),
    };
    let trusted = reported == Some(role);
    match wanted.accepts(role) {
        true => Checked::Fits(connection, trusted),
        false => Checked::Other(connection, trusted, wanted.mismatch(role)),
    }
}

/// The role the server reported at login, if it reports it (PostgreSQL 14+).
fn reported_role(connection: &PgConnection) -> Option<Role> {
    Role::reported(|name| connection.parameter(name).map(|value| value == "on"))
}

/// Asks [`role::ROLE_QUERY`] on a connection no `PgClient` drives yet: the socket half is
/// polled here alongside the query, as `PgClient::block_on` does.
async fn ask(client: &Client, connection: PgConnection) -> Result<(PgConnection, Role), Cause> {
    let mut live = Some(connection);
    let (mut notifications, mut failure) = (VecDeque::new(), None);
    let mut query = pin!(client.simple_query(role::ROLE_QUERY));
    let answer = poll_fn(|cx| {
        client::drive(&mut live, &mut notifications, &mut failure, cx);
        query.as_mut().poll(cx)
    })
    .await;
    let target = String::new();
    let messages = answer.map_err(|err| Cause::Pg(failure.unwrap_or(err), target))?;
    match (live, role::parse_answer(&messages)) {
        (Some(connection), Some(role)) => Ok((connection, role)),
        (None, _) => Err(Cause::WrongRole(
            "the connection closed right after the role check".to_owned(),
        )),
        (Some(_), None) => Err(Cause::WrongRole(
            "the server's answer to the role check (pg_is_in_recovery, transaction_read_only) \
             was not one row of two columns"
                .to_owned(),
        )),
    }
}

/// Connects to `target` as its `sslmode` says (see the module docs).
async fn one_host(
    plan: &Plan,
    tls: &MakeTls,
    target: &Target,
    failures: &RefCell<Vec<Failure>>,
) -> Option<(Client, PgConnection)> {
    let attempt = |wire| once(plan, tls, target, wire, failures);
    let mode = match target.is_unix() {
        true => SslMode::Disable,
        false => plan.tls.mode,
    };
    match mode {
        SslMode::Disable => attempt(WireMode::Disable).await.ok(),
        SslMode::Allow => match attempt(WireMode::Disable).await {
            Ok(connected) => Some(connected),
            Err(failed) if failed.refused_by_server() => attempt(WireMode::Require).await.ok(),
            Err(_) => None,
        },
        SslMode::Prefer => match attempt(WireMode::Prefer).await {
            Ok(connected) => Some(connected),
            Err(failed) if failed.encrypted && failed.tls_refused() => {
                attempt(WireMode::Disable).await.ok()
            }
            Err(_) => None,
        },
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            attempt(WireMode::Require).await.ok()
        }
    }
}

/// What a failed attempt tells the fallbacks.
struct Failed {
    /// A TLS handshake was started.
    encrypted: bool,
    /// The handshake itself failed (a certificate, a protocol error).
    handshake_failed: bool,
    /// The server's SQLSTATE, when the server refused.
    code: Option<String>,
}

impl Failed {
    /// Whether `prefer` may try this host again without TLS, as libpq does: only when the TLS
    /// handshake failed, or the server refused the encrypted login (a `hostnossl`-only
    /// pg_hba.conf), never after a wrong password, and never when the encrypted session was
    /// fine but the server was not what `target_session_attrs` asked for (libpq moves on to
    /// the next host; a plain retry would send the login unencrypted for nothing).
    fn tls_refused(&self) -> bool {
        self.handshake_failed || self.refused_by_server()
    }

    fn refused_by_server(&self) -> bool {
        self.code.is_some() && !self.wrong_password()
    }

    fn wrong_password(&self) -> bool {
        self.code.as_deref() == Some(INVALID_PASSWORD)
    }
}

/// One attempt at `target` with the wire-level TLS mode `wire`; a failure is recorded.
async fn once(
    plan: &Plan,
    tls: &MakeTls,
    target: &Target,
    wire: WireMode,
    failures: &RefCell<Vec<Failure>>,
) -> Result<(Client, PgConnection), Failed> {
    let config = target.config(&plan.base, wire);
    let (connector, started) = tls.attempt();
    match config.connect(connector).await {
        Ok(connected) => Ok(connected),
        Err(err) => {
            let failed = Failed {
                encrypted: started.load(Ordering::Relaxed),
                handshake_failed: crate::tls::is_handshake_failure(&err),
                code: err.as_db_error().map(|db| db.code().code().to_owned()),
            };
            failures.borrow_mut().push(Failure {
                target: target.label(),
                mode: plan.tls.mode,
                encrypted: failed.encrypted,
                cause: Cause::Pg(err, target.tls_name()),
            });
            Err(failed)
        }
    }
}

/// Fisher–Yates with the standard library's randomly keyed hasher as the random source
/// (`load_balance_hosts=random` needs spread, not cryptographic randomness).
fn shuffle<T>(items: &mut [T]) {
    let state = RandomState::new();
    for i in (1..items.len()).rev() {
        let j = state.hash_one(i) % (i as u64 + 1);
        items.swap(i, j as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::shuffle;

    #[test]
    fn shuffle_keeps_every_host_and_varies_the_order() {
        let hosts: Vec<u32> = (0..8).collect();
        let mut orders = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut order = hosts.clone();
            shuffle(&mut order);
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, hosts);
            orders.insert(order);
        }
        assert!(orders.len() > 10, "{} distinct orders in 50", orders.len());
    }
}
