//! `once` and `run`: connect, prepare every table, and run cycles — once each, or each
//! table on its own schedule until the agent is stopped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, TableSpec};
use crate::db::Db;
use crate::error::AppError;
use crate::job::{self, Ctx, CycleReport, JobError, Plan};
use crate::state::{CycleEnd, State, parse_ts};

/// Open the state store and connect to both databases (`lazy`: on first use, so that the
/// daemon starts and waits while a database is down).
pub async fn connect(
    cfg: Arc<Config>,
    cancel: CancellationToken,
    lazy: bool,
) -> Result<Ctx, AppError> {
    let state = State::open(&cfg.agent.state_dir)
        .await
        .map_err(AppError::runtime)?;
    let source = Db::connect(&cfg.source, "source", lazy)
        .await
        .map_err(AppError::runtime)?;
    let target = match Db::connect(&cfg.exchange.db, "exchange", lazy).await {
        Ok(t) => t,
        Err(e) => {
            source.close().await;
            return Err(AppError::runtime(e));
        }
    };
    Ok(Ctx {
        cfg,
        source: Arc::new(source),
        target: Arc::new(target),
        state: Arc::new(state),
        cancel,
    })
}

async fn disconnect(ctx: &Ctx) {
    ctx.source.close().await;
    ctx.target.close().await;
    ctx.state.close().await;
}

/// The tables a command works on: the named one, or every enabled one.
pub fn selected<'a>(cfg: &'a Config, table: Option<&str>) -> Result<Vec<&'a TableSpec>, AppError> {
    match table {
        Some(t) => match cfg.tables.iter().find(|s| s.name == t) {
            Some(s) => Ok(vec![s]),
            None => Err(AppError::Usage(format!(
                "no table named `{t}` in {}; configured tables: {}",
                cfg.file.display(),
                cfg.tables
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        },
        None => Ok(cfg.tables.iter().filter(|s| s.enabled).collect()),
    }
}

/// Stop gracefully on the first SIGTERM/SIGINT (exiting anyway after `deadline`); exit at
/// once on the second.
pub fn stop_on_signals(cancel: CancellationToken, deadline: Duration) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot listen for SIGTERM: {e}");
                    return;
                }
            };
        let mut signals = 0;
        loop {
            tokio::select! {
                _ = term.recv() => {}
                r = tokio::signal::ctrl_c() => {
                    if r.is_err() {
                        return;
                    }
                }
            }
            signals += 1;
            if signals == 1 {
                tracing::info!(
                    "stopping: finishing the batch in flight (signal again to stop at once)"
                );
                cancel.cancel();
                tokio::spawn(async move {
                    tokio::time::sleep(deadline).await;
                    tracing::warn!(
                        "the batch in flight did not finish within stop_timeout ({}); stopping \
                         anyway: it was not committed and will be sent again",
                        humantime::format_duration(deadline)
                    );
                    std::process::exit(0);
                });
            } else {
                tracing::warn!("second signal: stopping at once");
                std::process::exit(130);
            }
        }
    });
}

/// Run one table cycle with its bookkeeping in the state store.
async fn run_one(
    ctx: &Ctx,
    spec: &TableSpec,
    plan: &mut Option<Plan>,
    once: bool,
) -> Result<CycleReport, JobError> {
    let started = Instant::now();
    let _ = ctx.state.cycle_started(&spec.name, Utc::now()).await;
    let result = match plan {
        Some(p) => job::cycle(ctx, p, once).await,
        None => match job::prepare(&ctx.cfg, &ctx.source, &ctx.target, spec).await {
            Ok(p) => {
                let r = job::cycle(ctx, &p, once).await;
                *plan = Some(p);
                r
            }
            Err(e) => Err(e),
        },
    };
    if result.is_err() {
        // The tables may have changed: look at them again before the next cycle.
        *plan = None;
    }
    let (outcome, error, rows, warnings) = match &result {
        Ok(r) if r.stopped => ("stopped", None, r.sent + r.deleted, r.warnings.clone()),
        Ok(r) => ("ok", None, r.sent + r.deleted, r.warnings.clone()),
        Err(e) => ("failed", Some(e.to_string()), 0, Vec::new()),
    };
    let end = CycleEnd {
        table: &spec.name,
        outcome,
        error: error.as_deref(),
        rows,
        millis: started.elapsed().as_millis() as u64,
        warnings: &warnings,
    };
    if let Err(e) = ctx.state.cycle_finished(&end).await {
        tracing::error!(table = %spec.name, "cannot record the cycle: {e}");
    }
    result
}

/// `once`: one cycle of each selected table; every row committed before the call is exchanged.
pub async fn once(cfg: Config, table: Option<&str>) -> Result<(), AppError> {
    let cfg = Arc::new(cfg);
    let names: Vec<String> = selected(&cfg, table)?
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let cancel = CancellationToken::new();
    stop_on_signals(cancel.clone(), cfg.agent.stop_timeout);
    let ctx = connect(cfg.clone(), cancel.clone(), false).await?;
    let mut failures = Vec::new();
    for name in &names {
        let Some(spec) = cfg.tables.iter().find(|s| &s.name == name) else {
            continue;
        };
        let mut plan = None;
        match run_one(&ctx, spec, &mut plan, true).await {
            Ok(r) => {
                println!(
                    "{}: {} row(s) sent, {} deleted, {} quarantined, {} unchanged, {} batch(es){}",
                    spec.name,
                    r.sent,
                    r.deleted,
                    r.rejected,
                    r.skipped,
                    r.batches,
                    if r.stopped { " (stopped early)" } else { "" }
                );
                for w in &r.warnings {
                    println!("  warning: {w}");
                }
                if r.stopped {
                    failures.push(format!(
                        "table {}: stopped by a signal before it finished",
                        spec.name
                    ));
                }
            }
            Err(e) => {
                tracing::error!("{e}");
                failures.push(e.to_string());
            }
        }
        if cancel.is_cancelled() {
            break;
        }
    }
    let _ = ctx
        .state
        .prune_ledger(
            Utc::now() - chrono::Duration::from_std(cfg.agent.ledger_retention).unwrap_or_default(),
        )
        .await;
    disconnect(&ctx).await;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(AppError::Runtime(failures.join("\n")))
    }
}

