//! The steps of each driver: the pool's (the same for every driver), the native crate's cold
//! connect, and r2d2 with its default settings.

use std::time::Instant;

use r2d2_mysql::mysql::{self, prelude::Queryable};
use r2d2_mysql::MySqlConnectionManager;
use r2d2_postgres::postgres::{self, config::SslMode, NoTls};
use r2d2_postgres::PostgresConnectionManager;

use crate::measure::{BoxError, Method, Step, Target, Timing};

/// A PostgreSQL target. `url` is any form both the pool and `postgres::Config` accept
/// (a `postgres://` URL or libpq `key=value` text).
pub fn postgres(url: &str) -> Result<Target, BoxError> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| format!("cannot parse the postgres URL: {e}"))?;
    // What the pool's driver does: NoTls, and no SSLRequest round trip.
    config.ssl_mode(SslMode::Disable);
    check_pool("postgres", url)?;
    make_table(
        "postgres",
        url,
        "CREATE TABLE IF NOT EXISTS pool_latency_items (id int PRIMARY KEY, name text NOT NULL)",
        "INSERT INTO pool_latency_items SELECT i, 'item ' || i FROM generate_series(1, 100) i \
         ON CONFLICT DO NOTHING",
    )?;
    let r2d2 = r2d2::Pool::new(PostgresConnectionManager::new(config.clone(), NoTls))
        .map_err(|e| format!("r2d2_postgres pool: {e}"))?;
    let r2d2_select = r2d2.clone();
    let r2d2_row = r2d2.clone();
    let mut next = Ids::default();
    let cold: Step = Box::new(move || {
        let started = Instant::now();
        let client = config.connect(NoTls)?;
        drop(client); // sends Terminate and closes the socket
        Ok(started.elapsed().into())
    });
    let get: Step = Box::new(move || {
        let started = Instant::now();
        drop(r2d2.get()?);
        Ok(started.elapsed().into())
    });
    let get_select: Step = Box::new(move || {
        let started = Instant::now();
        let mut client = r2d2_select.get()?;
        // The same round trips as the pool driver's `query`: prepare, then execute.
        client.query("SELECT 1", &[])?;
        drop(client);
        Ok(started.elapsed().into())
    });
    let get_row: Step = Box::new(move || {
        let id = next.next() as i32;
        let started = Instant::now();
        let mut client = r2d2_row.get()?;
        let row = client.query_one(PG_ROW, &[&id])?;
        let _: String = row.get(0);
        drop(client);
        Ok(started.elapsed().into())
    });
    Ok(target(
        "postgres",
        url,
        cold,
        [get, get_select, get_row],
        PG_ROW,
    ))
}

/// One row by primary key, in each server's parameter syntax.
const PG_ROW: &str = "SELECT name FROM pool_latency_items WHERE id = $1";
const MYSQL_ROW: &str = "SELECT name FROM pool_latency_items WHERE id = ?";

/// Ids 1..=100 in turn, so each call reads another row.
#[derive(Default)]
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> u64 {
        self.0 = self.0 % 100 + 1;
        self.0
    }
}

/// Creates and fills the small table the row methods read, through the pool.
fn make_table(driver: &str, args: &str, create: &str, fill: &str) -> Result<(), BoxError> {
    let mut conn = pool::open(driver, args)?;
    conn.execute(create, &[])?;
    conn.execute(fill, &[])?;
    conn.release()?;
    Ok(())
}

