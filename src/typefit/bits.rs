//! Bit strings between engines: MySQL reads `bit(n)` as bytes (big-endian, the value in the
//! last n bits), PostgreSQL reads `bit(n)` as its text of n digits. A value goes through its
//! digits on its way to the exchange column's form.

use crate::value::Value;

/// A conversion of a source column's values on their way to an exchange column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conv {
    /// Bits of the source values.
    from: usize,
    to: BitsTo,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BitsTo {
    /// Text of the digits, padded with zeros to exactly `Some(n)` digits (PostgreSQL
    /// `bit(n)`) or as many as the source has.
    Text(Option<usize>),
    /// Big-endian bytes, as few as hold the bits (MySQL `bit(n)`, binary columns).
    Bytes,
    Int,
    Bool,
}

impl Conv {
    pub(super) fn bits_text(from: usize, exactly: Option<usize>) -> Conv {
        Conv {
            from,
            to: BitsTo::Text(exactly),
        }
    }

    pub(super) fn bits_bytes(from: usize) -> Conv {
        Conv {
            from,
            to: BitsTo::Bytes,
        }
    }

    pub(super) fn bits_int(from: usize) -> Conv {
        Conv {
            from,
            to: BitsTo::Int,
        }
    }

    pub(super) fn bits_bool(from: usize) -> Conv {
        Conv {
            from,
            to: BitsTo::Bool,
        }
    }

    /// The value in the exchange column's form; the error says why it cannot be.
    pub fn apply(&self, v: Value) -> Result<Value, String> {
        if v.is_null() {
            return Ok(v);
        }
        let digits = digits(&v, self.from)?;
        Ok(match self.to {
            BitsTo::Text(None) => Value::Text(digits),
            BitsTo::Text(Some(n)) => Value::Text(pad(&digits, n)?),
            BitsTo::Bytes => Value::Bytes(pack(&digits)),
            BitsTo::Int => Value::Int(
                i64::from_str_radix(&digits, 2)
                    .map_err(|_| format!("bit string {digits} is beyond a 64-bit integer"))?,
            ),
            BitsTo::Bool => match digits.trim_start_matches('0') {
                "" => Value::Bool(false),
                "1" => Value::Bool(true),
                _ => return Err(format!("bit string {digits} is not a single bit")),
            },
        })
    }
}

/// The `width` digits of a bit value: bytes (the last `width` bits), text of 0 and 1, or
/// a non-negative integer.
fn digits(v: &Value, width: usize) -> Result<String, String> {
    let all = match v {
        Value::Bytes(b) => b.iter().map(|x| format!("{x:08b}")).collect::<String>(),
        Value::Text(t) if !t.is_empty() && t.bytes().all(|c| c == b'0' || c == b'1') => t.clone(),
        Value::Int(i) if *i >= 0 => format!("{i:b}"),
        Value::Bool(b) => u8::from(*b).to_string(),
        other => {
            return Err(format!(
                "`{}` is not a bit string (digits 0 and 1)",
                other.to_text()
            ));
        }
    };
    if all.len() > width || width > MAX_PADDED {
        // Shorter than the source's width only when it is unbounded (`bit varying`).
        return pad(&all, width.min(all.len()));
    }
    pad(&all, width)
}

/// Widths above this are those of unbounded bit strings, which are not padded.
const MAX_PADDED: usize = 64 * 1024;

/// `digits` padded on the left with zeros to exactly `n` digits.
fn pad(digits: &str, n: usize) -> Result<String, String> {
    if digits.len() > n {
        let (lead, rest) = digits.split_at(digits.len() - n);
        if lead.contains('1') {
            return Err(format!("bit string {digits} has more than {n} bits"));
        }
        return Ok(rest.to_owned());
    }
    Ok(format!("{}{digits}", "0".repeat(n - digits.len())))
}

/// Big-endian bytes of a bit string.
fn pack(digits: &str) -> Vec<u8> {
    let n = digits.len().div_ceil(8).max(1);
    let padded = format!("{}{digits}", "0".repeat(n * 8 - digits.len()));
    padded
        .as_bytes()
        .chunks(8)
        .map(|c| c.iter().fold(0u8, |acc, &d| (acc << 1) | (d - b'0')))
        .collect()
}
