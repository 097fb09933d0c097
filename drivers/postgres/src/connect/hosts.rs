//! The host list, and the TLS fallbacks of `sslmode=allow` and `prefer`, as libpq walks them.
//!
//! Hosts are tried in the order written (shuffled for `load_balance_hosts=random`), each
//! attempt bounded by `connect_timeout` when set, until one accepts the login and passes
//! `target_session_attrs`. Each attempt is `tokio_postgres::Config::connect` for that one
//! host: it resolves the name, tries each address, sets keepalives and `tcp_user_timeout`,
//! negotiates TLS, logs in, checks `target_session_attrs`, and keeps the host in the client so
//! a `CancelToken` can reach it. What each failed attempt says is kept for the final error.
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
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::Ordering;

use tokio_postgres::config::SslMode as WireMode;
use tokio_postgres::Client;

use super::failure::{Cause, Failure};
use crate::client::PgConnection;
use crate::config::{Plan, Target};
use crate::tls::{MakeTls, SslMode};

/// SQLSTATE `invalid_password`: no point retrying with other encryption.
const INVALID_PASSWORD: &str = "28P01";

/// The first host that accepts the login (and which it was), or `None` with every failure in
/// `failures`.
pub(super) async fn first_that_answers<'p>(
    plan: &'p Plan,
    tls: &MakeTls,
    failures: &RefCell<Vec<Failure>>,
) -> Option<(Client, PgConnection, &'p Target)> {
    let mut order: Vec<&Target> = plan.targets.iter().collect();
    if plan.random_order {
        shuffle(&mut order);
    }
    for target in order {
        let attempt = one_host(plan, tls, target, failures);
        let connected = match plan.per_host {
            None => attempt.await,
            Some(bound) => match tokio::time::timeout(bound, attempt).await {
                Ok(connected) => connected,
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
        if let Some((client, connection)) = connected {
            return Some((client, connection, target));
        }
    }
    None
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
