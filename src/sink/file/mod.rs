//! The exchange as files: each batch becomes one data file in `dir`, named by the
//! 15-character rule with a sequence ([`names`]), CSV or JSON Lines in UTF-8 or GB 18030
//! ([`encode`]), with its manifest beside it (batch id, table, record count, SHA-256,
//! creation time). Both appear whole or not at all ([`write`]), the manifest last: a file is
//! delivered when its manifest is in place. A batch sent again after a crash is written
//! under the name it reserved, with the same bytes and the same manifest. The files are
//! then uploaded over SFTP where configured ([`sftp`]); the platform's error files come
//! back through [`FileReceipts`].

pub mod encode;
pub mod names;
mod receipts;
pub mod sftp;
pub mod write;

pub use receipts::FileReceipts;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{Datelike as _, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::{
    Capabilities, Deletes, Outgoing, Ready, Refusal, Sink, SinkError, TableSchema, Target, Turn,
};
use crate::config::file::{FileEncoding, FileExchange, FileFormat};
use crate::config::http::Envelope;
use crate::db::ErrorClass;
use crate::ident::TableName;
use crate::value::Value;
use encode::Shape;
use names::Names;

/// What a data file's manifest says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The data file's name.
    pub file: String,
    pub batch_id: String,
    /// The table at the exchange.
    pub table: String,
    /// Records in the file (rows and deletes; the header row not counted).
    pub records: u64,
    /// SHA-256 of the data file, hex.
    pub sha256: String,
    pub bytes: u64,
    pub format: String,
    pub encoding: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A manifest read from a file; `None` where there is none.
pub fn read_manifest(path: &Path) -> std::io::Result<Option<Manifest>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a manifest: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// How a table's files are made: where, in what shape, and under which prefix.
pub struct Files {
    pub dir: PathBuf,
    pub format: FileFormat,
    pub encoding: FileEncoding,
    pub op_column: String,
    pub lower_ops: bool,
    pub tz: Tz,
}

impl Files {
    /// The shape of a table's files.
    pub fn shape(&self, target: &Target) -> Shape {
        Shape::new(
            target,
            self.format,
            self.encoding,
            &self.op_column,
            self.lower_ops,
        )
    }

    /// A batch's file content: the header, then its records.
    pub fn content(&self, b: &Outgoing<'_>) -> Result<(Vec<u8>, u64), String> {
        let env = Envelope::built_in();
        let format = super::http::encode::Format {
            tz: self.tz,
            env: &env,
        };
        let records = super::http::encode::records(b, &format)?;
        let shape = self.shape(b.target);
        let mut bytes = shape.head()?;
        bytes.extend(shape.lines(&records)?);
        Ok((bytes, records.len() as u64))
    }
}

/// One batch to write, owned, for the blocking part of the delivery.
struct Job {
    names: Arc<Names>,
    dir: PathBuf,
    label: String,
    batch: String,
    table: String,
    prefix: String,
    format: FileFormat,
    encoding: FileEncoding,
    now: String,
    bytes: Vec<u8>,
    records: u64,
}

impl Job {
    /// Reserve the batch's name and write its file and manifest, unless they are there
    /// already; returns the data file's name.
    fn run(self) -> Result<String, String> {
        let io = |doing: &str, e: std::io::Error| format!("{doing}: {e}");
        let before = self
            .names
            .reserved(&self.label)
            .map_err(|e| io("reading the name reservation", e))?;
        if let Some(prev) = before.filter(|p| p.batch != self.batch) {
            self.drop_undelivered(&prev.name)
                .map_err(|e| io(&format!("removing {} (never delivered)", prev.name), e))?;
        }
        let reserve = |fresh| {
            self.names
                .reserve(
                    &self.label,
                    &self.batch,
                    (&self.prefix, self.format.extension()),
                    &self.now,
                    fresh,
                )
                .map_err(|e| io("reserving the file name", e))
        };
        let (mut r, mut new) = reserve(false)?;
        // A name held by files this agent did not write (another writer in the directory) is
        // never overwritten: the batch takes the next number.
        for attempt in 0.. {
            let taken = match read_manifest(&self.dir.join(names::manifest_of(&r.name)))
                .map_err(|e| io("reading", e))?
            {
                Some(m) => m.batch_id != self.batch,
                None => new && self.dir.join(&r.name).exists(),
            };
            if !taken {
                break;
            }
            if attempt == 100 {
                return Err(format!(
                    "{} and the 100 names after it are taken by files this agent did not write",
                    r.name
                ));
            }
            tracing::warn!(file = %r.name, batch = %self.batch,
                "the name is taken by a file this agent did not write; the batch takes the next number");
            (r, new) = reserve(true)?;
        }
        let data = self.dir.join(&r.name);
        let manifest_name = names::manifest_of(&r.name);
        let sha = {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(&self.bytes))
        };
        match read_manifest(&self.dir.join(&manifest_name)).map_err(|e| io("reading", e))? {
            Some(m) if m.sha256 == sha && write::sha256_of(&data).ok().as_ref() == Some(&sha) => {
                tracing::info!(batch = %self.batch, file = %r.name, "batch sent again: its files are in place");
                return Ok(r.name);
            }
            _ => {}
        }
        let mut f = write::Pending::create(&self.dir, &r.name)
            .map_err(|e| io(&format!("creating {}", r.name), e))?;
        std::io::Write::write_all(&mut f, &self.bytes)
            .map_err(|e| io(&format!("writing {}", r.name), e))?;
        let (sha256, bytes) = f
            .finish()
            .map_err(|e| io(&format!("writing {}", r.name), e))?;
        let m = Manifest {
            file: r.name.clone(),
            batch_id: self.batch,
            table: self.table,
            records: self.records,
            sha256,
            bytes,
            format: self.format.extension().into(),
            encoding: self.encoding.name().into(),
            created_at: r.created_at,
        };
        let json = serde_json::to_vec_pretty(&m).map_err(|e| e.to_string())?;
        write::atomic(&self.dir, &manifest_name, &json)
            .map_err(|e| io(&format!("writing {manifest_name}"), e))?;
        Ok(r.name)
    }

    /// A data file of the table's earlier batch whose manifest was never written (a crash
    /// between the two): it was not delivered, and its rows are sent again in this batch or
    /// a later one, so it goes.
    fn drop_undelivered(&self, name: &str) -> std::io::Result<()> {
        let data = self.dir.join(name);
        if data.exists() && !self.dir.join(names::manifest_of(name)).exists() {
            std::fs::remove_file(&data)?;
            write::sync_dir(&self.dir)?;
            tracing::info!(file = %name, "removed a data file whose manifest was never written");
        }
        Ok(())
    }
}

