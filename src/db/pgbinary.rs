//! PostgreSQL's binary `COPY` format, used to write batches into the exchange and to read
//! rows from a source: no text to format or parse on either side. Only columns of well-known
//! base types are written this way; a table with any other column (a domain, an enum, json,
//! arrays...), or a part with a value of another kind than its column's, is copied in text
//! format instead. Reads select such columns as text (see `Dialect::select_expr`).

use bytes::Bytes;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use super::ReadRow;
use crate::ident::Col;
use crate::value::{ColType, Value};

/// How a column's values are written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Kind {
    Bool,
    I2,
    I4,
    I8,
    F4,
    F8,
    Numeric,
    Text,
    Bytes,
    Date,
    Time,
    Timestamp,
    TimestampTz,
}

/// `PGCOPY\n\377\r\n\0`, no flags, no header extension.
pub(super) const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The file trailer: a tuple of -1 fields.
pub(super) const TRAILER: &[u8] = &[0xff, 0xff];

/// The binary kinds of the columns, or `None` when one of them has no binary form here.
pub(super) fn kinds(cols: &[Col]) -> Option<Vec<Kind>> {
    cols.iter()
        .map(|c| {
            let native = c.native.as_str();
            Some(match c.ty {
                ColType::Bool => Kind::Bool,
                ColType::Int if native == "smallint" => Kind::I2,
                ColType::Int if native == "integer" => Kind::I4,
                ColType::Int if native == "bigint" => Kind::I8,
                ColType::Float if native == "real" => Kind::F4,
                ColType::Float if native == "double precision" => Kind::F8,
                ColType::Decimal if native.starts_with("numeric") => Kind::Numeric,
                ColType::Text
                    if native == "text" || native.starts_with("character") || native == "name" =>
                {
                    Kind::Text
                }
                ColType::Bytes if native == "bytea" => Kind::Bytes,
                ColType::Date if native == "date" => Kind::Date,
                ColType::Time
                    if native.starts_with("time") && native.ends_with("without time zone") =>
                {
                    Kind::Time
                }
                ColType::Timestamp
                    if native.starts_with("timestamp") && native.ends_with("without time zone") =>
                {
                    Kind::Timestamp
                }
                ColType::TimestampTz
                    if native.starts_with("timestamp") && native.ends_with("with time zone") =>
                {
                    Kind::TimestampTz
                }
                _ => return None,
            })
        })
        .collect()
}

fn epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .unwrap_or_default()
        .and_time(NaiveTime::MIN)
}

/// Append one tuple; false (and `buf` unchanged) when a value does not fit its column's kind.
pub(super) fn row(buf: &mut Vec<u8>, kinds: &[Kind], values: &[Value]) -> bool {
    let start = buf.len();
    buf.extend_from_slice(&(values.len() as i16).to_be_bytes());
    for (k, v) in kinds.iter().zip(values) {
        if !field(buf, *k, v) {
            buf.truncate(start);
            return false;
        }
    }
    true
}

/// The bytes `rows` take in binary `COPY` format, header and trailer included: at least as
/// many for every value but a numeric written from an integer of more than 8 digits.
pub(super) fn size_hint(rows: &[Vec<Value>]) -> usize {
    let values: usize = rows
        .iter()
        .flatten()
        .map(|v| match v {
            Value::Null => 4,
            Value::Text(s) => 4 + s.len(),
            // 8 bytes of header, 2 for every group of up to 4 digits on either side of the point.
            Value::Decimal(s) => 16 + s.len(),
            Value::Bytes(b) => 4 + b.len(),
            _ => 12,
        })
        .sum();
    HEADER.len() + TRAILER.len() + 2 * rows.len() + values
}

fn sized(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    buf.extend_from_slice(bytes);
}

