//! The running daemon answers the commands beside it over a Unix socket in the state
//! directory (`agent.sock`, mode 0600): what it keeps in memory of each table's runs and of
//! each database's reach, which it writes to the state store only now and then.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ctx::Ctx;
use crate::health::Reach;
use crate::state::Runs;

/// What the daemon tells `status`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Answer {
    pub runs: HashMap<String, Runs>,
    pub reach: HashMap<String, Reach>,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("agent.sock")
}

/// Answer on the socket until the daemon stops. The socket of a daemon that died is
/// replaced (only the holder of the agent's lock serves it).
pub async fn serve(ctx: Arc<Ctx>) {
    let p = path(&ctx.cfg.agent.state_dir);
    let _ = std::fs::remove_file(&p);
    let listener = match tokio::net::UnixListener::bind(&p) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(
                "cannot listen on {}: {e}; `status` shows what the state store holds",
                p.display()
            );
            return;
        }
    };
    if let Err(e) = crate::lock::owner_only(&p) {
        tracing::warn!("{e}");
    }
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = ctx.cancel.cancelled() => break,
        };
        let mut stream = match conn {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::debug!("control socket: {e}");
                continue;
            }
        };
        let answer = Answer {
            runs: ctx.state.runs_now(),
            reach: crate::health::reach_now(),
        };
        let body = serde_json::to_vec(&answer).unwrap_or_default();
        // A command that went away is no concern of the daemon's.
        let written = tokio::time::timeout(Duration::from_secs(2), async {
            stream.write_all(&body).await?;
            stream.shutdown().await
        })
        .await;
        if let Ok(Err(e)) = written {
            tracing::debug!("control socket: {e}");
        }
    }
    let _ = std::fs::remove_file(&p);
}

/// Ask the daemon running with this state directory; `None` when none answers in a second.
pub async fn ask(state_dir: &Path) -> Option<Answer> {
    let p = path(state_dir);
    let read = async {
        let mut s = tokio::net::UnixStream::connect(&p).await.ok()?;
        let mut body = Vec::new();
        s.read_to_end(&mut body).await.ok()?;
        serde_json::from_slice(&body).ok()
    };
    tokio::time::timeout(Duration::from_secs(1), read)
        .await
        .ok()
        .flatten()
}
