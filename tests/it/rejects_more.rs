//! More of the rejects loop: a rejection table with the department's own column names, rows
//! rejected again after they were resubmitted or cleared, `rejects resubmit --table` and
//! `--all`, `rejects list --table` and its text output, and the reject-share alert.

use std::time::Duration;

use crate::common::{Agent, Daemon, PgDb, header, rejects, wait_for};

fn find<'a>(list: &'a [serde_json::Value], table: &str, key: &str) -> &'a serde_json::Value {
    list.iter()
        .find(|r| r["table"] == table && r["key"] == key)
        .unwrap_or_else(|| panic!("no reject for {table} key {key} in {list:?}"))
}

/// The events of a reject's history, in order.
fn history(agent: &Agent, id: &serde_json::Value) -> Vec<String> {
    let shown = agent.ok(&["rejects", "show", &id.to_string(), "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("json");
    shown["history"]
        .as_array()
        .unwrap_or_else(|| panic!("no history in {shown}"))
        .iter()
        .map(|h| h["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn states(list: &[serde_json::Value]) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = list
        .iter()
        .map(|r| {
            (
                r["table"].as_str().unwrap_or_default().to_owned(),
                r["key"].as_str().unwrap_or_default().to_owned(),
                r["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn st(table: &str, key: &str, state: &str) -> (String, String, String) {
    (table.into(), key.into(), state.into())
}

#[tokio::test]
async fn postgres_custom_rejection_table_rejected_again_and_resubmit_by_table_and_all() {
    let src = PgDb::new("rejmore").await;
    let tgt = PgDb::new("rejmore").await;
    let ddl_a = "(id int PRIMARY KEY, name text, updated_at timestamp(6) NOT NULL)";
    let ddl_b = "(id int PRIMARY KEY, title text, updated_at timestamp(6) NOT NULL)";
    src.exec(&format!(
        "CREATE TABLE up_a {ddl_a}; CREATE TABLE up_b {ddl_b}; \
         INSERT INTO up_a SELECT g, '企业' || g, '2026-11-01'::timestamp + g * interval '1 second' \
         FROM generate_series(1, 4) g; \
         INSERT INTO up_b SELECT g, '标题' || g, '2026-11-01'::timestamp + g * interval '1 second' \
         FROM generate_series(1, 3) g;"
    ))
    .await;
    // The province's rejection table with names of its own; a table with the default name
    // and layout beside it must not be read.
    tgt.exec(&format!(
        "CREATE TABLE jg_a {ddl_a}; CREATE TABLE jg_b {ddl_b}; \
         CREATE TABLE sheng_fankui (xh bigserial PRIMARY KEY, mb_biao text, jl_zj text, pch text, \
         cw_dm text, cw_xx text, fk_sj timestamptz DEFAULT now()); \
         CREATE TABLE exchange_reject (id serial PRIMARY KEY, table_name text, record_key text, \
         batch_id text, error_code text, error_message text, rejected_at timestamptz DEFAULT now()); \
         INSERT INTO exchange_reject (table_name, record_key, error_code, error_message) \
         VALUES ('jg_a', '4', 'X', '不应读取');"
    ))
    .await;
    let agent = Agent::new(&format!(
        "{}\n[feedback]\nkind = \"table\"\ntable = \"sheng_fankui\"\nconfirm = \"5s\"\n\n\
         [feedback.columns]\nid = \"xh\"\ntable_name = \"mb_biao\"\nrecord_key = \"jl_zj\"\n\
         batch_id = \"pch\"\nerror_code = \"cw_dm\"\nerror_message = \"cw_xx\"\nrejected_at = \"fk_sj\"\n\n\
         [[table]]\nsource = \"up_a\"\ntarget = \"jg_a\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n\n\
         [[table]]\nsource = \"up_b\"\ntarget = \"jg_b\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n",
        header(&src.url, &tgt.url)
    ));
    let out = agent.ok(&["check"]);
    assert!(
        out.contains("rejection table") && out.contains("sheng_fankui OK"),
        "{out}"
    );
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("up_a: 4 row(s) sent, 0 deleted, 0 quarantined"),
        "{out}"
    );
    assert!(
        out.contains("up_b: 3 row(s) sent, 0 deleted, 0 quarantined"),
        "{out}"
    );
    assert!(out.contains("feedback: 0 rejection(s) read"), "{out}");

    // The province rejects two rows of jg_a (one without an error code) and one of jg_b.
    tgt.exec(
        "INSERT INTO sheng_fankui (mb_biao, jl_zj, pch, cw_dm, cw_xx) VALUES \
         ('jg_a', '1', 'P1', 'E201', '住所不详'), ('jg_a', '2', NULL, NULL, '名称含非法字符'), \
         ('jg_b', '3', 'P2', 'E301', '标题不规范')",
    )
    .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("feedback: 3 rejection(s) read"), "{out}");
    let list = rejects(&agent, &[]);
    assert_eq!(
        states(&list),
        vec![
            st("up_a", "1", "open"),
            st("up_a", "2", "open"),
            st("up_b", "3", "open")
        ]
    );
    let a1 = find(&list, "up_a", "1");
    assert_eq!(a1["origin"], "province");
    assert_eq!(a1["reasons"][0], "[E201] 住所不详");
    assert_eq!(a1["batch_id"], "P1");
    assert_eq!(a1["row"]["name"], "企业1");
    let a2 = find(&list, "up_a", "2");
    assert_eq!(a2["reasons"][0], "名称含非法字符");
    assert!(a2["batch_id"].is_null(), "{a2}");
    let b3 = find(&list, "up_b", "3");
    assert_eq!(b3["reasons"][0], "[E301] 标题不规范");
    assert_eq!(b3["batch_id"], "P2");
    let (a1, b3) = (a1["id"].clone(), b3["id"].clone());

    // `--table` keeps one table's rejects; an unknown table is a usage error.
    assert_eq!(
        states(&rejects(&agent, &["--table", "up_a"])),
        vec![st("up_a", "1", "open"), st("up_a", "2", "open")]
    );
    assert_eq!(
        states(&rejects(&agent, &["--table", "up_b"])),
        vec![st("up_b", "3", "open")]
    );
    let out = agent.run(&["rejects", "list", "--table", "up_zz"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("up_zz"),
        "{out:?}"
    );

    // The text list: one line per reject, its Chinese reasons indented below it.
    let text = agent.ok(&["rejects", "list", "--table", "up_b"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let head = format!("#{b3}  up_b  key 3  [open · province]  ");
    assert!(lines[0].starts_with(&head), "{text}");
    let when = &lines[0][head.len()..];
    assert!(
        when.len() == 19 && when.starts_with("2026-") && when.as_bytes()[10] == b' ',
        "local time as YYYY-MM-DD HH:MM:SS: {text}"
    );
    assert_eq!(lines[1], "    [E301] 标题不规范");
    let text = agent.ok(&["rejects", "list"]);
    assert_eq!(text.lines().count(), 6, "{text}");
    for reason in [
        "    [E201] 住所不详",
        "    名称含非法字符",
        "    [E301] 标题不规范",
    ] {
        assert!(text.lines().any(|l| l == reason), "{reason}: {text}");
    }
    assert!(
        !text.contains("不应读取"),
        "the default rejection table was read: {text}"
    );

    // Send the rows again without waiting for a change: first one table, then all the rest.
    tgt.exec("DELETE FROM jg_a WHERE id IN (1, 2); DELETE FROM jg_b WHERE id = 3")
        .await;
    let out = agent.ok(&["rejects", "resubmit", "--table", "up_a"]);
    assert!(
        out.contains("up_a: 2 row(s) sent again, 0 quarantined again"),
        "{out}"
    );
    assert!(!out.contains("up_b"), "{out}");
    assert_eq!(
        tgt.rows("SELECT id::text, name FROM jg_a WHERE id IN (1, 2) ORDER BY id")
            .await,
        vec![
            vec![Some("1".into()), Some("企业1".into())],
            vec![Some("2".into()), Some("企业2".into())],
        ]
    );
    assert_eq!(
        tgt.scalar_i64("SELECT count(*) FROM jg_b WHERE id = 3")
            .await,
        0,
        "--table up_a sent a row of up_b"
    );
    assert_eq!(
        states(&rejects(&agent, &[])),
        vec![
            st("up_a", "1", "resubmitted"),
            st("up_a", "2", "resubmitted"),
            st("up_b", "3", "open")
        ]
    );
    let out = agent.ok(&["rejects", "resubmit", "--all"]);
    // The last resubmission: the confirmation window (5 s, long enough for the steps up to
    // the cycle that reads row 1's new rejection, before which none may clear) runs from here.
    let resubmitted = tokio::time::Instant::now();
    assert!(
        out.contains("up_b: 1 row(s) sent again, 0 quarantined again"),
        "{out}"
    );
    assert!(
        !out.contains("up_a"),
        "only open rejects are sent again: {out}"
    );
    assert_eq!(
        tgt.rows("SELECT title FROM jg_b WHERE id = 3").await,
        vec![vec![Some("标题3".into())]]
    );
    assert!(
        rejects(&agent, &[])
            .iter()
            .all(|r| r["state"] == "resubmitted"),
        "{:?}",
        rejects(&agent, &[])
    );
    let h = history(&agent, &b3);
    assert_eq!(
        h,
        [
            "rejected by the province",
            "sent again on request",
            "re-sent on request"
        ]
    );
    let out = agent.ok(&["rejects", "resubmit", "--all"]);
    assert!(out.contains("no open rejects to send again"), "{out}");

    // The province rejects row 1 of jg_a again while it waits for confirmation: open again.
    tgt.exec(
        "INSERT INTO sheng_fankui (mb_biao, jl_zj, pch, cw_dm, cw_xx) \
         VALUES ('jg_a', '1', 'P3', 'E202', '住所仍不详')",
    )
    .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("feedback: 1 rejection(s) read"), "{out}");
    let list = rejects(&agent, &["--state", "open"]);
    assert_eq!(states(&list), vec![st("up_a", "1", "open")]);
    assert_eq!(list[0]["reasons"], serde_json::json!(["[E202] 住所仍不详"]));
    assert_eq!(list[0]["batch_id"], "P3");
    assert!(list[0]["resubmitted"].is_null(), "{:?}", list[0]);
    assert_eq!(
        history(&agent, &a1),
        [
            "rejected by the province",
            "sent again on request",
            "re-sent on request",
            "rejected by the province again"
        ]
    );
    let status = agent.status_json();
    let open: Vec<(String, i64)> = status["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap_or_default().to_owned(),
                t["open_rejects"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(open, vec![("up_a".into(), 1), ("up_b".into(), 0)]);

    // The others are cleared after the window; row 1 stays open.
    // Sleeping is the scenario: the confirmation window is a span of time with no new
    // rejection, and a sleep only ever overshoots, so this cannot be too short.
    tokio::time::sleep_until(resubmitted + Duration::from_millis(5200)).await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("2 cleared"), "{out}");
    assert_eq!(
        states(&rejects(&agent, &[])),
        vec![
            st("up_a", "1", "open"),
            st("up_a", "2", "cleared"),
            st("up_b", "3", "cleared")
        ]
    );

    // A cleared row rejected again is open again, with the new reason and batch.
    tgt.exec(
        "INSERT INTO sheng_fankui (mb_biao, jl_zj, pch, cw_dm, cw_xx) \
         VALUES ('jg_b', '3', 'P4', 'E302', '标题含敏感词')",
    )
    .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("feedback: 1 rejection(s) read"), "{out}");
    let list = rejects(&agent, &["--table", "up_b"]);
    assert_eq!(states(&list), vec![st("up_b", "3", "open")]);
    assert_eq!(
        list[0]["reasons"],
        serde_json::json!(["[E302] 标题含敏感词"])
    );
    assert_eq!(list[0]["batch_id"], "P4");
    assert!(list[0]["cleared"].is_null(), "{:?}", list[0]);
    let h = history(&agent, &b3);
    assert_eq!(h.len(), 5, "{h:?}");
    assert!(
        h[3].starts_with("cleared: no new rejection within 5s"),
        "{h:?}"
    );
    assert_eq!(h[4], "rejected by the province again");

    // Row 1 corrected at the source: re-sent, and resubmitted again.
    src.exec(
        "UPDATE up_a SET name = '企业1（住所已补全）', updated_at = '2026-11-10' WHERE id = 1",
    )
    .await;
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("up_a: 1 row(s) sent, 0 deleted, 0 quarantined"),
        "{out}"
    );
    assert_eq!(
        tgt.rows("SELECT name FROM jg_a WHERE id = 1").await,
        vec![vec![Some("企业1（住所已补全）".into())]]
    );
    assert_eq!(
        history(&agent, &a1).last().map(String::as_str),
        Some("re-sent after it changed at the source")
    );
    assert_eq!(
        states(&rejects(&agent, &["--table", "up_a"])),
        vec![st("up_a", "1", "resubmitted"), st("up_a", "2", "cleared")]
    );
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn postgres_reject_share_alert_in_the_log_and_in_status() {
    let src = PgDb::new("rejalert").await;
    let tgt = PgDb::new("rejalert").await;
    let ddl = "(id int PRIMARY KEY, uscc varchar(18), updated_at timestamp(6) NOT NULL)";
    src.exec(&format!("CREATE TABLE up_q {ddl}")).await;
    tgt.exec(&format!("CREATE TABLE jg_q {ddl}")).await;
    // 3 of 10 rows fail: exactly the threshold, which is not more than it.
    src.exec(
        "INSERT INTO up_q SELECT g, CASE WHEN g <= 3 THEN '91350100M000100Y44' \
         ELSE '91350100M000100Y43' END, '2026-11-01'::timestamp + g * interval '1 second' \
         FROM generate_series(1, 10) g",
    )
    .await;
    let base = header(&src.url, &tgt.url);
    let with_alert = base.replace(
        "department_code = \"SCJGJ\"\n",
        "department_code = \"SCJGJ\"\nreject_alert = 0.3\n",
    );
    assert_ne!(base, with_alert);
    let agent = Agent::new(&format!(
        "{with_alert}\n[[table]]\nsource = \"up_q\"\ntarget = \"jg_q\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n\
         rules = [ {{ id = \"USCC\", column = \"uscc\", check = \"uscc\", message = \"统一社会信用代码错误\" }} ]\n"
    ));
    let alerts = |status: &serde_json::Value| -> Vec<String> {
        status["tables"][0]["warnings"]
            .as_array()
            .unwrap_or_else(|| panic!("no warnings in {status}"))
            .iter()
            .filter_map(|w| w.as_str())
            .filter(|w| w.contains("reject_alert"))
            .map(str::to_owned)
            .collect()
    };
    let (out, log) = agent.ok_logged(&["once"], "warn");
    assert!(
        out.contains("up_q: 7 row(s) sent, 0 deleted, 3 quarantined"),
        "{out}"
    );
    assert!(
        !out.contains("reject_alert") && !log.contains("reject_alert"),
        "{out}\n{log}"
    );
    assert_eq!(alerts(&agent.status_json()), Vec::<String>::new());

    // 2 of the next 3 rows fail: 67%, more than 30%.
    src.exec(
        "INSERT INTO up_q VALUES (11, '91350100M000100Y44', '2026-11-05 00:00:01'), \
         (12, '9135010', '2026-11-05 00:00:02'), (13, '91350100M000100Y43', '2026-11-05 00:00:03')",
    )
    .await;
    let expected = "2 of 3 rows (67%) were rejected in this cycle, more than reject_alert (30%); \
                    see `frontdb-agent rejects list --table up_q`";
    let (out, log) = agent.ok_logged(&["once"], "warn");
    assert!(
        out.contains("up_q: 1 row(s) sent, 0 deleted, 2 quarantined"),
        "{out}"
    );
    assert!(out.contains(&format!("  warning: {expected}")), "{out}");
    let logged: Vec<&str> = log.lines().filter(|l| l.contains(expected)).collect();
    assert_eq!(logged.len(), 1, "the log says it once, as a warning: {log}");
    assert!(
        logged[0].contains("WARN") && logged[0].contains("up_q"),
        "{log}"
    );
    assert_eq!(alerts(&agent.status_json()), vec![expected.to_owned()]);
    let text = agent.ok(&["status"]);
    assert!(text.contains(&format!("  warning: {expected}")), "{text}");
    assert_eq!(rejects(&agent, &["--state", "open"]).len(), 5);

    // A clean cycle ends the alert: the quarantined rows, unchanged, are not rejected again
    // (a PostgreSQL table's re-read does not even ask for them: their transaction ended
    // before the last re-read).
    src.exec("INSERT INTO up_q VALUES (14, '91350100M000100Y43', '2026-11-05 00:00:04')")
        .await;
    let (out, log) = agent.ok_logged(&["once"], "warn");
    assert!(
        out.contains("up_q: 1 row(s) sent, 0 deleted, 0 quarantined"),
        "{out}"
    );
    assert!(
        !out.contains("reject_alert") && !log.contains("reject_alert"),
        "{out}\n{log}"
    );
    assert_eq!(alerts(&agent.status_json()), Vec::<String>::new());
    assert!(!agent.ok(&["status"]).contains("reject_alert"));
    assert_eq!(tgt.scalar_i64("SELECT count(*) FROM jg_q").await, 9);
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn resubmit_beside_a_running_daemon_asks_it_and_writes_nothing_itself() {
    let src = PgDb::new("resubd").await;
    let tgt = PgDb::new("resubd").await;
    src.exec("CREATE TABLE up_d (id int PRIMARY KEY, v text NOT NULL)")
        .await;
    tgt.exec(
        "CREATE TABLE jg_d (id int PRIMARY KEY, v text NOT NULL CONSTRAINT no_x CHECK (v <> 'x'))",
    )
    .await;
    src.exec("INSERT INTO up_d VALUES (1, 'a'), (2, 'x'), (3, 'c')")
        .await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"up_d\"\ntarget = \"jg_d\"\nwatermark = {{ kind = \"key\" }}\n\
         schedule = \"every:1h\"\n",
        header(&src.url, &tgt.url)
    ));
    let daemon = Daemon::start(&agent, &[]);
    wait_for(
        "the refused row in the ledger",
        Duration::from_secs(30),
        async || rejects(&agent, &[]).iter().any(|r| r["key"] == "2"),
    )
    .await;
    assert_eq!(tgt.scalar_i64("SELECT count(*) FROM jg_d").await, 2);
    // The exchange accepts it now; nothing changed at the source.
    tgt.exec("ALTER TABLE jg_d DROP CONSTRAINT no_x").await;
    let out = agent.ok(&["rejects", "resubmit", "--all"]);
    assert!(
        out.contains("the daemon (pid") && out.contains("sent 1 reject(s) again"),
        "{out}"
    );
    assert_eq!(
        tgt.rows("SELECT id::text, v FROM jg_d WHERE id = 2").await,
        vec![vec![Some("2".into()), Some("x".into())]]
    );
    let list = rejects(&agent, &[]);
    assert_eq!(find(&list, "up_d", "2")["state"], "resubmitted", "{list:?}");
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("rejects sent again on request"), "{log}");
    src.drop().await;
    tgt.drop().await;
}
