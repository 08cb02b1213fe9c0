//! The `odbc://` engine through Debian's real ODBC drivers (`odbc-postgresql`,
//! `odbc-mariadb`, under unixODBC) against the local PostgreSQL and MariaDB: every type
//! exact both ways, upserts where the newer row wins, control-column deletes, a row refused
//! alone, a transaction that commits late, a kill -9 in the middle of an exchange, and the
//! Chinese text of a database that is not UTF-8.
//! Built only with `--features odbc` (scripts/test.sh runs them as a step of their own):
//!
//! ```text
//! cargo test --features odbc --test it odbc_live::
//! ```
//!
//! Each test makes its own databases; the same database is reached natively (to set it up
//! and to check it) and through ODBC (what the agent under test uses).

use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime};
use frontdb_agent::db::dialect::{Dialect, Select};
use frontdb_agent::db::{Db, ErrorClass};
use frontdb_agent::ident::TableName;
use frontdb_agent::value::Value;

use crate::common::{self, Agent, Daemon, MyDb, PgDb, header};

/// The ODBC connection string of a test database on the local PostgreSQL.
fn pg_odbc(db: &PgDb) -> String {
    format!(
        "odbc:Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port=5432;Database={};Uid=postgres",
        db.name
    )
}

/// The ODBC connection string of a test database on the local MariaDB.
fn my_odbc(db: &MyDb) -> String {
    format!(
        "odbc:Driver={{MariaDB Unicode}};Server=127.0.0.1;Port=3306;Database={};User=root;Password=",
        db.name
    )
}

const PG_TYPED: &str = "CREATE TABLE t (id int PRIMARY KEY, \"名称\" varchar(50), \
     amount numeric(14,4), note text, raw bytea, day date, flag boolean, ratio float8, \
     \"UpdatedAt\" timestamp(6) NOT NULL, stamped timestamptz(6))";
const MY_TYPED: &str = "CREATE TABLE t (id int PRIMARY KEY, `名称` varchar(50), \
     amount decimal(14,4), note longtext, raw longblob, day date, flag boolean, ratio double, \
     `UpdatedAt` datetime(6) NOT NULL, stamped timestamp(6) NULL)";

/// Rows of the typed table: Chinese text and names, NULLs, a CLOB of 60,000 characters,
/// bytes with NUL and 0xFF, decimals of every scale, microseconds, a float's last digit.
fn typed_rows(n: i64) -> Vec<Vec<Value>> {
    let day = NaiveDate::from_ymd_opt(2026, 11, 1).expect("date");
    let at = NaiveDateTime::parse_from_str("2026-11-01 09:00:00.123456", "%Y-%m-%d %H:%M:%S%.f")
        .expect("time");
    (1..=n)
        .map(|i| {
            vec![
                Value::Int(i),
                if i % 7 == 0 {
                    Value::Null
                } else {
                    Value::Text(format!("哈尔滨市某某公司 {i} 號"))
                },
                Value::Decimal(format!(
                    "{}{}.{:04}",
                    if i % 3 == 0 { "-" } else { "" },
                    i * 3,
                    i % 10_000
                )),
                if i % 250 == 0 {
                    Value::Text("长文本".repeat(20_000))
                } else {
                    Value::Text(format!("note {i}"))
                },
                if i % 5 == 0 {
                    Value::Null
                } else if i % 250 == 1 {
                    Value::Bytes((0..=255u8).cycle().take(100_000).collect())
                } else {
                    Value::Bytes(vec![(i % 256) as u8, 0, 255, 7])
                },
                Value::Date(day + chrono::Days::new((i % 400) as u64)),
                Value::Bool(i % 2 == 0),
                Value::Float(0.1 + i as f64 / 3.0),
                Value::Timestamp(at + chrono::Duration::microseconds(i * 1_001)),
                if i % 4 == 0 {
                    Value::Null
                } else {
                    Value::TimestampTz((at + chrono::Duration::microseconds(i * 7)).and_utc())
                },
            ]
        })
        .collect()
}

