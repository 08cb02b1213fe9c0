//! SQL Server and Oracle: batches are written by `MERGE`, which neither engine can do
//! without its own statement forms; savepoints and statement sizes differ too.

use std::fmt::Write as _;

use super::{Dialect, Upsert, oracle_char, safe_type};
use crate::ident::Col;
use crate::value::ColType;

/// Most rows one SQL Server `MERGE ... USING (VALUES ...)` carries (its row constructor's
/// limit for inserts, kept for merges too).
const MSSQL_MERGE_ROWS: usize = 1000;
/// Most rows one Oracle `MERGE ... USING (SELECT ... FROM dual UNION ALL ...)` carries: every
/// row is a branch of the union, which the server parses and plans.
const ORACLE_MERGE_ROWS: usize = 100;
/// Parameters left unused per SQL Server statement (`sp_executesql` takes its own).
const MSSQL_PARAM_MARGIN: usize = 100;

impl Dialect {
    /// Most parameters a statement this agent builds may carry (below the engine's limit).
    pub fn param_budget(self) -> usize {
        match self {
            Dialect::MsSql => self.max_params() - MSSQL_PARAM_MARGIN,
            _ => self.max_params(),
        }
    }

    /// Parameters one `MERGE` of rows of `columns` columns may carry: [`super::super::chunks`]
    /// cuts a batch into statements of at most this many.
    pub fn merge_params(self, columns: usize) -> usize {
        let rows = match self.family() {
            Dialect::Oracle => ORACLE_MERGE_ROWS,
            _ => MSSQL_MERGE_ROWS,
        };
        self.param_budget().min(rows * columns.max(1))
    }

    /// How many keys of `key_cols` columns one select by key (`Cond::AnyOf`) may look up:
    /// `wanted`, or fewer where the parameters would not fit (SQL Server's 2100; Oracle's
    /// 1000 expressions in an `IN` list).
    pub fn keys_per_select(self, key_cols: usize, wanted: usize) -> usize {
        let by_params = self.param_budget() / key_cols.max(1);
        let limit = match self.family() {
            Dialect::Oracle => by_params.min(1000),
            _ => by_params,
        };
        wanted.min(limit).max(1)
    }

    /// The statements of a part's savepoint: set, roll back to, release (`None`: the engine
    /// releases nothing, SQL Server and Oracle).
    pub fn savepoint(self) -> (&'static str, &'static str, Option<&'static str>) {
        match self.family() {
            Dialect::MsSql => (
                "SAVE TRANSACTION frontdb_part",
                "ROLLBACK TRANSACTION frontdb_part",
                None,
            ),
            Dialect::Oracle => (
                "SAVEPOINT frontdb_part",
                "ROLLBACK TO SAVEPOINT frontdb_part",
                None,
            ),
            _ => (
                "SAVEPOINT frontdb_part",
                "ROLLBACK TO SAVEPOINT frontdb_part",
                Some("RELEASE SAVEPOINT frontdb_part"),
            ),
        }
    }

    /// The `n`th parameter of a `MERGE`'s source rows, typed as its column where a value
    /// bound for it may not carry the column's type: every row of the source must have the
    /// same types (a NULL, a decimal's text), and an Oracle CHAR key must compare padded.
    /// Text is never cast: a cast would cut a value too long instead of refusing it.
    fn merge_param(self, n: usize, c: &Col) -> String {
        let ty = safe_type(&c.native);
        match (self, c.ty, ty) {
            (Dialect::MsSql, ColType::Bytes, _) => format!("CAST(@P{n} AS varbinary(max))"),
            (Dialect::MsSql, ColType::Text | ColType::Other, _) | (Dialect::MsSql, _, None) => {
                format!("@P{n}")
            }
            (Dialect::MsSql, _, Some(t)) => format!("CAST(@P{n} AS {t})"),
            (Dialect::Oracle, _, Some(t)) if oracle_char(t) => format!("CAST(:{n} AS {t})"),
            (
                Dialect::Oracle,
                ColType::Int
                | ColType::Bool
                | ColType::Float
                | ColType::Decimal
                | ColType::Date
                | ColType::Timestamp
                | ColType::TimestampTz,
                Some(t),
            ) => format!("CAST(:{n} AS {t})"),
            // Oracle's forms, with ODBC's one placeholder.
            (Dialect::Odbc(f), _, _) if f.family() == Dialect::Oracle => Dialect::Oracle
                .merge_param(n, c)
                .replace(&format!(":{n}"), "?"),
            _ => self.placeholder(n, None),
        }
    }

