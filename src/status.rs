//! `status`: is the exchange healthy — per table where it stands, how far behind, what failed,
//! what is next; the daemon's uptime and whether the databases answer. Read from the state
//! store, so it works whether or not the daemon runs.

use std::collections::HashMap;

use chrono::Utc;
use serde::Serialize;
use unicode_width::UnicodeWidthStr;

use crate::config::Config;
use crate::error::AppError;
use crate::health::{Reach, reach};
use crate::state::{Resync, ResyncState, State, TableState, parse_ts};

#[derive(Debug, Serialize)]
pub struct TableStatus {
    pub table: String,
    pub source: String,
    pub target: String,
    /// `up` (front-end to exchange) or `down` (exchange to front-end).
    pub direction: crate::config::Direction,
    pub mode: &'static str,
    pub schedule: String,
    pub enabled: bool,
    #[serde(flatten)]
    pub state: TableState,
    /// Now minus the newest change time exchanged (timestamp-like watermarks).
    pub lag_seconds: Option<i64>,
    /// The table's last or current full resync.
    pub resync: Option<Resync>,
    /// Outbound shaping: the sharing class, the masked columns, the scope.
    pub sharing: &'static str,
    pub masked: Vec<String>,
    pub filter: Option<String>,
    /// Tables of a data category: the deadline of the next successful exchange, and
    /// whether the table is on time, at risk or late, since when.
    pub compliance: Option<crate::compliance::Compliance>,
}

#[derive(Debug, Serialize)]
pub struct Daemon {
    pub running: bool,
    pub pid: Option<u32>,
    pub started: Option<String>,
    pub uptime_seconds: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub agent: String,
    pub state_dir: String,
    pub generated_at: String,
    /// Process id of the daemon running with this state directory, if one runs.
    pub daemon_pid: Option<u32>,
    pub daemon: Daemon,
    /// What the daemon's patrol last saw: `source`, `exchange`, and `feedback` when read from
    /// a table.
    pub databases: HashMap<String, Reach>,
    pub tables: Vec<TableStatus>,
    /// The latest actions people asked for (resubmit, resync, purge, reload), newest first.
    pub actions: Vec<crate::state::AuditEntry>,
}

/// Collect the status of every configured table (tables never run show empty figures).
pub async fn collect(cfg: &Config) -> Result<Status, AppError> {
    let now = Utc::now();
    let pid = crate::lock::holder(&cfg.agent.state_dir);
    let mut resyncs = HashMap::new();
    let mut databases = HashMap::new();
    let mut started = None;
    let mut actions = Vec::new();
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
        for name in ["source", "exchange", "feedback"] {
            if let Some(r) = reach(&st, name).await {
                databases.insert(name.to_owned(), r);
            }
        }
        started = st.meta("daemon:started").await.map_err(AppError::runtime)?;
        actions = st.audit_trail(5, None).await.map_err(AppError::runtime)?;
        st.close().await;
        t
    } else {
        Vec::new()
    };
    // A running daemon keeps its quiet runs in memory: it says what they are.
    let mut known = known;
    if pid.is_some()
        && let Some(a) = crate::control::ask(&cfg.agent.state_dir).await
    {
        for t in &mut known {
            if let Some(r) = a.runs.get(&t.table) {
                t.overlay(r);
            }
        }
        for (name, r) in a.runs {
            if !known.iter().any(|t| t.table == name) {
                let mut t = TableState {
                    table: name,
                    ..TableState::default()
                };
                t.overlay(&r);
                known.push(t);
            }
        }
        databases.extend(a.reach);
    }
    let origin = started.as_deref().and_then(parse_ts);
    let tables = cfg
        .tables
        .iter()
        .map(|spec| {
            let state = known
                .iter()
                .find(|k| k.table == spec.name)
                .cloned()
                .unwrap_or_else(|| TableState {
                    table: spec.name.clone(),
                    ..TableState::default()
                });
            let lag_seconds = state
                .newest_change
                .as_deref()
                .and_then(parse_ts)
                .map(|t| (now - t).num_seconds().max(0));
            let compliance = crate::compliance::assess(
                spec.category.as_deref(),
                &state,
                origin,
                cfg.agent.at_risk_margin,
                now,
            );
            TableStatus {
                table: spec.name.clone(),
                source: spec.source.to_string(),
                target: spec.target.to_string(),
                direction: spec.direction,
                mode: spec.watermark.kind(),
                schedule: spec.schedule.to_string(),
                enabled: spec.enabled,
                state,
                lag_seconds,
                resync: resyncs.remove(&spec.name),
                sharing: spec.shape.sharing.as_str(),
                masked: crate::shape::describe_masks(&spec.shape.masks),
                filter: spec.shape.scope.as_ref().map(ToString::to_string),
                compliance,
            }
        })
        .collect();
    let started = started.filter(|_| pid.is_some());
    Ok(Status {
        agent: cfg.agent.id.clone(),
        state_dir: cfg.agent.state_dir.display().to_string(),
        generated_at: crate::state::ts(now),
        daemon_pid: pid,
        daemon: Daemon {
            running: pid.is_some(),
            pid,
            uptime_seconds: started
                .as_deref()
                .and_then(parse_ts)
                .map(|s| (now - s).num_seconds().max(0)),
            started,
        },
        databases,
        tables,
        actions,
    })
}

