//! Validation of a `file` exchange: the directory each batch's file goes to, its format and
//! encoding, the optional SFTP upload, and the directory the platform returns error files to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::schema::{RawExchange, RawSftp};
use super::validate::V;

/// How a batch's records are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// RFC 4180 with a header row.
    Csv,
    /// One JSON record per line, in the HTTP envelope's record shape.
    Jsonl,
}

impl FileFormat {
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Jsonl => "jsonl",
        }
    }

    pub fn parse(s: &str) -> Option<FileFormat> {
        match s {
            "csv" => Some(FileFormat::Csv),
            "jsonl" => Some(FileFormat::Jsonl),
            _ => None,
        }
    }
}

/// The character encoding of the files written and of the error files read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileEncoding {
    Utf8,
    Gb18030,
}

impl FileEncoding {
    pub fn parse(s: &str) -> Option<FileEncoding> {
        match s.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Some(FileEncoding::Utf8),
            "gb18030" => Some(FileEncoding::Gb18030),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FileEncoding::Utf8 => "utf-8",
            FileEncoding::Gb18030 => "gb18030",
        }
    }
}

/// How the platform writes its error files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnFormat {
    /// A header row naming `key`, `code`, `message` (and optionally `table`, `batch`, `at`).
    Csv,
    /// A JSON array of objects with those fields (or an object holding it under `items`).
    Json,
    /// One such JSON object per line.
    Jsonl,
}

/// Where the files are also uploaded.
#[derive(Clone, Debug)]
pub struct Sftp {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub key_file: PathBuf,
    pub remote_dir: String,
    pub known_hosts: Option<PathBuf>,
    pub timeout: Duration,
}

/// An exchange that receives files.
#[derive(Clone, Debug)]
pub struct FileExchange {
    pub dir: PathBuf,
    pub format: FileFormat,
    pub encoding: FileEncoding,
    pub sftp: Option<Sftp>,
    pub return_dir: Option<PathBuf>,
    pub return_format: ReturnFormat,
}

