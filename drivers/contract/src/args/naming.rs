//! How errors may name a key or show a value without giving away a piece of a password.
//!
//! A password with a space, written without quotes, reads as more pairs:
//! `password=correct horse=battery` gives `password=correct` and a key `horse`. An error that
//! said "unknown argument `horse`" would print part of the password, and the error may well end
//! up in a log. Nothing tells such a piece from a real typo, so a message names an unknown key
//! only when both of these hold:
//!
//! * some driver knows the name ([`ConnArgs::ANY_DRIVER_KEYS`]): `sslmode` given to redis is
//!   worth naming, as the user probably meant another driver; a name no driver knows could be
//!   anything, so it is pointed at by position ("argument 3") instead;
//! * it was not written after a secret key. Even a known name there may be a piece of the
//!   password (`password=correct sslmode=battery`).
//!
//! For the same reason a value written after a secret key is never shown (`port=battery` after
//! `password=correct` may be the rest of the password).

use std::fmt;

use super::{invalid, is_secret_key, ConnArgs, Origin, Place};
use crate::DriverError;

/// What to do about a name that is not shown, for `key=value` text.
const QUOTE_HINT: &str = "if a value holds spaces, quote it, like password='two words'";

/// What to do about a name that is not shown, for a URL.
const ENCODE_HINT: &str = "in a URL, percent-encode `&`, `/`, `?`, `#` and `@` inside a \
                           password or value (%26, %2F, %3F, %23, %40)";

impl ConnArgs {
    /// Every argument name (aliases included) that some built-in driver takes. An error may
    /// name an unknown key from this list; any other unknown key may be a piece of a password
    /// and is pointed at by position instead. Each driver's tests check that its own names are
    /// all here.
    pub const ANY_DRIVER_KEYS: &'static [&'static str] = &[
        "application_name",
        "cacert",
        "cert",
        "channel_binding",
        "client_name",
        "clientname",
        "connect_timeout",
        "database",
        "db",
        "dbname",
        "fallback_application_name",
        "host",
        "hostaddr",
        "insecure",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_retries",
        "key",
        "load_balance_hosts",
        "master_name",
        "name",
        "options",
        "pass",
        "password",
        "path",
        "port",
        "read_timeout",
        "sentinel",
        "sentinel_password",
        "sentinel_user",
        "sentinel_username",
        "sentinels",
        "service_name",
        "socket",
        "ssl-ca",
        "ssl-cert",
        "ssl-key",
        "ssl-mode",
        "ssl_ca",
        "ssl_cert",
        "ssl_key",
        "ssl_mode",
        "sslcert",
        "sslkey",
        "sslmode",
        "sslrootcert",
        "stmt_cache_size",
        "target_session_attrs",
        "tcp_user_timeout",
        "tls",
        "unix_socket",
        "user",
        "username",
        "write_timeout",
    ];

    /// Checks that `driver` (its name, for the message) takes every key, `known` being the
    /// keys it takes. The error lists every unknown key in the order written, each by name or
    /// by position as the module documentation explains, says how to quote a value, and
    /// lists `known`. It never holds a value.
    pub fn check_known_keys(&self, driver: &str, known: &[&str]) -> Result<(), DriverError> {
        let mut unknown: Vec<(Option<Origin>, &str)> = self
            .pairs
            .keys()
            .filter(|key| !known.contains(&key.as_str()))
            .map(|key| (self.origins.get(key).copied(), key.as_str()))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        // In the order written; keys set in code (no place) last.
        unknown.sort_by_key(|(origin, _)| (origin.is_none(), origin.map(|o| o.place)));

        let mut items = Vec::new();
        let mut hidden_in_text = false;
        let mut hidden_in_url = false;
        let mut hidden_in_code = 0;
        for (origin, key) in &unknown {
            let nameable = Self::ANY_DRIVER_KEYS.contains(key)
                && !origin.is_some_and(|origin| origin.after_secret);
            match (nameable, origin) {
                (true, Some(origin)) => items.push(format!("`{key}` ({})", origin.place)),
                (true, None) => items.push(format!("`{key}`")),
                (false, Some(origin)) => {
                    match origin.place {
                        Place::Argument(_) => hidden_in_text = true,
                        Place::UrlPart | Place::QueryParameter(_) => hidden_in_url = true,
                    }
                    items.push(origin.place.to_string());
                }
                (false, None) => hidden_in_code += 1,
            }
        }
        match hidden_in_code {
            0 => {}
            1 => items.push("an argument set in code".to_owned()),
            n => items.push(format!("{n} arguments set in code")),
        }

        let many = unknown.len() > 1;
        let mut message = format!(
            "{} {} {driver} connection argument{}",
            join(&items),
            if many {
                "are not known"
            } else {
                "is not a known"
            },
            if many { "s" } else { "" },
        );
        if hidden_in_text || hidden_in_url || hidden_in_code > 0 {
            message.push_str(
                ". A name is shown only when some driver takes it and it comes before any \
                 password, as otherwise it may be a piece of a password with a space in it",
            );
            if hidden_in_text {
                message.push_str("; ");
                message.push_str(QUOTE_HINT);
            }
            if hidden_in_url {
                message.push_str("; ");
                message.push_str(ENCODE_HINT);
            }
        }
        message.push_str(&format!(". {driver} takes: {}", known.join(", ")));
        Err(invalid(message))
    }

    /// The value of `key` as a message may show it: in backticks, or, for a secret or a value
    /// that may be a piece of one (written after a secret key), a note saying why it is not
    /// shown. For errors about a bad value: "`port` has an invalid value {this}".
    pub fn value_for_message(&self, key: &str) -> String {
        let Some(value) = self.get(key) else {
            return "(none)".to_owned();
        };
        if is_secret_key(key) {
            "(not shown: a secret)".to_owned()
        } else if self.origins.get(key).is_some_and(|o| o.after_secret) {
            "(not shown: it comes after a password, so it may be a piece of it; quote a \
             password that holds spaces, like password='two words')"
                .to_owned()
        } else {
            format!("`{value}`")
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Argument(n) => write!(f, "argument {n}"),
            Place::UrlPart => f.write_str("a part of the URL before its query"),
            Place::QueryParameter(n) => write!(f, "query parameter {n} of the URL"),
        }
    }
}

/// `a`, `a and b`, `a, b and c`.
fn join(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
