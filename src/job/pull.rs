//! A `down` table read from an http exchange: the endpoint is asked for the page of records
//! after the table's cursor, the page goes through the same batch as any read (rules,
//! mapping, newer-wins write to the front-end, ledger), and the cursor the page names is
//! committed only after its rows are. A page cut off or refused is asked again from the
//! same cursor: its records are written again by key (newer wins), never twice, never lost.

use std::collections::HashMap;

use serde_json::Value as Json;

use super::batch::{self, Batch, Rows, Seen};
use super::{Ctx, CycleReport, JobError, Plan};
use crate::config::Pull;
use crate::db::ReadRow;
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
        let answer = ctx
            .exchange
            .pull(
                &url(pull, cursor.as_deref())
                    .map_err(|e| JobError::new(n, "asking the endpoint", e))?,
            )
            .await
            .map_err(|e| JobError::sink(n, "reading the province's records", e))?;
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
