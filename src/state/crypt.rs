//! The state store's side of `state_cipher`: values sealed as they are written, opened as
//! they are read, and sealed again with a new key (rotation) or for the first time (a store
//! that was kept in plain text before).

use sqlx::Row;

use super::{State, StateError, q};
use crate::cipher::{Cipher, CipherError};

fn as_sqlx(e: CipherError) -> sqlx::Error {
    sqlx::Error::Protocol(e.to_string())
}

/// A value as it is to be stored.
pub(super) fn seal(c: Option<&Cipher>, plain: &str) -> Result<String, sqlx::Error> {
    match c {
        Some(c) => c.seal(plain).map_err(as_sqlx),
        None => Ok(plain.to_owned()),
    }
}

/// A stored value in plain text; `None` when it is encrypted and no key is configured.
pub(super) fn open(c: Option<&Cipher>, stored: &str) -> Result<Option<String>, sqlx::Error> {
    match Cipher::open(c, stored) {
        Ok(p) => Ok(Some(p)),
        Err(CipherError::NoKey) => Ok(None),
        Err(e) => Err(as_sqlx(e)),
    }
}

/// The columns that hold row values: (table, column).
const SEALED: &[(&str, &str)] = &[
    ("rejects", "row_json"),
    ("rejects", "reasons"),
    ("reject_events", "detail"),
];

impl State {
    /// Seal with the current key every value that is in plain text or sealed with another
    /// key (then reclaim the space, so the old forms leave the files); how many.
    pub async fn rekey(&self) -> Result<u64, StateError> {
        let Some(c) = self.cipher.as_ref() else {
            return Ok(0);
        };
        let e = q("encrypting the stored row values again");
        let mut n = 0;
        let mut tx = self.pool.begin().await.map_err(&e)?;
        for (table, column) in SEALED {
            // Fixed identifiers from the list above.
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT rowid, {column} FROM {table} WHERE {column} IS NOT NULL"
            )))
            .fetch_all(&mut *tx)
            .await
            .map_err(&e)?;
            for r in rows {
                let id: i64 = r.try_get(0).map_err(&e)?;
                let v: String = r.try_get(1).map_err(&e)?;
                if !c.stale(&v) {
                    continue;
                }
                let plain = Cipher::open(Some(c), &v).map_err(|x| StateError::Query {
                    doing: "encrypting the stored row values again",
                    cause: x.to_string(),
                })?;
                let sealed = seal(Some(c), &plain).map_err(&e)?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET {column} = ? WHERE rowid = ?"
                )))
                .bind(sealed)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(&e)?;
                n += 1;
            }
        }
        tx.commit().await.map_err(&e)?;
        if n > 0 {
            self.reclaim().await?;
        }
        Ok(n)
    }
}
