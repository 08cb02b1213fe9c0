//! Database engines behind one interface: read a bounded batch, write a batch idempotently,
//! run a statement for many rows, introspect a table, tell the database's time.
//!
//! SQL text comes only from [`dialect`]; each engine module binds [`Value`]s and decodes
//! rows into them.

pub mod dialect;
pub mod ident;
mod mysql;
mod postgres;
mod sqlite;

use chrono::{DateTime, Utc};

use crate::config::{DbConfig, EngineKind};
use crate::value::Value;
use dialect::{Col, Dialect, Sql, Upsert};
use ident::{Ident, TableName};

/// A table as the database's catalog describes it.
#[derive(Clone, Debug)]
pub struct TableSchema {
    /// The name as stored in the catalog (its case may differ from the configuration's).
    pub name: TableName,
    pub columns: Vec<Col>,
    pub primary_key: Vec<Ident>,
    /// Column lists of every unique constraint or index (the primary key included).
    pub unique_keys: Vec<Vec<Ident>>,
}

impl TableSchema {
    /// A column by name: exact match first, then case-insensitive (catalogs fold case).
    pub fn column(&self, name: &Ident) -> Option<&Col> {
        self.columns.iter().find(|c| c.name == *name).or_else(|| {
            self.columns
                .iter()
                .find(|c| c.name.as_str().eq_ignore_ascii_case(name.as_str()))
        })
    }

    /// Whether some unique constraint covers exactly these columns (in any order).
    pub fn has_unique(&self, cols: &[Ident]) -> bool {
        self.unique_keys
            .iter()
            .any(|u| u.len() == cols.len() && u.iter().all(|c| cols.contains(c)))
    }
}

/// One row read from a source: its values in column order, and what could not be read.
#[derive(Clone, Debug)]
pub struct ReadRow {
    pub values: Vec<Value>,
    /// Set when a cell could not be decoded (the cell is then NULL): names column and cause.
    pub bad: Option<String>,
}

/// A batch for the exchange, written in one transaction.
#[derive(Debug)]
pub struct WriteBatch<'a> {
    pub upsert: Upsert<'a>,
    pub rows: &'a [Vec<Value>],
    /// Key columns of the target, for deletes.
    pub key_cols: &'a [Col],
    /// The version column for deletes (a stored row that is newer survives).
    pub version_col: Option<&'a Col>,
    /// Each delete: the key values, then the version value when `version_col` is set.
    pub deletes: &'a [Vec<Value>],
}

/// A database error with what the agent was doing.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the {role} database ({engine}, {url}): {cause}")]
    Connect {
        role: &'static str,
        engine: EngineKind,
        url: String,
        cause: String,
        retriable: bool,
    },
    #[error("{engine} {doing}: {cause}")]
    Query {
        engine: EngineKind,
        doing: String,
        cause: String,
        /// The database's error code (SQLSTATE or engine code), when it gave one.
        code: Option<String>,
        retriable: bool,
    },
    #[error("SQLite bootstrap {path}: {cause}")]
    Bootstrap { path: String, cause: String },
}

impl DbError {
    /// Whether trying again later may succeed (outage, timeout, deadlock, serialization).
    pub fn is_retriable(&self) -> bool {
        match self {
            DbError::Connect { retriable, .. } | DbError::Query { retriable, .. } => *retriable,
            DbError::Bootstrap { .. } => false,
        }
    }

    fn query(engine: EngineKind, doing: impl Into<String>, e: sqlx::Error) -> Self {
        let code = match &e {
            sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
            _ => None,
        };
        let retriable = retriable(engine, &e, code.as_deref());
        DbError::Query {
            engine,
            doing: doing.into(),
            cause: describe(&e),
            code,
            retriable,
        }
    }
}

/// Which errors each engine may recover from by itself.
fn retriable(engine: EngineKind, e: &sqlx::Error, code: Option<&str>) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(_) => match (engine, code) {
            // serialization failure, deadlock, admin shutdown / crash, cannot connect now,
            // too many connections, connection exceptions (class 08)
            (EngineKind::Postgres, Some(c)) => {
                matches!(c, "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300")
                    || c.starts_with("08")
            }
            // lock wait timeout, deadlock, too many connections, server shutdown,
            // connection killed, query interrupted, read-only (failover)
            (EngineKind::MySql, Some(c)) => {
                matches!(
                    c,
                    "1205" | "1213" | "1040" | "1053" | "1927" | "1317" | "1290" | "2006" | "2013"
                ) || c == "40001"
                    || c == "HY000" && e.to_string().contains("try restarting transaction")
            }
            // SQLITE_BUSY (5), SQLITE_LOCKED (6), and their extended codes
            (EngineKind::Sqlite, Some(c)) => {
                c.parse::<i64>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
            }
            _ => false,
        },
        _ => false,
    }
}

/// The error's own words, without sqlx's generic prefixes.
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_owned(),
        other => other.to_string(),
    }
}

/// A connected database.
pub enum Db {
    Postgres(postgres::Pg),
    MySql(mysql::My),
    Sqlite(sqlite::Lite),
}

