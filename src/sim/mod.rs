//! `exchange-sim`: a reference receiver of the built-in envelope, to rehearse against
//! before the province is ready and for the tests. It checks signatures and tokens, runs
//! simple quality rules, stores what it accepts in SQLite (newer wins, deletes applied, a
//! batch id seen before answered the same without being applied again), serves the
//! rejections as a feedback feed, and injects faults on request. It serves the SOAP exchange's
//! operation too (`POST /soap/{table}`), into the same store.

mod config;
mod down;
mod notice;
mod soap;
mod store;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value as Json};

use crate::config::http::AuthKind;
use crate::error::AppError;
pub use config::{SimConfig, load};
use store::{Apply, Store};

/// How far a request's timestamp may be from the receiver's clock.
const CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

struct Sim {
    cfg: SimConfig,
    store: Store,
    /// Tokens issued by the login endpoint, with when each stops being accepted.
    tokens: Mutex<HashMap<String, Instant>>,
    /// Nonces seen, so a signed request cannot be replayed.
    nonces: Mutex<HashSet<String>>,
    /// Batches are applied one at a time: the idempotency check and the apply are one step.
    applying: tokio::sync::Mutex<()>,
    /// The fault draws, seeded when the file says.
    dice: Mutex<rand::rngs::StdRng>,
}

/// Run the receiver until SIGINT or SIGTERM. Prints `listening on http://ADDR` once it
/// accepts connections (the tests read the port from it).
pub async fn run(path: &Path) -> Result<(), AppError> {
    let cfg = load(path)?;
    let store = Store::open(&cfg.store)
        .await
        .map_err(|e| AppError::Runtime(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| {
            AppError::Runtime(format!(
                "exchange-sim: cannot listen on {}: {e}",
                cfg.listen
            ))
        })?;
    let addr: SocketAddr = listener
        .local_addr()
        .map_err(|e| AppError::Runtime(e.to_string()))?;
    let cfg_seed = cfg.faults.seed;
    let sim = Arc::new(Sim {
        cfg,
        store,
        tokens: Mutex::new(HashMap::new()),
        nonces: Mutex::new(HashSet::new()),
        applying: tokio::sync::Mutex::new(()),
        dice: Mutex::new(match cfg_seed {
            Some(s) => rand::SeedableRng::seed_from_u64(s),
            None => rand::make_rng(),
        }),
    });
    let app = Router::new()
        .route("/login", post(login))
        .route("/feedback", get(feedback))
        .route("/exchange/{table}", post(batch))
        .route("/qcvn/{service}", post(qcvn))
        .route("/soap/{table}", post(soap::call))
        .route("/notice", post(notice::resync_notice))
        .route("/down/{table}", get(down::page))
        // Batches of thousands of records are megabytes of JSON.
        .layer(axum::extract::DefaultBodyLimit::max(1 << 30))
        .with_state(sim);
    println!("listening on http://{addr}");
    let stop = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|e| AppError::Runtime(format!("exchange-sim: {e}")))
}

