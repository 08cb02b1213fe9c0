//! What changes something: signing in and out, the language, resubmitting rejects and
//! asking for a resync. A browser's form carries its session's CSRF token; a script
//! authenticated by a bearer token needs none.

use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::context;

use super::auth::{self, LANG_COOKIE, LOGIN_COOKIE, SESSION_COOKIE, Signed};
use super::{App, guarded, json, lang, status_of};
use crate::config::ConsoleRole;
use crate::error::AppError;
use crate::i18n::Lang;

type Fields = Vec<(String, String)>;

fn field<'a>(f: &'a Fields, name: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response();
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    guarded(r)
}

/// Only a path of this console is a place to return to (never another site).
fn local_path(p: Option<&str>) -> &str {
    match p {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p,
        _ => "/",
    }
}

fn login_form(app: &App, headers: &HeaderMap, code: StatusCode, error: Option<String>) -> Response {
    let token = auth::random_token();
    let mut r = app.render(
        headers,
        None,
        "login.html",
        "/login",
        code,
        context! { login_csrf => token.clone(), error => error },
    );
    if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(LOGIN_COOKIE, &token, None)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

pub(super) async fn login_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if app.page_user(&headers).is_ok() {
        return redirect("/", &[]);
    }
    login_form(&app, &headers, StatusCode::OK, None)
}

pub(super) async fn login(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let l = lang(&headers);
    // The sign-in form carries the token its page set as a cookie: another site cannot
    // sign a browser in under someone else's name.
    let expected = auth::cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    let given = field(&f, "csrf").unwrap_or("");
    if expected.is_empty() || !auth::same(expected.as_bytes(), given.as_bytes()) {
        return login_form(
            &app,
            &headers,
            StatusCode::FORBIDDEN,
            Some(crate::t!(l, "csrf-refused")),
        );
    }
    let name = field(&f, "name").unwrap_or("");
    let password = field(&f, "password").unwrap_or("");
    let user = app
        .ctx
        .cfg
        .agent
        .console_users
        .iter()
        .find(|u| u.name == name);
    let ok = match user {
        Some(u) => auth::check_password(u, password).await,
        None => false,
    };
    if !ok {
        tracing::warn!(user = name, "console: a sign-in was refused");
        return login_form(
            &app,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some(crate::t!(l, "sign-in-refused")),
        );
    }
    let id = auth::open(name, app.ctx.cfg.agent.console_session);
    tracing::info!(user = name, "console: signed in");
    redirect(
        "/",
        &[
            auth::set_cookie(SESSION_COOKIE, &id, None),
            auth::set_cookie(LOGIN_COOKIE, "", Some(std::time::Duration::ZERO)),
        ],
    )
}

pub(super) async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    if let Ok(who) = app.page_user(&headers) {
        if !who.form_ok(field(&f, "csrf")) {
            return forged(&app, &headers, &who);
        }
        auth::close(&headers);
    }
    redirect(
        "/login",
        &[auth::set_cookie(
            SESSION_COOKIE,
            "",
            Some(std::time::Duration::ZERO),
        )],
    )
}

#[derive(serde::Deserialize)]
pub(super) struct Back {
    back: Option<String>,
}

pub(super) async fn set_lang(Path(tag): Path<String>, Query(b): Query<Back>) -> Response {
    let lang = Lang::parse(&tag).unwrap_or(Lang::En);
    redirect(
        local_path(b.back.as_deref()),
        &[auth::set_cookie(
            LANG_COOKIE,
            lang.tag(),
            Some(std::time::Duration::from_secs(365 * 86_400)),
        )],
    )
}

fn forged(app: &App, headers: &HeaderMap, who: &Signed) -> Response {
    let l = lang(headers);
    tracing::warn!(user = %who.name, "console: a form without its CSRF token was refused");
    app.message(
        headers,
        Some(who),
        StatusCode::FORBIDDEN,
        &crate::t!(l, "csrf-refused"),
        &[],
        Some("/"),
    )
}

/// Why a signed-in user may not change anything here, if they may not.
fn refused(who: &Signed, f: &Fields) -> Option<(StatusCode, &'static str)> {
    if !who.form_ok(field(f, "csrf")) {
        Some((StatusCode::FORBIDDEN, "csrf-refused"))
    } else if who.role != ConsoleRole::Operator {
        Some((StatusCode::FORBIDDEN, "operators-only"))
    } else {
        None
    }
}

