//! SQL Server and Oracle against real servers. Those tests are ignored unless asked for,
//! because no such server is here: point `FRONTDB_TEST_MSSQL_URL` or `FRONTDB_TEST_ORACLE_URL`
//! at one and run the ignored tests of this file:
//!
//! ```text
//! FRONTDB_TEST_MSSQL_URL='mssql://sa:Secret_1@127.0.0.1:1433/master?trust_server_certificate=true' \
//!   cargo test --test it -- --ignored engines_live::mssql_
//! FRONTDB_TEST_ORACLE_URL='oracle://system:secret@127.0.0.1:1521/FREEPDB1' \
//!   cargo test --test it -- --ignored engines_live::oracle_
//! ```
//!
//! (`-- --ignored engines_live::` runs both.) An ignored test asked for without its variable
//! fails, saying which one to set. The tests here that need no such server (refused
//! connections, redaction, SQL Server's MERGE translated to PostgreSQL's) always run.
//!
//! A live test creates uniquely named tables, runs the agent binary between the engine and
//! PostgreSQL both ways, compares source and target row by row, and drops its tables.

use std::path::Path;
use std::time::Duration;

use crate::common::{Agent, PgDb, header};
use chrono::{NaiveDate, NaiveDateTime};
use frontdb_agent::db::dialect::{Dialect, Select};
use frontdb_agent::db::{Db, ErrorClass};
use frontdb_agent::ident::TableName;
use frontdb_agent::value::Value;

/// One engine under test: where it is, how its tables are made, how it names a parameter.
struct Engine {
    var: &'static str,
    dialect: Dialect,
    /// `CREATE TABLE {t} (...)` of the typed round-trip table.
    typed: &'static str,
    /// The control-mode table of the newer-wins test.
    control: &'static str,
    drop: &'static str,
}

const MSSQL: Engine = Engine {
    var: "FRONTDB_TEST_MSSQL_URL",
    dialect: Dialect::MsSql,
    typed: "CREATE TABLE {t} (id int PRIMARY KEY, name nvarchar(50), amount decimal(12,2), \
            note nvarchar(max), raw varbinary(16), day date, updated_at datetime2(6) NOT NULL)",
    control: "CREATE TABLE {t} (id int PRIMARY KEY, name nvarchar(50), \
              cd_operation varchar(1) NOT NULL, cd_time varchar(19) NOT NULL)",
    drop: "DROP TABLE {t}",
};

const ORACLE: Engine = Engine {
    var: "FRONTDB_TEST_ORACLE_URL",
    dialect: Dialect::Oracle,
    typed: "CREATE TABLE {t} (id NUMBER(10) PRIMARY KEY, name NVARCHAR2(50), \
            amount NUMBER(12,2), note CLOB, raw RAW(16), day DATE, updated_at TIMESTAMP(6) NOT NULL)",
    control: "CREATE TABLE {t} (id NUMBER(10) PRIMARY KEY, name VARCHAR2(50 CHAR), \
              cd_operation CHAR(1) NOT NULL, cd_time VARCHAR2(19) NOT NULL)",
    drop: "DROP TABLE {t} PURGE",
};

const PG_TYPED: &str = "CREATE TABLE {t} (id int PRIMARY KEY, name varchar(50), \
     amount numeric(12,2), note text, raw bytea, day date, updated_at timestamp(6) NOT NULL)";
const PG_CONTROL: &str = "CREATE TABLE {t} (id int PRIMARY KEY, name varchar(50), \
     cd_operation varchar(1) NOT NULL, cd_time varchar(19) NOT NULL)";

/// The engine's URL. The tests that need it are ignored unless asked for; asked for without
/// it, they fail.
fn url_of(e: &Engine) -> String {
    match std::env::var(e.var) {
        Ok(u) if !u.is_empty() => u,
        _ => panic!(
            "{} is not set: this test needs a server (see the head of tests/it/engines_live.rs)",
            e.var
        ),
    }
}

