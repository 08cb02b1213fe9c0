//! Never lose, never duplicate: rows the exchange refuses, exchange outages, timeouts and
//! serialization failures at the exchange, SIGTERM during a large batch, and SIGKILL at
//! random moments while another connection keeps writing (long transactions are in
//! long_transactions.rs).

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, Agent, MyDb, PgDb, header, refuse_connections, wait_for};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sqlx::{Connection, Row};

fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

/// Wait for the daemon to exit; its exit code and log.
async fn exit_of(mut child: Child, timeout: Duration) -> (Option<i32>, String) {
    let start = Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s.code();
        }
        assert!(
            start.elapsed() < timeout,
            "the agent did not stop within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = child.wait_with_output().expect("output");
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn spawn_run(agent: &Agent) -> Child {
    agent
        .command()
        .env("FRONTDB_LOG", "info")
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn run")
}

const CHECKSUM: &str = "SELECT count(*)::text || ':' || coalesce(md5(string_agg(id || '|' || v || '|' || n || '|' || \
     to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS.US'), ',' ORDER BY id)), '') FROM t";

#[tokio::test]
async fn rows_the_exchange_refuses_are_isolated_and_the_rest_arrive_postgres() {
    let src = PgDb::new("refuse").await;
    let tgt = PgDb::new("refuse").await;
    src.exec("CREATE TABLE t (id int PRIMARY KEY, amount numeric(10,2), name text, updated_at timestamp(6) NOT NULL)").await;
    tgt.exec(
        "CREATE TABLE t (id int PRIMARY KEY, amount numeric(10,2) CONSTRAINT amount_not_negative CHECK (amount >= 0), \
         name text, updated_at timestamp(6) NOT NULL)",
    )
    .await;
    // 1% of the rows carry a negative amount the exchange refuses.
    src.exec(
        "INSERT INTO t SELECT g, CASE WHEN g % 100 = 7 THEN -1 ELSE g END, '名称 ' || g, \
         '2026-01-01'::timestamp + g * interval '1 ms' FROM generate_series(1, 10000) g",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nbatch_size = 2500\nwatermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n",
        header(&src.url, &tgt.url)
    ));
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("t: 9900 row(s) sent, 0 deleted, 100 quarantined"),
        "{out}"
    );
    assert_eq!(tgt.scalar_i64("SELECT count(*) FROM t").await, 9900);
    assert_eq!(
        tgt.scalar_i64("SELECT count(*) FROM t WHERE id % 100 = 7")
            .await,
        0
    );
    let good = "SELECT md5(string_agg(id || amount::text || name, ',' ORDER BY id)) FROM t WHERE id % 100 <> 7";
    assert_eq!(src.rows(good).await, tgt.rows(good).await);
    let rejects: serde_json::Value =
        serde_json::from_str(&agent.ok(&["rejects", "list", "--json"])).expect("json");
    let rejects = rejects.as_array().expect("array");
    assert_eq!(rejects.len(), 100);
    let mut keys: Vec<i64> = rejects
        .iter()
        .map(|r| r["key"].as_str().and_then(|k| k.parse().ok()).expect("key"))
        .collect();
    keys.sort();
    assert_eq!(keys, (0..100).map(|i| i * 100 + 7).collect::<Vec<i64>>());
    for r in rejects {
        assert_eq!(r["origin"], "target");
        let why = r["reasons"][0].as_str().unwrap_or_default();
        assert!(why.contains("amount_not_negative"), "{why}");
    }
    let shown = agent.ok(&["rejects", "show", &rejects[0]["id"].to_string()]);
    assert!(
        shown.contains("violates check constraint") && shown.contains("amount = -1.00"),
        "{shown}"
    );
    // Corrected at the source, the rows are sent again and arrive.
    src.exec("UPDATE t SET amount = 0, updated_at = '2026-02-01' WHERE id % 100 = 7")
        .await;
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("t: 100 row(s) sent, 0 deleted, 0 quarantined"),
        "{out}"
    );
    assert_eq!(
        src.rows(
            CHECKSUM
                .replace("v || '|' || n", "amount || '|' || name")
                .as_str()
        )
        .await,
        tgt.rows(
            CHECKSUM
                .replace("v || '|' || n", "amount || '|' || name")
                .as_str()
        )
        .await
    );
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn rows_the_exchange_refuses_are_isolated_and_the_rest_arrive_mariadb() {
    let src = PgDb::new("refuse").await;
    let tgt = MyDb::new("refuse").await;
    src.exec(
        "CREATE TABLE t (id int PRIMARY KEY, code varchar(20), updated_at timestamp(6) NOT NULL)",
    )
    .await;
    tgt.exec("CREATE TABLE parent (code varchar(20) PRIMARY KEY)")
        .await;
    tgt.exec(
        "CREATE TABLE t (id int PRIMARY KEY, code varchar(20) NOT NULL, updated_at datetime(6) NOT NULL, \
         CONSTRAINT t_code FOREIGN KEY (code) REFERENCES parent (code))",
    )
    .await;
    tgt.exec("INSERT INTO parent VALUES ('A'), ('B')").await;
    src.exec(
        "INSERT INTO t SELECT g, CASE WHEN g % 100 = 0 THEN 'UNKNOWN' WHEN g % 2 = 0 THEN 'A' ELSE 'B' END, \
         '2026-01-01'::timestamp + g * interval '1 ms' FROM generate_series(1, 3000) g",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nbatch_size = 1000\nwatermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n",
        header(&src.url, &tgt.url)
    ));
    let out = agent.ok(&["once"]);
    assert!(
        out.contains("t: 2970 row(s) sent, 0 deleted, 30 quarantined"),
        "{out}"
    );
    assert_eq!(tgt.scalar_i64("SELECT COUNT(*) FROM t").await, 2970);
    let rejects: serde_json::Value =
        serde_json::from_str(&agent.ok(&["rejects", "--json"])).expect("json");
    assert_eq!(rejects.as_array().map(Vec::len), Some(30), "{rejects}");
    for r in rejects.as_array().expect("array") {
        let why = r["reasons"][0].as_str().unwrap_or_default();
        assert!(why.contains("foreign key constraint fails"), "{why}");
        assert!(r["key"].as_str().is_some_and(|k| k.ends_with("00")), "{r}");
    }
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn the_daemon_rides_out_an_exchange_outage_and_catches_up() {
    let (src, tgt, agent) = polled_t("outage", 100, "before", ", lookback = \"30s\"", |h| {
        h.replace("Asia/Shanghai", "UTC").replace(
            "department_code = \"SCJGJ\"",
            "department_code = \"SCJGJ\"\nretry_max = \"2s\"",
        )
    })
    .await;
    let child = spawn_run(&agent);
    wait_for(
        "the first rows at the exchange",
        Duration::from_secs(20),
        async || tgt.scalar_i64("SELECT count(*) FROM t").await == 100,
    )
    .await;
    let watermark = agent.status_json()["tables"][0]["watermark"].clone();
    // The exchange goes away under the running daemon: its sessions are terminated and new
    // ones refused. Rows keep arriving at the source during the 15-second outage.
    refuse_connections(&tgt.name, true).await;
    let outage = Instant::now();
    let mut id = 100;
    while outage.elapsed() < Duration::from_secs(15) {
        for _ in 0..5 {
            id += 1;
            src.exec(&format!(
                "INSERT INTO t (id, v) VALUES ({id}, 'during {id}')"
            ))
            .await;
        }
        // Rows keep arriving at a steady pace for the whole outage: the scenario, not a wait.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = agent.status_json();
    let t = &status["tables"][0];
    assert_eq!(t["last_outcome"], "failed", "{status}");
    assert!(t["failures"].as_i64().is_some_and(|f| f >= 3), "{status}");
    assert!(t["failing_since"].is_string(), "{status}");
    let err = t["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("not currently accepting connections") || err.contains("terminat"),
        "{err}"
    );
    // Nothing counted as delivered, and the watermark stayed where the exchange last
    // acknowledged it.
    assert_eq!(t["rows_total"], 100, "{status}");
    assert_eq!(t["watermark"], watermark, "{status}");
    refuse_connections(&tgt.name, false).await;
    let back = Instant::now();
    wait_for(
        "every row at the exchange after it came back",
        Duration::from_secs(20),
        async || tgt.scalar_i64("SELECT count(*) FROM t").await == i64::from(id),
    )
    .await;
    let caught_up = back.elapsed();
    assert!(
        caught_up < Duration::from_secs(8),
        "caught up only after {caught_up:?}"
    );
    assert_eq!(src.rows(CHECKSUM).await, tgt.rows(CHECKSUM).await);
    wait_for(
        "status to show the recovery",
        Duration::from_secs(10),
        async || {
            let s = agent.status_json();
            s["tables"][0]["last_outcome"] == "ok" && s["tables"][0]["failures"] == 0
        },
    )
    .await;
    signal(&child, "-TERM");
    let (code, log) = exit_of(child, Duration::from_secs(15)).await;
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("table recovered after"), "{log}");
    eprintln!("caught up {caught_up:?} after the exchange came back");
    src.drop().await;
    tgt.drop().await;
}

