//! Values that travel from a source row to the exchange, and the column types they land in.
//!
//! Every engine decodes its rows into [`Value`]s and binds [`Value`]s when it writes, so a value
//! crosses engines exactly: decimals travel as their decimal text (never as floats), timestamps
//! keep microseconds, instants with a time zone stay instants.

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One cell of a row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Exact decimal as text: optional `-`, digits, optional `.` and digits.
    Decimal(String),
    Text(String),
    Bytes(#[serde(with = "hex_bytes")] Vec<u8>),
    Date(NaiveDate),
    Time(NaiveTime),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
}

/// The kind of a column, as far as exchanging values is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColType {
    Bool,
    Int,
    Float,
    Decimal,
    Text,
    Bytes,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    /// Anything else (json, uuid, enums, intervals, ...): carried as its text form.
    Other,
}

impl ColType {
    /// Whether a column of this type can carry a change time (timestamp-like watermark).
    pub fn is_time_like(self) -> bool {
        matches!(
            self,
            ColType::Date | ColType::Timestamp | ColType::TimestampTz | ColType::Text
        )
    }
}

const TS_FMT: &str = "%Y-%m-%d %H:%M:%S%.6f";

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Canonical text of the value: used for record keys, text targets and messages.
    pub fn to_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Decimal(s) | Value::Text(s) => s.clone(),
            Value::Bytes(b) => hex::encode(b),
            Value::Date(d) => fast::date(*d).unwrap_or_else(|| d.format("%Y-%m-%d").to_string()),
            Value::Time(t) => fast::time(*t).unwrap_or_else(|| t.format("%H:%M:%S%.f").to_string()),
            Value::Timestamp(t) => {
                fast::timestamp(*t, ' ', "").unwrap_or_else(|| t.format(TS_FMT).to_string())
            }
            Value::TimestampTz(t) => fast::timestamp(t.naive_utc(), ' ', "+00:00")
                .unwrap_or_else(|| t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string()),
        }
    }

    /// A text that sorts like the value for the time-like values used as change times.
    pub fn sort_text(&self) -> String {
        match self {
            Value::TimestampTz(t) => fast::timestamp(t.naive_utc(), 'T', "Z")
                .unwrap_or_else(|| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
            other => other.to_text(),
        }
    }

    /// Feed a type-tagged, unambiguous encoding of the value to `h`, a piece at a time.
    pub fn feed(&self, h: &mut impl FnMut(&[u8])) {
        let (tag, body): (u8, std::borrow::Cow<'_, [u8]>) = match self {
            Value::Null => (0, (&[][..]).into()),
            Value::Bool(b) => (1, vec![u8::from(*b)].into()),
            Value::Int(i) => (2, i.to_be_bytes().to_vec().into()),
            Value::Float(f) => (3, f.to_bits().to_be_bytes().to_vec().into()),
            Value::Decimal(s) => (4, s.as_bytes().into()),
            Value::Text(s) => (5, s.as_bytes().into()),
            Value::Bytes(b) => (6, b.as_slice().into()),
            _ => (7, self.to_text().into_bytes().into()),
        };
        h(&[tag]);
        h(&(body.len() as u64).to_be_bytes());
        h(&body);
    }

    /// A time-like value moved back by `by` (the lookback window). Text values are parsed
    /// with `text_format`, shifted and written back in the same format; `None` when the
    /// value cannot be shifted (then no lookback applies).
    pub fn minus(&self, by: std::time::Duration, text_format: &str) -> Option<Value> {
        let by = chrono::Duration::from_std(by).ok()?;
        match self {
            Value::Timestamp(t) => t.checked_sub_signed(by).map(Value::Timestamp),
            Value::TimestampTz(t) => t.checked_sub_signed(by).map(Value::TimestampTz),
            Value::Date(d) => {
                let days = by.num_days() + i64::from(by.num_seconds() % 86_400 != 0);
                d.checked_sub_signed(chrono::Duration::days(days))
                    .map(Value::Date)
            }
            Value::Text(s) => {
                let t = NaiveDateTime::parse_from_str(s, text_format).ok()?;
                let shifted = t.checked_sub_signed(by)?;
                Some(Value::Text(shifted.format(text_format).to_string()))
            }
            _ => None,
        }
    }

    /// The instant of a time-like value, for lag figures; naive times are read in `tz`.
    pub fn instant(&self, tz: &Tz, text_format: &str) -> Option<DateTime<Utc>> {
        let naive = match self {
            Value::TimestampTz(t) => return Some(*t),
            Value::Timestamp(t) => *t,
            Value::Date(d) => d.and_time(NaiveTime::MIN),
            Value::Text(s) => NaiveDateTime::parse_from_str(s, text_format)
                .ok()
                .or_else(|| parse_naive_datetime(s))?,
            _ => return None,
        };
        tz.from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    }

    /// Convert the value to what a target column of type `to` accepts. Naive times are
    /// local times of `tz`. The error says what could not be converted.
    pub fn coerce(self, to: ColType, tz: &Tz) -> Result<Value, String> {
        use Value as V;
        let v = match (to, self) {
            (_, V::Null) => V::Null,
            (ColType::Other, V::Bytes(b)) => V::Text(hex::encode(b)),
            (ColType::Text, V::Bytes(b)) => match String::from_utf8(b) {
                Ok(s) => V::Text(s),
                Err(_) => return Err("binary value is not UTF-8 text".into()),
            },
            (ColType::Text | ColType::Other, V::Text(s)) => V::Text(s),
            (ColType::Text | ColType::Other, v) => V::Text(v.to_text()),
            (ColType::Bool, V::Bool(b)) => V::Bool(b),
            (ColType::Bool, V::Int(0)) => V::Bool(false),
            (ColType::Bool, V::Int(1)) => V::Bool(true),
            (ColType::Bool, V::Text(s)) => V::Bool(parse_bool(&s)?),
            (ColType::Int, V::Int(i)) => V::Int(i),
            (ColType::Int, V::Bool(b)) => V::Int(i64::from(b)),
            (ColType::Int, V::Decimal(s) | V::Text(s)) => V::Int(parse_int(&s)?),
            (ColType::Int, V::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => V::Int(f as i64),
            (ColType::Float, V::Float(f)) => V::Float(f),
            (ColType::Float, V::Int(i)) => V::Float(i as f64),
            (ColType::Float, V::Decimal(s) | V::Text(s)) => V::Float(
                s.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("`{s}` is not a number"))?,
            ),
            (ColType::Decimal, V::Decimal(s)) => V::Decimal(s),
            (ColType::Decimal, V::Int(i)) => V::Decimal(i.to_string()),
            (ColType::Decimal, V::Bool(b)) => V::Decimal(u8::from(b).to_string()),
            (ColType::Decimal, V::Float(f)) if f.is_finite() => V::Decimal(f.to_string()),
            (ColType::Decimal, V::Text(s)) => V::Decimal(parse_decimal(&s)?),
            (ColType::Bytes, V::Bytes(b)) => V::Bytes(b),
            (ColType::Bytes, V::Text(s)) => V::Bytes(s.into_bytes()),
            (ColType::Date, V::Date(d)) => V::Date(d),
            (ColType::Date, V::Timestamp(t)) if t.time() == NaiveTime::MIN => V::Date(t.date()),
            (ColType::Date, V::Text(s)) => V::Date(parse_date(&s)?),
            (ColType::Time, V::Time(t)) => V::Time(t),
            (ColType::Time, V::Text(s)) => V::Time(
                NaiveTime::parse_from_str(s.trim(), "%H:%M:%S%.f")
                    .map_err(|_| format!("`{s}` is not a time of day"))?,
            ),
            (ColType::Timestamp, V::Timestamp(t)) => V::Timestamp(t),
            (ColType::Timestamp, V::Date(d)) => V::Timestamp(d.and_time(NaiveTime::MIN)),
            (ColType::Timestamp, V::TimestampTz(t)) => {
                V::Timestamp(t.with_timezone(tz).naive_local())
            }
            (ColType::Timestamp, V::Text(s)) => match parse_datetime(&s)? {
                Parsed::Naive(t) => V::Timestamp(t),
                Parsed::Instant(t) => V::Timestamp(t.with_timezone(tz).naive_local()),
            },
            (ColType::TimestampTz, V::TimestampTz(t)) => V::TimestampTz(t),
            (ColType::TimestampTz, V::Timestamp(t)) => V::TimestampTz(local_to_utc(t, tz)?),
            (ColType::TimestampTz, V::Date(d)) => {
                V::TimestampTz(local_to_utc(d.and_time(NaiveTime::MIN), tz)?)
            }
            (ColType::TimestampTz, V::Text(s)) => match parse_datetime(&s)? {
                Parsed::Naive(t) => V::TimestampTz(local_to_utc(t, tz)?),
                Parsed::Instant(t) => V::TimestampTz(t),
            },
            (to, v) => {
                return Err(format!(
                    "a {} value cannot be stored in a {} column",
                    v.kind(),
                    to_name(to)
                ));
            }
        };
        Ok(v)
    }

    /// Whether [`Value::coerce`] to `to` gives the value back unchanged (so it can be moved
    /// rather than converted).
    pub fn passes_as(&self, to: ColType) -> bool {
        matches!(
            (to, self),
            (_, Value::Null)
                | (ColType::Text | ColType::Other, Value::Text(_))
                | (ColType::Bool, Value::Bool(_))
                | (ColType::Int, Value::Int(_))
                | (ColType::Float, Value::Float(_))
                | (ColType::Decimal, Value::Decimal(_))
                | (ColType::Bytes, Value::Bytes(_))
                | (ColType::Date, Value::Date(_))
                | (ColType::Time, Value::Time(_))
                | (ColType::Timestamp, Value::Timestamp(_))
                | (ColType::TimestampTz, Value::TimestampTz(_))
        )
    }

    /// Short name of the value's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "floating-point",
            Value::Decimal(_) => "decimal",
            Value::Text(_) => "text",
            Value::Bytes(_) => "binary",
            Value::Date(_) => "date",
            Value::Time(_) => "time",
            Value::Timestamp(_) => "timestamp",
            Value::TimestampTz(_) => "timestamp with time zone",
        }
    }
}

