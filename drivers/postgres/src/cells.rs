//! PostgreSQL results → [`Rows`] of [`Value`]s.
//!
//! `tokio-postgres` always asks for results in binary format, so every type needs its own
//! decoder. Covered: booleans, integers (`int2`/`int4`/`int8`/`oid`), floats, every type whose
//! binary form is its text (`text`, `varchar`, `char(n)`, `name`, `json`, `xml`, enums,
//! `citext`…), `jsonb` (a version byte and then text), `bytea`, and, as text, `numeric` and
//! `uuid` (`sum(bigint)` and `avg(…)` return `numeric`, so it must not fail). Domains decode as
//! their base type. Anything else (dates, times, arrays, ranges…) is an error that says to cast
//! the column (`::text`) or to use the native client.

use std::error::Error;
use std::fmt::Write as _;

use pool_driver::{DriverError, DriverErrorKind, Rows, Value};
use tokio_postgres::types::{FromSql, Kind, Type};
use tokio_postgres::{Column, Row};

type BoxError = Box<dyn Error + Sync + Send>;

/// Converts `rows`, whose columns are `columns` (from the statement, or from the first row).
pub(crate) fn rows(columns: &[Column], rows: &[Row]) -> Result<Rows, DriverError> {
    if let Some(column) = columns.iter().find(|c| !decodable(c.type_())) {
        return Err(DriverError::new(
            DriverErrorKind::Query,
            format!(
                "column `{}` has type {}, which the uniform API does not map; cast it \
                 (for example `{}::text`) or use the native client (PgClient)",
                column.name(),
                column.type_().name(),
                column.name()
            ),
        ));
    }
    let names = columns.iter().map(|c| c.name().to_owned()).collect();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut values = Vec::with_capacity(columns.len());
        for (index, column) in columns.iter().enumerate() {
            let Cell(value) = row.try_get(index).map_err(|e| {
                let cause = e.source().map(ToString::to_string).unwrap_or_default();
                DriverError::new(
                    DriverErrorKind::Query,
                    format!("cannot decode column `{}`: {cause}", column.name()),
                )
            })?;
            values.push(value);
        }
        out.push(values);
    }
    Ok(Rows::new(names, out))
}

/// One decoded cell.
struct Cell(Value);

/// A domain is decoded as its base type.
fn base(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(inner) => base(inner),
        _ => ty,
    }
}

/// Types whose binary format is their UTF-8 text.
fn text_like(ty: &Type) -> bool {
    matches!(*ty, Type::JSON | Type::XML)
        || matches!(ty.kind(), Kind::Enum(_))
        || <&str as FromSql>::accepts(ty)
}

fn decodable(ty: &Type) -> bool {
    let ty = base(ty);
    text_like(ty)
        || matches!(
            *ty,
            Type::BOOL
                | Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::OID
                | Type::CHAR
                | Type::FLOAT4
                | Type::FLOAT8
                | Type::BYTEA
                | Type::JSONB
                | Type::NUMERIC
                | Type::UUID
        )
}

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let ty = base(ty);
        let value = match *ty {
            Type::BOOL => Value::Bool(bool::from_sql(ty, raw)?),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::OID => Value::Int(u32::from_sql(ty, raw)?.into()),
            // The single-byte "char" type (pg_class.relkind and friends).
            Type::CHAR => Value::Text(char::from(i8::from_sql(ty, raw)? as u8).to_string()),
            Type::FLOAT4 => Value::Float(f32::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Float(f64::from_sql(ty, raw)?),
            Type::BYTEA => Value::Bytes(raw.to_vec()),
            Type::JSONB => match raw.split_first() {
                Some((1, json)) => Value::Text(std::str::from_utf8(json)?.to_owned()),
                _ => return Err("unsupported jsonb binary version".into()),
            },
            Type::NUMERIC => Value::Text(numeric_text(raw)?),
            Type::UUID => Value::Text(uuid_text(raw)?),
            _ if text_like(ty) => Value::Text(std::str::from_utf8(raw)?.to_owned()),
            _ => return Err(format!("type {} is not mapped", ty.name()).into()),
        };
        Ok(Cell(value))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Cell(Value::Null))
    }

    /// Every type is accepted here; [`rows`] rejects unmapped columns up front, with their name.
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Takes the next big-endian 16-bit word off `raw`.
fn word(raw: &mut &[u8]) -> Result<u16, BoxError> {
    match raw {
        [a, b, rest @ ..] => {
            let value = u16::from_be_bytes([*a, *b]);
            *raw = rest;
            Ok(value)
        }
        _ => Err("truncated numeric value".into()),
    }
}

