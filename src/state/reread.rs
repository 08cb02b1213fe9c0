//! What a timestamp-like table's lookback re-read needs from the state store beyond the
//! watermark: where its last complete re-read began and the source's transactions then
//! ([`Reread`]), and the digests of only the rows that may have been exchanged already.

use std::collections::HashMap;

use sqlx::Row;

use super::{State, StateError, q};
use crate::watermark::Reread;

/// Record keys looked up per statement (one parameter each besides the table).
const KEYS_PER_LOOKUP: usize = 500;

impl State {
    /// The table's last complete re-read of its lookback window; `None` when none is
    /// recorded (or the record cannot be read, which only makes the next re-read whole).
    pub async fn reread(&self, table: &str) -> Result<Option<Reread>, StateError> {
        if let Some(r) = self
            .rereads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(table)
        {
            return Ok(Some(r.clone()));
        }
        let r: Option<Option<String>> =
            sqlx::query_scalar("SELECT reread FROM tables WHERE tbl = ?")
                .bind(table)
                .fetch_optional(&self.pool)
                .await
                .map_err(q("reading the last re-read"))?;
        Ok(r.flatten().and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Record a complete re-read of the table's lookback window: at once when `now` (rows
    /// moved), else by the next [`State::flush`] (a quiet table's record, whose loss after a
    /// crash only makes the next re-read whole).
    pub async fn set_reread(&self, table: &str, r: &Reread, now: bool) -> Result<(), StateError> {
        if !now {
            self.rereads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(table.to_owned(), r.clone());
            return Ok(());
        }
        self.rereads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(table);
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(q("recording a re-read"))?;
        write_reread(&mut conn, table, r).await
    }

    /// The latest change time (as stored, sortable text) among the table's remembered rows.
    pub async fn newest_digest(&self, table: &str) -> Result<Option<String>, StateError> {
        sqlx::query_scalar("SELECT max(ts) FROM digests WHERE tbl = ?")
            .bind(table)
            .fetch_one(&self.pool)
            .await
            .map_err(q("reading digests"))
    }

    /// The digests remembered for these record keys (those remembered; without key values).
    pub async fn digests_of(
        &self,
        table: &str,
        rkeys: &[&str],
    ) -> Result<HashMap<String, ([u8; 16], String)>, StateError> {
        let e = q("reading digests");
        let mut out = HashMap::with_capacity(rkeys.len());
        for chunk in rkeys.chunks(KEYS_PER_LOOKUP) {
            let marks = vec!["?"; chunk.len()].join(", ");
            // Fixed text with one `?` per key; the table and the keys are bound.
            let sql =
                format!("SELECT rkey, digest FROM digests WHERE tbl = ? AND rkey IN ({marks})");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(table);
            for k in chunk {
                query = query.bind(*k);
            }
            for r in query.fetch_all(&self.pool).await.map_err(&e)? {
                let rkey: String = r.try_get(0).map_err(&e)?;
                let digest: Vec<u8> = r.try_get(1).map_err(&e)?;
                // A digest not 16 bytes long (never written so) matches no row.
                let d = <[u8; 16]>::try_from(digest.as_slice()).unwrap_or_default();
                out.insert(rkey, (d, String::new()));
            }
        }
        Ok(out)
    }
}

pub(super) async fn write_reread(
    conn: &mut sqlx::SqliteConnection,
    table: &str,
    r: &Reread,
) -> Result<(), StateError> {
    // As a watermark is (`Watermark::to_json`): a text that does not read back is no record,
    // and the next re-read is whole.
    let text = serde_json::to_string(r).unwrap_or_default();
    sqlx::query(
        "INSERT INTO tables (tbl, reread) VALUES (?, ?) \
         ON CONFLICT (tbl) DO UPDATE SET reread = excluded.reread",
    )
    .bind(table)
    .bind(text)
    .execute(conn)
    .await
    .map_err(q("recording a re-read"))?;
    Ok(())
}
