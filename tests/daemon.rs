//! The daemon: `run` exchanges each table on its schedule, `status` reads its progress while
//! it runs, and SIGTERM stops it cleanly with exit code 0.

mod common;

use std::time::{Duration, Instant};

use common::{Agent, PgDb, header};

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

#[tokio::test]
async fn run_exchanges_on_schedule_and_stops_cleanly_on_sigterm() {
    let src = PgDb::new("daemon").await;
    let tgt = PgDb::new("daemon").await;
    let ddl = "CREATE TABLE t (id int PRIMARY KEY, v text, updated_at timestamp(6) NOT NULL DEFAULT localtimestamp)";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    src.exec("INSERT INTO t (id, v) SELECT g, 'first ' || g FROM generate_series(1, 50) g")
        .await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nschedule = \"every:1s\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\", lookback = \"30s\" }}\n",
        header(&src.url, &tgt.url).replace("Asia/Shanghai", "UTC")
    ));
    let mut child = agent
        .command()
        .arg("run")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn run");
    wait_for("the first 50 rows", Duration::from_secs(20), async || {
        tgt.scalar_i64("SELECT count(*) FROM t").await == 50
    })
    .await;
    src.exec("INSERT INTO t (id, v) SELECT g, 'second ' || g FROM generate_series(51, 80) g")
        .await;
    src.exec("UPDATE t SET v = 'changed', updated_at = localtimestamp WHERE id = 7")
        .await;
    wait_for(
        "the next 30 rows and the update",
        Duration::from_secs(20),
        async || {
            tgt.scalar_i64("SELECT count(*) FROM t").await == 80
                && tgt
                    .scalar_i64("SELECT count(*) FROM t WHERE v = 'changed'")
                    .await
                    == 1
        },
    )
    .await;
    let status = agent.status_json();
    let t = &status["tables"][0];
    assert_eq!(t["rows_total"], 81, "{status}");
    assert_eq!(t["last_outcome"], "ok", "{status}");
    assert!(t["next_run"].is_string(), "{status}");

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let start = Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s.code();
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "daemon did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let out = child.wait_with_output().expect("output");
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code, Some(0), "{log}");
    src.drop().await;
    tgt.drop().await;
}
