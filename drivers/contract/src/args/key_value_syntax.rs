//! libpq's `key=value` connection-string syntax.
//!
//! Pairs are separated by whitespace; spaces around `=` are allowed. A value is either a run of
//! non-space characters or a single-quoted string; in both, a backslash takes the next character
//! literally (so `\'` and `\\` inside quotes, `\ ` outside). An empty value is written `''`.
//! Errors name an argument by its position and the key before it, never by its text: a word
//! that is not a pair may be the tail of a password with an unquoted space.

use super::{invalid, ConnArgs};
use crate::DriverError;

/// Parses `key = value key2='it\'s'` (libpq's connection-string syntax).
pub(super) fn parse(text: &str) -> Result<ConnArgs, DriverError> {
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