pub struct FileSink {
    cfg: FileExchange,
    files: Files,
    region: String,
    /// Resource classification code by table name.
    classes: HashMap<String, String>,
    names: Arc<Names>,
}

impl FileSink {
    pub fn new(cfg: &crate::config::Config, f: &FileExchange) -> Result<FileSink, SinkError> {
        let region = cfg.agent.region_code.clone().ok_or_else(|| {
            fatal(
                "setting up the file exchange",
                "[agent] region_code is required",
            )
        })?;
        let swept = names::remove_temps(&f.dir).map_err(|e| {
            fatal(
                "setting up the file exchange",
                format!("{}: {e}", f.dir.display()),
            )
        })?;
        if swept > 0 {
            tracing::info!(dir = %f.dir.display(), files = swept, "removed temporary files left by a crash");
        }
        Ok(FileSink {
            files: Files {
                dir: f.dir.clone(),
                format: f.format,
                encoding: f.encoding,
                op_column: cfg.exchange.control.operation.as_str().to_owned(),
                lower_ops: cfg.exchange.lower_ops,
                tz: cfg.agent.tz,
            },
            region,
            classes: cfg
                .tables
                .iter()
                .filter_map(|t| Some((t.name.clone(), t.class_code.clone()?)))
                .collect(),
            names: Arc::new(Names::new(
                cfg.agent.state_dir.join("file-exchange"),
                f.dir.clone(),
            )),
            cfg: f.clone(),
        })
    }

