//! Change detection against the real servers: ties across batch boundaries, late commits,
//! control-column deletes and tombstones, extraction flags, digests, newer-wins upserts,
//! NULL and future change times, and quarantined rows.

use crate::common::{self, Agent, MyDb, PgDb, header};

fn table(body: &str) -> String {
    format!("\n[[table]]\n{body}\n")
}

#[tokio::test]
async fn equal_timestamps_across_batch_boundaries_all_arrive_postgres() {
    let src = PgDb::new("ties").await;
    let tgt = PgDb::new("ties").await;
    let ddl = "CREATE TABLE tie (id int PRIMARY KEY, v text, updated_at timestamp(6) NOT NULL)";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    src.exec(
        "INSERT INTO tie SELECT g, 'row ' || g, '2026-01-01 00:00:00' FROM generate_series(1, 3000) g",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&src.url, &tgt.url),
        table(
            "source = \"tie\"\nbatch_size = 1000\n\
             watermark = { kind = \"timestamp\", column = \"updated_at\", lookback = \"1m\" }"
        )
    ));
    let out = agent.ok(&["once"]);
    assert!(out.contains("tie: 3000 row(s) sent"), "{out}");
    assert!(out.contains("3 batch(es)"), "{out}");
    let sum = "SELECT count(*)::int8 * 100000000 + sum(id)::int8 FROM tie";
    assert_eq!(tgt.scalar_i64(sum).await, src.scalar_i64(sum).await);
    assert_eq!(tgt.scalar_i64("SELECT count(*) FROM tie").await, 3000);

    // More rows with the very same timestamp, keys both below... and above the watermark key.
    src.exec("DELETE FROM tie WHERE id = 5").await;
    src.exec("INSERT INTO tie VALUES (5, 'again', '2026-01-01 00:00:00')")
        .await;
    src.exec(
        "INSERT INTO tie SELECT g, 'late ' || g, '2026-01-01 00:00:00' FROM generate_series(3001, 3010) g",
    )
    .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("tie: 11 row(s) sent"), "{out}");
    assert_eq!(tgt.scalar_i64(sum).await, src.scalar_i64(sum).await);
    assert_eq!(
        tgt.rows("SELECT v FROM tie WHERE id = 5").await,
        vec![vec![Some("again".to_string())]]
    );
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn equal_timestamps_across_batch_boundaries_all_arrive_mariadb() {
    let src = MyDb::new("ties").await;
    let tgt = MyDb::new("ties").await;
    let ddl = "CREATE TABLE tie (a int, b varchar(10), v text, updated_at datetime(6) NOT NULL, PRIMARY KEY (a, b))";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    src.exec(
        "INSERT INTO tie SELECT seq DIV 100, CONCAT('k', seq MOD 100), CONCAT('row ', seq), '2026-01-01 00:00:00' \
         FROM seq_0_to_2999",
    )
    .await;
    // Without lookback the watermark alone decides: ties are broken by the two-column key.
    let agent = Agent::new(&format!(
        "{}{}",
        header(&src.url, &tgt.url),
        table(
            "source = \"tie\"\nbatch_size = 1000\n\
             watermark = { kind = \"timestamp\", column = \"updated_at\", lookback = \"0s\" }"
        )
    ));
    let out = agent.ok(&["once"]);
    assert!(out.contains("tie: 3000 row(s) sent"), "{out}");
    src.exec(
        "INSERT INTO tie SELECT 99, CONCAT('z', seq), 'late', '2026-01-01 00:00:00' FROM seq_0_to_9",
    )
    .await;
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("tie: 10 row(s) sent, 0 deleted, 0 quarantined, 0 unchanged"),
        "{out}"
    );
    let check =
        "SELECT CAST(COUNT(*) AS SIGNED), CAST(SUM(CRC32(CONCAT(a, b, v))) AS SIGNED) FROM tie";
    assert_eq!(src.rows(check).await, tgt.rows(check).await);
    assert_eq!(tgt.scalar_i64("SELECT COUNT(*) FROM tie").await, 3010);
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn a_transaction_committed_late_with_an_older_timestamp_still_arrives() {
    let src = PgDb::new("late").await;
    let tgt = PgDb::new("late").await;
    let ddl = "CREATE TABLE ev (id int PRIMARY KEY, v text, updated_at timestamp(6) NOT NULL)";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    // A business transaction starts and stamps its row, but commits only later.
    let mut slow = src.pool.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO ev VALUES (1, 'slow transaction', localtimestamp - interval '3 seconds')",
    )
    .execute(&mut *slow)
    .await
    .expect("insert");
    src.exec("INSERT INTO ev VALUES (2, 'quick', localtimestamp), (3, 'quick', localtimestamp)")
        .await;
    let agent = Agent::new(&format!(
        "{}{}",
        // The lookback alone: the open-transaction guard has its own tests (long_transactions.rs).
        header(&src.url, &tgt.url)
            .replace("Asia/Shanghai", "UTC")
            .replace(
                &format!("url = \"{}\"\n", src.url),
                &format!("url = \"{}\"\ntransaction_guard = \"0s\"\n", src.url)
            ),
        table(
            "source = \"ev\"\nwatermark = { kind = \"timestamp\", column = \"updated_at\", lookback = \"1m\" }"
        )
    ));
    let out = agent.ok(&["once"]);
    assert!(out.contains("ev: 2 row(s) sent"), "{out}");
    let wm = agent.status_json()["tables"][0]["watermark"]
        .as_str()
        .map(str::to_owned);
    assert!(
        wm.as_deref().is_some_and(|w| w.ends_with("/ 3")),
        "watermark past the slow row: {wm:?}"
    );
    slow.commit().await.expect("commit");
    let out = agent.ok(&["once"]);
    assert!(out.contains("ev: 1 row(s) sent"), "{out}");
    assert!(out.contains("2 unchanged"), "{out}");
    assert_eq!(
        tgt.rows("SELECT id::text, v FROM ev ORDER BY id").await,
        src.rows("SELECT id::text, v FROM ev ORDER BY id").await
    );
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn control_columns_deletes_and_tombstones() {
    let src = PgDb::new("ctl").await;
    let tgt = PgDb::new("ctl").await;
    for t in ["up_a", "up_b"] {
        src.exec(&format!(
            "CREATE TABLE {t} (cd_id varchar(100) PRIMARY KEY, name text, \
             cd_operation varchar(1) NOT NULL, cd_time timestamp(6) NOT NULL)"
        ))
        .await;
        src.exec(&format!(
            "INSERT INTO {t} VALUES ('A', '甲', 'i', '2026-11-01 08:00:00'), \
             ('B', '乙', 'I', '2026-11-01 08:00:01'), ('C', '丙', 'I', '2026-11-01 08:00:02')"
        ))
        .await;
    }
    for t in ["jg_a", "jg_b"] {
        tgt.exec(&format!(
            "CREATE TABLE {t} (cd_id varchar(100) PRIMARY KEY, name text, cd_operation varchar(1), \
             cd_time timestamp(6), cd_batch varchar(32), cd_source varchar(32))"
        ))
        .await;
    }
    let agent = Agent::new(&format!(
        "{}{}{}",
        header(&src.url, &tgt.url),
        table("source = \"up_a\"\ntarget = \"jg_a\"\nwatermark = { kind = \"control\" }"),
        table(
            "source = \"up_b\"\ntarget = \"jg_b\"\ndeletes = \"tombstone\"\nwatermark = { kind = \"control\" }"
        )
    ));
    agent.ok(&["once"]);
    let rows = tgt
        .rows("SELECT cd_id, cd_operation, cd_source, length(cd_batch)::text FROM jg_a ORDER BY cd_id")
        .await;
    let want = |id: &str, op: &str| {
        vec![
            Some(id.to_string()),
            Some(op.to_string()),
            Some("230000SCJGJ".to_string()),
            Some("13".to_string()),
        ]
    };
    assert_eq!(rows, vec![want("A", "I"), want("B", "I"), want("C", "I")]);

    for t in ["up_a", "up_b"] {
        src.exec(&format!(
            "UPDATE {t} SET cd_operation = 'd', cd_time = '2026-11-02 08:00:00' WHERE cd_id = 'B'; \
             UPDATE {t} SET cd_operation = 'U', name = '丙丙', cd_time = '2026-11-02 08:00:01' WHERE cd_id = 'C'"
        ))
        .await;
    }
    let out = agent.ok(&["once"]);
    assert!(out.contains("up_a: 1 row(s) sent, 1 deleted"), "{out}");
    assert!(out.contains("up_b: 2 row(s) sent, 0 deleted"), "{out}");
    assert_eq!(
        tgt.rows("SELECT cd_id, name, cd_operation FROM jg_a ORDER BY cd_id")
            .await,
        vec![
            vec![Some("A".into()), Some("甲".into()), Some("I".into())],
            vec![Some("C".into()), Some("丙丙".into()), Some("U".into())],
        ]
    );
    assert_eq!(
        tgt.rows("SELECT cd_id, cd_operation FROM jg_b ORDER BY cd_id")
            .await,
        vec![
            vec![Some("A".into()), Some("I".into())],
            vec![Some("B".into()), Some("D".into())],
            vec![Some("C".into()), Some("U".into())],
        ]
    );
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn extraction_flags_are_set_after_the_exchange_and_failures_get_9() {
    let src = MyDb::new("flag").await;
    let tgt = MyDb::new("flag").await;
    src.exec(
        "CREATE TABLE up_c (id int PRIMARY KEY, content varchar(500) NOT NULL, \
         sync_sign tinyint(1) NOT NULL DEFAULT 0, sync_error_desc varchar(200), KEY (sync_sign))",
    )
    .await;
    tgt.exec("CREATE TABLE jg_c (id int PRIMARY KEY, content varchar(20) NOT NULL)")
        .await;
    src.exec(
        "INSERT INTO up_c (id, content) VALUES (1, '超市销售过期食品'), (2, '餐馆卫生条件差'), \
         (3, 'short'), (4, 'ok'), (5, 'fine'), (6, '这是一条超过二十个字符的投诉内容需要被隔离处理')",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&src.url, &tgt.url),
        table(
            "source = \"up_c\"\ntarget = \"jg_c\"\n\
             watermark = { kind = \"flag\", column = \"sync_sign\", error_column = \"sync_error_desc\" }"
        )
    ));
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("up_c: 5 row(s) sent, 0 deleted, 1 quarantined"),
        "{out}"
    );
    assert_eq!(
        src.rows("SELECT CAST(id AS CHAR), CAST(sync_sign AS CHAR) FROM up_c ORDER BY id")
            .await,
        [
            ("1", "1"),
            ("2", "1"),
            ("3", "1"),
            ("4", "1"),
            ("5", "1"),
            ("6", "9")
        ]
        .iter()
        .map(|(a, b)| vec![Some(a.to_string()), Some(b.to_string())])
        .collect::<Vec<_>>()
    );
    let why = src
        .rows("SELECT sync_error_desc FROM up_c WHERE id = 6")
        .await;
    let why = why[0][0].clone().unwrap_or_default();
    assert!(
        why.contains("content") && why.contains("at most 20 characters"),
        "{why}"
    );
    assert_eq!(agent.status_json()["tables"][0]["open_rejects"], 1);

    // The business system changes a row and the bad one, and marks them pending again.
    src.exec("UPDATE up_c SET content = '已更正', sync_sign = 0 WHERE id = 2")
        .await;
    src.exec(
        "UPDATE up_c SET content = '已缩短', sync_sign = 0, sync_error_desc = NULL WHERE id = 6",
    )
    .await;
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("up_c: 2 row(s) sent, 0 deleted, 0 quarantined"),
        "{out}"
    );
    assert_eq!(
        tgt.rows("SELECT CAST(id AS CHAR), content FROM jg_c ORDER BY id")
            .await,
        src.rows("SELECT CAST(id AS CHAR), content FROM up_c ORDER BY id")
            .await
    );
    assert_eq!(
        src.scalar_i64("SELECT COUNT(*) FROM up_c WHERE sync_sign <> 1")
            .await,
        0
    );
    assert_eq!(agent.status_json()["tables"][0]["open_rejects"], 0);
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn digests_find_inserts_updates_and_deletes() {
    let src = PgDb::new("digest").await;
    let tgt = MyDb::new("digest").await;
    src.exec("CREATE TABLE codes (code varchar(10) PRIMARY KEY, name varchar(100) NOT NULL)")
        .await;
    tgt.exec("CREATE TABLE codes (code varchar(10) PRIMARY KEY, name varchar(100) NOT NULL)")
        .await;
    src.exec("INSERT INTO codes VALUES ('01', '现场检查'), ('02', '书面检查'), ('03', '网络检查'), ('04', '其他'), ('05', '抽样')").await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&src.url, &tgt.url),
        table("source = \"codes\"\nwatermark = { kind = \"digest\" }")
    ));
    let out = agent.ok(&["once"]);
    assert!(out.contains("codes: 5 row(s) sent"), "{out}");
    src.exec("UPDATE codes SET name = '现场检查（含夜查）' WHERE code = '01'; DELETE FROM codes WHERE code = '04'; INSERT INTO codes VALUES ('06', '联合检查')").await;
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("codes: 2 row(s) sent, 1 deleted, 0 quarantined, 3 unchanged"),
        "{out}"
    );
    assert_eq!(
        tgt.rows("SELECT code, name FROM codes ORDER BY code").await,
        src.rows("SELECT code, name FROM codes ORDER BY code").await
    );
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("codes: 0 row(s) sent, 0 deleted, 0 quarantined, 5 unchanged"),
        "{out}"
    );
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn key_watermark_for_append_only_tables() {
    let src = MyDb::new("key").await;
    let tgt = PgDb::new("key").await;
    src.exec("CREATE TABLE log (id bigint AUTO_INCREMENT PRIMARY KEY, msg varchar(100))")
        .await;
    tgt.exec("CREATE TABLE log (id bigint PRIMARY KEY, msg varchar(100))")
        .await;
    src.exec("INSERT INTO log (msg) SELECT CONCAT('日志 ', seq) FROM seq_1_to_100")
        .await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&src.url, &tgt.url),
        table("source = \"log\"\nbatch_size = 30\nwatermark = { kind = \"key\" }")
    ));
    assert!(
        agent
            .ok(&["once"])
            .contains("log: 100 row(s) sent, 0 deleted, 0 quarantined, 0 unchanged, 4 batch(es)")
    );
    src.exec("INSERT INTO log (msg) SELECT CONCAT('更多 ', seq) FROM seq_1_to_50")
        .await;
    assert!(agent.ok(&["once"]).contains("log: 50 row(s) sent"));
    assert_eq!(
        tgt.rows("SELECT id::text, msg FROM log ORDER BY log.id")
            .await,
        src.rows("SELECT CAST(id AS CHAR), msg FROM log ORDER BY id")
            .await
    );
    src.drop().await;
    tgt.drop().await;
}

