//! `pool_driver::Value` ↔ `mysql::Value`, and result sets → `Rows`.
//!
//! MySQL has two protocols. The text protocol (a plain `COM_QUERY`, used when there are no
//! parameters: one round trip, no statement to prepare) sends every cell as bytes; the binary
//! protocol (prepared statements, used with parameters) sends typed cells. Both are converted
//! by the column's type, so the same query gives the same `Value`s either way:
//!
//! * integer types → `Int` (an unsigned `BIGINT` above `i64::MAX` → its decimal `Text`);
//! * `FLOAT`/`DOUBLE` → `Float`; `DECIMAL` → `Text`, so no digit is lost;
//! * string types → `Text`, or `Bytes` when the column's charset is `binary` (63: `BLOB`,
//!   `VARBINARY`, `BINARY`) or the data is not valid UTF-8; `JSON` → `Text`;
//! * dates and times → their SQL text form (`2024-05-01 12:00:00.250`), as the text protocol
//!   sends them; `BIT` → `Int`; geometry and anything unknown → `Bytes`.

use mysql::consts::ColumnType;
use mysql::prelude::Protocol;
use mysql::{Column, QueryResult, Value as MyValue};
use pool_driver::{Rows, Value};

/// The MySQL character-set number of `binary`, which marks byte (not text) columns.
const BINARY_CHARSET: u16 = 63;

/// What the conversion needs to know about a column (its metadata, without the names).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ColumnKind {
    ty: ColumnType,
    binary: bool,
    decimals: u8,
}

impl ColumnKind {
    pub(crate) fn of(column: &Column) -> Self {
        Self {
            ty: column.column_type(),
            binary: column.character_set() == BINARY_CHARSET,
            decimals: column.decimals(),
        }
    }
}

/// A cell of a column of `kind`, from either protocol.
pub(crate) fn cell(value: MyValue, kind: &ColumnKind) -> Value {
    match value {
        MyValue::NULL => Value::Null,
        MyValue::Int(i) => Value::Int(i),
        MyValue::UInt(u) => {
            i64::try_from(u).map_or_else(|_| Value::Text(u.to_string()), Value::Int)
        }
        // Via the shortest decimal form, so `FLOAT 0.1` reads as 0.1 (as in the text protocol)
        // and not as 0.10000000149011612.
        MyValue::Float(f) => Value::Float(f.to_string().parse().unwrap_or(f64::from(f))),
        MyValue::Double(d) => Value::Float(d),
        MyValue::Date(y, mo, d, h, mi, s, us) => {
            if matches!(
                kind.ty,
                ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE
            ) {
                Value::Text(format!("{y:04}-{mo:02}-{d:02}"))
            } else {
                let frac = fraction(us, kind.decimals);
                Value::Text(format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{frac}"))
            }
        }
        MyValue::Time(negative, days, h, mi, s, us) => {
            let sign = if negative { "-" } else { "" };
            let hours = u64::from(days) * 24 + u64::from(h);
            let frac = fraction(us, kind.decimals);
            Value::Text(format!("{sign}{hours:02}:{mi:02}:{s:02}{frac}"))
        }
        MyValue::Bytes(bytes) => bytes_cell(bytes, kind),
    }
}

/// A cell that arrived as bytes: every text-protocol cell, and strings/decimals in binary.
fn bytes_cell(bytes: Vec<u8>, kind: &ColumnKind) -> Value {
    use ColumnType::*;
    match kind.ty {
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_LONG | MYSQL_TYPE_INT24
        | MYSQL_TYPE_LONGLONG | MYSQL_TYPE_YEAR => {
            let parsed = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse::<i64>().ok());
            match parsed {
                Some(i) => Value::Int(i),
                None => text_or_bytes(bytes),
            }
        }
        MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => {
            let parsed = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse::<f64>().ok());
            match parsed {
                Some(f) => Value::Float(f),
                None => text_or_bytes(bytes),
            }
        }
        MYSQL_TYPE_BIT if bytes.len() <= 8 => {
            let n = bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            i64::try_from(n).map_or(Value::Bytes(bytes), Value::Int)
        }
        MYSQL_TYPE_NULL => Value::Null,
        MYSQL_TYPE_GEOMETRY | MYSQL_TYPE_VECTOR | MYSQL_TYPE_BIT => Value::Bytes(bytes),
        MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_STRING
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_ENUM
        | MYSQL_TYPE_SET
            if kind.binary =>
        {
            Value::Bytes(bytes)
        }
        // Text columns, JSON (MySQL labels it binary but sends UTF-8), DECIMAL, and the text
        // form of dates and times.
        _ => text_or_bytes(bytes),
    }
}

fn text_or_bytes(bytes: Vec<u8>) -> Value {
    match String::from_utf8(bytes) {
        Ok(text) => Value::Text(text),
        Err(e) => Value::Bytes(e.into_bytes()),
    }
}

/// `.ffffff` cut to the column's fractional-seconds precision, as the text protocol prints it.
/// Expressions report 31 ("not fixed") decimals: show all six digits when there is a fraction.
fn fraction(micros: u32, decimals: u8) -> String {
    let digits = match decimals {
        d @ 1..=6 => usize::from(d),
        _ if micros != 0 => 6,
        _ => return String::new(),
    };
    let all = format!("{micros:06}");
    format!(".{}", &all[..digits])
}

