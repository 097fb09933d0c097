//! What `detach` sends to clean a session before it is parked.
//!
//! The full reset must end any transaction and clear what `DISCARD ALL` clears, in one round
//! trip. `DISCARD ALL` itself cannot be that round trip: it refuses to run inside a transaction
//! block, a multi-statement simple query is one (an implicit block), and the client library
//! does not tell us whether a transaction is open. Measured on PostgreSQL 15:
//!
//! * `ROLLBACK; DISCARD ALL` as one query fails, in or out of a transaction, with
//!   "DISCARD ALL cannot run inside a transaction block".
//! * `ROLLBACK` then `DISCARD ALL` works, in two round trips, but `DISCARD ALL` (like
//!   `DEALLOCATE ALL`) also drops the protocol-level statements the client library owns.
//!   tokio-postgres caches the statements it prepares to look up custom types (enums,
//!   domains, composites) and `clear_type_cache` does not forget them, so the next custom-type
//!   lookup fails with `prepared statement "s1" does not exist` (SQLSTATE 26000).
//! * `ROLLBACK; RESET ALL` leaves `SET ROLE` in place (`role` is exempt from `RESET ALL`), and
//!   misses temp tables, prepared statements, cursors, locks and `LISTEN`.
//! * `ROLLBACK; …; DEALLOCATE ALL` (the manual's equivalent verbatim) runs in one round trip
//!   but breaks custom types just like `DISCARD ALL`.
//! * [`BEGIN`] + [`AFTER_BEGIN`] (chosen): `BEGIN`, `ROLLBACK` (see below), then the
//!   statements the PostgreSQL manual lists as `DISCARD ALL`'s equivalent except
//!   `DEALLOCATE ALL`, then a query for the statements made with SQL `PREPARE` (the
//!   function behind the `pg_prepared_statements` view: the view costs
//!   ~10–20 µs more to plan). Those (rare) are deallocated by name in a second round trip; the
//!   library's own protocol-level statements are left to the library, which closes each when
//!   its `Statement` is dropped. It clears the transaction (also an aborted one, with
//!   savepoints), `SET ROLE`, `SET SESSION AUTHORIZATION`, every setting (search_path, custom
//!   `app.*` settings, statement_timeout, default_transaction_*), `WITH HOLD` cursors, `LISTEN`,
//!   session advisory locks, cached plans, temp tables and sequence state.
//!   `SET SESSION AUTHORIZATION DEFAULT` is allowed for non-superusers (it returns to the
//!   authenticated user), and settings given at connect time (`options=-c …`) come back as
//!   `DISCARD ALL` would restore them.
//!
//! Not cleared: rows a user committed, session-level statistics, `setseed()` state, state kept
//! by extensions (for example dblink connections), and protocol-level statements whose
//! `Statement` a user still holds. A placeholder setting such as `app.user_id` resets to the
//! empty string, not to "unset". Notifications the client already buffered are dropped here.
//!
//! **No WARNING per release, one round trip in every state.** A bare leading `ROLLBACK` draws
//! "there is no transaction in progress" (a WARNING the server also writes to its log) whenever
//! no transaction is open, which is nearly every release, and tokio-postgres does not expose the
//! transaction status the server reports. So the reset is two simple queries sent pipelined, in
//! one write, and read back together: [`BEGIN`], then [`AFTER_BEGIN`] (`ROLLBACK` and the
//! cleaning statements). With no transaction open (the usual case) `BEGIN` opens one and
//! `ROLLBACK` ends it, silently; in an open transaction (a handler that forgot to commit)
//! `BEGIN` warns "there is already a transaction in progress" (worth a log line: it is a leak)
//! and `ROLLBACK` ends it; in an aborted transaction `BEGIN` fails with SQLSTATE 25P02, and
//! since each simple query stands alone, the second one still runs, and its `ROLLBACK` ends the
//! aborted transaction. The driver on the `postgres` crate sent `BEGIN; ROLLBACK; …` as one
//! query and needed a second round trip for the aborted case; the pipeline needs none. Within
//! the second query a failure stops the rest, so nothing after a failed statement runs on a
//! dirty session, and both replies are read before the connection is parked.
//!
//! `detach` still skips the reset entirely when nothing ran on the connection since it was
//! opened or last reset.

use futures_util::future::join;
use pool_driver::ResetMode;
use std::time::Duration;
use tokio_postgres::{Error, SimpleQueryMessage};

use crate::client::PgClient;

