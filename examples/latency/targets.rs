//! What every target shares: the pool's steps (the same for every driver), the row table, the
//! check that the pool's sessions are (or are not) encrypted, and how a target is put
//! together. Each driver's baselines (its native crate's cold connect, r2d2 with its default
//! settings) are in `pg_target.rs`, `mysql_target.rs` and `redis_target.rs`.

use std::time::Instant;

use crate::measure::{BoxError, Method, Step, Target, Timing};

/// Ids 1..=100 in turn, so each call reads another row.
#[derive(Default)]
pub struct Ids(u64);

impl Ids {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0 % 100 + 1;
        self.0
    }
}

/// Creates and fills the small table the row methods read, through the pool.
pub fn make_table(driver: &str, args: &str, create: &str, fill: &str) -> Result<(), BoxError> {
    let mut conn = pool::open(driver, args)?;
    conn.execute(create, &[])?;
    conn.execute(fill, &[])?;
    conn.release()?;
    Ok(())
}

/// Opens a pooled connection, runs `probe` (a query whose first row says whether this session
/// is encrypted) and releases it. It runs before the progress bar starts, so wrong arguments
/// fail at once; and it is the server's own word on TLS, which decides whether the target's
/// rows are labelled "over TLS".
pub fn pool_session_encrypted(
    driver: &str,
    args: &str,
    probe: &str,
    encrypted: fn(&pool::Rows) -> Option<bool>,
) -> Result<bool, BoxError> {
    let mut conn = pool::open(driver, args)?;
    let rows = conn.query(probe, &[])?;
    conn.release()?;
    encrypted(&rows).ok_or_else(|| format!("{driver}: unexpected answer to `{probe}`").into())
}

/// The arguments as they may be shown: secrets redacted.
pub fn shown(args: &str) -> String {
    pool::ConnArgs::parse(args)
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "(unparsable arguments)".into())
}

/// The r2d2 baselines of a SQL target: `get` + drop, `get` + `SELECT 1` + drop, and `get` + one
/// row by id + drop.
pub struct R2d2Steps {
    pub get: Step,
    pub select: Step,
    pub row: Step,
    /// The floor: `SELECT 1`, and the row, each on a dedicated connection of the driver's
    /// native crate held open for the whole run, in one round trip: what a request costs
    /// with no pool at all.
    pub floor_select: Step,
    pub floor_row: Step,
}

/// The pool's steps next to the native cold connect and r2d2's, for a SQL target.
pub fn sql_target(
    driver: &'static str,
    args: &str,
    tls: bool,
    cold: Step,
    r2d2: R2d2Steps,
    row_sql: &'static str,
) -> Target {
    let pooled = |method| pool_step(driver, args.to_owned(), method);
    Target {
        driver,
        tls,
        shown: shown(args),
        steps: vec![
            (Method::Cold, cold),
            (Method::Open, pooled(Method::Open)),
            (Method::OpenRelease, pooled(Method::OpenRelease)),
            (Method::OpenSelectRelease, pooled(Method::OpenSelectRelease)),
            (Method::R2d2Get, r2d2.get),
            (Method::R2d2Select, r2d2.select),
            (
                Method::OpenRowRelease,
                row_step(driver, args.to_owned(), row_sql),
            ),
            (Method::R2d2Row, r2d2.row),
            (Method::FloorSelect, r2d2.floor_select),
            (Method::FloorRow, r2d2.floor_row),
        ],
        cold_every: 1,
    }
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