/// When a table should first run after start: interval schedules at once; calendar
/// schedules at their next time, or at once when a scheduled run was missed.
fn first_run(
    spec: &TableSpec,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    tz: &chrono_tz::Tz,
) -> DateTime<Utc> {
    if spec.schedule.is_interval() {
        return now;
    }
    match last.and_then(|l| spec.schedule.next_after(l, tz)) {
        Some(due) if due <= now => now,
        _ => spec.schedule.next_after(now, tz).unwrap_or(now),
    }
}

/// How long to wait before trying a failed table again: an outage is retried soon (1 s,
/// doubling up to `retry_max`, with ±20 % jitter so that many agents do not retry in step);
/// a problem that needs a person at most once a minute.
fn retry_wait(e: &JobError, failures: u32, retry_max: Duration) -> Duration {
    if !e.is_retriable() {
        return Duration::from_secs(60);
    }
    let base = Duration::from_secs(1)
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(retry_max);
    base.mul_f64(rand::random_range(0.8..1.2))
}

async fn table_loop(ctx: Arc<Ctx>, idx: usize) {
    let Some(spec) = ctx.cfg.tables.get(idx) else {
        return;
    };
    let tz = ctx.cfg.agent.tz;
    let last = ctx
        .state
        .tables()
        .await
        .ok()
        .and_then(|t| t.into_iter().find(|s| s.table == spec.name))
        .and_then(|s| s.last_finished.as_deref().and_then(parse_ts));
    let mut next = first_run(spec, last, Utc::now(), &tz);
    tracing::info!(table = %spec.name, schedule = %spec.schedule, next = %next.with_timezone(&tz), "table scheduled");
    let mut plan: Option<Plan> = None;
    let mut failures: u32 = 0;
    loop {
        let _ = ctx.state.set_next_run(&spec.name, next).await;
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.cancel.cancelled() => break,
        }
        let result = run_one(&ctx, spec, &mut plan, false).await;
        let now = Utc::now();
        let scheduled = spec
            .schedule
            .next_after(now, &tz)
            .unwrap_or(now + chrono::Duration::hours(1));
        next = match &result {
            Ok(r) => {
                if failures > 0 {
                    tracing::info!(table = %spec.name, "table recovered after {failures} failed attempt(s)");
                }
                failures = 0;
                if r.sent + r.deleted + r.rejected > 0 {
                    tracing::info!(table = %spec.name, sent = r.sent, deleted = r.deleted, quarantined = r.rejected, "cycle done");
                }
                scheduled
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = retry_wait(e, failures, ctx.cfg.agent.retry_max);
                // Said on the first failures, then less and less often.
                if failures.is_power_of_two() || failures.is_multiple_of(60) {
                    tracing::error!(table = %spec.name, attempt = failures, retry_in = ?wait, "{e}");
                } else {
                    tracing::debug!(table = %spec.name, attempt = failures, retry_in = ?wait, "{e}");
                }
                let retry = now + chrono::Duration::from_std(wait).unwrap_or_default();
                // An outage is retried before the next scheduled run; a problem that needs a
                // person waits for it (and at least a minute).
                if e.is_retriable() {
                    scheduled.min(retry)
                } else {
                    scheduled.max(retry)
                }
            }
        };
        if ctx.cancel.is_cancelled() {
            break;
        }
    }
    tracing::info!(table = %spec.name, "table stopped");
}

/// `run`: the daemon. Every enabled table runs on its own schedule until SIGTERM or SIGINT;
/// a stop waits for the batch in flight and commits it.
pub async fn run(cfg: Config) -> Result<(), AppError> {
    let cfg = Arc::new(cfg);
    let cancel = CancellationToken::new();
    stop_on_signals(cancel.clone(), cfg.agent.stop_timeout);
    let ctx = Arc::new(connect(cfg.clone(), cancel.clone(), true).await?);
    for (role, db) in [("source", &ctx.source), ("exchange", &ctx.target)] {
        if let Err(e) = db.now().await {
            tracing::warn!("the {role} database is not reachable yet; the agent keeps trying: {e}");
        }
    }
    tracing::info!(agent = %cfg.agent.id, tables = cfg.tables.len(), "frontdb-agent running");
    let tracker = TaskTracker::new();
    for (i, spec) in cfg.tables.iter().enumerate() {
        if spec.enabled {
            tracker.spawn(table_loop(ctx.clone(), i));
        }
    }
    let housekeeping = ctx.clone();
    tracker.spawn(async move {
        loop {
            let keep = chrono::Duration::from_std(housekeeping.cfg.agent.ledger_retention)
                .unwrap_or_default();
            if let Err(e) = housekeeping.state.prune_ledger(Utc::now() - keep).await {
                tracing::warn!("pruning the batch ledger: {e}");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = housekeeping.cancel.cancelled() => break,
            }
        }
    });
    tracker.close();
    tracker.wait().await;
    disconnect(&ctx).await;
    tracing::info!("frontdb-agent stopped");
    Ok(())
}
