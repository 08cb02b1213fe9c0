//! The TOML file as written by the integration team: every key, its meaning and its default.
//!
//! These structs only describe the file's shape; `validate` turns them into the
//! typed [`super::Config`] and reports every problem at once, each with its key and line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// This agent: identity, state directory, time zone.
    pub agent: RawAgent,
    /// The department's front-end database, where the business system writes.
    pub source: RawDatabase,
    /// Where increments are delivered.
    pub exchange: RawExchange,
    /// Where the province's rejections come back from. Default: none.
    pub feedback: Option<RawFeedback>,
    /// One entry per exchanged table (`[[table]]`).
    #[serde(default, rename = "table")]
    pub tables: Vec<RawTable>,
    /// How the province is told of a full resync, and how its batches are marked. Default:
    /// not told, not marked.
    pub resync: Option<RawResync>,
    /// Where alerts are sent (`[[alert]]`). Default: nowhere.
    #[serde(default)]
    pub alert: Vec<RawAlert>,
}

/// `[agent]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    /// Department id, prefix of every batch id: letters, digits, `-` and `_`. Required.
    pub id: String,
    /// Directory of the state store (watermarks, batch ledger). Default `/var/lib/frontdb-agent`.
    /// A relative path is relative to the configuration file.
    pub state_dir: Option<PathBuf>,
    /// Time zone of date-times stored without a zone in the databases (IANA name such as
    /// `Asia/Shanghai`), also used for daily and weekly schedules. Default: the system's zone.
    pub timezone: Option<String>,
    /// GB/T 2260 region code (6 digits); with `department_code` it fills the source control
    /// column at the exchange.
    pub region_code: Option<String>,
    /// Department code; with `region_code` it fills the source control column.
    pub department_code: Option<String>,
    /// How long acknowledged batches stay in the ledger. Default `90d`.
    pub ledger_retention: Option<String>,
    /// How long a cleared reject (its row copy and history) is kept after it was cleared.
    /// Default `30d`.
    pub reject_retention: Option<String>,
    /// What a reject keeps of its row: `full` (every column read) or `key_and_failing` (the
    /// key and the columns its reasons name). Default `full`.
    pub reject_row_copy: Option<String>,
    /// How often `run` purges what its retention no longer keeps. Default `1d`.
    pub purge_every: Option<String>,
    /// Longest wait between two attempts while a database is unreachable (attempts start
    /// at 1 s and double, with jitter). Default `10s`.
    pub retry_max: Option<String>,
    /// After SIGTERM/SIGINT, how long the batch in flight may take before the agent exits
    /// anyway (the batch is then sent again on the next start). Default `30s`.
    pub stop_timeout: Option<String>,
    /// A cycle in which more than this share of the rows is rejected is reported in the log
    /// and in `status`. Default 0.05.
    pub reject_alert: Option<f64>,
    /// Address of the Prometheus `/metrics` and `/healthz` endpoint, e.g. `127.0.0.1:9187`.
    /// Default: none (no endpoint).
    pub metrics: Option<String>,
    /// Encrypt the row values the state store keeps (reject copies, their reasons and
    /// history): `aes-256-gcm` or `sm4-gcm`. Default: none.
    pub state_cipher: Option<String>,
    /// The key of `state_cipher`, as hex digits (`${file:...}`). Required with it.
    pub state_key: Option<String>,
    /// While rotating: the key the store was encrypted with before; values are encrypted
    /// again with `state_key` when `run` or `once` starts.
    pub state_key_previous: Option<String>,
    /// Bearer token `/metrics` asks for (`${file:...}` or `${env:...}`); `/healthz` is
    /// always open. Default: none.
    pub metrics_token: Option<String>,
    /// `auto` (JSON under systemd, text on a terminal), `text` or `json`. Default `auto`.
    pub log_format: Option<String>,
    /// How often the daemon checks that the source, the exchange and the feedback table answer.
    /// Default `1m`.
    pub patrol: Option<String>,
    /// `/healthz` says unhealthy when the exchange has been unreachable, or a table has been
    /// failing, for longer than this. Default `10m`.
    pub unhealthy_after: Option<String>,
    /// A table of a data category is at risk when less than this is left before the latest
    /// moment its next successful exchange must happen. Default `2h`.
    pub at_risk_margin: Option<String>,
    /// An alert still open is sent again after this long (`[[alert]]`). Default `4h`.
    pub alert_repeat: Option<String>,
    /// Address of the web console for department staff, e.g. `127.0.0.1:9188` (a port alone
    /// listens on loopback). Default: none (no console).
    pub console: Option<String>,
    /// A console session ends after this long without a request. Default `30m`.
    pub console_session: Option<String>,
    /// Who may sign in to the console (`[[agent.console_user]]`).
    #[serde(default)]
    pub console_user: Vec<RawConsoleUser>,
}