fn unique(tag: &str) -> String {
    // Upper case: Oracle folds unquoted names to it, and the agent's names are quoted.
    format!("FDBT_{tag}_{}", std::process::id()).to_uppercase()
}

/// Connect to both databases through the library, as the agent does.
fn config(source: &str, exchange: &str) -> frontdb_agent::config::Config {
    let text = header(source, exchange).replace("{dir}", "/tmp") + &table("t", TIMESTAMP);
    frontdb_agent::config::load_str(&text, Path::new("/tmp/live.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn connect(engine_url: &str, pg_url: &str) -> (Db, Db) {
    let cfg = config(engine_url, pg_url);
    let engine = Db::connect(&cfg.source, "source", false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pg = Db::connect(
        cfg.exchange.db().expect("a database exchange"),
        "exchange",
        false,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    (engine, pg)
}

async fn exec(db: &Db, sql: &str, rows: &[Vec<Value>]) {
    let rows = if rows.is_empty() { &[vec![]][..] } else { rows };
    db.exec_many(sql, rows)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// `INSERT INTO t VALUES (...)` with `n` parameters in the engine's notation.
fn insert(d: Dialect, t: &str, n: usize) -> String {
    let ps: Vec<String> = (1..=n)
        .map(|i| match d {
            Dialect::MsSql => format!("@P{i}"),
            Dialect::Oracle => format!(":{i}"),
            _ => match i {
                3 => "$3::numeric".to_owned(),
                _ => format!("${i}"),
            },
        })
        .collect();
    format!("INSERT INTO {t} VALUES ({})", ps.join(", "))
}

/// Rows of the typed table: text with CJK, NULLs, long text, bytes, dates, microseconds.
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
                    Value::Text(format!("哈尔滨市某某公司 {i}"))
                },
                Value::Decimal(format!("{}.{:02}", i * 3, i % 100)),
                if i % 500 == 0 {
                    Value::Text("长".repeat(6000))
                } else {
                    Value::Text(format!("note {i}"))
                },
                if i % 5 == 0 {
                    Value::Null
                } else {
                    Value::Bytes(vec![(i % 256) as u8, 0, 255, 7])
                },
                Value::Date(day + chrono::Days::new((i % 400) as u64)),
                Value::Timestamp(at + chrono::Duration::microseconds(i * 1_001)),
            ]
        })
        .collect()
}

/// Every row of a table, ordered by its first column, read as the agent reads it.
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

/// A value as engines may differ in writing the same thing: a decimal's trailing zeros
/// (Oracle's `NUMBER` keeps none), a date as midnight (Oracle's `DATE` has a time of day).
fn norm(v: &Value) -> Value {
    match v {
        Value::Decimal(d) if d.contains('.') => {
            Value::Decimal(d.trim_end_matches('0').trim_end_matches('.').to_owned())
        }
        Value::Date(d) => Value::Timestamp(d.and_time(chrono::NaiveTime::MIN)),
        other => other.clone(),
    }
}

fn assert_same_rows(a: &[Vec<Value>], b: &[Vec<Value>]) {
    assert_eq!(a.len(), b.len(), "row counts");
    for (x, y) in a.iter().zip(b) {
        let x: Vec<Value> = x.iter().map(norm).collect();
        let y: Vec<Value> = y.iter().map(norm).collect();
        assert_eq!(x, y, "rows differ");
    }
}

fn table(t: &str, watermark: &str) -> String {
    format!("\n[[table]]\nsource = \"{t}\"\nwatermark = {watermark}\n")
}

const TIMESTAMP: &str = "{ kind = \"timestamp\", column = \"updated_at\", lookback = \"1m\" }";

