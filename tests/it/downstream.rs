//! Data the province sends down (`direction = "down"`): a PostgreSQL exchange's `dn_` table
//! applied to a MariaDB front-end table with its control columns (inserts, updates,
//! deletes), through a kill -9; a table going up and one coming down in one agent; a full
//! resync of a down table; error rows the province writes into the front-end database.

use std::time::Duration;

use crate::common::{self, Agent, Daemon, MyDb, PgDb, header};

mod pull_resync;

/// The province's table at the exchange.
const EXCHANGE_DDL: &str = "CREATE TABLE dn_notice (id int PRIMARY KEY, title text NOT NULL, \
     amount numeric(12,2), cd_operation varchar(1) NOT NULL, cd_time timestamp(6) NOT NULL, \
     cd_batch varchar(32) NOT NULL); CREATE INDEX dn_notice_t ON dn_notice (cd_time, id)";

/// The department's copy at the front-end: the same columns, and the flag its business
/// system clears once it has taken a row.
const FRONT_DDL: &str = "CREATE TABLE dn_notice (id int PRIMARY KEY, title text NOT NULL, \
     amount decimal(12,2), cd_operation varchar(1) NOT NULL, cd_time datetime(6) NOT NULL, \
     cd_batch varchar(32) NOT NULL, sync_flag int NOT NULL DEFAULT 1)";

/// Every live row at the exchange (deletes travel as rows marked D), as text.
const EXCHANGE_ROWS: &str = "SELECT id::text, title, amount::text, cd_operation, \
     to_char(cd_time, 'YYYY-MM-DD HH24:MI:SS.US'), cd_batch FROM dn_notice \
     WHERE cd_operation <> 'D' ORDER BY dn_notice.id";

/// Every row at the front-end, as text.
const FRONT_ROWS: &str = "SELECT CAST(id AS char), title, CAST(amount AS char), cd_operation, \
     DATE_FORMAT(cd_time, '%Y-%m-%d %H:%i:%s.%f'), cd_batch FROM dn_notice ORDER BY id";

/// A table coming down, read every second.
fn down_table(extra: &str) -> String {
    format!(
        "\n[[table]]\nname = \"dn\"\nsource = \"dn_notice\"\ndirection = \"down\"\n\
         schedule = \"every:1s\"\nbatch_size = 500\n\
         watermark = {{ kind = \"control\", lookback = \"10s\" }}\n\
         arrival_flag = {{ column = \"sync_flag\", value = 0 }}\n{extra}"
    )
}

/// The province writes `n` rows from `from`, marked I, in one batch of its own.
async fn province_inserts(x: &PgDb, from: i32, n: i32) {
    x.exec(&format!(
        "INSERT INTO dn_notice SELECT g, 'notice ' || g, g * 1.5, 'I', \
         now() AT TIME ZONE 'UTC', '20260101' || lpad(g::text, 5, '0') \
         FROM generate_series({from}, {}) g",
        from + n - 1
    ))
    .await;
}

/// The province changes rows (`U`) and withdraws others (`D`), each with a new time.
async fn province_changes(x: &PgDb, updated: &str, deleted: &str) {
    x.exec(&format!(
        "UPDATE dn_notice SET title = title || ' (rev)', amount = amount + 1, cd_operation = 'U', \
         cd_time = clock_timestamp() AT TIME ZONE 'UTC' WHERE id IN ({updated}); \
         UPDATE dn_notice SET cd_operation = 'D', cd_time = clock_timestamp() AT TIME ZONE 'UTC' \
         WHERE id IN ({deleted})"
    ))
    .await;
}

