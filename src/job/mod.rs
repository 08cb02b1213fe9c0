//! One table's exchange cycle. The job owns the order of steps: read a bounded batch after
//! the watermark, classify and map it, deliver it, and only after the exchange acknowledged
//! it, commit the new watermark. Sources and sinks never touch the state store.

pub mod batch;
mod deliver;
mod error;
pub mod export;
mod notice;
pub mod plan;
mod pull;
mod quiet;
mod resubmit;
pub mod resync;
mod time;

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use tracing::Instrument;

use crate::config::{Config, TableSpec};
pub use crate::ctx::Ctx;
use crate::ctx::Ends;
use crate::db::dialect::{Cond, Select};
use crate::db::{Db, DbError, ReadRow};
use crate::ident::Col;
use crate::value::{Value, key_text};
use crate::watermark::Watermark;
use batch::{Batch, Gone, Remember, Removals, Rows, Seen};
use deliver::{AbortOnDrop, deliver_reading, settle};
pub use error::{Cause, JobError};
pub use plan::{Mode, Plan};
pub use resubmit::{Resubmitted, resubmit};

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
    /// Rows sent although a `severity = "warn"` rule found a problem, and the first findings.
    pub warned: u64,
    pub findings: Vec<String>,
    /// The cycle stopped early because the agent is shutting down.
    pub stopped: bool,
}

/// The words of a cycle's warning when more of its rows were rejected than `[agent]
/// reject_alert` allows: the alerts find the warning by them.
pub const REJECT_RATE_ABOVE: &str = "more than reject_alert";

/// Look at both tables and resolve the table's plan, reading it from and writing it to
/// `ends`.
pub async fn prepare(cfg: &Config, ends: Ends, spec: &TableSpec) -> Result<Plan, JobError> {
    let n = &spec.name;
    let (read, sink) = (&ends.read, &ends.sink);
    // Both catalogs are read at once: each query waits on its own side.
    // A table pulled from an endpoint has the columns of the table it fills.
    let source = if spec.pull.is_some() {
        &spec.target
    } else {
        &spec.source
    };
    let (src, tgt) = tokio::join!(read.introspect(source), sink.describe(&spec.target));
    let src = src
        .map_err(|e| JobError::db(n, "reading the source's catalog", e))?
        .ok_or_else(|| {
            JobError::new(
                n,
                "checking the tables",
                format!(
                    "source table {} does not exist in the {}",
                    source, ends.read_place
                ),
            )
        })?;
    let caps = sink.capabilities();
    let tgt = match tgt.map_err(|e| JobError::sink(n, "reading the target's catalog", e))? {
        None if !caps.catalog => Some(plan::uncatalogued_target(spec, &src)),
        t => t,
    };
    let tgt = tgt.ok_or_else(|| {
        JobError::new(
            n,
            "checking the tables",
            format!(
                "exchange table {} does not exist in the {}",
                spec.target,
                sink.place()
            ),
        )
    })?;
    let source_dialect = read.dialect();
    let mut plan = Plan::build(spec, &src, &tgt, cfg, ends.clone()).map_err(|p| {
        JobError::new(
            n,
            "checking the configuration against the tables",
            p.join("; "),
        )
    })?;
    plan.mapping
        .nul_free_source(source_dialect == crate::db::dialect::Dialect::Postgres);
    plan.pass_through(source_dialect, &caps);
    load_code_sets(&ends.codes, &mut plan).await?;
    load_translations(&ends, &mut plan).await?;
    plan.pull = spec.pull.clone();
    Ok(plan)
}

