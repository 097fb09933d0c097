//! Connection arguments: aliases, validation, and the plan `connect` follows.
//!
//! Every spelling of the same target must share one pool, so aliases are folded into one key
//! each (`username` → `user`, `pass` → `password`, `dbname`/`database` → `db`, `unix_socket`/
//! `path`/`host=/path` → `socket`, `client_name`/`clientname` → `name`). Unknown keys are
//! rejected at parse time: a typo must not silently connect with defaults.

use std::path::PathBuf;
use std::time::Duration;

use pool_driver::{ConnArgs, DriverError, DriverErrorKind};
use redis::{ConnectionAddr, ConnectionInfo, ProtocolVersion, RedisConnectionInfo};

/// The keys this driver understands (after aliases are folded).
const KNOWN: &[&str] = &[
    "host",
    "port",
    "socket",
    "user",
    "password",
    "db",
    "name",
    "connect_timeout",
    "read_timeout",
    "write_timeout",
];

/// The read and write timeout user commands run under unless `read_timeout=`/`write_timeout=`
/// say otherwise: long enough for any ordinary command, short enough that a vanished server
/// does not hang a request forever. `0` means none.
pub(crate) const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Folds aliases and checks every value, in place.
pub(crate) fn normalise(args: &mut ConnArgs) -> Result<(), DriverError> {
    args.rename("username", "user");
    args.rename("pass", "password");
    args.rename("dbname", "db");
    args.rename("database", "db");
    args.rename("unix_socket", "socket");
    args.rename("path", "socket");
    args.rename("client_name", "name");
    args.rename("clientname", "name");
    if args.get("host").is_some_and(|h| h.starts_with('/')) {
        if let Some(host) = args.remove("host") {
            args.set("socket", host);
        }
    }
    if let Some(key) = args.iter().map(|(k, _)| k).find(|k| !KNOWN.contains(k)) {
        return Err(invalid(format!(
            "unknown redis connection argument `{key}` (known: {})",
            KNOWN.join(", ")
        )));
    }
    db(args)?;
    port(args)?;
    for key in ["connect_timeout", "read_timeout", "write_timeout"] {
        seconds(args, key)?;
    }
    Ok(())
}

/// Accepts only the `redis://` URL scheme (or none: `key=value` text). The contract's parser
/// drops the scheme, so a `rediss://` (TLS) URL would otherwise connect in plain text.
pub(crate) fn check_scheme(text: &str) -> Result<(), DriverError> {
    let text = text.trim();
    let Some((scheme, _)) = text.split_once("://") else {
        return Ok(());
    };
    if scheme.contains(|c: char| c.is_whitespace() || c == '=') {
        return Ok(()); // `key=value` text that merely contains `://` in a value
    }
    match scheme.to_ascii_lowercase().as_str() {
        "redis" => Ok(()),
        "rediss" => Err(invalid(
            "rediss:// (TLS) is not supported by this build of the redis driver".into(),
        )),
        other => Err(invalid(format!(
            "unsupported URL scheme `{other}://` for the redis driver (use redis://)"
        ))),
    }
}

/// What `connect` needs, derived from normalised arguments.
pub(crate) struct Plan {
    /// Where and as whom to connect (the `redis` crate's form; holds the password).
    pub(crate) info: ConnectionInfo,
    /// The bound on the TCP connect and the handshake.
    pub(crate) connect_timeout: Duration,
    /// The socket timeouts user commands run under (`None`: wait forever).
    pub(crate) session: SessionTimeouts,
    /// The session's handshake, replayed after every `RESET`.
    pub(crate) handshake: Handshake,
}

/// Read and write timeouts for user commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SessionTimeouts {
    pub(crate) read: Option<Duration>,
    pub(crate) write: Option<Duration>,
}

/// What a fresh session of these arguments looks like: the driver restores exactly this after
/// `RESET` (which logs the connection out to `default`, selects db 0 and keeps the name).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Handshake {
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: i64,
    pub(crate) name: Option<String>,
}

