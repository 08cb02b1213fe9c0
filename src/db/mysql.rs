//! MySQL and MariaDB (and their protocol family: TiDB, OceanBase MySQL mode, GoldenDB).
//!
//! Sessions run in UTC (so `TIMESTAMP` columns are instants) and in strict mode (a value
//! that does not fit is an error, never a silent truncation). Writes are multi-row
//! `INSERT ... ON DUPLICATE KEY UPDATE` statements of bounded size.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use futures::TryStreamExt;
use sqlx::mysql::{MySqlArguments, MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::query::Query;
use sqlx::{ConnectOptions, Decode, MySql, Row, ValueRef};

use super::dialect::{Col, Dialect, Sql};
use super::ident::{Ident, TableName};
use super::{DbError, ReadRow, TableSchema, WriteBatch, chunks, dynamic, value_size};
use crate::config::{DbConfig, EngineKind};
use crate::value::{ColType, Value};

const E: EngineKind = EngineKind::MySql;

/// Strict: errors instead of truncation; an explicit 0 stays 0 in auto-increment columns.
const SESSION: &str = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO'";

const FIND_TABLE: &str = "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
     WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?";

const COLUMNS: &str = "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS \
     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION";

const UNIQUE_KEYS: &str = "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
     ORDER BY INDEX_NAME = 'PRIMARY' DESC, INDEX_NAME, SEQ_IN_INDEX";

pub struct My {
    pub pool: MySqlPool,
}

impl My {
    pub async fn connect(cfg: &DbConfig, role: &'static str) -> Result<Self, DbError> {
        let fail = |cause: String, retriable: bool| DbError::Connect {
            role,
            engine: E,
            url: cfg.redacted.clone(),
            cause,
            retriable,
        };
        let url = cfg.url.expose().replacen("mariadb://", "mysql://", 1);
        let mut opts = MySqlConnectOptions::from_str(&url)
            .map_err(|e| fail(format!("invalid URL: {e}"), false))?
            .charset("utf8mb4")
            .timezone(Some("+00:00".to_owned()))
            .disable_statement_logging();
        if let Some(p) = &cfg.password {
            opts = opts.password(p.expose());
        }
        let pool = MySqlPoolOptions::new()
            .max_connections(cfg.max_connections)
            .acquire_timeout(cfg.connect_timeout)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query(SESSION).execute(conn).await?;
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| {
                let code = match &e {
                    sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
                    _ => None,
                };
                let retriable = super::retriable(E, &e, code.as_deref());
                fail(super::describe(&e), retriable)
            })?;
        Ok(My { pool })
    }

    pub async fn introspect(&self, t: &TableName) -> Result<Option<TableSchema>, DbError> {
        let doing = format!("reading the catalog for table {t}");
        let err = |e| DbError::query(E, &doing, e);
        let found = sqlx::query(FIND_TABLE)
            .bind(t.schema.as_ref().map(|s| s.as_str().to_owned()))
            .bind(t.name.as_str().to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        let Some(found) = found else {
            return Ok(None);
        };
        let schema = text(&found, 0).map_err(err)?;
        let name = text(&found, 1).map_err(err)?;
        let rows = sqlx::query(COLUMNS)
            .bind(&schema)
            .bind(&name)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        let mut columns = Vec::new();
        for r in rows {
            let col = text(&r, 0).map_err(err)?;
            let data_type = text(&r, 1).map_err(err)?.to_ascii_lowercase();
            let native = text(&r, 2).map_err(err)?.to_ascii_lowercase();
            let Ok(name) = Ident::new(&col) else { continue };
            columns.push(Col {
                name,
                ty: col_type(&data_type),
                native,
            });
        }
        let rows = sqlx::query(UNIQUE_KEYS)
            .bind(&schema)
            .bind(&name)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        let mut unique_keys: Vec<Vec<Ident>> = Vec::new();
        let mut primary_key = Vec::new();
        let mut last: Option<String> = None;
        for r in rows {
            let index = text(&r, 0).map_err(err)?;
            let Ok(col) = Ident::new(&text(&r, 1).map_err(err)?) else {
                continue;
            };
            if last.as_deref() != Some(index.as_str()) {
                unique_keys.push(Vec::new());
                last = Some(index.clone());
            }
            if index == "PRIMARY" {
                primary_key.push(col.clone());
            }
            if let Some(u) = unique_keys.last_mut() {
                u.push(col);
            }
        }
        let (Ok(schema), Ok(name)) = (Ident::new(&schema), Ident::new(&name)) else {
            return Ok(None);
        };
        Ok(Some(TableSchema {
            name: TableName {
                schema: Some(schema),
                name,
            },
            columns,
            primary_key,
            unique_keys,
        }))
    }

    pub async fn now(&self) -> Result<DateTime<Utc>, DbError> {
        let t: NaiveDateTime = sqlx::query_scalar("SELECT UTC_TIMESTAMP(6)")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| DbError::query(E, "reading the database time", e))?;
        Ok(t.and_utc())
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

    pub async fn write(&self, w: &WriteBatch<'_>) -> Result<(), DbError> {
        let table = w.upsert.table;
        let err = |doing: &str| {
            let doing = format!("{doing} {table}");
            move |e| DbError::query(E, doing, e)
        };
        let d = Dialect::MySql;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(err("starting a transaction on"))?;
        let ncols = w.upsert.columns.len();
        for (start, end) in chunks(w.rows, ncols, d.max_params()) {
            let text = d.upsert_values(&w.upsert, end - start);
            let mut q = sqlx::query(dynamic(&text));
            for row in &w.rows[start..end] {
                for v in row {
                    q = bind(q, v);
                }
            }
            q.execute(&mut *tx).await.map_err(err("upserting into"))?;
        }
        if !w.deletes.is_empty() {
            let text = d.delete_row(table, w.key_cols, w.version_col);
            for del in w.deletes {
                let mut q = sqlx::query(dynamic(&text));
                for v in del {
                    q = bind(q, v);
                }
                q.execute(&mut *tx).await.map_err(err("deleting from"))?;
            }
        }
        tx.commit()
            .await
            .map_err(err("committing the batch into"))?;
        Ok(())
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
}

/// A text column of the catalog (some servers report catalog text with a binary collation).
fn text(row: &MySqlRow, i: usize) -> Result<String, sqlx::Error> {
    match row.try_get_unchecked::<String, _>(i) {
        Ok(s) => Ok(s),
        Err(_) => {
            let b: Vec<u8> = row.try_get_unchecked(i)?;
            Ok(String::from_utf8_lossy(&b).into_owned())
        }
    }
}

/// The exchange kind of a MySQL `DATA_TYPE`. `tinyint(1)` stays an integer: flag columns
/// such as `sync_sign` hold 0, 1 and 9.
fn col_type(data_type: &str) -> ColType {
    match data_type {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
            ColType::Int
        }
        "decimal" | "numeric" => ColType::Decimal,
        "float" | "double" | "real" => ColType::Float,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" => {
            ColType::Text
        }
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "bit" => {
            ColType::Bytes
        }
        "date" => ColType::Date,
        "time" => ColType::Time,
        "datetime" => ColType::Timestamp,
        "timestamp" => ColType::TimestampTz,
        _ => ColType::Other,
    }
}

