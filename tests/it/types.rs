//! Every value kind crosses every engine pair exactly: PostgreSQL→PostgreSQL,
//! MariaDB→PostgreSQL, PostgreSQL→MariaDB, SQLite→PostgreSQL and PostgreSQL→SQLite.
//! Source and target are read back as normalised text (independently of the agent's own
//! code) and compared row by row, and with the expected values.

use std::path::PathBuf;

use crate::common::{Agent, MyDb, PgDb, header, sqlite_exec, sqlite_rows};

/// One test row; times are given in their normalised text, instants in UTC.
struct R {
    id: i64,
    small: Option<i16>,
    big: Option<i64>,
    money: Option<&'static str>,
    dbig: Option<&'static str>,
    name: Option<&'static str>,
    long: Option<&'static str>,
    flag: Option<bool>,
    bin: Option<Vec<u8>>,
    dt: Option<&'static str>,
    ts: Option<&'static str>,
    tstz: Option<&'static str>,
    updated: &'static str,
}

fn rows() -> Vec<R> {
    vec![
        R {
            id: 1,
            small: Some(12),
            big: Some(1_234_567_890_123),
            money: Some("12345.6700"),
            dbig: Some("1234567890123456789012345678.0123456789"),
            name: Some("哈尔滨市道里区鑫源食品有限公司"),
            long: Some("责令整改“过期药品”，罚款 5000.00 元"),
            flag: Some(true),
            bin: Some(vec![0x00, 0xff, 0x10, 0x7f]),
            dt: Some("2026-11-02"),
            ts: Some("2026-11-02 09:30:00.000001"),
            tstz: Some("2026-11-02 01:30:00.123456"),
            updated: "2026-11-02 10:00:00.000000",
        },
        R {
            id: 2,
            small: None,
            big: None,
            money: None,
            dbig: None,
            name: None,
            long: None,
            flag: None,
            bin: None,
            dt: None,
            ts: None,
            tstz: None,
            updated: "2026-11-02 10:00:00.000001",
        },
        R {
            id: 3,
            small: Some(-32768),
            big: Some(i64::MIN),
            money: Some("-99999999999999.9999"),
            dbig: Some("-0.0000000001"),
            name: Some("O'Brien \"quoted\" back\\slash 😀"),
            long: Some("tab\there\nnew line\r\nand the end"),
            flag: Some(false),
            bin: Some(vec![]),
            dt: Some("1900-01-01"),
            ts: Some("1999-12-31 23:59:59.999999"),
            tstz: Some("1970-01-02 00:00:00.000000"),
            updated: "2026-11-03 08:00:00.500000",
        },
        R {
            id: 4,
            small: Some(32767),
            big: Some(i64::MAX),
            money: Some("0.0000"),
            dbig: Some("0.0000000000"),
            name: Some(""),
            long: Some("监管行为 (supervision behaviour) · 双随机、一公开"),
            flag: Some(true),
            bin: Some((0u8..=255).collect::<Vec<u8>>()[..64].to_vec()),
            dt: Some("2099-12-31"),
            ts: Some("2024-02-29 23:59:59.999999"),
            tstz: Some("2038-01-19 03:14:07.999999"),
            updated: "2026-11-03 08:00:00.500000",
        },
    ]
}

/// The normalised text every engine must show for a row.
fn expected(r: &R) -> Vec<Option<String>> {
    vec![
        Some(r.id.to_string()),
        r.small.map(|v| v.to_string()),
        r.big.map(|v| v.to_string()),
        r.money.map(str::to_owned),
        r.dbig.map(str::to_owned),
        r.name.map(str::to_owned),
        r.long.map(str::to_owned),
        r.flag.map(|b| if b { "1".into() } else { "0".into() }),
        r.bin.as_ref().map(hex::encode),
        r.dt.map(str::to_owned),
        r.ts.map(str::to_owned),
        r.tstz.map(|t| format!("{t}+00:00")),
        Some(r.updated.to_owned()),
    ]
}

const PG_DDL: &str = "CREATE TABLE typed (
    id bigint PRIMARY KEY, i_small smallint, i_big bigint,
    d_money numeric(18,4), d_big numeric(38,10),
    t_name varchar(200), t_long text, b_flag boolean, bin bytea,
    dt date, ts timestamp(6), tstz timestamptz, updated_at timestamp(6) NOT NULL)";

