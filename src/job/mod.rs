//! One table's exchange cycle. The job owns the order of steps: read a bounded batch after
//! the watermark, classify and map it, deliver it, and only after the exchange acknowledged
//! it, commit the new watermark. Sources and sinks never touch the state store.

pub mod batch;
pub mod plan;
pub mod resync;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, TableSpec};
use crate::db::dialect::{Col, Cond, Select};
use crate::db::{Db, DbError, ErrorClass, ReadRow};
use crate::state::State;
use crate::value::{Value, key_text};
use crate::watermark::{Watermark, time_value};
use batch::{Batch, Remember, Seen};
pub use plan::{Mode, Plan};

/// What every table job shares.
pub struct Ctx {
    pub cfg: Arc<Config>,
    pub source: Arc<Db>,
    pub target: Arc<Db>,
    pub state: Arc<State>,
    pub cancel: CancellationToken,
}

/// A table that could not be exchanged: which, at which step, and why.
#[derive(Clone, Debug, thiserror::Error)]
#[error("table {table}: {step}: {cause}")]
pub struct JobError {
    pub table: String,
    pub step: &'static str,
    pub cause: String,
    /// What kind of failure it was (decides how soon the table is tried again).
    pub class: ErrorClass,
}

impl JobError {
    /// A failure that needs a person (configuration, state store, planning).
    pub fn new(table: &str, step: &'static str, cause: impl Into<String>) -> Self {
        JobError {
            table: table.to_owned(),
            step,
            cause: cause.into(),
            class: ErrorClass::Fatal,
        }
    }

    pub fn db(table: &str, step: &'static str, e: DbError) -> Self {
        JobError {
            table: table.to_owned(),
            step,
            class: e.class(),
            cause: e.to_string(),
        }
    }

    fn state(table: &str, e: crate::state::StateError) -> Self {
        JobError::new(table, "reading the state store", e.to_string())
    }

    /// Whether a later attempt may succeed without anyone changing anything.
    pub fn is_retriable(&self) -> bool {
        matches!(self.class, ErrorClass::Transient | ErrorClass::Unavailable)
    }
}

/// Figures of one cycle.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CycleReport {
    pub read: u64,
    pub sent: u64,
    pub deleted: u64,
    pub rejected: u64,
    pub skipped: u64,
    pub batches: u64,
    pub warnings: Vec<String>,
    /// The cycle stopped early because the agent is shutting down.
    pub stopped: bool,
}

/// Introspect both tables and resolve the table's plan.
pub async fn prepare(
    cfg: &Config,
    source: &Db,
    target: &Db,
    spec: &TableSpec,
) -> Result<Plan, JobError> {
    let n = &spec.name;
    let src = source
        .introspect(&spec.source)
        .await
        .map_err(|e| JobError::db(n, "reading the front-end database's catalog", e))?
        .ok_or_else(|| {
            JobError::new(
                n,
                "checking the tables",
                format!(
                    "source table {} does not exist in the front-end database",
                    spec.source
                ),
            )
        })?;
    let tgt = target
        .introspect(&spec.target)
        .await
        .map_err(|e| JobError::db(n, "reading the exchange database's catalog", e))?
        .ok_or_else(|| {
            JobError::new(
                n,
                "checking the tables",
                format!(
                    "exchange table {} does not exist in the exchange database",
                    spec.target
                ),
            )
        })?;
    Plan::build(spec, &src, &tgt, cfg, target.dialect()).map_err(|p| {
        JobError::new(
            n,
            "checking the configuration against the tables",
            p.join("; "),
        )
    })
}

