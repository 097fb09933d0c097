//! Connection arguments: aliases, validation, and the plan `connect` follows.
//!
//! Every spelling of the same target must share one pool, so aliases are folded into one key
//! each (`username` → `user`, `pass` → `password`, `dbname`/`database` → `db`, `unix_socket`/
//! `path`/`host=/path` → `socket`, `client_name`/`clientname` → `name`), and so are the TLS
//! flags' spellings (`rediss://`, `tls=true`, `tls=1` → `tls=on`; an `off` flag is dropped).
//! Unknown keys are rejected at parse time: a typo must not silently connect with defaults;
//! so are TLS arguments without TLS (see [`normalise_tls`]).
//!
//! The rejection never shows a key that may be a piece of a password: one with an unquoted
//! space (`password=correct horse=battery`) reads as more pairs, so unknown keys are named only
//! as [`ConnArgs::check_known_keys`] allows. No message here shows a value at all.

use std::path::PathBuf;
use std::time::Duration;

use pool_driver::{ConnArgs, DriverError, DriverErrorKind};
use redis::{ConnectionAddr, ConnectionInfo, ProtocolVersion, RedisConnectionInfo};

use crate::sentinel;
use crate::tls::{self, TlsArgs};

/// The keys this driver understands (after aliases are folded). These and the aliases must all
/// be in [`ConnArgs::ANY_DRIVER_KEYS`] (a test checks), or another driver's error could not
/// name them.
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
    "tls",
    "cacert",
    "cert",
    "key",
    "insecure",
    "sentinel",
    "service_name",
    "sentinel_user",
    "sentinel_password",
];

/// The read and write timeout user commands run under unless `read_timeout=`/`write_timeout=`
/// say otherwise: long enough for any ordinary command, short enough that a vanished server
/// does not hang a request forever. `0` means none.
pub(crate) const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Aliases users write, and the key each one means (folded in this order).
const ALIASES: &[(&str, &str)] = &[
    ("username", "user"),
    ("pass", "password"),
    ("dbname", "db"),
    ("database", "db"),
    ("unix_socket", "socket"),
    ("path", "socket"),
    ("client_name", "name"),
    ("clientname", "name"),
    ("sentinels", "sentinel"),
    ("master_name", "service_name"),
    ("sentinel_username", "sentinel_user"),
];

/// Folds aliases and checks every value, in place.
pub(crate) fn normalise(args: &mut ConnArgs) -> Result<(), DriverError> {
    for (alias, canonical) in ALIASES {
        args.rename(alias, canonical);
    }
    if args.get("host").is_some_and(|h| h.starts_with('/')) {
        if let Some(host) = args.remove("host") {
            args.set("socket", host);
        }
    }
    args.check_known_keys("redis", KNOWN)?;
    sentinel::normalise(args)?;
    db(args)?;
    port(args)?;
    for key in ["connect_timeout", "read_timeout", "write_timeout"] {
        seconds(args, key)?;
    }
    normalise_tls(args)
}

/// Folds the TLS flags to one spelling each (`tls=on`, `insecure=on`; an `off` flag is
/// dropped, as if never written) so `rediss://`, `tls=on`, `tls=true` and `tls=1` share one
/// pool, then refuses combinations that would not do what they say:
///
/// * a TLS-only key (`cacert`, `cert`, `key`, `insecure`) without TLS: the user meant TLS, and
///   connecting in plain text instead would be worse than failing;
/// * TLS on a unix socket (Redis serves its socket in plain text; the `redis` crate cannot
///   wrap one);
/// * `cert` without `key` or the reverse, and empty file names.
fn normalise_tls(args: &mut ConnArgs) -> Result<(), DriverError> {
    for key in ["tls", "insecure"] {
        let Some(value) = args.get(key) else { continue };
        match tls::flag(value) {
            Some(true) => args.set(key, "on"),
            Some(false) => {
                args.remove(key);
            }
            None => {
                return Err(invalid(format!(
                    "redis `{key}` must be on or off (also true/false, yes/no, 1/0)"
                )))
            }
        }
    }
    for key in ["cacert", "cert", "key"] {
        if args.get(key).is_some_and(|v| v.trim().is_empty()) {
            return Err(invalid(format!("redis `{key}` must name a PEM file")));
        }
    }
    let tls_on = args.get("tls").is_some();
    if !tls_on {
        if let Some(key) = tls::TLS_ONLY_KEYS.iter().find(|k| args.get(k).is_some()) {
            return Err(invalid(format!(
                "redis `{key}` is a TLS argument, but TLS is off: connect with rediss:// (or \
                 tls=on), or drop `{key}`"
            )));
        }
        return Ok(());
    }
    if args.get("socket").is_some() {
        return Err(invalid(
            "redis TLS (rediss:// or tls=on) needs a TCP host and port: a unix socket is \
             served in plain text"
                .into(),
        ));
    }
    tls::from_args(args).map(drop)
}

