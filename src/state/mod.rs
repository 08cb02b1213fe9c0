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
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row};

use crate::watermark::Watermark;

mod audit;
pub mod counter;
mod crypt;
mod digests;
mod exchanges;
mod history;
mod kinds;
mod ledger;
mod purge;
mod rejects;
mod reread;
mod resync;
mod runs;

pub use audit::AuditEntry;
#[cfg(test)]
use digests::DIGESTS_PER_ROW;
use digests::DIGESTS_PER_STATEMENT;
pub use exchanges::Exchanged;
pub use history::{BatchRow, Day};
pub use kinds::{Origin, Outcome, RejectState, ResyncState};
pub use ledger::{LedgerEntry, Sent};
pub use purge::{PurgePlan, Purged};
pub use rejects::RejectRow;
pub use resync::Resync;
pub use runs::{CycleEnd, FLUSH_EVERY, Runs};

const SCHEMA: &str = include_str!("schema.sql");

/// Columns added after the first release: (table, column, declaration). Added when missing,
/// so a state store written by an older agent keeps working.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("tables", "failures", "INTEGER NOT NULL DEFAULT 0"),
    ("tables", "failing_since", "TEXT"),
    ("rejects", "updated", "TEXT"),
    ("tables", "last_success", "TEXT"),
    ("tables", "reread", "TEXT"),
    ("batches", "content", "TEXT"),
    ("batches", "sent_at", "TEXT"),
    ("rejects", "resubmit_asked", "TEXT"),
];

/// Indexes on columns of [`ADDED_COLUMNS`], made once those exist.
const ADDED_INDEXES: &str = "CREATE INDEX IF NOT EXISTS batches_content ON batches (tbl, content);";

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
    pub origin: Origin,
    pub reasons: Vec<String>,
    pub row_json: String,
    pub digest: Option<[u8; 16]>,
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
    /// Why open rejects among `delivered` were sent again (for their history).
    pub resubmit_why: &'a str,
    /// The exchange checked the delivered rows as it took them: their rejects are cleared.
    pub accepted: bool,
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
    /// When a cycle last succeeded.
    pub last_success: Option<String>,
    /// Rows sent and deleted in the last 24 hours.
    pub rows_24h: i64,
}

impl TableState {
    /// The runs as a running agent keeps them, over what the store has.
    pub fn overlay(&mut self, r: &Runs) {
        self.last_started.clone_from(&r.last_started);
        self.last_finished.clone_from(&r.last_finished);
        self.last_outcome.clone_from(&r.last_outcome);
        self.last_error.clone_from(&r.last_error);
        self.last_rows = r.last_rows;
        self.last_ms = r.last_ms;
        self.next_run.clone_from(&r.next_run);
        self.warnings.clone_from(&r.warnings);
        self.failures = r.failures;
        self.failing_since.clone_from(&r.failing_since);
        self.last_success.clone_from(&r.last_success);
    }
}

