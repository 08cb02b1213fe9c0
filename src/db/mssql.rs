//! Microsoft SQL Server (2012 and later; Azure SQL), over TDS with tiberius.
//!
//! Sessions keep a transaction open after a refused row (`XACT_ABORT OFF`), so that a batch
//! isolates the rows the server refuses under savepoints (`SAVE TRANSACTION`) as every
//! engine does. Writes are `MERGE` statements of at most 1000 rows and below the 2100
//! parameters a statement may carry. Connections come from a pool of this module's own
//! ([`pool`]); a connection that saw an error is closed, never reused.

mod convert;
mod pool;

use std::ops::Range;

use chrono::{DateTime, NaiveDateTime, Utc};
use futures::TryStreamExt as _;
use tiberius::{FromSql as _, Query, Row};

use super::dialect::{Dialect, Sql};
use super::{
    DbError, ErrorClass, Failed, PartWriter, ReadRow, Refused, TableSchema, WriteBatch, chunks,
    isolate, isolate_parts, singles, value_size, write_ending,
};
use crate::db::{DbConfig, EngineKind};
use crate::ident::Col;
use crate::ident::{Ident, TableName};
use crate::value::Value;
use pool::{Client_, GetError, Pool};

const E: EngineKind = EngineKind::MsSql;
const D: Dialect = Dialect::MsSql;

/// The table, in the given schema or the user's default one.
const FIND_TABLE: &str = "SELECT s.name, o.name FROM sys.objects o \
     JOIN sys.schemas s ON s.schema_id = o.schema_id \
     WHERE o.type IN ('U', 'V') AND s.name = COALESCE(@P1, SCHEMA_NAME()) AND o.name = @P2";

/// The seventh column is 1 for a computed column, an identity column (which takes a value
/// only under `SET IDENTITY_INSERT`) or a `rowversion`: the server fills them.
const COLUMNS: &str = "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, \
     NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION, \
     CASE WHEN COLUMNPROPERTY(OBJECT_ID(QUOTENAME(TABLE_SCHEMA) + N'.' + QUOTENAME(TABLE_NAME)), \
     COLUMN_NAME, 'IsComputed') = 1 OR COLUMNPROPERTY(OBJECT_ID(QUOTENAME(TABLE_SCHEMA) + N'.' \
     + QUOTENAME(TABLE_NAME)), COLUMN_NAME, 'IsIdentity') = 1 \
     OR DATA_TYPE IN ('timestamp', 'rowversion') THEN 1 ELSE 0 END \
     FROM INFORMATION_SCHEMA.COLUMNS \
     WHERE TABLE_SCHEMA = @P1 AND TABLE_NAME = @P2 ORDER BY ORDINAL_POSITION";

/// Unique indexes and constraints (the primary key first); a filtered index is not a key.
const UNIQUE_KEYS: &str = "SELECT i.name, c.name, i.is_primary_key FROM sys.indexes i \
     JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id \
     AND ic.is_included_column = 0 \
     JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id \
     WHERE i.object_id = OBJECT_ID(QUOTENAME(@P1) + N'.' + QUOTENAME(@P2)) \
     AND i.is_unique = 1 AND i.has_filter = 0 AND i.is_disabled = 0 \
     ORDER BY i.is_primary_key DESC, i.name, ic.key_ordinal";

/// When the oldest user transaction of another session began, in UTC (the server reports
/// its local time), and whether the agent may see other sessions at all.
const OLDEST_TRANSACTION: &str = "SELECT DATEADD(minute, -DATEPART(TZOFFSET, \
     SYSDATETIMEOFFSET()), MIN(a.transaction_begin_time)), \
     HAS_PERMS_BY_NAME(NULL, NULL, 'VIEW SERVER STATE') \
     FROM sys.dm_tran_active_transactions a \
     JOIN sys.dm_tran_session_transactions s ON s.transaction_id = a.transaction_id \
     WHERE s.session_id <> @@SPID AND s.is_user_transaction = 1";

const NOW: &str = "SELECT SYSUTCDATETIME()";

/// Roll back to the part's savepoint, where the transaction survived the refusal, and tell
/// whether it did (`XACT_STATE()` 1: still active and committable).
const ROLLBACK_PART: &str =
    "IF XACT_STATE() = 1 ROLLBACK TRANSACTION frontdb_part; SELECT XACT_STATE()";

pub struct Ms {
    /// Boxed: the pool's configuration is large, and `Db` holds an engine by value.
    pool: Box<Pool>,
}

