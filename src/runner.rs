//! Running tables: `once`, a resync done in-process, and the loop that runs one table on its
//! schedule inside the daemon (see [`crate::daemon`]).

mod table;

pub use table::{Wake, table_loop};

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TableSpec};
use crate::db::Db;
use crate::error::AppError;
use crate::job::resync::Progress;
use crate::job::{self, Ctx, CycleReport, JobError, Plan};
use crate::schedule::{Timer, sleep_until};
use crate::state::{CycleEnd, Outcome, State};

/// Open the state store and connect to the front-end database and the exchange (`lazy`: on
/// first use, so that the daemon starts and waits while a database is down), all at once.
pub async fn connect(
    cfg: Arc<Config>,
    cancel: CancellationToken,
    lazy: bool,
) -> Result<Ctx, AppError> {
    let (state, front, exchange) = tokio::join!(
        State::open_with(&cfg.agent.state_dir, cfg.agent.state_cipher.clone()),
        Db::connect(&cfg.source, "source", lazy),
        crate::sink::connect(&cfg, lazy),
    );
    // The first failure, in that order, is the one reported; whatever did open is closed.
    let (state, front, exchange) = match (state, front, exchange) {
        (Ok(st), Ok(f), Ok(x)) => (st, f, x),
        (state, front, exchange) => {
            let mut first = None;
            match state {
                Ok(st) => st.close().await,
                Err(e) => first = Some(AppError::runtime(e)),
            }
            match front {
                Ok(d) => d.close().await,
                Err(e) => {
                    first.get_or_insert(AppError::runtime(e));
                }
            }
            match exchange {
                Ok(x) => x.sink.close().await,
                Err(e) => {
                    first.get_or_insert(AppError::runtime(e));
                }
            }
            return Err(first.unwrap_or_else(|| AppError::runtime("cannot connect")));
        }
    };
    match state.rekey().await {
        Ok(0) => {}
        Ok(n) => tracing::info!("state_cipher: {n} stored value(s) encrypted with the current key"),
        Err(e) => {
            tokio::join!(state.close(), front.close(), exchange.sink.close());
            return Err(AppError::runtime(e));
        }
    }
    let front = Arc::new(front);
    let sides = crate::ctx::Sides::new(front.clone(), exchange.sink.clone(), exchange.db);
    let receipts = crate::sink::database::DatabaseReceipts::at_front(&cfg, &front)
        .unwrap_or(exchange.receipts);
    Ok(Ctx {
        cfg,
        front,
        exchange: exchange.sink,
        receipts,
        sides,
        state: Arc::new(state),
        cancel,
        probes: Default::default(),
        watch: Default::default(),
    })
}

/// Close both ends and the state store, all at once: each waits on its own server or disk.
pub async fn disconnect(ctx: &Ctx) {
    tokio::join!(ctx.front.close(), ctx.exchange.close(), ctx.state.close());
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
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
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

/// What a table run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// An incremental cycle.
    Cycle,
    /// The table's requested (or interrupted) full resync.
    Resync,
    /// The rejects `rejects resubmit` asked to be sent again.
    Resubmit,
}

/// Run one cycle or resync of a table, with its bookkeeping in the state store.
pub async fn run_one(
    ctx: &Ctx,
    spec: &TableSpec,
    plan: &mut Option<Plan>,
    what: What,
    once: bool,
    progress: Progress<'_>,
) -> Result<CycleReport, JobError> {
    let started = Instant::now();
    if let Err(e) = ctx.state.cycle_started(&spec.name, Utc::now()).await {
        tracing::warn!(table = %spec.name, "cannot record the start of the run: {e}");
    }
    if plan.is_none() {
        let prepared = match crate::job::ends(ctx, spec) {
            Ok(ends) => job::prepare(&ctx.cfg, ends, spec).await,
            Err(e) => Err(e),
        };
        match prepared {
            Ok(p) => *plan = Some(p),
            Err(e) => {
                record(ctx, spec, &Err(e.clone()), started).await;
                return Err(e);
            }
        }
    }
    let result = match (plan.as_ref(), what) {
        (Some(p), What::Cycle) => job::cycle(ctx, p, once).await,
        (Some(p), What::Resync) => job::resync::resync(ctx, p, progress).await,
        (Some(p), What::Resubmit) => resubmit_asked(ctx, p).await,
        (None, _) => Ok(CycleReport::default()),
    };
    if result.is_err() {
        // The tables may have changed: look at them again before the next run.
        *plan = None;
    }
    record(ctx, spec, &result, started).await;
    result
}

