//! The service: full resync by SIGUSR1 and by `resync --table` (other tables keep their
//! schedules meanwhile; a progress bar on a terminal), a resync that resumes after a crash,
//! SIGHUP reloads, LISTEN/NOTIFY wake-ups, one daemon per state directory, and the
//! notifications systemd hears (the unit and the package are in packaging.rs).

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{Agent, Daemon, PgDb, header, wait_for, which};

const SUM: &str = "SELECT count(*)::text || ':' || coalesce(md5(string_agg(id || '|' || v, ',' ORDER BY id)), '') FROM t";

async fn equal(src: &PgDb, tgt: &PgDb) -> bool {
    src.rows(SUM).await == tgt.rows(SUM).await
}

/// Rows changed, deleted and added by hand at the exchange, behind the agent's back.
async fn damage(tgt: &PgDb, extra_from: i32) {
    tgt.exec("UPDATE t SET v = 'damaged' WHERE id % 10 = 0")
        .await;
    tgt.exec("DELETE FROM t WHERE id % 7 = 0").await;
    tgt.exec(&format!(
        "INSERT INTO t SELECT g, 'not at the source', '2026-01-01' FROM generate_series({extra_from}, {}) g",
        extra_from + 24
    ))
    .await;
}

async fn tables() -> (PgDb, PgDb) {
    let src = PgDb::new("resync").await;
    let tgt = PgDb::new("resync").await;
    let ddl = "CREATE TABLE t (id int PRIMARY KEY, v text, updated_at timestamp(6) NOT NULL)";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    (src, tgt)
}

