//! What each page shows, as data: the same structures are rendered as HTML and returned as
//! JSON under `/api/`. The figures come from where `status` and `rejects` take theirs.

use chrono::{DateTime, NaiveDateTime, Offset, TimeZone, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::error::AppError;
use crate::state::{BatchRow, Day, RejectRow, Resync, State, parse_ts};
use crate::status::{Status, TableStatus};

/// Times as people read them: in the agent's time zone.
pub fn local(cfg: &Config, s: Option<&str>) -> String {
    s.and_then(parse_ts)
        .map(|t| {
            t.with_timezone(&cfg.agent.tz)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| "-".into())
}

/// How a table keeps its category's frequency (DB23/T 2835-2021, 7.2.2).
#[derive(Clone, Debug, Serialize)]
pub struct Compliance {
    pub category: Option<String>,
    /// The longest allowed gap between exchanges, in seconds.
    pub required_seconds: Option<u64>,
    /// `met` (a success within the gap), `late`, `never` (no success yet) or `none` (no
    /// category).
    pub state: &'static str,
    pub since_success_seconds: Option<i64>,
}

pub fn compliance(
    category: Option<&str>,
    last_success: Option<&str>,
    now: DateTime<Utc>,
) -> Compliance {
    let gap = category.and_then(crate::schedule::category_minimum);
    let since = last_success
        .and_then(parse_ts)
        .map(|t| (now - t).num_seconds().max(0));
    let state = match (gap, since) {
        (None, _) => "none",
        (Some(_), None) => "never",
        (Some((g, _)), Some(s)) if s as u64 <= g.as_secs() => "met",
        (Some(_), Some(_)) => "late",
    };
    Compliance {
        category: category.map(str::to_owned),
        required_seconds: gap.map(|g| g.0.as_secs()),
        state,
        since_success_seconds: since,
    }
}

/// A cycle's error in a few words a person can act on (the catalogue's message id); the
/// error itself is shown beside it.
pub fn plain_reason(error: &str) -> &'static str {
    let e = error.to_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| e.contains(w));
    if any(&[
        "connection refused",
        "could not connect",
        "timed out",
        "unreachable",
        "does not answer",
        "connection reset",
        "broken pipe",
        "pool timed out",
        "error connecting",
    ]) {
        "reason-unreachable"
    } else if any(&[
        "does not exist",
        "no such table",
        "no such column",
        "unknown column",
        "doesn't exist",
        "missing",
        "not found",
    ]) {
        "reason-missing"
    } else if any(&[
        "permission denied",
        "access denied",
        "authentication",
        "password",
        "not authorized",
        "401",
        "403",
    ]) {
        "reason-denied"
    } else if any(&[
        "duplicate",
        "constraint",
        "violates",
        "too long",
        "invalid input",
    ]) {
        "reason-refused"
    } else {
        "reason-other"
    }
}

/// One table on the overview.
#[derive(Debug, Serialize)]
pub struct Row {
    pub table: String,
    pub source: String,
    pub target: String,
    pub direction: &'static str,
    pub mode: &'static str,
    pub schedule: String,
    pub enabled: bool,
    pub last_finished: Option<String>,
    pub last_outcome: Option<String>,
    pub last_rows: Option<i64>,
    pub failures: i64,
    pub failing_since: Option<String>,
    pub last_error: Option<String>,
    /// The catalogue's id of the error in plain words, when failing.
    pub reason: Option<&'static str>,
    pub lag_seconds: Option<i64>,
    pub next_run: Option<String>,
    pub rows_total: i64,
    pub rows_24h: i64,
    pub open_rejects: i64,
    pub compliance: Compliance,
    pub resync: Option<Resync>,
    pub masked: Vec<String>,
}

