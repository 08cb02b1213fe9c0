//! Many quiet tables: a daemon polling a hundred tables that do not change writes nothing to
//! its state store, and a change in one of them is still exchanged within its interval; the
//! state directory is its owner's alone.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::common::{Agent, Daemon, PgDb, header, wait_for};

const TABLES: usize = 100;

/// A file's size and modification time, or nothing when it does not exist.
fn stamp(p: &std::path::Path) -> Option<(u64, std::time::SystemTime)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.len(), m.modified().ok()?))
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[tokio::test]
async fn a_hundred_quiet_tables_write_nothing_and_a_change_still_arrives() {
    let src = PgDb::new("idle").await;
    let tgt = PgDb::new("idle").await;
    let mut ddl = String::new();
    let mut config = header(&src.url, &tgt.url).replace("Asia/Shanghai", "UTC");
    for i in 0..TABLES {
        ddl.push_str(&format!(
            "CREATE TABLE q{i} (id int PRIMARY KEY, v text, updated_at timestamp(6) NOT NULL);\n"
        ));
        config.push_str(&format!(
            "\n[[table]]\nsource = \"q{i}\"\nschedule = \"realtime@2s\"\n\
             watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n"
        ));
    }
    src.exec(&ddl).await;
    tgt.exec(&ddl).await;
    let mut rows = String::new();
    for i in 0..TABLES {
        rows.push_str(&format!(
            "INSERT INTO q{i} SELECT g, 'row ' || g, localtimestamp - interval '1 hour' \
             FROM generate_series(1, 10) g;\n"
        ));
    }
    src.exec(&rows).await;
    let agent = Agent::new(&config);
    let daemon = Daemon::start(&agent, &[]);
    wait_for(
        "every table exchanged",
        Duration::from_secs(60),
        async || {
            let counts: Vec<String> = (0..TABLES)
                .map(|i| format!("(SELECT count(*) FROM q{i})"))
                .collect();
            tgt.scalar_i64(&format!("SELECT {}", counts.join(" + ")))
                .await
                == (TABLES * 10) as i64
        },
    )
    .await;
    let state = agent.dir.path().join("state");
    // Every table has run, and run again, so their first runs were recorded.
    wait_for(
        "a second round of runs",
        Duration::from_secs(30),
        async || {
            let st = agent.status_json();
            st["tables"].as_array().is_some_and(|t| {
                t.len() == TABLES
                    && t.iter()
                        .all(|t| t["last_outcome"] == "ok" && t["last_finished"].is_string())
            })
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The idle period: five polls of every table. Nothing is written to the state store.
    let files = ["state.db", "state.db-wal"].map(|f| state.join(f));
    let before: Vec<_> = files.iter().map(|f| stamp(f)).collect();
    let runs = daemon.log().matches("cycle done").count();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after: Vec<_> = files.iter().map(|f| stamp(f)).collect();
    assert_eq!(
        after, before,
        "the state store was written while every table was quiet"
    );
    assert_eq!(
        daemon.log().matches("cycle done").count(),
        runs,
        "no rows moved"
    );

    // A change in one table arrives within its interval (and a poll's work).
    src.exec("UPDATE q42 SET v = 'changed', updated_at = localtimestamp WHERE id = 7")
        .await;
    let changed = Instant::now();
    wait_for("the changed row", Duration::from_secs(10), async || {
        tgt.scalar_i64("SELECT count(*) FROM q42 WHERE v = 'changed'")
            .await
            == 1
    })
    .await;
    let took = changed.elapsed();
    eprintln!("the change arrived after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // `status` asks the daemon: the run that moved the row, seconds ago.
    let st = agent.status_json();
    let q42 = st["tables"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["table"] == "q42"))
        .cloned()
        .expect("q42 in status");
    assert_eq!(q42["last_outcome"], "ok", "{q42}");
    let finished = q42["last_finished"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .expect("a last run");
    let ago = chrono::Utc::now().signed_duration_since(finished);
    assert!(ago < chrono::Duration::seconds(10), "{q42}");

    // The state directory and its files are the agent's alone.
    assert_eq!(mode(&state), 0o700);
    for f in [
        "state.db",
        "state.db-wal",
        "state.db-shm",
        "agent.lock",
        "agent.sock",
    ] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f}");
    }
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    src.drop().await;
    tgt.drop().await;
}

/// The shared question on MariaDB, for each mode it serves: a quiet table is skipped, a
/// change is found.
#[tokio::test]
async fn quiet_mariadb_tables_of_every_mode_see_their_changes() {
    let src = crate::common::MyDb::new("idlemy").await;
    let tgt = PgDb::new("idlemy").await;
    src.exec(
        "CREATE TABLE ts_t (id int PRIMARY KEY, v varchar(20), updated_at datetime(6) NOT NULL); \
         CREATE TABLE key_t (id int PRIMARY KEY, v varchar(20)); \
         CREATE TABLE flag_t (id int PRIMARY KEY, v varchar(20), sync_sign int NOT NULL DEFAULT 0); \
         INSERT INTO ts_t VALUES (1, 'a', '2026-01-01 00:00:00'); \
         INSERT INTO key_t VALUES (1, 'a'); INSERT INTO flag_t VALUES (1, 'a', 0);",
    )
    .await;
    tgt.exec(
        "CREATE TABLE ts_t (id int PRIMARY KEY, v text, updated_at timestamp(6) NOT NULL); \
         CREATE TABLE key_t (id int PRIMARY KEY, v text); \
         CREATE TABLE flag_t (id int PRIMARY KEY, v text);",
    )
    .await;
    let mut config = header(&src.url, &tgt.url).replace("Asia/Shanghai", "UTC");
    for (t, w) in [
        ("ts_t", r#"{ kind = "timestamp", column = "updated_at" }"#),
        ("key_t", r#"{ kind = "key" }"#),
        ("flag_t", r#"{ kind = "flag", column = "sync_sign" }"#),
    ] {
        config.push_str(&format!(
            "\n[[table]]\nsource = \"{t}\"\nschedule = \"realtime@1s\"\nwatermark = {w}\n"
        ));
    }
    let agent = Agent::new(&config);
    let daemon = Daemon::start(&agent, &[]);
    let count = async |t: &str| tgt.scalar_i64(&format!("SELECT count(*) FROM {t}")).await;
    wait_for("the first rows", Duration::from_secs(30), async || {
        count("ts_t").await + count("key_t").await + count("flag_t").await == 3
    })
    .await;
    // Quiet for a few polls, then a change in each.
    tokio::time::sleep(Duration::from_secs(3)).await;
    src.exec(
        "INSERT INTO ts_t VALUES (2, 'b', now(6)); INSERT INTO key_t VALUES (2, 'b'); \
         INSERT INTO flag_t VALUES (2, 'b', 0);",
    )
    .await;
    wait_for("the changes", Duration::from_secs(10), async || {
        count("ts_t").await + count("key_t").await + count("flag_t").await == 6
    })
    .await;
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    src.drop().await;
    tgt.drop().await;
}
