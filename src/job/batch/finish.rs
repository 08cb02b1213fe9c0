//! A batch's end: the outcome of its write, the rows the exchange refused quarantined, the
//! batch committed in the state store with its watermark, and then the extraction flags set.

use super::*;

/// Wait for the write, quarantine what the exchange refused, and commit the batch with its
/// watermark.
pub async fn finish(
    ctx: &Ctx,
    plan: &Plan,
    f: InFlight,
    report: &mut CycleReport,
) -> Result<(), JobError> {
    let mut f = f;
    f.release();
    let InFlight {
        p, write, writing, ..
    } = f;
    let mut done = Done {
        rejects: p.rejects,
        flag_failed: p.flag_failed,
        ..Done::default()
    };
    if let (Some(s), Some((task, guard))) = (p.send, write) {
        let joined = task.await;
        drop(guard);
        metrics::histogram!(crate::metrics::BATCH_SECONDS, "table" => plan.name.clone())
            .record(writing.elapsed().as_secs_f64());
        let (result, up_rows, del_rows, tuples) = joined
            .map_err(|e| JobError::new(&plan.name, "delivering to the exchange", e.to_string()))?;
        let refused = match result {
            Ok(r) => r,
            Err(e) => {
                if let Err(se) = ctx.state.batch_failed(&s.id, &e.to_string()).await {
                    tracing::warn!(table = %plan.name, batch = %s.id, "cannot record the failed batch: {se}");
                }
                return Err(JobError::sink(&plan.name, "delivering to the exchange", e));
            }
        };
        done.settle(plan, s, refused, up_rows, del_rows, &tuples);
    }
    if done.batch.is_none()
        && done.rejects.is_empty()
        && p.digests.is_empty()
        && done.dropped.is_empty()
        && p.new_wm.is_none()
    {
        if let Some(flag) = &plan.flag {
            mark_flags(plan, flag, &done.flag_done, &done.flag_failed).await?;
        }
        return Ok(());
    }
    let commit = Commit {
        table: &plan.name,
        batch_id: done.batch.as_deref(),
        watermark: p.new_wm.as_ref(),
        rows: done.sent,
        deletes: done.deleted,
        rejected: done.rejects.len() as u64,
        newest_change: p.newest,
        digests: &p.digests,
        drop_digests: &done.dropped,
        prune_before: p.prune_before.as_deref(),
        rejects: &done.rejects,
        delivered: &done.delivered,
        resync_key: p.resync_key.as_deref(),
        resubmit_why: p.why,
        accepted: plan.ends.sink.capabilities().verdicts,
    };
    let committing = std::time::Instant::now();
    ctx.state
        .commit(&commit)
        .await
        .map_err(|e| JobError::store(&plan.name, "committing the watermark", e))?;
    // The extraction flags are the source's own watermark: they move only after the batch
    // and its quarantined rows are in the state store. Set before, a kill or a full state
    // directory in between would leave rows flagged failed at the source, never read again,
    // with no reject in the ledger. Set after, the same gap only sends the rows again, which
    // the exchange takes as they are.
    if let Some(flag) = &plan.flag {
        mark_flags(plan, flag, &done.flag_done, &done.flag_failed).await?;
    }
    tracing::debug!(
        table = %plan.name,
        "batch phases (s): prepared and written {:.3} (written alone {:.3}), committed {:.3}",
        committing.duration_since(p.started).as_secs_f64(),
        committing.duration_since(writing).as_secs_f64(),
        committing.elapsed().as_secs_f64(),
    );
    done.count(plan, report);
    Ok(())
}

/// What became of a batch's rows once its write ended.
#[derive(Default)]
struct Done {
    rejects: Vec<Reject>,
    flag_failed: Vec<(Vec<Value>, String)>,
    /// Source rows whose extraction flag is set as exchanged.
    flag_done: Vec<Vec<Value>>,
    /// Record keys delivered (an open reject among them is resubmitted).
    delivered: Vec<String>,
    /// Record keys of a digest table deleted at the exchange (their digests go).
    dropped: Vec<String>,
    sent: u64,
    deleted: u64,
    batch: Option<String>,
}

