//! Every configuration shipped in `config/` is valid, the PostgreSQL example's tables are
//! what `sql/postgres/example.sql` creates, and every configuration key is documented in
//! README.md.

use std::path::Path;

use crate::common::{Agent, PgDb};

fn example_text(name: &str, secret_file: &Path) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config")
            .join(name),
    )
    .expect("read example")
    .replace(
        "/etc/frontdb-agent/source.pw",
        &secret_file.display().to_string(),
    )
}

/// The environment the shipped examples' `${env:...}` secrets are read from, instead of the
/// process's (which tests leave alone).
fn example_env(name: &str) -> Option<String> {
    match name {
        "QZK_PASSWORD" => Some("x".into()),
        "EXCHANGE_PASSWORD" => Some("y".into()),
        "EXCHANGE_SECRET" | "QCVN_SECRET" | "MC_PASSWORD" => Some("s".into()),
        _ => None,
    }
}

#[test]
fn every_shipped_configuration_is_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "z").expect("pw");
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    let examples = configs.join("examples");
    let entries = std::fs::read_dir(&configs)
        .expect("config dir")
        .chain(std::fs::read_dir(&examples).expect("config/examples"));
    for entry in entries {
        let path = entry.expect("entry").path();
        // The receiver's own files are not agent configurations.
        if path
            .file_name()
            .is_some_and(|f| f.to_string_lossy().starts_with("exchange-sim"))
        {
            continue;
        }
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path)
                .expect("read example")
                .replace("/etc/frontdb-agent/source.pw", &pw.display().to_string());
            if let Err(e) = frontdb_agent::config::load_str_with(&text, &path, example_env) {
                panic!("{e}");
            }
            n += 1;
        }
    }
    assert!(
        n >= 3,
        "expected the demo and the engine examples, found {n}"
    );
}

#[tokio::test]
async fn the_postgres_example_matches_its_ddl() {
    let db = PgDb::new("example").await;
    let ddl = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/postgres/example.sql"),
    )
    .expect("ddl");
    db.exec(&ddl).await;
    let mirror = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/postgres/rejects_mirror.sql"),
    )
    .expect("mirror ddl");
    db.exec(&mirror).await;
    db.exec(
        "INSERT INTO up_supervision_action VALUES (1, '23000000100001', '哈尔滨市某某公司', \
         '91350100M000100Y43', '01', '01', 100.50, '2026-11-01 09:00', '备注', '2026-11-01 10:00')",
    )
    .await;
    db.exec("INSERT INTO up_access_log (user_name, action) VALUES ('admin', 'login')")
        .await;
    let text = example_text("postgres.example.toml", Path::new("/nonexistent"))
        .replace("postgres://sync@127.0.0.1:5432/qzk", &db.url)
        .replace("postgres://exchange@127.0.0.1:5432/exchange", &db.url)
        .replace("/var/lib/frontdb-agent", "{dir}/state")
        .replace("${env:QZK_PASSWORD}", "")
        .replace("${env:EXCHANGE_PASSWORD}", "")
        .replace(
            "file = \"codes/",
            &format!("file = \"{}/config/codes/", env!("CARGO_MANIFEST_DIR")),
        );
    let agent = Agent::new(&text);
    let out = agent.ok(&["check"]);
    assert!(out.contains("all tables OK"), "{out}");
    let out = agent.ok(&["once"]);
    assert!(out.contains("supervision_action: 1 row(s) sent"), "{out}");
    assert!(out.contains("up_access_log: 1 row(s) sent"), "{out}");
    assert_eq!(
        db.rows("SELECT remark_text, region_code, cd_source FROM jg_supervision_action")
            .await,
        vec![vec![
            Some("备注".into()),
            Some("230000".into()),
            Some("230000SCJGJ".into())
        ]]
    );
    db.drop().await;
}

