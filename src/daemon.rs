//! The daemon (`run`): every table on its schedule; full resyncs on request (SIGUSR1,
//! `frontdb-agent resync`, `run --full-resync`); configuration reload on SIGHUP (the new file
//! is swapped in only if it is valid); systemd readiness, status and watchdog; graceful stop.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, Config};
use crate::error::AppError;
use crate::job::Ctx;
use crate::runner::{self, Wake};

/// `run`: the daemon, until SIGTERM or SIGINT.
pub async fn run(cfg: Config, full_resync: bool) -> Result<(), AppError> {
    let _lock = crate::lock::acquire(&cfg.agent.state_dir).map_err(AppError::Runtime)?;
    let root = CancellationToken::new();
    runner::stop_on_signals(root.clone(), cfg.agent.stop_timeout);
    let mut signals = crate::audit::signals()
        .map_err(|e| AppError::Runtime(format!("cannot listen for signals: {e}")))?;
    watchdog(root.clone());
    let mut cfg = Arc::new(cfg);
    let mut first = true;
    loop {
        let generation = root.child_token();
        let ctx = Arc::new(runner::connect(cfg.clone(), generation.clone(), true).await?);
        if first {
            if let Err(e) = ctx
                .state
                .set_meta("daemon:started", &crate::state::ts(Utc::now()))
                .await
            {
                tracing::warn!("cannot record the daemon's start: {e}");
            }
            let (front, exchange) = tokio::join!(ctx.front.now(), ctx.exchange.health());
            if let Err(e) = front {
                tracing::warn!(
                    "the source database is not reachable yet; the agent keeps trying: {e}"
                );
            }
            if let Err(e) = exchange {
                tracing::warn!(
                    "the {} is not reachable yet; the agent keeps trying: {e}",
                    ctx.exchange.place()
                );
            }
            if full_resync {
                request_all(&ctx, None).await;
            }
        }
        let wakes: HashMap<String, Arc<Wake>> = cfg
            .tables
            .iter()
            .filter(|t| t.enabled)
            .map(|t| (t.name.clone(), Arc::new(Wake::default())))
            .collect();
        if cfg.agent.metrics.is_some() {
            crate::metrics::install();
        }
        for (name, w) in &wakes {
            let w = w.clone();
            ctx.watch
                .wake_with(name, Arc::new(move || w.data.notify_one()));
        }
        let tracker = TaskTracker::new();
        for (i, spec) in cfg.tables.iter().enumerate() {
            if let Some(w) = wakes.get(&spec.name) {
                tracker.spawn(runner::table_loop(ctx.clone(), i, w.clone()));
            }
        }
        tracker.spawn(control(ctx.clone(), wakes.clone()));
        tracker.spawn(crate::control::serve(ctx.clone()));
        tracker.spawn(housekeeping(ctx.clone()));
        tracker.spawn(flush(ctx.clone()));
        tracker.spawn(report(ctx.clone()));
        tracker.spawn(crate::health::patrol(ctx.clone()));
        tracker.spawn(crate::alert::watch(ctx.clone()));
        if cfg.agent.metrics.is_some() {
            tracker.spawn(crate::health::serve(ctx.clone()));
        }
        if cfg.agent.console.is_some() {
            tracker.spawn(crate::console::serve(ctx.clone()));
        }
        if runner::feedback_wanted(&cfg) {
            tracker.spawn(runner::feedback_loop(ctx.clone()));
        }
        let mut channels: HashMap<String, Vec<Arc<Wake>>> = HashMap::new();
        for spec in cfg.tables.iter().filter(|t| t.enabled) {
            if let (Some(ch), Some(w)) = (&spec.notify, wakes.get(&spec.name)) {
                channels.entry(ch.to_string()).or_default().push(w.clone());
            }
        }
        if !channels.is_empty() {
            tracker.spawn(listen(ctx.clone(), channels));
        }
        tracker.close();
        let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("exchanging")]);
        tracing::info!(agent = %cfg.agent.id, tables = wakes.len(), "frontdb-agent running");
        first = false;
        let reload = loop {
            tokio::select! {
                _ = root.cancelled() => break None,
                Some(s) = signals.recv() => {
                    if s.signal == signal_hook::consts::SIGHUP {
                        let new = reloaded(&cfg);
                        let detail = match &new {
                            Some(_) => "SIGHUP: the new configuration is taken into use",
                            None => "SIGHUP: the new configuration is not valid; the running one stays",
                        };
                        audit(&ctx, &s.who, "reload", detail).await;
                        if let Some(new) = new {
                            break Some(new);
                        }
                    } else {
                        tracing::info!("SIGUSR1: full resync of every table requested");
                        audit(&ctx, &s.who, "resync", "every table (SIGUSR1)").await;
                        request_all(&ctx, Some(&wakes)).await;
                    }
                }
            }
        };
        if reload.is_some() {
            let _ = sd_notify::notify(&[NotifyState::Reloading]);
            tracing::info!(
                "reloading: finishing the batches in flight, then switching configuration"
            );
        }
        generation.cancel();
        tracker.wait().await;
        runner::disconnect(&ctx).await;
        match reload {
            Some(new) => {
                cfg = Arc::new(new);
                tracing::info!("configuration reloaded from {}", cfg.file.display());
            }
            None => break,
        }
    }
    tracing::info!("frontdb-agent stopped");
    Ok(())
}

/// Record in the state store and the log who asked the daemon for what.
async fn audit(ctx: &Ctx, who: &str, action: &str, detail: &str) {
    tracing::info!(%who, action, "{detail}");
    if let Err(e) = ctx.state.audit(who, action, Some(detail)).await {
        tracing::warn!("{e}");
    }
}

