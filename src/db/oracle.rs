//! Oracle Database (12c and later; 11g pages by `ROWNUM`), through the Oracle client library (ODPI-C), which the
//! `oracle` crate loads when the first connection is made: Instant Client must be installed
//! where the agent runs (`LD_LIBRARY_PATH` or `ldconfig`).
//!
//! The driver blocks: every call runs on tokio's blocking threads, on connections of an
//! `oracle::pool` session pool. Sessions run in UTC with `.` as the decimal mark. Writes are
//! `MERGE` statements of at most 100 rows; refused rows are isolated under savepoints as
//! on every engine. Oracle stores an empty string as NULL: an empty text from a source
//! arrives as NULL. `CHAR` columns are blank-padded: keys of such columns are compared as
//! `CHAR` (see [`super::dialect`]), so they match whatever padding the value carries.

mod convert;
mod part;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::oracle::Connection;
use ::oracle::conn::CloseMode;
use ::oracle::pool::{GetMode, Pool, PoolBuilder};
use ::oracle::sql_type::ToSql;
use chrono::{DateTime, Utc};

use super::dialect::{Dialect, Sql};
use super::{DbError, ErrorClass, ReadRow, Refused, TableSchema, WriteBatch, isolate, value_size};
use crate::db::urls::OracleUrl;
use crate::db::{DbConfig, EngineKind};
use crate::ident::Col;
use crate::ident::{Ident, TableName};
use crate::value::Value;

const E: EngineKind = EngineKind::Oracle;
const D: Dialect = Dialect::Oracle;

/// Set on every connection taken from the pool (one round trip).
const SESSION: &str = "ALTER SESSION SET TIME_ZONE = '+00:00' NLS_NUMERIC_CHARACTERS = '.,'";

/// Tables and views of the schema (the user's own when none is named), found whatever the
/// case of the configured name; the exact spelling first.
const FIND_TABLE: &str = "SELECT owner, object_name FROM all_objects \
     WHERE object_type IN ('TABLE', 'VIEW') \
     AND UPPER(owner) = UPPER(COALESCE(:1, SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA'))) \
     AND UPPER(object_name) = UPPER(:2)";

/// `virtual_column` of `all_tab_cols` says the server computes the column. Identity
/// columns `GENERATED ALWAYS` are described only by 12c's catalog and are not asked for, so
/// that an 11g catalog answers.
const COLUMNS: &str = "SELECT column_name, data_type, data_precision, data_scale, \
     data_length, char_length, char_used, virtual_column FROM all_tab_cols \
     WHERE owner = :1 AND table_name = :2 AND hidden_column = 'NO' ORDER BY column_id";

/// Enabled primary and unique constraints (the primary key first), and the unique indexes
/// of plain columns that back no constraint (those are listed as the constraint).
const UNIQUE_KEYS: &str = "SELECT k, c, p, pos FROM (\
     SELECT c.constraint_name k, cc.column_name c, \
     CASE c.constraint_type WHEN 'P' THEN 1 ELSE 0 END p, cc.position pos \
     FROM all_constraints c JOIN all_cons_columns cc ON cc.owner = c.owner \
     AND cc.constraint_name = c.constraint_name AND cc.table_name = c.table_name \
     WHERE c.owner = :1 AND c.table_name = :2 AND c.constraint_type IN ('P', 'U') \
     AND c.status = 'ENABLED' \
     UNION ALL \
     SELECT i.index_name, ic.column_name, 0, ic.column_position FROM all_indexes i \
     JOIN all_ind_columns ic ON ic.index_owner = i.owner AND ic.index_name = i.index_name \
     WHERE i.table_owner = :3 AND i.table_name = :4 AND i.uniqueness = 'UNIQUE' \
     AND i.index_type = 'NORMAL' AND NOT EXISTS (SELECT 1 FROM all_constraints b \
     WHERE b.owner = i.table_owner AND b.table_name = i.table_name \
     AND b.index_name = i.index_name AND b.constraint_type IN ('P', 'U'))) \
     ORDER BY p DESC, k, pos";

/// When the oldest transaction of another session began, in UTC (`start_date` is in the
/// server's clock, as `SYSDATE`). Needs SELECT on `V_$TRANSACTION` and `V_$SESSION`.
const OLDEST_TRANSACTION: &str = "SELECT CAST(SYS_EXTRACT_UTC(SYSTIMESTAMP) AS DATE) \
     + (MIN(t.start_date) - SYSDATE) FROM v$transaction t JOIN v$session s \
     ON s.taddr = t.addr WHERE s.sid <> SYS_CONTEXT('USERENV', 'SID')";

