//! `frontdb-agent export`: a whole table as files for the platform's format-file import of
//! historical data (DB23/T 2835-2021, 7.2.1b), named by the 15-character rule and each with
//! its manifest, exactly as the file exchange writes them. The table is read a chunk at a
//! time and written as it is read; a file is complete (synced and renamed, its manifest
//! last) before the next begins.

use std::path::Path;
use std::sync::Arc;

use chrono::{Datelike as _, Utc};

use crate::config::file::{FileEncoding, FileExchange, FileFormat, ReturnFormat};
use crate::config::{Config, ExchangeTarget};
use crate::ctx::Ends;
use crate::db::Db;
use crate::error::AppError;
use crate::job::{self, Plan};
use crate::mapping::RowCtx;
use crate::sink::file::encode::Shape;
use crate::sink::file::{FileSink, Files, Manifest, names, write};
use crate::sink::{Op, Outgoing, Removal, Sink, Tuples};
use crate::value::Value;

/// What to export, and how.
pub struct Request<'a> {
    pub table: &'a str,
    pub format: FileFormat,
    /// `None`: the file exchange's encoding, else UTF-8.
    pub encoding: Option<FileEncoding>,
    pub out: &'a Path,
    /// Most records in one file.
    pub rows_per_file: u64,
}

pub async fn run(cfg: Config, req: Request<'_>) -> Result<(), AppError> {
    let Some(spec) = cfg.tables.iter().find(|t| t.name == req.table) else {
        return Err(AppError::Usage(format!(
            "no table named `{}` in {} (known: {})",
            req.table,
            cfg.file.display(),
            cfg.tables
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    if spec.direction == crate::config::Direction::Down {
        return Err(AppError::Usage(format!(
            "table {} goes down (direction = \"down\"): an export is of a table the department sends",
            spec.name
        )));
    }
    let Some(class) = spec.class_code.clone() else {
        return Err(AppError::Usage(format!(
            "table {} has no class_code: the files' names begin with it (5 letters or digits)",
            spec.name
        )));
    };
    let Some(region) = cfg.agent.region_code.clone() else {
        return Err(AppError::Usage(
            "[agent] region_code is required: the files' names carry it (6 digits)".into(),
        ));
    };
    if req.rows_per_file == 0 {
        return Err(AppError::Usage("--rows-per-file must be at least 1".into()));
    }
    std::fs::create_dir_all(req.out)
        .map_err(|e| AppError::Usage(format!("cannot create {}: {e}", req.out.display())))?;
    // The exchange numbers its files in its directory as it goes: an export beside it would
    // take the same numbers.
    if let ExchangeTarget::File(f) = &cfg.exchange.target
        && req.out.canonicalize().ok() == f.dir.canonicalize().ok()
    {
        return Err(AppError::Usage(format!(
            "--out {} is the file exchange's directory (exchange.dir): export into another \
             directory and hand its files over from there",
            req.out.display()
        )));
    }
    let encoding = req.encoding.unwrap_or(match &cfg.exchange.target {
        ExchangeTarget::File(f) => f.encoding,
        _ => FileEncoding::Utf8,
    });
    let fx = FileExchange {
        dir: req.out.to_owned(),
        format: req.format,
        encoding,
        sftp: None,
        return_dir: None,
        return_format: ReturnFormat::Csv,
    };
    let sink: Arc<dyn Sink> = Arc::new(FileSink::new(&cfg, &fx).map_err(AppError::runtime)?);
    let front = Arc::new(
        Db::connect(&cfg.source, "source", false)
            .await
            .map_err(AppError::runtime)?,
    );
    let sides = crate::ctx::Sides::new(front.clone(), sink, None);
    let ends = Ends::of(spec, &cfg, &sides).map_err(AppError::runtime)?;
    let result = match job::prepare(&cfg, ends, spec).await {
        Ok(plan) => {
            let mut w = Writer::new(&cfg, &plan, &fx, &class, &region, req.rows_per_file);
            export(&cfg, &plan, &mut w).await
        }
        Err(e) => Err(AppError::runtime(e)),
    };
    front.close().await;
    result
}

/// Read the table chunk after chunk and write it.
async fn export(cfg: &Config, plan: &Plan, w: &mut Writer<'_>) -> Result<(), AppError> {
    let origin = match (&cfg.agent.region_code, &cfg.agent.department_code) {
        (Some(r), Some(d)) => Some(format!("{r}{d}")),
        _ => None,
    };
    let now = Utc::now();
    let cd_batch = format!("{}00000", now.with_timezone(&cfg.agent.tz).format("%Y%m%d"));
    let rc = RowCtx {
        tz: &cfg.agent.tz,
        exchange_time: now,
        cd_batch: &cd_batch,
        origin: origin.as_deref(),
        lower_ops: cfg.exchange.lower_ops,
        // An export carries the whole table: a full update.
        mark: cfg.resync.mark(true),
    };
    let (mut after, mut failed, mut deleted) = (None, Vec::new(), 0);
    loop {
        let c = job::export::chunk(plan, after.as_deref(), &rc)
            .await
            .map_err(AppError::runtime)?;
        failed.extend(c.failed);
        deleted += c.deleted;
        w.rows(&c.rows, &cd_batch)?;
        match c.last {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    let (files, records) = w.close()?;
    println!(
        "{}: {records} record(s) exported in {files} file(s) to {}",
        plan.name,
        w.files.dir.display()
    );
    if deleted > 0 {
        println!("{deleted} row(s) marked deleted (operation D) were left out");
    }
    if failed.is_empty() {
        return Ok(());
    }
    for (key, why) in failed.iter().take(20) {
        eprintln!("table {}: key {key}: not exported: {why}", plan.name);
    }
    Err(AppError::Runtime(format!(
        "table {}: {} row(s) could not be mapped to the exchange's columns and were not \
         exported (the first are listed above)",
        plan.name,
        failed.len()
    )))
}

/// The export's files, one after another.
struct Writer<'a> {
    files: Files,
    plan: &'a Plan,
    shape: Shape,
    prefix: String,
    batch_stem: String,
    rows_per_file: u64,
    /// The file being written: its name, its records so far.
    open: Option<(write::Pending, String, u64)>,
    next_seq: Option<u32>,
    written: u64,
    total: u64,
}

impl<'a> Writer<'a> {
    fn new(
        cfg: &Config,
        plan: &'a Plan,
        fx: &FileExchange,
        class: &str,
        region: &str,
        rows_per_file: u64,
    ) -> Writer<'a> {
        let files = Files {
            dir: fx.dir.clone(),
            format: fx.format,
            encoding: fx.encoding,
            op_column: cfg.exchange.control.operation.as_str().to_owned(),
            lower_ops: cfg.exchange.lower_ops,
            tz: cfg.agent.tz,
        };
        let now = Utc::now().with_timezone(&cfg.agent.tz);
        Writer {
            shape: files.shape(&plan.out),
            files,
            plan,
            prefix: names::prefix(class, now.year(), region),
            batch_stem: format!(
                "{}-{}-export-{}",
                cfg.agent.id,
                plan.name,
                now.format("%Y%m%d%H%M%S")
            ),
            rows_per_file,
            open: None,
            next_seq: None,
            written: 0,
            total: 0,
        }
    }

    fn io(&self, e: std::io::Error) -> AppError {
        AppError::Runtime(format!(
            "table {}: writing the export to {}: {e}",
            self.plan.name,
            self.files.dir.display()
        ))
    }

    /// Write rows, beginning new files as they fill.
    fn rows(&mut self, rows: &[Vec<Value>], cd_batch: &str) -> Result<(), AppError> {
        // An empty table still gets its file (the header alone); nothing else is empty.
        if rows.is_empty() && (self.open.is_some() || self.written > 0) {
            return Ok(());
        }
        let mut rest = rows;
        loop {
            if self.open.is_none() {
                self.begin()?;
            }
            let room = match &self.open {
                Some((_, _, n)) => usize::try_from(self.rows_per_file - n).unwrap_or(usize::MAX),
                None => 0,
            };
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.append(now, cd_batch)?;
            rest = later;
            if matches!(&self.open, Some((_, _, n)) if *n >= self.rows_per_file) {
                self.finish()?;
            }
            if rest.is_empty() {
                return Ok(());
            }
        }
    }

    fn begin(&mut self) -> Result<(), AppError> {
        let seq = match self.next_seq {
            Some(s) => s,
            None => names::highest_in(&self.files.dir, &self.prefix).map_err(|e| self.io(e))? + 1,
        };
        if seq > names::MAX_SEQ {
            return Err(AppError::Runtime(format!(
                "every sequence number of {} was used in {}",
                self.prefix,
                self.files.dir.display()
            )));
        }
        self.next_seq = Some(seq + 1);
        let name = names::name(&self.prefix, seq, self.files.format.extension());
        let mut f = write::Pending::create(&self.files.dir, &name).map_err(|e| self.io(e))?;
        let head = self.shape.head().map_err(AppError::Runtime)?;
        std::io::Write::write_all(&mut f, &head).map_err(|e| self.io(e))?;
        self.open = Some((f, name, 0));
        Ok(())
    }

    fn append(&mut self, rows: &[Vec<Value>], cd_batch: &str) -> Result<(), AppError> {
        if rows.is_empty() {
            return Ok(());
        }
        let ops = vec![Op::Insert; rows.len()];
        let mark = self.plan.marks.as_ref().map(|m| m.of(true));
        let b = Outgoing {
            id: &self.batch_stem,
            cd_batch,
            label: &self.plan.name,
            target: &self.plan.out,
            rows,
            ops: &ops,
            tuples: &Tuples::default(),
            deletes: &[],
            removal: Removal::Versioned,
            mark: mark.as_ref().map(|(f, v)| (f.as_str(), v.as_str())),
        };
        let env = crate::config::http::Envelope::built_in();
        let format = crate::sink::http::encode::Format {
            tz: self.files.tz,
            env: &env,
        };
        let records = crate::sink::http::encode::records(&b, &format).map_err(AppError::Runtime)?;
        let bytes = self.shape.lines(&records).map_err(AppError::Runtime)?;
        let Some((f, _, n)) = self.open.as_mut() else {
            return Ok(());
        };
        let wrote = std::io::Write::write_all(f, &bytes);
        *n += rows.len() as u64;
        wrote.map_err(|e| self.io(e))
    }

    /// Complete the open file and write its manifest.
    fn finish(&mut self) -> Result<(), AppError> {
        let Some((f, name, records)) = self.open.take() else {
            return Ok(());
        };
        let (sha256, bytes) = f.finish().map_err(|e| self.io(e))?;
        self.written += 1;
        let m = Manifest {
            file: name.clone(),
            batch_id: format!("{}-{:04}", self.batch_stem, self.written),
            table: self.plan.out.table.to_string(),
            records,
            sha256,
            bytes,
            format: self.files.format.extension().into(),
            encoding: self.files.encoding.name().into(),
            created_at: Utc::now()
                .with_timezone(&self.files.tz)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
        };
        let json = serde_json::to_vec_pretty(&m).map_err(|e| AppError::Runtime(e.to_string()))?;
        write::atomic(&self.files.dir, &names::manifest_of(&name), &json)
            .map_err(|e| self.io(e))?;
        self.total += records;
        println!("{name}: {records} record(s)");
        Ok(())
    }

    /// Complete the last file; returns the files and records written.
    fn close(&mut self) -> Result<(u64, u64), AppError> {
        self.finish()?;
        Ok((self.written, self.total))
    }
}
