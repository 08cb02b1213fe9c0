//! The HTTP exchange end to end: the agent posts to `exchange-sim` (the reference receiver)
//! over loopback, from a PostgreSQL source of its own; what the receiver stored is compared
//! with the source row by row, and its log of requests shows what travelled.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{Agent, Daemon, PgDb, rejects, sqlite_rows, wait_for};

/// A running receiver with its directory (configuration and store).
pub struct Sim {
    child: Child,
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Sim {
    pub fn start(config: &str) -> Sim {
        Sim::start_on("127.0.0.1:0", config)
    }

    /// A receiver on this address (`127.0.0.1:0`: any free port).
    pub fn start_on(listen: &str, config: &str) -> Sim {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sim.toml");
        std::fs::write(&path, format!("listen = \"{listen}\"\n{config}")).expect("write");
        let mut child = Command::new(env!("CARGO_BIN_EXE_frontdb-agent"))
            .arg("exchange-sim")
            .arg("--config")
            .arg(&path)
            .env("FRONTDB_LOG", "warn")
            .env("SIM_SECRET", "sim-secret-value")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn exchange-sim");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the sim's address");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        Sim { child, dir, base }
    }

    pub fn store(&self) -> std::path::PathBuf {
        self.dir.path().join("exchange-sim.db")
    }

    /// The records stored for a table: id -> values.
    pub async fn records(&self, table: &str) -> Vec<serde_json::Value> {
        let rows = sqlite_rows(
            &self.store(),
            &format!("SELECT vals FROM records WHERE tbl = '{table}'"),
        )
        .await;
        let mut out: Vec<serde_json::Value> = rows
            .into_iter()
            .filter_map(|r| r[0].as_deref().and_then(|v| serde_json::from_str(v).ok()))
            .collect();
        out.sort_by_key(|v| id_of(&v["id"]));
        out
    }

    /// Batch ids whose answer the receiver dropped after applying them and that have not
    /// come again since (the agent owes them a second send under the same id).
    pub async fn replays_owed(&self) -> Vec<String> {
        let mut owed: Vec<String> = Vec::new();
        for (batch, outcome, _) in self.requests().await {
            let Some(b) = batch else { continue };
            match outcome.as_str() {
                "applied, answer dropped" => owed.push(b),
                "replayed" => owed.retain(|o| *o != b),
                _ => {}
            }
        }
        owed
    }

    /// The outcomes of every request, in order: (batch, outcome, records as sent).
    pub async fn requests(&self) -> Vec<(Option<String>, String, Option<String>)> {
        sqlite_rows(
            &self.store(),
            "SELECT batch, outcome, body FROM requests ORDER BY seq",
        )
        .await
        .into_iter()
        .map(|mut r| {
            let body = r.pop().flatten();
            let outcome = r.pop().flatten().unwrap_or_default();
            (r.pop().flatten(), outcome, body)
        })
        .collect()
    }
}

