//! Configuration: the TOML schema ([`schema`]), loading with every problem reported at once
//! ([`load`]), secrets ([`secret`]) and the typed, validated result ([`Config`]).

pub mod alert;
pub mod down;
mod feedback;
pub mod file;
pub mod http;
mod load;
mod rules;
pub mod schema;
pub mod secret;
pub mod soap;
mod translate;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;

use crate::db::DbConfig;
use crate::ident::{Ident, TableName};
use crate::schedule::Schedule;
use crate::value::Value;
pub use down::{ArrivalFlag, Direction, FeedbackDb, Notice, Pull, ResyncNotice};
pub use secret::Secret;
pub use validate::key_masked;

/// Where the configuration is read from when neither `--config` nor `FRONTDB_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/frontdb-agent/agent.toml";

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    pub agent: Agent,
    pub source: DbConfig,
    pub exchange: Exchange,
    pub feedback: Feedback,
    pub tables: Vec<TableSpec>,
    /// How the province is told of a full resync.
    pub resync: ResyncNotice,
    /// Where alerts are sent.
    pub alerts: Vec<alert::AlertTarget>,
}

/// How the province's rejections come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedbackKind {
    None,
    Table,
    ErrorTable,
    Flag,
    /// A feedback endpoint of the HTTP exchange, read after a cursor.
    Http,
}

/// `[feedback] kind = "http"`: where rejections are asked for, and where the answer holds
/// them and the next cursor.
#[derive(Clone, Debug)]
pub struct HttpFeedback {
    pub url: String,
    pub items: String,
    pub next: String,
    pub param: String,
}

/// Column names of the province's rejection table.
#[derive(Clone, Debug)]
pub struct FeedbackColumns {
    pub id: Ident,
    pub table_name: Ident,
    pub record_key: Ident,
    pub batch_id: Ident,
    pub error_code: Ident,
    pub error_message: Ident,
    pub rejected_at: Ident,
}

#[derive(Clone, Debug)]
pub struct Feedback {
    pub kind: FeedbackKind,
    pub schedule: Schedule,
    pub confirm: Duration,
    pub table: TableName,
    pub columns: FeedbackColumns,
    pub error_column: Ident,
    pub time_column: Ident,
    pub flag_column: Ident,
    pub failed: Value,
    pub pending: Value,
    pub mirror_table: Option<TableName>,
    pub http: Option<HttpFeedback>,
    /// Where a rejection table or the error tables are read.
    pub database: FeedbackDb,
}

#[derive(Debug)]
pub struct Agent {
    pub id: String,
    pub state_dir: PathBuf,
    pub tz: Tz,
    pub region_code: Option<String>,
    pub department_code: Option<String>,
    pub ledger_retention: Duration,
    pub reject_retention: Duration,
    pub purge_every: Duration,
    /// A reject keeps only its key and the columns its reasons name (`reject_row_copy`).
    pub narrow_reject_copy: bool,
    pub retry_max: Duration,
    pub stop_timeout: Duration,
    pub reject_alert: f64,
    pub metrics: Option<std::net::SocketAddr>,
    pub metrics_token: Option<crate::secret::Secret>,
    pub state_cipher: Option<crate::cipher::Cipher>,
    pub log_format: LogFormat,
    pub patrol: Duration,
    pub unhealthy_after: Duration,
    /// Compliance: a category table is at risk with less than this left before its deadline.
    pub at_risk_margin: Duration,
    pub alert_repeat: Duration,
    /// The web console ([`crate::console`]): where it listens, who may sign in.
    pub console: Option<std::net::SocketAddr>,
    pub console_session: Duration,
    pub console_users: Vec<ConsoleUser>,
}

/// What a console user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleRole {
    /// Reads every page.
    Viewer,
    /// Also resubmits rejects and asks for resyncs.
    Operator,
}