/// The rejects a form names, each chosen as `rejects resubmit ID` chooses it (or the open
/// ones of `table`, or every open one with `all`).
async fn chosen(app: &App, f: &Fields) -> Result<Vec<crate::state::RejectRow>, AppError> {
    let cfg = &app.ctx.cfg;
    let ids: Vec<&str> = f
        .iter()
        .filter(|(k, _)| k == "id")
        .map(|(_, v)| v.as_str())
        .collect();
    if ids.is_empty() {
        let all = field(f, "all").is_some_and(|v| v == "yes" || v == "true" || v == "1");
        return crate::rejects::choose(cfg, None, field(f, "table"), all).await;
    }
    let mut out = Vec::new();
    for id in ids {
        let id: i64 = id
            .parse()
            .map_err(|_| AppError::Usage(format!("`{id}` is not a reject's number")))?;
        out.extend(crate::rejects::choose(cfg, Some(id), None, false).await?);
    }
    Ok(out)
}

/// Send the chosen rejects again as the command line does; what it says, line by line.
async fn do_resubmit(
    app: &App,
    who: &Signed,
    l: Lang,
    f: &Fields,
) -> Result<Vec<String>, AppError> {
    let rows = chosen(app, f).await?;
    let mut said = Vec::new();
    crate::rejects::send_again(app.ctx.cfg.clone(), &who.who(), l, rows, &mut |line| {
        said.push(line)
    })
    .await?;
    Ok(said)
}

pub(super) async fn resubmit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let who = match app.page_user(&headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let l = lang(&headers);
    if let Some((code, why)) = refused(&who, &f) {
        if why == "csrf-refused" {
            return forged(&app, &headers, &who);
        }
        return app.message(
            &headers,
            Some(&who),
            code,
            &crate::t!(l, why),
            &[],
            Some("/rejects"),
        );
    }
    let back = local_path(field(&f, "back")).to_owned();
    match do_resubmit(&app, &who, l, &f).await {
        Ok(said) => app.message(
            &headers,
            Some(&who),
            StatusCode::OK,
            &crate::t!(l, "resubmit-asked"),
            &said,
            Some(&back),
        ),
        Err(e) => app.message(
            &headers,
            Some(&who),
            status_of(&e),
            &crate::t!(l, "failed"),
            &[e.to_string()],
            Some(&back),
        ),
    }
}

fn api_refusal(code: StatusCode, why: &str) -> Response {
    json(
        code,
        &serde_json::json!({ "error": crate::t!(Lang::En, why) }),
    )
}

pub(super) async fn resubmit_api(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let who = match app.api_user(&headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if let Some((code, why)) = refused(&who, &f) {
        return api_refusal(code, why);
    }
    match do_resubmit(&app, &who, Lang::En, &f).await {
        Ok(said) => json(
            StatusCode::OK,
            &serde_json::json!({ "asked_by": who.who(), "said": said }),
        ),
        Err(e) => json(
            status_of(&e),
            &serde_json::json!({ "error": e.to_string() }),
        ),
    }
}

/// Ask for a full resync of the form's table as `frontdb-agent resync --table T` does. A
/// resync sends every row again: the form must say `confirm=yes`.
async fn do_resync(app: &App, who: &Signed, l: Lang, f: &Fields) -> Result<Vec<String>, AppError> {
    if field(f, "confirm") != Some("yes") {
        return Err(AppError::Usage(crate::t!(l, "resync-unconfirmed")));
    }
    let table = field(f, "table").filter(|t| !t.is_empty());
    let mut said = Vec::new();
    crate::asked::resync(app.ctx.cfg.clone(), &who.who(), l, table, &mut |line| {
        said.push(line)
    })
    .await?;
    Ok(said)
}

pub(super) async fn resync(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let who = match app.page_user(&headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let l = lang(&headers);
    if let Some((code, why)) = refused(&who, &f) {
        if why == "csrf-refused" {
            return forged(&app, &headers, &who);
        }
        return app.message(
            &headers,
            Some(&who),
            code,
            &crate::t!(l, why),
            &[],
            Some("/actions"),
        );
    }
    match do_resync(&app, &who, l, &f).await {
        Ok(said) => app.message(
            &headers,
            Some(&who),
            StatusCode::OK,
            &crate::t!(l, "resync-asked"),
            &said,
            Some("/actions"),
        ),
        Err(e) => app.message(
            &headers,
            Some(&who),
            status_of(&e),
            &crate::t!(l, "failed"),
            &[e.to_string()],
            Some("/actions"),
        ),
    }
}

pub(super) async fn resync_api(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let who = match app.api_user(&headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if let Some((code, why)) = refused(&who, &f) {
        return api_refusal(code, why);
    }
    match do_resync(&app, &who, Lang::En, &f).await {
        Ok(said) => json(
            StatusCode::OK,
            &serde_json::json!({ "asked_by": who.who(), "said": said }),
        ),
        Err(e) => json(
            status_of(&e),
            &serde_json::json!({ "error": e.to_string() }),
        ),
    }
}
