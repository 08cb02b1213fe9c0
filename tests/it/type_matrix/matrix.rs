//! The type matrix on live engines: each type departments use, declared on both sides as an
//! integration team would, exchanged and compared exactly (each side normalised to text by
//! its own SQL, independently of the agent); each pair that holds no value refused by
//! `check` with both types and what would work.

use crate::common::{Agent, MyDb, PgDb, header, sqlite_exec, sqlite_rows};

/// One column: its type at the source and at the target, two values as SQL literals of the
/// source, and the expression that shows it as text on each side (`{}` is the column).
struct Case {
    name: &'static str,
    src: &'static str,
    tgt: &'static str,
    values: [&'static str; 2],
    src_text: &'static str,
    tgt_text: &'static str,
}

const fn case(
    name: &'static str,
    src: &'static str,
    tgt: &'static str,
    values: [&'static str; 2],
    src_text: &'static str,
    tgt_text: &'static str,
) -> Case {
    Case {
        name,
        src,
        tgt,
        values,
        src_text,
        tgt_text,
    }
}

const MY_TEXT: &str = "CAST({} AS CHAR)";
const PG_TEXT: &str = "{}::text";
const LITE_TEXT: &str = "CAST({} AS TEXT)";

/// MariaDB to PostgreSQL.
const MY_TO_PG: &[Case] = &[
    case(
        "u_int",
        "int unsigned",
        "bigint",
        ["4294967295", "0"],
        MY_TEXT,
        PG_TEXT,
    ),
    case(
        "u_big",
        "bigint unsigned",
        "numeric(20,0)",
        ["18446744073709551615", "1"],
        MY_TEXT,
        PG_TEXT,
    ),
    case(
        "flag",
        "tinyint(1)",
        "smallint",
        ["1", "9"],
        MY_TEXT,
        PG_TEXT,
    ),
    case(
        "medium",
        "mediumint",
        "integer",
        ["-8388608", "8388607"],
        MY_TEXT,
        PG_TEXT,
    ),
    case(
        "dcm",
        "decimal(20,6)",
        "numeric(20,6)",
        ["12345678901234.123456", "-0.000001"],
        MY_TEXT,
        PG_TEXT,
    ),
    case(
        "dbl",
        "double",
        "double precision",
        ["1.5", "-0.125"],
        MY_TEXT,
        PG_TEXT,
    ),
    case("flt", "float", "real", ["0.5", "-3.25"], MY_TEXT, PG_TEXT),
    case("code", "char(2)", "char(2)", ["'23'", "'AB'"], "{}", "{}"),
    case(
        "name",
        "varchar(200)",
        "varchar(200)",
        ["'哈尔滨市道里区 ''x'''", "''"],
        "{}",
        "{}",
    ),
    case("tiny", "tinytext", "text", ["'t\\tab'", "'😀'"], "{}", "{}"),
    case(
        "body",
        "mediumtext",
        "text",
        ["'监管行为\\n双随机'", "'a'"],
        "{}",
        "{}",
    ),
    case(
        "fixed",
        "binary(4)",
        "bytea",
        ["x'00ff1020'", "x'00000000'"],
        "LOWER(HEX({}))",
        "encode({}, 'hex')",
    ),
    case(
        "blb",
        "blob",
        "bytea",
        ["x'deadbeef00'", "x''"],
        "LOWER(HEX({}))",
        "encode({}, 'hex')",
    ),
    case(
        "bits",
        "bit(5)",
        "bit(5)",
        ["b'10101'", "b'00001'"],
        "LPAD(BIN({}), 5, '0')",
        PG_TEXT,
    ),
    case(
        "bits_text",
        "bit(8)",
        "text",
        ["b'10000001'", "b'0'"],
        "LPAD(BIN({}), 8, '0')",
        "{}",
    ),
    case(
        "day",
        "date",
        "date",
        ["'2026-11-02'", "'1900-01-01'"],
        MY_TEXT,
        PG_TEXT,
    ),
    case(
        "at",
        "time(3)",
        "time(3)",
        ["'23:59:59.999'", "'00:00:00.001'"],
        "TIME_FORMAT({}, '%H:%i:%s.%f')",
        "to_char({}, 'HH24:MI:SS.US')",
    ),
    case(
        "local",
        "datetime(6)",
        "timestamp(6)",
        ["'2024-02-29 23:59:59.999999'", "'1000-01-01 00:00:00'"],
        "DATE_FORMAT({}, '%Y-%m-%d %H:%i:%s.%f')",
        "to_char({}, 'YYYY-MM-DD HH24:MI:SS.US')",
    ),
    case(
        "instant",
        "timestamp(6) NULL",
        "timestamptz",
        ["'2038-01-19 03:14:07.999999'", "'1970-01-02 00:00:00'"],
        "DATE_FORMAT({}, '%Y-%m-%d %H:%i:%s.%f')",
        "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
    ),
    case("yr", "year", "smallint", ["2026", "1901"], MY_TEXT, PG_TEXT),
    case(
        "doc",
        "json",
        "jsonb",
        ["'{\"a\": 1, \"b\": [1, 2]}'", "'[]'"],
        "{}",
        PG_TEXT,
    ),
    case(
        "op",
        "enum('I','U','D')",
        "varchar(1)",
        ["'U'", "'D'"],
        "{}",
        "{}",
    ),
    case(
        "tags",
        "set('a','b','c')",
        "text",
        ["'a,c'", "''"],
        "{}",
        "{}",
    ),
    case(
        "uid",
        "uuid",
        "uuid",
        [
            "'123e4567-e89b-12d3-a456-426614174000'",
            "'00000000-0000-0000-0000-000000000001'",
        ],
        MY_TEXT,
        PG_TEXT,
    ),
];

/// PostgreSQL to MariaDB.
const PG_TO_MY: &[Case] = &[
    case(
        "i2",
        "smallint",
        "smallint",
        ["-32768", "32767"],
        PG_TEXT,
        MY_TEXT,
    ),
    case(
        "i8",
        "bigint",
        "bigint",
        ["-9223372036854775808", "9223372036854775807"],
        PG_TEXT,
        MY_TEXT,
    ),
    case(
        "num",
        "numeric(12,2)",
        "decimal(12,2)",
        ["1234567890.12", "-0.01"],
        PG_TEXT,
        MY_TEXT,
    ),
    case("r", "real", "float", ["0.5", "-3.25"], PG_TEXT, MY_TEXT),
    case(
        "d",
        "double precision",
        "double",
        ["1.5", "-0.125"],
        PG_TEXT,
        MY_TEXT,
    ),
    case("code", "char(2)", "char(2)", ["'23'", "'AB'"], "{}", "{}"),
    case(
        "vc",
        "varchar(50)",
        "varchar(50)",
        ["'O''Brien \"q\" \\'", "''"],
        "{}",
        "{}",
    ),
    case(
        "tx",
        "text",
        "longtext",
        ["E'tab\\there\\nline'", "'监管'"],
        "{}",
        "{}",
    ),
    case(
        "byt",
        "bytea",
        "longblob",
        ["'\\x00ff10'", "''"],
        "encode({}, 'hex')",
        "LOWER(HEX({}))",
    ),
    case(
        "bt",
        "bit(6)",
        "bit(6)",
        ["B'101011'", "B'000001'"],
        PG_TEXT,
        "LPAD(BIN({}), 6, '0')",
    ),
    case(
        "bo",
        "boolean",
        "tinyint(1)",
        ["true", "false"],
        "CASE WHEN {} THEN '1' WHEN NOT {} THEN '0' END",
        MY_TEXT,
    ),
    case(
        "dt",
        "date",
        "date",
        ["'2099-12-31'", "'1900-01-01'"],
        PG_TEXT,
        MY_TEXT,
    ),
    case(
        "tm",
        "time(6)",
        "time(6)",
        ["'23:59:59.999999'", "'00:00:00'"],
        "to_char({}, 'HH24:MI:SS.US')",
        "TIME_FORMAT({}, '%H:%i:%s.%f')",
    ),
    case(
        "ts",
        "timestamp(6)",
        "datetime(6)",
        ["'2024-02-29 23:59:59.999999'", "'1900-01-01 00:00:00'"],
        "to_char({}, 'YYYY-MM-DD HH24:MI:SS.US')",
        "DATE_FORMAT({}, '%Y-%m-%d %H:%i:%s.%f')",
    ),
    case(
        "tz",
        "timestamptz",
        "timestamp(6) NULL",
        [
            "'2026-11-02 01:30:00.123456+00'",
            "'1970-01-02 00:00:00+00'",
        ],
        "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
        "DATE_FORMAT({}, '%Y-%m-%d %H:%i:%s.%f')",
    ),
    case(
        "iv",
        "interval",
        "varchar(100)",
        ["'1 day 02:03:04.5'", "'-3 mons'"],
        PG_TEXT,
        "{}",
    ),
    case(
        "uu",
        "uuid",
        "uuid",
        [
            "'123e4567-e89b-12d3-a456-426614174000'",
            "'00000000-0000-0000-0000-000000000001'",
        ],
        PG_TEXT,
        MY_TEXT,
    ),
    case(
        "uc",
        "uuid",
        "char(36)",
        [
            "'123e4567-e89b-12d3-a456-426614174000'",
            "'00000000-0000-0000-0000-000000000001'",
        ],
        PG_TEXT,
        "{}",
    ),
    case(
        "jb",
        "jsonb",
        "json",
        ["'{\"a\": 1, \"b\": [1, 2]}'", "'\"x\"'"],
        PG_TEXT,
        "{}",
    ),
    case(
        "arr",
        "integer[]",
        "text",
        ["'{1,2,3}'", "'{}'"],
        PG_TEXT,
        "{}",
    ),
    case(
        "xm",
        "xml",
        "longtext",
        ["'<a>监管</a>'", "'<b/>'"],
        PG_TEXT,
        "{}",
    ),
    case(
        "ip",
        "inet",
        "varchar(43)",
        ["'192.168.0.1/24'", "'::1'"],
        PG_TEXT,
        "{}",
    ),
    case(
        "pt",
        "point",
        "varchar(50)",
        ["'(1.5,2)'", "'(0,0)'"],
        PG_TEXT,
        "{}",
    ),
    case(
        "mood",
        "mood",
        "enum('sad','ok','happy')",
        ["'happy'", "'sad'"],
        PG_TEXT,
        "{}",
    ),
];

/// PostgreSQL to SQLite.
const PG_TO_LITE: &[Case] = &[
    case(
        "i8",
        "bigint",
        "INTEGER",
        ["-9223372036854775808", "9223372036854775807"],
        PG_TEXT,
        LITE_TEXT,
    ),
    case(
        "num",
        "numeric(38,10)",
        "TEXT",
        ["1234567890123456789012345678.0123456789", "-0.0000000001"],
        PG_TEXT,
        "{}",
    ),
    case(
        "bo",
        "boolean",
        "BOOLEAN",
        ["true", "false"],
        "CASE WHEN {} THEN '1' WHEN NOT {} THEN '0' END",
        LITE_TEXT,
    ),
    case(
        "byt",
        "bytea",
        "BLOB",
        ["'\\x00ff10'", "''"],
        "encode({}, 'hex')",
        "CASE WHEN {} IS NULL THEN NULL ELSE lower(hex({})) END",
    ),
    case(
        "uu",
        "uuid",
        "TEXT",
        [
            "'123e4567-e89b-12d3-a456-426614174000'",
            "'00000000-0000-0000-0000-000000000001'",
        ],
        PG_TEXT,
        "{}",
    ),
    case(
        "jb",
        "jsonb",
        "TEXT",
        ["'{\"a\": 1}'", "'[1, 2]'"],
        PG_TEXT,
        "{}",
    ),
    case(
        "arr",
        "text[]",
        "TEXT",
        ["'{a,\"b c\"}'", "'{}'"],
        PG_TEXT,
        "{}",
    ),
    case(
        "iv",
        "interval",
        "TEXT",
        ["'1 day 02:03:04'", "'-3 mons'"],
        PG_TEXT,
        "{}",
    ),
    case(
        "bt",
        "bit(4)",
        "TEXT",
        ["B'1010'", "B'0001'"],
        PG_TEXT,
        "{}",
    ),
    case(
        "dt",
        "date",
        "DATE",
        ["'2099-12-31'", "'1900-01-01'"],
        PG_TEXT,
        "{}",
    ),
];

/// MariaDB to SQLite.
const MY_TO_LITE: &[Case] = &[
    case(
        "u_big",
        "bigint unsigned",
        "TEXT",
        ["18446744073709551615", "1"],
        MY_TEXT,
        "{}",
    ),
    case(
        "flag",
        "tinyint(1)",
        "INTEGER",
        ["1", "9"],
        MY_TEXT,
        LITE_TEXT,
    ),
    case(
        "dcm",
        "decimal(20,6)",
        "TEXT",
        ["12345678901234.123456", "-0.000001"],
        MY_TEXT,
        "{}",
    ),
    case(
        "blb",
        "blob",
        "BLOB",
        ["x'deadbeef00'", "x''"],
        "LOWER(HEX({}))",
        "CASE WHEN {} IS NULL THEN NULL ELSE lower(hex({})) END",
    ),
    case(
        "bits",
        "bit(8)",
        "TEXT",
        ["b'10000001'", "b'0'"],
        "LPAD(BIN({}), 8, '0')",
        "{}",
    ),
    case(
        "yr",
        "year",
        "INTEGER",
        ["2026", "1901"],
        MY_TEXT,
        LITE_TEXT,
    ),
    case("doc", "json", "TEXT", ["'{\"a\": 1}'", "'[]'"], "{}", "{}"),
    case(
        "op",
        "enum('I','U','D')",
        "TEXT",
        ["'U'", "'D'"],
        "{}",
        "{}",
    ),
    case(
        "uid",
        "uuid",
        "TEXT",
        [
            "'123e4567-e89b-12d3-a456-426614174000'",
            "'00000000-0000-0000-0000-000000000001'",
        ],
        MY_TEXT,
        "{}",
    ),
];

fn ddl(cases: &[Case], ty: impl Fn(&Case) -> &'static str, id: &str) -> String {
    let cols: Vec<String> = cases
        .iter()
        .map(|c| format!("{} {}", c.name, ty(c)))
        .collect();
    format!(
        "CREATE TABLE typed (id {id} PRIMARY KEY, {})",
        cols.join(", ")
    )
}

/// Rows 1 and 2 carry the two values, row 3 is NULL everywhere.
fn inserts(cases: &[Case]) -> String {
    let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    let row = |i: usize| {
        cases
            .iter()
            .map(|c| c.values[i])
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "INSERT INTO typed (id, {n}) VALUES (1, {}), (2, {}); INSERT INTO typed (id) VALUES (3)",
        row(0),
        row(1),
        n = names.join(", ")
    )
}

fn select(cases: &[Case], text: impl Fn(&Case) -> &'static str) -> String {
    let cols: Vec<String> = cases
        .iter()
        .map(|c| text(c).replace("{}", c.name))
        .collect();
    format!("SELECT {} FROM typed ORDER BY id", cols.join(", "))
}

/// What the agent says, and that both sides show the same text in every cell.
fn exchanged(source: &str, target: &str) -> Agent {
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"typed\"\nwatermark = {{ kind = \"key\" }}\n",
        header(source, target).replace("Asia/Shanghai", "UTC")
    ));
    let out = agent.ok(&["check"]);
    assert!(out.contains("all tables OK"), "{out}");
    let out = agent.ok(&["once"]);
    assert!(out.contains("typed: 3 row(s) sent"), "{out}");
    agent
}