/// Renders the binary `numeric` format the way PostgreSQL's `numeric_out` does: base-10000
/// digits, a weight (the power of 10000 of the first digit), a sign and a display scale.
fn numeric_text(mut raw: &[u8]) -> Result<String, BoxError> {
    let ndigits = usize::from(word(&mut raw)?);
    let weight = i32::from(word(&mut raw)? as i16);
    let sign = word(&mut raw)?;
    let dscale = usize::from(word(&mut raw)?);
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        0xC000 => return Ok("NaN".to_owned()),
        0xD000 => return Ok("Infinity".to_owned()),
        0xF000 => return Ok("-Infinity".to_owned()),
        _ => return Err("invalid numeric sign".into()),
    };
    let digits = (0..ndigits)
        .map(|_| word(&mut raw))
        .collect::<Result<Vec<_>, _>>()?;
    let digit = |i: i32| {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0)
    };
    let mut out = String::with_capacity(8 + 4 * ndigits);
    if negative {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            // Writing to a String cannot fail.
            let _ = if i == 0 {
                write!(out, "{}", digit(i))
            } else {
                write!(out, "{:04}", digit(i))
            };
        }
    }
    if dscale > 0 {
        out.push('.');
        let start = out.len();
        let mut i = weight + 1;
        while out.len() - start < dscale {
            let _ = write!(out, "{:04}", digit(i));
            i += 1;
        }
        out.truncate(start + dscale);
    }
    Ok(out)
}

/// The canonical 8-4-4-4-12 form of a 16-byte UUID.
fn uuid_text(raw: &[u8]) -> Result<String, BoxError> {
    if raw.len() != 16 {
        return Err("a uuid must be 16 bytes".into());
    }
    let mut out = String::with_capacity(36);
    for (i, byte) in raw.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let _ = write!(out, "{byte:02x}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut raw = Vec::new();
        for w in [ndigits, weight as u16, sign, dscale].iter().chain(digits) {
            raw.extend_from_slice(&w.to_be_bytes());
        }
        raw
    }

    #[test]
    fn numeric_renders_like_numeric_out() {
        // 12345.678 = [1, 2345, 6780], weight 1, scale 3
        assert_eq!(
            numeric_text(&numeric(3, 1, 0, 3, &[1, 2345, 6780])).unwrap(),
            "12345.678"
        );
        // -0.0012 = [12], weight -1, scale 4
        assert_eq!(
            numeric_text(&numeric(1, -1, 0x4000, 4, &[12])).unwrap(),
            "-0.0012"
        );
        // 0 with scale 2
        assert_eq!(numeric_text(&numeric(0, 0, 0, 2, &[])).unwrap(), "0.00");
        // 100000000 = [1], weight 2 (trailing zero digits are stripped)
        assert_eq!(
            numeric_text(&numeric(1, 2, 0, 0, &[1])).unwrap(),
            "100000000"
        );
        assert_eq!(numeric_text(&numeric(0, 0, 0xC000, 0, &[])).unwrap(), "NaN");
        assert!(numeric_text(&[0, 1]).is_err());
    }

    #[test]
    fn uuid_is_hyphenated_lower_hex() {
        let raw: Vec<u8> = (0..16).collect();
        assert_eq!(
            uuid_text(&raw).unwrap(),
            "00010203-0405-0607-0809-0a0b0c0d0e0f"
        );
    }
}