/// Read the code sets that live in tables of the front-end database.
async fn load_code_sets(source: &Db, plan: &mut Plan) -> Result<(), JobError> {
    use crate::validate::{Check, Codes};
    for rule in &mut plan.rules {
        let Check::CodeSet(Codes::Table { table, column }) = &rule.check else {
            continue;
        };
        let missing = |what: String| {
            JobError::new(
                &plan.name,
                "reading a code set",
                format!("rule {}: {what}", rule.id),
            )
        };
        let schema = source
            .introspect(table)
            .await
            .map_err(|e| JobError::db(&plan.name, "reading a code set", e))?
            .ok_or_else(|| {
                missing(format!(
                    "code table {table} does not exist in the front-end database"
                ))
            })?;
        let col = [schema
            .column(column)
            .cloned()
            .ok_or_else(|| missing(format!("code table {table} has no column `{column}`")))?];
        let sql = source.dialect().select(&Select {
            table,
            columns: &col,
            conds: Vec::new(),
            order: &[],
            limit: None,
        });
        let (rows, _) = source
            .fetch(&sql, &col, usize::MAX)
            .await
            .map_err(|e| JobError::db(&plan.name, "reading a code set", e))?;
        let codes = rows
            .iter()
            .filter_map(|r| r.values.first())
            .filter(|v| !v.is_null())
            .map(|v| v.to_text().trim().to_owned())
            .collect();
        rule.check = Check::CodeSet(Codes::Values(codes));
    }
    Ok(())
}

