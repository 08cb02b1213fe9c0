//! PostgreSQL (and its protocol family: KingbaseES, openGauss, HighGo) through sqlx.
//!
//! Reads stream a select's rows by `COPY (SELECT ...) TO STDOUT (FORMAT binary)` and decode
//! them from their binary forms. Writes go in
//! by `COPY`: a batch of only new keys straight into the target, any other into a temporary
//! staging table and from there with one `INSERT ... ON CONFLICT DO UPDATE ... WHERE`, so a
//! newer stored row is never replaced by an older one.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{ConnectOptions, Postgres, Row};

use super::dialect::{Dialect, Sql};
use super::pgbinary;
use super::{DbError, ErrorClass, ReadRow, TableSchema, dynamic, value_size};
use crate::db::{DbConfig, EngineKind};
use crate::ident::Col;
use crate::ident::{Ident, TableName};
use crate::value::{ColType, Value};

mod values;
mod write;

use values::{bind, decode_row, statement};

const E: EngineKind = EngineKind::Postgres;

/// The agent's `application_name`: its own sessions are not "open transactions" to wait for.
const APPLICATION: &str = "frontdb-agent";

/// Oldest transaction start among other client sessions of this database, and the number of
/// other users' sessions whose transaction the agent is not allowed to see.
const OLDEST_TRANSACTION: &str = "SELECT min(xact_start), \
       count(*) FILTER (WHERE state IS NULL AND usename <> current_user)::int8 \
     FROM pg_catalog.pg_stat_activity \
     WHERE datname = current_database() AND pid <> pg_backend_pid() \
       AND backend_type = 'client backend' AND coalesce(application_name, '') <> $1";

pub struct Pg {
    pub pool: PgPool,
    /// `COPY` buffers of batches written, kept for the next ones: a fresh buffer of
    /// megabytes costs a page fault for every 4 KiB of it.
    spare: std::sync::Mutex<Vec<Vec<u8>>>,
    /// Per exchange table with a one-column integer key: the greatest key it is known to
    /// hold (asked along with the first batch's keys, raised by every batch copied straight
    /// in). A batch whose keys all lie above it is copied straight in without asking (the
    /// batches of a first exchange, appended rows); should another writer have put one of
    /// them there meanwhile, the target refuses the `COPY` and the batch is merged.
    known_max: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    /// Exchange tables that refuse a `COPY` straight in (a view, row-level security): their
    /// batches are always merged.
    merge_only: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The connection of the batch last copied straight in, and when it committed: the next
    /// such batch begins once that one committed and takes it again (see [`Pg::direct_conn`]).
    direct: std::sync::Arc<std::sync::Mutex<Option<Kept>>>,
}

type Kept = (sqlx::pool::PoolConnection<Postgres>, std::time::Instant);

/// How long the connection of a batch copied straight in is kept for the next one; then it
/// goes back to the pool (which checks a connection before it is used again), so that it is
/// never held from the pool's other users for longer. The batches of one cycle follow each
/// other within milliseconds.
const DIRECT_KEEP: std::time::Duration = std::time::Duration::from_millis(250);

/// At most this many spare `COPY` buffers are kept, each of at most this many bytes.
const SPARE_BUFFERS: usize = 2;
const SPARE_BYTES: usize = 16 << 20;

impl Pg {
    /// A spare buffer when there is one (`encode_binary` sizes it).
    fn buffer(&self) -> Vec<u8> {
        let spare = self.spare.lock().ok().and_then(|mut s| s.pop());
        spare.unwrap_or_default()
    }

    /// The greatest key `table` is known to hold.
    fn known_max(&self, table: &str) -> Option<i64> {
        self.known_max.lock().ok()?.get(table).copied()
    }

    /// Record that `table` holds keys up to `max` (at least), or forget what it holds.
    fn hold(&self, table: &str, max: Option<i64>) {
        if let Ok(mut known) = self.known_max.lock() {
            match max {
                Some(m) => {
                    let k = known.entry(table.to_owned()).or_insert(m);
                    *k = (*k).max(m);
                }
                None => {
                    known.remove(table);
                }
            }
        }
    }

