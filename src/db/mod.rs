//! Database engines behind one interface: read a bounded batch, write a batch idempotently,
//! run a statement for many rows, introspect a table, tell the database's time.
//!
//! SQL text comes only from [`dialect`]; each engine module binds [`Value`]s and decodes
//! rows into them.

mod buffers;
pub mod dialect;
mod error;
mod facts;
mod mssql;
mod mysql;
#[cfg(feature = "odbc")]
mod odbc;
#[cfg(not(feature = "odbc"))]
#[path = "odbc_off.rs"]
mod odbc;
mod oracle;
mod parts;
mod pgbinary;
mod pgstream;
mod postgres;
mod reach;
mod settings;
mod sqlite;
mod tls_words;
mod turn;
pub mod urls;

use chrono::{DateTime, Utc};

use crate::ident::Col;
use crate::ident::{Ident, TableName};
use crate::value::Value;
pub use buffers::Tuples;
pub(crate) use buffers::{give_back_rows, row_values};
use dialect::{Dialect, Sql, Upsert};
use error::describe;
pub use error::{DbError, ErrorClass};
pub use facts::ReadFacts;
use parts::{Failed, PartWriter, isolate, isolate_parts, singles, write_ending};
pub use parts::{Refused, chunks, value_size};
pub use settings::{DbConfig, EngineKind};
pub use turn::{Stage, Turn};

/// Transaction ids as a PostgreSQL server saw them at one moment (with their epoch): every
/// transaction older than `xmin` had ended then, and `xmax` was the next id to be assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub xmin: u64,
    pub xmax: u64,
}

/// A table as the database's catalog describes it.
#[derive(Clone, Debug)]
pub struct TableSchema {
    /// The name as stored in the catalog (its case may differ from the configuration's).
    pub name: TableName,
    pub columns: Vec<Col>,
    pub primary_key: Vec<Ident>,
    /// Column lists of every unique constraint or index (the primary key included).
    pub unique_keys: Vec<Vec<Ident>>,
    /// Its rows carry the id of the transaction that wrote them (a PostgreSQL table's
    /// `xmin`; not a view's).
    pub row_xids: bool,
    /// Columns the database computes and refuses to be given a value: generated columns
    /// (`GENERATED ALWAYS AS (...)`, virtual or stored) and identity columns that are always
    /// generated. A table written by the agent never has them written.
    pub computed: Vec<Ident>,
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

    /// A table as its catalog describes it: the schema and name as stored, the columns, and
    /// the columns of its unique indexes and constraints, index after index and each in key
    /// order, as (index, column, whether that index is the primary key). `None` when the
    /// schema or the name is not a valid identifier.
    fn from_catalog<K: PartialEq>(
        schema: &str,
        name: &str,
        columns: Vec<Col>,
        keys: impl IntoIterator<Item = (K, Ident, bool)>,
    ) -> Option<TableSchema> {
        let mut unique_keys: Vec<Vec<Ident>> = Vec::new();
        let mut primary_key = Vec::new();
        let mut last: Option<K> = None;
        for (index, col, primary) in keys {
            if last.as_ref() != Some(&index) {
                unique_keys.push(Vec::new());
                last = Some(index);
            }
            if primary {
                primary_key.push(col.clone());
            }
            if let Some(u) = unique_keys.last_mut() {
                u.push(col);
            }
        }
        let (Ok(schema), Ok(name)) = (Ident::new(schema), Ident::new(name)) else {
            return None;
        };
        Some(TableSchema {
            name: TableName {
                schema: Some(schema),
                name,
            },
            columns,
            primary_key,
            unique_keys,
            row_xids: false,
            computed: Vec::new(),
        })
    }

