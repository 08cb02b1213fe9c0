//! PostgreSQL (and its protocol family: KingbaseES, openGauss, HighGo) through sqlx.
//!
//! Reads stream a select's rows by `COPY (SELECT ...) TO STDOUT (FORMAT binary)` and decode
//! them from their binary forms. Writes go in
//! by `COPY`: a batch of only new keys straight into the target, any other into a temporary
//! staging table and from there with one `INSERT ... ON CONFLICT DO UPDATE ... WHERE`, so a
//! newer stored row is never replaced by an older one.

use std::ops::Range;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgRow, PgValueFormat};
use sqlx::query::Query;
use sqlx::{ConnectOptions, Decode, Postgres, Row, ValueRef};

use super::dialect::{Col, Dialect, Sql};
use super::ident::{Ident, TableName};
use super::pgbinary;
use super::{
    DbError, ErrorClass, PartWriter, ReadRow, Refused, TableSchema, WriteBatch, dynamic, isolate,
    value_size,
};
use crate::config::{DbConfig, EngineKind};
use crate::value::{ColType, Value};

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
}

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

    /// Keep a buffer for a later batch.
    /// [`Pg::give_back`] a payload's buffer, if it has one.
    fn give_back_payload(&self, p: Payload<'_>) {
        if let Payload::Buf(b) = p {
            self.give_back(b);
        }
    }

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

const FIND_TABLE: &str = "SELECT c.oid::int8, n.nspname::text, c.relname::text \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
       AND n.nspname = COALESCE($1, current_schema()) \
       AND (c.relname = $2 OR lower(c.relname) = lower($2)) \
     ORDER BY (c.relname = $2) DESC LIMIT 1";

