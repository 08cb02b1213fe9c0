//! The file exchange end to end, from a PostgreSQL source of its own: every data file's name
//! follows the 15-character rule, every manifest verifies (SHA-256 recomputed, records
//! counted), every record is compared with the source row; GB 18030 and JSON Lines; deletes;
//! the platform's error files reaching `rejects list`; `export`; configuration errors.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use sha2::Digest as _;

use crate::common::{Agent, PgDb, rejects};

/// The configuration of a file exchange into `{dir}/out` from `pg`.
pub fn config(pg: &PgDb, exchange: &str, tables: &str) -> String {
    format!(
        r#"[agent]
id = "230000-FILES"
state_dir = "{{dir}}/state"
timezone = "Asia/Shanghai"
region_code = "230100"
department_code = "SCJGJ"

[source]
url = "{}"

[exchange]
kind = "file"
dir = "{{dir}}/out"
{exchange}

{tables}"#,
        pg.url
    )
}

/// A manifest and its data file, checked.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub name: String,
    pub manifest: serde_json::Value,
    /// The records, each as column -> text (CSV) or the record's JSON (JSON Lines).
    pub records: Vec<BTreeMap<String, serde_json::Value>>,
}

/// Whether a name follows the rule: class (5) + year (4) + region (6) + sequence (6).
pub fn name_ok(name: &str, class: &str, region: &str) -> bool {
    let Some((stem, ext)) = name.split_once('.') else {
        return false;
    };
    let year = chrono::Utc::now().format("%Y").to_string();
    stem.len() == 21
        && stem.starts_with(&format!("{class}{year}{region}"))
        && stem[15..].bytes().all(|b| b.is_ascii_digit())
        && matches!(ext, "csv" | "jsonl")
}

/// Every file in `dir`: no temporary file, every data file with its manifest and every
/// manifest with its data file, the SHA-256 and size recomputed and the records counted.
/// `gb18030`: the files are GB 18030 text.
pub fn delivered(dir: &Path, gb18030: bool) -> Vec<Delivered> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .filter(|n| !matches!(n.as_str(), "done" | "bad"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for n in &names {
        assert!(!n.starts_with('.'), "a temporary file is left: {n}");
        if n.ends_with(".manifest.json") {
            let data = n.trim_end_matches(".manifest.json");
            assert!(names.iter().any(|x| x == data), "{n} without its data file");
            continue;
        }
        let m_path = dir.join(format!("{n}.manifest.json"));
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&m_path).unwrap_or_else(|_| panic!("{n} has no manifest")),
        )
        .expect("manifest json");
        let bytes = std::fs::read(dir.join(n)).expect("read data");
        assert_eq!(
            manifest["sha256"],
            hex::encode(sha2::Sha256::digest(&bytes)),
            "{n}: SHA-256"
        );
        assert_eq!(manifest["bytes"], bytes.len() as u64, "{n}: size");
        assert_eq!(manifest["file"], n.as_str());
        for field in ["batch_id", "table", "created_at"] {
            assert!(manifest[field].is_string(), "{n}: manifest lacks {field}");
        }
        let text = if gb18030 {
            let (t, had_errors) = encoding_rs::GB18030.decode_without_bom_handling(&bytes);
            assert!(!had_errors, "{n} is not GB 18030");
            t.into_owned()
        } else {
            String::from_utf8(bytes).unwrap_or_else(|_| panic!("{n} is not UTF-8"))
        };
        let records = if n.ends_with(".csv") {
            csv_records(&text)
        } else {
            text.lines()
                .map(|l| {
                    let j: serde_json::Value = serde_json::from_str(l).expect("json line");
                    j.as_object()
                        .expect("object")
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .collect()
        };
        assert_eq!(manifest["records"], records.len() as u64, "{n}: records");
        out.push(Delivered {
            name: n.clone(),
            manifest,
            records,
        });
    }
    out
}

fn csv_records(text: &str) -> Vec<BTreeMap<String, serde_json::Value>> {
    assert!(
        text.is_empty() || text.ends_with("\r\n"),
        "CSV lines end in CRLF"
    );
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = r
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    r.records()
        .map(|rec| {
            let rec = rec.expect("csv record");
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(|v| serde_json::Value::String(v.to_owned())))
                .collect()
        })
        .collect()
}

