//! The platform's error files: `return_dir` is read a file at a time, oldest name first;
//! each file's rejections (`key`, `code`, `message`, and where given `table`, `batch`, `at`)
//! are one page of the feed. The cursor names the file and its SHA-256: once the job has
//! recorded the page and kept the cursor, the next poll moves that file to `done/`. A crash
//! in between reads the file again (its rejections are recorded once more, which changes
//! nothing); a file that cannot be read whole goes to `bad/` with a note of what is wrong
//! (file and line) and is never half recorded.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value as Json;

use super::{encode, names, read_manifest, write};
use crate::config::TableSpec;
use crate::config::file::{FileEncoding, ReturnFormat};
use crate::db::ErrorClass;
use crate::sink::{Feed, Page, ReceiptTable, Receipts, RecordKey, SinkError, Verdict};

/// Where the job keeps the feed's cursor.
const CURSOR_KEY: &str = "feedback.file.cursor";

#[derive(Clone)]
pub struct FileReceipts {
    return_dir: PathBuf,
    /// The exchange directory, where a returned file's manifest may still be.
    dir: PathBuf,
    format: ReturnFormat,
    encoding: FileEncoding,
    /// Exchange table by resource classification code, where one table has the code.
    by_class: HashMap<String, String>,
}

impl FileReceipts {
    pub fn new(
        cfg: &crate::config::Config,
        f: &crate::config::file::FileExchange,
    ) -> Option<FileReceipts> {
        let mut by_class: HashMap<String, Option<String>> = HashMap::new();
        for t in &cfg.tables {
            if let Some(c) = &t.class_code {
                by_class
                    .entry(c.clone())
                    .and_modify(|v| *v = None)
                    .or_insert_with(|| Some(t.target.to_string()));
            }
        }
        Some(FileReceipts {
            return_dir: f.return_dir.clone()?,
            dir: f.dir.clone(),
            format: f.return_format,
            encoding: f.encoding,
            by_class: by_class
                .into_iter()
                .filter_map(|(c, t)| Some((c, t?)))
                .collect(),
        })
    }

    fn extension_ok(&self, name: &str) -> bool {
        let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        match self.format {
            ReturnFormat::Csv => ext.as_deref() == Some("csv"),
            ReturnFormat::Json => ext.as_deref() == Some("json"),
            ReturnFormat::Jsonl => matches!(ext.as_deref(), Some("jsonl" | "json")),
        }
    }

    /// The error files waiting, by name; hidden and temporary names are being written.
    fn waiting(&self) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.return_dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let temp = name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part");
            if !temp && self.extension_ok(&name) && entry.file_type()?.is_file() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// The table and batch a file's name points to: the data file it answers, by its first
    /// 21 characters, and that file's class code or manifest.
    fn named_by(&self, file: &str) -> (Option<String>, Option<String>) {
        let stem = file.get(..21).filter(|s| s.is_ascii()).unwrap_or("");
        let manifest = ["csv", "jsonl"].iter().find_map(|ext| {
            let data = format!("{stem}.{ext}");
            names::parse(&data)?;
            read_manifest(&self.dir.join(names::manifest_of(&data)))
                .ok()
                .flatten()
        });
        if let Some(m) = manifest {
            return (Some(m.table), Some(m.batch_id));
        }
        let by_class = (stem.len() == 21 && names::parse(&format!("{stem}.csv")).is_some())
            .then(|| self.by_class.get(&stem[..5]).cloned())
            .flatten();
        (by_class, None)
    }

    /// Read one error file whole: its rejections, or what is wrong with it.
    fn read(&self, name: &str) -> Result<(Vec<Verdict>, String), String> {
        let path = self.return_dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| format!("cannot read it: {e}"))?;
        let sha = {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        let text = encode::decode(&bytes, self.encoding)
            .ok_or_else(|| format!("it is not {} text", self.encoding.name()))?;
        let items = match self.format {
            ReturnFormat::Csv => csv_items(&text)?,
            ReturnFormat::Json => json_items(&text)?,
            ReturnFormat::Jsonl => jsonl_items(&text)?,
        };
        let (table, batch) = self.named_by(name);
        let mut verdicts = Vec::with_capacity(items.len());
        for (line, item) in items {
            let table = item.get("table").cloned().or_else(|| table.clone());
            verdicts.push(
                verdict(item, table, batch.clone()).map_err(|e| format!("line {line}: {e}"))?,
            );
        }
        Ok((verdicts, sha))
    }

