//! Connection arguments → `postgres::Config`.
//!
//! The pool parses arguments once into [`ConnArgs`] (its registry key). This module normalises
//! aliases so that two spellings of the same target share one pool, rejects what this driver
//! cannot honour (unknown keys, TLS), and builds a `postgres::Config` pair by pair.
//!
//! The config is built from the parsed pairs instead of handing a rebuilt connection string to
//! `postgres`: a string holding the password would have to be formatted, and a formatted secret is
//! one careless `{}` away from a log line. No message built here ever contains a value of a
//! secret key.

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

/// Every key this driver understands (after alias normalisation).
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
                    let addr: IpAddr = addr.trim().parse().map_err(|_| bad_value(key, value))?;
                    config.hostaddr(addr);
                }
            }
            "port" => {
                for port in value.split(',') {
                    config.port(port.trim().parse().map_err(|_| bad_value(key, value))?);
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
                if let Some(secs) = seconds(key, value)? {
                    connect_timeout = Some(connect_timeout.map_or(secs, |t| t.min(secs)));
                }
            }
            "tcp_user_timeout" => {
                if let Some(secs) = seconds(key, value)? {
                    config.tcp_user_timeout(secs);
                }
            }
            "keepalives" => {
                config.keepalives(number::<u64>(key, value)? != 0);
            }
            "keepalives_idle" => {
                if let Some(secs) = seconds(key, value)? {
                    config.keepalives_idle(secs);
                }
            }
            "keepalives_interval" => {
                if let Some(secs) = seconds(key, value)? {
                    config.keepalives_interval(secs);
                }
            }
            "keepalives_retries" => {
                config.keepalives_retries(number(key, value)?);
            }
            "target_session_attrs" => {
                config.target_session_attrs(match value {
                    "any" => TargetSessionAttrs::Any,
                    "read-write" => TargetSessionAttrs::ReadWrite,
                    "read-only" => TargetSessionAttrs::ReadOnly,
                    _ => return Err(bad_value(key, value)),
                });
            }
            "channel_binding" => {
                config.channel_binding(match value {
                    "disable" => ChannelBinding::Disable,
                    "prefer" => ChannelBinding::Prefer,
                    "require" => ChannelBinding::Require,
                    _ => return Err(bad_value(key, value)),
                });
            }
            "load_balance_hosts" => {
                config.load_balance_hosts(match value {
                    "disable" => LoadBalanceHosts::Disable,
                    "random" => LoadBalanceHosts::Random,
                    _ => return Err(bad_value(key, value)),
                });
            }
            "sslmode" => match value {
                "disable" | "allow" | "prefer" => {}
                _ => {
                    return Err(invalid(format!(
                        "sslmode={value} needs TLS, which the built-in postgres driver does not \
                         do; use sslmode=disable (or prefer), or register a driver with TLS"
                    )))
                }
            },
            _ => {
                return Err(invalid(format!(
                    "unknown postgres connection argument `{key}`; supported: {}",
                    SUPPORTED_KEYS.join(", ")
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

/// An error for a malformed value. Only called for non-secret keys, so showing the value helps.
fn bad_value(key: &str, value: &str) -> DriverError {
    invalid(format!(
        "invalid value `{value}` for postgres connection argument `{key}`"
    ))
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, DriverError> {
    value.trim().parse().map_err(|_| bad_value(key, value))
}

/// libpq's whole-second durations, where zero or less means "not set".
fn seconds(key: &str, value: &str) -> Result<Option<Duration>, DriverError> {
    let secs: i64 = number(key, value)?;
    Ok(u64::try_from(secs)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs))
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn explicit_keys_win_over_aliases() {
        let args = norm("host=h database=a dbname=b").unwrap();
        assert_eq!(args.get("dbname"), Some("b"));
        assert_eq!(args.get("database"), None);
    }
}
