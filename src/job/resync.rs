//! Full resync of one table: every source row again, in key order and in chunks, under new
//! batch ids; rows at the exchange whose key the source no longer has are removed (or
//! tombstoned). Progress is committed with each chunk, so a stopped or crashed resync
//! resumes from its last finished chunk. The table's incremental watermark is left alone:
//! changes made meanwhile are exchanged by the next cycles, as always.

use std::collections::HashSet;

use super::batch::{self, Batch, Chunk, Gone, Remember, Removals, Rows, Seen};
use super::plan::{Mode, Plan};
use super::{Ctx, CycleReport, JobError};
use crate::db::dialect::{Cond, Select};
use crate::state::ResyncState;
use crate::value::{Value, key_text};
use crate::watermark::Watermark;

/// Progress callback: rows delivered so far, and the source's row count when known.
pub type Progress<'a> = &'a (dyn Fn(u64, Option<u64>) + Sync);

/// Most candidate keys verified at the source in one query.
const VERIFY_CHUNK: usize = 500;

/// Run (or resume) the table's requested resync; does nothing when none is pending.
pub async fn resync(
    ctx: &Ctx,
    plan: &Plan,
    progress: Progress<'_>,
) -> Result<CycleReport, JobError> {
    if let Some(pull) = &plan.pull {
        return super::pull::resync(ctx, plan, pull, progress).await;
    }
    let mut report = CycleReport::default();
    let Some(mut run) = begin(ctx, plan).await? else {
        return Ok(report);
    };
    // Rows the source no longer has are removed where the sink can say which keys it holds.
    let removes = plan.ends.sink.capabilities().lists_keys;
    if !removes {
        report.warnings.push(format!(
            "the {} cannot list the keys it holds: rows the source no longer has are not \
             removed by this resync",
            plan.ends.sink.place()
        ));
    }
    progress(run.done, run.total);
    loop {
        if ctx.cancel.is_cancelled() {
            report.stopped = true;
            return Ok(report);
        }
        if !chunk(ctx, plan, &mut run, removes, &mut report).await? {
            break;
        }
        progress(run.done, run.total);
    }
    if removes && !remove_past(ctx, plan, &run, &mut report).await? {
        report.stopped = true;
        return Ok(report);
    }
    let now = chrono::Utc::now();
    super::notice::tell(ctx, plan, &run.id, run.started, Some(now), Some(run.done)).await?;
    ctx.state
        .resync_finished(&plan.name, None)
        .await
        .map_err(|e| JobError::store(&plan.name, "recording the resync", e))?;
    tracing::info!(table = %plan.name, sent = report.sent, removed = report.deleted, "full resync done");
    Ok(report)
}

/// A resync under way: what makes its batch ids new, the source's rows when it began, the
/// last key sent and how many rows so far.
struct Run {
    /// The run's id in the state store, and when it started.
    id: String,
    started: chrono::DateTime<chrono::Utc>,
    salt: String,
    total: Option<u64>,
    cursor: Option<Vec<Value>>,
    done: u64,
}

/// Start the requested resync, or resume the one that was running; `None` when there is
/// none.
async fn begin(ctx: &Ctx, plan: &Plan) -> Result<Option<Run>, JobError> {
    let n = &plan.name;
    let st_err = |e| JobError::store(n, "recording the resync", e);
    let Some(rs) = ctx.state.resync_of(n).await.map_err(st_err)? else {
        return Ok(None);
    };
    let mut started = rs.started.as_deref().and_then(crate::state::parse_ts);
    let total = match rs.state {
        ResyncState::Requested => {
            let total = plan
                .ends
                .read
                .count_where(&plan.source, &plan.scoped(Vec::new()))
                .await
                .map_err(|e| JobError::db(n, "counting the source rows", e))?;
            if plan.mode == Mode::Digest {
                ctx.state.clear_digests(n).await.map_err(st_err)?;
            }
            let now = *started.insert(chrono::Utc::now());
            let rows = u64::try_from(total).ok();
            super::notice::tell(ctx, plan, &rs.run_id, now, None, rows).await?;
            ctx.state
                .resync_started(n, Some(total))
                .await
                .map_err(st_err)?;
            tracing::info!(table = %n, rows = total, "full resync started");
            Some(total)
        }
        ResyncState::Running => {
            ctx.state.resync_started(n, None).await.map_err(st_err)?;
            tracing::info!(table = %n, from_chunk = rs.chunks, "full resync resumed");
            rs.total
        }
        ResyncState::Done | ResyncState::Failed => return Ok(None),
    };
    let cursor = match &rs.last_key {
        Some(k) => Some(serde_json::from_str(k).map_err(|e| {
            JobError::new(
                n,
                "reading the resync's progress",
                format!("last key {k}: {e}"),
            )
        })?),
        None => None,
    };
    Ok(Some(Run {
        id: rs.run_id.clone(),
        started: started.unwrap_or_else(chrono::Utc::now),
        salt: format!("resync:{}:", rs.run_id),
        total: total.and_then(|t| u64::try_from(t).ok()),
        cursor,
        done: u64::try_from(rs.rows).unwrap_or(0),
    }))
}

