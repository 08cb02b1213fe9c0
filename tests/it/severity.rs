//! Quality rules with `severity = "warn"`: the row is sent, and the finding is logged and
//! reported in `status`; a `block` rule (the default) still quarantines its rows.

use crate::common::{Agent, PgDb, header, rejects};

#[tokio::test]
async fn a_warn_rule_sends_the_row_and_reports_the_finding() {
    let src = PgDb::new("severity").await;
    let tgt = PgDb::new("severity").await;
    let ddl = "CREATE TABLE t (id int PRIMARY KEY, v text, updated_at timestamp(6) NOT NULL DEFAULT localtimestamp)";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    src.exec("INSERT INTO t (id, v) VALUES (1, 'ok'), (2, 'far too long'), (3, NULL)")
        .await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n\
         rules = [ {{ id = \"W1\", column = \"v\", check = \"max_length\", max = 5, severity = \"warn\" }},\n\
                   {{ id = \"B1\", column = \"v\", check = \"required\" }} ]\n",
        header(&src.url, &tgt.url)
    ));
    let (_, log) = agent.ok_logged(&["once"], "warn");
    let sent = tgt.rows("SELECT id::text, v FROM t ORDER BY id").await;
    assert_eq!(
        sent,
        vec![
            vec![Some("1".into()), Some("ok".into())],
            vec![Some("2".into()), Some("far too long".into())],
        ],
        "the warned row is sent, the blocked one is not"
    );
    assert!(
        log.contains("sent with a finding of a warn rule: row 2: [W1] v:"),
        "{log}"
    );
    let open = rejects(&agent, &["--table", "t"]);
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(open[0].to_string().contains("B1"), "{open:?}");
    let st = agent.status_json();
    let warnings = st["tables"][0]["warnings"].to_string();
    assert!(
        warnings.contains("1 row(s) were sent with findings of warn rules")
            && warnings.contains("[W1]"),
        "{st}"
    );
    let bad = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nwatermark = {{ kind = \"key\" }}\n\
         rules = [ {{ column = \"v\", check = \"required\", severity = \"maybe\" }} ]\n",
        header(&src.url, &tgt.url)
    ));
    let out = bad.run(&["check", "--offline"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("table[0].rules[0].severity: `maybe` is not a severity: use block or warn"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    src.drop().await;
    tgt.drop().await;
}
