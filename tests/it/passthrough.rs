//! PostgreSQL to PostgreSQL, column for column: rows are read as binary `COPY` tuples and
//! written to the exchange as they came, decoding only the key, the change time and what
//! the rules look at. What must still hold: every value arrives exactly, a row the exchange
//! refuses or a rule rejects is quarantined with all of its values, rows re-read unchanged
//! in the lookback window are recognised by digest, and a table that does not qualify is
//! exchanged the ordinary way.

use crate::common::{Agent, PgDb, header, rejects};

fn table(body: &str) -> String {
    format!("\n[[table]]\n{body}\n")
}

/// A table of every base type the agent copies in binary form (and `extra` columns).
fn ddl(name: &str, extra: &str) -> String {
    format!(
        "CREATE TABLE {name} (
            id bigint PRIMARY KEY,
            small smallint, whole integer, money numeric(16,4), huge numeric,
            name varchar(100), code char(6), note text, flag boolean, raw bytea,
            day date, at_time time, stamp timestamp(6), instant timestamptz,
            ratio real, measure double precision,
            updated_at timestamp(6) NOT NULL{extra})"
    )
}

const ROWS: &str = "INSERT INTO {t} SELECT g,
        (g % 30000)::int2, g * 7, (g * 1.2345)::numeric(16,4),
        CASE WHEN g % 5 = 0 THEN NULL ELSE ('1234567890123456789012345.' || g)::numeric END,
        '哈尔滨市第' || g || '号“食品”店', lpad((g % 1000)::text, 6, '0'),
        CASE WHEN g % 3 = 0 THEN NULL ELSE E'tab\\there\\nand \\\\ ' || repeat('长', g % 50) END,
        g % 2 = 0, decode(lpad(to_hex(g), 8, '0'), 'hex'),
        date '1999-12-31' + g, time '23:59:59.999999' - g * interval '1 second',
        timestamp '1970-01-01 00:00:00.000001' + g * interval '1 day 1 microsecond',
        timestamptz '2026-11-02 01:30:00.123456+00' - g * interval '1 hour',
        g / 3.0, g * 1.000000001,
        now()::timestamp - interval '1 minute' + g * interval '1 microsecond'
    FROM generate_series(1, {n}) g";

fn rows(t: &str, n: u32) -> String {
    ROWS.replace("{t}", t).replace("{n}", &n.to_string())
}

/// Rows of one database that the other does not hold, both ways (0 when equal).
async fn differences(src: &PgDb, tgt: &PgDb, t: &str) -> usize {
    let text = format!("SELECT t::text FROM {t} t ORDER BY id");
    let a = src.rows(&text).await;
    let b = tgt.rows(&text).await;
    assert_eq!(a.len(), b.len(), "row counts differ");
    a.iter().zip(&b).filter(|(x, y)| x != y).count()
}

