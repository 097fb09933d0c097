//! Connection arguments → `mysql::Opts`.
//!
//! Users write either libpq-style `host=127.0.0.1 port=3307 user=app dbname=shop` or a URL
//! (`mysql://app:secret@127.0.0.1:3307/shop`, `mariadb://…`). [`normalise`] folds the common
//! aliases onto one spelling, so both forms (and `database=` vs `dbname=`) land in the same pool,
//! and rejects unknown keys so that a typo fails at `open` instead of being silently ignored.
//!
//! [`plan`] builds the `mysql::Opts` field by field through `OptsBuilder`. It never formats a URL:
//! a URL would carry the password through a string that some error path could echo back.

use std::time::Duration;

use mysql::{Opts, OptsBuilder};
use pool_driver::{ConnArgs, DriverError, DriverErrorKind};

/// Every key the driver understands, after [`normalise`].
pub(crate) const KNOWN_KEYS: &[&str] = &[
    "host",
    "port",
    "user",
    "password",
    "dbname",
    "socket",
    "connect_timeout",
    "read_timeout",
    "write_timeout",
    "stmt_cache_size",
    "sslmode",
];

/// Aliases users write, and the key each one means.
const ALIASES: &[(&str, &str)] = &[
    ("database", "dbname"),
    ("db", "dbname"),
    ("username", "user"),
    ("unix_socket", "socket"),
    ("pass", "password"),
    ("ssl-mode", "sslmode"),
    ("ssl_mode", "sslmode"),
];

/// Where to connect when neither `host` nor `socket` is given: the `mysql` crate's own default.
const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 3306;

/// Timeouts that apply to the whole life of a connection (every read or write on its socket).
///
/// By default there are none: a long report query must not be cut off by the pool. Users who
/// want a hard cap ask for it with `read_timeout=`/`write_timeout=` (seconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SessionTimeouts {
    pub(crate) read: Option<Duration>,
    pub(crate) write: Option<Duration>,
}

/// What [`crate::MysqlDriver::connect`] needs: the crate's options, plus the timeouts to put back
/// on the socket once the handshake is done.
///
/// Deliberately not `Debug`: `mysql::Opts`'s `Debug` prints the password.
pub(crate) struct ConnectPlan {
    pub(crate) opts: Opts,
    pub(crate) session: SessionTimeouts,
}

/// Folds aliases onto canonical keys and rejects unknown keys and values that cannot work.
///
/// `host=/path/to/mysqld.sock` (the libpq convention, also what `mysql://%2Frun%2Fmysqld.sock/db`
/// parses to) becomes `socket=…`, so both spellings share a pool.
pub(crate) fn normalise(args: &mut ConnArgs) -> Result<(), DriverError> {
    for (alias, canonical) in ALIASES {
        args.rename(alias, canonical);
    }
    if args.get("host").is_some_and(|h| h.starts_with('/')) {
        args.rename("host", "socket");
    }
    if let Some(unknown) = args
        .iter()
        .map(|(k, _)| k)
        .find(|k| !KNOWN_KEYS.contains(k))
    {
        return Err(invalid(format!(
            "unknown mysql connection argument `{unknown}`; supported: {}",
            KNOWN_KEYS.join(", ")
        )));
    }
    // Validate every value now, so a bad port fails at `open`, not at the first connect.
    plan(args, Duration::from_secs(1)).map(drop)
}

