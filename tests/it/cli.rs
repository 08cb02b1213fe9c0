//! The command-line contract: exit codes, configuration errors with key and line, `check`
//! naming what is missing, and secrets never printed.

use crate::common::{Agent, MyDb, PgDb, header, my_base};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const TABLE: &str = "\n[[table]]\nsource = \"t\"\nwatermark = { kind = \"key\" }\n";

#[test]
fn a_misspelled_key_exits_2_naming_the_key_and_its_line() {
    let agent = Agent::new(
        "[agent]\nid = \"a\"\nstate_dir = \"{dir}/s\"\n\n[source]\nurl = \"sqlite://{dir}/a.db\"\n\n\
         [exchange]\nurl = \"sqlite://{dir}/b.db\"\n\n[[table]]\nsource = \"t\"\nschedul = \"daily\"\n\
         watermark = { kind = \"timestamp\", colum = \"updated_at\" }\nbatch_size = \"many\"\n\
         [[table]]\nsource = \"u v\"\nwatermark = { kind = \"key\" }\nschedule = \"fortnightly\"\n",
    );
    for verb in [&["once"][..], &["run"], &["check"], &["status"]] {
        let out = agent.run(verb);
        assert_eq!(out.status.code(), Some(2), "{verb:?}: {}", text(&out));
        let t = text(&out);
        assert!(
            t.contains("agent.toml:13: table[0].schedul: unknown field `schedul`"),
            "{t}"
        );
        assert!(
            t.contains("agent.toml:14: table[0].watermark.colum: unknown field `colum`"),
            "{t}"
        );
        assert!(
            t.contains("agent.toml:15: table[0].batch_size: invalid type"),
            "{t}"
        );
        // With `colum` misspelled, `column` is missing: said too, on the same line.
        assert!(
            t.contains("agent.toml:14: table[0].watermark: missing field `column`"),
            "{t}"
        );
        // The first table cannot be read without its column; the second is still checked.
        assert!(t.contains("agent.toml:17: table[1].source"), "{t}");
        assert!(t.contains("agent.toml:19: table[1].schedule"), "{t}");
        assert!(t.contains("has 6 problems"), "{t}");
        let lines: Vec<usize> = t
            .lines()
            .filter_map(|l| l.split("agent.toml:").nth(1))
            .filter_map(|l| l.split(':').next()?.parse().ok())
            .collect();
        assert!(
            lines.windows(2).all(|w| w[0] <= w[1]),
            "problems in line order: {t}"
        );
    }
}

#[test]
fn identifiers_that_could_inject_sql_are_refused() {
    let agent = Agent::new(
        "[agent]\nid = \"a\"\nstate_dir = \"{dir}/s\"\n[source]\nurl = \"sqlite://{dir}/a.db\"\n\
         [exchange]\nurl = \"sqlite://{dir}/b.db\"\n[[table]]\nsource = \"t; drop table x\"\n\
         key = [\"id\\\" OR 1=1 --\"]\nwatermark = { kind = \"key\" }\n",
    );
    let out = agent.run(&["once"]);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(
        t.contains("table[0].source: `t; drop table x` is not a valid identifier"),
        "{t}"
    );
    assert!(t.contains("table[0].key[0]:"), "{t}");
    assert!(!agent.dir.path().join("a.db").exists(), "nothing connected");
}

