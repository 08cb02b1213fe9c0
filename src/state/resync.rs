//! Full resyncs in the state store: requested, running (with the last key of the last
//! finished chunk), done or failed.

use chrono::Utc;
use sqlx::Row;

use super::{ResyncState, State, StateError, q, ts};

impl State {
    /// Ask for a full resync of a table. A resync already running keeps running; otherwise a
    /// new one is recorded as requested. Returns the state it is in afterwards.
    pub async fn request_resync(&self, table: &str) -> Result<ResyncState, StateError> {
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
        ResyncState::parse(&state).ok_or_else(|| StateError::Query {
            doing: "requesting a resync",
            cause: format!("`{state}` is not a resync state"),
        })
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
}

const RESYNC_COLUMNS: &str = "SELECT run_id, state, requested, started, finished, last_key, \
     chunks, rows, deleted, total, resumed, error FROM resyncs WHERE tbl = ?";

/// A table's full resync, as `status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Resync {
    pub run_id: String,
    pub state: ResyncState,
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
        state: super::rejects::word(r, 1, "resync state", ResyncState::parse)?,
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
