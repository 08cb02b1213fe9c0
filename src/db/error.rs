//! Database errors: what failed, the database's own words, and what kind of failure it is,
//! which decides what the agent does about it.

use crate::db::{DbConfig, EngineKind};

use super::{mysql, postgres, sqlite};
use crate::ident::TableName;

/// What kind of failure a database error is, which decides what the agent does about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// A lock conflict (deadlock, serialization failure, lock wait timeout): the same
    /// transaction is tried again at once.
    Transient,
    /// The database cannot be reached or refuses work for now (connection refused or
    /// dropped, shutdown, too many connections): the table retries with backoff.
    Unavailable,
    /// The database refuses this data (constraint violation, value too long or out of
    /// range, type mismatch): the offending rows are isolated and quarantined.
    Data,
    /// Anything else (missing table or permission, bad SQL): needs a person.
    Fatal,
}

/// A database error with what the agent was doing.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the {role} database ({engine}, {url}): {cause}")]
    Connect {
        role: &'static str,
        engine: EngineKind,
        url: String,
        cause: String,
        class: ErrorClass,
    },
    #[error("{engine} {doing}: {cause}")]
    Query {
        engine: EngineKind,
        doing: String,
        cause: String,
        /// The database's error code (SQLSTATE, MySQL error number, SQLite result code).
        code: Option<String>,
        class: ErrorClass,
    },
    #[error("SQLite bootstrap {path}: {cause}")]
    Bootstrap { path: String, cause: String },
}

impl DbError {
    pub fn class(&self) -> ErrorClass {
        match self {
            DbError::Connect { class, .. } | DbError::Query { class, .. } => *class,
            DbError::Bootstrap { .. } => ErrorClass::Fatal,
        }
    }

    /// Whether trying again later may succeed without anyone changing anything.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self.class(),
            ErrorClass::Transient | ErrorClass::Unavailable
        )
    }

    /// The database's own words, without what the agent was doing.
    pub fn cause(&self) -> &str {
        match self {
            DbError::Connect { cause, .. }
            | DbError::Query { cause, .. }
            | DbError::Bootstrap { cause, .. } => cause,
        }
    }

    /// What makes the errors of a statement on `table`: `doing` is followed by the table's
    /// name ("copying rows into" `"public"."t"`).
    pub(super) fn on_table(
        engine: EngineKind,
        doing: &str,
        table: &TableName,
    ) -> impl FnOnce(sqlx::Error) -> Self + use<> {
        let doing = format!("{doing} {table}");
        move |e| DbError::query(engine, doing, e)
    }

    pub(super) fn query(engine: EngineKind, doing: impl Into<String>, e: sqlx::Error) -> Self {
        let (code, class) = classify(engine, &e);
        // A pool connecting lazily meets the server's demand here: it will not pass.
        let (cause, class) = match gauss_sha256(&describe(&e)) {
            Some(words) => (words, ErrorClass::Fatal),
            None => (describe(&e), class),
        };
        DbError::Query {
            engine,
            doing: doing.into(),
            cause,
            code,
            class,
        }
    }

    pub(super) fn connect(cfg: &DbConfig, role: &'static str, e: &sqlx::Error) -> Self {
        let (_, class) = classify(cfg.engine, e);
        if let Some(cause) = gauss_sha256(&describe(e)) {
            return DbError::Connect {
                role,
                engine: cfg.engine,
                url: cfg.redacted.clone(),
                cause,
                class: ErrorClass::Fatal,
            };
        }
        DbError::Connect {
            role,
            engine: cfg.engine,
            url: cfg.redacted.clone(),
            cause: super::tls_words::explained(describe(e)),
            // Whatever stops a connection now (the server is down, refuses connections,
            // or is restarting) may pass; only a broken configuration will not.
            class: match class {
                ErrorClass::Fatal if matches!(e, sqlx::Error::Configuration(_)) => {
                    ErrorClass::Fatal
                }
                ErrorClass::Data | ErrorClass::Transient | ErrorClass::Fatal => {
                    ErrorClass::Unavailable
                }
                c => c,
            },
        }
    }
}

/// The class of an error, and the database's code when it gave one. Connection-level
/// errors are the same everywhere; database errors are classified by each engine.
pub(super) fn classify(engine: EngineKind, e: &sqlx::Error) -> (Option<String>, ErrorClass) {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => (None, ErrorClass::Unavailable),
        sqlx::Error::Database(d) => match engine {
            EngineKind::Postgres => postgres::classify(d.as_ref()),
            EngineKind::MySql => mysql::classify(d.as_ref()),
            EngineKind::Sqlite => sqlite::classify(d.as_ref()),
            EngineKind::MsSql | EngineKind::Oracle | EngineKind::Odbc => (None, ErrorClass::Fatal),
        },
        _ => (None, ErrorClass::Fatal),
    }
}

/// The error's own words, without sqlx's generic prefixes.
pub(super) fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_owned(),
        other => other.to_string(),
    }
}

/// openGauss and GaussDB ask for their own SHA-256 password exchange under request 10,
/// which PostgreSQL gives to SASL (the driver then finds no mechanism it knows: a
/// PostgreSQL server offers SCRAM-SHA-256, which it does), or for MD5-then-SHA-256 under
/// 11: what to set on the server instead, or how to reach it otherwise. `None` for any
/// other error.
pub(super) fn gauss_sha256(cause: &str) -> Option<String> {
    let asked = [
        "unsupported SASL authentication mechanisms",
        "unknown authentication method: 10",
        "unknown authentication method: 11",
    ]
    .iter()
    .any(|m| cause.contains(m))
        && !cause.contains("SCRAM");
    asked.then(|| {
        format!(
            "{cause}: the server asks for openGauss/GaussDB SHA-256 authentication, which the \
             PostgreSQL protocol the agent speaks has not. On the server set \
             password_encryption_type = 1 (md5 and sha256) in postgresql.conf, set the agent \
             user's password again (so that an md5 hash is stored), and give the agent's \
             address `md5` in pg_hba.conf; or connect through odbc:// with the engine's own \
             ODBC driver (dialect = \"postgres\")"
        )
    })
}