/// A source and an exchange database, each with table `t` (its change time stamped by the
/// server), `rows` rows at the source (`v` = `label` and the id), and an agent polling `t`
/// every second by that change time (`watermark` adds to its watermark table); `edit` changes
/// the config's header.
async fn polled_t(
    tag: &str,
    rows: i32,
    label: &str,
    watermark: &str,
    edit: impl Fn(String) -> String,
) -> (PgDb, PgDb, Agent) {
    let src = PgDb::new(tag).await;
    let tgt = PgDb::new(tag).await;
    let ddl = "CREATE TABLE t (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0, \
               updated_at timestamp(6) NOT NULL DEFAULT (clock_timestamp() AT TIME ZONE 'UTC'))";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    src.exec(&format!(
        "INSERT INTO t (id, v) SELECT g, '{label} ' || g FROM generate_series(1, {rows}) g"
    ))
    .await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nschedule = \"every:1s\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\"{watermark} }}\n",
        edit(header(&src.url, &tgt.url))
    ));
    (src, tgt, agent)
}

/// Another session with a transaction left open after `sql`.
async fn open_transaction(url: &str, sql: &str) -> sqlx::PgConnection {
    let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
    for q in ["BEGIN", sql] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(q.to_owned()))
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    }
    c
}

#[tokio::test]
async fn a_write_blocked_at_the_exchange_times_out_and_is_retried() {
    let (src, tgt, agent) = polled_t("stmt", 50, "row", "", |h| {
        h.replace(
            "department_code = \"SCJGJ\"",
            "department_code = \"SCJGJ\"\nretry_max = \"1s\"",
        )
        .replace("[exchange]", "[exchange]\nstatement_timeout = \"1s\"")
    })
    .await;
    // Someone holds a lock on the exchange table, as a long maintenance job would.
    let mut blocker = open_transaction(&tgt.url, "LOCK TABLE t IN ACCESS EXCLUSIVE MODE").await;
    let child = spawn_run(&agent);
    wait_for(
        "a write cancelled by the statement timeout",
        Duration::from_secs(30),
        async || {
            let s = agent.status_json();
            s["tables"][0]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("statement timeout"))
        },
    )
    .await;
    let t = agent.status_json()["tables"][0].clone();
    assert_eq!(t["rows_total"], 0, "{t}");
    sqlx::query("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("rollback");
    wait_for(
        "every row once the lock is gone",
        Duration::from_secs(20),
        async || tgt.scalar_i64("SELECT count(*) FROM t").await == 50,
    )
    .await;
    assert_eq!(src.rows(CHECKSUM).await, tgt.rows(CHECKSUM).await);
    signal(&child, "-TERM");
    let (code, log) = exit_of(child, Duration::from_secs(15)).await;
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("canceling statement due to statement timeout"),
        "{log}"
    );
    assert!(log.contains("table recovered after"), "{log}");
    drop(blocker);
    src.drop().await;
    tgt.drop().await;
}

