//! Whether a source column's values fit an exchange column: the type matrix of every pair of
//! engines the agent writes between. Each pair of column types is exact (every value of the
//! source type is held as it is), exact through a conversion (a MySQL `BIT(n)` becomes a
//! PostgreSQL bit string of n digits), narrowing (some values do not fit and their rows are
//! quarantined, said once by `check`), or refused (no value of the source type is held: the
//! table does not start, and `check` says which types would work).
//!
//! A column's family is read from its exchange kind ([`ColType`]) and its native type name,
//! with the defaults of its engine (`datetime` keeps no fraction on MySQL, six digits on
//! PostgreSQL; a SQLite column holds any integer whatever its declaration).

mod bits;
mod family;

pub use bits::Conv;
use family::Fam;

use crate::db::dialect::Dialect;
use crate::ident::Col;

/// How the values of one source column reach one exchange column.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Exact,
    /// Some values do not fit: their rows are quarantined. Says which.
    Narrow(String),
    /// No value fits. Says why and which types would.
    Refused(String),
}

/// A verdict, and the conversion that makes it so (applied to each value before it is
/// converted to the exchange column's kind).
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    pub verdict: Verdict,
    pub conv: Option<Conv>,
}

impl Fit {
    fn exact() -> Fit {
        Fit {
            verdict: Verdict::Exact,
            conv: None,
        }
    }

    fn narrow(why: impl Into<String>) -> Fit {
        Fit {
            verdict: Verdict::Narrow(why.into()),
            conv: None,
        }
    }

    fn refused(why: impl Into<String>) -> Fit {
        Fit {
            verdict: Verdict::Refused(why.into()),
            conv: None,
        }
    }

    fn with(mut self, conv: Conv) -> Fit {
        self.conv = Some(conv);
        self
    }

    /// Exact when `ok`, else narrowing for `why`.
    fn exact_if(ok: bool, why: impl Into<String>) -> Fit {
        if ok { Fit::exact() } else { Fit::narrow(why) }
    }
}

/// How the values of source column `src` (of engine `sd`) fit exchange column `tgt` (of
/// engine `td`).
pub fn fit(src: &Col, sd: Dialect, tgt: &Col, td: Dialect) -> Fit {
    let s = Fam::of(src, sd);
    let t = Fam::of(tgt, td);
    if src.native.eq_ignore_ascii_case(&tgt.native) && sd == td {
        return Fit::exact();
    }
    let fit = match &t {
        Fam::Text { max } => into_text(&s, *max),
        Fam::Bool => into_bool(&s),
        Fam::Int { .. } | Fam::Year => into_int(&s, &t),
        Fam::Dec { p, s: scale } => into_decimal(&s, *p, *scale),
        Fam::Float { double } => into_float(&s, *double),
        Fam::Binary => into_binary(&s),
        Fam::Bits { n, varying } => into_bits(&s, *n, *varying, tgt.ty),
        Fam::Date | Fam::Time { .. } | Fam::Ts { .. } | Fam::TsTz { .. } | Fam::Interval => {
            into_time(&s, &t)
        }
        Fam::Uuid | Fam::Json | Fam::Enum | Fam::Array | Fam::Other => into_parsed(&s, &t),
    };
    match fit.verdict {
        Verdict::Refused(why) => Fit::refused(format!(
            "source column `{}` ({}) cannot be stored in exchange column `{}` ({}): {why}",
            src.name, src.native, tgt.name, tgt.native
        )),
        Verdict::Narrow(why) => Fit {
            verdict: Verdict::Narrow(format!(
                "source column `{}` ({}) into exchange column `{}` ({}): {why}",
                src.name, src.native, tgt.name, tgt.native
            )),
            conv: fit.conv,
        },
        Verdict::Exact => fit,
    }
}

const QUARANTINED: &str = "the rows of the others are quarantined";

fn into_text(s: &Fam, max: Option<usize>) -> Fit {
    let longest = match s {
        Fam::Binary => {
            return Fit::refused(
                "binary values are not text — would work: a binary column (bytea, varbinary, blob)",
            );
        }
        Fam::Bits { n, .. } => return bits_longest(*n, max).with(Conv::bits_text(*n, None)),
        Fam::Text { max } => *max,
        other => other.text_width(),
    };
    match (max, longest) {
        (None, _) => Fit::exact(),
        (Some(m), Some(l)) if l <= m => Fit::exact(),
        (Some(m), _) => Fit::narrow(format!(
            "only values of at most {m} characters fit; {QUARANTINED}"
        )),
    }
}

fn bits_longest(n: usize, max: Option<usize>) -> Fit {
    Fit::exact_if(
        max.is_none_or(|m| m >= n),
        format!("a bit string of {n} digits does not fit"),
    )
}

