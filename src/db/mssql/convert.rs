//! SQL Server values and errors: binding [`Value`]s, decoding cells, classifying errors,
//! naming catalog types.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use tiberius::{ColumnData, FromSql, Query};

use crate::db::ErrorClass;
use crate::ident::Col;
use crate::value::{ColType, Value};

/// The class of a SQL Server error number.
pub fn class_of(number: u32) -> ErrorClass {
    match number {
        // deadlock victim, lock request timeout, snapshot update conflicts, in-memory OLTP
        // conflicts
        1205 | 1222 | 3960 | 3961 | 41302 | 41305 | 41325 | 41301 => ErrorClass::Transient,
        // transport errors, cannot open database (restoring, offline), database in
        // transition, out of memory or locks, shutdown, Azure throttling and failover
        233 | 701 | 802 | 1204 | 3980 | 4060 | 4221 | 6005 | 8645 | 8651 | 10053 | 10054
        | 10060 | 10928 | 10929 | 40143 | 40197 | 40501 | 40613 | 49918 | 49919 | 49920 | 952
        | 978 | 983 => ErrorClass::Unavailable,
        // NULL into NOT NULL, check or foreign key constraint, duplicate key, truncation,
        // arithmetic overflow, conversion failures, out-of-range dates, divide by zero,
        // MERGE touching a row twice
        515 | 547 | 2601 | 2627 | 8152 | 2628 | 220 | 232 | 8114 | 8115 | 245 | 241 | 242 | 248
        | 293 | 295 | 296 | 298 | 517 | 8169 | 8134 | 8672 | 9809 | 6522 => ErrorClass::Data,
        _ => ErrorClass::Fatal,
    }
}

/// The class of an error and the server's error number, when it sent one.
pub fn classify(e: &tiberius::error::Error) -> (Option<String>, ErrorClass) {
    use tiberius::error::Error;
    match e {
        Error::Server(t) => (Some(t.code().to_string()), class_of(t.code())),
        Error::Io { .. } | Error::Tls(_) | Error::Protocol(_) | Error::Routing { .. } => {
            (None, ErrorClass::Unavailable)
        }
        _ => (None, ErrorClass::Fatal),
    }
}

/// The error's own words.
pub fn describe(e: &tiberius::error::Error) -> String {
    match e {
        tiberius::error::Error::Server(t) => t.message().to_owned(),
        other => other.to_string(),
    }
}

/// Bind a value. NULL goes as a typeless NVARCHAR NULL, which converts to any column type;
/// decimals go as their text, so that no digit is lost on the way; instants keep their
/// offset (`datetimeoffset`).
pub fn bind(q: &mut Query<'_>, v: &Value) {
    match v {
        Value::Null => q.bind(Option::<String>::None),
        Value::Bool(b) => q.bind(*b),
        Value::Int(i) => q.bind(*i),
        Value::Float(f) => q.bind(*f),
        Value::Decimal(s) | Value::Text(s) => q.bind(s.clone()),
        Value::Bytes(b) => q.bind(b.clone()),
        Value::Date(d) => q.bind(*d),
        Value::Time(t) => q.bind(*t),
        Value::Timestamp(t) => q.bind(*t),
        Value::TimestampTz(t) => q.bind(t.fixed_offset()),
    }
}

/// Whether a cell is NULL.
fn is_null(cd: &ColumnData<'_>) -> bool {
    match cd {
        ColumnData::U8(v) => v.is_none(),
        ColumnData::I16(v) => v.is_none(),
        ColumnData::I32(v) => v.is_none(),
        ColumnData::I64(v) => v.is_none(),
        ColumnData::F32(v) => v.is_none(),
        ColumnData::F64(v) => v.is_none(),
        ColumnData::Bit(v) => v.is_none(),
        ColumnData::String(v) => v.is_none(),
        ColumnData::Guid(v) => v.is_none(),
        ColumnData::Binary(v) => v.is_none(),
        ColumnData::Numeric(v) => v.is_none(),
        ColumnData::Xml(v) => v.is_none(),
        ColumnData::DateTime(v) => v.is_none(),
        ColumnData::SmallDateTime(v) => v.is_none(),
        ColumnData::Time(v) => v.is_none(),
        ColumnData::Date(v) => v.is_none(),
        ColumnData::DateTime2(v) => v.is_none(),
        ColumnData::DateTimeOffset(v) => v.is_none(),
    }
}

/// An integer cell of any width.
pub fn int(cd: &ColumnData<'_>) -> Option<i64> {
    match cd {
        ColumnData::U8(v) => v.map(i64::from),
        ColumnData::I16(v) => v.map(i64::from),
        ColumnData::I32(v) => v.map(i64::from),
        ColumnData::I64(v) => *v,
        ColumnData::Bit(v) => v.map(i64::from),
        _ => None,
    }
}

