//! Telling the province of a full resync: a notice row at the exchange when it starts and
//! when it ends (also across a kill -9 in between), and the resync's batches marked full
//! while increments are marked as such, under batch numbers of their own.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::{self, Agent, Daemon, MyDb, PgDb, header};

const FRONT_DDL: &str = "CREATE TABLE up_report (id int PRIMARY KEY, v varchar(100) NOT NULL, \
     updated_at datetime(6) NOT NULL)";
const EXCHANGE_DDL: &str = "CREATE TABLE up_report (id int PRIMARY KEY, v text NOT NULL, \
     updated_at timestamp(6) NOT NULL, cd_operation varchar(1), cd_time timestamptz, \
     cd_batch varchar(32), cd_full varchar(10)); \
     CREATE TABLE exchange_resync_notice (resync_id varchar(120) PRIMARY KEY, \
     table_name text NOT NULL, status varchar(10) NOT NULL, agent_id text, reason text, \
     started_at timestamptz, finished_at timestamptz, row_count bigint)";

fn config(f: &MyDb, x: &PgDb) -> String {
    format!(
        "{}\n[resync]\nnotice = \"table\"\nfull_column = \"cd_full\"\n\n\
         [[table]]\nname = \"up\"\nsource = \"up_report\"\nschedule = \"every:1s\"\n\
         batch_size = 1000\nwatermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n",
        header(&f.url, &x.url).replace("Asia/Shanghai", "UTC")
    )
}

const NOTICE: &str = "SELECT table_name, status, row_count::text, (finished_at IS NULL)::text, \
     (started_at <= coalesce(finished_at, started_at))::text FROM exchange_resync_notice";

async fn batches(x: &PgDb, mark: &str) -> HashSet<String> {
    x.rows(&format!(
        "SELECT DISTINCT cd_batch FROM up_report WHERE cd_full = '{mark}'"
    ))
    .await
    .into_iter()
    .filter_map(|r| r.into_iter().next().flatten())
    .collect()
}

#[tokio::test]
async fn a_resync_tells_its_start_and_end_and_marks_its_batches_full() {
    let x = PgDb::new("notice").await;
    let f = MyDb::new("notice").await;
    x.exec(EXCHANGE_DDL).await;
    f.exec(FRONT_DDL).await;
    f.exec(
        "INSERT INTO up_report SELECT seq, CONCAT('r', seq), '2026-01-01' + INTERVAL seq SECOND \
         FROM seq_1_to_60000",
    )
    .await;
    let agent = Agent::new(&config(&f, &x));
    agent.ok(&["once"]);
    let increments = batches(&x, "increment").await;
    assert_eq!(
        x.scalar_i64("SELECT count(*) FROM up_report WHERE cd_full = 'increment'")
            .await,
        60_000
    );
    assert!(x.rows(NOTICE).await.is_empty());
    // The resync is killed after it told its start, and resumed.
    let d = Daemon::start(&agent, &["--full-resync"]);
    common::wait_for("the start notice", Duration::from_secs(60), async || {
        !x.rows(NOTICE).await.is_empty()
    })
    .await;
    d.kill();
    let started = x.rows(NOTICE).await;
    let row = |status: &str, count: &str, open: &str| {
        vec![vec![
            Some("up_report".to_string()),
            Some(status.to_string()),
            Some(count.to_string()),
            Some(open.to_string()),
            Some("true".to_string()),
        ]]
    };
    assert_eq!(started, row("started", "60000", "true"));
    let d = Daemon::start(&agent, &[]);
    common::wait_for("the end notice", Duration::from_secs(120), async || {
        x.rows(NOTICE).await == row("finished", "60000", "false")
    })
    .await;
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
    // Every row went again in the resync, marked full, under new batch numbers.
    assert_eq!(
        x.scalar_i64("SELECT count(*) FROM up_report WHERE cd_full = 'full'")
            .await,
        60_000
    );
    let full = batches(&x, "full").await;
    assert!(full.is_disjoint(&increments), "{full:?} {increments:?}");
    // An increment after it is marked as one again.
    f.exec("UPDATE up_report SET v = 'changed', updated_at = '2027-01-01' WHERE id = 7")
        .await;
    agent.ok(&["once"]);
    assert_eq!(
        x.rows("SELECT v, cd_full FROM up_report WHERE id = 7")
            .await,
        vec![vec![Some("changed".into()), Some("increment".into())]]
    );
    x.drop().await;
    f.drop().await;
}

#[tokio::test]
async fn over_http_the_notices_are_posted_and_the_batches_carry_the_full_field() {
    let pg = PgDb::new("notice_http").await;
    pg.exec(
        "CREATE TABLE t (id int PRIMARY KEY, name text, updated_at timestamp(0) NOT NULL); \
         INSERT INTO t SELECT i, 'name ' || i, '2026-01-01'::timestamp + i * interval '1 second' \
         FROM generate_series(1, 25) i",
    )
    .await;
    let sim = crate::http::Sim::start(
        "[auth]\nkind = \"hmac-sha256\"\napp_key = \"dept-1\"\napp_secret = \"${env:SIM_SECRET}\"\n\
         [[table]]\nname = \"t\"\nversion = \"updated_at\"\n",
    );
    let agent = Agent::new(&format!(
        "[agent]\nid = \"230000-HTTP\"\nstate_dir = \"{{dir}}/state\"\ntimezone = \"UTC\"\n\
         [source]\nurl = \"{}\"\n\
         [exchange]\nkind = \"http\"\nurl = \"{}/exchange/{{table}}\"\n\
         [exchange.auth]\nkind = \"hmac-sha256\"\napp_key = \"dept-1\"\napp_secret = \"sim-secret-value\"\n\
         [resync]\nnotice = \"http\"\nnotice_url = \"{}/notice\"\nfull_field = \"update_type\"\n\
         [[table]]\nsource = \"t\"\nbatch_size = 10\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\", lookback = \"0s\" }}\n",
        pg.url, sim.base, sim.base
    ));
    agent.ok(&["once"]);
    agent.ok(&["resync"]);
    let marks = common::sqlite_rows(
        &sim.store(),
        "SELECT json_extract(fields, '$.update_type'), CAST(count(*) AS TEXT), \
         CAST(count(DISTINCT json_extract(fields, '$.cd_batch')) AS TEXT) \
         FROM envelopes GROUP BY 1 ORDER BY 1",
    )
    .await;
    // Three batches of increments and three of the resync, each under its own number.
    assert_eq!(
        marks,
        vec![
            vec![Some("full".into()), Some("3".into()), Some("3".into())],
            vec![Some("increment".into()), Some("3".into()), Some("3".into())],
        ]
    );
    let notices: Vec<serde_json::Value> =
        common::sqlite_rows(&sim.store(), "SELECT body FROM notices ORDER BY seq")
            .await
            .into_iter()
            .filter_map(|r| r[0].as_deref().and_then(|b| serde_json::from_str(b).ok()))
            .collect();
    assert_eq!(notices.len(), 2, "{notices:?}");
    let (start, end) = (&notices[0], &notices[1]);
    assert_eq!(
        (&start["status"], &start["row_count"], &start["table_name"]),
        (&"started".into(), &25.into(), &"t".into()),
        "{notices:?}"
    );
    assert_eq!(
        (&end["status"], &end["row_count"]),
        (&"finished".into(), &25.into()),
        "{notices:?}"
    );
    assert_eq!(start["resync_id"], end["resync_id"]);
    assert_eq!(start["started_at"], end["started_at"]);
    assert!(end["finished_at"].is_string(), "{notices:?}");
    pg.drop().await;
}
