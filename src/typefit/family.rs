//! A column's family: its exchange kind refined by its native type name and its engine's
//! defaults (sizes, ranges, fractions of a second).

use crate::db::dialect::Dialect;
use crate::ident::Col;
use crate::value::ColType;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Fam {
    Bool,
    /// An integer of `bits` bits.
    Int {
        bits: u32,
        unsigned: bool,
    },
    /// MySQL's `year`: 1901 to 2155.
    Year,
    /// `numeric(p, s)`; `p` is `None` when unbounded.
    Dec {
        p: Option<u32>,
        s: u32,
    },
    Float {
        double: bool,
    },
    /// Text of at most `max` characters.
    Text {
        max: Option<usize>,
    },
    Binary,
    /// A string of `n` bits (MySQL `bit(n)`, PostgreSQL `bit(n)` and `bit varying(n)`).
    Bits {
        n: usize,
        varying: bool,
    },
    Date,
    /// A time of day keeping `prec` digits of a second.
    Time {
        prec: u32,
    },
    Ts {
        prec: u32,
    },
    /// An instant; `y2038` for MySQL's `timestamp`, which holds 1970 to 2038 only.
    TsTz {
        prec: u32,
        y2038: bool,
    },
    Interval,
    Uuid,
    Json,
    /// MySQL `enum` and `set`.
    Enum,
    /// A PostgreSQL array.
    Array,
    /// Anything else (PostgreSQL's own enums, ranges, network and geometric types, xml,
    /// money, tsvector): carried as its text.
    Other,
}

/// The numbers in the first parentheses of a type name: `decimal(12,2)` gives 12 and 2.
fn numbers(native: &str) -> Vec<u32> {
    let Some(open) = native.find('(') else {
        return Vec::new();
    };
    let Some(len) = native[open..].find(')') else {
        return Vec::new();
    };
    // Oracle's `varchar2(50 char)`: the number is the one before the words.
    native[open + 1..open + len]
        .split(',')
        .filter_map(|n| {
            let n = n.trim();
            let digits = n.find(|c: char| !c.is_ascii_digit()).unwrap_or(n.len());
            n[..digits].parse().ok()
        })
        .collect()
}

impl Fam {
    pub(super) fn of(c: &Col, d: Dialect) -> Fam {
        let n = c.native.to_ascii_lowercase();
        let nums = numbers(&n);
        let first = nums.first().copied();
        match c.ty {
            ColType::Bool => Fam::Bool,
            ColType::Int => int(&n, d),
            ColType::Decimal => match d {
                Dialect::Sqlite => Fam::Dec { p: None, s: 0 },
                _ => Fam::Dec {
                    p: first,
                    s: nums.get(1).copied().unwrap_or(0),
                },
            },
            ColType::Float => Fam::Float {
                double: !(n == "real" && d != Dialect::Sqlite
                    || n.starts_with("float4")
                    || n == "float" && d == Dialect::MySql
                    || n == "binary_float"),
            },
            ColType::Text if n.starts_with("enum(") || n.starts_with("set(") => Fam::Enum,
            ColType::Text => Fam::Text {
                max: match d {
                    Dialect::Sqlite => None,
                    _ => text_max(&n),
                },
            },
            ColType::Bytes if n.starts_with("bit") => Fam::Bits {
                n: first.unwrap_or(1) as usize,
                varying: false,
            },
            ColType::Bytes => Fam::Binary,
            ColType::Date => Fam::Date,
            ColType::Time => Fam::Time {
                prec: fraction(&n, first, d),
            },
            ColType::Timestamp => Fam::Ts {
                prec: fraction(&n, first, d),
            },
            ColType::TimestampTz => Fam::TsTz {
                prec: fraction(&n, first, d),
                y2038: d == Dialect::MySql && n.starts_with("timestamp"),
            },
            ColType::Other => other(&n, first),
        }
    }

    /// The least and greatest integer of an integer family.
    pub(super) fn int_range(&self) -> Option<(i128, i128)> {
        match self {
            Fam::Int {
                bits,
                unsigned: true,
            } => Some((0, (1i128 << bits) - 1)),
            Fam::Int { bits, .. } => Some((-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)),
            Fam::Year => Some((1901, 2155)),
            _ => None,
        }
    }

