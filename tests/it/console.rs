//! The web console against a daemon exchanging real PostgreSQL tables: every page and its
//! JSON twin shows what `status --json` and `rejects list --json` say; resubmitting and
//! resyncing from the console act as the command line does and are recorded under the
//! signed-in user; a request without a sign-in, or a form without its CSRF token, is refused;
//! sessions end; the Grafana dashboard names only series `/metrics` exposes. The browser
//! test drives Debian's chromium (`browser.rs`).

mod browser;

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::redirect::Policy;

use crate::common::{Agent, Daemon, PgDb, header, rejects, wait_for};

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// An argon2id hash of `password` in PHC form, cheap to check (the parameters travel in the
/// hash; production hashes use the defaults).
pub fn hash(password: &str) -> String {
    use argon2::PasswordHasher;
    let params = argon2::Params::new(1024, 1, 1, None).expect("params");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_with_salt(password.as_bytes(), b"console-test-salt")
        .expect("hash")
        .to_string()
}

pub const OPERATOR_TOKEN: &str = "operator-token-0123456789";
pub const VIEWER_TOKEN: &str = "viewer-token-0123456789ab";

/// Two tables on real PostgreSQL databases, rows 3 and 4 of `up_action` quarantined by the
/// USCC rule (the name column masked), a console and a metrics endpoint.
pub struct Scene {
    pub src: PgDb,
    pub tgt: PgDb,
    pub agent: Agent,
    pub console: String,
    pub metrics: String,
}

impl Scene {
    pub async fn new(tag: &str, extra_agent: &str) -> Scene {
        let src = PgDb::new(tag).await;
        let tgt = PgDb::new(tag).await;
        let ddl = "CREATE TABLE up_action (action_id int PRIMARY KEY, name text, uscc varchar(18), \
                   updated_at timestamp(6) NOT NULL); \
                   CREATE TABLE up_object (id int PRIMARY KEY, v text, updated_at timestamp(6) NOT NULL)";
        src.exec(ddl).await;
        tgt.exec(&ddl.replace("up_action", "jg_action")).await;
        // The rows to be rejected are older than the rest by more than the lookback: a
        // correction that keeps their change time is not read again by the cycles, only by
        // a resubmission.
        src.exec(
            "INSERT INTO up_action SELECT g, '企业' || g, '91350100M000100Y43', \
             '2026-11-02'::timestamp + g * interval '1 minute' FROM generate_series(1, 6) g; \
             UPDATE up_action SET uscc = '91350100M000100Y44', \
             updated_at = '2026-11-01'::timestamp + action_id * interval '1 second' \
             WHERE action_id IN (3, 4); \
             INSERT INTO up_object SELECT g, 'v' || g, '2026-11-02'::timestamp + g * interval '1 second' \
             FROM generate_series(1, 20) g",
        )
        .await;
        let console = format!("127.0.0.1:{}", free_port());
        let metrics = format!("127.0.0.1:{}", free_port());
        let agent = Agent::new(&format!(
            "{}\n[[table]]\nsource = \"up_action\"\ntarget = \"jg_action\"\n\
             schedule = \"every:1s\"\ncategory = \"supervision_action\"\n\
             watermark = {{ kind = \"timestamp\", column = \"updated_at\", lookback = \"1s\" }}\n\
             mask = {{ name = {{ keep = [1, 0] }} }}\n\
             rules = [ {{ id = \"USCC\", column = \"uscc\", check = \"uscc\", message = \"统一社会信用代码校验位错误\" }} ]\n\
             [[table]]\nsource = \"up_object\"\nschedule = \"every:1s\"\n\
             watermark = {{ kind = \"timestamp\", column = \"updated_at\", lookback = \"1s\" }}\n",
            header(&src.url, &tgt.url).replace(
                "department_code = \"SCJGJ\"\n",
                &format!(
                    "department_code = \"SCJGJ\"\n{extra_agent}\nconsole = \"{console}\"\nmetrics = \"{metrics}\"\n\
                     [[agent.console_user]]\nname = \"li\"\npassword_hash = \"{}\"\n\
                     token = \"${{file:{{dir}}/operator.token}}\"\nrole = \"operator\"\n\
                     [[agent.console_user]]\nname = \"wang\"\ntoken = \"${{file:{{dir}}/viewer.token}}\"\n",
                    hash("correct horse")
                )
            )
        ));
        std::fs::write(agent.dir.path().join("operator.token"), OPERATOR_TOKEN).expect("token");
        std::fs::write(agent.dir.path().join("viewer.token"), VIEWER_TOKEN).expect("token");
        Scene {
            src,
            tgt,
            agent,
            console: format!("http://{console}"),
            metrics: format!("http://{metrics}"),
        }
    }

