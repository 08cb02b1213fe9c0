//! SQL text per engine: the only place where statements are assembled from identifiers.
//!
//! Identifiers arrive validated ([`Ident`]) and are quoted here; values never enter the SQL
//! text: every value is a bound parameter, returned beside the text in [`Sql::params`].

use std::fmt::Write as _;

use crate::ident::{Col, Ident, TableName};
use crate::value::{ColType, Value};

/// The SQL dialect of an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    MySql,
    Sqlite,
    MsSql,
    Oracle,
    /// An engine reached through ODBC: `?` placeholders, the statement forms of its family.
    Odbc(Flavor),
}

/// A statement and the values to bind to its placeholders, in order.
#[derive(Debug, PartialEq)]
pub struct Sql {
    pub text: String,
    pub params: Vec<Value>,
    /// PostgreSQL selects: the same select as `COPY (...) TO STDOUT (FORMAT binary)`.
    pub copy: Option<PgCopy>,
}

/// A PostgreSQL select as `COPY (...) TO STDOUT (FORMAT binary)`, which streams its rows
/// without the per-row framing of query results. `COPY` takes no parameters: each one is
/// set for the transaction first ([`Dialect::pg_set_params`], bound as text) and read back
/// once per statement by `(SELECT current_setting(...)::type)`, so values still never enter
/// the SQL text.
#[derive(Debug, PartialEq)]
pub struct PgCopy {
    pub text: String,
    /// The parameters' text, in order.
    pub settings: Vec<String>,
}

/// The parameters of a select being assembled: their values and the native types of the
/// columns they meet. Their places are marked in the text by [`MARK`], the number, [`MARK`].
#[derive(Default)]
struct Binds {
    values: Vec<Value>,
    types: Vec<Option<String>>,
}

/// NUL cannot occur in a validated identifier or a native type name.
const MARK: char = '\u{0}';

/// One condition of a `WHERE` clause.
#[derive(Clone, Debug)]
pub enum Cond<'a> {
    /// `(c1, c2, ...) > (v1, v2, ...)` in lexicographic order (keyset pagination).
    After(&'a [Col], &'a [Value]),
    AtLeast(&'a Col, &'a Value),
    AtMost(&'a Col, &'a Value),
    Greater(&'a Col, &'a Value),
    Equals(&'a Col, &'a Value),
    IsNull(&'a Col),
    IsNotNull(&'a Col),
    /// `(c1, c2, ...) <= (v1, v2, ...)` in lexicographic order.
    UpTo(&'a [Col], &'a [Value]),
    /// `(c1, c2, ...)` equals one of the tuples.
    AnyOf(&'a [Col], &'a [Vec<Value>]),
    /// `(c1, c2, ...) > (v1, v2, ...)`, or the row was written by a transaction not older
    /// than the one whose id ends in these 32 bits (PostgreSQL: its `xmin`, compared as
    /// the server does, modulo 2^32; an id more than 2^31 older than this one reads as
    /// newer). Elsewhere rows carry no such id and every row qualifies.
    AfterOrWrittenSince(&'a [Col], &'a [Value], u32),
    /// The column is within a table's scope (its `filter`): a prefix of its text, or one of
    /// a list of values.
    Within(&'a Col, &'a crate::shape::Scope),
}

/// A `SELECT` of some columns of one table.
#[derive(Debug)]
pub struct Select<'a> {
    pub table: &'a TableName,
    pub columns: &'a [Col],
    pub conds: Vec<Cond<'a>>,
    pub order: &'a [Col],
    pub limit: Option<usize>,
}

/// How a target row decides it is newer than an incoming one.
#[derive(Clone, Copy, Debug)]
pub struct Upsert<'a> {
    pub table: &'a TableName,
    pub columns: &'a [Col],
    /// Indexes into `columns` of the key columns.
    pub key: &'a [usize],
    /// Index into `columns` of the version column: an incoming row replaces a stored one
    /// only when its version is not older.
    pub version: Option<usize>,
}

impl Dialect {
    /// The native dialect whose statement forms this one follows (itself, but for ODBC).
    pub fn family(self) -> Dialect {
        match self {
            Dialect::Odbc(f) => f.family(),
            d => d,
        }
    }

