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
    let r2d2 = r2d2::Pool::new(PostgresConnectionManager::new(config.clone(), NoTls))
        .map_err(|e| format!("r2d2_postgres pool: {e}"))?;
    let r2d2_select = r2d2.clone();
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
    Ok(target("postgres", url, cold, get, get_select))
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
    let r2d2 = r2d2::Pool::new(MySqlConnectionManager::new(builder.clone()))
        .map_err(|e| format!("r2d2_mysql pool: {e}"))?;
    let r2d2_select = r2d2.clone();
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
    Ok(target("mysql", url, cold, get, get_select))
}

fn target(driver: &'static str, url: &str, cold: Step, get: Step, get_select: Step) -> Target {
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

fn pool_step(driver: &'static str, args: String, method: Method) -> Step {
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
                    parts: Some((queried - opened, released - queried)),
                }
            }
        };
        Ok(timing)
    })
}