/// A text cell.
pub fn text(cd: &ColumnData<'_>) -> Option<String> {
    match cd {
        ColumnData::String(Some(s)) => Some(s.to_string()),
        _ => None,
    }
}

fn unexpected(cd: &ColumnData<'_>, c: &Col) -> String {
    let sent = format!("{cd:?}");
    let sent = sent.split('(').next().unwrap_or_default().to_owned();
    format!("SQL Server sent a {sent} value for a {} column", c.native)
}

fn time<'a, T: FromSql<'a>>(cd: &'a ColumnData<'static>, c: &Col) -> Result<T, String> {
    match T::from_sql(cd) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(unexpected(cd, c)),
        Err(e) => Err(e.to_string()),
    }
}

/// Decode one cell as its column's kind.
pub fn decode(cd: &ColumnData<'static>, c: &Col) -> Result<Value, String> {
    if is_null(cd) {
        return Ok(Value::Null);
    }
    Ok(match (c.ty, cd) {
        (ColType::Bool, ColumnData::Bit(Some(b))) => Value::Bool(*b),
        (ColType::Bool | ColType::Int, _) if int(cd).is_some() => {
            Value::Int(int(cd).unwrap_or_default())
        }
        (ColType::Int | ColType::Decimal, ColumnData::Numeric(Some(n))) => {
            if n.scale() == 0
                && let Ok(i) = i64::try_from(n.value())
                && c.ty == ColType::Int
            {
                Value::Int(i)
            } else {
                Value::Decimal(n.to_string())
            }
        }
        (ColType::Float, ColumnData::F64(Some(f))) => Value::Float(*f),
        // A `real` is exactly its shortest decimal text, not the double nearest to it.
        (ColType::Float, ColumnData::F32(Some(f))) => Value::Float(
            f.to_string()
                .parse::<f64>()
                .map_err(|e| format!("real {f}: {e}"))?,
        ),
        (ColType::Decimal, ColumnData::String(Some(s))) => Value::Decimal(s.trim().to_owned()),
        (_, ColumnData::String(Some(s))) => Value::Text(s.to_string()),
        (_, ColumnData::Guid(Some(g))) => Value::Text(g.to_string().to_uppercase()),
        (_, ColumnData::Xml(Some(x))) => Value::Text(x.to_string()),
        (ColType::Bytes, ColumnData::Binary(Some(b))) => Value::Bytes(b.to_vec()),
        (ColType::Date, _) => Value::Date(time::<NaiveDate>(cd, c)?),
        (ColType::Time, _) => Value::Time(time::<NaiveTime>(cd, c)?),
        (ColType::Timestamp, _) => Value::Timestamp(time::<NaiveDateTime>(cd, c)?),
        (ColType::TimestampTz, _) => {
            Value::TimestampTz(time::<DateTime<FixedOffset>>(cd, c)?.to_utc())
        }
        _ => return Err(unexpected(cd, c)),
    })
}

/// The exchange kind of a SQL Server `DATA_TYPE`.
pub fn col_type(data_type: &str) -> ColType {
    match data_type {
        "bit" => ColType::Bool,
        "tinyint" | "smallint" | "int" | "bigint" => ColType::Int,
        "decimal" | "numeric" | "money" | "smallmoney" => ColType::Decimal,
        "float" | "real" => ColType::Float,
        "char" | "varchar" | "nchar" | "nvarchar" | "text" | "ntext" | "sysname" => ColType::Text,
        "binary" | "varbinary" | "image" | "timestamp" | "rowversion" => ColType::Bytes,
        "date" => ColType::Date,
        "time" => ColType::Time,
        "datetime" | "datetime2" | "smalldatetime" => ColType::Timestamp,
        "datetimeoffset" => ColType::TimestampTz,
        _ => ColType::Other,
    }
}

