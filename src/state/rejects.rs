//! The rejects ledger: rows not delivered (local rules, target refusals, the province's
//! rejections), their state and their history.
//!
//! open ─(the row is sent again)→ resubmitted ─(no new rejection within the confirmation
//! window)→ cleared; a new rejection of a resubmitted or cleared row opens it again.

use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection};

use super::kinds::unknown;
use super::{Origin, Reject, RejectState, State, StateError, q, ts};
use crate::cipher::Cipher;

const LIST: &str = "id, tbl, rkey, kvals, origin, state, reasons, row_json, batch_id, \
     first_seen, last_seen, resubmitted, cleared";

/// What happened to a reject, in the words of its history.
fn opened(origin: Origin) -> &'static str {
    match origin {
        Origin::Rule => "quarantined by the quality rules",
        Origin::Map => "quarantined: a value does not fit the exchange table",
        Origin::Read => "quarantined: the row could not be read",
        Origin::Target => "refused by the exchange",
        Origin::Province => "rejected by the province",
    }
}

async fn event(
    tx: &mut SqliteConnection,
    id: i64,
    at: &str,
    event: &str,
    detail: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO reject_events (reject_id, at, event, detail) VALUES (?, ?, ?, ?)")
        .bind(id)
        .bind(at)
        .bind(event)
        .bind(detail)
        .execute(tx)
        .await?;
    Ok(())
}

/// Record rows quarantined or refused (inside a batch's commit).
pub(super) async fn quarantine(
    tx: &mut SqliteConnection,
    cipher: Option<&Cipher>,
    table: &str,
    batch_id: Option<&str>,
    rejects: &[Reject],
    now: &str,
) -> Result<(), sqlx::Error> {
    for r in rejects {
        upsert(tx, cipher, table, r, batch_id, now, None).await?;
    }
    Ok(())
}

/// Insert or reopen one reject, with a history line when something changed.
async fn upsert(
    tx: &mut SqliteConnection,
    cipher: Option<&Cipher>,
    table: &str,
    r: &Reject,
    batch_id: Option<&str>,
    now: &str,
    province_at: Option<&str>,
) -> Result<(), sqlx::Error> {
    let reasons = serde_json::to_string(&r.reasons).unwrap_or_default();
    let before: Option<(i64, String, String)> =
        sqlx::query_as("SELECT id, state, reasons FROM rejects WHERE tbl = ? AND rkey = ?")
            .bind(table)
            .bind(&r.rkey)
            .fetch_optional(&mut *tx)
            .await?;
    // Compared in plain text: each sealing of the same text differs.
    let was = match &before {
        Some((_, _, old)) => super::crypt::open(cipher, old)?,
        None => None,
    };
    let same = was.as_deref() == Some(reasons.as_str());
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO rejects (tbl, rkey, kvals, origin, state, reasons, row_json, digest, batch_id, \
         first_seen, last_seen, updated) VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (tbl, rkey) DO UPDATE SET origin = excluded.origin, state = 'open', \
         reasons = excluded.reasons, row_json = COALESCE(excluded.row_json, rejects.row_json), \
         digest = COALESCE(excluded.digest, rejects.digest), \
         batch_id = COALESCE(excluded.batch_id, rejects.batch_id), last_seen = excluded.last_seen, \
         updated = CASE WHEN rejects.state = 'open' AND ? THEN rejects.updated \
                   ELSE excluded.updated END, \
         resubmitted = CASE WHEN rejects.state = 'open' THEN rejects.resubmitted END, \
         cleared = NULL \
         RETURNING id",
    )
    .bind(table)
    .bind(&r.rkey)
    .bind(&r.kvals)
    .bind(r.origin.as_str())
    .bind(super::crypt::seal(cipher, &reasons)?)
    .bind(super::crypt::seal(cipher, &r.row_json)?)
    .bind(r.digest.map(|d| d.to_vec()))
    .bind(batch_id)
    .bind(now)
    .bind(now)
    .bind(now)
    .bind(same)
    .fetch_one(&mut *tx)
    .await?;
    let mut detail = r.reasons.join("; ");
    if let Some(at) = province_at {
        detail = format!("{detail} (rejected by the province at {at})");
    }
    let detail = super::crypt::seal(cipher, &detail)?;
    match before {
        None => event(tx, id, now, opened(r.origin), Some(&detail)).await,
        Some((_, state, _)) if state != "open" => {
            event(
                tx,
                id,
                now,
                &format!("{} again", opened(r.origin)),
                Some(&detail),
            )
            .await
        }
        Some(_) if !same => event(tx, id, now, opened(r.origin), Some(&detail)).await,
        Some(_) => Ok(()),
    }
}