/// A MySQL/MariaDB target over TCP, with `prefer_socket(false)` as in the pool's driver.
pub fn mysql(url: &str) -> Result<Target, BoxError> {
    // The mysql crate knows only the mysql:// scheme; the pool also takes mariadb://.
    let crate_url = match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url.to_owned(),
    };
    let opts = mysql::Opts::from_url(&crate_url)
        .map_err(|_| "cannot parse the mysql URL (expected mysql://user:pass@host:port/db)")?;
    let builder = mysql::OptsBuilder::from_opts(opts).prefer_socket(false);
    check_pool("mysql", url)?;
    make_table(
        "mysql",
        url,
        "CREATE TABLE IF NOT EXISTS pool_latency_items \
         (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL)",
        "INSERT IGNORE INTO pool_latency_items \
         SELECT seq, CONCAT('item ', seq) FROM seq_1_to_100",
    )?;
    let r2d2 = r2d2::Pool::new(MySqlConnectionManager::new(builder.clone()))
        .map_err(|e| format!("r2d2_mysql pool: {e}"))?;
    let r2d2_select = r2d2.clone();
    let r2d2_row = r2d2.clone();
    let mut next = Ids::default();
    let opts = mysql::Opts::from(builder);
    let cold: Step = Box::new(move || {
        let started = Instant::now();
        let conn = mysql::Conn::new(opts.clone())?;
        drop(conn); // sends COM_QUIT and closes the socket
        Ok(started.elapsed().into())
    });
    let get: Step = Box::new(move || {
        let started = Instant::now();
        drop(r2d2.get()?);
        Ok(started.elapsed().into())
    });
    let get_select: Step = Box::new(move || {
        let started = Instant::now();
        let mut conn = r2d2_select.get()?;
        // The text protocol, as the pool driver's `query` without parameters.
        let _: Vec<i64> = conn.query("SELECT 1")?;
        drop(conn);
        Ok(started.elapsed().into())
    });
    let get_row: Step = Box::new(move || {
        let id = next.next();
        let started = Instant::now();
        let mut conn = r2d2_row.get()?;
        // A prepared statement (the crate caches it per connection; r2d2 never resets).
        let name: Option<String> = conn.exec_first(MYSQL_ROW, (id,))?;
        name.ok_or("row missing")?;
        drop(conn);
        Ok(started.elapsed().into())
    });
    Ok(target(
        "mysql",
        url,
        cold,
        [get, get_select, get_row],
        MYSQL_ROW,
    ))
}

/// The pool's steps next to r2d2's `[get, get + SELECT 1, get + row]`.
fn target(
    driver: &'static str,
    url: &str,
    cold: Step,
    r2d2: [Step; 3],
    row_sql: &'static str,
) -> Target {
    let [get, get_select, get_row] = r2d2;
    let shown = pool::ConnArgs::parse(url)
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "(unparsable arguments)".into());
    let pooled = |method| pool_step(driver, url.to_owned(), method);
    Target {
        driver,
        shown,
        steps: vec![
            (Method::Cold, cold),
            (Method::Open, pooled(Method::Open)),
            (Method::OpenRelease, pooled(Method::OpenRelease)),
            (Method::OpenSelectRelease, pooled(Method::OpenSelectRelease)),
            (Method::R2d2Get, get),
            (Method::R2d2Select, get_select),
            (
                Method::OpenRowRelease,
                row_step(driver, url.to_owned(), row_sql),
            ),
            (Method::R2d2Row, get_row),
        ],
    }
}

/// Opens once and runs `SELECT 1`, so a wrong URL fails before the progress bar starts.
fn check_pool(driver: &str, args: &str) -> Result<(), BoxError> {
    let mut conn = pool::open(driver, args)?;
    conn.query("SELECT 1", &[])?;
    conn.release()?;
    Ok(())
}

/// `pool::open` + one row by id + `release`.
fn row_step(driver: &'static str, args: String, sql: &'static str) -> Step {
    let mut next = Ids::default();
    Box::new(move || {
        let id = pool::Value::Int(next.next() as i64);
        let started = Instant::now();
        let mut conn = pool::open(driver, &args)?;
        let rows = conn.query(sql, std::slice::from_ref(&id))?;
        rows.scalar().ok_or("row missing")?;
        conn.release()?;
        Ok(started.elapsed().into())
    })
}

/// `pool::open` alone (its `release` untimed), `open` + `release`, or `open` + `SELECT 1` +
/// `release` with its two parts.
pub fn pool_step(driver: &'static str, args: String, method: Method) -> Step {
    Box::new(move || {
        let started = Instant::now();
        let mut conn = pool::open(driver, &args)?;
        let timing = match method {
            Method::Open => {
                let took = started.elapsed();
                conn.release()?; // not timed
                took.into()
            }
            Method::OpenRelease => {
                conn.release()?;
                started.elapsed().into()
            }
            _ => {
                let opened = Instant::now();
                conn.query("SELECT 1", &[])?;
                let queried = Instant::now();
                conn.release()?;
                let released = Instant::now();
                Timing {
                    total: released - started,
                    parts: vec![
                        (Method::PartSelect, queried - opened),
                        (Method::PartRelease, released - queried),
                    ],
                }
            }
        };
        Ok(timing)
    })
}