/// Send again the table's rejects that were asked for.
async fn resubmit_asked(ctx: &Ctx, plan: &Plan) -> Result<CycleReport, JobError> {
    let asked = ctx
        .state
        .asked(&plan.name)
        .await
        .map_err(|e| JobError::store(&plan.name, "reading asked resubmissions", e))?;
    if asked.is_empty() {
        return Ok(CycleReport::default());
    }
    let done = job::resubmit(ctx, plan, asked).await?;
    for r in &done.gone {
        tracing::warn!(
            table = %plan.name,
            "reject #{} (key {}) was not sent again: the row no longer exists at the source",
            r.id,
            r.key
        );
    }
    tracing::info!(table = %plan.name, sent = done.report.sent, quarantined = done.report.rejected, "rejects sent again on request");
    Ok(done.report)
}

async fn record(
    ctx: &Ctx,
    spec: &TableSpec,
    result: &Result<CycleReport, JobError>,
    started: Instant,
) {
    let (outcome, error, rows, warnings) = match result {
        Ok(r) if r.stopped => (
            Outcome::Stopped,
            None,
            r.sent + r.deleted,
            r.warnings.clone(),
        ),
        Ok(r) => (Outcome::Ok, None, r.sent + r.deleted, r.warnings.clone()),
        Err(e) => {
            let class = format!("{:?}", e.class).to_lowercase();
            metrics::counter!(crate::metrics::ERRORS, "table" => spec.name.clone(), "class" => class).increment(1);
            (Outcome::Failed, Some(e.to_string()), 0, Vec::new())
        }
    };
    metrics::counter!(crate::metrics::CYCLES, "table" => spec.name.clone(), "outcome" => outcome.as_str())
        .increment(1);
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
}

fn no_progress(_: u64, _: Option<u64>) {}

/// The daemon must not run beside `once` or an in-process resync on the same state.
fn refuse_beside_daemon(cfg: &Config, what: &str) -> Result<crate::lock::AgentLock, AppError> {
    crate::lock::acquire(&cfg.agent.state_dir).map_err(|e| {
        AppError::Runtime(format!(
            "{e}; it exchanges the tables on their schedules — {what} would run beside it. \
             Use `frontdb-agent resync` to ask it for a full resync, or stop it first"
        ))
    })
}

