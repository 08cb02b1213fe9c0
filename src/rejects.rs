//! `rejects`: the rows that were not delivered (quarantined by a rule, refused by the
//! exchange, unreadable), with every reason.

use crate::config::Config;
use crate::error::AppError;
use crate::state::{RejectRow, State, parse_ts};

async fn open_state(cfg: &Config) -> Result<Option<State>, AppError> {
    if !cfg.agent.state_dir.join("state.db").exists() {
        return Ok(None);
    }
    State::open(&cfg.agent.state_dir)
        .await
        .map(Some)
        .map_err(AppError::runtime)
}

fn local(cfg: &Config, s: &str) -> String {
    parse_ts(s)
        .map(|t| {
            t.with_timezone(&cfg.agent.tz)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| s.to_owned())
}

/// `rejects list`.
pub async fn list(
    cfg: &Config,
    table: Option<&str>,
    state: Option<&str>,
    json: bool,
) -> Result<(), AppError> {
    if let Some(t) = table {
        crate::runner::selected(cfg, Some(t))?;
    }
    let rows: Vec<RejectRow> = match open_state(cfg).await? {
        Some(st) => {
            let r = st.rejects(table, state).await.map_err(AppError::runtime)?;
            st.close().await;
            r
        }
        None => Vec::new(),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(AppError::runtime)?
        );
        return Ok(());
    }
    if rows.is_empty() {
        println!("no rejected rows");
        return Ok(());
    }
    for r in &rows {
        println!(
            "#{}  {}  key {}  [{} · {}]  {}",
            r.id,
            r.table,
            r.key,
            r.state,
            r.origin,
            local(cfg, &r.last_seen)
        );
        for why in &r.reasons {
            println!("    {why}");
        }
    }
    Ok(())
}

/// `rejects show ID`.
pub async fn show(cfg: &Config, id: i64, json: bool) -> Result<(), AppError> {
    let row = match open_state(cfg).await? {
        Some(st) => {
            let r = st.reject(id).await.map_err(AppError::runtime)?;
            st.close().await;
            r
        }
        None => None,
    };
    let Some(r) = row else {
        return Err(AppError::Usage(format!("there is no rejected row #{id}")));
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).map_err(AppError::runtime)?
        );
        return Ok(());
    }
    println!("reject #{}  table {}  key {}", r.id, r.table, r.key);
    println!("  state         {} (from {})", r.state, r.origin);
    println!("  first seen    {}", local(cfg, &r.first_seen));
    println!("  last seen     {}", local(cfg, &r.last_seen));
    if let Some(t) = &r.resubmitted {
        println!("  resubmitted   {}", local(cfg, t));
    }
    if let Some(b) = &r.batch_id {
        println!("  batch         {b}");
    }
    println!("  reasons:");
    for why in &r.reasons {
        println!("    - {why}");
    }
    if let Some(obj) = r.row.as_object() {
        println!("  row:");
        for (k, v) in obj {
            match v.as_str() {
                Some(s) => println!("    {k} = {s}"),
                None => println!("    {k} = NULL"),
            }
        }
    }
    Ok(())
}