/// Open rejects of these keys were sent again (inside a batch's commit); `accepted`: the
/// exchange checked them as it took them, so they are cleared at once rather than after
/// the confirmation window.
pub(super) async fn resubmitted(
    tx: &mut SqliteConnection,
    table: &str,
    keys: &[String],
    why: &str,
    now: &str,
    accepted: bool,
) -> Result<(), sqlx::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let open: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rejects WHERE tbl = ? AND state = 'open'")
            .bind(table)
            .fetch_one(&mut *tx)
            .await?;
    if open == 0 {
        return Ok(());
    }
    for k in keys {
        let id: Option<i64> = sqlx::query_scalar(
            "UPDATE rejects SET state = 'resubmitted', resubmitted = ?, updated = ? \
             WHERE tbl = ? AND rkey = ? AND state = 'open' RETURNING id",
        )
        .bind(now)
        .bind(now)
        .bind(table)
        .bind(k)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = id {
            event(tx, id, now, why, None).await?;
            if accepted {
                sqlx::query(
                    "UPDATE rejects SET state = 'cleared', cleared = ?, updated = ? WHERE id = ?",
                )
                .bind(now)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                event(tx, id, now, "cleared: the exchange accepted it", None).await?;
            }
        }
    }
    Ok(())
}

/// One line of a reject's history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RejectEvent {
    pub at: String,
    pub event: String,
    pub detail: Option<String>,
}

impl State {
    /// Record a rejection from the province (it may be new, the same again, or a row that
    /// was resubmitted or cleared and is rejected again).
    pub async fn province_reject(
        &self,
        table: &str,
        r: &Reject,
        batch_id: Option<&str>,
        province_at: Option<&str>,
    ) -> Result<(), StateError> {
        let e = q("recording a rejection from the province");
        let now = ts(Utc::now());
        let mut tx = self.pool.begin().await.map_err(&e)?;
        upsert(
            &mut tx,
            self.cipher.as_ref(),
            table,
            r,
            batch_id,
            &now,
            province_at,
        )
        .await
        .map_err(&e)?;
        tx.commit().await.map_err(&e)?;
        Ok(())
    }