    /// Move a file to `return_dir/<sub>/`, under a new name where one of its name is there.
    fn move_to(&self, name: &str, sub: &str) -> std::io::Result<PathBuf> {
        let to_dir = self.return_dir.join(sub);
        std::fs::create_dir_all(&to_dir)?;
        let mut to = to_dir.join(name);
        let mut n = 1;
        while to.exists() {
            to = to_dir.join(format!("{name}.{n}"));
            n += 1;
        }
        std::fs::rename(self.return_dir.join(name), &to)?;
        write::sync_dir(&to_dir)?;
        write::sync_dir(&self.return_dir)?;
        Ok(to)
    }

    /// Set a file that cannot be read aside, with a note of why.
    fn set_aside(&self, name: &str, why: &str) -> std::io::Result<()> {
        let to = self.move_to(name, "bad")?;
        let note = format!("{}: {why}\n", name);
        let note_name = format!(
            "{}.error.txt",
            to.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        write::atomic(&self.return_dir.join("bad"), &note_name, note.as_bytes())?;
        tracing::warn!(
            file = %self.return_dir.join(name).display(),
            "error file set aside in bad/: {why}"
        );
        Ok(())
    }

    /// The file recorded on the page before (named by the cursor) goes to `done/`, if it is
    /// still there unchanged.
    fn done_with(&self, cursor: &str) -> std::io::Result<()> {
        let Some((name, sha)) = cursor.split_once('\t') else {
            return Ok(());
        };
        let path = self.return_dir.join(name);
        if path.is_file() && write::sha256_of(&path)? == sha {
            self.move_to(name, "done")?;
        }
        Ok(())
    }

    fn next_page(&self, cursor: Option<&str>) -> Result<Page, String> {
        let io = |e: std::io::Error| format!("{}: {e}", self.return_dir.display());
        if let Some(c) = cursor {
            self.done_with(c).map_err(io)?;
        }
        for name in self.waiting().map_err(io)? {
            match self.read(&name) {
                Ok((verdicts, sha)) => {
                    return Ok(Page {
                        verdicts,
                        cursor: Some(format!("{name}\t{sha}")),
                        more: true,
                    });
                }
                Err(why) => self.set_aside(&name, &why).map_err(io)?,
            }
        }
        Ok(Page::default())
    }
}

/// An error file's items, each with its line number.
type Items = Vec<(usize, HashMap<String, String>)>;

fn csv_items(text: &str) -> Result<Items, String> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let header: Vec<String> = r
        .headers()
        .map_err(|e| format!("line 1: {e}"))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for need in ["key", "message"] {
        if !header.iter().any(|h| h == need) {
            return Err(format!(
                "line 1: the header has no `{need}` column (it has: {})",
                header.join(", ")
            ));
        }
    }
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| match e.position() {
            Some(p) => format!("line {}: {}", line_at(text, p.byte()), csv_words(&e)),
            None => e.to_string(),
        })?;
        let line = rec.position().map_or(0, |p| line_at(text, p.byte()));
        let item = header
            .iter()
            .cloned()
            .zip(rec.iter().map(str::to_owned))
            .collect();
        out.push((line, item));
    }
    Ok(out)
}

/// The line of a byte offset the CSV reader gives: it may point at the line end before the
/// record, which counts as the record's line.
fn line_at(text: &str, byte: u64) -> usize {
    let end = usize::try_from(byte)
        .unwrap_or(usize::MAX)
        .min(text.len().saturating_sub(1));
    text.as_bytes()[..=end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A CSV reader's error without its own (differently counted) position.
fn csv_words(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        _ => e.to_string(),
    }
}

fn json_items(text: &str) -> Result<Items, String> {
    let doc: Json =
        serde_json::from_str(text).map_err(|e| format!("line {}: not JSON ({e})", e.line()))?;
    let list = match &doc {
        Json::Array(a) => a,
        Json::Object(o) => o
            .get("items")
            .and_then(Json::as_array)
            .ok_or("the JSON is neither a list of rejections nor an object with `items`")?,
        _ => return Err("the JSON is not a list of rejections".into()),
    };
    list.iter()
        .enumerate()
        .map(|(i, j)| {
            object(j)
                .map(|o| (i + 1, o))
                .map_err(|e| format!("item {}: {e}", i + 1))
        })
        .collect()
}

fn jsonl_items(text: &str) -> Result<Items, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let j: Json =
            serde_json::from_str(line).map_err(|e| format!("line {}: not JSON ({e})", i + 1))?;
        out.push((
            i + 1,
            object(&j).map_err(|e| format!("line {}: {e}", i + 1))?,
        ));
    }
    Ok(out)
}

