//! What installs and supervises the agent: the systemd unit, the Debian package and the
//! install script.

use crate::common::which;

/// The documentation both the package and the install script ship under
/// `/usr/share/doc/frontdb-agent`, as paths relative to the repository (and to that folder):
/// the READMEs and every page of `docs/`, English and Chinese.
fn shipped_docs() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec!["README.md".to_owned(), "README.zh-CN.md".to_owned()];
    for dir in ["docs", "docs/zh-CN"] {
        let mut pages: Vec<String> = std::fs::read_dir(root.join(dir))
            .expect(dir)
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".md"))
            .map(|n| format!("{dir}/{n}"))
            .collect();
        pages.sort();
        docs.extend(pages);
    }
    assert!(
        docs.contains(&"docs/zh-CN/operations.md".to_owned()),
        "{docs:?}"
    );
    docs
}

/// The `Documentation=` lines of a unit, as paths under `/usr/share/doc/frontdb-agent`.
fn documented(unit: &str, doc_dir: &str) -> Vec<String> {
    let prefix = format!("Documentation=file://{doc_dir}/");
    unit.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_systemd_unit_verifies() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("deploy/frontdb-agent.service")).expect("unit");
    for want in [
        "Type=notify",
        "WatchdogSec=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "StateDirectory=frontdb-agent",
        "ConfigurationDirectory=frontdb-agent",
        "RestartPreventExitStatus=2",
        "ExecStartPre=/usr/bin/frontdb-agent check --offline",
        "User=frontdb-agent",
    ] {
        assert!(unit.contains(want), "the unit lacks {want}");
    }
    // It points at the README and the operations guide, which the package ships.
    let docs = documented(&unit, "/usr/share/doc/frontdb-agent");
    assert_eq!(docs, ["README.md", "docs/operations.md"], "{unit}");
    let shipped = shipped_docs();
    for d in &docs {
        assert!(
            shipped.contains(d),
            "the unit names {d}, which is not shipped"
        );
    }
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("frontdb-agent.service");
    std::fs::write(
        &path,
        unit.replace(
            "/usr/bin/frontdb-agent",
            env!("CARGO_BIN_EXE_frontdb-agent"),
        ),
    )
    .expect("write");
    let out = std::process::Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .expect("verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !text.contains("frontdb-agent.service:"),
        "{text}"
    );
}

#[test]
fn the_debian_package_builds_with_what_it_must_install() {
    if which("cargo-deb").is_err() {
        eprintln!("skipped: cargo-deb is not installed (scripts/test.sh installs it)");
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let deb = dir.path().join("frontdb-agent.deb");
    let out = std::process::Command::new("cargo")
        .current_dir(root)
        .args([
            "deb",
            "--no-build",
            "--profile",
            "dev",
            "--no-strip",
            "--fast",
            "-o",
        ])
        .arg(&deb)
        .output()
        .expect("cargo deb");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = std::process::Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .expect("dpkg-deb");
    let list = String::from_utf8_lossy(&list.stdout);
    let mode_of = |path: &str| {
        list.lines()
            .find(|l| l.ends_with(path))
            .and_then(|l| l.split_whitespace().next())
            .map(str::to_owned)
    };
    for (path, mode) in [
        ("./usr/bin/frontdb-agent", "-rwxr-xr-x"),
        (
            "./usr/lib/systemd/system/frontdb-agent.service",
            "-rw-r--r--",
        ),
        ("./etc/frontdb-agent/agent.toml", "-rw-r-----"),
        ("./usr/share/doc/frontdb-agent/README.md", "-rw-r--r--"),
        (
            "./usr/share/frontdb-agent/sql/postgres/example.sql",
            "-rw-r--r--",
        ),
    ] {
        assert_eq!(mode_of(path).as_deref(), Some(mode), "{path} in:\n{list}");
    }
    for doc in shipped_docs() {
        let path = format!("./usr/share/doc/frontdb-agent/{doc}");
        assert_eq!(
            mode_of(&path).as_deref(),
            Some("-rw-r--r--"),
            "{path} in:\n{list}"
        );
    }
    let info = std::process::Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .output()
        .expect("dpkg-deb");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("conffiles") && info.contains("postinst"),
        "{info}"
    );
    let ctl = dir.path().join("ctl");
    let _ = std::process::Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(&ctl)
        .status();
    let postinst = std::fs::read_to_string(ctl.join("postinst")).expect("postinst");
    assert!(
        postinst.contains("adduser --system")
            && postinst.contains("chmod 0640 /etc/frontdb-agent/agent.toml")
    );
    let conffiles = std::fs::read_to_string(ctl.join("conffiles")).expect("conffiles");
    assert!(conffiles.contains("/etc/frontdb-agent/agent.toml"));
}

#[test]
fn the_install_script_lays_out_a_tree_with_safe_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dest = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(root.join("deploy/install.sh"))
        .arg(env!("CARGO_BIN_EXE_frontdb-agent"))
        .env("DESTDIR", dest.path())
        .output()
        .expect("install.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |p: &str| {
        std::fs::metadata(dest.path().join(p))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    };
    assert_eq!(mode("usr/bin/frontdb-agent"), 0o755);
    assert_eq!(mode("etc/frontdb-agent"), 0o750);
    assert_eq!(mode("etc/frontdb-agent/agent.toml"), 0o640);
    assert_eq!(mode("lib/systemd/system/frontdb-agent.service"), 0o644);
    for doc in shipped_docs() {
        assert_eq!(
            mode(&format!("usr/share/doc/frontdb-agent/{doc}")),
            0o644,
            "{doc}"
        );
    }
    // The installed unit's documentation is where the script put it.
    let unit =
        std::fs::read_to_string(dest.path().join("lib/systemd/system/frontdb-agent.service"))
            .expect("unit");
    let docs = documented(&unit, "/usr/share/doc/frontdb-agent");
    assert!(!docs.is_empty(), "{unit}");
    for d in docs {
        assert_eq!(
            mode(&format!("usr/share/doc/frontdb-agent/{d}")),
            0o644,
            "{d}"
        );
    }
    // The installed template is a valid configuration once its secrets are set.
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_frontdb-agent"))
        .args(["--config"])
        .arg(dest.path().join("etc/frontdb-agent/agent.toml"))
        .args(["check", "--offline"])
        .env("QZK_PASSWORD", "x")
        .env("EXCHANGE_PASSWORD", "y")
        .output()
        .expect("check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
