//! From the raw file to a typed [`Config`], collecting every problem with its key path.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;

use super::load::Lines;
use super::schema::{RawAgent, RawConfig, RawExchange, RawTable, RawWatermark};
use super::secret::{self, Secret};
use super::{
    Agent, Config, ControlColumns, DeleteMode, Exchange, ExchangeTarget, LogFormat, Problem,
    TableSpec, WatermarkSpec, Window,
};
use crate::db::dialect::Flavor;
use crate::db::{DbConfig, EngineKind};
use crate::ident::{Ident, TableName};
use crate::schedule::{self, Schedule};
use crate::value::Value;

mod shape;
pub use shape::key_masked;
mod console;
mod table;

/// Default schedule of a table that names none.
pub const DEFAULT_SCHEDULE: &str = "every:5m";
pub const DEFAULT_BATCH_SIZE: usize = 5000;
pub const DEFAULT_BATCH_BYTES: usize = 16 * 1024 * 1024;
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(300);
pub const DEFAULT_TEXT_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f";

pub(super) struct V<'a> {
    pub(super) problems: Vec<Problem>,
    pub(super) lines: &'a Lines,
    pub(super) base: &'a Path,
    /// Where `${env:NAME}` secrets are looked up.
    pub(super) env: secret::EnvLookup,
    /// The source's engine, once `[source]` was read.
    pub(super) source_engine: Option<EngineKind>,
}

/// Connection settings common to `[source]` and `[exchange]`.
struct RawConn<'a> {
    url: &'a str,
    password: Option<&'a str>,
    max_connections: Option<u32>,
    connect_timeout: Option<&'a str>,
    bootstrap_sql: Option<&'a Path>,
    transaction_guard: Option<&'a str>,
    statement_timeout: Option<&'a str>,
    dialect: Option<&'a str>,
}

