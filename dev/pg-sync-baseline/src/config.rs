//! Connection arguments → `postgres::Config`.
//!
//! The pool parses arguments once into [`ConnArgs`] (its registry key). This module normalises
//! aliases so that two spellings of the same target share one pool, rejects what this driver
//! cannot honour (unknown keys, TLS), and builds a `postgres::Config` pair by pair.
//!
//! The config is built from the parsed pairs instead of handing a rebuilt connection string to
//! `postgres`: a string holding the password would have to be formatted, and a formatted secret is
//! one careless `{}` away from a log line. No message built here ever contains a value of a
//! secret key, nor a key or value that may be a piece of one: a password with an unquoted space
//! (`password=correct horse=battery`) reads as more pairs, so unknown keys are named only as
//! [`ConnArgs::check_known_keys`] allows, and bad values are shown through
//! [`ConnArgs::value_for_message`].

use std::net::IpAddr;
use std::time::Duration;

use pool_driver::{ConnArgs, DriverError, DriverErrorKind};
use postgres::config::{ChannelBinding, LoadBalanceHosts, SslMode, TargetSessionAttrs};

/// Aliases users write for the keys libpq knows, as `(alias, canonical)`.
const ALIASES: &[(&str, &str)] = &[
    ("database", "dbname"),
    ("db", "dbname"),
    ("username", "user"),
    ("pass", "password"),
    ("fallback_application_name", "application_name"),
];

/// Every key this driver understands (after alias normalisation). These and the aliases must
/// all be in [`ConnArgs::ANY_DRIVER_KEYS`] (a test checks), or another driver's error could not
/// name them.
pub(crate) const SUPPORTED_KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
    "sslmode",
];

/// Renames aliases to their libpq names and checks every key and value, so a bad argument fails
/// when the pool first sees it rather than on every connect.
pub(crate) fn normalise(mut args: ConnArgs) -> Result<ConnArgs, DriverError> {
    for (alias, canonical) in ALIASES {
        args.rename(alias, canonical);
    }
    build(&args, None)?;
    Ok(args)
}

/// See `build`: the bound on unacknowledged TCP data when the user sets none.
const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the `postgres::Config` for `args`. `timeout` (the pool's connect bound) caps the
/// socket connect timeout; a smaller `connect_timeout` argument wins.
pub(crate) fn build(
    args: &ConnArgs,
    timeout: Option<Duration>,
) -> Result<postgres::Config, DriverError> {
    args.check_known_keys("postgres", SUPPORTED_KEYS)?;
    let mut config = postgres::Config::new();
    // NoTls cannot do TLS anyway; `disable` also skips the SSLRequest round trip.
    config.ssl_mode(SslMode::Disable);
    // The server's notices (for example "there is no transaction in progress" from a reset's
    // ROLLBACK) are routine here; the default callback would log each at info level.
    config.notice_callback(|notice| {
        tracing::trace!(
            severity = notice.severity(),
            message = notice.message(),
            "postgres notice"
        );
    });
    // Bound every blocking read/write on a TCP connection whose peer vanished (a blackholed
    // network never answers, and the sync client has no per-query timeout): unacknowledged
    // data for this long breaks the connection, so a reset on release or a `connected` check
    // cannot hang forever. A live server acknowledges at the TCP level even during a long
    // query, so long queries are unaffected. `tcp_user_timeout=` overrides it.
    config.tcp_user_timeout(DEFAULT_TCP_USER_TIMEOUT);
    let mut connect_timeout = timeout;
    for (key, value) in args.iter() {
        match key {
            "host" => {
                for host in value.split(',').filter(|h| !h.is_empty()) {
                    // A host starting with '/' is a unix socket directory.
                    config.host(host);
                }
            }
            "hostaddr" => {
                for addr in value.split(',') {
                    let addr: IpAddr = addr
                        .trim()
                        .parse()
                        .map_err(|_| bad_value(args, key, "IP addresses, comma-separated"))?;
                    config.hostaddr(addr);
                }
            }
            "port" => {
                for port in value.split(',') {
                    let port = port
                        .trim()
                        .parse()
                        .map_err(|_| bad_value(args, key, "port numbers, comma-separated"))?;
                    config.port(port);
                }
            }
            "user" => {
                config.user(value);
            }
            "password" => {
                config.password(value);
            }
            "dbname" => {
                config.dbname(value);
            }
            "options" => {
                config.options(value);
            }
            "application_name" => {
                config.application_name(value);
            }
            "connect_timeout" => {
                if let Some(secs) = seconds(args, key)? {
                    connect_timeout = Some(connect_timeout.map_or(secs, |t| t.min(secs)));
                }
            }
            "tcp_user_timeout" => {
                if let Some(secs) = seconds(args, key)? {
                    config.tcp_user_timeout(secs);
                }
            }
            "keepalives" => {
                config.keepalives(number::<u64>(args, key, "0 or 1")? != 0);
            }
            "keepalives_idle" => {
                if let Some(secs) = seconds(args, key)? {
                    config.keepalives_idle(secs);
                }
            }
            "keepalives_interval" => {
                if let Some(secs) = seconds(args, key)? {
                    config.keepalives_interval(secs);
                }
            }
            "keepalives_retries" => {
                config.keepalives_retries(number(args, key, "a whole number")?);
            }
            "target_session_attrs" => {
                config.target_session_attrs(match value {
                    "any" => TargetSessionAttrs::Any,
                    "read-write" => TargetSessionAttrs::ReadWrite,
                    "read-only" => TargetSessionAttrs::ReadOnly,
                    _ => return Err(bad_value(args, key, "any, read-write or read-only")),
                });
            }
            "channel_binding" => {
                config.channel_binding(match value {
                    "disable" => ChannelBinding::Disable,
                    "prefer" => ChannelBinding::Prefer,
                    "require" => ChannelBinding::Require,
                    _ => return Err(bad_value(args, key, "disable, prefer or require")),
                });
            }
            "load_balance_hosts" => {
                config.load_balance_hosts(match value {
                    "disable" => LoadBalanceHosts::Disable,
                    "random" => LoadBalanceHosts::Random,
                    _ => return Err(bad_value(args, key, "disable or random")),
                });
            }
            "sslmode" => match value {
                "disable" | "allow" | "prefer" => {}
                _ => {
                    return Err(invalid(format!(
                        "postgres connection argument `sslmode` has the value {}, which needs \
                         TLS: the built-in postgres driver does not do TLS (use sslmode=disable \
                         or prefer, or register a driver with TLS)",
                        args.value_for_message(key)
                    )))
                }
            },
            // `check_known_keys` let it through, so it is in SUPPORTED_KEYS (safe to name)
            // but has no arm above.
            _ => {
                return Err(invalid(format!(
                    "postgres connection argument `{key}` is listed as supported but not \
                     handled; this is a bug in pool-postgres, please report it"
                )))
            }
        }
    }
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        return Err(invalid(
            "no host: give host=NAME, an IP address or a unix socket directory such as \
             host=/var/run/postgresql",
        ));
    }
    if let Some(timeout) = connect_timeout {
        config.connect_timeout(timeout);
    }
    Ok(config)
}

