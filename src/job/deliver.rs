//! Delivering a table's batches one after another: each is written while the next is read,
//! and finished (its watermark committed) in order.

use super::*;

/// Deliver a batch while the next one is read from the source (when `next` gives its
/// conditions), and while the batch before it is still being written: the read and the
/// write each run as a task of their own, so reading and decoding the next batch, checking
/// and mapping this one, and writing the one before use the cores side by side (from a
/// PostgreSQL stream, the next batch is asked for once this one is prepared and the one
/// before it finished). A batch's transaction at the exchange begins once the one before it
/// has sent all its statements (on PostgreSQL, unless it deletes; elsewhere, and with deletes,
/// once that one committed; see [`batch::launch`]) and commits only after it, so batches
/// commit in order at the exchange, and in the state store (the watermark) each after its
/// own and after the one before; at most three are held. A crash between the two commits
/// sends the rows again, which the newer-wins upsert takes as they are. The last batch is
/// finished here; one left in `inflight` (when the next read finds nothing, or the cycle
/// stops early) is finished by [`settle`].
pub(super) async fn deliver_reading(
    ctx: &Ctx,
    plan: &Plan,
    b: Batch<'_>,
    report: &mut CycleReport,
    next: Option<Next<'_>>,
    order: &[Col],
    inflight: &mut Option<batch::InFlight>,
) -> Result<Option<(Vec<ReadRow>, bool)>, JobError> {
    type Reading = std::pin::Pin<
        Box<dyn Future<Output = Result<Result<(Vec<ReadRow>, bool), DbError>, String>> + Send>,
    >;
    // A read in a task of its own, stopped if the delivery fails: its rows would not be used.
    fn spawned<F>(read: F) -> (Reading, Option<AbortOnDrop>)
    where
        F: Future<Output = Result<(Vec<ReadRow>, bool), DbError>> + Send + 'static,
    {
        let task = tokio::spawn(read);
        let guard = AbortOnDrop(task.abort_handle());
        let rows = async move { task.await.map_err(|e| e.to_string()) };
        (Box::pin(rows), Some(guard))
    }
    let reading = next.map(|next| -> (Reading, Option<AbortOnDrop>) {
        match next {
            Next::Query(conds) => {
                let sql = read_sql(plan, conds, order);
                let source = Arc::clone(&plan.ends.read);
                let cols = plan.read_cols.clone();
                let max_bytes = plan.batch_bytes;
                let tuples = plan.tuples.clone();
                let n = plan.batch_size;
                spawned(async move {
                    let tuples = tuples.as_deref().map(|d| (d, n));
                    fetch(&source, &sql, &cols, max_bytes, tuples).await
                })
            }
            // Asked when awaited, once this batch is prepared and the one before it finished:
            // until then the rows wait in the connection, not in memory (asking at once is no
            // faster and holds a third batch at peak). But when nothing is being
            // written (the first batch, or a batch before whose rows were all skipped, as a
            // re-read lookback window's are), asked at once: decoding the next batch then
            // overlaps sorting this one, and no third batch is held meanwhile.
            Next::Stream(s) => {
                let rows = s.next(plan.batch_size, plan.batch_bytes);
                if inflight.as_ref().is_none_or(batch::InFlight::idle) {
                    spawned(rows)
                } else {
                    (Box::pin(async move { Ok(rows.await) }), None)
                }
            }
        }
    });
    let prepared = match batch::prepare(ctx, plan, b, report).await {
        Ok(p) => p,
        Err(e) => {
            // The batch before it is still delivered and committed.
            settle(ctx, plan, inflight, report).await?;
            return Err(e);
        }
    };
    // Encoded while the batch before it is still being written; begun at the exchange once
    // that one committed there, while the state store records it.
    let mut writing = batch::launch(plan, prepared, inflight.as_ref());
    let before = match inflight.as_mut() {
        Some(f) => f.written().await,
        None => true,
    };
    if before {
        writing.release();
    }
    settle(ctx, plan, inflight, report).await?;
    writing.release();
    let Some((task, guard)) = reading else {
        return batch::finish(ctx, plan, writing, report)
            .await
            .map(|()| None);
    };
    *inflight = Some(writing);
    let rows = task
        .await
        .map_err(|e| JobError::new(&plan.name, "reading the source", e))
        .and_then(|r| r.map_err(|e| JobError::db(&plan.name, "reading the source", e)));
    drop(guard);
    match rows {
        Ok(rows) => Ok(Some(rows)),
        Err(e) => {
            // What was read before is still delivered.
            settle(ctx, plan, inflight, report).await?;
            Err(e)
        }
    }
}

/// Finish the batch still being written, if there is one.
pub(super) async fn settle(
    ctx: &Ctx,
    plan: &Plan,
    inflight: &mut Option<batch::InFlight>,
    report: &mut CycleReport,
) -> Result<(), JobError> {
    match inflight.take() {
        Some(f) => batch::finish(ctx, plan, f, report).await,
        None => Ok(()),
    }
}

pub(super) struct AbortOnDrop(pub(super) tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
