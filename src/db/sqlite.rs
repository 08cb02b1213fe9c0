//! SQLite: embedded demos, small sites and tests.
//!
//! SQLite stores values by storage class, not by declared type, so rows are decoded from
//! what is stored and interpreted with the declared type's kind. Text date-times are kept
//! as the exact text the table holds (so keyset comparisons match the stored form); they
//! are converted when they land in a typed column elsewhere. SQLite has no exact decimal
//! type: declare decimal columns `TEXT` to keep every digit.

use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use futures::TryStreamExt;
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqlitePool, SqliteRow};
use sqlx::{ConnectOptions, Decode, Row, Sqlite, TypeInfo, ValueRef};

use super::dialect::{Dialect, Sql};
use super::{
    DbError, ErrorClass, PartWriter, ReadRow, Refused, TableSchema, WriteBatch, chunks, dynamic,
    isolate, value_size,
};
use crate::db::{DbConfig, EngineKind};
use crate::ident::Col;
use crate::ident::{Ident, TableName};
use crate::value::{ColType, Value, parse_decimal};

const E: EngineKind = EngineKind::Sqlite;

const FIND_TABLE: &str = "SELECT name FROM pragma_table_list \
     WHERE schema = ?1 AND type IN ('table', 'view') AND name = ?2 COLLATE NOCASE \
     ORDER BY name = ?2 DESC LIMIT 1";

/// `hidden` is 2 for a virtual and 3 for a stored generated column (1, a virtual table's
/// hidden column, is left out as `table_info` leaves it).
const COLUMNS: &str = "SELECT name, type, pk, hidden FROM pragma_table_xinfo(?1, ?2) \
     WHERE hidden <> 1 ORDER BY cid";

const UNIQUE_INDEXES: &str =
    "SELECT name FROM pragma_index_list(?1, ?2) WHERE \"unique\" = 1 AND partial = 0";

const INDEX_COLUMNS: &str = "SELECT name FROM pragma_index_info(?1, ?2) ORDER BY seqno";

pub struct Lite {
    pub pool: SqlitePool,
}

