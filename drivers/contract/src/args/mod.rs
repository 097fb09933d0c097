//! Connection arguments: parsing, normalisation (the registry key) and redaction.
//!
//! Two spellings of the same arguments must land in the same pool, and two different users must
//! never share one. So arguments are parsed into a sorted map of lower-case keys, credentials
//! included, and that map's canonical text is the key. The redacted text replaces every secret
//! value with `***`; it is the only form that may appear in errors, `Debug` output and logs.
//!
//! Each parsed key also remembers where it was written ([`Origin`]), so that an error about it
//! can say "argument 3" instead of quoting text that may be a piece of a password: see
//! `naming.rs`.

mod key_value_syntax;
mod naming;
mod url_syntax;

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};

use crate::{DriverError, DriverErrorKind};

/// Parsed connection arguments, as a sorted map of lower-case keys to values.
///
/// `Debug` and `Display` print the redacted form; [`ConnArgs::canonical`] is the secret one.
///
/// Equality and hashing look at the pairs only: two spellings of the same arguments are the
/// same registry key, wherever each key was written.
#[derive(Clone, Default)]
pub struct ConnArgs {
    pairs: BTreeMap<String, String>,
    /// Where each parsed key was written; keys set in code have no entry. Only errors use it.
    origins: BTreeMap<String, Origin>,
}

/// Where a parsed key was written, so an error can point at it without quoting it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Origin {
    place: Place,
    /// Written after a secret key (`password=`) in the same text. An unquoted password with a
    /// space reads as more pairs (`password=correct horse=battery` gives a key `horse`), and
    /// nothing tells such a piece from a real argument; so neither the key nor its value may
    /// be shown. In a URL: after a secret query parameter (an unencoded `&` in it starts a new
    /// parameter), or anywhere in a query that the user info seems to have spilled into.
    after_secret: bool,
}

/// The place of a key in the text it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Place {
    /// The n-th pair (from 1) of libpq-style `key=value` text.
    Argument(usize),
    /// The user name, password, host, port or database of a URL.
    UrlPart,
    /// The n-th parameter (from 1) of a URL's query.
    QueryParameter(usize),
}

/// Keys whose values are secrets. A key is secret if it contains any of these.
const SECRET_KEY_PARTS: &[&str] = &["password", "passwd", "pwd", "pass", "secret", "token"];

impl ConnArgs {
    /// Parses libpq-style `key=value key2='quoted value'` text or a
    /// `scheme://user:password@host:port/dbname?key=value` URL (percent-encoded user names
    /// and passwords, `[::1]` IPv6 hosts, a percent-encoded socket directory as the host).
    ///
    /// Both spellings of the same arguments give the same [`ConnArgs`], so the same pool. An
    /// error never quotes the input: it may hold a password.
    pub fn parse(text: &str) -> Result<Self, DriverError> {
        // Not trimmed at the end before the key=value parser: `host=/a\ ` ends in an escaped
        // space, which that parser reads (and skips unescaped trailing space itself).
        let text = text.trim_start();
        match text.find("://") {
            Some(at)
                if at > 0
                    && text[..at]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
            {
                url_syntax::parse(text.trim_end())
            }
            _ => key_value_syntax::parse(text),
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

    /// Sets `key` (lower-cased) to `value`, replacing any earlier value. The key counts as set
    /// in code: it has no place in a text, so errors cannot point at one.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        let key = key.to_ascii_lowercase();
        self.origins.remove(&key);
        self.pairs.insert(key, value.into());
    }

    /// Sets `key` as the parsers do: lower-cased, remembering where it was written.
    fn set_parsed(&mut self, key: &str, value: impl Into<String>, origin: Origin) {
        let key = key.to_ascii_lowercase();
        self.origins.insert(key.clone(), origin);
        self.pairs.insert(key, value.into());
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.origins.remove(key);
        self.pairs.remove(key)
    }

    /// Renames an alias to its canonical key (for example `database` to `dbname`) so both
    /// spellings share one pool. An explicit canonical key wins over the alias. The renamed
    /// key keeps the place where the alias was written.
    pub fn rename(&mut self, alias: &str, canonical: &str) {
        let origin = self.origins.remove(alias);
        if let Some(value) = self.pairs.remove(alias) {
            if !self.pairs.contains_key(canonical) {
                self.pairs.insert(canonical.to_owned(), value);
                if let Some(origin) = origin {
                    self.origins.insert(canonical.to_owned(), origin);
                }
            }
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

impl PartialEq for ConnArgs {
    fn eq(&self, other: &Self) -> bool {
        self.pairs == other.pairs
    }
}

impl Eq for ConnArgs {}

impl Hash for ConnArgs {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.pairs.hash(state);
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

pub(crate) fn invalid(message: impl Into<String>) -> DriverError {
    DriverError::new(DriverErrorKind::InvalidArgs, message)
}

/// Writes `value`, quoted libpq-style when it is empty or holds spaces, quotes or backslashes.
pub(crate) fn push_quoted(out: &mut String, value: &str) {
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

#[cfg(test)]
mod tests;