/// PostgreSQL to the engine and back: 2500 typed rows (more than one statement's parameters)
/// arrive exactly; a newer row at the target survives an older one from the source.
async fn round_trip(e: &Engine) {
    let url = url_of(e);
    let pg = PgDb::new("live").await;
    let (db, pgdb) = connect(&url, &pg.url).await;
    let t = unique(&format!("{:?}_RT", e.dialect));
    let _ = db.exec_many(&e.drop.replace("{t}", &t), &[vec![]]).await;
    exec(&db, &e.typed.replace("{t}", &t), &[]).await;
    exec(&pgdb, &PG_TYPED.replace("{t}", &format!("\"{t}\"")), &[]).await;
    let rows = typed_rows(2500);
    exec(
        &pgdb,
        &insert(Dialect::Postgres, &format!("\"{t}\""), 7),
        &rows,
    )
    .await;

    let agent = Agent::new(&format!(
        "{}{}",
        header(&pg.url, &url),
        table(&t, TIMESTAMP)
    ));
    let out = agent.ok(&["once"]);
    assert!(out.contains(&format!("{t}: 2500 row(s) sent")), "{out}");
    assert_same_rows(&all_rows(&pgdb, &t).await, &all_rows(&db, &t).await);

    // Newer wins: the target's row 1 is newer than the source's next version of it.
    let q = e
        .dialect
        .quote(&frontdb_agent::ident::Ident::new(&t).expect("ident"));
    let set = match e.dialect {
        Dialect::MsSql => {
            "UPDATE {t} SET name = N'newer at exchange', updated_at = '2030-01-01' WHERE id = 1"
        }
        _ => {
            "UPDATE {t} SET name = 'newer at exchange', updated_at = TIMESTAMP '2030-01-01 00:00:00' WHERE id = 1"
        }
    };
    exec(&db, &set.replace("{t}", &q), &[]).await;
    let pq = format!("\"{t}\"");
    exec(
        &pgdb,
        &format!("UPDATE {pq} SET name = 'changed', updated_at = now() WHERE id IN (1, 2)"),
        &[],
    )
    .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains(&format!("{t}: 2 row(s) sent")), "{out}");
    let target = all_rows(&db, &t).await;
    assert_eq!(target[0][1], Value::Text("newer at exchange".into()));
    assert_eq!(target[1][1], Value::Text("changed".into()));
    assert_same_rows(&all_rows(&pgdb, &t).await[2..], &target[2..]);

    exec(&db, &e.drop.replace("{t}", &q), &[]).await;
    db.close().await;
    pgdb.close().await;
    pg.drop().await;
}

/// The engine as the source: its rows, inserted with bound values, arrive at PostgreSQL.
async fn as_source(e: &Engine) {
    let url = url_of(e);
    let pg = PgDb::new("live").await;
    let (db, pgdb) = connect(&url, &pg.url).await;
    let t = unique(&format!("{:?}_SRC", e.dialect));
    let q = e
        .dialect
        .quote(&frontdb_agent::ident::Ident::new(&t).expect("ident"));
    let _ = db.exec_many(&e.drop.replace("{t}", &q), &[vec![]]).await;
    exec(&db, &e.typed.replace("{t}", &q), &[]).await;
    exec(&db, &insert(e.dialect, &q, 7), &typed_rows(1200)).await;
    exec(&pgdb, &PG_TYPED.replace("{t}", &format!("\"{t}\"")), &[]).await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&url, &pg.url),
        table(&t, TIMESTAMP)
    ));
    let out = agent.ok(&["once"]);
    assert!(out.contains(&format!("{t}: 1200 row(s) sent")), "{out}");
    assert_same_rows(&all_rows(&db, &t).await, &all_rows(&pgdb, &t).await);
    let n = db
        .count(&TableName::parse(&t).expect("t"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 1200);
    assert!(db.now().await.is_ok());
    assert!(db.oldest_transaction().await.is_ok());
    exec(&db, &e.drop.replace("{t}", &q), &[]).await;
    db.close().await;
    pgdb.close().await;
    pg.drop().await;
}

