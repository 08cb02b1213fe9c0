//! The timestamp-like cycle (`timestamp` and `control` watermarks): rows after the watermark
//! in (time, key) order up to the database's time, the lookback window re-read and skipped by
//! digest, the watermark held behind open transactions, rows dated in the future, and rows
//! whose change time is NULL.

use std::time::Duration;

mod span;

use super::batch::{self, Batch, Remember, Rows, Seen};
use super::{Ctx, CycleReport, JobError, Plan, deliver_reading, read, settle, span_of, tuple};
use crate::db::Snapshot;
use crate::db::dialect::{Cond, Select};
use crate::ident::Col;
use crate::value::{Value, key_text};
use crate::watermark::{Reread, Watermark, time_value};
use span::{Span, SpanInput, held_back};

/// Sleep unless the agent is stopping; false when it is.
async fn pause(ctx: &Ctx, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = ctx.cancel.cancelled() => false,
    }
}

pub(super) async fn cycle(
    ctx: &Ctx,
    plan: &Plan,
    once: bool,
    report: &mut CycleReport,
) -> Result<(), JobError> {
    let (Some(ts_i), Some(cfg)) = (plan.ts, plan.window.as_ref()) else {
        return Err(JobError::new(
            &plan.name,
            "planning",
            "no change-time column",
        ));
    };
    let ts_col = plan.read_cols[ts_i].clone();
    let mut order = vec![ts_col.clone()];
    order.extend(plan.key_cols());
    let wm = ctx
        .state
        .watermark(&plan.name)
        .await
        .map_err(|e| JobError::state(&plan.name, e))?
        .filter(|w| w.ts.is_some() && (w.key.is_empty() || w.key.len() == plan.key.len()))
        .unwrap_or_default();
    // `once` waits out the lag, so that every row committed before it began is read.
    let lag = if once && !cfg.lag.is_zero() {
        if !pause(ctx, cfg.lag).await {
            report.stopped = true;
            return Ok(());
        }
        Duration::ZERO
    } else {
        cfg.lag
    };
    let afresh = super::asks_afresh(ctx, plan);
    let sweep = span::due(plan, &wm, cfg.lookback);
    let extras_due = {
        let x = plan.extras.lock().unwrap_or_else(|e| e.into_inner());
        x.at.is_none_or(|t| t.elapsed() >= EXTRAS_EVERY)
    };
    // A quiet table with nothing after its watermark ends its cycle here, unless it re-reads
    // its window or looks for rows in the future this time.
    let newer = if !afresh && !sweep.due && !extras_due {
        super::quiet::newer(ctx, plan, Some(&wm)).await
    } else {
        None
    };
    if newer == Some(false) {
        let x = plan.extras.lock().unwrap_or_else(|e| e.into_inner());
        report.warnings.extend(x.warnings.iter().cloned());
        return Ok(());
    }
    let age = if afresh {
        Duration::ZERO
    } else {
        crate::probe::FRESH
    };
    let probe = probe(ctx, plan, age, sweep.due && plan.row_xids).await?;
    let guard = transaction_guard(plan, &probe, report);
    let tz = &ctx.cfg.agent.tz;
    let at = |t| time_value(t, ts_col.ty, tz, &cfg.format);
    let w = Span::of(&SpanInput {
        wm: &wm,
        lookback: cfg.lookback,
        format: &cfg.format,
        sweep: &sweep,
        upper: at(probe.now - chrono::Duration::from_std(lag).unwrap_or_default()),
        guard: guard.map(at),
        prior: probe.prior.as_ref(),
        snap: probe.snap.as_ref(),
        column: ts_col.name.as_str(),
    });
    let read = Reading {
        ts_col: &ts_col,
        order: &order,
        span: &w,
    };
    let seen = deliver_window(ctx, plan, &read, wm, report).await?;
    if report.stopped {
        return Ok(());
    }
    let moved = report.sent + report.deleted + report.rejected > 0;
    if sweep.due {
        record_sweep(ctx, plan, &ts_col, &w, probe.snap, moved).await?;
    }
    // Rows dated in the future and rows without a change time are looked for after a cycle
    // that moved rows or read nothing where there were newer rows (rows in the future are
    // after the watermark too), else every few minutes; their warnings stand meanwhile.
    if !moved && !extras_due && newer != Some(true) {
        let x = plan.extras.lock().unwrap_or_else(|e| e.into_inner());
        report.warnings.extend(x.warnings.iter().cloned());
        return Ok(());
    }
    let before = report.warnings.len();
    if !deliver_future(ctx, plan, &read, probe.now, &seen, report).await? {
        return Ok(());
    }
    null_times(plan, &ts_col, report).await?;
    let mut x = plan.extras.lock().unwrap_or_else(|e| e.into_inner());
    x.at = Some(std::time::Instant::now());
    x.warnings = report.warnings[before..].to_vec();
    Ok(())
}

