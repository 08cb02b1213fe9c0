//! A batch checked and mapped before it is written: its rows sorted, its identity (a batch
//! of the same rows begun and never acknowledged is sent again as it was), its rows mapped
//! to the exchange's, and the batch recorded in the ledger as being sent.

use super::*;

/// Classify and map the rows read, and record the batch as being sent.
pub async fn prepare(
    ctx: &Ctx,
    plan: &Plan,
    b: Batch<'_>,
    report: &mut CycleReport,
) -> Result<Prepared, JobError> {
    let mut b = Parts::from(b);
    // Keys gone from the source are deleted whatever the stored version: a batch carries
    // either those or rows read, never both.
    let unconditional = !b.gone.is_empty() || !b.gone_target.is_empty();
    debug_assert!(!unconditional || b.rows.is_empty());
    let started = std::time::Instant::now();
    let Sorted {
        pending,
        mut rejects,
        digests,
        mut flag_failed,
        newest,
    } = sort(ctx, plan, &mut b, report);
    let mut send = None;
    if !pending.is_empty() {
        let st = |e| JobError::store(&plan.name, "recording the batch", e);
        let content = content_of(b.salt.as_deref().unwrap_or(""), &pending);
        let sent = identify(ctx, plan, &content).await.map_err(st)?;
        let mut mapped = Mapped {
            ups: Vec::with_capacity(pending.len()),
            dels: Vec::new(),
            rejects: &mut rejects,
            flag_failed: &mut flag_failed,
        };
        map_rows(
            ctx,
            plan,
            &sent,
            (unconditional, b.full),
            pending,
            &mut mapped,
        )?;
        let (ups, dels) = (mapped.ups, mapped.dels);
        if !ups.is_empty() || !dels.is_empty() {
            let entry = LedgerEntry {
                id: sent.id.clone(),
                table: plan.name.clone(),
                cd_batch: sent.cd_batch.clone(),
                wm_from: b.from.as_ref().map(Watermark::to_json),
                wm_to: b.to.as_ref().map(Watermark::to_json),
                rows: ups.len() as u64,
                deletes: dels.len() as u64,
                rejected: rejects.len() as u64,
                content,
                sent_at: sent.at,
            };
            // A digest table finds its deletes only among the keys it remembers: the keys of a
            // batch are remembered before it is sent, so that a row the exchange took, whose
            // batch was never committed here and which is deleted at the source meanwhile, is
            // still deleted at the exchange (and one still there is sent again).
            if plan.mode == Mode::Digest {
                ctx.state
                    .remember_keys(&plan.name, &digests)
                    .await
                    .map_err(st)?;
            }
            ctx.state
                .batch_started(&entry, Utc::now())
                .await
                .map_err(st)?;
            send = Some(pack(plan, sent, ups, dels, b.full));
        }
    }
    Ok(Prepared {
        unconditional,
        rejects,
        digests,
        flag_failed,
        newest,
        new_wm: b.new_wm,
        prune_before: b.prune_before,
        resync_key: b.resync_key,
        why: b.why,
        send,
        started,
    })
}

/// The rows of a batch mapped: to write, to delete, and those that could not be mapped.
struct Mapped<'a> {
    ups: Vec<Out>,
    dels: Vec<Out>,
    rejects: &'a mut Vec<Reject>,
    flag_failed: &'a mut Vec<(Vec<Value>, String)>,
}

/// Map each row to its exchange values (a row read as its tuple goes as it came); a row
/// that cannot be mapped is quarantined.
fn map_rows(
    ctx: &Ctx,
    plan: &Plan,
    sent: &crate::state::Sent,
    (unconditional, full): (bool, bool),
    pending: Vec<(String, Pending)>,
    out: &mut Mapped<'_>,
) -> Result<(), JobError> {
    let tz = &ctx.cfg.agent.tz;
    let tombstones = unconditional && plan.deletes == DeleteMode::Tombstone;
    let origin = match (&ctx.cfg.agent.region_code, &ctx.cfg.agent.department_code) {
        (Some(r), Some(d)) => Some(format!("{r}{d}")),
        _ => None,
    };
    let rc = RowCtx {
        tz,
        exchange_time: sent.at,
        cd_batch: &sent.cd_batch,
        origin: origin.as_deref(),
        lower_ops: ctx.cfg.exchange.lower_ops,
        mark: ctx.cfg.resync.mark(full),
    };
    for (rkey, p) in pending {
        // The operation of a row to write; `None` for a delete.
        let (mapped, src, op, tuple) = match p {
            Pending::Upsert(v, op, tuple @ Some(_)) => (Ok(v), Some(Vec::new()), Some(op), tuple),
            Pending::Upsert(mut v, op, tuple) => {
                let mapped = plan.mapping.row(&mut v, op, &rc);
                // Everything moved over: the row is held once, not twice.
                if mapped.is_ok() && v.iter().all(Value::is_null) {
                    v = Vec::new();
                }
                (mapped, Some(v), Some(op), tuple)
            }
            Pending::Delete(v) => (plan.mapping.delete_params(&v, tz), Some(v), None, None),
            Pending::Gone(k) => match plan.mapping.delete_params_from_key(&k, tz) {
                Ok(d) => (Ok(d), None, None, None),
                Err(reason) => {
                    return Err(JobError::new(
                        &plan.name,
                        "mapping a deleted key",
                        format!("key {rkey}: {reason}"),
                    ));
                }
            },
            Pending::GoneTarget(k) if tombstones => (
                plan.mapping.tombstone_params(&plan.tombstone, &k, &rc),
                None,
                None,
                None,
            ),
            Pending::GoneTarget(k) => (Ok(k), None, None, None),
        };
        match (mapped, src) {
            (Ok(values), src) => {
                let o = Out {
                    values,
                    op: op.unwrap_or(Op::Delete),
                    rkey,
                    src,
                    tuple,
                };
                if op.is_none() {
                    out.dels.push(o)
                } else {
                    out.ups.push(o)
                }
            }
            (Err(reason), Some(mut v)) => {
                if let Some(t) = &tuple {
                    crate::db::complete(&mut v, t, &plan.read_cols);
                }
                if plan.flag.is_some() {
                    out.flag_failed.push((v.clone(), reason.clone()));
                }
                out.rejects
                    .push(reject(plan, &rkey, &v, Origin::Map, vec![reason]));
            }
            (Err(_), None) => {}
        }
    }
    Ok(())
}