const COLUMNS: &str = "SELECT a.attname::text, \
       (CASE WHEN t.typtype = 'd' THEN bt.typname ELSE t.typname END)::text, \
       format_type(a.atttypid, a.atttypmod) \
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
        let rows = sqlx::query(COLUMNS)
            .bind(oid)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        let mut columns = Vec::new();
        for r in rows {
            let col: String = r.try_get(0).map_err(err)?;
            let typname: String = r.try_get(1).map_err(err)?;
            let native: String = r.try_get(2).map_err(err)?;
            // A column whose name is not a valid identifier cannot be configured; skip it.
            let Ok(name) = Ident::new(&col) else { continue };
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
        let mut unique_keys: Vec<Vec<Ident>> = Vec::new();
        let mut primary_key = Vec::new();
        let mut last = None;
        for r in rows {
            let idx: i64 = r.try_get(0).map_err(err)?;
            let primary: bool = r.try_get(1).map_err(err)?;
            let col: String = r.try_get(2).map_err(err)?;
            let Ok(col) = Ident::new(&col) else { continue };
            if last != Some(idx) {
                unique_keys.push(Vec::new());
                last = Some(idx);
            }
            if primary {
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
        let mut conn = Closing {
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
                .map_err(|cause| DbError::Query {
                    engine: E,
                    doing: "reading rows".into(),
                    cause,
                    code: None,
                    class: ErrorClass::Fatal,
                })?;
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
            return Err(DbError::Query {
                engine: E,
                doing: "reading rows".into(),
                cause: "the COPY data ended in the middle of a row".into(),
                code: None,
                class: ErrorClass::Unavailable,
            });
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

    /// Write a batch once `ready` resolves; the batch is encoded for `COPY` meanwhile.
    pub async fn write_when(
        &self,
        w: &WriteBatch<'_>,
        ready: impl Future<Output = ()>,
        turn: &super::Turn,
    ) -> Result<Vec<Refused>, DbError> {
        let binary = pgbinary::kinds(w.upsert.columns);
        let encoded = binary
            .as_ref()
            .and_then(|kinds| encode(|| self.buffer(), kinds, w, 0..w.rows.len()));
        ready.await;
        let table = w.upsert.table;
        let err = |doing: &str| {
            let doing = format!("{doing} {table}");
            move |e| DbError::query(E, doing, e)
        };
        let d = Dialect::Postgres;
        let stage = stage_name(w);
        let mut direct = match w.upsert.key {
            [k] => Some(Direct {
                any: d.pg_any_key(table, &w.upsert.columns[*k]),
                range: d.pg_key_range(table, &w.upsert.columns[*k]),
                copy: format!(
                    "{} (FORMAT binary)",
                    d.pg_copy_into(table, w.upsert.columns)
                ),
            }),
            _ => None,
        };
        // Only new keys and nothing to delete (a first exchange, rows appended since the last):
        // one binary COPY straight into the target, a transaction of its own. Whether the
        // target has none of the keys is asked first, unless they all lie above the greatest
        // key it is known to hold. Should the target refuse the COPY (a key it has, a row it
        // does not take), the batch takes the transaction below.
        let name = table.to_string();
        if self.merge_only.lock().is_ok_and(|m| m.contains(&name)) {
            direct = None;
        }
        if let (Some(dr), Some(buf), true) = (&direct, &encoded, w.deletes.is_empty()) {
            let mut conn = self
                .pool
                .acquire()
                .await
                .map_err(err("connecting to the exchange for"))?;
            let range = int_key_range(w, w.rows);
            let new = match (range, self.known_max(&name)) {
                (Some((lo, _)), Some(max)) if lo > max => true,
                _ => {
                    let (new, max) = new_keys(&mut conn, dr, w, w.rows, range).await?;
                    self.hold(&name, max);
                    new
                }
            };
            let copied = if new {
                match copy_direct(&mut conn, &dr.copy, buf, turn, || {
                    if let Some((_, hi)) = range {
                        self.hold(&name, Some(hi));
                    }
                })
                .await
                {
                    Ok(()) => true,
                    Err(Unsent::After) => {
                        self.hold(&name, None);
                        return Err(super::Turn::not_after(E));
                    }
                    Err(Unsent::Commit(e)) => {
                        self.hold(&name, None);
                        return Err(err("committing the batch into")(e));
                    }
                    Err(Unsent::Copy(e)) => {
                        let e = err("copying rows into")(e);
                        match e.class() {
                            ErrorClass::Unavailable | ErrorClass::Transient => {
                                self.hold(&name, None);
                                return Err(e);
                            }
                            ErrorClass::Data => {}
                            // The merge may well work where COPY cannot.
                            ErrorClass::Fatal => {
                                tracing::info!(
                                    table = %table,
                                    "the exchange refuses COPY straight into {table} ({}): its batches are merged from now on",
                                    e.cause()
                                );
                                if let Ok(mut m) = self.merge_only.lock() {
                                    m.insert(name.clone());
                                }
                            }
                        }
                        false
                    }
                }
            } else {
                false
            };
            if !copied {
                self.hold(&name, None);
            }
            if copied {
                if let Some(Payload::Buf(buf)) = encoded {
                    self.give_back(buf);
                }
                return Ok(Vec::new());
            }
            // Asked already: the transaction merges every part.
            direct = None;
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(err("starting a transaction on"))?;
        let mut part = PgPart {
            stage: d.pg_stage(&stage, table, w.upsert.columns),
            staged: false,
            copy: d.pg_copy(&stage, w.upsert.columns),
            binary,
            encoded,
            direct,
            merge: d.pg_merge(&w.upsert, &stage),
            clear: d.pg_clear(&stage),
            delete: w.delete_sql(d),
            tx: &mut tx,
            w,
            owner: self,
        };
        let refused = isolate(&mut part, w.rows.len(), w.deletes.len()).await?;
        turn.staged();
        if !turn.before_committed().await {
            return Err(super::Turn::not_after(E));
        }
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
}

/// The staging table of a target's exchanged columns: a temporary table of the session, named
/// after the target, columns and types, so that a changed table gets a fresh one.
fn stage_name(w: &WriteBatch<'_>) -> Ident {
    let mut h = Sha256::new();
    h.update(w.upsert.table.to_string().as_bytes());
    for c in w.upsert.columns {
        h.update([0]);
        h.update(c.name.as_str().as_bytes());
        h.update([1]);
        h.update(c.native.as_bytes());
    }
    let hex = hex::encode(h.finalize());
    Ident::new(&format!("frontdb_stage_{}", &hex[..16]))
        .unwrap_or_else(|_| Ident::fixed("frontdb_stage"))
}

/// The statements of a part whose keys the target does not have yet.
struct Direct {
    /// Whether the target has any of the keys bound as one array.
    any: String,
    /// Whether it has any key between the two bound (integer keys).
    range: String,
    /// `COPY` into the target itself.
    copy: String,
}

/// One part of a batch inside the batch's transaction.
struct PgPart<'a, 'c> {
    tx: &'a mut sqlx::Transaction<'c, Postgres>,
    w: &'a WriteBatch<'a>,
    copy: String,
    /// The columns' binary kinds, when every column has one.
    binary: Option<Vec<pgbinary::Kind>>,
    /// The whole batch in binary `COPY` format, encoded before the transaction began.
    encoded: Option<Payload<'a>>,
    /// The statement creating the staging table (if it does not exist), and whether it ran
    /// in this transaction and was not rolled back since: only parts merged need the table.
    stage: String,
    staged: bool,
    /// With a one-column key: how to ask whether the target has any of a part's keys, and
    /// the `COPY` straight into the target used when it has none.
    direct: Option<Direct>,
    merge: String,
    clear: String,
    delete: String,
    /// Takes back the `COPY` buffers.
    owner: &'a Pg,
}

impl PartWriter for PgPart<'_, '_> {
    async fn exec(&mut self, sql: &'static str) -> Result<(), DbError> {
        // A rollback may undo the staging table's creation: it is created again if needed.
        if sql.starts_with("ROLLBACK") {
            self.staged = false;
        }
        sqlx::query(sql)
            .execute(&mut **self.tx)
            .await
            .map_err(|e| DbError::query(E, "managing a savepoint", e))?;
        Ok(())
    }

    async fn part(&mut self, r: Range<usize>, d: Range<usize>) -> Result<(), DbError> {
        let table = self.w.upsert.table;
        let err = |doing: &str| {
            let doing = format!("{doing} {table}");
            move |e| DbError::query(E, doing, e)
        };
        if !r.is_empty() {
            let whole = r.len() == self.w.rows.len();
            let rows = &self.w.rows[r.clone()];
            // Binary when every value fits its column's kind; text otherwise.
            let encoded = match self.encoded.take() {
                Some(e) if whole => Some(e),
                _ => self
                    .binary
                    .as_ref()
                    .and_then(|kinds| encode(Vec::new, kinds, self.w, r)),
            };
            let binary = encoded.is_some();
            let statement = if binary {
                format!("{} (FORMAT binary)", self.copy)
            } else {
                self.copy.clone()
            };
            let buf = match encoded {
                Some(p) => p,
                None => Payload::Buf(copy_text_rows(rows)),
            };
            // Rows whose keys the target does not have yet go straight in: an upsert of new
            // keys is an insert. Should one arrive meanwhile, the part is merged after all.
            let new = match &self.direct {
                Some(direct) if binary => {
                    let range = int_key_range(self.w, rows);
                    new_keys(self.tx, direct, self.w, rows, range).await?.0
                }
                _ => false,
            };
            if let (true, Some(direct)) = (new, &self.direct) {
                let into = direct.copy.clone();
                self.exec("SAVEPOINT frontdb_direct").await?;
                match copy_in(self.tx, &into, &buf).await {
                    Ok(()) => {
                        self.owner.give_back_payload(buf);
                        self.exec("RELEASE SAVEPOINT frontdb_direct").await?;
                        return self.deletes(d).await;
                    }
                    Err(_) => self.exec("ROLLBACK TO SAVEPOINT frontdb_direct").await?,
                }
            }
            if !self.staged {
                sqlx::query(dynamic(&self.stage))
                    .execute(&mut **self.tx)
                    .await
                    .map_err(err("creating the staging table for"))?;
                self.staged = true;
            }
            copy_in(self.tx, &statement, &buf)
                .await
                .map_err(err("copying rows for"))?;
            sqlx::query(dynamic(&self.merge))
                .execute(&mut **self.tx)
                .await
                .map_err(err("upserting into"))?;
            self.owner.give_back_payload(buf);
            // The commit empties it (`ON COMMIT DELETE ROWS`); a part of a split batch does.
            if !whole {
                sqlx::query(dynamic(&self.clear))
                    .execute(&mut **self.tx)
                    .await
                    .map_err(err("clearing the staging table of"))?;
            }
        }
        self.deletes(d).await
    }
}

impl PgPart<'_, '_> {
    async fn deletes(&mut self, d: Range<usize>) -> Result<(), DbError> {
        for del in &self.w.deletes[d] {
            let mut q = sqlx::query(dynamic(&self.delete));
            for v in del {
                q = bind(q, v);
            }
            q.execute(&mut **self.tx).await.map_err(|e| {
                DbError::query(E, format!("deleting from {}", self.w.upsert.table), e)
            })?;
        }
        Ok(())
    }
}

/// The least and greatest of these rows' keys, for a one-column integer key.
fn int_key_range(w: &WriteBatch<'_>, rows: &[Vec<Value>]) -> Option<(i64, i64)> {
    let [k] = w.upsert.key else {
        return None;
    };
    let mut range: Option<(i64, i64)> = None;
    for r in rows {
        let Some(Value::Int(i)) = r.get(*k) else {
            return None;
        };
        range = Some(range.map_or((*i, *i), |(lo, hi)| (lo.min(*i), hi.max(*i))));
    }
    range
}

/// Whether the target has none of these rows' keys (a one-column integer or text key);
/// false when that cannot be asked in one statement. Integer keys are asked as one range
/// (`range`, their [`int_key_range`]: a first exchange, and rows appended since the last,
/// find it empty), along with the greatest key the target holds.
async fn new_keys(
    conn: &mut PgConnection,
    direct: &Direct,
    w: &WriteBatch<'_>,
    rows: &[Vec<Value>],
    range: Option<(i64, i64)>,
) -> Result<(bool, Option<i64>), DbError> {
    let [k] = w.upsert.key else {
        return Ok((false, None));
    };
    let asking = |e| DbError::query(E, format!("looking up keys in {}", w.upsert.table), e);
    let q = match rows.first().and_then(|r| r.get(*k)) {
        Some(Value::Int(_)) => {
            let Some((lo, hi)) = range else {
                return Ok((false, None));
            };
            let (any, max) = sqlx::query_as::<_, (bool, Option<i64>)>(dynamic(&direct.range))
                .bind(lo)
                .bind(hi)
                .fetch_one(&mut *conn)
                .await
                .map_err(asking)?;
            return Ok((!any, max));
        }
        // `character(n)` compares as text only after a cast, which its index cannot serve.
        Some(Value::Text(_))
            if matches!(w.upsert.columns[*k].native.as_str(), "text")
                || w.upsert.columns[*k].native.starts_with("character varying") =>
        {
            let keys: Option<Vec<&str>> = rows
                .iter()
                .map(|r| match r.get(*k) {
                    Some(Value::Text(s)) => Some(s.as_str()),
                    _ => None,
                })
                .collect();
            match keys {
                Some(keys) => sqlx::query_scalar::<_, bool>(dynamic(&direct.any)).bind(keys),
                None => return Ok((false, None)),
            }
        }
        _ => return Ok((false, None)),
    };
    let any = q.fetch_one(&mut *conn).await.map_err(asking)?;
    Ok((!any, None))
}

/// A batch's rows as binary `COPY` data: encoded from their values into a buffer, or their
/// tuples as they were read, sent from where they are.
enum Payload<'w> {
    Buf(Vec<u8>),
    Tuples(&'w [u8]),
}

/// `COPY` data is sent in messages of at most this size: a connection keeps a buffer the
/// size of the largest message it sent.
const COPY_CHUNK: usize = 256 * 1024;

impl Payload<'_> {
    /// The data's parts, in order.
    fn parts(&self) -> [&[u8]; 3] {
        match self {
            Payload::Buf(b) => [b, &[], &[]],
            Payload::Tuples(t) => [pgbinary::HEADER, t, pgbinary::TRAILER],
        }
    }
}

/// Rows `r` of a batch in binary `COPY` format: their tuples as they were read when the
/// batch has them, else encoded from their values into `buf`; `None` when a value does not
/// fit its column's kind.
fn encode<'w>(
    buf: impl FnOnce() -> Vec<u8>,
    kinds: &[pgbinary::Kind],
    w: &WriteBatch<'w>,
    r: Range<usize>,
) -> Option<Payload<'w>> {
    if !w.tuples.is_empty() && w.tuples.len() == w.rows.len() {
        return w.tuples.span(r).map(Payload::Tuples);
    }
    encode_binary(buf(), kinds, w.rows.get(r)?).map(Payload::Buf)
}

/// Rows in text `COPY` format.
fn copy_text_rows(rows: &[Vec<Value>]) -> Vec<u8> {
    let mut buf = Vec::new();
    for row in rows {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                buf.push(b'\t');
            }
            copy_text(&mut buf, v);
        }
        buf.push(b'\n');
    }
    buf
}