fn err(doing: impl Into<String>) -> impl FnOnce(tiberius::error::Error) -> DbError {
    let doing = doing.into();
    move |e| {
        let (code, class) = convert::classify(&e);
        DbError::Query {
            engine: E,
            doing,
            cause: convert::describe(&e),
            code,
            class,
        }
    }
}

fn get_err(doing: &str, e: GetError) -> DbError {
    match e {
        GetError::Db(e) => err(doing)(e),
        GetError::Timeout | GetError::Closed => DbError::Query {
            engine: E,
            doing: doing.to_owned(),
            cause: match e {
                GetError::Timeout => "no connection could be had in time".into(),
                _ => "the connection pool is closed".into(),
            },
            code: None,
            class: ErrorClass::Unavailable,
        },
    }
}

/// A connection that is gone (never expected: [`Conn::client`] is `None` only after drop).
fn gone(doing: &str) -> DbError {
    DbError::Query {
        engine: E,
        doing: doing.to_owned(),
        cause: "the connection was closed".into(),
        code: None,
        class: ErrorClass::Unavailable,
    }
}

fn query<'a>(text: &'a str, params: &[Value]) -> Query<'a> {
    let mut q = Query::new(text);
    for p in params {
        convert::bind(&mut q, p);
    }
    q
}

/// Run a batch of fixed text (transaction control), reading whatever it returns.
async fn simple(c: &mut Client_, text: &str) -> Result<Vec<Vec<Row>>, tiberius::error::Error> {
    c.simple_query(text).await?.into_results().await
}

impl Ms {
    pub async fn connect(cfg: &DbConfig, role: &'static str, lazy: bool) -> Result<Self, DbError> {
        let connect_err = |cause: String, class| DbError::Connect {
            role,
            engine: E,
            url: cfg.redacted.clone(),
            cause: super::tls_words::explained(cause),
            class,
        };
        let pw = cfg.password.as_ref().map(|p| p.expose());
        let url = crate::db::urls::mssql(cfg.url.expose(), pw)
            .map_err(|e| connect_err(e, ErrorClass::Fatal))?;
        let ms = Ms {
            pool: Box::new(Pool::new(&url, cfg)),
        };
        if !lazy {
            let mut c = ms.pool.get().await.map_err(|e| match e {
                GetError::Db(e) => connect_err(convert::describe(&e), ErrorClass::Unavailable),
                GetError::Timeout => connect_err(
                    format!("no answer within {:?}", cfg.connect_timeout),
                    ErrorClass::Unavailable,
                ),
                GetError::Closed => connect_err("closed".into(), ErrorClass::Unavailable),
            })?;
            c.keep();
        }
        Ok(ms)
    }

    /// Rows of a query, all of them (catalog and clock queries).
    async fn rows(&self, doing: &str, text: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut c = self.pool.get().await.map_err(|e| get_err(doing, e))?;
        let client = c.client().ok_or_else(|| gone(doing))?;
        let rows = query(text, params)
            .query(client)
            .await
            .map_err(err(doing))?
            .into_first_result()
            .await
            .map_err(err(doing))?;
        c.keep();
        Ok(rows)
    }

    pub async fn introspect(&self, t: &TableName) -> Result<Option<TableSchema>, DbError> {
        let doing = format!("reading the catalog for table {t}");
        let schema = t.schema.as_ref().map(|s| s.as_str().to_owned());
        let found = self
            .rows(
                &doing,
                FIND_TABLE,
                &[
                    schema.map(Value::Text).unwrap_or(Value::Null),
                    Value::Text(t.name.as_str().to_owned()),
                ],
            )
            .await?;
        let Some(found) = found.first() else {
            return Ok(None);
        };
        let text = |r: &Row, i| r.cells().nth(i).and_then(|(_, cd)| convert::text(cd));
        let int = |r: &Row, i| r.cells().nth(i).and_then(|(_, cd)| convert::int(cd));
        let (Some(schema), Some(name)) = (text(found, 0), text(found, 1)) else {
            return Ok(None);
        };
        let names = [Value::Text(schema.clone()), Value::Text(name.clone())];
        let mut columns = Vec::new();
        let mut computed = Vec::new();
        for r in self.rows(&doing, COLUMNS, &names).await? {
            let (Some(col), Some(data_type)) = (text(&r, 0), text(&r, 1)) else {
                continue;
            };
            let Ok(col) = Ident::new(&col) else { continue };
            if int(&r, 6) == Some(1) {
                computed.push(col.clone());
            }
            let data_type = data_type.to_ascii_lowercase();
            let native =
                convert::native(&data_type, int(&r, 2), int(&r, 3), int(&r, 4), int(&r, 5));
            columns.push(Col {
                name: col,
                ty: convert::col_type(&data_type),
                native,
            });
        }
        let mut keys = Vec::new();
        for r in self.rows(&doing, UNIQUE_KEYS, &names).await? {
            let (Some(index), Some(col)) = (text(&r, 0), text(&r, 1)) else {
                continue;
            };
            let Ok(col) = Ident::new(&col) else { continue };
            keys.push((index, col, int(&r, 2) == Some(1)));
        }
        Ok(TableSchema::from_catalog(&schema, &name, columns, keys)
            .map(|t| TableSchema { computed, ..t }))
    }