/// `[[agent.console_user]]`, validated.
#[derive(Clone, Debug)]
pub struct ConsoleUser {
    pub name: String,
    /// An argon2 hash in PHC form (checked to parse when the configuration is read).
    pub password_hash: Option<String>,
    pub token: Option<Secret>,
    pub role: ConsoleRole,
}

/// How the log is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON under systemd (journald), text otherwise.
    Auto,
    Text,
    Json,
}

impl Config {
    /// Every secret value of the configuration (passwords, and passwords inside URLs), so
    /// that messages can be scrubbed of them.
    pub fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        let http = match &self.exchange.target {
            ExchangeTarget::Http(h) => Some(&**h),
            ExchangeTarget::Soap(s) => Some(&s.http),
            ExchangeTarget::Database(_) | ExchangeTarget::File(_) => None,
        };
        if let Some(h) = http {
            let auth = &h.auth;
            for s in [&auth.app_key, &auth.app_secret].into_iter().flatten() {
                // A key is not secret, but scrubbing it too costs nothing.
                if !s.expose().is_empty() {
                    out.push(s.expose().to_owned());
                }
            }
        }
        for t in &self.tables {
            for m in t.shape.masks.values() {
                if let crate::shape::Mask::Hash { salt: Some(s), .. } = m
                    && !s.expose().is_empty()
                {
                    out.push(s.expose().to_owned());
                }
            }
        }
        for db in std::iter::once(&self.source).chain(self.exchange.db()) {
            if let Some(p) = &db.password {
                out.push(p.expose().to_owned());
            }
            if let Some(pw) = url_password(db.url.expose()) {
                out.push(pw);
            }
        }
        if let Some(t) = &self.agent.metrics_token {
            out.push(t.expose().to_owned());
        }
        for u in &self.agent.console_users {
            if let Some(t) = &u.token {
                out.push(t.expose().to_owned());
            }
        }
        for a in &self.alerts {
            out.extend(a.secrets());
        }
        out
    }
}

fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let userinfo = authority.rsplit_once('@')?.0;
    userinfo.split_once(':').map(|(_, p)| p.to_owned())
}

#[derive(Debug)]
pub struct Exchange {
    pub target: ExchangeTarget,
    pub control: ControlColumns,
    pub lower_ops: bool,
}

/// What the exchange is.
#[derive(Debug)]
pub enum ExchangeTarget {
    Database(DbConfig),
    Http(Box<http::HttpExchange>),
    Soap(Box<soap::SoapExchange>),
    File(Box<file::FileExchange>),
}

impl Exchange {
    /// The exchange database, when the exchange is one.
    pub fn db(&self) -> Option<&DbConfig> {
        match &self.target {
            ExchangeTarget::Database(d) => Some(d),
            ExchangeTarget::Http(_) | ExchangeTarget::Soap(_) | ExchangeTarget::File(_) => None,
        }
    }

    /// The exchange in words for messages, without any secret.
    pub fn describe(&self) -> String {
        match &self.target {
            ExchangeTarget::Database(d) => format!("{}, {}", d.engine, d.redacted),
            ExchangeTarget::Http(h) => format!("http, {}", secret::redact_url(&h.url)),
            ExchangeTarget::Soap(s) => format!("soap, {}", secret::redact_url(&s.http.url)),
            ExchangeTarget::File(f) => format!("file, {}", f.dir.display()),
        }
    }
}