/// Run one cycle of a table. With `once`, a configured lag is waited out so that every row
/// committed before the call is exchanged.
pub async fn cycle(ctx: &Ctx, plan: &Plan, once: bool) -> Result<CycleReport, JobError> {
    let span = tracing::info_span!("cycle", table = %plan.name, mode = ?plan.mode);
    async {
        let mut report = CycleReport::default();
        match plan.mode {
            Mode::Key => key_cycle(ctx, plan, &mut report).await?,
            Mode::Timestamp | Mode::Control => time_cycle(ctx, plan, once, &mut report).await?,
            Mode::Flag => flag_cycle(ctx, plan, &mut report).await?,
            Mode::Digest => digest_cycle(ctx, plan, &mut report).await?,
        }
        Ok(report)
    }
    .instrument(span)
    .await
}

async fn read(
    ctx: &Ctx,
    plan: &Plan,
    conds: Vec<Cond<'_>>,
    order: &[Col],
) -> Result<(Vec<ReadRow>, bool), JobError> {
    let sql = ctx.source.dialect().select(&Select {
        table: &plan.source,
        columns: &plan.read_cols,
        conds,
        order,
        limit: Some(plan.batch_size),
    });
    ctx.source
        .fetch(&sql, &plan.read_cols, plan.batch_bytes)
        .await
        .map_err(|e| JobError::db(&plan.name, "reading the source", e))
}

/// The position of a row: its change time and key.
fn position(plan: &Plan, values: &[Value]) -> Watermark {
    Watermark {
        ts: plan.ts.map(|i| values[i].clone()),
        key: plan.key.iter().map(|&i| values[i].clone()).collect(),
    }
}

/// `(ts, key...)` of a position, for keyset conditions ordered by time then key.
fn tuple(w: &Watermark) -> Vec<Value> {
    w.ts.iter().cloned().chain(w.key.iter().cloned()).collect()
}

/// First and last positions of a read, and whether more rows may follow.
fn span_of(plan: &Plan, rows: &[ReadRow], capped: bool) -> (Watermark, Watermark, bool) {
    let first = rows
        .first()
        .map(|r| position(plan, &r.values))
        .unwrap_or_default();
    let last = rows
        .last()
        .map(|r| position(plan, &r.values))
        .unwrap_or_default();
    (first, last, capped || rows.len() >= plan.batch_size)
}

async fn key_cycle(ctx: &Ctx, plan: &Plan, report: &mut CycleReport) -> Result<(), JobError> {
    let key_cols = plan.key_cols();
    let mut wm = ctx
        .state
        .watermark(&plan.name)
        .await
        .map_err(|e| JobError::state(&plan.name, e))?
        .filter(|w| w.key.len() == key_cols.len());
    let none = Seen::new();
    loop {
        if ctx.cancel.is_cancelled() {
            report.stopped = true;
            break;
        }
        let conds = match &wm {
            Some(w) => vec![Cond::After(&key_cols, &w.key)],
            None => vec![],
        };
        let (rows, capped) = read(ctx, plan, conds, &key_cols).await?;
        if rows.is_empty() {
            break;
        }
        let (first, last, more) = span_of(plan, &rows, capped);
        let b = Batch {
            rows,
            seen: &none,
            from: Some(first),
            to: Some(last.clone()),
            new_wm: Some(last.clone()),
            remember: Remember::Nothing,
            prune_before: None,
            gone: Vec::new(),
            gone_target: Vec::new(),
            salt: None,
            resync_key: None,
        };
        batch::deliver(ctx, plan, b, report).await?;
        wm = Some(last);
        if !more {
            break;
        }
    }
    Ok(())
}

/// Sleep unless the agent is stopping; false when it is.
async fn pause(ctx: &Ctx, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = ctx.cancel.cancelled() => false,
    }
}