/// Connect to a database through the library, as the agent does.
async fn connect(url: &str) -> Db {
    let text = header(url, "postgres://x@127.0.0.1:5432/x").replace("{dir}", "/tmp")
        + "\n[[table]]\nsource = \"t\"\nwatermark = { kind = \"key\", column = \"id\" }\n";
    let cfg = frontdb_agent::config::load_str(&text, std::path::Path::new("/tmp/odbc.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    Db::connect(&cfg.source, "source", false)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn exec(db: &Db, sql: &str, rows: &[Vec<Value>]) {
    let rows = if rows.is_empty() { &[vec![]][..] } else { rows };
    db.exec_many(sql, rows)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Every row of table `t`, ordered by its first column, read as the agent reads it.
async fn all_rows(db: &Db, t: &str) -> Vec<Vec<Value>> {
    let name = TableName::parse(t).expect("table");
    let schema = db
        .introspect(&name)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no table {t}"));
    let sql = db.dialect().select(&Select {
        table: &schema.name,
        columns: &schema.columns,
        conds: vec![],
        order: &schema.columns[..1],
        limit: None,
    });
    let (rows, _) = db
        .fetch(&sql, &schema.columns, usize::MAX)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    rows.into_iter()
        .map(|r| {
            assert!(r.bad.is_none(), "{:?}", r.bad);
            r.values
        })
        .collect()
}

/// MySQL's `boolean` is a `tinyint`: a boolean reads back as 0 or 1 there.
fn norm(v: &Value) -> Value {
    match v {
        Value::Bool(b) => Value::Int(i64::from(*b)),
        other => other.clone(),
    }
}

fn assert_same_rows(a: &[Vec<Value>], b: &[Vec<Value>]) {
    assert_eq!(a.len(), b.len(), "row counts");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len(), "column counts");
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            if norm(p) != norm(q) {
                let short = |v: &Value| format!("{v:?}").chars().take(200).collect::<String>();
                panic!("row {:?}, column {i}: {} != {}", x[0], short(p), short(q));
            }
        }
    }
}

/// A native PostgreSQL insert of a typed row (NULLs typed as their columns).
fn pg_insert() -> String {
    "INSERT INTO t VALUES ($1::int, $2::varchar, $3::numeric, $4::text, $5::bytea, $6::date, \
     $7::bool, $8::float8, $9::timestamp, $10::timestamptz)"
        .to_owned()
}

const KEY: &str = "{ kind = \"key\", column = \"id\" }";

fn table(watermark: &str) -> String {
    format!("\n[[table]]\nsource = \"t\"\nbatch_size = 500\nwatermark = {watermark}\n")
}

/// An engine reached both natively and through ODBC.
struct Side {
    native: String,
    odbc: String,
    typed: &'static str,
    /// A native insert of a control table's four columns.
    insert4: &'static str,
}

async fn pg_side(tag: &str) -> (PgDb, Side) {
    let db = PgDb::new(tag).await;
    let side = Side {
        native: db.url.clone(),
        odbc: pg_odbc(&db),
        typed: PG_TYPED,
        insert4: "INSERT INTO t VALUES ($1, $2, $3, $4)",
    };
    (db, side)
}

async fn my_side(tag: &str) -> (MyDb, Side) {
    let db = MyDb::new(tag).await;
    let side = Side {
        native: db.url.clone(),
        odbc: my_odbc(&db),
        typed: MY_TYPED,
        insert4: "INSERT INTO t VALUES (?, ?, ?, ?)",
    };
    (db, side)
}

/// 1,200 typed rows from a native PostgreSQL source into the engine through ODBC arrive
/// exactly (read back both natively and through ODBC); then the engine through ODBC is the
/// source of a native PostgreSQL exchange, and those rows arrive exactly too.
async fn typed_both_ways(side: &Side) {
    let src = PgDb::new("odbc_src").await;
    let back = PgDb::new("odbc_back").await;
    src.exec(PG_TYPED).await;
    back.exec(PG_TYPED).await;
    let native_src = connect(&src.url).await;
    let rows = typed_rows(1200);
    exec(&native_src, &pg_insert(), &rows).await;
    let engine = connect(&side.native).await;
    exec(&engine, side.typed, &[]).await;

    let up = Agent::new(&format!("{}{}", header(&src.url, &side.odbc), table(KEY)));
    let out = up.ok(&["once"]);
    assert!(
        out.contains("t: 1200 row(s) sent"),
        "{out}\n{:?}",
        common::rejects(&up, &["--table", "t"]).first()
    );
    let via_odbc = connect(&side.odbc).await;
    assert!(matches!(via_odbc.dialect(), Dialect::Odbc(_)));
    assert_same_rows(
        &all_rows(&native_src, "t").await,
        &all_rows(&engine, "t").await,
    );
    assert_same_rows(
        &all_rows(&native_src, "t").await,
        &all_rows(&via_odbc, "t").await,
    );

    let down = Agent::new(&format!("{}{}", header(&side.odbc, &back.url), table(KEY)));
    let out = down.ok(&["once"]);
    assert!(out.contains("t: 1200 row(s) sent"), "{out}");
    let native_back = connect(&back.url).await;
    assert_same_rows(
        &all_rows(&native_src, "t").await,
        &all_rows(&native_back, "t").await,
    );
    assert_eq!(
        via_odbc
            .count(&TableName::parse("t").expect("t"))
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        1200
    );
    let now = via_odbc.now().await.unwrap_or_else(|e| panic!("{e}"));
    assert!((chrono::Utc::now() - now).num_seconds().abs() < 60, "{now}");
    for db in [native_src, engine, via_odbc, native_back] {
        db.close().await;
    }
    src.drop().await;
    back.drop().await;
}

