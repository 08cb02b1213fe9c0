//! The lookback re-read of a PostgreSQL table: it asks the source, at or before the
//! watermark, only for rows written by transactions that the last complete re-read could not
//! see, and still finds every late commit; a view, or a record whose transaction ids do not
//! follow on, is re-read whole.

use std::time::Duration;

use crate::common::{self, Agent, PgDb, header, sqlite_exec, sqlite_rows};

const DDL: &str = "CREATE TABLE ev (id int PRIMARY KEY, v text, updated_at timestamp(6) NOT NULL)";

/// A test configuration: times in UTC, the open-transaction guard off (the lookback alone
/// catches late commits here), a one-minute lookback on `updated_at`.
fn config(src: &PgDb, tgt: &PgDb, source: &str) -> String {
    format!(
        "{}\n[[table]]\nname = \"ev\"\nsource = \"{source}\"\ntarget = \"ev\"\nkey = [\"id\"]\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\", lookback = \"1m\" }}\n",
        header(&src.url, &tgt.url)
            .replace("Asia/Shanghai", "UTC")
            .replace(
                &format!("url = \"{}\"\n", src.url),
                &format!("url = \"{}\"\ntransaction_guard = \"0s\"\n", src.url)
            )
    )
}

async fn same(src: &PgDb, tgt: &PgDb) {
    let q = "SELECT id::text, v, updated_at::text FROM ev ORDER BY id";
    assert_eq!(tgt.rows(q).await, src.rows(q).await);
}

/// 100 rows, then 10 of them changed, then 5 new ones, each followed by a cycle; returns
/// what `check` and the last two cycles printed.
async fn three_cycles(source: &str) -> (String, String, String) {
    let src = PgDb::new("reread").await;
    let tgt = PgDb::new("reread").await;
    src.exec(DDL).await;
    src.exec("CREATE VIEW ev_view AS SELECT * FROM ev").await;
    tgt.exec(DDL).await;
    src.exec("INSERT INTO ev SELECT g, 'row ' || g, localtimestamp FROM generate_series(1, 100) g")
        .await;
    let agent = Agent::new(&config(&src, &tgt, source));
    let check = agent.ok(&["check"]);
    let out = agent.ok(&["once"]);
    assert!(out.contains("ev: 100 row(s) sent"), "{out}");
    src.exec("UPDATE ev SET v = 'changed', updated_at = localtimestamp WHERE id % 10 = 0")
        .await;
    let changed = agent.ok(&["once"]);
    assert!(changed.contains("ev: 10 row(s) sent"), "{changed}");
    src.exec(
        "INSERT INTO ev SELECT g, 'new ' || g, localtimestamp FROM generate_series(101, 105) g",
    )
    .await;
    let added = agent.ok(&["once"]);
    assert!(added.contains("ev: 5 row(s) sent"), "{added}");
    same(&src, &tgt).await;
    src.drop().await;
    tgt.drop().await;
    (check, changed, added)
}

#[tokio::test]
async fn a_postgres_table_is_not_sent_again_the_rows_it_already_exchanged() {
    // Transaction ids are the whole server's: a write transaction of another test, open
    // while a cycle records them, makes the next re-read read more (never less) than the
    // exact counts asserted here.
    let _alone = common::alone_on_the_server().await;
    let (check, changed, added) = three_cycles("ev").await;
    assert!(
        check.contains("late commits: the lookback window is asked only for rows of transactions"),
        "{check}"
    );
    // Every row in the one-minute window was exchanged by a transaction the cycle before
    // saw end: none is read again.
    assert!(changed.contains(" 0 unchanged"), "{changed}");
    assert!(added.contains(" 0 unchanged"), "{added}");
}

#[tokio::test]
async fn a_view_has_no_transaction_ids_and_its_window_is_read_whole() {
    // The control: the same cycles read the whole window again and skip it by digest.
    let (check, changed, added) = three_cycles("ev_view").await;
    assert!(
        check.contains("late commits: the lookback window is re-read whole"),
        "{check}"
    );
    assert!(changed.contains(" 90 unchanged"), "{changed}");
    assert!(added.contains(" 100 unchanged"), "{added}");
}

