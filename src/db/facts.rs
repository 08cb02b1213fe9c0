//! What `check` asks of a table it reads besides its columns: the column lists of its
//! indexes (does one serve the watermark's order?), its nullable columns, and its size as
//! the catalog estimates it (no `count(*)` of a large table).

use sqlx::Row;

use super::{Db, DbError};
use crate::ident::{Ident, TableName};

/// A table's indexes, nullable columns and estimated size.
#[derive(Clone, Debug, Default)]
pub struct ReadFacts {
    /// Each index's columns in index order (expression parts left out).
    pub indexes: Vec<Vec<Ident>>,
    pub nullable: Vec<Ident>,
    /// Rows, as the catalog estimates them.
    pub rows: Option<i64>,
    /// Bytes of the table and its indexes.
    pub bytes: Option<i64>,
}

const PG_INDEXES: &str = "SELECT i.indexrelid::int8, a.attname::text \
     FROM pg_catalog.pg_index i \
     CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
     JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
     WHERE i.indrelid = to_regclass($1)::oid AND i.indpred IS NULL \
     ORDER BY i.indexrelid, k.ord";
const PG_NULLABLE: &str = "SELECT a.attname::text FROM pg_catalog.pg_attribute a \
     WHERE a.attrelid = to_regclass($1)::oid AND a.attnum > 0 AND NOT a.attisdropped \
     AND NOT a.attnotnull";
const PG_SIZE: &str = "SELECT c.reltuples::int8, pg_total_relation_size(c.oid)::int8, \
     c.relkind IN ('r', 'p', 'm') FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1)::oid";

const MY_INDEXES: &str = "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
     WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? \
     ORDER BY INDEX_NAME, SEQ_IN_INDEX";
const MY_NULLABLE: &str = "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
     WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND IS_NULLABLE = 'YES'";
const MY_SIZE: &str = "SELECT CAST(TABLE_ROWS AS SIGNED), CAST(DATA_LENGTH + INDEX_LENGTH AS SIGNED), \
     CAST(TABLE_TYPE = 'BASE TABLE' AS SIGNED) FROM information_schema.TABLES WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?";

const LITE_IS_TABLE: &str = "SELECT type = 'table' FROM pragma_table_list WHERE name = ?1";
const LITE_INDEXES: &str = "SELECT l.name, i.name FROM pragma_index_list(?1) l \
     JOIN pragma_index_info(l.name) i WHERE l.partial = 0 ORDER BY l.seq, i.seqno";
const LITE_NULLABLE: &str =
    "SELECT name FROM pragma_table_info(?1) WHERE \"notnull\" = 0 AND pk = 0";

impl Db {
    /// The indexes, nullable columns and size of table `t` (as the catalog names it),
    /// where the engine is asked (PostgreSQL, MySQL/MariaDB, SQLite); `None` elsewhere, and
    /// for a view (which has no index of its own).
    pub async fn read_facts(&self, t: &TableName) -> Result<Option<ReadFacts>, DbError> {
        let err = |e| DbError::query(self.engine(), format!("reading the indexes of {t}"), e);
        let pairs = |rows: Vec<(String, Option<String>)>| {
            let mut out: Vec<Vec<Ident>> = Vec::new();
            let mut last = None;
            for (index, col) in rows {
                if last.as_ref() != Some(&index) {
                    out.push(Vec::new());
                    last = Some(index);
                }
                if let (Some(c), Some(cur)) =
                    (col.and_then(|c| Ident::new(&c).ok()), out.last_mut())
                {
                    cur.push(c);
                }
            }
            out
        };
        let names = |v: Vec<String>| v.iter().filter_map(|c| Ident::new(c).ok()).collect();
        let facts = match self {
            Db::Postgres(d) => {
                let q = self.dialect().table(t);
                let rows: Vec<(i64, Option<String>)> = sqlx::query_as(PG_INDEXES)
                    .bind(&q)
                    .fetch_all(&d.pool)
                    .await
                    .map_err(err)?;
                let rows = rows.into_iter().map(|(i, c)| (i.to_string(), c)).collect();
                let nullable: Vec<String> = sqlx::query_scalar(PG_NULLABLE)
                    .bind(&q)
                    .fetch_all(&d.pool)
                    .await
                    .map_err(err)?;
                let size = sqlx::query(PG_SIZE)
                    .bind(&q)
                    .fetch_optional(&d.pool)
                    .await
                    .map_err(err)?;
                let (rows_est, bytes) = match size {
                    Some(r) if r.try_get::<bool, _>(2).unwrap_or(true) => {
                        (r.try_get(0).ok(), r.try_get(1).ok())
                    }
                    _ => return Ok(None),
                };
                ReadFacts {
                    indexes: pairs(rows),
                    nullable: names(nullable),
                    // -1: never analysed.
                    rows: rows_est.filter(|n: &i64| *n >= 0),
                    bytes,
                }
            }
            Db::MySql(d) => {
                let schema = t.schema.as_ref().map(|s| s.as_str().to_owned());
                let name = t.name.as_str().to_owned();
                let rows: Vec<(String, Option<String>)> = sqlx::query_as(MY_INDEXES)
                    .bind(&schema)
                    .bind(&name)
                    .fetch_all(&d.pool)
                    .await
                    .map_err(err)?;
                let nullable: Vec<String> = sqlx::query_scalar(MY_NULLABLE)
                    .bind(&schema)
                    .bind(&name)
                    .fetch_all(&d.pool)
                    .await
                    .map_err(err)?;
                let size: Option<(Option<i64>, Option<i64>, Option<i64>)> = sqlx::query_as(MY_SIZE)
                    .bind(&schema)
                    .bind(&name)
                    .fetch_optional(&d.pool)
                    .await
                    .map_err(err)?;
                if size.is_some_and(|s| s.2 == Some(0)) {
                    return Ok(None);
                }
                ReadFacts {
                    indexes: pairs(rows),
                    nullable: names(nullable),
                    rows: size.and_then(|s| s.0),
                    bytes: size.and_then(|s| s.1),
                }
            }
            Db::Sqlite(d) => {
                let name = t.name.as_str().to_owned();
                let table: Option<bool> = sqlx::query_scalar(LITE_IS_TABLE)
                    .bind(&name)
                    .fetch_optional(&d.pool)
                    .await
                    .map_err(err)?;
                if table == Some(false) {
                    return Ok(None);
                }
                let rows: Vec<(String, Option<String>)> = sqlx::query_as(LITE_INDEXES)
                    .bind(&name)
                    .fetch_all(&d.pool)
                    .await
                    .map_err(err)?;
                let nullable: Vec<String> = sqlx::query_scalar(LITE_NULLABLE)
                    .bind(&name)
                    .fetch_all(&d.pool)
                    .await
                    .map_err(err)?;
                ReadFacts {
                    indexes: pairs(rows),
                    nullable: names(nullable),
                    rows: self.count(t).await.ok(),
                    bytes: None,
                }
            }
            Db::MsSql(_) | Db::Oracle(_) | Db::Odbc(_) => return Ok(None),
        };
        Ok(Some(facts))
    }
}
