//! A prepared batch's write, in a task of its own that begins at the exchange in its turn.

use super::*;

/// Start a prepared batch's write in a task of its own: it encodes the rows at once, and
/// begins its transaction at the exchange when [`InFlight::release`] is called, or as soon
/// as the batch `after` it committed there, or (where the exchange allows, see [`Turn`])
/// has only its commit left: the write task of that batch wakes it directly, so the
/// exchange waits for no other task between two batches. It commits after that batch.
pub fn launch(plan: &Plan, mut p: Prepared, after: Option<&InFlight>) -> InFlight {
    let writing = std::time::Instant::now();
    let (go, ready) = tokio::sync::oneshot::channel::<()>();
    let (done, written) = tokio::sync::watch::channel(Stage::Writing);
    let before = after.map(|f| f.written.clone());
    let caps = plan.ends.sink.capabilities();
    // Only a sink that keeps the newer row may see a batch begin before the one before it
    // was acknowledged.
    let overlaps = caps.overlapping && caps.newer_wins;
    if p.send.is_none() {
        // Nothing to write: the batch after it need not wait for this one.
        done.send_replace(Stage::Committed);
    }
    let write = p.send.as_mut().map(|s| {
        let w = OwnedWrite::new(plan, p.unconditional, s.full);
        let (rows, dels) = (std::mem::take(&mut s.rows), std::mem::take(&mut s.del_rows));
        let tuples = std::mem::take(&mut s.tuples);
        let ops = std::mem::take(&mut s.ops);
        let (id, cd_batch) = (s.id.clone(), s.cd_batch.clone());
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
                let r = w
                    .write(&id, &cd_batch, &rows, &ops, &tuples, &dels, ready, &turn)
                    .await;
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

/// What a write task needs, owned, so that it can run in a task of its own.
struct OwnedWrite {
    sink: std::sync::Arc<dyn crate::sink::Sink>,
    target: std::sync::Arc<Target>,
    label: String,
    removal: Removal,
    /// The field, and its value, that says whether this is a full resync's batch.
    mark: Option<(String, String)>,
}

impl OwnedWrite {
    fn new(plan: &Plan, unconditional: bool, full: bool) -> Self {
        let removal = match (unconditional, plan.deletes) {
            (false, _) => Removal::Versioned,
            (true, DeleteMode::Tombstone) => Removal::Tombstone,
            (true, DeleteMode::Delete) => Removal::Unconditional,
        };
        OwnedWrite {
            sink: std::sync::Arc::clone(&plan.ends.sink),
            target: std::sync::Arc::clone(&plan.out),
            label: plan.name.clone(),
            removal,
            mark: plan.marks.as_ref().map(|m| m.of(full)),
        }
    }

    /// Deliver one batch; the sink isolates and returns the rows it refuses. The delivery
    /// waits for `ready` (the batch before it committed) after encoding.
    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        id: &str,
        cd_batch: &str,
        rows: &[Vec<Value>],
        ops: &[Op],
        tuples: &Tuples,
        dels: &[Vec<Value>],
        ready: impl Future<Output = ()> + Send,
        turn: &Turn,
    ) -> Result<Vec<Refusal>, SinkError> {
        let out = Outgoing {
            id,
            cd_batch,
            label: &self.label,
            target: &self.target,
            rows,
            ops,
            tuples,
            deletes: dels,
            removal: self.removal,
            mark: self.mark.as_ref().map(|(f, v)| (f.as_str(), v.as_str())),
        };
        let refused = self.sink.deliver(&out, Box::pin(ready), turn).await?;
        if !refused.is_empty() {
            tracing::warn!(
                table = %self.label,
                "the exchange refused {} row(s); they are quarantined and the rest of the batch was delivered",
                refused.len()
            );
        }
        Ok(refused)
    }
}
