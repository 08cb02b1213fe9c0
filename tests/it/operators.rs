//! The operators' view: `status --json` and `/metrics` from a running daemon agree with what
//! was exchanged, `/healthz` turns unhealthy when the exchange stays down (or a table falls
//! behind its `max_lag`) and healthy again after, the JSON log, and the embedded `demo`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::common::{Agent, Daemon, PgDb, header, refuse_connections, wait_for};

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `GET path` on the metrics endpoint: (status code, body); `None` while nothing listens.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// Every sample of a Prometheus text exposition: `name{a="b",…}` → value, labels sorted.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let key = match series.split_once('{') {
            Some((name, labels)) => {
                let mut l: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                l.sort();
                format!("{name}{{{}}}", l.join(","))
            }
            None => series.to_owned(),
        };
        out.insert(key, value);
    }
    out
}

fn sample(all: &BTreeMap<String, f64>, key: &str) -> f64 {
    *all.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in:\n{all:#?}"))
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

const DDL: &str = "CREATE TABLE t (id int PRIMARY KEY, v text, \
                   updated_at timestamp(6) NOT NULL DEFAULT (clock_timestamp() AT TIME ZONE 'UTC'))";

fn config(src: &PgDb, tgt: &PgDb, agent_extra: &str, table_extra: &str) -> String {
    format!(
        "{}\n[[table]]\nsource = \"t\"\nschedule = \"every:1s\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\", lookback = \"30s\" }}\n{table_extra}\n",
        header(&src.url, &tgt.url)
            .replace("Asia/Shanghai", "UTC")
            .replace(
                "department_code = \"SCJGJ\"\n",
                &format!("department_code = \"SCJGJ\"\n{agent_extra}\n")
            )
    )
}

#[tokio::test]
async fn status_json_and_metrics_agree_with_what_was_exchanged() {
    let src = PgDb::new("ops").await;
    let tgt = PgDb::new("ops").await;
    src.exec(DDL).await;
    tgt.exec(DDL).await;
    // 120 rows, three of them without the required value: quarantined, not sent.
    src.exec(
        "INSERT INTO t (id, v) SELECT g, CASE WHEN g % 40 = 0 THEN NULL ELSE 'v' || g END \
         FROM generate_series(1, 120) g",
    )
    .await;
    let port = free_port();
    let agent = Agent::new(&config(
        &src,
        &tgt,
        &format!("metrics = \"127.0.0.1:{port}\""),
        "max_lag = \"1h\"\nrules = [ { column = \"v\", check = \"required\", message = \"v is required\" } ]",
    ));
    let daemon = Daemon::start(&agent, &[]);
    wait_for("the first 117 rows", Duration::from_secs(30), async || {
        tgt.scalar_i64("SELECT count(*) FROM t").await == 117
    })
    .await;
    src.exec("INSERT INTO t (id, v) SELECT g, 'v' || g FROM generate_series(121, 150) g")
        .await;
    wait_for("the next 30 rows", Duration::from_secs(30), async || {
        tgt.scalar_i64("SELECT count(*) FROM t").await == 147
    })
    .await;
    let at_exchange = tgt.scalar_i64("SELECT count(*) FROM t").await;
    // The counters move when the batch is acknowledged; give the cycle time to finish. Rows
    // inserted while a cycle runs may arrive as rows dated after its start, which leave the
    // watermark where it was until the next cycle reads them again.
    wait_for(
        "the status to show 147 rows and the watermark at key 150",
        Duration::from_secs(10),
        async || {
            let t = &agent.status_json()["tables"][0];
            t["rows_total"] == 147
                && t["watermark"]
                    .as_str()
                    .is_some_and(|w| w.ends_with("/ 150"))
        },
    )
    .await;

    let status = agent.status_json();
    let t = &status["tables"][0];
    assert_eq!(t["table"], "t", "{status}");
    assert_eq!(t["rows_total"], at_exchange, "{status}");
    assert_eq!(t["rows_24h"], at_exchange, "{status}");
    assert_eq!(t["open_rejects"], 3, "{status}");
    assert_eq!(t["last_outcome"], "ok", "{status}");
    assert_eq!(t["failures"], 0, "{status}");
    assert!(
        t["watermark"]
            .as_str()
            .is_some_and(|w| w.contains("/ 150") || w.contains("150")),
        "{status}"
    );
    let lag = t["lag_seconds"].as_i64().expect("lag_seconds");
    assert!((0..60).contains(&lag), "lag {lag}: {status}");
    assert!(
        t["last_success"].is_string() && t["next_run"].is_string(),
        "{status}"
    );
    assert_eq!(status["daemon"]["running"], true, "{status}");
    assert!(
        status["daemon"]["uptime_seconds"]
            .as_i64()
            .is_some_and(|u| u >= 0),
        "{status}"
    );
    assert_eq!(status["databases"]["exchange"]["up"], true, "{status}");
    assert_eq!(status["databases"]["source"]["up"], true, "{status}");

    let (code, body) = get(port, "/metrics").expect("/metrics answers");
    assert_eq!(code, 200, "{body}");
    let m = samples(&body);
    let table = "table=\"t\"";
    assert_eq!(
        sample(&m, &format!("frontdb_rows_sent_total{{{table}}}")),
        at_exchange as f64
    );
    assert_eq!(
        sample(&m, &format!("frontdb_rows_deleted_total{{{table}}}")),
        0.0
    );
    assert_eq!(
        sample(
            &m,
            &format!("frontdb_rows_quarantined_total{{origin=\"rule\",{table}}}")
        ),
        3.0
    );
    assert!(sample(&m, &format!("frontdb_rows_read_total{{{table}}}")) >= 150.0);
    assert_eq!(sample(&m, &format!("frontdb_open_rejects{{{table}}}")), 3.0);
    assert_eq!(
        sample(&m, &format!("frontdb_consecutive_failures{{{table}}}")),
        0.0
    );
    let lag = sample(&m, &format!("frontdb_lag_seconds{{{table}}}"));
    assert!((0.0..60.0).contains(&lag), "lag {lag}");
    let ok = sample(
        &m,
        &format!("frontdb_last_success_timestamp_seconds{{{table}}}"),
    );
    assert!((now_secs() - ok).abs() < 60.0, "last success {ok}");
    assert!(
        sample(
            &m,
            &format!("frontdb_batch_duration_seconds_count{{{table}}}")
        ) >= 2.0
    );
    assert!(
        sample(
            &m,
            &format!("frontdb_cycles_total{{outcome=\"ok\",{table}}}")
        ) >= 2.0
    );
    assert_eq!(
        sample(&m, "frontdb_database_up{database=\"exchange\"}"),
        1.0
    );
    assert_eq!(sample(&m, "frontdb_database_up{database=\"source\"}"), 1.0);

    let (code, body) = get(port, "/healthz").expect("/healthz answers");
    assert_eq!(code, 200, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).expect("healthz json");
    assert_eq!(h["status"], "ok", "{body}");

    // The human status: one aligned line per table, under its header.
    let text = agent.ok(&["status"]);
    let head = text
        .lines()
        .find(|l| l.starts_with("TABLE"))
        .expect("header");
    let row = text
        .lines()
        .find(|l| l.starts_with("t "))
        .expect("row for t");
    let col = |line: &str, word: &str| line.find(word).expect(word);
    assert!(row.contains(" ok ") && row.contains(" 147 "), "{text}");
    assert_eq!(
        row[col(head, "REJECTS")..].split_whitespace().next(),
        Some("3"),
        "{text}"
    );
    assert!(text.contains("daemon running (pid"), "{text}");
    assert!(text.contains("exchange  answers"), "{text}");

    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn healthz_turns_unhealthy_while_the_exchange_stays_down_and_healthy_after() {
    let src = PgDb::new("health").await;
    let tgt = PgDb::new("health").await;
    src.exec(DDL).await;
    tgt.exec(DDL).await;
    src.exec("INSERT INTO t (id, v) SELECT g, 'v' || g FROM generate_series(1, 20) g")
        .await;
    let port = free_port();
    let secret = "Patrol-Secret-913";
    let agent = Agent::new(
        &config(
            &src,
            &tgt,
            &format!("metrics = \"127.0.0.1:{port}\"\npatrol = \"1s\"\nunhealthy_after = \"3s\""),
            "",
        )
        .replacen("postgres@", &format!("postgres:{secret}@"), 2),
    );
    let daemon = Daemon::start(&agent, &[]);
    wait_for("a healthy agent", Duration::from_secs(30), async || {
        get(port, "/healthz").is_some_and(|(c, _)| c == 200)
    })
    .await;
    wait_for("the 20 rows", Duration::from_secs(30), async || {
        tgt.scalar_i64("SELECT count(*) FROM t").await == 20
    })
    .await;

    refuse_connections(&tgt.name, true).await;
    let down = std::time::Instant::now();
    // Down, but not yet for longer than unhealthy_after: still healthy.
    let (code, body) = get(port, "/healthz").expect("/healthz");
    assert_eq!(code, 200, "unhealthy before the bound passed: {body}");
    wait_for(
        "/healthz to say unhealthy",
        Duration::from_secs(20),
        async || get(port, "/healthz").is_some_and(|(c, _)| c == 503),
    )
    .await;
    assert!(
        down.elapsed() >= Duration::from_secs(3),
        "unhealthy after {:?}",
        down.elapsed()
    );
    let (_, body) = get(port, "/healthz").expect("/healthz");
    let h: serde_json::Value = serde_json::from_str(&body).expect("healthz json");
    assert_eq!(h["status"], "unhealthy", "{body}");
    assert!(
        h["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("the exchange database has been unreachable for")),
        "{body}"
    );
    let status = agent.status_json();
    assert_eq!(status["databases"]["exchange"]["up"], false, "{status}");
    assert_eq!(status["databases"]["source"]["up"], true, "{status}");
    assert!(
        status["databases"]["exchange"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not currently accepting connections")),
        "{status}"
    );
    let text = agent.ok(&["status"]);
    assert!(text.contains("exchange  DOES NOT ANSWER since"), "{text}");
    let (_, metrics) = get(port, "/metrics").expect("/metrics");
    assert_eq!(
        sample(
            &samples(&metrics),
            "frontdb_database_up{database=\"exchange\"}"
        ),
        0.0
    );

    // Rows written during the outage arrive once it is over, and health returns.
    src.exec("INSERT INTO t (id, v) SELECT g, 'v' || g FROM generate_series(21, 30) g")
        .await;
    refuse_connections(&tgt.name, false).await;
    wait_for(
        "/healthz to say healthy again",
        Duration::from_secs(20),
        async || get(port, "/healthz").is_some_and(|(c, _)| c == 200),
    )
    .await;
    wait_for(
        "the 10 rows written during the outage",
        Duration::from_secs(30),
        async || tgt.scalar_i64("SELECT count(*) FROM t").await == 30,
    )
    .await;
    assert_eq!(agent.status_json()["databases"]["exchange"]["up"], true);

    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("the exchange database does not answer"),
        "{log}"
    );
    assert!(log.contains("the exchange database answers again"), "{log}");
    for (what, text) in [
        ("log", log.as_str()),
        ("status", &agent.ok(&["status"])),
        ("status --json", &agent.ok(&["status", "--json"])),
        ("metrics", &metrics),
        ("healthz", &body),
    ] {
        assert!(!text.contains(secret), "{what} shows the password:\n{text}");
    }
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn healthz_names_a_table_that_falls_behind_its_max_lag() {
    let src = PgDb::new("maxlag").await;
    let tgt = PgDb::new("maxlag").await;
    src.exec(DDL).await;
    tgt.exec(DDL).await;
    // The newest change is two hours old: the table is behind a one-hour max_lag.
    src.exec(
        "INSERT INTO t (id, v, updated_at) SELECT g, 'v' || g, \
         (now() AT TIME ZONE 'UTC') - interval '2 hours' FROM generate_series(1, 5) g",
    )
    .await;
    let port = free_port();
    let agent = Agent::new(&config(
        &src,
        &tgt,
        &format!("metrics = \"127.0.0.1:{port}\""),
        "max_lag = \"1h\"",
    ));
    let daemon = Daemon::start(&agent, &[]);
    wait_for(
        "/healthz to name the lagging table",
        Duration::from_secs(30),
        async || {
            get(port, "/healthz").is_some_and(|(c, b)| c == 503 && b.contains("table t: lag 2h"))
        },
    )
    .await;
    let lag = agent.status_json()["tables"][0]["lag_seconds"]
        .as_i64()
        .expect("lag");
    assert!((7200..7260).contains(&lag), "lag {lag}");
    // A fresh change is exchanged: the table is current again.
    src.exec("INSERT INTO t (id, v) VALUES (6, 'fresh')").await;
    wait_for(
        "/healthz to be healthy",
        Duration::from_secs(30),
        async || get(port, "/healthz").is_some_and(|(c, _)| c == 200),
    )
    .await;
    assert_eq!(tgt.scalar_i64("SELECT count(*) FROM t").await, 6);
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn log_format_json_gives_one_json_object_per_line_with_the_cycle_span() {
    let src = PgDb::new("jsonlog").await;
    let tgt = PgDb::new("jsonlog").await;
    src.exec(DDL).await;
    tgt.exec(DDL).await;
    src.exec("INSERT INTO t (id, v) SELECT g, 'v' || g FROM generate_series(1, 7) g")
        .await;
    let agent = Agent::new(&config(&src, &tgt, "log_format = \"json\"", ""));
    let out = agent
        .command()
        .env("FRONTDB_LOG", "info")
        .arg("once")
        .output()
        .expect("once");
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let delivered = events
        .iter()
        .find(|e| e["fields"]["message"] == "batch delivered")
        .unwrap_or_else(|| panic!("no batch event in:\n{log}"));
    assert_eq!(delivered["level"], "INFO");
    assert_eq!(delivered["fields"]["rows"], 7, "{delivered}");
    assert!(
        delivered["fields"]["batch"]
            .as_str()
            .is_some_and(|b| b.starts_with("230000-TEST")),
        "{delivered}"
    );
    assert_eq!(delivered["span"]["name"], "cycle", "{delivered}");
    assert_eq!(delivered["span"]["table"], "t", "{delivered}");
    // The same run on a terminal-less stderr without log_format: plain text, no colour codes.
    agent.rewrite(&config(&src, &tgt, "", ""));
    src.exec("INSERT INTO t (id, v) VALUES (8, 'v8')").await;
    let out = agent
        .command()
        .env("FRONTDB_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .env_remove("INVOCATION_ID")
        .args(["once"])
        .output()
        .expect("once");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("INFO") && !log.contains('\u{1b}') && !log.trim_start().starts_with('{'),
        "{log}"
    );
    src.drop().await;
    tgt.drop().await;
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).expect("prefix").display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn demo(cwd: &Path, tmp: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_frontdb-agent"))
        .arg("demo")
        .args(args)
        .current_dir(cwd)
        .env("TMPDIR", tmp)
        .env_remove("FRONTDB_LOG")
        .output()
        .expect("run demo")
}

#[test]
fn demo_runs_from_an_empty_directory_and_leaves_nothing_behind() {
    let cwd = tempfile::tempdir().expect("cwd");
    let tmp = tempfile::tempdir().expect("tmp");
    let out = demo(cwd.path(), tmp.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stderr.trim().is_empty(), "the demo logged:\n{stderr}");
    // The story, step by step.
    for expected in [
        "everything happens in",
        "up_supervision_action: 7 row(s) sent, 0 deleted, 2 quarantined",
        "up_dishonest_enterprise: 3 row(s) sent, 1 deleted",
        "[USCC] uscc: 统一社会信用代码校验位错误 — check character is `X`, should be `7`",
        "[ITEM] item_code: 监管事项编码应为14位数字",
        "[FORM] check_form: 检查形式不在代码集中",
        "feedback: 1 rejection(s) read from the province",
        "key 1005  [open · province]",
        "[E207] 检查结果与处罚金额不一致",
        "up_supervision_action: 3 row(s) sent",
        "key 1003  [resubmitted · rule]",
        "feedback: 0 rejection(s) read from the province, 3 cleared",
        "state         cleared (from province)",
        "cleared: no new rejection within 1s",
        "TABLE",
        "All 9 inspections of up_supervision_action are at the exchange",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    let row = stdout
        .lines()
        .find(|l| l.starts_with("up_supervision_action "))
        .expect("status row");
    assert!(row.contains(" ok ") && row.contains(" 10 "), "{row}");
    // Nothing left in the working directory, nor in the temporary directory.
    assert_eq!(files(cwd.path()), Vec::<String>::new());
    assert_eq!(files(tmp.path()), Vec::<String>::new());
}

#[test]
fn demo_with_a_directory_keeps_everything_in_it() {
    let cwd = tempfile::tempdir().expect("cwd");
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = cwd.path().join("try");
    let out = demo(cwd.path(), tmp.path(), &["--dir", "try"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("everything happens in try"));
    let f = files(&dir);
    for expected in [
        "agent.toml",
        "demo_exchange.sql",
        "demo_source.sql",
        "exchange.db",
        "qzk.db",
        "state/state.db",
    ] {
        assert!(f.contains(&expected.to_owned()), "{expected} not in {f:?}");
    }
    assert!(
        f.iter()
            .all(|p| !p.contains('/') || p.starts_with("state/")),
        "{f:?}"
    );
    assert_eq!(files(tmp.path()), Vec::<String>::new());
    assert_eq!(
        files(cwd.path())
            .iter()
            .filter(|p| !p.starts_with("try/"))
            .count(),
        0
    );
    // What it left is a working agent: `status` with its configuration reads the same state.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_frontdb-agent"))
        .args(["--config", "try/agent.toml", "status", "--json"])
        .current_dir(cwd.path())
        .output()
        .expect("status");
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    assert_eq!(json["tables"][0]["rows_total"], 10, "{json}");
    // A second demo refuses to overwrite the first.
    let again = demo(cwd.path(), tmp.path(), &["--dir", "try"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("try already holds a demo; give an empty directory"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
