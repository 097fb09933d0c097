//! Connection arguments: aliases, validation, and the plan `connect` follows.
//!
//! Every spelling of the same target must share one pool, so aliases are folded into one key
//! each (`username` → `user`, `pass` → `password`, `dbname`/`database` → `db`, `unix_socket`/
//! `path`/`host=/path` → `socket`, `client_name`/`clientname` → `name`). Unknown keys are
//! rejected at parse time: a typo must not silently connect with defaults.
//!
//! The rejection never shows a key that may be a piece of a password: one with an unquoted
//! space (`password=correct horse=battery`) reads as more pairs, so unknown keys are named only
//! as [`ConnArgs::check_known_keys`] allows. No message here shows a value at all.

use std::path::PathBuf;
use std::time::Duration;

use pool_driver::{ConnArgs, DriverError, DriverErrorKind};
use redis::{ConnectionAddr, ConnectionInfo, ProtocolVersion, RedisConnectionInfo};

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

    /// Whether `shown` gives `piece` of a password away: the piece in backticks or after `=`
    /// (how messages quote keys and values), or, for a piece that is no argument name, the
    /// piece itself, or any run of three of its characters that holds a digit (no fixed text of
    /// a message has a run like `k3y`; runs of letters do: `ect` is in "connection").
    fn gives_away(shown: &str, piece: &str) -> bool {
        let (shown, piece) = (shown.to_ascii_lowercase(), piece.to_ascii_lowercase());
        if shown.contains(&format!("`{piece}`")) || shown.contains(&format!("={piece}")) {
            return true;
        }
        if ConnArgs::ANY_DRIVER_KEYS.contains(&piece.as_str()) || piece.len() < 3 {
            return false;
        }
        let chars: Vec<char> = piece.chars().collect();
        shown.contains(&piece)
            || chars
                .windows(3)
                .filter(|run| run.iter().any(char::is_ascii_digit))
                .any(|run| shown.contains(&run.iter().collect::<String>()))
    }

    /// Words of generated passwords: each run of three characters of the mixed ones holds a
    /// digit; `sslmode`, `db` and `name` are argument names of some driver, `x` a one-letter key.
    const WORDS: &[&str] = &[
        "K3y", "V4l7e", "Pa55", "W0rd9", "x", "sslmode", "db", "name",
    ];
    const SEPARATORS: &[&str] = &[" ", "=", " = ", "='", "\t"];

    /// Every password of two or three [`WORDS`] joined by [`SEPARATORS`].
    fn passwords() -> Vec<String> {
        let mut out = Vec::new();
        for a in WORDS {
            for b in WORDS {
                for s in SEPARATORS {
                    out.push(format!("{a}{s}{b}"));
                    for c in WORDS {
                        for t in SEPARATORS {
                            out.push(format!("{a}{s}{b}{t}{c}"));
                        }
                    }
                }
            }
        }
        out
    }

    /// This driver's own names (keys and aliases): a piece of a password that is one of them
    /// is an argument the driver takes, which its messages may name.
    fn own_names() -> Vec<&'static str> {
        let aliases = ALIASES
            .iter()
            .flat_map(|(alias, canonical)| [*alias, *canonical]);
        KNOWN.iter().copied().chain(aliases).collect()
    }

    /// Runs `parse` on every generated password in each of `templates` (`{}` stands for the
    /// password; in a URL template its spaces become `&`) and fails on the first error that
    /// gives a piece of it away, in the message or the error's `Debug`. Pieces that are this
    /// driver's own names are not checked: they are not unknown keys.
    fn assert_no_piece_leaks(templates: &[&str], parse: impl Fn(&str) -> Result<(), DriverError>) {
        let own = own_names();
        for password in passwords() {
            for template in templates {
                let written = if template.contains("://") {
                    password.replace([' ', '\t'], "&")
                } else {
                    password.clone()
                };
                let text = template.replace("{}", &written);
                let Err(error) = parse(&text) else { continue };
                let shown = format!("{error} {error:?}");
                for piece in password
                    .split(|c: char| c.is_whitespace() || c == '=' || c == '\'' || c == '&')
                    .filter(|p| !p.is_empty() && !own.contains(p))
                {
                    assert!(
                        !gives_away(&shown, piece),
                        "`{piece}` of {text:?} leaked: {shown}"
                    );
                }
            }
        }
    }

    fn parse_args(text: &str) -> Result<(), DriverError> {
        check_scheme(text)?;
        parse(text).map(drop)
    }

    /// Issue 16: an unquoted password with a space (`password=correct horse=battery`) reads as
    /// more pairs; the error must name none of its pieces, whatever they turn into (an unknown
    /// key, a known key of another driver, the value of a key this driver knows).
    #[test]
    fn an_unquoted_password_never_reaches_the_error() {
        for (text, pieces) in [
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
        ] {
            let error = parse_args(text).expect_err(text);
            assert_eq!(error.kind(), DriverErrorKind::InvalidArgs, "{text}");
            let shown = format!("{error} {error:?}");
            for piece in pieces {
                assert!(!gives_away(&shown, piece), "{piece} of {text}: {shown}");
            }
        }
    }

    /// The key is named only when some driver knows it (a hint that helps); otherwise the
    /// message gives its position and says how to quote a value.
    #[test]
    fn an_unknown_key_is_named_only_when_some_driver_knows_it() {
        let error = parse_args("host=h frobnicate=1").expect_err("unknown key");
        let message = error.message();
        assert!(!message.contains("frobnicate"), "{message}");
        assert!(message.contains("argument 2"), "{message}");
        assert!(message.contains("password='"), "{message}");
        let error = parse_args("host=h sslmode=disable").expect_err("a postgres key");
        assert!(error.message().contains("`sslmode`"), "{}", error.message());
    }

    #[test]
    fn no_piece_of_a_generated_password_reaches_an_error() {
        assert_no_piece_leaks(
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
