//! One part of an Oracle batch: its `MERGE`s and deletes, run on the batch's connection.

use std::ops::Range;
use std::sync::Arc;

use ::oracle::Connection;

use super::{D, E, binds, err, joined, refs};
use crate::db::{DbError, ErrorClass, PartWriter, WriteBatch, chunks};
use crate::ident::Col;
use crate::value::Value;

/// One part of a batch inside the batch's transaction: bounded `MERGE`s, then deletes, each
/// run on a blocking thread on the batch's one connection.
pub(super) struct OraPart<'a> {
    pub(super) conn: Option<Arc<Connection>>,
    pub(super) w: &'a WriteBatch<'a>,
    pub(super) delete: String,
    /// Set once the batch committed: the connection goes back without a rollback.
    pub(super) committed: bool,
}

impl Drop for OraPart<'_> {
    /// The connection is given back on a blocking thread, since that may wait on the
    /// network; rolled back first unless the batch committed (a write dropped half way, when a
    /// cycle stops), so that no transaction is left open on a pooled connection.
    fn drop(&mut self) {
        let Some(c) = self.conn.take() else { return };
        let committed = self.committed;
        let release = move || {
            if !committed {
                let _ = c.rollback();
            }
            drop(c);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(release);
            }
            Err(_) => release(),
        }
    }
}

impl OraPart<'_> {
    pub(super) async fn call<T: Send + 'static>(
        &self,
        doing: String,
        f: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let Some(c) = self.conn.clone() else {
            return Err(DbError::Query {
                engine: E,
                doing,
                cause: "the connection was closed".into(),
                code: None,
                class: ErrorClass::Unavailable,
            });
        };
        tokio::task::spawn_blocking(move || f(&c))
            .await
            .map_err(joined(doing))?
    }
}

impl PartWriter for OraPart<'_> {
    async fn exec(&mut self, sql: &'static str) -> Result<(), DbError> {
        let (save, rollback, _) = D.savepoint();
        let text = match sql {
            s if s.starts_with("SAVEPOINT") => save,
            s if s.starts_with("ROLLBACK") => rollback,
            // Oracle releases no savepoint: it ends with the transaction.
            _ => return Ok(()),
        };
        let doing = "managing a savepoint".to_owned();
        self.call(doing.clone(), move |c| {
            c.execute(text, &[]).map(drop).map_err(err(doing))
        })
        .await
    }

    async fn part(&mut self, r: Range<usize>, d: Range<usize>) -> Result<(), DbError> {
        let table = self.w.upsert.table;
        let rows = &self.w.rows[r];
        let cols = self.w.upsert.columns;
        let width = cols.len();
        // Every statement with its values and the column each value meets.
        let mut statements: Vec<(String, Vec<Value>, Vec<Col>)> = Vec::new();
        for (start, end) in chunks(rows, width, D.merge_params(width)) {
            let text = D.merge(&self.w.upsert, end - start);
            let params: Vec<Value> = rows[start..end].iter().flatten().cloned().collect();
            let meets = cols.iter().cycle().take(params.len()).cloned().collect();
            statements.push((text, params, meets));
        }
        let delete_cols: Vec<Col> = match self.w.tombstone {
            Some(sets) => sets.iter().chain(self.w.key_cols).cloned().collect(),
            None => self
                .w
                .key_cols
                .iter()
                .chain(self.w.version_col)
                .cloned()
                .collect(),
        };
        for del in &self.w.deletes[d] {
            statements.push((self.delete.clone(), del.clone(), delete_cols.clone()));
        }
        let doing = format!("writing into {table}");
        self.call(doing.clone(), move |c| {
            for (text, params, meets) in &statements {
                let meets: Vec<Option<&Col>> = meets.iter().map(Some).collect();
                let b = binds(params, &meets);
                c.execute(text, &refs(&b)).map_err(err(&doing))?;
            }
            Ok(())
        })
        .await
    }
}