fn into_bool(s: &Fam) -> Fit {
    match s {
        Fam::Bool => Fit::exact(),
        Fam::Bits { n: 1, .. } => Fit::exact().with(Conv::bits_bool(1)),
        Fam::Int { .. } | Fam::Dec { .. } => {
            Fit::narrow(format!("only 0 and 1 are booleans; {QUARANTINED}"))
        }
        Fam::Text { .. } | Fam::Enum | Fam::Other => Fit::narrow(format!(
            "only true/false, t/f, yes/no, y/n, 1/0 are booleans; {QUARANTINED}"
        )),
        _ => Fit::refused("would work: a boolean source column, or a text exchange column"),
    }
}

fn into_int(s: &Fam, t: &Fam) -> Fit {
    let (lo, hi) = t.int_range().unwrap_or((i128::MIN, i128::MAX));
    let range = || format!("only integers from {lo} to {hi} fit; {QUARANTINED}");
    match s {
        Fam::Bool => Fit::exact(),
        Fam::Int { .. } | Fam::Year => {
            let (a, b) = s.int_range().unwrap_or((i128::MIN, i128::MAX));
            Fit::exact_if(lo <= a && b <= hi, range())
        }
        Fam::Bits { n, .. } => {
            let max = if *n >= 127 {
                i128::MAX
            } else {
                (1i128 << n) - 1
            };
            Fit::exact_if(max <= hi, range()).with(Conv::bits_int(*n))
        }
        Fam::Dec { p, s: 0 } => {
            let digits = p.map_or(u32::MAX, |p| p);
            Fit::exact_if(digits < 39 && 10i128.pow(digits) - 1 <= hi, range())
        }
        Fam::Dec { .. } | Fam::Float { .. } => Fit::narrow(format!(
            "only whole numbers fit (a fraction is not rounded); {QUARANTINED}"
        )),
        Fam::Text { .. } | Fam::Enum | Fam::Other | Fam::Json => Fit::narrow(format!(
            "only text that is a whole number fits; {QUARANTINED}"
        )),
        _ => Fit::refused("would work: an integer, decimal or text exchange column"),
    }
}

fn into_decimal(s: &Fam, p: Option<u32>, scale: u32) -> Fit {
    let whole = p.map(|p| p.saturating_sub(scale));
    let digits = |n: u32| {
        Fit::exact_if(
            whole.is_none_or(|w| w >= n),
            format!(
                "only numbers of at most {} digits before the point fit; {QUARANTINED}",
                whole.unwrap_or(0)
            ),
        )
    };
    match s {
        Fam::Bool => Fit::exact(),
        Fam::Int { .. } | Fam::Year => {
            let (a, b) = s.int_range().unwrap_or((i128::MIN, i128::MAX));
            digits(a.unsigned_abs().max(b.unsigned_abs()).to_string().len() as u32)
        }
        Fam::Dec { p: sp, s: ss } => match (p, sp) {
            (None, _) => Fit::exact(),
            (Some(_), None) => Fit::narrow(format!(
                "an unbounded decimal may have more digits than fit; {QUARANTINED}"
            )),
            (Some(_), Some(sp)) if *ss > scale => Fit::narrow(format!(
                "the source keeps {ss} digits after the point, the exchange column {scale}: \
                 the database rounds them"
            )),
            (Some(_), Some(sp)) => digits(sp.saturating_sub(*ss)),
        },
        Fam::Float { .. } => {
            Fit::narrow("a floating-point value is written as its shortest decimal text")
        }
        Fam::Text { .. } | Fam::Enum | Fam::Other | Fam::Json => Fit::narrow(format!(
            "only text that is a decimal number fits; {QUARANTINED}"
        )),
        Fam::Bits { .. } => Fit::exact().with(Conv::bits_int(64)),
        _ => Fit::refused("would work: a numeric or text exchange column"),
    }
}

fn into_float(s: &Fam, double: bool) -> Fit {
    let mantissa: u32 = if double { 53 } else { 24 };
    match s {
        Fam::Bool => Fit::exact(),
        Fam::Int { .. } | Fam::Year => {
            let (a, b) = s.int_range().unwrap_or((i128::MIN, i128::MAX));
            let max = a.unsigned_abs().max(b.unsigned_abs());
            Fit::exact_if(
                max <= 1u128 << mantissa,
                "integers beyond the float's precision are rounded",
            )
        }
        Fam::Float { double: d } => Fit::exact_if(
            double || !d,
            "a double is rounded to a single-precision float",
        ),
        Fam::Dec { .. } => Fit::narrow("a decimal is rounded to the nearest floating-point number"),
        Fam::Text { .. } | Fam::Enum | Fam::Other | Fam::Json => {
            Fit::narrow(format!("only text that is a number fits; {QUARANTINED}"))
        }
        _ => Fit::refused("would work: a numeric or text exchange column"),
    }
}

