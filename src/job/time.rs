//! The timestamp-like cycle (`timestamp` and `control` watermarks): rows after the watermark
//! in (time, key) order up to the database's time, the lookback window re-read and skipped by
//! digest, the watermark held behind open transactions, rows dated in the future, and rows
//! whose change time is NULL.

use std::time::Duration;

use super::batch::{self, Batch, Remember, Seen};
use super::{Ctx, CycleReport, JobError, Plan, deliver_reading, read, settle, span_of, tuple};
use crate::db::Snapshot;
use crate::db::dialect::{Cond, Select};
use crate::ident::Col;
use crate::value::{Value, key_text};
use crate::watermark::{Reread, Watermark, time_value};

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
    // A re-read of a PostgreSQL table asks, at or before the watermark, only for rows of
    // transactions that the last complete re-read could not see (see `narrowed`): the
    // source's transaction ids now, and that re-read's record.
    let by_xid = sweep && plan.row_xids;
    let (now, snap, prior) = tokio::join!(
        ctx.source.now(),
        async {
            if by_xid {
                ctx.source.snapshot().await
            } else {
                Ok(None)
            }
        },
        async {
            if by_xid {
                ctx.state.reread(&plan.name).await
            } else {
                Ok(None)
            }
        }
    );
    let now = now.map_err(|e| JobError::db(&plan.name, "reading the source database's time", e))?;
    // Without the ids (PostgreSQL before 13), the window is re-read whole.
    let snap = snap.unwrap_or_else(|e| {
        tracing::debug!(table = %plan.name, "{e}; the lookback window is re-read whole");
        None
    });
    let prior = prior.map_err(|e| JobError::state(&plan.name, e))?;
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
    let since = narrowed(
        prior.as_ref(),
        snap.as_ref(),
        ts_col.name.as_str(),
        lower.as_ref(),
        &wm,
    );
    let wm_at = tuple(&wm);
    let mut conds = vec![Cond::AtMost(&ts_col, &upper)];
    match (&cursor, &lower) {
        (Some(c), _) => conds.push(Cond::After(&order, c)),
        (None, Some(l)) => conds.push(Cond::AtLeast(&ts_col, l)),
        (None, None) => {}
    }
    if let Some(x) = since {
        conds.push(Cond::AfterOrWrittenSince(&order[..wm_at.len()], &wm_at, x));
    }
    // The digests of the rows already exchanged are read from the state store while the
    // source is answering the first batch: the whole window's, or for a narrowed re-read,
    // whose rows are mostly new, only the latest change time remembered (a batch's rows up
    // to it are then looked up by key).
    let stream = super::open(ctx, plan, &conds, &order);
    let load_seen = async {
        match &lower {
            Some(_) if since.is_some() => {
                let newest = ctx
                    .state
                    .newest_digest(&plan.name)
                    .await
                    .map_err(|e| JobError::state(&plan.name, e))?;
                tracing::debug!(
                    table = %plan.name,
                    "lookback window: only rows of transactions from {} on are read again",
                    prior.as_ref().map_or(0, |r| r.xmin)
                );
                Ok((Seen::new(), newest))
            }
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
                Ok((seen, None))
            }
            None => Ok((Seen::new(), None)),
        }
    };
    let (seen, first) = tokio::join!(
        load_seen,
        super::first(ctx, plan, stream.as_ref(), conds, &order)
    );
    let (seen, newest) = seen?;
    let narrow = since.is_some().then_some(newest.as_deref());
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
        let seen = seen_for(ctx, plan, &rows, &seen, narrow).await?;
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
        {
            let mut s = plan.sweep.lock().unwrap_or_else(|e| e.into_inner());
            s.at = Some(std::time::Instant::now());
            s.from = start_ts;
        }
        if let Some(snap) = snap {
            let r = Reread {
                column: ts_col.name.to_string(),
                from: lower.clone(),
                xmin: snap.xmin,
            };
            ctx.state
                .set_reread(&plan.name, &r)
                .await
                .map_err(|e| JobError::state(&plan.name, e))?;
        }
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
        let seen = seen_for(ctx, plan, &rows, &seen, narrow).await?;
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

