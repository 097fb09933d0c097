//! Dev-only: the PostgreSQL driver of `pool` as it was on the synchronous `postgres` crate,
//! registered as `"postgres-sync"`.
//!
//! Kept unchanged (but for its name) when `pool-postgres` moved to `tokio-postgres` (issue 17), so
//! benchmarks and the thread-leak measurement can run the old and the new driver side by side in
//! one process. Not for production: a connect that times out leaves its helper thread blocked
//! for as long as the server stays silent, and a close waits for the server.
//!
//! What follows is the driver's documentation as it was.
//!
//!
//! [`PgDriver`] implements the pool's driver contract:
//!
//! * **Arguments** are libpq `key=value` strings or `postgres://` URLs, with the common aliases
//!   (`database`, `username`) folded in so that both spellings share one pool. The
//!   `postgres::Config` is built pair by pair, never from a formatted string holding the
//!   password, and no error message carries a secret. TLS is not supported (`NoTls`).
//! * **Connect** is bounded as a whole, not only the socket connect.
//! * **Detach** rolls back and resets the session in a single round trip: `ROLLBACK` followed
//!   by the statements `DISCARD ALL` is documented to run, except that only statements made
//!   with SQL `PREPARE` are deallocated (`DISCARD ALL` itself refuses to run in the implicit
//!   transaction of a multi-statement query, and `DEALLOCATE ALL` would break the client's
//!   cached type lookups). See [`reset`] for what was measured and what a reset cannot clear.
//!   `ResetMode::RollbackOnly` sends only `ROLLBACK`.
//! * **Attach** costs nothing: the parked handle is the connection.
//! * **Errors** carry the server's message and SQLSTATE; anything that leaves the session
//!   unusable is `Broken` and marks the connection so the pool closes it.
//! * **Statements** run as the unnamed statement, parsed, bound and executed in one round trip
//!   (with parameters: `query_typed`/`execute_typed`, bytes declared `bytea`, the other types
//!   left to the server; without: the simple protocol for `execute`). Nothing is prepared as a
//!   named statement, so nothing is left on the server session, which is what a
//!   transaction-mode PgBouncer needs: there each transaction may run on another server
//!   connection, and PgBouncer 1.18 does not carry named statements across. A query that
//!   returns no rows costs one more round trip for its column names (see `describe.rs`).
//!
//! What still prepares named statements, and so fails behind a transaction-mode PgBouncer
//! ("prepared statement \"s3\" does not exist", or "already exists"): the `postgres` crate
//! itself, when a result column has a type it does not know (an enum, a domain, a composite,
//! an extension type such as `citext`); it looks the type up with statements it prepares once
//! per connection and keeps. Cast such columns (`mood::text`). And anything done through the
//! native client with `prepare` or a `&str` statement (`Client::query(sql, …)` prepares one).
//!
//! [`PgConn`] offers the uniform `execute`/`query` surface with [`pool_driver::Value`]
//! parameters, converted to whatever type the server inferred, and the native
//! `postgres::Client` for everything else.

#![deny(missing_docs)]
#![warn(unreachable_pub)]

// The conversions between the pool's values and PostgreSQL's types, and how column names are
// found, are the current driver's own files: they are pure functions of `tokio-postgres` types,
// which the `postgres` crate re-exports, and not what this baseline exists to measure (its
// threads, its connect and close). Only the I/O stays as it was. (So an unsupported column
// type's error names the current driver's native client, `PgClient`.)
#[path = "../../../drivers/postgres/src/cells.rs"]
mod cells;
mod config;
mod conn;
#[path = "../../../drivers/postgres/src/describe.rs"]
mod describe;
mod driver;
mod error;
#[path = "../../../drivers/postgres/src/params.rs"]
mod params;
pub mod reset;

pub use conn::PgConn;
pub use driver::PgDriver;