    /// A connection for a batch copied straight in: the one the batch before used when it
    /// committed just now, else one from the pool: appends written one after another by one
    /// server process are faster than each overlapping the one before's commit on a second
    /// connection (bench/RESULTS.md has the figures).
    async fn direct_conn(&self) -> Result<sqlx::pool::PoolConnection<Postgres>, sqlx::Error> {
        let kept = self.direct.lock().ok().and_then(|mut d| d.take());
        match kept {
            Some((conn, at)) if at.elapsed() < DIRECT_KEEP => Ok(conn),
            _ => self.pool.acquire().await,
        }
    }

    /// Keep the connection of a batch just copied straight in for the next one, for at most
    /// [`DIRECT_KEEP`]. A pool of one connection is not kept from: the next batch gets the
    /// same connection from it anyway.
    fn keep_direct(&self, conn: sqlx::pool::PoolConnection<Postgres>) {
        if self.pool.options().get_max_connections() < 2 {
            return;
        }
        let at = std::time::Instant::now();
        if let Ok(mut d) = self.direct.lock() {
            *d = Some((conn, at));
        }
        let slot = std::sync::Arc::clone(&self.direct);
        tokio::spawn(async move {
            tokio::time::sleep(DIRECT_KEEP).await;
            // Still the same one, not taken since: back to the pool.
            let stale = slot
                .lock()
                .ok()
                .and_then(|mut d| d.take_if(|(_, kept)| *kept == at));
            drop(stale);
        });
    }

    /// Close the pool, once the kept connection is back in it.
    pub async fn close(&self) {
        let kept = self.direct.lock().ok().and_then(|mut d| d.take());
        drop(kept);
        self.pool.close().await;
    }

    /// [`Pg::give_back`] a payload's buffer, if it has one.
    fn give_back_payload(&self, p: write::Payload<'_>) {
        if let write::Payload::Buf(b) = p {
            self.give_back(b);
        }
    }

    /// Keep a buffer for a later batch.
    fn give_back(&self, mut buf: Vec<u8>) {
        if buf.capacity() > SPARE_BYTES {
            return;
        }
        buf.clear();
        if let Ok(mut s) = self.spare.lock()
            && s.len() < SPARE_BUFFERS
        {
            s.push(buf);
        }
    }
}

const FIND_TABLE: &str = "SELECT c.oid::int8, n.nspname::text, c.relname::text, \
       c.relkind IN ('r', 'p') \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
       AND n.nspname = COALESCE($1, current_schema()) \
       AND (c.relname = $2 OR lower(c.relname) = lower($2)) \
     ORDER BY (c.relname = $2) DESC LIMIT 1";

/// The ids of a snapshot taken now, with their epoch (64 bits, never wrapping around).
const SNAPSHOT: &str = "SELECT pg_snapshot_xmin(s)::text::int8, pg_snapshot_xmax(s)::text::int8 \
     FROM pg_current_snapshot() AS s";

const COLUMNS: &str = "SELECT a.attname::text, \
       (CASE WHEN t.typtype = 'd' THEN bt.typname ELSE t.typname END)::text, \
       format_type(a.atttypid, a.atttypmod), \
       (a.attgenerated <> '' OR a.attidentity = 'a') \
     FROM pg_catalog.pg_attribute a \
     JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
     LEFT JOIN pg_catalog.pg_type bt ON bt.oid = t.typbasetype \
     WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped \
     ORDER BY a.attnum";

const UNIQUE_KEYS: &str = "SELECT i.indexrelid::int8, i.indisprimary, a.attname::text \
     FROM pg_catalog.pg_index i \
     CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
     JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
     WHERE i.indrelid = $1::int8::oid AND i.indisunique AND i.indpred IS NULL \
     ORDER BY i.indexrelid, k.ord";