/// Rows in binary `COPY` format; `None` when a value does not fit its column's kind.
fn encode_binary(
    mut buf: Vec<u8>,
    kinds: &[pgbinary::Kind],
    rows: &[Vec<Value>],
) -> Option<Vec<u8>> {
    // Sized once up front: growing a buffer of megabytes copies it over and over.
    buf.clear();
    buf.reserve(pgbinary::size_hint(rows));
    buf.extend_from_slice(pgbinary::HEADER);
    if !rows.iter().all(|row| pgbinary::row(&mut buf, kinds, row)) {
        return None;
    }
    buf.extend_from_slice(pgbinary::TRAILER);
    Some(buf)
}

/// A pooled connection that is closed, not given back, unless the `COPY` it runs was read
/// to its end and its transaction committed: one given up half way (a byte cap, an error,
/// the task stopped) would still have rows on their way, or a transaction open.
pub(super) struct Closing {
    pub(super) conn: sqlx::pool::PoolConnection<Postgres>,
    pub(super) clean: bool,
}

impl Drop for Closing {
    fn drop(&mut self) {
        if !self.clean {
            self.conn.close_on_drop();
        }
    }
}

/// How a `COPY` straight into the target failed.
enum Unsent {
    /// The `COPY` was refused (and rolled back).
    Copy(sqlx::Error),
    /// The batch before this one was not committed: this one was rolled back.
    After,
    /// The commit failed.
    Commit(sqlx::Error),
}

