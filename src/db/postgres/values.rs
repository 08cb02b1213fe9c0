//! Values bound to PostgreSQL statements and decoded from their results.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sqlx::postgres::{PgArguments, PgRow, PgValueFormat};
use sqlx::query::Query;
use sqlx::{Decode, Postgres, Row, ValueRef};

use super::super::{ReadRow, pgbinary};
use crate::ident::Col;
use crate::value::{ColType, Value};

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// The text under which a statement with these values is prepared. A connection keeps one
/// prepared statement per text, typed by the values of its first execution; a NULL is bound
/// as text, so a statement first run with a NULL where a later run binds a time (or a
/// number) would take that value's bytes for text ("invalid byte sequence for encoding
/// UTF8: 0x00"). Each pattern of NULLs therefore gets its own text.
pub(super) fn statement(text: &str, values: &[Value]) -> sqlx::AssertSqlSafe<String> {
    use std::fmt::Write;
    let mut out = text.to_owned();
    let mut nulls = values
        .iter()
        .enumerate()
        .filter(|(_, v)| matches!(v, Value::Null))
        .peekable();
    if nulls.peek().is_some() {
        out.push_str(" /* null");
        for (i, _) in nulls {
            let _ = write!(out, " {}", i + 1);
        }
        out.push_str(" */");
    }
    sqlx::AssertSqlSafe(out)
}

pub(super) fn bind<'q>(q: PgQuery<'q>, v: &Value) -> PgQuery<'q> {
    match v {
        Value::Null => q.bind(None::<String>),
        Value::Bool(b) => q.bind(*b),
        Value::Int(i) => q.bind(*i),
        Value::Float(f) => q.bind(*f),
        Value::Decimal(s) | Value::Text(s) => q.bind(s.clone()),
        Value::Bytes(b) => q.bind(b.clone()),
        Value::Date(d) => q.bind(*d),
        Value::Time(t) => q.bind(*t),
        Value::Timestamp(t) => q.bind(*t),
        Value::TimestampTz(t) => q.bind(*t),
    }
}

pub(super) fn decode_row(row: &PgRow, cols: &[Col]) -> ReadRow {
    super::super::read_row(cols, |i, c| decode(row, i, c.ty))
}

fn decode(row: &PgRow, i: usize, ty: ColType) -> Result<Value, sqlx::error::BoxDynError> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    if raw.format() == PgValueFormat::Binary {
        if let Some(v) = raw.as_bytes().ok().and_then(|b| pgbinary::read(ty, b)) {
            return Ok(v);
        }
        // Numerics are read in binary (they are selected as they are); sqlx would take
        // their bytes for text.
        if ty == ColType::Decimal {
            let ty = sqlx::TypeInfo::name(raw.type_info().as_ref()).to_owned();
            return Err(format!("not a NUMERIC value of type {ty}").into());
        }
    }
    Ok(match ty {
        ColType::Bool => Value::Bool(<bool as Decode<Postgres>>::decode(raw)?),
        ColType::Int => Value::Int(<i64 as Decode<Postgres>>::decode(raw)?),
        ColType::Float => Value::Float(<f64 as Decode<Postgres>>::decode(raw)?),
        ColType::Decimal => Value::Decimal(<String as Decode<Postgres>>::decode(raw)?),
        ColType::Text | ColType::Other => Value::Text(<String as Decode<Postgres>>::decode(raw)?),
        ColType::Bytes => Value::Bytes(<Vec<u8> as Decode<Postgres>>::decode(raw)?),
        ColType::Date => Value::Date(<NaiveDate as Decode<Postgres>>::decode(raw)?),
        ColType::Time => Value::Time(<NaiveTime as Decode<Postgres>>::decode(raw)?),
        ColType::Timestamp => Value::Timestamp(<NaiveDateTime as Decode<Postgres>>::decode(raw)?),
        ColType::TimestampTz => {
            Value::TimestampTz(<DateTime<Utc> as Decode<Postgres>>::decode(raw)?)
        }
    })
}
