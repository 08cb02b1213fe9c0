//! The rejects loop: rows caught by local rules before they are sent, rejections pulled back
//! from the province (rejection table, `dn_*_error` tables, in-row flags), resubmission after
//! correction, clearing after the confirmation window, the mirror table, resubmit and export.

use std::time::Duration;

use crate::common::{Agent, MyDb, PgDb, header, rejects};

fn by_key<'a>(list: &'a [serde_json::Value], key: &str) -> &'a serde_json::Value {
    list.iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("no reject for key {key} in {list:?}"))
}

#[tokio::test]
async fn postgres_rule_and_province_rejections_are_corrected_resubmitted_and_cleared() {
    let src = PgDb::new("rej").await;
    let tgt = PgDb::new("rej").await;
    src.exec(
        "CREATE TABLE up_action (action_id int PRIMARY KEY, name text, uscc varchar(18), \
         inspected_at timestamp(6), submitted_at timestamp(6), updated_at timestamp(6) NOT NULL)",
    )
    .await;
    tgt.exec(
        "CREATE TABLE jg_action (action_id int PRIMARY KEY, name text, uscc varchar(18), \
         inspected_at timestamp(6), submitted_at timestamp(6), updated_at timestamp(6) NOT NULL); \
         CREATE TABLE exchange_reject (id serial PRIMARY KEY, table_name text, record_key text, \
         batch_id text, error_code text, error_message text, rejected_at timestamptz DEFAULT now())",
    )
    .await;
    src.exec(
        "INSERT INTO up_action SELECT g, '企业' || g, '91350100M000100Y43', '2026-11-01 09:00', '2026-11-01 10:00', \
         '2026-11-01'::timestamp + g * interval '1 minute' FROM generate_series(1, 5) g; \
         UPDATE up_action SET uscc = '91350100M000100Y44' WHERE action_id = 3;",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}\n[feedback]\nkind = \"table\"\nconfirm = \"2s\"\n\n[[table]]\nsource = \"up_action\"\ntarget = \"jg_action\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n\
         rules = [\n  {{ id = \"USCC\", column = \"uscc\", check = \"uscc\", message = \"统一社会信用代码校验位错误\" }},\n\
           {{ column = \"name\", check = \"required\" }},\n\
           {{ column = \"submitted_at\", check = \"compare\", op = \">=\", other = \"inspected_at\" }},\n]\n",
        header(&src.url, &tgt.url)
    ));
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("up_action: 4 row(s) sent, 0 deleted, 1 quarantined"),
        "{out}"
    );
    assert!(
        out.contains("1 of 5 rows (20%) were rejected in this cycle, more than reject_alert (5%)"),
        "{out}"
    );
    assert_eq!(
        tgt.scalar_i64("SELECT count(*) FROM jg_action WHERE action_id = 3")
            .await,
        0
    );
    assert_eq!(tgt.scalar_i64("SELECT count(*) FROM jg_action").await, 4);

    // The province rejects row 4 through its rejection table.
    tgt.exec(
        "INSERT INTO exchange_reject (table_name, record_key, batch_id, error_code, error_message, rejected_at) \
         VALUES ('jg_action', '4', 'B1', 'E102', '检查结果代码不在代码集中', '2026-11-21 08:30:00+00'), \
         ('some_other_table', '1', NULL, 'E1', 'x', now())",
    )
    .await;
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("feedback: 2 rejection(s) read")
            || out.contains("feedback: 1 rejection(s) read"),
        "{out}"
    );
    assert!(
        out.contains("1 for tables this agent does not exchange"),
        "{out}"
    );
    let list = rejects(&agent, &[]);
    assert_eq!(list.len(), 2, "{list:?}");
    let r3 = by_key(&list, "3");
    assert_eq!(r3["origin"], "rule");
    assert_eq!(r3["state"], "open");
    assert_eq!(
        r3["reasons"][0],
        "[USCC] uscc: 统一社会信用代码校验位错误 — check character is `4`, should be `3` (value `91350100M000100Y44`)"
    );
    let r4 = by_key(&list, "4");
    assert_eq!(r4["origin"], "province");
    assert_eq!(r4["reasons"][0], "[E102] 检查结果代码不在代码集中");
    assert_eq!(r4["row"]["name"], "企业4");
    let shown = agent.ok(&["rejects", "show", &r4["id"].to_string()]);
    assert!(
        shown.contains("rejected by the province: [E102] 检查结果代码不在代码集中"),
        "{shown}"
    );
    // When the province rejected it, as its rejection table says.
    assert!(
        shown.contains("(rejected by the province at 2026-11-21 08:30:00"),
        "{shown}"
    );
    assert!(shown.contains("name = 企业4"), "{shown}");

    // The business system corrects both rows; the next cycle re-sends them.
    src.exec("UPDATE up_action SET uscc = '91350100M000100Y43', updated_at = '2026-11-20' WHERE action_id = 3").await;
    src.exec("UPDATE up_action SET name = '企业4（已更正）', updated_at = '2026-11-20' WHERE action_id = 4").await;
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("up_action: 2 row(s) sent, 0 deleted, 0 quarantined"),
        "{out}"
    );
    assert_eq!(tgt.scalar_i64("SELECT count(*) FROM jg_action").await, 5);
    assert_eq!(
        tgt.rows("SELECT name FROM jg_action WHERE action_id = 4")
            .await,
        vec![vec![Some("企业4（已更正）".into())]]
    );
    let list = rejects(&agent, &[]);
    assert!(list.iter().all(|r| r["state"] == "resubmitted"), "{list:?}");

    // No new rejection within the confirmation window (2 s): cleared.
    // Sleeping is the scenario: the confirmation window is a span of time with no new
    // rejection, and a sleep only ever overshoots, so this cannot be too short.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("2 cleared"), "{out}");
    assert_eq!(rejects(&agent, &["--state", "cleared"]).len(), 2);
    let shown = agent.ok(&["rejects", "show", &r3["id"].to_string()]);
    for step in [
        "quarantined by the quality rules",
        "re-sent after it changed at the source",
        "cleared: no new rejection within 2s",
    ] {
        assert!(shown.contains(step), "{step}: {shown}");
    }
    let csv = agent.ok(&["rejects", "export", "--csv", "--bom"]);
    assert!(csv.starts_with('\u{feff}'), "Excel needs a BOM");
    assert!(csv.contains("id,table,key,state,origin,reasons"), "{csv}");
    assert!(
        csv.contains("检查结果代码不在代码集中") && csv.lines().count() == 3,
        "{csv}"
    );
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn mariadb_error_tables_code_sets_and_the_mirror() {
    let src = MyDb::new("rejerr").await;
    let tgt = MyDb::new("rejerr").await;
    src.exec(
        "CREATE TABLE up_c (id int PRIMARY KEY, name varchar(50), form varchar(2), updated_at datetime(6) NOT NULL); \
         CREATE TABLE code_check_form (code varchar(2) PRIMARY KEY, label varchar(20)); \
         INSERT INTO code_check_form VALUES ('01', '现场检查'), ('02', '书面检查');",
    )
    .await;
    src.exec(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/sql/mysql/rejects_mirror.sql"
        ))
        .expect("ddl"),
    )
    .await;
    tgt.exec(
        "CREATE TABLE jg_c (id int PRIMARY KEY, name varchar(50), form varchar(2), updated_at datetime(6) NOT NULL); \
         CREATE TABLE dn_c_error (id int, error_remark varchar(500), cd_time datetime(6), cd_batch varchar(32))",
    )
    .await;
    src.exec(
        "INSERT INTO up_c VALUES (1, '甲', '01', '2026-11-01 00:00:01'), (2, '乙', '09', '2026-11-01 00:00:02'), \
         (3, '丙', '02', '2026-11-01 00:00:03'), (4, '丁', '01', '2026-11-01 00:00:04')",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}\n[feedback]\nkind = \"error_table\"\nconfirm = \"2s\"\nmirror_table = \"frontdb_reject\"\n\n\
         [[table]]\nsource = \"up_c\"\ntarget = \"jg_c\"\nfeedback_table = \"dn_c_error\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n\
         rules = [ {{ id = \"FORM\", column = \"form\", check = \"codeset\", table = \"code_check_form\", message = \"检查形式不在代码集中\" }} ]\n",
        header(&src.url, &tgt.url)
    ));
    let out = agent.ok(&["check"]);
    assert!(
        out.contains("error table") && out.contains("dn_c_error of up_c OK"),
        "{out}"
    );
    assert!(
        out.contains("mirror table") && out.contains("frontdb_reject OK"),
        "{out}"
    );
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("up_c: 3 row(s) sent, 0 deleted, 1 quarantined"),
        "{out}"
    );
    tgt.exec(
        "INSERT INTO dn_c_error VALUES (3, '名称不规范', '2026-11-02 08:00:00', '2026110200001')",
    )
    .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("feedback: 1 rejection(s) read"), "{out}");
    let list = rejects(&agent, &[]);
    assert_eq!(
        by_key(&list, "2")["reasons"][0],
        "[FORM] form: 检查形式不在代码集中 — is not in the code set (value `09`)"
    );
    assert_eq!(by_key(&list, "3")["reasons"][0], "名称不规范");
    assert_eq!(by_key(&list, "3")["batch_id"], "2026110200001");
    // The mirror shows them to the business system.
    assert_eq!(
        src.rows("SELECT record_key, state, origin FROM frontdb_reject ORDER BY record_key")
            .await,
        vec![
            vec![Some("2".into()), Some("open".into()), Some("rule".into())],
            vec![
                Some("3".into()),
                Some("open".into()),
                Some("province".into())
            ],
        ]
    );
    // Reading the error table again finds nothing new.
    let out = agent.ok(&["once"]);
    assert!(out.contains("feedback: 0 rejection(s) read"), "{out}");
    src.exec("UPDATE up_c SET form = '02', updated_at = '2026-11-03' WHERE id = 2")
        .await;
    src.exec("UPDATE up_c SET name = '丙（规范）', updated_at = '2026-11-03' WHERE id = 3")
        .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("up_c: 2 row(s) sent"), "{out}");
    assert!(out.contains("0 cleared"), "{out}");
    // Re-sent after the correction: resubmitted, in the ledger and in the mirror, until the
    // confirmation window has passed.
    let list = rejects(&agent, &[]);
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list.iter().all(|r| r["state"] == "resubmitted"), "{list:?}");
    assert!(
        list.iter().all(|r| r["resubmitted"].is_string()),
        "{list:?}"
    );
    assert_eq!(
        src.rows("SELECT record_key, state FROM frontdb_reject ORDER BY record_key")
            .await,
        vec![
            vec![Some("2".into()), Some("resubmitted".into())],
            vec![Some("3".into()), Some("resubmitted".into())],
        ]
    );
    assert_eq!(
        tgt.rows("SELECT form, name FROM jg_c WHERE id IN (2, 3) ORDER BY id")
            .await,
        vec![
            vec![Some("02".into()), Some("乙".into())],
            vec![Some("02".into()), Some("丙（规范）".into())],
        ]
    );
    // Past the confirmation window (2 s).
    // Sleeping is the scenario: the confirmation window is a span of time with no new
    // rejection, and a sleep only ever overshoots, so this cannot be too short.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("2 cleared"), "{out}");
    assert_eq!(
        src.rows("SELECT record_key, state FROM frontdb_reject ORDER BY record_key")
            .await,
        vec![
            vec![Some("2".into()), Some("cleared".into())],
            vec![Some("3".into()), Some("cleared".into())],
        ]
    );
    assert_eq!(tgt.scalar_i64("SELECT COUNT(*) FROM jg_c").await, 4);
    // The province rejects the corrected row 3 again: open again, in the mirror too.
    tgt.exec(
        "INSERT INTO dn_c_error VALUES (3, '名称仍不规范', '2026-11-04 08:00:00', '2026110400001')",
    )
    .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("feedback: 1 rejection(s) read"), "{out}");
    let list = rejects(&agent, &["--state", "open"]);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["key"], "3");
    assert_eq!(list[0]["reasons"][0], "名称仍不规范");
    assert_eq!(list[0]["batch_id"], "2026110400001");
    let shown = agent.ok(&["rejects", "show", &list[0]["id"].to_string()]);
    assert!(
        shown.contains("rejected by the province again: 名称仍不规范"),
        "{shown}"
    );
    assert_eq!(
        src.rows("SELECT record_key, state FROM frontdb_reject ORDER BY record_key")
            .await,
        vec![
            vec![Some("2".into()), Some("cleared".into())],
            vec![Some("3".into()), Some("open".into())],
        ]
    );
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn mariadb_in_row_flags_and_resubmit_on_request() {
    let src = MyDb::new("rejflag").await;
    let tgt = MyDb::new("rejflag").await;
    src.exec("CREATE TABLE up_p (id int PRIMARY KEY, id_no varchar(18), updated_at datetime(6) NOT NULL)").await;
    tgt.exec(
        "CREATE TABLE jg_p (id int PRIMARY KEY, id_no varchar(18), updated_at datetime(6) NOT NULL, \
         sync_sign tinyint NOT NULL DEFAULT 0, sync_error_desc varchar(200), KEY (sync_sign))",
    )
    .await;
    src.exec(
        "INSERT INTO up_p VALUES (1, '34052419800101001X', '2026-11-01 00:00:01'), \
         (2, '11010519491231002X', '2026-11-01 00:00:02'), (3, '34052419800101001X', '2026-11-01 00:00:03'), \
         (4, '340524198002310010', '2026-11-01 00:00:04')",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}\n[feedback]\nkind = \"flag\"\nconfirm = \"1s\"\n\n[[table]]\nsource = \"up_p\"\ntarget = \"jg_p\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n\
         rules = [ {{ column = \"id_no\", check = \"id_number\" }} ]\n",
        header(&src.url, &tgt.url)
    ));
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("up_p: 3 row(s) sent, 0 deleted, 1 quarantined"),
        "{out}"
    );
    // Row 4 (born on 31 February) fails the local rule: not sent, so it has no flag to set.
    assert_eq!(
        tgt.rows("SELECT CAST(id AS CHAR), CAST(sync_sign AS CHAR) FROM jg_p ORDER BY id")
            .await,
        [("1", "0"), ("2", "0"), ("3", "0")]
            .iter()
            .map(|(a, b)| vec![Some(a.to_string()), Some(b.to_string())])
            .collect::<Vec<_>>()
    );
    let r4 = by_key(&rejects(&agent, &[]), "4").clone();
    assert_eq!(r4["origin"], "rule");
    assert!(
        r4["reasons"][0]
            .as_str()
            .is_some_and(|r| r.starts_with("[R1] id_no: ") && r.contains("340524198002310010")),
        "{r4}"
    );
    // The province marks two exchange rows as failed.
    tgt.exec(
        "UPDATE jg_p SET sync_sign = 9, sync_error_desc = '证件号码与姓名不符' WHERE id IN (2, 3)",
    )
    .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("feedback: 2 rejection(s) read"), "{out}");
    // Read again (the flag is still 9): nothing new in the history.
    agent.ok(&["once"]);
    let list = rejects(&agent, &["--state", "open"]);
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(by_key(&list, "2")["origin"], "province");
    assert_eq!(by_key(&list, "2")["reasons"][0], "证件号码与姓名不符");
    let r2 = by_key(&list, "2").clone();
    let shown = agent.ok(&["rejects", "show", &r2["id"].to_string(), "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(
        shown["history"].as_array().map(Vec::len),
        Some(1),
        "{shown}"
    );

    // Rows 2 and 4 are corrected at the source; row 3 was right all along: it is sent again
    // on request.
    src.exec(
        "UPDATE up_p SET id_no = '34052419800101001X', updated_at = '2026-11-05' WHERE id = 2; \
         UPDATE up_p SET id_no = '11010519491231002X', updated_at = '2026-11-05' WHERE id = 4",
    )
    .await;
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("up_p: 2 row(s) sent, 0 deleted, 0 quarantined"),
        "{out}"
    );
    assert_eq!(
        tgt.rows(
            "SELECT CAST(id AS CHAR), id_no, CAST(sync_sign AS CHAR), sync_error_desc FROM jg_p \
             WHERE id IN (2, 4) ORDER BY id"
        )
        .await,
        vec![
            vec![
                Some("2".into()),
                Some("34052419800101001X".into()),
                Some("0".into()),
                None
            ],
            vec![
                Some("4".into()),
                Some("11010519491231002X".into()),
                Some("0".into()),
                None
            ],
        ],
        "corrected rows land, marked for the province to check again"
    );
    assert_eq!(
        rejects(&agent, &["--state", "resubmitted"])
            .iter()
            .map(|r| r["key"].as_str().unwrap_or_default())
            .collect::<std::collections::BTreeSet<_>>(),
        ["2", "4"].into_iter().collect()
    );
    let r3 = by_key(&list, "3")["id"].to_string();
    let out = agent.ok(&["rejects", "resubmit", &r3]);
    assert!(
        out.contains("up_p: 1 row(s) sent again, 0 quarantined again"),
        "{out}"
    );
    let shown = agent.ok(&["rejects", "show", &r3]);
    assert!(
        shown.contains("sent again on request") && shown.contains("re-sent on request"),
        "{shown}"
    );
    assert_eq!(
        tgt.scalar_i64("SELECT COUNT(*) FROM jg_p WHERE sync_sign = 9")
            .await,
        0
    );
    // Past the confirmation window (1 s).
    // Sleeping is the scenario: the confirmation window is a span of time with no new
    // rejection, and a sleep only ever overshoots, so this cannot be too short.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("feedback: 0 rejection(s) read from the province, 3 cleared"),
        "{out}"
    );
    // `resubmit` needs to be told which.
    let out = agent.run(&["rejects", "resubmit"]);
    assert_eq!(out.status.code(), Some(2));
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn mariadb_extraction_flags_at_the_source_and_province_flags_at_the_exchange() {
    let src = MyDb::new("rejflag2").await;
    let tgt = MyDb::new("rejflag2").await;
    // The convention on both sides: the source's extraction flag (0 new, 1 exchanged, 9
    // failed, with the reason), the province's status flag in the exchange rows.
    src.exec(
        "CREATE TABLE up_p (id int PRIMARY KEY, id_no varchar(18), \
         sync_sign tinyint(1) NOT NULL DEFAULT 0, sync_error_desc varchar(200), KEY (sync_sign)); \
         INSERT INTO up_p (id, id_no) VALUES (1, '34052419800101001X'), (2, '11010519491231002X'), \
         (3, '110105194912310029')",
    )
    .await;
    tgt.exec(
        "CREATE TABLE jg_p (id int PRIMARY KEY, id_no varchar(18), \
         sync_sign tinyint NOT NULL DEFAULT 0, sync_error_desc varchar(200), KEY (sync_sign))",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}\n[feedback]\nkind = \"flag\"\nconfirm = \"2s\"\n\n[[table]]\nsource = \"up_p\"\ntarget = \"jg_p\"\n\
         watermark = {{ kind = \"flag\", column = \"sync_sign\", error_column = \"sync_error_desc\" }}\n\
         rules = [ {{ id = \"SFZ\", column = \"id_no\", check = \"id_number\", message = \"身份证号码校验位错误\" }} ]\n",
        header(&src.url, &tgt.url)
    ));
    let flags = async || {
        src.rows(
            "SELECT CAST(id AS CHAR), CAST(sync_sign AS CHAR), sync_error_desc FROM up_p ORDER BY id",
        )
        .await
    };
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("up_p: 2 row(s) sent, 0 deleted, 1 quarantined"),
        "{out}"
    );
    // Row 3 fails the rule: not sent; its source flag is 9 with the rule's message.
    let f = flags().await;
    assert_eq!(f[0], vec![Some("1".into()), Some("1".into()), None]);
    assert_eq!(f[1], vec![Some("2".into()), Some("1".into()), None]);
    assert_eq!(f[2][1].as_deref(), Some("9"));
    let why = f[2][2].clone().unwrap_or_default();
    assert!(
        why.starts_with("[SFZ] id_no: 身份证号码校验位错误") && why.contains("110105194912310029"),
        "{why}"
    );
    assert_eq!(
        tgt.rows("SELECT CAST(id AS CHAR), CAST(sync_sign AS CHAR) FROM jg_p ORDER BY id")
            .await,
        vec![
            vec![Some("1".into()), Some("0".into())],
            vec![Some("2".into()), Some("0".into())],
        ]
    );

    // The province fails row 2 in the exchange table.
    tgt.exec("UPDATE jg_p SET sync_sign = 9, sync_error_desc = '证件号码已注销' WHERE id = 2")
        .await;
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("up_p: 0 row(s) sent, 0 deleted, 0 quarantined"),
        "{out}"
    );
    assert!(out.contains("feedback: 1 rejection(s) read"), "{out}");
    let list = rejects(&agent, &["--state", "open"]);
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(by_key(&list, "2")["origin"], "province");
    assert_eq!(by_key(&list, "2")["reasons"][0], "证件号码已注销");
    assert_eq!(by_key(&list, "3")["origin"], "rule");
    assert_eq!(agent.status_json()["tables"][0]["open_rejects"], 2);

    // The business system corrects both rows and marks them pending again.
    src.exec(
        "UPDATE up_p SET id_no = '34052419800101001X', sync_sign = 0 WHERE id = 2; \
         UPDATE up_p SET id_no = '11010519491231002X', sync_sign = 0, sync_error_desc = NULL WHERE id = 3",
    )
    .await;
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("up_p: 2 row(s) sent, 0 deleted, 0 quarantined"),
        "{out}"
    );
    assert!(out.contains("feedback: 0 rejection(s) read"), "{out}");
    assert_eq!(
        tgt.rows(
            "SELECT CAST(id AS CHAR), id_no, CAST(sync_sign AS CHAR), sync_error_desc FROM jg_p ORDER BY id"
        )
        .await,
        src.rows(
            "SELECT CAST(id AS CHAR), id_no, '0', NULL FROM up_p ORDER BY id"
        )
        .await,
        "both corrections land, marked for the province to check"
    );
    assert_eq!(
        src.scalar_i64(
            "SELECT COUNT(*) FROM up_p WHERE sync_sign <> 1 OR sync_error_desc IS NOT NULL"
        )
        .await,
        0
    );
    let list = rejects(&agent, &[]);
    assert!(list.iter().all(|r| r["state"] == "resubmitted"), "{list:?}");
    // Past the confirmation window (2 s).
    // Sleeping is the scenario: the confirmation window is a span of time with no new
    // rejection, and a sleep only ever overshoots, so this cannot be too short.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("feedback: 0 rejection(s) read from the province, 2 cleared"),
        "{out}"
    );
    assert_eq!(agent.status_json()["tables"][0]["open_rejects"], 0);
    src.drop().await;
    tgt.drop().await;
}