/// A batch copied straight into the target, in a transaction of its own that commits after
/// the batch before it committed (its [`super::Turn`]); `copied` is told once the rows are
/// in, before the commit.
async fn copy_direct(
    conn: &mut PgConnection,
    statement: &str,
    buf: &Payload<'_>,
    turn: &super::Turn,
    copied: impl FnOnce(),
) -> Result<(), Unsent> {
    use sqlx::Connection as _;
    let mut tx = conn.begin().await.map_err(Unsent::Copy)?;
    copy_in(&mut tx, statement, buf)
        .await
        .map_err(Unsent::Copy)?;
    copied();
    turn.staged();
    if !turn.before_committed().await {
        return Err(Unsent::After);
    }
    tx.commit().await.map_err(Unsent::Commit)
}

/// Send a whole `COPY ... FROM STDIN` of `data`, in messages of at most [`COPY_CHUNK`].
async fn copy_in(
    conn: &mut PgConnection,
    statement: &str,
    data: &Payload<'_>,
) -> Result<(), sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    for message in messages(&data.parts()) {
        copy.send(message).await?;
    }
    copy.finish().await?;
    Ok(())
}

/// The `CopyData` messages that send `parts`: each part in pieces of at most [`COPY_CHUNK`].
fn messages<'a>(parts: &[&'a [u8]]) -> impl Iterator<Item = &'a [u8]> {
    parts.iter().flat_map(|p| p.chunks(COPY_CHUNK))
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

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