fn answer(status: StatusCode, body: Json) -> Response {
    (
        status,
        [("Content-Type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// Drop the connection without an answer, as a broken network does: unwinding the
/// connection's task closes its socket (and `resume_unwind` prints nothing).
fn drop_connection() -> ! {
    std::panic::resume_unwind(Box::new("exchange-sim: connection dropped on purpose"))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn login(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let creds: Json = serde_json::from_slice(&body).unwrap_or(Json::Null);
    let a = &sim.cfg.auth;
    if creds.get(&a.login_key_field).and_then(Json::as_str) != Some(a.app_key.as_str())
        || creds.get(&a.login_secret_field).and_then(Json::as_str) != Some(a.app_secret.as_str())
    {
        return answer(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"code": 401, "message": "bad credentials"}),
        );
    }
    let token = hex::encode(rand::random::<[u8; 16]>());
    // A token may stop being accepted before the lifetime announced (`revoke_after`), as a
    // platform that restarts or rotates keys does.
    let lives = a.revoke_after.unwrap_or(a.token_ttl).min(a.token_ttl);
    sim.tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(token.clone(), Instant::now() + lives);
    let mut body =
        serde_json::json!({"code": 0, "error_code": "00", "expires_in": a.token_ttl.as_secs()});
    body[a.token_field.as_str()] = Json::String(token);
    answer(StatusCode::OK, body)
}

/// Whether a login token is accepted now.
fn token_valid(sim: &Sim, token: &str) -> Result<(), &'static str> {
    let tokens = sim.tokens.lock().unwrap_or_else(|e| e.into_inner());
    match tokens.get(token) {
        Some(until) if Instant::now() < *until => Ok(()),
        Some(_) => Err("token expired"),
        None => Err("unknown token"),
    }
}

/// A QCVN 120 packet (`DongBoHoSoMC`, `CapNhatTienDoHoSoMC`, …): the session from the login,
/// the unit code and the service are checked, the packet is logged as it came, and the
/// answer is the standard's `error_code` `"00"`.
async fn qcvn(
    State(sim): State<Arc<Sim>>,
    UrlPath(service): UrlPath<String>,
    raw: Bytes,
) -> Response {
    let fail = |code: &str, message: &str| {
        answer(
            StatusCode::OK,
            serde_json::json!({"error_code": code, "message": message}),
        )
    };
    let Ok(packet) = serde_json::from_slice::<Json>(&raw) else {
        return fail("99", "not JSON");
    };
    let session = packet.get("session").and_then(Json::as_str).unwrap_or("");
    if let Err(why) = token_valid(&sim, session) {
        let _ = sim.store.log(None, Some(&service), why, None).await;
        return fail("02", why);
    }
    for field in ["madonvi", "service"] {
        if packet
            .get(field)
            .and_then(Json::as_str)
            .is_none_or(str::is_empty)
        {
            return fail("03", &format!("{field} is missing"));
        }
    }
    if packet.get("service").and_then(Json::as_str) != Some(service.as_str()) {
        return fail("03", "service does not match the URL");
    }
    match sim
        .store
        .log(None, Some(&service), "qcvn", Some(&packet.to_string()))
        .await
    {
        Ok(()) => fail("00", "OK"),
        Err(e) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"error_code": "99", "message": e.to_string()}),
        ),
    }
}

/// Whether the request proves its sender, as the configured auth kind asks.
fn authorised(sim: &Sim, h: &HeaderMap, path: &str, body: &[u8]) -> Result<(), &'static str> {
    let a = &sim.cfg.auth;
    match a.kind {
        AuthKind::None => Ok(()),
        AuthKind::Bearer => (header(h, "Authorization")
            == Some(&format!("Bearer {}", a.app_secret)))
        .then_some(())
        .ok_or("bad bearer token"),
        AuthKind::Login => {
            let token = header(h, "Authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or("no token")?;
            token_valid(sim, token)
        }
        AuthKind::HmacSha256 | AuthKind::HmacSm3 => {
            use crate::sink::http::auth;
            if header(h, "X-App-Key") != Some(a.app_key.as_str()) {
                return Err("unknown app key");
            }
            let ts = header(h, "X-Timestamp").ok_or("no timestamp")?;
            let nonce = header(h, "X-Nonce").ok_or("no nonce")?;
            let sig = header(h, "X-Signature").ok_or("no signature")?;
            let when: i64 = ts.parse().map_err(|_| "bad timestamp")?;
            if (chrono::Utc::now().timestamp_millis() - when).abs() > CLOCK_SKEW_MS {
                return Err("timestamp too far from now");
            }
            let text = auth::string_to_sign(a.kind, "POST", path, ts, nonce, body);
            if auth::hmac_hex(a.kind, a.app_secret.as_bytes(), &text) != sig {
                return Err("bad signature");
            }
            if !sim
                .nonces
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(nonce.to_owned())
            {
                return Err("nonce used before");
            }
            Ok(())
        }
        AuthKind::Basic | AuthKind::Md5 | AuthKind::Sha1 => {
            let want = crate::sink::http::auth::headers(
                &crate::config::http::HttpAuth {
                    kind: a.kind,
                    app_key: Some(crate::config::Secret::new(a.app_key.clone())),
                    app_secret: Some(crate::config::Secret::new(a.app_secret.clone())),
                    login: None,
                },
                "POST",
                path,
                body,
                header(h, "X-Timestamp")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0),
                "",
            );
            want.iter()
                .all(|(n, v)| header(h, n) == Some(v.as_str()))
                .then_some(())
                .ok_or("bad credentials")
        }
    }
}