/// How often a quiet table looks for rows in the future or without a change time.
const EXTRAS_EVERY: Duration = Duration::from_secs(300);

/// What a cycle asks of the source and the state store before it reads: the source's time,
/// and for a narrowed re-read, the source's transaction ids and the last re-read's record.
struct Probe {
    now: chrono::DateTime<chrono::Utc>,
    snap: Option<Snapshot>,
    prior: Option<Reread>,
    /// The source's oldest open transaction, where the table guards against them.
    oldest: Option<Result<crate::probe::Oldest, String>>,
}

async fn probe(ctx: &Ctx, plan: &Plan, age: Duration, by_xid: bool) -> Result<Probe, JobError> {
    let guard = !plan.ends.guard.is_zero();
    let kept = plan
        .sweep
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .reread
        .clone();
    let (taken, prior) = tokio::join!(
        ctx.probes.take(&plan.ends.read, age, guard, by_xid),
        async {
            match (by_xid, kept) {
                (true, Some(r)) => Ok(Some(r)),
                (true, None) => ctx.state.reread(&plan.name).await,
                (false, _) => Ok(None),
            }
        }
    );
    let taken =
        taken.map_err(|e| JobError::db(&plan.name, "reading the source database's time", e))?;
    // Without the ids (PostgreSQL before 13), the window is re-read whole.
    let snap = match taken.snap.filter(|_| by_xid) {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            tracing::debug!(table = %plan.name, "{e}; the lookback window is re-read whole");
            None
        }
        None => None,
    };
    let prior = prior.map_err(|e| JobError::state(&plan.name, e))?;
    Ok(Probe {
        now: taken.now,
        snap,
        prior,
        oldest: taken.oldest,
    })
}

/// How a cycle reads: the change-time column, the (time, key) order, and its span.
struct Reading<'a> {
    ts_col: &'a Col,
    order: &'a [Col],
    span: &'a Span,
}

/// The digests a cycle compares its rows with: the lookback window's, or for a narrowed
/// re-read, the latest change time remembered (rows up to it are looked up by key).
struct Known {
    window: Seen,
    narrow: Option<Option<String>>,
}

/// Deliver the rows of the span, batch after batch, each committing the watermark it
/// reached; what the rows were compared with is returned for the rows dated in the future.
async fn deliver_window(
    ctx: &Ctx,
    plan: &Plan,
    r: &Reading<'_>,
    mut wm: Watermark,
    report: &mut CycleReport,
) -> Result<Known, JobError> {
    let w = r.span;
    let conds = w.conds(r.ts_col, r.order);
    // The digests of the rows already exchanged are read from the state store while the
    // source is answering the first batch.
    let stream = super::open(plan, &conds, r.order);
    let (known, first) = tokio::join!(
        known(ctx, plan, w),
        super::first(plan, stream.as_ref(), conds, r.order)
    );
    let known = known?;
    let narrow = known.narrow.as_ref().map(Option::as_deref);
    let mut next = Some(first?);
    let mut inflight = None;
    while let Some((rows, capped)) = next.take() {
        if ctx.cancel.is_cancelled() {
            report.stopped = true;
            settle(ctx, plan, &mut inflight, report).await?;
            return Ok(known);
        }
        if rows.is_empty() {
            break;
        }
        let (first, last, more) = span_of(plan, &rows, capped);
        let new_wm = wm.clone().max(held_back(last.clone(), w.guard.as_ref()));
        let prune = w.prune_for(&new_wm);
        let seen = seen_for(ctx, plan, &rows, &known.window, narrow).await?;
        let b = Batch::Rows(Rows {
            from: Some(first),
            to: Some(last.clone()),
            new_wm: (new_wm != wm).then(|| new_wm.clone()),
            remember: prune
                .as_ref()
                .map_or(Remember::All, |(v, _)| Remember::Since(v.clone())),
            prune_before: prune.map(|(_, text)| text),
            ..Rows::of(rows, &seen)
        });
        let after_last = tuple(&last);
        let after = more.then(|| {
            super::Next::of(stream.as_ref(), || {
                vec![
                    Cond::AtMost(r.ts_col, &w.upper),
                    Cond::After(r.order, &after_last),
                ]
            })
        });
        next = deliver_reading(ctx, plan, b, report, after, r.order, &mut inflight).await?;
        wm = new_wm;
    }
    settle(ctx, plan, &mut inflight, report).await?;
    Ok(known)
}