    /// Upsert `rows` rows by `MERGE` (SQL Server, Oracle): a stored row is replaced only
    /// when its version is NULL or not newer, the rule of every engine's upsert. The
    /// parameters are the rows' values, row after row.
    pub fn merge(self, u: &Upsert<'_>, rows: usize) -> String {
        let names: Vec<String> = u.columns.iter().map(|c| self.quote(&c.name)).collect();
        let mut n = 0;
        let mut source_rows = Vec::with_capacity(rows);
        for r in 0..rows {
            let ps: Vec<String> = u
                .columns
                .iter()
                .zip(&names)
                .map(|(c, name)| {
                    n += 1;
                    let p = self.merge_param(n, c);
                    match self.family() {
                        Dialect::Oracle if r == 0 => format!("{p} AS {name}"),
                        _ => p,
                    }
                })
                .collect();
            source_rows.push(match self.family() {
                Dialect::Oracle => format!("SELECT {} FROM dual", ps.join(", ")),
                _ => format!("({})", ps.join(", ")),
            });
        }
        let on: Vec<String> = u
            .key
            .iter()
            .map(|&i| format!("tgt.{0} = src.{0}", names[i]))
            .collect();
        let updated = self.updated_columns(u);
        let sets: Vec<String> = updated
            .iter()
            .map(|&i| format!("tgt.{0} = src.{0}", names[i]))
            .collect();
        let newer = u.version.map(|v| {
            let q = &names[v];
            format!("tgt.{q} IS NULL OR tgt.{q} <= src.{q}")
        });
        let values: Vec<String> = names.iter().map(|q| format!("src.{q}")).collect();
        let insert = format!(
            "WHEN NOT MATCHED THEN INSERT ({}) VALUES ({})",
            names.join(", "),
            values.join(", ")
        );
        let mut text;
        match self.family() {
            Dialect::Oracle => {
                text = format!(
                    "MERGE INTO {} tgt USING ({}) src ON ({})",
                    self.table(u.table),
                    source_rows.join(" UNION ALL "),
                    on.join(" AND ")
                );
                if !sets.is_empty() {
                    let _ = write!(text, " WHEN MATCHED THEN UPDATE SET {}", sets.join(", "));
                    if let Some(cond) = &newer {
                        let _ = write!(text, " WHERE {cond}");
                    }
                }
                let _ = write!(text, " {insert}");
            }
            _ => {
                // HOLDLOCK: the key range stays locked between the match and the insert, so
                // that two writers cannot both insert one key.
                text = format!(
                    "MERGE INTO {} WITH (HOLDLOCK) AS tgt USING (VALUES {}) AS src ({}) ON {}",
                    self.table(u.table),
                    source_rows.join(", "),
                    names.join(", "),
                    on.join(" AND ")
                );
                if !sets.is_empty() {
                    let cond = newer.map(|c| format!(" AND ({c})")).unwrap_or_default();
                    let _ = write!(
                        text,
                        " WHEN MATCHED{cond} THEN UPDATE SET {}",
                        sets.join(", ")
                    );
                }
                // SQL Server requires a MERGE to end with a semicolon.
                let _ = write!(text, " {insert};");
            }
        }
        text
    }
}
