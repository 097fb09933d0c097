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
//! * [`FULL_RESET`] (chosen): `ROLLBACK`, then the statements the PostgreSQL manual lists as
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
//! The leading `ROLLBACK` draws a "there is no transaction in progress" WARNING when no
//! transaction is open, which the server also writes to its log (at the default
//! `log_min_messages`). It cannot be avoided: in an aborted transaction nothing but `ROLLBACK`
//! is accepted, and the `postgres` crate does not expose the transaction status the server
//! reports. So `detach` skips the reset entirely when nothing ran on the connection since it
//! was opened or last reset.

use pool_driver::ResetMode;
use postgres::{Client, SimpleQueryMessage};

/// `ROLLBACK`, `DISCARD ALL`'s documented equivalent without `DEALLOCATE ALL`, and the names
/// of the statements made with SQL `PREPARE` (column `pool_prepared`).
pub const FULL_RESET: &str = "ROLLBACK; CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; \
    RESET ALL; UNLISTEN *; SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD PLANS; \
    DISCARD TEMP; DISCARD SEQUENCES; \
    SELECT name AS pool_prepared FROM pg_catalog.pg_prepared_statement() WHERE from_sql";

/// The result column of [`FULL_RESET`] that names a statement to deallocate.
const PREPARED_COLUMN: &str = "pool_prepared";

/// Only end the transaction (for transaction-mode PgBouncer, where the server session is
/// shared and a full reset would be wrong).
pub const ROLLBACK_ONLY: &str = "ROLLBACK";

/// Runs the reset for `mode`, then clears client-side state that would otherwise outlive it.
pub(crate) fn reset(client: &mut Client, mode: ResetMode) -> Result<(), postgres::Error> {
    match mode {
        ResetMode::Full => {
            let messages = client.simple_query(FULL_RESET)?;
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
        ResetMode::RollbackOnly => client.batch_execute(ROLLBACK_ONLY),
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
