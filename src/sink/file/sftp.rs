//! The upload of delivered files over SFTP, by OpenSSH's `sftp` client in batch mode: each
//! file is put under a hidden temporary name and renamed (OpenSSH's `posix-rename`, which
//! replaces a file of that name left by an earlier attempt), the manifest last, so the
//! server never shows a partial file under a final name either. The host key is always
//! checked (`StrictHostKeyChecking=yes`); the session never asks for a password.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt as _;

use super::write::temp_name;
use crate::config::file::Sftp;

/// Upload `names` (in this order) from `local` to the server's remote directory.
pub async fn upload(cfg: &Sftp, local: &Path, names: &[&str]) -> Result<(), String> {
    let mut script = format!("cd {}\nlcd {}\n", quote(&cfg.remote_dir), quote_path(local));
    for n in names {
        let tmp = temp_name(n);
        script.push_str(&format!(
            "put {n} {tmp}\nrename {tmp} {n}\n",
            n = quote(n),
            tmp = quote(&tmp)
        ));
    }
    run(cfg, &script).await
}

/// Whether the server answers and its remote directory is there.
pub async fn reachable(cfg: &Sftp) -> Result<(), String> {
    run(cfg, &format!("cd {}\n", quote(&cfg.remote_dir))).await
}

/// Run a batch of sftp commands; the first that fails ends it.
async fn run(cfg: &Sftp, script: &str) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new("sftp");
    cmd.arg("-b")
        .arg("-")
        .arg("-q")
        .arg("-P")
        .arg(cfg.port.to_string())
        .arg("-i")
        .arg(&cfg.key_file)
        .args(["-o", "BatchMode=yes"])
        .args(["-o", "StrictHostKeyChecking=yes"])
        .args(["-o", "IdentitiesOnly=yes"])
        .args(["-o", "PasswordAuthentication=no"])
        .args(["-o", "ServerAliveInterval=10"])
        .args(["-o", "ServerAliveCountMax=3"])
        .args([
            "-o",
            &format!("ConnectTimeout={}", cfg.timeout.as_secs().clamp(1, 60)),
        ]);
    if let Some(k) = &cfg.known_hosts {
        cmd.arg("-o")
            .arg(format!("UserKnownHostsFile={}", k.display()));
    }
    cmd.arg(format!("{}@{}", cfg.user, cfg.host))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "the OpenSSH sftp client is not installed (Debian: apt-get install openssh-client)"
                .to_owned()
        } else {
            format!("cannot start sftp: {e}")
        }
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| format!("cannot give sftp its commands: {e}"))?;
    }
    let out = match tokio::time::timeout(cfg.timeout, child.wait_with_output()).await {
        Ok(out) => out.map_err(|e| format!("sftp failed: {e}"))?,
        Err(_) => {
            return Err(format!(
                "no answer from {}:{} within {}",
                cfg.host,
                cfg.port,
                humantime::format_duration(cfg.timeout)
            ));
        }
    };
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    Err(format!(
        "sftp to {}@{}:{} failed: {}",
        cfg.user,
        cfg.host,
        cfg.port,
        if why.is_empty() {
            format!("exit status {}", out.status)
        } else {
            why.join("; ")
        }
    ))
}

/// A path in sftp's batch syntax: double quotes, with `\` and `"` escaped.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn quote_path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_are_quoted_for_the_batch_syntax() {
        assert_eq!(super::quote("a b"), "\"a b\"");
        assert_eq!(super::quote("x\"y\\z"), "\"x\\\"y\\\\z\"");
    }
}
