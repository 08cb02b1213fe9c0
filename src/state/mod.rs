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
use sqlx::{ConnectOptions, Connection, Row};

use crate::watermark::Watermark;

mod rejects;
mod reread;
mod resync;

pub use rejects::RejectRow;
pub use resync::Resync;

const SCHEMA: &str = include_str!("schema.sql");

/// Columns added after the first release: (table, column, declaration). Added when missing,
/// so a state store written by an older agent keeps working.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("tables", "failures", "INTEGER NOT NULL DEFAULT 0"),
    ("tables", "failing_since", "TEXT"),
    ("rejects", "updated", "TEXT"),
    ("tables", "last_success", "TEXT"),
    ("tables", "reread", "TEXT"),
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
    /// Why open rejects among `delivered` were sent again (for their history).
    pub resubmit_why: &'a str,
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
    /// When a cycle last succeeded.
    pub last_success: Option<String>,
    /// Rows sent and deleted in the last 24 hours.
    pub rows_24h: i64,
}

pub struct State {
    pool: SqlitePool,
    pub path: PathBuf,
}

/// Digest rows per `INSERT` (5 parameters each; SQLite allows 32,766).
const DIGESTS_PER_STATEMENT: usize = 500;

/// Digests packed into one result row when they are read back.
const DIGESTS_PER_ROW: usize = 2000;

/// The texts packed one after another in `text`, cut at the byte lengths listed in `lens`
/// (comma-separated); `None` when they do not add up.
fn unpack<'a>(lens: &str, text: &'a str) -> Option<Vec<&'a str>> {
    let mut parts = Vec::new();
    let mut at = 0usize;
    for l in lens.split(',').filter(|l| !l.is_empty()) {
        let end = at.checked_add(l.parse::<usize>().ok()?)?;
        parts.push(text.get(at..end)?);
        at = end;
    }
    (at == text.len()).then_some(parts)
}