const NOW: &str = "SELECT SYS_EXTRACT_UTC(SYSTIMESTAMP) FROM dual";

/// Rows fetched per round trip.
const FETCH_ROWS: u32 = 1000;

struct Inner {
    url: OracleUrl,
    max_connections: u32,
    connect_timeout: Duration,
    call_timeout: Option<Duration>,
    /// Made on first use: building it loads the client library and connects.
    pool: Mutex<Option<Pool>>,
    /// Closed: no pool is made again.
    closed: std::sync::atomic::AtomicBool,
    /// The server pages by `ROWNUM` only (11g and earlier have no `FETCH FIRST`).
    rownum: std::sync::atomic::AtomicBool,
}

pub struct Ora {
    inner: Arc<Inner>,
}

/// The error of a blocking Oracle call whose task failed (it panicked or was cancelled).
fn joined(doing: String) -> impl FnOnce(tokio::task::JoinError) -> DbError {
    move |e| DbError::Query {
        engine: E,
        doing,
        cause: format!("the Oracle call failed: {e}"),
        code: None,
        class: ErrorClass::Fatal,
    }
}

fn err(doing: impl Into<String>) -> impl FnOnce(::oracle::Error) -> DbError {
    let doing = doing.into();
    move |e| {
        let (code, class) = convert::classify(&e);
        DbError::Query {
            engine: E,
            doing,
            cause: e.to_string(),
            code,
            class,
        }
    }
}

impl Inner {
    fn pool(&self) -> Result<Pool, ::oracle::Error> {
        let mut slot = self
            .pool
            .lock()
            .map_err(|_| ::oracle::Error::new(::oracle::ErrorKind::InternalError, "pool lock"))?;
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(::oracle::Error::new(
                ::oracle::ErrorKind::InternalError,
                "the connection pool was closed",
            ));
        }
        let pool = PoolBuilder::new(&self.url.user, &self.url.password, &self.url.connect)
            .min_connections(0)
            .max_connections(self.max_connections)
            .connection_increment(1)
            .get_mode(GetMode::TimedWait(self.connect_timeout))
            .ping_interval(Some(super::CHECK_IDLE_AFTER))?
            .build()?;
        *slot = Some(pool.clone());
        Ok(pool)
    }

    fn conn(&self) -> Result<Connection, ::oracle::Error> {
        let c = self.pool()?.get()?;
        c.set_call_timeout(self.call_timeout)?;
        c.execute(SESSION, &[])?;
        if let Ok((v, _)) = c.server_version() {
            self.rownum
                .store(v.major() < 12, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(c)
    }

    /// Run `f` on a pooled connection. After an error the transaction is rolled back, and a
    /// connection that was lost or timed out leaves the pool.
    fn with<T>(
        &self,
        doing: &str,
        f: impl FnOnce(&Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let c = self.conn().map_err(err(doing))?;
        let r = f(&c);
        if let Err(e) = &r {
            let _ = c.rollback();
            if e.class() == ErrorClass::Unavailable {
                let _ = c.close_with_mode(CloseMode::Drop);
            }
        }
        r
    }
}

/// Bind `params`, each for its column where the statement knows it.
fn binds<'a>(params: &'a [Value], cols: &[Option<&Col>]) -> Vec<Box<dyn ToSql + 'a>> {
    params
        .iter()
        .enumerate()
        .map(|(i, v)| convert::bind(v, cols.get(i).copied().flatten()))
        .collect()
}

