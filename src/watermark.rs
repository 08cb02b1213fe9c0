//! Watermarks: where a table's exchange stands, how positions compare, and how the
//! database's time becomes a bound in the change column's own type.

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::value::{ColType, Value};

/// The position of the last exchanged row: its change time (timestamp-like modes) and key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Watermark {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<Value>,
    #[serde(default)]
    pub key: Vec<Value>,
}

/// Where a timestamp-like table's last complete re-read of its lookback window began, and
/// the source's transactions just before it (PostgreSQL): every row that a transaction
/// older than `xmin` wrote in `column` at a position from `from` (`None`: the table's
/// beginning) up to the watermark has been exchanged, as it is now, since that re-read saw
/// it. A later re-read from `from` on need ask only for rows of later transactions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reread {
    pub column: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    /// The oldest transaction still running then, with its epoch (64 bits).
    pub xmin: u64,
}

impl Watermark {
    /// Compare positions: change time first, then key.
    pub fn cmp_position(&self, other: &Watermark) -> Ordering {
        let ts = match (&self.ts, &other.ts) {
            (Some(a), Some(b)) => cmp_values(a, b),
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        ts.then_with(|| cmp_tuple(&self.key, &other.key))
    }

    /// The later of two positions.
    pub fn max(self, other: Watermark) -> Watermark {
        if other.cmp_position(&self) == Ordering::Greater {
            other
        } else {
            self
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl fmt::Display for Watermark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ts) = &self.ts {
            write!(f, "{}", ts.to_text())?;
            if !self.key.is_empty() {
                f.write_str(" / ")?;
            }
        }
        let keys: Vec<String> = self.key.iter().map(Value::to_text).collect();
        write!(f, "{}", keys.join("|"))
    }
}

/// Lexicographic comparison of key tuples.
pub fn cmp_tuple(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match cmp_values(x, y) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    a.len().cmp(&b.len())
}

/// Order of two values as the databases order them (NULL first; numbers by value).
pub fn cmp_values(a: &Value, b: &Value) -> Ordering {
    use Value as V;
    match (a, b) {
        (V::Null, V::Null) => Ordering::Equal,
        (V::Null, _) => Ordering::Less,
        (_, V::Null) => Ordering::Greater,
        (V::Bool(x), V::Bool(y)) => x.cmp(y),
        (V::Int(x), V::Int(y)) => x.cmp(y),
        (V::Float(x), V::Float(y)) => x.total_cmp(y),
        (V::Text(x), V::Text(y)) => x.cmp(y),
        (V::Bytes(x), V::Bytes(y)) => x.cmp(y),
        (V::Date(x), V::Date(y)) => x.cmp(y),
        (V::Time(x), V::Time(y)) => x.cmp(y),
        (V::Timestamp(x), V::Timestamp(y)) => x.cmp(y),
        (V::TimestampTz(x), V::TimestampTz(y)) => x.cmp(y),
        (V::Int(_) | V::Decimal(_), V::Int(_) | V::Decimal(_)) => {
            cmp_decimal(&a.to_text(), &b.to_text())
        }
        _ => a.sort_text().cmp(&b.sort_text()),
    }
}

/// Compare two decimal texts by value.
fn cmp_decimal(a: &str, b: &str) -> Ordering {
    fn parts(s: &str) -> (bool, String, String) {
        let (neg, digits) = match s.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let int = int.trim_start_matches('0').to_owned();
        let frac = frac.trim_end_matches('0').to_owned();
        let zero = int.is_empty() && frac.is_empty();
        (neg && !zero, int, frac)
    }
    let (na, ia, fa) = parts(a);
    let (nb, ib, fb) = parts(b);
    let magnitude = ia
        .len()
        .cmp(&ib.len())
        .then_with(|| ia.cmp(&ib))
        .then_with(|| fa.cmp(&fb));
    match (na, nb) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => magnitude,
        (true, true) => magnitude.reverse(),
    }
}

/// An instant as a value of a change column of kind `ty`: naive kinds in the agent's zone,
/// text in the column's format.
pub fn time_value(t: DateTime<Utc>, ty: ColType, tz: &Tz, text_format: &str) -> Value {
    let local = t.with_timezone(tz).naive_local();
    match ty {
        ColType::TimestampTz => Value::TimestampTz(t),
        ColType::Date => Value::Date(local.date()),
        ColType::Text | ColType::Other => Value::Text(local.format(text_format).to_string()),
        _ => Value::Timestamp(local),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_compare_by_value() {
        assert_eq!(cmp_decimal("10", "9.99"), Ordering::Greater);
        assert_eq!(cmp_decimal("1.50", "1.5"), Ordering::Equal);
        assert_eq!(cmp_decimal("-2", "-10"), Ordering::Greater);
        assert_eq!(cmp_decimal("-0.0", "0"), Ordering::Equal);
        assert_eq!(cmp_decimal("0.001", "0.01"), Ordering::Less);
        assert_eq!(
            cmp_values(&Value::Int(3), &Value::Decimal("2.5".into())),
            Ordering::Greater
        );
    }

    #[test]
    fn positions_order_by_time_then_key() {
        let at = |ts: i64, k: i64| Watermark {
            ts: Some(Value::Int(ts)),
            key: vec![Value::Int(k)],
        };
        assert_eq!(at(1, 9).cmp_position(&at(2, 1)), Ordering::Less);
        assert_eq!(at(2, 1).cmp_position(&at(2, 3)), Ordering::Less);
        assert_eq!(at(2, 3).max(at(2, 1)), at(2, 3));
        // A position with a time but no key (held back by an open transaction) is past the
        // empty start, and before any row at that time.
        let held = Watermark {
            ts: Some(Value::Int(2)),
            key: vec![],
        };
        assert_eq!(Watermark::default().max(held.clone()), held);
        assert_eq!(held.cmp_position(&at(2, 0)), Ordering::Less);
        let json = at(5, 6).to_json();
        let back: Watermark = serde_json::from_str(&json).expect("json");
        assert_eq!(back, at(5, 6));
    }

    #[test]
    fn bounds_take_the_column_type() {
        let tz: Tz = "Asia/Shanghai".parse().expect("tz");
        let t = DateTime::parse_from_rfc3339("2026-01-01T16:30:00Z")
            .expect("t")
            .with_timezone(&Utc);
        assert_eq!(
            time_value(t, ColType::Text, &tz, "%Y%m%d%H%M%S"),
            Value::Text("20260102003000".into())
        );
        assert_eq!(
            time_value(t, ColType::Date, &tz, "").to_text(),
            "2026-01-02"
        );
        assert_eq!(
            time_value(t, ColType::TimestampTz, &tz, ""),
            Value::TimestampTz(t)
        );
    }
}