fn field(buf: &mut Vec<u8>, k: Kind, v: &Value) -> bool {
    match (k, v) {
        (_, Value::Null) => buf.extend_from_slice(&(-1i32).to_be_bytes()),
        (Kind::Bool, Value::Bool(b)) => sized(buf, &[u8::from(*b)]),
        (Kind::I2, Value::Int(i)) => match i16::try_from(*i) {
            Ok(i) => sized(buf, &i.to_be_bytes()),
            Err(_) => return false,
        },
        (Kind::I4, Value::Int(i)) => match i32::try_from(*i) {
            Ok(i) => sized(buf, &i.to_be_bytes()),
            Err(_) => return false,
        },
        (Kind::I8, Value::Int(i)) => sized(buf, &i.to_be_bytes()),
        (Kind::F4, Value::Float(f)) => sized(buf, &(*f as f32).to_be_bytes()),
        (Kind::F8, Value::Float(f)) => sized(buf, &f.to_be_bytes()),
        (Kind::Numeric, Value::Decimal(s)) => return numeric(buf, s),
        (Kind::Numeric, Value::Int(i)) => return numeric(buf, &i.to_string()),
        // A NUL in text was refused when the row was mapped (the server refuses it too).
        (Kind::Text, Value::Text(s)) => sized(buf, s.as_bytes()),
        (Kind::Bytes, Value::Bytes(b)) => sized(buf, b),
        (Kind::Date, Value::Date(d)) => {
            let days = d.signed_duration_since(epoch().date()).num_days();
            match i32::try_from(days) {
                Ok(days) => sized(buf, &days.to_be_bytes()),
                Err(_) => return false,
            }
        }
        (Kind::Time, Value::Time(t)) => {
            let us = i64::from(t.num_seconds_from_midnight()) * 1_000_000
                + i64::from(t.nanosecond() / 1_000);
            sized(buf, &us.to_be_bytes())
        }
        (Kind::Timestamp, Value::Timestamp(t)) => match micros(*t) {
            Some(us) => sized(buf, &us.to_be_bytes()),
            None => return false,
        },
        (Kind::TimestampTz, Value::TimestampTz(t)) => match micros(t.naive_utc()) {
            Some(us) => sized(buf, &us.to_be_bytes()),
            None => return false,
        },
        _ => return false,
    }
    true
}

/// Microseconds since 2000-01-01 00:00:00 (PostgreSQL's timestamp epoch), rounded to the
/// microsecond like the text input.
/// A value read in binary format, by the exchange kind of its column; `None` when the bytes
/// are not what that kind's base types send (the caller then lets sqlx decode them, and say
/// why they cannot be read). Types of no kind here (`ColType::Other`) are selected as text.
pub(super) fn read(ty: ColType, b: &[u8]) -> Option<Value> {
    let be8 = |b: &[u8]| <[u8; 8]>::try_from(b).ok();
    Some(match ty {
        ColType::Bool => match b {
            [v] => Value::Bool(*v != 0),
            _ => return None,
        },
        ColType::Int => Value::Int(match b.len() {
            2 => i64::from(i16::from_be_bytes([b[0], b[1]])),
            4 => i64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            _ => i64::from_be_bytes(be8(b)?),
        }),
        ColType::Float => Value::Float(match b.len() {
            4 => f64::from(f32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            _ => f64::from_be_bytes(be8(b)?),
        }),
        ColType::Decimal => Value::Decimal(numeric_text(b)?),
        ColType::Text | ColType::Other => {
            Value::Text(simdutf8::basic::from_utf8(b).ok()?.to_owned())
        }
        ColType::Bytes => Value::Bytes(b.to_vec()),
        ColType::Date => {
            let days = i32::from_be_bytes(<[u8; 4]>::try_from(b).ok()?);
            Value::Date(
                epoch()
                    .date()
                    .checked_add_signed(chrono::Duration::days(days.into()))?,
            )
        }
        ColType::Time => {
            let us = i64::from_be_bytes(be8(b)?);
            let secs = u32::try_from(us.div_euclid(1_000_000)).ok()?;
            let nanos = u32::try_from(us.rem_euclid(1_000_000) * 1_000).ok()?;
            Value::Time(NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)?)
        }
        ColType::Timestamp => Value::Timestamp(from_micros(i64::from_be_bytes(be8(b)?))?),
        ColType::TimestampTz => {
            Value::TimestampTz(from_micros(i64::from_be_bytes(be8(b)?))?.and_utc())
        }
    })
}

/// A binary NUMERIC as the text PostgreSQL writes for it (`-12.50`, `0.0012`, `NaN`).
fn numeric_text(b: &[u8]) -> Option<String> {
    use std::fmt::Write as _;
    let word = |i: usize| Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]));
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(word(2)? as i16);
    let sign = word(4)?;
    let dscale = usize::from(word(6)?);
    if b.len() != 8 + 2 * ndigits || dscale > 0x3fff {
        return None;
    }
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        0 | 0x4000 => {}
        _ => return None,
    }
    // Base-10000 digit `k` (0 = most significant) has weight `weight - k`.
    let mut digits = Vec::with_capacity(ndigits);
    for k in 0..ndigits {
        let d = word(8 + 2 * k)?;
        if d > 9999 {
            return None;
        }
        digits.push(d);
    }
    let digit = |k: i64| usize::try_from(k).ok().and_then(|k| digits.get(k)).copied();
    let mut out = String::with_capacity(8 + 4 * ndigits + dscale);
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    }
    for k in 0..=weight {
        let d = digit(k).unwrap_or(0);
        let _ = if k == 0 {
            write!(out, "{d}")
        } else {
            write!(out, "{d:04}")
        };
    }
    if dscale > 0 {
        out.push('.');
        let start = out.len();
        let mut k = weight + 1;
        while out.len() - start < dscale {
            let _ = write!(out, "{:04}", digit(k).unwrap_or(0));
            k += 1;
        }
        out.truncate(start + dscale);
    }
    Some(out)
}

