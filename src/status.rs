//! `status`: per table, where the exchange stands — read from the state store, so it works
//! whether or not the daemon runs.

use chrono::Utc;
use serde::Serialize;

use crate::config::Config;
use crate::error::AppError;
use crate::state::{Resync, State, TableState, parse_ts};

#[derive(Debug, Serialize)]
pub struct TableStatus {
    pub table: String,
    pub source: String,
    pub target: String,
    pub mode: &'static str,
    pub schedule: String,
    pub enabled: bool,
    #[serde(flatten)]
    pub state: TableState,
    /// The table's last or current full resync.
    pub resync: Option<Resync>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub agent: String,
    /// Process id of the daemon running with this state directory, if one runs.
    pub daemon_pid: Option<u32>,
    pub state_dir: String,
    pub generated_at: String,
    pub tables: Vec<TableStatus>,
}

/// Collect the status of every configured table (tables never run show empty figures).
pub async fn collect(cfg: &Config) -> Result<Status, AppError> {
    let mut resyncs = std::collections::HashMap::new();
    let known = if cfg.agent.state_dir.join("state.db").exists() {
        let st = State::open(&cfg.agent.state_dir)
            .await
            .map_err(AppError::runtime)?;
        let t = st.tables().await.map_err(AppError::runtime)?;
        for spec in &cfg.tables {
            if let Some(r) = st.resync_of(&spec.name).await.map_err(AppError::runtime)? {
                resyncs.insert(spec.name.clone(), r);
            }
        }
        st.close().await;
        t
    } else {
        Vec::new()
    };
    let tables = cfg
        .tables
        .iter()
        .map(|spec| TableStatus {
            resync: resyncs.remove(&spec.name),
            table: spec.name.clone(),
            source: spec.source.to_string(),
            target: spec.target.to_string(),
            mode: spec.watermark.kind(),
            schedule: spec.schedule.to_string(),
            enabled: spec.enabled,
            state: known
                .iter()
                .find(|k| k.table == spec.name)
                .cloned()
                .unwrap_or_else(|| TableState {
                    table: spec.name.clone(),
                    ..TableState::default()
                }),
        })
        .collect();
    Ok(Status {
        agent: cfg.agent.id.clone(),
        daemon_pid: crate::lock::holder(&cfg.agent.state_dir),
        state_dir: cfg.agent.state_dir.display().to_string(),
        generated_at: crate::state::ts(Utc::now()),
        tables,
    })
}

pub async fn status(cfg: &Config, json: bool) -> Result<(), AppError> {
    let st = collect(cfg).await?;
    if json {
        let text = serde_json::to_string_pretty(&st).map_err(AppError::runtime)?;
        println!("{text}");
        return Ok(());
    }
    let tz = cfg.agent.tz;
    let local = |s: &Option<String>| {
        s.as_deref()
            .and_then(parse_ts)
            .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| "-".into())
    };
    println!("agent {}  (state in {})", st.agent, st.state_dir);
    match st.daemon_pid {
        Some(pid) => println!("daemon          running (pid {pid})"),
        None => println!("daemon          not running"),
    }
    for t in &st.tables {
        let s = &t.state;
        let outcome = s.last_outcome.as_deref().unwrap_or("never run");
        println!();
        println!(
            "{}  [{}]  {} -> {}  mode {}  schedule {}{}",
            t.table,
            outcome,
            t.source,
            t.target,
            t.mode,
            t.schedule,
            if t.enabled { "" } else { "  (disabled)" }
        );
        println!(
            "  watermark       {}",
            s.watermark.as_deref().unwrap_or("-")
        );
        println!(
            "  last run        {}  ({} row(s), {} ms)",
            local(&s.last_finished),
            s.last_rows.unwrap_or(0),
            s.last_ms.unwrap_or(0)
        );
        println!("  next run        {}", local(&s.next_run));
        println!(
            "  exchanged       {} row(s), {} delete(s); newest change {}",
            s.rows_total,
            s.deletes_total,
            local(&s.newest_change)
        );
        println!("  open rejects    {}", s.open_rejects);
        if let Some(r) = &t.resync {
            let pct = r
                .total
                .filter(|t| *t > 0)
                .map(|total| format!(" {}%", (r.rows * 100 / total).min(100)))
                .unwrap_or_default();
            let when = match r.state.as_str() {
                "done" | "failed" => format!(", finished {}", local(&r.finished)),
                _ => format!(", started {}", local(&r.started)),
            };
            println!(
                "  full resync     {}{pct} ({} row(s) sent in {} chunk(s), {} removed at the exchange{when})",
                r.state, r.rows, r.chunks, r.deleted
            );
            if let Some(e) = &r.error {
                println!("  resync error    {e}");
            }
        }
        if s.failures > 0 {
            println!(
                "  FAILING         since {} ({} attempt(s) in a row)",
                local(&s.failing_since),
                s.failures
            );
        }
        if let Some(e) = &s.last_error {
            println!("  last error      {e}");
        }
        for w in &s.warnings {
            println!("  warning         {w}");
        }
    }
    Ok(())
}