impl Row {
    pub fn of(cfg: &Config, t: &TableStatus, now: DateTime<Utc>) -> Row {
        let s = &t.state;
        let category = cfg
            .tables
            .iter()
            .find(|spec| spec.name == t.table)
            .and_then(|spec| spec.category.as_deref());
        Row {
            table: t.table.clone(),
            source: t.source.clone(),
            target: t.target.clone(),
            direction: t.direction.as_str(),
            mode: t.mode,
            schedule: t.schedule.clone(),
            enabled: t.enabled,
            last_finished: s.last_finished.clone(),
            last_outcome: s.last_outcome.clone(),
            last_rows: s.last_rows,
            failures: s.failures,
            failing_since: s.failing_since.clone(),
            last_error: s.last_error.clone(),
            reason: (s.failures > 0)
                .then(|| s.last_error.as_deref().map(plain_reason))
                .flatten(),
            lag_seconds: t.lag_seconds,
            next_run: s.next_run.clone(),
            rows_total: s.rows_total,
            rows_24h: s.rows_24h,
            open_rejects: s.open_rejects,
            compliance: compliance(category, s.last_success.as_deref(), now),
            resync: t.resync.clone(),
            masked: t.masked.clone(),
        }
    }
}

/// The overview: the agent and each table.
#[derive(Debug, Serialize)]
pub struct Overview {
    pub agent: String,
    pub generated_at: String,
    pub daemon_pid: Option<u32>,
    pub uptime_seconds: Option<i64>,
    pub databases: std::collections::BTreeMap<String, crate::health::Reach>,
    pub tables: Vec<Row>,
    pub actions: Vec<crate::state::AuditEntry>,
}

pub async fn overview(cfg: &Config) -> Result<Overview, AppError> {
    let st: Status = crate::status::collect(cfg).await?;
    let now = Utc::now();
    Ok(Overview {
        agent: st.agent,
        generated_at: st.generated_at,
        daemon_pid: st.daemon.pid,
        uptime_seconds: st.daemon.uptime_seconds,
        databases: st.databases.into_iter().collect(),
        tables: st.tables.iter().map(|t| Row::of(cfg, t, now)).collect(),
        actions: st.actions,
    })
}

/// One day of the table's chart.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub day: String,
    pub batches: i64,
    pub rows: i64,
    pub deletes: i64,
    /// The lag when the day's last batch was acknowledged.
    pub lag_seconds: Option<i64>,
}

/// A table's page: its overview row, its days, its last batches, its resync.
#[derive(Debug, Serialize)]
pub struct TableView {
    pub row: Row,
    pub days: i64,
    pub series: Vec<Point>,
    pub batches: Vec<BatchRow>,
}

/// A change time as the watermark wrote it, as an instant (naive times are the agent's zone).
fn change_time(cfg: &Config, s: &str) -> Option<DateTime<Utc>> {
    if let Some(t) = parse_ts(s) {
        return Some(t);
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Some(t.with_timezone(&Utc));
    }
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .and_then(|n| cfg.agent.tz.from_local_datetime(&n).earliest())
    .map(|t| t.with_timezone(&Utc))
}

/// Every day of the last `days` (today included), the ledger's figures or zeros.
pub fn series(cfg: &Config, found: &[Day], days: i64, now: DateTime<Utc>) -> Vec<Point> {
    let today = now.with_timezone(&cfg.agent.tz).date_naive();
    (0..days)
        .rev()
        .map(|back| {
            let day = (today - chrono::Duration::days(back))
                .format("%Y-%m-%d")
                .to_string();
            match found.iter().find(|d| d.day == day) {
                Some(d) => Point {
                    day,
                    batches: d.batches,
                    rows: d.rows,
                    deletes: d.deletes,
                    lag_seconds: d
                        .last_change
                        .as_deref()
                        .and_then(|c| change_time(cfg, c))
                        .zip(parse_ts(&d.last_finished))
                        .map(|(c, f)| (f - c).num_seconds().max(0)),
                },
                None => Point {
                    day,
                    batches: 0,
                    rows: 0,
                    deletes: 0,
                    lag_seconds: None,
                },
            }
        })
        .collect()
}