fn bind<'q>(q: PgQuery<'q>, v: &Value) -> PgQuery<'q> {
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

fn decode_row(row: &PgRow, cols: &[Col]) -> ReadRow {
    let mut bad = None;
    let values = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            decode(row, i, c.ty).unwrap_or_else(|e| {
                bad.get_or_insert_with(|| format!("column {}: cannot read the value: {e}", c.name));
                Value::Null
            })
        })
        .collect();
    ReadRow {
        values,
        bad,
        tuple: None,
    }
}

fn decode(row: &PgRow, i: usize, ty: ColType) -> Result<Value, sqlx::error::BoxDynError> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    if raw.format() == PgValueFormat::Binary {
        if let Some(v) = raw.as_bytes().ok().and_then(|b| pgbinary::read(ty, b)) {
            return Ok(v);
        }
        // Numerics are read in binary (they are selected as they are); sqlx would take
        // their bytes for text.
        if ty == ColType::Decimal {
            let ty = sqlx::TypeInfo::name(raw.type_info().as_ref()).to_owned();
            return Err(format!("not a NUMERIC value of type {ty}").into());
        }
    }
    Ok(match ty {
        ColType::Bool => Value::Bool(<bool as Decode<Postgres>>::decode(raw)?),
        ColType::Int => Value::Int(<i64 as Decode<Postgres>>::decode(raw)?),
        ColType::Float => Value::Float(<f64 as Decode<Postgres>>::decode(raw)?),
        ColType::Decimal => Value::Decimal(<String as Decode<Postgres>>::decode(raw)?),
        ColType::Text | ColType::Other => Value::Text(<String as Decode<Postgres>>::decode(raw)?),
        ColType::Bytes => Value::Bytes(<Vec<u8> as Decode<Postgres>>::decode(raw)?),
        ColType::Date => Value::Date(<NaiveDate as Decode<Postgres>>::decode(raw)?),
        ColType::Time => Value::Time(<NaiveTime as Decode<Postgres>>::decode(raw)?),
        ColType::Timestamp => Value::Timestamp(<NaiveDateTime as Decode<Postgres>>::decode(raw)?),
        ColType::TimestampTz => {
            Value::TimestampTz(<DateTime<Utc> as Decode<Postgres>>::decode(raw)?)
        }
    })
}