fn to_name(t: ColType) -> &'static str {
    match t {
        ColType::Bool => "boolean",
        ColType::Int => "integer",
        ColType::Float => "floating-point",
        ColType::Decimal => "decimal",
        ColType::Text => "text",
        ColType::Bytes => "binary",
        ColType::Date => "date",
        ColType::Time => "time",
        ColType::Timestamp => "timestamp",
        ColType::TimestampTz => "timestamp with time zone",
        ColType::Other => "other",
    }
}

fn local_to_utc(t: NaiveDateTime, tz: &Tz) -> Result<DateTime<Utc>, String> {
    tz.from_local_datetime(&t)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("{t} does not exist in time zone {tz}"))
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "y" | "yes" => Ok(true),
        "0" | "f" | "false" | "n" | "no" => Ok(false),
        _ => Err(format!("`{s}` is not a boolean")),
    }
}

fn parse_int(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let t = match t.split_once('.') {
        Some((int, frac)) if frac.bytes().all(|b| b == b'0') => int,
        _ => t,
    };
    t.parse::<i64>()
        .map_err(|_| format!("`{s}` is not an integer"))
}

/// Validate and normalise decimal text (`+1.50` becomes `1.50`; scale is kept).
pub fn parse_decimal(s: &str) -> Result<String, String> {
    let t = s.trim();
    let (sign, digits) = match t.as_bytes().first() {
        Some(b'-') => ("-", &t[1..]),
        Some(b'+') => ("", &t[1..]),
        _ => ("", t),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let ok = !(int.is_empty() && frac.is_empty())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(digits.contains('.') && frac.is_empty() && int.is_empty());
    if !ok {
        return Err(format!("`{s}` is not a decimal number"));
    }
    let int = if int.is_empty() { "0" } else { int };
    let mut out = String::with_capacity(t.len() + 1);
    out.push_str(sign);
    out.push_str(int);
    if !frac.is_empty() {
        let _ = write!(out, ".{frac}");
    }
    Ok(out)
}

fn parse_date(s: &str) -> Result<NaiveDate, String> {
    let t = s.trim();
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(t, "%Y%m%d"))
        .or_else(|_| NaiveDate::parse_from_str(t, "%Y/%m/%d"))
        .map_err(|_| format!("`{s}` is not a date"))
}