impl Lite {
    pub async fn connect(cfg: &DbConfig, role: &'static str) -> Result<Self, DbError> {
        let fail = |cause: String| DbError::Connect {
            role,
            engine: E,
            url: cfg.redacted.clone(),
            cause,
            class: ErrorClass::Fatal,
        };
        let opts = SqliteConnectOptions::from_str(cfg.url.expose())
            .map_err(|e| fail(format!("invalid URL: {e}")))?
            .busy_timeout(Duration::from_secs(10))
            .disable_statement_logging();
        let file = opts.get_filename().to_owned();
        let fresh = cfg.bootstrap_sql.is_some() && !file.exists() && !is_memory(&file);
        let opts = opts.create_if_missing(fresh);
        if fresh && let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        }
        let pool = super::pool_options(cfg)
            .connect_with(opts)
            .await
            .map_err(|e| fail(super::describe(&e)))?;
        if let (true, Some(script)) = (fresh, &cfg.bootstrap_sql) {
            let boot = |cause: String| DbError::Bootstrap {
                path: script.display().to_string(),
                cause,
            };
            let text = std::fs::read_to_string(script).map_err(|e| boot(e.to_string()))?;
            if let Err(e) = sqlx::raw_sql(dynamic(&text)).execute(&pool).await {
                pool.close().await;
                // Leave no half-built database behind: the next start bootstraps again.
                let _ = std::fs::remove_file(&file);
                return Err(boot(super::describe(&e)));
            }
        }
        Ok(Lite { pool })
    }

    pub async fn introspect(&self, t: &TableName) -> Result<Option<TableSchema>, DbError> {
        let doing = format!("reading the catalog for table {t}");
        let err = |e| DbError::query(E, &doing, e);
        let schema = t.schema.as_ref().map_or("main", Ident::as_str).to_owned();
        let name: Option<String> = sqlx::query_scalar(FIND_TABLE)
            .bind(&schema)
            .bind(t.name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        let Some(name) = name else { return Ok(None) };
        let rows = sqlx::query(COLUMNS)
            .bind(&name)
            .bind(&schema)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        let mut columns = Vec::new();
        let mut computed = Vec::new();
        let mut pk: Vec<(i64, Ident)> = Vec::new();
        for r in rows {
            let col: String = r.try_get(0).map_err(err)?;
            let declared: String = r.try_get(1).map_err(err)?;
            let pk_pos: i64 = r.try_get(2).map_err(err)?;
            let hidden: i64 = r.try_get(3).map_err(err)?;
            let Ok(ident) = Ident::new(&col) else {
                continue;
            };
            if hidden >= 2 {
                computed.push(ident.clone());
            }
            if pk_pos > 0 {
                pk.push((pk_pos, ident.clone()));
            }
            columns.push(Col {
                name: ident,
                ty: col_type(&declared),
                native: declared,
            });
        }
        pk.sort();
        let primary_key: Vec<Ident> = pk.into_iter().map(|(_, c)| c).collect();
        let mut unique_keys = Vec::new();
        if !primary_key.is_empty() {
            unique_keys.push(primary_key.clone());
        }
        let indexes: Vec<String> = sqlx::query_scalar(UNIQUE_INDEXES)
            .bind(&name)
            .bind(&schema)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        for idx in indexes {
            let cols: Vec<Option<String>> = sqlx::query_scalar(INDEX_COLUMNS)
                .bind(&idx)
                .bind(&schema)
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
            let cols: Option<Vec<Ident>> = cols
                .into_iter()
                .map(|c| c.and_then(|c| Ident::new(&c).ok()))
                .collect();
            if let Some(cols) = cols {
                unique_keys.push(cols);
            }
        }
        let Ok(name) = Ident::new(&name) else {
            return Ok(None);
        };
        Ok(Some(TableSchema {
            name: TableName {
                schema: t.schema.clone(),
                name,
            },
            columns,
            primary_key,
            unique_keys,
            row_xids: false,
            computed,
        }))
    }

    pub async fn now(&self) -> Result<DateTime<Utc>, DbError> {
        let s: String = sqlx::query_scalar("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| DbError::query(E, "reading the database time", e))?;
        NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%.f")
            .map(|t| t.and_utc())
            .map_err(|e| DbError::Query {
                engine: E,
                doing: "reading the database time".into(),
                cause: format!("unexpected time `{s}`: {e}"),
                code: None,
                class: ErrorClass::Fatal,
            })
    }

    pub async fn fetch(
        &self,
        sql: &Sql,
        cols: &[Col],
        max_bytes: usize,
    ) -> Result<(Vec<ReadRow>, bool), DbError> {
        let mut q = sqlx::query(dynamic(&sql.text));
        for p in &sql.params {
            q = bind(q, p);
        }
        let mut stream = q.fetch(&self.pool);
        let mut rows = Vec::new();
        let mut bytes = 0;
        while let Some(row) = stream
            .try_next()
            .await
            .map_err(|e| DbError::query(E, "reading rows", e))?
        {
            let r = decode_row(&row, cols);
            bytes += r.values.iter().map(value_size).sum::<usize>();
            rows.push(r);
            if bytes >= max_bytes {
                return Ok((rows, true));
            }
        }
        Ok((rows, false))
    }

    pub async fn write(&self, w: &WriteBatch<'_>) -> Result<Vec<Refused>, DbError> {
        let table = w.upsert.table;
        let err = |doing: &str| DbError::on_table(E, doing, table);
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(err("starting a transaction on"))?;
        let mut part = LitePart {
            delete: w.delete_sql(Dialect::Sqlite),
            tx: &mut tx,
            w,
        };
        let refused = isolate(&mut part, w.rows.len(), w.deletes.len()).await?;
        tx.commit()
            .await
            .map_err(err("committing the batch into"))?;
        Ok(refused)
    }

    pub async fn exec_many(&self, text: &str, rows: &[Vec<Value>]) -> Result<u64, DbError> {
        let err = |e| DbError::query(E, "updating rows", e);
        let mut tx = self.pool.begin().await.map_err(err)?;
        let mut n = 0;
        for r in rows {
            let mut q = sqlx::query(dynamic(text));
            for v in r {
                q = bind(q, v);
            }
            n += q.execute(&mut *tx).await.map_err(err)?.rows_affected();
        }
        tx.commit().await.map_err(err)?;
        Ok(n)
    }

    /// Run `text` once per parameter row inside one transaction that is rolled back, each
    /// row under a savepoint: what the database says of each row (`None`: it took it).
    pub async fn try_rows(
        &self,
        text: &str,
        rows: &[Vec<Value>],
    ) -> Result<Vec<Option<String>>, DbError> {
        let err = |e| DbError::query(E, "trying rows in a transaction rolled back", e);
        let mut tx = self.pool.begin().await.map_err(err)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            sqlx::query(super::SAVEPOINT)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            let mut q = sqlx::query(dynamic(text));
            for v in r {
                q = bind(q, v);
            }
            match q.execute(&mut *tx).await {
                Ok(_) => out.push(None),
                Err(e) if e.as_database_error().is_some() => {
                    out.push(Some(super::describe(&e)));
                    sqlx::query(super::BACK_TO_SAVEPOINT)
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?;
                }
                Err(e) => return Err(err(e)),
            }
        }
        tx.rollback().await.map_err(err)?;
        Ok(out)
    }
}