/// Wait until the receiver holds what the source has; on a timeout, say what the daemon
/// logged.
async fn wait_equal(pg: &PgDb, sim: &Sim, daemon: &Daemon, timeout: Duration) {
    let start = std::time::Instant::now();
    loop {
        let (want, got) = both(pg, sim).await;
        if want == got {
            return;
        }
        if start.elapsed() > timeout {
            let log = daemon.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "the receiver holds {} of {} rows after {timeout:?}; the daemon's log ends:\n{}",
                got.len(),
                want.len(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A record's id, however the store's JSON holds the number.
fn id_of(v: &serde_json::Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_f64().map(|f| f as i64))
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not an id: {v:?}"))
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TABLE: &str = "CREATE TABLE t (id int PRIMARY KEY, name text, amount numeric(12,2), \
    born date, updated_at timestamp(0) NOT NULL);";

/// `n` rows from `from`, each changed at its own second of 2026-01-01.
fn insert(from: i64, n: i64) -> String {
    insert_on(from, n, "2026-01-01")
}

/// `n` rows from `from`, each changed at its own second of `day`.
fn insert_on(from: i64, n: i64, day: &str) -> String {
    format!(
        "INSERT INTO t SELECT i, 'name ' || i, i * 1.25, date '2000-01-01' + i, \
         timestamp '{day} 00:00:00' + i * interval '1 second' \
         FROM generate_series({from}, {}) i;",
        from + n - 1
    )
}

/// The source's rows as the receiver should hold them, and what it holds, as text.
async fn both(pg: &PgDb, sim: &Sim) -> (Vec<String>, Vec<String>) {
    let want: Vec<String> = pg
        .rows(
            "SELECT id::text, coalesce(name, '<null>'), amount::text, born::text, \
             to_char(updated_at, 'YYYY-MM-DD\"T\"HH24:MI:SS') || '+08:00' FROM t ORDER BY t.id",
        )
        .await
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(Option::unwrap_or_default)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let mut got: Vec<String> = sim
        .records("t")
        .await
        .iter()
        .map(|v| {
            format!(
                "{} {} {} {} {}",
                v["id"],
                v["name"].as_str().unwrap_or("<null>"),
                v["amount"].as_str().unwrap_or("?"),
                v["born"].as_str().unwrap_or("?"),
                v["updated_at"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    got.sort_by_key(|line| line.split(' ').next().and_then(|id| id.parse::<i64>().ok()));
    (want, got)
}

fn config(pg: &PgDb, sim: &Sim, exchange_extra: &str, table_extra: &str) -> String {
    format!(
        r#"[agent]
id = "230000-HTTP"
state_dir = "{{dir}}/state"
timezone = "Asia/Shanghai"
retry_max = "1s"

[source]
url = "{}"

[exchange]
kind = "http"
url = "{}/exchange/{{table}}"
{exchange_extra}

[[table]]
source = "t"
watermark = {{ kind = "timestamp", column = "updated_at", lookback = "0s" }}
{table_extra}
"#,
        pg.url, sim.base
    )
}

const HMAC: &str = "[exchange.auth]\nkind = \"hmac-sha256\"\napp_key = \"dept-1\"\napp_secret = \"${env:SIM_SECRET}\"\n";

#[tokio::test]
async fn signed_batches_are_verified_and_stored_as_the_source_has_them() {
    let pg = PgDb::new("http_signed").await;
    pg.exec(&format!("{TABLE}{}", insert(1, 250))).await;
    let sim = Sim::start(
        "[auth]\nkind = \"hmac-sha256\"\napp_key = \"dept-1\"\napp_secret = \"${env:SIM_SECRET}\"\n\
         [[table]]\nname = \"t\"\nversion = \"updated_at\"\n",
    );
    let agent = Agent::new(&config(
        &pg,
        &sim,
        &format!("gzip = true\nmax_records = 40\n{HMAC}"),
        "batch_size = 100",
    ));
    let run = |agent: &Agent| {
        agent
            .command()
            .env("SIM_SECRET", "sim-secret-value")
            .arg("once")
            .output()
            .expect("once")
    };
    let out = run(&agent);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (want, got) = both(&pg, &sim).await;
    assert_eq!(want.len(), 250);
    assert_eq!(got, want);
    let requests = sim.requests().await;
    assert!(
        requests.iter().all(|(_, o, _)| o == "applied"),
        "{requests:?}"
    );
    // Three batches of 100, 100 and 50 rows, each in requests of at most 40 records.
    assert_eq!(requests.len(), 3 + 3 + 2);

    // A wrong secret: the receiver refuses the signature, the agent fails the table
    // naming the endpoint and never the secret.
    pg.exec(
        "UPDATE t SET name = 'changed', updated_at = updated_at + interval '1 day' WHERE id = 1",
    )
    .await;
    let out = agent
        .command()
        .env("SIM_SECRET", "wrong-secret-value")
        .arg("once")
        .output()
        .expect("once");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("{}/exchange/t", sim.base)), "{err}");
    assert!(err.contains("401"), "{err}");
    assert!(!err.contains("wrong-secret-value"), "{err}");
    assert!(
        sim.requests()
            .await
            .iter()
            .any(|(_, o, _)| o == "bad signature")
    );
    pg.drop().await;
}

#[tokio::test]
async fn rejected_records_are_in_the_ledger_resent_after_correction_and_cleared() {
    let pg = PgDb::new("http_rejects").await;
    pg.exec(&format!("{TABLE}{}", insert(1, 20))).await;
    pg.exec("UPDATE t SET name = NULL WHERE id IN (3, 17)")
        .await;
    let sim =
        Sim::start("[[table]]\nname = \"t\"\nversion = \"updated_at\"\nrequired = [\"name\"]\n");
    let agent = Agent::new(&config(&pg, &sim, "", ""));
    agent.ok(&["once"]);
    let open = rejects(&agent, &["--state", "open"]);
    assert_eq!(open.len(), 2, "{open:?}");
    for r in &open {
        assert_eq!(r["origin"], "province", "{r}");
        let reasons = r.to_string();
        assert!(
            reasons.contains("E_REQUIRED") && reasons.contains("name is required"),
            "{r}"
        );
    }
    assert_eq!(sim.records("t").await.len(), 18);

    pg.exec("UPDATE t SET name = 'fixed', updated_at = updated_at + interval '1 day' WHERE id IN (3, 17)")
        .await;
    agent.ok(&["once"]);
    assert!(rejects(&agent, &["--state", "open"]).is_empty());
    assert_eq!(rejects(&agent, &["--state", "cleared"]).len(), 2);
    let (want, got) = both(&pg, &sim).await;
    assert_eq!(got, want);
    pg.drop().await;
}

#[tokio::test]
async fn a_request_refused_whole_is_split_until_the_bad_record_is_alone() {
    let pg = PgDb::new("http_split").await;
    pg.exec(&format!("{TABLE}{}", insert(1, 16))).await;
    pg.exec("UPDATE t SET name = NULL WHERE id = 11").await;
    let sim = Sim::start(
        "[[table]]\nname = \"t\"\nversion = \"updated_at\"\nrequired = [\"name\"]\nrefuse_whole = true\n",
    );
    let agent = Agent::new(&config(&pg, &sim, "", ""));
    agent.ok(&["once"]);
    let open = rejects(&agent, &["--state", "open"]);
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(sim.records("t").await.len(), 15);
    let refused = sim
        .requests()
        .await
        .iter()
        .filter(|(_, o, _)| o == "refused")
        .count();
    // 16 records, halved until the one is alone: 16, 8, 4, 2, 1.
    assert_eq!(refused, 5);
    pg.drop().await;
}

#[tokio::test]
async fn errors_and_dropped_connections_lose_nothing_and_apply_no_batch_twice() {
    let pg = PgDb::new("http_faults").await;
    pg.exec(&format!("{TABLE}{}", insert(1, 400))).await;
    let seed: u64 = rand::RngExt::random(&mut crate::common::seeded_rng("http faults"));
    let sim = Sim::start(&format!(
        "[[table]]\nname = \"t\"\nversion = \"updated_at\"\n\
         [faults]\nerror_share = 0.3\ndrop_share = 0.1\nbusy_share = 0.1\n\
         drop_after_share = 0.3\nseed = {seed}\n",
    ));
    let agent = Agent::new(&config(
        &pg,
        &sim,
        "timeout = \"5s\"",
        "schedule = \"realtime@200ms\"\nbatch_size = 50",
    ));
    let daemon = Daemon::start(&agent, &[]);
    // Changes keep coming while the faults go on: updates, and new rows. The faults are
    // drawn from a seed the test prints (FRONTDB_TEST_SEED repeats a run).
    for wave in 0..4 {
        // Each wave changes rows later than every change before it.
        let day = format!("2026-03-{:02}", wave + 1);
        pg.exec(&format!(
            "UPDATE t SET amount = amount + 1, \
             updated_at = timestamp '{day} 00:00:00' + id * interval '1 second' \
             WHERE id % 7 = {wave}; {}",
            insert_on(401 + wave * 50, 50, &day)
        ))
        .await;
        wait_equal(&pg, &sim, &daemon, Duration::from_secs(120)).await;
        // A batch whose answer was lost is sent again under its id before new rows come
        // (new rows could make its retry a different batch).
        let start = std::time::Instant::now();
        while !sim.replays_owed().await.is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "batches whose answer was lost were not sent again under their id: {:?}",
                sim.replays_owed().await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let requests = sim.requests().await;
    let faults = requests
        .iter()
        .filter(|(_, o, _)| o == "503" || o == "dropped before" || o == "429")
        .count();
    assert!(faults >= 3, "the faults were injected: {requests:?}");
    let mut applied: Vec<&String> = requests
        .iter()
        .filter(|(_, o, _)| o.starts_with("applied"))
        .filter_map(|(b, _, _)| b.as_ref())
        .collect();
    let n = applied.len();
    applied.sort();
    applied.dedup();
    assert_eq!(applied.len(), n, "a batch was applied twice");
    // Every answer the receiver dropped after applying its batch was followed by that batch
    // again, under its id, answered from the receiver's memory (waited for above).
    let outcomes: Vec<&str> = requests.iter().map(|(_, o, _)| o.as_str()).collect();
    if outcomes.contains(&"applied, answer dropped") {
        assert!(outcomes.contains(&"replayed"), "{outcomes:?}");
    }
    daemon.stop();
    pg.drop().await;
}

#[tokio::test]
async fn a_token_that_expires_mid_run_is_renewed_without_losing_a_batch() {
    let pg = PgDb::new("http_token").await;
    pg.exec(&format!("{TABLE}{}", insert(1, 10))).await;
    let sim = Sim::start(
        "[auth]\nkind = \"login\"\napp_key = \"dept-1\"\napp_secret = \"${env:SIM_SECRET}\"\n\
         token_ttl = \"1h\"\nrevoke_after = \"1s\"\n[[table]]\nname = \"t\"\nversion = \"updated_at\"\n",
    );
    let login = format!(
        "[exchange.auth]\nkind = \"login\"\napp_key = \"dept-1\"\napp_secret = \"${{env:SIM_SECRET}}\"\n\
         login_url = \"{}/login\"\n",
        sim.base
    );
    let agent = Agent::new(&config(&pg, &sim, &login, "schedule = \"realtime@200ms\""));
    let mut cmd = agent.command();
    let log = agent.dir.path().join("daemon.log");
    let child = cmd
        .env("SIM_SECRET", "sim-secret-value")
        .env("FRONTDB_LOG", "info")
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
        .spawn()
        .expect("run");
    let daemon = Daemon { child, log };
    let mut next = 11;
    // Rows keep arriving until the receiver has refused an expired token at least once;
    // each wave is waited for at the receiver.
    loop {
        pg.exec(&insert(next, 5)).await;
        next += 5;
        wait_equal(&pg, &sim, &daemon, Duration::from_secs(60)).await;
        if sim
            .requests()
            .await
            .iter()
            .any(|(_, o, _)| o == "token expired")
        {
            break;
        }
        assert!(next < 500, "no token expired: {:?}", sim.requests().await);
    }
    let (want, got) = both(&pg, &sim).await;
    assert_eq!(got, want);
    let status = agent
        .command()
        .env("SIM_SECRET", "sim-secret-value")
        .args(["status", "--json"])
        .output()
        .expect("status");
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(!status.contains("sim-secret-value"));
    daemon.stop();
    pg.drop().await;
}

#[tokio::test]
async fn a_kill_between_the_receivers_answer_and_the_commit_resends_the_same_batch() {
    let pg = PgDb::new("http_kill").await;
    pg.exec(&format!("{TABLE}{}", insert(1, 30))).await;
    // The second batch applied gets no answer: the agent waits, and is killed meanwhile.
    let sim = Sim::start(
        "[[table]]\nname = \"t\"\nversion = \"updated_at\"\n[faults]\nstall_after_batches = 2\n",
    );
    let agent = Agent::new(&config(&pg, &sim, "timeout = \"5m\"", "batch_size = 10"));
    let daemon = Daemon::start(&agent, &[]);
    wait_for(
        "the receiver to apply the second batch",
        Duration::from_secs(60),
        async || {
            sim.requests()
                .await
                .iter()
                .any(|(_, o, _)| o == "applied, stalled")
        },
    )
    .await;
    daemon.kill();
    agent.ok(&["once"]);
    let requests = sim.requests().await;
    let (stalled, body) = requests
        .iter()
        .find(|(_, o, _)| o == "applied, stalled")
        .map(|(b, _, body)| (b.clone().expect("batch"), body.clone()))
        .expect("stalled");
    let again: Vec<_> = requests
        .iter()
        .filter(|(b, o, _)| b.as_deref() == Some(stalled.as_str()) && o == "replayed")
        .collect();
    assert_eq!(again.len(), 1, "{requests:?}");
    assert_eq!(again[0].2, body, "the same records under the same id");
    let (want, got) = both(&pg, &sim).await;
    assert_eq!(got, want);
    pg.drop().await;
}

#[tokio::test]
async fn a_resync_sends_every_row_again_and_says_it_cannot_remove_rows_gone_from_the_source() {
    let pg = PgDb::new("http_resync").await;
    pg.exec(&format!("{TABLE}{}", insert(1, 30))).await;
    let sim = Sim::start("[[table]]\nname = \"t\"\nversion = \"updated_at\"\n");
    let agent = Agent::new(&config(&pg, &sim, "", "batch_size = 10"));
    agent.ok(&["once"]);
    let first: usize = sim.requests().await.len();
    assert_eq!(first, 3);
    pg.exec("DELETE FROM t WHERE id = 30").await;
    let (out, log) = agent.ok_logged(&["resync"], "info");
    let requests = sim.requests().await;
    // 29 rows in three new batches, each applied (none answered from memory: the ids are new).
    let again: Vec<_> = requests[first..].iter().collect();
    assert_eq!(again.len(), 3, "{requests:?}");
    assert!(again.iter().all(|(_, o, _)| o == "applied"), "{again:?}");
    let said = format!("{out}{log}{}", agent.ok(&["status"]));
    assert!(
        said.contains("cannot list the keys it holds"),
        "the resync says rows gone from the source stay at the exchange:\n{said}"
    );
    // The row deleted at the source stays at the receiver: an interface cannot be asked
    // which keys it holds.
    assert_eq!(sim.records("t").await.len(), 30);
    pg.drop().await;
}

#[tokio::test]
async fn later_rejections_come_back_through_the_feedback_feed_into_the_same_ledger() {
    let pg = PgDb::new("http_feedback").await;
    pg.exec(&format!("{TABLE}{}", insert(1, 10))).await;
    pg.exec("UPDATE t SET name = NULL WHERE id = 4").await;
    // The receiver takes every record, and rejects one later, in its feed.
    let sim = Sim::start("[[table]]\nname = \"t\"\nversion = \"updated_at\"\nlater = [\"name\"]\n");
    let feedback = format!(
        "[feedback]\nkind = \"http\"\nurl = \"{}/feedback\"\nschedule = \"every:1s\"\n",
        sim.base
    );
    let agent = Agent::new(&format!("{}{feedback}", config(&pg, &sim, "", "")));
    agent.ok(&["once"]);
    assert_eq!(sim.records("t").await.len(), 10);
    let open = rejects(&agent, &["--state", "open"]);
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["origin"], "province");
    assert!(
        open[0].to_string().contains("[Q_LATER] name is missing"),
        "{}",
        open[0]
    );
    let check = agent.ok(&["check"]);
    assert!(check.contains("feedback:"), "{check}");

    // Corrected at the source: sent again, taken without a new rejection, cleared; the feed's
    // cursor has moved past the old rejection, which does not open it again.
    pg.exec("UPDATE t SET name = 'fixed', updated_at = updated_at + interval '1 day' WHERE id = 4")
        .await;
    agent.ok(&["once"]);
    assert!(rejects(&agent, &["--state", "open"]).is_empty());
    assert_eq!(rejects(&agent, &["--state", "cleared"]).len(), 1);
    let (want, got) = both(&pg, &sim).await;
    assert_eq!(got, want);
    pg.drop().await;
}

#[tokio::test]
async fn the_table_is_failing_in_status_while_the_exchange_answers_503_and_recovers_after() {
    let pg = PgDb::new("http_outage").await;
    pg.exec(&format!("{TABLE}{}", insert(1, 20))).await;
    let down = Sim::start("[faults]\nerror_share = 1.0\n");
    let agent = Agent::new(&config(&pg, &down, "", "schedule = \"realtime@200ms\""));
    let daemon = Daemon::start(&agent, &[]);
    let endpoint = format!("{}/exchange/t", down.base);
    wait_for(
        "the table failing on the 503s",
        Duration::from_secs(30),
        async || {
            let t = agent.status_json()["tables"][0].clone();
            t["failures"].as_i64().is_some_and(|f| f >= 2)
                && t["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("HTTP 503") && e.contains(&endpoint))
        },
    )
    .await;
    let failing = agent.ok(&["status"]);
    assert!(failing.contains("FAILING"), "{failing}");
    // The exchange comes back on the same address: every row arrives, the table recovers.
    let addr = down.base.trim_start_matches("http://").to_owned();
    drop(down);
    let up = Sim::start_on(&addr, "[[table]]\nname = \"t\"\nversion = \"updated_at\"\n");
    wait_equal(&pg, &up, &daemon, Duration::from_secs(60)).await;
    wait_for("the table recovered", Duration::from_secs(30), async || {
        agent.status_json()["tables"][0]["failures"].as_i64() == Some(0)
    })
    .await;
    daemon.stop();
    pg.drop().await;
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_fails_the_run_as_an_outage_to_retry() {
    let pg = PgDb::new("http_slow").await;
    pg.exec(&format!("{TABLE}{}", insert(1, 5))).await;
    let sim = Sim::start("[faults]\nslow_share = 1.0\nslow = \"10s\"\n");
    let agent = Agent::new(&config(&pg, &sim, "timeout = \"1s\"", ""));
    let started = std::time::Instant::now();
    let out = agent.run(&["once"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no answer in time"), "{err}");
    assert!(err.contains(&format!("{}/exchange/t", sim.base)), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the timeout held"
    );
    // Nothing was committed: the watermark did not move.
    assert!(agent.status_json()["tables"][0]["watermark"].is_null());
    pg.drop().await;
}