const MY_DDL: &str = "CREATE TABLE typed (
    id bigint PRIMARY KEY, i_small smallint, i_big bigint,
    d_money decimal(18,4), d_big decimal(38,10),
    t_name varchar(200), t_long longtext, b_flag tinyint(1), bin varbinary(64),
    dt date, ts datetime(6), tstz timestamp(6) NULL DEFAULT NULL, updated_at datetime(6) NOT NULL)";

const LITE_DDL: &str = "CREATE TABLE typed (
    id INTEGER PRIMARY KEY, i_small INTEGER, i_big INTEGER,
    d_money TEXT, d_big TEXT,
    t_name VARCHAR(200), t_long TEXT, b_flag BOOLEAN, bin BLOB,
    dt DATE, ts TIMESTAMP, tstz TIMESTAMPTZ, updated_at TIMESTAMP NOT NULL)";

const PG_NORM: &str = "SELECT id::text, i_small::text, i_big::text, d_money::text, d_big::text,
    t_name, t_long, CASE WHEN b_flag IS NULL THEN NULL WHEN b_flag THEN '1' ELSE '0' END,
    encode(bin, 'hex'), to_char(dt, 'YYYY-MM-DD'), to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US'),
    to_char(tstz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00:00',
    to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS.US') FROM typed ORDER BY id";

const MY_NORM: &str = "SELECT CAST(id AS CHAR), CAST(i_small AS CHAR), CAST(i_big AS CHAR),
    CAST(d_money AS CHAR), CAST(d_big AS CHAR), t_name, t_long, CAST(b_flag AS CHAR),
    LOWER(HEX(bin)), DATE_FORMAT(dt, '%Y-%m-%d'), DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s.%f'),
    CONCAT(DATE_FORMAT(tstz, '%Y-%m-%d %H:%i:%s.%f'), '+00:00'),
    DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f') FROM typed ORDER BY id";

const LITE_NORM: &str = "SELECT CAST(id AS TEXT), CAST(i_small AS TEXT), CAST(i_big AS TEXT),
    d_money, d_big, t_name, t_long, CAST(b_flag AS TEXT),
    CASE WHEN bin IS NULL THEN NULL ELSE lower(hex(bin)) END, dt, ts, tstz, updated_at
    FROM typed ORDER BY id";

/// One side of an exchange.
enum Side {
    Pg(PgDb),
    My(MyDb),
    Lite(tempfile::TempDir),
}

impl Side {
    async fn pg() -> Side {
        let db = PgDb::new("types").await;
        db.exec(PG_DDL).await;
        Side::Pg(db)
    }

    async fn my() -> Side {
        let db = MyDb::new("types").await;
        db.exec(MY_DDL).await;
        Side::My(db)
    }

    async fn lite() -> Side {
        let dir = tempfile::tempdir().expect("tempdir");
        sqlite_exec(&dir.path().join("db.sqlite"), LITE_DDL).await;
        Side::Lite(dir)
    }

    fn lite_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("db.sqlite")
    }

    fn url(&self) -> String {
        match self {
            Side::Pg(d) => d.url.clone(),
            Side::My(d) => d.url.clone(),
            Side::Lite(d) => format!("sqlite://{}", Side::lite_path(d).display()),
        }
    }

    async fn insert(&self, rows: &[R]) {
        for r in rows {
            match self {
                Side::Pg(d) => {
                    sqlx::query(
                        "INSERT INTO typed VALUES ($1, $2, $3, $4::numeric, $5::numeric, $6, $7, $8, $9, \
                         $10::date, $11::timestamp, $12::timestamptz, $13::timestamp)",
                    )
                    .bind(r.id)
                    .bind(r.small)
                    .bind(r.big)
                    .bind(r.money)
                    .bind(r.dbig)
                    .bind(r.name)
                    .bind(r.long)
                    .bind(r.flag)
                    .bind(r.bin.clone())
                    .bind(r.dt)
                    .bind(r.ts)
                    .bind(r.tstz.map(|t| format!("{t}+00")))
                    .bind(r.updated)
                    .execute(&d.pool)
                    .await
                    .expect("insert pg");
                }
                Side::My(d) => {
                    sqlx::query("INSERT INTO typed VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                        .bind(r.id)
                        .bind(r.small)
                        .bind(r.big)
                        .bind(r.money)
                        .bind(r.dbig)
                        .bind(r.name)
                        .bind(r.long)
                        .bind(r.flag)
                        .bind(r.bin.clone())
                        .bind(r.dt)
                        .bind(r.ts)
                        .bind(r.tstz)
                        .bind(r.updated)
                        .execute(&d.pool)
                        .await
                        .expect("insert mysql");
                }
                Side::Lite(dir) => {
                    let pool = sqlx::SqlitePool::connect(&self.url())
                        .await
                        .expect("sqlite");
                    sqlx::query("INSERT INTO typed VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                        .bind(r.id)
                        .bind(r.small)
                        .bind(r.big)
                        .bind(r.money)
                        .bind(r.dbig)
                        .bind(r.name)
                        .bind(r.long)
                        .bind(r.flag.map(i64::from))
                        .bind(r.bin.clone())
                        .bind(r.dt)
                        .bind(r.ts)
                        .bind(r.tstz.map(|t| format!("{t}+00:00")))
                        .bind(r.updated)
                        .execute(&pool)
                        .await
                        .expect("insert sqlite");
                    pool.close().await;
                    let _ = dir;
                }
            }
        }
    }

    async fn exec(&self, sql: &str) {
        match self {
            Side::Pg(d) => d.exec(sql).await,
            Side::My(d) => d.exec(sql).await,
            Side::Lite(d) => sqlite_exec(&Side::lite_path(d), sql).await,
        }
    }

    async fn rows(&self) -> Vec<Vec<Option<String>>> {
        match self {
            Side::Pg(d) => d.rows(PG_NORM).await,
            Side::My(d) => d.rows(MY_NORM).await,
            Side::Lite(d) => sqlite_rows(&Side::lite_path(d), LITE_NORM).await,
        }
    }

    async fn drop(self) {
        match self {
            Side::Pg(d) => d.drop().await,
            Side::My(d) => d.drop().await,
            Side::Lite(_) => {}
        }
    }
}

/// Exchange, compare, change, exchange again, compare.
async fn round_trip(source: Side, target: Side) {
    let fixtures = rows();
    source.insert(&fixtures).await;
    let want: Vec<_> = fixtures.iter().map(expected).collect();
    assert_eq!(source.rows().await, want, "source fixtures as loaded");

    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"typed\"\nbatch_size = 3\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\", lookback = \"1m\" }}\n",
        header(&source.url(), &target.url())
    ));
    let out = agent.ok(&["once"]);
    assert!(out.contains("typed: 4 row(s) sent"), "{out}");
    assert_eq!(target.rows().await, want, "target after the first exchange");

    // Nothing changed: nothing is sent again.
    let out = agent.ok(&["once"]);
    assert!(out.contains("typed: 0 row(s) sent"), "{out}");

    // An update and an insert arrive; the rest stays.
    source
        .exec("UPDATE typed SET t_name = '更新后的名称 ''x''', updated_at = '2026-11-04 00:00:00.000001' WHERE id = 2")
        .await;
    let extra = R {
        id: 5,
        small: Some(5),
        big: Some(5),
        money: Some("5.5000"),
        dbig: Some("5.0000000000"),
        name: Some("新增行"),
        long: None,
        flag: Some(false),
        bin: Some(vec![5]),
        dt: Some("2026-11-05"),
        ts: Some("2026-11-05 05:05:05.050505"),
        tstz: Some("2026-11-05 05:05:05.050505"),
        updated: "2026-11-05 00:00:00.000000",
    };
    source.insert(std::slice::from_ref(&extra)).await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("typed: 2 row(s) sent"), "{out}");
    let src = source.rows().await;
    assert_eq!(src.len(), 5);
    assert_eq!(src[1][5].as_deref(), Some("更新后的名称 'x'"));
    assert_eq!(
        target.rows().await,
        src,
        "target equals source after changes"
    );
    source.drop().await;
    target.drop().await;
}

#[tokio::test]
async fn postgres_to_postgres() {
    round_trip(Side::pg().await, Side::pg().await).await;
}

#[tokio::test]
async fn mariadb_to_postgres() {
    round_trip(Side::my().await, Side::pg().await).await;
}

#[tokio::test]
async fn postgres_to_mariadb() {
    round_trip(Side::pg().await, Side::my().await).await;
}

#[tokio::test]
async fn sqlite_to_postgres() {
    round_trip(Side::lite().await, Side::pg().await).await;
}

#[tokio::test]
async fn postgres_to_sqlite() {
    round_trip(Side::pg().await, Side::lite().await).await;
}

#[tokio::test]
async fn mariadb_to_mariadb() {
    round_trip(Side::my().await, Side::my().await).await;
}