enum Parsed {
    Naive(NaiveDateTime),
    Instant(DateTime<Utc>),
}

const NAIVE_FORMATS: [&str; 5] = [
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y%m%d%H%M%S",
    "%Y-%m-%d %H:%M",
];

/// Parse the usual textual forms of a local date-time (with or without fraction, `T` or
/// space separated, compact `yyyyMMddHHmmss`, or a bare date).
pub fn parse_naive_datetime(s: &str) -> Option<NaiveDateTime> {
    let t = s.trim();
    NAIVE_FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        .or_else(|| parse_date(t).ok().map(|d| d.and_time(NaiveTime::MIN)))
}

fn parse_datetime(s: &str) -> Result<Parsed, String> {
    let t = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(Parsed::Instant(dt.with_timezone(&Utc)));
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(dt) = DateTime::parse_from_str(t, f) {
            return Ok(Parsed::Instant(dt.with_timezone(&Utc)));
        }
    }
    if let Some(rest) = t.strip_suffix(" UTC").or_else(|| t.strip_suffix('Z'))
        && let Some(n) = parse_naive_datetime(rest)
    {
        return Ok(Parsed::Instant(
            Utc.fix().from_utc_datetime(&n).with_timezone(&Utc),
        ));
    }
    parse_naive_datetime(t)
        .map(Parsed::Naive)
        .ok_or_else(|| format!("`{s}` is not a date and time"))
}