/// Wait until the front-end holds every live exchange row, or fail with the first rows that
/// differ.
async fn until_equal(f: &MyDb, x: &PgDb, what: &str, timeout: Duration) {
    let start = std::time::Instant::now();
    loop {
        let (a, b) = (f.rows(FRONT_ROWS).await, x.rows(EXCHANGE_ROWS).await);
        if a == b {
            return;
        }
        if start.elapsed() > timeout {
            let only_front: Vec<_> = a.iter().filter(|r| !b.contains(r)).take(5).collect();
            let only_exchange: Vec<_> = b.iter().filter(|r| !a.contains(r)).take(5).collect();
            panic!(
                "{what}: the front-end ({} rows) still differs from the exchange ({} rows) \
                 after {timeout:?}; only at the front-end: {only_front:?}; only at the \
                 exchange: {only_exchange:?}",
                a.len(),
                b.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn front_count(f: &MyDb) -> i64 {
    f.scalar_i64("SELECT count(*) FROM dn_notice").await
}

#[tokio::test]
async fn a_down_table_survives_kill_9_and_equals_the_exchange() {
    let x = PgDb::new("down").await;
    let f = MyDb::new("down").await;
    x.exec(EXCHANGE_DDL).await;
    f.exec(FRONT_DDL).await;
    province_inserts(&x, 1, 60_000).await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&f.url, &x.url).replace("Asia/Shanghai", "UTC"),
        down_table("")
    ));
    // The agent is killed while the rows are on their way down.
    let d = Daemon::start(&agent, &[]);
    common::wait_for(
        "the first rows at the front-end",
        Duration::from_secs(60),
        async || front_count(&f).await > 0,
    )
    .await;
    d.kill();
    let at_kill = front_count(&f).await;
    assert!(at_kill < 60_000, "the kill fell after every row arrived");
    // Meanwhile the province changes, withdraws and adds rows.
    province_changes(&x, "1, 2, 3, 59999", "4, 5, 60000").await;
    province_inserts(&x, 60_001, 100).await;
    let d = Daemon::start(&agent, &[]);
    common::wait_for(
        "the front-end to catch up",
        Duration::from_secs(120),
        async || front_count(&f).await == 60_100 - 3,
    )
    .await;
    // And again while the agent runs.
    province_changes(&x, "10, 60001", "11, 12").await;
    until_equal(&f, &x, "the later changes", Duration::from_secs(60)).await;
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(f.rows(FRONT_ROWS).await, x.rows(EXCHANGE_ROWS).await);
    assert_eq!(front_count(&f).await, 60_100 - 5);
    assert_eq!(
        f.rows("SELECT title, cd_operation FROM dn_notice WHERE id = 10")
            .await,
        vec![vec![Some("notice 10 (rev)".into()), Some("U".into())]]
    );
    // Every row arrived flagged new for the business system.
    assert_eq!(
        f.scalar_i64("SELECT count(*) FROM dn_notice WHERE sync_flag <> 0")
            .await,
        0
    );
    let st = agent.status_json();
    assert_eq!(st["tables"][0]["direction"], "down", "{st}");
    eprintln!("killed with {at_kill} of 60000 rows at the front-end");
    x.drop().await;
    f.drop().await;
}

/// The department's table going up, beside the province's coming down.
const UP_FRONT_DDL: &str = "CREATE TABLE up_report (id int PRIMARY KEY, v varchar(100) NOT NULL, \
     updated_at datetime(6) NOT NULL)";
const UP_EXCHANGE_DDL: &str = "CREATE TABLE up_report (id int PRIMARY KEY, v text NOT NULL, \
     updated_at timestamp(6) NOT NULL, cd_operation varchar(1), cd_time timestamptz, \
     cd_batch varchar(32), cd_source varchar(40))";

#[tokio::test]
async fn one_table_up_and_one_down_in_one_agent() {
    let x = PgDb::new("updown").await;
    let f = MyDb::new("updown").await;
    x.exec(EXCHANGE_DDL).await;
    x.exec(UP_EXCHANGE_DDL).await;
    f.exec(FRONT_DDL).await;
    f.exec(UP_FRONT_DDL).await;
    province_inserts(&x, 1, 3000).await;
    f.exec(
        "INSERT INTO up_report SELECT seq, CONCAT('r', seq), UTC_TIMESTAMP(6) FROM seq_1_to_2000",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}{}\n[[table]]\nname = \"up\"\nsource = \"up_report\"\nschedule = \"every:1s\"\n\
         batch_size = 500\nwatermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n",
        header(&f.url, &x.url).replace("Asia/Shanghai", "UTC"),
        down_table("")
    ));
    let check = agent.ok(&["check"]);
    let line = |t: &str| {
        check
            .lines()
            .find(|l| l.starts_with(&format!("table {t}: OK")))
            .unwrap_or_else(|| panic!("no line of table {t}: {check}"))
            .to_owned()
    };
    assert!(
        line("dn").contains(".dn_notice (exchange database) -> ")
            && line("dn").contains(".dn_notice (front-end database), direction down"),
        "{check}"
    );
    assert!(!line("up").contains("direction down"), "{check}");
    let d = Daemon::start(&agent, &[]);
    // Both sides change while the agent runs.
    for round in 0..3 {
        province_changes(&x, &format!("{}", 100 + round), &format!("{}", 200 + round)).await;
        f.exec(&format!(
            "UPDATE up_report SET v = CONCAT(v, '+'), updated_at = UTC_TIMESTAMP(6) \
             WHERE id IN ({}, {})",
            300 + round,
            400 + round
        ))
        .await;
    }
    let up_front = "SELECT CAST(id AS char), v, DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f') \
                    FROM up_report ORDER BY id";
    let up_exchange = "SELECT id::text, v, to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS.US') \
                       FROM up_report ORDER BY up_report.id";
    common::wait_for(
        "both directions to settle",
        Duration::from_secs(90),
        async || {
            f.rows(FRONT_ROWS).await == x.rows(EXCHANGE_ROWS).await
                && f.rows(up_front).await == x.rows(up_exchange).await
        },
    )
    .await;
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(front_count(&f).await, 3000 - 3);
    assert_eq!(x.scalar_i64("SELECT count(*) FROM up_report").await, 2000);
    // The up table's rows carry the agent's control columns; the down table's keep the
    // province's batch numbers.
    assert_eq!(
        x.scalar_i64("SELECT count(*) FROM up_report WHERE cd_source = '230000SCJGJ'")
            .await,
        2000
    );
    assert_eq!(
        f.scalar_i64("SELECT count(*) FROM dn_notice WHERE cd_batch NOT LIKE '20260101%'")
            .await,
        0
    );
    let st = agent.status_json();
    let dirs: Vec<(String, String)> = st["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| (t["table"].to_string(), t["direction"].to_string()))
        .collect();
    assert_eq!(
        dirs,
        vec![
            ("\"dn\"".into(), "\"down\"".into()),
            ("\"up\"".into(), "\"up\"".into())
        ]
    );
    let text = agent.ok(&["status"]);
    assert!(text.contains("DIR"), "{text}");
    x.drop().await;
    f.drop().await;
}