/// The exchange holds rows 1 and 3 in newer versions (2030); the source sends older versions
/// of both (row 3 as a delete, control mode) and a new row 2. Nothing newer is lost.
const NEWER_SRC: &str = "CREATE TABLE t (id int PRIMARY KEY, name varchar(50), \
     cd_operation varchar(1) NOT NULL, cd_time varchar(19) NOT NULL)";
const NEWER_ROWS: &str = "INSERT INTO t VALUES (1, 'old at source', 'U', '2026-01-01 00:00:00'), \
     (2, 'new row', 'I', '2026-01-01 00:00:00'), (3, 'deleted at source', 'D', '2026-01-01 00:00:00')";
const NEWER_TGT_ROWS: &str = "INSERT INTO t VALUES (1, 'newer at exchange', 'U', '2030-01-01 00:00:00'), \
     (3, 'newer at exchange', 'U', '2030-01-01 00:00:00')";

fn newer_config(src: &str, tgt: &str) -> String {
    format!(
        "{}{}",
        header(src, tgt),
        table("source = \"t\"\nwatermark = { kind = \"control\", format = \"%Y-%m-%d %H:%M:%S\" }")
    )
}

fn newer_expected() -> Vec<Vec<Option<String>>> {
    vec![
        vec![Some("1".into()), Some("newer at exchange".into())],
        vec![Some("2".into()), Some("new row".into())],
        vec![Some("3".into()), Some("newer at exchange".into())],
    ]
}