impl Sim {
    /// Whether a fault of this share happens now.
    fn chance(&self, share: f64) -> bool {
        use rand::RngExt;
        share > 0.0
            && self
                .dice
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .random::<f64>()
                < share
    }
}

async fn batch(
    State(sim): State<Arc<Sim>>,
    UrlPath(table): UrlPath<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let f = &sim.cfg.faults;
    if sim.chance(f.slow_share) {
        tokio::time::sleep(f.slow).await;
    }
    if sim.chance(f.drop_share) {
        let _ = sim
            .store
            .log(None, Some(&table), "dropped before", None)
            .await;
        drop_connection();
    }
    if sim.chance(f.busy_share) {
        let _ = sim.store.log(None, Some(&table), "429", None).await;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("Retry-After", "1")],
            "busy",
        )
            .into_response();
    }
    if sim.chance(f.error_share) {
        let _ = sim.store.log(None, Some(&table), "503", None).await;
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"code": 503, "message": "injected fault"}),
        );
    }
    let path = format!("/exchange/{table}");
    if let Err(why) = authorised(&sim, &headers, &path, &raw) {
        let _ = sim.store.log(None, Some(&table), why, None).await;
        return answer(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"code": 401, "message": why}),
        );
    }
    let body = if header(&headers, "Content-Encoding") == Some("gzip") {
        let mut out = Vec::new();
        let mut d = flate2::read::GzDecoder::new(&raw[..]);
        if std::io::Read::read_to_end(&mut d, &mut out).is_err() {
            return answer(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"code": 400, "message": "bad gzip"}),
            );
        }
        out
    } else {
        raw.to_vec()
    };
    let Ok(env) = serde_json::from_slice::<Json>(&body) else {
        return answer(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"code": 400, "message": "not JSON"}),
        );
    };
    match take(&sim, &table, &headers, &env).await {
        Ok(Taken::Answer(a)) => answer(StatusCode::OK, a),
        Ok(Taken::DropAfter) => drop_connection(),
        Ok(Taken::Stall) => {
            std::future::pending::<()>().await;
            answer(StatusCode::OK, Json::Null)
        }
        Err(e) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"code": 500, "message": e}),
        ),
    }
}

enum Taken {
    Answer(Json),
    /// Applied, then the connection drops before the answer.
    DropAfter,
    /// Applied, then no answer ever comes (the agent is killed meanwhile).
    Stall,
}

