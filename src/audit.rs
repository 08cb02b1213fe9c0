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