/// One part of a batch inside the batch's transaction: bounded multi-row upserts, then deletes.
struct LitePart<'a, 'c> {
    tx: &'a mut sqlx::Transaction<'c, Sqlite>,
    w: &'a WriteBatch<'a>,
    delete: String,
}

impl PartWriter for LitePart<'_, '_> {
    async fn exec(&mut self, sql: &'static str) -> Result<(), DbError> {
        sqlx::query(sql)
            .execute(&mut **self.tx)
            .await
            .map_err(|e| DbError::query(E, "managing a savepoint", e))?;
        Ok(())
    }

    async fn part(&mut self, r: Range<usize>, d: Range<usize>) -> Result<(), DbError> {
        let table = self.w.upsert.table;
        let err = |doing: &str| DbError::on_table(E, doing, table);
        let dialect = Dialect::Sqlite;
        let rows = &self.w.rows[r];
        for (start, end) in chunks(rows, self.w.upsert.columns.len(), dialect.max_params()) {
            let text = dialect.upsert_values(&self.w.upsert, end - start);
            let mut q = sqlx::query(dynamic(&text));
            for row in &rows[start..end] {
                for v in row {
                    q = bind(q, v);
                }
            }
            q.execute(&mut **self.tx)
                .await
                .map_err(err("upserting into"))?;
        }
        for del in &self.w.deletes[d] {
            let mut q = sqlx::query(dynamic(&self.delete));
            for v in del {
                q = bind(q, v);
            }
            q.execute(&mut **self.tx)
                .await
                .map_err(err("deleting from"))?;
        }
        Ok(())
    }
}

/// Classify an SQLite error by its primary result code.
pub(super) fn classify(d: &dyn sqlx::error::DatabaseError) -> (Option<String>, ErrorClass) {
    let code = d.code().map(|c| c.into_owned());
    let class = class_of(code.as_deref().and_then(|c| c.parse::<i64>().ok()));
    (code, class)
}

fn class_of(extended: Option<i64>) -> ErrorClass {
    match extended.map(|c| c & 0xff) {
        Some(5 | 6) => ErrorClass::Transient,          // BUSY, LOCKED
        Some(10 | 13 | 14) => ErrorClass::Unavailable, // IOERR, FULL, CANTOPEN
        Some(18 | 19 | 20 | 25) => ErrorClass::Data,   // TOOBIG, CONSTRAINT, MISMATCH, RANGE
        _ => ErrorClass::Fatal,
    }
}

fn is_memory(p: &Path) -> bool {
    p.as_os_str().is_empty() || p.to_string_lossy().contains(":memory:")
}

