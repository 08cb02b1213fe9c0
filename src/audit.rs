//! Who asked: the operating-system user behind an action, for the audit trail. A local
//! command names the user who ran it (the one behind `sudo` too); a signal names the user
//! of the process that sent it.

/// A user id as a name, when the system knows one.
fn name_of(uid: u32) -> String {
    match uzers::get_user_by_uid(uid) {
        Some(u) => format!("{} (uid {uid})", u.name().to_string_lossy()),
        None => format!("uid {uid}"),
    }
}

/// The user who runs this command; under `sudo`, the user who called `sudo`.
pub fn local_user() -> String {
    let uid = uzers::get_current_uid();
    match std::env::var("SUDO_USER") {
        Ok(s) if !s.is_empty() && uid == 0 => format!("{s} via sudo ({})", name_of(uid)),
        _ => name_of(uid),
    }
}

/// The user of the process that sent a signal, when the kernel said.
pub fn sender(uid: Option<u32>, pid: Option<i32>) -> String {
    match (uid, pid) {
        (Some(u), Some(p)) => format!("{} (process {p})", name_of(u)),
        (Some(u), None) => name_of(u),
        _ => "unknown (the signal did not say who sent it)".into(),
    }
}

/// Record an action asked for by the user who runs this command, in the state store and
/// the log. Without a record nothing is done: the action fails before it starts.
pub async fn record(
    cfg: &crate::config::Config,
    action: &str,
    detail: &str,
) -> Result<(), crate::error::AppError> {
    record_as(cfg, &local_user(), action, detail).await
}

/// Record an action asked for by `who` (a console user, say), as [`record`] does.
pub async fn record_as(
    cfg: &crate::config::Config,
    who: &str,
    action: &str,
    detail: &str,
) -> Result<(), crate::error::AppError> {
    use crate::error::AppError;
    tracing::info!(%who, action, "{detail}");
    let st = crate::state::State::open(&cfg.agent.state_dir)
        .await
        .map_err(AppError::runtime)?;
    let done = st.audit(who, action, Some(detail)).await;
    st.close().await;
    done.map_err(AppError::runtime)
}

/// A signal the daemon acts on, and who sent it.
#[derive(Debug)]
pub struct Signalled {
    pub signal: i32,
    pub who: String,
}

/// SIGHUP and SIGUSR1 with their sender (which tokio's signals do not say), delivered on a
/// channel. The listening thread lives as long as the process.
pub fn signals() -> std::io::Result<tokio::sync::mpsc::UnboundedReceiver<Signalled>> {
    use signal_hook::consts::{SIGHUP, SIGUSR1};
    use signal_hook::iterator::SignalsInfo;
    use signal_hook::iterator::exfiltrator::WithOrigin;
    let mut sigs = SignalsInfo::<WithOrigin>::new([SIGHUP, SIGUSR1])?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for o in sigs.forever() {
                let who = sender(o.process.map(|p| p.uid), o.process.map(|p| p.pid));
                if tx
                    .send(Signalled {
                        signal: o.signal,
                        who,
                    })
                    .is_err()
                {
                    break;
                }
            }
        })?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_local_user_is_named() {
        let me = super::local_user();
        assert!(
            me.contains(&format!("uid {}", uzers::get_current_uid())),
            "{me}"
        );
    }
}