#[tokio::test]
async fn late_commits_arrive_whether_their_transaction_wrote_before_or_after_a_cycle() {
    // Transaction ids are the whole server's: a write transaction of another test, open
    // while a cycle records them, makes the next re-read read more (never less) than the
    // exact counts asserted here.
    let _alone = common::alone_on_the_server().await;
    let src = PgDb::new("rereadlate").await;
    let tgt = PgDb::new("rereadlate").await;
    src.exec(DDL).await;
    tgt.exec(DDL).await;
    src.exec("INSERT INTO ev VALUES (1, 'first', localtimestamp)")
        .await;
    let agent = Agent::new(&config(&src, &tgt, "ev"));
    assert!(agent.ok(&["once"]).contains("ev: 1 row(s) sent"));
    // One transaction writes before the next cycle, with a time three seconds back; another
    // begins before it and writes only after it, stamped with its own start (a transaction
    // is given its id when it first writes, so that id is newer than the cycle's).
    let mut early = src.pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO ev VALUES (2, 'wrote before', localtimestamp - interval '3 seconds')")
        .execute(&mut *early)
        .await
        .expect("insert");
    let mut idle = src.pool.begin().await.expect("begin");
    sqlx::query("SELECT localtimestamp")
        .execute(&mut *idle)
        .await
        .expect("select");
    src.exec("INSERT INTO ev VALUES (3, 'quick', localtimestamp)")
        .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("ev: 1 row(s) sent"), "{out}");
    sqlx::query("INSERT INTO ev VALUES (4, 'wrote after', localtimestamp)")
        .execute(&mut *idle)
        .await
        .expect("insert");
    early.commit().await.expect("commit");
    idle.commit().await.expect("commit");
    let out = agent.ok(&["once"]);
    // Both late rows; and of the rows exchanged, only row 3 is read again: its transaction
    // ended after the oldest one still open at the cycle before began.
    assert!(out.contains("ev: 2 row(s) sent"), "{out}");
    assert!(out.contains(" 1 unchanged"), "{out}");
    same(&src, &tgt).await;
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn a_record_whose_transaction_ids_do_not_follow_on_makes_the_window_read_whole() {
    // Transaction ids are the whole server's: a write transaction of another test, open
    // while a cycle records them, makes the next re-read read more (never less) than the
    // exact counts asserted here.
    let _alone = common::alone_on_the_server().await;
    let src = PgDb::new("rereadids").await;
    let tgt = PgDb::new("rereadids").await;
    src.exec(DDL).await;
    tgt.exec(DDL).await;
    src.exec("INSERT INTO ev SELECT g, 'row ' || g, localtimestamp FROM generate_series(1, 20) g")
        .await;
    let agent = Agent::new(&config(&src, &tgt, "ev"));
    assert!(agent.ok(&["once"]).contains("ev: 20 row(s) sent"));
    let state = agent.dir.path().join("state/state.db");
    let recorded = sqlite_rows(&state, "SELECT reread FROM tables WHERE tbl = 'ev'").await;
    let text = recorded[0][0].clone().expect("a re-read recorded");
    let record: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(record["column"], "updated_at", "{text}");
    assert!(record["xmin"].as_u64().is_some_and(|x| x > 0), "{text}");
    // As after the database was restored into another cluster: ids far ahead of the server's.
    sqlite_exec(
        &state,
        "UPDATE tables SET reread = json_set(reread, '$.xmin', 1099511627776) WHERE tbl = 'ev'",
    )
    .await;
    src.exec("INSERT INTO ev VALUES (21, 'new', localtimestamp)")
        .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("ev: 1 row(s) sent"), "{out}");
    assert!(out.contains(" 20 unchanged"), "{out}");
    // That cycle recorded the server's ids again: the next one is narrowed.
    src.exec("INSERT INTO ev VALUES (22, 'new', localtimestamp)")
        .await;
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("ev: 1 row(s) sent") && out.contains(" 0 unchanged"),
        "{out}"
    );
    same(&src, &tgt).await;
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn a_late_commit_arrives_at_a_daemon_whose_rereads_are_narrowed() {
    let src = PgDb::new("rereadrt").await;
    let tgt = PgDb::new("rereadrt").await;
    src.exec(DDL).await;
    tgt.exec(DDL).await;
    src.exec("INSERT INTO ev VALUES (1, 'first', localtimestamp)")
        .await;
    // Polled every second with a ten-second lookback: the window is re-read every second,
    // between cycles that read only after the watermark.
    let agent = Agent::new(
        &config(&src, &tgt, "ev")
            .replace("lookback = \"1m\"", "lookback = \"10s\"")
            .replace(
                "key = [\"id\"]\n",
                "key = [\"id\"]\nschedule = \"realtime@1s\"\n",
            ),
    );
    let log = agent.dir.path().join("daemon.log");
    let child = agent
        .command()
        .env("FRONTDB_LOG", "frontdb_agent=debug")
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn run");
    let daemon = common::Daemon { child, log };
    let count = || async { tgt.scalar_i64("SELECT count(*) FROM ev").await };
    common::wait_for("row 1", Duration::from_secs(20), async || {
        count().await == 1
    })
    .await;
    let mut slow = src.pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO ev VALUES (2, 'late', localtimestamp - interval '3 seconds')")
        .execute(&mut *slow)
        .await
        .expect("insert");
    src.exec("INSERT INTO ev VALUES (3, 'quick', localtimestamp)")
        .await;
    common::wait_for("row 3", Duration::from_secs(20), async || {
        count().await == 2
    })
    .await;
    // Re-reads go on while the slow transaction stays open: two more of them (each logs how
    // it reads the lookback window) before it commits.
    let rereads = || daemon.log().matches("lookback window:").count();
    let before = rereads();
    common::wait_for(
        "two re-reads while the slow transaction is open",
        Duration::from_secs(20),
        async || rereads() >= before + 2,
    )
    .await;
    slow.commit().await.expect("commit");
    common::wait_for("the late row", Duration::from_secs(20), async || {
        count().await == 3
    })
    .await;
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("lookback window: only rows of transactions from"),
        "{log}"
    );
    same(&src, &tgt).await;
    src.drop().await;
    tgt.drop().await;
}
