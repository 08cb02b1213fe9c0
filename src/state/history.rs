//! The batch ledger read back for people: rows exchanged per day and the last batches of a
//! table (the console's charts and lists).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{State, StateError, q, ts};
use crate::watermark::Watermark;

/// One day of a table's acknowledged batches.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Day {
    /// The day in the agent's time zone, `YYYY-MM-DD`.
    pub day: String,
    pub batches: i64,
    pub rows: i64,
    pub deletes: i64,
    pub rejected: i64,
    /// When the day's last batch that moved the watermark was acknowledged, and the newest
    /// change time it carried (as the watermark says, in the source's own notation): the lag
    /// at the end of the day.
    pub last_finished: String,
    pub last_change: Option<String>,
}

/// One batch of the ledger.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BatchRow {
    pub id: String,
    pub cd_batch: String,
    pub rows: i64,
    pub deletes: i64,
    pub rejected: i64,
    pub status: String,
    pub started: String,
    pub finished: Option<String>,
    pub error: Option<String>,
}

impl State {
    /// The acknowledged batches of `table` finished since `since`, per day of a zone
    /// `offset_seconds` east of UTC, oldest day first.
    pub async fn days(
        &self,
        table: &str,
        since: DateTime<Utc>,
        offset_seconds: i32,
    ) -> Result<Vec<Day>, StateError> {
        let e = q("reading the batch ledger");
        // The lag at the day's end is read from its last batch that moved the watermark
        // (a resubmission's batch carries none).
        let rows = sqlx::query(
            "WITH b AS (SELECT date(finished, ?2) AS day, finished, rows, deletes, rejected, wm_to \
               FROM batches WHERE tbl = ?1 AND status = 'acked' AND finished >= ?3), \
             last AS (SELECT day, max(finished) AS finished FROM b WHERE wm_to IS NOT NULL GROUP BY day) \
             SELECT b.day, count(*), sum(b.rows), sum(b.deletes), sum(b.rejected), \
               coalesce(last.finished, max(b.finished)), \
               (SELECT wm_to FROM b AS w WHERE w.day = b.day AND w.finished = last.finished) \
             FROM b LEFT JOIN last ON last.day = b.day GROUP BY b.day ORDER BY b.day",
        )
        .bind(table)
        .bind(format!("{offset_seconds:+} seconds"))
        .bind(ts(since))
        .fetch_all(&self.pool)
        .await
        .map_err(&e)?;
        rows.iter()
            .map(|r| {
                let wm: Option<String> = r.try_get(6)?;
                Ok(Day {
                    day: r.try_get(0)?,
                    batches: r.try_get(1)?,
                    rows: r.try_get(2)?,
                    deletes: r.try_get(3)?,
                    rejected: r.try_get(4)?,
                    last_finished: r.try_get(5)?,
                    last_change: wm
                        .and_then(|w| serde_json::from_str::<Watermark>(&w).ok())
                        .and_then(|w| w.ts.map(|t| t.to_text())),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(&e)
    }

    /// The latest `n` batches of `table`, newest first.
    pub async fn last_batches(&self, table: &str, n: i64) -> Result<Vec<BatchRow>, StateError> {
        let e = q("reading the batch ledger");
        let rows = sqlx::query(
            "SELECT id, cd_batch, rows, deletes, rejected, status, started, finished, error \
             FROM batches WHERE tbl = ? ORDER BY started DESC LIMIT ?",
        )
        .bind(table)
        .bind(n)
        .fetch_all(&self.pool)
        .await
        .map_err(&e)?;
        rows.iter()
            .map(|r| {
                Ok(BatchRow {
                    id: r.try_get(0)?,
                    cd_batch: r.try_get(1)?,
                    rows: r.try_get(2)?,
                    deletes: r.try_get(3)?,
                    rejected: r.try_get(4)?,
                    status: r.try_get(5)?,
                    started: r.try_get(6)?,
                    finished: r.try_get(7)?,
                    error: r.try_get(8)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(&e)
    }
}
