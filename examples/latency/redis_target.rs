//! The Redis target: the same pool steps with `GET` in place of `SELECT 1`, the `redis` crate's
//! cold connect, and r2d2 (the `redis` crate's `r2d2` feature) with its default settings; over
//! TLS (`rediss://`, `tls=on`) with the crate's `tls-rustls`, as the pool's driver connects.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use pool::Driver;
use redis::{
    ClientTlsConfig, ConnectionAddr, ConnectionInfo, ProtocolVersion, RedisConnectionInfo,
    TlsCertificates,
};

use crate::measure::{BoxError, Method, Step, Target, Timing};
use crate::targets::{pool_step, shown};

/// The key every `GET` reads, set before the run.
const KEY: &str = "pool_latency_key";
const VALUE: &str = "pool latency value";

/// A Redis target. `args` is anything the pool's `redis` driver accepts (`redis://` or
/// `rediss://` URL, or `key=value` text; TLS with redis-cli's `cacert`, `cert`, `key` and
/// `insecure`).
pub fn redis(args: &str) -> Result<Target, BoxError> {
    // The driver's own parsing folds the aliases (`username`, `dbname`, `host=/path`, …) and
    // the TLS spellings (`rediss://`, `tls=true` → `tls=on`).
    let parsed = pool::redis_driver::RedisDriver::new().parse_args(args)?;
    let tls = parsed.get("tls") == Some("on");
    let client = client(&parsed)?;
    // Sets the key through the pool, and fails on wrong arguments before the progress bar.
    let mut conn = pool::open("redis", args)?;
    conn.execute("SET", &[KEY.into(), VALUE.into()])?;
    conn.release()?;
    let r2d2 = r2d2::Pool::new(client.clone()).map_err(|e| format!("redis r2d2 pool: {e}"))?;
    let mut floor_conn = client.get_connection()?;
    let floor_get: Step = Box::new(move || {
        let started = Instant::now();
        let value: String = redis::cmd("GET").arg(KEY).query(&mut floor_conn)?;
        check(&value)?;
        Ok(started.elapsed().into())
    });
    let cold: Step = Box::new(move || {
        let started = Instant::now();
        // Connect (+ the TLS handshake), then one pipelined round trip: AUTH (+ SELECT),
        // CLIENT SETINFO ×2.
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
    Ok(Target {
        driver: "redis",
        tls,
        shown: shown(args),
        steps: vec![
            (Method::Cold, cold),
            (Method::Open, pooled(Method::Open)),
            (Method::OpenRelease, pooled(Method::OpenRelease)),
            (Method::OpenGetRelease, get_step(args.to_owned())),
            (Method::R2d2GetCommand, get_get),
            (Method::FloorGet, floor_get),
        ],
        cold_every: 1,
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

/// A client that connects as the pool's driver does: the same address, user, password and db,
/// RESP2, and over TLS the same certificates (see [`certificates`]) and `insecure` flag.
fn client(parsed: &pool::ConnArgs) -> Result<redis::Client, BoxError> {
    let get = |key| parsed.get(key).filter(|v| !v.is_empty());
    let host = || get("host").unwrap_or("127.0.0.1").to_owned();
    let port = || get("port").map_or(Ok(6379), str::parse);
    let tls = parsed.get("tls") == Some("on");
    let addr = match get("socket") {
        Some(path) => ConnectionAddr::Unix(PathBuf::from(path)),
        // The certificate is checked against `host` as written (it is also the SNI name).
        None if tls => ConnectionAddr::TcpTls {
            host: host(),
            port: port()?,
            insecure: parsed.get("insecure") == Some("on"),
            tls_params: None,
        },
        None => ConnectionAddr::Tcp(host(), port()?),
    };
    let info = ConnectionInfo {
        addr,
        redis: RedisConnectionInfo {
            db: get("db").map_or(Ok(0), str::parse)?,
            username: get("user").map(str::to_owned),
            password: parsed.get("password").map(str::to_owned),
            protocol: ProtocolVersion::RESP2,
        },
    };
    let client = if tls {
        redis::Client::build_with_tls(info, certificates(parsed)?)
    } else {
        redis::Client::open(info)
    };
    Ok(client.map_err(|e| format!("redis client: {e}"))?)
}

/// The PEM files a TLS target names, read once (the driver reads them on every connect, so a
/// rotated file is used by its next connect; a few small reads next to a handshake's
/// milliseconds). Without `cacert` the crate trusts the platform's roots.
///
/// Either way the `redis` crate (0.32) rescans the platform's CA store on every TLS connect,
/// even when `cacert` replaces it: most of a cold TLS connect on a machine with a full
/// `ca-certificates` store (see the footnote), the same for the baselines and for the driver.
fn certificates(parsed: &pool::ConnArgs) -> Result<TlsCertificates, BoxError> {
    let read = |key: &str| -> Result<Option<Vec<u8>>, BoxError> {
        match parsed.get(key) {
            Some(path) => Ok(Some(
                fs::read(path).map_err(|e| format!("redis {key} {path}: {e}"))?,
            )),
            None => Ok(None),
        }
    };
    let client_tls = match (read("cert")?, read("key")?) {
        (Some(client_cert), Some(client_key)) => Some(ClientTlsConfig {
            client_cert,
            client_key,
        }),
        _ => None,
    };
    Ok(TlsCertificates {
        client_tls,
        root_cert: read("cacert")?,
    })
}
