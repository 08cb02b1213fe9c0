//! Alerts (`[[alert]]`): a table made to fail is told to a real webhook receiver, to WeCom-
//! and DingTalk-shaped robots (the same loopback receiver, which records what each posts)
//! and to a real SMTP server (aiosmtpd, STARTTLS and a login required): failing and at risk
//! once each, nothing more while it stays failing, then a recovery for each.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use hmac::{KeyInit, Mac};

use crate::common::{Agent, Daemon, PgDb, header, refuse_connections, wait_for};

/// A Python helper of this test, stopped when dropped.
struct Py(Child);

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python(script: &str, args: &[&str]) -> Py {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/alerts")
        .join(script);
    let child = Command::new("python3")
        .arg(path)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 (scripts/test.sh installs it with aiosmtpd)");
    Py(child)
}

/// A webhook receiver (receiver.py) on a free loopback port, writing what it takes to
/// `dir/hooks.jsonl`: the process, that file and the port, once it listens.
async fn webhook_receiver(dir: &Path) -> (Py, std::path::PathBuf, u16) {
    let hooks = dir.join("hooks.jsonl");
    let port_file = dir.join("hooks.port");
    let receiver = python(
        "receiver.py",
        &[hooks.to_str().expect("p"), port_file.to_str().expect("p")],
    );
    wait_for(
        "the webhook receiver",
        Duration::from_secs(20),
        async || port_file.exists(),
    )
    .await;
    let port = std::fs::read_to_string(&port_file)
        .expect("port")
        .trim()
        .parse()
        .expect("port number");
    (receiver, hooks, port)
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// The alerts a robot or webhook took (answered 200), on one path.
fn taken(out: &Path, path: &str) -> Vec<serde_json::Value> {
    lines(out)
        .into_iter()
        .filter(|r| r["path"] == path && r["status"] == 200)
        .collect()
}

/// Every target's alerts taken so far: webhook, wecom, dingtalk, email.
fn counts(hooks: &Path, mail: &Path) -> [usize; 4] {
    [
        taken(hooks, "/flaky").len(),
        taken(hooks, "/wecom").len(),
        taken(hooks, "/dingtalk").len(),
        lines(mail).len(),
    ]
}

async fn metrics(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body")
}

#[tokio::test]
async fn a_failing_table_alerts_every_target_once_and_recovers() {
    let src = PgDb::new("alerts").await;
    let tgt = PgDb::new("alerts").await;
    let ddl = "CREATE TABLE t (id int PRIMARY KEY, v text, updated_at timestamp(6) NOT NULL DEFAULT localtimestamp)";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    src.exec("INSERT INTO t (id, v) SELECT g, 'v' || g FROM generate_series(1, 20) g")
        .await;
    let work = tempfile::tempdir().expect("tempdir");
    let (_receiver, hooks, hport) = webhook_receiver(work.path()).await;
    let (ca, cert, key) = crate::tls::make_ca(work.path(), "smtp");
    let sport = crate::tls::free_port();
    let mail = work.path().join("mail.jsonl");
    let smtp_pw = "smtp-Pw-7731";
    let _smtp = python(
        "smtp.py",
        &[
            mail.to_str().expect("p"),
            &sport.to_string(),
            cert.to_str().expect("p"),
            key.to_str().expect("p"),
            smtp_pw,
        ],
    );
    let ready = work.path().join("mail.jsonl.ready");
    wait_for("the SMTP server", Duration::from_secs(20), async || {
        ready.exists()
    })
    .await;

    let mport = crate::tls::free_port();
    let base = header(&src.url, &tgt.url).replace(
        "department_code = \"SCJGJ\"\n",
        &format!(
            "department_code = \"SCJGJ\"\npatrol = \"1s\"\nunhealthy_after = \"2s\"\n\
             retry_max = \"1s\"\nat_risk_margin = \"23h 59m 52s\"\nmetrics = \"{mport}\"\n"
        ),
    );
    let agent = Agent::new(&format!(
        "{base}\n[[table]]\nsource = \"t\"\nschedule = \"every:1s\"\n\
         category = \"supervision_action\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\", lookback = \"30s\" }}\n\
         [[alert]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{hport}/flaky\"\n\
         token = \"${{file:hook.token}}\"\n\
         [[alert]]\nkind = \"wecom\"\nurl = \"${{file:wecom.url}}\"\n\
         [[alert]]\nkind = \"dingtalk\"\nurl = \"${{file:ding.url}}\"\nsecret = \"${{file:ding.secret}}\"\n\
         [[alert]]\nkind = \"email\"\nsmtp = \"127.0.0.1:{sport}\"\nca_file = \"{}\"\n\
         user = \"alerts\"\npassword = \"${{file:smtp.pw}}\"\nfrom = \"agent@example.org\"\n\
         to = [\"ops@example.org\", \"duty@example.org\"]\n\
         events = [\"failing\", \"at_risk\", \"late\"]\n",
        ca.display()
    ));
    let secrets = [
        ("hook.token", "HookToken-5521".to_owned()),
        (
            "wecom.url",
            format!("http://127.0.0.1:{hport}/wecom?key=WecomKey-99812"),
        ),
        (
            "ding.url",
            format!("http://127.0.0.1:{hport}/dingtalk?access_token=DingAccess-41177"),
        ),
        ("ding.secret", "SECdingSecret-3390".to_owned()),
        ("smtp.pw", smtp_pw.to_owned()),
    ];
    for (f, v) in &secrets {
        std::fs::write(agent.dir.path().join(f), format!("{v}\n")).expect("secret file");
    }
    let daemon = Daemon::start(&agent, &[]);
    wait_for("the first rows", Duration::from_secs(30), async || {
        tgt.scalar_i64("SELECT count(*) FROM t").await == 20
    })
    .await;
    assert_eq!(counts(&hooks, &mail), [0, 0, 0, 0], "nothing is wrong yet");
    let st = agent.status_json();
    assert_eq!(st["tables"][0]["compliance"]["standing"], "on_time", "{st}");

    refuse_connections(&src.name, true).await;
    wait_for(
        "failing and at-risk alerts at every target",
        Duration::from_secs(60),
        async || counts(&hooks, &mail) == [2, 2, 2, 2],
    )
    .await;
    let st = agent.status_json();
    let c = &st["tables"][0]["compliance"];
    assert_eq!(c["standing"], "at_risk", "{st}");
    assert_eq!(c["category"], "supervision_action", "{st}");
    assert!(c["deadline"].is_string() && c["since"].is_string(), "{st}");
    let m = metrics(mport).await;
    assert!(
        m.contains("frontdb_compliance_state{table=\"t\",category=\"supervision_action\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("frontdb_compliance_deadline_timestamp_seconds{table=\"t\""),
        "{m}"
    );

    // Still failing: more attempts, more patrols, and no further alert.
    let failures = st["tables"][0]["failures"].as_i64().expect("failures");
    wait_for(
        "five more failed attempts",
        Duration::from_secs(60),
        async || {
            agent.status_json()["tables"][0]["failures"]
                .as_i64()
                .unwrap_or(0)
                >= failures + 5
        },
    )
    .await;
    assert_eq!(
        counts(&hooks, &mail),
        [2, 2, 2, 2],
        "throttled while failing"
    );

    refuse_connections(&src.name, false).await;
    src.exec("INSERT INTO t (id, v) VALUES (21, 'after')").await;
    wait_for("the recoveries", Duration::from_secs(60), async || {
        counts(&hooks, &mail) == [4, 4, 4, 4]
    })
    .await;
    wait_for(
        "the row after the outage",
        Duration::from_secs(30),
        async || tgt.scalar_i64("SELECT count(*) FROM t").await == 21,
    )
    .await;
    let st = agent.status_json();
    assert_eq!(st["tables"][0]["compliance"]["standing"], "on_time", "{st}");
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        counts(&hooks, &mail),
        [4, 4, 4, 4],
        "nothing after the recovery"
    );

    // The webhook: refused once (503), sent again; JSON with what, table, since, what to do.
    let flaky: Vec<_> = lines(&hooks)
        .into_iter()
        .filter(|r| r["path"] == "/flaky")
        .collect();
    assert_eq!(flaky.len(), 5, "{flaky:?}");
    assert_eq!(flaky[0]["status"], 503, "{flaky:?}");
    assert!(log.contains("cannot send the alert"), "{log}");
    let hook = taken(&hooks, "/flaky");
    let states: Vec<(String, String)> = hook
        .iter()
        .map(|r| {
            assert_eq!(r["auth"], "Bearer HookToken-5521");
            let b = &r["body"];
            assert_eq!(b["table"], "t", "{b}");
            assert_eq!(b["agent"], "230000-TEST", "{b}");
            for k in ["what", "since", "since_local", "todo", "title"] {
                assert!(!b[k].as_str().unwrap_or("").is_empty(), "{k} in {b}");
            }
            (
                b["event"].as_str().expect("event").to_owned(),
                b["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect();
    let mut firing: Vec<&str> = states[..2].iter().map(|s| s.0.as_str()).collect();
    firing.sort_unstable();
    assert_eq!(firing, ["at_risk", "failing"], "{states:?}");
    assert!(states[..2].iter().all(|s| s.1 == "firing"), "{states:?}");
    let mut resolved: Vec<&str> = states[2..].iter().map(|s| s.0.as_str()).collect();
    resolved.sort_unstable();
    assert_eq!(resolved, ["at_risk", "failing"], "{states:?}");
    assert!(states[2..].iter().all(|s| s.1 == "resolved"), "{states:?}");
    let failing = hook
        .iter()
        .find(|r| r["body"]["event"] == "failing")
        .expect("failing");
    assert!(
        failing["body"]["what"]
            .as_str()
            .unwrap_or("")
            .contains("table t is failing"),
        "{failing}"
    );

    // WeCom: a markdown message.
    for r in taken(&hooks, "/wecom") {
        assert_eq!(r["query"], "key=WecomKey-99812");
        assert_eq!(r["body"]["msgtype"], "markdown", "{r}");
        let text = r["body"]["markdown"]["content"].as_str().expect("content");
        assert!(
            text.contains("table t") && text.contains("What to do"),
            "{text}"
        );
    }
    // DingTalk: markdown, and the URL signed with the secret.
    for r in taken(&hooks, "/dingtalk") {
        assert_eq!(r["body"]["msgtype"], "markdown", "{r}");
        assert!(r["body"]["markdown"]["title"].as_str().is_some(), "{r}");
        let q: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(r["query"].as_str().expect("q").as_bytes())
                .into_owned()
                .collect();
        assert_eq!(q["access_token"], "DingAccess-41177");
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(b"SECdingSecret-3390").expect("key");
        mac.update(format!("{}\nSECdingSecret-3390", q["timestamp"]).as_bytes());
        let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(q["sign"], want, "{r}");
    }
    // E-mail: over STARTTLS, logged in, to both recipients.
    let mails = lines(&mail);
    for m in &mails {
        assert_eq!(m["tls"], true, "{m}");
        assert_eq!(m["authenticated"], true, "{m}");
        assert_eq!(m["login"], "alerts", "{m}");
        assert_eq!(m["from"], "agent@example.org");
        assert_eq!(
            m["to"],
            serde_json::json!(["ops@example.org", "duty@example.org"])
        );
    }
    let subjects: Vec<&str> = mails
        .iter()
        .filter_map(|m| {
            m["message"]
                .as_str()?
                .lines()
                .find(|l| l.starts_with("Subject:"))
        })
        .collect();
    assert!(
        subjects.contains(&"Subject: [230000-TEST] FAILING: table t"),
        "{subjects:?}"
    );
    assert!(
        subjects.contains(&"Subject: [230000-TEST] RECOVERED: table t"),
        "{subjects:?}"
    );
    // No secret in the log.
    for (_, v) in &secrets {
        for part in [v.as_str(), "WecomKey-99812", "DingAccess-41177"] {
            assert!(!log.contains(part), "{part} in the log:\n{log}");
        }
    }
    src.drop().await;
    tgt.drop().await;
}

/// Alert secrets written in the file, unknown events and kinds are refused with their key.
#[test]
fn alert_secrets_must_come_from_env_or_file() {
    let agent = Agent::new(
        "[agent]\nid = \"a\"\nstate_dir = \"{dir}/state\"\n\
         [source]\nurl = \"sqlite://{dir}/s.db\"\n[exchange]\nurl = \"sqlite://{dir}/e.db\"\n\
         [[table]]\nsource = \"t\"\nwatermark = { kind = \"key\" }\n\
         [[alert]]\nkind = \"wecom\"\nurl = \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=PlainKey-1\"\n\
         [[alert]]\nkind = \"email\"\nsmtp = \"127.0.0.1:25\"\nuser = \"u\"\npassword = \"PlainPw-2\"\n\
         from = \"a@example.org\"\nto = [\"b@example.org\"]\nevents = [\"failing\", \"sometimes\"]\n\
         [[alert]]\nkind = \"pager\"\n",
    );
    let out = agent.run(&["check", "--offline"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    for want in [
        "alert[0].url: a robot's URL holds its key and is a secret: write it as ${env:NAME} or ${file:PATH}",
        "alert[1].password: the SMTP password is a secret",
        "alert[1].events: `sometimes` is not an event",
        "alert[2].kind: `pager` is not an alert kind",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(
        !err.contains("PlainKey-1") && !err.contains("PlainPw-2"),
        "{err}"
    );
}

/// A resync that ends is told once; the exchange unreachable is told with the table that
/// fails for it, and both recover.
#[tokio::test]
async fn a_resync_and_an_unreachable_exchange_are_told() {
    let src = PgDb::new("alerts2").await;
    let tgt = PgDb::new("alerts2").await;
    let ddl = "CREATE TABLE t (id int PRIMARY KEY, v text, updated_at timestamp(6) NOT NULL DEFAULT localtimestamp)";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    src.exec("INSERT INTO t (id, v) SELECT g, 'v' || g FROM generate_series(1, 20) g")
        .await;
    let work = tempfile::tempdir().expect("tempdir");
    let (_receiver, hooks, hport) = webhook_receiver(work.path()).await;
    let base = header(&src.url, &tgt.url).replace(
        "department_code = \"SCJGJ\"\n",
        "department_code = \"SCJGJ\"\npatrol = \"1s\"\nunhealthy_after = \"2s\"\nretry_max = \"1s\"\n",
    );
    let agent = Agent::new(&format!(
        "{base}\n[[table]]\nsource = \"t\"\nschedule = \"every:1s\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\", lookback = \"30s\" }}\n\
         [[alert]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\n",
        hport
    ));
    let daemon = Daemon::start(&agent, &[]);
    wait_for("the first rows", Duration::from_secs(30), async || {
        tgt.scalar_i64("SELECT count(*) FROM t").await == 20
    })
    .await;
    agent.ok(&["resync", "--table", "t"]);
    let events = |hooks: &Path| -> Vec<(String, String)> {
        taken(hooks, "/hook")
            .iter()
            .map(|r| {
                (
                    r["body"]["event"].as_str().unwrap_or("").to_owned(),
                    r["body"]["state"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    wait_for("the resync notice", Duration::from_secs(30), async || {
        !events(&hooks).is_empty()
    })
    .await;
    assert_eq!(events(&hooks), [("resync".to_owned(), "notice".to_owned())]);
    let notice = &taken(&hooks, "/hook")[0]["body"];
    assert!(
        notice["what"]
            .as_str()
            .unwrap_or("")
            .contains("the full resync of table t finished: 20 row(s)"),
        "{notice}"
    );

    refuse_connections(&tgt.name, true).await;
    src.exec("INSERT INTO t (id, v) VALUES (21, 'x')").await;
    wait_for(
        "unreachable and failing",
        Duration::from_secs(60),
        async || events(&hooks).len() == 3,
    )
    .await;
    let mut firing: Vec<(String, String)> = events(&hooks)[1..].to_vec();
    firing.sort();
    assert_eq!(
        firing,
        [
            ("failing".to_owned(), "firing".to_owned()),
            ("unreachable".to_owned(), "firing".to_owned())
        ]
    );
    refuse_connections(&tgt.name, false).await;
    wait_for("the recoveries", Duration::from_secs(60), async || {
        events(&hooks).len() == 5
    })
    .await;
    wait_for("the row", Duration::from_secs(30), async || {
        tgt.scalar_i64("SELECT count(*) FROM t").await == 21
    })
    .await;
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    let mut resolved: Vec<(String, String)> = events(&hooks)[3..].to_vec();
    resolved.sort();
    assert_eq!(
        resolved,
        [
            ("failing".to_owned(), "resolved".to_owned()),
            ("unreachable".to_owned(), "resolved".to_owned())
        ]
    );
    src.drop().await;
    tgt.drop().await;
}

/// More of a cycle's rows rejected than `reject_alert` allows is told once, with the counts
/// and what to do, and closed by the next cycle that sends rows and stays under it.
#[tokio::test]
async fn a_reject_rate_above_reject_alert_is_told_and_then_closed() {
    let src = PgDb::new("alerts3").await;
    let tgt = PgDb::new("alerts3").await;
    let ddl = "CREATE TABLE t (id int PRIMARY KEY, code text NOT NULL, \
               updated_at timestamp(6) NOT NULL DEFAULT localtimestamp)";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    // 4 of 10 rows break the rule: 40 %, above the default reject_alert (5 %).
    src.exec(
        "INSERT INTO t (id, code) SELECT g, CASE WHEN g % 5 IN (1, 2) THEN 'bad' ELSE 'AB' || g END \
         FROM generate_series(1, 10) g",
    )
    .await;
    let work = tempfile::tempdir().expect("tempdir");
    let (_receiver, hooks, hport) = webhook_receiver(work.path()).await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nschedule = \"every:1s\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\", lookback = \"0s\" }}\n\
         rules = [ {{ column = \"code\", check = \"regex\", pattern = \"^AB[0-9]+$\" }} ]\n\
         [[alert]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\n",
        // The alerts look at the tables every `patrol`.
        header(&src.url, &tgt.url).replace(
            "department_code = \"SCJGJ\"\n",
            "department_code = \"SCJGJ\"\npatrol = \"1s\"\n"
        ),
        hport
    ));
    let daemon = Daemon::start(&agent, &[]);
    let events = |hooks: &Path| -> Vec<(String, String, String)> {
        taken(hooks, "/hook")
            .iter()
            .map(|r| {
                let b = &r["body"];
                let s = |k: &str| b[k].as_str().unwrap_or("").to_owned();
                (s("event"), s("state"), s("what"))
            })
            .collect()
    };
    wait_for("the rejects alert", Duration::from_secs(30), async || {
        !events(&hooks).is_empty()
    })
    .await;
    let first = events(&hooks);
    assert_eq!(first.len(), 1, "{first:?}");
    let (event, state, what) = &first[0];
    assert_eq!((event.as_str(), state.as_str()), ("rejects", "firing"));
    assert!(what.contains("4 of 10 rows (40%) were rejected"), "{what}");
    // Quiet cycles keep the warning; the next cycle that sends rows and stays under the
    // threshold closes the alert.
    src.exec("INSERT INTO t (id, code) SELECT g, 'AB' || g FROM generate_series(11, 30) g")
        .await;
    wait_for("the recovery", Duration::from_secs(30), async || {
        events(&hooks).len() == 2
    })
    .await;
    let (event, state, _) = &events(&hooks)[1];
    assert_eq!((event.as_str(), state.as_str()), ("rejects", "resolved"));
    assert_eq!(tgt.scalar_i64("SELECT count(*) FROM t").await, 26);
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(events(&hooks).len(), 2, "nothing more was sent");
    src.drop().await;
    tgt.drop().await;
}
