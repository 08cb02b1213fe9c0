//! Alerts (`[[alert]]`): every `patrol`, the daemon looks at what the state store says of the
//! tables and the exchange, opens an alert for what is wrong (a table failing longer than
//! `unhealthy_after`, a category at risk or late, the exchange unreachable, a cycle over
//! `reject_alert`), sends it again only after `alert_repeat`, closes it with a recovery, and
//! tells of each resync that ended. Sending happens in [`send`], one background queue per
//! target: an exchange never waits for an alert.

pub mod events;
pub mod send;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::compliance::{self, Standing};
use crate::config::alert::EventKind;
use crate::ctx::Ctx;
use crate::state::{ResyncState, parse_ts, ts};
use events::{Change, Condition, Tracker};
use send::{Alert, AlertState};

const KEPT: &str = "alert:tracker";

/// Watch and alert until the generation stops (nothing to do without `[[alert]]`).
pub async fn watch(ctx: Arc<Ctx>) {
    if ctx.cfg.alerts.is_empty() {
        return;
    }
    let tasks = TaskTracker::new();
    let secrets = ctx.cfg.secrets();
    let mut queues = Vec::new();
    for target in &ctx.cfg.alerts {
        let (tx, rx) = mpsc::channel::<Alert>(256);
        queues.push((target.events.clone(), target.name.clone(), tx));
        tasks.spawn(send::deliver(
            target.clone(),
            rx,
            secrets.clone(),
            ctx.cancel.clone(),
        ));
    }
    tasks.close();
    let mut tracker = load(&ctx).await;
    loop {
        let now = Utc::now();
        let before = tracker.clone();
        let active = observe(&ctx, now).await;
        let mut out: Vec<Alert> = tracker
            .step(now, active, ctx.cfg.agent.alert_repeat)
            .into_iter()
            .map(|c| alert(&ctx, c, now))
            .collect();
        out.extend(resyncs(&ctx, &mut tracker, now).await);
        for a in out {
            for (events, name, tx) in &queues {
                if !events.contains(&a.event) {
                    continue;
                }
                // A full queue means the target has been down for long: the alert is
                // dropped here rather than waiting, so nothing else ever waits on a target.
                if tx.try_send(a.clone()).is_err() {
                    tracing::error!(alert = %name, "alert queue full, dropped: {}", a.title);
                }
            }
        }
        if tracker != before {
            save(&ctx, &tracker).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(ctx.cfg.agent.patrol) => {}
            _ = ctx.cancel.cancelled() => break,
        }
    }
    tasks.wait().await;
}

async fn load(ctx: &Ctx) -> Tracker {
    match ctx.state.meta(KEPT).await {
        Ok(Some(s)) => serde_json::from_str(&s).unwrap_or_default(),
        // The first time: resyncs that ended before are not news.
        _ => {
            let mut t = Tracker::default();
            for spec in &ctx.cfg.tables {
                if let Ok(Some(r)) = ctx.state.resync_of(&spec.name).await
                    && let Some(f) = r.finished
                {
                    t.resyncs.insert(spec.name.clone(), f);
                }
            }
            t
        }
    }
}

async fn save(ctx: &Ctx, t: &Tracker) {
    let text = serde_json::to_string(t).unwrap_or_default();
    if let Err(e) = ctx.state.set_meta(KEPT, &text).await {
        tracing::warn!("cannot record the open alerts: {e}");
    }
}