/// A serialization failure at the exchange: its sessions run at REPEATABLE READ, and another
/// session updates a row the batch is about to replace and commits while the batch waits
/// for it. The batch is rolled back and tried again at once, and nothing is lost.
#[tokio::test]
async fn a_serialization_failure_at_the_exchange_is_retried_at_once() {
    let src = PgDb::new("serial").await;
    let tgt = PgDb::new("serial").await;
    let ddl = "CREATE TABLE t (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0, updated_at timestamp(6) NOT NULL)";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    src.exec(
        "INSERT INTO t (id, v, updated_at) SELECT g, 'row ' || g, '2026-03-01'::timestamp + g * interval '1 s' \
         FROM generate_series(1, 20) g",
    )
    .await;
    tgt.exec("INSERT INTO t (id, v, updated_at) VALUES (1, 'old', '2026-01-01')")
        .await;
    common::pg_admin(&format!(
        "ALTER DATABASE \"{}\" SET default_transaction_isolation TO 'repeatable read'",
        tgt.name
    ))
    .await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nschedule = \"every:1s\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n",
        header(&src.url, &tgt.url)
    ));
    let mut other = open_transaction(&tgt.url, "UPDATE t SET n = n + 1 WHERE id = 1").await;
    let child = spawn_run(&agent);
    wait_for(
        "the batch waiting for the other session's row",
        Duration::from_secs(30),
        async || {
            tgt.scalar_i64(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND wait_event_type = 'Lock'",
                tgt.name
            ))
            .await
                == 1
        },
    )
    .await;
    sqlx::query("COMMIT")
        .execute(&mut other)
        .await
        .expect("commit");
    wait_for(
        "every row at the exchange",
        Duration::from_secs(20),
        async || {
            tgt.scalar_i64("SELECT count(*) FROM t WHERE v LIKE 'row %'")
                .await
                == 20
        },
    )
    .await;
    assert_eq!(src.rows(CHECKSUM).await, tgt.rows(CHECKSUM).await);
    signal(&child, "-TERM");
    let (code, log) = exit_of(child, Duration::from_secs(15)).await;
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("lock conflict at the exchange database, trying again"),
        "{log}"
    );
    assert!(log.contains("could not serialize access"), "{log}");
    assert!(
        !log.contains("ERROR"),
        "the cycle itself did not fail: {log}"
    );
    drop(other);
    src.drop().await;
    tgt.drop().await;
}