/// A time `us` microseconds after 2000-01-01 00:00 (`None` for ±infinity and beyond chrono).
fn from_micros(us: i64) -> Option<NaiveDateTime> {
    const DAY: i64 = 86_400_000_000;
    if us == i64::MAX || us == i64::MIN {
        return None;
    }
    let days = us.div_euclid(DAY);
    let rest = us.rem_euclid(DAY);
    let date = epoch()
        .date()
        .checked_add_signed(chrono::Duration::days(days))?;
    let secs = u32::try_from(rest / 1_000_000).ok()?;
    let nanos = u32::try_from(rest % 1_000_000 * 1_000).ok()?;
    Some(date.and_time(NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)?))
}

fn micros(t: NaiveDateTime) -> Option<i64> {
    let d = t.signed_duration_since(epoch());
    let us = d.num_microseconds()?;
    let rest = d.subsec_nanos().rem_euclid(1_000);
    Some(if rest >= 500 { us + 1 } else { us })
}

/// A decimal string (`-123.4500`, `0.001`, `10`) as PostgreSQL's binary numeric: digit count,
/// weight, sign, display scale, then base-10000 digits. False for anything else (`NaN`,
/// exponents), which the text format then carries.
fn numeric(buf: &mut Vec<u8>, s: &str) -> bool {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return false;
    }
    let Ok(dscale) = i16::try_from(frac.len()) else {
        return false;
    };
    let int = int.trim_start_matches('0');
    // Pad the integer part on the left and the fraction on the right to groups of four.
    let lead = (4 - int.len() % 4) % 4;
    let trail = (4 - frac.len() % 4) % 4;
    let mut all = Vec::with_capacity(lead + int.len() + frac.len() + trail);
    all.extend(std::iter::repeat_n(0u8, lead));
    all.extend(int.bytes().map(|b| b - b'0'));
    all.extend(frac.bytes().map(|b| b - b'0'));
    all.extend(std::iter::repeat_n(0u8, trail));
    let mut digits: Vec<i16> = all
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |n, &d| n * 10 + i16::from(d)))
        .collect();
    let Ok(mut weight) = i16::try_from((lead + int.len()) / 4) else {
        return false;
    };
    weight -= 1;
    let first = digits.iter().position(|&d| d != 0);
    let Some(first) = first else {
        // Zero: no digits, positive.
        let mut out = [0u8; 8];
        out[6..8].copy_from_slice(&dscale.to_be_bytes());
        sized(buf, &out);
        return true;
    };
    digits.drain(..first);
    weight -= first as i16;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    let mut out = Vec::with_capacity(8 + digits.len() * 2);
    out.extend_from_slice(&(digits.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&(if neg { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for d in digits {
        out.extend_from_slice(&d.to_be_bytes());
    }
    sized(buf, &out);
    true
}

/// The rows of a `COPY ... TO STDOUT (FORMAT binary)`, taken from its data as it arrives.
/// PostgreSQL sends a row per message, but the protocol does not promise that: a row split
/// across messages is held until it is whole.
///
/// Read for a pass-through (see [`super::Db::fetch_tuples`]), every row also keeps its tuple
/// as it arrived, and only the columns marked in `decode` are decoded.
#[derive(Default)]
pub(super) struct CopyOut {
    /// The start of a row (or of the header) whose rest has not arrived yet.
    pending: Vec<u8>,
    header: bool,
    /// The trailer was read: nothing more belongs to the result.
    pub ended: bool,
    /// Keep each row's tuple, and decode only the columns marked here.
    decode: Option<Vec<bool>>,
}

/// The file signature of binary `COPY` data.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

impl CopyOut {
    /// A reader that keeps every row's tuple and decodes only the columns marked in `decode`
    /// (the other values are NULL until [`complete`]).
    pub(super) fn keeping(decode: &[bool]) -> Self {
        CopyOut {
            decode: Some(decode.to_vec()),
            ..CopyOut::default()
        }
    }

    /// Take the rows that `data` completes, decoded by the kinds of `cols`, into `out`.
    /// A value that cannot be read leaves the row's cell NULL and says why in `bad`.
    /// A kept tuple shares `data` (no copy), unless it began in an earlier message.
    pub(super) fn feed(
        &mut self,
        data: &Bytes,
        cols: &[Col],
        out: &mut Vec<ReadRow>,
    ) -> Result<(), String> {
        if self.pending.is_empty() {
            let used = self.rows(data, Some(data), cols, out)?;
            self.pending.extend_from_slice(&data[used..]);
        } else {
            let mut held = std::mem::take(&mut self.pending);
            held.extend_from_slice(data);
            let used = self.rows(&held, None, cols, out)?;
            held.drain(..used);
            self.pending = held;
        }
        Ok(())
    }

    /// Whether data of an unfinished row is still held.
    pub(super) fn partial(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Read the whole rows at the start of `data`; returns the bytes they took. Kept tuples
    /// are slices of `shared` when given (it is `data`), copies otherwise.
    fn rows(
        &mut self,
        data: &[u8],
        shared: Option<&Bytes>,
        cols: &[Col],
        out: &mut Vec<ReadRow>,
    ) -> Result<usize, String> {
        let be4 = |b: &[u8], at: usize| {
            b.get(at..at + 4)
                .map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        };
        let mut pos = 0;
        if !self.header {
            // Signature, flags, header extension length, header extension.
            let Some(ext) = be4(data, 15) else {
                return Ok(0);
            };
            if !data.starts_with(SIGNATURE) {
                return Err("the COPY data does not start with the binary signature".into());
            }
            let ext = usize::try_from(ext).map_err(|_| "bad COPY header".to_owned())?;
            if data.len() < 19 + ext {
                return Ok(0);
            }
            pos = 19 + ext;
            self.header = true;
        }
        while !self.ended {
            let row = &data[pos..];
            let Some(n) = row.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]])) else {
                break;
            };
            if n == -1 {
                self.ended = true;
                pos += 2;
                break;
            }
            if usize::try_from(n).ok() != Some(cols.len()) {
                return Err(format!(
                    "a row of {n} fields arrived where {} columns were selected",
                    cols.len()
                ));
            }
            // Whole yet?
            let mut end = 2;
            for _ in 0..cols.len() {
                let Some(len) = be4(row, end) else {
                    return Ok(pos);
                };
                end += 4 + usize::try_from(len).unwrap_or(0);
            }
            if row.len() < end {
                return Ok(pos);
            }
            let mut bad = None;
            let values = match self.decode.as_deref() {
                // A pass-through row: its vector comes back when its batch is written.
                Some(only) => {
                    let mut v = super::row_values(cols.len());
                    v.extend(decoded(&row[..end], cols, Some(only), &mut bad));
                    v
                }
                None => decoded(&row[..end], cols, None, &mut bad).collect(),
            };
            let tuple = self.decode.is_some().then(|| match shared {
                Some(b) => b.slice(pos..pos + end),
                None => Bytes::copy_from_slice(&row[..end]),
            });
            out.push(ReadRow { values, bad, tuple });
            pos += end;
        }
        Ok(pos)
    }
}