impl V<'_> {
    pub(super) fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        self.problems.push(Problem {
            line: self.lines.of(&path),
            path,
            message: message.into(),
        });
    }

    pub(super) fn ident(&mut self, path: &str, s: &str) -> Option<Ident> {
        Ident::new(s).map_err(|e| self.err(path, e)).ok()
    }

    pub(super) fn idents(&mut self, path: &str, list: &[String]) -> Option<Vec<Ident>> {
        if list.is_empty() {
            self.err(path, "must name at least one column");
            return None;
        }
        let out: Vec<Option<Ident>> = list
            .iter()
            .enumerate()
            .map(|(i, s)| self.ident(&format!("{path}[{i}]"), s))
            .collect();
        out.into_iter().collect()
    }

    pub(super) fn table_name(&mut self, path: &str, s: &str) -> Option<TableName> {
        TableName::parse(s).map_err(|e| self.err(path, e)).ok()
    }

    pub(super) fn duration(&mut self, path: &str, s: Option<&str>, default: Duration) -> Duration {
        match s {
            None => default,
            Some(s) => humantime::parse_duration(s).unwrap_or_else(|e| {
                self.err(
                    path,
                    format!("`{s}` is not a duration ({e}); write e.g. 30s, 5m, 2h"),
                );
                default
            }),
        }
    }

    fn agent(&mut self, mut a: RawAgent) -> Option<Agent> {
        let id_ok = !a.id.is_empty()
            && a.id.len() <= 64
            && a.id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !id_ok {
            self.err(
                "agent.id",
                format!(
                    "`{}` is not an agent id: 1-64 letters, digits, `-` or `_`",
                    a.id
                ),
            );
        }
        let tz = match &a.timezone {
            Some(name) => name.parse::<Tz>().map_err(|_| {
                self.err(
                    "agent.timezone",
                    format!("`{name}` is not a time zone name (e.g. Asia/Shanghai, UTC)"),
                )
            }),
            None => Ok(system_zone()),
        };
        if let Some(r) = &a.region_code
            && !(r.len() == 6 && r.bytes().all(|b| b.is_ascii_digit()))
        {
            self.err(
                "agent.region_code",
                format!("`{r}` is not a 6-digit region code"),
            );
        }
        if let Some(d) = &a.department_code
            && (d.is_empty() || !d.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            self.err(
                "agent.department_code",
                format!("`{d}` is not a department code (letters, digits and `-`)"),
            );
        }
        let ledger_retention = self.duration(
            "agent.ledger_retention",
            a.ledger_retention.as_deref(),
            Duration::from_secs(90 * 86_400),
        );
        let reject_retention = self.duration(
            "agent.reject_retention",
            a.reject_retention.as_deref(),
            Duration::from_secs(30 * 86_400),
        );
        let purge_every = self.duration(
            "agent.purge_every",
            a.purge_every.as_deref(),
            Duration::from_secs(86_400),
        );
        if purge_every < Duration::from_secs(60) {
            self.err("agent.purge_every", "must be at least 1m");
        }
        let narrow_reject_copy = match a.reject_row_copy.as_deref() {
            None | Some("full") => false,
            Some("key_and_failing") => true,
            Some(other) => {
                self.err(
                    "agent.reject_row_copy",
                    format!("`{other}` is not full or key_and_failing"),
                );
                false
            }
        };
        let metrics_token = a.metrics_token.as_deref().and_then(|t| {
            secret::resolve(t, self.base, self.env)
                .map_err(|e| self.err("agent.metrics_token", e))
                .ok()
                .map(|t| crate::secret::Secret::new(t.trim().to_owned()))
        });
        let state_cipher = self.state_cipher(&a);
        let retry_max = self.duration(
            "agent.retry_max",
            a.retry_max.as_deref(),
            Duration::from_secs(10),
        );
        if retry_max < Duration::from_secs(1) {
            self.err("agent.retry_max", "must be at least 1s");
        }
        let stop_timeout = self.duration(
            "agent.stop_timeout",
            a.stop_timeout.as_deref(),
            Duration::from_secs(30),
        );
        let reject_alert = a.reject_alert.unwrap_or(0.05);
        if !(0.0..=1.0).contains(&reject_alert) {
            self.err(
                "agent.reject_alert",
                "must be a share between 0 and 1 (e.g. 0.05)",
            );
        }
        let metrics = match &a.metrics {
            // A port alone listens on loopback.
            Some(m) => m
                .parse::<u16>()
                .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p)))
                .or_else(|_| m.parse::<std::net::SocketAddr>())
                .map_err(|_| {
                    self.err(
                        "agent.metrics",
                        format!("`{m}` is not an address: write host:port, e.g. 127.0.0.1:9187, or a port alone for loopback"),
                    )
                })
                .ok(),
            None => None,
        };
        let log_format = match a.log_format.as_deref() {
            None | Some("auto") => LogFormat::Auto,
            Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(f) => {
                self.err(
                    "agent.log_format",
                    format!("`{f}` is not auto, text or json"),
                );
                LogFormat::Auto
            }
        };
        let patrol = self.duration("agent.patrol", a.patrol.as_deref(), Duration::from_secs(60));
        if patrol < Duration::from_secs(1) {
            self.err("agent.patrol", "must be at least 1s");
        }
        let unhealthy_after = self.duration(
            "agent.unhealthy_after",
            a.unhealthy_after.as_deref(),
            Duration::from_secs(600),
        );
        let (console, console_session, console_users) = self.console(&mut a);
        let (at_risk_margin, alert_repeat) = self.alert_timing(&a);
        let state_dir = self.base.join(
            a.state_dir
                .unwrap_or_else(|| PathBuf::from("/var/lib/frontdb-agent")),
        );
        Some(Agent {
            id: a.id,
            state_dir,
            tz: tz.ok()?,
            region_code: a.region_code,
            department_code: a.department_code,
            ledger_retention,
            reject_retention,
            purge_every,
            narrow_reject_copy,
            retry_max,
            stop_timeout,
            reject_alert,
            metrics,
            metrics_token,
            state_cipher,
            log_format,
            patrol,
            unhealthy_after,
            console,
            console_session,
            console_users,
            at_risk_margin,
            alert_repeat,
        })
    }

    /// `state_cipher` with its keys.
    fn state_cipher(&mut self, a: &super::schema::RawAgent) -> Option<crate::cipher::Cipher> {
        use crate::cipher::{Algorithm, Cipher, Key};
        let name = a.state_cipher.as_deref()?;
        let Some(alg) = Algorithm::parse(name) else {
            self.err(
                "agent.state_cipher",
                format!("`{name}` is not a cipher: use aes-256-gcm or sm4-gcm"),
            );
            return None;
        };
        let mut key = |path: &str, raw: Option<&str>| -> Option<Key> {
            let text = secret::resolve(raw?, self.base, self.env)
                .map_err(|e| self.err(path, e))
                .ok()?;
            Key::from_hex(alg, &text)
                .map_err(|e| self.err(path, e))
                .ok()
        };
        let current = key("agent.state_key", a.state_key.as_deref());
        let previous = key("agent.state_key_previous", a.state_key_previous.as_deref());
        if a.state_key.is_none() {
            self.err(
                "agent.state_key",
                "state_cipher needs a state_key (\"${file:...}\")",
            );
        }
        Some(Cipher {
            current: current?,
            previous,
        })
    }

    fn database(&mut self, section: &str, c: RawConn<'_>) -> Option<DbConfig> {
        let scheme = c.url.split(':').next().unwrap_or("");
        let engine = match scheme {
            "postgres" | "postgresql" => Some(EngineKind::Postgres),
            "mysql" | "mariadb" => Some(EngineKind::MySql),
            "sqlite" => Some(EngineKind::Sqlite),
            "mssql" | "sqlserver" => Some(EngineKind::MsSql),
            "oracle" => Some(EngineKind::Oracle),
            "odbc" => Some(EngineKind::Odbc),
            _ => {
                self.err(
                    format!("{section}.url"),
                    format!(
                        "`{scheme}` is not a supported database: use postgres://, mysql://, \
                         sqlite://, mssql://, oracle:// or odbc://"
                    ),
                );
                None
            }
        };
        let redacted = match engine {
            Some(EngineKind::Odbc) => crate::db::urls::odbc_redacted(c.url),
            _ => secret::redact_url(c.url),
        };
        let url = secret::resolve(c.url, self.base, self.env)
            .map_err(|e| self.err(format!("{section}.url"), e))
            .ok();
        let password = match c.password {
            Some(p) => match secret::resolve(p, self.base, self.env) {
                Ok(p) => Some(Secret::new(p)),
                Err(e) => {
                    self.err(format!("{section}.password"), e);
                    None
                }
            },
            None => None,
        };
        let max_connections = c.max_connections.unwrap_or(4);
        if max_connections == 0 {
            self.err(format!("{section}.max_connections"), "must be at least 1");
        }
        let connect_timeout = self.duration(
            &format!("{section}.connect_timeout"),
            c.connect_timeout,
            Duration::from_secs(10),
        );
        if c.bootstrap_sql.is_some() && engine != Some(EngineKind::Sqlite) {
            self.err(
                format!("{section}.bootstrap_sql"),
                "only SQLite databases can be bootstrapped from a SQL file",
            );
        }
        let transaction_guard = self.duration(
            &format!("{section}.transaction_guard"),
            c.transaction_guard,
            Duration::from_secs(600),
        );
        let statement_timeout = self.duration(
            &format!("{section}.statement_timeout"),
            c.statement_timeout,
            Duration::ZERO,
        );
        let flavor = match c.dialect {
            Some(_) if engine != Some(EngineKind::Odbc) => {
                self.err(
                    format!("{section}.dialect"),
                    "applies to odbc:// databases only (the other engines speak their own SQL)",
                );
                None
            }
            Some(d) => match Flavor::parse(d) {
                Some(f) => Some(f),
                None => {
                    self.err(
                        format!("{section}.dialect"),
                        format!(
                            "`{d}` is not an ODBC dialect: use dm, kingbase, gbase, oracle, \
                             postgres or mysql"
                        ),
                    );
                    None
                }
            },
            None => None,
        };
        let engine = engine?;
        let mut url = url?;
        let pw = password.as_ref().map(|p| p.expose());
        let checked = match engine {
            EngineKind::MsSql => crate::db::urls::mssql(&url, pw).map(drop),
            EngineKind::Oracle => crate::db::urls::oracle(&url, pw).map(drop),
            EngineKind::Odbc => crate::db::urls::odbc(&url, pw).map(drop),
            _ => Ok(()),
        };
        if let Err(e) = checked {
            self.err(format!("{section}.url"), e);
        }
        if engine == EngineKind::Sqlite {
            url = sqlite_url_relative_to(&url, self.base);
        }
        Some(DbConfig {
            engine,
            url: Secret::new(url),
            password,
            max_connections: max_connections.max(1),
            connect_timeout,
            bootstrap_sql: c.bootstrap_sql.map(|p| self.base.join(p)),
            transaction_guard,
            statement_timeout,
            redacted,
            flavor,
        })
    }

    /// The `http` keys have no meaning for a database exchange.
    fn database_only(&mut self, e: &RawExchange) {
        for (key, set) in e.http_keys() {
            if set {
                self.err(
                    format!("exchange.{key}"),
                    "applies to kind = \"http\", not to a database exchange",
                );
            }
        }
    }

    fn exchange(&mut self, e: RawExchange) -> Option<Exchange> {
        let kind = match e.kind.as_deref() {
            None | Some("database") => {
                self.database_only(&e);
                self.not_file(&e, "database");
                Kind::Database
            }
            Some("http") => {
                self.not_file(&e, "http");
                Kind::Http
            }
            Some("soap") => {
                self.not_file(&e, "soap");
                Kind::Soap
            }
            Some("file") => Kind::File,
            Some(k @ "sftp") => {
                self.err(
                    "exchange.kind",
                    format!(
                        "`{k}` is not an exchange kind: an SFTP upload is [exchange.sftp] of kind = \"file\""
                    ),
                );
                Kind::Database
            }
            Some(k) => {
                self.err(
                    "exchange.kind",
                    format!(
                        "`{k}` is not an exchange kind: use `database`, `http`, `soap` or `file`"
                    ),
                );
                Kind::Database
            }
        };
        if e.soap.is_some() && !matches!(kind, Kind::Soap) {
            self.err(
                "exchange.soap",
                "applies to kind = \"soap\" only: set [exchange] kind = \"soap\" or remove it",
            );
        }
        let lower_ops = match e.operation_case.as_deref() {
            None | Some("upper") => false,
            Some("lower") => true,
            Some(o) => {
                self.err(
                    "exchange.operation_case",
                    format!("`{o}` is not `upper` or `lower`"),
                );
                false
            }
        };
        let cc = &e.control_columns;
        let mut col = |key: &str, v: &Option<String>, default: &str| {
            self.ident(
                &format!("exchange.control_columns.{key}"),
                v.as_deref().unwrap_or(default),
            )
        };
        let control = (
            col("operation", &cc.operation, "cd_operation"),
            col("time", &cc.time, "cd_time"),
            col("batch", &cc.batch, "cd_batch"),
            col("source", &cc.source, "cd_source"),
        );
        let target = match kind {
            Kind::Http => self
                .http_exchange(&e, "http")
                .map(|h| ExchangeTarget::Http(Box::new(h))),
            Kind::Soap => self
                .soap_exchange(&e)
                .map(|s| ExchangeTarget::Soap(Box::new(s))),
            Kind::File => self
                .file_exchange(&e)
                .map(|f| ExchangeTarget::File(Box::new(f))),
            Kind::Database => {
                if e.url.is_none() {
                    self.err("exchange.url", "is required: the exchange database's URL");
                }
                self.database(
                    "exchange",
                    RawConn {
                        url: e.url.as_deref().unwrap_or_default(),
                        password: e.password.as_deref(),
                        max_connections: e.max_connections,
                        connect_timeout: e.connect_timeout.as_deref(),
                        bootstrap_sql: e.bootstrap_sql.as_deref(),
                        // Read only for `down` tables: the province's transactions there.
                        transaction_guard: e.transaction_guard.as_deref(),
                        statement_timeout: Some(e.statement_timeout.as_deref().unwrap_or("5m")),
                        dialect: e.dialect.as_deref(),
                    },
                )
                .map(ExchangeTarget::Database)
            }
        };
        let (Some(operation), Some(time), Some(batch), Some(source)) = control else {
            return None;
        };
        Some(Exchange {
            target: target?,
            control: ControlColumns {
                operation,
                time,
                batch,
                source,
            },
            lower_ops,
        })
    }
}