/// The digests of the rows already exchanged that the cycle's rows are compared with: the
/// whole window's, or for a narrowed re-read, whose rows are mostly new, only the latest
/// change time remembered.
async fn known(ctx: &Ctx, plan: &Plan, w: &Span) -> Result<Known, JobError> {
    let st = |e| JobError::state(&plan.name, e);
    match &w.lower {
        Some(_) if w.narrowed.is_some() => {
            let newest = ctx.state.newest_digest(&plan.name).await.map_err(st)?;
            tracing::debug!(
                table = %plan.name,
                "lookback window: only rows of transactions from id {} (low 32 bits) on are read again",
                w.narrowed.unwrap_or_default()
            );
            Ok(Known {
                window: Seen::new(),
                narrow: Some(newest),
            })
        }
        Some(l) => {
            let started = std::time::Instant::now();
            let seen = ctx
                .state
                .digests(&plan.name, Some(&l.sort_text()), false)
                .await
                .map_err(st)?;
            tracing::debug!(
                table = %plan.name,
                "lookback window: {} digest(s) read in {:.3} s",
                seen.len(),
                started.elapsed().as_secs_f64()
            );
            Ok(Known {
                window: seen,
                narrow: None,
            })
        }
        None => Ok(Known {
            window: Seen::new(),
            narrow: None,
        }),
    }
}

/// A complete re-read of the window: remembered for the next ones, and where the source
/// tells its transaction ids, recorded with them (the next re-read is narrowed by it).
async fn record_sweep(
    ctx: &Ctx,
    plan: &Plan,
    ts_col: &Col,
    w: &Span,
    snap: Option<Snapshot>,
    moved: bool,
) -> Result<(), JobError> {
    let r = {
        let mut s = plan.sweep.lock().unwrap_or_else(|e| e.into_inner());
        s.at = Some(std::time::Instant::now());
        s.from = w.start.clone();
        s.quiet = !moved;
        let Some(snap) = snap else {
            return Ok(());
        };
        let r = Reread {
            column: ts_col.name.to_string(),
            from: w.lower.clone(),
            xmin: snap.xmin,
        };
        s.reread = Some(r.clone());
        r
    };
    // A quiet re-read is recorded by the state store's next flush.
    ctx.state
        .set_reread(&plan.name, &r, moved)
        .await
        .map_err(|e| JobError::state(&plan.name, e))
}

