//! MySQL and MariaDB (and their protocol family: TiDB, OceanBase MySQL mode, GoldenDB).
//!
//! Sessions run in UTC (so `TIMESTAMP` columns are instants) and in strict mode (a value
//! that does not fit is an error, never a silent truncation). Writes are multi-row
//! `INSERT ... ON DUPLICATE KEY UPDATE` statements of bounded size.

use std::ops::Range;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use futures::TryStreamExt;
use sqlx::mysql::{MySqlArguments, MySqlConnectOptions, MySqlPool, MySqlRow};
use sqlx::{Arguments, ConnectOptions, Decode, MySql, Row, ValueRef};

use super::dialect::{Dialect, Sql};
use super::{
    DbError, ErrorClass, PartWriter, ReadRow, Refused, TableSchema, WriteBatch, chunks, dynamic,
    isolate, value_size,
};
use crate::db::{DbConfig, EngineKind};
use crate::ident::Col;
use crate::ident::{Ident, TableName};
use crate::value::{ColType, Value};

const E: EngineKind = EngineKind::MySql;

/// Strict: errors instead of truncation; an explicit 0 stays 0 in auto-increment columns.
const SESSION: &str = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO'";

/// `trx_started` is in the server's system time zone (whatever the session's): convert it.
const OLDEST_TRANSACTION: &str = "SELECT CONVERT_TZ(MIN(trx_started), 'SYSTEM', '+00:00') \
     FROM information_schema.innodb_trx WHERE trx_mysql_thread_id <> CONNECTION_ID()";

const FIND_TABLE: &str = "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
     WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?";

/// The fourth column says whether the server computes the column (`VIRTUAL GENERATED` or
/// `STORED GENERATED` in `EXTRA`; MySQL's `DEFAULT_GENERATED` is a default, not computed).
const COLUMNS: &str = "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, \
     CASE WHEN EXTRA LIKE '%VIRTUAL GENERATED%' OR EXTRA LIKE '%STORED GENERATED%' \
     OR EXTRA LIKE '%PERSISTENT%' THEN 'Y' ELSE 'N' END FROM information_schema.COLUMNS \
     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION";

const UNIQUE_KEYS: &str = "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
     ORDER BY INDEX_NAME = 'PRIMARY' DESC, INDEX_NAME, SEQ_IN_INDEX";

pub struct My {
    pub pool: MySqlPool,
}

impl My {
    /// Connect; with `lazy` the first connection is made on first use.
    pub async fn connect(cfg: &DbConfig, role: &'static str, lazy: bool) -> Result<Self, DbError> {
        let url = cfg.url.expose().replacen("mariadb://", "mysql://", 1);
        let mut opts = MySqlConnectOptions::from_str(&url)
            .map_err(|e| DbError::connect(cfg, role, &e))?
            .charset("utf8mb4")
            .timezone(Some("+00:00".to_owned()))
            .disable_statement_logging();
        if let Some(p) = &cfg.password {
            opts = opts.password(p.expose());
        }
        let timeout = cfg.statement_timeout.as_secs();
        let pool = super::pool_options(cfg).after_connect(move |conn, _| {
            Box::pin(async move {
                sqlx::query(SESSION).execute(&mut *conn).await?;
                if timeout > 0 {
                    let lock = format!("SET SESSION innodb_lock_wait_timeout = {timeout}");
                    sqlx::query(super::dynamic(&lock))
                        .execute(&mut *conn)
                        .await?;
                    // MariaDB only; MySQL has no such variable and keeps its own limits.
                    let max = format!("SET SESSION max_statement_time = {timeout}");
                    let _ = sqlx::query(super::dynamic(&max)).execute(&mut *conn).await;
                }
                Ok(())
            })
        });
        let pool = if lazy {
            pool.connect_lazy_with(opts)
        } else {
            pool.connect_with(opts)
                .await
                .map_err(|e| DbError::connect(cfg, role, &e))?
        };
        Ok(My { pool })
    }