    /// Whether the database computes this column (see [`TableSchema::computed`]).
    pub fn is_computed(&self, name: &Ident) -> bool {
        self.computed.iter().any(|c| c == name)
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
    /// Read by [`Db::fetch_tuples`]: the row as the source sent it, one tuple of PostgreSQL's
    /// binary `COPY` data, which an exchange table of the very same columns takes as it is.
    /// `values` then holds only the columns asked for; the others are NULL until
    /// [`complete`] reads them from the tuple. The bytes are those the connection received
    /// (shared, not copied).
    pub tuple: Option<bytes::Bytes>,
}

/// A row read cell by cell, `decode(i, col)` for each column in order: a cell that cannot be
/// decoded is NULL, and the first such is named, with its cause, in `bad`.
fn read_row<E: std::fmt::Display>(
    cols: &[Col],
    mut decode: impl FnMut(usize, &Col) -> Result<Value, E>,
) -> ReadRow {
    let mut bad = None;
    let values = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            decode(i, c).unwrap_or_else(|e| {
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

/// Whether PostgreSQL rows of columns `from`, read by [`Db::fetch_tuples`], can be written
/// as they are into columns `to`: the same number of columns, each of the very same type,
/// every type one whose binary form the agent knows (no domains, enums, arrays, json).
pub fn same_binary_form(from: &[Col], to: &[Col]) -> bool {
    from.len() == to.len()
        && from
            .iter()
            .zip(to)
            .all(|(a, b)| a.ty == b.ty && a.native == b.native)
        && pgbinary::kinds(from).is_some()
}

/// Fill in the values of a row read by [`Db::fetch_tuples`] that were left NULL, from its
/// tuple (`cols` are the columns it was read with).
pub fn complete(values: &mut [Value], tuple: &[u8], cols: &[Col]) {
    pgbinary::complete(values, tuple, cols);
}

/// A batch for the exchange, written in one transaction.
#[derive(Debug)]
pub struct WriteBatch<'a> {
    pub upsert: Upsert<'a>,
    pub rows: &'a [Vec<Value>],
    /// Empty, or the rows as binary `COPY` tuples (see [`ReadRow::tuple`]), one per row:
    /// written as they are instead of encoding `rows` (which then hold only the key and
    /// whatever else the agent looked at).
    pub tuples: &'a Tuples,
    /// Key columns of the target, for deletes.
    pub key_cols: &'a [Col],
    /// The version column for deletes (a stored row that is newer survives).
    pub version_col: Option<&'a Col>,
    /// Each delete: the key values, then the version value when `version_col` is set; for
    /// tombstones, the values of `tombstone`'s columns, then the key values.
    pub deletes: &'a [Vec<Value>],
    /// Deletes become tombstones: these columns are set in place instead.
    pub tombstone: Option<&'a [Col]>,
}

impl WriteBatch<'_> {
    /// The statement each delete runs.
    fn delete_sql(&self, d: Dialect) -> String {
        match self.tombstone {
            Some(sets) => d.tombstone_row(self.upsert.table, sets, self.key_cols),
            None => d.delete_row(self.upsert.table, self.key_cols, self.version_col),
        }
    }
}

/// A connected database.
pub enum Db {
    Postgres(postgres::Pg),
    MySql(mysql::My),
    Sqlite(sqlite::Lite),
    MsSql(mssql::Ms),
    Oracle(oracle::Ora),
    Odbc(odbc::Odbc),
}

impl Db {
    /// Connect. Eagerly, a wrong address or password is reported now; `lazy` connects on
    /// first use (SQLite always opens at once). `role` is `source` or `exchange`.
    pub async fn connect(cfg: &DbConfig, role: &'static str, lazy: bool) -> Result<Db, DbError> {
        match Db::connect_as(cfg, role, lazy).await {
            Err(e) => Err(reach::explained(cfg, e).await),
            ok => ok,
        }
    }

    async fn connect_as(cfg: &DbConfig, role: &'static str, lazy: bool) -> Result<Db, DbError> {
        match cfg.engine {
            EngineKind::Postgres => postgres::Pg::connect(cfg, role, lazy)
                .await
                .map(Db::Postgres),
            EngineKind::MySql => mysql::My::connect(cfg, role, lazy).await.map(Db::MySql),
            EngineKind::Sqlite => sqlite::Lite::connect(cfg, role).await.map(Db::Sqlite),
            EngineKind::MsSql => mssql::Ms::connect(cfg, role, lazy).await.map(Db::MsSql),
            EngineKind::Oracle => oracle::Ora::connect(cfg, role, lazy).await.map(Db::Oracle),
            EngineKind::Odbc => odbc::Odbc::connect(cfg, role, lazy).await.map(Db::Odbc),
        }
    }

    pub fn engine(&self) -> EngineKind {
        match self {
            Db::Postgres(_) => EngineKind::Postgres,
            Db::MySql(_) => EngineKind::MySql,
            Db::Sqlite(_) => EngineKind::Sqlite,
            Db::MsSql(_) => EngineKind::MsSql,
            Db::Oracle(_) => EngineKind::Oracle,
            Db::Odbc(_) => EngineKind::Odbc,
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Postgres(_) => Dialect::Postgres,
            Db::MySql(_) => Dialect::MySql,
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::MsSql(_) => Dialect::MsSql,
            Db::Oracle(_) => Dialect::Oracle,
            Db::Odbc(d) => Dialect::Odbc(d.flavor()),
        }
    }

    /// The table's columns and keys, or `None` when there is no such table.
    pub async fn introspect(&self, t: &TableName) -> Result<Option<TableSchema>, DbError> {
        match self {
            Db::Postgres(d) => d.introspect(t).await,
            Db::MySql(d) => d.introspect(t).await,
            Db::Sqlite(d) => d.introspect(t).await,
            Db::MsSql(d) => d.introspect(t).await,
            Db::Oracle(d) => d.introspect(t).await,
            Db::Odbc(d) => d.introspect(t).await,
        }
    }

    /// When the oldest transaction still open on the database began, where the engine tells
    /// (PostgreSQL, MySQL/MariaDB, SQL Server, Oracle, and through ODBC DM, Kingbase and the
    /// rest), and a note when the agent cannot see every session.
    pub async fn oldest_transaction(
        &self,
    ) -> Result<(Option<DateTime<Utc>>, Option<String>), DbError> {
        match self {
            Db::Postgres(d) => {
                let (t, hidden) = d.oldest_transaction().await?;
                let note = (hidden > 0).then(|| {
                    format!(
                        "{hidden} session(s) of other users are hidden from the agent: grant it \
                         pg_read_all_stats so that their open transactions are waited for"
                    )
                });
                Ok((t, note))
            }
            Db::MySql(d) => Ok((d.oldest_transaction().await?, None)),
            Db::MsSql(d) => d.oldest_transaction().await,
            Db::Oracle(d) => d.oldest_transaction().await,
            Db::Odbc(d) => d.oldest_transaction().await,
            Db::Sqlite(_) => Ok((None, None)),
        }
    }

    /// A connection listening on NOTIFY channels (PostgreSQL only; refused at configuration
    /// time for other sources).
    pub async fn listen(&self, channels: &[&str]) -> Result<sqlx::postgres::PgListener, DbError> {
        match self {
            Db::Postgres(d) => d.listen(channels).await,
            other => Err(DbError::Query {
                engine: other.engine(),
                doing: "listening for notifications".into(),
                cause: "LISTEN/NOTIFY needs PostgreSQL".into(),
                code: None,
                class: ErrorClass::Fatal,
            }),
        }
    }

    /// Number of rows of a table.
    pub async fn count(&self, t: &TableName) -> Result<i64, DbError> {
        self.count_where(t, &[]).await
    }

    /// The rows of a table meeting `conds` (a table's scope).
    pub async fn count_where(
        &self,
        t: &TableName,
        conds: &[dialect::Cond<'_>],
    ) -> Result<i64, DbError> {
        let sql = self.dialect().count_where(t, conds);
        let col = [crate::ident::Col {
            name: Ident::fixed("count"),
            ty: crate::value::ColType::Int,
            native: "bigint".into(),
        }];
        let (rows, _) = self.fetch(&sql, &col, usize::MAX).await?;
        match rows.first().and_then(|r| r.values.first()) {
            Some(Value::Int(n)) => Ok(*n),
            _ => Ok(0),
        }
    }

    /// The transaction ids of a snapshot taken now, where rows carry the id of the
    /// transaction that wrote them (PostgreSQL); `None` elsewhere.
    pub async fn snapshot(&self) -> Result<Option<Snapshot>, DbError> {
        match self {
            Db::Postgres(d) => d.snapshot().await.map(Some),
            _ => Ok(None),
        }
    }

    /// The database server's current time.
    pub async fn now(&self) -> Result<DateTime<Utc>, DbError> {
        match self {
            Db::Postgres(d) => d.now().await,
            Db::MySql(d) => d.now().await,
            Db::Sqlite(d) => d.now().await,
            Db::MsSql(d) => d.now().await,
            Db::Oracle(d) => d.now().await,
            Db::Odbc(d) => d.now().await,
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
            Db::MsSql(d) => d.fetch(sql, cols, max_bytes).await,
            Db::Oracle(d) => d.fetch(sql, cols, max_bytes).await,
            Db::Odbc(d) => d.fetch(sql, cols, max_bytes).await,
        }
    }

    /// [`Db::fetch`], keeping every row's own tuple (a PostgreSQL select read by `COPY`) and
    /// decoding only the columns marked in `decode`: the rows of a table whose exchange table
    /// has the very same columns go there as they came (see [`ReadRow::tuple`]). Other
    /// selects and engines are read whole. `expect` is how many rows the select may return.
    pub async fn fetch_tuples(
        &self,
        sql: &Sql,
        cols: &[Col],
        max_bytes: usize,
        decode: &[bool],
        expect: usize,
    ) -> Result<(Vec<ReadRow>, bool), DbError> {
        match (self, &sql.copy) {
            (Db::Postgres(d), Some(c)) => {
                let tuples = Some((decode, expect));
                d.fetch_copy(&c.text, &c.settings, cols, max_bytes, tuples)
                    .await
            }
            _ => self.fetch(sql, cols, max_bytes).await,
        }
    }

    /// A select's rows as one stream taken a batch at a time ([`RowStream::next`]), where
    /// the engine streams one select across batches (PostgreSQL, a select read by `COPY`);
    /// `None` elsewhere, where every batch is a select of its own. With `tuples`, rows are
    /// read as by [`Db::fetch_tuples`].
    pub fn stream(&self, sql: &Sql, cols: &[Col], tuples: Option<&[bool]>) -> Option<RowStream> {
        match (self, &sql.copy) {
            (Db::Postgres(d), Some(c)) => Some(RowStream(d.stream(c, cols, tuples))),
            _ => None,
        }
    }

    /// Write a batch (upserts, then deletes) in one transaction. Rows the database refuses as
    /// data are isolated and returned; everything else is committed.
    pub async fn write(&self, w: &WriteBatch<'_>) -> Result<Vec<Refused>, DbError> {
        self.write_when(w, std::future::ready(()), &Turn::alone())
            .await
    }

    /// [`Db::write`] once `ready` resolves, in its `turn`; what can be prepared without the
    /// database (the `COPY` encoding on PostgreSQL) is done meanwhile. On PostgreSQL a batch
    /// may begin while the batch before it commits ([`Db::overlaps`]): its transaction commits
    /// only after that one did. Elsewhere it begins once the batch before it committed.
    pub async fn write_when(
        &self,
        w: &WriteBatch<'_>,
        ready: impl Future<Output = ()>,
        turn: &Turn,
    ) -> Result<Vec<Refused>, DbError> {
        match self {
            Db::Postgres(d) => d.write_when(w, ready, turn).await,
            Db::MySql(d) => {
                ready.await;
                d.write(w).await
            }
            Db::Sqlite(d) => {
                ready.await;
                d.write(w).await
            }
            Db::MsSql(d) => {
                ready.await;
                d.write(w).await
            }
            Db::Oracle(d) => {
                ready.await;
                d.write(w).await
            }
            Db::Odbc(d) => {
                ready.await;
                d.write(w).await
            }
        }
    }

    /// Run one statement once per parameter row, in one transaction; rows affected.
    pub async fn exec_many(&self, text: &str, rows: &[Vec<Value>]) -> Result<u64, DbError> {
        match self {
            Db::Postgres(d) => d.exec_many(text, rows).await,
            Db::MySql(d) => d.exec_many(text, rows).await,
            Db::Sqlite(d) => d.exec_many(text, rows).await,
            Db::MsSql(d) => d.exec_many(text, rows).await,
            Db::Oracle(d) => d.exec_many(text, rows).await,
            Db::Odbc(d) => d.exec_many(text, rows).await,
        }
    }

    /// Run `text` (one row's statement) once per parameter row in a transaction that is
    /// rolled back: what the database says of each row (`None`: it took it). `None` where
    /// the engine is not asked this way (SQL Server, Oracle).
    pub async fn try_rows(
        &self,
        text: &str,
        rows: &[Vec<Value>],
    ) -> Result<Option<Vec<Option<String>>>, DbError> {
        match self {
            Db::Postgres(d) => d.try_rows(text, rows).await.map(Some),
            Db::MySql(d) => d.try_rows(text, rows).await.map(Some),
            Db::Sqlite(d) => d.try_rows(text, rows).await.map(Some),
            Db::MsSql(_) | Db::Oracle(_) | Db::Odbc(_) => Ok(None),
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Postgres(d) => d.close().await,
            Db::MySql(d) => d.pool.close().await,
            Db::Sqlite(d) => d.pool.close().await,
            Db::MsSql(d) => d.close().await,
            Db::Oracle(d) => d.close().await,
            Db::Odbc(d) => d.close().await,
        }
    }
}

/// Whether a batch's write may begin before the batch before it committed (see [`Turn`]).
impl Db {
    pub fn overlaps(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }
}

/// The rows of one select, taken a batch at a time (see [`Db::stream`]). Dropping it stops
/// the select.
pub struct RowStream(pgstream::CopyStream);

impl RowStream {
    /// The next batch of at most `rows` rows and about `bytes` bytes of values, and whether
    /// more may follow.
    pub fn next(
        &self,
        rows: usize,
        bytes: usize,
    ) -> impl Future<Output = Result<(Vec<ReadRow>, bool), DbError>> + Send + 'static {
        self.0.next(rows, bytes)
    }
}

/// A sqlx query over dynamic SQL text. Only SQL built by [`dialect`] or fixed constants of
/// the engine modules reaches this.
fn dynamic(text: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text.to_owned())
}

/// The savepoint each row tried by [`Db::try_rows`] runs under, and the way back to it.
const SAVEPOINT: &str = "SAVEPOINT frontdb_try";
const BACK_TO_SAVEPOINT: &str = "ROLLBACK TO SAVEPOINT frontdb_try";

/// A pooled connection idle at least this long is checked (a ping) before it is used again.
const CHECK_IDLE_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// Pool settings shared by every engine: a connection taken from the pool is checked only
/// when it sat idle a while (a broken one is then replaced). sqlx checks every one by
/// default, a round trip before every statement of a busy exchange.
pub(crate) fn pool_options<DB: sqlx::Database>(cfg: &DbConfig) -> sqlx::pool::PoolOptions<DB> {
    use sqlx::Connection as _;
    sqlx::pool::PoolOptions::<DB>::new()
        .max_connections(cfg.max_connections)
        .acquire_timeout(cfg.connect_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= CHECK_IDLE_AFTER {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

#[cfg(test)]
mod tests;