#[tokio::test]
async fn a_newer_row_at_the_exchange_is_never_replaced_by_an_older_one_postgres() {
    let src = PgDb::new("newer").await;
    let tgt = PgDb::new("newer").await;
    src.exec(NEWER_SRC).await;
    tgt.exec(NEWER_SRC).await;
    src.exec(NEWER_ROWS).await;
    tgt.exec(NEWER_TGT_ROWS).await;
    let agent = Agent::new(&newer_config(&src.url, &tgt.url));
    let out = agent.ok(&["once"]);
    assert!(out.contains("t: 2 row(s) sent, 1 deleted"), "{out}");
    assert_eq!(
        tgt.rows("SELECT id::text, name FROM t ORDER BY t.id").await,
        newer_expected()
    );
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn a_newer_row_at_the_exchange_is_never_replaced_by_an_older_one_mariadb() {
    let src = PgDb::new("newer").await;
    let tgt = MyDb::new("newer").await;
    src.exec(NEWER_SRC).await;
    tgt.exec(NEWER_SRC).await;
    src.exec(NEWER_ROWS).await;
    tgt.exec(NEWER_TGT_ROWS).await;
    let agent = Agent::new(&newer_config(&src.url, &tgt.url));
    agent.ok(&["once"]);
    assert_eq!(
        tgt.rows("SELECT CAST(id AS CHAR), name FROM t ORDER BY id")
            .await,
        newer_expected()
    );
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn a_newer_row_at_the_exchange_is_never_replaced_by_an_older_one_sqlite() {
    let src = PgDb::new("newer").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("x.db");
    common::sqlite_exec(&db, &format!("{NEWER_SRC}; {NEWER_TGT_ROWS}")).await;
    src.exec(NEWER_SRC).await;
    src.exec(NEWER_ROWS).await;
    let agent = Agent::new(&newer_config(
        &src.url,
        &format!("sqlite://{}", db.display()),
    ));
    agent.ok(&["once"]);
    assert_eq!(
        common::sqlite_rows(&db, "SELECT CAST(id AS TEXT), name FROM t ORDER BY id").await,
        newer_expected()
    );
    src.drop().await;
}

#[tokio::test]
async fn null_and_future_change_times_are_reported_and_not_lost() {
    let src = PgDb::new("nullts").await;
    let tgt = PgDb::new("nullts").await;
    src.exec("CREATE TABLE t (id int PRIMARY KEY, updated_at timestamp(6))")
        .await;
    tgt.exec("CREATE TABLE t (id int PRIMARY KEY, updated_at timestamp(6))")
        .await;
    src.exec(
        "INSERT INTO t VALUES (1, '2026-01-01'), (2, '2026-01-02'), (3, NULL), (4, NULL), \
         (5, localtimestamp + interval '400 days')",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&src.url, &tgt.url).replace("Asia/Shanghai", "UTC"),
        table("source = \"t\"\nwatermark = { kind = \"timestamp\", column = \"updated_at\" }")
    ));
    let out = agent.ok(&["once"]);
    assert!(out.contains("t: 3 row(s) sent"), "{out}");
    assert!(
        out.contains("updated_at NULL are not exchanged until it is set; keys: 3, 4"),
        "{out}"
    );
    assert!(
        out.contains(
            "1 row(s) of public.t have updated_at more than a minute after the database's time"
        ),
        "{out}"
    );
    assert_eq!(
        tgt.scalar_i64("SELECT count(*) FROM t WHERE id IN (1, 2, 5)")
            .await,
        3
    );
    let status = agent.status_json();
    let wm = status["tables"][0]["watermark"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        wm.starts_with("2026-01-02 00:00:00.000000 / 2"),
        "watermark stays at the database's time: {wm}"
    );
    assert!(
        status["tables"][0]["warnings"]
            .as_array()
            .is_some_and(|w| w.len() == 2),
        "{status}"
    );
    // The future row is not sent again while it stays unchanged.
    let out = agent.ok(&["once"]);
    assert!(out.contains("t: 0 row(s) sent"), "{out}");
    // Once its time is set, a NULL row is exchanged.
    src.exec("UPDATE t SET updated_at = localtimestamp WHERE id = 3")
        .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("t: 1 row(s) sent"), "{out}");
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn bad_rows_are_quarantined_and_the_rest_of_the_batch_goes_through() {
    let src = PgDb::new("bad").await;
    let tgt = PgDb::new("bad").await;
    src.exec("CREATE TABLE t (id int PRIMARY KEY, name text, amount text, updated_at timestamp(6) NOT NULL)").await;
    tgt.exec("CREATE TABLE t (id int PRIMARY KEY, name varchar(8), amount numeric(10,2), updated_at timestamp(6) NOT NULL)").await;
    src.exec(
        "INSERT INTO t SELECT g, '名称' || g, (g * 1.5)::text, '2026-01-01'::timestamp + g * interval '1 second' \
         FROM generate_series(1, 100) g",
    )
    .await;
    src.exec("UPDATE t SET name = '一个太长太长太长的名称' WHERE id = 17")
        .await;
    src.exec("UPDATE t SET amount = '12,50' WHERE id = 42")
        .await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&src.url, &tgt.url),
        table(
            "source = \"t\"\nbatch_size = 40\nwatermark = { kind = \"timestamp\", column = \"updated_at\" }"
        )
    ));
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("t: 98 row(s) sent, 0 deleted, 2 quarantined"),
        "{out}"
    );
    assert_eq!(tgt.scalar_i64("SELECT count(*) FROM t").await, 98);
    assert_eq!(
        tgt.scalar_i64("SELECT count(*) FROM t WHERE id IN (17, 42)")
            .await,
        0
    );
    assert_eq!(agent.status_json()["tables"][0]["open_rejects"], 2);
    // Corrected at the source, they arrive and the rejects close.
    src.exec("UPDATE t SET name = '已更正', updated_at = '2026-02-01' WHERE id = 17")
        .await;
    src.exec("UPDATE t SET amount = '12.50', updated_at = '2026-02-01' WHERE id = 42")
        .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("t: 2 row(s) sent"), "{out}");
    assert_eq!(tgt.scalar_i64("SELECT count(*) FROM t").await, 100);
    assert_eq!(agent.status_json()["tables"][0]["open_rejects"], 0);
    src.drop().await;
    tgt.drop().await;
}