fn into_binary(s: &Fam) -> Fit {
    match s {
        Fam::Binary => Fit::exact(),
        Fam::Bits { n, .. } => Fit::exact().with(Conv::bits_bytes(*n)),
        Fam::Text { .. } | Fam::Json | Fam::Uuid | Fam::Enum | Fam::Other | Fam::Array => {
            Fit::exact()
        }
        _ => Fit::refused(
            "would work: a binary or text source column, or a column of the source's own type",
        ),
    }
}

fn into_bits(s: &Fam, n: usize, varying: bool, ty: crate::value::ColType) -> Fit {
    let conv = |from: usize| {
        if ty == crate::value::ColType::Bytes {
            Conv::bits_bytes(from)
        } else {
            Conv::bits_text(from, (!varying).then_some(n))
        }
    };
    match s {
        Fam::Bits { n: m, .. } => Fit::exact_if(
            *m <= n,
            format!("only values of at most {n} bits fit; {QUARANTINED}"),
        )
        .with(conv(*m)),
        Fam::Bool if n >= 1 => Fit::exact().with(conv(1)),
        Fam::Int { .. } => Fit::narrow(format!(
            "only non-negative integers below 2^{n} fit; {QUARANTINED}"
        ))
        .with(conv(n)),
        Fam::Text { .. } | Fam::Other | Fam::Enum => Fit::narrow(format!(
            "only text of the digits 0 and 1 fits; {QUARANTINED}"
        )),
        _ => Fit::refused(format!(
            "would work: a bit or integer source column, or a text or binary exchange column \
             instead of bit({n})"
        )),
    }
}

fn into_time(s: &Fam, t: &Fam) -> Fit {
    let prec = |sp: u32, tp: u32| {
        Fit::exact_if(
            sp <= tp,
            format!(
                "the source keeps {sp} digits of a second, the exchange column {tp}: the \
                 database rounds them (declare it with ({sp}))"
            ),
        )
    };
    let text = || {
        Fit::narrow(format!(
            "only text that is a date or time fits; {QUARANTINED}"
        ))
    };
    match (s, t) {
        (Fam::Date, Fam::Date | Fam::Ts { .. }) => Fit::exact(),
        (Fam::Date, Fam::TsTz { y2038, .. }) => year_2038(*y2038),
        (Fam::Ts { .. } | Fam::TsTz { .. }, Fam::Date) => Fit::narrow(format!(
            "only times at midnight fit a date (a time of day is not cut off); {QUARANTINED}"
        )),
        (Fam::Time { prec: sp }, Fam::Time { prec: tp }) => prec(*sp, *tp),
        (
            Fam::Ts { prec: sp } | Fam::TsTz { prec: sp, .. },
            Fam::Ts { prec: tp }
            | Fam::TsTz {
                prec: tp,
                y2038: false,
            },
        ) => prec(*sp, *tp),
        (Fam::Ts { .. } | Fam::TsTz { .. }, Fam::TsTz { y2038: true, .. }) => year_2038(true),
        (Fam::Interval, Fam::Interval) => Fit::exact(),
        (Fam::Time { .. }, Fam::Interval) => Fit::exact(),
        (Fam::Text { .. } | Fam::Other | Fam::Enum, _) => text(),
        _ => Fit::refused(format!(
            "would work: a {} source column, or a text exchange column",
            t.words()
        )),
    }
}

fn year_2038(y2038: bool) -> Fit {
    Fit::exact_if(
        !y2038,
        format!(
            "a MySQL timestamp holds only 1970-01-01 to 2038-01-19 (use datetime(6)); {QUARANTINED}"
        ),
    )
}

/// Uuid, json, enum, arrays and other types the database parses from their text.
fn into_parsed(s: &Fam, t: &Fam) -> Fit {
    let parses = || {
        Fit::narrow(format!(
            "the database parses each value as {}; {QUARANTINED}",
            t.words()
        ))
    };
    match (s, t) {
        (_, _) if s == t && !matches!(t, Fam::Other | Fam::Enum | Fam::Array) => Fit::exact(),
        (Fam::Binary, _) => Fit::refused(format!(
            "binary values are not {} — would work: a binary exchange column",
            t.words()
        )),
        (Fam::Array, Fam::Json) => Fit::refused(
            "an array's text ({1,2}) is not JSON — would work: text, or an array of the same type",
        ),
        (Fam::Bool | Fam::Int { .. } | Fam::Dec { .. } | Fam::Float { .. }, Fam::Json) => {
            Fit::exact()
        }
        (
            Fam::Date | Fam::Time { .. } | Fam::Ts { .. } | Fam::TsTz { .. },
            Fam::Uuid | Fam::Json,
        )
        | (Fam::Bits { .. }, _) => Fit::refused(format!(
            "would work: a text exchange column, or a {} source column",
            t.words()
        )),
        _ => parses(),
    }
}

#[cfg(test)]
#[path = "typefit_tests.rs"]
mod tests;
