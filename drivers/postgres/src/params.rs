//! [`Value`] parameters → PostgreSQL's wire formats, for unnamed statements only.
//!
//! Every statement with parameters is parsed, bound, described and executed in one round trip
//! as the *unnamed* statement (`Client::query_typed` / `execute_typed`), never prepared first
//! as a named one: a named statement costs a round trip more, and it lives on one server
//! session, so behind a transaction-mode PgBouncer the next transaction (on another server
//! connection) cannot find it ("prepared statement \"s3\" does not exist"). The parameter
//! types are therefore given with the statement instead of asked for:
//!
//! * bytes are declared `bytea` and sent as they are (binary format). A bytes value can so go
//!   only where the server accepts a `bytea` (a `bytea` column, `$1::bytea`, `length($1)`);
//!   bound to a parameter of another type the server reports the type mismatch (see
//!   [`BYTES_HINT`]).
//! * every other value is sent in its text form with its type left to the server (type OID 0):
//!   the server infers the parameter's type from the statement and parses the text exactly as
//!   it would parse a literal: `42` into an `int4` or a `numeric`, `'2024-05-01'` into a
//!   `date`, a UUID, JSON, an enum label. The uniform API has one integer and one text type, so
//!   this is what lets them fill every column type; a bad value fails with the server's own
//!   message ("invalid input syntax for type date: …"), and the connection stays usable.

use std::error::Error;

use bytes::BytesMut;
use pool_driver::Value;
use tokio_postgres::types::{Format, IsNull, Kind, ToSql, Type};

type BoxError = Box<dyn Error + Sync + Send>;

/// Appended to the server's message when a statement with bytes parameters fails on a type
/// mismatch (SQLSTATE 42804, 42846 or 42883): bytes go as `bytea`, which the message alone
/// does not say.
pub(crate) const BYTES_HINT: &str = "\n(bytes cannot be bound to a parameter of another type \
     than bytea: they are sent as bytea; pass text instead, or convert in SQL, for example \
     convert_from($1, 'UTF8'))";

/// The SQLSTATEs of a type mismatch that bytes sent as `bytea` can cause: `datatype_mismatch`,
/// `cannot_coerce`, `undefined_function` (no operator or function for `bytea`).
pub(crate) fn is_type_mismatch(code: Option<&str>) -> bool {
    matches!(code, Some("42804" | "42846" | "42883"))
}

/// Whether `values` hold bytes (which is when [`BYTES_HINT`] applies).
pub(crate) fn has_bytes(values: &[Value]) -> bool {
    values.iter().any(|v| matches!(v, Value::Bytes(_)))
}

/// A [`Value`] bound to an unnamed statement: bytes as `bytea` in binary format, everything
/// else in text format with its type inferred by the server.
#[derive(Debug)]
pub(crate) struct Param<'a>(&'a Value);

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

/// Binds `values` with the types declared in the Parse message: `bytea` for bytes, inferred
/// for the rest. Both are built-in OIDs, so `tokio-postgres` never looks a parameter type
/// up (which would prepare a named statement of its own).
pub(crate) fn bind(values: &[Value]) -> Vec<(Param<'_>, Type)> {
    values
        .iter()
        .map(|v| {
            let ty = match v {
                Value::Bytes(_) => Type::BYTEA,
                _ => inferred(),
            };
            (Param(v), ty)
        })
        .collect()
}

/// The references `query_typed` / `execute_typed` take, borrowing from [`bind`]'s result.
pub(crate) fn typed_refs<'a>(
    params: &'a [(Param<'a>, Type)],
) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params
        .iter()
        .map(|(p, t)| (p as &(dyn ToSql + Sync), t.clone()))
        .collect()
}

impl ToSql for Param<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self.0 {
            Value::Null => return Ok(IsNull::Yes),
            Value::Bytes(b) => out.extend_from_slice(b),
            other => {
                let text = text_form(other).ok_or("this value has no text form")?;
                out.extend_from_slice(text.as_bytes());
            }
        }
        Ok(IsNull::No)
    }

    /// Every parameter type is accepted: the types are the ones [`bind`] declared.
    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> Format {
        match self.0 {
            Value::Bytes(_) => Format::Binary,
            _ => Format::Text,
        }
    }

    tokio_postgres::types::to_sql_checked!();
}

/// The text form the server parses as it would a literal.
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