/// `[[agent.console_user]]`: one person (or script) allowed into the console.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsoleUser {
    /// The name signed in with, and recorded in the audit trail. Required.
    pub name: String,
    /// The password as an argon2 hash in PHC form (`$argon2id$v=19$...`).
    pub password_hash: Option<String>,
    /// A token (`${file:...}`): `Authorization: Bearer <token>` on `/api/*`, or typed as the
    /// password on the sign-in page.
    pub token: Option<String>,
    /// `viewer` (reads) or `operator` (also resubmits and resyncs). Default `viewer`.
    pub role: Option<String>,
}

/// `[feedback]`: how the province's rejections come back.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeedback {
    /// `none` (default), `table` (a rejection table), `error_table` (`dn_*_error` tables, one per
    /// exchanged table: see `feedback_table`) or `flag` (a status flag and error text in the
    /// exchange rows themselves).
    pub kind: Option<String>,
    /// How often the feedback is read (by `run`; `once` reads it after its cycles). Default
    /// `every:5m`.
    pub schedule: Option<String>,
    /// A resubmitted row with no new rejection for this long is cleared. Default `1d`.
    pub confirm: Option<String>,
    /// `table`: the rejection table, in the exchange database. Default `exchange_reject`.
    pub table: Option<String>,
    /// `table`: names of its columns.
    #[serde(default)]
    pub columns: RawFeedbackColumns,
    /// `error_table` and `flag`: the column with the reason. Defaults `error_remark` and
    /// `sync_error_desc`.
    pub error_column: Option<String>,
    /// `error_table`: the column read incrementally. Default `cd_time`.
    pub time_column: Option<String>,
    /// `flag`: the status column of the exchange rows. Default `sync_sign`.
    pub flag_column: Option<String>,
    /// `flag`: the value the province sets on a rejected row. Default 9.
    pub failed: Option<toml::Value>,
    /// `flag`: the value written with every row sent, so the province checks it. Default 0.
    pub pending: Option<toml::Value>,
    /// A table of the front-end database that mirrors the rejects for the business system
    /// (DDL: `sql/*/rejects_mirror.sql`). Optional.
    pub mirror_table: Option<String>,
    /// `http`: the feedback endpoint, asked with `GET url?<cursor_param>=<cursor>` and the
    /// exchange's credentials. Required for `http`.
    pub url: Option<String>,
    /// `http`: JSON pointer of the list of rejections in the answer. Default `/items`.
    pub items: Option<String>,
    /// `http`: JSON pointer of the cursor to ask after next. Default `/next`.
    pub next: Option<String>,
    /// `http`: the query parameter that carries the cursor. Default `after`.
    pub cursor_param: Option<String>,
    /// `table`, `error_table`: the database the province writes its rejections into:
    /// `exchange` (default) or `source` (the department's front-end database).
    pub database: Option<String>,
}

/// `[feedback.columns]`: the rejection table's column names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeedbackColumns {
    /// Increasing id: the feedback watermark. Default `id`.
    pub id: Option<String>,
    /// The exchange table of the rejected record. Default `table_name`.
    pub table_name: Option<String>,
    /// Key values joined by `|` in key order. Default `record_key`.
    pub record_key: Option<String>,
    /// The batch that carried the record. Default `batch_id`.
    pub batch_id: Option<String>,
    /// Default `error_code`.
    pub error_code: Option<String>,
    /// Default `error_message`.
    pub error_message: Option<String>,
    /// Default `rejected_at`.
    pub rejected_at: Option<String>,
}