/// The exchange kinds, as validation tells them apart.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Database,
    Http,
    Soap,
    File,
}

/// The system's time zone, or UTC when it cannot be determined.
fn system_zone() -> Tz {
    iana_time_zone::get_timezone()
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(chrono_tz::UTC)
}

/// Make the path of a `sqlite://` URL relative to the configuration file's directory.
fn sqlite_url_relative_to(url: &str, base: &Path) -> String {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path.is_empty() || path == ":memory:" || Path::new(path).is_absolute() {
        return url.to_owned();
    }
    let abs = base.join(path);
    match query {
        Some(q) => format!("sqlite://{}?{q}", abs.display()),
        None => format!("sqlite://{}", abs.display()),
    }
}

pub fn validate(
    raw: RawConfig,
    file: &Path,
    base: &Path,
    lines: &Lines,
    env: secret::EnvLookup,
) -> Result<Config, Vec<Problem>> {
    let mut v = V {
        problems: Vec::new(),
        lines,
        base,
        env,
        source_engine: None,
    };
    let file_kind = raw.exchange.kind.as_deref() == Some("file");
    if file_kind && raw.agent.region_code.is_none() {
        v.err(
            "agent.region_code",
            "is required by [exchange] kind = \"file\": every file name carries it (6 digits)",
        );
    }
    let agent = v.agent(raw.agent);
    let s = &raw.source;
    let source = v.database(
        "source",
        RawConn {
            url: &s.url,
            password: s.password.as_deref(),
            max_connections: s.max_connections,
            connect_timeout: s.connect_timeout.as_deref(),
            bootstrap_sql: s.bootstrap_sql.as_deref(),
            transaction_guard: s.transaction_guard.as_deref(),
            statement_timeout: None,
            dialect: s.dialect.as_deref(),
        },
    );
    v.source_engine = source.as_ref().map(|s| s.engine);
    let exchange = v.exchange(raw.exchange);
    let feedback = v.feedback(raw.feedback);
    if let (Some(e), Some(f)) = (&exchange, &feedback) {
        use super::FeedbackKind as K;
        match (e.db().is_some(), f.kind) {
            (_, K::None) => {}
            (false, _) if file_kind => v.err(
                "feedback.kind",
                "a file exchange's verdicts come back as error files in exchange.return_dir: use none",
            ),
            (true, K::Table | K::ErrorTable | K::Flag) => {}
            (false, K::Http) if matches!(e.target, ExchangeTarget::Http(_)) => {}
            (false, K::Http) if matches!(e.target, ExchangeTarget::Soap(_)) => v.err(
                "feedback.kind",
                "`http` reads the feedback feed of an http exchange; a soap exchange's \
                 rejections come in its answers: use none",
            ),
            (false, _) => v.err(
                "feedback.kind",
                "reads the exchange database, and the exchange is reached over http: use http or none",
            ),
            (true, K::Http) => v.err(
                "feedback.kind",
                "`http` reads the feedback of an http exchange: set [exchange] kind = \"http\"",
            ),
        }
    }
    if raw.tables.is_empty() {
        v.err(
            "table",
            "no [[table]] is configured: there is nothing to exchange",
        );
    }
    let resync = v.resync(raw.resync);
    let alerts = super::alert::validate(&mut v, raw.alert);
    let mut tables = Vec::new();
    let mut places = Vec::new();
    let mut names = HashSet::new();
    for (i, t) in raw.tables.into_iter().enumerate() {
        let name = t.name.clone().unwrap_or_else(|| t.source.clone());
        if !names.insert(name.clone()) {
            v.err(
                format!("table[{i}].name"),
                format!("table name `{name}` is used twice; give one of them a `name`"),
            );
        }
        if file_kind && t.class_code.is_none() && t.enabled != Some(false) {
            v.err(
                format!("table[{i}].class_code"),
                "is required by [exchange] kind = \"file\": the resource classification code \
                 (5 letters or digits) that begins the names of the table's files",
            );
        }
        if let Some(spec) = v.table(i, t) {
            tables.push(spec);
            places.push(i);
        }
    }
    if let (Some(e), Some(r)) = (&exchange, &resync) {
        let indexed: Vec<(usize, &TableSpec)> = places.iter().copied().zip(&tables).collect();
        v.directions_fit(&e.target, r, &indexed);
    }
    // A listener keeps one of the source's connections for as long as the agent runs.
    if let (Some(s), Some(t)) = (&source, tables.iter().find(|t| t.notify.is_some()))
        && s.max_connections < 2
    {
        v.err(
            "source.max_connections",
            format!(
                "must be at least 2: table {} listens for notifications, which keeps one \
                 connection, and its rows are read over another",
                t.name
            ),
        );
    }
    match (agent, source, exchange, feedback, resync) {
        (Some(agent), Some(source), Some(exchange), Some(feedback), Some(resync))
            if v.problems.is_empty() =>
        {
            Ok(Config {
                file: file.to_owned(),
                agent,
                source,
                exchange,
                feedback,
                tables,
                resync,
                alerts,
            })
        }
        _ => Err(v.problems),
    }
}
