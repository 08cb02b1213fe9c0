//! How to reach a database: its engine and connection settings, as the configuration
//! resolved them.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::secret::Secret;

/// The engine behind a database URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    Postgres,
    MySql,
    Sqlite,
    MsSql,
    Oracle,
    /// Any engine with an ODBC driver (`odbc://`), built with the `odbc` feature.
    Odbc,
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineKind::Postgres => "PostgreSQL",
            EngineKind::MySql => "MySQL/MariaDB",
            EngineKind::Sqlite => "SQLite",
            EngineKind::MsSql => "SQL Server",
            EngineKind::Oracle => "Oracle",
            EngineKind::Odbc => "ODBC",
        })
    }
}

/// A database connection's settings. The URL and password are secrets: `Debug` and
/// `Display` never show them; [`DbConfig::redacted`] is what messages print.
#[derive(Debug)]
pub struct DbConfig {
    pub engine: EngineKind,
    pub url: Secret,
    pub password: Option<Secret>,
    pub max_connections: u32,
    pub connect_timeout: Duration,
    pub bootstrap_sql: Option<PathBuf>,
    /// How long an open source transaction may hold the watermark back (zero: never).
    pub transaction_guard: Duration,
    /// How long one statement may run before the database cancels it (zero: no limit).
    pub statement_timeout: Duration,
    /// The URL with any password replaced by `***`.
    pub redacted: String,
    /// `odbc://` databases: the SQL the engine speaks, when configured (else it is told
    /// from the driver's DBMS name).
    pub flavor: Option<crate::db::dialect::Flavor>,
}