impl Pg {
    /// Connect; with `lazy` the first connection is made on first use (the daemon starts
    /// even while the database is down).
    pub async fn connect(cfg: &DbConfig, role: &'static str, lazy: bool) -> Result<Self, DbError> {
        let mut opts = PgConnectOptions::from_str(cfg.url.expose())
            .map_err(|e| DbError::connect(cfg, role, &e))?
            .application_name(APPLICATION)
            .options([("TimeZone", "UTC"), ("client_min_messages", "warning")])
            .disable_statement_logging();
        if !cfg.statement_timeout.is_zero() {
            let ms = cfg.statement_timeout.as_millis().to_string();
            opts = opts.options([("statement_timeout", ms.as_str())]);
        }
        if let Some(p) = &cfg.password {
            opts = opts.password(p.expose());
        }
        let pool = super::pool_options(cfg);
        let pool = if lazy {
            pool.connect_lazy_with(opts)
        } else {
            pool.connect_with(opts)
                .await
                .map_err(|e| DbError::connect(cfg, role, &e))?
        };
        Ok(Pg {
            pool,
            spare: std::sync::Mutex::new(Vec::new()),
            known_max: std::sync::Mutex::new(std::collections::HashMap::new()),
            merge_only: std::sync::Mutex::new(std::collections::HashSet::new()),
            direct: std::sync::Arc::new(std::sync::Mutex::new(None)),
        })
    }

    /// A connection listening on these NOTIFY channels.
    pub async fn listen(&self, channels: &[&str]) -> Result<sqlx::postgres::PgListener, DbError> {
        let err = |e| DbError::query(E, "listening for notifications", e);
        let mut l = sqlx::postgres::PgListener::connect_with(&self.pool)
            .await
            .map_err(err)?;
        l.listen_all(channels.iter().copied()).await.map_err(err)?;
        Ok(l)
    }