impl Done {
    /// Sort the rows of a written batch into delivered and refused (quarantined with the
    /// exchange's words, their source rows made whole again for the reject record).
    fn settle(
        &mut self,
        plan: &Plan,
        s: Sending,
        refused: Vec<Refusal>,
        up_rows: Vec<Vec<Value>>,
        del_rows: Vec<Vec<Value>>,
        tuples: &Tuples,
    ) {
        let mut refused_ups: HashMap<usize, Refusal> = HashMap::new();
        let mut refused_dels: HashMap<usize, Refusal> = HashMap::new();
        for r in refused {
            if r.delete {
                refused_dels.insert(r.index, r)
            } else {
                refused_ups.insert(r.index, r)
            };
        }
        let mut dels = s.dels;
        for (o, v) in dels.iter_mut().zip(del_rows) {
            o.values = v;
        }
        // The source rows are needed whole only for a refusal, or to flag them.
        let mut ups = s.ups;
        for (i, (o, v)) in ups.iter_mut().zip(&up_rows).enumerate() {
            if (plan.flag.is_some() || refused_ups.contains_key(&i))
                && let Some(src) = &mut o.src
            {
                plan.mapping.restore(src, plan.read_cols.len(), v);
                if let Some(t) = tuples.get(i) {
                    crate::db::complete(src, t, &plan.read_cols);
                }
            }
        }
        // A table read as tuples: the rows read next take these vectors again.
        if plan.tuples.is_some() {
            crate::db::give_back_rows(up_rows);
        }
        for (is_delete, list, refused) in [(false, ups, &refused_ups), (true, dels, &refused_dels)]
        {
            for (i, o) in list.into_iter().enumerate() {
                match refused.get(&i) {
                    Some(r) => self.refused(plan, o, r),
                    None => self.delivered(plan, o, is_delete),
                }
            }
        }
        tracing::info!(table = %plan.name, batch = %s.id, rows = self.sent, deletes = self.deleted, rejected = self.rejects.len(), "batch delivered");
        self.batch = Some(s.id);
    }

    fn refused(&mut self, plan: &Plan, o: Out, r: &Refusal) {
        // The province's own checks answering a delivery are its rejections, as if read
        // back later: the reject carries its origin and the platform's code.
        let (origin, reason) = match &r.by {
            RefusedBy::Exchange => (
                Origin::Target,
                format!("the exchange refused the row: {}", r.message),
            ),
            RefusedBy::Province { code: Some(c) } => {
                (Origin::Province, format!("[{c}] {}", r.message))
            }
            RefusedBy::Province { code: None } => (Origin::Province, r.message.clone()),
        };
        if let (Some(v), Some(_)) = (&o.src, &plan.flag) {
            self.flag_failed.push((v.clone(), reason.clone()));
        }
        let r = match &o.src {
            Some(v) => reject(plan, &o.rkey, v, origin, vec![reason]),
            None => Reject {
                rkey: o.rkey.clone(),
                kvals: serde_json::to_string(&o.values).unwrap_or_default(),
                origin,
                reasons: vec![reason],
                row_json: "{}".into(),
                digest: None,
            },
        };
        self.rejects.push(r);
    }

    fn delivered(&mut self, plan: &Plan, o: Out, is_delete: bool) {
        if let (Some(v), Some(_)) = (o.src, &plan.flag) {
            self.flag_done.push(v);
        }
        if is_delete {
            self.deleted += 1;
        } else {
            self.sent += 1;
        }
        if is_delete && !o.rkey.is_empty() && plan.mode == Mode::Digest {
            self.dropped.push(o.rkey);
        } else {
            self.delivered.push(o.rkey);
        }
    }

    /// The batch's figures, in the metrics and the cycle's report.
    fn count(&self, plan: &Plan, report: &mut CycleReport) {
        let label = || plan.name.clone();
        metrics::counter!(crate::metrics::ROWS_SENT, "table" => label()).increment(self.sent);
        metrics::counter!(crate::metrics::ROWS_DELETED, "table" => label()).increment(self.deleted);
        for r in &self.rejects {
            metrics::counter!(crate::metrics::ROWS_QUARANTINED, "table" => label(), "origin" => r.origin.as_str())
                .increment(1);
        }
        report.sent += self.sent;
        report.deleted += self.deleted;
        report.rejected += self.rejects.len() as u64;
        report.batches += u64::from(self.batch.is_some());
    }
}

/// Set the extraction flag of the rows just exchanged (and of the failed ones), each only if
/// the row still holds the values that were read.
async fn mark_flags(
    plan: &Plan,
    flag: &FlagPlan,
    done: &[Vec<Value>],
    failed: &[(Vec<Value>, String)],
) -> Result<(), JobError> {
    let key_cols = plan.key_cols();
    let params = |mark: &Value, error: Option<String>, values: &[Value]| {
        let mut p = vec![mark.clone()];
        if flag.error.is_some() {
            p.push(error.map_or(Value::Null, Value::Text));
        }
        p.extend(plan.key.iter().map(|&i| values[i].clone()));
        p.push(flag.pending.clone());
        p.extend(values.iter().cloned());
        p
    };
    let text = plan.ends.read.dialect().mark_row(
        &plan.source,
        &flag.col,
        flag.error.as_ref(),
        &key_cols,
        &plan.read_cols,
    );
    let mut rows: Vec<Vec<Value>> = done.iter().map(|v| params(&flag.done, None, v)).collect();
    let limit = flag
        .error
        .as_ref()
        .and_then(|c| crate::mapping::char_limit(&c.native))
        .unwrap_or(1000);
    rows.extend(failed.iter().map(|(v, why)| {
        let why: String = why.chars().take(limit).collect();
        params(&flag.failed, Some(why), v)
    }));
    if rows.is_empty() {
        return Ok(());
    }
    plan.ends
        .read
        .exec_many(&text, &rows)
        .await
        .map_err(|e| JobError::db(&plan.name, "setting the extraction flag in the source", e))?;
    Ok(())
}