/// What is wrong now.
async fn observe(ctx: &Ctx, now: DateTime<Utc>) -> Vec<Condition> {
    let cfg = &ctx.cfg;
    let after = chrono::Duration::from_std(cfg.agent.unhealthy_after).unwrap_or_default();
    let mut out = Vec::new();
    if let Some(r) = crate::health::reach(&ctx.state, "exchange").await
        && !r.up
        && parse_ts(&r.since).is_some_and(|s| now - s >= after)
    {
        out.push(Condition {
            key: "unreachable:exchange".into(),
            kind: EventKind::Unreachable,
            table: None,
            since: r.since.clone(),
            what: format!(
                "the exchange ({}) does not answer: {}",
                cfg.exchange.describe(),
                r.error.unwrap_or_default()
            ),
            todo: "check the network to the exchange and whether it is up; every table retries by \
                   itself, and a recovery is sent when it answers again"
                .into(),
        });
    }
    let origin = ctx
        .state
        .meta("daemon:started")
        .await
        .ok()
        .flatten()
        .and_then(|s| parse_ts(&s));
    let tables = ctx.state.tables().await.unwrap_or_default();
    for spec in cfg.tables.iter().filter(|t| t.enabled) {
        let Some(t) = tables.iter().find(|t| t.table == spec.name) else {
            continue;
        };
        let name = &spec.name;
        if t.failures > 0
            && let Some(since) = t.failing_since.as_deref()
            && parse_ts(since).is_some_and(|s| now - s >= after)
        {
            out.push(Condition {
                key: format!("failing:{name}"),
                kind: EventKind::Failing,
                table: Some(name.clone()),
                since: since.to_owned(),
                what: format!(
                    "table {name} is failing ({} attempt(s) in a row): {}",
                    t.failures,
                    t.last_error.clone().unwrap_or_default()
                ),
                todo: format!(
                    "read the error with `frontdb-agent status` and fix its cause (the database, \
                     the network, the exchange's answer); the table retries by itself — \
                     `frontdb-agent once --table {name}` tries at once"
                ),
            });
        }
        if let Some(c) = compliance::assess(
            spec.category.as_deref(),
            t,
            origin,
            cfg.agent.at_risk_margin,
            now,
        ) && let (Some(kind), Some(since)) = (
            match c.standing {
                Standing::AtRisk => Some(EventKind::AtRisk),
                Standing::Late => Some(EventKind::Late),
                Standing::OnTime | Standing::Unknown => None,
            },
            c.since.clone(),
        ) {
            let deadline = c.deadline.clone().unwrap_or_default();
            out.push(Condition {
                key: format!("compliance:{name}"),
                kind,
                table: Some(name.clone()),
                since,
                what: format!(
                    "table {name} (category {}) must exchange successfully at least every {}: \
                     deadline {deadline}; {}",
                    c.category,
                    compliance::words(std::time::Duration::from_secs(c.limit_seconds)),
                    c.reason
                ),
                todo: format!(
                    "make the table exchange now: fix what stops it (`frontdb-agent status`), or \
                     run `frontdb-agent once --table {name}`{}",
                    if kind == EventKind::Late {
                        "; the missed deadline stays in the monthly report"
                    } else {
                        ""
                    }
                ),
            });
        }
        if let Some(w) = t
            .warnings
            .iter()
            .find(|w| w.contains(crate::job::REJECT_RATE_ABOVE))
        {
            out.push(Condition {
                key: format!("rejects:{name}"),
                kind: EventKind::Rejects,
                table: Some(name.clone()),
                since: t.last_finished.clone().unwrap_or_else(|| ts(now)),
                what: format!("table {name}: {w}"),
                todo: format!(
                    "look at why with `frontdb-agent rejects list --table {name}`, correct the \
                     rows at the source; they are sent again when they change"
                ),
            });
        }
    }
    out
}

