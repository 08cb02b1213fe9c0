//! `resync` as a person asks for it, from the command line or the console: recorded in the
//! audit trail under who asked, then asked of the running daemon (which picks it up within a
//! second), or done here when no daemon runs.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::error::AppError;
use crate::runner;
use crate::state::{ResyncState, State};

/// `resync`, asked for by `who` (the command line's user, or a console user): recorded in
/// the audit trail, then asked of the running daemon, or done here when none runs. `say`
/// is told what to tell the person.
pub async fn resync(
    cfg: Arc<Config>,
    who: &str,
    lang: crate::i18n::Lang,
    table: Option<&str>,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<(), AppError> {
    let what = table.map_or("every table".into(), |t| format!("table {t}"));
    runner::selected(&cfg, table)?;
    crate::audit::record_as(&cfg, who, "resync", &what).await?;
    match crate::lock::holder(&cfg.agent.state_dir) {
        Some(pid) => request(&cfg, table, pid, lang, say).await,
        None => runner::resync_now(cfg, table).await,
    }
}

/// `resync` while the daemon runs: record the request; the daemon picks it up within a
/// second. `say` is told what to tell the operator.
pub async fn request(
    cfg: &Config,
    table: Option<&str>,
    pid: u32,
    lang: crate::i18n::Lang,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<(), AppError> {
    let names: Vec<String> = runner::selected(cfg, table)?
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let state = State::open(&cfg.agent.state_dir)
        .await
        .map_err(AppError::runtime)?;
    for name in &names {
        let was = state
            .request_resync(name)
            .await
            .map_err(AppError::runtime)?;
        if was == ResyncState::Running {
            say(crate::t!(
                lang,
                "resync-running",
                table = name.as_str(),
                pid = pid
            ));
            continue;
        }
        let mut picked = false;
        for _ in 0..100 {
            if let Ok(Some(r)) = state.resync_of(name).await
                && r.state != ResyncState::Requested
            {
                picked = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if picked {
            say(crate::t!(
                lang,
                "resync-started",
                table = name.as_str(),
                pid = pid
            ));
        } else {
            say(crate::t!(
                lang,
                "resync-requested",
                table = name.as_str(),
                pid = pid
            ));
        }
    }
    state.close().await;
    Ok(())
}