    /// When the oldest transaction of another session began, and how many sessions of
    /// other users the agent cannot see (it needs `pg_read_all_stats` for them).
    pub async fn oldest_transaction(&self) -> Result<(Option<DateTime<Utc>>, i64), DbError> {
        let row = sqlx::query(OLDEST_TRANSACTION)
            .bind(APPLICATION)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| DbError::query(E, "looking for open transactions", e))?;
        let err = |e| DbError::query(E, "looking for open transactions", e);
        Ok((row.try_get(0).map_err(err)?, row.try_get(1).map_err(err)?))
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
        let oid: i64 = found.try_get(0).map_err(err)?;
        let schema: String = found.try_get(1).map_err(err)?;
        let name: String = found.try_get(2).map_err(err)?;
        let table: bool = found.try_get(3).map_err(err)?;
        let rows = sqlx::query(COLUMNS)
            .bind(oid)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        let mut columns = Vec::new();
        let mut computed = Vec::new();
        for r in rows {
            let col: String = r.try_get(0).map_err(err)?;
            let typname: String = r.try_get(1).map_err(err)?;
            let native: String = r.try_get(2).map_err(err)?;
            let generated: bool = r.try_get(3).map_err(err)?;
            // A column whose name is not a valid identifier cannot be configured; skip it.
            let Ok(name) = Ident::new(&col) else { continue };
            if generated {
                computed.push(name.clone());
            }
            columns.push(Col {
                name,
                ty: col_type(&typname),
                native,
            });
        }
        let rows = sqlx::query(UNIQUE_KEYS)
            .bind(oid)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        let mut keys = Vec::new();
        for r in rows {
            let idx: i64 = r.try_get(0).map_err(err)?;
            let primary: bool = r.try_get(1).map_err(err)?;
            let col: String = r.try_get(2).map_err(err)?;
            let Ok(col) = Ident::new(&col) else { continue };
            keys.push((idx, col, primary));
        }
        Ok(
            TableSchema::from_catalog(&schema, &name, columns, keys).map(|t| TableSchema {
                row_xids: table,
                computed,
                ..t
            }),
        )
    }

    /// The server's transaction ids now: the oldest still running and the next to be
    /// assigned (PostgreSQL 13 and later).
    pub async fn snapshot(&self) -> Result<super::Snapshot, DbError> {
        let err = |e| DbError::query(E, "reading the current transaction ids", e);
        let row = sqlx::query(SNAPSHOT)
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
        let xmin: i64 = row.try_get(0).map_err(err)?;
        let xmax: i64 = row.try_get(1).map_err(err)?;
        Ok(super::Snapshot {
            xmin: xmin.max(0) as u64,
            xmax: xmax.max(0) as u64,
        })
    }

    pub async fn now(&self) -> Result<DateTime<Utc>, DbError> {
        sqlx::query_scalar("SELECT now()")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| DbError::query(E, "reading the database time", e))
    }

    /// Run a select; its rows are streamed by `COPY ... TO STDOUT (FORMAT binary)` (see
    /// [`super::dialect::PgCopy`]), or as query results when a parameter has no exact text.
    pub async fn fetch(
        &self,
        sql: &Sql,
        cols: &[Col],
        max_bytes: usize,
    ) -> Result<(Vec<ReadRow>, bool), DbError> {
        match &sql.copy {
            Some(c) => {
                self.fetch_copy(&c.text, &c.settings, cols, max_bytes, None)
                    .await
            }
            None => self.fetch_query(sql, cols, max_bytes).await,
        }
    }

    /// Read a `COPY ... TO STDOUT (FORMAT binary)`; with `tuples`, every row keeps its tuple
    /// and only the columns marked are decoded ([`super::Db::fetch_tuples`]), of a result
    /// expected to have at most so many rows.
    pub(super) async fn fetch_copy(
        &self,
        copy: &str,
        settings: &[String],
        cols: &[Col],
        max_bytes: usize,
        tuples: Option<(&[bool], usize)>,
    ) -> Result<(Vec<ReadRow>, bool), DbError> {
        let err = |e| DbError::query(E, "reading rows", e);
        let mut conn = super::pgstream::Closing {
            conn: self.pool.acquire().await.map_err(err)?,
            clean: false,
        };
        // The settings and the COPY share a transaction: the settings end with it, and a
        // pooler in transaction mode (PgBouncer) cannot send the two to different sessions.
        sqlx::query("BEGIN")
            .execute(&mut *conn.conn)
            .await
            .map_err(err)?;
        if !settings.is_empty() {
            let set = Dialect::Postgres.pg_set_params(settings.len());
            let mut q = sqlx::query(dynamic(&set));
            for v in settings {
                q = q.bind(v.as_str());
            }
            q.execute(&mut *conn.conn).await.map_err(err)?;
        }
        let mut stream = conn.conn.copy_out_raw(copy).await.map_err(err)?;
        let (mut reader, mut rows) = match tuples {
            Some((decode, expect)) => (
                pgbinary::CopyOut::keeping(decode),
                Vec::with_capacity(expect.min(1 << 16)),
            ),
            None => (pgbinary::CopyOut::default(), Vec::new()),
        };
        let mut bytes = 0;
        while let Some(data) = stream.try_next().await.map_err(err)? {
            let before = rows.len();
            reader
                .feed(&data, cols, &mut rows)
                .map_err(super::pgstream::unreadable)?;
            bytes += rows[before..]
                .iter()
                .map(super::pgstream::row_size)
                .sum::<usize>();
            if bytes >= max_bytes {
                // The rest of the result is not wanted: the connection is closed rather
                // than drained.
                return Ok((rows, true));
            }
        }
        drop(stream);
        if !reader.ended || reader.partial() {
            return Err(super::pgstream::cut_short());
        }
        sqlx::query("COMMIT")
            .execute(&mut *conn.conn)
            .await
            .map_err(err)?;
        conn.clean = true;
        Ok((rows, false))
    }

    /// Stream a select's rows by one `COPY (SELECT ...) TO STDOUT (FORMAT binary)` from which
    /// batch after batch is taken (see [`CopyStream`]).
    pub(super) fn stream(
        &self,
        copy: &super::dialect::PgCopy,
        cols: &[Col],
        tuples: Option<&[bool]>,
    ) -> super::pgstream::CopyStream {
        let (ask, asks) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(super::pgstream::serve(
            self.pool.clone(),
            copy.text.clone(),
            copy.settings.clone(),
            cols.to_vec(),
            tuples.map(<[bool]>::to_vec),
            asks,
        ));
        super::pgstream::CopyStream::new(ask, task.abort_handle())
    }

    async fn fetch_query(
        &self,
        sql: &Sql,
        cols: &[Col],
        max_bytes: usize,
    ) -> Result<(Vec<ReadRow>, bool), DbError> {
        let mut q = sqlx::query(statement(&sql.text, &sql.params));
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

    pub async fn exec_many(&self, text: &str, rows: &[Vec<Value>]) -> Result<u64, DbError> {
        let err = |e| DbError::query(E, "updating rows", e);
        let mut tx = self.pool.begin().await.map_err(err)?;
        let mut n = 0;
        for r in rows {
            let mut q = sqlx::query(statement(text, r));
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
            let mut q = sqlx::query(statement(text, r));
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

/// Classify a PostgreSQL error by its SQLSTATE.
pub(super) fn classify(d: &dyn sqlx::error::DatabaseError) -> (Option<String>, ErrorClass) {
    let code = d.code().map(|c| c.into_owned());
    let class = class_of(code.as_deref(), d.message());
    (code, class)
}

fn class_of(code: Option<&str>, message: &str) -> ErrorClass {
    match code {
        // serialization failure, deadlock, lock not available
        Some("40001" | "40P01" | "55P03") => ErrorClass::Transient,
        // statement timeout (or cancelled by an administrator): the exchange is slow or
        // blocked; tried again later like an outage
        Some("57014") => ErrorClass::Unavailable,
        // connection exceptions, shutdown, cannot connect now, insufficient resources
        Some(c)
            if c.starts_with("08")
                || c.starts_with("53")
                || matches!(c, "57P01" | "57P02" | "57P03" | "58030") =>
        {
            ErrorClass::Unavailable
        }
        Some("55000") if message.contains("not currently accepting connections") => {
            ErrorClass::Unavailable
        }
        // data exceptions, integrity constraint violations, exceptions raised by triggers
        Some(c) if c.starts_with("22") || c.starts_with("23") || c == "P0001" => ErrorClass::Data,
        _ => ErrorClass::Fatal,
    }
}

/// The exchange kind of a PostgreSQL base type name.
fn col_type(typname: &str) -> ColType {
    match typname {
        "bool" => ColType::Bool,
        "int2" | "int4" | "int8" => ColType::Int,
        "float4" | "float8" => ColType::Float,
        "numeric" => ColType::Decimal,
        "text" | "varchar" | "bpchar" | "name" => ColType::Text,
        "bytea" => ColType::Bytes,
        "date" => ColType::Date,
        "time" => ColType::Time,
        "timestamp" => ColType::Timestamp,
        "timestamptz" => ColType::TimestampTz,
        _ => ColType::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_sqlstate() {
        for (code, class) in [
            ("40P01", ErrorClass::Transient),   // deadlock
            ("40001", ErrorClass::Transient),   // serialization failure
            ("08006", ErrorClass::Unavailable), // connection failure
            ("57P01", ErrorClass::Unavailable), // admin shutdown
            ("53300", ErrorClass::Unavailable), // too many connections
            ("57014", ErrorClass::Unavailable), // statement timeout
            ("23505", ErrorClass::Data),        // unique violation
            ("23514", ErrorClass::Data),        // check violation
            ("22001", ErrorClass::Data),        // value too long
            ("P0001", ErrorClass::Data),        // raised by a trigger
            ("42P01", ErrorClass::Fatal),       // no such table
            ("42501", ErrorClass::Fatal),       // permission denied
        ] {
            assert_eq!(class_of(Some(code), ""), class, "{code}");
        }
        let refusing = "database \"x\" is not currently accepting connections";
        assert_eq!(class_of(Some("55000"), refusing), ErrorClass::Unavailable);
        assert_eq!(class_of(Some("55000"), "other"), ErrorClass::Fatal);
    }

    #[test]
    fn catalog_types_map_to_kinds() {
        assert_eq!(col_type("numeric"), ColType::Decimal);
        assert_eq!(col_type("timestamptz"), ColType::TimestampTz);
        assert_eq!(col_type("jsonb"), ColType::Other);
        assert_eq!(col_type("bpchar"), ColType::Text);
    }
}
