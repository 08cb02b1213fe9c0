//! `demo`: the whole product on embedded SQLite databases, narrated — an exchange, rows caught
//! by the quality rules, a rejection from the province, corrections at the source, the
//! resubmission, and `status`. Needs no server and no configuration; everything it writes
//! stays in one directory (a temporary one, removed at the end, unless `--dir` is given).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{self, Config};
use crate::error::AppError;

/// The embedded example, as shipped in `config/` and `sql/`.
const CONFIG: &str = include_str!("../config/demo-sqlite.toml");
const SOURCE_SQL: &str = include_str!("../sql/sqlite/demo_source.sql");
const EXCHANGE_SQL: &str = include_str!("../sql/sqlite/demo_exchange.sql");

fn say(step: &str, text: &str) {
    use unicode_width::UnicodeWidthStr;
    println!();
    let rule = 76usize.saturating_sub(UnicodeWidthStr::width(step)).max(3);
    println!("── {step} {}", "─".repeat(rule));
    for line in text.lines() {
        println!("{line}");
    }
}

fn load(dir: &Path) -> Result<Config, AppError> {
    Ok(config::load(&dir.join("agent.toml"))?)
}

/// Run SQL on one of the demo's SQLite databases (what the business system and the province do).
async fn exec(db: &Path, sql: &str) -> Result<(), AppError> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .map_err(AppError::runtime)?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&pool)
        .await
        .map_err(AppError::runtime)?;
    pool.close().await;
    Ok(())
}

pub async fn run(dir: Option<PathBuf>) -> Result<(), AppError> {
    let temp;
    let dir = match dir {
        Some(d) => {
            std::fs::create_dir_all(&d).map_err(AppError::runtime)?;
            if d.join("agent.toml").exists() {
                return Err(AppError::Usage(format!(
                    "{} already holds a demo; give an empty directory",
                    d.display()
                )));
            }
            d
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("frontdb-demo-")
                .tempdir()
                .map_err(AppError::runtime)?;
            temp.path().to_owned()
        }
    };
    lay_out(&dir)?;
    println!(
        "frontdb-agent demo — everything happens in {}",
        dir.display()
    );
    exchange_and_correct(&dir).await?;
    conclude(&dir).await
}

/// The demo's configuration and the SQL that creates its two databases.
fn lay_out(dir: &Path) -> Result<(), AppError> {
    let write =
        |name: &str, text: &str| std::fs::write(dir.join(name), text).map_err(AppError::runtime);
    write(
        "agent.toml",
        &CONFIG
            .replace("../demo-data/", "")
            .replace("../sql/sqlite/", ""),
    )?;
    write("demo_source.sql", SOURCE_SQL)?;
    write("demo_exchange.sql", EXCHANGE_SQL)
}

/// Steps 1 to 4: the first exchange, a rejection by the province, the corrections.
async fn exchange_and_correct(dir: &Path) -> Result<(), AppError> {
    say(
        "1. The front-end database (前置库)",
        "A department's business system has written its exchange tables into an embedded\n\
         front-end database: 9 inspections (监管行为), 4 dishonest-enterprise entries (失信企业,\n\
         one of them deleted: operation D), a code table (监管事项目录) and 3 complaints\n\
         (投诉举报, waiting with extraction flag 0). Two inspections carry errors. The provincial\n\
         exchange is a second embedded database. Quality rules: credit-code check digit, required\n\
         name, 14-digit item code, inspection-form code set, plausible date.",
    );

    say("2. First exchange: frontdb-agent once", "");
    crate::runner::once(load(dir)?, None).await?;
    println!();
    println!("Two inspections were quarantined, not sent; the rest of their batch went through:");
    crate::rejects::list(&load(dir)?, None, None, false).await?;

    say(
        "3. The province rejects a record",
        "The province checks what it received and writes a rejection into its table\n\
         exchange_reject: inspection 1005 has a penalty but its result code says \"no problem\".\n\
         The next exchange reads it back and links it to the source row.",
    );
    exec(
        &dir.join("exchange.db"),
        "INSERT INTO exchange_reject (table_name, record_key, error_code, error_message) \
         VALUES ('jg_supervision_action', '1005', 'E207', '检查结果与处罚金额不一致')",
    )
    .await?;
    crate::runner::once(load(dir)?, None).await?;
    println!();
    println!("The rejects ledger now (frontdb-agent rejects list):");
    crate::rejects::list(&load(dir)?, None, None, false).await?;

    say(
        "4. The business system corrects the three records",
        "Staff fix the credit code of 1003, the item code and form of 1009, and the result code\n\
         of 1005, in the front-end database. The next exchange sends the corrected rows again;\n\
         their rejects become \"resubmitted\".",
    );
    exec(
        &dir.join("qzk.db"),
        "UPDATE up_supervision_action SET uscc = '92230202MA18XXXX17', \
           updated_at = '2026-11-20 09:00:00.000000' WHERE action_id = 1003; \
         UPDATE up_supervision_action SET item_code = '23000000100005', check_form = '01', \
           updated_at = '2026-11-20 09:00:01.000000' WHERE action_id = 1009; \
         UPDATE up_supervision_action SET check_result = '03', \
           updated_at = '2026-11-20 09:00:02.000000' WHERE action_id = 1005;",
    )
    .await?;
    crate::runner::once(load(dir)?, None).await?;
    println!();
    crate::rejects::list(&load(dir)?, None, None, false).await?;

    Ok(())
}

