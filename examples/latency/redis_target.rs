//! The Redis target: the same pool steps with `GET` in place of `SELECT 1`, the `redis` crate's
//! cold connect, and r2d2 (the `redis` crate's `r2d2` feature) with its default settings.

use std::path::PathBuf;
use std::time::Instant;

use pool::Driver;
use redis::{ConnectionAddr, ConnectionInfo, ProtocolVersion, RedisConnectionInfo};

use crate::measure::{BoxError, Method, Step, Target, Timing};
use crate::targets::pool_step;

/// The key every `GET` reads, set before the run.
const KEY: &str = "pool_latency_key";
const VALUE: &str = "pool latency value";

/// A Redis target. `args` is anything the pool's `redis` driver accepts (`redis://` URL or
/// `key=value` text).
pub fn redis(args: &str) -> Result<Target, BoxError> {
    let info = connection_info(args)?;
    // Sets the key through the pool, and fails on wrong arguments before the progress bar.
    let mut conn = pool::open("redis", args)?;
    conn.execute("SET", &[KEY.into(), VALUE.into()])?;
    conn.release()?;
    let client = redis::Client::open(info).map_err(|e| format!("redis client: {e}"))?;
    let r2d2 = r2d2::Pool::new(client.clone()).map_err(|e| format!("redis r2d2 pool: {e}"))?;
    let cold: Step = Box::new(move || {
        let started = Instant::now();
        // Connect, then one pipelined round trip: AUTH (+ SELECT), CLIENT SETINFO ×2.
        let conn = client.get_connection()?;
        drop(conn); // closes the socket (no QUIT)
        Ok(started.elapsed().into())
    });
    let get_get: Step = Box::new(move || {
        let started = Instant::now();
        let mut conn = r2d2.get()?;
        let value: String = redis::cmd("GET").arg(KEY).query(&mut *conn)?;
        check(&value)?;
        drop(conn);
        Ok(started.elapsed().into())
    });
    let pooled = |method| pool_step("redis", args.to_owned(), method);
    let shown = pool::ConnArgs::parse(args)
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "(unparsable arguments)".into());
    Ok(Target {
        driver: "redis",
        shown,
        steps: vec![
            (Method::Cold, cold),
            (Method::Open, pooled(Method::Open)),
            (Method::OpenRelease, pooled(Method::OpenRelease)),
            (Method::OpenGetRelease, get_step(args.to_owned())),
            (Method::R2d2GetCommand, get_get),
        ],
    })
}

/// `pool::open` + `GET` through the uniform API + `release`, with its two parts.
fn get_step(args: String) -> Step {
    let key = [pool::Value::from(KEY)];
    Box::new(move || {
        let started = Instant::now();
        let mut conn = pool::open("redis", &args)?;
        let opened = Instant::now();
        let rows = conn.query("GET", &key)?;
        let queried = Instant::now();
        conn.release()?;
        let released = Instant::now();
        match rows.scalar() {
            Some(pool::Value::Text(v)) => check(v)?,
            other => return Err(format!("GET returned {other:?}").into()),
        }
        Ok(Timing {
            total: released - started,
            parts: vec![
                (Method::PartGet, queried - opened),
                (Method::PartReleaseAfterGet, released - queried),
            ],
        })
    })
}

fn check(value: &str) -> Result<(), BoxError> {
    if value == VALUE {
        Ok(())
    } else {
        Err(format!("GET returned `{value}`").into())
    }
}

/// What the pool's driver connects with: the same address, user, password and db, RESP2.
fn connection_info(args: &str) -> Result<ConnectionInfo, BoxError> {
    // The driver's own parsing folds the aliases (`username`, `dbname`, `host=/path`, …).
    let parsed = pool::redis_driver::RedisDriver::new().parse_args(args)?;
    let get = |key| parsed.get(key).filter(|v| !v.is_empty());
    let addr = match get("socket") {
        Some(path) => ConnectionAddr::Unix(PathBuf::from(path)),
        None => ConnectionAddr::Tcp(
            get("host").unwrap_or("127.0.0.1").to_owned(),
            get("port").map_or(Ok(6379), str::parse)?,
        ),
    };
    Ok(ConnectionInfo {
        addr,
        redis: RedisConnectionInfo {
            db: get("db").map_or(Ok(0), str::parse)?,
            username: get("user").map(str::to_owned),
            password: parsed.get("password").map(str::to_owned),
            protocol: ProtocolVersion::RESP2,
        },
    })
}
