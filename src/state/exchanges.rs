//! The acknowledged batches of a period, as the monthly report reads them.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{State, StateError, parse_ts, q, ts};

/// One acknowledged batch: when it was acknowledged and what it carried.
#[derive(Clone, Debug, PartialEq)]
pub struct Exchanged {
    pub at: DateTime<Utc>,
    pub rows: i64,
    pub deletes: i64,
    pub rejected: i64,
}

impl State {
    /// `table`'s batches acknowledged in [`from`, `to`), in the order they were.
    pub async fn exchanged(
        &self,
        table: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Exchanged>, StateError> {
        let rows = sqlx::query(
            "SELECT finished, rows, deletes, rejected FROM batches \
             WHERE tbl = ? AND status = 'acked' AND finished >= ? AND finished < ? \
             ORDER BY finished",
        )
        .bind(table)
        .bind(ts(from))
        .bind(ts(to))
        .fetch_all(&self.pool)
        .await
        .map_err(q("reading the ledger"))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let at: String = r.try_get(0).ok()?;
                Some(Exchanged {
                    at: parse_ts(&at)?,
                    rows: r.try_get(1).ok()?,
                    deletes: r.try_get(2).ok()?,
                    rejected: r.try_get(3).ok()?,
                })
            })
            .collect())
    }

    /// When `table`'s last batch before `before` was acknowledged.
    pub async fn exchanged_before(
        &self,
        table: &str,
        before: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StateError> {
        let at: Option<String> = sqlx::query_scalar(
            "SELECT max(finished) FROM batches WHERE tbl = ? AND status = 'acked' AND finished < ?",
        )
        .bind(table)
        .bind(ts(before))
        .fetch_one(&self.pool)
        .await
        .map_err(q("reading the ledger"))?;
        Ok(at.as_deref().and_then(parse_ts))
    }
}
