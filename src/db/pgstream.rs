//! A PostgreSQL select streamed by one `COPY (SELECT ...) TO STDOUT (FORMAT binary)` and
//! taken a batch at a time: the server runs the select once for a whole cycle, however many
//! batches it fills, instead of once per batch.

use futures::TryStreamExt;
use sqlx::postgres::PgPool;

use super::dialect::Dialect;
use super::{DbError, ErrorClass, ReadRow, dynamic, pgbinary, value_size};
use crate::db::EngineKind;
use crate::ident::Col;
use sqlx::Postgres;

const E: EngineKind = EngineKind::Postgres;

/// A batch of rows taken from a stream, and whether more may follow.
pub type Taken = Result<(Vec<ReadRow>, bool), DbError>;

/// An ask for the next batch: at most so many rows and (about) bytes, and where to answer.
pub(super) type Ask = (usize, usize, tokio::sync::oneshot::Sender<Taken>);

/// One select's rows, streamed by a single `COPY ... TO STDOUT` and taken a batch at a time:
/// the server runs the select once, however many batches it fills, and its rows wait in the
/// connection (the server pauses while nobody takes them). A task of its own holds the
/// connection; dropping the stream stops it and closes the connection unless the `COPY`
/// ended.
pub struct CopyStream {
    ask: tokio::sync::mpsc::Sender<Ask>,
    task: tokio::task::AbortHandle,
}

impl Drop for CopyStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CopyStream {
    pub(super) fn new(ask: tokio::sync::mpsc::Sender<Ask>, task: tokio::task::AbortHandle) -> Self {
        CopyStream { ask, task }
    }

    /// The next batch of at most `rows` rows and about `bytes` bytes of values.
    pub fn next(&self, rows: usize, bytes: usize) -> impl Future<Output = Taken> + Send + 'static {
        let ask = self.ask.clone();
        async move {
            let gone = || DbError::Query {
                engine: E,
                doing: "reading rows".into(),
                cause: "the stream of rows ended unexpectedly".into(),
                code: None,
                class: ErrorClass::Unavailable,
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            ask.send((rows, bytes, tx)).await.map_err(|_| gone())?;
            rx.await.map_err(|_| gone())?
        }
    }
}

