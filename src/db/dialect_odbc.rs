//! The engines reached through ODBC (`odbc://`): which SQL each speaks, and the statements
//! that read its catalog, its clock and its open transactions.
//!
//! Every flavor writes `?` placeholders (the only ones ODBC knows) and otherwise follows the
//! native dialect of its family ([`Flavor::family`]): DM and Oracle-mode engines write
//! `MERGE INTO ... USING (SELECT ... FROM dual)`, Kingbase and PostgreSQL `ON CONFLICT`,
//! GBase 8a and MySQL `ON DUPLICATE KEY`. Catalog statements bind the names they look up.

use super::Dialect;

/// The engine behind an ODBC driver (the `dialect` key of an `odbc://` database).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// DM8 (达梦): Oracle-compatible SQL and catalog views, `LIMIT` paging, `V$TRX`.
    Dm,
    /// KingbaseES (人大金仓) in its PostgreSQL mode: `sys_` catalog names.
    Kingbase,
    /// GBase 8a (南大通用), MySQL-compatible.
    Gbase,
    /// Oracle Database or an Oracle-mode engine (OceanBase Oracle mode, ShenTong).
    Oracle,
    Postgres,
    /// MySQL, MariaDB, OceanBase MySQL mode.
    MySql,
}

impl Flavor {
    /// The flavor a `dialect = "..."` names.
    pub fn parse(s: &str) -> Option<Flavor> {
        Some(match s.to_ascii_lowercase().as_str() {
            "dm" | "dameng" | "dm8" => Flavor::Dm,
            "kingbase" | "kingbasees" => Flavor::Kingbase,
            "gbase" => Flavor::Gbase,
            "oracle" => Flavor::Oracle,
            "postgres" | "postgresql" => Flavor::Postgres,
            "mysql" | "mariadb" => Flavor::MySql,
            _ => return None,
        })
    }

    /// The flavor of the engine an ODBC driver reports (`SQL_DBMS_NAME`), where it is one
    /// the agent knows.
    pub fn from_dbms_name(name: &str) -> Option<Flavor> {
        let n = name.to_ascii_lowercase();
        let has = |w: &str| n.contains(w);
        Some(if has("kingbase") {
            Flavor::Kingbase
        } else if n.starts_with("dm") || has("dameng") {
            Flavor::Dm
        } else if has("gbase") {
            Flavor::Gbase
        } else if has("oracle") {
            Flavor::Oracle
        } else if has("postgres") {
            Flavor::Postgres
        } else if has("mysql") || has("mariadb") {
            Flavor::MySql
        } else {
            return None;
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Flavor::Dm => "dm",
            Flavor::Kingbase => "kingbase",
            Flavor::Gbase => "gbase",
            Flavor::Oracle => "oracle",
            Flavor::Postgres => "postgres",
            Flavor::MySql => "mysql",
        }
    }

    /// The native dialect whose statement forms this flavor shares.
    pub fn family(self) -> Dialect {
        match self {
            Flavor::Dm | Flavor::Oracle => Dialect::Oracle,
            Flavor::Kingbase | Flavor::Postgres => Dialect::Postgres,
            Flavor::Gbase | Flavor::MySql => Dialect::MySql,
        }
    }

    /// Statements run once on every new connection: UTC, `.` as the decimal mark, and times
    /// as text in the forms the agent reads and binds (ISO, microseconds).
    pub fn session(self) -> &'static [&'static str] {
        match self {
            Flavor::Dm | Flavor::Oracle => &[
                "ALTER SESSION SET TIME_ZONE = '+00:00'",
                "ALTER SESSION SET NLS_NUMERIC_CHARACTERS = '.,'",
                "ALTER SESSION SET NLS_DATE_FORMAT = 'YYYY-MM-DD HH24:MI:SS'",
                "ALTER SESSION SET NLS_TIMESTAMP_FORMAT = 'YYYY-MM-DD HH24:MI:SS.FF6'",
                "ALTER SESSION SET NLS_TIMESTAMP_TZ_FORMAT = 'YYYY-MM-DD HH24:MI:SS.FF6TZH:TZM'",
            ],
            Flavor::Kingbase | Flavor::Postgres => &[
                "SET TIME ZONE 'UTC'",
                "SET DateStyle = 'ISO, YMD'",
                "SET IntervalStyle = 'iso_8601'",
                "SET extra_float_digits = 3",
                "SET application_name = 'frontdb-agent'",
            ],
            Flavor::Gbase | Flavor::MySql => &[
                "SET time_zone = '+00:00'",
                "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
                 ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO'",
            ],
        }
    }