#[tokio::test]
async fn a_full_resync_of_a_down_table_makes_the_front_end_equal_again() {
    let x = PgDb::new("downrs").await;
    let f = MyDb::new("downrs").await;
    x.exec(EXCHANGE_DDL).await;
    f.exec(FRONT_DDL).await;
    province_inserts(&x, 1, 2000).await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&f.url, &x.url).replace("Asia/Shanghai", "UTC"),
        down_table("")
    ));
    agent.ok(&["once"]);
    assert_eq!(f.rows(FRONT_ROWS).await, x.rows(EXCHANGE_ROWS).await);
    // The province removes rows outright (no D row), and the front-end loses some.
    x.exec("DELETE FROM dn_notice WHERE id BETWEEN 100 AND 109")
        .await;
    f.exec("DELETE FROM dn_notice WHERE id BETWEEN 500 AND 504")
        .await;
    agent.ok(&["once"]);
    assert_ne!(f.rows(FRONT_ROWS).await, x.rows(EXCHANGE_ROWS).await);
    let out = agent.ok(&["resync", "--table", "dn"]);
    assert!(out.contains("dn"), "{out}");
    assert_eq!(f.rows(FRONT_ROWS).await, x.rows(EXCHANGE_ROWS).await);
    assert_eq!(front_count(&f).await, 1990);
    x.drop().await;
    f.drop().await;
}