/// Read the configuration again after SIGHUP; `None` (the running one stays) when invalid.
fn reloaded(running: &Config) -> Option<Config> {
    match config::load(&running.file) {
        Err(e) => {
            tracing::error!(
                "SIGHUP: the configuration is not valid, the running one stays in use: {e}"
            );
            None
        }
        Ok(new) if new.agent.state_dir != running.agent.state_dir => {
            tracing::error!(
                "SIGHUP: state_dir cannot change while the agent runs ({} -> {}); the running \
                 configuration stays in use — restart the service to move the state",
                running.agent.state_dir.display(),
                new.agent.state_dir.display()
            );
            None
        }
        Ok(new) => Some(new),
    }
}

/// Request a full resync of every enabled table and wake them.
async fn request_all(ctx: &Ctx, wakes: Option<&HashMap<String, Arc<Wake>>>) {
    for spec in ctx.cfg.tables.iter().filter(|t| t.enabled) {
        match ctx.state.request_resync(&spec.name).await {
            Ok(_) => {
                if let Some(w) = wakes.and_then(|w| w.get(&spec.name)) {
                    w.pending.store(true, Ordering::Relaxed);
                    w.asked.notify_one();
                }
            }
            Err(e) => tracing::error!(table = %spec.name, "cannot request a resync: {e}"),
        }
    }
}

/// Wake the tables whose resync was requested (by `frontdb-agent resync`, or interrupted)
/// or whose rejects are to be sent again (`frontdb-agent rejects resubmit`).
async fn control(ctx: Arc<Ctx>, wakes: HashMap<String, Arc<Wake>>) {
    loop {
        let (resyncs, resubmits) =
            tokio::join!(ctx.state.pending_resyncs(), ctx.state.asked_tables());
        let asked: HashSet<String> = resyncs.into_iter().chain(resubmits).flatten().collect();
        for (t, w) in &wakes {
            let now = asked.contains(t);
            w.pending.store(now, Ordering::Relaxed);
            if now {
                w.asked.notify_one();
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = ctx.cancel.cancelled() => break,
        }
    }
}

/// Write what the state store keeps in memory (quiet runs, quiet re-reads) every few
/// minutes, all tables in one transaction.
async fn flush(ctx: Arc<Ctx>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(crate::state::FLUSH_EVERY) => {}
            _ = ctx.cancel.cancelled() => break,
        }
        if let Err(e) = ctx.state.flush().await {
            tracing::warn!("cannot record the tables' last runs: {e}");
        }
    }
}

/// The retention's purge, at start and every `purge_every`.
async fn housekeeping(ctx: Arc<Ctx>) {
    loop {
        crate::purge::scheduled(&ctx.state, &ctx.cfg).await;
        tokio::select! {
            _ = tokio::time::sleep(ctx.cfg.agent.purge_every) => {}
            _ = ctx.cancel.cancelled() => break,
        }
    }
}

/// Wake tables when the PostgreSQL source NOTIFYs their channel.
async fn listen(ctx: Arc<Ctx>, channels: HashMap<String, Vec<Arc<Wake>>>) {
    let names: Vec<&str> = channels.keys().map(String::as_str).collect();
    let mut delay = Duration::from_secs(1);
    loop {
        match ctx.front.listen(&names).await {
            Ok(mut l) => {
                tracing::info!(channels = ?names, "listening for notifications");
                delay = Duration::from_secs(1);
                loop {
                    tokio::select! {
                        n = l.recv() => match n {
                            Ok(n) => {
                                for w in channels.get(n.channel()).into_iter().flatten() {
                                    w.data.notify_one();
                                }
                            }
                            Err(e) => {
                                tracing::warn!("notification listener: {e}; listening again");
                                break;
                            }
                        },
                        _ = ctx.cancel.cancelled() => return,
                    }
                }
            }
            Err(e) => tracing::warn!("cannot LISTEN on {names:?}: {e}; trying again in {delay:?}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = ctx.cancel.cancelled() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// One line for `systemctl status`: how the tables are doing.
async fn summary(ctx: &Ctx) -> String {
    let state = &ctx.state;
    let tables = state.tables().await.unwrap_or_default();
    let enabled: Vec<&str> = ctx
        .cfg
        .tables
        .iter()
        .filter(|t| t.enabled)
        .map(|t| t.name.as_str())
        .collect();
    let failing: Vec<&str> = tables
        .iter()
        .filter(|t| t.failures > 0 && enabled.contains(&t.table.as_str()))
        .map(|t| t.table.as_str())
        .collect();
    let mut s = format!("{} table(s)", enabled.len());
    if failing.is_empty() {
        s.push_str(", all exchanging");
    } else {
        s.push_str(&format!(", failing: {}", failing.join(", ")));
    }
    for t in state.pending_resyncs().await.unwrap_or_default() {
        if let Ok(Some(r)) = state.resync_of(&t).await {
            match r.total.filter(|t| *t > 0) {
                Some(total) => s.push_str(&format!("; resync {t} {}%", r.rows * 100 / total)),
                None => s.push_str(&format!("; resync {t} {}", r.state)),
            }
        }
    }
    s
}

async fn report(ctx: Arc<Ctx>) {
    loop {
        let s = summary(&ctx).await;
        let _ = sd_notify::notify(&[NotifyState::Status(&s)]);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = ctx.cancel.cancelled() => break,
        }
    }
}

/// Ping the systemd watchdog while the runtime is alive (when the unit asks for it).
fn watchdog(root: CancellationToken) {
    let Some(every) = sd_notify::watchdog_enabled() else {
        return;
    };
    tokio::spawn(async move {
        loop {
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            tokio::select! {
                _ = tokio::time::sleep(every / 2) => {}
                _ = root.cancelled() => break,
            }
        }
    });
}