/// Send the next chunk of source rows in key order, and remove the exchange's rows in its
/// key range that the source does not have; false when there was none left.
async fn chunk(
    ctx: &Ctx,
    plan: &Plan,
    run: &mut Run,
    removes: bool,
    report: &mut CycleReport,
) -> Result<bool, JobError> {
    let key_cols = plan.key_cols();
    let conds = match &run.cursor {
        Some(c) => vec![Cond::After(&key_cols, c)],
        None => vec![],
    };
    let sql = plan.ends.read.dialect().select(&Select {
        table: &plan.source,
        columns: &plan.read_cols,
        conds: plan.scoped(conds),
        order: &key_cols,
        limit: Some(plan.batch_size),
    });
    let (rows, capped) = super::fetch(
        &plan.ends.read,
        &sql,
        &plan.read_cols,
        plan.batch_bytes,
        plan.tuples.as_deref().map(|d| (d, plan.batch_size)),
    )
    .await
    .map_err(|e| JobError::db(&plan.name, "reading the source", e))?;
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(false);
    };
    let more = capped || rows.len() >= plan.batch_size;
    let key_of = |r: &crate::db::ReadRow| -> Vec<Value> {
        plan.key.iter().map(|&i| r.values[i].clone()).collect()
    };
    let (first_key, last_key) = (key_of(first), key_of(last));
    let key_json = serde_json::to_string(&last_key).unwrap_or_default();
    // Rows of the exchange in this chunk's key range that the source did not return.
    let gone = if removes {
        let present = exchange_keys_of(ctx, plan, &rows);
        gone_between(ctx, plan, run.cursor.as_deref(), Some(&last_key), &present).await?
    } else {
        Vec::new()
    };
    let chunk_rows = rows.len() as u64;
    let none = Seen::new();
    let b = Batch::Rows(Rows {
        from: Some(Watermark {
            ts: None,
            key: first_key,
        }),
        to: Some(Watermark {
            ts: None,
            key: last_key.clone(),
        }),
        remember: if plan.mode == Mode::Digest {
            Remember::All
        } else {
            Remember::Nothing
        },
        chunk: Some(Chunk {
            salt: run.salt.clone(),
            progress: gone.is_empty().then(|| key_json.clone()),
        }),
        ..Rows::of(rows, &none)
    });
    batch::deliver(ctx, plan, b, report).await?;
    if !gone.is_empty() {
        deliver_gone(ctx, plan, gone, &run.salt, &key_json, report).await?;
    }
    run.done += chunk_rows;
    run.cursor = Some(last_key);
    Ok(more)
}

/// Remove the exchange's rows past the last source key; false when the agent is stopping.
async fn remove_past(
    ctx: &Ctx,
    plan: &Plan,
    run: &Run,
    report: &mut CycleReport,
) -> Result<bool, JobError> {
    let key_json = serde_json::to_string(&run.cursor).unwrap_or_default();
    let mut from = run.cursor.clone();
    loop {
        if ctx.cancel.is_cancelled() {
            return Ok(false);
        }
        let (gone, next) = gone_page(ctx, plan, from.as_deref(), None, &HashSet::new()).await?;
        if !gone.is_empty() {
            deliver_gone(ctx, plan, gone, &run.salt, &key_json, report).await?;
        }
        match next {
            Some(k) => from = Some(k),
            None => return Ok(true),
        }
    }
}

async fn deliver_gone(
    ctx: &Ctx,
    plan: &Plan,
    gone: Vec<(String, Vec<Value>)>,
    salt: &str,
    key_json: &str,
    report: &mut CycleReport,
) -> Result<(), JobError> {
    let b = Batch::Removals(Removals {
        keys: gone,
        gone: Gone::Target,
        chunk: Some(Chunk {
            salt: format!("{salt}gone:"),
            progress: Some(key_json.to_owned()),
        }),
    });
    batch::deliver(ctx, plan, b, report).await
}

/// Source keys as the exchange holds them (converted to the exchange key's types), so that
/// both sides compare alike.
fn exchange_key(plan: &Plan, ctx: &Ctx, src_key: &[Value]) -> Option<Vec<Value>> {
    plan.mapping
        .delete_params_from_key(src_key, &ctx.cfg.agent.tz)
        .ok()
}