/// The kind of a declared column type (SQLite's affinity rules, with date-time names first).
fn col_type(declared: &str) -> ColType {
    let d = declared.to_ascii_uppercase();
    let has = |s: &str| d.contains(s);
    if has("TIMESTAMPTZ") || has("WITH TIME ZONE") {
        ColType::TimestampTz
    } else if has("DATETIME") || has("TIMESTAMP") {
        ColType::Timestamp
    } else if has("DATE") {
        ColType::Date
    } else if has("TIME") {
        ColType::Time
    } else if has("BOOL") {
        ColType::Bool
    } else if has("INT") {
        ColType::Int
    } else if has("CHAR") || has("CLOB") || has("TEXT") {
        ColType::Text
    } else if has("BLOB") || has("BINARY") {
        ColType::Bytes
    } else if has("REAL") || has("FLOA") || has("DOUB") {
        ColType::Float
    } else if has("DEC") || has("NUMERIC") || has("MONEY") {
        ColType::Decimal
    } else {
        ColType::Other
    }
}

type LiteQuery<'q> = Query<'q, Sqlite, SqliteArguments>;

/// Bind a value in its stored form: booleans as 0/1, date-times as sortable text, decimals
/// as their text.
fn bind<'q>(q: LiteQuery<'q>, v: &Value) -> LiteQuery<'q> {
    match v {
        Value::Null => q.bind(None::<String>),
        Value::Bool(b) => q.bind(i64::from(*b)),
        Value::Int(i) => q.bind(*i),
        Value::Float(f) => q.bind(*f),
        Value::Decimal(s) | Value::Text(s) => q.bind(s.clone()),
        Value::Bytes(b) => q.bind(b.clone()),
        other => q.bind(other.to_text()),
    }
}

fn decode_row(row: &SqliteRow, cols: &[Col]) -> ReadRow {
    super::read_row(cols, |i, c| decode(row, i, c.ty))
}

fn decode(row: &SqliteRow, i: usize, ty: ColType) -> Result<Value, sqlx::error::BoxDynError> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let storage = raw.type_info().name().to_owned();
    Ok(match storage.as_str() {
        "INTEGER" => {
            let n = <i64 as Decode<Sqlite>>::decode(raw)?;
            match (ty, n) {
                (ColType::Bool, 0) => Value::Bool(false),
                (ColType::Bool, 1) => Value::Bool(true),
                _ => Value::Int(n),
            }
        }
        "REAL" => {
            let f = <f64 as Decode<Sqlite>>::decode(raw)?;
            if ty == ColType::Decimal && f.is_finite() {
                Value::Decimal(f.to_string())
            } else {
                Value::Float(f)
            }
        }
        "BLOB" => Value::Bytes(<Vec<u8> as Decode<Sqlite>>::decode(raw)?),
        _ => {
            let s = <String as Decode<Sqlite>>::decode(raw)?;
            match ty {
                ColType::Decimal => parse_decimal(&s)
                    .map(Value::Decimal)
                    .unwrap_or(Value::Text(s)),
                _ => Value::Text(s),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_result_code() {
        assert_eq!(class_of(Some(5)), ErrorClass::Transient); // BUSY
        assert_eq!(class_of(Some(517)), ErrorClass::Transient); // BUSY_SNAPSHOT
        assert_eq!(class_of(Some(2067)), ErrorClass::Data); // CONSTRAINT_UNIQUE
        assert_eq!(class_of(Some(275)), ErrorClass::Data); // CONSTRAINT_CHECK
        assert_eq!(class_of(Some(1)), ErrorClass::Fatal); // ERROR (e.g. no such table)
    }

    #[test]
    fn declared_types_map_to_kinds() {
        assert_eq!(col_type("INTEGER"), ColType::Int);
        assert_eq!(col_type("TIMESTAMP"), ColType::Timestamp);
        assert_eq!(col_type("timestamptz"), ColType::TimestampTz);
        assert_eq!(col_type("DATE"), ColType::Date);
        assert_eq!(col_type("BOOLEAN"), ColType::Bool);
        assert_eq!(col_type("VARCHAR(50)"), ColType::Text);
        assert_eq!(col_type("DECIMAL(12,2)"), ColType::Decimal);
        assert_eq!(col_type(""), ColType::Other);
    }
}