/// Builds the options for one connect attempt that must finish within `timeout`.
///
/// * `prefer_socket(false)`: the crate's default (`true`) turns a TCP connect to a loopback
///   address into two connects: it asks the server for `@@socket` and, if there is one, connects
///   again over that unix socket. That doubles the cold-connect cost, makes the target differ
///   from what the user wrote (and from what a firewall or proxy on the TCP port sees), and fails
///   oddly when the socket path is not visible (containers). We connect exactly where the user
///   said; `socket=` (or `host=/path`) selects the unix socket explicitly.
/// * The handshake is bounded: `tcp_connect_timeout` bounds the TCP connect, and the read/write
///   timeouts (set to the same bound here) bound every handshake read and write, so a server that
///   accepts and then says nothing cannot hang `connect`. The driver replaces them with the
///   session timeouts (none by default) right after the handshake.
/// * No `init` statements and the crate's default statement cache (32 server-side prepared
///   statements per connection, closed again by a reset).
pub(crate) fn plan(args: &ConnArgs, timeout: Duration) -> Result<ConnectPlan, DriverError> {
    let mut bound = timeout;
    if let Some(limit) = seconds(args, "connect_timeout")? {
        bound = bound.min(limit);
    }
    // A zero timeout is an error for the socket calls; the smallest honest bound is 1 ms.
    let bound = bound.max(Duration::from_millis(1));
    let session = SessionTimeouts {
        read: seconds(args, "read_timeout")?,
        write: seconds(args, "write_timeout")?,
    };
    match args.get("sslmode") {
        None | Some("disable" | "disabled" | "DISABLED") => {}
        Some(other) => {
            return Err(invalid(format!(
                "sslmode={other} is not supported: pool-mysql is built without TLS \
                 (use sslmode=disabled, a unix socket, or the native client)"
            )))
        }
    }
    let stmt_cache_size = match args.get("stmt_cache_size") {
        Some(v) => Some(
            v.parse::<usize>()
                .map_err(|_| invalid(format!("stmt_cache_size `{v}` is not a number")))?,
        ),
        None => None,
    };

    let mut builder = OptsBuilder::new()
        .prefer_socket(false)
        .user(args.get("user"))
        .pass(args.get("password"))
        .db_name(args.get("dbname"))
        .tcp_connect_timeout(Some(bound))
        .read_timeout(Some(bound))
        .write_timeout(Some(bound))
        .init(Vec::<String>::new());
    if stmt_cache_size.is_some() {
        builder = builder.stmt_cache_size(stmt_cache_size);
    }
    if let Some(socket) = args.get("socket") {
        builder = builder.socket(Some(socket));
    } else {
        let host = args.get("host").unwrap_or(DEFAULT_HOST);
        // The crate parses the host as a URL host: IPv6 literals need their brackets back.
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let port = match args.get("port") {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| invalid(format!("port `{p}` is not a TCP port number")))?,
            None => DEFAULT_PORT,
        };
        builder = builder.ip_or_hostname(Some(host)).tcp_port(port);
    }
    Ok(ConnectPlan {
        opts: builder.into(),
        session,
    })
}

/// Where a connection goes, for messages: `host:port` or the socket path. Never credentials.
pub(crate) fn target(args: &ConnArgs) -> String {
    match args.get("socket") {
        Some(socket) => socket.to_owned(),
        None => format!(
            "{}:{}",
            args.get("host").unwrap_or(DEFAULT_HOST),
            args.get("port").unwrap_or("3306")
        ),
    }
}

/// Reads `key` as seconds (fractions allowed). Absent or `0` (libpq's "no limit") gives `None`.
fn seconds(args: &ConnArgs, key: &str) -> Result<Option<Duration>, DriverError> {
    let Some(text) = args.get(key) else {
        return Ok(None);
    };
    match text.trim().parse::<f64>() {
        Ok(0.0) => Ok(None),
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Some(Duration::from_secs_f64(s))),
        _ => Err(invalid(format!(
            "{key} `{text}` is not a number of seconds"
        ))),
    }
}

