//! A `down` table read from an http exchange: the endpoint is asked for the page of records
//! after the table's cursor, the page goes through the same batch as any read (rules,
//! mapping, newer-wins write to the front-end, ledger), and the cursor the page names is
//! committed only after its rows are. A page cut off or refused is asked again from the
//! same cursor: its records are written again by key (newer wins), never twice, never lost.
//!
//! A full resync asks the endpoint again from its beginning (no cursor) under a cursor of
//! its own, committed with each page in the resync's progress, so a stopped or killed
//! resync resumes after its last written page; the increments' cursor is never touched and
//! never moves back. Deletions come only as the feed's own `D` records: a feed that keeps
//! no record of a key does not say the key was withdrawn (it may have been pruned, or the
//! row may be the department's own), so the front-end rows it does not serve are kept.

use std::collections::HashMap;

use serde_json::Value as Json;

use super::batch::{self, Batch, Chunk, Rows, Seen};
use super::resync::Progress;
use super::{Ctx, CycleReport, JobError, Plan};
use crate::config::Pull;
use crate::db::ReadRow;
use crate::state::ResyncState;
use crate::value::{Value, key_text};

/// Where the state store keeps a pulled table's cursor.
fn cursor_key(table: &str) -> String {
    format!("pull.cursor:{table}")
}

pub(super) async fn cycle(
    ctx: &Ctx,
    plan: &Plan,
    report: &mut CycleReport,
) -> Result<(), JobError> {
    let Some(pull) = &plan.pull else {
        return Ok(());
    };
    let n = &plan.name;
    let key = cursor_key(n);
    let st = |e| JobError::store(n, "keeping the cursor", e);
    let mut cursor = ctx.state.meta(&key).await.map_err(st)?;
    loop {
        if ctx.cancel.is_cancelled() {
            report.stopped = true;
            return Ok(());
        }
        let answer = fetch(ctx, n, pull, cursor.as_deref()).await?;
        let Some((items, next)) = page(&answer, pull)
            .map_err(|e| JobError::new(n, "reading the province's records", e))?
        else {
            return Ok(());
        };
        let rows = rows_of(ctx, plan, items);
        let none = Seen::new();
        batch::deliver(ctx, plan, Batch::Rows(Rows::of(rows, &none)), report).await?;
        ctx.state.set_meta(&key, &next).await.map_err(st)?;
        cursor = Some(next);
    }
}

/// Run (or resume) the pulled table's requested full resync; does nothing when none is
/// pending.
pub(super) async fn resync(
    ctx: &Ctx,
    plan: &Plan,
    pull: &Pull,
    progress: Progress<'_>,
) -> Result<CycleReport, JobError> {
    let mut report = CycleReport::default();
    let n = &plan.name;
    let st = |e| JobError::store(n, "recording the resync", e);
    let Some(rs) = ctx.state.resync_of(n).await.map_err(st)? else {
        return Ok(report);
    };
    match rs.state {
        ResyncState::Requested => {
            tracing::info!(table = %n, "full resync started: the endpoint is read from its beginning");
        }
        ResyncState::Running => {
            tracing::info!(table = %n, from_page = rs.chunks, "full resync resumed");
        }
        ResyncState::Done | ResyncState::Failed => return Ok(report),
    }
    ctx.state.resync_started(n, None).await.map_err(st)?;
    let mut cursor: Option<String> = match &rs.last_key {
        Some(k) => Some(serde_json::from_str(k).map_err(|e| {
            JobError::new(
                n,
                "reading the resync's progress",
                format!("cursor {k}: {e}"),
            )
        })?),
        None => None,
    };
    let salt = format!("resync:{}:", rs.run_id);
    let mut done = u64::try_from(rs.rows).unwrap_or(0);
    progress(done, None);
    loop {
        if ctx.cancel.is_cancelled() {
            report.stopped = true;
            return Ok(report);
        }
        let answer = fetch(ctx, n, pull, cursor.as_deref()).await?;
        let Some((items, next)) = page(&answer, pull)
            .map_err(|e| JobError::new(n, "reading the province's records", e))?
        else {
            break;
        };
        if cursor.as_deref() == Some(next.as_str()) {
            return Err(JobError::new(
                n,
                "reading the province's records",
                format!("the endpoint answered records after cursor {next} with the same cursor"),
            ));
        }
        let rows = rows_of(ctx, plan, items);
        let count = rows.len() as u64;
        let none = Seen::new();
        let b = Batch::Rows(Rows {
            chunk: Some(Chunk {
                salt: salt.clone(),
                progress: Some(serde_json::to_string(&next).unwrap_or_default()),
            }),
            ..Rows::of(rows, &none)
        });
        batch::deliver(ctx, plan, b, &mut report).await?;
        done += count;
        cursor = Some(next);
        progress(done, None);
    }
    ctx.state.resync_finished(n, None).await.map_err(st)?;
    report.warnings.push(
        "front-end rows the endpoint no longer serves are kept: the feed withdraws a record \
         only by a D record, and those were applied"
            .into(),
    );
    tracing::info!(table = %n, sent = report.sent, removed = report.deleted, "full resync done");
    Ok(report)
}

