//! `POST /notice`: a full resync's notice (started or finished), checked like a batch's
//! credentials and kept as it came in the `notices` table.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value as Json;

use super::{Sim, answer, authorised};

pub(super) async fn resync_notice(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    if let Err(why) = authorised(&sim, &headers, "/notice", &raw) {
        return answer(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"code": 401, "message": why}),
        );
    }
    let mut body = raw.to_vec();
    if super::header(&headers, "Content-Encoding") == Some("gzip") {
        body.clear();
        let mut d = flate2::read::GzDecoder::new(&raw[..]);
        if std::io::Read::read_to_end(&mut d, &mut body).is_err() {
            return answer(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"code": 400, "message": "bad gzip"}),
            );
        }
    }
    let Ok(n) = serde_json::from_slice::<Json>(&body) else {
        return answer(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"code": 400, "message": "not JSON"}),
        );
    };
    for field in ["resync_id", "table_name", "status"] {
        if n.get(field)
            .and_then(Json::as_str)
            .is_none_or(str::is_empty)
        {
            return answer(
                StatusCode::OK,
                serde_json::json!({"code": 1, "message": format!("{field} is missing")}),
            );
        }
    }
    match sim.store.notice(&n.to_string()).await {
        Ok(()) => answer(StatusCode::OK, serde_json::json!({"code": 0})),
        Err(e) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"code": 500, "message": e.to_string()}),
        ),
    }
}