    /// Clear resubmitted rows that were not rejected again since `before`; how many.
    pub async fn clear_confirmed(
        &self,
        before: DateTime<Utc>,
        window: &str,
    ) -> Result<u64, StateError> {
        let e = q("clearing confirmed rejects");
        let now = ts(Utc::now());
        let mut tx = self.pool.begin().await.map_err(&e)?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE rejects SET state = 'cleared', cleared = ?, updated = ? \
             WHERE state = 'resubmitted' AND resubmitted < ? RETURNING id",
        )
        .bind(&now)
        .bind(&now)
        .bind(ts(before))
        .fetch_all(&mut *tx)
        .await
        .map_err(&e)?;
        for id in &ids {
            event(
                &mut tx,
                *id,
                &now,
                &format!("cleared: no new rejection within {window}"),
                None,
            )
            .await
            .map_err(&e)?;
        }
        tx.commit().await.map_err(&e)?;
        Ok(ids.len() as u64)
    }

    /// Note in a reject's history that a person asked to send it again.
    pub async fn note(&self, id: i64, what: &str) -> Result<(), StateError> {
        let e = q("writing a reject's history");
        let mut conn = self.pool.acquire().await.map_err(&e)?;
        event(&mut conn, id, &ts(Utc::now()), what, None)
            .await
            .map_err(&e)
    }

    /// Mark resubmitted the rejects of these keys (`rejects resubmit`).
    pub async fn mark_resubmitted(
        &self,
        table: &str,
        keys: &[String],
        why: &str,
    ) -> Result<(), StateError> {
        let e = q("recording a resubmission");
        let now = ts(Utc::now());
        let mut tx = self.pool.begin().await.map_err(&e)?;
        resubmitted(&mut tx, table, keys, why, &now, false)
            .await
            .map_err(&e)?;
        tx.commit().await.map_err(&e)
    }

    /// Ask the agent that runs these rejects' tables to send them again (`rejects
    /// resubmit` beside a running daemon); the ask is kept until it is carried out.
    pub async fn ask_resubmit(&self, ids: &[i64]) -> Result<(), StateError> {
        let e = q("asking for a resubmission");
        let now = ts(Utc::now());
        let mut tx = self.pool.begin().await.map_err(&e)?;
        for id in ids {
            sqlx::query("UPDATE rejects SET resubmit_asked = ? WHERE id = ?")
                .bind(&now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(&e)?;
        }
        tx.commit().await.map_err(&e)
    }

    /// Tables with rejects asked to be sent again.
    pub async fn asked_tables(&self) -> Result<Vec<String>, StateError> {
        sqlx::query_scalar("SELECT DISTINCT tbl FROM rejects WHERE resubmit_asked IS NOT NULL")
            .fetch_all(&self.pool)
            .await
            .map_err(q("reading asked resubmissions"))
    }

    /// A table's rejects asked to be sent again.
    pub async fn asked(&self, table: &str) -> Result<Vec<RejectRow>, StateError> {
        let e = q("reading asked resubmissions");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LIST} FROM rejects WHERE tbl = ? AND resubmit_asked IS NOT NULL ORDER BY id"
        )))
        .bind(table)
        .fetch_all(&self.pool)
        .await
        .map_err(&e)?;
        rows.iter()
            .map(|r| reject_row(r, self.cipher.as_ref()))
            .collect::<Result<_, _>>()
            .map_err(&e)
    }

    /// Whether any of these rejects is still asked to be sent again.
    pub async fn still_asked(&self, ids: &[i64]) -> Result<bool, StateError> {
        let e = q("reading asked resubmissions");
        for id in ids {
            let asked: Option<Option<String>> =
                sqlx::query_scalar("SELECT resubmit_asked FROM rejects WHERE id = ?")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(&e)?;
            if matches!(asked, Some(Some(_))) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The asks to send these rejects again were carried out.
    pub async fn asked_done(&self, ids: &[i64]) -> Result<(), StateError> {
        let e = q("recording a resubmission");
        let mut tx = self.pool.begin().await.map_err(&e)?;
        for id in ids {
            sqlx::query("UPDATE rejects SET resubmit_asked = NULL WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(&e)?;
        }
        tx.commit().await.map_err(&e)
    }

    /// Quarantined rows, newest first, optionally of one table and in one state.
    pub async fn rejects(
        &self,
        table: Option<&str>,
        state: Option<RejectState>,
    ) -> Result<Vec<RejectRow>, StateError> {
        let e = q("reading rejects");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LIST} FROM rejects WHERE (?1 IS NULL OR tbl = ?1) AND (?2 IS NULL OR state = ?2) \
             ORDER BY id DESC"
        )))
        .bind(table)
        .bind(state.map(RejectState::as_str))
        .fetch_all(&self.pool)
        .await
        .map_err(&e)?;
        rows.iter()
            .map(|r| reject_row(r, self.cipher.as_ref()).map_err(&e))
            .collect()
    }

    /// Rejects changed after `since` (for the mirror table), oldest change first.
    pub async fn rejects_changed(
        &self,
        since: &str,
    ) -> Result<Vec<(RejectRow, String)>, StateError> {
        let e = q("reading changed rejects");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LIST}, updated FROM rejects WHERE updated > ? ORDER BY updated"
        )))
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(&e)?;
        rows.iter()
            .map(|r| {
                Ok((
                    reject_row(r, self.cipher.as_ref())?,
                    r.try_get::<String, _>(13)?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(&e)
    }

    /// One quarantined row by its id, with its history.
    pub async fn reject(
        &self,
        id: i64,
    ) -> Result<Option<(RejectRow, Vec<RejectEvent>)>, StateError> {
        let e = q("reading a reject");
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LIST} FROM rejects WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(&e)?;
        let Some(row) = row else { return Ok(None) };
        let r = reject_row(&row, self.cipher.as_ref()).map_err(&e)?;
        let events = sqlx::query(
            "SELECT at, event, detail FROM reject_events WHERE reject_id = ? ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(&e)?
        .iter()
        .map(|r| {
            let detail: Option<String> = r.try_get(2)?;
            let detail = match detail {
                Some(d) => Some(
                    super::crypt::open(self.cipher.as_ref(), &d)?
                        .unwrap_or_else(|| ENCRYPTED.to_owned()),
                ),
                None => None,
            };
            Ok(RejectEvent {
                at: r.try_get(0)?,
                event: r.try_get(1)?,
                detail,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(&e)?;
        Ok(Some((r, events)))
    }
}

/// A quarantined row as `rejects` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RejectRow {
    pub id: i64,
    pub table: String,
    /// Key values joined by `|` in key order.
    pub key: String,
    pub key_values: serde_json::Value,
    pub origin: Origin,
    pub state: RejectState,
    pub reasons: Vec<String>,
    /// The row's values when it was quarantined (column -> text).
    pub row: serde_json::Value,
    pub batch_id: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub resubmitted: Option<String>,
    pub cleared: Option<String>,
    /// The row's values and reasons are encrypted and no key is configured to read them.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
}

/// What stands for a value that is encrypted when no key is configured.
pub const ENCRYPTED: &str = "(encrypted)";

/// A column holding one of a kind's words, as its variant.
pub(super) fn word<T>(
    r: &sqlx::sqlite::SqliteRow,
    i: usize,
    kind: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, sqlx::Error> {
    let w: String = r.try_get(i)?;
    parse(&w).ok_or_else(|| unknown(kind, &w))
}

fn reject_row(
    r: &sqlx::sqlite::SqliteRow,
    cipher: Option<&Cipher>,
) -> Result<RejectRow, sqlx::Error> {
    let json = |s: Option<String>| {
        s.and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    let open = |s: Option<String>| -> Result<(Option<String>, bool), sqlx::Error> {
        match s {
            Some(s) => {
                let p = super::crypt::open(cipher, &s)?;
                let hidden = p.is_none();
                Ok((p, hidden))
            }
            None => Ok((None, false)),
        }
    };
    let (reasons, hidden) = open(r.try_get(6)?)?;
    let (row, row_hidden) = open(r.try_get(7)?)?;
    let reasons = match reasons {
        Some(s) => serde_json::from_str(&s).unwrap_or_default(),
        None => vec![ENCRYPTED.to_owned()],
    };
    Ok(RejectRow {
        id: r.try_get(0)?,
        table: r.try_get(1)?,
        key: r.try_get(2)?,
        key_values: json(r.try_get(3)?),
        origin: word(r, 4, "reject origin", Origin::parse)?,
        state: word(r, 5, "reject state", RejectState::parse)?,
        reasons,
        row: json(row),
        batch_id: r.try_get(8)?,
        first_seen: r.try_get(9)?,
        last_seen: r.try_get(10)?,
        resubmitted: r.try_get(11)?,
        cleared: r.try_get(12)?,
        encrypted: hidden || row_hidden,
    })
}