#[tokio::test]
async fn sigusr1_and_resync_table_repair_the_exchange() {
    let (src, tgt) = tables().await;
    src.exec("INSERT INTO t SELECT g, 'row ' || g, '2026-01-01'::timestamp + g * interval '1 s' FROM generate_series(1, 1000) g").await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nschedule = \"weekly@sun 03:00\"\nbatch_size = 100\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n",
        header(&src.url, &tgt.url)
    ));
    agent.ok(&["once"]);
    assert!(equal(&src, &tgt).await);
    let daemon = Daemon::start(&agent, &[]);
    wait_for("the daemon", Duration::from_secs(20), async || {
        daemon.log().contains("frontdb-agent running")
    })
    .await;
    damage(&tgt, 5000).await;
    assert!(!equal(&src, &tgt).await);
    daemon.signal("-USR1");
    let asked = Instant::now();
    wait_for(
        "the exchange repaired after SIGUSR1",
        Duration::from_secs(30),
        async || equal(&src, &tgt).await,
    )
    .await;
    eprintln!("SIGUSR1 repaired the exchange in {:?}", asked.elapsed());
    wait_for(
        "the resync to be recorded",
        Duration::from_secs(10),
        async || agent.status_json()["tables"][0]["resync"]["state"] == "done",
    )
    .await;
    let status = agent.status_json();
    let r = &status["tables"][0]["resync"];
    assert_eq!(r["rows"], 1000, "{status}");
    assert_eq!(r["deleted"], 25, "{status}");
    assert_eq!(r["total"], 1000, "{status}");
    assert!(status["daemon_pid"].is_number(), "{status}");

    // The same through the command line while the daemon runs.
    damage(&tgt, 6000).await;
    let out = agent.ok(&["resync", "--table", "t"]);
    assert!(
        out.contains("started the full resync") || out.contains("full resync requested"),
        "{out}"
    );
    wait_for(
        "the exchange repaired after `resync --table t`",
        Duration::from_secs(30),
        async || equal(&src, &tgt).await,
    )
    .await;
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("SIGUSR1: full resync of every table requested"),
        "{log}"
    );
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn resync_without_a_daemon_runs_here_and_tombstones_when_asked() {
    let src = PgDb::new("resync").await;
    let tgt = PgDb::new("resync").await;
    src.exec("CREATE TABLE c (cd_id varchar(20) PRIMARY KEY, name text, cd_operation varchar(1) NOT NULL, cd_time timestamp(6) NOT NULL)").await;
    tgt.exec("CREATE TABLE c (cd_id varchar(20) PRIMARY KEY, name text, cd_operation varchar(1), cd_time timestamp(6), cd_batch varchar(32))").await;
    src.exec("INSERT INTO c SELECT 'K' || g, 'name ' || g, 'I', '2026-01-01' FROM generate_series(1, 50) g").await;
    tgt.exec("INSERT INTO c VALUES ('ONLY-AT-EXCHANGE', 'x', 'I', '2025-01-01', NULL)")
        .await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"c\"\ndeletes = \"tombstone\"\nbatch_size = 20\nwatermark = {{ kind = \"control\" }}\n",
        header(&src.url, &tgt.url)
    ));
    let out = agent.ok(&["resync"]);
    assert!(
        out.contains("c: full resync done: 50 row(s) sent, 1 removed at the exchange"),
        "{out}"
    );
    assert_eq!(
        tgt.rows(
            "SELECT cd_operation, length(cd_batch)::text FROM c WHERE cd_id = 'ONLY-AT-EXCHANGE'"
        )
        .await,
        vec![vec![Some("D".into()), Some("13".into())]]
    );
    assert_eq!(
        tgt.scalar_i64("SELECT count(*) FROM c WHERE cd_operation = 'I'")
            .await,
        50
    );
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn a_resync_killed_midway_resumes_from_its_last_chunk() {
    let (src, tgt) = tables().await;
    src.exec("INSERT INTO t SELECT g, md5(g::text), '2026-01-01'::timestamp + g * interval '1 ms' FROM generate_series(1, 100000) g").await;
    tgt.exec("INSERT INTO t SELECT g, 'stale', '2025-01-01' FROM generate_series(99990, 100100) g")
        .await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nschedule = \"weekly@sun 03:00\"\nbatch_size = 1000\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n",
        header(&src.url, &tgt.url)
    ));
    let daemon = Daemon::start(&agent, &["--full-resync"]);
    let mut chunks_at_kill = 0;
    wait_for(
        "ten chunks of the resync",
        Duration::from_secs(120),
        async || {
            let s = agent.status_json();
            chunks_at_kill = s["tables"][0]["resync"]["chunks"].as_i64().unwrap_or(0);
            chunks_at_kill >= 10
        },
    )
    .await;
    daemon.kill();
    let status = agent.status_json();
    let at_kill = status["tables"][0]["resync"].clone();
    assert_eq!(at_kill["state"], "running", "{status}");
    assert!(
        at_kill["rows"].as_i64().is_some_and(|r| r < 100_000),
        "{status}"
    );
    let daemon = Daemon::start(&agent, &[]);
    wait_for(
        "the resync to finish",
        Duration::from_secs(120),
        async || agent.status_json()["tables"][0]["resync"]["state"] == "done",
    )
    .await;
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0));
    let status = agent.status_json();
    let r = &status["tables"][0]["resync"];
    // Resumed once, and every row was sent once, plus at most the chunk in flight at the kill
    // — not the whole table again.
    assert_eq!(r["resumed"], 1, "{status}");
    let rows = r["rows"].as_i64().unwrap_or(0);
    assert!(
        (100_000..=101_000).contains(&rows),
        "rows sent by the resync: {rows}\n{log}"
    );
    assert!(log.contains("full resync resumed"), "{log}");
    assert_eq!(
        r["deleted"], 100,
        "stale rows past the source's last key: {status}"
    );
    assert!(equal(&src, &tgt).await);
    eprintln!("killed after {chunks_at_kill} chunks; {rows} rows sent in all");
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn sighup_keeps_the_old_configuration_when_the_new_one_is_broken() {
    let (src, tgt) = tables().await;
    src.exec("CREATE TABLE u (id int PRIMARY KEY, v text)")
        .await;
    tgt.exec("CREATE TABLE u (id int PRIMARY KEY, v text)")
        .await;
    let base = header(&src.url, &tgt.url);
    let t_table = "\n[[table]]\nsource = \"t\"\nschedule = \"every:1s\"\nwatermark = { kind = \"timestamp\", column = \"updated_at\" }\n";
    let u_table =
        "\n[[table]]\nsource = \"u\"\nschedule = \"every:1s\"\nwatermark = { kind = \"key\" }\n";
    let agent = Agent::new(&format!("{base}{t_table}"));
    let mut daemon = Daemon::start(&agent, &[]);
    src.exec("INSERT INTO t VALUES (1, 'one', localtimestamp)")
        .await;
    wait_for("the first row", Duration::from_secs(20), async || {
        tgt.scalar_i64("SELECT count(*) FROM t").await == 1
    })
    .await;

    // A broken file: the daemon says why and keeps running on the old configuration.
    agent.rewrite(&format!("{base}{t_table}{u_table}").replace(
        "schedule = \"every:1s\"\nwatermark = { kind = \"key\" }",
        "schedul = \"every:1s\"\nwatermark = { kind = \"key\" }",
    ));
    daemon.signal("-HUP");
    wait_for(
        "the refusal in the log",
        Duration::from_secs(10),
        async || {
            daemon
                .log()
                .contains("SIGHUP: the configuration is not valid")
        },
    )
    .await;
    assert!(
        daemon.log().contains("unknown field `schedul`"),
        "{}",
        daemon.log()
    );
    assert!(daemon.running());
    src.exec("INSERT INTO t VALUES (2, 'two', localtimestamp)")
        .await;
    src.exec("INSERT INTO u VALUES (1, 'not yet')").await;
    wait_for(
        "the old configuration still exchanging",
        Duration::from_secs(20),
        async || tgt.scalar_i64("SELECT count(*) FROM t").await == 2,
    )
    .await;
    assert_eq!(tgt.scalar_i64("SELECT count(*) FROM u").await, 0);

    // A good file adds table u.
    agent.rewrite(&format!("{base}{t_table}{u_table}"));
    daemon.signal("-HUP");
    let start = Instant::now();
    while tgt.scalar_i64("SELECT count(*) FROM u").await != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the new table was not exchanged:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    src.exec("INSERT INTO t VALUES (3, 'three', localtimestamp)")
        .await;
    wait_for(
        "the old table still exchanged",
        Duration::from_secs(20),
        async || tgt.scalar_i64("SELECT count(*) FROM t").await == 3,
    )
    .await;
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("configuration reloaded"), "{log}");
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn a_notify_from_the_source_runs_the_table_at_once() {
    let (src, tgt) = tables().await;
    src.exec(
        "CREATE FUNCTION notify_t() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_notify('frontdb_t', ''); RETURN NULL; END $$; \
         CREATE TRIGGER t_changed AFTER INSERT OR UPDATE ON t FOR EACH STATEMENT EXECUTE FUNCTION notify_t();",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nschedule = \"realtime@10m\"\nnotify = \"frontdb_t\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n",
        header(&src.url, &tgt.url).replace("Asia/Shanghai", "UTC")
    ));
    let daemon = Daemon::start(&agent, &[]);
    wait_for("the listener", Duration::from_secs(20), async || {
        daemon.log().contains("listening for notifications")
    })
    .await;
    // The first scheduled cycle ran at start; the next would be in 10 minutes.
    src.exec("INSERT INTO t VALUES (1, 'notified', localtimestamp)")
        .await;
    let sent = Instant::now();
    wait_for("the notified row", Duration::from_secs(10), async || {
        tgt.scalar_i64("SELECT count(*) FROM t").await == 1
    })
    .await;
    eprintln!("notified row arrived after {:?}", sent.elapsed());
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn one_daemon_per_state_directory() {
    let (src, tgt) = tables().await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nwatermark = {{ kind = \"key\" }}\n",
        header(&src.url, &tgt.url)
    ));
    let daemon = Daemon::start(&agent, &[]);
    wait_for("the daemon", Duration::from_secs(20), async || {
        daemon.log().contains("frontdb-agent running")
    })
    .await;
    let second = agent.run(&["run"]);
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another frontdb-agent (pid")
            && err.contains("is running with the state directory"),
        "{err}"
    );
    let once = agent.run(&["once"]);
    assert_eq!(once.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&once.stderr).contains("Use `frontdb-agent resync`"));
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
    assert!(
        agent.run(&["once"]).status.success(),
        "free again once the daemon stopped"
    );
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn systemd_hears_ready_status_watchdog_and_stopping() {
    let (src, tgt) = tables().await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nwatermark = {{ kind = \"key\" }}\n",
        header(&src.url, &tgt.url)
    ));
    let sock_path = agent.dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut child = agent
        .command()
        .arg("run")
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut heard = String::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20)
        && !(heard.contains("READY=1")
            && heard.matches("WATCHDOG=1").count() >= 3
            && heard.contains("STATUS=1 table(s)"))
    {
        if let Ok(n) = sock.recv(&mut buf) {
            heard.push_str(&String::from_utf8_lossy(&buf[..n]));
            heard.push('\n');
        }
    }
    assert!(heard.contains("READY=1"), "{heard}");
    assert!(
        heard.contains("STATUS=1 table(s), all exchanging"),
        "{heard}"
    );
    assert!(heard.matches("WATCHDOG=1").count() >= 3, "{heard}");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) && !heard.contains("STOPPING=1") {
        if let Ok(n) = sock.recv(&mut buf) {
            heard.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert!(heard.contains("STOPPING=1"), "{heard}");
    assert_eq!(child.wait().expect("wait").code(), Some(0));
    src.drop().await;
    tgt.drop().await;
}

/// The resync figures of one table in `status --json`.
fn resync_of(status: &serde_json::Value, table: &str) -> serde_json::Value {
    status["tables"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["table"] == table))
        .map(|t| t["resync"].clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn other_tables_keep_their_schedules_during_a_full_resync() {
    let (src, tgt) = tables().await;
    let small = "CREATE TABLE s (id int PRIMARY KEY, v text)";
    src.exec(small).await;
    tgt.exec(small).await;
    src.exec("INSERT INTO t SELECT g, md5(g::text), '2026-01-01'::timestamp + g * interval '1 ms' FROM generate_series(1, 100000) g").await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nschedule = \"weekly@sun 03:00\"\nbatch_size = 500\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n\
         \n[[table]]\nsource = \"s\"\nschedule = \"every:1s\"\nwatermark = {{ kind = \"key\" }}\n",
        header(&src.url, &tgt.url)
    ));
    let daemon = Daemon::start(&agent, &[]);
    src.exec("INSERT INTO s VALUES (1, 'before the resync')")
        .await;
    wait_for(
        "the small table's first row",
        Duration::from_secs(20),
        async || tgt.scalar_i64("SELECT count(*) FROM s").await == 1,
    )
    .await;

    let asked = Instant::now();
    agent.ok(&["resync", "--table", "t"]);
    wait_for(
        "the resync of t under way",
        Duration::from_secs(20),
        async || {
            let r = resync_of(&agent.status_json(), "t");
            r["state"] == "running" && r["chunks"].as_i64().unwrap_or(0) >= 2
        },
    )
    .await;
    src.exec("INSERT INTO s SELECT g, 'during the resync' FROM generate_series(2, 11) g")
        .await;
    let inserted = Instant::now();
    wait_for(
        "the small table's rows during the resync",
        Duration::from_secs(20),
        async || tgt.scalar_i64("SELECT count(*) FROM s").await == 11,
    )
    .await;
    let arrived = inserted.elapsed();
    // Running before the rows were inserted and still running after they arrived: they were
    // exchanged while the resync ran, not after it.
    let status = agent.status_json();
    let during = resync_of(&status, "t");
    assert_eq!(
        during["state"], "running",
        "the resync ended before the small table's rows arrived ({arrived:?}); \
         make the big table bigger\n{status}"
    );
    assert!(
        during["rows"].as_i64().is_some_and(|r| r < 100_000),
        "{status}"
    );

    wait_for(
        "the resync to finish",
        Duration::from_secs(120),
        async || resync_of(&agent.status_json(), "t")["state"] == "done",
    )
    .await;
    let took = asked.elapsed();
    assert!(equal(&src, &tgt).await);
    // And the small table still runs after it.
    src.exec("INSERT INTO s VALUES (12, 'after the resync')")
        .await;
    wait_for(
        "the small table's row after the resync",
        Duration::from_secs(20),
        async || tgt.scalar_i64("SELECT count(*) FROM s").await == 12,
    )
    .await;
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    let r = resync_of(&agent.status_json(), "t");
    assert_eq!(r["rows"], 100_000, "{r}");
    eprintln!(
        "small table's rows arrived {arrived:?} after insertion, with {} of 100000 rows resynced; \
         the resync took {took:?}",
        during["rows"]
    );
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn resync_without_a_daemon_draws_a_progress_bar_only_on_a_terminal() {
    let Ok(script) = which("script") else {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    };
    let (src, tgt) = tables().await;
    src.exec("INSERT INTO t SELECT g, md5(g::text), '2026-01-01'::timestamp + g * interval '1 ms' FROM generate_series(1, 20000) g").await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nbatch_size = 500\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n",
        header(&src.url, &tgt.url)
    ));

    // Through pipes: no bar, only the summary.
    let out = agent.run(&["resync", "--table", "t"]);
    let piped = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{piped}");
    assert!(
        piped.contains("t: full resync done: 20000 row(s) sent"),
        "{piped}"
    );
    assert!(
        !piped.contains("/20000 rows") && !piped.contains('\x1b') && !piped.contains('\r'),
        "a progress bar drawn into a pipe:\n{piped:?}"
    );
    assert!(equal(&src, &tgt).await);

    // On a terminal (a pty from `script`): the bar, moving, then the same summary.
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let cmd = format!(
        "{} --config {} resync --table t",
        quote(env!("CARGO_BIN_EXE_frontdb-agent")),
        quote(&agent.config.display().to_string())
    );
    let started = Instant::now();
    let out = std::process::Command::new(script)
        .args(["-qec", &cmd, "/dev/null"])
        .env("FRONTDB_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let tty = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{tty}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        tty.contains("t: full resync done: 20000 row(s) sent"),
        "{tty:?}"
    );
    // Every drawing of the bar: "t [=====>    ] 5000/20000 rows 25% (1s left)".
    let drawn: Vec<u64> = tty
        .match_indices("/20000 rows ")
        .filter_map(|(at, _)| {
            let before = &tty[..at];
            let digits = before.len()
                - before
                    .chars()
                    .rev()
                    .take_while(char::is_ascii_digit)
                    .count();
            before[digits..].parse().ok()
        })
        .collect();
    assert!(
        !drawn.is_empty(),
        "no progress bar on the terminal:\n{tty:?}"
    );
    assert!(
        tty.contains("t [") && tty.contains('%'),
        "not the bar's template:\n{tty:?}"
    );
    assert!(
        drawn.iter().any(|&p| 0 < p && p < 20_000),
        "the bar never showed the resync part way ({drawn:?}):\n{tty:?}"
    );
    assert!(
        drawn.windows(2).all(|w| w[0] <= w[1]),
        "the bar went backwards: {drawn:?}"
    );
    eprintln!(
        "the bar was drawn {} time(s) in {:?}: {drawn:?}",
        drawn.len(),
        started.elapsed()
    );
    assert!(equal(&src, &tgt).await);
    src.drop().await;
    tgt.drop().await;
}
