//! The `mysql` driver of `pool`: MySQL and MariaDB through the [`mysql`] crate.
//!
//! [`MysqlDriver`] implements [`pool_driver::Driver`]; its connection and parked handle are both
//! [`MyConn`], a `mysql::Conn` plus a broken flag, because a `mysql::Conn` may move between
//! threads as it is.
//!
//! * **Arguments**: `host=127.0.0.1 port=3306 user=app password=… dbname=shop` or
//!   `mysql://app:…@127.0.0.1:3306/shop` (also `mariadb://`); `socket=/run/mysqld/mysqld.sock`
//!   for the unix socket; `connect_timeout`, `read_timeout`, `write_timeout` (seconds),
//!   `stmt_cache_size`. Unknown keys are rejected.
//! * **TLS** as the mysql client spells it: `ssl-mode=DISABLED|PREFERRED|REQUIRED|VERIFY_CA|
//!   VERIFY_IDENTITY` (default `DISABLED`: plain unless asked for), `ssl-ca`, `ssl-cert`,
//!   `ssl-key` (PEM paths, read on every connect, so a rotated certificate is used by the next
//!   one), through the `mysql` crate's rustls on `ring`. What each mode verifies, how it
//!   differs from the mysql and mariadb clients, and why the default is not the clients'
//!   `PREFERRED`: the `tls` module's source documentation. A failed TLS connect is a `Connect`
//!   error whose code says which check failed (`TLS_UNTRUSTED_CERTIFICATE`,
//!   `TLS_HOST_NAME_MISMATCH`, `TLS_CERTIFICATE_EXPIRED`, `TLS_NOT_OFFERED`, `TLS_REQUIRED`,
//!   …) and whose message says what to do; [`MyConn::is_encrypted`] says whether a
//!   connection got TLS. A TLS handshake is bounded by the connect timeout like the rest of
//!   the handshake.
//! * **Release** ([`pool_driver::ResetMode::Full`]) of a used session is `COM_RESET_CONNECTION`
//!   and one query asking the server for what that reset keeps on MariaDB (the current role
//!   and database, statement profiles): two round trips. What differs from a new session is
//!   restored (`SET ROLE`, `USE`) and checked again, or the connection is closed. Nothing is
//!   decided by reading the SQL that ran. `RollbackOnly` is one `ROLLBACK`. A session nothing
//!   ran on (and whose native client nobody reached) is parked with no round trip.
//! * **Liveness** is a `COM_PING` with a socket timeout set around just that exchange.
//! * **Statement deadlines** (`statement_timeout`): at its deadline a statement of `execute`
//!   or `query` is killed on the server with `KILL QUERY` from a short-lived side connection
//!   (same options and TLS as the session), issued by one process-wide watchdog thread
//!   (`pool-mysql-deadline`, gone after 10 s with nothing armed). The caller gets
//!   `StatementTimeout` within the deadline plus `min(1 s, connect timeout)`, even from a
//!   silent server (the socket's timeouts are capped at that); the session stays usable when
//!   the kill was confirmed, otherwise it is closed. No kill reaches a later statement (a probe
//!   runs after every kill). Native statements are not bounded, except through
//!   [`MyConn::with_deadline`].
//! * **Queries** use the text protocol, one round trip, with any parameters sent as literals
//!   (hex literals for strings and bytes, so no value can change the statement; see
//!   `literals.rs`): nothing is prepared on the server, so the release's reset drops nothing
//!   a later request would prepare again. Cells are mapped by column type.
//!
//! # Values
//!
//! Integers → `Int` (unsigned beyond `i64` → `Text`), `FLOAT`/`DOUBLE` → `Float`, `DECIMAL`
//! → `Text`, text → `Text`, `binary`-charset strings and blobs → `Bytes`, dates and times →
//! their SQL text. Parameters: `Bool` → 0/1, `Text`/`Bytes` → strings, `Float` → `DOUBLE`.
//! Anything richer goes through the native client: `conn.native_mut()` is the `mysql::Conn`.

#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![deny(unsafe_code)]

mod conn;
mod convert;
mod deadline;
mod driver;
mod error;
mod literals;
mod opts;
mod reset;
mod socket;
mod tls;

pub use conn::MyConn;
pub use driver::MysqlDriver;
