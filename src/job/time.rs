//! The timestamp-like cycle (`timestamp` and `control` watermarks): rows after the watermark
//! in (time, key) order up to the database's time, the lookback window re-read and skipped by
//! digest, the watermark held behind open transactions, rows dated in the future, and rows
//! whose change time is NULL.

use std::time::Duration;

use super::batch::{self, Batch, Remember, Seen};
use super::{Ctx, CycleReport, JobError, Plan, deliver_reading, read, settle, span_of, tuple};
use crate::db::dialect::{Col, Cond, Select};
use crate::value::{Value, key_text};
use crate::watermark::{Watermark, time_value};

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
    let start_ts = wm.ts.clone();
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
    // Re-read the lookback window behind the watermark and skip rows already exchanged: every
    // cycle, or at most once per `lookback / 10` for tables polled more often than that. A
    // re-read reaches back from the watermark of the previous one, so a row committed with a
    // time within the lookback of the watermark then is still found; the cycles between read
    // only after the watermark.
    let period = (window.lookback / 10).max(Duration::from_secs(1));
    let (sweep, base) = {
        let s = plan.sweep.lock().unwrap_or_else(|e| e.into_inner());
        let due = s.at.is_none_or(|t| t.elapsed() >= period);
        let base = match (&s.from, &wm.ts) {
            (Some(f), Some(t)) if crate::watermark::cmp_values(f, t).is_lt() => Some(f.clone()),
            _ => wm.ts.clone(),
        };
        (due && !window.lookback.is_zero(), base)
    };
    let back = |t: &Value| t.minus(window.lookback, fmt).unwrap_or_else(|| t.clone());
    let lower = if sweep {
        base.as_ref().map(back)
    } else {
        wm.ts.clone()
    };
    // Digests are kept from where the next re-read will start.
    let keep_from = if sweep { wm.ts.as_ref() } else { base.as_ref() }.map(back);
    // Without a re-read, continue strictly after the last (time, key); a watermark held back
    // by an open transaction has no key and is read again from its time on.
    let cursor: Option<Vec<Value>> =
        (!sweep && wm.ts.is_some() && !wm.key.is_empty()).then(|| tuple(&wm));
    // Where the remembered digests begin: the value, and its text for the state store.
    let prune_for = |w: &Watermark| -> Option<(Value, String)> {
        let t = back(w.ts.as_ref()?);
        let from = match &keep_from {
            Some(k) if crate::watermark::cmp_values(k, &t).is_lt() => k.clone(),
            _ => t,
        };
        let text = from.sort_text();
        Some((from, text))
    };
    let mut conds = vec![Cond::AtMost(&ts_col, &upper)];
    match (&cursor, &lower) {
        (Some(c), _) => conds.push(Cond::After(&order, c)),
        (None, Some(l)) => conds.push(Cond::AtLeast(&ts_col, l)),
        (None, None) => {}
    }
    // The digests of the rows already exchanged are read from the state store while the
    // source is answering the first batch.
    let stream = super::open(ctx, plan, &conds, &order);
    let load_seen = async {
        match &lower {
            Some(l) => {
                let started = std::time::Instant::now();
                let seen = ctx
                    .state
                    .digests(&plan.name, Some(&l.sort_text()), false)
                    .await
                    .map_err(|e| JobError::state(&plan.name, e))?;
                tracing::debug!(
                    table = %plan.name,
                    "lookback window: {} digest(s) read in {:.3} s",
                    seen.len(),
                    started.elapsed().as_secs_f64()
                );
                Ok(seen)
            }
            None => Ok(Seen::new()),
        }
    };
    let (seen, first) = tokio::join!(
        load_seen,
        super::first(ctx, plan, stream.as_ref(), conds, &order)
    );
    let seen = seen?;
    let mut next = Some(first?);
    let mut inflight = None;
    while let Some((rows, capped)) = next.take() {
        if ctx.cancel.is_cancelled() {
            report.stopped = true;
            return settle(ctx, plan, &mut inflight, report).await;
        }
        if rows.is_empty() {
            break;
        }
        let (first, last, more) = span_of(plan, &rows, capped);
        let new_wm = wm.clone().max(held_back(last.clone(), guard.as_ref()));
        let prune = prune_for(&new_wm);
        let b = Batch {
            from: Some(first),
            to: Some(last.clone()),
            new_wm: (new_wm != wm).then(|| new_wm.clone()),
            remember: prune
                .as_ref()
                .map_or(Remember::All, |(v, _)| Remember::Since(v.clone())),
            prune_before: prune.map(|(_, text)| text),
            ..Batch::of(rows, &seen)
        };
        let after_last = tuple(&last);
        let after = more.then(|| {
            super::Next::of(stream.as_ref(), || {
                vec![
                    Cond::AtMost(&ts_col, &upper),
                    Cond::After(&order, &after_last),
                ]
            })
        });
        next = deliver_reading(ctx, plan, b, report, after, &order, &mut inflight).await?;
        wm = new_wm;
    }
    settle(ctx, plan, &mut inflight, report).await?;
    if sweep {
        let mut s = plan.sweep.lock().unwrap_or_else(|e| e.into_inner());
        s.at = Some(std::time::Instant::now());
        s.from = start_ts;
    }

    // Rows dated after the database's time: exchanged now, the watermark stays at "now".
    let mut cursor: Option<Vec<Value>> = None;
    let mut future = 0u64;
    let mut example = None;
    let ahead = time_value(now + chrono::Duration::minutes(1), ts_col.ty, tz, fmt);
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
        // Rows stamped just after the time read at the start of the cycle were committed
        // since; only a time more than a minute ahead is worth a warning (a writer's clock).
        for r in &rows {
            if crate::watermark::cmp_values(&r.values[ts_i], &ahead).is_gt() {
                future += 1;
                example.get_or_insert_with(|| super::position(plan, &r.values));
            }
        }
        let (first, last, more) = span_of(plan, &rows, capped);
        let b = Batch {
            from: Some(first),
            to: Some(last.clone()),
            remember: Remember::All,
            ..Batch::of(rows, &seen)
        };
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
    // No ORDER BY: ordered by key, a planner may walk the whole primary key looking for the
    // NULLs instead of using an index on the change time (seen on PostgreSQL without
    // statistics: 0.4 s for a million rows, every cycle). The few keys are sorted here.
    let sql = ctx.source.dialect().select(&Select {
        table: &plan.source,
        columns: &key_cols,
        conds: vec![Cond::IsNull(ts_col)],
        order: &[],
        limit: Some(SHOWN + 1),
    });
    let (mut rows, _) = ctx
        .source
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
