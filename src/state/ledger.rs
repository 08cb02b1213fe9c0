//! The batch ledger: every batch as it was begun (id, number, the rows' digest, the exchange
//! time), and whether it was acknowledged.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{State, StateError, parse_ts, q, ts};

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
    /// A digest of the rows read (see [`State::unacknowledged`]).
    pub content: String,
    /// The exchange time its rows carry.
    pub sent_at: DateTime<Utc>,
}

/// A batch begun earlier: what a batch of the same rows is sent again as.
#[derive(Clone, Debug, PartialEq)]
pub struct Sent {
    pub id: String,
    pub cd_batch: String,
    pub at: DateTime<Utc>,
}

impl State {
    /// The next batch number of the day: `yyyyMMdd` + the 5-character counter of
    /// [`super::counter`]; an error once the day has no number left.
    pub async fn next_cd_batch(&self, day: &str) -> Result<String, StateError> {
        let n: i64 = sqlx::query_scalar(
            "INSERT INTO counters (day, n) VALUES (?, 1) \
             ON CONFLICT (day) DO UPDATE SET n = n + 1 RETURNING n",
        )
        .bind(day)
        .fetch_one(&self.pool)
        .await
        .map_err(q("counting batches"))?;
        match super::counter::counter(n) {
            Some(c) => Ok(format!("{day}{c}")),
            None => Err(StateError::Query {
                doing: "numbering a batch",
                cause: format!(
                    "day {day} already has {} batches, all that its 5-character cd_batch \
                     counter can number; the batch waits for the next day",
                    super::counter::MAX
                ),
            }),
        }
    }

    pub async fn batch_started(
        &self,
        b: &LedgerEntry,
        at: DateTime<Utc>,
    ) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO batches (id, tbl, cd_batch, wm_from, wm_to, rows, deletes, rejected, status, started, content, sent_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'sending', ?, ?, ?) \
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
        .bind(&b.content)
        .bind(ts(b.sent_at))
        .execute(&self.pool)
        .await
        .map_err(q("recording a batch"))?;
        Ok(())
    }

    /// The batch of these rows (`content`) of `table` that was begun and never
    /// acknowledged, while no batch after it was: the same rows are sent again as that one
    /// (its id, number and exchange time). A batch after it acknowledged supersedes it: rows
    /// equal to it sent now are new rows, under a new id.
    pub async fn unacknowledged(
        &self,
        table: &str,
        content: &str,
    ) -> Result<Option<Sent>, StateError> {
        let row = sqlx::query(
            "SELECT b.id, b.cd_batch, coalesce(b.sent_at, b.started) AS sent_at FROM batches b \
             WHERE b.tbl = ? AND b.content = ? AND b.status <> 'acked' \
             AND NOT EXISTS (SELECT 1 FROM batches a WHERE a.tbl = b.tbl \
                             AND a.status = 'acked' AND a.rowid > b.rowid) \
             ORDER BY b.rowid DESC LIMIT 1",
        )
        .bind(table)
        .bind(content)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("reading a batch"))?;
        let Some(r) = row else { return Ok(None) };
        let sent_at: String = r.get("sent_at");
        Ok(Some(Sent {
            id: r.get("id"),
            cd_batch: r.get("cd_batch"),
            at: parse_ts(&sent_at).unwrap_or_else(Utc::now),
        }))
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

    /// Forget acknowledged batches finished before `before`.
    pub async fn prune_ledger(&self, before: DateTime<Utc>) -> Result<u64, StateError> {
        let r = sqlx::query("DELETE FROM batches WHERE status = 'acked' AND finished < ?")
            .bind(ts(before))
            .execute(&self.pool)
            .await
            .map_err(q("pruning the ledger"))?;
        Ok(r.rows_affected())
    }
}
