//! Oracle values and errors: binding [`Value`]s, decoding cells, classifying errors, naming
//! catalog types.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use oracle::sql_type::{OracleType, ToSql};
use oracle::{ErrorKind, SqlValue};

use crate::db::ErrorClass;
use crate::ident::Col;
use crate::value::{ColType, Value};

/// The class of an `ORA-` error number.
pub fn class_of(number: i32) -> ErrorClass {
    match number {
        // deadlock, cannot serialize, resource busy (NOWAIT / WAIT n), lock wait timeout
        60 | 8177 | 54 | 30006 | 4021 => ErrorClass::Transient,
        // end-of-file on the channel, not connected, connection lost or refused, listener
        // knows no such service or has no handler, initialising or shutting down, not
        // available, the call was cancelled (the agent's call timeout);
        3113 | 3114 | 3135 | 3136 | 1012 | 1013 | 1033 | 1034 | 1089 | 1090 | 1092 | 12170
        | 12514 | 12516 | 12518 | 12519 | 12520 | 12521 | 12528 | 12537 | 12541 | 12543 | 12545
        | 12547 | 12571 | 25408 | 28547
        // the session pool has no free session in time, is full, or is closing
        | 24457 | 24418 | 24496 => ErrorClass::Unavailable,
        // unique constraint, NULL into NOT NULL, check, foreign keys, value too large, number
        // too precise, invalid number, bad dates, divide by zero, numeric or value error,
        // data value out of range, numeric overflow, MERGE touching a row twice, a string
        // too long for its column (bound as LONG)
        1 | 1400 | 1407 | 2290 | 2291 | 2292 | 12899 | 1438 | 1722 | 1830 | 1839 | 1840 | 1841
        | 1843 | 1847 | 1850 | 1858 | 1861 | 1476 | 6502 | 1401 | 25137 | 1426 | 30926 | 1489
        | 1461 | 22835 => ErrorClass::Data,
        _ => ErrorClass::Fatal,
    }
}

/// ODPI-C errors: lost or closed connections and call timeouts are passing conditions.
fn dpi_class(code: i32) -> ErrorClass {
    match code {
        1010 | 1041 | 1067 | 1080 => ErrorClass::Unavailable,
        _ => ErrorClass::Fatal,
    }
}

/// The class of an error and its `ORA-`/`DPI-` code, when there is one.
pub fn classify(e: &oracle::Error) -> (Option<String>, ErrorClass) {
    if let Some(n) = e.oci_code() {
        return (Some(format!("ORA-{n:05}")), class_of(n));
    }
    if let Some(n) = e.dpi_code() {
        return (Some(format!("DPI-{n:04}")), dpi_class(n));
    }
    match e.kind() {
        // A value the agent cannot convert for the column: refused as data.
        ErrorKind::OutOfRange | ErrorKind::ParseError | ErrorKind::InvalidTypeConversion => {
            (None, ErrorClass::Data)
        }
        _ => (None, ErrorClass::Fatal),
    }
}

/// Text bound with an explicit Oracle type (or NULL of that type).
struct Typed<'a>(Option<&'a str>, OracleType);

impl ToSql for Typed<'_> {
    fn oratype(&self, _conn: &oracle::Connection) -> oracle::Result<OracleType> {
        Ok(self.1.clone())
    }

    fn to_sql(&self, val: &mut SqlValue) -> oracle::Result<()> {
        match self.0 {
            Some(s) => val.set(&s),
            None => val.set_null(),
        }
    }
}

/// The Oracle type text is bound as for a column: VARCHAR2 (an NVARCHAR2 bind would make
/// Oracle convert a VARCHAR2 column to compare it, and miss its index), NVARCHAR2 for the
/// national types, CLOB for CLOBs (a string over 4000 bytes cannot be a VARCHAR2 in SQL).
fn text_type(col: Option<&Col>, len: usize) -> OracleType {
    let n = u32::try_from(len.max(1)).unwrap_or(u32::MAX);
    match col.map(|c| c.native.as_str()) {
        Some(t) if t.starts_with("nclob") => OracleType::NCLOB,
        Some(t) if t.starts_with("clob") => OracleType::CLOB,
        Some(t) if t.starts_with("nchar") || t.starts_with("nvarchar") => OracleType::NVarchar2(n),
        _ => OracleType::Varchar2(n),
    }
}