#[tokio::test]
async fn postgres_through_odbc_every_type_exact_both_ways() {
    let (db, side) = pg_side("odbc_pg").await;
    typed_both_ways(&side).await;
    db.drop().await;
}

#[tokio::test]
async fn mariadb_through_odbc_every_type_exact_both_ways() {
    let (db, side) = my_side("odbc_my").await;
    typed_both_ways(&side).await;
    db.drop().await;
}

const PG_CONTROL: &str = "CREATE TABLE t (id int PRIMARY KEY, name varchar(50), \
     cd_operation varchar(1) NOT NULL, cd_time varchar(19) NOT NULL)";

/// Control mode into the engine through ODBC: an older update and an older delete never
/// replace newer rows; a delete of an older row removes it; a new row arrives; a row the
/// engine refuses (too long once its column is narrowed) is quarantined alone.
async fn control_into(side: &Side, narrow: &str) {
    let src = PgDb::new("odbc_ctl").await;
    src.exec(PG_CONTROL).await;
    let engine = connect(&side.native).await;
    exec(&engine, PG_CONTROL, &[]).await;
    let row = |id: i64, name: &str, op: &str, at: &str| {
        vec![
            Value::Int(id),
            Value::Text(name.into()),
            Value::Text(op.into()),
            Value::Text(at.into()),
        ]
    };
    let old = "2026-01-01 00:00:00";
    let new = "2030-01-01 00:00:00";
    let native_src = connect(&src.url).await;
    exec(
        &native_src,
        "INSERT INTO t VALUES ($1, $2, $3, $4)",
        &[
            row(1, "older", "U", old),
            row(2, "new row", "I", old),
            row(3, "deleted at source", "D", old),
            row(4, &"x".repeat(50), "I", old),
            row(5, "gone", "D", old),
        ],
    )
    .await;
    exec(&engine, narrow, &[]).await;
    exec(
        &engine,
        side.insert4,
        &[
            row(1, "newer", "U", new),
            row(3, "newer", "U", new),
            row(5, "older", "U", "2020-01-01 00:00:00"),
        ],
    )
    .await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&src.url, &side.odbc),
        table("{ kind = \"control\", format = \"%Y-%m-%d %H:%M:%S\" }")
    ));
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("1 quarantined"),
        "{out}\n{:?}",
        common::rejects(&agent, &["--table", "t"])
            .iter()
            .map(|r| r["reasons"].clone())
            .collect::<Vec<_>>()
    );
    let names: Vec<(Value, Value)> = all_rows(&engine, "t")
        .await
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            (Value::Int(1), Value::Text("newer".into())),
            (Value::Int(2), Value::Text("new row".into())),
            (Value::Int(3), Value::Text("newer".into())),
        ]
    );
    // Every column of this table has a declared size: read through ODBC in bound column
    // buffers, the rows are the ones read natively.
    let via_odbc = connect(&side.odbc).await;
    assert_same_rows(
        &all_rows(&engine, "t").await,
        &all_rows(&via_odbc, "t").await,
    );
    via_odbc.close().await;
    native_src.close().await;
    engine.close().await;
    src.drop().await;
}

#[tokio::test]
async fn postgres_through_odbc_control_deletes_newer_wins_and_a_refused_row() {
    let (db, side) = pg_side("odbc_pgctl").await;
    control_into(&side, "ALTER TABLE t ALTER COLUMN name TYPE varchar(10)").await;
    db.drop().await;
}