/// One quality rule of `rules = [...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Shown with every failure. Default `R<n>`, n its place in the list from 1.
    pub id: Option<String>,
    /// `required`, `max_length`, `regex`, `codeset`, `uscc`, `id_number`,
    /// `uscc_or_id_number`, `region`, `date` or `compare`. Required.
    pub check: String,
    /// The source column checked. Required.
    pub column: String,
    /// Text shown with a failure (for the business team, e.g. in Chinese).
    pub message: Option<String>,
    /// `max_length`: most characters.
    pub max: Option<usize>,
    /// `regex`: the pattern (anchor it: `^...$`).
    pub pattern: Option<String>,
    /// `codeset`, `region`: the allowed values.
    pub values: Option<Vec<String>>,
    /// `codeset`, `region`: a file of allowed values, one per line (the first field of a CSV).
    pub file: Option<PathBuf>,
    /// `codeset`: a table of the front-end database holding the codes.
    pub table: Option<String>,
    /// `codeset` with `table`: the column of codes. Default `code`.
    pub code_column: Option<String>,
    /// `date`: refuse dates after today. Default true.
    pub not_future: Option<bool>,
    /// `date`: refuse dates before this one (`YYYY-MM-DD`).
    pub not_before: Option<String>,
    /// `compare`: `<`, `<=`, `=`, `!=`, `>=` or `>`.
    pub op: Option<String>,
    /// `compare`: the other source column.
    pub other: Option<String>,
    /// `block` (default): a failing row is quarantined and not sent. `warn`: the row is sent,
    /// and the finding is logged and reported in `status` (the province's data centre is the
    /// final judge, DB23/T 2835 7.3.3.2).
    pub severity: Option<String>,
}

/// `[source]` — a database connection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    /// `postgres://`, `mysql://` (also MariaDB), `sqlite://`. `${env:NAME}` and `${file:PATH}`
    /// are replaced; a password written in the URL is never printed. Required.
    pub url: String,
    /// Password, usually `${env:NAME}` or `${file:/etc/frontdb-agent/source.pw}`; overrides
    /// the URL's. Never printed.
    pub password: Option<String>,
    /// Most connections the agent opens to this database. Default 4.
    pub max_connections: Option<u32>,
    /// How long to wait for a connection. Default `10s`.
    pub connect_timeout: Option<String>,
    /// SQLite only: a SQL file run once when the database file does not exist yet (embedded
    /// demos and tests). Relative to the configuration file.
    pub bootstrap_sql: Option<PathBuf>,
    /// PostgreSQL and MySQL/MariaDB: how long a transaction still open on the source may hold
    /// the committed watermark back (rows it commits later are then not missed, however
    /// long it ran). `0s` turns this off. Default `10m`.
    pub transaction_guard: Option<String>,
    /// `odbc://` only: the SQL the engine behind the driver speaks: `dm`, `kingbase`,
    /// `gbase`, `oracle`, `postgres` or `mysql`. Default: told from the driver's DBMS name.
    pub dialect: Option<String>,
}