fn same(cases: &[Case], src: &[Vec<Option<String>>], tgt: &[Vec<Option<String>>]) {
    assert_eq!(src.len(), 3);
    assert_eq!(tgt.len(), 3);
    for (r, (s, t)) in src.iter().zip(tgt).enumerate() {
        for (c, case) in cases.iter().enumerate() {
            assert_eq!(
                s[c],
                t[c],
                "row {}, column {} ({} -> {})",
                r + 1,
                case.name,
                case.src,
                case.tgt
            );
        }
        if r < 2 {
            assert!(s.iter().all(Option::is_some), "row {}: {s:?}", r + 1);
        } else {
            assert!(s.iter().all(Option::is_none), "row 3: {s:?}");
        }
    }
}

#[tokio::test]
async fn every_mariadb_type_arrives_at_postgres_exactly() {
    let (my, pg) = (MyDb::new("mx_my").await, PgDb::new("mx_pg").await);
    my.exec(&ddl(MY_TO_PG, |c| c.src, "int")).await;
    pg.exec(&ddl(MY_TO_PG, |c| c.tgt, "int")).await;
    my.exec(&inserts(MY_TO_PG)).await;
    exchanged(&my.url, &pg.url);
    let src = my.rows(&select(MY_TO_PG, |c| c.src_text)).await;
    let tgt = pg.rows(&select(MY_TO_PG, |c| c.tgt_text)).await;
    same(MY_TO_PG, &src, &tgt);
    assert_eq!(tgt[0][14].as_deref(), Some("10000001"), "bit(8) into text");
    assert_eq!(tgt[0][1].as_deref(), Some("18446744073709551615"));
    my.drop().await;
    pg.drop().await;
}

