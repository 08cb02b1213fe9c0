//! Keeping only what is needed and recording who did what (issue #37): a purge leaves no
//! trace of a removed reject in the state files; the audit trail names the user behind each
//! action.

use std::time::Duration;

use crate::common::{Agent, Daemon, PgDb, header, rejects, wait_for};

const NAME: &str = "保密测试张三丰";
const BAD_ID: &str = "340524198001010010";
const GOOD_ID: &str = "34052419800101001X";

fn state_files_hold(agent: &Agent, needle: &str) -> bool {
    ["state.db", "state.db-wal"].iter().any(|f| {
        std::fs::read(agent.dir.path().join("state").join(f))
            .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
    })
}

/// A source with one row the rules quarantine (a wrong ID number), and its agent.
async fn quarantined(extra: &str) -> (PgDb, PgDb, Agent) {
    let src = PgDb::new("prot").await;
    let tgt = PgDb::new("prot").await;
    let ddl = "CREATE TABLE person (pid int PRIMARY KEY, name text, id_no varchar(18), \
               updated_at timestamp(6) NOT NULL)";
    src.exec(ddl).await;
    tgt.exec(&format!(
        "{ddl}; CREATE TABLE exchange_reject (id serial PRIMARY KEY, table_name text, \
         record_key text, batch_id text, error_code text, error_message text, \
         rejected_at timestamptz DEFAULT now())"
    ))
    .await;
    src.exec(&format!(
        "INSERT INTO person VALUES (1, '李四', '{GOOD_ID}', '2026-11-01 08:00'), \
         (2, '{NAME}', '{BAD_ID}', '2026-11-01 08:01')"
    ))
    .await;
    let agent = Agent::new(&format!(
        "{}\n[feedback]\nkind = \"table\"\nconfirm = \"1s\"\n\n[[table]]\nsource = \"person\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n\
         rules = [ {{ column = \"id_no\", check = \"id_number\" }} ]\n",
        header(&src.url, &tgt.url).replace(
            "department_code = \"SCJGJ\"\n",
            &format!("department_code = \"SCJGJ\"\n{extra}")
        )
    ));
    let out = agent.ok(&["once"]);
    assert!(out.contains("1 quarantined"), "{out}");
    (src, tgt, agent)
}