    pub fn quote(self, id: &Ident) -> String {
        match self {
            Dialect::MySql => format!("`{id}`"),
            Dialect::MsSql => format!("[{id}]"),
            Dialect::Postgres | Dialect::Sqlite | Dialect::Oracle => format!("\"{id}\""),
            Dialect::Odbc(f) => f.family().quote(id),
        }
    }

    pub fn table(self, t: &TableName) -> String {
        match &t.schema {
            Some(s) => format!("{}.{}", self.quote(s), self.quote(&t.name)),
            None => self.quote(&t.name),
        }
    }

    /// Most parameters one statement may carry.
    pub fn max_params(self) -> usize {
        match self {
            Dialect::Postgres | Dialect::MySql => 65_535,
            Dialect::Sqlite => 32_766,
            Dialect::MsSql => 2_100,
            Dialect::Oracle => 32_767,
            // What the drivers are known to take; no ODBC statement here comes near it.
            Dialect::Odbc(_) => 32_767,
        }
    }

    /// The placeholder for the `n`th (1-based) parameter, compared with or stored into `col`.
    fn param(self, n: usize, col: Option<&Col>) -> String {
        self.placeholder(n, col.and_then(|c| safe_type(&c.native)))
    }

    /// The placeholder for the `n`th parameter, cast to `ty` where the engine needs it.
    fn placeholder(self, n: usize, ty: Option<&str>) -> String {
        match self {
            Dialect::Postgres => match ty {
                Some(t) => format!("${n}::{t}"),
                None => format!("${n}"),
            },
            Dialect::MySql | Dialect::Sqlite => "?".into(),
            // Times are bound as datetime2. From compatibility level 130 on, SQL Server
            // compares a datetime column with a datetime2 exactly (.007 is .00666...), so a
            // datetime never equals its own value read back: the parameter is cast first.
            Dialect::MsSql => match ty {
                Some(t @ ("datetime" | "smalldatetime")) => format!("CAST(@P{n} AS {t})"),
                _ => format!("@P{n}"),
            },
            // A CHAR column is blank-padded: compared with a VARCHAR2 bind ('ab' with 'ab  ')
            // it would not match, compared with a CHAR bind it does. A DATE column compared
            // with a TIMESTAMP bind is converted row by row, past its index.
            Dialect::Oracle => match ty {
                Some(t) if oracle_char(t) => format!("CAST(:{n} AS {t})"),
                Some("date") => format!("CAST(:{n} AS DATE)"),
                _ => format!(":{n}"),
            },
            Dialect::Odbc(f) => odbc_placeholder(f, ty),
        }
    }

    /// The expression that reads a column so that the engine module can decode it exactly.
    pub fn select_expr(self, col: &Col) -> String {
        let q = self.quote(&col.name);
        match (self, col.ty) {
            (Dialect::Postgres, ColType::Int) => format!("{q}::int8"),
            (Dialect::Postgres, ColType::Float) => format!("{q}::float8"),
            (Dialect::Postgres, ColType::Decimal | ColType::Other) => format!("{q}::text"),
            // Style 2: money keeps its four decimal places (the default style rounds to two).
            (Dialect::MsSql, ColType::Decimal) if col.native.ends_with("money") => {
                format!("CONVERT(varchar(100), {q}, 2)")
            }
            (Dialect::MsSql, ColType::Decimal) => format!("CONVERT(varchar(100), {q})"),
            (Dialect::MsSql, ColType::Other) => format!("CONVERT(nvarchar(max), {q})"),
            (Dialect::Oracle | Dialect::Odbc(Flavor::Oracle), ColType::Decimal) => {
                format!("TO_CHAR({q}, 'TM9', 'NLS_NUMERIC_CHARACTERS=''.,''')")
            }
            // Read as text: whatever the driver makes of json, uuid, intervals, arrays.
            (Dialect::Odbc(Flavor::Postgres | Flavor::Kingbase), ColType::Other) => {
                format!("CAST({q} AS text)")
            }
            _ => q,
        }
    }

