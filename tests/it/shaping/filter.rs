//! A table's scope (`filter`): only rows of the department's jurisdiction are read and sent,
//! in every watermark mode; a row that moves out of scope is never sent again, and a full
//! resync (or, for a digest table, the next cycle) removes it from the exchange, as it
//! removes rows deleted at the source. Both sides compared row by row after every step.

use crate::common::{Agent, MyDb, PgDb};

/// `id region_code name` of each row of `sql`'s answer.
async fn pg_lines(db: &PgDb, sql: &str) -> Vec<String> {
    db.rows(sql)
        .await
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(Option::unwrap_or_default)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

async fn my_lines(db: &MyDb, sql: &str) -> Vec<String> {
    db.rows(sql)
        .await
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(Option::unwrap_or_default)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

const IN_SCOPE: &str =
    "SELECT id::text, region_code, name FROM t WHERE region_code LIKE '2301%' ORDER BY id";
const ALL: &str = "SELECT id::text, region_code, name FROM t ORDER BY id";

fn config(src: &str, tgt: &str, table: &str) -> String {
    format!(
        "[agent]\nid = \"230100-SCOPE\"\nstate_dir = \"{{dir}}/state\"\ntimezone = \"Asia/Shanghai\"\n\
         [source]\nurl = \"{src}\"\n[exchange]\nurl = \"{tgt}\"\n[[table]]\nsource = \"t\"\n{table}"
    )
}

#[tokio::test]
async fn a_prefix_scope_holds_through_moves_and_a_resync() {
    let src = PgDb::new("scope_ts").await;
    let tgt = PgDb::new("scope_ts").await;
    let ddl = "CREATE TABLE t (id int PRIMARY KEY, region_code varchar(6), name text, \
               updated_at timestamp(0) NOT NULL);";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    src.exec(
        "INSERT INTO t VALUES (1, '230102', 'a', '2026-11-01 08:00:01'), \
         (2, '230103', 'b', '2026-11-01 08:00:02'), (3, '230201', 'c', '2026-11-01 08:00:03'), \
         (4, '110101', 'd', '2026-11-01 08:00:04'), (5, '230104', 'e', '2026-11-01 08:00:05'), \
         (6, '2302', 'f', '2026-11-01 08:00:06'), (7, NULL, 'g', '2026-11-01 08:00:07'), \
         (8, '2301', 'h', '2026-11-01 08:00:08')",
    )
    .await;
    let agent = Agent::new(&config(
        &src.url,
        &tgt.url,
        "watermark = { kind = \"timestamp\", column = \"updated_at\", lookback = \"0s\" }\n\
         filter = { column = \"region_code\", prefix = \"2301\" }\n",
    ));
    let out = agent.ok(&["once"]);
    assert!(out.contains("t: 4 row(s) sent"), "{out}");
    assert_eq!(pg_lines(&tgt, ALL).await, pg_lines(&src, IN_SCOPE).await);
    assert_eq!(pg_lines(&tgt, ALL).await.len(), 4);

    // Row 1 moves out of scope, row 3 into it, row 2 changes, row 5 is deleted.
    src.exec(
        "UPDATE t SET region_code = '230201', name = 'a moved', updated_at = '2026-11-02 08:00:01' WHERE id = 1; \
         UPDATE t SET region_code = '230105', updated_at = '2026-11-02 08:00:03' WHERE id = 3; \
         UPDATE t SET name = 'b2', updated_at = '2026-11-02 08:00:02' WHERE id = 2; \
         DELETE FROM t WHERE id = 5;",
    )
    .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("t: 2 row(s) sent"), "{out}");
    // The row that left the scope was not sent in its new version: the exchange keeps the
    // last one it was sent, and the deleted row, until a full resync.
    assert_eq!(
        pg_lines(&tgt, ALL).await,
        vec![
            "1 230102 a",
            "2 230103 b2",
            "3 230105 c",
            "5 230104 e",
            "8 2301 h"
        ]
    );
    agent.ok(&["resync"]);
    let resync = &agent.status_json()["tables"][0]["resync"];
    assert_eq!(
        (&resync["total"], &resync["deleted"]),
        (&3.into(), &2.into()),
        "the rows in scope, and the two that left: {resync}"
    );
    assert_eq!(pg_lines(&tgt, ALL).await, pg_lines(&src, IN_SCOPE).await);
    assert_eq!(
        pg_lines(&tgt, ALL).await,
        vec!["2 230103 b2", "3 230105 c", "8 2301 h"]
    );
    // Nothing out of scope came back with the resync.
    let out = agent.ok(&["once"]);
    assert!(out.contains("t: 0 row(s) sent"), "{out}");
    assert_eq!(pg_lines(&tgt, ALL).await, pg_lines(&src, IN_SCOPE).await);
}

#[tokio::test]
async fn a_list_scope_on_a_digest_table_removes_what_leaves_it() {
    let src = MyDb::new("scope_dg").await;
    let tgt = MyDb::new("scope_dg").await;
    let ddl = "CREATE TABLE t (id int PRIMARY KEY, region_code varchar(6), name varchar(20))";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    src.exec(
        "INSERT INTO t VALUES (1, '230102', 'a'), (2, '230103', 'b'), (3, '230201', 'c'), \
         (4, '110101', 'd'), (5, '230102', 'e'), (6, '2301', 'f')",
    )
    .await;
    let agent = Agent::new(&config(
        &src.url,
        &tgt.url,
        "watermark = { kind = \"digest\" }\n\
         filter = { column = \"region_code\", in = [\"230102\", \"230103\"] }\n",
    ));
    let scoped = "SELECT CAST(id AS CHAR), region_code, name FROM t \
                  WHERE region_code IN ('230102', '230103') ORDER BY id";
    let all = "SELECT CAST(id AS CHAR), region_code, name FROM t ORDER BY id";
    agent.ok(&["once"]);
    assert_eq!(my_lines(&tgt, all).await, my_lines(&src, scoped).await);
    assert_eq!(my_lines(&tgt, all).await.len(), 3);

    src.exec("UPDATE t SET region_code = '230201' WHERE id = 1")
        .await;
    src.exec("UPDATE t SET region_code = '230103', name = 'd in' WHERE id = 4")
        .await;
    src.exec("DELETE FROM t WHERE id = 2").await;
    src.exec("UPDATE t SET name = 'e2' WHERE id = 5").await;
    agent.ok(&["once"]);
    assert_eq!(
        my_lines(&tgt, all).await,
        vec!["4 230103 d in", "5 230102 e2"]
    );
    assert_eq!(my_lines(&tgt, all).await, my_lines(&src, scoped).await);
    agent.ok(&["resync"]);
    assert_eq!(my_lines(&tgt, all).await, my_lines(&src, scoped).await);
}

#[tokio::test]
async fn a_scope_holds_in_the_key_control_and_flag_modes() {
    let src = PgDb::new("scope_modes").await;
    let tgt = PgDb::new("scope_modes").await;
    let rows = "(1, '230102', 'a'), (2, '230201', 'b'), (3, '230103', 'c'), (4, '110101', 'd')";
    for (mode, src_ddl, tgt_ddl, insert, watermark) in [
        (
            "key",
            "CREATE TABLE t (id int PRIMARY KEY, region_code varchar(6), name text)",
            "CREATE TABLE t (id int PRIMARY KEY, region_code varchar(6), name text)",
            format!("INSERT INTO t VALUES {rows}"),
            "{ kind = \"key\" }",
        ),
        (
            "control",
            "CREATE TABLE t (id int PRIMARY KEY, region_code varchar(6), name text, \
             cd_operation char(1) NOT NULL, cd_time timestamp(3) NOT NULL)",
            "CREATE TABLE t (id int PRIMARY KEY, region_code varchar(6), name text, \
             cd_operation char(1), cd_time timestamp(3))",
            format!(
                "INSERT INTO t SELECT id, r, n, 'I', timestamp '2026-11-01 08:00' + id * interval '1 second' \
                 FROM (VALUES {rows}) v(id, r, n)"
            ),
            "{ kind = \"control\", lookback = \"0s\" }",
        ),
        (
            "flag",
            "CREATE TABLE t (id int PRIMARY KEY, region_code varchar(6), name text, \
             sync_sign int NOT NULL DEFAULT 0)",
            "CREATE TABLE t (id int PRIMARY KEY, region_code varchar(6), name text)",
            format!("INSERT INTO t (id, region_code, name) VALUES {rows}"),
            "{ kind = \"flag\", column = \"sync_sign\" }",
        ),
    ] {
        src.exec(&format!("DROP TABLE IF EXISTS t; {src_ddl}"))
            .await;
        tgt.exec(&format!("DROP TABLE IF EXISTS t; {tgt_ddl}"))
            .await;
        src.exec(&insert).await;
        let agent = Agent::new(&config(
            &src.url,
            &tgt.url,
            &format!(
                "watermark = {watermark}\nfilter = {{ column = \"region_code\", prefix = \"2301\" }}\n"
            ),
        ));
        agent.ok(&["once"]);
        assert_eq!(
            pg_lines(&tgt, ALL).await,
            pg_lines(&src, IN_SCOPE).await,
            "{mode}"
        );
        assert_eq!(pg_lines(&tgt, ALL).await.len(), 2, "{mode}");
        match mode {
            "key" => src.exec("INSERT INTO t VALUES (5, '230104', 'e'), (6, '230202', 'f')").await,
            "control" => {
                src.exec(
                    "INSERT INTO t VALUES (5, '230104', 'e', 'I', '2026-11-02 08:00'), \
                     (6, '230202', 'f', 'I', '2026-11-02 08:00:01'); \
                     UPDATE t SET cd_operation = 'D', cd_time = '2026-11-02 08:00:02' WHERE id IN (1, 2)",
                )
                .await
            }
            _ => {
                src.exec("INSERT INTO t (id, region_code, name) VALUES (5, '230104', 'e'), (6, '230202', 'f')")
                    .await;
                assert_eq!(
                    pg_lines(&src, "SELECT id::text, sync_sign::text FROM t ORDER BY id").await,
                    vec!["1 1", "2 0", "3 1", "4 0", "5 0", "6 0"],
                    "rows out of scope are left waiting, never sent"
                );
            }
        }
        agent.ok(&["once"]);
        let want: Vec<String> = pg_lines(&src, IN_SCOPE)
            .await
            .into_iter()
            .filter(|l| !(mode == "control" && l.starts_with("1 ")))
            .collect();
        assert_eq!(pg_lines(&tgt, ALL).await, want, "{mode}");
        assert!(pg_lines(&tgt, ALL).await.len() >= 2, "{mode}");
    }
}

/// A prefix's `_` and `%` match themselves on every engine (`23_1` is not `2301`), and a
/// quote in it is bound, not spliced: PostgreSQL, MariaDB and SQLite sources.
#[tokio::test]
async fn a_prefix_with_wildcard_characters_matches_them_literally() {
    let tgt = PgDb::new("scope_lit").await;
    let rows = "(1, '23_1xx', 'a'), (2, '2301xx', 'b'), (3, '23_1', 'c'), (4, '23x1', 'd'), \
                (5, '2''_1', 'e'), (6, '23%1', 'f')";
    let ddl = "CREATE TABLE t (id int PRIMARY KEY, region_code varchar(6), name varchar(20))";
    let filter = "watermark = { kind = \"key\" }\nfilter = { column = \"region_code\", prefix = \"23_1\" }\n";
    let want = vec!["1 23_1xx a".to_owned(), "3 23_1 c".to_owned()];
    let pg = PgDb::new("scope_lit").await;
    pg.exec(&format!("{ddl}; INSERT INTO t VALUES {rows}"))
        .await;
    let my = MyDb::new("scope_lit").await;
    my.exec(ddl).await;
    my.exec(&format!("INSERT INTO t VALUES {rows}")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let lite = dir.path().join("src.db");
    crate::common::sqlite_exec(&lite, &format!("{ddl}; INSERT INTO t VALUES {rows}")).await;
    for src in [
        pg.url.clone(),
        my.url.clone(),
        format!("sqlite://{}", lite.display()),
    ] {
        tgt.exec(&format!("DROP TABLE IF EXISTS t; {ddl}")).await;
        let agent = Agent::new(&config(&src, &tgt.url, filter));
        agent.ok(&["once"]);
        assert_eq!(pg_lines(&tgt, ALL).await, want, "{src}");
    }
    // A quote in a prefix is a value like any other.
    tgt.exec(&format!("DROP TABLE IF EXISTS t; {ddl}")).await;
    let agent = Agent::new(&config(
        &pg.url,
        &tgt.url,
        "watermark = { kind = \"key\" }\nfilter = { column = \"region_code\", prefix = \"2'\" }\n",
    ));
    agent.ok(&["once"]);
    assert_eq!(pg_lines(&tgt, ALL).await, vec!["5 2'_1 e"]);
}