async fn time_cycle(
    ctx: &Ctx,
    plan: &Plan,
    once: bool,
    report: &mut CycleReport,
) -> Result<(), JobError> {
    let (Some(ts_i), Some(window)) = (plan.ts, plan.window.as_ref()) else {
        return Err(JobError::new(
            &plan.name,
            "planning",
            "no change-time column",
        ));
    };
    let ts_col = plan.read_cols[ts_i].clone();
    let tz = &ctx.cfg.agent.tz;
    let fmt = window.format.as_str();
    let mut order = vec![ts_col.clone()];
    order.extend(plan.key_cols());
    let mut wm = ctx
        .state
        .watermark(&plan.name)
        .await
        .map_err(|e| JobError::state(&plan.name, e))?
        .filter(|w| w.ts.is_some() && (w.key.is_empty() || w.key.len() == plan.key.len()))
        .unwrap_or_default();
    let lag = if once && !window.lag.is_zero() {
        if !pause(ctx, window.lag).await {
            report.stopped = true;
            return Ok(());
        }
        Duration::ZERO
    } else {
        window.lag
    };
    let now = ctx
        .source
        .now()
        .await
        .map_err(|e| JobError::db(&plan.name, "reading the source database's time", e))?;
    let upper = time_value(
        now - chrono::Duration::from_std(lag).unwrap_or_default(),
        ts_col.ty,
        tz,
        fmt,
    );
    let now_v = time_value(now, ts_col.ty, tz, fmt);
    let guard = transaction_guard(ctx, plan, now, report)
        .await
        .map(|t| time_value(t, ts_col.ty, tz, fmt));
    // Re-read the lookback window behind the watermark; skip rows already exchanged.
    let lower = wm.ts.as_ref().map(|t| {
        if window.lookback.is_zero() {
            t.clone()
        } else {
            t.minus(window.lookback, fmt).unwrap_or_else(|| t.clone())
        }
    });
    let seen = match &lower {
        Some(l) => ctx
            .state
            .digests(&plan.name, Some(&l.sort_text()))
            .await
            .map_err(|e| JobError::state(&plan.name, e))?,
        None => Seen::new(),
    };
    // Without lookback, continue strictly after the last (time, key); a watermark held back
    // by an open transaction has no key and is re-read from its time on.
    let mut cursor: Option<Vec<Value>> =
        match (&wm.ts, window.lookback.is_zero() && !wm.key.is_empty()) {
            (Some(_), true) => Some(tuple(&wm)),
            _ => None,
        };
    let prune_for = |w: &Watermark| -> Option<String> {
        let t = w.ts.as_ref()?;
        Some(
            t.minus(window.lookback, fmt)
                .unwrap_or_else(|| t.clone())
                .sort_text(),
        )
    };
    loop {
        if ctx.cancel.is_cancelled() {
            report.stopped = true;
            return Ok(());
        }
        let mut conds = vec![Cond::AtMost(&ts_col, &upper)];
        match (&cursor, &lower) {
            (Some(c), _) => conds.push(Cond::After(&order, c)),
            (None, Some(l)) => conds.push(Cond::AtLeast(&ts_col, l)),
            (None, None) => {}
        }
        let (rows, capped) = read(ctx, plan, conds, &order).await?;
        if rows.is_empty() {
            break;
        }
        let (first, last, more) = span_of(plan, &rows, capped);
        let new_wm = wm.clone().max(held_back(last.clone(), guard.as_ref()));
        let prune = prune_for(&new_wm);
        let b = Batch {
            rows,
            seen: &seen,
            from: Some(first),
            to: Some(last.clone()),
            new_wm: (new_wm != wm).then(|| new_wm.clone()),
            remember: prune.clone().map_or(Remember::All, Remember::Since),
            prune_before: prune,
            gone: Vec::new(),
            gone_target: Vec::new(),
            salt: None,
            resync_key: None,
        };
        batch::deliver(ctx, plan, b, report).await?;
        wm = new_wm;
        cursor = Some(tuple(&last));
        if !more {
            break;
        }
    }

    // Rows dated after the database's time: exchanged now, the watermark stays at "now".
    let mut cursor: Option<Vec<Value>> = None;
    let mut future = 0u64;
    let mut example = None;
    loop {
        if ctx.cancel.is_cancelled() {
            report.stopped = true;
            return Ok(());
        }
        let mut conds = vec![Cond::Greater(&ts_col, &now_v)];
        if let Some(c) = &cursor {
            conds.push(Cond::After(&order, c));
        }
        let (rows, capped) = read(ctx, plan, conds, &order).await?;
        if rows.is_empty() {
            break;
        }
        future += rows.len() as u64;
        let (first, last, more) = span_of(plan, &rows, capped);
        example.get_or_insert_with(|| first.clone());
        let b = Batch {
            rows,
            seen: &seen,
            from: Some(first),
            to: Some(last.clone()),
            new_wm: None,
            remember: Remember::All,
            prune_before: None,
            gone: Vec::new(),
            gone_target: Vec::new(),
            salt: None,
            resync_key: None,
        };
        batch::deliver(ctx, plan, b, report).await?;
        cursor = Some(tuple(&last));
        if !more {
            break;
        }
    }
    if let Some(ex) = example {
        let w = format!(
            "{future} row(s) of {} have {} after the database's time {} (e.g. {ex}); they were \
             exchanged and the watermark was kept at the database's time",
            plan.source,
            ts_col.name,
            now_v.to_text()
        );
        tracing::warn!(table = %plan.name, "{w}");
        report.warnings.push(w);
    }
    null_times(ctx, plan, &ts_col, report).await
}