    /// Start the daemon and wait for both tables' rows and the two rejects.
    pub async fn start(&self) -> Daemon {
        let d = Daemon::start(&self.agent, &[]);
        wait_for("the first exchange", Duration::from_secs(30), async || {
            self.tgt.scalar_i64("SELECT count(*) FROM jg_action").await == 4
                && self.tgt.scalar_i64("SELECT count(*) FROM up_object").await == 20
        })
        .await;
        let client = reqwest::Client::new();
        wait_for("the console", Duration::from_secs(20), async || {
            client
                .get(format!("{}/login", self.console))
                .send()
                .await
                .is_ok()
        })
        .await;
        d
    }

    pub async fn drop(self) {
        self.src.drop().await;
        self.tgt.drop().await;
    }
}

/// A form body, url-encoded (the crate's reqwest is built without its `form` feature).
pub trait FormBody {
    fn form_body(self, fields: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body(self, fields: &[(&str, &str)]) -> Self {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in fields {
            q.append_pair(k, v);
        }
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(q.finish())
    }
}

async fn json_of(r: reqwest::Response) -> serde_json::Value {
    let text = r.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// The value of a cookie a response sets.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The value of the first hidden input `name` in a page.
fn hidden(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} field in:\n{html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').expect("end of value")].to_owned()
}

/// A signed-in browser: its session cookie and its CSRF token.
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

pub async fn sign_in(base: &str, name: &str, password: &str) -> Result<Session, StatusCode> {
    let c = client();
    let page = c
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("login page");
    let login = set_cookie(&page, "frontdb_login").expect("login cookie");
    let html = page.text().await.expect("html");
    let r = c
        .post(format!("{base}/login"))
        .header("cookie", format!("frontdb_login={login}"))
        .form_body(&[
            ("csrf", hidden(&html, "csrf").as_str()),
            ("name", name),
            ("password", password),
        ])
        .send()
        .await
        .expect("sign in");
    if r.status() != StatusCode::SEE_OTHER {
        return Err(r.status());
    }
    let cookie = format!(
        "frontdb_session={}",
        set_cookie(&r, "frontdb_session").expect("session")
    );
    let home = c
        .get(format!("{base}/actions"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("a page");
    assert_eq!(home.status(), StatusCode::OK);
    let csrf = hidden(&home.text().await.expect("html"), "csrf");
    Ok(Session { cookie, csrf })
}

impl Session {
    pub async fn get(&self, url: &str) -> (StatusCode, String) {
        let r = client()
            .get(url)
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("get");
        (r.status(), r.text().await.expect("body"))
    }

    pub async fn post(&self, url: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let r = client()
            .post(url)
            .header("cookie", &self.cookie)
            .form_body(form)
            .send()
            .await
            .expect("post");
        (r.status(), r.text().await.expect("body"))
    }
}

async fn api(url: &str, token: &str) -> (StatusCode, serde_json::Value) {
    let r = client()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("api");
    let code = r.status();
    (code, json_of(r).await)
}

/// The text of the row `<tr id="table-NAME" ...>` of the overview.
fn table_row<'a>(html: &'a str, name: &str) -> &'a str {
    let at = html
        .find(&format!("<tr id=\"table-{name}\""))
        .unwrap_or_else(|| panic!("no row for {name}:\n{html}"));
    let rest = &html[at..];
    &rest[..rest.find("</tr>").expect("end of row")]
}

#[tokio::test]
async fn pages_and_api_show_what_status_and_rejects_say_and_refuse_strangers() {
    let s = Scene::new("console_pages", "").await;
    let daemon = s.start().await;
    let base = &s.console;

    // Nobody signed in: pages lead to the sign-in page, the API says 401, a wrong password
    // and an unknown token get nowhere.
    for path in [
        "/",
        "/rejects",
        "/actions",
        "/table/up_action",
        "/rejects.csv",
    ] {
        let r = client()
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(r.headers()["location"], "/login", "{path}");
    }
    for path in [
        "/api/overview",
        "/api/rejects",
        "/api/actions",
        "/api/table/up_action",
        "/api/rejects/1",
    ] {
        let r = client()
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let (code, _) = api(&format!("{base}{path}"), "not-a-token-of-anybody").await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(
        sign_in(base, "li", "wrong horse").await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        sign_in(base, "nobody", "correct horse").await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    let li = sign_in(base, "li", "correct horse")
        .await
        .expect("li signs in");

    // The overview's figures are status's.
    let status = s.agent.status_json();
    let (code, overview) = api(&format!("{base}/api/overview"), VIEWER_TOKEN).await;
    assert_eq!(code, StatusCode::OK, "{overview}");
    let (code, html) = li.get(&format!("{base}/")).await;
    assert_eq!(code, StatusCode::OK);
    for t in status["tables"].as_array().expect("tables") {
        let name = t["table"].as_str().expect("name");
        let o = overview["tables"]
            .as_array()
            .and_then(|v| v.iter().find(|x| x["table"] == name))
            .unwrap_or_else(|| panic!("{name} not in {overview}"));
        for k in [
            "rows_total",
            "rows_24h",
            "open_rejects",
            "failures",
            "last_outcome",
            "schedule",
            "direction",
        ] {
            assert_eq!(
                o[k], t[k],
                "{name}.{k}: console {overview}\nstatus {status}"
            );
        }
        let lag = |v: &serde_json::Value| v["lag_seconds"].as_i64().expect("lag");
        assert!((lag(o) - lag(t)).abs() <= 2, "{o} {t}");
        let row = table_row(&html, name);
        assert!(
            row.contains(&format!(
                "<td class=\"num rows-24h\">{}</td>",
                t["rows_24h"]
            )),
            "{row}"
        );
        let rejects = t["open_rejects"].as_i64().expect("n");
        assert!(row.contains(&format!(">{rejects}<")), "{row}");
    }
    assert_eq!(status["tables"][0]["open_rejects"], 2, "{status}");
    assert!(
        table_row(&html, "up_action").contains("compliance-met"),
        "{html}"
    );

    // The rejects are `rejects list --json`'s, whole and filtered.
    let cli = rejects(&s.agent, &[]);
    let (_, all) = api(&format!("{base}/api/rejects"), VIEWER_TOKEN).await;
    assert_eq!(all, serde_json::Value::Array(cli.clone()));
    let cli_open = rejects(&s.agent, &["--state", "open", "--table", "up_action"]);
    let (_, open) = api(
        &format!("{base}/api/rejects?state=open&table=up_action&origin=rule&rule=USCC"),
        VIEWER_TOKEN,
    )
    .await;
    assert_eq!(open, serde_json::Value::Array(cli_open));
    let (_, none) = api(&format!("{base}/api/rejects?origin=province"), VIEWER_TOKEN).await;
    assert_eq!(none, serde_json::json!([]));
    let (code, html) = li.get(&format!("{base}/rejects?state=open")).await;
    assert_eq!(code, StatusCode::OK);
    for r in &cli {
        assert!(
            html.contains(&format!("<tr id=\"reject-{}\">", r["id"])),
            "{html}"
        );
    }
    assert!(html.contains("统一社会信用代码校验位错误"), "{html}");

    // One reject: its values masked as stored, its reasons, as `rejects show --json` says.
    let id = cli[0]["id"].as_i64().expect("id");
    let show: serde_json::Value =
        serde_json::from_str(&s.agent.ok(&["rejects", "show", &id.to_string(), "--json"]))
            .expect("json");
    let (_, one) = api(&format!("{base}/api/rejects/{id}"), VIEWER_TOKEN).await;
    assert_eq!(one, show);
    let (_, html) = li.get(&format!("{base}/rejects/{id}")).await;
    let key = cli[0]["key"].as_str().expect("key");
    assert!(
        !html.contains(&format!("企业{key}")),
        "an unmasked value shows:\n{html}"
    );
    assert!(html.contains("企**"), "{html}");

    // The CSV for Excel: a byte-order mark, a header, one line per reject.
    let r = client()
        .get(format!("{base}/rejects.csv?table=up_action"))
        .header("cookie", &li.cookie)
        .send()
        .await
        .expect("csv");
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = r.text().await.expect("csv");
    assert!(csv.starts_with("\u{feff}id,table,key,state"), "{csv}");
    assert_eq!(csv.lines().count(), 3, "{csv}");

    // A table's page: its figures, its chart, its batches as the ledger has them.
    let (_, t) = api(&format!("{base}/api/table/up_object?days=30"), VIEWER_TOKEN).await;
    assert_eq!(t["days"], 30);
    assert_eq!(t["series"].as_array().map(Vec::len), Some(30));
    let sent: i64 = t["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|p| p["rows"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(sent, 20, "{t}");
    // The rows are of 2026-11-02 (Asia/Shanghai): the lag at today's end is since then.
    let today = t["series"][29].clone();
    let newest = chrono::NaiveDate::from_ymd_opt(2026, 11, 2)
        .and_then(|d| d.and_hms_opt(0, 0, 20))
        .expect("date")
        .and_local_timezone(chrono_tz::Asia::Shanghai)
        .single()
        .expect("time");
    let expected = (chrono::Utc::now() - newest.with_timezone(&chrono::Utc)).num_seconds();
    let lag = today["lag_seconds"]
        .as_i64()
        .unwrap_or_else(|| panic!("no lag in {today}"));
    assert!(
        (expected - lag).abs() < 120,
        "lag {lag}, expected about {expected}: {today}"
    );
    assert!(!t["batches"].as_array().expect("batches").is_empty());
    let (code, html) = li.get(&format!("{base}/table/up_object")).await;
    assert_eq!(code, StatusCode::OK);
    assert!(html.contains("<svg class=\"chart\""), "{html}");
    assert!(
        html.contains(&format!(
            "<span id=\"rows-total\">{}</span>",
            t["row"]["rows_total"]
        )),
        "{html}"
    );
    let (code, _) = li.get(&format!("{base}/table/nonesuch")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Chinese from the browser's language, or chosen; English otherwise.
    let zh = client()
        .get(format!("{base}/"))
        .header("cookie", &li.cookie)
        .header("accept-language", "zh-CN,zh;q=0.9,en;q=0.5")
        .send()
        .await
        .expect("zh")
        .text()
        .await
        .expect("html");
    assert!(zh.contains("概览") && zh.contains("待处理退回"), "{zh}");
    let (_, en) = li.get(&format!("{base}/")).await;
    assert!(en.contains("Overview") && !en.contains("概览"), "{en}");
    let r = client()
        .get(format!("{base}/lang/zh-CN?back=/rejects"))
        .send()
        .await
        .expect("lang");
    assert_eq!(r.headers()["location"], "/rejects");
    let lang = set_cookie(&r, "frontdb_lang").expect("lang cookie");
    let chosen = client()
        .get(format!("{base}/rejects"))
        .header("cookie", format!("{}; frontdb_lang={lang}", li.cookie))
        .header("accept-language", "en")
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(chosen.contains("退回数据"), "{chosen}");
    let r = client()
        .get(format!("{base}/lang/en?back=//evil.example/"))
        .send()
        .await
        .expect("lang");
    assert_eq!(r.headers()["location"], "/", "never back to another site");

    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        !log.contains(OPERATOR_TOKEN) && !log.contains("correct horse"),
        "{log}"
    );
    s.drop().await;
}

/// The audit trail's entries of an action, from `status --json`'s latest actions.
fn audit(agent: &Agent, action: &str) -> Vec<serde_json::Value> {
    agent.status_json()["actions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["action"] == action)
        .collect()
}

#[tokio::test]
async fn resubmit_and_resync_from_the_console_act_as_the_command_line_and_forms_need_their_token() {
    let s = Scene::new("console_acts", "").await;
    let daemon = s.start().await;
    let base = &s.console;
    let li = sign_in(base, "li", "correct horse").await.expect("li");
    let open = rejects(&s.agent, &["--state", "open"]);
    assert_eq!(open.len(), 2, "{open:?}");
    let id_of = |k: &str| {
        open.iter()
            .find(|r| r["key"] == k)
            .and_then(|r| r["id"].as_i64())
            .expect("reject")
    };
    let (by_console, by_cli) = (id_of("3"), id_of("4"));
    // Corrected at the source, keeping their change time: only a resubmission sends them.
    s.src
        .exec("UPDATE up_action SET uscc = '91350100M000100Y43' WHERE action_id IN (3, 4)")
        .await;

    // Forms without their token, with a forged one, or from a viewer change nothing.
    let url = format!("{base}/rejects/resubmit");
    let id = by_console.to_string();
    let (code, _) = li.post(&url, &[("id", id.as_str())]).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, _) = li
        .post(&url, &[("id", id.as_str()), ("csrf", "forged")])
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, _) = li
        .post(
            &format!("{base}/actions/resync"),
            &[("table", "up_object"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, _) = li.post(&format!("{base}/logout"), &[]).await;
    assert_eq!(
        code,
        StatusCode::FORBIDDEN,
        "signing out needs the token too"
    );
    let r = client()
        .post(format!("{base}/api/rejects/resubmit"))
        .bearer_auth(VIEWER_TOKEN)
        .form_body(&[("id", id.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "a viewer may not");
    let r = client()
        .post(format!("{base}/api/rejects/resubmit"))
        .form_body(&[("id", id.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(audit(&s.agent, "rejects resubmit").is_empty());
    assert_eq!(rejects(&s.agent, &["--state", "open"]).len(), 2);
    assert_eq!(s.tgt.scalar_i64("SELECT count(*) FROM jg_action").await, 4);

    // With its token: sent again as `rejects resubmit ID` sends it.
    let (code, page) = li
        .post(
            &url,
            &[
                ("id", id.as_str()),
                ("csrf", li.csrf.as_str()),
                ("back", "/rejects"),
            ],
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{page}");
    assert!(page.contains("1 reject(s)"), "{page}");
    s.agent.ok(&["rejects", "resubmit", &by_cli.to_string()]);
    wait_for(
        "both rows at the exchange",
        Duration::from_secs(20),
        async || s.tgt.scalar_i64("SELECT count(*) FROM jg_action").await == 6,
    )
    .await;
    let after = rejects(&s.agent, &[]);
    let state = |id: i64| {
        after
            .iter()
            .find(|r| r["id"] == id)
            .map(|r| r["state"].clone())
            .expect("reject")
    };
    assert_ne!(state(by_console), "open");
    assert_eq!(state(by_console), state(by_cli), "{after:?}");
    let events = |id: i64| -> Vec<String> {
        let v: serde_json::Value =
            serde_json::from_str(&s.agent.ok(&["rejects", "show", &id.to_string(), "--json"]))
                .expect("json");
        v["history"]
            .as_array()
            .expect("history")
            .iter()
            .map(|h| h["event"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(events(by_console), events(by_cli));
    let asked = audit(&s.agent, "rejects resubmit");
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(
        asked
            .iter()
            .any(|a| a["who"] == "li (console)" && a["detail"] == format!("#{by_console}")),
        "{asked:?}"
    );
    assert!(
        asked
            .iter()
            .any(|a| a["who"] != "li (console)" && a["detail"] == format!("#{by_cli}")),
        "{asked:?}"
    );

    // A resync needs its confirmation, then runs as `resync --table` runs it.
    let (code, page) = li
        .post(
            &format!("{base}/actions/resync"),
            &[("table", "up_object"), ("csrf", li.csrf.as_str())],
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{page}");
    assert!(audit(&s.agent, "resync").is_empty());
    s.tgt.exec("DELETE FROM up_object WHERE id <= 5").await;
    let (code, page) = li
        .post(
            &format!("{base}/actions/resync"),
            &[
                ("table", "up_object"),
                ("csrf", li.csrf.as_str()),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{page}");
    assert!(page.contains("up_object: "), "{page}");
    wait_for(
        "the console's resync",
        Duration::from_secs(30),
        async || s.agent.status_json()["tables"][1]["resync"]["state"] == "done",
    )
    .await;
    assert_eq!(s.tgt.scalar_i64("SELECT count(*) FROM up_object").await, 20);
    let console_run = s.agent.status_json()["tables"][1]["resync"].clone();
    s.tgt.exec("DELETE FROM up_object WHERE id <= 5").await;
    s.agent.ok(&["resync", "--table", "up_object"]);
    wait_for(
        "the command line's resync",
        Duration::from_secs(30),
        async || {
            let r = &s.agent.status_json()["tables"][1]["resync"];
            r["state"] == "done" && r["run_id"] != console_run["run_id"]
        },
    )
    .await;
    assert_eq!(s.tgt.scalar_i64("SELECT count(*) FROM up_object").await, 20);
    let cli_run = s.agent.status_json()["tables"][1]["resync"].clone();
    for k in ["rows", "deleted", "state"] {
        assert_eq!(console_run[k], cli_run[k], "{k}: {console_run} {cli_run}");
    }
    let asked = audit(&s.agent, "resync");
    assert!(
        asked
            .iter()
            .any(|a| a["who"] == "li (console)" && a["detail"] == "table up_object"),
        "{asked:?}"
    );
    assert_eq!(asked.len(), 2, "{asked:?}");
    // The actions page lists both, with who asked.
    let (_, html) = li.get(&format!("{base}/actions")).await;
    assert!(
        html.contains("<td>li (console)</td><td>resync</td>"),
        "{html}"
    );

    // A script with the operator's token may act without a CSRF token (no cookie is sent).
    let r = client()
        .post(format!("{base}/api/resync"))
        .bearer_auth(OPERATOR_TOKEN)
        .form_body(&[("table", "up_action"), ("confirm", "yes")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::OK);
    let body = json_of(r).await;
    assert_eq!(body["asked_by"], "li (console)", "{body}");

    // Signing out ends the session.
    let (code, _) = li
        .post(&format!("{base}/logout"), &[("csrf", li.csrf.as_str())])
        .await;
    assert_eq!(code, StatusCode::SEE_OTHER);
    let (code, _) = li.get(&format!("{base}/")).await;
    assert_eq!(code, StatusCode::SEE_OTHER);
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    s.drop().await;
}

#[tokio::test]
async fn a_session_ends_after_its_idle_time() {
    let s = Scene::new("console_idle", "console_session = \"2s\"").await;
    let daemon = s.start().await;
    let li = sign_in(&s.console, "li", "correct horse")
        .await
        .expect("li");
    let (code, _) = li.get(&format!("{}/", s.console)).await;
    assert_eq!(code, StatusCode::OK);
    // Every request keeps the session alive for 2 s more: ask again after longer and longer
    // pauses; it must live through the short ones and end after the first one past 2 s.
    let mut pause = Duration::from_millis(250);
    loop {
        tokio::time::sleep(pause).await;
        let code = li.get(&format!("{}/", s.console)).await.0;
        if pause < Duration::from_millis(1900) {
            assert_eq!(code, StatusCode::OK, "ended after a pause of {pause:?}");
        } else if pause > Duration::from_millis(2100) {
            assert_eq!(
                code,
                StatusCode::SEE_OTHER,
                "alive after a pause of {pause:?}"
            );
            break;
        }
        pause *= 2;
    }
    // It stays ended.
    assert_eq!(
        li.get(&format!("{}/rejects", s.console)).await.0,
        StatusCode::SEE_OTHER
    );
    drop(daemon);
    s.drop().await;
}

#[tokio::test]
async fn the_grafana_dashboard_names_only_series_metrics_exposes() {
    let s = Scene::new("console_grafana", "").await;
    let daemon = s.start().await;
    let text = reqwest::get(format!("{}/metrics", s.metrics))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let exposed: std::collections::BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana/frontdb-agent.json"
        ))
        .expect("dashboard"),
    )
    .expect("dashboard json");
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    assert!(exprs.len() >= 6, "{exprs:?}");
    let re = regex::Regex::new(r"\bfrontdb_[a-z_]+").expect("re");
    let mut named = std::collections::BTreeSet::new();
    for e in &exprs {
        let found: Vec<&str> = re.find_iter(e).map(|m| m.as_str()).collect();
        assert!(!found.is_empty(), "a query names no series: {e}");
        for f in found {
            assert!(
                exposed.contains(f),
                "{f} (in {e}) is not among /metrics' series: {exposed:?}"
            );
            named.insert(f.to_owned());
        }
    }
    // Lag, rows, rejects, failing and compliance (the last success) are all shown.
    for needed in [
        "frontdb_lag_seconds",
        "frontdb_rows_sent_total",
        "frontdb_open_rejects",
        "frontdb_consecutive_failures",
        "frontdb_last_success_timestamp_seconds",
    ] {
        assert!(
            named.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
    drop(daemon);
    s.drop().await;
}

/// Every Prometheus query of the dashboard: the panels' `expr`, and the `query` of the
/// variables read from Prometheus (`type = "query"`).
fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::String(e)) = m.get("expr") {
                out.push(e.clone());
            }
            if m.get("type").and_then(|t| t.as_str()) == Some("query")
                && let Some(serde_json::Value::String(q)) = m.get("query")
            {
                out.push(q.clone());
            }
            m.values().for_each(|x| collect_exprs(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_exprs(x, out)),
        _ => {}
    }
}

/// Run a command with a locale; insist on success; its standard output.
fn in_locale(agent: &Agent, lang: &str, args: &[&str]) -> String {
    let out = agent
        .command()
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env("LANG", lang)
        .args(args)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?} in {lang}: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test]
async fn the_command_line_follows_the_locale_and_its_json_does_not() {
    let s = Scene::new("console_locale", "").await;
    s.agent.ok(&["once"]);
    let id = rejects(&s.agent, &[])[0]["id"].to_string();
    let zh = in_locale(&s.agent, "zh_CN.UTF-8", &["status"]);
    assert!(zh.contains("交换程序 230000-TEST：未运行"), "{zh}");
    assert!(zh.contains("上次运行") && zh.contains("退回"), "{zh}");
    let en = in_locale(&s.agent, "en_US.UTF-8", &["status"]);
    assert!(en.contains("agent 230000-TEST: daemon not running"), "{en}");
    assert!(en.contains("LAST RUN") && !en.contains("上次运行"), "{en}");
    let show = in_locale(&s.agent, "zh_CN.UTF-8", &["rejects", "show", &id]);
    assert!(
        show.contains(&format!("退回记录 #{id}")) && show.contains("原因："),
        "{show}"
    );
    let check = in_locale(&s.agent, "zh_CN.UTF-8", &["check", "--offline"]);
    assert!(check.contains("：有效，共 2 张表"), "{check}");
    // Machine-readable output is the same in every language.
    for args in [
        &["status", "--json"][..],
        &["rejects", "list", "--json"][..],
        &["rejects", "show", &id, "--json"][..],
    ] {
        let strip = |t: String| {
            let mut v: serde_json::Value = serde_json::from_str(&t).expect("json");
            v.as_object_mut().map(|o| o.remove("generated_at"));
            let tables = v.get_mut("tables").and_then(|t| t.as_array_mut());
            for t in tables.into_iter().flatten() {
                t.as_object_mut().map(|o| o.remove("lag_seconds"));
            }
            v
        };
        assert_eq!(
            strip(in_locale(&s.agent, "zh_CN.UTF-8", args)),
            strip(in_locale(&s.agent, "C.UTF-8", args)),
            "{args:?}"
        );
    }
    s.drop().await;
}