impl V<'_> {
    /// The keys of `kind = "file"`, and those of the other kinds refused with it.
    pub(super) fn file_exchange(&mut self, e: &RawExchange) -> Option<FileExchange> {
        let before = self.problems.len();
        let url = [("url", e.url.is_some())];
        for (key, set) in url
            .into_iter()
            .chain(e.database_keys())
            .chain(e.http_keys())
        {
            if set {
                self.err(
                    format!("exchange.{key}"),
                    "does not apply to kind = \"file\" (it writes to `dir`)",
                );
            }
        }
        let dir = match &e.dir {
            Some(d) => self.writable_dir("exchange.dir", d),
            None => {
                self.err(
                    "exchange.dir",
                    "is required by kind = \"file\": the directory the files are written to",
                );
                None
            }
        };
        let format = match e.format.as_deref() {
            None => FileFormat::Csv,
            Some(f) => FileFormat::parse(f).unwrap_or_else(|| {
                self.err("exchange.format", format!("`{f}` is not `csv` or `jsonl`"));
                FileFormat::Csv
            }),
        };
        let encoding = match e.encoding.as_deref() {
            None => FileEncoding::Utf8,
            Some(c) => FileEncoding::parse(c).unwrap_or_else(|| {
                self.err(
                    "exchange.encoding",
                    format!("`{c}` is not `utf-8` or `gb18030`"),
                );
                FileEncoding::Utf8
            }),
        };
        let return_dir = e
            .return_dir
            .as_ref()
            .and_then(|d| self.writable_dir("exchange.return_dir", d));
        if let (Some(r), Some(d)) = (&return_dir, &dir)
            && same_dir(r, d)
        {
            self.err(
                "exchange.return_dir",
                "must not be `dir`: the error files would be taken for the agent's own files",
            );
        }
        let return_format = match e.return_format.as_deref() {
            None | Some("csv") => ReturnFormat::Csv,
            Some("json") => ReturnFormat::Json,
            Some("jsonl") => ReturnFormat::Jsonl,
            Some(f) => {
                self.err(
                    "exchange.return_format",
                    format!("`{f}` is not `csv`, `json` or `jsonl`"),
                );
                ReturnFormat::Csv
            }
        };
        if e.return_format.is_some() && e.return_dir.is_none() {
            self.err("exchange.return_format", "applies only with `return_dir`");
        }
        let sftp = e.sftp.as_ref().and_then(|s| self.sftp(s));
        if self.problems.len() > before {
            return None;
        }
        Some(FileExchange {
            dir: dir?,
            format,
            encoding,
            sftp,
            return_dir,
            return_format,
        })
    }

    /// The file keys have no meaning for the other kinds.
    pub(super) fn not_file(&mut self, e: &RawExchange, kind: &str) {
        for (key, set) in [
            ("dir", e.dir.is_some()),
            ("format", e.format.is_some()),
            ("encoding", e.encoding.is_some()),
            ("sftp", e.sftp.is_some()),
            ("return_dir", e.return_dir.is_some()),
            ("return_format", e.return_format.is_some()),
        ] {
            if set {
                self.err(
                    format!("exchange.{key}"),
                    format!("applies to kind = \"file\", not to kind = \"{kind}\""),
                );
            }
        }
    }

    fn sftp(&mut self, s: &RawSftp) -> Option<Sftp> {
        let before = self.problems.len();
        if s.host.trim().is_empty()
            || s.host.starts_with('-')
            || s.host.contains(char::is_whitespace)
        {
            self.err(
                "exchange.sftp.host",
                format!("`{}` is not a host name", s.host),
            );
        }
        if s.user.is_empty() || s.user.starts_with('-') || s.user.contains(['@', ' ', ':']) {
            self.err(
                "exchange.sftp.user",
                format!("`{}` is not a user name", s.user),
            );
        }
        if s.port == Some(0) {
            self.err("exchange.sftp.port", "must be a port number (1-65535)");
        }
        let key_file = self.base.join(&s.key_file);
        if let Err(e) = std::fs::File::open(&key_file) {
            self.err(
                "exchange.sftp.key_file",
                format!("cannot read {}: {e}", key_file.display()),
            );
        }
        let known_hosts = s.known_hosts.as_ref().map(|k| self.base.join(k));
        if let Some(k) = &known_hosts
            && let Err(e) = std::fs::File::open(k)
        {
            self.err(
                "exchange.sftp.known_hosts",
                format!("cannot read {}: {e}", k.display()),
            );
        }
        if s.remote_dir.is_empty() || s.remote_dir.contains(['\n', '\r', '"']) {
            self.err(
                "exchange.sftp.remote_dir",
                "must name a directory (no quotes or line breaks)",
            );
        }
        let timeout = self.duration(
            "exchange.sftp.timeout",
            s.timeout.as_deref(),
            Duration::from_secs(120),
        );
        if timeout < Duration::from_secs(1) {
            self.err("exchange.sftp.timeout", "must be at least 1s");
        }
        (self.problems.len() == before).then(|| Sftp {
            host: s.host.clone(),
            port: s.port.unwrap_or(22),
            user: s.user.clone(),
            key_file,
            remote_dir: s.remote_dir.clone(),
            known_hosts,
            timeout,
        })
    }

    /// A directory that exists and where the agent can create files.
    fn writable_dir(&mut self, key: &str, d: &Path) -> Option<PathBuf> {
        let dir = self.base.join(d);
        if !dir.is_dir() {
            self.err(
                key,
                format!("{} is not a directory (create it first)", dir.display()),
            );
            return None;
        }
        if let Err(e) = tempfile::Builder::new()
            .prefix(".frontdb-probe")
            .tempfile_in(&dir)
        {
            self.err(
                key,
                format!("the agent cannot write in {}: {e}", dir.display()),
            );
            return None;
        }
        Some(dir)
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// A resource classification code: 5 letters or digits.
pub fn class_code_ok(c: &str) -> bool {
    c.len() == 5 && c.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A GB/T 2260 region code: 6 digits.
pub fn region_code_ok(r: &str) -> bool {
    r.len() == 6 && r.bytes().all(|b| b.is_ascii_digit())
}