impl Db {
    /// Connect (eagerly: a wrong address or password is reported now). `role` is `source`
    /// or `exchange`, for messages.
    pub async fn connect(cfg: &DbConfig, role: &'static str) -> Result<Db, DbError> {
        match cfg.engine {
            EngineKind::Postgres => postgres::Pg::connect(cfg, role).await.map(Db::Postgres),
            EngineKind::MySql => mysql::My::connect(cfg, role).await.map(Db::MySql),
            EngineKind::Sqlite => sqlite::Lite::connect(cfg, role).await.map(Db::Sqlite),
            engine @ (EngineKind::MsSql | EngineKind::Oracle) => Err(DbError::Connect {
                role,
                engine,
                url: cfg.redacted.clone(),
                cause: format!("{engine} is not supported by this build"),
                retriable: false,
            }),
        }
    }

    pub fn engine(&self) -> EngineKind {
        match self {
            Db::Postgres(_) => EngineKind::Postgres,
            Db::MySql(_) => EngineKind::MySql,
            Db::Sqlite(_) => EngineKind::Sqlite,
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Postgres(_) => Dialect::Postgres,
            Db::MySql(_) => Dialect::MySql,
            Db::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// The table's columns and keys, or `None` when there is no such table.
    pub async fn introspect(&self, t: &TableName) -> Result<Option<TableSchema>, DbError> {
        match self {
            Db::Postgres(d) => d.introspect(t).await,
            Db::MySql(d) => d.introspect(t).await,
            Db::Sqlite(d) => d.introspect(t).await,
        }
    }

    /// The database server's current time.
    pub async fn now(&self) -> Result<DateTime<Utc>, DbError> {
        match self {
            Db::Postgres(d) => d.now().await,
            Db::MySql(d) => d.now().await,
            Db::Sqlite(d) => d.now().await,
        }
    }

    /// Run a select whose columns are `cols`; stop early once `max_bytes` of values were
    /// read. Returns the rows and whether the byte cap stopped the read.
    pub async fn fetch(
        &self,
        sql: &Sql,
        cols: &[Col],
        max_bytes: usize,
    ) -> Result<(Vec<ReadRow>, bool), DbError> {
        match self {
            Db::Postgres(d) => d.fetch(sql, cols, max_bytes).await,
            Db::MySql(d) => d.fetch(sql, cols, max_bytes).await,
            Db::Sqlite(d) => d.fetch(sql, cols, max_bytes).await,
        }
    }

    /// Write a batch (upserts, then deletes) in one transaction.
    pub async fn write(&self, w: &WriteBatch<'_>) -> Result<(), DbError> {
        match self {
            Db::Postgres(d) => d.write(w).await,
            Db::MySql(d) => d.write(w).await,
            Db::Sqlite(d) => d.write(w).await,
        }
    }

    /// Run one statement once per parameter row, in one transaction; rows affected.
    pub async fn exec_many(&self, text: &str, rows: &[Vec<Value>]) -> Result<u64, DbError> {
        match self {
            Db::Postgres(d) => d.exec_many(text, rows).await,
            Db::MySql(d) => d.exec_many(text, rows).await,
            Db::Sqlite(d) => d.exec_many(text, rows).await,
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Postgres(d) => d.pool.close().await,
            Db::MySql(d) => d.pool.close().await,
            Db::Sqlite(d) => d.pool.close().await,
        }
    }
}

/// Approximate size of a value in memory, for the per-batch byte cap.
pub fn value_size(v: &Value) -> usize {
    match v {
        Value::Decimal(s) | Value::Text(s) => 24 + s.len(),
        Value::Bytes(b) => 24 + b.len(),
        _ => 16,
    }
}

/// Run `rows` through `text` in chunks the engine accepts: at most `max_params` parameters
/// and about 4 MiB of values per statement. Returns (start, end) row ranges.
pub fn chunks(rows: &[Vec<Value>], per_row: usize, max_params: usize) -> Vec<(usize, usize)> {
    const MAX_BYTES: usize = 4 * 1024 * 1024;
    let max_rows = (max_params / per_row.max(1)).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, r) in rows.iter().enumerate() {
        let size: usize = r.iter().map(value_size).sum();
        if i > start && (i - start >= max_rows || bytes + size > MAX_BYTES) {
            out.push((start, i));
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < rows.len() {
        out.push((start, rows.len()));
    }
    out
}

/// A sqlx query over dynamic SQL text. Only SQL built by [`dialect`] or fixed constants of
/// the engine modules reaches this.
fn dynamic(text: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_parameter_limits() {
        let rows: Vec<Vec<Value>> = (0..10).map(|i| vec![Value::Int(i); 3]).collect();
        assert_eq!(chunks(&rows, 3, 9), vec![(0, 3), (3, 6), (6, 9), (9, 10)]);
        assert_eq!(chunks(&rows, 3, 1000), vec![(0, 10)]);
        assert!(chunks(&[], 3, 9).is_empty());
    }
}
