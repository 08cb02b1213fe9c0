//! Prometheus metrics at `/metrics` and a health check at `/healthz` (with `[agent] metrics`),
//! and the patrol that checks the databases answer. Gauges are read from the state store on
//! each scrape.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::metrics::{FAILURES, LAG, LAST_SUCCESS, OPEN_REJECTS, RESYNC, UP, handle};
use crate::state::{FLUSH_EVERY, State, parse_ts, ts};

/// Reachability of one database, as the patrol last saw it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Reach {
    pub up: bool,
    /// Since when it has been up (or down).
    pub since: String,
    pub checked: String,
    pub error: Option<String>,
}

fn reach_key(name: &str) -> String {
    format!("reach:{name}")
}

/// What the patrol last saw of `name` (`source`, `exchange`, `feedback`).
pub async fn reach(state: &State, name: &str) -> Option<Reach> {
    if let Some((r, _)) = kept().as_ref().and_then(|k| k.get(name)) {
        return Some(r.clone());
    }
    state
        .meta(&reach_key(name))
        .await
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_str(&s).ok())
}

/// What the patrol saw last of each database, and when it was last written to the store:
/// written when it changes, else every few minutes (a patrol every minute would otherwise
/// write to the disk every minute for nothing).
static KEPT: std::sync::Mutex<Option<HashMap<String, (Reach, std::time::Instant)>>> =
    std::sync::Mutex::new(None);

fn kept() -> std::sync::MutexGuard<'static, Option<HashMap<String, (Reach, std::time::Instant)>>> {
    KEPT.lock().unwrap_or_else(|e| e.into_inner())
}

/// What this process's patrol saw last of each database (for `status` beside the daemon).
pub fn reach_now() -> HashMap<String, Reach> {
    kept()
        .as_ref()
        .map(|k| k.iter().map(|(n, (r, _))| (n.clone(), r.clone())).collect())
        .unwrap_or_default()
}

/// Serve `/metrics` and `/healthz` until the generation stops.
pub async fn serve(ctx: Arc<Ctx>) {
    let Some(addr) = ctx.cfg.agent.metrics else {
        return;
    };
    let handle = match handle() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("cannot start the metrics recorder: {e}");
            return;
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen on {addr} for /metrics: {e}");
            return;
        }
    };
    tracing::info!(%addr, "serving /metrics and /healthz");
    let app = Router::new()
        .route(
            "/metrics",
            get(
                move |AxumState(ctx): AxumState<Arc<Ctx>>, headers: axum::http::HeaderMap| async move {
                    if !crate::exposure::allowed(ctx.cfg.agent.metrics_token.as_ref(), &headers) {
                        return (
                            StatusCode::UNAUTHORIZED,
                            [("www-authenticate", "Bearer")],
                            "a bearer token is required\n".to_owned(),
                        );
                    }
                    refresh(&ctx).await;
                    (StatusCode::OK, [("content-type", "text/plain; charset=utf-8")], handle.render())
                },
            ),
        )
        .route("/healthz", get(healthz))
        .with_state(ctx.clone());
    let stop = ctx.cancel.clone();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    {
        tracing::error!("the metrics endpoint stopped: {e}");
    }
}

async fn healthz(AxumState(ctx): AxumState<Arc<Ctx>>) -> impl IntoResponse {
    let problems = health(&ctx).await;
    let body = serde_json::json!({
        "status": if problems.is_empty() { "ok" } else { "unhealthy" },
        "problems": problems,
        "checked_at": ts(Utc::now()),
    });
    let code = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
}

fn ago(since: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - since).to_std().unwrap_or_default()
}

/// Why the agent is not healthy (empty when it is): a table whose lag passed its `max_lag`,
/// the exchange unreachable or a table failing for longer than `unhealthy_after`.
pub async fn health(ctx: &Ctx) -> Vec<String> {
    let now = Utc::now();
    let limit = ctx.cfg.agent.unhealthy_after;
    let words =
        |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string();
    let mut out = Vec::new();
    if let Some(r) = reach(&ctx.state, "exchange").await
        && !r.up
        && let Some(since) = parse_ts(&r.since)
        && ago(since, now) > limit
    {
        out.push(format!(
            "the exchange database has been unreachable for {} (since {}): {}",
            words(ago(since, now)),
            r.since,
            r.error.unwrap_or_default()
        ));
    }
    let tables = ctx.state.tables().await.unwrap_or_default();
    for spec in ctx.cfg.tables.iter().filter(|t| t.enabled) {
        let Some(t) = tables.iter().find(|t| t.table == spec.name) else {
            continue;
        };
        if let (Some(max), Some(newest)) =
            (spec.max_lag, t.newest_change.as_deref().and_then(parse_ts))
            && ago(newest, now) > max
        {
            out.push(format!(
                "table {}: lag {} exceeds max_lag {}",
                spec.name,
                words(ago(newest, now)),
                words(max)
            ));
        }
        if let Some(since) = t.failing_since.as_deref().and_then(parse_ts)
            && ago(since, now) > limit
        {
            out.push(format!(
                "table {} has been failing for {}: {}",
                spec.name,
                words(ago(since, now)),
                t.last_error.clone().unwrap_or_default()
            ));
        }
    }
    out
}

