//! The local state store: one SQLite file in `state_dir` with per-table watermarks and
//! figures, the batch ledger, row digests (lookback and digest modes), quarantined rows and
//! the daily batch counter. Only the job writes here, and a batch's watermark is committed
//! together with its ledger entry, after the exchange acknowledged it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row};

use crate::watermark::Watermark;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tables (
    tbl TEXT PRIMARY KEY,
    watermark TEXT,
    rows_total INTEGER NOT NULL DEFAULT 0,
    deletes_total INTEGER NOT NULL DEFAULT 0,
    newest_change TEXT,
    last_started TEXT,
    last_finished TEXT,
    last_outcome TEXT,
    last_error TEXT,
    last_rows INTEGER,
    last_ms INTEGER,
    next_run TEXT,
    warnings TEXT
);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    tbl TEXT NOT NULL,
    cd_batch TEXT NOT NULL,
    wm_from TEXT,
    wm_to TEXT,
    rows INTEGER NOT NULL,
    deletes INTEGER NOT NULL,
    rejected INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS batches_tbl ON batches (tbl, started);
CREATE TABLE IF NOT EXISTS digests (
    tbl TEXT NOT NULL,
    rkey TEXT NOT NULL,
    digest BLOB NOT NULL,
    ts TEXT,
    kvals TEXT NOT NULL,
    PRIMARY KEY (tbl, rkey)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS digests_ts ON digests (tbl, ts);
CREATE TABLE IF NOT EXISTS rejects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl TEXT NOT NULL,
    rkey TEXT NOT NULL,
    kvals TEXT NOT NULL,
    origin TEXT NOT NULL,
    state TEXT NOT NULL,
    reasons TEXT NOT NULL,
    row_json TEXT,
    digest BLOB,
    batch_id TEXT,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    resubmitted TEXT,
    cleared TEXT,
    UNIQUE (tbl, rkey)
);
CREATE TABLE IF NOT EXISTS counters (day TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS resyncs (
    tbl TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    state TEXT NOT NULL,
    requested TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    last_key TEXT,
    chunks INTEGER NOT NULL DEFAULT 0,
    rows INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    total INTEGER,
    resumed INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
INSERT OR IGNORE INTO meta (k, v) VALUES ('schema', '1');
";

/// Columns added after the first release: (table, column, declaration). Added when missing,
/// so a state store written by an older agent keeps working.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("tables", "failures", "INTEGER NOT NULL DEFAULT 0"),
    ("tables", "failing_since", "TEXT"),
];

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot open the state store {path}: {cause}")]
    Open { path: String, cause: String },
    #[error("state store, {doing}: {cause}")]
    Query { doing: &'static str, cause: String },
}

fn q(doing: &'static str) -> impl Fn(sqlx::Error) -> StateError {
    move |e| StateError::Query {
        doing,
        cause: e.to_string(),
    }
}

/// Instants are stored as sortable RFC 3339 UTC text.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The digest of one exchanged (or quarantined) row, remembered to skip it when re-read.
#[derive(Clone, Debug)]
pub struct DigestEntry {
    pub rkey: String,
    pub digest: [u8; 16],
    /// Sortable text of the row's change time (timestamp-like modes); pruned by it.
    pub ts: Option<String>,
    /// The key values as JSON, to delete the row later (digest mode).
    pub kvals: String,
}

/// A row that was not delivered, with why.
#[derive(Clone, Debug)]
pub struct Reject {
    pub rkey: String,
    pub kvals: String,
    /// `read`, `map`, `rule`, `target` or `province`.
    pub origin: &'static str,
    pub reasons: Vec<String>,
    pub row_json: String,
    pub digest: Option<[u8; 16]>,
}

/// A batch as the ledger records it before it is sent.
#[derive(Clone, Debug)]
pub struct LedgerEntry {
    pub id: String,
    pub table: String,
    pub cd_batch: String,
    pub wm_from: Option<String>,
    pub wm_to: Option<String>,
    pub rows: u64,
    pub deletes: u64,
    pub rejected: u64,
}

/// Everything one acknowledged batch changes in the state store, applied atomically.
#[derive(Debug, Default)]
pub struct Commit<'a> {
    pub table: &'a str,
    /// The ledger entry to mark acknowledged (none when nothing was sent).
    pub batch_id: Option<&'a str>,
    pub watermark: Option<&'a Watermark>,
    pub rows: u64,
    pub deletes: u64,
    pub rejected: u64,
    pub newest_change: Option<DateTime<Utc>>,
    pub digests: &'a [DigestEntry],
    pub drop_digests: &'a [String],
    /// Forget digests whose change time sorts before this.
    pub prune_before: Option<&'a str>,
    pub rejects: &'a [Reject],
    /// Keys delivered by this batch: their open rejects become `resubmitted`.
    pub delivered: &'a [String],
    /// A full resync's progress: the last key of this chunk (JSON) when the batch is one.
    pub resync_key: Option<&'a str>,
}