/// Check and apply one envelope (or answer a batch seen before the same way).
async fn take(sim: &Sim, table: &str, headers: &HeaderMap, env: &Json) -> Result<Taken, String> {
    let id = header(headers, "Idempotency-Key")
        .or(env.get("batch").and_then(Json::as_str))
        .ok_or("no batch id")?
        .to_owned();
    let records = env
        .get("records")
        .and_then(Json::as_array)
        .ok_or("no records")?;
    let body = if sim.cfg.log_bodies {
        Json::Array(records.clone()).to_string()
    } else {
        String::new()
    };
    let _one = sim.applying.lock().await;
    if let Some(a) = sim.store.answered(&id).await.map_err(|e| e.to_string())? {
        sim.store
            .log(Some(&id), Some(table), "replayed", Some(&body))
            .await
            .map_err(|e| e.to_string())?;
        return serde_json::from_str(&a)
            .map(Taken::Answer)
            .map_err(|e| e.to_string());
    }
    let rules = sim.cfg.tables.get(table);
    let empty = Map::new();
    let mut applies = Vec::new();
    let mut rejected = Vec::new();
    let mut refusals: Vec<String> = Vec::new();
    let mut later = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let op = r.get("op").and_then(Json::as_str).unwrap_or("");
        let key = r
            .get("key")
            .and_then(Json::as_object)
            .ok_or("a record without a key")?;
        let values = r.get("values").and_then(Json::as_object).unwrap_or(&empty);
        let delete = match op {
            "I" | "U" => false,
            "D" => true,
            _ => return Err(format!("record {i}: operation `{op}`")),
        };
        let empty_in = |cols: Option<&Vec<String>>| -> Option<String> {
            cols.into_iter()
                .flatten()
                .find(|c| {
                    !delete
                        && values
                            .get(c.as_str())
                            .is_none_or(|v| v.is_null() || v.as_str() == Some(""))
                })
                .cloned()
        };
        match empty_in(rules.map(|t| &t.required)) {
            Some(c) => {
                rejected.push(serde_json::json!({"index": i, "code": "E_REQUIRED", "message": format!("{c} is required")}));
                refusals.push(format!("{c} is required"));
            }
            None => {
                // A later check takes the record now and rejects it in the feed.
                if let Some(c) = empty_in(rules.map(|t| &t.later)) {
                    later.push((
                        store::rkey(key),
                        "Q_LATER".to_owned(),
                        format!("{c} is missing"),
                    ));
                }
                applies.push(Apply {
                    delete,
                    key,
                    values,
                });
            }
        }
    }
    let whole = rules.is_some_and(|t| t.refuse_whole);
    let answer = if whole && !refusals.is_empty() {
        // The platform refuses the request whole: nothing is applied or remembered, so
        // the agent's smaller requests are judged afresh.
        let a = serde_json::json!({"code": 1, "message": refusals[0]});
        sim.store
            .log(Some(&id), Some(table), "refused", Some(&body))
            .await
            .map_err(|e| e.to_string())?;
        return Ok(Taken::Answer(a));
    } else {
        serde_json::json!({"code": 0, "rejected": rejected})
    };
    let version = rules.and_then(|t| t.version.as_deref());
    sim.store
        .apply(&id, table, version, &applies, &later, &answer.to_string())
        .await
        .map_err(|e| e.to_string())?;
    let f = &sim.cfg.faults;
    let stall = f.stall_after_batches.is_some_and(|n| {
        let seen = sim
            .cfg
            .stalled
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        seen == n
    });
    let mut fields = env.clone();
    if let Json::Object(m) = &mut fields {
        m.remove("records");
    }
    sim.store
        .envelope(&id, &fields.to_string())
        .await
        .map_err(|e| e.to_string())?;
    // The log says when the answer will be lost, so that a test knows a replay is owed.
    let dropped = !stall && sim.chance(f.drop_after_share);
    let outcome = match (stall, dropped) {
        (true, _) => "applied, stalled",
        (_, true) => "applied, answer dropped",
        _ => "applied",
    };
    sim.store
        .log(Some(&id), Some(table), outcome, Some(&body))
        .await
        .map_err(|e| e.to_string())?;
    if stall {
        return Ok(Taken::Stall);
    }
    if dropped {
        return Ok(Taken::DropAfter);
    }
    Ok(Taken::Answer(answer))
}

#[derive(serde::Deserialize)]
struct After {
    after: Option<String>,
    limit: Option<i64>,
}

/// The rejections after a cursor: `{"items": [...], "next": id}`.
async fn feedback(State(sim): State<Arc<Sim>>, Query(q): Query<After>) -> Response {
    let after = q.after.and_then(|a| a.parse().ok()).unwrap_or(0);
    match sim
        .store
        .rejections(after, q.limit.unwrap_or(500).clamp(1, 5000))
        .await
    {
        Ok(items) => {
            let next = items
                .last()
                .and_then(|i| i.get("id").and_then(Json::as_i64))
                .unwrap_or(after);
            answer(
                StatusCode::OK,
                serde_json::json!({"code": 0, "items": items, "next": next}),
            )
        }
        Err(e) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"code": 500, "message": e.to_string()}),
        ),
    }
}
