//! Test harness: uniquely named databases on the real PostgreSQL and MariaDB servers, a
//! temporary directory per agent, the built binary, waiting for a condition, and seeded
//! randomness.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use sqlx::mysql::MySqlPoolOptions;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, MySqlPool, PgPool, Row};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The environment variable that fixes the seed of every seeded test.
pub const SEED_VAR: &str = "FRONTDB_TEST_SEED";

/// A random number generator for one test, seeded from `FRONTDB_TEST_SEED` when it is set
/// (to repeat a run) and from the system otherwise. The seed goes to the test's output, which
/// the harness shows when the test fails: rerun with it to draw the same numbers again.
pub fn seeded_rng(test: &str) -> StdRng {
    let seed = match std::env::var(SEED_VAR) {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VAR}={s:?} is not a number (a u64)")),
        Err(_) => rand::random(),
    };
    eprintln!("{test}: random seed {seed} (repeat with {SEED_VAR}={seed})");
    StdRng::seed_from_u64(seed)
}

/// PostgreSQL's transaction ids belong to the whole server, not to one database: a write
/// transaction open in any test lowers the snapshot horizon every other test's agent records.
/// The few tests that assert how narrowly a re-read was cut need the server to themselves;
/// every other test that creates a PostgreSQL database shares it.
static SERVER: RwLock<()> = RwLock::const_new(());

/// A test's turn on the PostgreSQL server: shared with other tests, or alone. Only held.
pub struct Turn {
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _alone: Option<RwLockWriteGuard<'static, ()>>,
}

thread_local! {
    /// The turn of the test running on this thread (each test has a thread of its own, and a
    /// `#[tokio::test]` runs its tasks on it), while any of its databases lives. Reused by its
    /// next database: asking the lock again could queue behind a test waiting to be alone,
    /// which waits for this one.
    static TURN: RefCell<Weak<Turn>> = const { RefCell::new(Weak::new()) };
}

/// This test's turn on the PostgreSQL server, shared unless it took it alone.
async fn shared_turn() -> Arc<Turn> {
    if let Some(turn) = TURN.with(|t| t.borrow().upgrade()) {
        return turn;
    }
    let turn = Arc::new(Turn {
        _shared: Some(SERVER.read().await),
        _alone: None,
    });
    TURN.with(|t| *t.borrow_mut() = Arc::downgrade(&turn));
    turn
}

/// Wait until no other test has a PostgreSQL database, and keep others from creating one
/// while the returned turn lives. Call it before this test creates any database.
pub async fn alone_on_the_server() -> Arc<Turn> {
    assert!(
        TURN.with(|t| t.borrow().upgrade()).is_none(),
        "alone_on_the_server() must come before the test's first PgDb::new"
    );
    let turn = Arc::new(Turn {
        _shared: None,
        _alone: Some(SERVER.write().await),
    });
    TURN.with(|t| *t.borrow_mut() = Arc::downgrade(&turn));
    turn
}

/// Base URL of the test PostgreSQL server (no database part).
pub fn pg_base() -> String {
    std::env::var("FRONTDB_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Base URL of the test MariaDB/MySQL server (no database part).
pub fn my_base() -> String {
    std::env::var("FRONTDB_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

fn unique(tag: &str) -> String {
    format!(
        "fdbt_{tag}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A PostgreSQL database created for one test.
pub struct PgDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    /// Held until the database is dropped (see [`alone_on_the_server`]).
    _turn: Arc<Turn>,
}

impl PgDb {
    pub async fn new(tag: &str) -> PgDb {
        let turn = shared_turn().await;
        let name = unique(tag);
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&format!("{}/postgres", pg_base()))
            .await
            .expect("connect to PostgreSQL (is it running? scripts/test.sh starts it)");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&admin)
            .await
            .expect("create database");
        admin.close().await;
        let url = format!("{}/{name}", pg_base());
        let opts = sqlx::postgres::PgConnectOptions::from_str(&url)
            .expect("url")
            .options([("TimeZone", "UTC")]);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .expect("connect to test database");
        PgDb {
            name,
            url,
            pool,
            _turn: turn,
        }
    }

    pub async fn exec(&self, sql: &str) {
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}\nin SQL:\n{sql}"));
    }

    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}\nin SQL:\n{sql}"))
    }

    /// Every row of a query, each column as optional text.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let rows = sqlx::query(AssertSqlSafe(sql.to_owned()))
            .fetch_all(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}\nin SQL:\n{sql}"));
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| r.try_get::<Option<String>, _>(i).expect("text column"))
                    .collect()
            })
            .collect()
    }

    pub async fn drop(self) {
        self.pool.close().await;
        if let Ok(admin) = PgPoolOptions::new()
            .max_connections(1)
            .connect(&format!("{}/postgres", pg_base()))
            .await
        {
            let _ = sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            )))
            .execute(&admin)
            .await;
            admin.close().await;
        }
    }
}

/// A MariaDB/MySQL database created for one test. Sessions run in UTC.
pub struct MyDb {
    pub name: String,
    pub url: String,
    pub pool: MySqlPool,
}