/// Names of the exchange control columns the agent fills when a target table has them.
#[derive(Clone, Debug)]
pub struct ControlColumns {
    pub operation: Ident,
    pub time: Ident,
    pub batch: Ident,
    pub source: Ident,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteMode {
    Delete,
    Tombstone,
}

#[derive(Debug)]
pub struct TableSpec {
    pub name: String,
    pub source: TableName,
    pub target: TableName,
    pub key: Option<Vec<Ident>>,
    pub watermark: WatermarkSpec,
    pub schedule: Schedule,
    pub jitter: Duration,
    pub notify: Option<Ident>,
    pub category: Option<String>,
    pub batch_size: usize,
    pub batch_bytes: usize,
    pub columns: Option<Vec<Ident>>,
    /// Source column -> exchange column.
    pub rename: BTreeMap<Ident, Ident>,
    /// Exchange column -> constant.
    pub constants: Vec<(Ident, Value)>,
    pub deletes: DeleteMode,
    pub version_column: Option<Ident>,
    pub enabled: bool,
    pub max_lag: Option<Duration>,
    pub rules: Vec<crate::validate::RuleSpec>,
    /// Local codes replaced by the standard's, per column.
    pub translate: Vec<crate::translate::TranslateSpec>,
    pub feedback_table: Option<TableName>,
    pub direction: Direction,
    /// `down`: a front-end column set on every arriving row.
    pub arrival: Option<ArrivalFlag>,
    /// `down` with an http exchange: where its records are read.
    pub pull: Option<Pull>,
    /// Resource classification code that begins the names of the table's files.
    pub class_code: Option<String>,
    /// Outbound shaping: masked source columns, the sharing class, the scope.
    pub shape: Shape,
}

/// What of a table may leave the department (see [`crate::shape`]).
#[derive(Clone, Debug, Default)]
pub struct Shape {
    /// Source column -> its mask.
    pub masks: BTreeMap<Ident, crate::shape::Mask>,
    pub sharing: crate::shape::Sharing,
    pub scope: Option<crate::shape::Scope>,
}

#[derive(Clone, Debug)]
pub enum WatermarkSpec {
    Key,
    Timestamp {
        column: Ident,
        window: Window,
    },
    Control {
        time: Ident,
        op: Ident,
        window: Window,
    },
    Flag {
        column: Ident,
        pending: Value,
        done: Value,
        failed: Value,
        error_column: Option<Ident>,
    },
    Digest,
}

impl WatermarkSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            WatermarkSpec::Key => "key",
            WatermarkSpec::Timestamp { .. } => "timestamp",
            WatermarkSpec::Control { .. } => "control",
            WatermarkSpec::Flag { .. } => "flag",
            WatermarkSpec::Digest => "digest",
        }
    }

    /// The change-time column and its window, for the timestamp-like modes.
    pub fn time(&self) -> Option<(&Ident, &Window)> {
        match self {
            WatermarkSpec::Timestamp { column, window } => Some((column, window)),
            WatermarkSpec::Control { time, window, .. } => Some((time, window)),
            _ => None,
        }
    }
}

/// Lookback and lag of a timestamp-like watermark.
#[derive(Clone, Debug)]
pub struct Window {
    pub lookback: Duration,
    pub lag: Duration,
    /// chrono format of a text time column.
    pub format: String,
}

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// Key path such as `table[2].watermark.column` (empty for the whole file).
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

/// Everything wrong with a configuration file. Never contains a secret's value.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "configuration {} has {n} problem{}:",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {}", self.file.display())?;
            if let Some(l) = p.line {
                write!(f, ":{l}")?;
            }
            if p.path.is_empty() {
                write!(f, ": {}", p.message)?;
            } else {
                write!(f, ": {}: {}", p.path, p.message)?;
            }
        }
        Ok(())
    }
}

/// Read, parse and validate a configuration file. Nothing connects anywhere.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        problems: vec![Problem {
            path: String::new(),
            line: None,
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    load_str(&text, path)
}

/// Parse and validate configuration text that was read from `path`.
pub fn load_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
    load_str_with(text, path, secret::process_env)
}