/// The low 32 bits of the transaction id from which a re-read of the lookback window asks
/// for rows at or before the watermark `wm`: the rows of older transactions there were seen
/// by the last complete re-read `last` or by the cycles after it, which read on from where
/// each stopped, and were exchanged (a row changed since was written by a later
/// transaction). `None`, and the window is read whole, when there is no such record, it
/// was of another column or began after this re-read's `lower`, there is no watermark, or
/// the ids do not follow on: the server's next id is below the recorded one (a database
/// restored into another cluster) or 2^30 or more past it (ids are compared modulo 2^32).
fn narrowed(
    last: Option<&Reread>,
    snap: Option<&Snapshot>,
    column: &str,
    lower: Option<&Value>,
    wm: &Watermark,
) -> Option<u32> {
    let (last, snap) = (last?, snap?);
    wm.ts.as_ref()?;
    if last.column != column {
        return None;
    }
    if let Some(from) = &last.from
        && lower.is_none_or(|l| crate::watermark::cmp_values(l, from).is_lt())
    {
        return None;
    }
    let since = snap.xmax.checked_sub(last.xmin)?;
    (since < 1 << 30).then_some((last.xmin & 0xffff_ffff) as u32)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn a_reread_is_narrowed_only_where_the_last_one_vouches_for_the_window() {
        let wm = Watermark {
            ts: Some(ts("2026-12-01 08:05:00")),
            key: vec![Value::Int(9)],
        };
        let last = Reread {
            column: "updated_at".into(),
            from: Some(ts("2026-12-01 08:00:00")),
            xmin: (3 << 32) + 1000,
        };
        let snap = Snapshot {
            xmin: (3 << 32) + 1500,
            xmax: (3 << 32) + 2000,
        };
        let lower = ts("2026-12-01 08:01:00");
        // The low 32 bits of the recorded id.
        assert_eq!(
            narrowed(Some(&last), Some(&snap), "updated_at", Some(&lower), &wm),
            Some(1000)
        );
        // A window beginning where the last began is vouched for; one beginning before it
        // is not, nor is a record of another column, nor no record or no snapshot.
        let at_from = ts("2026-12-01 08:00:00");
        assert_eq!(
            narrowed(Some(&last), Some(&snap), "updated_at", Some(&at_from), &wm),
            Some(1000)
        );
        let before = ts("2026-12-01 07:59:59");
        assert_eq!(
            narrowed(Some(&last), Some(&snap), "updated_at", Some(&before), &wm),
            None
        );
        assert_eq!(
            narrowed(Some(&last), Some(&snap), "updated_at", None, &wm),
            None
        );
        assert_eq!(
            narrowed(Some(&last), Some(&snap), "changed_at", Some(&lower), &wm),
            None
        );
        assert_eq!(
            narrowed(None, Some(&snap), "updated_at", Some(&lower), &wm),
            None
        );
        assert_eq!(
            narrowed(Some(&last), None, "updated_at", Some(&lower), &wm),
            None
        );
        // A record from the table's beginning vouches for any window.
        let whole = Reread {
            from: None,
            ..last.clone()
        };
        assert_eq!(
            narrowed(Some(&whole), Some(&snap), "updated_at", None, &wm),
            Some(1000)
        );
        // No watermark: nothing is at or before it.
        let none = Watermark::default();
        assert_eq!(
            narrowed(Some(&last), Some(&snap), "updated_at", Some(&lower), &none),
            None
        );
        // Ids that do not follow on: the server behind the record (another cluster), or
        // 2^30 or more past it (modulo 2^32 they could no longer be told apart).
        let behind = Snapshot { xmin: 10, xmax: 20 };
        assert_eq!(
            narrowed(Some(&last), Some(&behind), "updated_at", Some(&lower), &wm),
            None
        );
        let far = Snapshot {
            xmin: last.xmin + (1 << 30),
            xmax: last.xmin + (1 << 30),
        };
        assert_eq!(
            narrowed(Some(&last), Some(&far), "updated_at", Some(&lower), &wm),
            None
        );
        let near = Snapshot {
            xmin: last.xmin,
            xmax: last.xmin + (1 << 30) - 1,
        };
        assert_eq!(
            narrowed(Some(&last), Some(&near), "updated_at", Some(&lower), &wm),
            Some(1000)
        );
    }
}
