//! Retention: forgetting what is no longer needed, for good. The store runs with
//! `secure_delete` (a deleted value is overwritten in its page), and a purge ends by giving
//! the freed pages back and emptying the write-ahead log, so that a removed value is gone
//! from the bytes of `state.db` and of `state.db-wal` alike.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{State, StateError, q, ts};

/// What a purge removes: records older than their kind's cut-off.
#[derive(Debug, Clone)]
pub struct PurgePlan {
    /// Acknowledged batches finished before this leave the ledger.
    pub ledger_before: DateTime<Utc>,
    /// Cleared rejects (their row copy and history) cleared before this are removed.
    pub cleared_before: DateTime<Utc>,
    /// The tables the configuration names: digests of any other table are removed.
    pub configured: Vec<String>,
}

/// How many records of each kind a purge removed (or would remove, on a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Purged {
    pub acknowledged_batches: u64,
    pub cleared_rejects: u64,
    pub reject_history: u64,
    pub unconfigured_digests: u64,
}

impl Purged {
    pub fn total(&self) -> u64 {
        self.acknowledged_batches
            + self.cleared_rejects
            + self.reject_history
            + self.unconfigured_digests
    }
}

/// Each kind: how to count it and how to remove it, with the same binds (the cut-off, or
/// the configured tables as a JSON array). History goes before its rejects.
const BATCHES: &str = "FROM batches WHERE status = 'acked' AND finished < ?";
const HISTORY: &str = "FROM reject_events WHERE reject_id IN \
     (SELECT id FROM rejects WHERE state = 'cleared' AND cleared < ?)";
const REJECTS: &str = "FROM rejects WHERE state = 'cleared' AND cleared < ?";
const DIGESTS: &str = "FROM digests WHERE tbl NOT IN (SELECT value FROM json_each(?))";

impl State {
    /// Remove (or, with `dry_run`, count) what the plan no longer needs; when something was
    /// removed, reclaim the space so that none of it stays readable in the files.
    pub async fn purge(&self, p: &PurgePlan, dry_run: bool) -> Result<Purged, StateError> {
        let e = q("purging");
        let ledger = ts(p.ledger_before);
        let cleared = ts(p.cleared_before);
        let tables = serde_json::to_string(&p.configured).unwrap_or_else(|_| "[]".into());
        let mut tx = self.pool.begin().await.map_err(&e)?;
        let mut n = [0u64; 4];
        for (i, (from, bind)) in [
            (BATCHES, &ledger),
            (HISTORY, &cleared),
            (REJECTS, &cleared),
            (DIGESTS, &tables),
        ]
        .into_iter()
        .enumerate()
        {
            let verb = if dry_run { "SELECT count(*)" } else { "DELETE" };
            let sql = sqlx::AssertSqlSafe(format!("{verb} {from}"));
            n[i] = if dry_run {
                let c: i64 = sqlx::query_scalar(sql)
                    .bind(bind)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(&e)?;
                c as u64
            } else {
                sqlx::query(sql)
                    .bind(bind)
                    .execute(&mut *tx)
                    .await
                    .map_err(&e)?
                    .rows_affected()
            };
        }
        tx.commit().await.map_err(&e)?;
        let out = Purged {
            acknowledged_batches: n[0],
            reject_history: n[1],
            cleared_rejects: n[2],
            unconfigured_digests: n[3],
        };
        if !dry_run && out.total() > 0 {
            self.reclaim().await?;
        }
        Ok(out)
    }

    /// Give freed pages back to the file system and empty the write-ahead log.
    pub async fn reclaim(&self) -> Result<(), StateError> {
        let e = q("reclaiming the space of removed records");
        let mut conn = self.pool.acquire().await.map_err(&e)?;
        let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
            .fetch_one(&mut *conn)
            .await
            .map_err(&e)?;
        // 2 = incremental.
        if mode == 2 {
            sqlx::raw_sql("PRAGMA incremental_vacuum")
                .execute(&mut *conn)
                .await
                .map_err(&e)?;
        } else {
            // A store made before incremental vacuum keeps its mode: switching needs the
            // store to leave WAL mode, which no other process may share. Rewriting the
            // whole file reclaims the space as well.
            sqlx::raw_sql("VACUUM")
                .execute(&mut *conn)
                .await
                .map_err(&e)?;
        }
        // A reader (`status` beside the daemon) can hold the log for a moment: try again.
        for _ in 0..50 {
            let r = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&mut *conn)
                .await
                .map_err(&e)?;
            let busy: i64 = r.try_get(0).map_err(&e)?;
            if busy == 0 {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(StateError::Query {
            doing: "emptying the write-ahead log after a purge",
            cause: "another process kept reading the state store; the removed records are \
                    overwritten, and the log is emptied by the next purge"
                .into(),
        })
    }
}