/// Everything a statement returned: the first result set that has columns, and the affected-row
/// count summed over every result set (a multi-statement text query may have several).
pub(crate) struct Outcome {
    pub(crate) rows: Rows,
    pub(crate) affected: u64,
}

/// Reads every result set of `result` to the end, so the connection is ready for the next
/// command, and converts the first row-returning one when `keep_rows` is set.
pub(crate) fn drain<T: Protocol>(
    mut result: QueryResult<'_, '_, '_, T>,
    keep_rows: bool,
) -> mysql::Result<Outcome> {
    let mut affected = 0u64;
    let mut kept: Option<Rows> = None;
    while let Some(mut set) = result.iter() {
        affected = affected.saturating_add(set.affected_rows());
        let columns = set.columns();
        let columns: &[Column] = columns.as_ref();
        if keep_rows && kept.is_none() && !columns.is_empty() {
            let names = columns.iter().map(|c| c.name_str().into_owned()).collect();
            let kinds: Vec<ColumnKind> = columns.iter().map(ColumnKind::of).collect();
            let mut rows = Vec::new();
            for row in set.by_ref() {
                let values = row?.unwrap_raw();
                let cells = values
                    .into_iter()
                    .zip(&kinds)
                    .map(|(v, k)| v.map_or(Value::Null, |v| cell(v, k)))
                    .collect();
                rows.push(cells);
            }
            kept = Some(Rows::new(names, rows));
        } else {
            for row in set.by_ref() {
                row?;
            }
        }
    }
    Ok(Outcome {
        rows: kept.unwrap_or_default(),
        affected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(ty: ColumnType, charset: u16, decimals: u8) -> ColumnKind {
        ColumnKind {
            ty,
            binary: charset == BINARY_CHARSET,
            decimals,
        }
    }

    #[test]
    fn text_protocol_cells_by_type() {
        use ColumnType::*;
        let b = |s: &str| MyValue::Bytes(s.as_bytes().to_vec());
        assert_eq!(
            cell(b("-42"), &kind(MYSQL_TYPE_LONGLONG, 63, 0)),
            Value::Int(-42)
        );
        assert_eq!(
            cell(b("18446744073709551615"), &kind(MYSQL_TYPE_LONGLONG, 63, 0)),
            Value::Text("18446744073709551615".into())
        );
        assert_eq!(
            cell(b("1.5"), &kind(MYSQL_TYPE_DOUBLE, 63, 31)),
            Value::Float(1.5)
        );
        assert_eq!(
            cell(b("1.50"), &kind(MYSQL_TYPE_NEWDECIMAL, 63, 2)),
            Value::Text("1.50".into())
        );
        assert_eq!(
            cell(b("héllo"), &kind(MYSQL_TYPE_VAR_STRING, 45, 0)),
            Value::Text("héllo".into())
        );
        assert_eq!(
            cell(b("abc"), &kind(MYSQL_TYPE_BLOB, 63, 0)),
            Value::Bytes(b"abc".to_vec())
        );
        assert_eq!(
            cell(
                MyValue::Bytes(vec![0xff, 0xfe]),
                &kind(MYSQL_TYPE_VAR_STRING, 45, 0)
            ),
            Value::Bytes(vec![0xff, 0xfe])
        );
        assert_eq!(
            cell(MyValue::Bytes(vec![1]), &kind(MYSQL_TYPE_BIT, 63, 0)),
            Value::Int(1)
        );
        assert_eq!(
            cell(b("2024-05-01"), &kind(MYSQL_TYPE_DATE, 63, 0)),
            Value::Text("2024-05-01".into())
        );
    }

    #[test]
    fn binary_protocol_cells() {
        use ColumnType::*;
        assert_eq!(
            cell(MyValue::UInt(7), &kind(MYSQL_TYPE_LONGLONG, 63, 0)),
            Value::Int(7)
        );
        assert_eq!(
            cell(MyValue::Float(0.1), &kind(MYSQL_TYPE_FLOAT, 63, 31)),
            Value::Float(0.1)
        );
        assert_eq!(
            cell(
                MyValue::Date(2024, 5, 1, 0, 0, 0, 0),
                &kind(MYSQL_TYPE_DATE, 63, 0)
            ),
            Value::Text("2024-05-01".into())
        );
        assert_eq!(
            cell(
                MyValue::Date(2024, 5, 1, 12, 3, 4, 250_000),
                &kind(MYSQL_TYPE_DATETIME, 63, 3)
            ),
            Value::Text("2024-05-01 12:03:04.250".into())
        );
        assert_eq!(
            cell(
                MyValue::Time(true, 1, 2, 3, 4, 0),
                &kind(MYSQL_TYPE_TIME, 63, 0)
            ),
            Value::Text("-26:03:04".into())
        );
        assert_eq!(
            cell(MyValue::NULL, &kind(MYSQL_TYPE_LONG, 63, 0)),
            Value::Null
        );
    }
}
