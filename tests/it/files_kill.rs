//! The file exchange killed with SIGKILL at random moments, again and again: after every
//! kill no partial file is visible under a final name and no delivered file changed; at
//! the end every data file has its verifying manifest, no batch id names two files, and
//! every source row was delivered exactly once across the files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::RngExt as _;
use sha2::Digest as _;

use crate::common::{Agent, PgDb, seeded_rng};
use crate::files::{config, delivered, name_ok};

/// What a killed run left in `dir`: every delivered file (with its manifest) unchanged
/// since it was first seen; a data file without its manifest complete and at most one.
fn after_kill(dir: &Path, seen: &mut HashMap<String, String>) {
    let names: BTreeSet<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("e").file_name().into_string().expect("utf-8"))
        .collect();
    let mut unmanifested = Vec::new();
    for n in &names {
        if n.starts_with('.') || n.ends_with(".manifest.json") {
            continue;
        }
        assert!(name_ok(n, "A0303", "230100"), "{n}");
        let bytes = std::fs::read(dir.join(n)).expect("read");
        let sha = hex::encode(sha2::Sha256::digest(&bytes));
        // Written whole before it was renamed: a complete CSV.
        let text = String::from_utf8(bytes).expect("utf-8");
        assert!(
            text.starts_with("id,name,cd_operation\r\n") && text.ends_with("\r\n"),
            "{n} is partial"
        );
        let m = dir.join(format!("{n}.manifest.json"));
        if !names.contains(&format!("{n}.manifest.json")) {
            unmanifested.push(n.clone());
            continue;
        }
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&m).expect("manifest")).expect("manifest json");
        assert_eq!(
            manifest["sha256"],
            sha.as_str(),
            "{n}: manifest and data disagree"
        );
        if let Some(before) = seen.insert(n.clone(), sha.clone()) {
            assert_eq!(before, sha, "{n} changed after it was delivered");
        }
    }
    assert!(
        unmanifested.len() <= 1,
        "data files without manifest: {unmanifested:?}"
    );
}

#[tokio::test]
async fn kill_9_at_random_moments_leaves_no_partial_file_and_every_row_once() {
    let mut rng = seeded_rng("files kill loop");
    let pg = PgDb::new("files_kill").await;
    pg.exec("CREATE TABLE k (id int PRIMARY KEY, name text NOT NULL)")
        .await;
    pg.exec("INSERT INTO k SELECT g, repeat('名' || g, 40) FROM generate_series(1, 1400) g")
        .await;
    let tables = r#"[[table]]
source = "k"
class_code = "A0303"
watermark = { kind = "key" }
batch_size = 7
"#;
    let agent = Agent::new(&config(&pg, "", tables));
    let out = agent.dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let mut seen = HashMap::new();
    let (mut kills, mut done, mut rows) = (0, false, 1400);
    let log = agent.dir.path().join("once.log");
    for _ in 0..150 {
        let mut child = agent
            .command()
            .env("FRONTDB_LOG", "info")
            .arg("once")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .expect("log"),
            ))
            .spawn()
            .expect("spawn once");
        let deadline = Instant::now() + Duration::from_millis(rng.random_range(10..500));
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break Some(s);
            }
            if Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        };
        match status {
            Some(s) => {
                assert!(s.success(), "once failed: {s:?}");
                // A machine fast enough to finish before five kills gets more rows.
                if kills >= 5 {
                    done = true;
                } else {
                    pg.exec(&format!(
                        "INSERT INTO k SELECT g, repeat('名' || g, 40) \
                         FROM generate_series({}, {}) g",
                        rows + 1,
                        rows + 700
                    ))
                    .await;
                    rows += 700;
                }
            }
            None => {
                child.kill().expect("SIGKILL");
                child.wait().expect("reap");
                kills += 1;
            }
        }
        after_kill(&out, &mut seen);
        if done {
            break;
        }
    }
    assert!(done, "once never finished after five kills in 150 runs");
    assert!(
        kills >= 5,
        "only {kills} run(s) were killed: the test proved little"
    );
    let resent = std::fs::read_to_string(&log)
        .expect("log")
        .matches("batch sent again: its files are in place")
        .count();
    eprintln!(
        "killed {kills} time(s); {} file(s) seen delivered; {resent} delivered batch(es) sent \
         again after a kill and found in place",
        seen.len()
    );

    // One more run sweeps what the kills left; then everything verifies.
    agent.ok(&["once"]);
    let files = delivered(&out, false);
    let mut by_id: BTreeMap<String, u32> = BTreeMap::new();
    let mut batches = BTreeSet::new();
    for f in &files {
        assert!(
            batches.insert(f.manifest["batch_id"].to_string()),
            "batch {} in two files",
            f.manifest["batch_id"]
        );
        if let Some(sha) = seen.get(&f.name) {
            assert_eq!(f.manifest["sha256"], sha.as_str(), "{} changed", f.name);
        }
        for r in &f.records {
            *by_id
                .entry(r["id"].as_str().expect("id").to_owned())
                .or_default() += 1;
        }
    }
    for (name, _) in seen {
        assert!(files.iter().any(|f| f.name == name), "{name} disappeared");
    }
    let twice: Vec<_> = by_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "rows delivered twice: {twice:?}");
    let want: BTreeSet<String> = (1..=rows).map(|i| i.to_string()).collect();
    assert_eq!(by_id.keys().cloned().collect::<BTreeSet<_>>(), want);
    // The sequence has no repeats (gaps are allowed: a kill after a number was taken).
    let seqs: BTreeSet<&str> = files.iter().map(|f| &f.name[15..21]).collect();
    assert_eq!(seqs.len(), files.len());
    pg.drop().await;
}
