//! Transactions that stay open on the source longer than the lookback window: the
//! open-transaction guard holds the watermark behind them on PostgreSQL and MariaDB, and
//! without it such a row would be lost.

use std::time::Duration;

use crate::common::{Agent, MyDb, PgDb, header};

/// A transaction stamps its row when it starts and commits long after newer rows were
/// exchanged — longer than the lookback window. The open-transaction guard keeps the
/// watermark behind it, so the row still arrives; without the guard it would be lost.
async fn long_transaction(guard: &str) -> Vec<i64> {
    let src = PgDb::new("longtx").await;
    let tgt = PgDb::new("longtx").await;
    let ddl = "CREATE TABLE ev (id int PRIMARY KEY, v text, updated_at timestamp(6) NOT NULL)";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    let mut slow = src.pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO ev VALUES (1, 'long transaction', now() AT TIME ZONE 'UTC')")
        .execute(&mut *slow)
        .await
        .expect("insert");
    src.exec("INSERT INTO ev VALUES (2, 'quick', clock_timestamp() AT TIME ZONE 'UTC')")
        .await;
    let config = header(&src.url, &tgt.url)
        .replace("Asia/Shanghai", "UTC")
        .replace(
            &format!("[source]\nurl = \"{}\"\n", src.url),
            &format!(
                "[source]\nurl = \"{}\"\ntransaction_guard = \"{guard}\"\n",
                src.url
            ),
        );
    let agent = Agent::new(&format!(
        "{config}[[table]]\nsource = \"ev\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\", lookback = \"2s\" }}\n"
    ));
    assert!(agent.config_text().contains("transaction_guard"));
    assert!(agent.ok(&["once"]).contains("ev: 1 row(s) sent"));
    // Newer rows keep arriving and are exchanged while the transaction stays open, for longer
    // than the lookback window (2 s): holding it open is the scenario, not a wait.
    tokio::time::sleep(Duration::from_secs(3)).await;
    src.exec("INSERT INTO ev VALUES (3, 'quick', clock_timestamp() AT TIME ZONE 'UTC')")
        .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("ev: 1 row(s) sent"), "{out}");
    slow.commit().await.expect("commit");
    agent.ok(&["once"]);
    let ids: Vec<i64> = tgt
        .rows("SELECT id::text FROM ev ORDER BY ev.id")
        .await
        .into_iter()
        .filter_map(|r| r[0].as_deref().and_then(|s| s.parse().ok()))
        .collect();
    src.drop().await;
    tgt.drop().await;
    ids
}

#[tokio::test]
async fn a_transaction_open_longer_than_the_lookback_still_arrives() {
    assert_eq!(long_transaction("10m").await, vec![1, 2, 3]);
}

#[tokio::test]
async fn without_the_transaction_guard_that_row_would_be_lost() {
    // The negative control: it shows the test above can fail.
    assert_eq!(long_transaction("0s").await, vec![2, 3]);
}

/// The same sent down: the province's transaction stays open at the exchange database, which
/// a `down` table is read from; `[exchange] transaction_guard` holds that watermark back.
async fn long_province_transaction(guard: &str) -> Vec<i64> {
    let front = PgDb::new("longtxdn").await;
    let province = PgDb::new("longtxdn").await;
    let ddl = "CREATE TABLE dn_ev (id int PRIMARY KEY, v text, updated_at timestamp(6) NOT NULL)";
    front.exec(ddl).await;
    province.exec(ddl).await;
    let mut slow = province.pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO dn_ev VALUES (1, 'long transaction', now() AT TIME ZONE 'UTC')")
        .execute(&mut *slow)
        .await
        .expect("insert");
    province
        .exec("INSERT INTO dn_ev VALUES (2, 'quick', clock_timestamp() AT TIME ZONE 'UTC')")
        .await;
    let config = format!(
        "{}transaction_guard = \"{guard}\"\n",
        header(&front.url, &province.url).replace("Asia/Shanghai", "UTC")
    );
    let agent = Agent::new(&format!(
        "{config}[[table]]\nsource = \"dn_ev\"\ndirection = \"down\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\", lookback = \"2s\" }}\n"
    ));
    assert!(agent.ok(&["once"]).contains("dn_ev: 1 row(s) sent"));
    // Newer rows arrive while the province's transaction stays open longer than the lookback.
    tokio::time::sleep(Duration::from_secs(3)).await;
    province
        .exec("INSERT INTO dn_ev VALUES (3, 'quick', clock_timestamp() AT TIME ZONE 'UTC')")
        .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("dn_ev: 1 row(s) sent"), "{out}");
    slow.commit().await.expect("commit");
    agent.ok(&["once"]);
    let ids: Vec<i64> = front
        .rows("SELECT id::text FROM dn_ev ORDER BY id")
        .await
        .into_iter()
        .filter_map(|r| r[0].as_deref().and_then(|s| s.parse().ok()))
        .collect();
    front.drop().await;
    province.drop().await;
    ids
}

#[tokio::test]
async fn a_province_transaction_open_longer_than_the_lookback_still_arrives_down() {
    assert_eq!(long_province_transaction("10m").await, vec![1, 2, 3]);
    // The negative control: without the exchange's guard the row is lost.
    assert_eq!(long_province_transaction("0s").await, vec![2, 3]);
}

#[tokio::test]
async fn a_long_transaction_on_mariadb_holds_the_watermark_too() {
    let src = MyDb::new("longtx").await;
    let tgt = MyDb::new("longtx").await;
    let ddl = "CREATE TABLE ev (id int PRIMARY KEY, v text, updated_at datetime(6) NOT NULL)";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    let mut slow = src.pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO ev VALUES (1, 'long transaction', UTC_TIMESTAMP(6))")
        .execute(&mut *slow)
        .await
        .expect("insert");
    src.exec("INSERT INTO ev VALUES (2, 'quick', UTC_TIMESTAMP(6))")
        .await;
    let agent = Agent::new(&format!(
        "{}[[table]]\nsource = \"ev\"\nwatermark = {{ kind = \"timestamp\", column = \"updated_at\", lookback = \"2s\" }}\n",
        header(&src.url, &tgt.url).replace("Asia/Shanghai", "UTC")
    ));
    assert!(agent.ok(&["once"]).contains("ev: 1 row(s) sent"));
    // The transaction stays open for longer than the lookback window (2 s): the scenario.
    tokio::time::sleep(Duration::from_secs(3)).await;
    src.exec("INSERT INTO ev VALUES (3, 'quick', UTC_TIMESTAMP(6))")
        .await;
    assert!(agent.ok(&["once"]).contains("ev: 1 row(s) sent"));
    slow.commit().await.expect("commit");
    let out = agent.ok(&["once"]);
    assert!(out.contains("ev: 1 row(s) sent"), "{out}");
    assert_eq!(tgt.scalar_i64("SELECT COUNT(*) FROM ev").await, 3);
    src.drop().await;
    tgt.drop().await;
}
