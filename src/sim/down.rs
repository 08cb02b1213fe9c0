//! `GET /down/{table}?after=N`: records the province sends down, served page after page
//! after a cursor (the position of the last record given). The records are generated: the
//! inserts of ids 1..=`rows`, then `updates` changes of the first ids, then `deletes`
//! withdrawals (`D`) of the last ids, each at its own second of 2026-01-01. Every `cut_every`-th page is cut off half way (the connection drops in the
//! middle of the answer), as a broken network does.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value as Json;

use super::{Sim, answer, authorised};

/// `[[down]]` of the receiver's file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownFeed {
    /// The table's name in the URL.
    pub table: String,
    /// Ids inserted.
    pub rows: u64,
    /// Changes of the first ids after the inserts. Default 0.
    #[serde(default)]
    pub updates: u64,
    /// Withdrawals of the last ids after the changes. Default 0.
    #[serde(default)]
    pub deletes: u64,
    /// Records per page. Default 50.
    pub page: Option<u64>,
    /// Every this many pages, one is cut off half way. Default: none.
    pub cut_every: Option<usize>,
    /// Pages served so far.
    #[serde(skip)]
    pub served: AtomicUsize,
}

/// The record at position `n` (from 1).
fn record(f: &DownFeed, n: u64) -> Json {
    let (id, title, op) = if n <= f.rows {
        (n, format!("notice {n}"), "I")
    } else if n <= f.rows + f.updates {
        let id = n - f.rows;
        (id, format!("notice {id} (rev)"), "U")
    } else {
        let id = f.rows + 1 - (n - f.rows - f.updates);
        (id, format!("notice {id}"), "D")
    };
    let time = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t + chrono::Duration::seconds(i64::try_from(n).unwrap_or(0)))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string());
    serde_json::json!({
        "id": id,
        "title": title,
        "amount": format!("{}.{}", id, if op == "U" { "75" } else { "50" }),
        "cd_operation": op,
        "cd_time": time,
        "cd_batch": format!("20260101{:05}", n % 100_000),
    })
}

pub(super) async fn page(
    State(sim): State<Arc<Sim>>,
    UrlPath(table): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(why) = authorised(&sim, &headers, &format!("/down/{table}"), b"") {
        return answer(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"code": 401, "message": why}),
        );
    }
    let Some(f) = sim.cfg.down.iter().find(|f| f.table == table) else {
        return answer(
            StatusCode::NOT_FOUND,
            serde_json::json!({"code": 404, "message": "no such table"}),
        );
    };
    let after: u64 = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let last = (f.rows + f.updates + f.deletes).min(after + f.page.unwrap_or(50));
    let items: Vec<Json> = (after + 1..=last).map(|n| record(f, n)).collect();
    let body = serde_json::json!({"code": 0, "items": items, "next": last.to_string()});
    let text = Bytes::from(body.to_string());
    let n = f.served.fetch_add(1, Ordering::SeqCst) + 1;
    if f.cut_every.is_some_and(|c| c > 0 && n % c == 0) && !items.is_empty() {
        let _ = sim
            .store
            .log(None, Some(&table), "page cut", Some(&after.to_string()))
            .await;
        // Half of the answer, then the connection breaks.
        let half = text.slice(..text.len() / 2);
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(half),
            Err(std::io::Error::other("exchange-sim: page cut on purpose")),
        ];
        return (
            StatusCode::OK,
            [("Content-Type", "application/json; charset=utf-8")],
            Body::from_stream(futures::stream::iter(chunks)),
        )
            .into_response();
    }
    let _ = sim
        .store
        .log(None, Some(&table), "page", Some(&after.to_string()))
        .await;
    (
        StatusCode::OK,
        [("Content-Type", "application/json; charset=utf-8")],
        text,
    )
        .into_response()
}