/// `[exchange]` — the provincial exchange.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExchange {
    /// `database` (an exchange database), `http` (JSON batches posted to an interface) or
    /// `soap` (a WebService operation), `file` (a file per batch in a directory).
    /// Default `database`.
    pub kind: Option<String>,
    /// Database URL of the exchange, as in `[source]`; for `http`, the URL batches are
    /// posted to, where `{table}` stands for the exchange table's name. Required, except
    /// for `file`.
    pub url: Option<String>,
    /// `file`: the directory each batch's file and manifest are written to (local or
    /// mounted). Required for `file`.
    pub dir: Option<PathBuf>,
    /// `file`: `csv` (RFC 4180 with a header row, default) or `jsonl`.
    pub format: Option<String>,
    /// `file`: `utf-8` (default) or `gb18030`, for the files written and the error files read.
    pub encoding: Option<String>,
    /// `file`: also upload every file and manifest over SFTP.
    pub sftp: Option<RawSftp>,
    /// `file`: the directory where the platform puts its error files. Default: none.
    pub return_dir: Option<PathBuf>,
    /// `file`: `csv` (default), `json` or `jsonl`: how the error files are written.
    pub return_format: Option<String>,
    /// `http`: how long one request may take before it is given up and tried again later.
    /// Default `30s`.
    pub timeout: Option<String>,
    /// `http`: send request bodies gzip-compressed (`Content-Encoding: gzip`). Default false.
    pub gzip: Option<bool>,
    /// `http`: a PEM file of the certificate authorities trusted besides the system's.
    pub ca_file: Option<PathBuf>,
    /// `http`: a PEM client certificate (with `client_key`) for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// `http`: the PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// `http`: most records in one request; a larger batch goes in several. Default: the
    /// whole batch in one request.
    pub max_records: Option<usize>,
    /// `http`: how requests prove who sends them.
    pub auth: Option<RawHttpAuth>,
    /// `http`: a province's own body and answer, configured over the built-in envelope.
    pub envelope: Option<RawEnvelope>,
    /// `soap`: the WebService's version, namespace, operation, payload and answer.
    pub soap: Option<RawSoap>,
    /// Password of the exchange database; never printed.
    pub password: Option<String>,
    /// Most connections to the exchange. Default 4.
    pub max_connections: Option<u32>,
    /// How long to wait for a connection. Default `10s`.
    pub connect_timeout: Option<String>,
    /// SQLite only: SQL run once when the exchange database file is created.
    pub bootstrap_sql: Option<PathBuf>,
    /// How long one write may run at the exchange (a lock held by someone else, an
    /// overloaded server, a connection gone silent) before it is cancelled and the batch
    /// is tried again later, as in an outage. `0s` waits forever. Default `5m`.
    pub statement_timeout: Option<String>,
    /// How long a transaction still open at the exchange database may hold back the
    /// watermark of a `down` table (read there). Default `10m`.
    pub transaction_guard: Option<String>,
    /// `odbc://` exchange databases: the engine's SQL dialect, as in `[source]`.
    pub dialect: Option<String>,
    /// Names of the control columns the agent fills when an exchange table has them.
    #[serde(default)]
    pub control_columns: RawControlColumns,
    /// Case of the operation letters written to the operation column: `upper` (`I`/`U`/`D`,
    /// default) or `lower`.
    pub operation_case: Option<String>,
}

impl RawExchange {
    /// The keys of a database exchange (besides `url`), each with whether it is set.
    pub fn database_keys(&self) -> [(&'static str, bool); 7] {
        [
            ("password", self.password.is_some()),
            ("dialect", self.dialect.is_some()),
            ("max_connections", self.max_connections.is_some()),
            ("connect_timeout", self.connect_timeout.is_some()),
            ("bootstrap_sql", self.bootstrap_sql.is_some()),
            ("statement_timeout", self.statement_timeout.is_some()),
            ("transaction_guard", self.transaction_guard.is_some()),
        ]
    }

    /// The keys of an http exchange (besides `url`), each with whether it is set.
    pub fn http_keys(&self) -> [(&'static str, bool); 8] {
        [
            ("timeout", self.timeout.is_some()),
            ("gzip", self.gzip.is_some()),
            ("ca_file", self.ca_file.is_some()),
            ("client_cert", self.client_cert.is_some()),
            ("client_key", self.client_key.is_some()),
            ("max_records", self.max_records.is_some()),
            ("auth", self.auth.is_some()),
            ("envelope", self.envelope.is_some()),
        ]
    }
}

/// `[exchange.sftp]`: the files are also uploaded to an SFTP server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSftp {
    /// The server's host name or address. Required.
    pub host: String,
    /// Its port. Default 22.
    pub port: Option<u16>,
    /// The user logged in as. Required.
    pub user: String,
    /// The private key file (OpenSSH format, without a passphrase). Required.
    pub key_file: PathBuf,
    /// The directory on the server the files go to. Required.
    pub remote_dir: String,
    /// A `known_hosts` file holding the server's host key (it is always checked). Default:
    /// the service user's `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// How long one upload may take before it is given up and tried again. Default `2m`.
    pub timeout: Option<String>,
}

/// `[exchange.auth]`: how requests to an `http` exchange are authenticated.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpAuth {
    /// `none` (default), `basic`, `bearer`, `login`, `md5`, `sha1`, `hmac-sha256` or
    /// `hmac-sm3`.
    pub kind: Option<String>,
    /// The application key (user name for `basic`); `${env:..}`/`${file:..}` capable.
    pub app_key: Option<String>,
    /// The application secret (password for `basic`, the token for `bearer`, the key of
    /// the signatures); `${env:..}`/`${file:..}` capable, never printed.
    pub app_secret: Option<String>,
    /// `login`: the URL credentials are posted to. Required for `login`.
    pub login_url: Option<String>,
    /// `login`: the field names of the key and the secret in the login request. Defaults
    /// `app_key`, `app_secret`.
    pub login_key_field: Option<String>,
    pub login_secret_field: Option<String>,
    /// `login`: JSON pointer of the token in the login answer. Default `/token`.
    pub token_pointer: Option<String>,
    /// `login`: JSON pointer of the token's lifetime in seconds in the login answer.
    /// Default `/expires_in`; when the answer has none, `token_ttl` applies.
    pub expires_pointer: Option<String>,
    /// `login`: how long a token lives when the answer does not say. Default `15m`.
    pub token_ttl: Option<String>,
    /// `login`: the request header that carries the token. Default `Authorization`.
    pub token_header: Option<String>,
    /// `login`: text before the token in that header. Default `Bearer ` (with its space).
    pub token_prefix: Option<String>,
}