    fn job(&self, b: &Outgoing<'_>) -> Result<Job, SinkError> {
        let doing = format!(
            "writing a batch of table {} to {}",
            b.label,
            self.files.dir.display()
        );
        let class = self
            .classes
            .get(b.label)
            .ok_or_else(|| fatal(&doing, format!("table {} has no class_code", b.label)))?;
        let (bytes, records) = self.files.content(b).map_err(|e| fatal(&doing, e))?;
        let now = Utc::now().with_timezone(&self.files.tz);
        Ok(Job {
            names: self.names.clone(),
            dir: self.files.dir.clone(),
            label: b.label.to_owned(),
            batch: b.id.to_owned(),
            table: b.target.table.to_string(),
            prefix: names::prefix(class, now.year(), &self.region),
            format: self.files.format,
            encoding: self.files.encoding,
            now: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
            bytes,
            records,
        })
    }
}

fn fatal(doing: &str, cause: impl Into<String>) -> SinkError {
    SinkError::Other {
        doing: doing.into(),
        cause: cause.into(),
        class: ErrorClass::Fatal,
    }
}

fn unavailable(doing: &str, cause: impl Into<String>) -> SinkError {
    SinkError::Other {
        doing: doing.into(),
        cause: cause.into(),
        class: ErrorClass::Unavailable,
    }
}