    /// The expression a `SELECT` reads a column with. PostgreSQL's integers, floats and
    /// numerics are decoded from their binary forms as they are: a select list of plain
    /// columns lets the server send its rows without computing a projection.
    fn read_expr(self, col: &Col) -> String {
        match (self, col.ty) {
            (Dialect::Postgres, ColType::Int | ColType::Float | ColType::Decimal) => {
                self.quote(&col.name)
            }
            _ => self.select_expr(col),
        }
    }

    pub fn select(self, s: &Select<'_>) -> Sql {
        let mut params = Binds::default();
        let mut text = String::from("SELECT ");
        if let (Dialect::MsSql, Some(n)) = (self, s.limit) {
            let _ = write!(text, "TOP ({n}) ");
        }
        let cols: Vec<String> = s.columns.iter().map(|c| self.read_expr(c)).collect();
        text.push_str(&cols.join(", "));
        let _ = write!(text, " FROM {}", self.table(s.table));
        if !s.conds.is_empty() {
            let parts: Vec<String> = s.conds.iter().map(|c| self.cond(c, &mut params)).collect();
            let _ = write!(text, " WHERE {}", parts.join(" AND "));
        }
        if !s.order.is_empty() {
            let order: Vec<String> = s.order.iter().map(|c| self.quote(&c.name)).collect();
            let _ = write!(text, " ORDER BY {}", order.join(", "));
        }
        match (self, s.limit) {
            (Dialect::MsSql, _) | (_, None) => {}
            (Dialect::Oracle | Dialect::Odbc(Flavor::Oracle), Some(n)) => {
                let _ = write!(text, " FETCH FIRST {n} ROWS ONLY");
            }
            (_, Some(n)) => {
                let _ = write!(text, " LIMIT {n}");
            }
        }
        let types = &params.types;
        let copy = (self == Dialect::Postgres)
            .then(|| {
                let exprs = params
                    .values
                    .iter()
                    .zip(types)
                    .enumerate()
                    .map(|(i, (v, t))| pg_setting_expr(i + 1, v, t.as_deref()))
                    .collect::<Vec<_>>();
                let settings = params
                    .values
                    .iter()
                    .map(pg_setting_text)
                    .collect::<Option<Vec<_>>>()?;
                let body = fill(&text, |n| {
                    exprs.get(n.wrapping_sub(1)).cloned().unwrap_or_default()
                });
                Some(PgCopy {
                    text: format!("COPY ({body}) TO STDOUT (FORMAT binary)"),
                    settings,
                })
            })
            .flatten();
        let text = fill(&text, |n| {
            self.placeholder(n, types.get(n.wrapping_sub(1)).and_then(|t| t.as_deref()))
        });
        Sql {
            text,
            params: params.values,
            copy,
        }
    }

    fn bind(self, params: &mut Binds, v: &Value, col: &Col) -> String {
        bind_as(params, v.clone(), safe_type(&col.native))
    }

    fn cond(self, c: &Cond<'_>, params: &mut Binds) -> String {
        match c {
            Cond::After(cols, vals) => self.after(cols, vals, params),
            Cond::AtLeast(col, v) => {
                format!("{} >= {}", self.quote(&col.name), self.bind(params, v, col))
            }
            Cond::AtMost(col, v) => {
                format!("{} <= {}", self.quote(&col.name), self.bind(params, v, col))
            }
            Cond::Greater(col, v) => {
                format!("{} > {}", self.quote(&col.name), self.bind(params, v, col))
            }
            Cond::Equals(col, v) => {
                format!("{} = {}", self.quote(&col.name), self.bind(params, v, col))
            }
            Cond::IsNull(col) => format!("{} IS NULL", self.quote(&col.name)),
            Cond::IsNotNull(col) => format!("{} IS NOT NULL", self.quote(&col.name)),
            Cond::UpTo(cols, vals) => format!("NOT ({})", self.after(cols, vals, params)),
            Cond::AnyOf(cols, tuples) => self.any_of(cols, tuples, params),
            Cond::Within(col, scope) => self.within(col, scope, params),
            Cond::AfterOrWrittenSince(cols, vals, xid) => match self {
                Dialect::Postgres => {
                    let after = self.after(cols, vals, params);
                    let p = bind_as(params, Value::Int(i64::from(*xid)), Some("int8"));
                    format!(
                        "({after} OR (xmin::text::int8 - {p} + 4294967296) % 4294967296 < 2147483648)"
                    )
                }
                _ => "1 = 1".into(),
            },
        }
    }