/// Control mode into the engine: an older update and an older delete never replace newer
/// rows at the exchange; a new row arrives; a row the exchange refuses is quarantined alone.
async fn control_newer_wins(e: &Engine) {
    let url = url_of(e);
    let pg = PgDb::new("live").await;
    let (db, pgdb) = connect(&url, &pg.url).await;
    let t = unique(&format!("{:?}_CTL", e.dialect));
    let q = e
        .dialect
        .quote(&frontdb_agent::ident::Ident::new(&t).expect("ident"));
    let pq = format!("\"{t}\"");
    let _ = db.exec_many(&e.drop.replace("{t}", &q), &[vec![]]).await;
    exec(&db, &e.control.replace("{t}", &q), &[]).await;
    exec(&pgdb, &PG_CONTROL.replace("{t}", &pq), &[]).await;
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
    exec(
        &pgdb,
        &insert(Dialect::Postgres, &pq, 4).replace("$3::numeric", "$3"),
        &[
            row(1, "old at source", "U", old),
            row(2, "new row", "I", old),
            row(3, "deleted at source", "D", old),
            row(4, &"x".repeat(50), "I", old),
        ],
    )
    .await;
    // Row 4's name is too long for the exchange once it is made narrower there.
    let narrow = match e.dialect {
        Dialect::MsSql => "ALTER TABLE {t} ALTER COLUMN name nvarchar(10)",
        _ => "ALTER TABLE {t} MODIFY (name VARCHAR2(10 CHAR))",
    };
    exec(&db, &narrow.replace("{t}", &q), &[]).await;
    exec(
        &db,
        &insert(e.dialect, &q, 4),
        &[row(1, "newer", "U", new), row(3, "newer", "U", new)],
    )
    .await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&pg.url, &url),
        table(&t, "{ kind = \"control\", format = \"%Y-%m-%d %H:%M:%S\" }")
    ));
    let out = agent.ok(&["once"]);
    assert!(out.contains("1 quarantined"), "{out}");
    let names: Vec<(Value, Value)> = all_rows(&db, &t)
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
    exec(&db, &e.drop.replace("{t}", &q), &[]).await;
    db.close().await;
    pgdb.close().await;
    pg.drop().await;
}

#[tokio::test]
#[ignore = "needs a SQL Server: set FRONTDB_TEST_MSSQL_URL"]
async fn mssql_round_trip() {
    round_trip(&MSSQL).await;
}

#[tokio::test]
#[ignore = "needs a SQL Server: set FRONTDB_TEST_MSSQL_URL"]
async fn mssql_as_source() {
    as_source(&MSSQL).await;
}

#[tokio::test]
#[ignore = "needs a SQL Server: set FRONTDB_TEST_MSSQL_URL"]
async fn mssql_control_newer_wins_and_refused_rows() {
    control_newer_wins(&MSSQL).await;
}