fn invalid(message: impl Into<String>) -> DriverError {
    DriverError::new(DriverErrorKind::InvalidArgs, message)
}

/// An error for a malformed value of `key`, saying what was `expected`. The value is shown
/// when that helps and is safe: not when it was written after the password, where it may be a
/// piece of it (see [`ConnArgs::value_for_message`]).
fn bad_value(args: &ConnArgs, key: &str, expected: &str) -> DriverError {
    invalid(format!(
        "postgres connection argument `{key}` has an invalid value {}; expected {expected}",
        args.value_for_message(key)
    ))
}

/// The value of `key` as a number; `expected` describes it for the error.
fn number<T: std::str::FromStr>(
    args: &ConnArgs,
    key: &str,
    expected: &str,
) -> Result<T, DriverError> {
    let value = args.get(key).unwrap_or_default();
    value
        .trim()
        .parse()
        .map_err(|_| bad_value(args, key, expected))
}

/// libpq's whole-second durations, where zero or less means "not set".
fn seconds(args: &ConnArgs, key: &str) -> Result<Option<Duration>, DriverError> {
    let secs: i64 = number(args, key, "a whole number of seconds")?;
    Ok(u64::try_from(secs)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pool_driver::leak_check;
    use postgres::config::Host;

    fn norm(text: &str) -> Result<ConnArgs, DriverError> {
        normalise(ConnArgs::parse(text)?)
    }

    #[test]
    fn key_values_and_urls_map_to_the_same_config() {
        let kv = norm("host=db.local port=6543 user=app password=s3cret dbname=shop").unwrap();
        let url = norm("postgresql://app:s3cret@db.local:6543/shop").unwrap();
        let alias = norm("host=db.local port=6543 username=app pass=s3cret database=shop").unwrap();
        assert_eq!(kv, url);
        assert_eq!(kv, alias);
        let config = build(&kv, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(config.get_hosts(), &[Host::Tcp("db.local".into())]);
        assert_eq!(config.get_ports(), &[6543]);
        assert_eq!(config.get_user(), Some("app"));
        assert_eq!(config.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(config.get_dbname(), Some("shop"));
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(5)));
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn socket_directories_and_host_lists() {
        let config = build(&norm("host=/run/pg,/tmp port=5433").unwrap(), None).unwrap();
        assert_eq!(
            config.get_hosts(),
            &[Host::Unix("/run/pg".into()), Host::Unix("/tmp".into())]
        );
        let url = norm("postgres://%2Frun%2Fpg/shop").unwrap();
        let config = build(&url, None).unwrap();
        assert_eq!(config.get_hosts(), &[Host::Unix("/run/pg".into())]);
        let config = build(&norm("hostaddr=127.0.0.1").unwrap(), None).unwrap();
        assert_eq!(
            config.get_hostaddrs(),
            &["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn the_smaller_timeout_wins() {
        let args = norm("host=h connect_timeout=2").unwrap();
        let short = build(&args, Some(Duration::from_millis(500))).unwrap();
        assert_eq!(
            short.get_connect_timeout(),
            Some(&Duration::from_millis(500))
        );
        let long = build(&args, Some(Duration::from_secs(30))).unwrap();
        assert_eq!(long.get_connect_timeout(), Some(&Duration::from_secs(2)));
        let unset = build(&norm("host=h connect_timeout=0").unwrap(), None).unwrap();
        assert_eq!(unset.get_connect_timeout(), None);
    }

    #[test]
    fn options_pass_through() {
        let args = norm(
            "host=h application_name=web options='-c search_path=app' keepalives=0 \
             target_session_attrs=read-write channel_binding=disable sslmode=prefer",
        )
        .unwrap();
        let config = build(&args, None).unwrap();
        assert_eq!(config.get_application_name(), Some("web"));
        assert_eq!(config.get_options(), Some("-c search_path=app"));
        assert!(!config.get_keepalives());
        assert_eq!(
            config.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
    }

    #[test]
    fn unsupported_arguments_are_rejected_without_leaking_secrets() {
        for bad in [
            "host=h sslmode=require password=hunter2",
            "host=h frobnicate=1 password=hunter2",
            "host=h port=five password=hunter2",
            "host=h target_session_attrs=primary password=hunter2",
            "user=app password=hunter2",
        ] {
            let err = norm(bad).unwrap_err();
            assert_eq!(err.kind(), DriverErrorKind::InvalidArgs, "{bad}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    /// Another driver's error names a postgres key only if the contract's list of every
    /// driver's names has it.
    #[test]
    fn every_name_this_driver_takes_is_in_the_contracts_list() {
        let aliases = ALIASES
            .iter()
            .flat_map(|(alias, canonical)| [alias, canonical]);
        for key in SUPPORTED_KEYS.iter().chain(aliases) {
            assert!(ConnArgs::ANY_DRIVER_KEYS.contains(key), "{key}");
        }
    }

    #[test]
    fn explicit_keys_win_over_aliases() {
        let args = norm("host=h database=a dbname=b").unwrap();
        assert_eq!(args.get("dbname"), Some("b"));
        assert_eq!(args.get("database"), None);
    }

    /// This driver's own names (keys and aliases): a piece of a password that is one of them
    /// is an argument the driver takes, which its messages may name.
    fn own_names() -> Vec<&'static str> {
        let aliases = ALIASES
            .iter()
            .flat_map(|(alias, canonical)| [*alias, *canonical]);
        SUPPORTED_KEYS.iter().copied().chain(aliases).collect()
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
                    &["correct", "battery"],
                ),
                (
                    "host=h password=correct socket=battery",
                    &["correct", "socket", "battery"],
                ),
                (
                    "postgresql://app@h/db?password=correct&horse=battery",
                    &["correct", "horse"],
                ),
                (
                    "postgresql://app:5432/x?horse=battery@h/db",
                    &["horse", "battery"],
                ),
            ],
            |text| norm(text).map(drop),
        );
    }

    /// The key is named only when some driver knows it (a hint that helps); otherwise the
    /// message gives its position and says how to quote a value.
    #[test]
    fn an_unknown_key_is_named_only_when_some_driver_knows_it() {
        leak_check::assert_unknown_keys_named_only_when_known(
            |text| norm(text).map(drop),
            "socket",
        );
    }

    #[test]
    fn no_piece_of_a_generated_password_reaches_an_error() {
        leak_check::assert_no_piece_leaks(
            &own_names(),
            &[
                "host=h password={} user=app",
                "host=h pass={}",
                "postgres://app@h/db?password={}&sslmode=disable",
                "postgres://app:5432/x?{}@h/db",
            ],
            |text| norm(text).map(drop),
        );
    }
}