    /// When the oldest open InnoDB transaction of another connection began (needs the
    /// PROCESS privilege).
    pub async fn oldest_transaction(&self) -> Result<Option<DateTime<Utc>>, DbError> {
        let t: Option<NaiveDateTime> = sqlx::query_scalar(OLDEST_TRANSACTION)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| DbError::query(E, "looking for open transactions", e))?;
        Ok(t.map(|t| t.and_utc()))
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
        let mut computed = Vec::new();
        for r in rows {
            let col = text(&r, 0).map_err(err)?;
            let data_type = text(&r, 1).map_err(err)?.to_ascii_lowercase();
            let native = text(&r, 2).map_err(err)?.to_ascii_lowercase();
            let Ok(name) = Ident::new(&col) else { continue };
            if text(&r, 3).map_err(err)? == "Y" {
                computed.push(name.clone());
            }
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
        let mut keys = Vec::new();
        for r in rows {
            let index = text(&r, 0).map_err(err)?;
            let Ok(col) = Ident::new(&text(&r, 1).map_err(err)?) else {
                continue;
            };
            let primary = index == "PRIMARY";
            keys.push((index, col, primary));
        }
        Ok(TableSchema::from_catalog(&schema, &name, columns, keys)
            .map(|t| TableSchema { computed, ..t }))
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
        let args =
            arguments(sql.params.iter()).map_err(|e| DbError::query(E, "reading rows", e))?;
        let mut stream = sqlx::query_with(dynamic(&sql.text), args).fetch(&self.pool);
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
        let mut part = MyPart {
            delete: w.delete_sql(Dialect::MySql),
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
            let args = arguments(r.iter()).map_err(err)?;
            n += sqlx::query_with(dynamic(text), args)
                .execute(&mut *tx)
                .await
                .map_err(err)?
                .rows_affected();
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
            let args = arguments(r.iter()).map_err(err)?;
            let q = sqlx::query_with(dynamic(text), args);
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

/// Classify a MySQL/MariaDB error by its error number (SQLSTATE as a fallback).
pub(super) fn classify(d: &dyn sqlx::error::DatabaseError) -> (Option<String>, ErrorClass) {
    let number = d
        .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .map(|e| e.number());
    let state = d.code().map(|c| c.into_owned());
    let class = class_of(number, state.as_deref());
    (number.map(|n| n.to_string()).or(state), class)
}

fn class_of(number: Option<u16>, state: Option<&str>) -> ErrorClass {
    match number {
        // lock wait timeout, deadlock, too many concurrent transactions
        Some(1205 | 1213 | 1637) => ErrorClass::Transient,
        // too many connections, shutdown, read-only (failover), interrupted, killed, statement
        // time limit (MariaDB 1969, MySQL 3024), network
        Some(
            1040
            | 1053
            | 1129
            | 1152
            | 1153
            | 1158..=1161
            | 1203
            | 1290
            | 1317
            | 1836
            | 1927
            | 1969
            | 2002
            | 2003
            | 2006
            | 2013
            | 3024,
        ) => ErrorClass::Unavailable,
        // NULL into NOT NULL, duplicate on another unique key, out of range, truncated,
        // bad value, too long, foreign key, check constraint, trigger SIGNAL
        Some(
            1048 | 1062 | 1264 | 1265 | 1292 | 1366 | 1367 | 1406 | 1411 | 1416 | 1451 | 1452
            | 1644 | 1690 | 3140 | 3819 | 4025,
        ) => ErrorClass::Data,
        _ if state == Some("40001") => ErrorClass::Transient,
        _ if state.is_some_and(|s| s.starts_with("22") || s.starts_with("23")) => ErrorClass::Data,
        _ => ErrorClass::Fatal,
    }
}

/// One part of a batch inside the batch's transaction: bounded multi-row upserts, then deletes.
struct MyPart<'a, 'c> {
    tx: &'a mut sqlx::Transaction<'c, MySql>,
    w: &'a WriteBatch<'a>,
    delete: String,
}

impl PartWriter for MyPart<'_, '_> {
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
        let dialect = Dialect::MySql;
        let rows = &self.w.rows[r];
        for (start, end) in chunks(rows, self.w.upsert.columns.len(), dialect.max_params()) {
            let text = dialect.upsert_values(&self.w.upsert, end - start);
            let args =
                arguments(rows[start..end].iter().flatten()).map_err(err("upserting into"))?;
            sqlx::query_with(dynamic(&text), args)
                .execute(&mut **self.tx)
                .await
                .map_err(err("upserting into"))?;
        }
        for del in &self.w.deletes[d] {
            let args = arguments(del.iter()).map_err(err("deleting from"))?;
            sqlx::query_with(dynamic(&self.delete), args)
                .execute(&mut **self.tx)
                .await
                .map_err(err("deleting from"))?;
        }
        Ok(())
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

/// The parameters of a statement, bound in one buffer sized for them up front: a multi-row
/// upsert has up to 65,535, and a buffer grown a value at a time is copied again and again
/// (each time into fresh pages the process faults in).
fn arguments<'v>(
    values: impl Iterator<Item = &'v Value> + Clone,
) -> Result<MySqlArguments, sqlx::Error> {
    // The most each value takes in MySQL's binary protocol (a NULL takes a bit of the bitmap).
    let size = |v: &Value| match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Int(_) | Value::Float(_) => 8,
        Value::Decimal(s) | Value::Text(s) => 9 + s.len(),
        Value::Bytes(b) => 9 + b.len(),
        Value::Date(_) | Value::Time(_) | Value::Timestamp(_) | Value::TimestampTz(_) => 13,
    };
    let (n, bytes) = values
        .clone()
        .fold((0, 0), |(n, b), v| (n + 1, b + size(v)));
    let mut args = MySqlArguments::default();
    args.reserve(n, bytes);
    for v in values {
        match v {
            Value::Null => args.add(None::<String>),
            Value::Bool(b) => args.add(*b),
            Value::Int(i) => args.add(*i),
            Value::Float(f) => args.add(*f),
            Value::Decimal(s) | Value::Text(s) => args.add(s.as_str()),
            Value::Bytes(b) => args.add(b.as_slice()),
            Value::Date(d) => args.add(*d),
            Value::Time(t) => args.add(*t),
            Value::Timestamp(t) => args.add(*t),
            Value::TimestampTz(t) => args.add(*t),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(args)
}

fn decode_row(row: &MySqlRow, cols: &[Col]) -> ReadRow {
    super::read_row(cols, |i, c| decode(row, i, c))
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
    fn arguments_sized_up_front_are_those_sqlx_binds_one_by_one() {
        use sqlx::Execute;
        let day = NaiveDate::from_ymd_opt(2024, 2, 29).expect("date");
        let at = day.and_hms_micro_opt(23, 59, 58, 123_456).expect("time");
        let values = vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(-42),
            Value::Float(1.5),
            Value::Decimal("12345.67".into()),
            Value::Text("黑龙江省哈尔滨市".repeat(40)),
            Value::Bytes(vec![0, 255, 7]),
            Value::Date(day),
            Value::Time(at.time()),
            Value::Timestamp(at),
            Value::TimestampTz(at.and_utc()),
        ];
        // Each value bound by sqlx itself, as its Rust type.
        let mut q = sqlx::query::<MySql>("")
            .bind(None::<String>)
            .bind(true)
            .bind(-42_i64)
            .bind(1.5_f64)
            .bind("12345.67".to_owned())
            .bind("黑龙江省哈尔滨市".repeat(40))
            .bind(vec![0_u8, 255, 7])
            .bind(day)
            .bind(at.time())
            .bind(at)
            .bind(at.and_utc());
        let bound = q.take_arguments().expect("bound").expect("some");
        let sized = arguments(values.iter()).expect("arguments");
        assert_eq!(sized.len(), values.len());
        assert_eq!(format!("{sized:?}"), format!("{bound:?}"));
    }

    #[test]
    fn errors_are_classified_by_number() {
        for (n, class) in [
            (1213, ErrorClass::Transient),   // deadlock
            (1205, ErrorClass::Transient),   // lock wait timeout
            (1040, ErrorClass::Unavailable), // too many connections
            (1927, ErrorClass::Unavailable), // connection killed (MariaDB)
            (1969, ErrorClass::Unavailable), // max_statement_time exceeded (MariaDB)
            (3024, ErrorClass::Unavailable), // max_execution_time exceeded (MySQL)
            (1406, ErrorClass::Data),        // data too long
            (1452, ErrorClass::Data),        // foreign key
            (4025, ErrorClass::Data),        // check constraint (MariaDB)
            (1146, ErrorClass::Fatal),       // no such table
            (1142, ErrorClass::Fatal),       // command denied
        ] {
            assert_eq!(class_of(Some(n), Some("HY000")), class, "{n}");
        }
        assert_eq!(class_of(Some(9999), Some("40001")), ErrorClass::Transient);
        assert_eq!(class_of(Some(9999), Some("22003")), ErrorClass::Data);
    }

    #[test]
    fn catalog_types_map_to_kinds() {
        assert_eq!(col_type("tinyint"), ColType::Int);
        assert_eq!(col_type("decimal"), ColType::Decimal);
        assert_eq!(col_type("datetime"), ColType::Timestamp);
        assert_eq!(col_type("timestamp"), ColType::TimestampTz);
        assert_eq!(col_type("json"), ColType::Other);
    }
}