/// A JSON rejection's fields as text.
fn object(j: &Json) -> Result<HashMap<String, String>, String> {
    let o = j.as_object().ok_or("not an object")?;
    Ok(o.iter()
        .filter_map(|(k, v)| {
            let t = match v {
                Json::String(s) => s.clone(),
                Json::Number(n) => n.to_string(),
                Json::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((k.to_ascii_lowercase(), t))
        })
        .collect())
}

fn verdict(
    mut item: HashMap<String, String>,
    table: Option<String>,
    batch: Option<String>,
) -> Result<Verdict, String> {
    let key = item
        .remove("key")
        .filter(|k| !k.is_empty())
        .ok_or("no key")?;
    let message = item.remove("message").unwrap_or_default();
    let table = table.filter(|t| !t.is_empty()).ok_or(
        "no table: give a `table` field, or name the error file after the data file it answers",
    )?;
    let reason = match item.remove("code").filter(|c| !c.is_empty()) {
        Some(c) if message.is_empty() => format!("[{c}]"),
        Some(c) => format!("[{c}] {message}"),
        None if message.is_empty() => return Err("no code and no message".into()),
        None => message,
    };
    Ok(Verdict {
        table: Some(table),
        key: RecordKey::Joined(key),
        reason,
        batch: item.remove("batch").filter(|b| !b.is_empty()).or(batch),
        at: item.remove("at").filter(|a| !a.is_empty()),
    })
}

fn err(doing: &str, cause: String) -> SinkError {
    SinkError::Other {
        doing: doing.into(),
        cause,
        class: ErrorClass::Unavailable,
    }
}

#[async_trait::async_trait]
impl Receipts for FileReceipts {
    fn feeds(&self, _: &[&TableSpec]) -> Vec<Feed> {
        vec![Feed {
            table: None,
            cursor_key: Some(CURSOR_KEY.into()),
        }]
    }

    async fn poll(
        &self,
        _: &Feed,
        _: Option<&ReceiptTable>,
        cursor: Option<&str>,
    ) -> Result<Page, SinkError> {
        let me = self.clone();
        let cursor = cursor.map(str::to_owned);
        tokio::task::spawn_blocking(move || me.next_page(cursor.as_deref()))
            .await
            .map_err(|e| err("reading the returned files", e.to_string()))?
            .map_err(|e| err("reading the returned files", e))
    }

    async fn check(&self, _: &[ReceiptTable]) -> Vec<(bool, String)> {
        let bad = self.return_dir.join("bad");
        let set_aside = std::fs::read_dir(&bad)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| !e.file_name().to_string_lossy().ends_with(".error.txt"))
                    .count()
            })
            .unwrap_or(0);
        let waiting = self.waiting().map(|w| w.len());
        let mut out = vec![match waiting {
            Ok(n) => (
                false,
                format!(
                    "feedback: {} error file(s) waiting in {}",
                    n,
                    self.return_dir.display()
                ),
            ),
            Err(e) => (
                true,
                format!("feedback: {}: {e}", self.return_dir.display()),
            ),
        }];
        // A note, not a configuration problem: a person looks at the files.
        if set_aside > 0 {
            out.push((
                false,
                format!(
                    "feedback: {set_aside} error file(s) could not be read and were set aside in \
                     {} (see the .error.txt beside each)",
                    bad.display()
                ),
            ));
        }
        out
    }

    async fn health(&self) -> Option<Result<(), SinkError>> {
        Some(
            self.waiting()
                .map(drop)
                .map_err(|e| err("reading the returned files", e.to_string())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_files_are_read_whole_or_say_where_they_are_wrong() {
        let csv = csv_items("Key,Code,Message\r\n1,E1,a\r\n\"2\",E2,\"b,\r\nc\"\r\n").expect("csv");
        assert_eq!(csv.len(), 2);
        assert_eq!((csv[0].0, csv[1].0), (2, 3));
        assert_eq!(csv[1].1["message"], "b,\r\nc");
        let e = csv_items("key,code,message\n1,E1,a\n2,E2\n").expect_err("short");
        assert!(
            e.starts_with("line 3: 2 fields where the header has 3"),
            "{e}"
        );
        let e = csv_items("id,why\n1,x\n").expect_err("header");
        assert!(e.contains("no `key` column"), "{e}");

        let j =
            json_items(r#"{"items": [{"key": 7, "code": "E", "message": "m"}]}"#).expect("json");
        let v = verdict(j[0].1.clone(), Some("jg_t".into()), Some("b1".into())).expect("verdict");
        assert_eq!(v.key, RecordKey::Joined("7".into()));
        assert_eq!(
            (v.reason.as_str(), v.batch.as_deref()),
            ("[E] m", Some("b1"))
        );
        let e = jsonl_items("{\"key\": \"1\"}\n\nnot json\n").expect_err("jsonl");
        assert!(e.starts_with("line 3: not JSON"), "{e}");
        let no_key = verdict(
            HashMap::from([("message".into(), "m".into())]),
            Some("t".into()),
            None,
        );
        assert_eq!(no_key.expect_err("no key"), "no key");
    }
}
