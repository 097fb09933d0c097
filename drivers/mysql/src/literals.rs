//! Parameters sent as literals in the statement text: the uniform API's statements with
//! parameters run through the text protocol, in one round trip, with nothing prepared on the
//! server.
//!
//! **Why.** A prepared statement lives in the server session, and the full reset on release
//! (`COM_RESET_CONNECTION`) drops it, so with server-side prepares every request paid a
//! `COM_STMT_PREPARE` round trip before its `COM_STMT_EXECUTE` (MariaDB's row by id was 0.76×
//! r2d2, whose sessions are never reset). Keeping the statements would mean trusting the
//! session trackers to say a session is unchanged, which MariaDB 10.11 cannot (`GET_LOCK` is not
//! reported, and nothing a `SELECT` does is readable with the `mysql` crate: see
//! `tests/session_trackers.rs`). MySQL Connector/J does the same by default
//! (`useServerPrepStmts=false`).
//!
//! **Safety.** Values never reach the text as typed: a string is sent as a hex literal with a
//! character set introducer (`_utf8mb4 X'…'`), bytes as a hex literal (`X'…'`), numbers in
//! Rust's own notation. A hex literal holds only `0-9a-f`, whatever the value and whatever the
//! session's `sql_mode` (`NO_BACKSLASH_ESCAPES`, `ANSI_QUOTES`) or character set (the multi-byte
//! sets where a backslash can hide in a character), so no value can end a quote or change the
//! statement. A string literal with an introducer is a string, not bytes: compared with a
//! column it takes the column's collation, as a bound parameter would.
//!
//! **Placeholders.** Every `?` outside quotes (`'…'`, `"…"`, `` `…` ``) and comments (`-- `,
//! `#`, `/* */`) is one parameter, in order, and their number must match exactly: a mismatch is
//! an error naming both counts, never a guess. MariaDB's executable comments (`/*! … */`,
//! `/*M! … */`) are statement text and scanned as such. A backslash escapes the next character
//! inside `'…'` and `"…"` (the server's default); a statement written for `NO_BACKSLASH_ESCAPES`
//! whose string literal ends in a backslash is misread, which can only make the counts differ
//! (an error) or put a value's literal inside that string (wrong data, never a changed
//! statement: the literal holds no quote the statement did not already have).

use std::fmt::Write;

use pool_driver::{DriverError, DriverErrorKind, Value};

/// `sql` with each placeholder replaced by the literal of the next parameter.
pub(crate) fn interpolate(sql: &str, params: &[Value]) -> Result<String, DriverError> {
    let placeholders = placeholders(sql);
    if placeholders.len() != params.len() {
        return Err(DriverError::new(
            DriverErrorKind::Query,
            format!(
                "the statement has {} `?` placeholders but {} parameters were given",
                placeholders.len(),
                params.len()
            ),
        ));
    }
    let mut text = String::with_capacity(sql.len() + params.len() * 16);
    let mut from = 0;
    for (at, param) in placeholders.into_iter().zip(params) {
        text.push_str(&sql[from..at]);
        literal(&mut text, param)?;
        from = at + 1;
    }
    text.push_str(&sql[from..]);
    Ok(text)
}

/// The byte offsets of the `?` placeholders of `sql` (see the module docs).
fn placeholders(sql: &str) -> Vec<usize> {
    let bytes = sql.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'?' => {
                found.push(i);
                i += 1;
            }
            quote @ (b'\'' | b'"' | b'`') => i = after_quoted(bytes, i, quote),
            b'#' => i = after_line(bytes, i),
            b'-' if bytes.get(i + 1) == Some(&b'-')
                && bytes
                    .get(i + 2)
                    .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control()) =>
            {
                i = after_line(bytes, i);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let executable = matches!(bytes.get(i + 2), Some(b'!'))
                    || bytes.get(i + 2..i + 4) == Some(b"M!");
                i = if executable {
                    i + 2
                } else {
                    after_comment(bytes, i + 2)
                };
            }
            _ => i += 1,
        }
    }
    found
}

