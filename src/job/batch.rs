//! One batch: classify the rows read, map them, deliver them, and only after the exchange
//! acknowledged, commit the watermark, the ledger entry, the digests and the rejects.
//!
//! A row the exchange refuses (a constraint, a value out of range) does not block its
//! batch: the batch is split until the refused rows are isolated; they are quarantined with
//! the database's message and everything else is delivered.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::plan::{FlagPlan, Mode, Plan};
use super::{Ctx, CycleReport, JobError};
use crate::config::DeleteMode;
use crate::db::dialect::Upsert;
use crate::db::{DbError, ErrorClass, ReadRow, Refused, Stage, Tuples, Turn, WriteBatch};
use crate::ident::Col;
use crate::mapping::{Op, RowCtx};
use crate::state::{Commit, DigestEntry, LedgerEntry, Reject};
use crate::value::{Value, key_text, row_digest};
use crate::watermark::Watermark;

mod finish;
mod launch;
mod sort;
pub use finish::finish;
pub use launch::launch;
#[cfg(test)]
use sort::last_of_each_key;
use sort::{Sorted, sort};

/// Digests of rows already handled, by record key: skip a row read again unchanged.
pub type Seen = HashMap<String, ([u8; 16], String)>;

/// Which handled rows to remember by digest.
pub enum Remember {
    Nothing,
    All,
    /// Rows whose change time is this one or later.
    Since(Value),
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
    /// Rows gone from the source (digest mode): record key and source key values.
    pub gone: Vec<(String, Vec<Value>)>,
    /// Rows at the exchange whose key the source no longer has (resync): record key and the
    /// exchange's key values.
    pub gone_target: Vec<(String, Vec<Value>)>,
    /// Makes the batch ids of a full resync new ones.
    pub salt: Option<String>,
    /// A full resync's chunk: the key (JSON) committed as its progress.
    pub resync_key: Option<String>,
    /// Why open rejects among these rows are sent again (their history says it).
    pub why: &'static str,
}

/// How a quarantined row comes to be sent again, normally.
pub const CHANGED: &str = "re-sent after it changed at the source";

impl<'a> Batch<'a> {
    /// Rows read, with nothing else to do: no watermark, no digests, nothing gone.
    pub fn of(rows: Vec<ReadRow>, seen: &'a Seen) -> Self {
        Batch {
            rows,
            seen,
            from: None,
            to: None,
            new_wm: None,
            remember: Remember::Nothing,
            prune_before: None,
            gone: Vec::new(),
            gone_target: Vec::new(),
            salt: None,
            resync_key: None,
            why: CHANGED,
        }
    }
}

enum Pending {
    /// The values, the operation, and the row's tuple when it was read as one.
    Upsert(Vec<Value>, Op, Option<Bytes>),
    Delete(Vec<Value>),
    Gone(Vec<Value>),
    GoneTarget(Vec<Value>),
}

/// A row on its way out: the exchange values, its record key, and its source values
/// (none for a key gone from a digest table). The values an upserted row's exchange values
/// took over unconverted are moved out of `src` (which is left empty when that was all of
/// them); `Mapping::restore` puts them back.
struct Out {
    values: Vec<Value>,
    rkey: String,
    src: Option<Vec<Value>>,
    /// The row as its binary `COPY` tuple, when it was read as one ([`ReadRow::tuple`]).
    tuple: Option<Bytes>,
}