pub struct State {
    pool: SqlitePool,
    /// Each table's runs, kept in memory between writes (see [`runs`]).
    runs: std::sync::Mutex<HashMap<String, runs::Kept>>,
    /// Each table's watermark as last committed or read (see [`State::watermark`]).
    watermarks: std::sync::Mutex<HashMap<String, Option<Watermark>>>,
    /// Re-reads of quiet tables recorded in memory only, written by the next flush.
    rereads: std::sync::Mutex<HashMap<String, crate::watermark::Reread>>,
    /// Encrypts the row values kept (`state_cipher`); none: kept in plain text.
    cipher: Option<crate::cipher::Cipher>,
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
        crate::lock::private_dir(dir).map_err(fail)?;
        // SQLite gives its -wal and -shm files the mode of the database file.
        if !path.exists() {
            std::fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .open(&path)
                .map_err(|e| fail(e.to_string()))?;
        }
        for f in ["state.db", "state.db-wal", "state.db-shm"] {
            let p = dir.join(f);
            if p.exists() {
                crate::lock::owner_only(&p).map_err(fail)?;
            }
        }
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| fail(e.to_string()))?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Normal: a commit survives the process being killed, and only a power loss can
            // undo the last ones -- which then makes the agent send those batches again, and
            // every write at the exchange is idempotent. Full would add an fsync per batch.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            // A deleted value is overwritten with zeros, not left in a free page; a new
            // store gives freed pages back on each purge (see [`purge`]).
            .pragma("secure_delete", "ON")
            .auto_vacuum(SqliteAutoVacuum::Incremental)
            .disable_statement_logging();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // A connection whose transaction did not end cleanly is closed, never reused.
            // SQLite rolls a transaction back by itself when a write fails with a full disk
            // (SQLITE_FULL); sqlx's own ROLLBACK then fails and it still counts the
            // transaction open, so on that connection the next transaction would begin as a
            // SAVEPOINT that its COMMIT only releases: a write transaction left open for
            // good, the state store "locked" for every other connection and what is written
            // on this one never committed.
            .after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
            .connect_with(opts)
            .await
            .map_err(|e| fail(e.to_string()))?;
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let present = |table: &'static str, column: &'static str| {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pragma_table_info(?) WHERE name = ?")
                .bind(table)
                .bind(column)
                .fetch_one(&pool)
        };
        for (table, column, decl) in ADDED_COLUMNS {
            if present(table, column)
                .await
                .map_err(|e| fail(e.to_string()))?
                == 0
            {
                // Fixed identifiers from the list above, never from input.
                let added = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "ALTER TABLE {table} ADD COLUMN {column} {decl}"
                )))
                .execute(&pool)
                .await;
                // Another process (`status` beside a starting daemon) may have added it first.
                if let Err(e) = added
                    && present(table, column)
                        .await
                        .map_err(|e| fail(e.to_string()))?
                        == 0
                {
                    return Err(fail(e.to_string()));
                }
            }
        }
        sqlx::raw_sql(ADDED_INDEXES)
            .execute(&pool)
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok(State {
            pool,
            runs: Default::default(),
            watermarks: Default::default(),
            rereads: Default::default(),
            cipher: None,
            path,
        })
    }

    /// Open the store with the configured `state_cipher`.
    pub async fn open_with(
        dir: &Path,
        cipher: Option<crate::cipher::Cipher>,
    ) -> Result<State, StateError> {
        let mut st = State::open(dir).await?;
        st.cipher = cipher;
        Ok(st)
    }

    /// Write what is kept in memory, and close.
    pub async fn close(&self) {
        if let Err(e) = self.flush().await {
            tracing::warn!("cannot record the tables' last runs: {e}");
        }
        self.pool.close().await;
    }

    /// A table's watermark: as this process last committed or read it (only the agent that
    /// holds the state directory's lock commits watermarks), else as the store has it.
    pub async fn watermark(&self, table: &str) -> Result<Option<Watermark>, StateError> {
        if let Some(w) = self.watermarks().get(table) {
            return Ok(w.clone());
        }
        let wm: Option<Option<String>> =
            sqlx::query_scalar("SELECT watermark FROM tables WHERE tbl = ?")
                .bind(table)
                .fetch_optional(&self.pool)
                .await
                .map_err(q("reading a watermark"))?;
        let wm = wm
            .flatten()
            .and_then(|s| serde_json::from_str::<Watermark>(&s).ok());
        self.watermarks().insert(table.to_owned(), wm.clone());
        Ok(wm)
    }

    fn watermarks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<Watermark>>> {
        self.watermarks.lock().unwrap_or_else(|e| e.into_inner())
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
        // Many rows per statement: one statement per row costs more than the row itself.
        for chunk in c.digests.chunks(DIGESTS_PER_STATEMENT) {
            let mut text =
                String::from("INSERT INTO digests (tbl, rkey, digest, ts, kvals) VALUES ");
            for i in 0..chunk.len() {
                text.push_str(if i == 0 {
                    "(?, ?, ?, ?, ?)"
                } else {
                    ", (?, ?, ?, ?, ?)"
                });
            }
            text.push_str(
                " ON CONFLICT (tbl, rkey) DO UPDATE SET digest = excluded.digest, \
                 ts = excluded.ts, kvals = excluded.kvals",
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(text));
            for d in chunk {
                query = query
                    .bind(c.table)
                    .bind(&d.rkey)
                    .bind(&d.digest[..])
                    .bind(&d.ts)
                    .bind(&d.kvals);
            }
            query.execute(&mut *tx).await.map_err(&e)?;
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
        rejects::quarantine(
            &mut tx,
            self.cipher.as_ref(),
            c.table,
            c.batch_id,
            c.rejects,
            &now,
        )
        .await
        .map_err(&e)?;
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
        rejects::resubmitted(
            &mut tx,
            c.table,
            c.delivered,
            c.resubmit_why,
            &now,
            c.accepted,
        )
        .await
        .map_err(&e)?;
        tx.commit().await.map_err(&e)?;
        if let Some(w) = c.watermark {
            self.watermarks()
                .insert(c.table.to_owned(), Some(w.clone()));
        }
        Ok(())
    }

    /// A value the agent keeps between runs (feedback and mirror positions).
    pub async fn meta(&self, key: &str) -> Result<Option<String>, StateError> {
        sqlx::query_scalar("SELECT v FROM meta WHERE k = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("reading the state"))
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(q("writing the state"))?;
        Ok(())
    }

    /// Every table the store knows, for `status`.
    pub async fn tables(&self) -> Result<Vec<TableState>, StateError> {
        let e = q("reading table states");
        // The runs' columns (`runs::COLUMNS`, from position 5) name the table's own: the
        // subqueries read other tables under their own names.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT t.tbl, t.watermark, t.rows_total, t.deletes_total, t.newest_change, {}, \
             (SELECT count(*) FROM rejects r WHERE r.tbl = t.tbl AND r.state = 'open'), \
             (SELECT coalesce(sum(b.rows + b.deletes), 0) FROM batches b \
              WHERE b.tbl = t.tbl AND b.status = 'acked' AND b.finished >= ?) \
             FROM tables t ORDER BY t.tbl",
            runs::COLUMNS
        )))
        .bind(ts(Utc::now() - chrono::Duration::hours(24)))
        .fetch_all(&self.pool)
        .await
        .map_err(&e)?;
        let mut out = Vec::new();
        for r in rows {
            let watermark: Option<String> = r.try_get(1).map_err(&e)?;
            let mut t = TableState {
                table: r.try_get(0).map_err(&e)?,
                watermark: watermark
                    .and_then(|w| serde_json::from_str::<Watermark>(&w).ok())
                    .map(|w| w.to_string()),
                rows_total: r.try_get(2).map_err(&e)?,
                deletes_total: r.try_get(3).map_err(&e)?,
                newest_change: r.try_get(4).map_err(&e)?,
                open_rejects: r.try_get(16).map_err(&e)?,
                rows_24h: r.try_get(17).map_err(&e)?,
                ..TableState::default()
            };
            t.overlay(&runs::runs_at(&r, 5).map_err(&e)?);
            out.push(t);
        }
        let kept = self.runs_now();
        for t in &mut out {
            if let Some(r) = kept.get(&t.table) {
                t.overlay(r);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod purge_tests;
