//! What `detach` sends to clean a session before it is parked.
//!
//! The full reset must end any transaction and clear what `DISCARD ALL` clears, in one round
//! trip. `DISCARD ALL` itself cannot be that round trip: it refuses to run inside a transaction
//! block, a multi-statement simple query is one (an implicit block), and the `postgres` crate
//! does not tell us whether a transaction is open. Measured on PostgreSQL 15:
//!
//! * `ROLLBACK; DISCARD ALL` as one query fails, in or out of a transaction, with
//!   "DISCARD ALL cannot run inside a transaction block".
//! * `ROLLBACK` then `DISCARD ALL` works, in two round trips, but `DISCARD ALL` (like
//!   `DEALLOCATE ALL`) also drops the protocol-level statements the client library owns. The
//!   `postgres` crate caches the statements it prepares to look up custom types (enums,
//!   domains, composites) and `clear_type_cache` does not forget them, so the next custom-type
//!   lookup fails with `prepared statement "s1" does not exist` (SQLSTATE 26000).
//! * `ROLLBACK; RESET ALL` leaves `SET ROLE` in place (`role` is exempt from `RESET ALL`), and
//!   misses temp tables, prepared statements, cursors, locks and `LISTEN`.
//! * `ROLLBACK; …; DEALLOCATE ALL` (the manual's equivalent verbatim) runs in one round trip
//!   but breaks custom types just like `DISCARD ALL`.
//! * [`FULL_RESET`] (chosen): `BEGIN; ROLLBACK` (see below), then the statements the PostgreSQL manual lists as
//!   `DISCARD ALL`'s equivalent except `DEALLOCATE ALL`, then a query for the statements made
//!   with SQL `PREPARE` (the function behind the `pg_prepared_statements` view: the view costs
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
//! **No WARNING per release.** A bare leading `ROLLBACK` draws "there is no transaction in
//! progress" (a WARNING the server also writes to its log) whenever no transaction is open,
//! which is nearly every release, and the `postgres` crate does not expose the transaction
//! status the server reports. So the reset starts with `BEGIN; ROLLBACK`: with no transaction
//! open (the usual case) that opens one and ends it, silently; in an open transaction (a
//! handler that forgot to commit) `BEGIN` warns "there is already a transaction in progress"
//! (worth a log line: it is a leak) and `ROLLBACK` ends it; in an aborted transaction `BEGIN`
//! fails with SQLSTATE 25P02 and nothing after it runs, so the reset is sent again starting
//! with `ROLLBACK` (a second round trip, only then). A multi-statement query stops at its first
//! error, so nothing after a failed statement ever runs on a dirty session, and the reply is
//! read before the connection is parked.
//!
//! `detach` still skips the reset entirely when nothing ran on the connection since it was
//! opened or last reset.

use pool_driver::ResetMode;
use postgres::{Client, SimpleQueryMessage};

/// What the full reset clears once no transaction is open: `DISCARD ALL`'s documented
/// equivalent without `DEALLOCATE ALL`, and the names of the statements made with SQL `PREPARE`
/// (column `pool_prepared`).
macro_rules! clean_session {
    () => {
        "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
         SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; \
         DISCARD SEQUENCES; \
         SELECT name AS pool_prepared FROM pg_catalog.pg_prepared_statement() WHERE from_sql"
    };
}

/// The full reset: end any transaction without a warning when none is open, then clean.
pub const FULL_RESET: &str = concat!("BEGIN; ROLLBACK; ", clean_session!());

/// The full reset for a session in an aborted transaction (where `BEGIN` fails).
const FULL_RESET_ABORTED: &str = concat!("ROLLBACK; ", clean_session!());

/// SQLSTATE `in_failed_sql_transaction`: the session is in an aborted transaction.
const IN_FAILED_TRANSACTION: &str = "25P02";

/// The result column of [`FULL_RESET`] that names a statement to deallocate.
const PREPARED_COLUMN: &str = "pool_prepared";

/// Only end the transaction (for transaction-mode PgBouncer, where the server session is
/// shared and a full reset would be wrong), without a warning when none is open.
pub const ROLLBACK_ONLY: &str = "BEGIN; ROLLBACK";

/// Runs the reset for `mode`, then clears client-side state that would otherwise outlive it.
pub(crate) fn reset(client: &mut Client, mode: ResetMode) -> Result<(), postgres::Error> {
    match mode {
        ResetMode::Full => {
            let messages = after_abort(client, FULL_RESET, FULL_RESET_ABORTED)?;
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
                client.batch_execute(&deallocate)?;
            }
            // Types may have changed under a new role or search_path: look them up afresh.
            client.clear_type_cache();
            drain_notifications(client)
        }
        ResetMode::RollbackOnly => after_abort(client, ROLLBACK_ONLY, "ROLLBACK").map(drop),
    }
}

/// Runs `reset`; if the session was in an aborted transaction (its leading `BEGIN` failed and
/// nothing else ran), runs `aborted`, which starts with `ROLLBACK`, instead.
fn after_abort(
    client: &mut Client,
    reset: &str,
    aborted: &str,
) -> Result<Vec<SimpleQueryMessage>, postgres::Error> {
    match client.simple_query(reset) {
        Err(err) if err.code().map(|c| c.code()) == Some(IN_FAILED_TRANSACTION) => {
            client.simple_query(aborted)
        }
        other => other,
    }
}

/// Drops notifications the client already received, so the next user of the connection does
/// not see the previous user's `NOTIFY` payloads. Does not block: it only takes what is
/// buffered or already readable on the socket.
fn drain_notifications(client: &mut Client) -> Result<(), postgres::Error> {
    use postgres::fallible_iterator::FallibleIterator;

    let mut notifications = client.notifications();
    let mut pending = notifications.iter();
    let mut dropped = 0usize;
    while pending.next()?.is_some() {
        dropped += 1;
    }
    if dropped > 0 {
        tracing::debug!(dropped, "dropped notifications left by the previous user");
    }
    Ok(())
}