/// The source rows of `t` as the exchange carries them: id -> (name, amount, updated_at).
async fn source_rows(pg: &PgDb) -> BTreeMap<String, Vec<String>> {
    pg.rows(
        "SELECT id::text, name, amount::text, \
         to_char(updated_at, 'YYYY-MM-DD\"T\"HH24:MI:SS') || '+08:00' FROM t ORDER BY id",
    )
    .await
    .into_iter()
    .map(|r| {
        let r: Vec<String> = r.into_iter().map(Option::unwrap_or_default).collect();
        (r[0].clone(), r[1..].to_vec())
    })
    .collect()
}

async fn table_t(pg: &PgDb, n: i64, name: &str) {
    pg.exec(
        "CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL, amount numeric(12,2), \
         updated_at timestamp NOT NULL)",
    )
    .await;
    pg.exec(&format!(
        "INSERT INTO t SELECT g, '{name}' || g, g * 1.5, \
         timestamp '2026-03-01 08:00:00' + g * interval '1 minute' FROM generate_series(1, {n}) g"
    ))
    .await;
}

const TABLE_T: &str = r#"[[table]]
source = "t"
target = "jg_t"
class_code = "A0101"
watermark = { kind = "timestamp", column = "updated_at", lookback = "0s" }
batch_size = 10
"#;

