//! The exchange frequencies of DB23/T 2835 (7.2.2): `check` refuses a schedule that can leave a
//! longer gap than a table's category allows, and `report --month` tells, from the batch
//! ledger, what was exchanged each day and the longest gap.

use std::collections::BTreeMap;

use chrono::Utc;

use crate::common::{Agent, PgDb, header, sqlite_rows};

fn config(schedule: &str, jitter: &str) -> String {
    format!(
        "[agent]\nid = \"a\"\nstate_dir = \"{{dir}}/state\"\ntimezone = \"Asia/Shanghai\"\n\
         [source]\nurl = \"sqlite://{{dir}}/s.db\"\n[exchange]\nurl = \"sqlite://{{dir}}/e.db\"\n\
         [[table]]\nsource = \"t\"\nwatermark = {{ kind = \"key\" }}\n\
         schedule = \"{schedule}\"\njitter = \"{jitter}\"\ncategory = \"supervision_action\"\n"
    )
}

#[test]
fn a_daily_table_whose_jitter_can_exceed_a_day_is_refused() {
    let agent = Agent::new(&config("daily@01:30", "2h"));
    let out = agent.run(&["check", "--offline"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    for want in [
        ":12: table[0].schedule: table `t` holds supervision behaviour (监管行为) data",
        "requires at least daily",
        "with jitter 2h one run may start on its time and the next 2h later",
        "can exceed the limit of 1day",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    // An interval counts from the end of a cycle: as long as the limit is too long.
    let agent = Agent::new(&config("every:24h", "0s"));
    let out = agent.run(&["check", "--offline"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("count from the end of a cycle"), "{err}");
    // What always meets a day is taken.
    for (s, j) in [
        ("daily@01:30", "0s"),
        ("hourly", "30m"),
        ("every:23h", "0s"),
    ] {
        let agent = Agent::new(&config(s, j));
        agent.ok(&["check", "--offline"]);
    }
}

#[tokio::test]
async fn the_monthly_report_matches_the_batch_ledger() {
    let src = PgDb::new("report").await;
    let tgt = PgDb::new("report").await;
    let ddl = "CREATE TABLE t (id int PRIMARY KEY, v text, updated_at timestamp(6) NOT NULL DEFAULT localtimestamp)";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    src.exec("INSERT INTO t (id, v) SELECT g, 'v' || g FROM generate_series(1, 30) g")
        .await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nschedule = \"every:1h\"\nbatch_size = 8\n\
         category = \"supervision_action\"\n\
         rules = [ {{ column = \"v\", check = \"required\" }} ]\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\", lookback = \"1s\" }}\n",
        header(&src.url, &tgt.url)
    ));
    agent.ok(&["once"]);
    src.exec("INSERT INTO t (id, v) SELECT g, 'w' || g FROM generate_series(31, 40) g")
        .await;
    src.exec("UPDATE t SET v = 'changed', updated_at = localtimestamp WHERE id <= 3")
        .await;
    src.exec("INSERT INTO t (id, v) VALUES (41, NULL)").await;
    agent.ok(&["once"]);
    assert_eq!(tgt.scalar_i64("SELECT count(*) FROM t").await, 40);

    let tz: chrono_tz::Tz = "Asia/Shanghai".parse().expect("tz");
    let month = Utc::now().with_timezone(&tz).format("%Y-%m").to_string();
    // The ledger, per local day.
    let ledger = sqlite_rows(
        &agent.dir.path().join("state/state.db"),
        "SELECT finished, CAST(rows AS TEXT), CAST(deletes AS TEXT), CAST(rejected AS TEXT) FROM batches WHERE tbl = 't' AND status = 'acked'",
    )
    .await;
    assert!(
        ledger.len() >= 6,
        "30 and 13 rows in batches of 8: {ledger:?}"
    );
    let mut want: BTreeMap<String, [i64; 4]> = BTreeMap::new();
    for r in &ledger {
        let at = chrono::DateTime::parse_from_rfc3339(r[0].as_deref().expect("finished"))
            .expect("time")
            .with_timezone(&tz);
        if at.format("%Y-%m").to_string() != month {
            continue;
        }
        let e = want.entry(at.format("%Y-%m-%d").to_string()).or_default();
        let n = |i: usize| r[i].as_deref().expect("n").parse::<i64>().expect("int");
        e[0] += 1;
        e[1] += n(1);
        e[2] += n(2);
        e[3] += n(3);
    }
    assert_eq!(want.values().map(|v| v[1]).sum::<i64>(), 43, "{want:?}");
    assert_eq!(
        want.values().map(|v| v[3]).sum::<i64>(),
        1,
        "the row without v: {want:?}"
    );

    let csv = agent.ok(&["report", "--month", &month, "--csv"]);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let mut got: BTreeMap<String, [i64; 4]> = BTreeMap::new();
    let mut total = None;
    for rec in reader.records() {
        let rec = rec.expect("csv record");
        assert_eq!(&rec[0], "t");
        assert_eq!(&rec[1], "supervision_action");
        assert_eq!(&rec[10], "86400");
        let n = |i: usize| rec[i].parse::<i64>().expect("int");
        let row = [n(3), n(4), n(5), n(6)];
        if &rec[2] == "total" {
            // Two runs a few seconds apart: the longest gap is from the month's start (no
            // batch before) to the first, or the open one since the last.
            assert!(!rec[7].is_empty(), "{csv}");
            total = Some(row);
        } else if row != [0, 0, 0, 0] {
            got.insert(rec[2].to_owned(), row);
        }
    }
    assert_eq!(got, want, "{csv}");
    let sum = want.values().fold([0; 4], |mut a, v| {
        for i in 0..4 {
            a[i] += v[i];
        }
        a
    });
    assert_eq!(total, Some(sum), "{csv}");

    let text = agent.ok(&["report", "--month", &month]);
    assert!(
        text.contains("table t — category supervision_action, at least every 1day"),
        "{text}"
    );
    let bad = agent.run(&["report", "--month", "2026-13"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`2026-13` is not a month"));
    src.drop().await;
    tgt.drop().await;
}