/// The endpoint's answer after `cursor`.
async fn fetch(ctx: &Ctx, n: &str, pull: &Pull, cursor: Option<&str>) -> Result<Json, JobError> {
    let at = url(pull, cursor).map_err(|e| JobError::new(n, "asking the endpoint", e))?;
    ctx.exchange
        .pull(&at)
        .await
        .map_err(|e| JobError::sink(n, "reading the province's records", e))
}

/// The endpoint's URL after `cursor`.
fn url(pull: &Pull, cursor: Option<&str>) -> Result<String, String> {
    let mut u = url::Url::parse(&pull.url).map_err(|e| format!("{}: {e}", pull.url))?;
    if let Some(c) = cursor {
        u.query_pairs_mut().append_pair(&pull.param, c);
    }
    Ok(u.into())
}

/// The records of an answer and the cursor after them; `None` when there are none.
fn page<'a>(answer: &'a Json, pull: &Pull) -> Result<Option<(&'a [Json], String)>, String> {
    let items = answer
        .pointer(&pull.items)
        .and_then(Json::as_array)
        .ok_or_else(|| format!("the answer has no list at {}", pull.items))?;
    if items.is_empty() {
        return Ok(None);
    }
    let next = match answer.pointer(&pull.next) {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Number(n)) => n.to_string(),
        _ => return Err(format!("the answer has no cursor at {}", pull.next)),
    };
    Ok(Some((items, next)))
}

/// The records as rows of the table's columns, the last of each key only (a page may carry
/// a record and its later change); a value that does not fit its column marks the row bad.
fn rows_of(ctx: &Ctx, plan: &Plan, items: &[Json]) -> Vec<ReadRow> {
    let tz = &ctx.cfg.agent.tz;
    let mut rows: Vec<ReadRow> = Vec::with_capacity(items.len());
    let mut at: HashMap<String, usize> = HashMap::new();
    for item in items {
        let mut bad = None;
        let values: Vec<Value> = plan
            .read_cols
            .iter()
            .map(|c| {
                let v = match item.get(c.name.as_str()) {
                    None | Some(Json::Null) => Value::Null,
                    Some(Json::String(s)) => Value::Text(s.clone()),
                    Some(Json::Bool(b)) => Value::Bool(*b),
                    Some(Json::Number(x)) => match x.as_i64() {
                        Some(i) => Value::Int(i),
                        None => Value::Text(x.to_string()),
                    },
                    Some(other) => Value::Text(other.to_string()),
                };
                v.coerce(c.ty, tz).unwrap_or_else(|e| {
                    bad.get_or_insert(format!("column {}: {e}", c.name));
                    Value::Null
                })
            })
            .collect();
        let rkey = key_text(&plan.key.iter().map(|&i| &values[i]).collect::<Vec<_>>());
        let row = ReadRow {
            values,
            bad,
            tuple: None,
        };
        match at.get(&rkey) {
            Some(&i) => rows[i] = row,
            None => {
                at.insert(rkey, rows.len());
                rows.push(row);
            }
        }
    }
    rows
}