/// The task behind a [`CopyStream`]: answer every ask with the next rows of the `COPY`.
pub(super) async fn serve(
    pool: PgPool,
    copy: String,
    settings: Vec<String>,
    cols: Vec<Col>,
    tuples: Option<Vec<bool>>,
    mut asks: tokio::sync::mpsc::Receiver<Ask>,
) {
    let err = |e| DbError::query(E, "reading rows", e);
    let Some(first) = asks.recv().await else {
        return;
    };
    let mut conn = match pool.acquire().await {
        Ok(c) => Closing {
            conn: c,
            clean: false,
        },
        Err(e) => {
            let _ = first.2.send(Err(err(e)));
            return;
        }
    };
    // As in `fetch_copy`: the settings and the COPY share a transaction.
    let begun = async {
        sqlx::query("BEGIN").execute(&mut *conn.conn).await?;
        if !settings.is_empty() {
            let set = Dialect::Postgres.pg_set_params(settings.len());
            let mut q = sqlx::query(dynamic(&set));
            for v in &settings {
                q = q.bind(v.as_str());
            }
            q.execute(&mut *conn.conn).await?;
        }
        Ok::<(), sqlx::Error>(())
    };
    if let Err(e) = begun.await {
        let _ = first.2.send(Err(err(e)));
        return;
    }
    let ended = {
        let mut stream = match conn.conn.copy_out_raw(&copy).await {
            Ok(s) => s,
            Err(e) => {
                let _ = first.2.send(Err(err(e)));
                return;
            }
        };
        let mut reader = match &tuples {
            Some(decode) => pgbinary::CopyOut::keeping(decode),
            None => pgbinary::CopyOut::default(),
        };
        // Rows decoded beyond the batch asked for, kept for the next. Nothing is read while
        // nobody asks: the rows wait in the connection, not in memory, while the batch
        // taken last is checked and written.
        let mut held = Held::default();
        let mut failed: Option<DbError> = None;
        let mut ask = Some(first);
        loop {
            let next = match ask.take() {
                Some(a) => Some(a),
                None => asks.recv().await,
            };
            // Nobody asks any more: the connection is closed with the rest unread.
            let Some((n, max_bytes, reply)) = next else {
                return;
            };
            let mut rows = Vec::with_capacity(n.min(1 << 16));
            let mut bytes = 0;
            loop {
                while rows.len() < n && bytes < max_bytes {
                    let Some((r, size)) = held.rows.pop_front() else {
                        break;
                    };
                    bytes += size;
                    rows.push(r);
                }
                if failed.is_some() || rows.len() >= n || bytes >= max_bytes || reader.ended {
                    break;
                }
                failed = pull(&mut stream, &mut reader, &cols, &mut held).await.err();
            }
            if let Some(e) = failed {
                let _ = reply.send(Err(e));
                return;
            }
            if reader.ended && held.rows.is_empty() {
                // The end: the rest of the COPY's messages are read before its transaction
                // ends; the batch is answered after that.
                while let Ok(Some(_)) = stream.try_next().await {}
                drop(stream);
                break Some((rows, reply));
            }
            if reply.send(Ok((rows, true))).is_err() {
                return;
            }
        }
    };
    let Some((rows, reply)) = ended else { return };
    match sqlx::query("COMMIT").execute(&mut *conn.conn).await {
        Ok(_) => {
            conn.clean = true;
            // Given back now, before the last rows are answered: the table's next queries
            // (rows that changed while it was read, rows without a change time) reuse it
            // rather than open a connection while this task still holds it.
            conn.conn.return_to_pool().await;
            let _ = reply.send(Ok((rows, false)));
        }
        Err(e) => {
            let _ = reply.send(Err(err(e)));
            return;
        }
    }
    // Asked again after the end: nothing more.
    while let Some((_, _, reply)) = asks.recv().await {
        let _ = reply.send(Ok((Vec::new(), false)));
    }
}

/// Rows of a [`CopyStream`] decoded and not taken yet, each with its size.
#[derive(Default)]
struct Held {
    rows: std::collections::VecDeque<(ReadRow, usize)>,
    got: Vec<ReadRow>,
}

/// What a row read counts for against a batch's bytes.
pub(super) fn row_size(r: &ReadRow) -> usize {
    r.tuple.as_ref().map_or(0, bytes::Bytes::len) + r.values.iter().map(value_size).sum::<usize>()
}

/// Read the next message of a `COPY`'s data into `held`; an error when the data is not
/// what was selected or ends in the middle of a row.
async fn pull(
    stream: &mut (impl futures::Stream<Item = sqlx::Result<bytes::Bytes>> + Unpin),
    reader: &mut pgbinary::CopyOut,
    cols: &[Col],
    held: &mut Held,
) -> Result<(), DbError> {
    match stream.try_next().await {
        Ok(Some(data)) => {
            reader
                .feed(&data, cols, &mut held.got)
                .map_err(unreadable)?;
            for r in held.got.drain(..) {
                let size = row_size(&r);
                held.rows.push_back((r, size));
            }
            Ok(())
        }
        Ok(None) if reader.ended && !reader.partial() => Ok(()),
        Ok(None) => Err(cut_short()),
        Err(e) => Err(DbError::query(E, "reading rows", e)),
    }
}

/// The error of `COPY` data that is not what was selected.
pub(super) fn unreadable(cause: String) -> DbError {
    DbError::Query {
        engine: E,
        doing: "reading rows".into(),
        cause,
        code: None,
        class: ErrorClass::Fatal,
    }
}

/// The error of `COPY` data that ended in the middle of a row.
pub(super) fn cut_short() -> DbError {
    DbError::Query {
        engine: E,
        doing: "reading rows".into(),
        cause: "the COPY data ended in the middle of a row".into(),
        code: None,
        class: ErrorClass::Unavailable,
    }
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