/// Builds the plan; `timeout` is the pool's connect timeout (a smaller `connect_timeout=` wins).
pub(crate) fn plan(args: &ConnArgs, timeout: Duration) -> Result<Plan, DriverError> {
    let addr = match args.get("socket") {
        Some(path) => ConnectionAddr::Unix(PathBuf::from(path)),
        None => ConnectionAddr::Tcp(
            args.get("host").unwrap_or("127.0.0.1").to_owned(),
            port(args)?,
        ),
    };
    let handshake = Handshake {
        user: args
            .get("user")
            .filter(|u| !u.is_empty())
            .map(str::to_owned),
        password: args.get("password").map(str::to_owned),
        db: db(args)?,
        name: args
            .get("name")
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
    };
    let info = ConnectionInfo {
        addr,
        redis: RedisConnectionInfo {
            db: handshake.db,
            username: handshake.user.clone(),
            password: handshake.password.clone(),
            protocol: ProtocolVersion::RESP2,
        },
    };
    let connect_timeout = seconds(args, "connect_timeout")?
        .flatten()
        .map_or(timeout, |t| t.min(timeout))
        .max(Duration::from_millis(1));
    let session = SessionTimeouts {
        read: seconds(args, "read_timeout")?.unwrap_or(Some(DEFAULT_IO_TIMEOUT)),
        write: seconds(args, "write_timeout")?.unwrap_or(Some(DEFAULT_IO_TIMEOUT)),
    };
    Ok(Plan {
        info,
        connect_timeout,
        session,
        handshake,
    })
}

/// Where the arguments point, for messages: `127.0.0.1:6379` or the socket path. No secrets.
pub(crate) fn target(args: &ConnArgs) -> String {
    match args.get("socket") {
        Some(path) => path.to_owned(),
        None => format!(
            "{}:{}",
            args.get("host").unwrap_or("127.0.0.1"),
            args.get("port").unwrap_or("6379")
        ),
    }
}

fn invalid(message: String) -> DriverError {
    DriverError::new(DriverErrorKind::InvalidArgs, message)
}

fn db(args: &ConnArgs) -> Result<i64, DriverError> {
    match args.get("db") {
        None | Some("") => Ok(0),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| invalid("redis `db` must be a database number (0, 1, …)".into())),
    }
}

fn port(args: &ConnArgs) -> Result<u16, DriverError> {
    match args.get("port") {
        None => Ok(6379),
        Some(text) => text
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid("redis `port` must be a port number".into())),
    }
}

/// `None`: not given; `Some(None)`: `0` (no timeout); `Some(Some(d))`: seconds, fractions allowed.
fn seconds(args: &ConnArgs, key: &str) -> Result<Option<Option<Duration>>, DriverError> {
    let Some(text) = args.get(key) else {
        return Ok(None);
    };
    let secs = text
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
        .ok_or_else(|| invalid(format!("redis `{key}` must be a number of seconds")))?;
    Ok(Some((secs > 0.0).then(|| Duration::from_secs_f64(secs))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConnArgs, DriverError> {
        let mut args = ConnArgs::parse(text)?;
        normalise(&mut args)?;
        Ok(args)
    }

    #[test]
    fn url_and_key_values_share_a_key() {
        let url = parse("redis://app:p%40ss@db:6380/3?client_name=web").expect("url");
        let kv = parse("host=db port=6380 username=app pass=p@ss database=3 name=web").expect("kv");
        assert_eq!(url, kv);
        assert_eq!(url.get("db"), Some("3"));
    }

    #[test]
    fn socket_spellings_fold() {
        let a = parse("host=/run/r.sock").expect("host path");
        let b = parse("unix_socket=/run/r.sock").expect("alias");
        assert_eq!(a, b);
        assert_eq!(target(&a), "/run/r.sock");
    }

    #[test]
    fn bad_values_are_rejected_without_echoing_secrets() {
        assert!(parse("db=-1").is_err());
        assert!(parse("port=0").is_err());
        assert!(parse("read_timeout=soon").is_err());
        let e = parse("password=hunter2 colour=blue").expect_err("unknown key");
        assert!(e.message().contains("colour") && !e.message().contains("hunter2"));
    }

    #[test]
    fn only_the_redis_scheme() {
        assert!(check_scheme("redis://h:1/0").is_ok());
        assert!(check_scheme("host=h password=a://b").is_ok());
        assert!(check_scheme("rediss://h:1/0").is_err());
        assert!(check_scheme("postgres://h/db").is_err());
    }

    #[test]
    fn timeouts() {
        let args = parse("read_timeout=0 write_timeout=1.5 connect_timeout=2").expect("args");
        let plan = plan(&args, Duration::from_secs(5)).expect("plan");
        assert_eq!(plan.session.read, None);
        assert_eq!(plan.session.write, Some(Duration::from_millis(1500)));
        assert_eq!(plan.connect_timeout, Duration::from_secs(2));
        let default = plan_of("host=h");
        assert_eq!(default.session.read, Some(DEFAULT_IO_TIMEOUT));
    }

    fn plan_of(text: &str) -> Plan {
        plan(&parse(text).expect("args"), Duration::from_secs(5)).expect("plan")
    }
}
