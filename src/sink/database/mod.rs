//! The exchange as a database: a batch is upserted (newer rows win) and deleted in one
//! transaction; rows the database refuses as data are isolated and returned; a lock
//! conflict is tried again at once; a connection gone silent is given up.

mod receipts;

use std::sync::Arc;
use std::time::Duration;

use super::{
    Capabilities, Deletes, Outgoing, Ready, Refusal, Removal, Sink, SinkError, Target, Turn,
};
use crate::db::dialect::{Cond, Dialect, Select, Upsert};
use crate::db::{Db, DbError, ErrorClass, TableSchema, WriteBatch};
use crate::ident::TableName;
use crate::value::Value;
pub use receipts::DatabaseReceipts;

/// How much longer than the exchange's own statement timeout the agent waits for an answer.
const STATEMENT_GRACE: Duration = Duration::from_secs(30);

/// Most times a batch rolled back by a lock conflict is tried again at once.
const LOCK_RETRIES: u32 = 5;

pub struct DatabaseSink {
    db: Arc<Db>,
    /// The database's own statement timeout (zero: none).
    limit: Duration,
    /// Which database it writes, in words.
    place: &'static str,
}

impl DatabaseSink {
    /// The exchange database as a sink.
    pub fn new(db: Arc<Db>, statement_timeout: Duration) -> Self {
        DatabaseSink {
            db,
            limit: statement_timeout,
            place: "exchange database",
        }
    }

    /// The front-end database as a sink: where `down` tables write.
    pub fn front(db: Arc<Db>) -> Self {
        DatabaseSink {
            db,
            limit: Duration::ZERO,
            place: "front-end database",
        }
    }

    /// The error of a write that got no answer: the connection went silent.
    fn silent(&self) -> DbError {
        DbError::Query {
            engine: self.db.engine(),
            doing: "writing a batch".into(),
            cause: format!(
                "no answer from the {} within {}",
                self.place,
                humantime::format_duration(self.limit + STATEMENT_GRACE)
            ),
            code: None,
            class: ErrorClass::Unavailable,
        }
    }

    /// One attempt at the write: the database cancels a statement past its own timeout;
    /// this guards against a connection gone silent, where no cancellation can arrive. The
    /// guard's clock starts when the write may begin.
    async fn attempt(
        &self,
        write: &WriteBatch<'_>,
        ready: Option<Ready<'_>>,
        turn: &Turn,
    ) -> Result<Vec<crate::db::Refused>, DbError> {
        let (began, begun) = tokio::sync::oneshot::channel::<()>();
        let written = async {
            let ready = async move {
                if let Some(r) = ready {
                    r.await;
                }
                let _ = began.send(());
            };
            self.db.write_when(write, ready, turn).await
        };
        let limit = self.limit;
        let silence = async {
            if begun.await.is_err() || limit.is_zero() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(limit + STATEMENT_GRACE).await;
        };
        tokio::select! {
            w = written => w,
            () = silence => Err(self.silent()),
        }
    }
}

#[async_trait::async_trait]
impl Sink for DatabaseSink {
    fn place(&self) -> &'static str {
        self.place
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            newer_wins: true,
            deletes: Deletes::Native,
            overlapping: self.db.overlaps(),
            max_rows: None,
            lists_keys: true,
            copy_tuples: self.db.dialect() == Dialect::Postgres,
            text_without_nul: self.db.dialect() == Dialect::Postgres,
            catalog: true,
            verdicts: false,
        }
    }

    fn dialect(&self) -> Option<Dialect> {
        Some(self.db.dialect())
    }

    async fn describe(&self, table: &TableName) -> Result<Option<TableSchema>, SinkError> {
        Ok(self.db.introspect(table).await?)
    }

    /// A lock conflict (deadlock, serialization failure) rolls the batch back and it is
    /// tried again at once, a few times, while the batch after it has not begun (that one
    /// may hold rows this one would wait for).
    async fn deliver(
        &self,
        b: &Outgoing<'_>,
        ready: Ready<'_>,
        turn: &Turn,
    ) -> Result<Vec<Refusal>, SinkError> {
        let t = b.target;
        let key_cols = t.key_cols();
        let version_col = (b.removal == Removal::Versioned)
            .then(|| t.version_col().cloned())
            .flatten();
        let tombstone = (b.removal == Removal::Tombstone).then(|| t.tombstone_cols());
        let write = WriteBatch {
            upsert: Upsert {
                table: &t.table,
                columns: &t.columns,
                key: &t.key,
                version: t.version,
            },
            rows: b.rows,
            tuples: b.tuples,
            key_cols: &key_cols,
            version_col: version_col.as_ref(),
            deletes: b.deletes,
            tombstone: tombstone.as_deref(),
        };
        let mut ready = Some(ready);
        let mut attempt = 0;
        loop {
            match self.attempt(&write, ready.take(), turn).await {
                Err(e)
                    if e.class() == ErrorClass::Transient
                        && attempt < LOCK_RETRIES
                        && !turn.is_staged() =>
                {
                    attempt += 1;
                    metrics::counter!(crate::metrics::RETRIES, "table" => b.label.to_owned())
                        .increment(1);
                    let wait = 50u64 << attempt;
                    tracing::warn!(table = %b.label, attempt, "lock conflict at the {}, trying again in {wait} ms: {e}", self.place);
                    tokio::time::sleep(Duration::from_millis(wait + rand::random_range(0..wait)))
                        .await;
                }
                Ok(refused) => {
                    return Ok(refused
                        .into_iter()
                        .map(|(delete, index, message)| Refusal {
                            delete,
                            index,
                            message,
                            by: super::RefusedBy::Exchange,
                        })
                        .collect());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn keys(
        &self,
        target: &Target,
        after: Option<&[Value]>,
        up_to: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>, SinkError> {
        let key = target.key_cols();
        let mut conds = Vec::new();
        if let Some(a) = after {
            conds.push(Cond::After(&key, a));
        }
        if let Some(u) = up_to {
            conds.push(Cond::UpTo(&key, u));
        }
        let sql = self.db.dialect().select(&Select {
            table: &target.table,
            columns: &key,
            conds,
            order: &key,
            limit: Some(limit),
        });
        let (rows, _) = self.db.fetch(&sql, &key, usize::MAX).await?;
        Ok(rows.into_iter().map(|r| r.values).collect())
    }

    async fn health(&self) -> Result<(), SinkError> {
        self.db.now().await?;
        Ok(())
    }

    async fn notice(
        &self,
        to: &crate::config::Notice,
        event: &super::ResyncEvent<'_>,
    ) -> Result<(), SinkError> {
        match to {
            crate::config::Notice::Table(t) => super::notice::write_row(&self.db, t, event).await,
            _ => Err(SinkError::Other {
                doing: "telling the province of a full resync".into(),
                cause: format!("the {} takes notices in a table", self.place),
                class: ErrorClass::Fatal,
            }),
        }
    }

    async fn close(&self) {
        self.db.close().await;
    }
}
