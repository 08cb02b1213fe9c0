//! The exchanged tables: which agent exchanges them, in which mode, their DDL at both ends,
//! their `[[table]]` configuration, and reading their rows typed for the checker.
//!
//! Every table has the same business columns (`id`, `name` with CJK text, `code`, an exact
//! `amount`, a microsecond `happened`, a nullable `note`) plus the columns of its mode. A row
//! is *bad* when its `code` breaks the quality rule (quarantined by the agent) or its `amount`
//! is negative (refused by the exchange's CHECK constraint).

use anyhow::{Context, Result};
use chrono::NaiveDateTime;
use sqlx::{AssertSqlSafe, MySqlPool, PgPool, Row};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Pg,
    My,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Timestamp,
    Control { tombstone: bool },
    Key,
    Flag,
    Digest,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::Timestamp => "timestamp",
            Mode::Control { tombstone: false } => "control",
            Mode::Control { tombstone: true } => "control+tombstone",
            Mode::Key => "key",
            Mode::Flag => "flag",
            Mode::Digest => "digest",
        }
    }

    /// The change-time column the workload stamps (none for digest tables).
    pub fn time_col(self) -> Option<&'static str> {
        match self {
            Mode::Timestamp | Mode::Flag => Some("updated_at"),
            Mode::Control { .. } => Some("cd_time"),
            Mode::Key => Some("created_at"),
            Mode::Digest => None,
        }
    }

    /// Whether the agent keeps a position (a watermark) for the table.
    pub fn has_watermark(self) -> bool {
        matches!(self, Mode::Timestamp | Mode::Control { .. } | Mode::Key)
    }
}

#[derive(Clone, Debug)]
pub struct Table {
    pub name: String,
    pub mode: Mode,
    /// Exchanged through an interface (HTTP or SOAP, to exchange-sim): a row is bad when its
    /// code breaks the rule or its `happened` is NULL (the sim's rule); a negative amount is
    /// good there.
    pub http: bool,
    /// Exchanged over SOAP: in an XML payload every value is text, so an integer arrives as
    /// its digits (as a JSON number in a JSON payload).
    pub soap: bool,
    /// Exchanged as files: nothing refuses a row there, so a bad row is only one the rule
    /// quarantines.
    pub file: bool,
    /// Sent down (`direction = "down"`): the writers are the province, writing the exchange
    /// database, and the agent delivers to the front-end database; the province's control
    /// columns are its own, so the agent fills none.
    pub down: bool,
}

impl Table {
    /// Whether the row is refused: quarantined by the agent's rule, or refused by the
    /// exchange (the database's CHECK on `amount`, the sim's rule on `happened`).
    pub fn is_bad(&self, r: &Rec) -> bool {
        !code_is_good(&r.code)
            || if self.http {
                r.happened.is_none()
            } else {
                !self.file && r.amount.starts_with('-')
            }
    }
}

/// Where an agent delivers: a database on one of the soak's servers, or the exchange-sim
/// (its REST interface or its WebService).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exchange {
    Db(Engine),
    Http,
    Soap,
    /// Files in a directory (JSON Lines with manifests).
    File,
}

impl Exchange {
    /// An interface (the exchange-sim), not a database.
    pub fn is_sim(self) -> bool {
        matches!(self, Exchange::Http | Exchange::Soap)
    }
}

/// One agent: a source database and an exchange (a database on one of the soak's servers, or
/// the exchange-sim). For a `down` agent `src` is where the writers write (the province's
/// exchange database, which the agent reads) and `ex` the front-end database it writes.
#[derive(Clone, Debug)]
pub struct Pair {
    pub agent: &'static str,
    pub src: Engine,
    pub ex: Exchange,
    pub tables: Vec<Table>,
    pub down: bool,
}

impl Pair {
    pub fn src_db(&self) -> String {
        format!("{}_src", self.agent)
    }
    pub fn ex_db(&self) -> String {
        format!("{}_ex", self.agent)
    }
}

