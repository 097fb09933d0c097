//! The uniform surface's conversions: `Value` parameters → command arguments, replies →
//! `Rows` (one column `value`) or a count.

use pool_driver::{DriverError, DriverErrorKind, Rows, Value};
use redis::Value as Reply;

/// Builds the command: the words of `sql` (split on whitespace: `"CLIENT SETNAME"` is the
/// command and its first argument), then every parameter as one argument.
pub(crate) fn command(sql: &str, params: &[Value]) -> Result<redis::Cmd, DriverError> {
    let mut words = sql.split_whitespace();
    let Some(name) = words.next() else {
        return Err(DriverError::new(
            DriverErrorKind::Query,
            "empty redis command: `sql` must name the command (for example \"GET\")",
        ));
    };
    let mut cmd = redis::cmd(name);
    for word in words {
        cmd.arg(word);
    }
    for param in params {
        match param {
            Value::Null => {
                return Err(DriverError::new(
                    DriverErrorKind::Query,
                    "redis has no NULL argument; pass Value::Text(\"\") for an empty string",
                ))
            }
            Value::Bool(b) => cmd.arg(if *b { "1" } else { "0" }),
            Value::Int(i) => cmd.arg(*i),
            Value::Float(f) => cmd.arg(*f),
            Value::Text(s) => cmd.arg(s.as_str()),
            Value::Bytes(b) => cmd.arg(b.as_slice()),
        };
    }
    Ok(cmd)
}

/// One column `value`: one row per element of an aggregate reply (a map's keys and values
/// alternate, as RESP2 sends them), one row for anything else. Nil is `Null`.
pub(crate) fn rows(reply: Reply) -> Rows {
    let cells = match reply {
        Reply::Array(items) | Reply::Set(items) | Reply::Push { data: items, .. } => {
            items.into_iter().map(cell).collect()
        }
        Reply::Map(pairs) => pairs
            .into_iter()
            .flat_map(|(k, v)| [cell(k), cell(v)])
            .collect(),
        Reply::Attribute { data, .. } => return rows(*data),
        other => vec![cell(other)],
    };
    Rows::new(
        vec!["value".to_owned()],
        cells.into_iter().map(|c| vec![c]).collect(),
    )
}

/// `execute`'s count: a non-negative integer reply as is (a negative one as 0), `OK` and other
/// status replies 1, nil 0, a boolean 0/1, an aggregate its length.
pub(crate) fn count(reply: &Reply) -> u64 {
    match reply {
        Reply::Int(i) => u64::try_from(*i).unwrap_or(0),
        Reply::Nil => 0,
        Reply::Boolean(b) => u64::from(*b),
        Reply::Array(items) | Reply::Set(items) => items.len() as u64,
        Reply::Map(pairs) => pairs.len() as u64,
        Reply::Attribute { data, .. } => count(data),
        _ => 1,
    }
}

/// One reply as one cell. Nested aggregates become their text, `[a, b]`: the native client is
/// the way to walk structured replies.
fn cell(reply: Reply) -> Value {
    match reply {
        Reply::Nil => Value::Null,
        Reply::Int(i) => Value::Int(i),
        Reply::Double(f) => Value::Float(f),
        Reply::Boolean(b) => Value::Bool(b),
        Reply::Okay => Value::Text("OK".to_owned()),
        Reply::SimpleString(s) => Value::Text(s),
        Reply::BulkString(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Value::Text(text),
            Err(e) => Value::Bytes(e.into_bytes()),
        },
        Reply::VerbatimString { text, .. } => Value::Text(text),
        Reply::BigNumber(n) => Value::Text(n.to_string()),
        Reply::Attribute { data, .. } => cell(*data),
        other => Value::Text(render(&other)),
    }
}

fn render(reply: &Reply) -> String {
    match reply {
        Reply::Array(items) | Reply::Set(items) | Reply::Push { data: items, .. } => {
            let inner: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", inner.join(", "))
        }
        Reply::Map(pairs) => {
            let inner: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}: {}", render(k), render(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        Reply::ServerError(e) => crate::error::server_text(&e.clone().into()),
        other => cell(other.clone()).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_become_rows_and_counts() {
        let list = Reply::Array(vec![
            Reply::BulkString(b"a".to_vec()),
            Reply::Nil,
            Reply::Int(3),
            Reply::Array(vec![Reply::Int(1), Reply::BulkString(b"x".to_vec())]),
        ]);
        let rows = rows(list.clone());
        assert_eq!(rows.columns(), ["value"]);
        let cells: Vec<Value> = rows.rows().iter().map(|r| r[0].clone()).collect();
        assert_eq!(
            cells,
            [
                Value::Text("a".into()),
                Value::Null,
                Value::Int(3),
                Value::Text("[1, x]".into())
            ]
        );
        assert_eq!(count(&list), 4);
        assert_eq!(super::rows(Reply::Nil).scalar(), Some(&Value::Null));
        assert_eq!(count(&Reply::Okay), 1);
        assert_eq!(count(&Reply::Int(-2)), 0);
        assert_eq!(
            super::rows(Reply::BulkString(vec![0xff])).scalar(),
            Some(&Value::Bytes(vec![0xff]))
        );
    }

    #[test]
    fn command_words_and_params() {
        let cmd = command("CLIENT  SETNAME", &[Value::from("x")]).expect("command");
        let packed = String::from_utf8(cmd.get_packed_command()).expect("utf8");
        assert_eq!(packed, "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$1\r\nx\r\n");
        assert!(command("  ", &[]).is_err());
        assert!(command("SET", &[Value::from("k"), Value::Null]).is_err());
    }
}