/// The offset just past the quoted part that opens at `start` with `quote`: a doubled quote
/// stands for itself; in strings (not `` ` `` identifiers) a backslash escapes the next byte.
fn after_quoted(bytes: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote != b'`' => i += 2,
            c if c == quote => {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The offset of the end of the line that `start` is on.
fn after_line(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(bytes.len(), |n| start + n + 1)
}

/// The offset just past the `*/` that closes a comment whose body starts at `start`.
fn after_comment(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .windows(2)
        .position(|w| w == b"*/")
        .map_or(bytes.len(), |n| start + n + 2)
}

/// Appends the literal of `value`.
fn literal(text: &mut String, value: &Value) -> Result<(), DriverError> {
    match value {
        Value::Null => text.push_str("NULL"),
        Value::Bool(true) => text.push_str("TRUE"),
        Value::Bool(false) => text.push_str("FALSE"),
        Value::Int(i) => {
            let _ = write!(text, "{i}");
        }
        Value::Float(f) if f.is_finite() => {
            // `{:?}` keeps a decimal point or an exponent (`1.0`, `1e300`): a DOUBLE literal.
            let _ = write!(text, "{f:?}");
        }
        Value::Float(f) => {
            return Err(DriverError::new(
                DriverErrorKind::Query,
                format!("MariaDB has no value for the float {f}; send NULL or a finite number"),
            ))
        }
        Value::Text(s) => {
            text.push_str("_utf8mb4 X'");
            hex(text, s.as_bytes());
            text.push('\'');
        }
        Value::Bytes(b) => {
            text.push_str("X'");
            hex(text, b);
            text.push('\'');
        }
    }
    Ok(())
}

fn hex(text: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    text.reserve(bytes.len() * 2);
    for &b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(sql: &str) -> Vec<usize> {
        placeholders(sql)
    }

    #[test]
    fn placeholders_outside_quotes_and_comments() {
        assert_eq!(at("SELECT ? + ?"), vec![7, 11]);
        assert_eq!(at("SELECT '?', \"?\", `?`, ?"), vec![22]);
        assert_eq!(at("SELECT 'it''s ?', ?"), vec![18]);
        assert_eq!(at(r"SELECT 'a\'?', ?"), vec![15]);
        assert_eq!(at("SELECT `a``?`, ?"), vec![15]);
        assert_eq!(at("SELECT ? -- ?\n, ?"), vec![7, 16]);
        assert_eq!(at("SELECT ? # ?\n, ?"), vec![7, 15]);
        assert_eq!(
            at("SELECT ?--?"),
            vec![7, 10],
            "`--` needs a space to start a comment"
        );
        assert_eq!(at("SELECT ? /* ? */ , ?"), vec![7, 19]);
        assert_eq!(
            at("SELECT /*! ? */ 1"),
            vec![11],
            "executable comments are statement text"
        );
        assert_eq!(at("SELECT /*M!100000 ? */ 1"), vec![18]);
        assert_eq!(at("SELECT 'unterminated ?"), Vec::<usize>::new());
        assert_eq!(at("SELECT /* unterminated ?"), Vec::<usize>::new());
    }

    #[test]
    fn values_become_literals_that_hold_no_quote() {
        let text = interpolate(
            "SELECT ?, ?, ?, ?, ?, ?, ?",
            &[
                Value::Null,
                Value::Bool(true),
                Value::Int(-42),
                Value::Float(1.5e300),
                Value::Text("it's \\ \"x\" é".into()),
                Value::Bytes(vec![0, 0x27, 0xff]),
                Value::Text(String::new()),
            ],
        )
        .expect("interpolates");
        assert_eq!(
            text,
            "SELECT NULL, TRUE, -42, 1.5e300, _utf8mb4 X'69742773205c2022782220c3a9', \
             X'0027ff', _utf8mb4 X''"
        );
    }

    #[test]
    fn counts_must_match_and_floats_must_be_finite() {
        let err = interpolate("SELECT ?", &[]).expect_err("too few");
        assert!(err.message().contains("1 `?` placeholders but 0"), "{err}");
        let err = interpolate("SELECT 1", &[Value::Int(1)]).expect_err("too many");
        assert!(err.message().contains("0 `?` placeholders but 1"), "{err}");
        assert!(interpolate("SELECT ?", &[Value::Float(f64::NAN)]).is_err());
    }
}