/// [`load_str`], with `${env:NAME}` secrets looked up in `env` instead of the process's
/// environment.
pub fn load_str_with(
    text: &str,
    path: &Path,
    env: secret::EnvLookup,
) -> Result<Config, ConfigError> {
    let fail = |problems| ConfigError {
        file: path.to_owned(),
        problems,
    };
    let (raw, mut problems, lines, dropped) = load::parse(text);
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    let Some(raw) = raw else {
        return Err(fail(problems));
    };
    let base = path.parent().unwrap_or(Path::new("."));
    match validate::validate(raw, path, base, &lines, env) {
        Ok(cfg) if problems.is_empty() => Ok(cfg),
        Ok(_) => Err(fail(problems)),
        Err(more) => {
            // Tables left out for a structural problem: tell the others in the file's
            // numbering, and do not claim there are none.
            problems.extend(
                more.into_iter()
                    .filter(|p| dropped.is_empty() || p.path != "table")
                    .map(|mut p| {
                        let original = dropped.original(&p.path);
                        if original != p.path {
                            p.line = lines.of(&original);
                            p.path = original;
                        }
                        p
                    }),
            );
            problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
            Err(fail(problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[agent]\nid = \"a\"\nstate_dir = \"state\"\ntimezone = \"UTC\"\n\
        [source]\nurl = \"sqlite://src.db?mode=ro\"\n[exchange]\nurl = \"postgres://u:pw@h/db\"\n";

    fn problems(text: &str) -> Vec<Problem> {
        match load_str(text, Path::new("/etc/fd/agent.toml")) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems,
        }
    }

    #[test]
    fn a_valid_file_resolves_paths_against_its_directory() {
        let cfg = load_str(
            &format!("{BASE}[[table]]\nsource = \"t\"\nwatermark = {{ kind = \"key\" }}\n"),
            Path::new("/etc/fd/agent.toml"),
        )
        .expect("valid");
        assert_eq!(cfg.agent.state_dir, Path::new("/etc/fd/state"));
        assert_eq!(cfg.source.url.expose(), "sqlite:///etc/fd/src.db?mode=ro");
        assert_eq!(
            cfg.exchange.db().map(|d| d.redacted.as_str()),
            Some("postgres://u:***@h/db")
        );
        assert_eq!(cfg.secrets(), vec!["pw".to_string()]);
        let t = &cfg.tables[0];
        assert_eq!((t.name.as_str(), t.batch_size), ("t", 5000));
        assert_eq!(t.schedule.to_string(), "every:5m");
    }

    #[test]
    fn an_odbc_database_takes_a_dialect_and_hides_its_password() {
        let table = "[[table]]\nsource = \"t\"\nwatermark = { kind = \"key\" }\n";
        let odbc = BASE.replace(
            "url = \"sqlite://src.db?mode=ro\"\n",
            "url = \"odbc:Driver={DM8 ODBC DRIVER};Server=h;UID=SYSDBA;PWD=s3cret\"\ndialect = \"dm\"\n",
        );
        let cfg = load_str(&format!("{odbc}{table}"), Path::new("/etc/fd/agent.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.source.engine, crate::db::EngineKind::Odbc);
        assert_eq!(cfg.source.flavor, Some(crate::db::dialect::Flavor::Dm));
        assert_eq!(
            cfg.source.redacted,
            "odbc:Driver=DM8 ODBC DRIVER;Server=h;UID=SYSDBA;PWD=***"
        );
        let bad = odbc.replace("dialect = \"dm\"", "dialect = \"sybase\"");
        let p = problems(&format!("{bad}{table}"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!((p[0].path.as_str(), p[0].line), ("source.dialect", Some(7)));
        assert!(p[0].message.contains("use dm, kingbase, gbase"), "{p:?}");
        // Only an ODBC database speaks a dialect of its choosing.
        let p = problems(&format!(
            "{}{table}",
            BASE.replace("[exchange]\n", "[exchange]\ndialect = \"kingbase\"\n")
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "exchange.dialect");
        assert!(p[0].message.contains("odbc:// databases only"), "{p:?}");
    }

    #[test]
    fn a_listening_table_needs_a_second_source_connection() {
        let pg = BASE.replace(
            "url = \"sqlite://src.db?mode=ro\"\n",
            "url = \"postgres://h/src\"\nmax_connections = 1\n",
        );
        let table = "[[table]]\nsource = \"t\"\nwatermark = { kind = \"key\" }\n";
        assert_eq!(problems(&format!("{pg}{table}")), Vec::new());
        let p = problems(&format!("{pg}{table}notify = \"frontdb_t\"\n"));
        let got: Vec<(Option<usize>, &str)> = p.iter().map(|p| (p.line, p.path.as_str())).collect();
        assert_eq!(got, vec![(Some(7), "source.max_connections")], "{p:?}");
        assert!(p[0].message.contains("table t listens"), "{p:?}");
    }

    #[test]
    fn every_problem_is_reported_with_path_and_line() {
        let p = problems(&format!(
            "{BASE}[[table]]\nsource = \"t\"\nsorce = \"x\"\nwatermark = {{ kind = \"flag\" }}\n\
             schedule = \"fortnightly\"\n[[table]]\nsource = \"u v\"\nwatermark = {{ kind = \"key\" }}\n"
        ));
        let got: Vec<(Option<usize>, &str)> = p.iter().map(|p| (p.line, p.path.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (Some(11), "table[0].sorce"),
                (Some(12), "table[0].watermark"),
                (Some(15), "table[1].source"),
            ],
            "{p:?}"
        );
        assert!(p[1].message.contains("missing field `column`"), "{p:?}");
        // A table with a required key missing is left out, and the rest is still checked:
        // the second table's bad identifier and a third table's unknown key, in the
        // file's numbering.
        let p = problems(&format!(
            "{BASE}[[table]]\nsource = \"t\"\nwatermark = {{ kind = \"flag\" }}\n\
             schedule = \"fortnightly\"\n[[table]]\nsource = \"u v\"\nwatermark = {{ kind = \"key\" }}\n\
             [[table]]\nsource = \"w\"\nwatermark = {{ kind = \"key\" }}\nbatch = 5\n"
        ));
        let got: Vec<(Option<usize>, &str)> = p.iter().map(|p| (p.line, p.path.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (Some(11), "table[0].watermark"),
                (Some(14), "table[1].source"),
                (Some(19), "table[2].batch"),
            ],
            "{p:?}"
        );
        // With the structure fixed, the semantic problems all come out together.
        let p = problems(&format!(
            "{BASE}[[table]]\nsource = \"t\"\nwatermark = {{ kind = \"flag\", column = \"s\", done = 0 }}\n\
             schedule = \"fortnightly\"\n[[table]]\nsource = \"u v\"\nwatermark = {{ kind = \"key\" }}\n"
        ));
        let got: Vec<(Option<usize>, &str)> = p.iter().map(|p| (p.line, p.path.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (Some(11), "table[0].watermark.done"),
                (Some(12), "table[0].schedule"),
                (Some(14), "table[1].source"),
            ],
            "{p:?}"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let p = problems("[agent]\nid = \"a\"\nstate_dir = \n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].line, Some(3));
        assert!(p[0].message.starts_with("not valid TOML"), "{p:?}");
    }

    #[test]
    fn secret_values_never_reach_messages() {
        let cfg = load_str_with(
            &format!(
                "{}[[table]]\nsource = \"t\"\nwatermark = {{ kind = \"key\" }}\n",
                BASE.replace(
                    "url = \"postgres://u:pw@h/db\"",
                    "url = \"postgres://u@h/db\"\npassword = \"${env:FRONTDB_UNIT_SECRET}\""
                )
            ),
            Path::new("a.toml"),
            |name| (name == "FRONTDB_UNIT_SECRET").then(|| "very-secret-value".to_owned()),
        )
        .expect("valid");
        assert!(!format!("{cfg:?}").contains("very-secret-value"));
        assert_eq!(cfg.secrets(), vec!["very-secret-value".to_string()]);
    }
}
