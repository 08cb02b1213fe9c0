//! The pages people read, each also as JSON under `/api/`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use minijinja::Value;
use minijinja::context;
use minijinja::value::Serde;
use serde::Deserialize;

use super::views::{self, Filter};
use super::{App, guarded, json, lang, status_of};
use crate::error::AppError;

fn back(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| "/".into(), |p| p.as_str().to_owned())
}

fn api_error(e: &AppError) -> Response {
    json(status_of(e), &serde_json::json!({ "error": e.to_string() }))
}

pub(super) async fn overview(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let who = match app.page_user(&headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    match views::overview(&app.ctx.cfg).await {
        Ok(v) => app.render(
            &headers,
            Some(&who),
            "overview.html",
            &back(&uri),
            StatusCode::OK,
            context! { view => Value::from(Serde(&v)) },
        ),
        Err(e) => app.failure(&headers, &who, &e),
    }
}

pub(super) async fn overview_api(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = app.api_user(&headers) {
        return *r;
    }
    match views::overview(&app.ctx.cfg).await {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => api_error(&e),
    }
}

#[derive(Deserialize)]
pub(super) struct Days {
    days: Option<i64>,
}

impl Days {
    /// 7 or 30 days (anything else is read as the nearer of the two).
    fn get(&self) -> i64 {
        match self.days {
            Some(d) if d > 7 => 30,
            _ => 7,
        }
    }
}

pub(super) async fn table(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
    Query(days): Query<Days>,
) -> Response {
    let who = match app.page_user(&headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let l = lang(&headers);
    match views::table(&app.ctx.cfg, &app.ctx.state, &name, days.get()).await {
        Ok(Some(v)) => {
            let chart = super::chart::svg(
                &v.series,
                &crate::t!(l, "chart-rows"),
                &crate::t!(l, "chart-lag"),
            );
            app.render(
                &headers,
                Some(&who),
                "table.html",
                &back(&uri),
                StatusCode::OK,
                context! { view => Value::from(Serde(&v)), chart => chart },
            )
        }
        Ok(None) => app.message(
            &headers,
            Some(&who),
            StatusCode::NOT_FOUND,
            &crate::t!(l, "no-such-table", table = name.as_str()),
            &[],
            Some("/"),
        ),
        Err(e) => app.failure(&headers, &who, &e),
    }
}

pub(super) async fn table_api(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(days): Query<Days>,
) -> Response {
    if let Err(r) = app.api_user(&headers) {
        return *r;
    }
    match views::table(&app.ctx.cfg, &app.ctx.state, &name, days.get()).await {
        Ok(Some(v)) => json(StatusCode::OK, &v),
        Ok(None) => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({ "error": format!("no table named `{name}`") }),
        ),
        Err(e) => api_error(&e),
    }
}

pub(super) async fn rejects(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Query(filter): Query<Filter>,
) -> Response {
    let who = match app.page_user(&headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let filter = filter.tidy();
    match views::rejects(&app.ctx.cfg, &filter).await {
        Ok(rows) => {
            let tables: Vec<String> = app.ctx.cfg.tables.iter().map(|t| t.name.clone()).collect();
            let origins: Vec<&str> = crate::state::Origin::ALL
                .iter()
                .map(|o| o.as_str())
                .collect();
            app.render(
                &headers,
                Some(&who),
                "rejects.html",
                &back(&uri),
                StatusCode::OK,
                context! {
                    rows => Value::from(Serde(&rows)),
                    filter => Value::from(Serde(&filter)),
                    query => filter.query(),
                    tables => tables,
                    origins => origins,
                },
            )
        }
        Err(e) => app.failure(&headers, &who, &e),
    }
}

pub(super) async fn rejects_api(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> Response {
    if let Err(r) = app.api_user(&headers) {
        return *r;
    }
    match views::rejects(&app.ctx.cfg, &filter.tidy()).await {
        Ok(rows) => json(StatusCode::OK, &rows),
        Err(e) => api_error(&e),
    }
}

/// The selected rejects as CSV for Excel (with a byte-order mark), as `rejects export --csv
/// --bom` writes them.
pub(super) async fn rejects_csv(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> Response {
    let who = match app.page_user(&headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let made = match views::rejects(&app.ctx.cfg, &filter.tidy()).await {
        Ok(rows) => crate::rejects::csv_of(&app.ctx.cfg, &rows, true),
        Err(e) => Err(e),
    };
    match made {
        Ok(bytes) => guarded(
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"rejects.csv\"",
                    ),
                ],
                bytes,
            )
                .into_response(),
        ),
        Err(e) => app.failure(&headers, &who, &e),
    }
}

/// One reject with its history and who asked for what, as `rejects show --json` gives it.
async fn reject_doc(app: &App, id: i64) -> Result<Option<serde_json::Value>, AppError> {
    let st = &app.ctx.state;
    let Some((r, history)) = st.reject(id).await.map_err(AppError::runtime)? else {
        return Ok(None);
    };
    let asked = st
        .audit_trail(20, Some(&format!("#{id}")))
        .await
        .map_err(AppError::runtime)?;
    Ok(Some(
        serde_json::json!({ "reject": r, "history": history, "asked": asked }),
    ))
}

pub(super) async fn reject(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<i64>,
) -> Response {
    let who = match app.page_user(&headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let l = lang(&headers);
    match reject_doc(&app, id).await {
        Ok(Some(doc)) => {
            let table = doc["reject"]["table"].as_str().unwrap_or("").to_owned();
            let masked: Vec<String> = app
                .ctx
                .cfg
                .tables
                .iter()
                .find(|t| t.name == table)
                .map(|t| t.shape.masks.keys().map(|c| c.to_string()).collect())
                .unwrap_or_default();
            app.render(
                &headers,
                Some(&who),
                "reject.html",
                &back(&uri),
                StatusCode::OK,
                context! {
                    r => Value::from(Serde(&doc["reject"])),
                    history => Value::from(Serde(&doc["history"])),
                    asked => Value::from(Serde(&doc["asked"])),
                    masked => masked,
                },
            )
        }
        Ok(None) => app.message(
            &headers,
            Some(&who),
            StatusCode::NOT_FOUND,
            &crate::t!(l, "rejects-no-such", id = id),
            &[],
            Some("/rejects"),
        ),
        Err(e) => app.failure(&headers, &who, &e),
    }
}

pub(super) async fn reject_api(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    if let Err(r) = app.api_user(&headers) {
        return *r;
    }
    match reject_doc(&app, id).await {
        Ok(Some(doc)) => json(StatusCode::OK, &doc),
        Ok(None) => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({ "error": format!("there is no rejected row #{id}") }),
        ),
        Err(e) => api_error(&e),
    }
}

/// The actions page: resyncs, and the audit trail.
#[derive(serde::Serialize)]
struct Actions {
    tables: Vec<views::Row>,
    audit: Vec<crate::state::AuditEntry>,
}

async fn actions_doc(app: &App) -> Result<Actions, AppError> {
    let v = views::overview(&app.ctx.cfg).await?;
    let audit = app
        .ctx
        .state
        .audit_trail(50, None)
        .await
        .map_err(AppError::runtime)?;
    Ok(Actions {
        tables: v.tables,
        audit,
    })
}

pub(super) async fn actions(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    let who = match app.page_user(&headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    match actions_doc(&app).await {
        Ok(a) => {
            let tables: Vec<String> = app
                .ctx
                .cfg
                .tables
                .iter()
                .filter(|t| t.enabled)
                .map(|t| t.name.clone())
                .collect();
            app.render(
                &headers,
                Some(&who),
                "actions.html",
                &back(&uri),
                StatusCode::OK,
                context! {
                    view => context! { tables => Value::from(Serde(&a.tables)) },
                    audit => Value::from(Serde(&a.audit)),
                    tables => tables,
                },
            )
        }
        Err(e) => app.failure(&headers, &who, &e),
    }
}

pub(super) async fn actions_api(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = app.api_user(&headers) {
        return *r;
    }
    match actions_doc(&app).await {
        Ok(a) => json(StatusCode::OK, &a),
        Err(e) => api_error(&e),
    }
}