/// How a table's last cycle ended.
#[derive(Debug)]
pub struct CycleEnd<'a> {
    pub table: &'a str,
    pub outcome: &'a str,
    pub error: Option<&'a str>,
    pub rows: u64,
    pub millis: u64,
    pub warnings: &'a [String],
}

/// A table's row in `status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TableState {
    #[serde(skip_serializing)]
    pub table: String,
    pub watermark: Option<String>,
    pub rows_total: i64,
    pub deletes_total: i64,
    pub newest_change: Option<String>,
    pub last_started: Option<String>,
    pub last_finished: Option<String>,
    pub last_outcome: Option<String>,
    pub last_error: Option<String>,
    pub last_rows: Option<i64>,
    pub last_ms: Option<i64>,
    pub next_run: Option<String>,
    pub warnings: Vec<String>,
    pub open_rejects: i64,
    /// Consecutive failed cycles, and since when the table has been failing.
    pub failures: i64,
    pub failing_since: Option<String>,
}

pub struct State {
    pool: SqlitePool,
    pub path: PathBuf,
}

impl State {
    /// Open (creating when needed) `state.db` in `dir`.
    pub async fn open(dir: &Path) -> Result<State, StateError> {
        let path = dir.join("state.db");
        let fail = |cause: String| StateError::Open {
            path: path.display().to_string(),
            cause,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| fail(e.to_string()))?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .disable_statement_logging();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|e| fail(e.to_string()))?;
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(|e| fail(e.to_string()))?;
        for (table, column, decl) in ADDED_COLUMNS {
            let present: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pragma_table_info(?) WHERE name = ?")
                    .bind(table)
                    .bind(column)
                    .fetch_one(&pool)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
            if present == 0 {
                // Fixed identifiers from the list above, never from input.
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "ALTER TABLE {table} ADD COLUMN {column} {decl}"
                )))
                .execute(&pool)
                .await
                .map_err(|e| fail(e.to_string()))?;
            }
        }
        Ok(State { pool, path })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn watermark(&self, table: &str) -> Result<Option<Watermark>, StateError> {
        let wm: Option<Option<String>> =
            sqlx::query_scalar("SELECT watermark FROM tables WHERE tbl = ?")
                .bind(table)
                .fetch_optional(&self.pool)
                .await
                .map_err(q("reading a watermark"))?;
        Ok(wm
            .flatten()
            .and_then(|s| serde_json::from_str::<Watermark>(&s).ok()))
    }

    /// Digests of a table's remembered rows, optionally only those changed at or after `since`.
    pub async fn digests(
        &self,
        table: &str,
        since: Option<&str>,
    ) -> Result<HashMap<String, ([u8; 16], String)>, StateError> {
        let rows = match since {
            Some(s) => {
                sqlx::query("SELECT rkey, digest, kvals FROM digests WHERE tbl = ? AND ts >= ?")
                    .bind(table)
                    .bind(s)
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                sqlx::query("SELECT rkey, digest, kvals FROM digests WHERE tbl = ?")
                    .bind(table)
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(q("reading digests"))?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in rows {
            let key: String = r.try_get(0).map_err(q("reading digests"))?;
            let d: Vec<u8> = r.try_get(1).map_err(q("reading digests"))?;
            let kvals: String = r.try_get(2).map_err(q("reading digests"))?;
            let mut digest = [0u8; 16];
            if d.len() == 16 {
                digest.copy_from_slice(&d);
            }
            out.insert(key, (digest, kvals));
        }
        Ok(out)
    }

    /// The next batch number of the day: `yyyyMMdd` + 5-digit counter (more digits past 99999).
    pub async fn next_cd_batch(&self, day: &str) -> Result<String, StateError> {
        let n: i64 = sqlx::query_scalar(
            "INSERT INTO counters (day, n) VALUES (?, 1) \
             ON CONFLICT (day) DO UPDATE SET n = n + 1 RETURNING n",
        )
        .bind(day)
        .fetch_one(&self.pool)
        .await
        .map_err(q("counting batches"))?;
        Ok(format!("{day}{n:05}"))
    }

    pub async fn batch_started(
        &self,
        b: &LedgerEntry,
        at: DateTime<Utc>,
    ) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO batches (id, tbl, cd_batch, wm_from, wm_to, rows, deletes, rejected, status, started) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'sending', ?) \
             ON CONFLICT (id) DO UPDATE SET status = 'sending', started = excluded.started, \
             error = NULL, rows = excluded.rows, deletes = excluded.deletes",
        )
        .bind(&b.id)
        .bind(&b.table)
        .bind(&b.cd_batch)
        .bind(&b.wm_from)
        .bind(&b.wm_to)
        .bind(b.rows as i64)
        .bind(b.deletes as i64)
        .bind(b.rejected as i64)
        .bind(ts(at))
        .execute(&self.pool)
        .await
        .map_err(q("recording a batch"))?;
        Ok(())
    }

    /// The `cd_batch` a batch id got when it was first sent (a re-sent batch keeps it).
    pub async fn cd_batch_of(&self, id: &str) -> Result<Option<String>, StateError> {
        sqlx::query_scalar("SELECT cd_batch FROM batches WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("reading a batch"))
    }

    pub async fn batch_failed(&self, id: &str, error: &str) -> Result<(), StateError> {
        sqlx::query("UPDATE batches SET status = 'failed', finished = ?, error = ? WHERE id = ?")
            .bind(ts(Utc::now()))
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("recording a failed batch"))?;
        Ok(())
    }

    /// Apply an acknowledged batch: ledger, watermark, figures, digests and rejects at once.
    pub async fn commit(&self, c: &Commit<'_>) -> Result<(), StateError> {
        let e = q("committing a batch");
        let now = ts(Utc::now());
        let mut tx = self.pool.begin().await.map_err(&e)?;
        if let Some(id) = c.batch_id {
            sqlx::query(
                "UPDATE batches SET status = 'acked', finished = ?, rows = ?, deletes = ?, \
                 rejected = ? WHERE id = ?",
            )
            .bind(&now)
            .bind(c.rows as i64)
            .bind(c.deletes as i64)
            .bind(c.rejected as i64)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(&e)?;
        }
        sqlx::query("INSERT OR IGNORE INTO tables (tbl) VALUES (?)")
            .bind(c.table)
            .execute(&mut *tx)
            .await
            .map_err(&e)?;
        sqlx::query(
            "UPDATE tables SET rows_total = rows_total + ?, deletes_total = deletes_total + ?, \
             watermark = COALESCE(?, watermark), \
             newest_change = CASE WHEN newest_change IS NULL OR ? > newest_change THEN ? ELSE newest_change END \
             WHERE tbl = ?",
        )
        .bind(c.rows as i64)
        .bind(c.deletes as i64)
        .bind(c.watermark.map(Watermark::to_json))
        .bind(c.newest_change.map(ts))
        .bind(c.newest_change.map(ts))
        .bind(c.table)
        .execute(&mut *tx)
        .await
        .map_err(&e)?;
        for d in c.digests {
            sqlx::query(
                "INSERT INTO digests (tbl, rkey, digest, ts, kvals) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (tbl, rkey) DO UPDATE SET digest = excluded.digest, ts = excluded.ts, kvals = excluded.kvals",
            )
            .bind(c.table)
            .bind(&d.rkey)
            .bind(&d.digest[..])
            .bind(&d.ts)
            .bind(&d.kvals)
            .execute(&mut *tx)
            .await
            .map_err(&e)?;
        }
        for k in c.drop_digests {
            sqlx::query("DELETE FROM digests WHERE tbl = ? AND rkey = ?")
                .bind(c.table)
                .bind(k)
                .execute(&mut *tx)
                .await
                .map_err(&e)?;
        }
        if let Some(before) = c.prune_before {
            sqlx::query("DELETE FROM digests WHERE tbl = ? AND ts < ?")
                .bind(c.table)
                .bind(before)
                .execute(&mut *tx)
                .await
                .map_err(&e)?;
        }
        for r in c.rejects {
            sqlx::query(
                "INSERT INTO rejects (tbl, rkey, kvals, origin, state, reasons, row_json, digest, batch_id, first_seen, last_seen) \
                 VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (tbl, rkey) DO UPDATE SET origin = excluded.origin, state = 'open', \
                 reasons = excluded.reasons, row_json = excluded.row_json, digest = excluded.digest, \
                 batch_id = excluded.batch_id, last_seen = excluded.last_seen, resubmitted = NULL, cleared = NULL",
            )
            .bind(c.table)
            .bind(&r.rkey)
            .bind(&r.kvals)
            .bind(r.origin)
            .bind(serde_json::to_string(&r.reasons).unwrap_or_default())
            .bind(&r.row_json)
            .bind(r.digest.map(|d| d.to_vec()))
            .bind(c.batch_id)
            .bind(&now)
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(&e)?;
        }
        if let Some(key) = c.resync_key {
            sqlx::query(
                "UPDATE resyncs SET last_key = ?, chunks = chunks + 1, rows = rows + ?, \
                 deleted = deleted + ? WHERE tbl = ? AND state = 'running'",
            )
            .bind(key)
            .bind(c.rows as i64)
            .bind(c.deletes as i64)
            .bind(c.table)
            .execute(&mut *tx)
            .await
            .map_err(&e)?;
        }
        if !c.delivered.is_empty() {
            let open: i64 =
                sqlx::query_scalar("SELECT count(*) FROM rejects WHERE tbl = ? AND state = 'open'")
                    .bind(c.table)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(&e)?;
            if open > 0 {
                for k in c.delivered {
                    sqlx::query(
                        "UPDATE rejects SET state = 'resubmitted', resubmitted = ? \
                         WHERE tbl = ? AND rkey = ? AND state = 'open'",
                    )
                    .bind(&now)
                    .bind(c.table)
                    .bind(k)
                    .execute(&mut *tx)
                    .await
                    .map_err(&e)?;
                }
            }
        }
        tx.commit().await.map_err(&e)?;
        Ok(())
    }

    pub async fn cycle_started(&self, table: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO tables (tbl, last_started) VALUES (?, ?) \
             ON CONFLICT (tbl) DO UPDATE SET last_started = excluded.last_started",
        )
        .bind(table)
        .bind(ts(at))
        .execute(&self.pool)
        .await
        .map_err(q("recording a cycle"))?;
        Ok(())
    }

    pub async fn cycle_finished(&self, c: &CycleEnd<'_>) -> Result<(), StateError> {
        let e = q("recording a cycle");
        let mut tx = self.pool.begin().await.map_err(&e)?;
        sqlx::query("INSERT OR IGNORE INTO tables (tbl) VALUES (?)")
            .bind(c.table)
            .execute(&mut *tx)
            .await
            .map_err(&e)?;
        let failed = c.outcome == "failed";
        sqlx::query(
            "UPDATE tables SET last_finished = ?, last_outcome = ?, last_error = ?, last_rows = ?, \
             last_ms = ?, warnings = ?, \
             failures = CASE WHEN ? THEN failures + 1 ELSE 0 END, \
             failing_since = CASE WHEN ? THEN COALESCE(failing_since, last_started) ELSE NULL END \
             WHERE tbl = ?",
        )
        .bind(ts(Utc::now()))
        .bind(c.outcome)
        .bind(c.error)
        .bind(c.rows as i64)
        .bind(c.millis as i64)
        .bind(serde_json::to_string(c.warnings).unwrap_or_default())
        .bind(failed)
        .bind(failed)
        .bind(c.table)
        .execute(&mut *tx)
        .await
        .map_err(&e)?;
        tx.commit().await.map_err(&e)?;
        Ok(())
    }

    pub async fn set_next_run(&self, table: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO tables (tbl, next_run) VALUES (?, ?) \
             ON CONFLICT (tbl) DO UPDATE SET next_run = excluded.next_run",
        )
        .bind(table)
        .bind(ts(at))
        .execute(&self.pool)
        .await
        .map_err(q("recording the next run"))?;
        Ok(())
    }

    /// Ask for a full resync of a table. A resync already running keeps running; otherwise a
    /// new one is recorded as requested. Returns the state it is in afterwards.
    pub async fn request_resync(&self, table: &str) -> Result<String, StateError> {
        let run_id = format!("{:x}", Utc::now().timestamp_micros());
        sqlx::query(
            "INSERT INTO resyncs (tbl, run_id, state, requested) VALUES (?, ?, 'requested', ?) \
             ON CONFLICT (tbl) DO UPDATE SET run_id = excluded.run_id, state = 'requested', \
             requested = excluded.requested, started = NULL, finished = NULL, last_key = NULL, \
             chunks = 0, rows = 0, deleted = 0, total = NULL, resumed = 0, error = NULL \
             WHERE resyncs.state NOT IN ('requested', 'running')",
        )
        .bind(table)
        .bind(&run_id)
        .bind(ts(Utc::now()))
        .execute(&self.pool)
        .await
        .map_err(q("requesting a resync"))?;
        let state: String = sqlx::query_scalar("SELECT state FROM resyncs WHERE tbl = ?")
            .bind(table)
            .fetch_one(&self.pool)
            .await
            .map_err(q("requesting a resync"))?;
        Ok(state)
    }

    pub async fn resync_of(&self, table: &str) -> Result<Option<Resync>, StateError> {
        let e = q("reading a resync");
        let row = sqlx::query(RESYNC_COLUMNS)
            .bind(table)
            .fetch_optional(&self.pool)
            .await
            .map_err(&e)?;
        row.as_ref().map(resync_row).transpose().map_err(&e)
    }

    /// Tables with a resync requested or running (to be started or resumed).
    pub async fn pending_resyncs(&self) -> Result<Vec<String>, StateError> {
        sqlx::query_scalar("SELECT tbl FROM resyncs WHERE state IN ('requested', 'running')")
            .fetch_all(&self.pool)
            .await
            .map_err(q("reading resyncs"))
    }

    /// A requested resync starts (with the number of source rows); a running one resumes.
    pub async fn resync_started(&self, table: &str, total: Option<i64>) -> Result<(), StateError> {
        sqlx::query(
            "UPDATE resyncs SET resumed = resumed + (state = 'running'), state = 'running', \
             started = COALESCE(started, ?), total = COALESCE(?, total) WHERE tbl = ?",
        )
        .bind(ts(Utc::now()))
        .bind(total)
        .bind(table)
        .execute(&self.pool)
        .await
        .map_err(q("starting a resync"))?;
        Ok(())
    }

    pub async fn resync_finished(
        &self,
        table: &str,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        sqlx::query(
            "UPDATE resyncs SET state = CASE WHEN ? IS NULL THEN 'done' ELSE 'failed' END, \
             finished = ?, error = ? WHERE tbl = ?",
        )
        .bind(error)
        .bind(ts(Utc::now()))
        .bind(error)
        .bind(table)
        .execute(&self.pool)
        .await
        .map_err(q("finishing a resync"))?;
        Ok(())
    }

    /// Forget every remembered digest of a table (a digest table rebuilds them by a resync).
    pub async fn clear_digests(&self, table: &str) -> Result<(), StateError> {
        sqlx::query("DELETE FROM digests WHERE tbl = ?")
            .bind(table)
            .execute(&self.pool)
            .await
            .map_err(q("clearing digests"))?;
        Ok(())
    }

    /// Forget acknowledged batches finished before `before`.
    pub async fn prune_ledger(&self, before: DateTime<Utc>) -> Result<u64, StateError> {
        let r = sqlx::query("DELETE FROM batches WHERE status = 'acked' AND finished < ?")
            .bind(ts(before))
            .execute(&self.pool)
            .await
            .map_err(q("pruning the ledger"))?;
        Ok(r.rows_affected())
    }

    /// Every table the store knows, for `status`.
    pub async fn tables(&self) -> Result<Vec<TableState>, StateError> {
        let e = q("reading table states");
        let rows = sqlx::query(
            "SELECT t.tbl, t.watermark, t.rows_total, t.deletes_total, t.newest_change, t.last_started, \
             t.last_finished, t.last_outcome, t.last_error, t.last_rows, t.last_ms, t.next_run, t.warnings, \
             (SELECT count(*) FROM rejects r WHERE r.tbl = t.tbl AND r.state = 'open'), \
             t.failures, t.failing_since \
             FROM tables t ORDER BY t.tbl",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(&e)?;
        let mut out = Vec::new();
        for r in rows {
            let warnings: Option<String> = r.try_get(12).map_err(&e)?;
            let watermark: Option<String> = r.try_get(1).map_err(&e)?;
            out.push(TableState {
                table: r.try_get(0).map_err(&e)?,
                watermark: watermark
                    .and_then(|w| serde_json::from_str::<Watermark>(&w).ok())
                    .map(|w| w.to_string()),
                rows_total: r.try_get(2).map_err(&e)?,
                deletes_total: r.try_get(3).map_err(&e)?,
                newest_change: r.try_get(4).map_err(&e)?,
                last_started: r.try_get(5).map_err(&e)?,
                last_finished: r.try_get(6).map_err(&e)?,
                last_outcome: r.try_get(7).map_err(&e)?,
                last_error: r.try_get(8).map_err(&e)?,
                last_rows: r.try_get(9).map_err(&e)?,
                last_ms: r.try_get(10).map_err(&e)?,
                next_run: r.try_get(11).map_err(&e)?,
                warnings: warnings
                    .and_then(|w| serde_json::from_str(&w).ok())
                    .unwrap_or_default(),
                open_rejects: r.try_get(13).map_err(&e)?,
                failures: r.try_get(14).map_err(&e)?,
                failing_since: r.try_get(15).map_err(&e)?,
            });
        }
        Ok(out)
    }

    /// Quarantined rows, newest first, optionally of one table and in one state.
    pub async fn rejects(
        &self,
        table: Option<&str>,
        state: Option<&str>,
    ) -> Result<Vec<RejectRow>, StateError> {
        let e = q("reading rejects");
        let rows = sqlx::query(
            "SELECT id, tbl, rkey, kvals, origin, state, reasons, row_json, batch_id, first_seen, \
             last_seen, resubmitted, cleared FROM rejects \
             WHERE (?1 IS NULL OR tbl = ?1) AND (?2 IS NULL OR state = ?2) ORDER BY id DESC",
        )
        .bind(table)
        .bind(state)
        .fetch_all(&self.pool)
        .await
        .map_err(&e)?;
        rows.iter().map(|r| reject_row(r).map_err(&e)).collect()
    }

    /// One quarantined row by its id.
    pub async fn reject(&self, id: i64) -> Result<Option<RejectRow>, StateError> {
        let e = q("reading a reject");
        let row = sqlx::query(
            "SELECT id, tbl, rkey, kvals, origin, state, reasons, row_json, batch_id, first_seen, \
             last_seen, resubmitted, cleared FROM rejects WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(&e)?;
        row.as_ref().map(reject_row).transpose().map_err(&e)
    }

    /// Open rejects of a table (key text and reasons), newest first.
    pub async fn open_rejects(
        &self,
        table: &str,
    ) -> Result<Vec<(String, String, Vec<String>)>, StateError> {
        let e = q("reading rejects");
        let rows = sqlx::query(
            "SELECT rkey, origin, reasons FROM rejects WHERE tbl = ? AND state = 'open' ORDER BY id DESC",
        )
        .bind(table)
        .fetch_all(&self.pool)
        .await
        .map_err(&e)?;
        let mut out = Vec::new();
        for r in rows {
            let reasons: String = r.try_get(2).map_err(&e)?;
            out.push((
                r.try_get(0).map_err(&e)?,
                r.try_get(1).map_err(&e)?,
                serde_json::from_str(&reasons).unwrap_or_default(),
            ));
        }
        Ok(out)
    }
}

const RESYNC_COLUMNS: &str = "SELECT run_id, state, requested, started, finished, last_key, \
     chunks, rows, deleted, total, resumed, error FROM resyncs WHERE tbl = ?";

/// A table's full resync, as `status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Resync {
    pub run_id: String,
    /// `requested`, `running`, `done` or `failed`.
    pub state: String,
    pub requested: String,
    pub started: Option<String>,
    pub finished: Option<String>,
    /// Key of the last chunk delivered (JSON list of values).
    #[serde(skip)]
    pub last_key: Option<String>,
    pub chunks: i64,
    pub rows: i64,
    /// Rows removed at the exchange because the source no longer has them.
    pub deleted: i64,
    /// Rows of the source when the resync started.
    pub total: Option<i64>,
    /// How many times it was resumed after a stop or a crash.
    pub resumed: i64,
    pub error: Option<String>,
}