#[tokio::test]
async fn mariadb_through_odbc_control_deletes_newer_wins_and_a_refused_row() {
    let (db, side) = my_side("odbc_myctl").await;
    control_into(&side, "ALTER TABLE t MODIFY name varchar(10)").await;
    db.drop().await;
}

/// A transaction on the ODBC source that stamps its row when it begins and commits after
/// newer rows were exchanged, longer than the lookback window: the open-transaction guard
/// (read through ODBC from `pg_stat_activity`) holds the watermark back, so the row
/// arrives; without the guard it would be lost (the negative control).
async fn late_commit(guard: &str) -> Vec<i64> {
    let src = PgDb::new("odbc_late").await;
    let tgt = PgDb::new("odbc_late").await;
    let ddl = "CREATE TABLE ev (id int PRIMARY KEY, v text, updated_at timestamp(6) NOT NULL)";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    let mut slow = src.pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO ev VALUES (1, '迟到的事务', now() AT TIME ZONE 'UTC')")
        .execute(&mut *slow)
        .await
        .expect("insert");
    src.exec("INSERT INTO ev VALUES (2, 'quick', clock_timestamp() AT TIME ZONE 'UTC')")
        .await;
    let url = pg_odbc(&src);
    let config = header(&url, &tgt.url).replace("Asia/Shanghai", "UTC").replace(
        &format!("[source]\nurl = \"{url}\"\n"),
        &format!("[source]\nurl = \"{url}\"\ndialect = \"postgres\"\ntransaction_guard = \"{guard}\"\n"),
    );
    let agent = Agent::new(&format!(
        "{config}[[table]]\nsource = \"ev\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\", lookback = \"2s\" }}\n"
    ));
    assert!(agent.config_text().contains("dialect = \"postgres\""));
    assert!(agent.ok(&["once"]).contains("ev: 1 row(s) sent"));
    // The transaction stays open longer than the lookback (2 s) while newer rows are
    // exchanged: holding it open is the scenario, not a wait.
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
async fn a_late_commit_on_an_odbc_source_still_arrives() {
    assert_eq!(late_commit("10m").await, vec![1, 2, 3]);
}

#[tokio::test]
async fn without_the_guard_the_late_commit_on_an_odbc_source_would_be_lost() {
    assert_eq!(late_commit("0s").await, vec![2, 3]);
}

/// The agent killed (SIGKILL) while it writes 30,000 rows into MariaDB through ODBC, then
/// run to the end: every row once, each exactly as at the source.
#[tokio::test]
async fn a_kill_9_mid_exchange_through_odbc_loses_and_duplicates_nothing() {
    const ROWS: i64 = 30_000;
    let src = PgDb::new("odbc_kill").await;
    let (tgt, side) = my_side("odbc_kill").await;
    src.exec("CREATE TABLE t (id int PRIMARY KEY, v text, amount numeric(12,2))")
        .await;
    tgt.exec("CREATE TABLE t (id int PRIMARY KEY, v text, amount decimal(12,2))")
        .await;
    src.exec(&format!(
        "INSERT INTO t SELECT g, '第' || g || '行', g / 100.0 FROM generate_series(1, {ROWS}) g"
    ))
    .await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nbatch_size = 200\nwatermark = {KEY}\n",
        header(&src.url, &side.odbc)
    ));
    let daemon = Daemon::start(&agent, &[]);
    common::wait_for(
        "rows at the exchange",
        Duration::from_secs(60),
        async || tgt.scalar_i64("SELECT count(*) FROM t").await >= 2000,
    )
    .await;
    daemon.kill();
    let at_kill = tgt.scalar_i64("SELECT count(*) FROM t").await;
    assert!(at_kill < ROWS, "the kill fell after the exchange ended");
    agent.ok(&["once"]);
    // Count, distinct keys, and sums of keys, amounts and text lengths, on both sides.
    let got = tgt
        .rows(
            "SELECT CONCAT(count(*), ':', count(DISTINCT id), ':', sum(id), ':', sum(amount), \
             ':', sum(CHAR_LENGTH(v))) FROM t",
        )
        .await;
    let want = src
        .rows(
            "SELECT count(*) || ':' || count(DISTINCT id) || ':' || sum(id) || ':' || \
             sum(amount) || ':' || sum(char_length(v)) FROM t",
        )
        .await;
    assert_eq!(got, want, "killed at {at_kill} rows");
    let whole = want[0][0].clone().unwrap_or_default();
    assert!(whole.starts_with(&format!("{ROWS}:{ROWS}:")), "{whole}");
    eprintln!("killed with {at_kill} of {ROWS} rows at the exchange");
    src.drop().await;
    tgt.drop().await;
}