/// Ledger rows of the agent's state store: (status, rows).
async fn ledger(agent: &Agent) -> Vec<(String, i64)> {
    let path = agent.dir.path().join("state/state.db");
    if !path.exists() {
        return Vec::new();
    }
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}/state/state.db",
        agent.dir.path().display()
    ))
    .await
    .expect("state");
    let rows = sqlx::query("SELECT status, rows FROM batches ORDER BY started")
        .fetch_all(&pool)
        .await
        .expect("ledger");
    pool.close().await;
    rows.iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect()
}

#[tokio::test]
async fn sigterm_during_a_large_batch_exits_0_and_the_next_run_resumes() {
    let src = PgDb::new("term").await;
    let tgt = PgDb::new("term").await;
    let ddl = "CREATE TABLE t (id int PRIMARY KEY, v text, n int NOT NULL, updated_at timestamp(6) NOT NULL)";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    src.exec(
        "INSERT INTO t SELECT g, repeat('监管行为', 20) || g, g, '2026-01-01'::timestamp + g * interval '1 ms' \
         FROM generate_series(1, 200000) g",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nschedule = \"every:1s\"\nbatch_size = 50000\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n",
        header(&src.url, &tgt.url)
    ));
    let child = spawn_run(&agent);
    // Wait until the first batch is being written, then ask the daemon to stop.
    wait_for("a batch in flight", Duration::from_secs(20), async || {
        ledger(&agent).await.iter().any(|(s, _)| s == "sending")
    })
    .await;
    signal(&child, "-TERM");
    let (code, log) = exit_of(child, Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "{log}");
    let batches = ledger(&agent).await;
    assert!(!batches.is_empty());
    assert!(
        batches.iter().all(|(s, _)| s == "acked"),
        "the batch in flight was finished: {batches:?}"
    );
    let committed: i64 = batches.iter().map(|(_, n)| n).sum();
    assert!(
        committed < 200_000,
        "stopped before the end ({committed} rows)"
    );
    assert_eq!(tgt.scalar_i64("SELECT count(*) FROM t").await, committed);
    let out = agent.ok(&["once"]);
    assert!(
        out.contains(&format!("t: {} row(s) sent", 200_000 - committed)),
        "{out}"
    );
    assert_eq!(src.rows(CHECKSUM).await, tgt.rows(CHECKSUM).await);
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn sigkill_at_random_moments_loses_nothing_and_duplicates_nothing() {
    // Which rows change and when the kills fall are drawn from one seed (printed); how they
    // interleave with the agent is up to the machine.
    let mut rng = common::seeded_rng("sigkill_at_random_moments");
    let mut writer_rng = StdRng::seed_from_u64(rng.random());
    let src = PgDb::new("kill").await;
    let tgt = PgDb::new("kill").await;
    let ddl = "CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL, updated_at timestamp(6) NOT NULL)";
    src.exec(ddl).await;
    src.exec("CREATE INDEX t_updated ON t (updated_at, id)")
        .await;
    tgt.exec(ddl).await;
    src.exec(
        "INSERT INTO t SELECT g, md5(g::text), 0, '2026-01-01'::timestamp + g * interval '10 ms' \
         FROM generate_series(1, 300000) g",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nschedule = \"every:1s\"\nbatch_size = 2000\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\", lookback = \"10s\" }}\n",
        header(&src.url, &tgt.url).replace("Asia/Shanghai", "UTC")
    ));
    // Another connection keeps changing random rows the whole time.
    let writer = src.pool.clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let stop_writer = stop.clone();
    let updates = tokio::spawn(async move {
        let mut n = 0u64;
        while !stop_writer.is_cancelled() {
            let ids: Vec<i32> = (0..20)
                .map(|_| writer_rng.random_range(1..=300_000))
                .collect();
            sqlx::query(
                "UPDATE t SET n = n + 1, v = md5(v), updated_at = clock_timestamp() AT TIME ZONE 'UTC' \
                 WHERE id = ANY($1)",
            )
            .bind(&ids)
            .execute(&writer)
            .await
            .expect("update");
            n += 1;
            // The writer's pace (part of the scenario, not a wait).
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        n
    });
    // Kill until at least five kills have fallen while rows were still on their way.
    let (mut kills, mut midway) = (0, 0);
    let mut progress = Vec::new();
    while midway < 5 && kills < 20 {
        let child = spawn_run(&agent);
        // The kill falls at a random moment of the daemon's life: the sleep is the scenario.
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1200))).await;
        signal(&child, "-KILL");
        let _ = exit_of(child, Duration::from_secs(10)).await;
        kills += 1;
        let at = tgt.scalar_i64("SELECT count(*) FROM t").await;
        progress.push(at);
        if at < 300_000 {
            midway += 1;
        }
    }
    stop.cancel();
    let update_batches = updates.await.expect("writer");
    // A final clean cycle.
    agent.ok(&["once"]);
    assert_eq!(
        src.rows(CHECKSUM).await,
        tgt.rows(CHECKSUM).await,
        "after {kills} kills, progress {progress:?}"
    );
    assert!(
        midway >= 5,
        "only {midway} of {kills} kills fell while rows were on their way: {progress:?}"
    );
    eprintln!(
        "{kills} kills, rows at the exchange after each: {progress:?}; {update_batches} update batches"
    );
    src.drop().await;
    tgt.drop().await;
}
