//! The web console for department staff (`[agent] console`): the overview of every table,
//! a table's chart and batches, the rejects to correct and send again, and full resyncs —
//! server-rendered HTML in Chinese or English, each page also as JSON under `/api/`.
//!
//! Sign-in is a session cookie (HTTP-only, same-site strict, ending after `console_session`
//! idle) whose forms carry a CSRF token; scripts send `Authorization: Bearer <token>`.
//! Resubmitting and resyncing go through the very functions the command line calls
//! ([`crate::rejects::send_again`], [`crate::asked::resync`]), recorded in the audit trail
//! under the signed-in user.

mod auth;
mod chart;
mod forms;
mod pages;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::value::Kwargs;
use minijinja::{Environment, Value, context};

use crate::config::ConsoleRole;
use crate::ctx::Ctx;
use crate::error::AppError;
use crate::i18n::Lang;
use auth::Signed;

const CSS: &str = include_str!("console.css");

/// What every request of one configuration generation shares.
pub(crate) struct App {
    ctx: Arc<Ctx>,
    env: Environment<'static>,
}

/// Serve the console until the generation stops.
pub async fn serve(ctx: Arc<Ctx>) {
    let Some(addr) = ctx.cfg.agent.console else {
        return;
    };
    let env = match templates(ctx.cfg.agent.tz) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("the console's templates do not load: {e}");
            return;
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen on {addr} for the console: {e}");
            return;
        }
    };
    tracing::info!(%addr, "serving the console");
    let stop = ctx.cancel.clone();
    let app = Arc::new(App { ctx, env });
    if let Err(e) = axum::serve(listener, router(app))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    {
        tracing::error!("the console stopped: {e}");
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/console.css", get(css))
        .route("/login", get(forms::login_page).post(forms::login))
        .route("/logout", post(forms::logout))
        .route("/lang/{tag}", get(forms::set_lang))
        .route("/", get(pages::overview))
        .route("/api/overview", get(pages::overview_api))
        .route("/table/{name}", get(pages::table))
        .route("/api/table/{name}", get(pages::table_api))
        .route("/rejects", get(pages::rejects))
        .route("/api/rejects", get(pages::rejects_api))
        .route("/rejects.csv", get(pages::rejects_csv))
        .route("/rejects/{id}", get(pages::reject))
        .route("/api/rejects/{id}", get(pages::reject_api))
        .route("/rejects/resubmit", post(forms::resubmit))
        .route("/api/rejects/resubmit", post(forms::resubmit_api))
        .route("/actions", get(pages::actions))
        .route("/api/actions", get(pages::actions_api))
        .route("/actions/resync", post(forms::resync))
        .route("/api/resync", post(forms::resync_api))
        .with_state(app)
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

/// The templates, with `t(id, name=value…)` for the catalogue, `local(instant)` for times
/// in the agent's zone and `duration(seconds)`.
fn templates(tz: chrono_tz::Tz) -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    for (name, text) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("overview.html", include_str!("templates/overview.html")),
        ("table.html", include_str!("templates/table.html")),
        ("rejects.html", include_str!("templates/rejects.html")),
        ("reject.html", include_str!("templates/reject.html")),
        ("actions.html", include_str!("templates/actions.html")),
        ("message.html", include_str!("templates/message.html")),
    ] {
        env.add_template(name, text)?;
    }
    env.add_function("t", translate);
    env.add_function("local", move |s: Option<String>| {
        s.as_deref()
            .and_then(crate::state::parse_ts)
            .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| "-".into())
    });
    env.add_function("duration", |s: Option<i64>| {
        s.map(crate::status::short).unwrap_or_else(|| "-".into())
    });
    Ok(env)
}