/// What a connection text's URL scheme asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `key=value` text (`tls=on` decides), or a `redis://` URL.
    Plain,
    /// A `rediss://` URL: TLS, as `redis-cli -u rediss://…` and the `redis` crate read it.
    Tls,
    /// A `redis+sentinel://` URL: the hosts are Sentinels, the path `/service_name[/db]`.
    Sentinel,
    /// `rediss+sentinel://`: the same over TLS (to the Sentinels and to the master).
    SentinelTls,
}

/// Accepts the `redis://`, `rediss://`, `redis+sentinel://` and `rediss+sentinel://` URL
/// schemes (or none: `key=value` text). The contract's parser drops the scheme, so the caller
/// must record what it meant ([`apply_scheme`]): otherwise a TLS URL would connect in plain
/// text, and a Sentinel URL would connect to a Sentinel as if it were the master.
pub(crate) fn check_scheme(text: &str) -> Result<Scheme, DriverError> {
    let text = text.trim();
    let Some((scheme, _)) = text.split_once("://") else {
        return Ok(Scheme::Plain);
    };
    if scheme.contains(|c: char| c.is_whitespace() || c == '=') {
        return Ok(Scheme::Plain); // `key=value` text that merely contains `://` in a value
    }
    match scheme.to_ascii_lowercase().as_str() {
        "redis" => Ok(Scheme::Plain),
        "rediss" => Ok(Scheme::Tls),
        "redis+sentinel" => sentinel_query(text).map(|()| Scheme::Sentinel),
        "rediss+sentinel" => sentinel_query(text).map(|()| Scheme::SentinelTls),
        other => Err(invalid(format!(
            "unsupported URL scheme `{other}://` for the redis driver (use redis://, \
             rediss://, or redis+sentinel://host1:port1,host2:port2/service_name[/db])"
        ))),
    }
}

/// Refuses `dbname`/`database` (this driver's aliases of `db`) in a `redis+sentinel://` URL's
/// query: the contract's parser puts the URL's path in `dbname` and lets a query parameter of
/// that name replace it, so `redis+sentinel://s1/mymaster/2?dbname=3` would ask for a service
/// named `3`. The message names the key only, never a value.
fn sentinel_query(text: &str) -> Result<(), DriverError> {
    let Some((_, query)) = text.split_once('?') else {
        return Ok(());
    };
    let query = query.split('#').next().unwrap_or_default();
    for pair in query.split('&') {
        let key = percent_decoded(pair.split('=').next().unwrap_or_default());
        if let Some(alias) = ["dbname", "database"]
            .into_iter()
            .find(|alias| key.eq_ignore_ascii_case(alias))
        {
            return Err(invalid(format!(
                "a redis+sentinel:// URL's path is /service_name[/db], so `{alias}` cannot be a \
                 query parameter (it would replace the path): give the db in the path, or as \
                 `db`"
            )));
        }
    }
    Ok(())
}

/// `text` with its `%XX` escapes decoded (others left as they are), lossily as UTF-8.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Records a `rediss://` scheme as `tls=on`, before [`normalise`]. A `rediss://` URL that
/// also says `?tls=off` contradicts itself and is refused rather than guessed at.
///
/// A `redis+sentinel://` URL becomes the `key=value` form it stands for, so both spellings
/// share a pool: its hosts (`host=h1,h2 port=p1,p2` from the contract's parser) become
/// `sentinel=h1:p1,h2:p2` (a host without a port gets Sentinel's 26379), the first path
/// segment `service_name`, the second (if any) `db`.
pub(crate) fn apply_scheme(args: &mut ConnArgs, scheme: Scheme) -> Result<(), DriverError> {
    if matches!(scheme, Scheme::Sentinel | Scheme::SentinelTls) {
        sentinel_url(args)?;
    }
    if matches!(scheme, Scheme::Tls | Scheme::SentinelTls) {
        if args.get("tls").and_then(tls::flag) == Some(false) {
            return Err(invalid(
                "a rediss:// URL is TLS, but it also says tls=off: drop one of them".into(),
            ));
        }
        args.set("tls", "on");
    }
    Ok(())
}