/// Digest of a row's values (hex of the first 16 bytes of SHA-256).
pub fn row_digest(values: &[Value]) -> [u8; 16] {
    let mut h = Sha256::new();
    let mut update = |b: &[u8]| h.update(b);
    for v in values {
        v.feed(&mut update);
    }
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// The text of a record key: key values in key order joined by `|` (a `|` or `\` inside a
/// value is escaped with `\`). This is the `record_key` the province's feedback uses.
pub fn key_text(values: &[&Value]) -> String {
    if let [v] = values {
        let t = v.to_text();
        if !t.contains(['|', '\\']) {
            return t;
        }
    }
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        for c in v.to_text().chars() {
            if c == '|' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// The texts of dates and times without going through `strftime` (hot: every exchanged row's
/// digest and position). Each gives exactly chrono's text for the formats above, or `None`
/// where it would not (years outside 0..=9999, leap seconds) and chrono is asked instead.
mod fast {
    use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

    fn digits(out: &mut String, n: u32, width: usize) {
        let mut buf = [b'0'; 10];
        let mut n = n;
        for i in (0..width).rev() {
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.extend(buf[..width].iter().map(|&b| b as char));
    }

    fn push_date(out: &mut String, d: NaiveDate) -> Option<()> {
        let y = u32::try_from(d.year()).ok().filter(|y| *y <= 9999)?;
        digits(out, y, 4);
        out.push('-');
        digits(out, d.month(), 2);
        out.push('-');
        digits(out, d.day(), 2);
        Some(())
    }

    fn push_hms(out: &mut String, t: NaiveTime) -> Option<u32> {
        let nanos = t.nanosecond();
        if nanos >= 1_000_000_000 {
            return None;
        }
        digits(out, t.hour(), 2);
        out.push(':');
        digits(out, t.minute(), 2);
        out.push(':');
        digits(out, t.second(), 2);
        Some(nanos)
    }

    /// `%Y-%m-%d`
    pub fn date(d: NaiveDate) -> Option<String> {
        let mut out = String::with_capacity(10);
        push_date(&mut out, d)?;
        Some(out)
    }

    /// `%H:%M:%S%.f`: no fraction, or 3, 6 or 9 digits.
    pub fn time(t: NaiveTime) -> Option<String> {
        let mut out = String::with_capacity(18);
        let nanos = push_hms(&mut out, t)?;
        if nanos == 0 {
        } else if nanos % 1_000_000 == 0 {
            out.push('.');
            digits(&mut out, nanos / 1_000_000, 3);
        } else if nanos % 1_000 == 0 {
            out.push('.');
            digits(&mut out, nanos / 1_000, 6);
        } else {
            out.push('.');
            digits(&mut out, nanos, 9);
        }
        Some(out)
    }

    /// `%Y-%m-%d{sep}%H:%M:%S%.6f{suffix}`
    pub fn timestamp(t: NaiveDateTime, sep: char, suffix: &str) -> Option<String> {
        let mut out = String::with_capacity(26 + suffix.len());
        push_date(&mut out, t.date())?;
        out.push(sep);
        let nanos = push_hms(&mut out, t.time())?;
        out.push('.');
        digits(&mut out, nanos / 1_000, 6);
        out.push_str(suffix);
        Some(out)
    }
}

#[cfg(test)]
#[path = "value_tests.rs"]
mod tests;