/// A driver that is not installed: a Fatal error that says what to install, and no
/// password in it.
#[tokio::test]
async fn a_missing_driver_says_what_to_install_and_hides_the_password() {
    let text = header(
        "odbc:Driver={No Such Driver};Server=127.0.0.1;PWD=s3cret_pw",
        "postgres://x@127.0.0.1:5432/x",
    )
    .replace("{dir}", "/tmp")
        + "\n[[table]]\nsource = \"t\"\nwatermark = { kind = \"key\", column = \"id\" }\n";
    let text = text.replace("[source]\n", "[source]\ndialect = \"dm\"\n");
    let cfg = frontdb_agent::config::load_str(&text, std::path::Path::new("/tmp/odbc.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let e = match Db::connect(&cfg.source, "source", false).await {
        Ok(_) => panic!("connected through a driver that does not exist"),
        Err(e) => e,
    };
    let msg = e.to_string();
    assert_eq!(e.class(), ErrorClass::Fatal, "{msg}");
    assert!(!msg.contains("s3cret_pw"), "{msg}");
    assert!(msg.contains("PWD=***"), "{msg}");
    assert!(msg.contains("apt-get install odbc-postgresql"), "{msg}");
}

/// A front-end database that is not UTF-8 (MariaDB's `gbk`, the GB 2312/GBK family GB 18030
/// extends): its Chinese text, read and written through the driver's UTF-16 calls, arrives
/// exactly at a UTF-8 PostgreSQL exchange, and back into another `gbk` table.
#[tokio::test]
async fn chinese_text_of_a_gbk_database_arrives_exactly_both_ways() {
    let (db, side) = my_side("odbc_gbk").await;
    db.exec(&format!(
        "ALTER DATABASE `{}` CHARACTER SET gbk COLLATE gbk_bin",
        db.name
    ))
    .await;
    let ddl = "CREATE TABLE t (id int PRIMARY KEY, name varchar(60), note text) CHARACTER SET gbk";
    db.exec(ddl).await;
    let native = connect(&side.native).await;
    let rows: Vec<Vec<Value>> = (1..=300)
        .map(|i| {
            vec![
                Value::Int(i),
                Value::Text(format!(
                    "黑龙江省哈尔滨市道里区中央大街{i}号·市场监督管理局"
                )),
                Value::Text("检查发现：台账不全，已责令整改。".repeat((i % 5 + 1) as usize)),
            ]
        })
        .collect();
    exec(&native, "INSERT INTO t VALUES (?, ?, ?)", &rows).await;
    assert_eq!(
        db.rows("SELECT CHARACTER_SET_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 't' AND COLUMN_NAME = 'name'")
            .await[0][0]
            .as_deref(),
        Some("gbk")
    );
    let pg = PgDb::new("odbc_gbk").await;
    pg.exec("CREATE TABLE t (id int PRIMARY KEY, name varchar(60), note text)")
        .await;
    let up = Agent::new(&format!("{}{}", header(&side.odbc, &pg.url), table(KEY)));
    let out = up.ok(&["once"]);
    assert!(out.contains("t: 300 row(s) sent"), "{out}");
    let native_pg = connect(&pg.url).await;
    assert_same_rows(&rows, &all_rows(&native_pg, "t").await);
    // Back into a gbk table through ODBC.
    db.exec("CREATE TABLE t2 (id int PRIMARY KEY, name varchar(60), note text) CHARACTER SET gbk")
        .await;
    let back = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\ntarget = \"t2\"\nwatermark = {KEY}\n",
        header(&pg.url, &side.odbc)
    ));
    let out = back.ok(&["once"]);
    assert!(out.contains("t: 300 row(s) sent"), "{out}");
    assert_same_rows(&rows, &all_rows(&native, "t2").await);
    native.close().await;
    native_pg.close().await;
    pg.drop().await;
    db.drop().await;
}
