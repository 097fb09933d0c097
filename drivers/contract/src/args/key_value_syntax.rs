//! libpq's `key=value` connection-string syntax.
//!
//! Pairs are separated by whitespace; spaces around `=` are allowed. A value is either a run of
//! non-space characters or a single-quoted string; in both, a backslash takes the next character
//! literally (so `\'` and `\\` inside quotes, `\ ` outside). An empty value is written `''`.
//! Errors name an argument by its position and the key before it, never by its text: a word
//! that is not a pair may be the tail of a password with an unquoted space. For the same reason
//! a key written after a secret key (`password=correct horse=battery`) is never named, here or
//! later by a driver: each key remembers its position and whether a secret key came before it.

use super::{invalid, is_secret_key, ConnArgs, Origin, Place};
use crate::DriverError;

/// Parses `key = value key2='it\'s'` (libpq's connection-string syntax).
pub(super) fn parse(text: &str) -> Result<ConnArgs, DriverError> {
    let mut args = ConnArgs::default();
    let mut chars = text.chars().peekable();
    // The last key that was followed by `=`: a malformed word is named by its position after
    // it, never by its text, which may be a fragment of a value (a password with a space).
    let mut previous: Option<String> = None;
    // The first secret key: every key after it may be a piece of its value, so it is never
    // named (a message says "after the value of `password`" instead).
    let mut secret: Option<String> = None;
    let mut position = 0;
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(args);
        }
        position += 1;
        let after_secret = secret.is_some();
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            let after = match (&previous, &secret) {
                (Some(previous), Some(secret)) if previous != secret => {
                    format!(", after the value of `{secret}`,")
                }
                (Some(previous), _) => format!(", right after the value of `{previous}`,"),
                (None, _) => String::new(),
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
                        None => return Err(unterminated(&key, position, after_secret)),
                    },
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(unterminated(&key, position, after_secret)),
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
            return Err(invalid(format!(
                "connection argument {position} has no key before its `=`; expected \
                 `key=value` pairs"
            )));
        }
        let origin = Origin {
            place: Place::Argument(position),
            after_secret,
        };
        args.set_parsed(&key, value, origin);
        if secret.is_none() && is_secret_key(&key) {
            secret = Some(key.clone());
        }
        previous = Some(key);
    }
}

/// The error for a quote that is never closed: names the key, unless it was written after a
/// secret key (it may be a piece of the secret, as in `password=a b='c`).
fn unterminated(key: &str, position: usize, after_secret: bool) -> DriverError {
    let which = if after_secret {
        format!("connection argument {position}")
    } else {
        format!("`{key}`")
    };
    invalid(format!(
        "the quoted value of {which} has no closing quote; end it with ' (write a quote \
         inside it as \\')"
    ))
}
