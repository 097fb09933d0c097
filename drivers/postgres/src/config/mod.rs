//! Connection arguments → a [`Plan`]: what one connect does, host by host.
//!
//! The pool parses arguments once into [`ConnArgs`] (its registry key). This module normalises
//! aliases so that two spellings of the same target share one pool, rejects what this driver
//! cannot honour (unknown keys, malformed values, TLS settings that contradict each other), and
//! builds the plan a connect follows: a `tokio_postgres::Config` without hosts (user, password,
//! database, options, keepalives, `channel_binding`), the list of hosts
//! in libpq's order, libpq's per-host `connect_timeout`, and the TLS settings (see
//! [`crate::tls`]).
//!
//! The driver walks the host list itself instead of handing it to `tokio-postgres`, because
//! libpq bounds each host's attempt (socket, TLS, startup, authentication) by `connect_timeout`
//! and then moves on to the next host, while `tokio_postgres::Config::connect` bounds only the
//! socket connect: a first host that accepts and then stays silent would use up the whole
//! deadline and the second host would never be tried (see `connect/hosts.rs`).
//!
//! The config is built from the parsed pairs instead of handing a rebuilt connection string to
//! `tokio-postgres`: a string holding the password would have to be formatted, and a formatted
//! secret is one careless `{}` away from a log line. No message built here ever contains a value
//! of a secret key, nor a key or value that may be a piece of one: a password with an unquoted
//! space (`password=correct horse=battery`) reads as more pairs, so unknown keys are named only
//! as [`ConnArgs::check_known_keys`] allows, and bad values are shown through
//! [`ConnArgs::value_for_message`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use pool_driver::{ConnArgs, DriverError, DriverErrorKind};
use tokio_postgres::config::ChannelBinding;

use crate::role::SessionAttrs;
use crate::tls::TlsArgs;

#[cfg(test)]
mod tests;

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
    "sslrootcert",
    "sslcert",
    "sslkey",
];

/// libpq's default port.
const DEFAULT_PORT: u16 = 5432;

/// See `plan`: the bound on unacknowledged TCP data when the user sets none.
const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// Renames aliases to their libpq names and checks every key and value, so a bad argument fails
/// when the pool first sees it rather than on every connect.
pub(crate) fn normalise(mut args: ConnArgs) -> Result<ConnArgs, DriverError> {
    for (alias, canonical) in ALIASES {
        args.rename(alias, canonical);
    }
    plan(&args)?;
    Ok(args)
}

/// What one connect does. Built from the arguments on every connect (it is cheap: no file is
/// read here; certificates are read when the TLS settings are turned into a connector).
#[derive(Debug)]
pub(crate) struct Plan {
    /// Everything but the hosts and the TLS mode, which each attempt sets on a clone.
    pub(crate) base: tokio_postgres::Config,
    /// The hosts in the order written (`load_balance_hosts=random` shuffles them per connect).
    pub(crate) targets: Vec<Target>,
    /// libpq's `connect_timeout`: the bound of each host's whole attempt, if set.
    pub(crate) per_host: Option<Duration>,
    /// `load_balance_hosts=random`.
    pub(crate) random_order: bool,
    /// `target_session_attrs`, which the driver checks itself (see [`crate::role`]).
    pub(crate) attrs: SessionAttrs,
    /// `sslmode`, `sslrootcert`, `sslcert`, `sslkey`.
    pub(crate) tls: TlsArgs,
}

/// One host of the list: where to connect, and the name to verify the certificate against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// `host=` (a name, an IP address, or a unix socket directory), or `hostaddr` alone.
    pub(crate) host: Host,
    /// `hostaddr=`: the address to connect to, skipping the name lookup; the name in `host`
    /// is still the one TLS verifies.
    pub(crate) hostaddr: Option<IpAddr>,
    pub(crate) port: u16,
}

/// Where a host lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Host {
    /// A host name or IP address (written as text; also a `hostaddr` given alone).
    Tcp(String),
    /// A unix socket directory (a host starting with `/`). libpq never uses TLS here.
    Unix(PathBuf),
}

impl Target {
    /// `host:port` (or `/dir (port N)`) for messages: never a secret.
    pub(crate) fn label(&self) -> String {
        match &self.host {
            Host::Tcp(name) if name.contains(':') => format!("[{name}]:{}", self.port),
            Host::Tcp(name) => format!("{name}:{}", self.port),
            Host::Unix(dir) => format!("{} (port {})", dir.display(), self.port),
        }
    }