/// PostgreSQL→PostgreSQL, PostgreSQL→MariaDB and MariaDB→PostgreSQL: both engines as source
/// and as exchange, every mode read from each source engine; and PostgreSQL→HTTP (the
/// exchange-sim) with a timestamp, a control and a flag table (the modes an interface that
/// cannot list its keys serves fully: deletes travel as records, the sim's verdicts set the
/// flag), and the same over SOAP (PostgreSQL→the sim's WebService, the payload XML or
/// gzipped JSON by the configuration's variant), and PostgreSQL→files (JSON Lines with
/// manifests, the platform's reading of them checked); and down (`dm`): the province writes
/// a PostgreSQL exchange database, the agent pulls into a MariaDB front-end database. Key and digest tables stay with the databases: a digest table's rows deleted
/// during a resync would stay at an interface (it cannot list what it holds).
pub fn pairs() -> Vec<Pair> {
    let t = |agent: &str, suffix: &str, mode| Table {
        name: format!("{agent}_{suffix}"),
        mode,
        http: agent == "ph" || agent == "ps",
        soap: is_soap_table(&format!("{agent}_")),
        file: agent == "pf",
        down: agent == "dm",
    };
    vec![
        Pair {
            agent: "pp",
            src: Engine::Pg,
            ex: Exchange::Db(Engine::Pg),
            down: false,
            tables: vec![
                t("pp", "ts", Mode::Timestamp),
                t("pp", "ctl", Mode::Control { tombstone: false }),
                t("pp", "key", Mode::Key),
                t("pp", "dig", Mode::Digest),
            ],
        },
        Pair {
            agent: "pm",
            src: Engine::Pg,
            ex: Exchange::Db(Engine::My),
            down: false,
            tables: vec![
                t("pm", "ts", Mode::Timestamp),
                t("pm", "ctl", Mode::Control { tombstone: true }),
                t("pm", "flag", Mode::Flag),
            ],
        },
        Pair {
            agent: "mp",
            src: Engine::My,
            ex: Exchange::Db(Engine::Pg),
            down: false,
            tables: vec![
                t("mp", "ts", Mode::Timestamp),
                t("mp", "ctl", Mode::Control { tombstone: false }),
                t("mp", "flag", Mode::Flag),
                t("mp", "key", Mode::Key),
                t("mp", "dig", Mode::Digest),
            ],
        },
        Pair {
            agent: "ph",
            src: Engine::Pg,
            ex: Exchange::Http,
            down: false,
            tables: vec![
                t("ph", "ts", Mode::Timestamp),
                t("ph", "ctl", Mode::Control { tombstone: false }),
                t("ph", "flag", Mode::Flag),
            ],
        },
        Pair {
            agent: "ps",
            src: Engine::Pg,
            ex: Exchange::Soap,
            down: false,
            tables: vec![
                t("ps", "ts", Mode::Timestamp),
                t("ps", "ctl", Mode::Control { tombstone: false }),
                t("ps", "flag", Mode::Flag),
            ],
        },
        Pair {
            agent: "pf",
            src: Engine::Pg,
            ex: Exchange::File,
            down: false,
            tables: vec![
                t("pf", "ts", Mode::Timestamp),
                t("pf", "ctl", Mode::Control { tombstone: false }),
                t("pf", "flag", Mode::Flag),
                t("pf", "key", Mode::Key),
            ],
        },
        Pair {
            agent: "dm",
            src: Engine::Pg,
            ex: Exchange::Db(Engine::My),
            down: true,
            tables: vec![
                t("dm", "ts", Mode::Timestamp),
                t("dm", "ctl", Mode::Control { tombstone: false }),
                t("dm", "flag", Mode::Flag),
            ],
        },
    ]
}

/// Whether a table is the SOAP agent's (`ps`).
pub fn is_soap_table(name: &str) -> bool {
    name.starts_with("ps_")
}

/// The quality rule of every table: a code of two capitals and four digits.
pub const CODE_RULE: &str = "^[A-Z]{2}[0-9]{4}$";