/// A reject record of a row read (its key, values and every reason).
pub(crate) fn reject(
    plan: &Plan,
    rkey: &str,
    values: &[Value],
    origin: &'static str,
    reasons: Vec<String>,
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
        reasons,
        row_json: serde_json::Value::Object(row).to_string(),
        digest: Some(row_digest(values)),
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

/// Deliver one batch: check and map it, write it, and commit after the acknowledgement.
pub async fn deliver(
    ctx: &Ctx,
    plan: &Plan,
    b: Batch<'_>,
    report: &mut CycleReport,
) -> Result<(), JobError> {
    let p = prepare(ctx, plan, b, report).await?;
    finish(ctx, plan, launch(ctx, plan, p, None), report).await
}

/// A batch checked and mapped, not yet written.
pub struct Prepared {
    unconditional: bool,
    rejects: Vec<Reject>,
    digests: Vec<DigestEntry>,
    flag_failed: Vec<(Vec<Value>, String)>,
    newest: Option<DateTime<Utc>>,
    new_wm: Option<Watermark>,
    prune_before: Option<String>,
    resync_key: Option<String>,
    why: &'static str,
    /// The batch id, and the rows to write (exchange values taken out of `ups`).
    send: Option<Send>,
    started: std::time::Instant,
}

struct Send {
    id: String,
    ups: Vec<Out>,
    dels: Vec<Out>,
    rows: Vec<Vec<Value>>,
    del_rows: Vec<Vec<Value>>,
    /// Empty, or the tuple of every row of `rows`, written instead of its values.
    tuples: Tuples,
}

/// What a write task gives back: the outcome, the upserted rows (whose values complete their
/// source rows again where needed), the deletes (a refused one is quarantined with its
/// key values), and the upserted rows' tuples (a refused row's values are read from its own).
type Written = (
    Result<Vec<Refused>, DbError>,
    Vec<Vec<Value>>,
    Vec<Vec<Value>>,
    Tuples,
);

/// A batch whose write runs in a task of its own, so that the next batch can be checked
/// and mapped meanwhile. Dropped before [`finish`], the write is stopped (its transaction
/// never commits; the batch is sent again later under the same id).
pub struct InFlight {
    p: Prepared,
    write: Option<(tokio::task::JoinHandle<Written>, super::AbortOnDrop)>,
    writing: std::time::Instant,
    go: Option<tokio::sync::oneshot::Sender<()>>,
    /// Where the write stands at the exchange: told as soon as it committed (before the
    /// batch is committed in the state store) or failed, and to the batch after it when all
    /// that is left is the commit.
    written: tokio::sync::watch::Receiver<Stage>,
}

/// Classify and map the rows read, and record the batch as being sent.
pub async fn prepare(
    ctx: &Ctx,
    plan: &Plan,
    mut b: Batch<'_>,
    report: &mut CycleReport,
) -> Result<Prepared, JobError> {
    let tz = &ctx.cfg.agent.tz;
    // Keys gone from the source are deleted whatever the stored version: a batch carries
    // either those or rows read, never both.
    let unconditional = !b.gone.is_empty() || !b.gone_target.is_empty();
    debug_assert!(!unconditional || b.rows.is_empty());
    let tombstones = unconditional && plan.deletes == DeleteMode::Tombstone;
    let started = std::time::Instant::now();
    let Sorted {
        pending,
        mut rejects,
        digests,
        mut flag_failed,
        newest,
    } = sort(ctx, plan, &mut b, report);
    let st = |e: crate::state::StateError| {
        JobError::new(&plan.name, "recording the batch", e.to_string())
    };
    let wm_from = b.from.as_ref().map(Watermark::to_json);
    let wm_to = b.to.as_ref().map(Watermark::to_json);
    let mut send = None;
    if !pending.is_empty() {
        let id = batch_id(
            &ctx.cfg.agent.id,
            &plan.name,
            &format!(
                "{}{}",
                b.salt.as_deref().unwrap_or(""),
                wm_from.as_deref().unwrap_or("")
            ),
            wm_to.as_deref().unwrap_or(""),
            pending.len(),
        );
        // A batch sent again (after a crash) keeps its batch number.
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
        let (mut ups, mut dels) = (Vec::with_capacity(pending.len()), Vec::new());
        for (rkey, p) in pending {
            let (mapped, src, is_delete, tuple) = match p {
                // A row read as its tuple goes as it came: nothing to map.
                Pending::Upsert(v, _, tuple @ Some(_)) => (Ok(v), Some(Vec::new()), false, tuple),
                Pending::Upsert(mut v, op, tuple) => {
                    let mapped = plan.mapping.row(&mut v, op, &rc);
                    // Everything moved over: the row is held once, not twice.
                    if mapped.is_ok() && v.iter().all(Value::is_null) {
                        v = Vec::new();
                    }
                    (mapped, Some(v), false, tuple)
                }
                Pending::Delete(v) => (plan.mapping.delete_params(&v, tz), Some(v), true, None),
                Pending::Gone(k) => match plan.mapping.delete_params_from_key(&k, tz) {
                    Ok(d) => (Ok(d), None, true, None),
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
                    true,
                    None,
                ),
                Pending::GoneTarget(k) => (Ok(k), None, true, None),
            };
            match (mapped, src) {
                (Ok(values), src) => {
                    let out = Out {
                        values,
                        rkey,
                        src,
                        tuple,
                    };
                    if is_delete {
                        dels.push(out)
                    } else {
                        ups.push(out)
                    }
                }
                (Err(reason), Some(mut v)) => {
                    if let Some(t) = &tuple {
                        crate::db::complete(&mut v, t, &plan.read_cols);
                    }
                    if plan.flag.is_some() {
                        flag_failed.push((v.clone(), reason.clone()));
                    }
                    rejects.push(reject(plan, &rkey, &v, "map", vec![reason]));
                }
                (Err(_), None) => {}
            }
        }
        if !ups.is_empty() || !dels.is_empty() {
            let entry = LedgerEntry {
                id: id.clone(),
                table: plan.name.clone(),
                cd_batch,
                wm_from: wm_from.clone(),
                wm_to: wm_to.clone(),
                rows: ups.len() as u64,
                deletes: dels.len() as u64,
                rejected: rejects.len() as u64,
            };
            ctx.state
                .batch_started(&entry, Utc::now())
                .await
                .map_err(st)?;
            // The source values stay with each row; the exchange values go to the write (and
            // come back with its outcome).
            // Rows read as tuples go as they came, when every row was (always, for a table
            // read that way); otherwise every row is encoded from its values, made whole.
            // They are put one after another in one buffer, and the bytes each was read into
            // are let go.
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
            let del_rows: Vec<Vec<Value>> = dels
                .iter_mut()
                .map(|o| std::mem::take(&mut o.values))
                .collect();
            send = Some(Send {
                id,
                ups,
                dels,
                rows,
                del_rows,
                tuples,
            });
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

#[cfg(test)]
mod tests;