/// Resyncs that ended since the last look: one notice each.
async fn resyncs(ctx: &Ctx, tracker: &mut Tracker, now: DateTime<Utc>) -> Vec<Alert> {
    let mut out = Vec::new();
    for spec in &ctx.cfg.tables {
        let Ok(Some(r)) = ctx.state.resync_of(&spec.name).await else {
            continue;
        };
        let Some(finished) = r.finished.clone() else {
            continue;
        };
        if !matches!(r.state, ResyncState::Done | ResyncState::Failed)
            || tracker.resyncs.get(&spec.name) == Some(&finished)
        {
            continue;
        }
        tracker.resyncs.insert(spec.name.clone(), finished.clone());
        let (what, todo) = if r.state == ResyncState::Done {
            (
                format!(
                    "the full resync of table {} finished: {} row(s) sent in {} chunk(s), {} \
                     removed at the exchange",
                    spec.name, r.rows, r.chunks, r.deleted
                ),
                "nothing; the table is back on its schedule".to_owned(),
            )
        } else {
            (
                format!(
                    "the full resync of table {} failed: {}",
                    spec.name,
                    r.error.clone().unwrap_or_default()
                ),
                format!(
                    "fix the cause and ask again: `frontdb-agent resync --table {}` (it resumes \
                     from its last chunk)",
                    spec.name
                ),
            )
        };
        out.push(make(
            ctx,
            EventKind::Resync,
            AlertState::Notice,
            Some(spec.name.clone()),
            r.started.as_deref().unwrap_or(&finished),
            what,
            todo,
            now,
        ));
    }
    out
}

fn alert(ctx: &Ctx, c: Change, now: DateTime<Utc>) -> Alert {
    match c {
        Change::Open(c) => make(
            ctx,
            c.kind,
            AlertState::Firing,
            c.table,
            &c.since,
            c.what,
            c.todo,
            now,
        ),
        Change::Repeat(c) => make(
            ctx,
            c.kind,
            AlertState::Repeat,
            c.table,
            &c.since,
            c.what,
            c.todo,
            now,
        ),
        Change::Resolve(o) => {
            let what = match (o.kind, &o.table) {
                (EventKind::Unreachable, _) => "the exchange answers again".to_owned(),
                (EventKind::Failing, Some(t)) => format!("table {t} exchanges again"),
                (EventKind::AtRisk | EventKind::Late, Some(t)) => {
                    format!(
                        "table {t} exchanged successfully: its category's frequency is met again"
                    )
                }
                (EventKind::Rejects, Some(t)) => {
                    format!("table {t}: the last cycle stayed under reject_alert")
                }
                (_, t) => format!("{} recovered", t.as_deref().unwrap_or("the agent")),
            };
            make(
                ctx,
                o.kind,
                AlertState::Resolved,
                o.table,
                &o.since,
                format!("{what} (the alert was: {})", o.what),
                "nothing; this closes the alert".into(),
                now,
            )
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn make(
    ctx: &Ctx,
    event: EventKind,
    state: AlertState,
    table: Option<String>,
    since: &str,
    what: String,
    todo: String,
    now: DateTime<Utc>,
) -> Alert {
    let word = match (state, event) {
        (AlertState::Resolved, _) => "RECOVERED",
        (_, EventKind::Failing) => "FAILING",
        (_, EventKind::AtRisk) => "AT RISK",
        (_, EventKind::Late) => "LATE",
        (_, EventKind::Unreachable) => "EXCHANGE UNREACHABLE",
        (_, EventKind::Rejects) => "REJECTS",
        (_, EventKind::Resync) => "RESYNC",
    };
    let again = if state == AlertState::Repeat {
        " (still)"
    } else {
        ""
    };
    let title = match &table {
        Some(t) => format!("[{}] {word}{again}: table {t}", ctx.cfg.agent.id),
        None => format!("[{}] {word}{again}", ctx.cfg.agent.id),
    };
    let since_local = parse_ts(since)
        .map(|s| {
            format!(
                "{} ({})",
                s.with_timezone(&ctx.cfg.agent.tz)
                    .format("%Y-%m-%d %H:%M:%S"),
                ctx.cfg.agent.tz
            )
        })
        .unwrap_or_else(|| since.to_owned());
    Alert {
        agent: ctx.cfg.agent.id.clone(),
        event,
        state,
        table,
        title,
        what,
        since: since.to_owned(),
        since_local,
        todo,
        at: ts(now),
    }
}