/// The values of one whole tuple (its field count first), of the columns marked in `only`
/// (every column without it; the others are NULL). A value that cannot be read is NULL, and
/// the first such column is named in `bad`.
fn decoded<'a>(
    tuple: &'a [u8],
    cols: &'a [Col],
    only: Option<&'a [bool]>,
    bad: &'a mut Option<String>,
) -> impl Iterator<Item = Value> + 'a {
    let mut at = 2;
    cols.iter().enumerate().map(move |(i, c)| {
        let len = tuple
            .get(at..at + 4)
            .map_or(-1, |s| i32::from_be_bytes([s[0], s[1], s[2], s[3]]));
        at += 4;
        let Ok(len) = usize::try_from(len) else {
            return Value::Null;
        };
        let b = tuple.get(at..at + len).unwrap_or_default();
        at += len;
        if only.is_some_and(|o| !o.get(i).copied().unwrap_or(false)) {
            return Value::Null;
        }
        read(c.ty, b).unwrap_or_else(|| {
            bad.get_or_insert_with(|| format!("column {}: cannot read the value", c.name));
            Value::Null
        })
    })
}

/// Decode the values a pass-through read left NULL from the row's tuple. A value that cannot
/// be read stays NULL: the row goes to the exchange as its tuple, whatever the agent can
/// read of it.
pub(super) fn complete(values: &mut [Value], tuple: &[u8], cols: &[Col]) {
    let todo: Vec<bool> = values.iter().map(Value::is_null).collect();
    if !todo.contains(&true) {
        return;
    }
    let mut bad = None;
    let all: Vec<Value> = decoded(tuple, cols, Some(&todo), &mut bad).collect();
    for ((v, new), redo) in values.iter_mut().zip(all).zip(todo) {
        if redo {
            *v = new;
        }
    }
}

#[cfg(test)]
#[path = "pgbinary_tests.rs"]
mod tests;