#[tokio::test]
async fn a_purged_reject_leaves_no_trace_in_the_state_files_and_a_dry_run_removes_nothing() {
    let (src, tgt, agent) = quarantined("").await;
    assert!(state_files_hold(&agent, NAME) && state_files_hold(&agent, BAD_ID));
    src.exec(&format!(
        "UPDATE person SET id_no = '{GOOD_ID}', updated_at = '2026-11-02' WHERE pid = 2"
    ))
    .await;
    wait_for(
        "the corrected reject to clear",
        Duration::from_secs(30),
        async || {
            agent.ok(&["once"]);
            rejects(&agent, &[])[0]["state"] == "cleared"
        },
    )
    .await;
    assert_eq!(tgt.scalar_i64("SELECT count(*) FROM person").await, 2);

    // Cleared just now: the default retention (30d) keeps it.
    let out = agent.ok(&["purge", "--dry-run"]);
    assert!(
        out.contains("would remove:") && out.contains(" 0 cleared reject(s)"),
        "{out}"
    );
    let out = agent.ok(&["purge", "--dry-run", "--before", "2099-01-01"]);
    assert!(
        out.contains("would remove:") && out.contains(" 1 cleared reject(s)"),
        "{out}"
    );
    assert_eq!(rejects(&agent, &[]).len(), 1);
    assert!(
        state_files_hold(&agent, NAME),
        "a dry run removed the row copy"
    );

    let out = agent.ok(&["purge", "--before", "2099-01-01"]);
    assert!(
        out.contains("removed:") && out.contains(" 1 cleared reject(s)"),
        "{out}"
    );
    assert!(rejects(&agent, &[]).is_empty());
    for needle in [NAME, BAD_ID] {
        assert!(
            !state_files_hold(&agent, needle),
            "`{needle}` is still in the bytes of the state files"
        );
    }
    // Owner only: the state directory and its files.
    use std::os::unix::fs::PermissionsExt;
    let mode = |f: &str| {
        std::fs::metadata(agent.dir.path().join("state").join(f))
            .expect("state file")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(""), 0o700);
    assert_eq!(mode("state.db"), 0o600);
    let bad = agent.run(&["purge", "--before", "last tuesday"]);
    assert_eq!(bad.status.code(), Some(2));
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn the_audit_trail_names_who_asked_for_each_action() {
    let (src, tgt, agent) = quarantined("").await;
    let id = rejects(&agent, &[])[0]["id"].as_i64().expect("id");
    let mut daemon = Daemon::start(&agent, &[]);
    wait_for("the daemon", Duration::from_secs(20), async || {
        daemon.log().contains("frontdb-agent running")
    })
    .await;
    let as_auditor = |args: &[&str]| {
        let out = agent
            .command()
            .env("SUDO_USER", "auditor")
            .args(args)
            .output()
            .expect("run");
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    as_auditor(&["rejects", "resubmit", &id.to_string()]);
    as_auditor(&["resync", "--table", "person"]);
    let purged = agent
        .command()
        .env("SUDO_USER", "auditor")
        .env("FRONTDB_LOG", "info")
        .args(["purge"])
        .output()
        .expect("purge");
    let log = String::from_utf8_lossy(&purged.stderr);
    assert!(
        log.contains("auditor via sudo") && log.contains("purge"),
        "{log}"
    );
    daemon.signal("-HUP");
    let actions = async || -> Vec<serde_json::Value> {
        agent.status_json()["actions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    wait_for(
        "the reload in the audit trail",
        Duration::from_secs(20),
        async || actions().await.iter().any(|a| a["action"] == "reload"),
    )
    .await;
    let got = actions().await;
    let who = |action: &str| {
        got.iter()
            .find(|a| a["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {got:?}"))["who"]
            .as_str()
            .expect("who")
            .to_owned()
    };
    // The tests run as root: `sudo` is named through SUDO_USER.
    for action in ["rejects resubmit", "resync", "purge"] {
        assert!(
            who(action).starts_with("auditor via sudo (root (uid 0))"),
            "{got:?}"
        );
    }
    // The signal came from `kill`, run by this test's user.
    assert!(
        who("reload").starts_with("root (uid 0) (process "),
        "{got:?}"
    );
    let log = daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("SIGHUP") && l.contains("root (uid 0) (process ")),
        "{log}"
    );
    let shown = agent.ok(&["rejects", "show", &id.to_string()]);
    assert!(
        shown.contains("rejects resubmit asked by auditor via sudo"),
        "{shown}"
    );
    let text = agent.ok(&["status"]);
    assert!(text.contains("reload asked by root (uid 0)"), "{text}");
    assert!(daemon.running());
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    src.drop().await;
    tgt.drop().await;
}

/// `GET path` with these extra header lines: the status code; `None` while nothing listens.
fn get(port: u16, path: &str, headers: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    raw.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn metrics_ask_for_the_token_and_healthz_stays_open() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let (src, tgt, agent) = quarantined("").await;
    std::fs::write(
        agent.dir.path().join("metrics.token"),
        "t0ken-of-the-scraper\n",
    )
    .expect("token");
    agent.rewrite(&agent.config_text().replace(
        "department_code = \"SCJGJ\"\n",
        &format!(
            "department_code = \"SCJGJ\"\nmetrics = \"{port}\"\n\
             metrics_token = \"${{file:{}/metrics.token}}\"\n",
            agent.dir.path().display()
        ),
    ));
    let daemon = Daemon::start(&agent, &[]);
    wait_for(
        "/healthz without a token",
        Duration::from_secs(20),
        async || get(port, "/healthz", "").is_some_and(|c| c == 200 || c == 503),
    )
    .await;
    assert_eq!(get(port, "/metrics", ""), Some(401));
    assert_eq!(
        get(
            port,
            "/metrics",
            "Authorization: Bearer wrong-token-of-the-scraper\r\n"
        ),
        Some(401)
    );
    assert_eq!(
        get(
            port,
            "/metrics",
            "Authorization: Bearer t0ken-of-the-scraper\r\n"
        ),
        Some(200)
    );
    assert!(!daemon.log().contains("t0ken-of-the-scraper"));
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    src.drop().await;
    tgt.drop().await;
}

#[test]
fn check_warns_about_an_open_metrics_address_and_a_readable_file_with_secrets() {
    use std::os::unix::fs::PermissionsExt;
    let agent = Agent::new(
        "[agent]\nid = \"a\"\nstate_dir = \"{dir}/state\"\nmetrics = \"0.0.0.0:9187\"\n\n\
         [source]\nurl = \"postgres://u:inline-pw-123@127.0.0.1:5432/x\"\n\n\
         [exchange]\nurl = \"postgres://u@127.0.0.1:5432/y\"\n\n\
         [[table]]\nsource = \"t\"\nwatermark = { kind = \"key\" }\n",
    );
    let chmod = |mode: u32| {
        std::fs::set_permissions(&agent.config, std::fs::Permissions::from_mode(mode))
            .expect("chmod")
    };
    chmod(0o644);
    let out = agent.ok(&["check", "--offline"]);
    assert!(
        out.contains("WARNING — agent.metrics listens on 0.0.0.0:9187"),
        "{out}"
    );
    assert!(
        out.contains("holds a secret inline and other users can read it"),
        "{out}"
    );
    assert!(!out.contains("inline-pw-123"), "{out}");
    chmod(0o600);
    let text = agent.config_text().replace(
        "metrics = \"0.0.0.0:9187\"",
        "metrics = \"0.0.0.0:9187\"\nmetrics_token = \"${env:NO_SUCH_VAR_FOR_TEST}\"",
    );
    agent.rewrite(&text);
    let out = agent
        .command()
        .env("NO_SUCH_VAR_FOR_TEST", "tok")
        .args(["check", "--offline"])
        .output()
        .expect("check");
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(!out.contains("WARNING"), "{out}");
}

#[tokio::test]
async fn encrypted_row_values_never_reach_the_files_and_survive_a_key_rotation() {
    let (src, tgt, agent) = quarantined("").await;
    // Kept in plain text until the cipher is switched on; then sealed when the agent starts.
    assert!(state_files_hold(&agent, NAME));
    let dir = agent.dir.path().display().to_string();
    std::fs::write(format!("{dir}/k1"), format!("{}\n", "11".repeat(16))).expect("k1");
    std::fs::write(format!("{dir}/k2"), "22".repeat(16)).expect("k2");
    let plain = agent.config_text();
    let with = |keys: &str| {
        plain.replace(
            "department_code = \"SCJGJ\"\n",
            &format!("department_code = \"SCJGJ\"\nstate_cipher = \"sm4-gcm\"\n{keys}"),
        )
    };
    agent.rewrite(&with(&format!("state_key = \"${{file:{dir}/k1}}\"\n")));
    src.exec(&format!(
        "INSERT INTO person VALUES (3, '{NAME}二', '{BAD_ID}', '2026-11-01 08:02')"
    ))
    .await;
    let (_, log) = agent.ok_logged(&["once"], "info");
    assert!(log.contains("encrypted with the current key"), "{log}");
    for needle in [NAME, BAD_ID] {
        assert!(
            !state_files_hold(&agent, needle),
            "`{needle}` is in the state files"
        );
    }
    let ids: Vec<String> = rejects(&agent, &[])
        .iter()
        .map(|r| r["id"].to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    let shown = agent.ok(&["rejects", "show", &ids[1]]);
    assert!(
        shown.contains(&format!("name = {NAME}")) && shown.contains(BAD_ID),
        "{shown}"
    );

    // Without the key: the rest is shown, the values are said to be encrypted.
    agent.rewrite(&plain);
    let shown = agent.ok(&["rejects", "show", &ids[1]]);
    assert!(
        shown.contains("the values and reasons are encrypted"),
        "{shown}"
    );
    assert!(
        shown.contains("table person  key 2") && !shown.contains(NAME),
        "{shown}"
    );
    // A wrong key is a clear error.
    agent.rewrite(&with(&format!("state_key = \"${{file:{dir}/k2}}\"\n")));
    let out = agent.run(&["rejects", "show", &ids[1]]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("were encrypted with key"), "{err}");

    // Rotation: the new key with the old one beside it; the agent seals everything again.
    agent.rewrite(&with(&format!(
        "state_key = \"${{file:{dir}/k2}}\"\nstate_key_previous = \"${{file:{dir}/k1}}\"\n"
    )));
    let (_, log) = agent.ok_logged(&["once"], "info");
    assert!(log.contains("encrypted with the current key"), "{log}");
    agent.rewrite(&with(&format!("state_key = \"${{file:{dir}/k2}}\"\n")));
    let shown = agent.ok(&["rejects", "show", &ids[0]]);
    assert!(shown.contains(&format!("name = {NAME}二")), "{shown}");
    for needle in [NAME, BAD_ID] {
        assert!(
            !state_files_hold(&agent, needle),
            "`{needle}` is in the state files"
        );
    }
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn an_open_reject_can_keep_only_its_key_and_failing_columns() {
    let (src, tgt, agent) = quarantined("reject_row_copy = \"key_and_failing\"\n").await;
    let list = rejects(&agent, &[]);
    let row = list[0]["row"].as_object().expect("row");
    let mut kept: Vec<&str> = row.keys().map(String::as_str).collect();
    kept.sort();
    assert_eq!(kept, ["id_no", "pid"], "{list:?}");
    assert!(!state_files_hold(&agent, NAME));
    src.drop().await;
    tgt.drop().await;
}
