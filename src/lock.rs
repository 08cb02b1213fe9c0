//! One agent per state directory: `run` (and a `resync` done in-process) hold an exclusive
//! lock on `state_dir/agent.lock`, which also holds the process id. Other commands look at
//! the lock to know whether a daemon is running.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The held lock; released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct AgentLock {
    _file: File,
}

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("agent.lock")
}

/// Take the lock, or say which process holds it.
pub fn acquire(state_dir: &Path) -> Result<AgentLock, String> {
    private_dir(state_dir)?;
    let p = path(state_dir);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&p)
        .map_err(|e| format!("cannot open {}: {e}", p.display()))?;
    // `holder` (every `status`) takes a shared lock for an instant: a start that meets it
    // tries again for a second before it concludes that another agent runs.
    let mut tries = 0;
    let locked = loop {
        match file.try_lock() {
            Err(TryLockError::WouldBlock) if tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => break other,
        }
    };
    match locked {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let pid = read_pid(&mut file);
            return Err(format!(
                "another frontdb-agent{} is running with the state directory {}",
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                state_dir.display()
            ));
        }
        Err(TryLockError::Error(e)) => return Err(format!("cannot lock {}: {e}", p.display())),
    }
    owner_only(&p)?;
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    let _ = file.flush();
    Ok(AgentLock { _file: file })
}

/// The process id of the daemon running with this state directory, if one is.
pub fn holder(state_dir: &Path) -> Option<u32> {
    let mut file = File::open(path(state_dir)).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(TryLockError::WouldBlock) => read_pid(&mut file).or(Some(0)),
        Err(TryLockError::Error(_)) => None,
    }
}

/// Make a file readable and writable by its owner only, a directory usable by its owner
/// only: the state directory holds copies of rejected rows and the agent's positions, which
/// are nobody else's business on a shared server.
/// Another user's file (a command run by someone else beside the agent) is left as its
/// owner made it.
pub fn owner_only(p: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |e: std::io::Error| format!("cannot restrict {} to its owner: {e}", p.display());
    let meta = std::fs::metadata(p).map_err(fail)?;
    if meta.permissions().mode() & 0o077 == 0 {
        return Ok(());
    }
    let mode = if meta.is_dir() { 0o700 } else { 0o600 };
    match std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)) {
        Err(e) if e.kind() != std::io::ErrorKind::PermissionDenied => Err(fail(e)),
        _ => Ok(()),
    }
}

/// Create a directory (and its parents) usable by its owner only.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the state directory {}: {e}", dir.display()))?;
    owner_only(dir)
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(holder(dir.path()), None);
        let lock = acquire(dir.path()).expect("first");
        assert_eq!(holder(dir.path()), Some(std::process::id()));
        let err = acquire(dir.path()).expect_err("second");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(lock);
        assert_eq!(holder(dir.path()), None);
        assert!(acquire(dir.path()).is_ok());
    }

    /// A `status` looking at the lock (a shared lock for an instant) as a daemon starts
    /// does not make the daemon refuse to start.
    #[test]
    fn a_start_waits_out_a_status_reading_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(path(dir.path()), "4242").expect("write");
        let reader = File::open(path(dir.path())).expect("open");
        reader.lock_shared().expect("shared lock");
        let status = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(reader);
        });
        assert!(acquire(dir.path()).is_ok());
        status.join().expect("join");
    }
}