/// `[exchange.envelope]`: where things go in a province's own request body, and how its
/// answer says success. Every key defaults to the built-in envelope.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvelope {
    /// JSON pointer where the records go in the body. Default `/records`.
    pub records: Option<String>,
    /// What a record is: `built-in` (`op`, `key`, `values`) or `values` (the values
    /// alone). Default `built-in`.
    pub record: Option<String>,
    /// Constant fields of the body, e.g. `{ service = "DongBoHoSoMC", isUpdating = true }`.
    #[serde(default)]
    pub fields: BTreeMap<String, toml::Value>,
    /// Field names of the agent id, exchange table, batch id and batch number in the
    /// body; an empty name leaves it out. Defaults `agent`, `table`, `batch`, `cd_batch`
    /// for the built-in record, none otherwise.
    pub agent_field: Option<String>,
    pub table_field: Option<String>,
    pub batch_field: Option<String>,
    pub cd_batch_field: Option<String>,
    /// A login token travels in the body under this field instead of a header.
    pub token_field: Option<String>,
    /// JSON pointer of the answer's result code. Default `/code`.
    pub success: Option<String>,
    /// The result code meaning success (compared as text). Default `0`.
    pub success_value: Option<toml::Value>,
    /// JSON pointer of the answer's message. Default `/message`.
    pub message: Option<String>,
    /// JSON pointer of the per-record results (`index`, `code`, `message`). Default
    /// `/rejected`.
    pub rejected: Option<String>,
    /// chrono format of dates. Default `%Y-%m-%d`.
    pub date_format: Option<String>,
    /// chrono format of times. Default RFC 3339 with the offset.
    pub time_format: Option<String>,
    /// IANA zone times are written in. Default `[agent] timezone`.
    pub timezone: Option<String>,
    /// Text columns that hold JSON, sent as JSON (lists of documents, fees).
    #[serde(default)]
    pub json_columns: Vec<String>,
}

/// `[exchange.control_columns]`: a column that the exchange table lacks is simply not filled.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControlColumns {
    /// Operation `I`/`U`/`D`. Default `cd_operation`.
    pub operation: Option<String>,
    /// Exchange time. Default `cd_time`.
    pub time: Option<String>,
    /// Batch number `yyyyMMdd` + 5-digit counter of the day. Default `cd_batch`.
    pub batch: Option<String>,
    /// Region code + department code. Default `cd_source`.
    pub source: Option<String>,
}