#[async_trait::async_trait]
impl Sink for FileSink {
    fn place(&self) -> &'static str {
        "exchange directory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // A platform importing files promises nothing about versions.
            newer_wins: false,
            deletes: Deletes::AsRecords,
            overlapping: false,
            max_rows: None,
            lists_keys: false,
            copy_tuples: false,
            text_without_nul: false,
            catalog: false,
            // Verdicts come later, as error files.
            verdicts: false,
        }
    }

    async fn describe(&self, _: &TableName) -> Result<Option<TableSchema>, SinkError> {
        Ok(None)
    }

    async fn deliver(
        &self,
        b: &Outgoing<'_>,
        ready: Ready<'_>,
        turn: &Turn,
    ) -> Result<Vec<Refusal>, SinkError> {
        ready.await;
        let doing = format!(
            "writing a batch of table {} to {}",
            b.label,
            self.files.dir.display()
        );
        if !turn.before_committed().await {
            return Err(unavailable(
                &doing,
                "the batch before it was not delivered; both are sent again",
            ));
        }
        let job = self.job(b)?;
        // Disk errors (full, gone, read-only) are the exchange being unavailable: the batch
        // is written again, under the same name, once they are fixed.
        let name = tokio::task::spawn_blocking(move || job.run())
            .await
            .map_err(|e| unavailable(&doing, e.to_string()))?
            .map_err(|e| unavailable(&doing, e))?;
        if let Some(s) = &self.cfg.sftp {
            let manifest = names::manifest_of(&name);
            sftp::upload(s, &self.files.dir, &[&name, &manifest])
                .await
                .map_err(|e| unavailable(&format!("uploading {name}"), e))?;
        }
        tracing::debug!(table = %b.label, batch = %b.id, file = %name, "batch written");
        Ok(Vec::new())
    }

    async fn keys(
        &self,
        _: &Target,
        _: Option<&[Value]>,
        _: Option<&[Value]>,
        _: usize,
    ) -> Result<Vec<Vec<Value>>, SinkError> {
        Err(fatal(
            "listing the exchange's keys",
            "an exchange directory cannot list the keys it holds",
        ))
    }

    /// The directory takes files, and the SFTP server (where configured) answers.
    async fn health(&self) -> Result<(), SinkError> {
        let dir = self.files.dir.clone();
        let doing = format!("writing in {}", dir.display());
        tokio::task::spawn_blocking(move || {
            tempfile::Builder::new()
                .prefix(".frontdb-probe")
                .tempfile_in(&dir)
                .map(drop)
        })
        .await
        .map_err(|e| unavailable(&doing, e.to_string()))?
        .map_err(|e| unavailable(&doing, e.to_string()))?;
        if let Some(s) = &self.cfg.sftp {
            sftp::reachable(s)
                .await
                .map_err(|e| unavailable(&format!("reaching {}", s.host), e))?;
        }
        Ok(())
    }

    async fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(names: &Arc<Names>, dir: &Path, batch: &str, bytes: &[u8], now: &str) -> Job {
        Job {
            names: names.clone(),
            dir: dir.to_owned(),
            label: "t".into(),
            batch: batch.into(),
            table: "jg_t".into(),
            prefix: names::prefix("A0101", 2026, "230100"),
            format: FileFormat::Csv,
            encoding: FileEncoding::Utf8,
            now: now.into(),
            bytes: bytes.to_vec(),
            records: 1,
        }
    }

    /// Every file of a directory and its bytes.
    fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| {
                let e = e.expect("e");
                let n = e.file_name().into_string().expect("utf-8");
                (n, std::fs::read(e.path()).expect("read"))
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_batch_sent_again_after_a_crash_at_any_step_keeps_its_name_and_bytes() {
        let state = tempfile::tempdir().expect("tmp");
        let out = tempfile::tempdir().expect("tmp");
        let dir = out.path();
        let names = Arc::new(Names::new(state.path().to_owned(), dir.to_owned()));
        let body = b"id,cd_operation\r\n1,I\r\n";
        let name = job(&names, dir, "b1", body, "t0").run().expect("write");
        assert_eq!(name, "A01012026230100000001.csv");
        let delivered = snapshot(dir);
        assert_eq!(delivered.len(), 2);
        let manifest = dir.join(names::manifest_of(&name));
        let m = read_manifest(&manifest).expect("read").expect("manifest");
        assert_eq!(
            (m.batch_id.as_str(), m.records, m.created_at.as_str()),
            ("b1", 1, "t0")
        );
        assert_eq!(m.sha256, write::sha256_of(&dir.join(&name)).expect("sha"));

        // Sent again with everything in place; after a crash before the manifest; after a
        // crash half way through the data file; after the platform took both files.
        let crashes: [&dyn Fn(); 4] = [
            &|| {},
            &|| std::fs::remove_file(&manifest).expect("rm"),
            &|| {
                std::fs::remove_file(&manifest).expect("rm");
                std::fs::remove_file(dir.join(&name)).expect("rm");
                std::fs::write(dir.join(write::temp_name(&name)), b"id,cd_op").expect("w");
            },
            &|| {
                std::fs::remove_file(&manifest).expect("rm");
                std::fs::remove_file(dir.join(&name)).expect("rm");
            },
        ];
        for (i, crash) in crashes.iter().enumerate() {
            crash();
            let again = job(&names, dir, "b1", body, "later").run().expect("again");
            assert_eq!(again, name, "case {i}");
            assert_eq!(snapshot(dir), delivered, "case {i}: same files, same bytes");
        }

        // The next batch takes the next number; a batch whose manifest was never written is
        // not delivered, and goes when the table's next batch comes.
        let n2 = job(&names, dir, "b2", b"x\r\n", "t2").run().expect("b2");
        assert_eq!(n2, "A01012026230100000002.csv");
        std::fs::remove_file(dir.join(names::manifest_of(&n2))).expect("rm");
        let n3 = job(&names, dir, "b3", b"y\r\n", "t3").run().expect("b3");
        assert_eq!(n3, "A01012026230100000003.csv");
        assert!(!dir.join(&n2).exists(), "the undelivered file went");
        assert_eq!(snapshot(dir).len(), 4);

        // Files another writer put under the names the batches reserve are never overwritten:
        // the batch takes the next free number.
        let stranger = Manifest {
            batch_id: "other".into(),
            ..m
        };
        let foreign = serde_json::to_vec(&stranger).expect("json");
        std::fs::write(dir.join(names::manifest_of(&n3)), &foreign).expect("w");
        std::fs::write(dir.join("A01012026230100000004.csv"), b"theirs").expect("w");
        let n = job(&names, dir, "b3", b"y\r\n", "t4")
            .run()
            .expect("moved on");
        assert_eq!(n, "A01012026230100000005.csv");
        assert_eq!(
            std::fs::read(dir.join(names::manifest_of(&n3))).expect("r"),
            foreign
        );
        assert_eq!(
            std::fs::read(dir.join("A01012026230100000004.csv")).expect("r"),
            b"theirs"
        );
        assert_eq!(std::fs::read(dir.join(&n)).expect("r"), b"y\r\n");
        // Sent again, it keeps the new name.
        assert_eq!(
            job(&names, dir, "b3", b"y\r\n", "t5").run().expect("again"),
            n
        );
    }
}