/// A [`Value`] as an Oracle bind. `col` is the column the value goes into or is compared
/// with, when the statement knows it: a NULL is then bound with the column's type (the rows
/// of a `MERGE`'s union must agree). Decimals go as NUMBER from their text, never through a
/// float. Oracle has no time-of-day type: times go as their text. An empty string is NULL in
/// Oracle.
pub fn bind<'a>(v: &'a Value, col: Option<&Col>) -> Box<dyn ToSql + 'a> {
    match v {
        Value::Null => match col.map(|c| c.ty) {
            Some(ColType::Int | ColType::Bool) => Box::new(None::<i64>),
            Some(ColType::Float) => Box::new(None::<f64>),
            Some(ColType::Decimal) => Box::new(Typed(None, OracleType::Number(0, 0))),
            Some(ColType::Bytes) => Box::new(None::<Vec<u8>>),
            Some(ColType::Date) => Box::new(None::<NaiveDate>),
            Some(ColType::Timestamp) => Box::new(None::<NaiveDateTime>),
            Some(ColType::TimestampTz) => Box::new(None::<DateTime<Utc>>),
            _ => Box::new(Typed(None, text_type(col, 1))),
        },
        Value::Bool(b) => Box::new(i64::from(*b)),
        Value::Int(i) => Box::new(*i),
        Value::Float(f) => Box::new(*f),
        Value::Decimal(s) => Box::new(Typed(Some(s), OracleType::Number(0, 0))),
        Value::Text(s) => Box::new(Typed(Some(s), text_type(col, s.len()))),
        Value::Bytes(b) => Box::new(b.as_slice()),
        Value::Date(d) => Box::new(*d),
        Value::Time(t) => Box::new(t.format("%H:%M:%S%.f").to_string()),
        Value::Timestamp(t) => Box::new(*t),
        Value::TimestampTz(t) => Box::new(*t),
    }
}

/// A number's text as `TO_CHAR(n, 'TM9')` gives it, in the exchange's decimal form: `.5`
/// becomes `0.5`, `-.5` `-0.5`. Scientific notation (a number beyond 64 digits) is refused.
pub fn decimal(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.contains(['E', 'e']) || s.is_empty() {
        return Err(format!("`{s}` is not a plain decimal"));
    }
    Ok(match s.strip_prefix('-') {
        Some(rest) if rest.starts_with('.') => format!("-0{rest}"),
        _ if s.starts_with('.') => format!("0{s}"),
        _ => s.to_owned(),
    })
}

fn get<T: oracle::sql_type::FromSql>(v: &SqlValue) -> Result<T, String> {
    v.get::<T>().map_err(|e| e.to_string())
}

/// A single-precision float as the double of its shortest decimal text (0.1, not
/// 0.10000000149011612).
fn shortest(f: f32) -> Result<f64, String> {
    f.to_string()
        .parse::<f64>()
        .map_err(|e| format!("binary_float {f}: {e}"))
}

/// Decode one cell as its column's kind.
pub fn decode(v: &SqlValue, c: &Col) -> Result<Value, String> {
    if v.is_null().map_err(|e| e.to_string())? {
        return Ok(Value::Null);
    }
    Ok(match c.ty {
        ColType::Bool | ColType::Int => Value::Int(get::<i64>(v)?),
        // A BINARY_FLOAT is exactly its shortest decimal text, not the double nearest to it.
        ColType::Float if c.native.starts_with("binary_float") => {
            Value::Float(shortest(get::<f32>(v)?)?)
        }
        ColType::Float => Value::Float(get::<f64>(v)?),
        ColType::Decimal => Value::Decimal(decimal(&get::<String>(v)?)?),
        ColType::Text | ColType::Other => Value::Text(get::<String>(v)?),
        ColType::Bytes => Value::Bytes(get::<Vec<u8>>(v)?),
        ColType::Date => Value::Date(get::<NaiveDate>(v)?),
        ColType::Time => {
            let s = get::<String>(v)?;
            Value::Time(
                chrono::NaiveTime::parse_from_str(&s, "%H:%M:%S%.f")
                    .map_err(|e| format!("`{s}` is not a time of day: {e}"))?,
            )
        }
        ColType::Timestamp => Value::Timestamp(get::<NaiveDateTime>(v)?),
        ColType::TimestampTz => Value::TimestampTz(get::<DateTime<Utc>>(v)?),
    })
}

