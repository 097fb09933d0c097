//! The PostgreSQL target: the pool's steps, the `postgres` crate's cold connect, and
//! r2d2_postgres with its default settings, both baselines over the same rustls connector.

use std::time::Instant;

use pool::Driver;
use r2d2_postgres::postgres;
use r2d2_postgres::PostgresConnectionManager;

use crate::measure::{BoxError, Step, Target};
use crate::targets::{make_table, pool_session_encrypted, sql_target, Ids, R2d2Steps};
use crate::tls::{self, PgTls};

/// One row by primary key.
const ROW: &str = "SELECT name FROM pool_latency_items WHERE id = $1";

/// Whether this backend's connection is encrypted (`pg_stat_ssl`, PostgreSQL 9.5+).
const ENCRYPTED: &str =
    "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)";

/// A PostgreSQL target. `args` is anything the pool's `postgres` driver accepts: a
/// `postgres://` URL or libpq `key=value` text, with libpq's TLS arguments (`sslmode`,
/// `sslrootcert`, `sslcert`, `sslkey`).
///
/// The baselines connect as the driver does: the same `sslmode` (libpq's default `prefer`
/// when none is given, so a plain target sends an SSLRequest first, as the driver and `psql`
/// do) and the same certificate checks (see [`tls::postgres_connector`]). Everything else goes
/// to `postgres::Config` as the driver parsed it (aliases folded).
pub fn postgres(args: &str) -> Result<Target, BoxError> {
    let mut parsed = pool::postgres_driver::PgDriver.parse_args(args)?;
    let tls_args = PgTls {
        mode: parsed.remove("sslmode"),
        root: parsed.remove("sslrootcert"),
        client: match (parsed.remove("sslcert"), parsed.remove("sslkey")) {
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => None,
        },
    };
    // Without the TLS keys (`tokio-postgres` refuses `sslrootcert`, `sslcert` and `sslkey`,
    // and has no `verify-ca`/`verify-full`: the connector checks the certificate), the
    // canonical text is libpq `key=value` with quoting, which `postgres::Config` parses.
    // Its error names an option, never a value (the text holds the password).
    let mut config: postgres::Config = parsed
        .canonical()
        .parse()
        .map_err(|e| format!("postgres::Config refuses these arguments: {e}"))?;
    let (ssl_mode, connector) = tls::postgres_connector(&tls_args)?;
    config.ssl_mode(ssl_mode);

    let encrypted = pool_session_encrypted("postgres", args, ENCRYPTED, |rows| {
        rows.scalar().and_then(pool::Value::as_bool)
    })?;
    make_table(
        "postgres",
        args,
        "CREATE TABLE IF NOT EXISTS pool_latency_items (id int PRIMARY KEY, name text NOT NULL)",
        "INSERT INTO pool_latency_items SELECT i, 'item ' || i FROM generate_series(1, 100) i \
         ON CONFLICT DO NOTHING",
    )?;
    let r2d2 = r2d2::Pool::new(PostgresConnectionManager::new(
        config.clone(),
        connector.clone(),
    ))
    .map_err(|e| format!("r2d2_postgres pool: {e}"))?;
    let r2d2_select = r2d2.clone();
    let r2d2_row = r2d2.clone();
    let mut next = Ids::default();
    let mut floor_client = config.connect(connector.clone())?;
    let mut floor_row_client = config.connect(connector.clone())?;
    let mut floor_ids = Ids::default();
    let floor_select: Step = Box::new(move || {
        let started = Instant::now();
        // One round trip, the unnamed statement: as the pool's driver runs it.
        floor_client.query_typed("SELECT 1", &[])?;
        Ok(started.elapsed().into())
    });
    let floor_row: Step = Box::new(move || {
        let id = floor_ids.next() as i32;
        let started = Instant::now();
        let row = floor_row_client.query_typed_one(ROW, &[(&id, postgres::types::Type::INT4)])?;
        let _: String = row.get(0);
        Ok(started.elapsed().into())
    });
    let cold: Step = Box::new(move || {
        let started = Instant::now();
        let client = config.connect(connector.clone())?;
        drop(client); // sends Terminate and closes the socket
        Ok(started.elapsed().into())
    });
    let get: Step = Box::new(move || {
        let started = Instant::now();
        drop(r2d2.get()?);
        Ok(started.elapsed().into())
    });
    let select: Step = Box::new(move || {
        let started = Instant::now();
        let mut client = r2d2_select.get()?;
        // The same round trips as most code written against the crate: prepare, then execute.
        client.query("SELECT 1", &[])?;
        drop(client);
        Ok(started.elapsed().into())
    });
    let row: Step = Box::new(move || {
        let id = next.next() as i32;
        let started = Instant::now();
        let mut client = r2d2_row.get()?;
        let row = client.query_one(ROW, &[&id])?;
        let _: String = row.get(0);
        drop(client);
        Ok(started.elapsed().into())
    });
    Ok(sql_target(
        "postgres",
        args,
        encrypted,
        cold,
        R2d2Steps {
            get,
            select,
            row,
            floor_select,
            floor_row,
        },
        ROW,
    ))
}
