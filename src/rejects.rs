//! `rejects`: the rows that were not delivered (quarantined by a rule, refused by the
//! exchange, rejected by the province), with every reason and their history; sending them
//! again on request; a CSV export for the business team.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::AppError;
use crate::job;
use crate::state::RejectState;
use crate::state::{RejectRow, State, parse_ts};

async fn open_state(cfg: &Config) -> Result<Option<State>, AppError> {
    if !cfg.agent.state_dir.join("state.db").exists() {
        return Ok(None);
    }
    State::open_with(&cfg.agent.state_dir, cfg.agent.state_cipher.clone())
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

/// The reject state a command line names.
fn state_of(word: Option<&str>) -> Result<Option<RejectState>, AppError> {
    word.map(|w| {
        RejectState::parse(w).ok_or_else(|| {
            AppError::Usage(format!(
                "`{w}` is not a reject state: use open, resubmitted or cleared"
            ))
        })
    })
    .transpose()
}

async fn selected(
    cfg: &Config,
    table: Option<&str>,
    state: Option<RejectState>,
) -> Result<Vec<RejectRow>, AppError> {
    if let Some(t) = table {
        crate::runner::selected(cfg, Some(t))?;
    }
    match open_state(cfg).await? {
        Some(st) => {
            let r = st.rejects(table, state).await.map_err(AppError::runtime)?;
            st.close().await;
            Ok(r)
        }
        None => Ok(Vec::new()),
    }
}

/// The rejects of a table (or all) in a state (or any), as `rejects list` names them.
pub async fn selected_by(
    cfg: &Config,
    table: Option<&str>,
    state: Option<&str>,
) -> Result<Vec<RejectRow>, AppError> {
    selected(cfg, table, state_of(state)?).await
}

/// `rejects list`.
pub async fn list(
    cfg: &Config,
    table: Option<&str>,
    state: Option<&str>,
    json: bool,
) -> Result<(), AppError> {
    let rows = selected(cfg, table, state_of(state)?).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(AppError::runtime)?
        );
        return Ok(());
    }
    if rows.is_empty() {
        println!("{}", crate::tc!("rejects-none"));
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
    let found = match open_state(cfg).await? {
        Some(st) => {
            let r = st.reject(id).await.map_err(AppError::runtime)?;
            let asked = st.audit_trail(20, Some(&format!("#{id}"))).await;
            st.close().await;
            r.map(|r| (r, asked))
        }
        None => None,
    };
    let Some(((r, history), asked)) = found else {
        return Err(AppError::Usage(crate::tc!("rejects-no-such", id = id)));
    };
    let asked = asked.map_err(AppError::runtime)?;
    if json {
        let doc = serde_json::json!({ "reject": r, "history": history, "asked": asked });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(AppError::runtime)?
        );
        return Ok(());
    }
    let lang = crate::i18n::Lang::cli();
    let label = |id: &str| crate::status::pad(&crate::t!(lang, id), 14);
    println!(
        "{}",
        crate::t!(
            lang,
            "rejects-show-head",
            id = r.id,
            table = r.table.as_str(),
            key = r.key.as_str()
        )
    );
    println!(
        "  {}{}",
        label("rejects-state"),
        crate::t!(
            lang,
            "rejects-state-from",
            state = r.state.as_str(),
            origin = r.origin.as_str()
        )
    );
    println!(
        "  {}{}",
        label("rejects-first-seen"),
        local(cfg, &r.first_seen)
    );
    println!(
        "  {}{}",
        label("rejects-last-seen"),
        local(cfg, &r.last_seen)
    );
    if let Some(b) = &r.batch_id {
        println!("  {}{b}", label("rejects-batch"));
    }
    println!("  {}", crate::t!(lang, "rejects-reasons"));
    for why in &r.reasons {
        println!("    - {why}");
    }
    if r.encrypted {
        println!(
            "  {}{}",
            label("rejects-row"),
            crate::t!(lang, "rejects-encrypted")
        );
    }
    if let Some(obj) = r.row.as_object().filter(|o| !o.is_empty()) {
        println!("  {}", crate::t!(lang, "rejects-row"));
        for (k, v) in obj {
            match v {
                serde_json::Value::Null => println!("    {k} = NULL"),
                // Control characters escaped so that one value stays on one line.
                serde_json::Value::String(s) => println!("    {k} = {}", one_line(s)),
                other => println!("    {k} = {other}"),
            }
        }
    }
    println!("  {}", crate::t!(lang, "rejects-history"));
    for h in &history {
        match &h.detail {
            Some(d) => println!("    {}  {}: {d}", local(cfg, &h.at), h.event),
            None => println!("    {}  {}", local(cfg, &h.at), h.event),
        }
    }
    for a in &asked {
        println!(
            "    {}  {}",
            local(cfg, &a.at),
            crate::t!(
                lang,
                "asked-by",
                action = a.action.as_str(),
                who = a.who.as_str()
            )
        );
    }
    Ok(())
}