#[tokio::test]
async fn rows_pass_through_exactly_and_are_recognised_when_read_again() {
    let src = PgDb::new("pass").await;
    let tgt = PgDb::new("pass").await;
    src.exec(&ddl("t", "")).await;
    tgt.exec(&ddl("t", "")).await;
    src.exec(&rows("t", 2500)).await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&src.url, &tgt.url),
        table(
            "source = \"t\"\nbatch_size = 400\nbatch_bytes = 65536\n\
             watermark = { kind = \"timestamp\", column = \"updated_at\", lookback = \"10m\" }"
        )
    ));
    let check = agent.ok(&["check"]);
    assert!(check.contains("rows are copied as they are"), "{check}");
    let (out, log) = agent.ok_logged(&["once"], "frontdb_agent=debug");
    assert!(out.contains("t: 2500 row(s) sent"), "{out}");
    // 400 rows a batch, fewer where 64 KiB of rows came first.
    let batches = log.matches("batch delivered").count();
    assert!(batches >= 7, "{batches} batches\n{out}");
    assert_eq!(differences(&src, &tgt, "t").await, 0);

    // Rewritten as they were, by a later transaction, the rows are read again within the
    // lookback (a re-read asks PostgreSQL only for rows of transactions the last could not
    // see): every row is recognised by its digest, so the digests of rows read as tuples are
    // those of their whole values.
    src.exec("UPDATE t SET updated_at = updated_at").await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("t: 0 row(s) sent"), "{out}");
    assert!(out.contains("2500 unchanged"), "{out}");

    // A row changed in a column the agent does not look at, its change time kept (a late
    // commit): its digest, over every value, tells it changed.
    src.exec("UPDATE t SET note = 'late 迟', raw = '\\x00' WHERE id = 5")
        .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("t: 1 row(s) sent"), "{out}");
    assert_eq!(differences(&src, &tgt, "t").await, 0);

    // Changed rows arrive; the rest stays recognised.
    src.exec(
        "UPDATE t SET note = 'changed 改', money = -1.5, updated_at = now()::timestamp \
         WHERE id % 100 = 0",
    )
    .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("t: 25 row(s) sent"), "{out}");
    assert_eq!(differences(&src, &tgt, "t").await, 0);
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn a_row_refused_or_rejected_is_quarantined_with_all_its_values() {
    let src = PgDb::new("pass_bad").await;
    let tgt = PgDb::new("pass_bad").await;
    src.exec(&ddl("t", "")).await;
    // The exchange refuses negative amounts, which the front-end database allows.
    tgt.exec(&ddl(
        "t",
        ", CONSTRAINT money_not_negative CHECK (money >= 0)",
    ))
    .await;
    src.exec(&rows("t", 300)).await;
    src.exec("UPDATE t SET money = -money WHERE id IN (7, 150, 299)")
        .await;
    src.exec("UPDATE t SET code = NULL WHERE id IN (11, 12)")
        .await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&src.url, &tgt.url),
        table(
            "source = \"t\"\nbatch_size = 100\n\
             watermark = { kind = \"timestamp\", column = \"updated_at\" }\n\
             rules = [ { column = \"code\", check = \"required\" } ]"
        )
    ));
    let check = agent.ok(&["check"]);
    assert!(check.contains("rows are copied as they are"), "{check}");
    let out = agent.ok(&["once"]);
    assert!(out.contains("t: 295 row(s) sent"), "{out}");
    assert!(out.contains("5 quarantined"), "{out}");
    assert_eq!(tgt.scalar_i64("SELECT count(*) FROM t").await, 295);
    assert_eq!(
        tgt.scalar_i64("SELECT count(*) FROM t WHERE id IN (7, 11, 12, 150, 299)")
            .await,
        0
    );
    let list = rejects(&agent, &[]);
    assert_eq!(list.len(), 5, "{list:?}");
    for r in &list {
        let key = r["key"].as_str().expect("key").to_owned();
        let shown = r.to_string();
        let row = &r["row"];
        // Every value of the row is there, not only the ones the agent looked at.
        let expect = src
            .rows(&format!(
                "SELECT name, note, stamp::text, money::text FROM t WHERE id = {key}"
            ))
            .await;
        let [name, note, _, money] = &expect[0][..] else {
            panic!("row {key}")
        };
        assert_eq!(row["name"].as_str(), name.as_deref(), "{shown}");
        assert_eq!(row["note"].as_str(), note.as_deref(), "{shown}");
        assert_eq!(row["money"].as_str(), money.as_deref(), "{shown}");
        assert!(row["stamp"].is_string(), "{shown}");
        let reasons = r["reasons"].to_string();
        if ["11", "12"].contains(&key.as_str()) {
            assert!(reasons.contains("required"), "{shown}");
        } else {
            assert!(reasons.contains("money_not_negative"), "{shown}");
        }
    }
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn a_table_whose_columns_differ_is_exchanged_value_by_value() {
    let src = PgDb::new("pass_not").await;
    let tgt = PgDb::new("pass_not").await;
    src.exec(&ddl("t", "")).await;
    // Wider text and a different numeric at the exchange: converted, not copied as they are.
    tgt.exec(
        &ddl("t", "")
            .replace("name varchar(100)", "name text")
            .replace("money numeric(16,4)", "money numeric(20,6)"),
    )
    .await;
    src.exec(&rows("t", 500)).await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&src.url, &tgt.url),
        table(
            "source = \"t\"\nbatch_size = 100\n\
             watermark = { kind = \"timestamp\", column = \"updated_at\" }"
        )
    ));
    let check = agent.ok(&["check"]);
    assert!(!check.contains("rows are copied as they are"), "{check}");
    let out = agent.ok(&["once"]);
    assert!(out.contains("t: 500 row(s) sent"), "{out}");
    let same = "SELECT count(*) FROM t WHERE money IS NULL OR money < 0";
    assert_eq!(tgt.scalar_i64(same).await, 0);
    let text = "SELECT id::text, name, note, money::numeric(16,4)::text, stamp::text, raw::text \
                FROM t ORDER BY id";
    assert_eq!(src.rows(text).await, tgt.rows(text).await);
    src.drop().await;
    tgt.drop().await;
}
