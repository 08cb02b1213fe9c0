//! The file exchange (`pf`): every batch a JSON Lines file named by the 15-character rule
//! (class code, year, region) plus a 6-digit sequence, and its manifest, written to a directory
//! on the agents' tmpfs (so that the out-of-space fault is an exchange outage for `pf`, as a
//! full disk is in a department). The encoding (UTF-8 or GB 18030) changes with the
//! configuration's variant.
//!
//! The checker reads the directory as the platform would: a data file counts once its
//! manifest is in place, the files of a table are applied in name order (each record replaces
//! the one of its key, a `D` record removes it), and every manifest must describe its data
//! file exactly (name, SHA-256, bytes, records, encoding). A batch id in two manifests is a
//! batch delivered twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::check::Finding;
use crate::receivers::Receipt;
use crate::tables::{Extra, Rec, Table};

/// `[agent] region_code` of every soak agent.
pub const REGION: &str = "230000";

/// A table's class code: its name without `_`, upper case, five characters.
pub fn class_code(table: &str) -> String {
    let mut c: String = table
        .replace('_', "")
        .to_uppercase()
        .chars()
        .take(5)
        .collect();
    while c.len() < 5 {
        c.push('0');
    }
    c
}

/// Where an agent's file exchange writes: beside the state directories, on the tmpfs.
pub fn dir_of(state_root: &Path, agent: &str) -> PathBuf {
    state_root.join(format!("{agent}-exchange"))
}

/// The exchange directory of the file agent.
pub struct Out {
    pub dir: PathBuf,
}

/// One delivered file: its manifest, and its records when the manifest describes it.
struct Delivered {
    name: String,
    batch_id: String,
    table: String,
    records: Vec<Json>,
    sha256: String,
}

impl Out {
    pub fn new(dir: &Path) -> Result<Out> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Out {
            dir: dir.to_owned(),
        })
    }

    /// Every delivered file in name order, and what is wrong with the manifests.
    fn delivered(&self) -> Result<(Vec<Delivered>, Vec<String>)> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".manifest.json") && !n.starts_with('.'))
            .collect();
        names.sort();
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for m in names {
            match self.one(&m) {
                Ok(d) => out.push(d),
                // A manifest read while being renamed into place is not there yet.
                Err(e) if e.downcast_ref::<std::io::Error>().is_some() => {}
                Err(e) => problems.push(format!("{m}: {e:#}")),
            }
        }
        Ok((out, problems))
    }

    fn one(&self, manifest: &str) -> Result<Delivered> {
        let m: Json = serde_json::from_slice(&std::fs::read(self.dir.join(manifest))?)
            .map_err(|e| anyhow::anyhow!("the manifest is not JSON: {e}"))?;
        let s = |k: &str| {
            m.get(k)
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (file, table) = (s("file"), s("table"));
        if format!("{file}.manifest.json") != manifest {
            anyhow::bail!("names the data file {file:?}");
        }
        let class = class_code(&table);
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        let ruled = file
            .strip_prefix(&class)
            .and_then(|r| r.strip_suffix(".jsonl"))
            .filter(|r| r.len() == 16 && r.is_char_boundary(4) && r.is_char_boundary(10))
            .is_some_and(|r| digits(&r[..4], 4) && &r[4..10] == REGION && digits(&r[10..], 6));
        if !ruled {
            anyhow::bail!("{file:?} does not follow the rule {class}YYYY{REGION}NNNNNN.jsonl");
        }
        let bytes = std::fs::read(self.dir.join(&file))
            .map_err(|e| anyhow::anyhow!("its data file {file}: {e}"))?;
        let sha = hex::encode(Sha256::digest(&bytes));
        if sha != s("sha256") || Some(bytes.len() as u64) != m["bytes"].as_u64() {
            anyhow::bail!("the data file's SHA-256 or size is not the manifest's");
        }
        let text = match s("encoding").as_str() {
            "gb18030" => {
                let (t, _, bad) = encoding_rs::GB18030.decode(&bytes);
                if bad {
                    anyhow::bail!("the data file is not GB 18030");
                }
                t.into_owned()
            }
            _ => String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("not UTF-8"))?,
        };
        let records = text
            .lines()
            .map(serde_json::from_str::<Json>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("a line is not JSON: {e}"))?;
        if Some(records.len() as u64) != m["records"].as_u64() {
            anyhow::bail!(
                "{} lines, the manifest says {}",
                records.len(),
                m["records"]
            );
        }
        Ok(Delivered {
            name: file,
            batch_id: s("batch_id"),
            table,
            records,
            sha256: sha,
        })
    }

    /// The table as the platform holds it after applying every delivered file in name order.
    pub fn read(&self, t: &Table) -> Result<Vec<(Rec, Extra)>> {
        let (files, _) = self.delivered()?;
        let mut held: BTreeMap<String, Json> = BTreeMap::new();
        for f in files.iter().filter(|f| f.table == t.name) {
            for r in &f.records {
                let key = match &r["key"]["id"] {
                    Json::Number(n) => n.to_string(),
                    other => format!("<{other}>"),
                };
                if r["op"]
                    .as_str()
                    .is_some_and(|o| o.eq_ignore_ascii_case("D"))
                {
                    held.remove(&key);
                } else {
                    held.insert(key, r["values"].clone());
                }
            }
        }
        let mut out: Vec<(Rec, Extra)> = held
            .iter()
            .map(|(k, v)| {
                let version = t.mode.time_col().map(|c| v[c].to_string());
                crate::sim::decode(t, k, version.as_deref(), &v.to_string())
            })
            .collect();
        out.sort_by_key(|(r, _)| r.id);
        Ok(out)
    }

    /// What is wrong with the delivered files: manifests that do not describe their data
    /// file, and batch ids delivered under two names.
    pub fn findings(&self) -> Result<Vec<Finding>> {
        let (files, problems) = self.delivered()?;
        let mut out: Vec<Finding> = problems
            .into_iter()
            .map(|p| Finding::new("a delivered file that is not what its manifest says", "", p))
            .collect();
        let receipts: Vec<Receipt> = files
            .iter()
            .map(|f| Receipt {
                batch_id: format!("{}/{}", f.table, f.batch_id),
                content: f.sha256.clone(),
                applied: true,
            })
            .collect();
        for (id, n) in crate::receivers::applied_twice(&receipts) {
            let names: Vec<&str> = files
                .iter()
                .filter(|f| format!("{}/{}", f.table, f.batch_id) == id)
                .map(|f| f.name.as_str())
                .collect();
            out.push(Finding::new(
                "a batch delivered as two files",
                "",
                format!("{id}: {n} files ({})", names.join(", ")),
            ));
        }
        Ok(out)
    }

    /// The closing report's line.
    pub fn summary(&self) -> String {
        match self.delivered() {
            Ok((files, problems)) => format!(
                "file exchange: {} files delivered, {} records, {} manifests wrong",
                files.len(),
                files.iter().map(|f| f.records.len()).sum::<usize>(),
                problems.len()
            ),
            Err(e) => format!("file exchange: cannot read {}: {e}", self.dir.display()),
        }
    }
}