/// `once`: one cycle of each selected table; every row committed before the call is exchanged.
pub async fn once(cfg: Config, table: Option<&str>) -> Result<(), AppError> {
    let cfg = Arc::new(cfg);
    let names: Vec<String> = selected(&cfg, table)?
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let _lock = refuse_beside_daemon(&cfg, "`once`")?;
    let cancel = CancellationToken::new();
    stop_on_signals(cancel.clone(), cfg.agent.stop_timeout);
    let ctx = connect(cfg.clone(), cancel.clone(), false).await?;
    let mut failures = Vec::new();
    for name in &names {
        let Some(spec) = cfg.tables.iter().find(|s| &s.name == name) else {
            continue;
        };
        let mut plan = None;
        match run_one(&ctx, spec, &mut plan, What::Cycle, true, &no_progress).await {
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
    if feedback_wanted(&cfg) && !cancel.is_cancelled() {
        let mut plans = crate::feedback::Plans::new();
        match crate::feedback::pass(&ctx, &mut plans).await {
            Ok(r) => println!(
                "feedback: {} rejection(s) read from the province, {} cleared, {} mirrored{}",
                r.read,
                r.cleared,
                r.mirrored,
                if r.unknown > 0 {
                    format!(", {} for tables this agent does not exchange", r.unknown)
                } else {
                    String::new()
                }
            ),
            Err(e) => {
                tracing::error!("{e}");
                failures.push(e.to_string());
            }
        }
    }
    let keep = chrono::Duration::from_std(cfg.agent.ledger_retention).unwrap_or_default();
    let _ = ctx.state.prune_ledger(Utc::now() - keep).await;
    disconnect(&ctx).await;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(AppError::Runtime(failures.join("\n")))
    }
}

/// Whether a feedback pass has anything to do.
pub fn feedback_wanted(cfg: &Config) -> bool {
    let returns = matches!(&cfg.exchange.target,
        crate::config::ExchangeTarget::File(f) if f.return_dir.is_some());
    cfg.feedback.kind != crate::config::FeedbackKind::None
        || cfg.feedback.mirror_table.is_some()
        || returns
}

/// The daemon's feedback task: a pass on `[feedback] schedule`.
pub async fn feedback_loop(ctx: Arc<Ctx>) {
    let timer = Timer {
        schedule: ctx.cfg.feedback.schedule.clone(),
        jitter: Duration::ZERO,
    };
    let tz = ctx.cfg.agent.tz;
    let mut plans = crate::feedback::Plans::new();
    let mut failures = 0u32;
    loop {
        match crate::feedback::pass(&ctx, &mut plans).await {
            Ok(r) => {
                failures = 0;
                if r.read + r.cleared + r.unknown > 0 {
                    tracing::info!(
                        read = r.read,
                        cleared = r.cleared,
                        unknown = r.unknown,
                        mirrored = r.mirrored,
                        "feedback read"
                    );
                }
            }
            Err(e) => {
                failures += 1;
                plans.clear();
                if failures.is_power_of_two() {
                    tracing::error!(attempt = failures, "{e}");
                }
            }
        }
        let next = timer
            .next(Utc::now(), &tz, 0.0)
            .unwrap_or(Utc::now() + chrono::Duration::minutes(5));
        tokio::select! {
            _ = sleep_until(next, Utc::now()) => {}
            _ = ctx.cancel.cancelled() => break,
        }
    }
}

/// `resync` when no daemon runs: resync the selected tables here, with a progress bar on a
/// terminal. An interrupted resync resumes from its last chunk the next time.
pub async fn resync_now(cfg: Arc<Config>, table: Option<&str>) -> Result<(), AppError> {
    let names: Vec<String> = selected(&cfg, table)?
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let _lock = refuse_beside_daemon(&cfg, "a resync")?;
    let cancel = CancellationToken::new();
    stop_on_signals(cancel.clone(), cfg.agent.stop_timeout);
    let ctx = connect(cfg.clone(), cancel.clone(), false).await?;
    let mut failures = Vec::new();
    for name in &names {
        let Some(spec) = cfg.tables.iter().find(|s| &s.name == name) else {
            continue;
        };
        if let Err(e) = ctx.state.request_resync(&spec.name).await {
            failures.push(e.to_string());
            continue;
        }
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} rows {percent}% ({eta} left)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(spec.name.clone());
        let progress = |done: u64, total: Option<u64>| {
            if let Some(t) = total {
                bar.set_length(t.max(done));
            }
            bar.set_position(done);
        };
        let mut plan = None;
        let result = run_one(&ctx, spec, &mut plan, What::Resync, true, &progress).await;
        bar.finish_and_clear();
        match result {
            Ok(r) if r.stopped => {
                println!(
                    "{}: resync stopped; it resumes from its last chunk next time",
                    spec.name
                );
                failures.push(format!("table {}: resync stopped by a signal", spec.name));
            }
            Ok(r) => {
                println!(
                    "{}: full resync done: {} row(s) sent, {} removed at the exchange, {} quarantined",
                    spec.name, r.sent, r.deleted, r.rejected
                );
                for w in &r.warnings {
                    println!("  warning: {w}");
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
    disconnect(&ctx).await;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(AppError::Runtime(failures.join("\n")))
    }
}