    /// The table's schema and name as stored, found whatever the case of the configured
    /// name (the exact spelling first). Parameters: the schema (NULL: the current one), the
    /// name, the name again.
    pub fn find_table(self) -> &'static str {
        match self {
            Flavor::Dm | Flavor::Oracle => {
                "SELECT owner, object_name FROM all_objects \
                 WHERE object_type IN ('TABLE', 'VIEW') \
                 AND UPPER(owner) = UPPER(COALESCE(?, SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA'))) \
                 AND UPPER(object_name) = UPPER(?) \
                 ORDER BY CASE WHEN object_name = ? THEN 0 ELSE 1 END"
            }
            Flavor::Kingbase | Flavor::Postgres => {
                "SELECT table_schema, table_name FROM information_schema.tables \
                 WHERE table_schema = COALESCE(?, current_schema()) \
                 AND lower(table_name) = lower(?) \
                 ORDER BY CASE WHEN table_name = ? THEN 0 ELSE 1 END"
            }
            Flavor::Gbase | Flavor::MySql => {
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND LOWER(TABLE_NAME) = LOWER(?) \
                 ORDER BY TABLE_NAME = ? DESC"
            }
        }
    }

    /// The table's columns in order: name, type name, length, precision, scale.
    /// Parameters: the schema and name as [`Flavor::find_table`] found them.
    pub fn columns(self) -> &'static str {
        match self {
            Flavor::Dm | Flavor::Oracle => {
                "SELECT column_name, data_type, char_length, data_precision, data_scale \
                 FROM all_tab_columns WHERE owner = ? AND table_name = ? ORDER BY column_id"
            }
            // udt_name is the type's own name (int4, numeric, varchar, timestamptz), which
            // a cast takes.
            Flavor::Kingbase | Flavor::Postgres => {
                "SELECT column_name, udt_name, character_maximum_length, numeric_precision, \
                 numeric_scale FROM information_schema.columns \
                 WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position"
            }
            Flavor::Gbase | Flavor::MySql => {
                "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, \
                 NUMERIC_SCALE FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION"
            }
        }
    }

    /// Columns of the primary key and unique constraints (the primary key first), index after
    /// index in key order: index, column, 1 for the primary key. Parameters: schema, name.
    pub fn unique_keys(self) -> &'static str {
        match self {
            Flavor::Dm | Flavor::Oracle => {
                "SELECT c.constraint_name, cc.column_name, \
                 CASE c.constraint_type WHEN 'P' THEN 1 ELSE 0 END p \
                 FROM all_constraints c JOIN all_cons_columns cc ON cc.owner = c.owner \
                 AND cc.constraint_name = c.constraint_name AND cc.table_name = c.table_name \
                 WHERE c.owner = ? AND c.table_name = ? AND c.constraint_type IN ('P', 'U') \
                 ORDER BY p DESC, c.constraint_name, cc.position"
            }
            Flavor::Kingbase | Flavor::Postgres => {
                "SELECT tc.constraint_name, k.column_name, \
                 CASE tc.constraint_type WHEN 'PRIMARY KEY' THEN 1 ELSE 0 END AS p \
                 FROM information_schema.table_constraints tc \
                 JOIN information_schema.key_column_usage k \
                 ON k.constraint_schema = tc.constraint_schema \
                 AND k.constraint_name = tc.constraint_name AND k.table_name = tc.table_name \
                 WHERE tc.table_schema = ? AND tc.table_name = ? \
                 AND tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE') \
                 ORDER BY p DESC, tc.constraint_name, k.ordinal_position"
            }
            Flavor::Gbase | Flavor::MySql => {
                "SELECT INDEX_NAME, COLUMN_NAME, CASE WHEN INDEX_NAME = 'PRIMARY' THEN 1 ELSE 0 END \
                 FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
                 ORDER BY INDEX_NAME = 'PRIMARY' DESC, INDEX_NAME, SEQ_IN_INDEX"
            }
        }
    }

    /// The database's time now, in UTC, as text.
    pub fn now(self) -> &'static str {
        match self {
            Flavor::Dm | Flavor::Oracle => {
                "SELECT TO_CHAR(SYS_EXTRACT_UTC(SYSTIMESTAMP), 'YYYY-MM-DD HH24:MI:SS.FF6') FROM dual"
            }
            Flavor::Kingbase | Flavor::Postgres => {
                "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
            }
            Flavor::Gbase | Flavor::MySql => {
                "SELECT DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%d %H:%i:%s.%f')"
            }
        }
    }

    /// When the oldest transaction of another session began, in UTC, as text (NULL when
    /// there is none). Parameters: none, or (PostgreSQL and Kingbase) the agent's
    /// `application_name`, whose own sessions are left out.
    ///
    /// DM: `V$TRX` lists the open transactions, with the session (`SESS_ID`) of each;
    /// `V$SESSIONS` tells when that session's current statement began (`LAST_RECV_TIME`),
    /// the closest to a start time the views carry; transactions that changed nothing
    /// (`INS_CNT`, `DEL_CNT`, `UPD_CNT`) hold nothing back and are left out.
    /// Kingbase: `sys_stat_activity`, its name for PostgreSQL's `pg_stat_activity`.
    pub fn oldest_transaction(self) -> (&'static str, usize) {
        match self {
            Flavor::Dm => (
                "SELECT TO_CHAR(MIN(s.LAST_RECV_TIME), 'YYYY-MM-DD HH24:MI:SS.FF6') \
                 FROM V$TRX t JOIN V$SESSIONS s ON s.SESS_ID = t.SESS_ID \
                 WHERE t.STATUS = 'ACTIVE' AND t.SESS_ID <> SESSID() \
                 AND t.INS_CNT + t.DEL_CNT + t.UPD_CNT > 0",
                0,
            ),
            Flavor::Oracle => (
                "SELECT TO_CHAR(CAST(SYS_EXTRACT_UTC(SYSTIMESTAMP) AS DATE) \
                 + (MIN(t.start_date) - SYSDATE), 'YYYY-MM-DD HH24:MI:SS') \
                 FROM v$transaction t JOIN v$session s ON s.taddr = t.addr \
                 WHERE s.sid <> SYS_CONTEXT('USERENV', 'SID')",
                0,
            ),
            Flavor::Kingbase => (
                "SELECT to_char(min(xact_start) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') \
                 FROM sys_catalog.sys_stat_activity \
                 WHERE datname = current_database() AND pid <> sys_backend_pid() \
                 AND coalesce(application_name, '') <> ?",
                1,
            ),
            Flavor::Postgres => (
                "SELECT to_char(min(xact_start) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') \
                 FROM pg_catalog.pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                 AND backend_type = 'client backend' AND coalesce(application_name, '') <> ?",
                1,
            ),
            Flavor::Gbase | Flavor::MySql => (
                "SELECT DATE_FORMAT(CONVERT_TZ(MIN(trx_started), 'SYSTEM', '+00:00'), \
                 '%Y-%m-%d %H:%i:%s') FROM information_schema.innodb_trx \
                 WHERE trx_mysql_thread_id <> CONNECTION_ID()",
                0,
            ),
        }
    }

    /// What to grant when the agent may not read the views of open transactions.
    pub fn transaction_grant(self) -> &'static str {
        match self {
            Flavor::Dm => "grant it SELECT on V$TRX and V$SESSIONS (or the DBA role)",
            Flavor::Oracle => "grant it SELECT on SYS.V_$TRANSACTION and SYS.V_$SESSION",
            Flavor::Kingbase => "grant it the sys_read_all_stats role",
            Flavor::Postgres => "grant it pg_read_all_stats",
            Flavor::Gbase | Flavor::MySql => "grant it the PROCESS privilege",
        }
    }
}

/// An Oracle select paged by `FETCH FIRST n ROWS ONLY` (12c on) as Oracle 11g and earlier
/// page it: the ordered select inside, `ROWNUM` outside (`ROWNUM` is given before `ORDER BY`
/// applies, so it must count the rows of a select already ordered). `None` when the select
/// is not paged.
pub fn oracle_rownum(text: &str) -> Option<String> {
    let (body, tail) = text.rsplit_once(" FETCH FIRST ")?;
    let n: usize = tail.strip_suffix(" ROWS ONLY")?.parse().ok()?;
    Some(format!("SELECT * FROM ({body}) WHERE ROWNUM <= {n}"))
}

/// The major version in an Oracle banner (`Oracle Database 11g Enterprise Edition Release
/// 11.2.0.4.0 - 64bit Production`, `Oracle Database 19c ... Version 19.3.0.0.0`) or an
/// ODBC `SQL_DBMS_VER` (`11.02.0040`).
pub fn oracle_major(banner: &str) -> Option<u32> {
    let at = banner
        .find("Release ")
        .map(|i| i + "Release ".len())
        .or_else(|| banner.find("Version ").map(|i| i + "Version ".len()))
        .unwrap_or(0);
    let digits: String = banner[at..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