/// `t(id, name=value…)` in the page's language (`lang_tag`).
fn translate(
    state: &minijinja::State,
    id: Option<String>,
    kwargs: Kwargs,
) -> Result<String, minijinja::Error> {
    let Some(id) = id else {
        return Ok(String::new());
    };
    let lang = state
        .lookup("lang_tag")
        .and_then(|v| v.as_str().and_then(Lang::parse))
        .unwrap_or(Lang::En);
    let mut args: Vec<(String, fluent_bundle::FluentValue<'static>)> = Vec::new();
    for k in kwargs.args() {
        let v: Value = kwargs.get(k)?;
        let fv = match i64::try_from(v.clone()) {
            Ok(n) => fluent_bundle::FluentValue::from(n),
            Err(_) => fluent_bundle::FluentValue::from(v.to_string()),
        };
        args.push((k.to_owned(), fv));
    }
    let refs: Vec<(&str, fluent_bundle::FluentValue<'_>)> =
        args.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    Ok(crate::i18n::text(lang, &id, &refs))
}

/// The language of a request: the one chosen on the page, else the browser's.
fn lang(headers: &HeaderMap) -> Lang {
    auth::cookie(headers, auth::LANG_COOKIE)
        .and_then(Lang::parse)
        .unwrap_or_else(|| {
            Lang::from_accept(
                headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            )
        })
}

/// Headers every answer carries: not framed, no script, nothing from elsewhere.
fn guarded(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A JSON answer.
fn json<T: serde::Serialize>(code: StatusCode, v: &T) -> Response {
    let body = serde_json::to_string_pretty(v).unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("cannot write the answer: {e}") }).to_string()
    });
    guarded((code, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn status_of(e: &AppError) -> StatusCode {
    match e {
        AppError::Usage(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl App {
    fn users(&self) -> (&[crate::config::ConsoleUser], std::time::Duration) {
        (
            &self.ctx.cfg.agent.console_users,
            self.ctx.cfg.agent.console_session,
        )
    }

    /// The user of a page request, or the way to the sign-in page.
    fn page_user(&self, headers: &HeaderMap) -> Result<Signed, Box<Response>> {
        let (users, idle) = self.users();
        auth::signed(headers, users, idle).ok_or_else(|| {
            Box::new(guarded(
                (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response(),
            ))
        })
    }

    /// The user of an `/api/` request, or 401.
    fn api_user(&self, headers: &HeaderMap) -> Result<Signed, Box<Response>> {
        let (users, idle) = self.users();
        auth::signed(headers, users, idle).ok_or_else(|| {
            let mut r = json(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({ "error": "sign in, or send Authorization: Bearer <token>" }),
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Box::new(r)
        })
    }

    /// A page in the request's language, with the frame's context (who, the CSRF token,
    /// where the language switch returns to).
    fn render(
        &self,
        headers: &HeaderMap,
        who: Option<&Signed>,
        name: &str,
        back: &str,
        code: StatusCode,
        extra: Value,
    ) -> Response {
        let lang = lang(headers);
        // Which part of the navigation the page belongs to.
        let page = match name {
            "overview.html" | "table.html" => "overview",
            "rejects.html" | "reject.html" => "rejects",
            "actions.html" => "actions",
            _ => "",
        };
        let frame = context! {
            lang_tag => lang.tag(),
            agent => self.ctx.cfg.agent.id.clone(),
            user => who.map(|w| w.name.clone()),
            role => who.map(|w| match w.role { ConsoleRole::Viewer => "viewer", ConsoleRole::Operator => "operator" }),
            operator => who.is_some_and(|w| w.role == ConsoleRole::Operator),
            csrf => who.map(|w| w.csrf().to_owned()),
            page => page,
            back => back,
        };
        let html = self
            .env
            .get_template(name)
            .and_then(|t| t.render(context! { ..frame, ..extra }));
        match html {
            Ok(h) => guarded(
                (
                    code,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    h,
                )
                    .into_response(),
            ),
            Err(e) => {
                tracing::error!("the console's page {name} failed: {e:#}");
                guarded(
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("the page {name} failed: {e}"),
                    )
                        .into_response(),
                )
            }
        }
    }

    /// A page saying what happened (an action's outcome, an error).
    fn message(
        &self,
        headers: &HeaderMap,
        who: Option<&Signed>,
        code: StatusCode,
        heading: &str,
        lines: &[String],
        back: Option<&str>,
    ) -> Response {
        self.render(
            headers,
            who,
            "message.html",
            back.unwrap_or("/"),
            code,
            context! { ok => code.is_success(), heading => heading, lines => lines.to_vec(), return_to => back },
        )
    }

    fn failure(&self, headers: &HeaderMap, who: &Signed, e: &AppError) -> Response {
        let lang = lang(headers);
        self.message(
            headers,
            Some(who),
            status_of(e),
            &crate::t!(lang, "failed"),
            &[e.to_string()],
            Some("/"),
        )
    }
}
