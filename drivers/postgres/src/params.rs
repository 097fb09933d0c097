//! [`Value`] parameters → PostgreSQL's wire formats.
//!
//! The `postgres` crate checks parameter types strictly: an `i64` bound to an `int4` parameter
//! is an error, and a string cannot be bound to a `date`. The uniform API has one integer type
//! and one text type, so [`Param`] accepts every parameter type and picks the encoding from the
//! type the server inferred:
//!
//! * exact binary encodings for the obvious pairs (integers into `int2`/`int4`/`int8`/`oid`
//!   with a range check, numbers into `float4`/`float8`, booleans, text into text types, bytes
//!   into `bytea`);
//! * otherwise the value's text form, sent in text format, so the server parses it exactly as
//!   it would parse a literal: `'2024-05-01'` into a `date`, `12.50` into a `numeric`, a UUID,
//!   JSON, an enum label. A bad value fails with the server's own message
//!   ("invalid input syntax for type date: …"), and the connection stays usable.

use std::error::Error;

use bytes::BytesMut;
use pool_driver::Value;
use postgres::types::{Format, IsNull, Kind, ToSql, Type};

type BoxError = Box<dyn Error + Sync + Send>;

/// A [`Value`] sent in text format with its type left to the server (type OID 0): the server
/// infers the parameter's type from the statement, exactly as for [`Param`], and parses the
/// text as it would a literal. This lets a statement be parsed, bound and executed in one
/// round trip (`Client::query_typed`), without first asking the server for the types.
#[derive(Debug)]
pub(crate) struct TextParam<'a>(&'a Value);

/// Whether every value can go as text with its type inferred (everything but bytes: their text
/// form depends on the column type, so a statement with bytes is prepared first).
pub(crate) fn all_text(values: &[Value]) -> bool {
    !values.iter().any(|v| matches!(v, Value::Bytes(_)))
}

/// The type OID 0: "unspecified, let the server infer it" in the protocol's Parse message.
fn inferred() -> Type {
    static INFERRED: std::sync::OnceLock<Type> = std::sync::OnceLock::new();
    INFERRED
        .get_or_init(|| {
            Type::new(
                "unspecified".to_owned(),
                0,
                Kind::Pseudo,
                "pg_catalog".to_owned(),
            )
        })
        .clone()
}

/// Binds `values` (see [`all_text`]) as text parameters of inferred type.
pub(crate) fn bind_text(values: &[Value]) -> Vec<(TextParam<'_>, Type)> {
    values.iter().map(|v| (TextParam(v), inferred())).collect()
}

/// The references `query_typed` takes, borrowing from [`bind_text`]'s result.
pub(crate) fn typed_refs<'a>(
    params: &'a [(TextParam<'a>, Type)],
) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params
        .iter()
        .map(|(p, t)| (p as &(dyn ToSql + Sync), t.clone()))
        .collect()
}

impl ToSql for TextParam<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        if let Value::Null = self.0 {
            return Ok(IsNull::Yes);
        }
        let text = text_form(self.0).ok_or("bytes cannot be sent as inferred text")?;
        out.extend_from_slice(text.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> Format {
        Format::Text
    }

    postgres::types::to_sql_checked!();
}

/// A [`Value`] bound as a statement parameter.
#[derive(Debug)]
pub(crate) struct Param<'a>(pub(crate) &'a Value);

/// Binds `values` for one statement.
pub(crate) fn bind(values: &[Value]) -> Vec<Param<'_>> {
    values.iter().map(Param).collect()
}

/// The references `postgres` takes, borrowing from [`bind`]'s result.
pub(crate) fn refs<'a>(params: &'a [Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// A domain is sent in its base type's format.
fn base(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(inner) => base(inner),
        _ => ty,
    }
}

/// Whether `value` has an exact binary encoding for `ty`; if not, it goes as text.
fn binary(value: &Value, ty: &Type) -> bool {
    let ty = base(ty);
    match value {
        Value::Null | Value::Bytes(_) => true,
        Value::Bool(_) => *ty == Type::BOOL,
        Value::Int(_) => matches!(
            *ty,
            Type::INT2 | Type::INT4 | Type::INT8 | Type::OID | Type::FLOAT4 | Type::FLOAT8
        ),
        Value::Float(_) => matches!(*ty, Type::FLOAT4 | Type::FLOAT8),
        Value::Text(_) => *ty == Type::BYTEA || <&str as ToSql>::accepts(ty),
    }
}

/// The text form the server parses when there is no binary encoding.
fn text_form(value: &Value) -> Option<String> {
    Some(match value {
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.is_nan() => "NaN".to_owned(),
        Value::Float(f) if f.is_infinite() => {
            if *f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
        }
        // Rust's `Display` for floats is exact and never uses exponents: PostgreSQL parses it.
        Value::Float(f) => f.to_string(),
        Value::Text(s) => s.clone(),
        Value::Null | Value::Bytes(_) => return None,
    })
}

fn out_of_range(value: i64, ty: &Type) -> BoxError {
    format!(
        "integer {value} is out of range for a parameter of type {}",
        ty.name()
    )
    .into()
}

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        if !binary(self.0, ty) {
            let text = text_form(self.0).ok_or("this value has no text form")?;
            out.extend_from_slice(text.as_bytes());
            return Ok(IsNull::No);
        }
        let base = base(ty);
        match (self.0, base) {
            (Value::Null, _) => return Ok(IsNull::Yes),
            (Value::Bool(b), _) => b.to_sql(base, out)?,
            (Value::Int(i), &Type::INT2) => i16::try_from(*i)
                .map_err(|_| out_of_range(*i, ty))?
                .to_sql(base, out)?,
            (Value::Int(i), &Type::INT4) => i32::try_from(*i)
                .map_err(|_| out_of_range(*i, ty))?
                .to_sql(base, out)?,
            (Value::Int(i), &Type::OID) => u32::try_from(*i)
                .map_err(|_| out_of_range(*i, ty))?
                .to_sql(base, out)?,
            (Value::Int(i), &Type::INT8) => i.to_sql(base, out)?,
            // Integers beyond 2^53 round here, as they would in any float column.
            (Value::Int(i), &Type::FLOAT4) => (*i as f32).to_sql(base, out)?,
            (Value::Int(i), _) => (*i as f64).to_sql(base, out)?,
            (Value::Float(f), &Type::FLOAT4) => (*f as f32).to_sql(base, out)?,
            (Value::Float(f), _) => f.to_sql(base, out)?,
            (Value::Text(s), &Type::BYTEA) => s.as_bytes().to_sql(base, out)?,
            (Value::Text(s), _) => s.as_str().to_sql(base, out)?,
            (Value::Bytes(b), &Type::BYTEA) => b.as_slice().to_sql(base, out)?,
            (Value::Bytes(b), _) if <&str as ToSql>::accepts(base) => {
                let text = std::str::from_utf8(b).map_err(|_| {
                    format!(
                        "bytes bound to a parameter of type {} are not UTF-8",
                        ty.name()
                    )
                })?;
                text.to_sql(base, out)?
            }
            (Value::Bytes(_), _) => {
                return Err(format!(
                    "bytes cannot be bound to a parameter of type {}; use bytea or cast the \
                     parameter (for example $1::bytea)",
                    ty.name()
                )
                .into())
            }
        };
        Ok(IsNull::No)
    }

    /// Every parameter type is accepted; [`ToSql::to_sql`] picks the encoding or explains why
    /// the pair cannot work.
    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, ty: &Type) -> Format {
        if binary(self.0, ty) {
            Format::Binary
        } else {
            Format::Text
        }
    }

    postgres::types::to_sql_checked!();
}