/// `rejects export --csv`: the ledger for the business team (UTF-8; `bom` for Excel).
pub async fn export(
    cfg: &Config,
    table: Option<&str>,
    state: Option<&str>,
    bom: bool,
) -> Result<(), AppError> {
    let rows = selected(cfg, table, state_of(state)?).await?;
    let out = csv_of(cfg, &rows, bom)?;
    use std::io::Write;
    std::io::stdout()
        .write_all(&out)
        .map_err(AppError::runtime)?;
    Ok(())
}

/// The rejects as CSV (UTF-8, times in the agent's zone; `bom` first for Excel).
pub fn csv_of(cfg: &Config, rows: &[RejectRow], bom: bool) -> Result<Vec<u8>, AppError> {
    let mut out = Vec::new();
    if bom {
        out.extend_from_slice("\u{feff}".as_bytes());
    }
    {
        let mut w = csv::Writer::from_writer(&mut out);
        let header = [
            "id",
            "table",
            "key",
            "state",
            "origin",
            "reasons",
            "first_seen",
            "last_seen",
            "resubmitted",
            "cleared",
        ];
        w.write_record(header).map_err(AppError::runtime)?;
        for r in rows {
            let opt = |s: &Option<String>| s.as_deref().map(|t| local(cfg, t)).unwrap_or_default();
            w.write_record([
                r.id.to_string(),
                r.table.clone(),
                r.key.clone(),
                r.state.to_string(),
                r.origin.to_string(),
                r.reasons.join("; "),
                local(cfg, &r.first_seen),
                local(cfg, &r.last_seen),
                opt(&r.resubmitted),
                opt(&r.cleared),
            ])
            .map_err(AppError::runtime)?;
        }
        w.flush().map_err(AppError::runtime)?;
    }
    Ok(out)
}

/// `rejects resubmit`: read the current source rows of these rejects and send them again
/// (through the same rules and mapping), without waiting for them to change.
pub async fn resubmit(
    cfg: Config,
    id: Option<i64>,
    table: Option<&str>,
    all: bool,
) -> Result<(), AppError> {
    let chosen = choose(&cfg, id, table, all).await?;
    send_again(
        Arc::new(cfg),
        &crate::audit::local_user(),
        crate::i18n::Lang::cli(),
        chosen,
        &mut |line| println!("{line}"),
    )
    .await
}

/// The rejects `rejects resubmit` names: one by its id, the open ones of a table, or every
/// open one.
pub async fn choose(
    cfg: &Config,
    id: Option<i64>,
    table: Option<&str>,
    all: bool,
) -> Result<Vec<RejectRow>, AppError> {
    Ok(match (id, table, all) {
        (Some(id), _, _) => {
            let st = open_state(cfg)
                .await?
                .ok_or_else(|| AppError::Usage(format!("there is no rejected row #{id}")))?;
            let r = st.reject(id).await.map_err(AppError::runtime)?;
            st.close().await;
            vec![
                r.ok_or_else(|| AppError::Usage(format!("there is no rejected row #{id}")))?
                    .0,
            ]
        }
        (None, Some(t), _) => selected(cfg, Some(t), Some(RejectState::Open)).await?,
        (None, None, true) => selected(cfg, None, Some(RejectState::Open)).await?,
        (None, None, false) => {
            return Err(AppError::Usage(
                "say which rejects to send again: an ID, --table T or --all".into(),
            ));
        }
    })
}