    fn any_of(self, cols: &[Col], tuples: &[Vec<Value>], params: &mut Binds) -> String {
        if tuples.is_empty() {
            return "1 = 0".into();
        }
        let names: Vec<String> = cols.iter().map(|c| self.quote(&c.name)).collect();
        if cols.len() > 1 && self == Dialect::MsSql {
            let ors: Vec<String> = tuples
                .iter()
                .map(|t| {
                    let ands: Vec<String> = cols
                        .iter()
                        .zip(t)
                        .map(|(c, v)| {
                            format!("{} = {}", self.quote(&c.name), self.bind(params, v, c))
                        })
                        .collect();
                    format!("({})", ands.join(" AND "))
                })
                .collect();
            return format!("({})", ors.join(" OR "));
        }
        let items: Vec<String> = tuples
            .iter()
            .map(|t| {
                let ps: Vec<String> = cols
                    .iter()
                    .zip(t)
                    .map(|(c, v)| self.bind(params, v, c))
                    .collect();
                if cols.len() == 1 {
                    ps.join("")
                } else {
                    format!("({})", ps.join(", "))
                }
            })
            .collect();
        if cols.len() == 1 {
            format!("{} IN ({})", names[0], items.join(", "))
        } else {
            format!("({}) IN ({})", names.join(", "), items.join(", "))
        }
    }