#[tokio::test]
async fn every_postgres_type_arrives_at_mariadb_exactly() {
    let (pg, my) = (PgDb::new("mx_pg2").await, MyDb::new("mx_my2").await);
    pg.exec("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
        .await;
    pg.exec(&ddl(PG_TO_MY, |c| c.src, "int")).await;
    my.exec(&ddl(PG_TO_MY, |c| c.tgt, "int")).await;
    pg.exec(&inserts(PG_TO_MY)).await;
    let agent = exchanged(&pg.url, &my.url);
    let src = pg.rows(&select(PG_TO_MY, |c| c.src_text)).await;
    let tgt = my.rows(&select(PG_TO_MY, |c| c.tgt_text)).await;
    same(PG_TO_MY, &src, &tgt);
    // The pairs that narrow are said once, by check, with both types.
    let out = agent.ok(&["check"]);
    assert!(
        out.contains("source column `tz` (timestamp with time zone) into exchange column `tz` (timestamp(6)): a MySQL timestamp holds only 1970-01-01 to 2038-01-19"),
        "{out}"
    );
    pg.drop().await;
    my.drop().await;
}

#[tokio::test]
async fn postgres_and_mariadb_types_arrive_at_sqlite_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pg = PgDb::new("mx_pg3").await;
    pg.exec(&ddl(PG_TO_LITE, |c| c.src, "int")).await;
    pg.exec(&inserts(PG_TO_LITE)).await;
    let lite = dir.path().join("a.sqlite");
    sqlite_exec(&lite, &ddl(PG_TO_LITE, |c| c.tgt, "INTEGER")).await;
    exchanged(&pg.url, &format!("sqlite://{}", lite.display()));
    let src = pg.rows(&select(PG_TO_LITE, |c| c.src_text)).await;
    let tgt = sqlite_rows(&lite, &select(PG_TO_LITE, |c| c.tgt_text)).await;
    same(PG_TO_LITE, &src, &tgt);

    let my = MyDb::new("mx_my3").await;
    my.exec(&ddl(MY_TO_LITE, |c| c.src, "int")).await;
    my.exec(&inserts(MY_TO_LITE)).await;
    let lite = dir.path().join("b.sqlite");
    sqlite_exec(&lite, &ddl(MY_TO_LITE, |c| c.tgt, "INTEGER")).await;
    exchanged(&my.url, &format!("sqlite://{}", lite.display()));
    let src = my.rows(&select(MY_TO_LITE, |c| c.src_text)).await;
    let tgt = sqlite_rows(&lite, &select(MY_TO_LITE, |c| c.tgt_text)).await;
    same(MY_TO_LITE, &src, &tgt);
    pg.drop().await;
    my.drop().await;
}