/// Send `chosen` again, asked for by `who` (the command line's user, or a console user):
/// recorded in the audit trail, then asked of the running daemon, or done here when none
/// runs. `say` is told, in `lang`, what to tell the person.
pub async fn send_again(
    cfg: Arc<Config>,
    who: &str,
    lang: crate::i18n::Lang,
    chosen: Vec<RejectRow>,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<(), AppError> {
    if chosen.is_empty() {
        say(crate::t!(lang, "resubmit-none"));
        return Ok(());
    }
    let ids: String = chosen.iter().map(|r| format!("#{} ", r.id)).collect();
    crate::audit::record_as(&cfg, who, "rejects resubmit", ids.trim_end()).await?;
    match crate::lock::holder(&cfg.agent.state_dir) {
        Some(pid) => ask_daemon(&cfg, pid, &chosen, lang, say).await,
        None => resubmit_here(cfg, chosen, say).await,
    }
}

/// Beside a running agent: ask it to send the rejects again (each table in its own turn,
/// never beside its cycle), and wait a while for it to have done so. Rejects of tables the
/// configuration no longer runs are left as they are.
async fn ask_daemon(
    cfg: &Config,
    pid: u32,
    chosen: &[RejectRow],
    lang: crate::i18n::Lang,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<(), AppError> {
    let runs = |t: &str| cfg.tables.iter().any(|s| s.name == t && s.enabled);
    for r in chosen.iter().filter(|r| !runs(&r.table)) {
        say(crate::t!(
            lang,
            "resubmit-not-exchanged",
            id = r.id,
            table = r.table.as_str(),
            key = r.key.as_str()
        ));
    }
    let ids: Vec<i64> = chosen
        .iter()
        .filter(|r| runs(&r.table))
        .map(|r| r.id)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let st = open_state(cfg)
        .await?
        .ok_or_else(|| AppError::Runtime("the state store is gone".into()))?;
    st.ask_resubmit(&ids).await.map_err(AppError::runtime)?;
    let mut done = false;
    for _ in 0..100 {
        if !st.still_asked(&ids).await.map_err(AppError::runtime)? {
            done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    st.close().await;
    let n = ids.len();
    if done {
        say(crate::t!(lang, "resubmit-done", pid = pid, n = n));
    } else {
        say(crate::t!(lang, "resubmit-pending", pid = pid, n = n));
    }
    Ok(())
}

/// No daemon runs: send the rejects again here, holding the agent's lock meanwhile.
async fn resubmit_here(
    cfg: Arc<Config>,
    chosen: Vec<RejectRow>,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<(), AppError> {
    let _lock = crate::lock::acquire(&cfg.agent.state_dir).map_err(AppError::Runtime)?;
    let ctx = crate::runner::connect(cfg.clone(), CancellationToken::new(), false).await?;
    let mut by_table: HashMap<String, Vec<RejectRow>> = HashMap::new();
    for r in chosen {
        by_table.entry(r.table.clone()).or_default().push(r);
    }
    let mut failures = Vec::new();
    for (name, rejects) in by_table {
        let Some(spec) = cfg.tables.iter().find(|t| t.name == name) else {
            say(format!(
                "{name}: no such table in the configuration any more; {} reject(s) left as they are",
                rejects.len()
            ));
            continue;
        };
        let prepared = match crate::job::ends(&ctx, spec) {
            Ok(ends) => job::prepare(&cfg, ends, spec).await,
            Err(e) => Err(e),
        };
        let done = match prepared {
            Ok(plan) => job::resubmit(&ctx, &plan, rejects).await,
            Err(e) => Err(e),
        };
        match done {
            Ok(d) => {
                for r in &d.gone {
                    say(format!(
                        "#{}  {} key {}: the row no longer exists at the source",
                        r.id, name, r.key
                    ));
                }
                say(format!(
                    "{name}: {} row(s) sent again, {} quarantined again",
                    d.report.sent, d.report.rejected
                ));
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    crate::runner::disconnect(&ctx).await;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(AppError::Runtime(failures.join("\n")))
    }
}

/// A value on one line: control characters (newline, tab, …) written as escapes.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod one_line_tests {
    #[test]
    fn control_characters_are_escaped_quotes_kept() {
        assert_eq!(super::one_line("O'Brien\tand\nx"), "O'Brien\\tand\\nx");
        assert_eq!(super::one_line("监管“x”"), "监管“x”");
    }
}