pub fn code_is_good(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == 6
        && b[..2].iter().all(u8::is_ascii_uppercase)
        && b[2..].iter().all(u8::is_ascii_digit)
}

/// DDL of a table at the source (`exchange = false`) or at the exchange.
pub fn ddl(t: &Table, engine: Engine, exchange: bool) -> Vec<String> {
    let (ts, text, small) = match engine {
        Engine::Pg => ("timestamp(6)", "text", "smallint"),
        Engine::My => ("datetime(6)", "varchar(600)", "tinyint"),
    };
    let name = &t.name;
    let mut cols = vec![
        "id bigint PRIMARY KEY".to_string(),
        format!("name {text} NOT NULL"),
        "code varchar(40) NOT NULL".into(),
        "amount decimal(12,2) NOT NULL".into(),
        format!("happened {ts}"),
        format!("note {text}"),
    ];
    let mut index = None;
    match t.mode {
        Mode::Timestamp => {
            cols.push(format!("updated_at {ts} NOT NULL"));
            index = Some("(updated_at, id)");
        }
        Mode::Control { .. } => {
            cols.push("cd_operation varchar(1) NOT NULL".into());
            cols.push(format!("cd_time {ts} NOT NULL"));
            if exchange {
                cols.push("cd_batch varchar(32)".into());
                cols.push("cd_source varchar(32)".into());
            } else {
                index = Some("(cd_time, id)");
            }
        }
        Mode::Flag => {
            cols.push(format!("updated_at {ts} NOT NULL"));
            if !exchange {
                cols.push(format!("sync_sign {small} NOT NULL DEFAULT 0"));
                cols.push("sync_error_desc varchar(1000)".into());
                index = Some("(sync_sign, id)");
            }
        }
        Mode::Key => cols.push(format!("created_at {ts} NOT NULL")),
        Mode::Digest => {}
    }
    if exchange {
        cols.push(format!("CONSTRAINT {name}_amount_ok CHECK (amount >= 0)"));
    }
    let mut out = vec![format!("CREATE TABLE {name} ({})", cols.join(", "))];
    if let (Some(ix), false) = (index, exchange) {
        out.push(format!("CREATE INDEX {name}_chg ON {name} {ix}"));
    }
    out
}

/// The `[[table]]` entry; `variant` (a SIGHUP reload) changes batch sizes and schedules only,
/// never what a row's fate is.
pub fn config(t: &Table, variant: usize) -> String {
    let batch = [400, 97, 2000][variant % 3];
    let fast = ["realtime@1s", "every:2s", "realtime"][variant % 3];
    let (schedule, wm, extra) = match t.mode {
        Mode::Timestamp => (
            fast,
            "{ kind = \"timestamp\", column = \"updated_at\", lookback = \"2m\" }".to_string(),
            "",
        ),
        Mode::Control { tombstone } => (
            fast,
            "{ kind = \"control\", time = \"cd_time\", op = \"cd_operation\", lookback = \"2m\" }"
                .to_string(),
            if tombstone {
                "deletes = \"tombstone\"\n"
            } else {
                ""
            },
        ),
        Mode::Key => (fast, "{ kind = \"key\" }".to_string(), ""),
        Mode::Flag => (
            fast,
            "{ kind = \"flag\", column = \"sync_sign\", error_column = \"sync_error_desc\" }"
                .to_string(),
            "",
        ),
        Mode::Digest => (
            ["every:3s", "every:5s", "every:2s"][variant % 3],
            "{ kind = \"digest\" }".to_string(),
            "",
        ),
    };
    let class = if t.file {
        format!("class_code = \"{}\"\n", crate::files::class_code(&t.name))
    } else if t.down {
        "direction = \"down\"\n".to_string()
    } else {
        String::new()
    };
    format!(
        "\n[[table]]\nsource = \"{name}\"\nschedule = \"{schedule}\"\nbatch_size = {batch}\n{extra}{class}\
         watermark = {wm}\nrules = [ {{ column = \"code\", check = \"regex\", pattern = \"{CODE_RULE}\" }} ]\n",
        name = t.name,
    )
}