#[tokio::test]
async fn check_refuses_each_pair_that_holds_no_value_naming_both_types_and_what_works() {
    let (pg, my) = (PgDb::new("mx_no").await, MyDb::new("mx_no").await);
    pg.exec(
        "CREATE TABLE typed (id int PRIMARY KEY, bin bytea, day date, arr int[], raw bytea, \
         yes boolean, at timestamp, bits bit(8))",
    )
    .await;
    my.exec(
        "CREATE TABLE typed (id int PRIMARY KEY, bin longtext, day int, arr int, raw uuid, \
         yes date, at bit(8), bits date)",
    )
    .await;
    pg.exec("INSERT INTO typed (id) VALUES (1)").await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"typed\"\nwatermark = {{ kind = \"key\" }}\n",
        header(&pg.url, &my.url)
    ));
    let out = agent.run(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    for line in [
        "source column `bin` (bytea) cannot be stored in exchange column `bin` (longtext): binary values are not text — would work: a binary column (bytea, varbinary, blob)",
        "source column `day` (date) cannot be stored in exchange column `day` (int(11)): would work: an integer, decimal or text exchange column",
        "source column `arr` (integer[]) cannot be stored in exchange column `arr` (int(11)): would work: an integer, decimal or text exchange column",
        "source column `raw` (bytea) cannot be stored in exchange column `raw` (uuid): binary values are not uuid — would work: a binary exchange column",
        "source column `yes` (boolean) cannot be stored in exchange column `yes` (date): would work: a date source column, or a text exchange column",
        "source column `at` (timestamp without time zone) cannot be stored in exchange column `at` (bit(8)): would work: a bit or integer source column, or a text or binary exchange column instead of bit(8)",
        "source column `bits` (bit(8)) cannot be stored in exchange column `bits` (date): would work: a date source column, or a text exchange column",
    ] {
        assert!(
            stdout.contains(&format!("  - {line}")),
            "missing: {line}\n{stdout}"
        );
    }
    // `once` refuses the table too, and writes nothing.
    let out = agent.run(&["once"]);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(my.scalar_i64("SELECT COUNT(*) FROM typed").await, 0);
    pg.drop().await;
    my.drop().await;
}
