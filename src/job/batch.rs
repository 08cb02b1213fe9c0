//! One batch: classify the rows read, map them, deliver them, and only after the exchange
//! acknowledged, commit the watermark, the ledger entry, the digests and the rejects.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::plan::{Mode, Plan};
use super::{Ctx, CycleReport, JobError};
use crate::config::DeleteMode;
use crate::db::{ReadRow, WriteBatch};
use crate::mapping::{Op, RowCtx};
use crate::state::{Commit, DigestEntry, LedgerEntry, Reject};
use crate::value::{Value, key_text, row_digest};
use crate::watermark::Watermark;

/// Digests of rows already handled, by record key: skip a row read again unchanged.
pub type Seen = HashMap<String, ([u8; 16], String)>;

/// Which handled rows to remember by digest.
pub enum Remember {
    Nothing,
    All,
    /// Rows whose change time sorts at or after this.
    Since(String),
}

/// The rows of one read, on their way to the exchange.
pub struct Batch<'a> {
    pub rows: Vec<ReadRow>,
    pub seen: &'a Seen,
    /// Positions of the first and last row read, for the batch id and the ledger.
    pub from: Option<Watermark>,
    pub to: Option<Watermark>,
    /// The watermark to commit with the batch (`None`: unchanged).
    pub new_wm: Option<Watermark>,
    pub remember: Remember,
    pub prune_before: Option<String>,
    /// Rows gone from the source (digest mode): record key and key values.
    pub gone: Vec<(String, Vec<Value>)>,
}

enum Pending {
    Upsert(Vec<Value>, Op),
    Delete(Vec<Value>),
    Gone(Vec<Value>),
}

fn reject(
    plan: &Plan,
    rkey: &str,
    values: &[Value],
    origin: &'static str,
    reason: String,
    digest: Option<[u8; 16]>,
) -> Reject {
    let key: Vec<&Value> = plan.key.iter().filter_map(|&i| values.get(i)).collect();
    let row: serde_json::Map<String, serde_json::Value> = plan
        .read_cols
        .iter()
        .zip(values)
        .map(|(c, v)| {
            let j = if v.is_null() {
                serde_json::Value::Null
            } else {
                serde_json::Value::String(v.to_text())
            };
            (c.name.to_string(), j)
        })
        .collect();
    Reject {
        rkey: rkey.to_owned(),
        kvals: serde_json::to_string(&key).unwrap_or_default(),
        origin,
        reasons: vec![reason],
        row_json: serde_json::Value::Object(row).to_string(),
        digest,
    }
}

/// Deterministic batch id: agent, table and the range of rows it covers.
fn batch_id(agent: &str, table: &str, from: &str, to: &str, n: usize) -> String {
    let mut h = Sha256::new();
    h.update(from.as_bytes());
    h.update(b"\x00");
    h.update(to.as_bytes());
    h.update(b"\x00");
    h.update(n.to_string().as_bytes());
    let hex = hex::encode(h.finalize());
    format!("{agent}-{table}-{}", &hex[..16])
}