#[test]
fn semantic_problems_are_all_reported_before_connecting() {
    let agent = Agent::new(
        "[agent]\nid = \"bad id!\"\ntimezone = \"Nowhere/City\"\nregion_code = \"23\"\n\
         [source]\nurl = \"oracle2://x\"\npassword = \"${env:FRONTDB_TEST_UNSET_VARIABLE}\"\n\
         [exchange]\nkind = \"http\"\nurl = \"postgres://127.0.0.1:1/x\"\n\
         [[table]]\nsource = \"a\"\nschedule = \"weekly\"\ncategory = \"supervision_action\"\n\
         watermark = { kind = \"timestamp\", column = \"u\", lookback = \"soon\" }\n\
         [[table]]\nsource = \"a\"\nschedule = \"cron:0 0 0 30 2 *\"\nwatermark = { kind = \"digest\" }\n",
    );
    let out = agent.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    for want in [
        ":2: agent.id:",
        ":3: agent.timezone: `Nowhere/City`",
        ":4: agent.region_code:",
        ":6: source.url: `oracle2` is not a supported database",
        ":7: source.password: environment variable FRONTDB_TEST_UNSET_VARIABLE is not set",
        ":10: exchange.url: must be an http:// or https:// URL",
        ":13: table[0].schedule: table `a` holds supervision behaviour (监管行为) data",
        "requires at least daily; schedule `weekly` runs only weekly",
        ":15: table[0].watermark.lookback: `soon` is not a duration",
        ":18: table[1].schedule: cron expression `0 0 0 30 2 *` never fires",
        ":16: table[1].name: table name `a` is used twice",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
}

#[test]
fn config_comes_from_frontdb_config_or_the_default_path() {
    let agent = Agent::new("[agent]\nid = \"x\"\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_frontdb-agent"))
        .env("FRONTDB_CONFIG", &agent.config)
        .arg("check")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("missing field `source`"),
        "{}",
        text(&out)
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_frontdb-agent"))
        .env_remove("FRONTDB_CONFIG")
        .arg("status")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("/etc/frontdb-agent/agent.toml"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn check_names_missing_tables_and_columns() {
    let src = PgDb::new("check").await;
    let tgt = PgDb::new("check").await;
    src.exec("CREATE TABLE t (id int PRIMARY KEY, name text, updated_at timestamp)")
        .await;
    src.exec("CREATE TABLE nokey (a int)").await;
    tgt.exec("CREATE TABLE nokey (a int)").await;
    tgt.exec("CREATE TABLE t (id int, name2 text, updated_at timestamp)")
        .await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"t\"\nrename = {{ name = \"nom\" }}\n\
         watermark = {{ kind = \"timestamp\", column = \"changed_at\" }}\n\
         [[table]]\nsource = \"missing\"\nwatermark = {{ kind = \"key\" }}\n\
         [[table]]\nsource = \"nokey\"\nwatermark = {{ kind = \"key\" }}\n",
        header(&src.url, &tgt.url)
    ));
    let out = agent.run(&["check"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    for want in [
        "watermark column `changed_at` is not a column of source table public.t",
        "exchange table public.t has no column `nom` for source column `name`",
        "exchange table public.t has no primary key or unique index on (id)",
        "source table missing does not exist in the front-end database",
        "source table public.nokey has no primary key: set `key = [\"...\"]`",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
    // `once` fails the same way, naming the table and the step, with exit 1.
    let out = agent.run(&["once", "--table", "missing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .contains("table missing: checking the tables: source table missing does not exist")
    );
    // An unknown table name is a usage error.
    let out = agent.run(&["once", "--table", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("no table named `nope`"),
        "{}",
        text(&out)
    );
    src.drop().await;
    tgt.drop().await;
}

#[tokio::test]
async fn secrets_never_appear_in_any_output() {
    let src = PgDb::new("secret").await;
    let tgt = MyDb::new("secret").await;
    src.exec("CREATE TABLE t (id int PRIMARY KEY)").await;
    let pw_url = "TopSecret-42";
    let pw_file = "FileSecret-77";
    let agent = Agent::new(&format!(
        "[agent]\nid = \"a\"\nstate_dir = \"{{dir}}/s\"\n[source]\nurl = \"{}\"\n\
         [exchange]\nurl = \"{}\"\npassword = \"${{file:pw}}\"\n{TABLE}",
        src.url
            .replacen("postgres@", &format!("postgres:{pw_url}@"), 1),
        tgt.url
    ));
    std::fs::write(agent.dir.path().join("pw"), format!("{pw_file}\n")).expect("pw");
    // PostgreSQL accepts (trust), MariaDB refuses the password: the error must not show it.
    for verb in [
        &["check"][..],
        &["once"],
        &["status"],
        &["status", "--json"],
    ] {
        let out = agent.run(verb);
        let t = text(&out);
        assert!(
            !t.contains(pw_url) && !t.contains(pw_file),
            "{verb:?} leaked a secret:\n{t}"
        );
        if verb[0] != "status" {
            assert_eq!(out.status.code(), Some(1), "{verb:?}: {t}");
            assert!(t.contains("cannot connect to the exchange database"), "{t}");
            assert!(t.contains("Access denied"), "{t}");
        }
    }
    let out = agent.run(&["check"]);
    assert!(text(&out).contains("postgres:***@"), "{}", text(&out));
    src.drop().await;
    tgt.drop().await;
}

#[test]
fn an_unreachable_database_is_a_runtime_failure_naming_it() {
    let agent = Agent::new(&format!(
        "[agent]\nid = \"a\"\nstate_dir = \"{{dir}}/s\"\n[source]\nurl = \"postgres://u@127.0.0.1:1/qzk\"\n\
         connect_timeout = \"2s\"\n[exchange]\nurl = \"{}/x\"\n{TABLE}",
        my_base()
    ));
    let out = agent.run(&["once"]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(
        t.contains(
            "cannot connect to the source database (PostgreSQL, postgres://u@127.0.0.1:1/qzk)"
        ),
        "{t}"
    );
}