/// Pad to a display width (Chinese characters take two columns).
pub fn pad(s: &str, width: usize) -> String {
    let w = UnicodeWidthStr::width(s);
    format!("{s}{}", " ".repeat(width.saturating_sub(w)))
}

/// A duration in its two largest units: `3d 11h`, `51m 36s`, `4s`.
pub fn short(d: i64) -> String {
    let d = d.max(0);
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = d;
    for (size, unit) in units {
        if rest >= size || (parts.is_empty() && size == 1) {
            parts.push(format!("{}{unit}", rest / size));
            rest %= size;
        } else if !parts.is_empty() {
            parts.push(String::new());
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.retain(|p| !p.is_empty());
    parts.join(" ")
}

/// Milliseconds as `850ms`, `3.2s`, `4m 10s`.
fn took(ms: i64) -> String {
    match ms {
        ..1_000 => format!("{}ms", ms.max(0)),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => short(ms / 1000),
    }
}

pub async fn status(cfg: &Config, json: bool) -> Result<(), AppError> {
    let st = collect(cfg).await?;
    if json {
        let text = serde_json::to_string_pretty(&st).map_err(AppError::runtime)?;
        println!("{text}");
        return Ok(());
    }
    let local = Local(cfg.agent.tz);
    print_agent(&st, &local);
    println!();
    print_tables(&st, &local);
    if !st.actions.is_empty() {
        println!();
        println!("{}", crate::tc!("status-latest-actions"));
        for a in &st.actions {
            println!(
                "  {}  {}: {}",
                local.of(Some(&a.at)),
                crate::tc!("asked-by", action = a.action.as_str(), who = a.who.as_str()),
                brief(a.detail.as_deref().unwrap_or(""))
            );
        }
    }
    for t in &st.tables {
        let notes = notes(t, &local);
        if !notes.is_empty() {
            println!();
            println!("{} ({} -> {}):", t.table, t.source, t.target);
            for n in notes {
                println!("  {n}");
            }
        }
    }
    Ok(())
}

/// A long detail (`rejects resubmit --all` names every reject) cut to one line.
fn brief(s: &str) -> String {
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Times shown in the agent's time zone.
struct Local(chrono_tz::Tz);

impl Local {
    fn of(&self, s: Option<&str>) -> String {
        s.and_then(parse_ts)
            .map(|t| {
                t.with_timezone(&self.0)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_else(|| "-".into())
    }
}

/// The daemon, the state directory, and whether each database answers.
fn print_agent(st: &Status, local: &Local) {
    let agent = st.agent.as_str();
    match (st.daemon.pid, st.daemon.uptime_seconds) {
        (Some(pid), Some(up)) => println!(
            "{}",
            crate::tc!(
                "status-agent-running",
                agent = agent,
                pid = pid,
                up = short(up)
            )
        ),
        (Some(pid), None) => println!(
            "{}",
            crate::tc!("status-agent-running-bare", agent = agent, pid = pid)
        ),
        _ => println!("{}", crate::tc!("status-agent-stopped", agent = agent)),
    }
    println!(
        "{}",
        crate::tc!("status-state-in", dir = st.state_dir.as_str())
    );
    for name in ["source", "exchange", "feedback"] {
        if let Some(r) = st.databases.get(name) {
            if r.up {
                println!(
                    "{}",
                    crate::tc!(
                        "status-db-answers",
                        name = pad(name, 9),
                        at = local.of(Some(&r.checked))
                    )
                );
            } else {
                println!(
                    "{}",
                    crate::tc!(
                        "status-db-down",
                        name = pad(name, 9),
                        since = local.of(Some(&r.since)),
                        error = r.error.clone().unwrap_or_default()
                    )
                );
            }
        }
    }
}

/// One line per table, in columns.
fn print_tables(st: &Status, local: &Local) {
    let header = [
        "status-head-table",
        "status-head-dir",
        "status-head-schedule",
        "status-head-last-run",
        "status-head-took",
        "status-head-result",
        "status-head-rows",
        "status-head-rows-24h",
        "status-head-lag",
        "status-head-next-run",
        "status-head-rejects",
        "status-head-frequency",
    ]
    .map(|id| crate::tc!(id));
    let rows: Vec<[String; 12]> = st
        .tables
        .iter()
        .map(|t| {
            let s = &t.state;
            let result = match (s.last_outcome.as_deref(), s.failures) {
                (_, f) if f > 0 => crate::tc!("status-failing", n = f),
                (Some(o), _) => o.to_owned(),
                (None, _) => crate::tc!("status-never-run"),
            };
            [
                if t.enabled {
                    t.table.clone()
                } else {
                    crate::tc!("status-off", table = t.table.as_str())
                },
                t.direction.as_str().to_owned(),
                t.schedule.clone(),
                local.of(s.last_finished.as_deref()),
                s.last_ms.map(took).unwrap_or_else(|| "-".into()),
                result,
                s.last_rows
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "-".into()),
                s.rows_24h.to_string(),
                t.lag_seconds.map(short).unwrap_or_else(|| "-".into()),
                local.of(s.next_run.as_deref()),
                s.open_rejects.to_string(),
                t.compliance
                    .as_ref()
                    .map_or_else(|| "-".into(), |c| c.standing.as_str().to_owned()),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| UnicodeWidthStr::width(r[i].as_str()))
                .chain([UnicodeWidthStr::width(header[i].as_str())])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| pad(c, *w))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!("{}", line(header.iter().map(String::as_str).collect()));
    for r in &rows {
        println!("{}", line(r.iter().map(String::as_str).collect()));
    }
}

/// What there is to say about a table beyond its line: its watermark, its failures and
/// warnings, its resync.
fn notes(t: &TableStatus, local: &Local) -> Vec<String> {
    let s = &t.state;
    let mut notes = crate::shape::notes(t.sharing, &t.masked, t.filter.as_deref());
    if let Some(w) = &s.watermark {
        notes.push(crate::tc!(
            "status-watermark",
            mode = t.mode,
            watermark = w.as_str()
        ));
    }
    if let Some(c) = &t.compliance {
        notes.push(format!(
            "category {} (at least every {}): {} since {}, next successful exchange due by {}: {}",
            c.category,
            crate::compliance::words(std::time::Duration::from_secs(c.limit_seconds)),
            c.standing.as_str(),
            local.of(c.since.as_deref()),
            local.of(c.deadline.as_deref()),
            c.reason
        ));
    }
    if s.failures > 0 {
        notes.push(crate::tc!(
            "status-failing-since",
            since = local.of(s.failing_since.as_deref()),
            n = s.failures
        ));
    }
    if let Some(e) = &s.last_error {
        notes.push(crate::tc!("status-last-error", error = e.as_str()));
    }
    for w in &s.warnings {
        notes.push(crate::tc!("status-warning", warning = w.as_str()));
    }
    if let Some(r) = &t.resync {
        let pct = r
            .total
            .filter(|t| *t > 0)
            .map(|total| format!(" {}%", (r.rows * 100 / total).min(100)))
            .unwrap_or_default();
        let when = match r.state {
            ResyncState::Done | ResyncState::Failed => {
                format!(", finished {}", local.of(r.finished.as_deref()))
            }
            _ => format!(", started {}", local.of(r.started.as_deref())),
        };
        notes.push(format!(
            "full resync {}{pct}: {} row(s) sent in {} chunk(s), {} removed at the exchange{when}",
            r.state, r.rows, r.chunks, r.deleted
        ));
        if let Some(e) = &r.error {
            notes.push(format!("resync error: {e}"));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_counts_chinese_as_two_columns() {
        assert_eq!(pad("监管", 6), "监管  ");
        assert_eq!(pad("ab", 4), "ab  ");
        assert_eq!(pad("监管行为表", 4), "监管行为表");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short(0), "0s");
        assert_eq!(short(36), "36s");
        assert_eq!(short(3096), "51m 36s");
        assert_eq!(short(3600), "1h");
        assert_eq!(short(3 * 86_400 + 11 * 3600 + 51 * 60), "3d 11h");
        assert_eq!(short(86_400 + 5), "1d");
        assert_eq!(took(850), "850ms");
        assert_eq!(took(3_250), "3.2s");
        assert_eq!(took(250_000), "4m 10s");
    }
}