/// No server at the address: the connection fails as Unavailable (retried with backoff),
/// and the message never shows the password.
#[tokio::test]
async fn an_unreachable_mssql_server_is_unavailable_and_its_password_hidden() {
    let cfg = config(
        "mssql://sa:s3cret_pw@127.0.0.1:9/qzk?encrypt=false",
        "postgres://x@127.0.0.1:5432/x",
    );
    let started = std::time::Instant::now();
    let e = match Db::connect(&cfg.source, "source", false).await {
        Ok(_) => panic!("connected to nothing"),
        Err(e) => e,
    };
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(e.class(), ErrorClass::Unavailable, "{e}");
    let msg = e.to_string();
    assert!(!msg.contains("s3cret_pw"), "{msg}");
    assert!(msg.contains("sa:***@127.0.0.1:9"), "{msg}");
    // Lazily, connecting succeeds and the first statement fails the same way.
    let db = Db::connect(&cfg.source, "source", true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let e = db.now().await.expect_err("no server");
    assert_eq!(e.class(), ErrorClass::Unavailable, "{e}");
    assert!(!e.to_string().contains("s3cret_pw"));
}

#[tokio::test]
#[ignore = "needs an Oracle server: set FRONTDB_TEST_ORACLE_URL"]
async fn oracle_round_trip() {
    round_trip(&ORACLE).await;
}

#[tokio::test]
#[ignore = "needs an Oracle server: set FRONTDB_TEST_ORACLE_URL"]
async fn oracle_as_source() {
    as_source(&ORACLE).await;
}

#[tokio::test]
#[ignore = "needs an Oracle server: set FRONTDB_TEST_ORACLE_URL"]
async fn oracle_control_newer_wins_and_refused_rows() {
    control_newer_wins(&ORACLE).await;
}

/// Nothing listens at the address (or, as where this was built, the Oracle client library is
/// missing): the connection fails without showing the password.
#[tokio::test]
async fn an_unreachable_oracle_server_fails_with_its_password_hidden() {
    let cfg = config(
        "oracle://sync:s3cret_pw@127.0.0.1:9/XE",
        "postgres://x@127.0.0.1:5432/x",
    );
    let e = match Db::connect(&cfg.source, "source", false).await {
        Ok(_) => panic!("connected to nothing"),
        Err(e) => e,
    };
    let msg = e.to_string();
    assert!(!msg.contains("s3cret_pw"), "{msg}");
    assert!(msg.contains("sync:***@127.0.0.1:9"), "{msg}");
    if !msg.contains("DPI-1047") {
        assert_eq!(e.class(), ErrorClass::Unavailable, "{msg}");
    }
}

/// A closed Oracle database is not opened again by a late call: it says it was closed
/// (rather than building a pool nobody closes).
#[tokio::test]
async fn a_closed_oracle_database_is_not_opened_again() {
    let cfg = config(
        "oracle://sync:s3cret_pw@127.0.0.1:9/XE",
        "postgres://x@127.0.0.1:5432/x",
    );
    let db = Db::connect(&cfg.source, "source", true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    db.close().await;
    let msg = match db.now().await {
        Ok(_) => panic!("a closed database answered"),
        Err(e) => e.to_string(),
    };
    assert!(msg.contains("the connection pool was closed"), "{msg}");
    assert!(!msg.contains("s3cret_pw"), "{msg}");
}

/// The `MERGE` SQL Server runs, translated mechanically to PostgreSQL 15's `MERGE` (no
/// `WITH (HOLDLOCK)`, `"` for `[]`, `$n` for `@Pn`, unqualified `SET` targets), run on the
/// real PostgreSQL server: a stored row is replaced only when its version is NULL or not
/// newer, new keys are inserted, and every value lands in its own column. This checks the
/// statement's logic on a real MERGE engine where no SQL Server is at hand; it does not
/// check SQL Server's own parsing.
#[tokio::test]
async fn the_sql_server_merge_lets_only_newer_rows_win_on_a_real_merge_engine() {
    use frontdb_agent::db::dialect::Upsert;
    use frontdb_agent::ident::Col;
    use frontdb_agent::value::ColType;
    let pg = PgDb::new("merge").await;
    let cfg = config(&pg.url, &pg.url);
    let db = Db::connect(&cfg.source, "source", false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    exec(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, name varchar(50), amount decimal(12,2), ver int)",
        &[],
    )
    .await;
    exec(
        &db,
        "INSERT INTO t VALUES (1, 'stored newer', 1.00, 10), (2, 'stored older', 2.00, 1), \
         (3, 'stored without version', 3.00, NULL)",
        &[],
    )
    .await;
    let col = |n: &str, ty, native: &str| Col {
        name: frontdb_agent::ident::Ident::new(n).expect("ident"),
        ty,
        native: native.into(),
    };
    let cols = [
        col("id", ColType::Int, "int"),
        col("name", ColType::Text, "varchar(50)"),
        col("amount", ColType::Decimal, "decimal(12,2)"),
        col("ver", ColType::Int, "int"),
    ];
    let t = TableName::parse("t").expect("t");
    let u = Upsert {
        table: &t,
        columns: &cols,
        key: &[0],
        version: Some(3),
    };
    let rows = [
        (1, "incoming older", "9.10", Value::Int(5)),
        (2, "incoming newer", "9.20", Value::Int(5)),
        (3, "incoming versioned", "9.30", Value::Int(5)),
        (4, "incoming new", "9.40", Value::Null),
    ];
    let params: Vec<Value> = rows
        .iter()
        .flat_map(|(id, name, amount, ver)| {
            [
                Value::Int(*id),
                Value::Text((*name).into()),
                Value::Decimal((*amount).into()),
                ver.clone(),
            ]
        })
        .collect();
    let text = Dialect::MsSql.merge(&u, rows.len());
    assert!(text.contains(" WITH (HOLDLOCK) "), "{text}");
    let text = text
        .replace(" WITH (HOLDLOCK)", "")
        .replace(['[', ']'], "\"");
    let text = regex::Regex::new(r"@P(\d+)")
        .expect("regex")
        .replace_all(&text, "$$$1")
        .into_owned();
    let text = regex::Regex::new(r#"(SET |, )tgt\.("[a-z]+") = src"#)
        .expect("regex")
        .replace_all(&text, "$1$2 = src")
        .into_owned();
    exec(&db, &text, &[params]).await;
    let got = all_rows(&db, "t").await;
    let row = |id: i64, name: &str, amount: &str, ver: Value| {
        vec![
            Value::Int(id),
            Value::Text(name.into()),
            Value::Decimal(amount.into()),
            ver,
        ]
    };
    assert_eq!(
        got,
        vec![
            row(1, "stored newer", "1.00", Value::Int(10)),
            row(2, "incoming newer", "9.20", Value::Int(5)),
            row(3, "incoming versioned", "9.30", Value::Int(5)),
            row(4, "incoming new", "9.40", Value::Null),
        ],
        "{text}"
    );
    db.close().await;
    pg.drop().await;
}

/// openGauss/GaussDB asks for its SHA-256 password exchange (authentication request 10): a
/// listener on loopback answers the agent's startup as such a server does. Connecting
/// fails as Fatal (it will not pass by retrying), naming the md5 setting to use instead
/// and the ODBC way round; lazily, the first statement fails the same way.
#[tokio::test]
async fn an_opengauss_sha256_login_is_refused_naming_the_md5_setting() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            // The startup message: its length, then the rest of it.
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).await.is_err() {
                continue;
            }
            let mut rest = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
            if s.read_exact(&mut rest).await.is_err() {
                continue;
            }
            // AuthenticationSHA256Password: method 10, the stored method (2: sha256), a
            // 64-character random code, an 8-character token, the iteration count.
            let mut body = Vec::new();
            body.extend_from_slice(&10u32.to_be_bytes());
            body.extend_from_slice(&2u32.to_be_bytes());
            body.extend_from_slice(&[b'a'; 64]);
            body.extend_from_slice(&[b'b'; 8]);
            body.extend_from_slice(&10_000u32.to_be_bytes());
            let mut msg = vec![b'R'];
            msg.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
            msg.extend_from_slice(&body);
            let _ = s.write_all(&msg).await;
            let _ = s.flush().await;
        }
    });
    let url = format!("postgres://agent:s3cret_pw@127.0.0.1:{port}/qzk?sslmode=disable");
    let cfg = config(&url, "postgres://x@127.0.0.1:5432/x");
    let e = match Db::connect(&cfg.source, "source", false).await {
        Ok(_) => panic!("connected to a server that asks for SHA-256"),
        Err(e) => e,
    };
    let msg = e.to_string();
    assert_eq!(e.class(), ErrorClass::Fatal, "{msg}");
    assert!(msg.contains("password_encryption_type = 1"), "{msg}");
    assert!(msg.contains("`md5` in pg_hba.conf"), "{msg}");
    assert!(msg.contains("odbc://"), "{msg}");
    assert!(!msg.contains("s3cret_pw"), "{msg}");
    let db = Db::connect(&cfg.source, "source", true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let e = db.now().await.expect_err("no login");
    assert_eq!(e.class(), ErrorClass::Fatal, "{e}");
    assert!(
        e.to_string().contains("password_encryption_type = 1"),
        "{e}"
    );
    server.abort();
}