    /// The name the server's certificate must match (`verify-full`).
    pub(crate) fn tls_name(&self) -> String {
        match &self.host {
            Host::Tcp(name) => name.clone(),
            Host::Unix(dir) => dir.display().to_string(),
        }
    }

    /// Where a cancel request for a session on this host goes (`hostaddr` when given).
    pub(crate) fn cancel_address(&self) -> crate::client::CancelAddress {
        match &self.host {
            Host::Tcp(name) => crate::client::CancelAddress::Tcp {
                host: self
                    .hostaddr
                    .map_or_else(|| name.clone(), |a| a.to_string()),
                port: self.port,
                tls_name: name.clone(),
            },
            Host::Unix(dir) => {
                crate::client::CancelAddress::Unix(dir.join(format!(".s.PGSQL.{}", self.port)))
            }
        }
    }

    pub(crate) fn is_unix(&self) -> bool {
        matches!(self.host, Host::Unix(_))
    }

    /// The config of one attempt at this host: `base` with this host, address and port.
    pub(crate) fn config(
        &self,
        base: &tokio_postgres::Config,
        mode: tokio_postgres::config::SslMode,
    ) -> tokio_postgres::Config {
        let mut config = base.clone();
        match &self.host {
            Host::Tcp(name) => config.host(name),
            Host::Unix(dir) => config.host_path(dir),
        };
        if let Some(addr) = self.hostaddr {
            config.hostaddr(addr);
        }
        config.port(self.port).ssl_mode(mode);
        config
    }
}

