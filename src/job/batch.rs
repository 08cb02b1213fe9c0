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
use crate::db::dialect::{Col, Upsert};
use crate::db::{DbError, ErrorClass, ReadRow, Refused, Stage, Tuples, Turn, WriteBatch};
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

/// Decode the values of a row read as a tuple that were left NULL (once).
fn fill(values: &mut [Value], tuple: Option<&Bytes>, whole: &mut bool, plan: &Plan) {
    if !*whole {
        if let Some(t) = tuple {
            crate::db::complete(values, t, &plan.read_cols);
        }
        *whole = true;
    }
}

/// What the rows of a read turned into before anything is written.
#[derive(Default)]
struct Sorted {
    pending: Vec<(String, Pending)>,
    rejects: Vec<Reject>,
    digests: Vec<DigestEntry>,
    flag_failed: Vec<(Vec<Value>, String)>,
    newest: Option<DateTime<Utc>>,
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

/// Classify the rows read: skip the unchanged, quarantine the unreadable, decide each
/// row's operation; a key read twice keeps its last version.
fn sort(ctx: &Ctx, plan: &Plan, b: &mut Batch<'_>, report: &mut CycleReport) -> Sorted {
    let tz = &ctx.cfg.agent.tz;
    let fmt = plan.window.as_ref().map_or("", |w| w.format.as_str());
    let mut out = Sorted {
        pending: Vec::with_capacity(b.rows.len()),
        ..Sorted::default()
    };
    // The newest change time: compared as values, made an instant once (text times, whose
    // order need not be their text's, each).
    let mut newest_value: Option<Value> = None;
    metrics::counter!(crate::metrics::ROWS_READ, "table" => plan.name.clone())
        .increment(b.rows.len() as u64);
    for row in std::mem::take(&mut b.rows) {
        report.read += 1;
        let ReadRow {
            mut values,
            bad,
            tuple,
        } = row;
        // A row read as its tuple holds only the values the agent looks at; the others are
        // decoded where the whole row is needed (its digest, a reject).
        let mut whole = tuple.is_none();
        let key_null = plan.key.iter().any(|&i| values[i].is_null());
        let remember = match &b.remember {
            Remember::Nothing => false,
            Remember::All => true,
            Remember::Since(since) => plan
                .ts
                .is_some_and(|i| crate::watermark::cmp_values(&values[i], since).is_ge()),
        };
        if key_null || remember {
            fill(&mut values, tuple.as_ref(), &mut whole, plan);
        }
        let (rkey, mut digest, entry) = {
            // A one-column key (the usual) without a vector of its own for every row.
            let (one, many): ([&Value; 1], Vec<&Value>) = match plan.key.as_slice() {
                [k] => ([&values[*k]], Vec::new()),
                keys => ([&Value::Null], keys.iter().map(|&i| &values[i]).collect()),
            };
            let key: &[&Value] = if plan.key.len() == 1 { &one } else { &many };
            // The digest only where it is used: a NULL key, a row remembered or seen before.
            let digest = (key_null || remember).then(|| row_digest(&values));
            let rkey = match &digest {
                Some(d) if key_null => format!("NULL:{}", hex::encode(&d[..8])),
                _ => key_text(key),
            };
            let entry = remember.then(|| {
                (
                    plan.ts.map(|i| values[i].sort_text()),
                    serde_json::to_string(&key).unwrap_or_default(),
                )
            });
            (rkey, digest, entry)
        };
        if let Some((d, _)) = b.seen.get(&rkey) {
            if digest.is_none() {
                fill(&mut values, tuple.as_ref(), &mut whole, plan);
                digest = Some(row_digest(&values));
            }
            if digest.as_ref() == Some(d) {
                report.skipped += 1;
                continue;
            }
        }
        if let Some((ts, kvals)) = entry {
            out.digests.push(DigestEntry {
                rkey: rkey.clone(),
                digest: digest.unwrap_or_else(|| row_digest(&values)),
                ts,
                kvals,
            });
        }
        let mut problem = match (&bad, key_null) {
            (Some(bad), _) => Some(("read", bad.clone())),
            (None, true) => {
                let names: Vec<String> =
                    plan.key_cols().iter().map(|c| c.name.to_string()).collect();
                Some(("read", format!("key column {} is NULL", names.join(", "))))
            }
            _ => None,
        };
        let op = match plan.mode {
            Mode::Control => {
                let v = plan.op.map_or(&Value::Null, |i| &values[i]);
                Op::parse(v).unwrap_or_else(|| {
                    let col = plan
                        .op
                        .map(|i| plan.read_cols[i].name.to_string())
                        .unwrap_or_default();
                    problem.get_or_insert_with(|| {
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
        // Unreadable rows and unknown operations first; then the quality rules, every one.
        let (origin, reasons) = match problem {
            Some((origin, reason)) => (origin, vec![reason]),
            None => ("rule", crate::validate::failures(&plan.rules, &values, tz)),
        };
        if !reasons.is_empty() {
            fill(&mut values, tuple.as_ref(), &mut whole, plan);
            if plan.flag.is_some() && !key_null {
                out.flag_failed.push((values.clone(), reasons.join("; ")));
            }
            out.rejects
                .push(reject(plan, &rkey, &values, origin, reasons));
            continue;
        }
        match plan.ts.map(|i| &values[i]) {
            Some(Value::Text(_)) | None => {
                if let Some(t) = plan.ts.and_then(|i| values[i].instant(tz, fmt)) {
                    out.newest = Some(out.newest.map_or(t, |n| n.max(t)));
                }
            }
            Some(v) => {
                if newest_value
                    .as_ref()
                    .is_none_or(|n| crate::watermark::cmp_values(v, n).is_gt())
                    && !v.is_null()
                {
                    newest_value = Some(v.clone());
                }
            }
        }
        let p = if op == Op::Delete && plan.deletes == DeleteMode::Delete {
            Pending::Delete(values)
        } else {
            Pending::Upsert(values, op, tuple)
        };
        out.pending.push((rkey, p));
    }
    if let Some(t) = newest_value.and_then(|v| v.instant(tz, fmt)) {
        out.newest = Some(out.newest.map_or(t, |n| n.max(t)));
    }
    for (rkey, key) in std::mem::take(&mut b.gone) {
        out.pending.push((rkey, Pending::Gone(key)));
    }
    for (rkey, key) in std::mem::take(&mut b.gone_target) {
        out.pending.push((rkey, Pending::GoneTarget(key)));
    }
    // One read returns a key the source holds unique at most once.
    if !plan.unique_key || !b.gone.is_empty() || !b.gone_target.is_empty() {
        last_of_each_key(&mut out.pending);
    }
    out
}

/// Keep only the last of the entries that share a record key (a key read twice keeps its
/// last version).
fn last_of_each_key(pending: &mut Vec<(String, Pending)>) {
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(pending.len());
    for (i, (rkey, _)) in pending.iter().enumerate() {
        last.insert(rkey.as_str(), i);
    }
    if last.len() == pending.len() {
        return;
    }
    let keep: Vec<bool> = pending
        .iter()
        .enumerate()
        .map(|(i, (rkey, _))| last.get(rkey.as_str()) == Some(&i))
        .collect();
    let mut flags = keep.into_iter();
    pending.retain(|_| flags.next().unwrap_or(true));
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
        let (mut ups, mut dels) = (Vec::new(), Vec::new());
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
        let guard = super::AbortOnDrop(task.abort_handle());
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
        for (i, (o, v)) in ups.iter_mut().zip(up_rows).enumerate() {
            if (plan.flag.is_some() || refused_ups.contains_key(&i))
                && let Some(src) = &mut o.src
            {
                plan.mapping.restore(src, plan.read_cols.len(), &v);
                if let Some(t) = tuples.get(i) {
                    crate::db::complete(src, t, &plan.read_cols);
                }
            }
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

    if let Some(flag) = &plan.flag {
        mark_flags(ctx, plan, flag, &flag_done, &flag_failed).await?;
    }
    if batch.is_none()
        && rejects.is_empty()
        && digests.is_empty()
        && dropped.is_empty()
        && new_wm.is_none()
    {
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

/// How much longer than the exchange's own statement timeout the agent waits for an answer.
const STATEMENT_GRACE: Duration = Duration::from_secs(30);

/// Everything a write needs, owned, so that it can run in a task of its own.
struct OwnedWrite {
    target: std::sync::Arc<crate::db::Db>,
    name: String,
    limit: Duration,
    table: crate::db::ident::TableName,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_read_twice_keeps_its_last_version() {
        let up = |k: &str, v: i64| {
            (
                k.to_string(),
                Pending::Upsert(vec![Value::Int(v)], Op::Update, None),
            )
        };
        let mut pending = vec![up("1", 1), up("2", 2), up("1", 3), up("3", 4), up("2", 5)];
        last_of_each_key(&mut pending);
        let got: Vec<(String, i64)> = pending
            .iter()
            .map(|(k, p)| match p {
                Pending::Upsert(v, _, _) if let Some(Value::Int(i)) = v.first() => (k.clone(), *i),
                _ => (k.clone(), -1),
            })
            .collect();
        assert_eq!(got, vec![("1".into(), 3), ("3".into(), 4), ("2".into(), 5)]);
    }

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
