//! The MySQL/MariaDB target: the pool's steps, the `mysql` crate's cold connect, and r2d2_mysql
//! with its default settings, both baselines with the `SslOpts` the driver would use.

use std::path::PathBuf;
use std::time::Instant;

use pool::Driver;
use r2d2_mysql::mysql::{self, prelude::Queryable, ClientIdentity, OptsBuilder, SslOpts};
use r2d2_mysql::MySqlConnectionManager;

use crate::measure::{BoxError, Step, Target};
use crate::targets::{make_table, pool_session_encrypted, sql_target, Ids, R2d2Steps};

/// One row by primary key.
const ROW: &str = "SELECT name FROM pool_latency_items WHERE id = ?";

/// The cipher of this session: empty when it is not encrypted (MariaDB and MySQL alike).
const ENCRYPTED: &str = "SHOW SESSION STATUS LIKE 'Ssl_cipher'";

/// A MySQL/MariaDB target. `args` is anything the pool's `mysql` driver accepts: a `mysql://`
/// or `mariadb://` URL or `key=value` text, with the mysql client's TLS arguments (`ssl-mode`,
/// `ssl-ca`, `ssl-cert`, `ssl-key`).
///
/// The baselines connect where the driver does (TCP with `prefer_socket(false)`, or
/// `socket=`), as the same user, with the same TLS (see [`ssl_opts`]). Timeouts and the
/// statement cache size apply to the pool only: they do not change a latency.
pub fn mysql(args: &str) -> Result<Target, BoxError> {
    // The driver's parsing folds the aliases (`database`, `ssl_ca`, `ssl-mode` → `sslmode`,
    // `host=/path` → `socket`, …) and checks the TLS arguments fit together.
    let parsed = pool::mysql_driver::MysqlDriver.parse_args(args)?;
    let get = |key| parsed.get(key).filter(|v| !v.is_empty());
    let mut builder = OptsBuilder::new()
        .prefer_socket(false)
        .user(get("user"))
        .pass(parsed.get("password"))
        .db_name(get("dbname"))
        .ssl_opts(ssl_opts(&parsed)?);
    builder = match get("socket") {
        Some(socket) => builder.socket(Some(socket)),
        None => {
            let host = get("host").unwrap_or("127.0.0.1");
            // The crate parses the host as a URL host: an IPv6 literal needs its brackets.
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_owned()
            };
            builder
                .ip_or_hostname(Some(host))
                .tcp_port(get("port").map_or(Ok(3306), str::parse)?)
        }
    };

    let encrypted = pool_session_encrypted("mysql", args, ENCRYPTED, |rows| {
        let cipher = rows.get_named(0, "Value").or_else(|| rows.get(0, 1))?;
        Some(!cipher.as_str()?.is_empty())
    })?;
    make_table(
        "mysql",
        args,
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
    let mut floor_conn = mysql::Conn::new(opts.clone())?;
    let mut floor_row_conn = mysql::Conn::new(opts.clone())?;
    let mut floor_ids = Ids::default();
    let floor_select: Step = Box::new(move || {
        let started = Instant::now();
        let _: Vec<i64> = floor_conn.query("SELECT 1")?;
        Ok(started.elapsed().into())
    });
    let floor_row: Step = Box::new(move || {
        let id = floor_ids.next();
        let started = Instant::now();
        // Prepared once, then cached by the crate: one round trip per row.
        let name: Option<String> = floor_row_conn.exec_first(ROW, (id,))?;
        name.ok_or("row missing")?;
        Ok(started.elapsed().into())
    });
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
    let select: Step = Box::new(move || {
        let started = Instant::now();
        let mut conn = r2d2_select.get()?;
        // The text protocol, as the pool driver's `query` without parameters.
        let _: Vec<i64> = conn.query("SELECT 1")?;
        drop(conn);
        Ok(started.elapsed().into())
    });
    let row: Step = Box::new(move || {
        let id = next.next();
        let started = Instant::now();
        let mut conn = r2d2_row.get()?;
        // A prepared statement (the crate caches it per connection; r2d2 never resets).
        let name: Option<String> = conn.exec_first(ROW, (id,))?;
        name.ok_or("row missing")?;
        drop(conn);
        Ok(started.elapsed().into())
    });
    Ok(sql_target(
        "mysql",
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

/// The `mysql` crate's TLS options for the driver's normalised arguments, by the driver's rules
/// (its `tls.rs` has the table):
///
/// * the mode is `sslmode` (any spelling folded by the driver), else implied: `ssl-ca` means
///   `VERIFY_CA`, a client certificate alone `REQUIRED`, nothing `DISABLED`;
/// * `VERIFY_IDENTITY` checks the chain against `ssl-ca` (besides the crate's compiled-in public
///   roots) and the host name; `VERIFY_CA`, and `REQUIRED` with `ssl-ca`, the chain only;
///   `REQUIRED` without `ssl-ca` and `PREFERRED` nothing (encrypted, unauthenticated);
/// * no TLS on a unix socket.
///
/// One difference: the driver's `PREFERRED` connects a second time, plain, to a server without
/// TLS; the baselines here do not, and fail on such a server (measure it with
/// `ssl-mode=DISABLED`).
fn ssl_opts(args: &pool::ConnArgs) -> Result<Option<SslOpts>, BoxError> {
    let ca = args.get("ssl-ca").map(PathBuf::from);
    let identity = match (args.get("ssl-cert"), args.get("ssl-key")) {
        (Some(cert), Some(key)) => {
            Some(ClientIdentity::new(PathBuf::from(cert), PathBuf::from(key)))
        }
        _ => None,
    };
    let mode = match args.get("sslmode") {
        Some(mode) => mode,
        None if ca.is_some() => "VERIFY_CA",
        None if identity.is_some() => "REQUIRED",
        None => "DISABLED",
    };
    let verify_chain = match mode {
        "DISABLED" => return Ok(None),
        _ if args.get("socket").is_some() => return Ok(None),
        "PREFERRED" => false,
        "REQUIRED" => ca.is_some(),
        "VERIFY_CA" | "VERIFY_IDENTITY" => true,
        other => return Err(format!("ssl-mode `{other}` is not a mysql ssl-mode").into()),
    };
    let mut opts = SslOpts::default()
        .with_danger_accept_invalid_certs(!verify_chain)
        .with_danger_skip_domain_validation(mode != "VERIFY_IDENTITY")
        .with_client_identity(identity);
    if verify_chain {
        opts = opts.with_root_cert_path(ca);
    }
    Ok(Some(opts))
}