/// Every key the configuration schema accepts (field names of `src/config/schema.rs`).
fn configuration_keys() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema = std::fs::read_to_string(root.join("src/config/schema.rs")).expect("schema");
    let mut keys: Vec<String> = Vec::new();
    for line in schema.lines() {
        let t = line.trim_start();
        let t = t.strip_prefix("pub ").unwrap_or(t);
        if let Some((name, _)) = t.split_once(": ")
            && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            && !name.is_empty()
        {
            keys.push(name.to_owned());
        }
    }
    keys.retain(|k| k != "tables");
    keys.push("table".into());
    keys.push("kind".into());
    keys.sort();
    keys.dedup();
    assert!(keys.len() > 60, "found only {keys:?}");
    keys
}

/// The keys a README's reference tables do not show: a key counts as documented when it
/// appears in backticks (`key`, `[key]`, `[[key]]` or `[section.key]`) in a row of a Markdown
/// table.
fn undocumented(readme: &str, keys: &[String]) -> Vec<String> {
    let rows: Vec<&str> = readme
        .lines()
        .filter(|l| l.trim_start().starts_with('|'))
        .collect();
    keys.iter()
        .filter(|k| {
            !rows.iter().any(|r| {
                r.contains(&format!("`{k}`"))
                    || r.contains(&format!("`[{k}]`"))
                    || r.contains(&format!("`[[{k}]]`"))
                    || r.contains(&format!(".{k}]`"))
            })
        })
        .cloned()
        .collect()
}

#[test]
fn every_configuration_key_is_in_both_readmes_reference_tables() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let keys = configuration_keys();
    for readme in ["README.md", "README.zh-CN.md"] {
        let text = std::fs::read_to_string(root.join(readme)).expect(readme);
        let missing = undocumented(&text, &keys);
        assert!(
            missing.is_empty(),
            "{readme} does not document: {missing:?}"
        );
    }
    // The check itself notices a missing key.
    assert_eq!(
        undocumented(
            "| `id` | x |\n`state_dir` in prose",
            &["id".into(), "state_dir".into()]
        ),
        vec!["state_dir".to_owned()]
    );
}

/// README's first command: the embedded SQLite example as an ordinary agent, run where a
/// newcomer would run it (a copy of `config/` and `sql/`, so the checkout stays clean).
#[tokio::test]
async fn the_readme_sqlite_example_exchanges_once_and_sends_nothing_twice() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("config")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("sql/sqlite")).expect("mkdir");
    std::fs::copy(
        root.join("config/demo-sqlite.toml"),
        dir.path().join("config/demo-sqlite.toml"),
    )
    .expect("copy config");
    for f in ["demo_source.sql", "demo_exchange.sql"] {
        std::fs::copy(
            root.join("sql/sqlite").join(f),
            dir.path().join("sql/sqlite").join(f),
        )
        .expect("copy sql");
    }
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_frontdb-agent"))
            .current_dir(dir.path())
            .args(["--config", "config/demo-sqlite.toml"])
            .args(args)
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let first = run(&["once"]);
    for line in [
        "up_supervision_action: 7 row(s) sent, 0 deleted, 2 quarantined",
        "up_dishonest_enterprise: 3 row(s) sent, 1 deleted",
        "up_item_catalogue: 5 row(s) sent",
        "up_complaint: 3 row(s) sent",
    ] {
        assert!(first.contains(line), "missing `{line}` in:\n{first}");
    }
    let exchange = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("demo-data/exchange.db").display()
    ))
    .await
    .expect("exchange.db");
    let count = |t: &'static str| {
        let pool = exchange.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {t}")))
                .fetch_one(&pool)
                .await
                .expect("count")
        }
    };
    assert_eq!(count("jg_supervision_action").await, 7);
    assert_eq!(count("jg_item_catalogue").await, 5);
    let second = run(&["once"]);
    assert_eq!(
        second
            .matches(" 0 row(s) sent, 0 deleted, 0 quarantined")
            .count(),
        4,
        "the second run sends nothing:\n{second}"
    );
    assert_eq!(count("jg_supervision_action").await, 7);
    let status = run(&["status"]);
    assert!(status.contains("up_supervision_action"), "{status}");
    exchange.close().await;
}