fn exchange_keys_of(ctx: &Ctx, plan: &Plan, rows: &[crate::db::ReadRow]) -> HashSet<String> {
    rows.iter()
        .filter_map(|r| {
            let k: Vec<Value> = plan.key.iter().map(|&i| r.values[i].clone()).collect();
            exchange_key(plan, ctx, &k).map(|t| key_text(&t.iter().collect::<Vec<_>>()))
        })
        .collect()
}

/// Every exchange key in the source key range (`from`, `to`] that is not in `present` and that
/// the source confirms it does not have.
async fn gone_between(
    ctx: &Ctx,
    plan: &Plan,
    from: Option<&[Value]>,
    to: Option<&[Value]>,
    present: &HashSet<String>,
) -> Result<Vec<(String, Vec<Value>)>, JobError> {
    let mut out = Vec::new();
    let mut cursor: Option<Vec<Value>> = from.map(<[Value]>::to_vec);
    loop {
        let (mut gone, next) = gone_page(ctx, plan, cursor.as_deref(), to, present).await?;
        out.append(&mut gone);
        match next {
            Some(k) => cursor = Some(k),
            None => return Ok(out),
        }
    }
}

/// One page of exchange keys after `from` (and up to `to`), minus those in `present` and
/// those the source still has. Returns them and, when more may follow, where to continue
/// (as a source key).
async fn gone_page(
    ctx: &Ctx,
    plan: &Plan,
    from: Option<&[Value]>,
    to: Option<&[Value]>,
    present: &HashSet<String>,
) -> Result<(Vec<(String, Vec<Value>)>, Option<Vec<Value>>), JobError> {
    let n = &plan.name;
    let tz = &ctx.cfg.agent.tz;
    let conv = |k: &[Value]| {
        exchange_key(plan, ctx, k).ok_or_else(|| {
            JobError::new(
                n,
                "comparing keys with the exchange",
                "a key cannot be converted",
            )
        })
    };
    let lower = from.map(conv).transpose()?;
    let upper = to.map(conv).transpose()?;
    let rows = plan
        .ends
        .sink
        .keys(
            &plan.out,
            lower.as_deref(),
            upper.as_deref(),
            plan.batch_size,
        )
        .await
        .map_err(|e| JobError::sink(n, "reading the exchange's keys", e))?;
    let full = rows.len() >= plan.batch_size;
    let next_t = rows.last().cloned();
    let candidates: Vec<(String, Vec<Value>)> = rows
        .into_iter()
        .map(|r| (key_text(&r.iter().collect::<Vec<_>>()), r))
        .filter(|(k, _)| !present.contains(k))
        .collect();
    // The source may still have a candidate in another chunk (when the two databases order
    // keys differently): ask it before anything is deleted.
    let src_key = plan.key_cols();
    let mut gone = Vec::new();
    let read = &plan.ends.read;
    let per_select = read.dialect().keys_per_select(src_key.len(), VERIFY_CHUNK);
    for chunk in candidates.chunks(per_select) {
        let tuples: Vec<Vec<Value>> = chunk
            .iter()
            .filter_map(|(_, t)| {
                t.iter()
                    .zip(&src_key)
                    .map(|(v, c)| v.clone().coerce(c.ty, tz).ok())
                    .collect::<Option<Vec<Value>>>()
            })
            .collect();
        let sql = read.dialect().select(&Select {
            table: &plan.source,
            columns: &src_key,
            // A source row out of the table's scope is not the exchange's to keep.
            conds: plan.scoped(vec![Cond::AnyOf(&src_key, &tuples)]),
            order: &[],
            limit: None,
        });
        let (found, _) = read
            .fetch(&sql, &src_key, usize::MAX)
            .await
            .map_err(|e| JobError::db(n, "checking keys at the source", e))?;
        let still: HashSet<String> = found
            .iter()
            .filter_map(|r| exchange_key(plan, ctx, &r.values))
            .map(|t| key_text(&t.iter().collect::<Vec<_>>()))
            .collect();
        gone.extend(chunk.iter().filter(|(k, _)| !still.contains(k)).cloned());
    }
    // Continue after the last exchange key read, expressed as a source key.
    let next = match (full, next_t) {
        (true, Some(t)) => Some(
            t.into_iter()
                .zip(&src_key)
                .map(|(v, c)| v.coerce(c.ty, tz))
                .collect::<Result<Vec<Value>, String>>()
                .map_err(|e| JobError::new(n, "comparing keys with the exchange", e))?,
        ),
        _ => None,
    };
    Ok((gone, next))
}