/// Steps 5 and 6, and the proof: the corrected rows cleared, the status, and both sides
/// compared.
async fn conclude(dir: &Path) -> Result<(), AppError> {
    say(
        "5. No new rejection within the confirmation window",
        "The province did not reject the corrected records again (the demo waits one second;\n\
         a real agent waits [feedback] confirm, a day by default), so they are cleared.",
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    crate::runner::once(load(dir)?, None).await?;
    println!();
    let cfg = load(dir)?;
    let first = cfg
        .tables
        .first()
        .map(|t| t.name.clone())
        .unwrap_or_default();
    let open = crate::state::State::open(&cfg.agent.state_dir)
        .await
        .map_err(AppError::runtime)?;
    let all = open.rejects(None, None).await.map_err(AppError::runtime)?;
    open.close().await;
    if let Some(r) = all.iter().find(|r| r.key == "1005") {
        println!(
            "The history of reject #{} (frontdb-agent rejects show {}):",
            r.id, r.id
        );
        crate::rejects::show(&cfg, r.id, false).await?;
    }

    say("6. frontdb-agent status", "");
    crate::status::status(&cfg, false).await?;

    let (source, same, differ) = compare(dir).await?;
    if differ > 0 {
        return Err(AppError::Runtime(format!(
            "the demo went wrong: {differ} inspection(s) differ between {first} and the exchange"
        )));
    }
    say(
        "Done",
        &format!(
            "All {source} inspections of {first} are at the exchange, each once and identical\n\
             to the corrected source ({same} compared column by column), and the ledger says what\n\
             happened to every rejected record. Next: docs/configuration.md (the configuration\n\
             reference) and config/postgres.example.toml for a real department."
        ),
    );
    Ok(())
}

/// Compare the inspections at the source and at the exchange, column by column:
/// (rows at the source, rows identical at the exchange, rows missing or different).
async fn compare(dir: &Path) -> Result<(i64, i64, i64), AppError> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("qzk.db").display()))
        .await
        .map_err(AppError::runtime)?;
    let mut conn = pool.acquire().await.map_err(AppError::runtime)?;
    let attach = format!(
        "ATTACH DATABASE '{}' AS ex",
        dir.join("exchange.db")
            .display()
            .to_string()
            .replace('\'', "''")
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(attach))
        .execute(&mut *conn)
        .await
        .map_err(AppError::runtime)?;
    // The agent writes timestamps with microseconds; compare them as instants.
    let cols = "action_id, item_code, object_name, uscc, check_form, check_result, penalty, \
                strftime('%Y-%m-%d %H:%M:%f', inspected_at), remark, \
                strftime('%Y-%m-%d %H:%M:%f', updated_at)";
    let (source, same, target): (i64, i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT (SELECT count(*) FROM up_supervision_action), \
                (SELECT count(*) FROM (SELECT {cols} FROM up_supervision_action \
                 INTERSECT SELECT {cols} FROM ex.jg_supervision_action)), \
                (SELECT count(*) FROM ex.jg_supervision_action)"
    )))
    .fetch_one(&mut *conn)
    .await
    .map_err(AppError::runtime)?;
    drop(conn);
    pool.close().await;
    Ok((source, same, (source - same) + (target - same)))
}
