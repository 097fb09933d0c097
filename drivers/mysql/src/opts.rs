//! Connection arguments → `mysql::Opts`.
//!
//! Users write either libpq-style `host=127.0.0.1 port=3307 user=app dbname=shop` or a URL
//! (`mysql://app:secret@127.0.0.1:3307/shop`, `mariadb://…`). [`normalise`] folds the common
//! aliases onto one spelling, so both forms (and `database=` vs `dbname=`) land in the same pool,
//! and rejects unknown keys so that a typo fails at `open` instead of being silently ignored.
//!
//! [`plan`] builds the `mysql::Opts` field by field through `OptsBuilder`. It never formats a URL:
//! a URL would carry the password through a string that some error path could echo back.
//!
//! Messages never show a key or value that may be a piece of a password: one with an unquoted
//! space (`password=correct horse=battery`) reads as more pairs. Unknown keys are named only as
//! [`ConnArgs::check_known_keys`] allows, values only through [`ConnArgs::value_for_message`].

use std::time::Duration;

use mysql::{Opts, OptsBuilder};
use pool_driver::{ConnArgs, DriverError, DriverErrorKind};

use crate::tls::{self, TlsPlan};

/// Every key the driver understands, after [`normalise`]. These and the aliases must all be in
/// [`ConnArgs::ANY_DRIVER_KEYS`] (a test checks), or another driver's error could not name them.
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
    tls::MODE,
    tls::CA,
    tls::CERT,
    tls::KEY,
];

/// Aliases users write, and the key each one means.
const ALIASES: &[(&str, &str)] = &[
    ("database", "dbname"),
    ("db", "dbname"),
    ("username", "user"),
    ("unix_socket", "socket"),
    ("pass", "password"),
    ("ssl-mode", tls::MODE),
    ("ssl_mode", tls::MODE),
    ("ssl_ca", tls::CA),
    ("ssl_cert", tls::CERT),
    ("ssl_key", tls::KEY),
];

/// How many times a timed-out TLS handshake waits on the silent socket inside the `mysql`
/// crate (see [`ConnectPlan::opts`]).
const TLS_FAILURE_WAITS: u32 = 3;

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

/// What [`crate::MysqlDriver::connect`] needs: the crate's options for each attempt, the TLS
/// plan, plus the timeouts to put back on the socket once the handshake is done.
///
/// Deliberately not `Debug`: `mysql::OptsBuilder`'s `Debug` prints the password.
pub(crate) struct ConnectPlan {
    /// Everything but the handshake's bound and TLS, which differ between attempts.
    base: OptsBuilder,
    /// The bound on the TCP connect and on every handshake read and write (TLS included).
    pub(crate) bound: Duration,
    pub(crate) tls: TlsPlan,
    pub(crate) session: SessionTimeouts,
}

impl ConnectPlan {
    /// The options for one attempt, with or without TLS, its handshake bounded by `bound`
    /// (the whole connect timeout for the first attempt, what is left of it for the second).
    ///
    /// The bound is a socket timeout on each read and write, and the crate runs the TLS
    /// handshake on the same socket, inside those reads and writes. But a TLS handshake that
    /// times out waits on the silent socket [`TLS_FAILURE_WAITS`] times before the crate's
    /// `Conn::new` returns: the handshake's own read; then, as the half-made connection is
    /// dropped, its goodbye (`COM_QUIT`) and its buffered writer's flush, each a write that
    /// rustls cannot send before the handshake finishes, so it reads for the server's answer
    /// first. Measured: a 300 ms bound took 980 ms against a silent TLS peer. So an attempt
    /// with TLS gives each read and write a third of the bound, and the whole failure fits in
    /// it. The TCP connect keeps the whole bound (a SYN that gets no answer costs one wait).
    pub(crate) fn opts(&self, tls: bool, bound: Duration) -> Opts {
        let bound = bound.max(Duration::from_millis(1));
        let per_operation = if tls {
            bound / TLS_FAILURE_WAITS
        } else {
            bound
        }
        .max(Duration::from_millis(1));
        self.base
            .clone()
            .tcp_connect_timeout(Some(bound))
            .read_timeout(Some(per_operation))
            .write_timeout(Some(per_operation))
            .ssl_opts(if tls { self.tls.ssl_opts() } else { None })
            .into()
    }

    /// The options of the first attempt: TLS as the plan says, the whole bound.
    pub(crate) fn first_opts(&self) -> Opts {
        self.opts(self.tls.asks_for_tls(), self.bound)
    }
}