/// A watermark never passes the start of a transaction still open on the source: the rows it
/// commits later may carry an earlier time than rows already exchanged.
fn held_back(pos: Watermark, guard: Option<&Value>) -> Watermark {
    match (guard, &pos.ts) {
        (Some(g), Some(t)) if crate::watermark::cmp_values(t, g).is_ge() => Watermark {
            ts: Some(g.clone()),
            key: Vec::new(),
        },
        _ => pos,
    }
}

/// The instant just before the oldest transaction still open on the source, when one is open
/// and younger than `transaction_guard`. Older ones are reported and left to the lookback.
async fn transaction_guard(
    ctx: &Ctx,
    plan: &Plan,
    now: chrono::DateTime<chrono::Utc>,
    report: &mut CycleReport,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let limit = ctx.cfg.source.transaction_guard;
    if limit.is_zero() {
        return None;
    }
    let (oldest, note) = match ctx.source.oldest_transaction().await {
        Ok(r) => r,
        Err(e) => {
            let w = format!(
                "cannot look for open transactions on the source ({e}); late commits rely on \
                 the lookback window alone"
            );
            tracing::warn!(table = %plan.name, "{w}");
            report.warnings.push(w);
            return None;
        }
    };
    if let Some(n) = note {
        report.warnings.push(n);
    }
    let oldest = oldest?;
    let age = (now - oldest).to_std().unwrap_or_default();
    if age > limit {
        let w = format!(
            "a transaction open on the source since {} is older than transaction_guard ({}); \
             rows it commits later are caught only if they fall in the lookback window",
            oldest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            humantime::format_duration(limit)
        );
        tracing::warn!(table = %plan.name, "{w}");
        report.warnings.push(w);
        return None;
    }
    Some(oldest - chrono::Duration::microseconds(1))
}

/// Report rows whose change time is NULL: they cannot be exchanged by time.
async fn null_times(
    ctx: &Ctx,
    plan: &Plan,
    ts_col: &Col,
    report: &mut CycleReport,
) -> Result<(), JobError> {
    const SHOWN: usize = 10;
    let key_cols = plan.key_cols();
    let sql = ctx.source.dialect().select(&Select {
        table: &plan.source,
        columns: &key_cols,
        conds: vec![Cond::IsNull(ts_col)],
        order: &key_cols,
        limit: Some(SHOWN + 1),
    });
    let (rows, _) = ctx
        .source
        .fetch(&sql, &key_cols, usize::MAX)
        .await
        .map_err(|e| JobError::db(&plan.name, "looking for rows without a change time", e))?;
    if rows.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = rows
        .iter()
        .take(SHOWN)
        .map(|r| key_text(&r.values.iter().collect::<Vec<_>>()))
        .collect();
    let more = if rows.len() > SHOWN { " and more" } else { "" };
    let w = format!(
        "rows of {} with {} NULL are not exchanged until it is set; keys: {}{more}",
        plan.source,
        ts_col.name,
        keys.join(", ")
    );
    tracing::warn!(table = %plan.name, "{w}");
    report.warnings.push(w);
    Ok(())
}