#[tokio::test]
async fn error_rows_the_province_writes_into_the_front_end_reach_rejects_list() {
    let x = PgDb::new("fbsrc").await;
    let f = MyDb::new("fbsrc").await;
    f.exec(UP_FRONT_DDL).await;
    // The province pushes its error data into the department's own front-end database.
    f.exec(
        "CREATE TABLE dn_up_report_error (id int, error_remark varchar(500), \
         cd_time datetime(6), cd_batch varchar(32))",
    )
    .await;
    x.exec(UP_EXCHANGE_DDL).await;
    f.exec(
        "INSERT INTO up_report VALUES (1, 'a', '2026-11-01 00:00:01'), \
         (2, 'b', '2026-11-01 00:00:02'), (3, 'c', '2026-11-01 00:00:03')",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}\n[feedback]\nkind = \"error_table\"\ndatabase = \"source\"\n\n\
         [[table]]\nname = \"up\"\nsource = \"up_report\"\nfeedback_table = \"dn_up_report_error\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n",
        header(&f.url, &x.url)
    ));
    let out = agent.ok(&["check"]);
    assert!(
        out.contains("error table") && out.contains("dn_up_report_error of up OK"),
        "{out}"
    );
    let out = agent.ok(&["once"]);
    assert!(out.contains("up: 3 row(s) sent"), "{out}");
    assert!(common::rejects(&agent, &[]).is_empty());
    f.exec(
        "INSERT INTO dn_up_report_error VALUES (2, '名称不规范', '2026-11-02 08:00:00', '2026110200001')",
    )
    .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("feedback: 1 rejection(s) read"), "{out}");
    let list = common::rejects(&agent, &[]);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["key"], "2", "{list:?}");
    assert_eq!(list[0]["origin"], "province", "{list:?}");
    assert_eq!(list[0]["reasons"][0], "名称不规范", "{list:?}");
    assert_eq!(list[0]["batch_id"], "2026110200001", "{list:?}");
    // The exchange database holds no error table: nothing was looked for there.
    assert_eq!(
        x.scalar_i64(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'dn_up_report_error'"
        )
        .await,
        0
    );
    x.drop().await;
    f.drop().await;
}

#[tokio::test]
async fn down_tables_keep_tombstones_and_take_flagged_rows_setting_the_flag_at_the_exchange() {
    let x = PgDb::new("downmodes").await;
    let f = MyDb::new("downmodes").await;
    x.exec(EXCHANGE_DDL).await;
    f.exec(FRONT_DDL).await;
    // A flagged table: the province marks new rows 0; the agent sets 1 once they arrived.
    x.exec(
        "CREATE TABLE dn_code (code varchar(10) PRIMARY KEY, label text NOT NULL, \
         sync_sign int NOT NULL DEFAULT 0); \
         INSERT INTO dn_code SELECT 'C' || g, 'label ' || g, 0 FROM generate_series(1, 30) g",
    )
    .await;
    f.exec(
        "CREATE TABLE dn_code (code varchar(10) PRIMARY KEY, label varchar(50) NOT NULL, \
         sync_flag int NOT NULL DEFAULT 1)",
    )
    .await;
    province_inserts(&x, 1, 50).await;
    let agent = Agent::new(&format!(
        "{}{}\n[[table]]\nname = \"codes\"\nsource = \"dn_code\"\ndirection = \"down\"\n\
         watermark = {{ kind = \"flag\", column = \"sync_sign\" }}\n\
         arrival_flag = {{ column = \"sync_flag\", value = 0 }}\n",
        header(&f.url, &x.url).replace("Asia/Shanghai", "UTC"),
        down_table("deletes = \"tombstone\"")
    ));
    agent.ok(&["once"]);
    province_changes(&x, "1", "2, 3").await;
    // The business system took every row it was shown.
    f.exec("UPDATE dn_notice SET sync_flag = 1; UPDATE dn_code SET sync_flag = 1")
        .await;
    x.exec("UPDATE dn_code SET label = 'relabelled', sync_sign = 0 WHERE code = 'C7'")
        .await;
    agent.ok(&["once"]);
    // Withdrawn rows stay at the front-end marked D, flagged for the business system.
    assert_eq!(
        f.rows(
            "SELECT CAST(id AS char), cd_operation, CAST(sync_flag AS char) FROM dn_notice \
             WHERE sync_flag = 0 ORDER BY id"
        )
        .await,
        vec![
            vec![Some("1".into()), Some("U".into()), Some("0".into())],
            vec![Some("2".into()), Some("D".into()), Some("0".into())],
            vec![Some("3".into()), Some("D".into()), Some("0".into())],
        ]
    );
    assert_eq!(front_count(&f).await, 50);
    // Every flagged row arrived, and the exchange's flags say so.
    assert_eq!(
        x.scalar_i64("SELECT count(*) FROM dn_code WHERE sync_sign = 1")
            .await,
        30
    );
    assert_eq!(f.scalar_i64("SELECT count(*) FROM dn_code").await, 30);
    assert_eq!(
        f.rows("SELECT label, CAST(sync_flag AS char) FROM dn_code WHERE sync_flag = 0")
            .await,
        vec![vec![Some("relabelled".into()), Some("0".into())]]
    );
    x.drop().await;
    f.drop().await;
}