fn refs<'a>(b: &'a [Box<dyn ToSql + 'a>]) -> Vec<&'a dyn ToSql> {
    b.iter().map(|b| b.as_ref() as &dyn ToSql).collect()
}

/// All rows of a query, as their cells' text or numbers (catalog and clock queries).
fn query_rows(
    c: &Connection,
    doing: &str,
    text: &str,
    params: &[Value],
    cols: &[Col],
) -> Result<Vec<ReadRow>, DbError> {
    let b = binds(params, &[]);
    let rs = c.query(text, &refs(&b)).map_err(err(doing))?;
    let mut out = Vec::new();
    for row in rs {
        let row = row.map_err(err(doing))?;
        out.push(decode_row(row.sql_values(), cols));
    }
    Ok(out)
}

fn catalog_col(name: &'static str, ty: crate::value::ColType) -> Col {
    Col {
        name: Ident::fixed(name),
        ty,
        native: String::new(),
    }
}

impl Ora {
    pub async fn connect(cfg: &DbConfig, role: &'static str, lazy: bool) -> Result<Self, DbError> {
        let connect_err = |cause: String, class| DbError::Connect {
            role,
            engine: E,
            url: cfg.redacted.clone(),
            cause,
            class,
        };
        let pw = cfg.password.as_ref().map(|p| p.expose());
        let url = crate::db::urls::oracle(cfg.url.expose(), pw)
            .map_err(|e| connect_err(e, ErrorClass::Fatal))?;
        let ora = Ora {
            inner: Arc::new(Inner {
                url,
                max_connections: cfg.max_connections.max(1),
                connect_timeout: cfg.connect_timeout,
                call_timeout: (!cfg.statement_timeout.is_zero()).then_some(cfg.statement_timeout),
                pool: Mutex::new(None),
                closed: std::sync::atomic::AtomicBool::new(false),
                rownum: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        if !lazy {
            let inner = ora.inner.clone();
            let r = tokio::task::spawn_blocking(move || inner.conn().map(drop)).await;
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let (_, class) = convert::classify(&e);
                    // Wrong credentials or a missing client library will not pass by
                    // themselves; anything else at connection time may.
                    let class = match (class, e.oci_code()) {
                        (ErrorClass::Fatal, Some(1017)) | (ErrorClass::Fatal, None) => {
                            ErrorClass::Fatal
                        }
                        _ => ErrorClass::Unavailable,
                    };
                    return Err(connect_err(e.to_string(), class));
                }
                Err(e) => return Err(connect_err(e.to_string(), ErrorClass::Fatal)),
            }
        }
        Ok(ora)
    }

    /// Run `f` on a blocking thread with a pooled connection.
    async fn run<T: Send + 'static>(
        &self,
        doing: String,
        f: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let inner = self.inner.clone();
        let d = doing.clone();
        tokio::task::spawn_blocking(move || inner.with(&d, f))
            .await
            .map_err(joined(doing))?
    }

    pub async fn introspect(&self, t: &TableName) -> Result<Option<TableSchema>, DbError> {
        use crate::value::ColType::{Int, Text};
        let doing = format!("reading the catalog for table {t}");
        let schema = t.schema.as_ref().map(|s| s.as_str().to_owned());
        let name = t.name.as_str().to_owned();
        let d = doing.clone();
        let found = self
            .run(doing, move |c| {
                let two = [catalog_col("owner", Text), catalog_col("name", Text)];
                let p = [
                    schema.map(Value::Text).unwrap_or(Value::Null),
                    Value::Text(name.clone()),
                ];
                let mut rows = query_rows(c, &d, FIND_TABLE, &p, &two)?;
                // The exact spelling first, then the catalog's (upper case, unquoted).
                rows.sort_by_key(|r| r.values.get(1) != Some(&Value::Text(name.clone())));
                let Some(r) = rows.into_iter().next() else {
                    return Ok(None);
                };
                let names = r.values;
                let cols = [
                    catalog_col("name", Text),
                    catalog_col("type", Text),
                    catalog_col("precision", Int),
                    catalog_col("scale", Int),
                    catalog_col("length", Int),
                    catalog_col("chars", Int),
                    catalog_col("used", Text),
                    catalog_col("virtual", Text),
                ];
                let columns = query_rows(c, &d, COLUMNS, &names, &cols)?;
                let keys = [
                    catalog_col("k", Text),
                    catalog_col("c", Text),
                    catalog_col("p", Int),
                    catalog_col("pos", Int),
                ];
                let p4 = [names.clone(), names.clone()].concat();
                let unique = query_rows(c, &d, UNIQUE_KEYS, &p4, &keys)?;
                Ok(Some((names, columns, unique)))
            })
            .await?;
        let Some((names, column_rows, unique_rows)) = found else {
            return Ok(None);
        };
        let text = |v: Option<&Value>| match v {
            Some(Value::Text(s)) => Some(s.clone()),
            _ => None,
        };
        let int = |v: Option<&Value>| match v {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        };
        let mut columns = Vec::new();
        let mut computed = Vec::new();
        for r in &column_rows {
            let v = &r.values;
            let (Some(col), Some(data_type)) = (text(v.first()), text(v.get(1))) else {
                continue;
            };
            let Ok(col) = Ident::new(&col) else { continue };
            if text(v.get(7)).as_deref() == Some("YES") {
                computed.push(col.clone());
            }
            let (p, s) = (int(v.get(2)), int(v.get(3)));
            let used = text(v.get(6));
            columns.push(Col {
                name: col,
                ty: convert::col_type(&data_type, p, s),
                native: convert::native(
                    &data_type,
                    p,
                    s,
                    int(v.get(4)),
                    int(v.get(5)),
                    used.as_deref(),
                ),
            });
        }
        let mut keys = Vec::new();
        for r in &unique_rows {
            let v = &r.values;
            let (Some(index), Some(col)) = (text(v.first()), text(v.get(1))) else {
                continue;
            };
            let Ok(col) = Ident::new(&col) else { continue };
            keys.push((index, col, int(v.get(2)) == Some(1)));
        }
        let (Some(schema), Some(name)) = (text(names.first()), text(names.get(1))) else {
            return Ok(None);
        };
        Ok(TableSchema::from_catalog(&schema, &name, columns, keys)
            .map(|t| TableSchema { computed, ..t }))
    }

    /// When the oldest transaction of another session began; `None` and a note when the
    /// agent may not read `V$TRANSACTION`.
    pub async fn oldest_transaction(
        &self,
    ) -> Result<(Option<DateTime<Utc>>, Option<String>), DbError> {
        let doing = "looking for open transactions".to_owned();
        let d = doing.clone();
        self.run(doing, move |c| {
            let col = [catalog_col("t", crate::value::ColType::Timestamp)];
            match query_rows(c, &d, OLDEST_TRANSACTION, &[], &col) {
                Ok(rows) => Ok((
                    rows.first().and_then(|r| match r.values.first() {
                        Some(Value::Timestamp(t)) => Some(t.and_utc()),
                        _ => None,
                    }),
                    None,
                )),
                Err(DbError::Query {
                    code: Some(code), ..
                }) if code == "ORA-00942" => Ok((
                    None,
                    Some(
                        "the agent cannot see other sessions' transactions: grant it SELECT \
                         on SYS.V_$TRANSACTION and SYS.V_$SESSION so that their open \
                         transactions are waited for"
                            .into(),
                    ),
                )),
                Err(e) => Err(e),
            }
        })
        .await
    }

    pub async fn now(&self) -> Result<DateTime<Utc>, DbError> {
        let doing = "reading the database time".to_owned();
        let d = doing.clone();
        self.run(doing, move |c| {
            let col = [catalog_col("t", crate::value::ColType::Timestamp)];
            let rows = query_rows(c, &d, NOW, &[], &col)?;
            match rows.first().and_then(|r| r.values.first()) {
                Some(Value::Timestamp(t)) => Ok(t.and_utc()),
                _ => Err(DbError::Query {
                    engine: E,
                    doing: d,
                    cause: "SYSTIMESTAMP returned no time".into(),
                    code: None,
                    class: ErrorClass::Fatal,
                }),
            }
        })
        .await
    }

    pub async fn fetch(
        &self,
        sql: &Sql,
        cols: &[Col],
        max_bytes: usize,
    ) -> Result<(Vec<ReadRow>, bool), DbError> {
        let text = sql.text.clone();
        let params = sql.params.clone();
        let inner = self.inner.clone();
        let cols = cols.to_vec();
        let doing = "reading rows".to_owned();
        let d = doing.clone();
        self.run(doing, move |c| {
            // 11g: the select paged by `FETCH FIRST` is wrapped and paged by `ROWNUM` (the
            // server's version is known once a connection was made, as `c` was).
            let text = match inner.rownum.load(std::sync::atomic::Ordering::Relaxed) {
                true => super::dialect::oracle_rownum(&text).unwrap_or(text),
                false => text,
            };
            let b = binds(&params, &[]);
            let mut stmt = c
                .statement(&text)
                .fetch_array_size(FETCH_ROWS)
                .build()
                .map_err(err(&d))?;
            let rs = stmt.query(&refs(&b)).map_err(err(&d))?;
            let mut rows = Vec::new();
            let mut bytes = 0;
            for row in rs {
                let row = row.map_err(err(&d))?;
                let r = decode_row(row.sql_values(), &cols);
                bytes += r.values.iter().map(value_size).sum::<usize>();
                rows.push(r);
                if bytes >= max_bytes {
                    return Ok((rows, true));
                }
            }
            Ok((rows, false))
        })
        .await
    }

    pub async fn write(&self, w: &WriteBatch<'_>) -> Result<Vec<Refused>, DbError> {
        let table = w.upsert.table;
        let doing = format!("starting a transaction on {table}");
        let inner = self.inner.clone();
        let d = doing.clone();
        let conn = tokio::task::spawn_blocking(move || inner.conn().map_err(err(d)))
            .await
            .map_err(joined(doing))??;
        let mut part = part::OraPart {
            conn: Some(Arc::new(conn)),
            w,
            delete: w.delete_sql(D),
            committed: false,
        };
        let result = match isolate(&mut part, w.rows.len(), w.deletes.len()).await {
            Ok(refused) => {
                let commit = format!("committing the batch into {table}");
                part.call(commit.clone(), move |c| c.commit().map_err(err(commit)))
                    .await
                    .map(|()| refused)
            }
            Err(e) => Err(e),
        };
        // Dropping the part gives the connection back (see its `Drop`). After a failure that
        // is awaited here: the rollback releases the rows' locks before the batch is retried.
        match &result {
            Ok(_) => part.committed = true,
            Err(e) => {
                if let Some(c) = part.conn.take() {
                    let broken = e.class() == ErrorClass::Unavailable;
                    let _ = tokio::task::spawn_blocking(move || {
                        let _ = c.rollback();
                        if broken {
                            let _ = c.close_with_mode(CloseMode::Drop);
                        }
                    })
                    .await;
                }
            }
        }
        result
    }

    pub async fn exec_many(&self, text: &str, rows: &[Vec<Value>]) -> Result<u64, DbError> {
        let text = text.to_owned();
        let rows = rows.to_vec();
        let doing = "updating rows".to_owned();
        let d = doing.clone();
        self.run(doing, move |c| {
            let mut n = 0;
            for r in &rows {
                let b = binds(r, &[]);
                let stmt = c.execute(&text, &refs(&b)).map_err(err(&d))?;
                n += stmt.row_count().map_err(err(&d))?;
            }
            c.commit().map_err(err(&d))?;
            Ok(n)
        })
        .await
    }

    pub async fn close(&self) {
        let pool = self.inner.pool.lock().ok().and_then(|mut p| {
            self.inner
                .closed
                .store(true, std::sync::atomic::Ordering::SeqCst);
            p.take()
        });
        if let Some(p) = pool {
            let _ = tokio::task::spawn_blocking(move || p.close(&::oracle::pool::CloseMode::Force))
                .await;
        }
    }
}

fn decode_row(values: &[::oracle::SqlValue], cols: &[Col]) -> ReadRow {
    super::read_row(cols, |i, c| match values.get(i) {
        Some(v) => convert::decode(v, c),
        None => Err("the row has fewer columns than the select".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every catalog statement binds the names it looks up: none is formatted into the text.
    #[test]
    fn catalog_statements_bind_their_names() {
        crate::db::tests::assert_binds_only(
            &[
                (FIND_TABLE, 2),
                (COLUMNS, 2),
                (UNIQUE_KEYS, 4),
                (OLDEST_TRANSACTION, 0),
                (NOW, 0),
            ],
            |n| format!(":{n}"),
        );
        assert!(SESSION.contains("TIME_ZONE = '+00:00'"));
        // A constraint's own index is not listed again (its columns would double).
        assert!(UNIQUE_KEYS.contains("AND NOT EXISTS (SELECT 1 FROM all_constraints b"));
    }

    /// Without the Oracle client library (as here), connecting fails with a Fatal error
    /// that names the library and hides the password; lazily, the first use fails alike.
    #[tokio::test]
    async fn without_the_client_library_connecting_fails_clearly() {
        let text = "[agent]\nid = \"a\"\nstate_dir = \"/tmp\"\ntimezone = \"UTC\"\n\
                    [source]\nurl = \"oracle://sync:s3cret_pw@127.0.0.1:9/XE\"\n\
                    [exchange]\nurl = \"postgres://x@127.0.0.1/x\"\n\
                    [[table]]\nsource = \"t\"\nwatermark = { kind = \"key\", column = \"id\" }\n";
        let cfg = crate::config::load_str(text, std::path::Path::new("/tmp/t.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let e = match Ora::connect(&cfg.source, "source", false).await {
            Ok(_) => return, // a machine with Instant Client and nothing on port 9
            Err(e) => e,
        };
        let msg = e.to_string();
        assert!(!msg.contains("s3cret_pw"), "{msg}");
        assert!(msg.contains("sync:***@127.0.0.1:9"), "{msg}");
        // No client library here: that will not pass by itself. With one, nothing listens.
        let expected = if msg.contains("DPI-1047") {
            ErrorClass::Fatal
        } else {
            ErrorClass::Unavailable
        };
        assert_eq!(e.class(), expected, "{msg}");
        let db = Ora::connect(&cfg.source, "source", true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let e = db.now().await.expect_err("no server");
        assert!(!e.to_string().contains("s3cret_pw"));
    }
}