pub async fn table(
    cfg: &Config,
    state: &State,
    name: &str,
    days: i64,
) -> Result<Option<TableView>, AppError> {
    let st = crate::status::collect(cfg).await?;
    let now = Utc::now();
    let Some(t) = st.tables.iter().find(|t| t.table == name) else {
        return Ok(None);
    };
    let offset = now
        .with_timezone(&cfg.agent.tz)
        .offset()
        .fix()
        .local_minus_utc();
    let since = now - chrono::Duration::days(days);
    let found = state
        .days(name, since, offset)
        .await
        .map_err(AppError::runtime)?;
    let batches = state
        .last_batches(name, 20)
        .await
        .map_err(AppError::runtime)?;
    Ok(Some(TableView {
        row: Row::of(cfg, t, now),
        days,
        series: series(cfg, &found, days, now),
        batches,
    }))
}

/// What the rejects page filters by.
#[derive(Clone, Debug, Default, serde::Deserialize, Serialize)]
pub struct Filter {
    pub table: Option<String>,
    pub state: Option<String>,
    pub origin: Option<String>,
    /// Rejects with a reason containing this (a rule id, a column, a word of its message).
    pub rule: Option<String>,
}

impl Filter {
    /// Empty fields (an unselected drop-down) filter nothing.
    pub fn tidy(mut self) -> Filter {
        for f in [
            &mut self.table,
            &mut self.state,
            &mut self.origin,
            &mut self.rule,
        ] {
            if f.as_deref().is_some_and(|s| s.trim().is_empty()) {
                *f = None;
            }
        }
        self
    }

    /// The query string that asks for the same.
    pub fn query(&self) -> String {
        let pairs = [
            ("table", &self.table),
            ("state", &self.state),
            ("origin", &self.origin),
            ("rule", &self.rule),
        ];
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        q.finish()
    }
}

/// The rejects the filter selects, as `rejects list` gives them (newest first).
pub async fn rejects(cfg: &Config, f: &Filter) -> Result<Vec<RejectRow>, AppError> {
    let rows = crate::rejects::selected_by(cfg, f.table.as_deref(), f.state.as_deref()).await?;
    if let Some(o) = &f.origin
        && crate::state::Origin::parse(o).is_none()
    {
        return Err(AppError::Usage(format!(
            "`{o}` is not a reject origin: use {}",
            crate::state::Origin::ALL
                .iter()
                .map(|o| o.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let rule = f.rule.as_deref().map(str::to_lowercase);
    Ok(rows
        .into_iter()
        .filter(|r| f.origin.as_deref().is_none_or(|o| r.origin.as_str() == o))
        .filter(|r| {
            rule.as_deref()
                .is_none_or(|w| r.reasons.iter().any(|x| x.to_lowercase().contains(w)))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compliance_follows_the_category_gap() {
        let now = Utc::now();
        let ago = |h: i64| crate::state::ts(now - chrono::Duration::hours(h));
        assert_eq!(compliance(None, Some(&ago(1)), now).state, "none");
        assert_eq!(
            compliance(Some("supervision_action"), None, now).state,
            "never"
        );
        assert_eq!(
            compliance(Some("supervision_action"), Some(&ago(23)), now).state,
            "met"
        );
        assert_eq!(
            compliance(Some("supervision_action"), Some(&ago(25)), now).state,
            "late"
        );
        assert_eq!(compliance(Some("other"), Some(&ago(25)), now).state, "met");
    }

    #[test]
    fn errors_are_said_plainly() {
        assert_eq!(
            plain_reason("error connecting to server: Connection refused (os error 111)"),
            "reason-unreachable"
        );
        assert_eq!(
            plain_reason("relation \"jg_x\" does not exist"),
            "reason-missing"
        );
        assert_eq!(
            plain_reason("password authentication failed for user"),
            "reason-denied"
        );
        assert_eq!(plain_reason("something odd"), "reason-other");
    }

    #[test]
    fn a_filter_drops_empty_fields_and_says_itself_as_a_query() {
        let f = Filter {
            table: Some(String::new()),
            state: Some("open".into()),
            origin: None,
            rule: Some("统一 code".into()),
        }
        .tidy();
        assert_eq!(f.table, None);
        assert_eq!(f.query(), "state=open&rule=%E7%BB%9F%E4%B8%80+code");
    }
}
