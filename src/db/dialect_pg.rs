//! PostgreSQL's own statement forms: the staging table, `COPY`, the key probes, the merge
//! from staging, and the session settings that carry a `COPY (SELECT ...)`'s parameters.

use std::fmt::Write as _;

use chrono::Datelike as _;

use super::{Dialect, Upsert};
use crate::ident::Col;
use crate::ident::{Ident, TableName};
use crate::value::Value;

impl Dialect {
    /// PostgreSQL: a temporary staging table shaped like the target's exchanged columns,
    /// kept by the session and emptied at every commit.
    pub fn pg_stage(self, stage: &Ident, table: &TableName, cols: &[Col]) -> String {
        let names: Vec<String> = cols.iter().map(|c| self.quote(&c.name)).collect();
        format!(
            "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS SELECT {} FROM {} WITH NO DATA",
            self.quote(stage),
            names.join(", "),
            self.table(table)
        )
    }

    /// PostgreSQL: empty the staging table between two parts of one transaction.
    pub fn pg_clear(self, stage: &Ident) -> String {
        format!("DELETE FROM {}", self.quote(stage))
    }

    /// PostgreSQL: `COPY` of the staging table from the client, in text format.
    pub fn pg_copy(self, stage: &Ident, cols: &[Col]) -> String {
        let names: Vec<String> = cols.iter().map(|c| self.quote(&c.name)).collect();
        format!(
            "COPY {} ({}) FROM STDIN",
            self.quote(stage),
            names.join(", ")
        )
    }

    /// PostgreSQL: `COPY` straight into the target (a part whose keys it does not have yet).
    pub fn pg_copy_into(self, table: &TableName, cols: &[Col]) -> String {
        let names: Vec<String> = cols.iter().map(|c| self.quote(&c.name)).collect();
        format!(
            "COPY {} ({}) FROM STDIN",
            self.table(table),
            names.join(", ")
        )
    }

    /// PostgreSQL: set the `n` parameters of a [`Sql`](super::Sql)'s `copy` statement, bound
    /// as `$1`..`$n`, until the end of the transaction.
    pub fn pg_set_params(self, n: usize) -> String {
        let sets: Vec<String> = (1..=n)
            .map(|i| format!("set_config('{PG_PARAM_PREFIX}{i}', ${i}, true)"))
            .collect();
        format!("SELECT {}", sets.join(", "))
    }

    /// PostgreSQL: whether the target has any of the keys bound as one array per key column
    /// (`$1`, `$2`, ...), each of the type [`key_array`] gave; an index lookup per key.
    pub fn pg_any_key(self, table: &TableName, key: &[&Col], arrays: &[&str]) -> String {
        let t = self.table(table);
        match (key, arrays) {
            ([k], [a]) => format!(
                "SELECT EXISTS (SELECT 1 FROM {t} WHERE {} = ANY($1::{a}[]))",
                self.quote(&k.name)
            ),
            _ => {
                let arrays: Vec<String> = arrays
                    .iter()
                    .enumerate()
                    .map(|(i, a)| format!("${}::{a}[]", i + 1))
                    .collect();
                let names: Vec<String> = (0..key.len()).map(|i| format!("k{i}")).collect();
                let on: Vec<String> = key
                    .iter()
                    .enumerate()
                    .map(|(i, k)| format!("tgt.{} = k.k{i}", self.quote(&k.name)))
                    .collect();
                format!(
                    "SELECT EXISTS (SELECT 1 FROM unnest({}) AS k({}) JOIN {t} AS tgt ON {})",
                    arrays.join(", "),
                    names.join(", "),
                    on.join(" AND ")
                )
            }
        }
    }

    /// PostgreSQL: whether the target has any key from `$1` to `$2` (one range of its key's
    /// index, where [`Dialect::pg_any_key`] looks up every key), and its greatest key.
    pub fn pg_key_range(self, table: &TableName, key: &Col) -> String {
        format!(
            "SELECT EXISTS (SELECT 1 FROM {t} WHERE {k} BETWEEN $1 AND $2), \
             (SELECT max({k}) FROM {t})::int8",
            t = self.table(table),
            k = self.quote(&key.name)
        )
    }