/// The full type name of a column (`nvarchar(50)`, `decimal(12,2)`, `datetime2(6)`), from
/// the catalog's `DATA_TYPE`, `CHARACTER_MAXIMUM_LENGTH`, `NUMERIC_PRECISION`,
/// `NUMERIC_SCALE` and `DATETIME_PRECISION`.
pub fn native(
    data_type: &str,
    chars: Option<i64>,
    precision: Option<i64>,
    scale: Option<i64>,
    time_precision: Option<i64>,
) -> String {
    match (data_type, chars, precision, scale, time_precision) {
        ("char" | "varchar" | "nchar" | "nvarchar" | "binary" | "varbinary", Some(-1), ..) => {
            format!("{data_type}(max)")
        }
        ("char" | "varchar" | "nchar" | "nvarchar" | "binary" | "varbinary", Some(n), ..) => {
            format!("{data_type}({n})")
        }
        ("decimal" | "numeric", _, Some(p), Some(s), _) => format!("{data_type}({p},{s})"),
        ("datetime2" | "datetimeoffset" | "time", .., Some(p)) => format!("{data_type}({p})"),
        _ => data_type.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::Ident;
    use std::borrow::Cow;

    fn col(ty: ColType, native: &str) -> Col {
        Col {
            name: Ident::new("c").expect("ident"),
            ty,
            native: native.into(),
        }
    }

    #[test]
    fn errors_are_classified_by_number() {
        for (n, class) in [
            (1205, ErrorClass::Transient),    // deadlock victim
            (1222, ErrorClass::Transient),    // lock request time out
            (3960, ErrorClass::Transient),    // snapshot isolation conflict
            (4060, ErrorClass::Unavailable),  // cannot open database
            (40613, ErrorClass::Unavailable), // Azure: database not available
            (515, ErrorClass::Data),          // NULL into NOT NULL
            (547, ErrorClass::Data),          // constraint
            (2627, ErrorClass::Data),         // duplicate key
            (2628, ErrorClass::Data),         // string or binary data would be truncated
            (8152, ErrorClass::Data),         // the same, older servers
            (245, ErrorClass::Data),          // conversion failed
            (8114, ErrorClass::Data),         // error converting data type
            (8115, ErrorClass::Data),         // arithmetic overflow
            (208, ErrorClass::Fatal),         // invalid object name
            (229, ErrorClass::Fatal),         // permission denied
            (102, ErrorClass::Fatal),         // syntax error
        ] {
            assert_eq!(class_of(n), class, "{n}");
        }
        let io = tiberius::error::Error::Io {
            kind: std::io::ErrorKind::ConnectionRefused,
            message: "refused".into(),
        };
        assert_eq!(classify(&io), (None, ErrorClass::Unavailable));
        let conv = tiberius::error::Error::Conversion("x".into());
        assert_eq!(classify(&conv).1, ErrorClass::Fatal);
    }

    #[test]
    fn cells_decode_as_their_columns_kind() {
        let int = col(ColType::Int, "int");
        assert_eq!(decode(&ColumnData::I32(Some(7)), &int), Ok(Value::Int(7)));
        assert_eq!(
            decode(&ColumnData::U8(Some(255)), &int),
            Ok(Value::Int(255))
        );
        assert_eq!(decode(&ColumnData::I32(None), &int), Ok(Value::Null));
        let dec = col(ColType::Decimal, "decimal(12,2)");
        assert_eq!(
            decode(&ColumnData::String(Some(Cow::Borrowed("100.50"))), &dec),
            Ok(Value::Decimal("100.50".into()))
        );
        let real = col(ColType::Float, "real");
        assert_eq!(
            decode(&ColumnData::F32(Some(0.1)), &real),
            Ok(Value::Float(0.1))
        );
        let bit = col(ColType::Bool, "bit");
        assert_eq!(
            decode(&ColumnData::Bit(Some(true)), &bit),
            Ok(Value::Bool(true))
        );
        let text = col(ColType::Text, "nvarchar(5)");
        assert_eq!(
            decode(&ColumnData::String(Some(Cow::Borrowed("监管"))), &text),
            Ok(Value::Text("监管".into()))
        );
        // A cell of another type than the catalog said is an error, not a guess.
        let e = decode(&ColumnData::Binary(Some(Cow::Borrowed(&[1u8][..]))), &int)
            .expect_err("bytes for an int");
        assert!(e.contains("Binary") && e.contains("int"), "{e}");
        let date = col(ColType::Date, "date");
        assert!(decode(&ColumnData::I32(Some(1)), &date).is_err());
    }

    #[test]
    fn catalog_types_map_to_kinds_and_names() {
        assert_eq!(col_type("bit"), ColType::Bool);
        assert_eq!(col_type("money"), ColType::Decimal);
        assert_eq!(col_type("datetime2"), ColType::Timestamp);
        assert_eq!(col_type("datetimeoffset"), ColType::TimestampTz);
        assert_eq!(col_type("uniqueidentifier"), ColType::Other);
        assert_eq!(
            col_type("timestamp"),
            ColType::Bytes,
            "rowversion, not a time"
        );
        assert_eq!(
            native("nvarchar", Some(-1), None, None, None),
            "nvarchar(max)"
        );
        assert_eq!(native("nchar", Some(10), None, None, None), "nchar(10)");
        assert_eq!(
            native("decimal", None, Some(12), Some(2), None),
            "decimal(12,2)"
        );
        assert_eq!(
            native("datetime2", None, None, None, Some(6)),
            "datetime2(6)"
        );
        assert_eq!(native("int", None, Some(10), Some(0), None), "int");
    }
}
