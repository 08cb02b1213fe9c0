//! What `status` says about each table's runs (when the last began and ended, how long it
//! took, how it ended, when the next is due), kept in memory and written to the store only
//! when it changes meaningfully — the outcome, the error, the warnings, rows moved — and
//! otherwise by a flush every few minutes that writes every table's in one transaction.
//! Quiet tables then cost the disk one commit every few minutes: hundreds of tables polled
//! every few seconds would otherwise write to it without pause. After a crash, what the
//! store says of idle runs is at most [`FLUSH_EVERY`] stale; of data, never (batches commit
//! their watermark and figures themselves).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Outcome, State, StateError, q, ts};

/// Longest time a run is kept in memory only.
pub const FLUSH_EVERY: Duration = Duration::from_secs(300);

/// A table's runs as `status` shows them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Runs {
    pub last_started: Option<String>,
    pub last_finished: Option<String>,
    pub last_outcome: Option<String>,
    pub last_error: Option<String>,
    pub last_rows: Option<i64>,
    pub last_ms: Option<i64>,
    pub next_run: Option<String>,
    pub warnings: Vec<String>,
    /// Consecutive failed runs, and since when the table has been failing.
    pub failures: i64,
    pub failing_since: Option<String>,
    pub last_success: Option<String>,
}

/// One table's runs in memory, and whether they changed since they were written.
#[derive(Debug)]
pub(super) struct Kept {
    runs: Runs,
    dirty: bool,
}

/// How one run ended.
#[derive(Debug)]
pub struct CycleEnd<'a> {
    pub table: &'a str,
    pub outcome: Outcome,
    pub error: Option<&'a str>,
    pub rows: u64,
    pub millis: u64,
    pub warnings: &'a [String],
}

pub(super) const COLUMNS: &str = "last_started, last_finished, last_outcome, last_error, last_rows, \
     last_ms, next_run, warnings, failures, failing_since, last_success";

impl State {
    /// A table's runs as kept: in memory, else as the store has them.
    async fn kept(&self, table: &str) -> Result<Runs, StateError> {
        if let Some(k) = self.runs().get(table) {
            return Ok(k.runs.clone());
        }
        let e = q("reading a table's runs");
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tables WHERE tbl = ?"
        )))
        .bind(table)
        .fetch_optional(&self.pool)
        .await
        .map_err(&e)?;
        match row {
            Some(r) => runs_at(&r, 0).map_err(&e),
            None => Ok(Runs::default()),
        }
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Change a table's kept runs in place (read from the store the first time); `f` says
    /// whether the change is meaningful (written at once). Otherwise they wait for the next
    /// [`State::flush`]. A quiet run changes its times only, and copies nothing.
    async fn change(
        &self,
        table: &str,
        f: impl FnOnce(&mut Runs) -> bool,
    ) -> Result<(), StateError> {
        if !self.runs().contains_key(table) {
            let runs = self.kept(table).await?;
            self.runs()
                .entry(table.to_owned())
                .or_insert(Kept { runs, dirty: false });
        }
        let due = {
            let mut all = self.runs();
            let Some(k) = all.get_mut(table) else {
                return Ok(());
            };
            let now = f(&mut k.runs);
            k.dirty = true;
            now.then(|| k.runs.clone())
        };
        if let Some(runs) = due {
            let mut conn = self
                .pool
                .acquire()
                .await
                .map_err(q("recording a table's runs"))?;
            write_runs(&mut conn, table, &runs).await?;
            if let Some(k) = self.runs().get_mut(table)
                && k.runs == runs
            {
                k.dirty = false;
            }
        }
        Ok(())
    }

    pub async fn cycle_started(&self, table: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        self.change(table, |r| {
            r.last_started = Some(ts(at));
            false
        })
        .await
    }

    /// A run ended. Written at once when it moved rows, or its outcome, error, warnings or
    /// failures changed; a quiet run like the one before is kept in memory.
    pub async fn cycle_finished(&self, c: &CycleEnd<'_>) -> Result<(), StateError> {
        self.change(c.table, |r| {
            let now = ts(Utc::now());
            let failed = c.outcome == Outcome::Failed;
            let outcome = c.outcome.as_str();
            let meaningful = c.rows > 0
                || r.last_outcome.as_deref() != Some(outcome)
                || r.last_error.as_deref() != c.error
                || r.warnings != c.warnings
                || (r.failures == 0) == failed;
            r.last_finished = Some(now.clone());
            // A quiet cycle (nothing to send, nothing said, as before) keeps the warnings of
            // the last cycle that did something: a realtime table would otherwise clear a
            // warning a second after it was made, before anyone (or an alert) saw it.
            let quiet = c.rows == 0
                && c.warnings.is_empty()
                && !failed
                && r.last_outcome.as_deref() == Some(outcome);
            if meaningful {
                r.last_outcome = Some(outcome.to_owned());
                r.last_error = c.error.map(str::to_owned);
                if !quiet {
                    r.warnings = c.warnings.to_vec();
                }
            }
            r.last_rows = Some(c.rows as i64);
            r.last_ms = Some(c.millis as i64);
            if failed {
                r.failures += 1;
                if r.failing_since.is_none() {
                    r.failing_since = r.last_started.clone();
                }
            } else {
                r.failures = 0;
                r.failing_since = None;
            }
            if c.outcome == Outcome::Ok {
                r.last_success = Some(now);
            }
            meaningful
        })
        .await
    }

    pub async fn set_next_run(&self, table: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        self.change(table, |r| {
            r.next_run = Some(ts(at));
            false
        })
        .await
    }

    /// Every table's runs kept in memory, as a running daemon tells `status`.
    pub fn runs_now(&self) -> HashMap<String, Runs> {
        self.runs()
            .iter()
            .map(|(t, k)| (t.clone(), k.runs.clone()))
            .collect()
    }

    /// Write, in one transaction, every table's runs and quiet re-reads kept in memory
    /// only: every [`FLUSH_EVERY`] while the daemon runs, and when the agent stops. One
    /// transaction for all the tables, not one each: hundreds of quiet tables then cost the
    /// disk one commit every few minutes.
    pub async fn flush(&self) -> Result<(), StateError> {
        let dirty: Vec<(String, Runs)> = self
            .runs()
            .iter()
            .filter(|(_, k)| k.dirty)
            .map(|(t, k)| (t.clone(), k.runs.clone()))
            .collect();
        let rereads: Vec<(String, crate::watermark::Reread)> = self
            .rereads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        if dirty.is_empty() && rereads.is_empty() {
            return Ok(());
        }
        let e = q("recording the tables' runs");
        let mut tx = self.pool.begin().await.map_err(&e)?;
        for (t, r) in &dirty {
            write_runs(&mut tx, t, r).await?;
        }
        for (t, r) in &rereads {
            super::reread::write_reread(&mut tx, t, r).await?;
        }
        tx.commit().await.map_err(&e)?;
        let mut all = self.runs();
        for (t, r) in dirty {
            if let Some(k) = all.get_mut(&t) {
                k.dirty = k.runs != r;
            }
        }
        Ok(())
    }
}

