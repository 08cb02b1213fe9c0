//! A batch's end: the outcome of its write, the rows the exchange refused quarantined, the
//! extraction flags set, and the batch committed in the state store with its watermark.

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
    let Prepared {
        mut rejects,
        digests,
        mut flag_failed,
        newest,
        new_wm,
        prune_before,
        resync_key,
        why,
        send,
        started,
        ..
    } = p;
    let mut delivered = Vec::new();
    let mut dropped = Vec::new();
    let mut flag_done: Vec<Vec<Value>> = Vec::new();
    let (mut sent, mut deleted) = (0u64, 0u64);
    let mut batch = None;
    if let (Some(s), Some((task, guard))) = (send, write) {
        let joined = task.await;
        drop(guard);
        let written = match joined {
            Ok((r, rows, dels, tuples)) => r.map(|refused| (refused, rows, dels, tuples)),
            Err(e) => {
                return Err(JobError::new(
                    &plan.name,
                    "delivering to the exchange",
                    e.to_string(),
                ));
            }
        };
        metrics::histogram!(crate::metrics::BATCH_SECONDS, "table" => plan.name.clone())
            .record(writing.elapsed().as_secs_f64());
        let (refused, up_rows, del_rows, tuples) = match written {
            Ok(w) => w,
            Err(e) => {
                let _ = ctx.state.batch_failed(&s.id, &e.to_string()).await;
                return Err(JobError::db(&plan.name, "delivering to the exchange", e));
            }
        };
        let mut refused_ups: HashMap<usize, String> = HashMap::new();
        let mut refused_dels: HashMap<usize, String> = HashMap::new();
        for (is_delete, i, msg) in refused {
            if is_delete {
                refused_dels.insert(i, msg)
            } else {
                refused_ups.insert(i, msg)
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
                match (refused.get(&i), o.src) {
                    (Some(msg), src) => {
                        let reason = format!("the exchange refused the row: {msg}");
                        if let (Some(v), Some(_)) = (&src, &plan.flag) {
                            flag_failed.push((v.clone(), reason.clone()));
                        }
                        let r = match &src {
                            Some(v) => reject(plan, &o.rkey, v, "target", vec![reason]),
                            None => Reject {
                                rkey: o.rkey.clone(),
                                kvals: serde_json::to_string(&o.values).unwrap_or_default(),
                                origin: "target",
                                reasons: vec![reason],
                                row_json: "{}".into(),
                                digest: None,
                            },
                        };
                        rejects.push(r);
                    }
                    (None, src) => {
                        if let (Some(v), Some(_)) = (src, &plan.flag) {
                            flag_done.push(v);
                        }
                        if is_delete {
                            deleted += 1;
                        } else {
                            sent += 1;
                        }
                        if is_delete && !o.rkey.is_empty() && plan.mode == Mode::Digest {
                            dropped.push(o.rkey);
                        } else {
                            delivered.push(o.rkey);
                        }
                    }
                }
            }
        }
        tracing::info!(table = %plan.name, batch = %s.id, rows = sent, deletes = deleted, rejected = rejects.len(), "batch delivered");
        batch = Some(s.id);
    }

    if batch.is_none()
        && rejects.is_empty()
        && digests.is_empty()
        && dropped.is_empty()
        && new_wm.is_none()
    {
        if let Some(flag) = &plan.flag {
            mark_flags(ctx, plan, flag, &flag_done, &flag_failed).await?;
        }
        return Ok(());
    }
    let commit = Commit {
        table: &plan.name,
        batch_id: batch.as_deref(),
        watermark: new_wm.as_ref(),
        rows: sent,
        deletes: deleted,
        rejected: rejects.len() as u64,
        newest_change: newest,
        digests: &digests,
        drop_digests: &dropped,
        prune_before: prune_before.as_deref(),
        rejects: &rejects,
        delivered: &delivered,
        resync_key: resync_key.as_deref(),
        resubmit_why: why,
    };
    let committing = std::time::Instant::now();
    ctx.state
        .commit(&commit)
        .await
        .map_err(|e| JobError::new(&plan.name, "committing the watermark", e.to_string()))?;
    // The extraction flags are the source's own watermark: they move only after the batch
    // and its quarantined rows are in the state store. Set before, a kill or a full state
    // directory in between left rows flagged failed (9) at the source, never read again,
    // with no reject in the ledger (found by the soak). Set after, the same gap only sends
    // the rows again, which the exchange takes as they are.
    if let Some(flag) = &plan.flag {
        mark_flags(ctx, plan, flag, &flag_done, &flag_failed).await?;
    }
    tracing::debug!(
        table = %plan.name,
        "batch phases (s): prepared and written {:.3} (written alone {:.3}), committed {:.3}",
        committing.duration_since(started).as_secs_f64(),
        committing.duration_since(writing).as_secs_f64(),
        committing.elapsed().as_secs_f64(),
    );
    let label = || plan.name.clone();
    metrics::counter!(crate::metrics::ROWS_SENT, "table" => label()).increment(sent);
    metrics::counter!(crate::metrics::ROWS_DELETED, "table" => label()).increment(deleted);
    for r in &rejects {
        metrics::counter!(crate::metrics::ROWS_QUARANTINED, "table" => label(), "origin" => r.origin)
            .increment(1);
    }
    report.sent += sent;
    report.deleted += deleted;
    report.rejected += rejects.len() as u64;
    report.batches += u64::from(batch.is_some());
    Ok(())
}

/// Set the extraction flag of the rows just exchanged (and of the failed ones), each only if
/// the row still holds the values that were read.
async fn mark_flags(
    ctx: &Ctx,
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
    let text = ctx.source.dialect().mark_row(
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
    ctx.source
        .exec_many(&text, &rows)
        .await
        .map_err(|e| JobError::db(&plan.name, "setting the extraction flag in the source", e))?;
    Ok(())
}