fn invalid(message: String) -> DriverError {
    DriverError::new(DriverErrorKind::InvalidArgs, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> ConnArgs {
        let mut args = ConnArgs::parse(text).expect("parses");
        normalise(&mut args).expect("normalises");
        args
    }

    fn opts(text: &str) -> Opts {
        plan(&parsed(text), Duration::from_secs(5))
            .expect("plans")
            .opts
    }

    #[test]
    fn key_values_map_onto_opts() {
        let o = opts("host=db.example port=3307 user=app password=s3cret dbname=shop");
        assert_eq!(o.get_ip_or_hostname(), "db.example");
        assert_eq!(o.get_tcp_port(), 3307);
        assert_eq!(o.get_user(), Some("app"));
        assert_eq!(o.get_pass(), Some("s3cret"));
        assert_eq!(o.get_db_name(), Some("shop"));
        assert_eq!(o.get_socket(), None);
        assert!(
            !o.get_prefer_socket(),
            "connect exactly where the user said"
        );
        assert!(o.get_init().is_empty());
        assert_eq!(o.get_stmt_cache_size(), 32);
    }

    #[test]
    fn urls_and_key_values_share_a_key() {
        let a = parsed("mysql://app:s3cret@db.example:3307/shop");
        let b = parsed("mariadb://app:s3cret@db.example:3307/shop");
        let c = parsed("database=shop username=app pass=s3cret host=db.example port=3307");
        let d = parsed("db=shop user=app password=s3cret host=db.example port=3307");
        assert_eq!(a.canonical(), b.canonical());
        assert_eq!(a.canonical(), c.canonical());
        assert_eq!(a.canonical(), d.canonical());
        let o = opts("mysql://app:s3cret@db.example:3307/shop");
        assert_eq!((o.get_user(), o.get_pass()), (Some("app"), Some("s3cret")));
        assert_eq!(o.get_db_name(), Some("shop"));
    }

    #[test]
    fn socket_spellings() {
        let a = parsed("unix_socket=/run/my.sock user=app");
        let b = parsed("host=/run/my.sock user=app");
        let c = parsed("mysql://app@%2Frun%2Fmy.sock");
        assert_eq!(a.get("socket"), Some("/run/my.sock"));
        assert_eq!(a.canonical(), b.canonical());
        assert_eq!(a.canonical(), c.canonical());
        assert_eq!(
            opts("socket=/run/my.sock").get_socket(),
            Some("/run/my.sock")
        );
    }

    #[test]
    fn timeouts() {
        let plan5 = |text: &str| plan(&parsed(text), Duration::from_secs(5)).expect("plans");
        let p = plan5("host=h");
        assert_eq!(
            p.opts.get_tcp_connect_timeout(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(p.opts.get_read_timeout(), Some(&Duration::from_secs(5)));
        assert_eq!(p.session, SessionTimeouts::default());
        let p = plan5("host=h connect_timeout=2 read_timeout=30 write_timeout=0.5");
        assert_eq!(
            p.opts.get_tcp_connect_timeout(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(p.session.read, Some(Duration::from_secs(30)));
        assert_eq!(p.session.write, Some(Duration::from_millis(500)));
        let p = plan5("host=h connect_timeout=0");
        assert_eq!(
            p.opts.get_tcp_connect_timeout(),
            Some(Duration::from_secs(5))
        );
        let p = plan(&parsed("host=h"), Duration::ZERO).expect("plans");
        assert_eq!(
            p.opts.get_tcp_connect_timeout(),
            Some(Duration::from_millis(1))
        );
    }

    #[test]
    fn defaults_and_ipv6() {
        let o = opts("user=app");
        assert_eq!(
            (o.get_ip_or_hostname().as_ref(), o.get_tcp_port()),
            ("127.0.0.1", 3306)
        );
        let o = opts("mysql://app@[::1]:3307/db");
        // Parsed as an IPv6 address (a domain would print without brackets).
        assert_eq!(o.get_ip_or_hostname(), "[::1]");
        assert_eq!(o.get_tcp_port(), 3307);
    }

    #[test]
    fn bad_arguments_are_rejected_without_the_password() {
        for text in [
            "host=h port=nope password=hunter2",
            "host=h colour=blue password=hunter2",
            "host=h sslmode=require password=hunter2",
            "host=h connect_timeout=soon password=hunter2",
            "host=h stmt_cache_size=-1 password=hunter2",
        ] {
            let mut args = ConnArgs::parse(text).expect("parses");
            let err = normalise(&mut args).expect_err(text);
            assert_eq!(err.kind(), DriverErrorKind::InvalidArgs, "{text}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        assert!(ConnArgs::parse("sslmode=DISABLED")
            .map(|mut a| normalise(&mut a).is_ok())
            .unwrap_or(false));
    }

    #[test]
    fn target_never_shows_credentials() {
        assert_eq!(target(&parsed("mysql://app:pw@h:3307/db")), "h:3307");
        assert_eq!(target(&parsed("socket=/s user=u password=pw")), "/s");
    }
}