async fn flag_cycle(ctx: &Ctx, plan: &Plan, report: &mut CycleReport) -> Result<(), JobError> {
    let Some(flag) = &plan.flag else {
        return Err(JobError::new(&plan.name, "planning", "no flag column"));
    };
    let key_cols = plan.key_cols();
    let none = Seen::new();
    let mut cursor: Option<Vec<Value>> = None;
    loop {
        if ctx.cancel.is_cancelled() {
            report.stopped = true;
            break;
        }
        let mut conds = vec![Cond::Equals(&flag.col, &flag.pending)];
        if let Some(c) = &cursor {
            conds.push(Cond::After(&key_cols, c));
        }
        let (rows, capped) = read(ctx, plan, conds, &key_cols).await?;
        if rows.is_empty() {
            break;
        }
        let (first, last, more) = span_of(plan, &rows, capped);
        let b = Batch {
            rows,
            seen: &none,
            from: Some(first),
            to: Some(last.clone()),
            new_wm: None,
            remember: Remember::Nothing,
            prune_before: None,
            gone: Vec::new(),
            gone_target: Vec::new(),
            salt: None,
            resync_key: None,
        };
        batch::deliver(ctx, plan, b, report).await?;
        cursor = Some(last.key);
        if !more {
            break;
        }
    }
    Ok(())
}

async fn digest_cycle(ctx: &Ctx, plan: &Plan, report: &mut CycleReport) -> Result<(), JobError> {
    let key_cols = plan.key_cols();
    let stored = ctx
        .state
        .digests(&plan.name, None)
        .await
        .map_err(|e| JobError::state(&plan.name, e))?;
    let mut present: HashSet<String> = HashSet::with_capacity(stored.len());
    let mut cursor: Option<Vec<Value>> = None;
    loop {
        if ctx.cancel.is_cancelled() {
            report.stopped = true;
            return Ok(());
        }
        let conds = match &cursor {
            Some(c) => vec![Cond::After(&key_cols, c)],
            None => vec![],
        };
        let (rows, capped) = read(ctx, plan, conds, &key_cols).await?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let key: Vec<&Value> = plan.key.iter().map(|&i| &r.values[i]).collect();
            present.insert(key_text(&key));
        }
        let (first, last, more) = span_of(plan, &rows, capped);
        let b = Batch {
            rows,
            seen: &stored,
            from: Some(first),
            to: Some(last.clone()),
            new_wm: None,
            remember: Remember::All,
            prune_before: None,
            gone: Vec::new(),
            gone_target: Vec::new(),
            salt: None,
            resync_key: None,
        };
        batch::deliver(ctx, plan, b, report).await?;
        cursor = Some(last.key);
        if !more {
            break;
        }
    }
    // Keys remembered from earlier runs that the source no longer has were deleted there.
    let mut gone: Vec<(String, Vec<Value>)> = Vec::new();
    for (rkey, (_, kvals)) in &stored {
        if present.contains(rkey) || rkey.starts_with("NULL:") {
            continue;
        }
        let key: Vec<Value> = serde_json::from_str(kvals).map_err(|e| {
            JobError::new(
                &plan.name,
                "reading the state store",
                format!("key of {rkey}: {e}"),
            )
        })?;
        gone.push((rkey.clone(), key));
    }
    for chunk in gone.chunks(plan.batch_size) {
        let b = Batch {
            rows: Vec::new(),
            seen: &stored,
            from: None,
            to: None,
            new_wm: None,
            remember: Remember::Nothing,
            prune_before: None,
            gone: chunk.to_vec(),
            gone_target: Vec::new(),
            salt: None,
            resync_key: None,
        };
        batch::deliver(ctx, plan, b, report).await?;
    }
    Ok(())
}