/// `[[table]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    /// Name used by `--table`, `status` and the state store. Default: `source`.
    pub name: Option<String>,
    /// Source table, optionally `schema.table`. Required.
    pub source: String,
    /// Exchange table. Default: same as `source`.
    pub target: Option<String>,
    /// Key columns (source names). Default: the source table's primary key.
    pub key: Option<Vec<String>>,
    /// How changes are found. Required.
    pub watermark: RawWatermark,
    /// When the table is exchanged: `realtime`, `realtime@2s`, `every:30s`, `hourly`,
    /// `hourly@15`, `daily`, `daily@01:30`, `weekly`, `weekly@sun 03:00`, or
    /// `cron:<sec> <min> <hour> <day> <month> <weekday>`. Default `every:5m`.
    pub schedule: Option<String>,
    /// Calendar schedules (hourly, daily, weekly, cron): each run starts up to this much
    /// later, at random, so that many departments do not reach the province in the same
    /// second. Default `0s`.
    pub jitter: Option<String>,
    /// PostgreSQL sources: a LISTEN channel; a NOTIFY on it runs the table at once, between
    /// its scheduled runs (see `sql/postgres/notify.sql`).
    pub notify: Option<String>,
    /// Data category of DB23/T 2835-2021: a schedule rarer than the standard's minimum for
    /// it is refused.
    pub category: Option<String>,
    /// Rows per batch. Default 5000.
    pub batch_size: Option<usize>,
    /// Most bytes of row values per batch (approximate). Default 16777216 (16 MiB).
    pub batch_bytes: Option<usize>,
    /// Source columns to exchange. Default: every column of the source table.
    pub columns: Option<Vec<String>>,
    /// Source column = exchange column, for columns named differently at the exchange.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Exchange column = constant value (text, integer, float or boolean).
    #[serde(default)]
    pub constants: BTreeMap<String, toml::Value>,
    /// What a delete becomes at the exchange: `delete` (the row is removed, default) or
    /// `tombstone` (the row is kept with operation `D`; needs the operation column).
    pub deletes: Option<String>,
    /// Exchange column that decides which version of a row is newer (a stored row is never
    /// replaced by an older one). Default: the exchange column of the watermark's time column.
    pub version_column: Option<String>,
    /// `false` keeps the table in the file but does not exchange it. Default `true`.
    pub enabled: Option<bool>,
    /// `/healthz` says unhealthy when this table's lag (now minus the newest change
    /// exchanged) exceeds this. Default: none.
    pub max_lag: Option<String>,
    /// Quality rules checked on every row before it is sent. Default: none.
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// Source column = how its local codes become the standard's. Default: none.
    #[serde(default)]
    pub translate: BTreeMap<String, RawTranslate>,
    /// `[feedback] kind = "error_table"`: the province's error table for this table
    /// (`dn_..._error`), in the exchange database.
    pub feedback_table: Option<String>,
    /// `up` (default): read at the front-end database, written to the exchange. `down`:
    /// read at the exchange database (`source` names the exchange table), written to the
    /// front-end database (`target` names the front-end table).
    pub direction: Option<String>,
    /// `down`: a column of the front-end table set on every row that arrives, so that the
    /// business system sees it is new, e.g. `{ column = "sync_flag", value = 0 }`.
    pub arrival_flag: Option<RawArrivalFlag>,
    /// `down` with an http exchange: the endpoint the table's records are read from.
    pub pull: Option<RawPull>,
    /// `[exchange] kind = "file"` and `export`: the resource classification code (5 letters
    /// or digits) that begins the names of this table's files.
    pub class_code: Option<String>,
    /// Source column = how its values are masked wherever they leave the front-end
    /// database: `{ keep = [first, last] }`, `{ replace = value }`, `{ hash = "sm3" |
    /// "sha256", salt = "${file:..}" }` or `{ null = true }`. Default: none.
    #[serde(default)]
    pub mask: BTreeMap<String, RawMask>,
    /// `unconditional` (default), `conditional` (needs `mask` or `columns`) or `none` (the
    /// table is refused).
    pub sharing: Option<String>,
    /// Only the rows of the department's jurisdiction are read and sent:
    /// `{ column = "region_code", prefix = "2301" }` or `{ column = ..., in = [...] }`.
    pub filter: Option<RawFilter>,
}

/// One column's `mask = { ... }`: exactly one of `keep`, `replace`, `hash`, `null`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMask {
    /// Characters kept at the start and at the end; the others become `*`.
    pub keep: Option<Vec<i64>>,
    /// A fixed value (text, integer, float or boolean).
    pub replace: Option<toml::Value>,
    /// `sm3` or `sha256`: the hex digest of the value.
    pub hash: Option<String>,
    /// `hash`: a secret key (`${env:..}`/`${file:..}`); the hash is then an HMAC.
    pub salt: Option<String>,
    /// `true`: NULL instead of the value.
    pub null: Option<bool>,
}

/// `filter = { column = ..., prefix = ... }` or `{ column = ..., in = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilter {
    /// The source column that says whose the row is. Required.
    pub column: String,
    /// Rows whose column's text begins with this.
    pub prefix: Option<String>,
    /// Rows whose column's value is one of these (texts or integers).
    #[serde(rename = "in")]
    pub values: Option<Vec<toml::Value>>,
}