impl MyDb {
    pub async fn new(tag: &str) -> MyDb {
        let name = unique(tag);
        let admin = MySqlPoolOptions::new()
            .max_connections(1)
            .connect(&format!("{}/mysql", my_base()))
            .await
            .expect("connect to MariaDB (is it running? scripts/test.sh starts it)");
        sqlx::query(AssertSqlSafe(format!(
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        )))
        .execute(&admin)
        .await
        .expect("create database");
        admin.close().await;
        let url = format!("{}/{name}", my_base());
        let pool = MySqlPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .expect("connect to test database");
        MyDb { name, url, pool }
    }

    pub async fn exec(&self, sql: &str) {
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}\nin SQL:\n{sql}"));
    }

    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}\nin SQL:\n{sql}"))
    }

    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let rows = sqlx::query(AssertSqlSafe(sql.to_owned()))
            .fetch_all(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}\nin SQL:\n{sql}"));
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        r.try_get_unchecked::<Option<String>, _>(i)
                            .or_else(|_| {
                                r.try_get_unchecked::<Option<Vec<u8>>, _>(i)
                                    .map(|b| b.map(|b| String::from_utf8_lossy(&b).into_owned()))
                            })
                            .expect("text column")
                    })
                    .collect()
            })
            .collect()
    }

    pub async fn drop(self) {
        self.pool.close().await;
        if let Ok(admin) = MySqlPoolOptions::new()
            .max_connections(1)
            .connect(&format!("{}/mysql", my_base()))
            .await
        {
            let _ = sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS `{}`",
                self.name
            )))
            .execute(&admin)
            .await;
            admin.close().await;
        }
    }
}

/// A directory with a configuration file and a state store, and the agent binary.
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Agent {
    /// Write a configuration. `{dir}` in the text becomes the temporary directory.
    pub fn new(config: &str) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.toml");
        let text = config.replace("{dir}", &dir.path().display().to_string());
        std::fs::write(&path, text).expect("write config");
        Agent { dir, config: path }
    }

    /// Replace the configuration (with `{dir}` expanded as in [`Agent::new`]).
    pub fn rewrite(&self, config: &str) {
        let text = config.replace("{dir}", &self.dir.path().display().to_string());
        std::fs::write(&self.config, text).expect("write config");
    }

    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config).expect("read config")
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_frontdb-agent"));
        c.arg("--config").arg(&self.config);
        c.env("FRONTDB_LOG", "warn");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .expect("run frontdb-agent")
    }

    /// Run and insist on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_logged(args, "warn").0
    }

    /// Run with the log at `level` and insist on success; returns stdout and the log.
    pub fn ok_logged(&self, args: &[&str], level: &str) -> (String, String) {
        let out = self
            .command()
            .env("FRONTDB_LOG", level)
            .args(args)
            .output()
            .expect("run frontdb-agent");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "frontdb-agent {args:?} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status.code()
        );
        (stdout, stderr)
    }

    pub fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("status json")
    }
}

/// The standard header of a test configuration: agent in `{dir}`, the given databases.
pub fn header(source_url: &str, exchange_url: &str) -> String {
    format!(
        r#"[agent]
id = "230000-TEST"
state_dir = "{{dir}}/state"
timezone = "Asia/Shanghai"
region_code = "230000"
department_code = "SCJGJ"

[source]
url = "{source_url}"

[exchange]
url = "{exchange_url}"
"#
    )
}

/// Text of an SQLite database file's rows (for SQLite sources and targets).
pub async fn sqlite_rows(path: &std::path::Path, sql: &str) -> Vec<Vec<Option<String>>> {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open sqlite");
    let rows = sqlx::query(AssertSqlSafe(sql.to_owned()))
        .fetch_all(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}\nin SQL:\n{sql}"));
    let out = rows
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.try_get::<Option<String>, _>(i).expect("text"))
                .collect()
        })
        .collect();
    pool.close().await;
    out
}

/// Run SQL against an SQLite file, creating it when needed.
pub async fn sqlite_exec(path: &std::path::Path, sql: &str) {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .expect("open sqlite");
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}\nin SQL:\n{sql}"));
    pool.close().await;
}

/// Poll `check` every 200 ms until it holds; panic naming `what` after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A daemon whose log goes to a file that the test can read while it runs.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(agent: &Agent, args: &[&str]) -> Daemon {
        let log = agent.dir.path().join(format!(
            "daemon-{}.log",
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let file = std::fs::File::create(&log).expect("log file");
        let child = agent
            .command()
            .env("FRONTDB_LOG", "info")
            .arg("run")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn run");
        Daemon { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// SIGTERM, and the exit code.
    pub fn stop(mut self) -> (Option<i32>, String) {
        self.signal("-TERM");
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return (s.code(), self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }
}

/// A test that fails half way leaves no daemon behind.
impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub async fn pg_admin(sql: &str) {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{}/postgres", pg_base()))
        .await
        .expect("admin");
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(&admin)
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
    admin.close().await;
}

pub async fn refuse_connections(db: &str, refuse: bool) {
    pg_admin(&format!(
        "ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS {}",
        !refuse
    ))
    .await;
    if refuse {
        pg_admin(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
        ))
        .await;
    }
}

/// `rejects list --json` with more arguments, as a list.
pub fn rejects(agent: &Agent, args: &[&str]) -> Vec<serde_json::Value> {
    let mut a = vec!["rejects", "list", "--json"];
    a.extend_from_slice(args);
    serde_json::from_str::<serde_json::Value>(&agent.ok(&a))
        .expect("json")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The path of a command on PATH.
pub fn which(cmd: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(cmd))
                .find(|p| p.is_file())
        })
        .ok_or(())
}