/// The text of a CSV record's column.
fn s(r: &BTreeMap<String, serde_json::Value>, col: &str) -> String {
    r.get(col)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn batches_become_named_manifested_csv_files_with_every_row() {
    let pg = PgDb::new("files_csv").await;
    table_t(&pg, 25, "name, \"quoted\"\n").await;
    let agent = Agent::new(&config(&pg, "", TABLE_T));
    std::fs::create_dir(agent.dir.path().join("out")).expect("mkdir");
    agent.ok(&["once"]);
    let out = agent.dir.path().join("out");
    let files = delivered(&out, false);
    assert_eq!(files.len(), 3, "25 rows in batches of 10");
    let mut got = BTreeMap::new();
    let mut batches = HashSet::new();
    for (i, f) in files.iter().enumerate() {
        assert!(name_ok(&f.name, "A0101", "230100"), "{}", f.name);
        assert!(f.name.ends_with(&format!("{:06}.csv", i + 1)), "{}", f.name);
        assert_eq!(f.manifest["table"], "jg_t");
        assert!(batches.insert(f.manifest["batch_id"].to_string()));
        for r in &f.records {
            assert!(["I", "U"].contains(&s(r, "cd_operation").as_str()), "{r:?}");
            let row = vec![s(r, "name"), s(r, "amount"), s(r, "updated_at")];
            assert!(got.insert(s(r, "id"), row).is_none(), "a row twice");
        }
    }
    assert_eq!(got, source_rows(&pg).await);

    // A change and nothing else: one more file, the next sequence.
    pg.exec("UPDATE t SET name = '改', updated_at = updated_at + interval '1 day' WHERE id = 4")
        .await;
    agent.ok(&["once"]);
    let files = delivered(&out, false);
    assert_eq!(files.len(), 4);
    assert!(files[3].name.ends_with("000004.csv"));
    assert_eq!(files[3].records.len(), 1);
    assert_eq!(s(&files[3].records[0], "name"), "改");
    pg.drop().await;
}

#[tokio::test]
async fn gb18030_json_lines_carry_chinese_text_and_deletes() {
    let pg = PgDb::new("files_gb").await;
    pg.exec("CREATE TABLE code (code text PRIMARY KEY, label text NOT NULL)")
        .await;
    pg.exec(
        "INSERT INTO code VALUES ('01', '哈尔滨市市场监督管理局'), ('02', '𠀀黑龙江'), \
         ('03', '双随机、一公开')",
    )
    .await;
    let tables = r#"[[table]]
source = "code"
class_code = "B0202"
watermark = { kind = "digest" }
"#;
    let agent = Agent::new(&config(
        &pg,
        "format = \"jsonl\"\nencoding = \"gb18030\"",
        tables,
    ));
    std::fs::create_dir(agent.dir.path().join("out")).expect("mkdir");
    agent.ok(&["once"]);
    let out = agent.dir.path().join("out");
    let raw = std::fs::read(out.join(&delivered(&out, true)[0].name)).expect("read");
    assert!(
        std::str::from_utf8(&raw).is_err(),
        "GB 18030 bytes, not UTF-8"
    );
    let files = delivered(&out, true);
    assert_eq!(files.len(), 1);
    assert!(name_ok(&files[0].name, "B0202", "230100"));
    let labels: BTreeMap<String, String> = files[0]
        .records
        .iter()
        .map(|r| {
            assert_eq!(r["op"], "I");
            (
                r["values"]["code"].as_str().expect("code").to_owned(),
                r["values"]["label"].as_str().expect("label").to_owned(),
            )
        })
        .collect();
    let want: BTreeMap<String, String> = pg
        .rows("SELECT code, label FROM code")
        .await
        .into_iter()
        .map(|r| {
            (
                r[0].clone().unwrap_or_default(),
                r[1].clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(labels, want);

    pg.exec("DELETE FROM code WHERE code = '02'").await;
    agent.ok(&["once"]);
    let files = delivered(&out, true);
    assert_eq!(files.len(), 2);
    assert_eq!(files[1].records.len(), 1);
    let d = &files[1].records[0];
    assert_eq!(d["op"], "D", "{d:?}");
    assert_eq!(d["key"]["code"], "02");
    pg.drop().await;
}

#[tokio::test]
async fn returned_error_files_reach_the_rejects_ledger_and_move_to_done() {
    let pg = PgDb::new("files_ret").await;
    table_t(&pg, 12, "n").await;
    let agent = Agent::new(&config(
        &pg,
        "return_dir = \"{dir}/returns\"\nencoding = \"gb18030\"",
        TABLE_T,
    ));
    for d in ["out", "returns"] {
        std::fs::create_dir(agent.dir.path().join(d)).expect("mkdir");
    }
    agent.ok(&["once"]);
    let out = agent.dir.path().join("out");
    let files = delivered(&out, true);
    let first = &files[0];
    let stem = &first.name[..21];
    let ret = agent.dir.path().join("returns");
    let gb = |s: &str| encoding_rs::GB18030.encode(s).0.into_owned();
    // Named after the data file it answers: its table and batch come from there.
    std::fs::write(
        ret.join(format!("{stem}_err.csv")),
        gb("key,code,message\r\n3,E01,名称不规范\r\n7,E02,\"amount, too large\"\r\n"),
    )
    .expect("write");
    // Naming the table itself.
    std::fs::write(
        ret.join("z_other.csv"),
        gb("table,key,code,message\r\njg_t,11,E03,late\r\n"),
    )
    .expect("write");
    // Broken: a record with a field too many; and no table to be found.
    std::fs::write(
        ret.join("broken.csv"),
        gb("key,code,message\r\n1,E01,x\r\n2,E01,y,extra\r\n"),
    )
    .expect("write");
    std::fs::write(
        ret.join("no_table.csv"),
        gb("key,code,message\r\n1,E01,x\r\n"),
    )
    .expect("write");
    // Still being written by the platform: left alone.
    std::fs::write(ret.join(".incoming.csv"), b"key,code").expect("write");

    let run = agent.run(&["once"]);
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("3 rejection(s) read"), "{stdout}");
    let open = rejects(&agent, &["--state", "open"]);
    let mut seen: Vec<(String, String)> = open
        .iter()
        .map(|r| {
            assert_eq!(r["origin"], "province", "{r}");
            assert_eq!(r["table"], "t", "{r}");
            (r["key"].to_string(), r["reasons"].to_string())
        })
        .collect();
    seen.sort();
    assert_eq!(seen.len(), 3, "{open:?}");
    assert!(seen[0].1.contains("[E03] late"), "{seen:?}");
    assert!(seen[1].1.contains("[E01] 名称不规范"), "{seen:?}");
    assert!(seen[2].1.contains("[E02] amount, too large"), "{seen:?}");
    // `rejects list` for a person names the reason too.
    let text = agent.ok(&["rejects", "list", "--table", "t"]);
    assert!(text.contains("名称不规范"), "{text}");

    let listing = |d: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(ret.join(d))
            .map(|r| {
                r.map(|e| e.expect("e").file_name().into_string().expect("u"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    assert_eq!(
        listing("done"),
        vec![format!("{stem}_err.csv"), "z_other.csv".into()]
    );
    assert_eq!(
        listing("bad"),
        vec![
            "broken.csv".to_string(),
            "broken.csv.error.txt".into(),
            "no_table.csv".into(),
            "no_table.csv.error.txt".into()
        ]
    );
    let note = std::fs::read_to_string(ret.join("bad/broken.csv.error.txt")).expect("note");
    assert!(note.contains("line 3"), "{note}");
    let note = std::fs::read_to_string(ret.join("bad/no_table.csv.error.txt")).expect("note");
    assert!(
        note.contains("line 2") && note.contains("no table"),
        "{note}"
    );
    assert!(ret.join(".incoming.csv").exists());
    // `check` says that files were set aside; nothing is read twice.
    let again = agent.run(&["once"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 rejection(s) read"));
    pg.drop().await;
}

#[tokio::test]
async fn export_writes_a_whole_table_as_named_manifested_files() {
    let pg = PgDb::new("files_export").await;
    table_t(&pg, 23, "名称").await;
    // The exchange may be of any kind: the export only reads the source.
    let agent = Agent::new(&config(&pg, "", TABLE_T));
    std::fs::create_dir(agent.dir.path().join("out")).expect("mkdir");
    let dest = agent.dir.path().join("history");
    let dest_s = dest.display().to_string();
    let out = agent.ok(&[
        "export",
        "--table",
        "t",
        "--format",
        "csv",
        "--out",
        &dest_s,
        "--rows-per-file",
        "10",
        "--encoding",
        "gb18030",
    ]);
    assert!(out.contains("23 record(s) exported in 3 file(s)"), "{out}");
    let files = delivered(&dest, true);
    assert_eq!(files.len(), 3);
    let mut got = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        assert!(
            f.name.ends_with(&format!("{:06}.csv", i + 1)) && name_ok(&f.name, "A0101", "230100")
        );
        for r in &f.records {
            got.insert(
                s(r, "id"),
                vec![s(r, "name"), s(r, "amount"), s(r, "updated_at")],
            );
        }
    }
    assert_eq!(got, source_rows(&pg).await);
    // JSON Lines into the same directory: the sequence goes on.
    agent.ok(&[
        "export",
        "--table",
        "t",
        "--format",
        "jsonl",
        "--out",
        &dest_s,
        "--encoding",
        "gb18030",
    ]);
    let files = delivered(&dest, true);
    assert_eq!(files.len(), 4);
    assert!(files[3].name.ends_with("000004.jsonl"));
    assert_eq!(files[3].records.len(), 23);
    // Nothing was exchanged or recorded.
    assert!(
        std::fs::read_dir(agent.dir.path().join("out"))
            .expect("out")
            .next()
            .is_none()
    );
    let bad = agent.run(&[
        "export", "--table", "nope", "--format", "csv", "--out", &dest_s,
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no table named `nope`"));
    pg.drop().await;
}

#[test]
fn file_exchange_configuration_errors_name_their_keys() {
    let agent = Agent::new(
        r#"[agent]
id = "a"
state_dir = "{dir}/state"

[source]
url = "postgres://postgres@127.0.0.1:5432/x"

[exchange]
kind = "file"
dir = "{dir}/missing"
format = "xml"
encoding = "big5"
url = "http://x"
return_format = "json"

[exchange.sftp]
host = "127.0.0.1"
user = "u"
key_file = "{dir}/no_key"
remote_dir = "/in"

[[table]]
source = "t"
watermark = { kind = "key" }

[[table]]
source = "u"
class_code = "A01"
watermark = { kind = "key" }
"#,
    );
    let out = agent.run(&["check", "--offline"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "agent.region_code",
        "exchange.dir",
        "is not a directory",
        "exchange.format",
        "exchange.encoding",
        "exchange.url",
        "exchange.return_format",
        "exchange.sftp.key_file",
        "table[0].class_code",
        "table[1].class_code",
        "`A01` is not a resource classification code",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains("agent.toml:10: exchange.dir"), "{err}");
    assert!(err.contains("agent.toml:28: table[1].class_code"), "{err}");
}