    /// `SELECT count(*)` of a table (SQL Server's `count` is an `int`, which a table past
    /// 2^31 rows overflows).
    /// Which of these tables hold a row meeting their conditions, in one statement: a branch
    /// per table (`UNION ALL`) answering the table's index when its `EXISTS` holds. Each
    /// branch is a probe of an index, however large the table.
    pub fn which_exist(self, tables: &[(&TableName, Vec<Cond<'_>>)]) -> Sql {
        let mut params = Binds::default();
        let dual = match self.family() {
            Dialect::MySql | Dialect::Oracle => " FROM DUAL",
            _ => "",
        };
        let branches: Vec<String> = tables
            .iter()
            .enumerate()
            .map(|(i, (t, conds))| {
                let k = match self.family() {
                    Dialect::Postgres | Dialect::MsSql => format!("CAST({i} AS bigint)"),
                    Dialect::MySql => format!("CAST({i} AS SIGNED)"),
                    _ => i.to_string(),
                };
                let w: Vec<String> = conds.iter().map(|c| self.cond(c, &mut params)).collect();
                let w = if w.is_empty() {
                    String::new()
                } else {
                    format!(" WHERE {}", w.join(" AND "))
                };
                format!(
                    "SELECT {k} AS k{dual} WHERE EXISTS (SELECT 1 FROM {}{w})",
                    self.table(t)
                )
            })
            .collect();
        let types = &params.types;
        let text = fill(&branches.join(" UNION ALL "), |n| {
            self.placeholder(n, types.get(n.wrapping_sub(1)).and_then(|t| t.as_deref()))
        });
        Sql {
            text,
            params: params.values,
            copy: None,
        }
    }

    pub fn count(self, table: &TableName) -> String {
        let count = match self {
            Dialect::MsSql => "COUNT_BIG(*)",
            _ => "count(*)",
        };
        format!("SELECT {count} FROM {}", self.table(table))
    }

    /// Mark one row deleted in place (a tombstone): set `sets`, where the key matches.
    /// Parameters: the set values, then the key values.
    pub fn tombstone_row(self, table: &TableName, sets: &[Col], key: &[Col]) -> String {
        let mut n = 0;
        let mut p = |c: &Col| {
            n += 1;
            format!("{} = {}", self.quote(&c.name), self.param(n, Some(c)))
        };
        let s: Vec<String> = sets.iter().map(&mut p).collect();
        let k: Vec<String> = key.iter().map(&mut p).collect();
        format!(
            "UPDATE {} SET {} WHERE {}",
            self.table(table),
            s.join(", "),
            k.join(" AND ")
        )
    }

    /// Keyset condition. PostgreSQL and SQLite compare row values (index friendly); the
    /// others get the expanded form with a leading range on the first column.
    fn after(self, cols: &[Col], vals: &[Value], params: &mut Binds) -> String {
        debug_assert_eq!(cols.len(), vals.len());
        if cols.len() == 1 {
            return format!(
                "{} > {}",
                self.quote(&cols[0].name),
                self.bind(params, &vals[0], &cols[0])
            );
        }
        if matches!(self, Dialect::Postgres | Dialect::Sqlite) {
            let names: Vec<String> = cols.iter().map(|c| self.quote(&c.name)).collect();
            let ps: Vec<String> = cols
                .iter()
                .zip(vals)
                .map(|(c, v)| self.bind(params, v, c))
                .collect();
            return format!("({}) > ({})", names.join(", "), ps.join(", "));
        }
        let first = format!(
            "{} >= {}",
            self.quote(&cols[0].name),
            self.bind(params, &vals[0], &cols[0])
        );
        let mut ors = Vec::new();
        for i in 0..cols.len() {
            let mut ands = Vec::new();
            for j in 0..i {
                ands.push(format!(
                    "{} = {}",
                    self.quote(&cols[j].name),
                    self.bind(params, &vals[j], &cols[j])
                ));
            }
            ands.push(format!(
                "{} > {}",
                self.quote(&cols[i].name),
                self.bind(params, &vals[i], &cols[i])
            ));
            ors.push(format!("({})", ands.join(" AND ")));
        }
        format!("{first} AND ({})", ors.join(" OR "))
    }

    /// Columns an upsert overwrites, the version column last (MySQL evaluates assignments
    /// left to right, so the version must change after every other column was decided).
    fn updated_columns(self, u: &Upsert<'_>) -> Vec<usize> {
        let mut out: Vec<usize> = (0..u.columns.len())
            .filter(|i| !u.key.contains(i) && Some(*i) != u.version)
            .collect();
        if let Some(v) = u.version
            && !u.key.contains(&v)
        {
            out.push(v);
        }
        out
    }

    /// Delete one row by key; with a version column, only when the stored row is not newer.
    /// Parameters: the key values, then the version.
    pub fn delete_row(self, table: &TableName, key: &[Col], version: Option<&Col>) -> String {
        let mut n = 0;
        let mut conds: Vec<String> = key
            .iter()
            .map(|c| {
                n += 1;
                format!("{} = {}", self.quote(&c.name), self.param(n, Some(c)))
            })
            .collect();
        if let Some(v) = version {
            n += 1;
            let q = self.quote(&v.name);
            conds.push(format!(
                "({q} IS NULL OR {q} <= {})",
                self.param(n, Some(v))
            ));
        }
        format!(
            "DELETE FROM {} WHERE {}",
            self.table(table),
            conds.join(" AND ")
        )
    }

    /// Set the extraction flag (and the error text) of one source row, only if the row still
    /// holds exactly the values that were exchanged. Parameters: the new flag, the error
    /// text (when `error` is given), the key values, the pending flag, the compared values.
    pub fn mark_row(
        self,
        table: &TableName,
        flag: &Col,
        error: Option<&Col>,
        key: &[Col],
        compare: &[Col],
    ) -> String {
        let mut n = 1;
        let mut sets = vec![format!(
            "{} = {}",
            self.quote(&flag.name),
            self.param(n, Some(flag))
        )];
        if let Some(e) = error {
            n += 1;
            sets.push(format!(
                "{} = {}",
                self.quote(&e.name),
                self.param(n, Some(e))
            ));
        }
        let mut conds = Vec::new();
        for c in key {
            n += 1;
            conds.push(format!(
                "{} = {}",
                self.quote(&c.name),
                self.param(n, Some(c))
            ));
        }
        n += 1;
        conds.push(format!(
            "{} = {}",
            self.quote(&flag.name),
            self.param(n, Some(flag))
        ));
        for c in compare {
            n += 1;
            conds.push(self.same(c, n));
        }
        format!(
            "UPDATE {} SET {} WHERE {}",
            self.table(table),
            sets.join(", "),
            conds.join(" AND ")
        )
    }

    /// Null-safe equality of a column with the `n`th parameter.
    fn same(self, c: &Col, n: usize) -> String {
        let q = self.quote(&c.name);
        match self {
            Dialect::Postgres => {
                let lhs = self.select_expr(c);
                let rhs = if matches!(c.ty, ColType::Decimal | ColType::Other) {
                    format!("${n}")
                } else {
                    self.param(n, Some(c))
                };
                format!("{lhs} IS NOT DISTINCT FROM {rhs}")
            }
            Dialect::MySql => format!("{q} <=> ?"),
            Dialect::Sqlite => format!("{q} IS ?"),
            Dialect::MsSql => {
                let p = self.param(n, Some(c));
                format!("({q} = {p} OR ({q} IS NULL AND {p} IS NULL))")
            }
            Dialect::Oracle => format!("DECODE({q}, {}, 1, 0) = 1", self.param(n, Some(c))),
            Dialect::Odbc(f) => match f.family() {
                Dialect::Postgres => {
                    format!("{q} IS NOT DISTINCT FROM {}", self.param(n, Some(c)))
                }
                Dialect::MySql => format!("{q} <=> ?"),
                _ => format!("DECODE({q}, {}, 1, 0) = 1", self.param(n, Some(c))),
            },
        }
    }
}

/// `text` with every parameter mark replaced by `place(n)`.
fn fill(text: &str, mut place: impl FnMut(usize) -> String) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for (i, part) in text.split(MARK).enumerate() {
        if i % 2 == 0 {
            out.push_str(part);
        } else {
            out.push_str(&place(part.parse().unwrap_or(0)));
        }
    }
    out
}

/// A native type name that may follow `::` in a PostgreSQL cast.
/// Bind a value of this SQL type (when known); its mark in the text.
fn bind_as(params: &mut Binds, v: Value, ty: Option<&str>) -> String {
    params.values.push(v);
    params.types.push(ty.map(str::to_owned));
    format!("{MARK}{}{MARK}", params.values.len())
}

fn safe_type(native: &str) -> Option<&str> {
    let ok = !native.is_empty()
        && native.len() <= 100
        && native.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | ' ' | '(' | ')' | ',' | '[' | ']')
        });
    ok.then_some(native)
}