pub async fn deliver(
    ctx: &Ctx,
    plan: &Plan,
    b: Batch<'_>,
    report: &mut CycleReport,
) -> Result<(), JobError> {
    let tz = &ctx.cfg.agent.tz;
    let fmt = plan.window.as_ref().map_or("", |w| w.format.as_str());
    let mut order: HashMap<String, usize> = HashMap::new();
    let mut pending: Vec<(String, Pending)> = Vec::new();
    let mut rejects = Vec::new();
    let mut digests = Vec::new();
    let mut newest: Option<DateTime<Utc>> = None;
    let mut flag_failed: Vec<(Vec<Value>, String)> = Vec::new();
    let mut keep =
        |rkey: String, p: Pending, pending: &mut Vec<(String, Pending)>| match order.get(&rkey) {
            Some(&i) => pending[i].1 = p,
            None => {
                order.insert(rkey.clone(), pending.len());
                pending.push((rkey, p));
            }
        };

    for row in b.rows {
        report.read += 1;
        let values = row.values;
        let digest = row_digest(&values);
        let key: Vec<&Value> = plan.key.iter().map(|&i| &values[i]).collect();
        let key_null = key.iter().any(|v| v.is_null());
        let rkey = if key_null {
            format!("NULL:{}", hex::encode(&digest[..8]))
        } else {
            key_text(&key)
        };
        if b.seen.get(&rkey).is_some_and(|(d, _)| *d == digest) {
            report.skipped += 1;
            continue;
        }
        let ts_value = plan.ts.map(|i| &values[i]);
        let ts_text = ts_value.map(Value::sort_text);
        let remember = match &b.remember {
            Remember::Nothing => false,
            Remember::All => true,
            Remember::Since(s) => ts_text.as_deref().is_some_and(|t| t >= s.as_str()),
        };
        if remember {
            digests.push(DigestEntry {
                rkey: rkey.clone(),
                digest,
                ts: ts_text.clone(),
                kvals: serde_json::to_string(&key).unwrap_or_default(),
            });
        }
        let mut problem = match (&row.bad, key_null) {
            (Some(bad), _) => Some(("read", bad.clone())),
            (None, true) => Some((
                "read",
                format!(
                    "key column {} is NULL",
                    plan.key_cols()
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            _ => None,
        };
        let op = match plan.mode {
            Mode::Control => {
                let v = plan.op.map_or(&Value::Null, |i| &values[i]);
                Op::parse(v).unwrap_or_else(|| {
                    problem.get_or_insert_with(|| {
                        let col = plan
                            .op
                            .map(|i| plan.read_cols[i].name.to_string())
                            .unwrap_or_default();
                        (
                            "map",
                            format!(
                                "operation `{}` in column {col} is not I, U or D",
                                v.to_text()
                            ),
                        )
                    });
                    Op::Update
                })
            }
            Mode::Key => Op::Insert,
            Mode::Digest if b.seen.contains_key(&rkey) => Op::Update,
            Mode::Digest => Op::Insert,
            Mode::Timestamp | Mode::Flag => Op::Update,
        };
        if let Some((origin, reason)) = problem {
            if plan.flag.is_some() && !key_null {
                flag_failed.push((values.clone(), reason.clone()));
            }
            rejects.push(reject(plan, &rkey, &values, origin, reason, Some(digest)));
            continue;
        }
        if let Some(t) = ts_value.and_then(|v| v.instant(tz, fmt)) {
            newest = Some(newest.map_or(t, |n| n.max(t)));
        }
        let p = if op == Op::Delete && plan.deletes == DeleteMode::Delete {
            Pending::Delete(values)
        } else {
            Pending::Upsert(values, op)
        };
        keep(rkey, p, &mut pending);
    }
    for (rkey, key) in b.gone {
        keep(rkey, Pending::Gone(key), &mut pending);
    }

    let wm_from = b.from.as_ref().map(Watermark::to_json);
    let wm_to = b.to.as_ref().map(Watermark::to_json);
    let mut rows = Vec::new();
    let mut deletes = Vec::new();
    let mut delivered = Vec::new();
    let mut dropped = Vec::new();
    let mut flag_done: Vec<Vec<Value>> = Vec::new();
    let mut batch = None;
    if !pending.is_empty() {
        let id = batch_id(
            &ctx.cfg.agent.id,
            &plan.name,
            wm_from.as_deref().unwrap_or(""),
            wm_to.as_deref().unwrap_or(""),
            pending.len(),
        );
        let st = |e: crate::state::StateError| {
            JobError::new(&plan.name, "recording the batch", e.to_string(), false)
        };
        let cd_batch = match ctx.state.cd_batch_of(&id).await.map_err(st)? {
            Some(c) => c,
            None => {
                let day = Utc::now().with_timezone(tz).format("%Y%m%d").to_string();
                ctx.state.next_cd_batch(&day).await.map_err(st)?
            }
        };
        let origin = match (&ctx.cfg.agent.region_code, &ctx.cfg.agent.department_code) {
            (Some(r), Some(d)) => Some(format!("{r}{d}")),
            _ => None,
        };
        let rc = RowCtx {
            tz,
            exchange_time: Utc::now(),
            cd_batch: &cd_batch,
            origin: origin.as_deref(),
            lower_ops: ctx.cfg.exchange.lower_ops,
        };
        for (rkey, p) in pending {
            let is_gone = matches!(p, Pending::Gone(_));
            let (mapped, values) = match &p {
                Pending::Upsert(v, op) => {
                    (plan.mapping.row(v, *op, &rc).map(|r| rows.push(r)), Some(v))
                }
                Pending::Delete(v) => (
                    plan.mapping.delete_params(v, tz).map(|d| deletes.push(d)),
                    Some(v),
                ),
                Pending::Gone(k) => (
                    plan.mapping
                        .delete_params_from_key(k, tz)
                        .map(|d| deletes.push(d)),
                    None,
                ),
            };
            match (mapped, values) {
                (Ok(()), v) => {
                    if let (Some(v), Some(_)) = (v, &plan.flag) {
                        flag_done.push(v.clone());
                    }
                    if is_gone {
                        dropped.push(rkey);
                    } else {
                        delivered.push(rkey);
                    }
                }
                (Err(reason), Some(v)) => {
                    if plan.flag.is_some() {
                        flag_failed.push((v.clone(), reason.clone()));
                    }
                    rejects.push(reject(plan, &rkey, v, "map", reason, Some(row_digest(v))));
                }
                (Err(reason), None) => {
                    return Err(JobError::new(
                        &plan.name,
                        "mapping a deleted key",
                        format!("key {rkey}: {reason}"),
                        false,
                    ));
                }
            }
        }
        if !rows.is_empty() || !deletes.is_empty() {
            let entry = LedgerEntry {
                id: id.clone(),
                table: plan.name.clone(),
                cd_batch,
                wm_from: wm_from.clone(),
                wm_to: wm_to.clone(),
                rows: rows.len() as u64,
                deletes: deletes.len() as u64,
                rejected: rejects.len() as u64,
            };
            ctx.state
                .batch_started(&entry, Utc::now())
                .await
                .map_err(st)?;
            let key_cols = plan.mapping.key_cols();
            let write = WriteBatch {
                upsert: crate::db::dialect::Upsert {
                    table: &plan.target,
                    columns: &plan.mapping.columns,
                    key: &plan.mapping.key,
                    version: plan.mapping.version,
                },
                rows: &rows,
                key_cols: &key_cols,
                version_col: plan.mapping.version_col(),
                deletes: &deletes,
            };
            if let Err(e) = ctx.target.write(&write).await {
                let msg = e.to_string();
                let _ = ctx.state.batch_failed(&id, &msg).await;
                return Err(JobError::new(
                    &plan.name,
                    "delivering to the exchange",
                    msg,
                    e.is_retriable(),
                ));
            }
            tracing::info!(table = %plan.name, batch = %id, rows = rows.len(), deletes = deletes.len(), rejected = rejects.len(), "batch delivered");
            batch = Some(id);
        }
    }

    if let Some(flag) = &plan.flag {
        mark_flags(ctx, plan, flag, &flag_done, &flag_failed).await?;
    }

    let changed_wm = b.new_wm.is_some();
    if batch.is_none()
        && rejects.is_empty()
        && digests.is_empty()
        && dropped.is_empty()
        && !changed_wm
    {
        return Ok(());
    }
    let commit = Commit {
        table: &plan.name,
        batch_id: batch.as_deref(),
        watermark: b.new_wm.as_ref(),
        rows: rows.len() as u64,
        deletes: deletes.len() as u64,
        newest_change: newest,
        digests: &digests,
        drop_digests: &dropped,
        prune_before: b.prune_before.as_deref(),
        rejects: &rejects,
        delivered: &delivered,
    };
    ctx.state
        .commit(&commit)
        .await
        .map_err(|e| JobError::new(&plan.name, "committing the watermark", e.to_string(), false))?;
    report.sent += rows.len() as u64;
    report.deleted += deletes.len() as u64;
    report.rejected += rejects.len() as u64;
    report.batches += u64::from(batch.is_some());
    Ok(())
}

/// Set the extraction flag of the rows just exchanged (and of the failed ones), each only if
/// the row still holds the values that were read.
async fn mark_flags(
    ctx: &Ctx,
    plan: &Plan,
    flag: &super::plan::FlagPlan,
    done: &[Vec<Value>],
    failed: &[(Vec<Value>, String)],
) -> Result<(), JobError> {
    let key_cols = plan.key_cols();
    let dialect = ctx.source.dialect();
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
    let text = dialect.mark_row(
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
    ctx.source.exec_many(&text, &rows).await.map_err(|e| {
        JobError::new(
            &plan.name,
            "setting the extraction flag in the source",
            e.to_string(),
            e.is_retriable(),
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_ids_are_deterministic() {
        let a = batch_id("230000-SCJGJ", "t", "{\"key\":[1]}", "{\"key\":[9]}", 9);
        let b = batch_id("230000-SCJGJ", "t", "{\"key\":[1]}", "{\"key\":[9]}", 9);
        let c = batch_id("230000-SCJGJ", "t", "{\"key\":[1]}", "{\"key\":[9]}", 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("230000-SCJGJ-t-"));
    }
}