/// Rows dated after the database's time `now`: exchanged now, while the watermark stays at
/// "now". False when the agent is stopping.
async fn deliver_future(
    ctx: &Ctx,
    plan: &Plan,
    r: &Reading<'_>,
    now: chrono::DateTime<chrono::Utc>,
    known: &Known,
    report: &mut CycleReport,
) -> Result<bool, JobError> {
    let (tz, fmt) = (&ctx.cfg.agent.tz, &r.span.format);
    let now_v = time_value(now, r.ts_col.ty, tz, fmt);
    // Rows stamped just after the time read at the start of the cycle were committed
    // since; only a time more than a minute ahead is worth a warning (a writer's clock).
    let ahead = time_value(now + chrono::Duration::minutes(1), r.ts_col.ty, tz, fmt);
    let narrow = known.narrow.as_ref().map(Option::as_deref);
    let mut cursor: Option<Vec<Value>> = None;
    let mut future = 0u64;
    let mut example = None;
    loop {
        if ctx.cancel.is_cancelled() {
            report.stopped = true;
            return Ok(false);
        }
        let mut conds = vec![Cond::Greater(r.ts_col, &now_v)];
        if let Some(c) = &cursor {
            conds.push(Cond::After(r.order, c));
        }
        let (rows, capped) = read(plan, conds, r.order).await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let ts = plan.ts.map_or(&Value::Null, |i| &row.values[i]);
            if crate::watermark::cmp_values(ts, &ahead).is_gt() {
                future += 1;
                example.get_or_insert_with(|| super::position(plan, &row.values));
            }
        }
        let (first, last, more) = span_of(plan, &rows, capped);
        let seen = seen_for(ctx, plan, &rows, &known.window, narrow).await?;
        let b = Batch::Rows(Rows {
            from: Some(first),
            to: Some(last.clone()),
            remember: Remember::All,
            ..Rows::of(rows, &seen)
        });
        batch::deliver(ctx, plan, b, report).await?;
        cursor = Some(tuple(&last));
        if !more {
            break;
        }
    }
    if let Some(ex) = example {
        let w = format!(
            "{future} row(s) of {} have {} more than a minute after the database's time {} \
             (e.g. {ex}); they were exchanged and the watermark was kept at the database's time",
            plan.source,
            r.ts_col.name,
            now_v.to_text()
        );
        tracing::warn!(table = %plan.name, "{w}");
        report.warnings.push(w);
    }
    Ok(true)
}

/// The digests a batch's rows are compared with: the window's, read at the start of the
/// cycle, or for a narrowed re-read (`narrow`: the latest change time remembered), those
/// of the rows changed at or before it, looked up by key. A row not found is sent, which
/// is never wrong: the exchange takes a row it already has as it is.
async fn seen_for<'s>(
    ctx: &Ctx,
    plan: &Plan,
    rows: &[crate::db::ReadRow],
    window: &'s Seen,
    narrow: Option<Option<&str>>,
) -> Result<std::borrow::Cow<'s, Seen>, JobError> {
    use std::borrow::Cow;
    let (Some(newest), Some(ts_i)) = (narrow, plan.ts) else {
        return Ok(Cow::Borrowed(window));
    };
    let keys: Vec<String> = match newest {
        Some(n) => rows
            .iter()
            .filter(|r| r.values[ts_i].sort_text().as_str() <= n)
            .filter(|r| plan.key.iter().all(|&i| !r.values[i].is_null()))
            .map(|r| super::rkey_of(plan, &r.values))
            .collect(),
        None => Vec::new(),
    };
    if keys.is_empty() {
        return Ok(Cow::Owned(Seen::new()));
    }
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    ctx.state
        .digests_of(&plan.name, &keys)
        .await
        .map(Cow::Owned)
        .map_err(|e| JobError::state(&plan.name, e))
}

/// The instant just before the oldest transaction still open on the source, when one is open
/// and younger than `transaction_guard`. Older ones are reported and left to the lookback.
fn transaction_guard(
    plan: &Plan,
    probe: &Probe,
    report: &mut CycleReport,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let limit = plan.ends.guard;
    if limit.is_zero() {
        return None;
    }
    let now = probe.now;
    let (oldest, note) = match probe.oldest.clone()? {
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
async fn null_times(plan: &Plan, ts_col: &Col, report: &mut CycleReport) -> Result<(), JobError> {
    const SHOWN: usize = 10;
    let key_cols = plan.key_cols();
    // No ORDER BY: ordered by key, a planner may walk the whole primary key looking for the
    // NULLs instead of using an index on the change time (seen on PostgreSQL without
    // statistics: 0.4 s for a million rows, every cycle). The few keys are sorted here.
    let sql = plan.ends.read.dialect().select(&Select {
        table: &plan.source,
        columns: &key_cols,
        conds: plan.scoped(vec![Cond::IsNull(ts_col)]),
        order: &[],
        limit: Some(SHOWN + 1),
    });
    let (mut rows, _) = plan
        .ends
        .read
        .fetch(&sql, &key_cols, usize::MAX)
        .await
        .map_err(|e| JobError::db(&plan.name, "looking for rows without a change time", e))?;
    if rows.is_empty() {
        return Ok(());
    }
    rows.sort_by(|a, b| crate::watermark::cmp_tuple(&a.values, &b.values));
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