/// See [`apply_scheme`]. Messages name parts and keys, never values.
fn sentinel_url(args: &mut ConnArgs) -> Result<(), DriverError> {
    const FORM: &str = "redis+sentinel://[user:password@]host1:port1,host2:port2/service_name[/db]";
    let Some(hosts) = args.remove("host") else {
        return Err(invalid(format!(
            "a redis+sentinel:// URL names the Sentinels as its hosts: {FORM}"
        )));
    };
    if args.get("sentinel").is_some() || args.get("sentinels").is_some() {
        return Err(invalid(format!(
            "a redis+sentinel:// URL names the Sentinels as its hosts, so not also as \
             `sentinel`: {FORM}"
        )));
    }
    let hosts: Vec<&str> = hosts.split(',').collect();
    let ports = args.remove("port");
    let ports: Vec<&str> = match &ports {
        Some(ports) => ports.split(',').collect(),
        None => vec![""; hosts.len()],
    };
    if ports.len() != hosts.len() {
        return Err(invalid(format!(
            "the redis+sentinel:// URL's hosts and ports do not pair up: {FORM}"
        )));
    }
    let mut list = Vec::with_capacity(hosts.len());
    for (host, port) in hosts.iter().zip(&ports) {
        let port = match port.parse::<u16>() {
            Ok(port) => port,
            Err(_) if port.is_empty() => sentinel::DEFAULT_PORT,
            Err(_) => {
                return Err(invalid(format!(
                    "a Sentinel's port in the URL is not a port: {FORM}"
                )))
            }
        };
        list.push(sentinel::show(host, port));
    }
    args.set("sentinel", list.join(","));
    if let Some(path) = args.remove("dbname") {
        let (service, db) = path.split_once('/').unwrap_or((path.as_str(), ""));
        if !service.is_empty() {
            if args.get("service_name").is_some() || args.get("master_name").is_some() {
                return Err(invalid(format!(
                    "the redis+sentinel:// URL names the service in its path and as \
                     `service_name` too: keep one ({FORM})"
                )));
            }
            args.set("service_name", service);
        }
        if !db.is_empty() {
            args.set("dbname", db);
        }
    }
    Ok(())
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
    /// TLS, if on: the files to read at connect time.
    pub(crate) tls: Option<TlsArgs>,
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
    plan_at(args, timeout, None)
}

