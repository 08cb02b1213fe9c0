//! Batches of one table begin at the exchange while the batch before them commits, and
//! commit only after it. Where two consecutive batches meet on the same key, the exchange
//! must end exactly as if they had been written one after the other: the newer version
//! wins, and a delete that follows an insert leaves no row.

use crate::common::{Agent, PgDb, header};

fn table(body: &str) -> String {
    format!("\n[[table]]\n{body}\n")
}

/// Make every commit into `t` take a while (a deferred trigger sleeps for each row), so
/// that the next batch begins while it commits.
async fn slow_commits(db: &PgDb, t: &str) {
    db.exec(&format!(
        "CREATE FUNCTION slow_{t}() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(0.02); RETURN NULL; END $$; \
         CREATE CONSTRAINT TRIGGER slow_{t} AFTER INSERT OR UPDATE OR DELETE ON {t} \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_{t}()"
    ))
    .await;
}

/// A history table (the key repeats, one row per version) read one version per batch: every
/// batch meets the one before it on its key.
#[tokio::test]
async fn versions_of_one_key_in_consecutive_batches_end_as_the_newest() {
    let src = PgDb::new("order").await;
    let tgt = PgDb::new("order").await;
    // No unique key at the source: a key's versions are rows of their own.
    src.exec("CREATE TABLE h (id int NOT NULL, v text, updated_at timestamp(6) NOT NULL)")
        .await;
    tgt.exec("CREATE TABLE h (id int PRIMARY KEY, v text, updated_at timestamp(6) NOT NULL)")
        .await;
    slow_commits(&tgt, "h").await;
    // Ten keys, ten versions each, written in time order so that consecutive batches of
    // three rows hold the same keys over and over.
    src.exec(
        "INSERT INTO h SELECT k, 'version ' || n || ' of ' || k, \
         timestamp '2026-11-01 08:00:00' + (n * 10 + k) * interval '1 second' \
         FROM generate_series(1, 10) n, generate_series(1, 10) k",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&src.url, &tgt.url),
        table(
            "source = \"h\"\nkey = [\"id\"]\nbatch_size = 3\n\
             watermark = { kind = \"timestamp\", column = \"updated_at\", lookback = \"0s\" }"
        )
    ));
    let out = agent.ok(&["once"]);
    assert!(out.contains("h: 100 row(s) sent"), "{out}");
    assert!(out.contains("34 batch(es)"), "{out}");
    let got = tgt.rows("SELECT id::text, v FROM h ORDER BY id::int").await;
    let want: Vec<Vec<Option<String>>> = (1..=10)
        .map(|k| vec![Some(k.to_string()), Some(format!("version 10 of {k}"))])
        .collect();
    assert_eq!(got, want);
    src.drop().await;
    tgt.drop().await;
}

/// Control columns: a key inserted in one batch and deleted in the next is gone; deleted and
/// inserted again, it is there.
#[tokio::test]
async fn an_insert_and_a_delete_of_one_key_in_consecutive_batches_apply_in_order() {
    let src = PgDb::new("order_ctl").await;
    let tgt = PgDb::new("order_ctl").await;
    src.exec(
        "CREATE TABLE up (cd_id varchar(20) NOT NULL, name text, cd_operation varchar(1) NOT NULL, \
         cd_time timestamp(6) NOT NULL)",
    )
    .await;
    tgt.exec(
        "CREATE TABLE jg (cd_id varchar(20) PRIMARY KEY, name text, cd_operation varchar(1), \
         cd_time timestamp(6))",
    )
    .await;
    slow_commits(&tgt, "jg").await;
    // Keys A..T: each inserted, then deleted the next second; keys of the second half
    // inserted once more. One row a batch: the delete of a key follows its insert.
    src.exec(
        "INSERT INTO up SELECT chr(64 + k), '第' || n || '次', \
         CASE n WHEN 2 THEN 'D' ELSE 'I' END, \
         timestamp '2026-11-01 08:00:00' + (k * 10 + n) * interval '1 second' \
         FROM generate_series(1, 20) k, generate_series(1, 3) n \
         WHERE n < 3 OR k > 10",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&src.url, &tgt.url),
        table(
            "source = \"up\"\ntarget = \"jg\"\nkey = [\"cd_id\"]\nbatch_size = 1\n\
             watermark = { kind = \"control\", lookback = \"0s\" }"
        )
    ));
    let out = agent.ok(&["once"]);
    assert!(out.contains("up: 30 row(s) sent, 20 deleted"), "{out}");
    let got = tgt.rows("SELECT cd_id, name FROM jg ORDER BY cd_id").await;
    let want: Vec<Vec<Option<String>>> = (11..=20u8)
        .map(|k| vec![Some(char::from(64 + k).to_string()), Some("第3次".into())])
        .collect();
    assert_eq!(got, want);
    src.drop().await;
    tgt.drop().await;
}