/// `watermark = { kind = ..., ... }`
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawWatermark {
    /// Append-only tables with an increasing key.
    Key,
    /// Tables with an update-time column.
    Timestamp {
        /// The update-time column. Required.
        column: String,
        /// How far behind the watermark each cycle re-reads, to catch late commits.
        /// Default `5m`.
        lookback: Option<String>,
        /// Rows newer than the database's time minus `lag` wait for a later cycle.
        /// Default `0s`.
        lag: Option<String>,
        /// chrono format of a text time column. Default `%Y-%m-%d %H:%M:%S%.f`.
        format: Option<String>,
    },
    /// Tables with the exchange control columns (operation + time).
    Control {
        /// Time column. Default `cd_time`.
        time: Option<String>,
        /// Operation column (`I`/`U`/`D`, any case). Default `cd_operation`.
        op: Option<String>,
        /// How far behind the watermark each cycle re-reads, to catch late commits.
        /// Default `5m`.
        lookback: Option<String>,
        /// Rows newer than the database's time minus `lag` wait for a later cycle.
        /// Default `0s`.
        lag: Option<String>,
        /// chrono format of a text time column. Default `%Y-%m-%d %H:%M:%S%.f`.
        format: Option<String>,
    },
    /// Tables with an extraction flag column.
    Flag {
        /// The flag column. Required.
        column: String,
        /// Value of rows waiting to be exchanged. Default 0.
        pending: Option<toml::Value>,
        /// Value set after the exchange acknowledged the row. Default 1.
        done: Option<toml::Value>,
        /// Value set for rows that failed. Default 9.
        failed: Option<toml::Value>,
        /// Column that receives the failure reason. Optional.
        error_column: Option<String>,
    },
    /// Small tables without a change column: compared by per-row digests.
    Digest,
}

/// `arrival_flag = { column = "sync_flag", value = 0 }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArrivalFlag {
    /// A column of the front-end table. Required.
    pub column: String,
    /// The value every arriving row gets (integer or text). Default 0.
    pub value: Option<toml::Value>,
}

/// `[resync]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResync {
    /// How the province is told that a full resync starts and ends: `none` (default),
    /// `table` (a row in `notice_table` at the exchange database) or `http` (a POST to
    /// `notice_url` with the exchange's credentials).
    pub notice: Option<String>,
    /// `table`: the notice table in the exchange database. Default `exchange_resync_notice`.
    pub notice_table: Option<String>,
    /// `http`: where the notices are posted.
    pub notice_url: Option<String>,
    /// Database exchange: an exchange column that says whether a row came in a full resync
    /// (`full_value`) or in an increment (`increment_value`). Default: none.
    pub full_column: Option<String>,
    /// HTTP exchange: a body field that says the same of a whole batch. Default: none.
    pub full_field: Option<String>,
    /// Default `full`.
    pub full_value: Option<String>,
    /// Default `increment`.
    pub increment_value: Option<String>,
}

/// `pull = { url = "...", ... }`: a `down` table read from an http exchange, page after page
/// after a cursor.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPull {
    /// Asked with `GET url?<cursor_param>=<cursor>` and the exchange's credentials; `{table}`
    /// stands for the table's `source`. Required.
    pub url: String,
    /// JSON pointer of the list of records (objects of column values). Default `/items`.
    pub items: Option<String>,
    /// JSON pointer of the cursor to ask after next. Default `/next`.
    pub next: Option<String>,
    /// The query parameter that carries the cursor. Default `after`.
    pub cursor_param: Option<String>,
}

