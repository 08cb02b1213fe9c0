//! The WebService (SOAP) exchange end to end: the agent calls `exchange-sim`'s operation over
//! loopback from a PostgreSQL source of its own, in SOAP 1.1 and 1.2, with the records as XML
//! elements and as GZIP+Base64 JSON and CSV payloads; what the receiver stored is compared
//! with the source row by row, and its log of requests shows what travelled.

use std::time::Duration;

use crate::common::{Agent, Daemon, PgDb, rejects, wait_for};
use crate::http::Sim;

/// Text, Chinese included, with XML's special characters, line ends, a NULL; decimals,
/// dates, binary and times.
const TABLE: &str = "CREATE TABLE t (id int PRIMARY KEY, name text, amount numeric(12,2), \
    born date, photo bytea, updated_at timestamp(0) NOT NULL);";

fn insert(from: i64, n: i64, day: &str) -> String {
    format!(
        "INSERT INTO t SELECT i, '名称 ' || i, i * 1.25, date '2000-01-01' + i, \
         decode(lpad(to_hex(i), 8, '0'), 'hex'), \
         timestamp '{day} 00:00:00' + i * interval '1 second' \
         FROM generate_series({from}, {}) i;",
        from + n - 1
    )
}

const AWKWARD: &str = "UPDATE t SET name = '统一社会信用代码 & <测试> \"引号\" ''单'' ]]> ' WHERE id = 1; \
     UPDATE t SET name = E'第一行\\r\\n第二行\\t末' WHERE id = 2; \
     UPDATE t SET name = NULL, photo = NULL WHERE id = 3;";