/// One row as the checker sees it, typed.
#[derive(Clone, Debug, PartialEq)]
pub struct Rec {
    pub id: i64,
    pub name: String,
    pub code: String,
    /// Exact decimal text with its two places.
    pub amount: String,
    pub happened: Option<NaiveDateTime>,
    pub note: Option<String>,
    /// The change time (`updated_at`, `cd_time`, `created_at`).
    pub time: Option<NaiveDateTime>,
    /// `cd_operation`, upper-cased.
    pub op: Option<String>,
}

/// What only one side has: the source's extraction flag, the exchange's control columns.
#[derive(Clone, Debug, Default)]
pub struct Extra {
    pub flag: Option<i64>,
    pub flag_error: Option<String>,
    pub cd_batch: Option<String>,
    pub cd_source: Option<String>,
    /// What breaks the envelope's typing in a record the exchange-sim stored.
    pub typing: Vec<String>,
}

impl Rec {
    pub fn is_delete(&self) -> bool {
        self.op.as_deref() == Some("D")
    }
}

fn select(t: &Table, engine: Engine, exchange: bool) -> String {
    let amount = match engine {
        Engine::Pg => "amount::text",
        Engine::My => "CAST(amount AS CHAR)",
    };
    let int = |c: &str| match engine {
        Engine::Pg => format!("{c}::bigint"),
        Engine::My => format!("CAST({c} AS SIGNED)"),
    };
    let mut cols = vec![
        "id".to_string(),
        "name".into(),
        "code".into(),
        amount.into(),
        "happened".into(),
        "note".into(),
    ];
    if let Some(c) = t.mode.time_col() {
        cols.push(c.into());
    }
    match (t.mode, exchange) {
        (Mode::Control { .. }, false) => cols.push("cd_operation".into()),
        (Mode::Control { .. }, true) => {
            cols.extend(["cd_operation".into(), "cd_batch".into(), "cd_source".into()])
        }
        (Mode::Flag, false) => {
            cols.push(int("sync_sign"));
            cols.push("sync_error_desc".into());
        }
        _ => {}
    }
    format!("SELECT {} FROM {} ORDER BY id", cols.join(", "), t.name)
}

macro_rules! decode {
    ($rows:expr, $t:expr, $exchange:expr) => {{
        let mut out = Vec::with_capacity($rows.len());
        for r in &$rows {
            let mut i = 6;
            let mut next = || {
                i += 1;
                i - 1
            };
            let time = if $t.mode.time_col().is_some() {
                r.try_get::<Option<NaiveDateTime>, _>(next())?
            } else {
                None
            };
            let mut extra = Extra::default();
            let mut op = None;
            match ($t.mode, $exchange) {
                (Mode::Control { .. }, false) => {
                    op = r.try_get::<Option<String>, _>(next())?;
                }
                (Mode::Control { .. }, true) => {
                    op = r.try_get::<Option<String>, _>(next())?;
                    extra.cd_batch = r.try_get(next())?;
                    extra.cd_source = r.try_get(next())?;
                }
                (Mode::Flag, false) => {
                    extra.flag = r.try_get(next())?;
                    extra.flag_error = r.try_get(next())?;
                }
                _ => {}
            }
            out.push((
                Rec {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    code: r.try_get(2)?,
                    amount: r.try_get(3)?,
                    happened: r.try_get(4)?,
                    note: r.try_get(5)?,
                    time,
                    op: op.map(|o: String| o.to_uppercase()),
                },
                extra,
            ));
        }
        out
    }};
}

/// A connection to one database of one of the soak's servers (directly, not through a proxy).
#[derive(Clone)]
pub enum Db {
    Pg(PgPool),
    My(MySqlPool),
}