/// Append a value in `COPY ... FROM STDIN` text format.
fn copy_text(buf: &mut Vec<u8>, v: &Value) {
    use std::io::Write as _;
    let escaped = |buf: &mut Vec<u8>, s: &str| {
        for &b in s.as_bytes() {
            match b {
                b'\\' => buf.extend_from_slice(b"\\\\"),
                b'\n' => buf.extend_from_slice(b"\\n"),
                b'\r' => buf.extend_from_slice(b"\\r"),
                b'\t' => buf.extend_from_slice(b"\\t"),
                _ => buf.push(b),
            }
        }
    };
    // Writing into a Vec cannot fail.
    let _ = match v {
        Value::Null => buf.write_all(b"\\N"),
        Value::Bool(b) => buf.write_all(if *b { b"t" } else { b"f" }),
        Value::Int(i) => write!(buf, "{i}"),
        Value::Float(f) if f.is_nan() => buf.write_all(b"NaN"),
        Value::Float(f) if f.is_infinite() => {
            buf.write_all(if *f > 0.0 { b"Infinity" } else { b"-Infinity" })
        }
        Value::Float(f) => write!(buf, "{f}"),
        Value::Decimal(s) | Value::Text(s) => {
            escaped(buf, s);
            Ok(())
        }
        Value::Bytes(b) => {
            buf.extend_from_slice(b"\\\\x");
            buf.extend_from_slice(hex::encode(b).as_bytes());
            Ok(())
        }
        Value::Date(d) => write!(buf, "{}", d.format("%Y-%m-%d")),
        Value::Time(t) => write!(buf, "{}", t.format("%H:%M:%S%.6f")),
        Value::Timestamp(t) => write!(buf, "{}", t.format("%Y-%m-%d %H:%M:%S%.6f")),
        Value::TimestampTz(t) => write!(buf, "{}", t.format("%Y-%m-%d %H:%M:%S%.6f+00")),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuples_are_sent_as_they_are_between_header_and_trailer_in_bounded_messages() {
        let mut tuples = super::super::Tuples::default();
        let big = vec![7u8; COPY_CHUNK + 10];
        for t in [&b"one"[..], &big, b"three"] {
            tuples.push(t);
        }
        let data = tuples.span(0..3).expect("span");
        let payload = Payload::Tuples(data);
        let sent: Vec<&[u8]> = messages(&payload.parts()).collect();
        assert!(sent.iter().all(|m| !m.is_empty() && m.len() <= COPY_CHUNK));
        let mut want = pgbinary::HEADER.to_vec();
        want.extend_from_slice(b"one");
        want.extend_from_slice(&big);
        want.extend_from_slice(b"three");
        want.extend_from_slice(pgbinary::TRAILER);
        assert_eq!(sent.concat(), want);
        // A buffer is sent as it is.
        let payload = Payload::Buf(b"x".to_vec());
        let sent: Vec<&[u8]> = messages(&payload.parts()).collect();
        assert_eq!(sent, [b"x"]);
    }

    #[test]
    fn copy_text_escapes_and_formats() {
        let mut buf = Vec::new();
        for v in [
            Value::Null,
            Value::Text("a\tb\\c\n监管".into()),
            Value::Bytes(vec![0xde, 0xad]),
            Value::Float(f64::NEG_INFINITY),
            Value::Bool(true),
        ] {
            copy_text(&mut buf, &v);
            buf.push(b'|');
        }
        assert_eq!(
            String::from_utf8(buf).expect("utf8"),
            "\\N|a\\tb\\\\c\\n监管|\\\\xdead|-Infinity|t|"
        );
    }

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