/// Builds the [`Plan`] for `args`.
pub(crate) fn plan(args: &ConnArgs) -> Result<Plan, DriverError> {
    args.check_known_keys("postgres", SUPPORTED_KEYS)?;
    let mut base = tokio_postgres::Config::new();
    // Bound every read/write on a TCP connection whose peer vanished (a blackholed network
    // never answers): unacknowledged data for this long breaks the connection, so a reset on
    // release cannot hang forever. A live server acknowledges at the TCP level even during a
    // long query, so long queries are unaffected. `tcp_user_timeout=` overrides it.
    base.tcp_user_timeout(DEFAULT_TCP_USER_TIMEOUT);
    let mut per_host = None;
    let mut random_order = false;
    let mut attrs = SessionAttrs::Any;
    let (mut hosts, mut hostaddrs, mut ports) = (Vec::new(), Vec::new(), Vec::new());
    for (key, value) in args.iter() {
        match key {
            "host" => {
                let entries: Vec<&str> = value.split(',').collect();
                if entries.len() > 1 && entries.iter().any(|h| h.is_empty()) {
                    // Dropping it would pair the later hosts with the wrong ports.
                    return Err(bad_value(
                        args,
                        key,
                        "host names, addresses or socket directories, comma-separated, none \
                         empty",
                    ));
                }
                hosts = entries
                    .into_iter()
                    .filter(|h| !h.is_empty())
                    .map(|h| match h.starts_with('/') {
                        true => Host::Unix(PathBuf::from(h)),
                        false => Host::Tcp(h.to_owned()),
                    })
                    .collect();
            }
            "hostaddr" => {
                for addr in value.split(',') {
                    let addr: IpAddr = addr
                        .trim()
                        .parse()
                        .map_err(|_| bad_value(args, key, "IP addresses, comma-separated"))?;
                    hostaddrs.push(addr);
                }
            }
            "port" => {
                for port in value.split(',').map(str::trim) {
                    // An empty entry is the default port, as in libpq (`port=,5433`; a URL
                    // host list with a port on some hosts only reads so).
                    let port: u16 = match port.is_empty() {
                        true => DEFAULT_PORT,
                        false => port
                            .parse()
                            .map_err(|_| bad_value(args, key, "port numbers, comma-separated"))?,
                    };
                    ports.push(port);
                }
            }
            "user" => {
                base.user(value);
            }
            "password" => {
                base.password(value);
            }
            "dbname" => {
                base.dbname(value);
            }
            "options" => {
                base.options(value);
            }
            "application_name" => {
                base.application_name(value);
            }
            "connect_timeout" => per_host = seconds(args, key)?,
            "tcp_user_timeout" => {
                if let Some(secs) = seconds(args, key)? {
                    base.tcp_user_timeout(secs);
                }
            }
            "keepalives" => {
                base.keepalives(number::<u64>(args, key, "0 or 1")? != 0);
            }
            "keepalives_idle" => {
                if let Some(secs) = seconds(args, key)? {
                    base.keepalives_idle(secs);
                }
            }
            "keepalives_interval" => {
                if let Some(secs) = seconds(args, key)? {
                    base.keepalives_interval(secs);
                }
            }
            "keepalives_retries" => {
                base.keepalives_retries(number(args, key, "a whole number")?);
            }
            "target_session_attrs" => {
                attrs = SessionAttrs::parse(value)
                    .ok_or_else(|| bad_value(args, key, SessionAttrs::SPELLINGS))?;
            }
            "channel_binding" => {
                base.channel_binding(match value {
                    "disable" => ChannelBinding::Disable,
                    "prefer" => ChannelBinding::Prefer,
                    "require" => ChannelBinding::Require,
                    _ => return Err(bad_value(args, key, "disable, prefer or require")),
                });
            }
            "load_balance_hosts" => {
                random_order = match value {
                    "disable" => false,
                    "random" => true,
                    _ => return Err(bad_value(args, key, "disable or random")),
                };
            }
            // Read by `TlsArgs::parse` below.
            "sslmode" | "sslrootcert" | "sslcert" | "sslkey" => {}
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
    let tls = TlsArgs::parse(args)?;
    if tls.mode == crate::tls::SslMode::Disable
        && base.get_channel_binding() == ChannelBinding::Require
    {
        return Err(invalid(
            "postgres connection arguments: channel_binding=require needs TLS (channel binding \
             ties the SCRAM login to the TLS session), but sslmode=disable turns TLS off; \
             use sslmode=require or stronger",
        ));
    }
    let targets = targets(hosts, hostaddrs, ports)?;
    Ok(Plan {
        base,
        targets,
        per_host,
        random_order,
        attrs,
        tls,
    })
}

/// Pairs hosts, addresses and ports as libpq does: `host` and `hostaddr` lists of the same
/// length (or one of them alone), and one port for all or one per host.
fn targets(
    hosts: Vec<Host>,
    hostaddrs: Vec<IpAddr>,
    ports: Vec<u16>,
) -> Result<Vec<Target>, DriverError> {
    if hosts.is_empty() && hostaddrs.is_empty() {
        return Err(invalid(
            "no host: give host=NAME, an IP address or a unix socket directory such as \
             host=/var/run/postgresql",
        ));
    }
    if !hosts.is_empty() && !hostaddrs.is_empty() && hosts.len() != hostaddrs.len() {
        return Err(invalid(format!(
            "postgres connection arguments: {} hosts but {} hostaddrs; give one address per \
             host, or leave out hostaddr",
            hosts.len(),
            hostaddrs.len()
        )));
    }
    let count = hosts.len().max(hostaddrs.len());
    if ports.len() > 1 && ports.len() != count {
        return Err(invalid(format!(
            "postgres connection arguments: {} ports for {count} hosts; give one port for all \
             hosts or one per host",
            ports.len()
        )));
    }
    Ok((0..count)
        .map(|i| {
            let hostaddr = hostaddrs.get(i).copied();
            Target {
                // A `hostaddr` alone: its text is the name TLS verifies (an IP address SAN).
                host: hosts.get(i).cloned().unwrap_or_else(|| {
                    Host::Tcp(hostaddr.map(|a| a.to_string()).unwrap_or_default())
                }),
                hostaddr,
                port: ports
                    .get(i)
                    .or(ports.first())
                    .copied()
                    .unwrap_or(DEFAULT_PORT),
            }
        })
        .collect())
}

pub(crate) fn invalid(message: impl Into<String>) -> DriverError {
    DriverError::new(DriverErrorKind::InvalidArgs, message)
}

/// An error for a malformed value of `key`, saying what was `expected`. The value is shown
/// when that helps and is safe: not when it was written after the password, where it may be a
/// piece of it (see [`ConnArgs::value_for_message`]).
pub(crate) fn bad_value(args: &ConnArgs, key: &str, expected: &str) -> DriverError {
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