fn resync_row(r: &sqlx::sqlite::SqliteRow) -> Result<Resync, sqlx::Error> {
    Ok(Resync {
        run_id: r.try_get(0)?,
        state: r.try_get(1)?,
        requested: r.try_get(2)?,
        started: r.try_get(3)?,
        finished: r.try_get(4)?,
        last_key: r.try_get(5)?,
        chunks: r.try_get(6)?,
        rows: r.try_get(7)?,
        deleted: r.try_get(8)?,
        total: r.try_get(9)?,
        resumed: r.try_get(10)?,
        error: r.try_get(11)?,
    })
}

/// A quarantined row as `rejects` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RejectRow {
    pub id: i64,
    pub table: String,
    /// Key values joined by `|` in key order.
    pub key: String,
    pub key_values: serde_json::Value,
    /// `read`, `map`, `rule`, `target` or `province`.
    pub origin: String,
    /// `open`, `resubmitted` or `cleared`.
    pub state: String,
    pub reasons: Vec<String>,
    /// The row's values when it was quarantined (column -> text).
    pub row: serde_json::Value,
    pub batch_id: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub resubmitted: Option<String>,
    pub cleared: Option<String>,
}

fn reject_row(r: &sqlx::sqlite::SqliteRow) -> Result<RejectRow, sqlx::Error> {
    let json = |s: Option<String>| {
        s.and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    let reasons: String = r.try_get(6)?;
    Ok(RejectRow {
        id: r.try_get(0)?,
        table: r.try_get(1)?,
        key: r.try_get(2)?,
        key_values: json(r.try_get(3)?),
        origin: r.try_get(4)?,
        state: r.try_get(5)?,
        reasons: serde_json::from_str(&reasons).unwrap_or_default(),
        row: json(r.try_get(7)?),
        batch_id: r.try_get(8)?,
        first_seen: r.try_get(9)?,
        last_seen: r.try_get(10)?,
        resubmitted: r.try_get(11)?,
        cleared: r.try_get(12)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    #[tokio::test]
    async fn commits_are_atomic_and_counters_daily() {
        let dir = tempfile::tempdir().expect("tempdir");
        let st = State::open(dir.path()).await.expect("open");
        assert_eq!(
            st.next_cd_batch("20260101").await.expect("n"),
            "2026010100001"
        );
        assert_eq!(
            st.next_cd_batch("20260101").await.expect("n"),
            "2026010100002"
        );
        assert_eq!(
            st.next_cd_batch("20260102").await.expect("n"),
            "2026010200001"
        );
        let wm = Watermark {
            ts: None,
            key: vec![Value::Int(42)],
        };
        let entry = LedgerEntry {
            id: "a-t-1".into(),
            table: "t".into(),
            cd_batch: "2026010100003".into(),
            wm_from: None,
            wm_to: Some(wm.to_json()),
            rows: 2,
            deletes: 0,
            rejected: 1,
        };
        st.batch_started(&entry, Utc::now()).await.expect("start");
        let rejects = [Reject {
            rkey: "7".into(),
            kvals: "[]".into(),
            origin: "map",
            reasons: vec!["列 name 太长".into()],
            row_json: "{}".into(),
            digest: None,
        }];
        st.commit(&Commit {
            table: "t",
            batch_id: Some("a-t-1"),
            watermark: Some(&wm),
            rows: 2,
            rejects: &rejects,
            ..Commit::default()
        })
        .await
        .expect("commit");
        assert_eq!(st.watermark("t").await.expect("wm"), Some(wm));
        let tables = st.tables().await.expect("tables");
        assert_eq!(tables[0].rows_total, 2);
        assert_eq!(tables[0].open_rejects, 1);
        assert_eq!(
            st.open_rejects("t").await.expect("rejects")[0].2,
            vec!["列 name 太长".to_string()]
        );
        st.commit(&Commit {
            table: "t",
            delivered: &["7".to_string()],
            ..Commit::default()
        })
        .await
        .expect("commit");
        assert_eq!(st.tables().await.expect("tables")[0].open_rejects, 0);
    }
}