/// `[exchange.soap]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSoap {
    /// `1.1` (default: `text/xml` and a `SOAPAction` header) or `1.2`
    /// (`application/soap+xml` with the action as a parameter).
    pub version: Option<String>,
    /// The namespace of the operation and its elements. Required.
    pub namespace: Option<String>,
    /// The operation: the name of the request element in the body. Required.
    pub operation: Option<String>,
    /// The SOAP action. Default: the namespace, `/`, the operation; `""` sends none.
    pub action: Option<String>,
    /// How the records travel: `xml` (elements per record and column, default),
    /// `json-gzip-base64` or `csv-gzip-base64` (one element holding the records as JSON or
    /// CSV, gzip-compressed, then Base64).
    pub payload: Option<String>,
    /// `qualified` (default: every element in the namespace) or `unqualified` (only the
    /// operation element).
    pub elements: Option<String>,
    /// How a NULL travels in XML: `nil` (`xsi:nil="true"`, default) or `absent` (no element).
    pub null: Option<String>,
    /// Element names of the agent id, exchange table, batch id and batch number in the
    /// request; an empty name leaves it out. Defaults `agent`, `table`, `batch`, `cd_batch`.
    pub agent_element: Option<String>,
    pub table_element: Option<String>,
    pub batch_element: Option<String>,
    pub cd_batch_element: Option<String>,
    /// The SOAP header element carrying the batch id (the receiver's idempotency key).
    /// Default `BatchId`; empty: no header.
    pub header_batch_element: Option<String>,
    /// A login token travels in the body under this element instead of an HTTP header.
    pub token_element: Option<String>,
    /// Element names of the record list, a record, its operation, its key and its values.
    /// Defaults `records`, `record`, `op`, `key`, `values`.
    pub records_element: Option<String>,
    pub record_element: Option<String>,
    pub op_element: Option<String>,
    pub key_element: Option<String>,
    pub values_element: Option<String>,
    /// The element holding a GZIP+Base64 payload. Default `payload`.
    pub payload_element: Option<String>,
    /// Path of the result code in the answer, element names below the SOAP body joined by
    /// `/`. Default `<operation>Response/code`.
    pub result_path: Option<String>,
    /// The result code meaning success (compared as text). Default `0`.
    pub success: Option<String>,
    /// Path of the answer's message. Default `<operation>Response/message`.
    pub message_path: Option<String>,
    /// Path of each per-record failure (children `index`, `code`, `message`). Default
    /// `<operation>Response/rejected/record`.
    pub rejected_path: Option<String>,
}

/// One `[[alert]]` target as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlert {
    /// `webhook` (a JSON POST), `wecom` (企业微信 group robot), `dingtalk` (钉钉 group robot)
    /// or `email` (SMTP). Required.
    pub kind: String,
    /// A name for the log. Default: the kind and the target's number.
    pub name: Option<String>,
    /// webhook, wecom, dingtalk: the URL posted to. A robot's URL holds its key, so for
    /// wecom and dingtalk it must be written as `${env:NAME}` or `${file:PATH}`.
    pub url: Option<String>,
    /// webhook: a bearer token sent as `Authorization: Bearer` (`${env:}` or `${file:}`).
    pub token: Option<String>,
    /// dingtalk: the robot's signing secret (加签), `${env:}` or `${file:}`: the URL gets
    /// `timestamp` and `sign` (HMAC-SHA256 of "timestamp\nsecret", base64).
    pub secret: Option<String>,
    /// email: the SMTP server as `host:port` (port default 587).
    pub smtp: Option<String>,
    /// email: `starttls` (default: the connection must be upgraded to TLS before the login
    /// and the message) or `none` (plain text, only for a relay on this machine).
    pub tls: Option<String>,
    /// email: a PEM file with the CA certificate of the SMTP server, trusted besides the
    /// public roots.
    pub ca_file: Option<PathBuf>,
    /// email: the SMTP login. Default: none (no authentication).
    pub user: Option<String>,
    /// email: the SMTP password, `${env:}` or `${file:}`.
    pub password: Option<String>,
    /// email: the sender address. Required for email.
    pub from: Option<String>,
    /// email: the recipients. Required for email.
    #[serde(default)]
    pub to: Vec<String>,
    /// The events sent to this target: `failing`, `at_risk`, `late`, `unreachable`,
    /// `rejects`, `resync`. Default: all of them.
    pub events: Option<Vec<String>>,
}

/// `translate = { column = { ... } }`: one column's local codes and the standard's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTranslate {
    /// Local code = standard code, inline.
    pub map: Option<BTreeMap<String, String>>,
    /// A file of `local,standard` lines (relative to the configuration file).
    pub file: Option<PathBuf>,
    /// A table holding the pairs, read when the table job starts.
    pub table: Option<String>,
    /// `table`: its column of local codes. Default `local_code`.
    pub from: Option<String>,
    /// `table`: its column of standard codes. Default `code`.
    pub to: Option<String>,
    /// `table`: `front` (the front-end database, default) or `exchange` (the exchange
    /// database).
    pub database: Option<String>,
    /// A code the translation does not know: `reject` (default: the row is quarantined) or
    /// `pass` (sent as it is).
    pub unknown: Option<String>,
}
