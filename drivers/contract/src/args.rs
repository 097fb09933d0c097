//! Connection arguments: parsing, normalisation (the registry key) and redaction.
//!
//! Two spellings of the same arguments must land in the same pool, and two different users must
//! never share one. So arguments are parsed into a sorted map of lower-case keys, credentials
//! included, and that map's canonical text is the key. The redacted text replaces every secret
//! value with `***`; it is the only form that may appear in errors, `Debug` output and logs.

use std::collections::BTreeMap;
use std::fmt;

use crate::{DriverError, DriverErrorKind};

/// Parsed connection arguments, as a sorted map of lower-case keys to values.
///
/// `Debug` and `Display` print the redacted form; [`ConnArgs::canonical`] is the secret one.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct ConnArgs {
    pairs: BTreeMap<String, String>,
}

/// Keys whose values are secrets. A key is secret if it contains any of these.
const SECRET_KEY_PARTS: &[&str] = &["password", "passwd", "pwd", "pass", "secret", "token"];

impl ConnArgs {
    /// Parses libpq-style `key=value key2='quoted value'` text or a
    /// `scheme://user:password@host:port/dbname?key=value` URL.
    pub fn parse(text: &str) -> Result<Self, DriverError> {
        let text = text.trim();
        match text.find("://") {
            Some(at)
                if text[..at]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+') =>
            {
                parse_url(&text[at + 3..])
            }
            _ => parse_key_values(text),
        }
    }

    /// Builds arguments from pairs (keys are lower-cased).
    pub fn from_pairs<K: AsRef<str>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut args = Self::default();
        for (k, v) in pairs {
            args.set(k.as_ref(), v);
        }
        args
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.get(key).map(String::as_str)
    }

    /// Sets `key` (lower-cased) to `value`, replacing any earlier value.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.pairs.insert(key.to_ascii_lowercase(), value.into());
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.pairs.remove(key)
    }

    /// Renames an alias to its canonical key (for example `database` to `dbname`) so both
    /// spellings share one pool. An explicit canonical key wins over the alias.
    pub fn rename(&mut self, alias: &str, canonical: &str) {
        if let Some(value) = self.pairs.remove(alias) {
            self.pairs.entry(canonical.to_owned()).or_insert(value);
        }
    }

    /// Every pair, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The values of secret keys (passwords), so callers can scrub them from foreign messages.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .filter(|(k, v)| is_secret_key(k) && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// The canonical `key=value` text, sorted by key, credentials included. This is the
    /// registry key: secret. Never log or display it.
    pub fn canonical(&self) -> String {
        self.render(false)
    }

    /// The canonical text with secret values replaced by `***`: safe for errors and logs.
    pub fn redacted(&self) -> String {
        self.render(true)
    }

    /// Replaces every occurrence of a secret value in `message` with `***`.
    pub fn scrub(&self, message: &str) -> String {
        let mut out = message.to_owned();
        for secret in self.secrets() {
            if out.contains(secret) {
                out = out.replace(secret, "***");
            }
        }
        out
    }

    fn render(&self, redact: bool) -> String {
        let mut out = String::new();
        for (k, v) in &self.pairs {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(k);
            out.push('=');
            if redact && is_secret_key(k) {
                out.push_str("***");
            } else {
                push_quoted(&mut out, v);
            }
        }
        out
    }
}

impl fmt::Debug for ConnArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnArgs({})", self.redacted())
    }
}

impl fmt::Display for ConnArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Whether values of `key` must never be shown.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|part| key.contains(part))
}

fn invalid(message: impl Into<String>) -> DriverError {
    DriverError::new(DriverErrorKind::InvalidArgs, message)
}

/// Writes `value`, quoted libpq-style when it is empty or holds spaces, quotes or backslashes.
fn push_quoted(out: &mut String, value: &str) {
    let needs_quotes = value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\' || c == '=');
    if !needs_quotes {
        out.push_str(value);
        return;
    }
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
}

/// Parses `key = value key2='it\'s'` (libpq's connection-string syntax).
fn parse_key_values(text: &str) -> Result<ConnArgs, DriverError> {
    let mut args = ConnArgs::default();
    let mut chars = text.chars().peekable();
    // The last key that was followed by `=`: a malformed word is named by its position after
    // it, never by its text, which may be a fragment of a value (a password with a space).
    let mut previous: Option<String> = None;
    let mut position = 0;
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(args);
        }
        position += 1;
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            let after = match &previous {
                Some(previous) => format!(", right after the value of `{previous}`"),
                None => String::new(),
            };
            return Err(invalid(format!(
                "connection argument {position}{after} is not a `key=value` pair; a value \
                 with spaces must be quoted ('like this'); expected `key=value` pairs or a URL"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(unterminated(&key)),
                    },
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(unterminated(&key)),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        if key.is_empty() {
            return Err(invalid("a connection argument has an empty key"));
        }
        args.set(&key, value);
        previous = Some(key);
    }
}