/// The exchange kind of an Oracle column (`DATA_TYPE`, `DATA_PRECISION`, `DATA_SCALE`).
/// `DATE` holds a time of day too, so it is a timestamp. `NUMBER(p, 0)` up to 18 digits is an
/// integer; other numbers (`INTEGER` is `NUMBER(38)`) and `FLOAT` travel as exact decimals.
pub fn col_type(data_type: &str, precision: Option<i64>, scale: Option<i64>) -> ColType {
    let t = data_type.to_ascii_lowercase();
    match t.as_str() {
        "number" if scale == Some(0) && precision.is_some_and(|p| p <= 18) => ColType::Int,
        "number" | "float" => ColType::Decimal,
        "binary_float" | "binary_double" => ColType::Float,
        "char" | "nchar" | "varchar2" | "nvarchar2" | "varchar" | "clob" | "nclob" | "long" => {
            ColType::Text
        }
        "raw" | "blob" | "long raw" => ColType::Bytes,
        "date" => ColType::Timestamp,
        t if t.starts_with("timestamp") && t.ends_with("time zone") => ColType::TimestampTz,
        t if t.starts_with("timestamp") => ColType::Timestamp,
        _ => ColType::Other,
    }
}

/// The full type name of a column (`number(12,2)`, `varchar2(50 char)`, `char(6)`,
/// `timestamp(6)`), lower case.
pub fn native(
    data_type: &str,
    precision: Option<i64>,
    scale: Option<i64>,
    length: Option<i64>,
    chars: Option<i64>,
    char_used: Option<&str>,
) -> String {
    let t = data_type.to_ascii_lowercase();
    let semantics = if char_used == Some("C") { " char" } else { "" };
    match (t.as_str(), precision, scale) {
        ("number", Some(p), Some(0)) => format!("number({p})"),
        ("number", Some(p), Some(s)) => format!("number({p},{s})"),
        ("number", None, Some(0)) => "number(38)".into(),
        ("float", Some(p), _) => format!("float({p})"),
        ("char" | "varchar2", ..) => match (chars, length) {
            (Some(n), _) if semantics.is_empty() => format!("{t}({})", length.unwrap_or(n)),
            (Some(n), _) => format!("{t}({n}{semantics})"),
            (None, Some(n)) => format!("{t}({n})"),
            _ => t,
        },
        ("nchar" | "nvarchar2", ..) => match chars {
            Some(n) => format!("{t}({n})"),
            None => t,
        },
        ("raw", ..) => match length {
            Some(n) => format!("raw({n})"),
            None => t,
        },
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_floats_read_as_their_shortest_text() {
        assert_eq!(shortest(0.1), Ok(0.1));
        assert_eq!(shortest(-3.25e-7), Ok(-3.25e-7));
        assert_ne!(f64::from(0.1f32), 0.1, "widening alone is not enough");
    }

    #[test]
    fn errors_are_classified_by_number() {
        for (n, class) in [
            (60, ErrorClass::Transient),      // deadlock detected
            (8177, ErrorClass::Transient),    // cannot serialize access
            (3113, ErrorClass::Unavailable),  // end-of-file on communication channel
            (12541, ErrorClass::Unavailable), // no listener
            (12514, ErrorClass::Unavailable), // listener does not know the service
            (1, ErrorClass::Data),            // unique constraint violated
            (1400, ErrorClass::Data),         // cannot insert NULL
            (12899, ErrorClass::Data),        // value too large for column
            (1438, ErrorClass::Data),         // value larger than precision
            (1722, ErrorClass::Data),         // invalid number
            (2291, ErrorClass::Data),         // parent key not found
            (942, ErrorClass::Fatal),         // table or view does not exist
            (1031, ErrorClass::Fatal),        // insufficient privileges
            (904, ErrorClass::Fatal),         // invalid identifier
            (1017, ErrorClass::Fatal),        // invalid username/password
        ] {
            assert_eq!(class_of(n), class, "ORA-{n:05}");
        }
        assert_eq!(dpi_class(1080), ErrorClass::Unavailable); // connection was closed
        assert_eq!(dpi_class(1067), ErrorClass::Unavailable); // call timeout
        assert_eq!(dpi_class(1047), ErrorClass::Fatal); // no Oracle client library
        let e = oracle::Error::new(ErrorKind::OutOfRange, "too big");
        assert_eq!(classify(&e), (None, ErrorClass::Data));
        let e = oracle::Error::new(ErrorKind::InternalError, "x");
        assert_eq!(classify(&e).1, ErrorClass::Fatal);
    }

    #[test]
    fn numbers_become_exchange_decimals() {
        assert_eq!(decimal(".5").as_deref(), Ok("0.5"));
        assert_eq!(decimal("-.25").as_deref(), Ok("-0.25"));
        assert_eq!(decimal("100.5").as_deref(), Ok("100.5"));
        assert_eq!(decimal("-7").as_deref(), Ok("-7"));
        assert!(decimal("1E+100").is_err());
    }

    #[test]
    fn catalog_types_map_to_kinds_and_names() {
        assert_eq!(col_type("NUMBER", Some(10), Some(0)), ColType::Int);
        assert_eq!(col_type("NUMBER", Some(19), Some(0)), ColType::Decimal);
        assert_eq!(col_type("NUMBER", None, Some(0)), ColType::Decimal);
        assert_eq!(col_type("NUMBER", Some(12), Some(2)), ColType::Decimal);
        assert_eq!(col_type("FLOAT", Some(126), None), ColType::Decimal);
        assert_eq!(col_type("BINARY_DOUBLE", None, None), ColType::Float);
        assert_eq!(col_type("DATE", None, None), ColType::Timestamp);
        assert_eq!(col_type("TIMESTAMP(6)", None, Some(6)), ColType::Timestamp);
        assert_eq!(
            col_type("TIMESTAMP(6) WITH TIME ZONE", None, Some(6)),
            ColType::TimestampTz
        );
        assert_eq!(
            col_type("TIMESTAMP(6) WITH LOCAL TIME ZONE", None, Some(6)),
            ColType::TimestampTz
        );
        assert_eq!(col_type("CLOB", None, None), ColType::Text);
        assert_eq!(col_type("RAW", None, None), ColType::Bytes);
        assert_eq!(col_type("XMLTYPE", None, None), ColType::Other);
        let n = |t, p, s, l, c, u| native(t, p, s, l, c, u);
        assert_eq!(
            n("NUMBER", Some(12), Some(2), Some(22), None, None),
            "number(12,2)"
        );
        assert_eq!(
            n("NUMBER", Some(10), Some(0), Some(22), None, None),
            "number(10)"
        );
        assert_eq!(
            n("NUMBER", None, Some(0), Some(22), None, None),
            "number(38)"
        );
        assert_eq!(n("NUMBER", None, None, Some(22), None, None), "number");
        assert_eq!(
            n("CHAR", None, None, Some(6), Some(6), Some("B")),
            "char(6)"
        );
        assert_eq!(
            n("VARCHAR2", None, None, Some(200), Some(50), Some("C")),
            "varchar2(50 char)"
        );
        assert_eq!(
            n("NVARCHAR2", None, None, Some(100), Some(50), Some("C")),
            "nvarchar2(50)"
        );
        assert_eq!(n("RAW", None, None, Some(16), None, None), "raw(16)");
        assert_eq!(
            n(
                "TIMESTAMP(6) WITH TIME ZONE",
                None,
                Some(6),
                Some(13),
                None,
                None
            ),
            "timestamp(6) with time zone"
        );
    }
}