async fn write_runs(
    conn: &mut sqlx::SqliteConnection,
    table: &str,
    r: &Runs,
) -> Result<(), StateError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO tables (tbl, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (tbl) DO UPDATE SET last_started = excluded.last_started, \
         last_finished = excluded.last_finished, last_outcome = excluded.last_outcome, \
         last_error = excluded.last_error, last_rows = excluded.last_rows, \
         last_ms = excluded.last_ms, next_run = excluded.next_run, \
         warnings = excluded.warnings, failures = excluded.failures, \
         failing_since = excluded.failing_since, last_success = excluded.last_success"
    )))
    .bind(table)
    .bind(&r.last_started)
    .bind(&r.last_finished)
    .bind(&r.last_outcome)
    .bind(&r.last_error)
    .bind(r.last_rows)
    .bind(r.last_ms)
    .bind(&r.next_run)
    .bind(serde_json::to_string(&r.warnings).unwrap_or_default())
    .bind(r.failures)
    .bind(&r.failing_since)
    .bind(&r.last_success)
    .execute(conn)
    .await
    .map_err(q("recording a table's runs"))?;
    Ok(())
}

/// A table's runs from a row that holds [`COLUMNS`] from position `at` on.
pub(super) fn runs_at(r: &sqlx::sqlite::SqliteRow, at: usize) -> Result<Runs, sqlx::Error> {
    let warnings: Option<String> = r.try_get(at + 7)?;
    Ok(Runs {
        last_started: r.try_get(at)?,
        last_finished: r.try_get(at + 1)?,
        last_outcome: r.try_get(at + 2)?,
        last_error: r.try_get(at + 3)?,
        last_rows: r.try_get(at + 4)?,
        last_ms: r.try_get(at + 5)?,
        next_run: r.try_get(at + 6)?,
        warnings: warnings
            .and_then(|w| serde_json::from_str(&w).ok())
            .unwrap_or_default(),
        failures: r.try_get(at + 8)?,
        failing_since: r.try_get(at + 9)?,
        last_success: r.try_get(at + 10)?,
    })
}