    /// The most characters of a value's text, where the family bounds it.
    pub(super) fn text_width(&self) -> Option<usize> {
        match self {
            Fam::Bool => Some(5),
            Fam::Int { .. } | Fam::Year => self
                .int_range()
                .map(|(a, b)| a.to_string().len().max(b.to_string().len())),
            Fam::Dec { p: Some(p), s } => Some(*p as usize + 2 + usize::from(*s > 0)),
            Fam::Float { .. } => Some(24),
            Fam::Date => Some(10),
            Fam::Time { .. } => Some(18),
            Fam::Ts { .. } => Some(26),
            Fam::TsTz { .. } => Some(32),
            Fam::Uuid => Some(36),
            Fam::Bits { n, .. } => Some(*n),
            _ => None,
        }
    }

    /// The family in words, for messages.
    pub(super) fn words(&self) -> &'static str {
        match self {
            Fam::Bool => "boolean",
            Fam::Int { .. } => "integer",
            Fam::Year => "year",
            Fam::Dec { .. } => "decimal",
            Fam::Float { .. } => "floating-point",
            Fam::Text { .. } => "text",
            Fam::Binary => "binary",
            Fam::Bits { .. } => "bit string",
            Fam::Date => "date",
            Fam::Time { .. } => "time of day",
            Fam::Ts { .. } => "timestamp",
            Fam::TsTz { .. } => "timestamp with time zone",
            Fam::Interval => "interval",
            Fam::Uuid => "uuid",
            Fam::Json => "json",
            Fam::Enum => "enum",
            Fam::Array => "array",
            Fam::Other => "its own type",
        }
    }
}

fn int(n: &str, d: Dialect) -> Fam {
    let unsigned = n.contains("unsigned");
    let bits = if d == Dialect::Sqlite {
        // A SQLite column holds any 64-bit integer whatever its declaration.
        64
    } else if n.starts_with("year") {
        return Fam::Year;
    } else if n.starts_with("number(") {
        // Oracle's NUMBER(p): the integers of p digits.
        match numbers(n).first() {
            Some(p) if *p <= 4 => 16,
            Some(p) if *p <= 9 => 32,
            _ => 64,
        }
    } else if n.starts_with("tinyint") {
        8
    } else if n.starts_with("smallint") || n.starts_with("int2") {
        16
    } else if n.starts_with("mediumint") {
        24
    } else if n.starts_with("bigint") || n.starts_with("int8") {
        64
    } else if n.starts_with("int") || n.starts_with("integer") || n.starts_with("serial") {
        32
    } else {
        64
    };
    // SQL Server's tinyint is 0 to 255.
    let unsigned = unsigned || (d == Dialect::MsSql && bits == 8);
    Fam::Int { bits, unsigned }
}

/// The characters a text type holds, where it says (`varchar(50)`, `character(2)`,
/// `tinytext`); `None` when unbounded.
fn text_max(n: &str) -> Option<usize> {
    // `varchar(50)`, `character varying(50)`, `character(2)`, `nvarchar(50)`, Oracle's
    // `varchar2(50 char)`; SQL Server's `(max)` is unbounded, and so is an array of them.
    const SIZED: [&str; 6] = [
        "varchar",
        "character varying",
        "char",
        "character",
        "nvarchar",
        "nchar",
    ];
    if n == "tinytext" {
        return Some(255);
    }
    if n.contains("[]") || !SIZED.iter().any(|p| n.starts_with(p)) {
        return None;
    }
    numbers(n).first().map(|&m| m as usize)
}

/// Digits of a second kept by a time type: the declared ones, else the engine's default.
fn fraction(n: &str, declared: Option<u32>, d: Dialect) -> u32 {
    if let Some(p) = declared {
        return p;
    }
    match d {
        Dialect::MySql => 0,
        Dialect::MsSql if n == "datetime" => 3,
        Dialect::MsSql if n == "smalldatetime" => 0,
        Dialect::MsSql => 7,
        Dialect::Oracle if n == "date" => 0,
        _ => 6,
    }
}

fn other(n: &str, first: Option<u32>) -> Fam {
    if n.ends_with("[]") {
        Fam::Array
    } else if n == "uuid" || n == "uniqueidentifier" {
        Fam::Uuid
    } else if n == "json" || n == "jsonb" {
        Fam::Json
    } else if n.starts_with("interval") {
        Fam::Interval
    } else if let Some(rest) = n.strip_prefix("bit") {
        let varying = rest.trim_start().starts_with("varying");
        let unbounded = if varying { usize::MAX } else { 1 };
        Fam::Bits {
            n: first.map_or(unbounded, |n| n as usize),
            varying,
        }
    } else if n.starts_with("year") {
        Fam::Year
    } else {
        Fam::Other
    }
}