impl Db {
    pub async fn connect(engine: Engine, port: u16, db: &str) -> Result<Db> {
        Ok(match engine {
            Engine::Pg => Db::Pg(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(std::time::Duration::from_secs(10))
                    .connect(&format!("postgres://postgres@127.0.0.1:{port}/{db}"))
                    .await
                    .with_context(|| format!("connecting to PostgreSQL database {db}"))?,
            ),
            Engine::My => Db::My(
                sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(std::time::Duration::from_secs(10))
                    .after_connect(|c, _| {
                        Box::pin(async move {
                            sqlx::Executor::execute(&mut *c, "SET time_zone = '+00:00'").await?;
                            Ok(())
                        })
                    })
                    .connect(&format!("mysql://root@127.0.0.1:{port}/{db}"))
                    .await
                    .with_context(|| format!("connecting to MariaDB database {db}"))?,
            ),
        })
    }

    pub async fn exec(&self, sql: &str) -> Result<()> {
        match self {
            Db::Pg(p) => {
                sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                    .execute(p)
                    .await?;
            }
            Db::My(p) => {
                sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                    .execute(p)
                    .await?;
            }
        }
        Ok(())
    }

    pub fn engine(&self) -> Engine {
        match self {
            Db::Pg(_) => Engine::Pg,
            Db::My(_) => Engine::My,
        }
    }

    /// Every row of `t`, in key order.
    pub async fn read(&self, t: &Table, exchange: bool) -> Result<Vec<(Rec, Extra)>> {
        let sql = select(t, self.engine(), exchange);
        Ok(match self {
            Db::Pg(p) => {
                let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(p).await?;
                decode!(rows, t, exchange)
            }
            Db::My(p) => {
                let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(p).await?;
                decode!(rows, t, exchange)
            }
        })
    }

    pub async fn close(&self) {
        match self {
            Db::Pg(p) => p.close().await,
            Db::My(p) => p.close().await,
        }
    }
}

/// The exchange end of a pair, as the checker reads it.
#[derive(Clone)]
pub enum End {
    Db(Db),
    Sim(std::sync::Arc<crate::sim::Sim>),
    Files(std::sync::Arc<crate::files::Out>),
}

impl End {
    /// Every row (record) of `t` at the exchange, in key order.
    pub async fn read(&self, t: &Table) -> Result<Vec<(Rec, Extra)>> {
        match self {
            End::Db(db) => db.read(t, true).await,
            End::Sim(sim) => sim.read(t).await,
            End::Files(out) => out.read(t),
        }
    }

    pub async fn close(&self) {
        if let End::Db(db) = self {
            db.close().await;
        }
    }
}

/// Create the databases of every pair on their servers, and their tables (an HTTP exchange
/// has none: the sim makes its store).
pub async fn create(pairs: &[Pair], pg_port: u16, my_port: u16) -> Result<()> {
    let pg = Db::connect(Engine::Pg, pg_port, "postgres").await?;
    let my = Db::connect(Engine::My, my_port, "mysql").await?;
    for p in pairs {
        let mut dbs = vec![(p.src, p.src_db())];
        if let Exchange::Db(e) = p.ex {
            dbs.push((e, p.ex_db()));
        }
        for (engine, db) in dbs {
            match engine {
                Engine::Pg => pg.exec(&format!("CREATE DATABASE {db}")).await?,
                Engine::My => {
                    my.exec(&format!(
                        "CREATE DATABASE {db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                    ))
                    .await?
                }
            }
        }
        let port = |e| if e == Engine::Pg { pg_port } else { my_port };
        let src = Db::connect(p.src, port(p.src), &p.src_db()).await?;
        for t in &p.tables {
            for s in ddl(t, p.src, false) {
                src.exec(&s).await.with_context(|| s.clone())?;
            }
        }
        src.close().await;
        if let Exchange::Db(e) = p.ex {
            let ex = Db::connect(e, port(e), &p.ex_db()).await?;
            for t in &p.tables {
                for s in ddl(t, e, true) {
                    ex.exec(&s).await.with_context(|| s.clone())?;
                }
            }
            ex.close().await;
        }
    }
    pg.close().await;
    my.close().await;
    Ok(())
}
