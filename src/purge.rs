//! `purge`: forget, for good, what the retention of `[agent]` no longer keeps (also run by
//! the daemon every `purge_every`), and say how much of each kind went.

use chrono::{DateTime, NaiveDate, Utc};

use crate::config::Config;
use crate::error::AppError;
use crate::state::{PurgePlan, Purged, State};

/// The plan the configuration's retention makes at `now`; `before` replaces every cut-off.
pub fn plan(cfg: &Config, now: DateTime<Utc>, before: Option<DateTime<Utc>>) -> PurgePlan {
    let ago = |d: std::time::Duration| now - chrono::Duration::from_std(d).unwrap_or_default();
    PurgePlan {
        ledger_before: before.unwrap_or_else(|| ago(cfg.agent.ledger_retention)),
        cleared_before: before.unwrap_or_else(|| ago(cfg.agent.reject_retention)),
        configured: cfg.tables.iter().map(|t| t.name.clone()).collect(),
    }
}

/// `--before`: a date (midnight in the agent's time zone) or an RFC 3339 instant.
pub fn parse_before(cfg: &Config, s: &str) -> Result<DateTime<Utc>, AppError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|d| d.and_local_timezone(cfg.agent.tz).earliest())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| {
            AppError::Usage(format!(
                "--before `{s}` is not a date: write 2026-01-31 or 2026-01-31T00:00:00+08:00"
            ))
        })
}

/// What a purge did, one kind a line.
pub fn describe(p: &Purged, dry_run: bool) -> String {
    let verb = if dry_run { "would remove" } else { "removed" };
    format!(
        "{verb}: {} acknowledged batch(es) of the ledger, {} cleared reject(s) with {} line(s) \
         of their history, {} digest(s) of tables no longer configured",
        p.acknowledged_batches, p.cleared_rejects, p.reject_history, p.unconfigured_digests
    )
}

/// `frontdb-agent purge [--before DATE] [--dry-run]`.
pub async fn run(cfg: &Config, before: Option<&str>, dry_run: bool) -> Result<(), AppError> {
    let before = before.map(|b| parse_before(cfg, b)).transpose()?;
    if !cfg.agent.state_dir.join("state.db").exists() {
        println!("no state store yet: nothing to purge");
        return Ok(());
    }
    let state = State::open(&cfg.agent.state_dir)
        .await
        .map_err(AppError::runtime)?;
    let mut done = state.purge(&plan(cfg, Utc::now(), before), dry_run).await;
    // Asked by hand, the files are compacted and the log emptied even when nothing was due.
    if !dry_run && matches!(&done, Ok(p) if p.total() == 0) {
        done = state.reclaim().await.map(|()| Purged::default());
    }
    let done = match done {
        Ok(p) => p,
        Err(e) => {
            state.close().await;
            return Err(AppError::runtime(e));
        }
    };
    let line = describe(&done, dry_run);
    if !dry_run {
        let who = crate::audit::local_user();
        tracing::info!(%who, "purge: {line}");
        let detail = match before {
            Some(b) => format!("{line} (before {})", crate::state::ts(b)),
            None => line.clone(),
        };
        if let Err(e) = state.audit(&who, "purge", Some(&detail)).await {
            state.close().await;
            return Err(AppError::runtime(e));
        }
    }
    state.close().await;
    println!("{line}");
    Ok(())
}

/// The daemon's purge, every `purge_every`.
pub async fn scheduled(state: &State, cfg: &Config) {
    match state.purge(&plan(cfg, Utc::now(), None), false).await {
        Ok(p) if p.total() > 0 => {
            let line = describe(&p, false);
            tracing::info!("retention: {line}");
            if let Err(e) = state
                .audit("frontdb-agent (scheduled)", "purge", Some(&line))
                .await
            {
                tracing::warn!("{e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("retention: {e}"),
    }
}