/// Folds aliases onto canonical keys and rejects unknown keys and values that cannot work.
///
/// `host=/path/to/mysqld.sock` (the libpq convention, also what `mysql://%2Frun%2Fmysqld.sock/db`
/// parses to) becomes `socket=…`, so both spellings share a pool. The TLS arguments are folded
/// by [`tls::normalise`] (the mode in one spelling, the default dropped), so they are part of
/// the registry key: two pools never share connections made with different TLS settings.
pub(crate) fn normalise(args: &mut ConnArgs) -> Result<(), DriverError> {
    for (alias, canonical) in ALIASES {
        args.rename(alias, canonical);
    }
    if args.get("host").is_some_and(|h| h.starts_with('/')) {
        args.rename("host", "socket");
    }
    args.check_known_keys("mysql", KNOWN_KEYS)?;
    tls::normalise(args)?;
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
///   timeouts (set to the same bound, see [`ConnectPlan::opts`]) bound every handshake read and
///   write, the TLS handshake's included, so a server that accepts and then says nothing cannot
///   hang `connect`. The driver replaces them with the session timeouts (none by default) right
///   after the handshake.
/// * TLS as [`TlsPlan`] says (see `tls.rs`).
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
    let tls = TlsPlan::from_args(args)?;
    let stmt_cache_size = match args.get("stmt_cache_size") {
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            bad_value(
                args,
                "stmt_cache_size",
                "how many prepared statements to keep per connection (a whole number)",
            )
        })?),
        None => None,
    };

    let mut builder = OptsBuilder::new()
        .prefer_socket(false)
        .user(args.get("user"))
        .pass(args.get("password"))
        .db_name(args.get("dbname"))
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
                .map_err(|_| bad_value(args, "port", "a TCP port number (0 to 65535)"))?,
            None => DEFAULT_PORT,
        };
        builder = builder.ip_or_hostname(Some(host)).tcp_port(port);
    }
    Ok(ConnectPlan {
        base: builder,
        bound,
        tls,
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
        _ => Err(bad_value(
            args,
            key,
            "a number of seconds (fractions allowed, 0 for none)",
        )),
    }
}

/// An error for a malformed value of `key`, saying what was `expected`. The value is shown
/// when that helps and is safe: not when it was written after the password, where it may be a
/// piece of it (see [`ConnArgs::value_for_message`]).
fn bad_value(args: &ConnArgs, key: &str, expected: &str) -> DriverError {
    invalid(format!(
        "mysql connection argument `{key}` has an invalid value {}; expected {expected}",
        args.value_for_message(key)
    ))
}