/// An ODBC placeholder: `?`, cast to the column's type where its family needs it. Values are
/// bound as text (but integers, floats and bytes), so PostgreSQL-family engines get every
/// typed parameter cast; the types a PostgreSQL-family catalog gives carry no length or
/// precision (a cast to one would cut or round a value instead of refusing it).
fn odbc_placeholder(f: Flavor, ty: Option<&str>) -> String {
    match (f.family(), ty) {
        (Dialect::Postgres, Some(t)) => format!("CAST(? AS {t})"),
        (Dialect::Oracle, Some(t)) if oracle_char(t) => format!("CAST(? AS {t})"),
        (Dialect::Oracle, Some(t)) if t.eq_ignore_ascii_case("date") => "CAST(? AS DATE)".into(),
        _ => "?".into(),
    }
}

/// An Oracle `CHAR`/`NCHAR` type name (blank-padded).
fn oracle_char(native: &str) -> bool {
    let n = native.to_ascii_lowercase();
    n.starts_with("char(") || n.starts_with("nchar(") || n == "char" || n == "nchar"
}

#[path = "dialect_merge.rs"]
mod merge;

#[path = "dialect_pg.rs"]
mod pg;

#[path = "dialect_upsert.rs"]
mod upsert;

#[path = "dialect_scope.rs"]
mod scope;

#[path = "dialect_odbc.rs"]
mod odbc;
pub use odbc::{Flavor, oracle_major, oracle_rownum};
pub use pg::key_array;
use pg::{pg_setting_expr, pg_setting_text};

#[cfg(test)]
#[path = "dialect_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "dialect_merge_tests.rs"]
mod merge_tests;

#[cfg(test)]
#[path = "dialect_odbc_tests.rs"]
mod odbc_tests;