/// The rows to write, taken out of their records: the source values stay with each row,
/// the exchange values go to the write (and come back with its outcome). Rows read as
/// tuples go as they came, when every row was (always, for a table read that way);
/// otherwise every row is encoded from its values, made whole. The tuples are put one after
/// another in one buffer, and the bytes each was read into are let go.
fn pack(
    plan: &Plan,
    sent: crate::state::Sent,
    mut ups: Vec<Out>,
    mut dels: Vec<Out>,
    full: bool,
) -> Sending {
    let tuples = if ups.iter().all(|o| o.tuple.is_some()) {
        let size = ups.iter().filter_map(|o| o.tuple.as_ref()).map(Bytes::len);
        let mut t = Tuples::with_capacity(ups.len(), size.sum());
        for o in &mut ups {
            if let Some(b) = o.tuple.take() {
                t.push(&b);
            }
        }
        t
    } else {
        for o in &mut ups {
            if let Some(t) = o.tuple.take() {
                crate::db::complete(&mut o.values, &t, &plan.read_cols);
            }
        }
        Tuples::default()
    };
    let rows: Vec<Vec<Value>> = ups
        .iter_mut()
        .map(|o| std::mem::take(&mut o.values))
        .collect();
    let ops: Vec<Op> = ups.iter().map(|o| o.op).collect();
    let del_rows: Vec<Vec<Value>> = dels
        .iter_mut()
        .map(|o| std::mem::take(&mut o.values))
        .collect();
    Sending {
        id: sent.id,
        cd_batch: sent.cd_batch,
        ups,
        dels,
        rows,
        ops,
        del_rows,
        tuples,
        full,
    }
}

/// A digest of what a batch carries: every row read (its key, its operation, and its values
/// or the tuple it was read as) and every key it removes, after the salt that sets a full
/// resync's or a resubmission's batches apart. Read again unchanged after a crash, the same
/// rows give the same digest.
pub(super) fn content_of(salt: &str, pending: &[(String, Pending)]) -> String {
    let mut h = Xxh3::new();
    let mut piece = |b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    piece(salt.as_bytes());
    for (rkey, p) in pending {
        piece(rkey.as_bytes());
        let (tag, values, tuple): (&[u8], &[Value], _) = match p {
            Pending::Upsert(_, op, Some(t)) => (op.letter(false).as_bytes(), &[], Some(t)),
            Pending::Upsert(v, op, None) => (op.letter(false).as_bytes(), v, None),
            Pending::Delete(v) => (b"delete", v, None),
            Pending::Gone(k) => (b"gone", k, None),
            Pending::GoneTarget(k) => (b"gone at the target", k, None),
        };
        piece(tag);
        if let Some(t) = tuple {
            piece(t);
        }
        for v in values {
            v.feed(&mut piece);
        }
    }
    format!("{:016x}", h.digest())
}

/// The batch id: agent, table, and a digest of the rows' digest and the batch number, which
/// no other batch of the agent has (a batch of the same rows as one delivered long ago is a
/// new batch).
pub(super) fn batch_id(agent: &str, table: &str, content: &str, cd_batch: &str) -> String {
    let mut h = Xxh3::new();
    h.update(content.as_bytes());
    h.update(b"\x00");
    h.update(cd_batch.as_bytes());
    format!("{agent}-{table}-{:016x}", h.digest())
}

/// How a batch is sent: its id, its number, and the exchange time its rows carry. A batch of
/// the same rows begun and never acknowledged (the agent stopped or failed in between) is
/// sent again as it was, so that a receiver that keeps the ids it applied may drop it.
async fn identify(
    ctx: &Ctx,
    plan: &Plan,
    content: &str,
) -> Result<crate::state::Sent, crate::state::StateError> {
    if let Some(sent) = ctx.state.unacknowledged(&plan.name, content).await? {
        return Ok(sent);
    }
    let at = Utc::now();
    let day = at
        .with_timezone(&ctx.cfg.agent.tz)
        .format("%Y%m%d")
        .to_string();
    let cd_batch = ctx.state.next_cd_batch(&day).await?;
    Ok(crate::state::Sent {
        id: batch_id(&ctx.cfg.agent.id, &plan.name, content, &cd_batch),
        cd_batch,
        at,
    })
}