/// Put one packed page of digests into `out`: `n` rows, their keys (lengths, texts), their
/// digests in hex, and with `kvals` their key values (lengths, texts). How many it held.
fn unpack_digests(
    n: i64,
    keys: (&str, &str),
    hex: &str,
    kvals: Option<(&str, &str)>,
    out: &mut HashMap<String, ([u8; 16], String)>,
) -> Result<usize, StateError> {
    let bad = |what: &str| StateError::Query {
        doing: "reading digests",
        cause: format!("a packed page of digests does not add up ({what})"),
    };
    let n = usize::try_from(n).map_err(|_| bad("count"))?;
    let keys = unpack(keys.0, keys.1).ok_or_else(|| bad("keys"))?;
    let kvals = kvals
        .map(|(l, t)| unpack(l, t).ok_or_else(|| bad("key values")))
        .transpose()?;
    if keys.len() != n || hex.len() != n * 32 || kvals.as_ref().is_some_and(|k| k.len() != n) {
        return Err(bad("counts"));
    }
    out.reserve(n);
    for (i, (key, h)) in keys
        .into_iter()
        .zip(hex.as_bytes().chunks_exact(32))
        .enumerate()
    {
        let mut digest = [0u8; 16];
        hex::decode_to_slice(h, &mut digest).map_err(|_| bad("digests"))?;
        let kv = kvals.as_ref().map_or_else(String::new, |k| k[i].to_owned());
        out.insert(key.to_owned(), (digest, kv));
    }
    Ok(n)
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
            // Normal: a commit survives the process being killed, and only a power loss can
            // undo the last ones -- which then makes the agent send those batches again, and
            // every write at the exchange is idempotent. Full would add an fsync per batch.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .disable_statement_logging();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // A connection whose transaction did not end cleanly is closed, never reused.
            // SQLite rolls a transaction back by itself when a write fails with a full disk
            // (SQLITE_FULL); sqlx's own ROLLBACK then fails and it still counts the
            // transaction open, so on that connection the next transaction would begin as a
            // SAVEPOINT that its COMMIT only releases: a write transaction left open for
            // good, the state store "locked" for every other connection and what is written
            // on this one never committed (found by the soak, docs/soak.md).
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

    /// Digests of a table's remembered rows, optionally only those changed at or after `since`;
    /// with `keys`, each with its key values (JSON), else with an empty text.
    pub async fn digests(
        &self,
        table: &str,
        since: Option<&str>,
        keys: bool,
    ) -> Result<HashMap<String, ([u8; 16], String)>, StateError> {
        // Read a row at a time, 100,000 digests took 0.21-0.28 s, mostly in the driver, not
        // in SQLite; packed, 0.13-0.15 s. So the digests are read in pages of DIGESTS_PER_ROW
        // rows, in index order, each packed by SQLite into one row: the keys' byte lengths,
        // the keys one after another, the digests in hex, and (with `keys`) the same for the
        // key values. A page ends where
        // the next begins (its last row is read by position), and all pages are read in one
        // transaction, so a commit meanwhile cannot shift them. A digest not 16 bytes long
        // (never written so) reads as zeros, which matches no row.
        let e = q("reading digests");
        // After the first page, only the cursor bounds the scan: with the time as well,
        // SQLite would start every page at the time.
        let (first, next, order) = match since {
            Some(_) => (
                "tbl = ? AND ts >= ?",
                "tbl = ? AND (ts, digest, rkey) > (?, ?, ?)",
                "ts, digest, rkey",
            ),
            None => ("tbl = ?", "tbl = ? AND rkey > ?", "rkey"),
        };
        let (cols, kv) = if keys {
            (
                "rkey, digest, kvals",
                "group_concat(length(CAST(kvals AS BLOB)), ','), group_concat(kvals, '')",
            )
        } else {
            ("rkey, digest", "'', ''")
        };
        let page = |more: bool| {
            let filter = if more { next } else { first };
            format!(
                "SELECT count(*), group_concat(length(CAST(rkey AS BLOB)), ','), \
                 group_concat(rkey, ''), group_concat(CASE WHEN length(digest) = 16 \
                 THEN hex(digest) ELSE '{zero}' END, ''), {kv} FROM (SELECT {cols} \
                 FROM digests WHERE {filter} ORDER BY {order} LIMIT {DIGESTS_PER_ROW})",
                zero = "0".repeat(32),
            )
        };
        let last = |more: bool| {
            let filter = if more { next } else { first };
            format!(
                "SELECT ts, digest, rkey FROM digests WHERE {filter} ORDER BY {order} \
                 LIMIT 1 OFFSET {}",
                DIGESTS_PER_ROW - 1
            )
        };
        let (first_page, next_page, first_last, next_last) =
            (page(false), page(true), last(false), last(true));
        let mut tx = self.pool.begin().await.map_err(&e)?;
        let mut out = HashMap::new();
        let mut cursor: Option<(Option<String>, Vec<u8>, String)> = None;
        loop {
            // Fixed texts above; the table, the time and the cursor are bound.
            let bind = |sql: &str| {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).bind(table);
                match (&cursor, since) {
                    (None, Some(s)) => query = query.bind(s),
                    (None, None) => {}
                    (Some((ts, digest, rkey)), s) => {
                        if s.is_some() {
                            query = query.bind(ts.clone()).bind(digest.clone());
                        }
                        query = query.bind(rkey.clone());
                    }
                }
                query
            };
            let more = cursor.is_some();
            let r = bind(if more { &next_page } else { &first_page })
                .fetch_one(&mut *tx)
                .await
                .map_err(&e)?;
            let n: i64 = r.try_get(0).map_err(&e)?;
            let text = |i: usize| -> Result<&str, StateError> {
                Ok(r.try_get::<Option<&str>, _>(i).map_err(&e)?.unwrap_or(""))
            };
            let got = unpack_digests(
                n,
                (text(1)?, text(2)?),
                text(3)?,
                keys.then_some((text(4)?, text(5)?)),
                &mut out,
            )?;
            if got < DIGESTS_PER_ROW {
                break;
            }
            let row = bind(if more { &next_last } else { &first_last })
                .fetch_optional(&mut *tx)
                .await
                .map_err(&e)?;
            let Some(row) = row else { break };
            cursor = Some((
                row.try_get(0).map_err(&e)?,
                row.try_get(1).map_err(&e)?,
                row.try_get(2).map_err(&e)?,
            ));
        }
        tx.rollback().await.map_err(&e)?;
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
        rejects::quarantine(&mut tx, c.table, c.batch_id, c.rejects, &now)
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
        rejects::resubmitted(&mut tx, c.table, c.delivered, c.resubmit_why, &now)
            .await
            .map_err(&e)?;
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
             last_success = CASE WHEN ? = 'ok' THEN ? ELSE last_success END, \
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
        .bind(c.outcome)
        .bind(ts(Utc::now()))
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
             t.failures, t.failing_since, t.last_success, \
             (SELECT coalesce(sum(b.rows + b.deletes), 0) FROM batches b \
              WHERE b.tbl = t.tbl AND b.status = 'acked' AND b.finished >= ?) \
             FROM tables t ORDER BY t.tbl",
        )
        .bind(ts(Utc::now() - chrono::Duration::hours(24)))
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
                last_success: r.try_get(16).map_err(&e)?,
                rows_24h: r.try_get(17).map_err(&e)?,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
