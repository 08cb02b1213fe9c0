//! A prepared batch's write, in a task of its own that begins at the exchange in its turn.

use super::*;

/// Start a prepared batch's write in a task of its own: it encodes the rows at once, and
/// begins its transaction at the exchange when [`InFlight::release`] is called, or as soon
/// as the batch `after` it committed there, or (where the exchange allows, see [`Turn`])
/// has only its commit left: the write task of that batch wakes it directly, so the
/// exchange waits for no other task between two batches. It commits after that batch.
pub fn launch(ctx: &Ctx, plan: &Plan, mut p: Prepared, after: Option<&InFlight>) -> InFlight {
    let writing = std::time::Instant::now();
    let (go, ready) = tokio::sync::oneshot::channel::<()>();
    let (done, written) = tokio::sync::watch::channel(Stage::Writing);
    let before = after.map(|f| f.written.clone());
    let overlaps = ctx.target.overlaps();
    if p.send.is_none() {
        // Nothing to write: the batch after it need not wait for this one.
        done.send_replace(Stage::Committed);
    }
    let write = p.send.as_mut().map(|s| {
        let w = OwnedWrite::new(ctx, plan, p.unconditional);
        let (rows, dels) = (std::mem::take(&mut s.rows), std::mem::take(&mut s.del_rows));
        let tuples = std::mem::take(&mut s.tuples);
        let span = tracing::info_span!(
            "batch",
            id = %s.id,
            rows = rows.len(),
            deletes = dels.len()
        );
        let task = tokio::spawn(
            async move {
                let turn = Turn {
                    before,
                    stage: done,
                };
                let mut waiting = turn.before.clone();
                // A delete does not wait for a row the batch before is inserting (it cannot
                // see it yet): a batch with deletes begins once that one committed.
                let overlaps = overlaps && dels.is_empty();
                let ready = async move {
                    let begun = async {
                        let may = |s: &Stage| match s {
                            Stage::Committed => true,
                            Stage::Staged => overlaps,
                            Stage::Writing | Stage::Failed => false,
                        };
                        let begun = match &mut waiting {
                            Some(b) => b.wait_for(may).await.is_ok(),
                            None => false,
                        };
                        if !begun {
                            std::future::pending::<()>().await;
                        }
                    };
                    tokio::select! {
                        _ = ready => {}
                        () = begun => {}
                    }
                };
                let r = w.write(&rows, &tuples, &dels, ready, &turn).await;
                turn.stage.send_replace(if r.is_ok() {
                    Stage::Committed
                } else {
                    Stage::Failed
                });
                (r, rows, dels, tuples)
            }
            .instrument(span),
        );
        let guard = crate::job::AbortOnDrop(task.abort_handle());
        (task, guard)
    });
    InFlight {
        p,
        write,
        writing,
        go: Some(go),
        written,
    }
}

impl InFlight {
    /// Let the write begin at the exchange.
    pub fn release(&mut self) {
        if let Some(go) = self.go.take() {
            let _ = go.send(());
        }
    }

    /// Nothing to write: every row of the batch was skipped or quarantined.
    pub fn idle(&self) -> bool {
        self.write.is_none()
    }

    /// Wait until the write committed at the exchange (true; also when there was nothing to
    /// write) or failed (false). The batch is not committed in the state store yet.
    pub async fn written(&mut self) -> bool {
        self.release();
        if self.write.is_none() {
            return true;
        }
        match self
            .written
            .wait_for(|s| matches!(s, Stage::Committed | Stage::Failed))
            .await
        {
            Ok(s) => *s == Stage::Committed,
            Err(_) => false,
        }
    }
}

/// How much longer than the exchange's own statement timeout the agent waits for an answer.
const STATEMENT_GRACE: Duration = Duration::from_secs(30);

/// Everything a write needs, owned, so that it can run in a task of its own.
struct OwnedWrite {
    target: std::sync::Arc<crate::db::Db>,
    name: String,
    limit: Duration,
    table: crate::ident::TableName,
    columns: Vec<Col>,
    key: Vec<usize>,
    version: Option<usize>,
    key_cols: Vec<Col>,
    version_col: Option<Col>,
    tombstone: Option<Vec<Col>>,
}