/// What the full reset clears once no transaction is open: `DISCARD ALL`'s documented
/// equivalent without `DEALLOCATE ALL`, and the names of the statements made with SQL `PREPARE`
/// (column `pool_prepared`).
///
/// What each statement costs the server (`examples/server_cost.rs`: in one query with a
/// `SELECT 1`, over `SELECT 1` alone; PostgreSQL 15, 0.5 µs resolution): the utility
/// statements 0.5–2 µs each, `pg_advisory_unlock_all()` 3.5 µs, the prepared-statement query
/// 7.5 µs, about 21 µs in all. The two `SELECT`s cost the most (a plan and an executor start
/// each), but folding them into one (`SELECT pg_advisory_unlock_all(), (SELECT
/// string_agg(format('DEALLOCATE %I;', name), '') FROM pg_prepared_statement() WHERE
/// from_sql)`) measured 17 µs, more than both: kept as they are.
macro_rules! clean_session {
    () => {
        "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
         SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; \
         DISCARD SEQUENCES; \
         SELECT name AS pool_prepared FROM pg_catalog.pg_prepared_statement() WHERE from_sql"
    };
}

/// The first query of every reset: opens a transaction, so the `ROLLBACK` that follows never
/// warns (see the module docs).
pub const BEGIN: &str = "BEGIN";

/// The second query of the full reset, pipelined behind [`BEGIN`]: end the transaction, clean.
pub const AFTER_BEGIN: &str = concat!("ROLLBACK; ", clean_session!());

/// The full reset's statements as one query text (`BEGIN; ROLLBACK; …`), for measuring what
/// they cost the server (`examples/server_cost.rs`); the driver sends [`BEGIN`] and
/// [`AFTER_BEGIN`] pipelined instead.
pub const FULL_RESET: &str = concat!("BEGIN; ROLLBACK; ", clean_session!());

/// The rollback-only reset's statements as one query text (for `examples/server_cost.rs`); the
/// driver sends [`BEGIN`] and `ROLLBACK` pipelined. It only ends the transaction (for
/// transaction-mode PgBouncer, where the server session is shared and a full reset would be
/// wrong), without a warning when none is open.
pub const ROLLBACK_ONLY: &str = "BEGIN; ROLLBACK";

/// SQLSTATE `in_failed_sql_transaction`: the session is in an aborted transaction, where
/// `BEGIN` fails and the pipelined `ROLLBACK` ends it.
const IN_FAILED_TRANSACTION: &str = "25P02";

/// The result column of [`AFTER_BEGIN`] that names a statement to deallocate.
const PREPARED_COLUMN: &str = "pool_prepared";

/// Why a reset failed.
#[derive(Debug)]
pub(crate) enum Failed {
    /// The server refused, or the connection ended.
    Pg(Error),
    /// No answer within the bound: a stopped server, or a network that still acknowledges the
    /// bytes (so `tcp_user_timeout` never fires). The request is left in flight: the
    /// connection is unusable.
    TimedOut(Duration),
}

impl From<Error> for Failed {
    fn from(err: Error) -> Self {
        Failed::Pg(err)
    }
}

/// Runs the reset for `mode`, each round trip within `bound`, then clears client-side state
/// that would otherwise outlive it.
pub(crate) fn reset(client: &PgClient, mode: ResetMode, bound: Duration) -> Result<(), Failed> {
    let second = match mode {
        ResetMode::Full => AFTER_BEGIN,
        ResetMode::RollbackOnly => "ROLLBACK",
    };
    let messages = pipelined(client, second, bound)?;
    if mode == ResetMode::RollbackOnly {
        return Ok(());
    }
    let deallocate: String = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .filter(|row| row.columns().first().map(|c| c.name()) == Some(PREPARED_COLUMN))
        .filter_map(|row| row.get(0))
        .map(|name| format!("DEALLOCATE \"{}\";", name.replace('"', "\"\"")))
        .collect();
    if !deallocate.is_empty() {
        client
            .within(bound, client.client().batch_execute(&deallocate))
            .ok_or(Failed::TimedOut(bound))??;
    }
    // Types may have changed under a new role or search_path: look them up afresh.
    client.clear_type_cache();
    drain_notifications(client);
    Ok(())
}

/// Sends [`BEGIN`] and `second` in one write and reads both replies, within `bound`; `BEGIN`
/// may fail only because the session is in an aborted transaction (which `second` ends).
fn pipelined(
    client: &PgClient,
    second: &str,
    bound: Duration,
) -> Result<Vec<SimpleQueryMessage>, Failed> {
    let inner = client.client();
    let both = join(inner.simple_query(BEGIN), inner.simple_query(second));
    let (begin, rest) = client.within(bound, both).ok_or(Failed::TimedOut(bound))?;
    match begin {
        Ok(_) => {}
        Err(err) if err.code().map(|c| c.code()) == Some(IN_FAILED_TRANSACTION) => {}
        Err(err) => return Err(Failed::Pg(err)),
    }
    Ok(rest?)
}

/// Drops notifications the client already received, so the next user of the connection does
/// not see the previous user's `NOTIFY` payloads. Does not block: it only takes what is
/// buffered or already readable on the socket.
fn drain_notifications(client: &PgClient) {
    let dropped = client.notifications().iter().count();
    if dropped > 0 {
        tracing::debug!(dropped, "dropped notifications left by the previous user");
    }
}
