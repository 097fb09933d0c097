//! The built-in PostgreSQL driver of `pool`, on `tokio-postgres`, with TLS through rustls.
//!
//! [`PgDriver`] implements the pool's driver contract:
//!
//! * **Each connection owns its socket and a current-thread tokio runtime**, and no thread:
//!   every blocking call drives the socket on the calling thread (see [`client`]). A parked
//!   connection can move to any thread and costs memory (about 43 KB of heap, 51 KB with TLS)
//!   and the file descriptors of its socket and its runtime's event loop, as with the
//!   `postgres` crate (`dev/pg-sync-baseline/examples/parked_cost.rs` measures both).
//! * **Arguments** are libpq `key=value` strings or `postgres://` URLs, with the common aliases
//!   (`database`, `username`) folded in so that both spellings share one pool, and libpq's TLS
//!   arguments (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`, `channel_binding`; see `tls/mod.rs`).
//!   The `tokio_postgres::Config` is built pair by pair, never from a formatted string holding
//!   the password, and no error message carries a secret or key material.
//! * **Connect** is one future bounded as a whole by the pool's `connect_timeout` (every host
//!   of a `host=a,b` list, each also bounded by libpq's `connect_timeout` argument): TCP or
//!   unix socket, TLS negotiation, startup, authentication and the `target_session_attrs`
//!   check. On timeout it is dropped with its socket; nothing keeps running.
//! * **Close** never waits on the network: `Terminate` is written only if the socket takes it
//!   at once, and the runtime is shut down without joining anything.
//! * **Detach** rolls back and resets the session in a single round trip, its two queries
//!   pipelined in one write: `BEGIN`, then `ROLLBACK` followed by the statements `DISCARD ALL`
//!   is documented to run, except that only statements made with SQL `PREPARE` are deallocated
//!   (`DISCARD ALL` itself refuses to run in the implicit transaction of a multi-statement
//!   query, and `DEALLOCATE ALL` would break the client's cached type lookups). See [`reset`]
//!   for what was measured and what a reset cannot clear. `ResetMode::RollbackOnly` sends only
//!   `BEGIN` and `ROLLBACK`. A session nothing touched is detached with no I/O.
//! * **Attach** costs nothing: the parked handle is the connection.
//! * **Errors** carry the server's message and SQLSTATE; anything that leaves the session
//!   unusable is `Broken` and marks the connection so the pool closes it. A failed connect
//!   says what failed on which host, TLS problems in plain words with advice.
//! * **Statements** run as the unnamed statement, parsed, bound and executed in one round trip
//!   (with parameters: `query_typed`/`execute_typed`, bytes declared `bytea`, the other types
//!   left to the server; without: the simple protocol for `execute`). Nothing is prepared as a
//!   named statement, so nothing is left on the server session, which is what a
//!   transaction-mode PgBouncer needs: there each transaction may run on another server
//!   connection, and PgBouncer 1.18 does not carry named statements across. A query that
//!   returns no rows costs one more round trip for its column names (see `describe.rs`).
//!
//! What still prepares named statements, and so fails behind a transaction-mode PgBouncer
//! ("prepared statement \"s3\" does not exist", or "already exists"): tokio-postgres itself,
//! when a result column has a type it does not know (an enum, a domain, a composite, an
//! extension type such as `citext`); it looks the type up with statements it prepares once per
//! connection and keeps. Cast such columns (`mood::text`). And anything done through the
//! native client with `prepare` or a `&str` statement (`PgClient::query(sql, …)` prepares one).
//!
//! [`PgConn`] offers the uniform `execute`/`query` surface with [`pool_driver::Value`]
//! parameters, converted to whatever type the server inferred, and the native [`PgClient`]
//! (`conn.native_mut::<PgClient>()`) for everything else: the blocking methods of
//! `postgres::Client`, the `tokio_postgres::Client` inside, and a way to run async code on the
//! connection's runtime. [`tokio_postgres`] is re-exported so its types match.

#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod cells;
pub mod client;
mod config;
mod conn;
mod connect;
mod describe;
mod driver;
mod error;
mod params;
pub mod reset;
mod role;
mod tls;

pub use client::{Expired, PgClient, PgTransaction};
pub use conn::PgConn;
pub use driver::PgDriver;
pub use tls::verify as tls_verifiers;
pub use tokio_postgres;