/// The source's rows as the receiver should hold them, and what it holds, as text.
async fn both(pg: &PgDb, sim: &Sim) -> (Vec<String>, Vec<String>) {
    let want: Vec<String> = pg
        .rows(
            "SELECT id::text, coalesce(name, '<null>'), amount::text, born::text, \
             coalesce(encode(photo, 'base64'), '<null>'), \
             to_char(updated_at, 'YYYY-MM-DD\"T\"HH24:MI:SS') || '+08:00' FROM t ORDER BY t.id",
        )
        .await
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(Option::unwrap_or_default)
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect();
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "<null>".into(),
        other => other.to_string(),
    };
    let got: Vec<String> = sim
        .records("t")
        .await
        .iter()
        .map(|v| {
            ["id", "name", "amount", "born", "photo", "updated_at"]
                .iter()
                .map(|c| text(&v[*c]))
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect();
    (want, got)
}

async fn wait_equal(pg: &PgDb, sim: &Sim, daemon: &Daemon, timeout: Duration) {
    let start = std::time::Instant::now();
    loop {
        let (want, got) = both(pg, sim).await;
        if want == got {
            return;
        }
        if start.elapsed() > timeout {
            let log = daemon.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "the receiver holds {} of {} rows after {timeout:?}; the daemon's log ends:\n{}",
                got.len(),
                want.len(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn config(pg: &PgDb, sim: &Sim, soap: &str, exchange_extra: &str, table_extra: &str) -> String {
    format!(
        r#"[agent]
id = "230000-SOAP"
state_dir = "{{dir}}/state"
timezone = "Asia/Shanghai"
retry_max = "1s"

[source]
url = "{}"

[exchange]
kind = "soap"
url = "{}/soap/{{table}}"
{exchange_extra}

[exchange.soap]
namespace = "http://exchange.example.gov.cn/ws"
operation = "pushData"
{soap}

[[table]]
source = "t"
watermark = {{ kind = "timestamp", column = "updated_at", lookback = "0s" }}
{table_extra}
"#,
        pg.url, sim.base
    )
}

const SIM_TABLE: &str = "[[table]]\nname = \"t\"\nversion = \"updated_at\"\nkey = [\"id\"]\n";

#[tokio::test]
async fn xml_and_payload_calls_in_soap_1_1_and_1_2_store_every_row_as_the_source_has_it() {
    let pg = PgDb::new("soap_shapes").await;
    pg.exec(&format!("{TABLE}{}{AWKWARD}", insert(1, 120, "2026-01-01")))
        .await;
    let hmac = "[exchange.auth]\nkind = \"hmac-sha256\"\napp_key = \"dept-1\"\n\
                app_secret = \"${env:SIM_SECRET}\"\n";
    for (soap, signed) in [
        ("version = \"1.1\"\npayload = \"xml\"", false),
        (
            "version = \"1.2\"\npayload = \"xml\"\nnull = \"absent\"",
            true,
        ),
        ("version = \"1.1\"\npayload = \"json-gzip-base64\"", true),
        ("version = \"1.2\"\npayload = \"csv-gzip-base64\"", false),
    ] {
        let sim = Sim::start(&format!(
            "{}{SIM_TABLE}",
            if signed {
                "[auth]\nkind = \"hmac-sha256\"\napp_key = \"dept-1\"\napp_secret = \"${env:SIM_SECRET}\"\n"
            } else {
                ""
            }
        ));
        let agent = Agent::new(&config(
            &pg,
            &sim,
            soap,
            &format!("max_records = 40\n{}", if signed { hmac } else { "" }),
            "batch_size = 100",
        ));
        let out = agent
            .command()
            .env("SIM_SECRET", "sim-secret-value")
            .arg("once")
            .output()
            .expect("once");
        assert!(
            out.status.success(),
            "{soap}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (want, got) = both(&pg, &sim).await;
        assert_eq!(want.len(), 120);
        assert_eq!(got, want, "{soap}");
        let requests = sim.requests().await;
        assert!(
            requests.iter().all(|(_, o, _)| o == "applied"),
            "{soap}: {requests:?}"
        );
        // Two batches of 100 and 20 rows, in calls of at most 40 records.
        assert_eq!(requests.len(), 3 + 1, "{soap}");
        assert!(
            requests
                .iter()
                .all(|(b, _, _)| b.as_deref().is_some_and(|b| b.starts_with("230000-SOAP"))),
            "every call carries its batch id: {requests:?}"
        );
    }
    pg.drop().await;
}

#[tokio::test]
async fn server_faults_fail_the_table_then_are_retried_and_nothing_is_lost_or_applied_twice() {
    let pg = PgDb::new("soap_faults").await;
    pg.exec(&format!("{TABLE}{}", insert(1, 200, "2026-01-01")))
        .await;
    let down = Sim::start("[faults]\nerror_share = 1.0\n");
    let agent = Agent::new(&config(
        &pg,
        &down,
        "version = \"1.2\"",
        "timeout = \"5s\"",
        "schedule = \"realtime@200ms\"\nbatch_size = 50",
    ));
    let daemon = Daemon::start(&agent, &[]);
    let endpoint = format!("{}/soap/t", down.base);
    wait_for(
        "the table failing on the SOAP faults",
        Duration::from_secs(30),
        async || {
            let t = agent.status_json()["tables"][0].clone();
            t["failures"].as_i64().is_some_and(|f| f >= 2)
                && t["last_error"].as_str().is_some_and(|e| {
                    e.contains("SOAP fault soap:Receiver: injected fault") && e.contains(&endpoint)
                })
        },
    )
    .await;
    let failing = agent.ok(&["status"]);
    assert!(failing.contains("FAILING"), "{failing}");
    // The WebService comes back on the same address, still faulty: every row arrives.
    let addr = down.base.trim_start_matches("http://").to_owned();
    drop(down);
    let seed: u64 = rand::RngExt::random(&mut crate::common::seeded_rng("soap faults"));
    let sim = Sim::start_on(
        &addr,
        &format!(
            "{SIM_TABLE}[faults]\nerror_share = 0.3\ndrop_share = 0.1\n\
             drop_after_share = 0.3\nseed = {seed}\n"
        ),
    );
    // At least three waves, and more until three faults were injected and an answer was lost
    // after the receiver applied the call (the draws are random: a few calls may miss them).
    for wave in 0..12 {
        let seen = sim.requests().await;
        let faults = seen
            .iter()
            .filter(|(_, o, _)| o == "soap fault" || o == "dropped before")
            .count();
        if wave >= 3 && faults >= 3 && seen.iter().any(|(_, o, _)| o == "replayed") {
            break;
        }
        let day = format!("2026-03-{:02}", wave + 1);
        pg.exec(&format!(
            "UPDATE t SET amount = amount + 1, \
             updated_at = timestamp '{day} 00:00:00' + id * interval '1 second' \
             WHERE id % 5 = {wave}; {}",
            insert(201 + wave * 40, 40, &day)
        ))
        .await;
        wait_equal(&pg, &sim, &daemon, Duration::from_secs(120)).await;
    }
    let requests = sim.requests().await;
    let faults = requests
        .iter()
        .filter(|(_, o, _)| o == "soap fault" || o == "dropped before")
        .count();
    let outcomes: Vec<&String> = requests.iter().map(|(_, o, _)| o).collect();
    assert!(faults >= 3, "the faults were injected: {outcomes:?}");
    let mut applied: Vec<&String> = requests
        .iter()
        .filter(|(_, o, _)| o.starts_with("applied"))
        .filter_map(|(b, _, _)| b.as_ref())
        .collect();
    let n = applied.len();
    applied.sort();
    applied.dedup();
    assert_eq!(applied.len(), n, "a batch was applied twice");
    assert!(
        requests.iter().any(|(_, o, _)| o == "replayed"),
        "a call whose answer was lost was made again and answered from the receiver's memory"
    );
    wait_for("the table recovered", Duration::from_secs(30), async || {
        agent.status_json()["tables"][0]["failures"].as_i64() == Some(0)
    })
    .await;
    daemon.stop();
    pg.drop().await;
}

#[tokio::test]
async fn a_record_the_webservice_rejects_is_in_the_ledger_and_resent_after_correction() {
    let pg = PgDb::new("soap_rejects").await;
    pg.exec(&format!("{TABLE}{}", insert(1, 20, "2026-01-01")))
        .await;
    pg.exec("UPDATE t SET name = NULL WHERE id IN (3, 17)")
        .await;
    // A login token, asked of the receiver and carried in a header, as for http.
    let sim = Sim::start(&format!(
        "[auth]\nkind = \"login\"\napp_key = \"dept-1\"\napp_secret = \"${{env:SIM_SECRET}}\"\n\
         {SIM_TABLE}required = [\"name\"]\n"
    ));
    let login = format!(
        "[exchange.auth]\nkind = \"login\"\napp_key = \"dept-1\"\n\
         app_secret = \"${{env:SIM_SECRET}}\"\nlogin_url = \"{}/login\"\n",
        sim.base
    );
    let agent = Agent::new(&config(&pg, &sim, "version = \"1.2\"", &login, ""));
    // Every command needs the secret; none prints it. Returns stdout.
    let ok = |args: &[&str]| {
        let out = agent
            .command()
            .env("SIM_SECRET", "sim-secret-value")
            .args(args)
            .output()
            .expect("run");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{args:?}: {stdout}{stderr}");
        assert!(!format!("{stdout}{stderr}").contains("sim-secret-value"));
        stdout
    };
    let rejects = |state: &str| -> Vec<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(&ok(&[
            "rejects", "list", "--json", "--state", state,
        ]))
        .expect("json")
        .as_array()
        .cloned()
        .unwrap_or_default()
    };
    let check = ok(&["check"]);
    assert!(check.contains("soap"), "{check}");
    ok(&["once"]);
    let open = rejects("open");
    assert_eq!(open.len(), 2, "{open:?}");
    for r in &open {
        assert_eq!(r["origin"], "province", "{r}");
        let reasons = r.to_string();
        assert!(
            reasons.contains("E_REQUIRED") && reasons.contains("name is required"),
            "{r}"
        );
    }
    let listed = ok(&["rejects", "list"]);
    assert!(listed.contains("name is required"), "{listed}");
    assert_eq!(sim.records("t").await.len(), 18);

    pg.exec(
        "UPDATE t SET name = '已更正', updated_at = updated_at + interval '1 day' \
         WHERE id IN (3, 17)",
    )
    .await;
    ok(&["once"]);
    assert!(rejects("open").is_empty());
    assert_eq!(rejects("cleared").len(), 2);
    let (want, got) = both(&pg, &sim).await;
    assert_eq!(got, want);
    pg.drop().await;
}

#[tokio::test]
async fn a_call_refused_by_a_client_fault_is_split_until_the_bad_record_is_alone() {
    let pg = PgDb::new("soap_split").await;
    pg.exec(&format!("{TABLE}{}", insert(1, 16, "2026-01-01")))
        .await;
    pg.exec("UPDATE t SET name = NULL WHERE id = 11").await;
    let sim = Sim::start(&format!(
        "{SIM_TABLE}required = [\"name\"]\nrefuse_whole = true\n"
    ));
    let agent = Agent::new(&config(&pg, &sim, "", "", ""));
    agent.ok(&["once"]);
    let open = rejects(&agent, &["--state", "open"]);
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(
        open[0].to_string().contains("name is required"),
        "{}",
        open[0]
    );
    assert_eq!(sim.records("t").await.len(), 15);
    let refused = sim
        .requests()
        .await
        .iter()
        .filter(|(_, o, _)| o == "refused")
        .count();
    // 16 records, halved until the one is alone: 16, 8, 4, 2, 1.
    assert_eq!(refused, 5);
    pg.drop().await;
}

#[test]
fn a_bad_soap_configuration_names_every_key_and_line() {
    let agent = Agent::new(
        "[agent]\nid = \"a\"\nstate_dir = \"{dir}/s\"\n[source]\nurl = \"sqlite://{dir}/a.db\"\n\
         [exchange]\nkind = \"soap\"\nurl = \"ftp://x/ws\"\ngzip = true\n\
         [exchange.soap]\nversion = \"2.0\"\noperation = \"push data\"\npayload = \"zip\"\n\
         record_element = \"1row\"\nresult_path = \"Resp//code\"\nnull = \"empty\"\n\
         [[table]]\nsource = \"t\"\nwatermark = { kind = \"key\" }\n",
    );
    let out = agent.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        ":8: exchange.url:",
        ":9: exchange.gzip:",
        "exchange.soap.namespace: is required",
        ":11: exchange.soap.version: `2.0`",
        ":12: exchange.soap.operation: `push data`",
        ":13: exchange.soap.payload: `zip`",
        ":14: exchange.soap.record_element: `1row`",
        ":15: exchange.soap.result_path:",
        ":16: exchange.soap.null: `empty`",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
    assert!(!agent.dir.path().join("a.db").exists(), "nothing connected");

    // The SOAP keys under another kind are refused too.
    let agent = Agent::new(
        "[agent]\nid = \"a\"\nstate_dir = \"{dir}/s\"\n[source]\nurl = \"sqlite://{dir}/a.db\"\n\
         [exchange]\nkind = \"http\"\nurl = \"http://127.0.0.1:1/x\"\n\
         [exchange.soap]\nnamespace = \"urn:x\"\n\
         [[table]]\nsource = \"t\"\nwatermark = { kind = \"key\" }\n",
    );
    let out = agent.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let t = String::from_utf8_lossy(&out.stderr);
    assert!(
        t.contains(":9: exchange.soap: applies to kind = \"soap\""),
        "{t}"
    );
}

#[tokio::test]
async fn a_kill_between_the_answer_and_the_commit_makes_the_same_call_again() {
    let pg = PgDb::new("soap_kill").await;
    pg.exec(&format!("{TABLE}{}", insert(1, 30, "2026-01-01")))
        .await;
    // The second call applied gets no answer: the agent waits, and is killed meanwhile.
    let sim = Sim::start(&format!("{SIM_TABLE}[faults]\nstall_after_batches = 2\n"));
    let agent = Agent::new(&config(
        &pg,
        &sim,
        "payload = \"json-gzip-base64\"",
        "timeout = \"5m\"",
        "batch_size = 10",
    ));
    let daemon = Daemon::start(&agent, &[]);
    wait_for(
        "the receiver to apply the second call",
        Duration::from_secs(60),
        async || {
            sim.requests()
                .await
                .iter()
                .any(|(_, o, _)| o == "applied, stalled")
        },
    )
    .await;
    daemon.kill();
    agent.ok(&["once"]);
    let requests = sim.requests().await;
    let (stalled, body) = requests
        .iter()
        .find(|(_, o, _)| o == "applied, stalled")
        .map(|(b, _, body)| (b.clone().expect("batch"), body.clone()))
        .expect("stalled");
    let again: Vec<_> = requests
        .iter()
        .filter(|(b, o, _)| b.as_deref() == Some(stalled.as_str()) && o == "replayed")
        .collect();
    assert_eq!(again.len(), 1, "{requests:?}");
    assert_eq!(again[0].2, body, "the same records under the same id");
    let (want, got) = both(&pg, &sim).await;
    assert_eq!(got, want);
    pg.drop().await;
}

#[tokio::test]
async fn deletes_travel_with_their_key_and_version_and_remove_the_record() {
    let pg = PgDb::new("soap_deletes").await;
    pg.exec(
        "CREATE TABLE c (cd_id int PRIMARY KEY, name text, cd_operation varchar(1) NOT NULL, \
         cd_time timestamp(6) NOT NULL); \
         INSERT INTO c SELECT i, '名称 ' || i, 'I', timestamp '2026-11-01 08:00:00' + i * interval '1 second' \
         FROM generate_series(1, 10) i;",
    )
    .await;
    for payload in ["xml", "csv-gzip-base64"] {
        let sim = Sim::start("[[table]]\nname = \"c\"\nversion = \"cd_time\"\nkey = [\"cd_id\"]\n");
        let text = config(&pg, &sim, &format!("payload = \"{payload}\""), "", "")
            .replace("source = \"t\"", "source = \"c\"")
            .replace(
                "{ kind = \"timestamp\", column = \"updated_at\", lookback = \"0s\" }",
                "{ kind = \"control\", lookback = \"0s\" }",
            );
        let agent = Agent::new(&text);
        agent.ok(&["once"]);
        let held =
            crate::common::sqlite_rows(&sim.store(), "SELECT CAST(count(*) AS TEXT) FROM records")
                .await;
        assert_eq!(held[0][0].as_deref(), Some("10"), "{payload}");
        pg.exec(
            "UPDATE c SET cd_operation = 'D', cd_time = cd_time + interval '1 day' \
             WHERE cd_id IN (3, 7)",
        )
        .await;
        agent.ok(&["once"]);
        let ids: Vec<String> = crate::common::sqlite_rows(
            &sim.store(),
            "SELECT rkey FROM records WHERE tbl = 'c' ORDER BY CAST(rkey AS INTEGER)",
        )
        .await
        .into_iter()
        .filter_map(|mut r| r.pop().flatten())
        .collect();
        assert_eq!(ids, ["1", "2", "4", "5", "6", "8", "9", "10"], "{payload}");
        let requests = sim.requests().await;
        let last = requests.last().and_then(|r| r.2.clone()).expect("body");
        assert!(
            last.contains("\"op\":\"D\"") && last.contains("cd_time"),
            "{payload}: a delete carries its key and version: {last}"
        );
        // Back to inserts for the next payload.
        pg.exec("UPDATE c SET cd_operation = 'I', cd_time = cd_time - interval '1 day' WHERE cd_id IN (3, 7)")
            .await;
    }
    pg.drop().await;
}