impl OwnedWrite {
    fn new(ctx: &Ctx, plan: &Plan, unconditional: bool) -> Self {
        OwnedWrite {
            target: std::sync::Arc::clone(&ctx.target),
            name: plan.name.clone(),
            limit: ctx.cfg.exchange.db.statement_timeout,
            table: plan.target.clone(),
            columns: plan.mapping.columns.clone(),
            key: plan.mapping.key.clone(),
            version: plan.mapping.version,
            key_cols: plan.mapping.key_cols(),
            version_col: if unconditional {
                None
            } else {
                plan.mapping.version_col().cloned()
            },
            tombstone: (unconditional && plan.deletes == DeleteMode::Tombstone).then(|| {
                plan.tombstone
                    .iter()
                    .map(|&i| plan.mapping.columns[i].clone())
                    .collect()
            }),
        }
    }

    /// Write one batch; the exchange isolates and returns the rows it refuses. A lock
    /// conflict (deadlock, serialization failure) rolls the batch back and it is tried again
    /// at once, up to five times.
    /// The first attempt waits for `ready` (the batch before it committed) after encoding.
    async fn write(
        &self,
        rows: &[Vec<Value>],
        tuples: &Tuples,
        dels: &[Vec<Value>],
        ready: impl Future<Output = ()>,
        turn: &Turn,
    ) -> Result<Vec<Refused>, DbError> {
        let write = WriteBatch {
            upsert: Upsert {
                table: &self.table,
                columns: &self.columns,
                key: &self.key,
                version: self.version,
            },
            rows,
            tuples,
            key_cols: &self.key_cols,
            version_col: self.version_col.as_ref(),
            deletes: dels,
            tombstone: self.tombstone.as_deref(),
        };
        // The exchange cancels a statement past its `statement_timeout`; this guards against
        // a connection gone silent, where no cancellation can arrive.
        let limit = self.limit;
        let silent = || DbError::Query {
            engine: self.target.engine(),
            doing: "writing a batch".into(),
            cause: format!(
                "no answer from the exchange within {}",
                humantime::format_duration(limit + STATEMENT_GRACE)
            ),
            code: None,
            class: ErrorClass::Unavailable,
        };
        let mut ready = Some(ready);
        let mut attempt = 0;
        loop {
            // The guard's clock starts when the write may begin.
            let (began, begun) = tokio::sync::oneshot::channel::<()>();
            let written = async {
                match ready.take() {
                    Some(r) => {
                        let r = async move {
                            r.await;
                            let _ = began.send(());
                        };
                        self.target.write_when(&write, r, turn).await
                    }
                    None => {
                        let _ = began.send(());
                        self.target
                            .write_when(&write, std::future::ready(()), turn)
                            .await
                    }
                }
            };
            let silence = async {
                if begun.await.is_err() || limit.is_zero() {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(limit + STATEMENT_GRACE).await;
            };
            let written = tokio::select! {
                w = written => w,
                () = silence => Err(silent()),
            };
            match written {
                // Tried again only while the batch after it has not begun: that one may
                // hold rows this one would wait for.
                Err(e)
                    if e.class() == ErrorClass::Transient && attempt < 5 && !turn.is_staged() =>
                {
                    attempt += 1;
                    metrics::counter!(crate::metrics::RETRIES, "table" => self.name.clone())
                        .increment(1);
                    let wait = 50u64 << attempt;
                    tracing::warn!(table = %self.name, attempt, "lock conflict at the exchange, trying again in {wait} ms: {e}");
                    tokio::time::sleep(Duration::from_millis(wait + rand::random_range(0..wait)))
                        .await;
                }
                Ok(refused) => {
                    if !refused.is_empty() {
                        tracing::warn!(
                            table = %self.name,
                            "the exchange refused {} row(s); they are quarantined and the rest of the batch was delivered",
                            refused.len()
                        );
                    }
                    return Ok(refused);
                }
                Err(e) => return Err(e),
            }
        }
    }
}