    /// When the oldest user transaction of another session began, and a note when the
    /// agent cannot see other sessions (it needs VIEW SERVER STATE).
    pub async fn oldest_transaction(
        &self,
    ) -> Result<(Option<DateTime<Utc>>, Option<String>), DbError> {
        let rows = self
            .rows("looking for open transactions", OLDEST_TRANSACTION, &[])
            .await?;
        let Some(r) = rows.first() else {
            return Ok((None, None));
        };
        let mut cells = r.cells().map(|(_, cd)| cd);
        let t = cells
            .next()
            .and_then(|cd| NaiveDateTime::from_sql(cd).ok().flatten())
            .map(|t| t.and_utc());
        let seen = cells.next().and_then(convert::int);
        let note = (seen != Some(1)).then(|| {
            "the agent cannot see other sessions' transactions: grant it VIEW SERVER STATE so \
             that their open transactions are waited for"
                .to_owned()
        });
        Ok((t, note))
    }

    pub async fn now(&self) -> Result<DateTime<Utc>, DbError> {
        let doing = "reading the database time";
        let rows = self.rows(doing, NOW, &[]).await?;
        rows.first()
            .and_then(|r| r.cells().next())
            .and_then(|(_, cd)| NaiveDateTime::from_sql(cd).ok().flatten())
            .map(|t| t.and_utc())
            .ok_or_else(|| DbError::Query {
                engine: E,
                doing: doing.into(),
                cause: "SYSUTCDATETIME() returned no time".into(),
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
        let doing = "reading rows";
        let mut c = self.pool.get().await.map_err(|e| get_err(doing, e))?;
        let client = c.client().ok_or_else(|| gone(doing))?;
        let mut stream = query(&sql.text, &sql.params)
            .query(client)
            .await
            .map_err(err(doing))?
            .into_row_stream();
        let mut rows = Vec::new();
        let mut bytes = 0;
        while let Some(row) = stream.try_next().await.map_err(err(doing))? {
            let r = decode_row(row, cols);
            bytes += r.values.iter().map(value_size).sum::<usize>();
            rows.push(r);
            if bytes >= max_bytes {
                // The rest of the result is still on its way: the connection is closed
                // rather than read to its end.
                return Ok((rows, true));
            }
        }
        drop(stream);
        c.keep();
        Ok((rows, false))
    }

    pub async fn write(&self, w: &WriteBatch<'_>) -> Result<Vec<Refused>, DbError> {
        write_ending(E, w.rows.len(), w.deletes.len(), |alone| async move {
            self.write_once(w, alone.as_deref()).await
        })
        .await
    }

    /// One transaction over the whole batch, or (`alone`) over each row and delete on its
    /// own, leaving out those in `alone`.
    async fn write_once(
        &self,
        w: &WriteBatch<'_>,
        alone: Option<&[Refused]>,
    ) -> Result<Vec<Refused>, Failed> {
        let table = w.upsert.table;
        let doing = format!("starting a transaction on {table}");
        let mut c = self.pool.get().await.map_err(|e| get_err(&doing, e))?;
        let client = c.client().ok_or_else(|| gone(&doing))?;
        simple(client, "BEGIN TRANSACTION")
            .await
            .map_err(err(doing))?;
        let mut part = MsPart {
            client,
            w,
            delete: w.delete_sql(D),
            refusal: None,
            last: None,
            ended: false,
        };
        // On an error the connection is dropped, which rolls the transaction back.
        let written = match alone {
            None => isolate(&mut part, w.rows.len(), w.deletes.len()).await,
            Some(out) => {
                let parts = singles(w.rows.len(), w.deletes.len(), out);
                isolate_parts(&mut part, parts).await
            }
        };
        let refused = match written {
            Ok(r) => r,
            Err(e) if part.ended => {
                // The part that ended the transaction, when it was a single row.
                let which = part
                    .last
                    .clone()
                    .and_then(|(r, d)| match (r.len(), d.len()) {
                        (1, 0) => Some((false, r.start)),
                        (0, 1) => Some((true, d.start)),
                        _ => None,
                    });
                let why = part.refusal.take().unwrap_or_else(|| e.cause().to_owned());
                return Err(match (which, alone) {
                    (Some((del, i)), Some(_)) => Failed::Ended(Some((del, i, why))),
                    (_, Some(_)) => Failed::Db(e),
                    (_, None) => Failed::Ended(None),
                });
            }
            Err(e) => return Err(Failed::Db(e)),
        };
        simple(part.client, "COMMIT TRANSACTION")
            .await
            .map_err(err(format!("committing the batch into {table}")))?;
        c.keep();
        Ok(refused)
    }

    pub async fn exec_many(&self, text: &str, rows: &[Vec<Value>]) -> Result<u64, DbError> {
        let doing = "updating rows";
        let mut c = self.pool.get().await.map_err(|e| get_err(doing, e))?;
        let client = c.client().ok_or_else(|| gone(doing))?;
        simple(client, "BEGIN TRANSACTION")
            .await
            .map_err(err(doing))?;
        let mut n = 0;
        for r in rows {
            n += query(text, r)
                .execute(client)
                .await
                .map_err(err(doing))?
                .total();
        }
        simple(client, "COMMIT TRANSACTION")
            .await
            .map_err(err(doing))?;
        c.keep();
        Ok(n)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// One part of a batch inside the batch's transaction: bounded `MERGE`s, then deletes.
struct MsPart<'a> {
    client: &'a mut Client_,
    w: &'a WriteBatch<'a>,
    delete: String,
    /// The server's words for the last part it refused.
    refusal: Option<String>,
    /// The last part written, and whether the server ended the transaction over it.
    last: Option<(Range<usize>, Range<usize>)>,
    ended: bool,
}

impl PartWriter for MsPart<'_> {
    async fn exec(&mut self, sql: &'static str) -> Result<(), DbError> {
        let doing = "managing a savepoint";
        let (save, _, _) = D.savepoint();
        match sql {
            s if s.starts_with("SAVEPOINT") => {
                simple(self.client, save).await.map_err(err(doing))?;
            }
            s if s.starts_with("ROLLBACK") => {
                let state = simple(self.client, ROLLBACK_PART)
                    .await
                    .map_err(err(doing))?
                    .into_iter()
                    .flatten()
                    .next()
                    .and_then(|r| r.cells().next().and_then(|(_, cd)| convert::int(cd)));
                if state != Some(1) {
                    self.ended = true;
                    let why = self.refusal.clone().unwrap_or_default();
                    return Err(DbError::Query {
                        engine: E,
                        doing: doing.into(),
                        cause: format!(
                            "SQL Server ended the transaction when it refused a row ({why}), \
                             so the rows it refuses cannot be told from the others"
                        ),
                        code: None,
                        class: ErrorClass::Fatal,
                    });
                }
            }
            // SQL Server releases no savepoint: it ends with the transaction.
            _ => {}
        }
        Ok(())
    }

    async fn part(&mut self, r: Range<usize>, d: Range<usize>) -> Result<(), DbError> {
        self.last = Some((r.clone(), d.clone()));
        let result = self.write_part(r, d).await;
        if let Err(e) = &result {
            self.refusal = Some(e.cause().to_owned());
        }
        result
    }
}

impl MsPart<'_> {
    async fn write_part(&mut self, r: Range<usize>, d: Range<usize>) -> Result<(), DbError> {
        let table = self.w.upsert.table;
        let rows = &self.w.rows[r];
        let width = self.w.upsert.columns.len();
        for (start, end) in chunks(rows, width, D.merge_params(width)) {
            let text = D.merge(&self.w.upsert, end - start);
            let params: Vec<Value> = rows[start..end].iter().flatten().cloned().collect();
            query(&text, &params)
                .execute(self.client)
                .await
                .map_err(err(format!("upserting into {table}")))?;
        }
        for del in &self.w.deletes[d] {
            query(&self.delete, del)
                .execute(self.client)
                .await
                .map_err(err(format!("deleting from {table}")))?;
        }
        Ok(())
    }
}

fn decode_row(row: Row, cols: &[Col]) -> ReadRow {
    let mut cells = row.into_iter();
    super::read_row(cols, |_, c| match cells.next() {
        Some(cd) => convert::decode(&cd, c),
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
                (UNIQUE_KEYS, 2),
                (OLDEST_TRANSACTION, 0),
                (NOW, 0),
            ],
            |n| format!("@P{n}"),
        );
        assert!(UNIQUE_KEYS.contains("has_filter = 0"));
        assert!(ROLLBACK_PART.contains("XACT_STATE() = 1"));
    }
}