/// Read the translations that live in tables of the front-end or the exchange database.
async fn load_translations(ends: &Ends, plan: &mut Plan) -> Result<(), JobError> {
    use crate::translate::Pairs;
    const DOING: &str = "reading a translation";
    for t in &mut plan.translate {
        let Pairs::Table {
            exchange,
            table,
            from,
            to,
        } = &t.pairs
        else {
            continue;
        };
        let (db, place) = match (exchange, &ends.exchange) {
            (false, _) => (&ends.codes, "front-end database"),
            (true, Some(db)) => (db, "exchange database"),
            (true, None) => {
                return Err(JobError::new(
                    &plan.name,
                    DOING,
                    format!("translate {}: the exchange is not a database", t.column),
                ));
            }
        };
        let missing = |what: String| {
            JobError::new(&plan.name, DOING, format!("translate {}: {what}", t.column))
        };
        let schema = db
            .introspect(table)
            .await
            .map_err(|e| JobError::db(&plan.name, DOING, e))?
            .ok_or_else(|| missing(format!("table {table} does not exist in the {place}")))?;
        let cols = [from, to]
            .iter()
            .map(|c| {
                schema
                    .column(c)
                    .cloned()
                    .ok_or_else(|| missing(format!("table {table} has no column `{c}`")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sql = db.dialect().select(&Select {
            table,
            columns: &cols,
            conds: Vec::new(),
            order: &[],
            limit: None,
        });
        let (rows, _) = db
            .fetch(&sql, &cols, usize::MAX)
            .await
            .map_err(|e| JobError::db(&plan.name, DOING, e))?;
        let pairs = rows
            .iter()
            .filter_map(|r| match (r.values.first(), r.values.get(1)) {
                (Some(a), Some(b)) if !a.is_null() => {
                    Some((a.to_text().trim().to_owned(), b.to_text().trim().to_owned()))
                }
                _ => None,
            })
            .collect();
        t.pairs = Pairs::Values(pairs);
    }
    Ok(())
}

/// Run one cycle of a table. With `once`, a configured lag is waited out so that every row
/// committed before the call is exchanged.
pub async fn cycle(ctx: &Ctx, plan: &Plan, once: bool) -> Result<CycleReport, JobError> {
    let span = tracing::info_span!(
        "cycle",
        table = %plan.name,
        mode = ?plan.mode,
        rows = tracing::field::Empty
    );
    async {
        let mut report = CycleReport::default();
        match plan.mode {
            _ if plan.pull.is_some() => pull::cycle(ctx, plan, &mut report).await?,
            Mode::Key => key_cycle(ctx, plan, &mut report).await?,
            Mode::Timestamp | Mode::Control => time::cycle(ctx, plan, once, &mut report).await?,
            Mode::Flag => flag_cycle(ctx, plan, &mut report).await?,
            Mode::Digest => digest_cycle(ctx, plan, &mut report).await?,
        }
        tracing::Span::current().record("rows", report.sent);
        let considered = report.sent + report.rejected;
        let share = report.rejected as f64 / considered.max(1) as f64;
        if report.rejected > 0 && share > ctx.cfg.agent.reject_alert {
            let w = format!(
                "{} of {} rows ({:.0}%) were rejected in this cycle, {REJECT_RATE_ABOVE} ({:.0}%); \
                 see `frontdb-agent rejects list --table {}`",
                report.rejected,
                considered,
                share * 100.0,
                ctx.cfg.agent.reject_alert * 100.0,
                plan.name
            );
            tracing::warn!(table = %plan.name, "{w}");
            report.warnings.push(w);
        }
        if report.warned > 0 {
            report.warnings.push(format!(
                "{} row(s) were sent with findings of warn rules (the first: {})",
                report.warned,
                report.findings.join("; ")
            ));
        }
        Ok(report)
    }
    .instrument(span)
    .await
}

pub(super) async fn read(
    plan: &Plan,
    conds: Vec<Cond<'_>>,
    order: &[Col],
) -> Result<(Vec<ReadRow>, bool), JobError> {
    let sql = read_sql(plan, conds, order);
    let tuples = plan.tuples.as_deref().map(|d| (d, plan.batch_size));
    fetch(
        &plan.ends.read,
        &sql,
        &plan.read_cols,
        plan.batch_bytes,
        tuples,
    )
    .await
    .map_err(|e| JobError::db(&plan.name, "reading the source", e))
}

/// Read a batch of a table's rows (`cols`, at most `max_bytes`): as tuples decoding the
/// columns marked in `tuples` (with the batch size), when the table passes its rows on as
/// they are.
pub(super) async fn fetch(
    source: &Db,
    sql: &crate::db::dialect::Sql,
    cols: &[Col],
    max_bytes: usize,
    tuples: Option<(&[bool], usize)>,
) -> Result<(Vec<ReadRow>, bool), DbError> {
    match tuples {
        Some((decode, n)) => source.fetch_tuples(sql, cols, max_bytes, decode, n).await,
        None => source.fetch(sql, cols, max_bytes).await,
    }
}

/// Where a table is read and where it is written, as its direction and the exchange allow.
pub fn ends(ctx: &Ctx, spec: &TableSpec) -> Result<Ends, JobError> {
    Ends::of(spec, &ctx.cfg, &ctx.sides)
        .map_err(|m| JobError::new(&spec.name, "choosing where it is read", m))
}

fn read_sql(plan: &Plan, conds: Vec<Cond<'_>>, order: &[Col]) -> crate::db::dialect::Sql {
    plan.ends.read.dialect().select(&Select {
        table: &plan.source,
        columns: &plan.read_cols,
        conds: plan.scoped(conds),
        order,
        limit: Some(plan.batch_size),
    })
}

/// The rows of one select as a stream that the cycle takes batch after batch, where the
/// source streams a select across batches (PostgreSQL): one select for the whole cycle, not
/// one per batch. `None` where every batch is a select of its own.
pub(super) fn open(plan: &Plan, conds: &[Cond<'_>], order: &[Col]) -> Option<crate::db::RowStream> {
    let sql = plan.ends.read.dialect().select(&Select {
        table: &plan.source,
        columns: &plan.read_cols,
        conds: plan.scoped(conds.to_vec()),
        order,
        limit: None,
    });
    plan.ends
        .read
        .stream(&sql, &plan.read_cols, plan.tuples.as_deref())
}

/// The first batch of a cycle's rows: from its stream when it has one, else by a select of
/// its own.
pub(super) async fn first(
    plan: &Plan,
    stream: Option<&crate::db::RowStream>,
    conds: Vec<Cond<'_>>,
    order: &[Col],
) -> Result<(Vec<ReadRow>, bool), JobError> {
    match stream {
        Some(s) => s
            .next(plan.batch_size, plan.batch_bytes)
            .await
            .map_err(|e| JobError::db(&plan.name, "reading the source", e)),
        None => read(plan, conds, order).await,
    }
}

/// Where the batch after the one being delivered comes from.
pub(super) enum Next<'a> {
    /// A select of its own, with these conditions (after the last row read).
    Query(Vec<Cond<'a>>),
    /// The cycle's stream.
    Stream(&'a crate::db::RowStream),
}

impl<'a> Next<'a> {
    /// The stream when there is one, else a select with the conditions `conds` gives.
    pub(super) fn of(
        stream: Option<&'a crate::db::RowStream>,
        conds: impl FnOnce() -> Vec<Cond<'a>>,
    ) -> Self {
        match stream {
            Some(s) => Next::Stream(s),
            None => Next::Query(conds()),
        }
    }
}

/// Whether this cycle asks its source afresh rather than share the last answer: a table run
/// rarely, and a cycle woken because the source announced new rows, do (it is run for rows
/// that must be within its reach); a table polled every few seconds shares. Asked once per
/// cycle (it consumes the wake-up).
pub(super) fn asks_afresh(ctx: &Ctx, plan: &Plan) -> bool {
    let woken = plan.woken.swap(false, std::sync::atomic::Ordering::Relaxed);
    let spec = ctx.cfg.tables.iter().find(|t| t.name == plan.name);
    let frequent = spec.is_some_and(|t| {
        t.schedule.is_interval() && t.schedule.max_gap(&ctx.cfg.agent.tz) <= FREQUENT
    });
    woken || !frequent
}

/// Tables polled at least this often share their questions to the source.
const FREQUENT: std::time::Duration = std::time::Duration::from_secs(10);

/// The current source rows of these keys (source key values), read in chunks; keys the
/// source no longer has are simply not among them.
pub async fn rows_by_key(plan: &Plan, keys: &[Vec<Value>]) -> Result<Vec<ReadRow>, JobError> {
    let key_cols = plan.key_cols();
    let mut out = Vec::new();
    let read = &plan.ends.read;
    let per_select = read.dialect().keys_per_select(key_cols.len(), 500);
    for chunk in keys.chunks(per_select) {
        let sql = read.dialect().select(&Select {
            table: &plan.source,
            columns: &plan.read_cols,
            conds: plan.scoped(vec![Cond::AnyOf(&key_cols, chunk)]),
            order: &key_cols,
            limit: None,
        });
        let (mut rows, _) = read
            .fetch(&sql, &plan.read_cols, usize::MAX)
            .await
            .map_err(|e| JobError::db(&plan.name, "reading rows by key", e))?;
        out.append(&mut rows);
    }
    Ok(out)
}

/// The record key of a row read (its key values joined by `|`).
pub fn rkey_of(plan: &Plan, values: &[Value]) -> String {
    key_text(&plan.key.iter().map(|&i| &values[i]).collect::<Vec<_>>())
}

/// The position of a row: its change time and key.
pub(super) fn position(plan: &Plan, values: &[Value]) -> Watermark {
    Watermark {
        ts: plan.ts.map(|i| values[i].clone()),
        key: plan.key.iter().map(|&i| values[i].clone()).collect(),
    }
}

/// `(ts, key...)` of a position, for keyset conditions ordered by time then key.
pub(super) fn tuple(w: &Watermark) -> Vec<Value> {
    w.ts.iter().cloned().chain(w.key.iter().cloned()).collect()
}

/// First and last positions of a read, and whether more rows may follow.
pub(super) fn span_of(plan: &Plan, rows: &[ReadRow], capped: bool) -> (Watermark, Watermark, bool) {
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
    let wm = ctx
        .state
        .watermark(&plan.name)
        .await
        .map_err(|e| JobError::state(&plan.name, e))?
        .filter(|w| w.key.len() == key_cols.len());
    if !asks_afresh(ctx, plan) && quiet::newer(ctx, plan, wm.as_ref()).await == Some(false) {
        return Ok(());
    }
    let none = Seen::new();
    let conds = match &wm {
        Some(w) => vec![Cond::After(&key_cols, &w.key)],
        None => vec![],
    };
    let stream = open(plan, &conds, &key_cols);
    let mut next = Some(first(plan, stream.as_ref(), conds, &key_cols).await?);
    let mut inflight = None;
    while let Some((rows, capped)) = next.take() {
        if ctx.cancel.is_cancelled() {
            report.stopped = true;
            break;
        }
        if rows.is_empty() {
            break;
        }
        let (first, last, more) = span_of(plan, &rows, capped);
        let b = Batch::Rows(Rows {
            from: Some(first),
            to: Some(last.clone()),
            new_wm: Some(last.clone()),
            ..Rows::of(rows, &none)
        });
        let after =
            more.then(|| Next::of(stream.as_ref(), || vec![Cond::After(&key_cols, &last.key)]));
        next = deliver_reading(ctx, plan, b, report, after, &key_cols, &mut inflight).await?;
    }
    settle(ctx, plan, &mut inflight, report).await
}

async fn flag_cycle(ctx: &Ctx, plan: &Plan, report: &mut CycleReport) -> Result<(), JobError> {
    let Some(flag) = &plan.flag else {
        return Err(JobError::new(&plan.name, "planning", "no flag column"));
    };
    if !asks_afresh(ctx, plan) && quiet::newer(ctx, plan, None).await == Some(false) {
        return Ok(());
    }
    let key_cols = plan.key_cols();
    let none = Seen::new();
    let pending = [Cond::Equals(&flag.col, &flag.pending)];
    let mut next = Some(read(plan, pending.to_vec(), &key_cols).await?);
    let mut inflight = None;
    while let Some((rows, capped)) = next.take() {
        if ctx.cancel.is_cancelled() {
            report.stopped = true;
            break;
        }
        if rows.is_empty() {
            break;
        }
        let (first, last, more) = span_of(plan, &rows, capped);
        let b = Batch::Rows(Rows {
            from: Some(first),
            to: Some(last.clone()),
            ..Rows::of(rows, &none)
        });
        let after = more.then(|| {
            Next::Query(vec![
                Cond::Equals(&flag.col, &flag.pending),
                Cond::After(&key_cols, &last.key),
            ])
        });
        next = deliver_reading(ctx, plan, b, report, after, &key_cols, &mut inflight).await?;
    }
    settle(ctx, plan, &mut inflight, report).await
}

async fn digest_cycle(ctx: &Ctx, plan: &Plan, report: &mut CycleReport) -> Result<(), JobError> {
    let key_cols = plan.key_cols();
    // The stored digests are read while the source answers the first batch.
    let (stored, first) = tokio::join!(
        ctx.state.digests(&plan.name, None, true),
        read(plan, vec![], &key_cols)
    );
    let stored = stored.map_err(|e| JobError::state(&plan.name, e))?;
    let mut present: HashSet<String> = HashSet::with_capacity(stored.len());
    let mut next = Some(first?);
    let mut inflight = None;
    while let Some((rows, capped)) = next.take() {
        if ctx.cancel.is_cancelled() {
            break;
        }
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let key: Vec<&Value> = plan.key.iter().map(|&i| &r.values[i]).collect();
            present.insert(key_text(&key));
        }
        let (first, last, more) = span_of(plan, &rows, capped);
        let b = Batch::Rows(Rows {
            from: Some(first),
            to: Some(last.clone()),
            remember: Remember::All,
            ..Rows::of(rows, &stored)
        });
        let after = more.then(|| Next::Query(vec![Cond::After(&key_cols, &last.key)]));
        next = deliver_reading(ctx, plan, b, report, after, &key_cols, &mut inflight).await?;
    }
    settle(ctx, plan, &mut inflight, report).await?;
    if ctx.cancel.is_cancelled() {
        report.stopped = true;
        return Ok(());
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
        let b = Batch::Removals(Removals {
            keys: chunk.to_vec(),
            gone: Gone::Source,
            chunk: None,
        });
        batch::deliver(ctx, plan, b, report).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