type MyQuery<'q> = Query<'q, MySql, MySqlArguments>;

fn bind<'q>(q: MyQuery<'q>, v: &Value) -> MyQuery<'q> {
    match v {
        Value::Null => q.bind(None::<String>),
        Value::Bool(b) => q.bind(*b),
        Value::Int(i) => q.bind(*i),
        Value::Float(f) => q.bind(*f),
        Value::Decimal(s) | Value::Text(s) => q.bind(s.clone()),
        Value::Bytes(b) => q.bind(b.clone()),
        Value::Date(d) => q.bind(*d),
        Value::Time(t) => q.bind(*t),
        Value::Timestamp(t) => q.bind(*t),
        Value::TimestampTz(t) => q.bind(*t),
    }
}

fn decode_row(row: &MySqlRow, cols: &[Col]) -> ReadRow {
    let mut bad = None;
    let values = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            decode(row, i, c).unwrap_or_else(|e| {
                bad.get_or_insert_with(|| format!("column {}: cannot read the value: {e}", c.name));
                Value::Null
            })
        })
        .collect();
    ReadRow { values, bad }
}

fn decode(row: &MySqlRow, i: usize, c: &Col) -> Result<Value, sqlx::error::BoxDynError> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    Ok(match c.ty {
        ColType::Int if c.native.contains("unsigned") => {
            let u = <u64 as Decode<MySql>>::decode(raw)?;
            match i64::try_from(u) {
                Ok(i) => Value::Int(i),
                Err(_) => Value::Decimal(u.to_string()),
            }
        }
        ColType::Bool | ColType::Int => Value::Int(<i64 as Decode<MySql>>::decode(raw)?),
        ColType::Float => Value::Float(<f64 as Decode<MySql>>::decode(raw)?),
        ColType::Decimal => Value::Decimal(<String as Decode<MySql>>::decode(raw)?),
        ColType::Text | ColType::Other => Value::Text(<String as Decode<MySql>>::decode(raw)?),
        ColType::Bytes => Value::Bytes(<Vec<u8> as Decode<MySql>>::decode(raw)?),
        ColType::Date => Value::Date(<NaiveDate as Decode<MySql>>::decode(raw)?),
        ColType::Time => Value::Time(<NaiveTime as Decode<MySql>>::decode(raw)?),
        ColType::Timestamp => Value::Timestamp(<NaiveDateTime as Decode<MySql>>::decode(raw)?),
        ColType::TimestampTz => Value::TimestampTz(<DateTime<Utc> as Decode<MySql>>::decode(raw)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_types_map_to_kinds() {
        assert_eq!(col_type("tinyint"), ColType::Int);
        assert_eq!(col_type("decimal"), ColType::Decimal);
        assert_eq!(col_type("datetime"), ColType::Timestamp);
        assert_eq!(col_type("timestamp"), ColType::TimestampTz);
        assert_eq!(col_type("json"), ColType::Other);
    }
}