fn invalid(message: String) -> DriverError {
    DriverError::new(DriverErrorKind::InvalidArgs, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pool_driver::leak_check;

    fn parsed(text: &str) -> ConnArgs {
        let mut args = ConnArgs::parse(text).expect("parses");
        normalise(&mut args).expect("normalises");
        args
    }

    fn opts(text: &str) -> Opts {
        plan(&parsed(text), Duration::from_secs(5))
            .expect("plans")
            .first_opts()
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

    /// The TLS arguments in key=value and URL form, under every alias, give one registry key;
    /// different TLS settings give different keys.
    #[test]
    fn tls_arguments_are_part_of_the_key_in_every_spelling() {
        let url = parsed(
            "mysql://app:s3cret@db.example:3307/shop?ssl-mode=verify_identity&ssl-ca=/etc/ca.pem\
             &ssl-cert=/etc/c.pem&ssl-key=/etc/k.pem",
        );
        let key_values = parsed(
            "host=db.example port=3307 user=app password=s3cret dbname=shop \
             ssl_mode=VERIFY-IDENTITY ssl_ca=/etc/ca.pem ssl_cert=/etc/c.pem ssl_key=/etc/k.pem",
        );
        let libpq_style = parsed(
            "host=db.example port=3307 user=app password=s3cret dbname=shop \
             sslmode=verify-full ssl-ca=/etc/ca.pem ssl-cert=/etc/c.pem ssl-key=/etc/k.pem",
        );
        assert_eq!(url.canonical(), key_values.canonical());
        assert_eq!(url.canonical(), libpq_style.canonical());
        assert!(url.canonical().contains("sslmode=VERIFY_IDENTITY"));
        let other_ca = parsed(
            "mysql://app:s3cret@db.example:3307/shop?ssl-mode=VERIFY_IDENTITY&ssl-ca=/etc/other.pem\
             &ssl-cert=/etc/c.pem&ssl-key=/etc/k.pem",
        );
        assert_ne!(url.canonical(), other_ca.canonical());
        let required = parsed("mysql://app:s3cret@db.example:3307/shop?ssl-mode=REQUIRED");
        let default = parsed("mysql://app:s3cret@db.example:3307/shop");
        assert_ne!(required.canonical(), default.canonical());
        let o = opts("mysql://app@db.example/shop?ssl-mode=VERIFY_IDENTITY&ssl-ca=/etc/ca.pem");
        let ssl = o.get_ssl_opts().expect("asks for TLS");
        assert_eq!(
            ssl.root_cert_path(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert!(!ssl.accept_invalid_certs() && !ssl.skip_domain_validation());
        assert!(opts("host=h sslmode=disabled").get_ssl_opts().is_none());
        assert!(
            opts("socket=/run/my.sock").get_ssl_opts().is_none(),
            "no TLS on a unix socket"
        );
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
        let first = |p: &ConnectPlan| p.first_opts();
        let p = plan5("host=h");
        assert_eq!(
            first(&p).get_tcp_connect_timeout(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(first(&p).get_read_timeout(), Some(&Duration::from_secs(5)));
        assert_eq!(p.session, SessionTimeouts::default());
        let p = plan5("host=h connect_timeout=2 read_timeout=30 write_timeout=0.5");
        assert_eq!(
            first(&p).get_tcp_connect_timeout(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(p.session.read, Some(Duration::from_secs(30)));
        assert_eq!(p.session.write, Some(Duration::from_millis(500)));
        // An attempt with TLS splits the bound over the waits of a failed handshake.
        let p = plan5("host=h ssl-mode=REQUIRED");
        let tls = first(&p);
        assert_eq!(tls.get_tcp_connect_timeout(), Some(Duration::from_secs(5)));
        assert_eq!(tls.get_read_timeout(), Some(&(Duration::from_secs(5) / 3)));
        assert_eq!(tls.get_write_timeout(), Some(&(Duration::from_secs(5) / 3)));
        let plain = p.opts(false, Duration::from_secs(2));
        assert_eq!(plain.get_read_timeout(), Some(&Duration::from_secs(2)));
        assert!(plain.get_ssl_opts().is_none());
        let p = plan5("host=h connect_timeout=0");
        assert_eq!(
            first(&p).get_tcp_connect_timeout(),
            Some(Duration::from_secs(5))
        );
        let p = plan(&parsed("host=h"), Duration::ZERO).expect("plans");
        assert_eq!(
            first(&p).get_tcp_connect_timeout(),
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
            "host=h sslmode=maybe password=hunter2",
            "host=h ssl-cert=/c.pem password=hunter2",
            "host=h connect_timeout=soon password=hunter2",
            "host=h stmt_cache_size=-1 password=hunter2",
        ] {
            let mut args = ConnArgs::parse(text).expect("parses");
            let err = normalise(&mut args).expect_err(text);
            assert_eq!(err.kind(), DriverErrorKind::InvalidArgs, "{text}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        for text in [
            "sslmode=DISABLED",
            "ssl-mode=required",
            "ssl_mode=verify_identity ssl-ca=/ca.pem",
        ] {
            assert!(
                ConnArgs::parse(text)
                    .map(|mut a| normalise(&mut a).is_ok())
                    .unwrap_or(false),
                "{text}"
            );
        }
    }

    /// Another driver's error names a mysql key only if the contract's list of every driver's
    /// names has it.
    #[test]
    fn every_name_this_driver_takes_is_in_the_contracts_list() {
        let aliases = ALIASES
            .iter()
            .flat_map(|(alias, canonical)| [alias, canonical]);
        for key in KNOWN_KEYS.iter().chain(aliases) {
            assert!(ConnArgs::ANY_DRIVER_KEYS.contains(key), "{key}");
        }
    }

    #[test]
    fn target_never_shows_credentials() {
        assert_eq!(target(&parsed("mysql://app:pw@h:3307/db")), "h:3307");
        assert_eq!(target(&parsed("socket=/s user=u password=pw")), "/s");
    }

    /// This driver's own names (keys and aliases): a piece of a password that is one of them
    /// is an argument the driver takes, which its messages may name.
    fn own_names() -> Vec<&'static str> {
        let aliases = ALIASES
            .iter()
            .flat_map(|(alias, canonical)| [*alias, *canonical]);
        KNOWN_KEYS.iter().copied().chain(aliases).collect()
    }

    fn normalised(text: &str) -> Result<(), DriverError> {
        normalise(&mut ConnArgs::parse(text)?)
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
                    "user=app pass=correct horse=battery",
                    &["correct", "horse", "battery"],
                ),
                (
                    "host=h password=correct port=battery",
                    &["correct", "battery"],
                ),
                (
                    "host=h password=correct sslmode=battery",
                    &["correct", "battery"],
                ),
                (
                    "host=h password=correct read_timeout=battery",
                    &["correct", "battery"],
                ),
                (
                    "host=h password=correct stmt_cache_size=battery",
                    &["correct", "battery"],
                ),
                (
                    "host=h password=correct options=battery",
                    &["correct", "options", "battery"],
                ),
                (
                    "mysql://app@h/db?password=correct&horse=battery",
                    &["correct", "horse"],
                ),
                (
                    "mysql://app:3306/x?horse=battery@h/db",
                    &["horse", "battery"],
                ),
            ],
            |text| normalised(text).map(drop),
        );
    }

    /// The key is named only when some driver knows it (a hint that helps); otherwise the
    /// message gives its position and says how to quote a value.
    #[test]
    fn an_unknown_key_is_named_only_when_some_driver_knows_it() {
        leak_check::assert_unknown_keys_named_only_when_known(
            |text| normalised(text).map(drop),
            "hostaddr",
        );
    }

    #[test]
    fn no_piece_of_a_generated_password_reaches_an_error() {
        leak_check::assert_no_piece_leaks(
            &own_names(),
            &[
                "host=h password={} user=app",
                "user=app pass={}",
                "mysql://app@h/db?password={}&sslmode=disabled",
                "mysql://app:3306/x?{}@h/db",
            ],
            normalised,
        );
    }
}
