//! `translate`: local codes become the standard's on their way to the exchange — from a table
//! of the front-end database, a table of the exchange database, or a file — and an unknown
//! code refuses its row or passes, as configured.

use crate::common::{Agent, PgDb, header, rejects};

#[tokio::test]
async fn codes_are_translated_and_unknown_ones_refused_or_passed() {
    let src = PgDb::new("translate").await;
    let tgt = PgDb::new("translate").await;
    src.exec("CREATE TABLE t (id int PRIMARY KEY, kind text, form text, level text, updated_at timestamp(6) NOT NULL DEFAULT localtimestamp)").await;
    tgt.exec("CREATE TABLE t (id int PRIMARY KEY, kind text, form text, level text, updated_at timestamp(6))").await;
    src.exec("CREATE TABLE code_map (local_code text, code text); INSERT INTO code_map VALUES ('A', '01'), ('B', '02')").await;
    tgt.exec("CREATE TABLE form_map (loc text, std text); INSERT INTO form_map VALUES ('x', 'X1')")
        .await;
    src.exec(
        "INSERT INTO t (id, kind, form, level) VALUES \
         (1, 'A', 'x', '1'), (2, 'B', 'y', '1'), (3, 'Z', 'x', '1'), (4, 'A', 'x', '9'), (5, NULL, NULL, NULL)",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n\
         [table.translate]\n\
         kind = {{ table = \"code_map\" }}\n\
         form = {{ table = \"form_map\", database = \"exchange\", from = \"loc\", to = \"std\", unknown = \"pass\" }}\n\
         level = {{ file = \"levels.csv\" }}\n",
        header(&src.url, &tgt.url)
    ));
    std::fs::write(
        agent.dir.path().join("levels.csv"),
        "# local,standard\n1,L1\n2,L2\n",
    )
    .expect("levels");
    agent.ok(&["once"]);
    let sent = tgt
        .rows("SELECT id::text, kind, form, level FROM t ORDER BY id")
        .await;
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        sent,
        vec![
            vec![s("1"), s("01"), s("X1"), s("L1")],
            vec![s("2"), s("02"), s("y"), s("L1")],
            vec![s("5"), None, None, None],
        ]
    );
    let open = rejects(&agent, &["--table", "t"]);
    let text = serde_json::to_string(&open).expect("json");
    assert_eq!(open.len(), 2, "{text}");
    assert!(
        text.contains("translate kind: code `Z` is not in the translation"),
        "{text}"
    );
    assert!(
        text.contains("translate level: code `9` is not in the translation"),
        "{text}"
    );

    let bad = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nwatermark = {{ kind = \"key\" }}\n\
         translate = {{ kind = {{ map = {{ A = \"01\" }}, table = \"code_map\" }}, \
         form = {{ map = {{ x = \"X1\" }}, unknown = \"maybe\", from = \"loc\" }} }}\n",
        header(&src.url, &tgt.url)
    ));
    let out = bad.run(&["check", "--offline"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    for want in [
        "table[0].translate.kind: give exactly one of map, file or table",
        "table[0].translate.form.unknown: `maybe` is not reject or pass",
        "table[0].translate.form.from: goes with table",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    src.drop().await;
    tgt.drop().await;
}