/// Check that the source, the exchange and the feedback table answer, every `patrol`; say it
/// in the log when that changes, and keep it for `status`, `/healthz` and the metrics.
pub async fn patrol(ctx: Arc<Ctx>) {
    loop {
        let (source, exchange, feedback) = tokio::join!(
            ctx.front.now(),
            ctx.exchange.health(),
            ctx.receipts.health()
        );
        let mut checks = vec![
            ("source", source.map(|_| ()).map_err(|e| e.to_string())),
            ("exchange", exchange.map_err(|e| e.to_string())),
        ];
        if let Some(fb) = feedback {
            checks.push(("feedback", fb.map_err(|e| e.to_string())));
        }
        for (name, result) in checks {
            record_reach(&ctx.state, name, result).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(ctx.cfg.agent.patrol) => {}
            _ = ctx.cancel.cancelled() => break,
        }
    }
}

async fn record_reach(state: &State, name: &str, result: Result<(), String>) {
    let now = ts(Utc::now());
    let before = reach(state, name).await;
    let up = result.is_ok();
    let changed = before.as_ref().is_none_or(|b| b.up != up);
    let since = match (&before, changed) {
        (Some(b), false) => b.since.clone(),
        _ => now.clone(),
    };
    match (&result, changed, &before) {
        (Err(e), true, _) => {
            tracing::warn!(database = name, "the {name} database does not answer: {e}")
        }
        (Ok(()), true, Some(b)) => tracing::info!(
            database = name,
            "the {name} database answers again (it did not since {})",
            b.since
        ),
        _ => {}
    }
    metrics::gauge!(UP, "database" => name.to_owned()).set(if up { 1.0 } else { 0.0 });
    let r = Reach {
        up,
        since,
        checked: now,
        error: result.err(),
    };
    let due = {
        let mut k = kept();
        let map = k.get_or_insert_with(HashMap::new);
        let due = match map.get(name) {
            Some((old, at)) => {
                old.up != r.up || old.error != r.error || at.elapsed() >= FLUSH_EVERY
            }
            None => true,
        };
        let at = match (due, map.get(name)) {
            (false, Some((_, at))) => *at,
            _ => std::time::Instant::now(),
        };
        map.insert(name.to_owned(), (r.clone(), at));
        due
    };
    if !due {
        return;
    }
    if let Err(e) = state
        .set_meta(
            &reach_key(name),
            &serde_json::to_string(&r).unwrap_or_default(),
        )
        .await
    {
        tracing::warn!("cannot record whether the {name} database answers: {e}");
    }
}

/// Bring the per-table gauges up to date from the state store (on every scrape).
async fn refresh(ctx: &Ctx) {
    let now = Utc::now();
    let tables = ctx.state.tables().await.unwrap_or_default();
    compliance_gauges(ctx, &tables, now).await;
    for t in tables {
        let label = t.table.clone();
        if let Some(newest) = t.newest_change.as_deref().and_then(parse_ts) {
            metrics::gauge!(LAG, "table" => label.clone()).set(ago(newest, now).as_secs_f64());
        }
        if let Some(ok) = t.last_success.as_deref().and_then(parse_ts) {
            metrics::gauge!(LAST_SUCCESS, "table" => label.clone()).set(ok.timestamp() as f64);
        }
        metrics::gauge!(OPEN_REJECTS, "table" => label.clone()).set(t.open_rejects as f64);
        metrics::gauge!(FAILURES, "table" => label.clone()).set(t.failures as f64);
        if let Ok(Some(r)) = ctx.state.resync_of(&t.table).await
            && let Some(total) = r.total.filter(|t| *t > 0)
        {
            let done = if r.state == crate::state::ResyncState::Done {
                1.0
            } else {
                r.rows as f64 / total as f64
            };
            metrics::gauge!(RESYNC, "table" => label).set(done.min(1.0));
        }
    }
}

/// The compliance of every table of a data category (see [`crate::compliance`]).
async fn compliance_gauges(ctx: &Ctx, tables: &[crate::state::TableState], now: DateTime<Utc>) {
    use crate::metrics::{COMPLIANCE, COMPLIANCE_DEADLINE};
    let origin = ctx
        .state
        .meta("daemon:started")
        .await
        .ok()
        .flatten()
        .and_then(|s| parse_ts(&s));
    for spec in ctx.cfg.tables.iter().filter(|t| t.enabled) {
        let Some(t) = tables.iter().find(|t| t.table == spec.name) else {
            continue;
        };
        let Some(c) = crate::compliance::assess(
            spec.category.as_deref(),
            t,
            origin,
            ctx.cfg.agent.at_risk_margin,
            now,
        ) else {
            continue;
        };
        let labels = [
            ("table", spec.name.clone()),
            ("category", c.category.clone()),
        ];
        metrics::gauge!(COMPLIANCE, &labels).set(c.standing.gauge());
        if let Some(d) = c.deadline.as_deref().and_then(parse_ts) {
            metrics::gauge!(COMPLIANCE_DEADLINE, &labels).set(d.timestamp() as f64);
        }
    }
}