#[tokio::test]
async fn pulled_from_an_http_endpoint_with_cut_pages_nothing_is_lost_or_doubled() {
    let f = MyDb::new("pull").await;
    f.exec(FRONT_DDL).await;
    let sim = crate::http::Sim::start(
        "[[down]]\ntable = \"dn_notice\"\nrows = 400\nupdates = 50\npage = 40\ncut_every = 3\n",
    );
    let agent = Agent::new(&format!(
        "[agent]\nid = \"230000-PULL\"\nstate_dir = \"{{dir}}/state\"\ntimezone = \"UTC\"\n\
         retry_max = \"1s\"\n[source]\nurl = \"{}\"\n\
         [exchange]\nkind = \"http\"\nurl = \"{}/exchange/{{table}}\"\n{}\
         pull = {{ url = \"{}/down/{{table}}\" }}\n",
        f.url,
        sim.base,
        down_table(""),
        sim.base
    ));
    let check = agent.ok(&["check"]);
    assert!(check.contains("table dn: OK"), "{check}");
    let d = Daemon::start(&agent, &[]);
    let want: Vec<Vec<Option<String>>> = (1..=400)
        .map(|id| {
            let rev = id <= 50;
            let n = if rev { 400 + id } else { id };
            vec![
                Some(id.to_string()),
                Some(if rev {
                    format!("notice {id} (rev)")
                } else {
                    format!("notice {id}")
                }),
                Some(format!("{id}.{}", if rev { "75" } else { "50" })),
                Some(if rev { "U" } else { "I" }.to_string()),
                Some(format!("2026-01-01 00:{:02}:{:02}.000000", n / 60, n % 60)),
                Some(format!("20260101{n:05}")),
            ]
        })
        .collect();
    let start = std::time::Instant::now();
    while f.rows(FRONT_ROWS).await != want {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the front-end holds {} rows; the daemon's log ends:\n{}",
            front_count(&f).await,
            d.log()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
    let cut = sim
        .requests()
        .await
        .iter()
        .filter(|(_, o, _)| o == "page cut")
        .count();
    assert!(cut >= 3, "only {cut} page(s) were cut");
    assert!(
        log.contains("reading the province's records"),
        "a cut page is an outage, tried again: {log}"
    );
    assert_eq!(
        f.scalar_i64("SELECT count(*) FROM dn_notice WHERE sync_flag <> 0")
            .await,
        0
    );
    f.drop().await;
}

#[tokio::test]
async fn a_pulled_table_killed_mid_way_resumes_from_its_committed_cursor() {
    let f = MyDb::new("pullkill").await;
    f.exec(FRONT_DDL).await;
    let sim = crate::http::Sim::start(
        "[[down]]\ntable = \"dn_notice\"\nrows = 20000\nupdates = 100\npage = 100\n",
    );
    let agent = Agent::new(&format!(
        "[agent]\nid = \"230000-PULL\"\nstate_dir = \"{{dir}}/state\"\ntimezone = \"UTC\"\n\
         [source]\nurl = \"{}\"\n[exchange]\nkind = \"http\"\nurl = \"{}/exchange/{{table}}\"\n{}\
         pull = {{ url = \"{}/down/{{table}}\" }}\n",
        f.url,
        sim.base,
        down_table(""),
        sim.base
    ));
    let d = Daemon::start(&agent, &[]);
    common::wait_for("the first rows", Duration::from_secs(60), async || {
        front_count(&f).await > 0
    })
    .await;
    d.kill();
    let at_kill = front_count(&f).await;
    assert!(at_kill < 20_000, "the kill fell after every row arrived");
    let d = Daemon::start(&agent, &[]);
    let done = "SELECT count(*) FROM dn_notice WHERE id > 100 OR title LIKE '%(rev)'";
    common::wait_for("every record", Duration::from_secs(120), async || {
        f.scalar_i64(done).await == 20_000
    })
    .await;
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(front_count(&f).await, 20_000);
    // Only the page in flight when the agent died was asked for again: every other cursor
    // was committed once its page was written. (Empty pages after the last are not counted.)
    let pages = sim
        .requests()
        .await
        .iter()
        .filter(|(_, o, after)| {
            o == "page" && after.as_deref().and_then(|a| a.parse::<u64>().ok()) < Some(20_100)
        })
        .count();
    assert!(
        (201..=202).contains(&pages),
        "{pages} pages served for 201 pages of records"
    );
    eprintln!("killed with {at_kill} of 20000 rows at the front-end; {pages} pages served");
    f.drop().await;
}