/// [`plan`], to `at` (host, port) instead of the arguments' `host`/`port`: the master a
/// Sentinel named. With TLS the certificate is checked against that host as the Sentinel
/// wrote it (an IP address, unless the Sentinels run with `announce-hostnames yes`).
pub(crate) fn plan_at(
    args: &ConnArgs,
    timeout: Duration,
    at: Option<(&str, u16)>,
) -> Result<Plan, DriverError> {
    let tls = tls::from_args(args)?;
    let host = || match at {
        Some((host, _)) => host.to_owned(),
        None => args.get("host").unwrap_or("127.0.0.1").to_owned(),
    };
    let port = || match at {
        Some((_, port)) => Ok(port),
        None => port(args),
    };
    let addr = match (args.get("socket"), &tls) {
        (Some(path), _) => ConnectionAddr::Unix(PathBuf::from(path)),
        // The certificate is checked against `host` as written (and it is the SNI name).
        (None, Some(tls)) => ConnectionAddr::TcpTls {
            host: host(),
            port: port()?,
            insecure: tls.insecure,
            tls_params: None,
        },
        (None, None) => ConnectionAddr::Tcp(host(), port()?),
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
    let connect_timeout = connect_timeout(args, timeout)?;
    let session = SessionTimeouts {
        read: seconds(args, "read_timeout")?.unwrap_or(Some(DEFAULT_IO_TIMEOUT)),
        write: seconds(args, "write_timeout")?.unwrap_or(Some(DEFAULT_IO_TIMEOUT)),
    };
    Ok(Plan {
        info,
        connect_timeout,
        session,
        handshake,
        tls,
    })
}

/// The bound on a connect: the pool's `timeout`, or a smaller `connect_timeout=`.
pub(crate) fn connect_timeout(args: &ConnArgs, timeout: Duration) -> Result<Duration, DriverError> {
    Ok(seconds(args, "connect_timeout")?
        .flatten()
        .map_or(timeout, |t| t.min(timeout))
        .max(Duration::from_millis(1)))
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
    use pool_driver::leak_check;

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
        // `colour` is no driver's argument: it may be a piece of a value, so only its position
        // is given (issue 16).
        assert!(!e.message().contains("colour") && !e.message().contains("hunter2"));
        assert!(e.message().contains("argument 2"), "{}", e.message());
    }

    /// Another driver's error names a redis key only if the contract's list of every driver's
    /// names has it.
    #[test]
    fn every_name_this_driver_takes_is_in_the_contracts_list() {
        let aliases = ALIASES
            .iter()
            .flat_map(|(alias, canonical)| [alias, canonical]);
        for key in KNOWN.iter().chain(aliases) {
            assert!(ConnArgs::ANY_DRIVER_KEYS.contains(key), "{key}");
        }
    }

    #[test]
    fn only_the_redis_schemes() {
        assert_eq!(check_scheme("redis://h:1/0").ok(), Some(Scheme::Plain));
        assert_eq!(
            check_scheme("host=h password=a://b").ok(),
            Some(Scheme::Plain)
        );
        assert_eq!(check_scheme("rediss://h:1/0").ok(), Some(Scheme::Tls));
        assert_eq!(check_scheme("REDISS://h:1/0").ok(), Some(Scheme::Tls));
        assert_eq!(
            check_scheme("redis+sentinel://s:1/m").ok(),
            Some(Scheme::Sentinel)
        );
        assert_eq!(
            check_scheme("rediss+sentinel://s:1/m").ok(),
            Some(Scheme::SentinelTls)
        );
        assert!(check_scheme("postgres://h/db").is_err());
    }

    /// `rediss://` with redis-cli's names as query parameters, and `key=value` with `tls=on`,
    /// are the same arguments, so the same pool; and the registry key holds every TLS argument,
    /// so two users with different certificates never share one.
    #[test]
    fn tls_spellings_share_a_key() {
        let url = parse_args_of(
            "rediss://app:pw@db.example:6380/2?cacert=/etc/ca.pem&cert=/c.pem&key=/c.key",
        );
        let kv = parse_args_of(
            "host=db.example port=6380 user=app password=pw db=2 tls=true cacert=/etc/ca.pem \
             cert=/c.pem key=/c.key",
        );
        assert_eq!(url, kv);
        assert_eq!(url.get("tls"), Some("on"));
        let other_cert = parse_args_of(
            "rediss://app:pw@db.example:6380/2?cacert=/etc/ca.pem&cert=/d.pem&key=/c.key",
        );
        assert_ne!(url, other_cert);
        let plain = parse_args_of("redis://app:pw@db.example:6380/2");
        assert_ne!(plain, parse_args_of("rediss://app:pw@db.example:6380/2"));

        // A bare `?insecure` (redis-cli's `--insecure`) is `insecure=on`; `off` flags vanish.
        let bare = parse_args_of("rediss://h:1/0?insecure");
        assert_eq!(bare.get("insecure"), Some("on"));
        assert_eq!(bare, parse_args_of("host=h port=1 db=0 tls=1 insecure=yes"));
        assert_eq!(
            parse_args_of("host=h tls=off"),
            parse_args_of("host=h"),
            "tls=off is plain"
        );
        assert_eq!(
            parse_args_of("rediss://h/0?insecure=off"),
            parse_args_of("rediss://h/0")
        );
        // `redis://…?tls=on` is TLS too (`redis-cli -u redis://… --tls`).
        assert_eq!(
            parse_args_of("redis://h/0?tls=on"),
            parse_args_of("rediss://h/0")
        );
    }

    fn parse_args_of(text: &str) -> ConnArgs {
        let scheme = check_scheme(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let mut args = ConnArgs::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        apply_scheme(&mut args, scheme).unwrap_or_else(|e| panic!("{text}: {e}"));
        normalise(&mut args).unwrap_or_else(|e| panic!("{text}: {e}"));
        args
    }

    /// `redis+sentinel://` and the `key=value` form are the same arguments, so the same pool;
    /// the URL's hosts become `sentinel` (26379 filled in), its path `service_name` and `db`.
    #[test]
    fn sentinel_spellings_share_a_key() {
        let url = parse_args_of(
            "redis+sentinel://app:p%40ss@s1:26380,s2,[::1]:26381/mymaster/2?sentinel_password=sp",
        );
        let kv = parse_args_of(
            "sentinels=s1:26380,s2:26379,[::1]:26381 master_name=mymaster user=app pass=p@ss \
             db=2 sentinel_password=sp",
        );
        assert_eq!(url, kv);
        assert_eq!(url.get("sentinel"), Some("s1:26380,s2:26379,[::1]:26381"));
        assert_eq!(url.get("service_name"), Some("mymaster"));
        assert_eq!(url.get("db"), Some("2"));
        assert_eq!(url.get("host"), None);
        // The short spelling of the list is the same key.
        assert_eq!(
            parse_args_of("sentinel=s1 service_name=m"),
            parse_args_of("sentinel=s1:26379 service_name=m")
        );
        assert_eq!(
            parse_args_of("redis+sentinel://s1/m"),
            parse_args_of("sentinel=s1:26379 service_name=m")
        );
        // The service may come as a query parameter instead of the path.
        assert_eq!(
            parse_args_of("redis+sentinel://s1:1?service_name=m&db=3"),
            parse_args_of("sentinel=s1:1 service_name=m db=3")
        );
        // TLS to the Sentinels and the master.
        let tls = parse_args_of("rediss+sentinel://s1:1/m?cacert=/ca.pem");
        assert_eq!(tls.get("tls"), Some("on"));
        assert_eq!(
            tls,
            parse_args_of("sentinel=s1:1 service_name=m tls=on cacert=/ca.pem")
        );
        // The passwords are secrets: never in the redacted form.
        let shown = url.redacted();
        assert!(!shown.contains("p@ss") && !shown.contains("sp "), "{shown}");
    }

    #[test]
    fn sentinel_arguments_that_cannot_work_are_refused() {
        for (text, says) in [
            (
                "sentinel=s1 host=h service_name=m",
                "`host` cannot go with `sentinel`",
            ),
            (
                "sentinel=s1 port=1 service_name=m",
                "`port` cannot go with `sentinel`",
            ),
            (
                "sentinel=s1 socket=/r.sock service_name=m",
                "`socket` cannot go with `sentinel`",
            ),
            ("sentinel=s1", "needs `service_name`"),
            ("sentinel=s1 service_name=", "needs `service_name`"),
            (
                "sentinel=s1,,s2 service_name=m",
                "entry 2 of redis `sentinel` is empty",
            ),
            (
                "sentinel=s1:0 service_name=m",
                "entry 1 of redis `sentinel` has no valid port",
            ),
            (
                "host=h service_name=m",
                "`service_name` only goes with `sentinel`",
            ),
            (
                "host=h sentinel_password=x",
                "`sentinel_password` only goes with `sentinel`",
            ),
            ("redis+sentinel:///m", "names the Sentinels as its hosts"),
            (
                "redis+sentinel://s1/m?sentinel=s2",
                "not also as `sentinel`",
            ),
            ("redis+sentinel://s1/m?service_name=n", "keep one"),
            ("redis+sentinel://s1,s2/m?port=1", "pair up"),
            (
                "redis+sentinel://s1/m/2?dbname=3",
                "`dbname` cannot be a query",
            ),
            (
                "redis+sentinel://s1/m?a=1&DataBase=3",
                "`database` cannot be a query",
            ),
            (
                "redis+sentinel://s1/m?db%6Eame=3",
                "`dbname` cannot be a query",
            ),
        ] {
            let error = parse_args(text).expect_err(text);
            assert_eq!(error.kind(), DriverErrorKind::InvalidArgs, "{text}");
            assert!(
                error.message().contains(says),
                "{text}: {}",
                error.message()
            );
        }
    }

    #[test]
    fn sentinel_passwords_never_reach_an_error() {
        leak_check::assert_no_piece_leaks(
            &own_names(),
            &[
                "sentinel=s1 service_name=m sentinel_password={} name=web",
                "sentinel=s1 service_name=m password={} sentinel_password=x",
                "redis+sentinel://s1/m?sentinel_password={}&name=web",
                "redis+sentinel://app:{}@s1:1,s2:2/m/0",
            ],
            parse_args,
        );
        leak_check::assert_refused_without_pieces(
            &[
                (
                    "sentinel=s1 service_name=m sentinel_password=correct horse=battery",
                    &["correct", "horse", "battery"][..],
                ),
                (
                    "sentinel=s1 sentinel_password=correct sentinel=battery",
                    &["correct", "battery"],
                ),
            ],
            |text| parse_args(text).map(drop),
        );
    }

    /// What would not do what it says is refused at parse time, naming the key, not its value.
    #[test]
    fn tls_arguments_that_cannot_work_are_refused() {
        for (text, says) in [
            ("host=h cacert=/ca.pem", "TLS is off"),
            ("redis://h/0?insecure", "TLS is off"),
            ("host=h tls=off cert=/c.pem key=/c.key", "TLS is off"),
            ("rediss://h/0?tls=off", "tls=off"),
            ("tls=on socket=/run/r.sock", "unix socket"),
            ("tls=on host=/run/r.sock", "unix socket"),
            ("rediss://h/0?cert=/c.pem", "`cert` and `key` go together"),
            ("rediss://h/0?key=/c.key", "`cert` and `key` go together"),
            ("tls=maybe", "on or off"),
            ("rediss://h/0?insecure=perhaps", "on or off"),
            ("rediss://h/0?cacert=", "must name a PEM file"),
        ] {
            let error = parse_args(text).expect_err(text);
            assert_eq!(error.kind(), DriverErrorKind::InvalidArgs, "{text}");
            assert!(
                error.message().contains(says),
                "{text}: {}",
                error.message()
            );
            assert!(!error.message().contains("perhaps"), "{}", error.message());
        }
    }

    #[test]
    fn the_plan_of_tls_arguments() {
        let plan = plan_of("tls=on host=db.example port=6380 cacert=/ca.pem insecure=on");
        let ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            ..
        } = &plan.info.addr
        else {
            panic!("not TLS: {:?}", plan.info.addr);
        };
        assert_eq!(
            (host.as_str(), *port, *insecure),
            ("db.example", 6380, true)
        );
        let tls = plan.tls.expect("tls settings");
        assert_eq!(tls.cacert, Some(PathBuf::from("/ca.pem")));
        assert_eq!(tls.client, None);
        assert!(matches!(
            plan_of("host=h").info.addr,
            ConnectionAddr::Tcp(..)
        ));
        assert!(plan_of("host=h").tls.is_none());
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

    /// This driver's own names (keys and aliases): a piece of a password that is one of them
    /// is an argument the driver takes, which its messages may name.
    fn own_names() -> Vec<&'static str> {
        let aliases = ALIASES
            .iter()
            .flat_map(|(alias, canonical)| [*alias, *canonical]);
        KNOWN.iter().copied().chain(aliases).collect()
    }

    fn parse_args(text: &str) -> Result<(), DriverError> {
        let scheme = check_scheme(text)?;
        let mut args = ConnArgs::parse(text)?;
        apply_scheme(&mut args, scheme)?;
        normalise(&mut args)
    }

    /// Issue 16: an unquoted password with a space (`password=correct horse=battery`) reads as
    /// more pairs; the error must name none of its pieces, whatever they turn into (an unknown
    /// key, a known key of another driver, the value of a key this driver knows).
    #[test]
    fn an_unquoted_password_never_reaches_the_error() {
        leak_check::assert_refused_without_pieces(
            &[
                (
                    "host=h password=correct horse=battery",
                    &["correct", "horse", "battery"][..],
                ),
                ("host=h password=a b c=d", &["b", "c", "d"]),
                (
                    "host=h pass=correct horse=battery",
                    &["correct", "horse", "battery"],
                ),
                (
                    "host=h password=correct port=battery",
                    &["correct", "battery"],
                ),
                (
                    "host=h password=correct sslmode=battery",
                    &["correct", "sslmode", "battery"],
                ),
                (
                    "redis://h/0?password=correct&horse=battery",
                    &["correct", "horse"],
                ),
                (
                    "redis://app:6379/0?horse=battery@h/0",
                    &["horse", "battery"],
                ),
            ],
            |text| parse_args(text).map(drop),
        );
    }

    /// The key is named only when some driver knows it (a hint that helps); otherwise the
    /// message gives its position and says how to quote a value.
    #[test]
    fn an_unknown_key_is_named_only_when_some_driver_knows_it() {
        leak_check::assert_unknown_keys_named_only_when_known(
            |text| parse_args(text).map(drop),
            "sslmode",
        );
    }

    #[test]
    fn no_piece_of_a_generated_password_reaches_an_error() {
        leak_check::assert_no_piece_leaks(
            &own_names(),
            &[
                "host=h password={} name=web",
                "pass={}",
                "redis://h/0?password={}&name=web",
                "redis://app:6379/0?{}@h/0",
            ],
            parse_args,
        );
    }
}