    /// PostgreSQL: move the staged rows into the target; newer rows win.
    pub fn pg_merge(self, u: &Upsert<'_>, stage: &Ident) -> String {
        let names: Vec<String> = u.columns.iter().map(|c| self.quote(&c.name)).collect();
        let keys: Vec<&str> = u.key.iter().map(|&i| names[i].as_str()).collect();
        let mut text = format!(
            "INSERT INTO {} AS tgt ({cols}) SELECT {cols} FROM {} ON CONFLICT ({})",
            self.table(u.table),
            self.quote(stage),
            keys.join(", "),
            cols = names.join(", ")
        );
        let updated = self.updated_columns(u);
        if updated.is_empty() {
            text.push_str(" DO NOTHING");
            return text;
        }
        let sets: Vec<String> = updated
            .iter()
            .map(|&i| format!("{0} = EXCLUDED.{0}", names[i]))
            .collect();
        let _ = write!(text, " DO UPDATE SET {}", sets.join(", "));
        if let Some(v) = u.version {
            let q = &names[v];
            let _ = write!(text, " WHERE tgt.{q} IS NULL OR tgt.{q} <= EXCLUDED.{q}");
        }
        text
    }
}

/// Prefix of the session settings that carry a `COPY`'s parameters (`frontdb.p1`, ...).
const PG_PARAM_PREFIX: &str = "frontdb.p";

/// The `n`th parameter of a [`PgCopy`](super::PgCopy): its session setting read once per
/// statement, as its value's type, then as its column's.
pub(super) fn pg_setting_expr(n: usize, v: &Value, ty: Option<&str>) -> String {
    let get = format!("current_setting('{PG_PARAM_PREFIX}{n}')");
    let typed = match v {
        Value::Null => "NULL".to_owned(),
        Value::Bool(_) => format!("{get}::bool"),
        Value::Int(_) => format!("{get}::int8"),
        Value::Float(_) => format!("{get}::float8"),
        Value::Decimal(_) => format!("{get}::numeric"),
        Value::Text(_) => get,
        Value::Bytes(_) => format!("decode({get}, 'hex')"),
        Value::Date(_) => format!("{get}::date"),
        Value::Time(_) => format!("{get}::time"),
        Value::Timestamp(_) => format!("{get}::timestamp"),
        Value::TimestampTz(_) => format!("{get}::timestamptz"),
    };
    match (v, ty) {
        (Value::Null, None) => typed,
        (_, Some(t)) => format!("(SELECT {typed}::{t})"),
        (_, None) => format!("(SELECT {typed})"),
    }
}

/// A parameter's text for its session setting, as PostgreSQL's input functions read it back
/// exactly; `None` for a year they would not read as written.
pub(super) fn pg_setting_text(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        // The shortest text that reads back as the same float; `inf`, `-inf`, `NaN`.
        Value::Float(f) => format!("{f:?}"),
        Value::Decimal(d) => d.clone(),
        Value::Text(t) => t.clone(),
        Value::Bytes(b) => hex::encode(b),
        Value::Date(d) => pg_year(d.year()).then(|| d.format("%Y-%m-%d").to_string())?,
        Value::Time(t) => t.format("%H:%M:%S%.6f").to_string(),
        Value::Timestamp(t) => {
            pg_year(t.year()).then(|| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string())?
        }
        Value::TimestampTz(t) => {
            pg_year(t.year()).then(|| t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())?
        }
    })
}

/// Whether PostgreSQL reads a year written with four digits as it is (no BC, no 10000).
fn pg_year(y: i32) -> bool {
    (1..=9999).contains(&y)
}

/// The array type a key column's values are bound as to look them up ([`Dialect::pg_any_key`]),
/// so that the lookup compares as the column's index does; `None` for a column whose keys
/// are not looked up that way (the batch is then merged).
pub fn key_array(native: &str, v: &Value) -> Option<&'static str> {
    let native = native.split('(').next().unwrap_or(native).trim();
    match (v, native) {
        (Value::Int(_), "smallint" | "integer" | "bigint") => Some("int8"),
        (Value::Text(_), "text" | "character varying") => Some("text"),
        (Value::Text(_), "character" | "bpchar") => Some("bpchar"),
        (Value::Text(_), "uuid") => Some("uuid"),
        _ => None,
    }
}