fn unterminated(key: &str) -> DriverError {
    invalid(format!("the quoted value of `{key}` has no closing quote"))
}

/// Parses the part of a URL after `scheme://`.
fn parse_url(rest: &str) -> Result<ConnArgs, DriverError> {
    let mut args = ConnArgs::default();
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (before_query, None),
    };
    let host_port = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                args.set("user", percent_decode(user)?);
            }
            if let Some(password) = password {
                args.set("password", percent_decode(password)?);
            }
            host_port
        }
        None => authority,
    };
    let (host, port) = split_host_port(host_port);
    if !host.is_empty() {
        args.set("host", percent_decode(host)?);
    }
    if let Some(port) = port {
        if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid("the port in the connection URL is not a number"));
        }
        args.set("port", port);
    }
    if let Some(path) = path.filter(|p| !p.is_empty()) {
        args.set("dbname", percent_decode(path)?);
    }
    for pair in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        args.set(&percent_decode(k)?, percent_decode(v)?);
    }
    Ok(args)
}

/// Splits `host:port`, keeping `[::1]:5432` IPv6 literals whole.
fn split_host_port(text: &str) -> (&str, Option<&str>) {
    if let Some(stripped) = text.strip_prefix('[') {
        if let Some((host, after)) = stripped.split_once(']') {
            return (host, after.strip_prefix(':'));
        }
    }
    match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    }
}

fn percent_decode(text: &str) -> Result<String, DriverError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid("the connection URL has a bad %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| invalid("the connection URL is not valid UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_spacing_do_not_change_the_key() {
        let a = ConnArgs::parse("host=db  user=app password=pw dbname=shop").unwrap();
        let b = ConnArgs::parse(" dbname = shop password=pw user=app host=db ").unwrap();
        assert_eq!(a.canonical(), b.canonical());
        assert_eq!(a.canonical(), "dbname=shop host=db password=pw user=app");
    }

    #[test]
    fn credentials_are_part_of_the_key() {
        let a = ConnArgs::parse("host=db user=app password=one").unwrap();
        let b = ConnArgs::parse("host=db user=app password=two").unwrap();
        assert_ne!(a.canonical(), b.canonical());
    }

    #[test]
    fn url_and_key_values_normalise_alike() {
        let url = ConnArgs::parse("postgres://app:p%40ss@db:5433/shop?sslmode=disable").unwrap();
        let kv =
            ConnArgs::parse("user=app password=p@ss host=db port=5433 dbname=shop sslmode=disable")
                .unwrap();
        assert_eq!(url, kv);
    }

    #[test]
    fn quoted_values_round_trip() {
        let a = ConnArgs::parse(r"password='it\'s a secret' host=/run/pg").unwrap();
        assert_eq!(a.get("password"), Some("it's a secret"));
        let again = ConnArgs::parse(&a.canonical()).unwrap();
        assert_eq!(a, again);
    }

    #[test]
    fn redaction_hides_every_secret() {
        let a = ConnArgs::parse("user=app password=hunter2 sslpassword=x9x9 host=db").unwrap();
        let shown = format!("{a} {a:?} {}", a.redacted());
        assert!(
            !shown.contains("hunter2") && !shown.contains("x9x9"),
            "{shown}"
        );
        assert_eq!(a.scrub("auth failed for hunter2"), "auth failed for ***");
    }

    #[test]
    fn url_with_socket_host_and_ipv6() {
        let a = ConnArgs::parse("postgresql://%2Frun%2Fpg/shop").unwrap();
        assert_eq!(a.get("host"), Some("/run/pg"));
        let b = ConnArgs::parse("mysql://u@[::1]:3307/db").unwrap();
        assert_eq!((b.get("host"), b.get("port")), (Some("::1"), Some("3307")));
    }

    #[test]
    fn a_malformed_argument_is_named_by_position_never_by_its_text() {
        let error = ConnArgs::parse("host=db password=Zebra Stripes-Secret-91 user=app")
            .expect_err("an unquoted space splits the value");
        let message = error.message();
        for fragment in ["Zebra", "Stripes", "Secret", "91"] {
            assert!(!message.contains(fragment), "{message}");
        }
        assert!(message.contains("argument 3"), "{message}");
        assert!(message.contains("`password`"), "{message}");
        let first = ConnArgs::parse("oops").expect_err("no =");
        assert!(!first.message().contains("oops"), "{}", first.message());
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(ConnArgs::parse("host").is_err());
        assert!(ConnArgs::parse("password='open").is_err());
        assert!(ConnArgs::parse("postgres://h:port/db").is_err());
    }

    #[test]
    fn rename_keeps_the_explicit_key() {
        let mut a = ConnArgs::parse("database=x dbname=y").unwrap();
        a.rename("database", "dbname");
        assert_eq!(a.canonical(), "dbname=y");
    }
}
