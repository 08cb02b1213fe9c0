//! The receiver's SQLite store: records by table and key (newer wins by the version
//! column, deletes applied), the batches it answered (by idempotency key, with their
//! answer), every request it saw, and the rejections its rules made (the feedback feed).

use std::path::Path;

use serde_json::{Map, Value as Json};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{Row, SqliteConnection};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS records (tbl TEXT NOT NULL, rkey TEXT NOT NULL, version TEXT, \
     vals TEXT NOT NULL, PRIMARY KEY (tbl, rkey))",
    "CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, tbl TEXT NOT NULL, answer TEXT NOT NULL, \
     records INTEGER NOT NULL, applied_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS requests (seq INTEGER PRIMARY KEY AUTOINCREMENT, batch TEXT, \
     tbl TEXT, outcome TEXT NOT NULL, body TEXT, at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rejections (id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, \
     rkey TEXT NOT NULL, batch TEXT, code TEXT NOT NULL, message TEXT NOT NULL, at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS envelopes (batch TEXT PRIMARY KEY, fields TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS notices (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL, \
     at TEXT NOT NULL)",
];

#[derive(Debug, thiserror::Error)]
#[error("exchange-sim store: {0}")]
pub struct StoreError(#[from] sqlx::Error);

pub struct Store {
    pool: SqlitePool,
}

/// A record's key in the store: the key's values in the order of its column names,
/// joined by `|`.
pub fn rkey(key: &Map<String, Json>) -> String {
    let mut names: Vec<&String> = key.keys().collect();
    names.sort();
    names
        .iter()
        .map(|n| text(&key[n.as_str()]))
        .collect::<Vec<_>>()
        .join("|")
}

/// A JSON value as plain text (a string without its quotes).
pub fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

/// Whether version `a` is newer than `b`: numbers by value, RFC 3339 times by instant,
/// anything else as text.
pub fn newer(a: &Json, b: &Json) -> bool {
    if let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) {
        return x > y;
    }
    let (a, b) = (text(a), text(b));
    match (
        chrono::DateTime::parse_from_rfc3339(&a),
        chrono::DateTime::parse_from_rfc3339(&b),
    ) {
        (Ok(x), Ok(y)) => x > y,
        _ => a > b,
    }
}

/// One record to apply.
pub struct Apply<'a> {
    pub delete: bool,
    pub key: &'a Map<String, Json>,
    pub values: &'a Map<String, Json>,
}

impl Store {
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        for s in SCHEMA {
            sqlx::query(*s).execute(&pool).await?;
        }
        Ok(Store { pool })
    }

    /// The answer given to a batch before, if it was seen.
    pub async fn answered(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT answer FROM batches WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Keep what an applied batch's body said besides its records (its batch number, a
    /// full resync's mark).
    pub async fn envelope(&self, batch: &str, fields: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT OR REPLACE INTO envelopes (batch, fields) VALUES (?, ?)")
            .bind(batch)
            .bind(fields)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Keep a resync notice as it came.
    pub async fn notice(&self, body: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO notices (body, at) VALUES (?, ?)")
            .bind(body)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Note a request and what became of it.
    pub async fn log(
        &self,
        batch: Option<&str>,
        table: Option<&str>,
        outcome: &str,
        body: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO requests (batch, tbl, outcome, body, at) VALUES (?, ?, ?, ?, ?)")
            .bind(batch)
            .bind(table)
            .bind(outcome)
            .bind(body)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Apply the accepted records of a batch, record the rejections its later checks make
    /// (the feedback feed) and its answer, all in one transaction: a batch is applied whole
    /// or not at all.
    pub async fn apply(
        &self,
        id: &str,
        table: &str,
        version: Option<&str>,
        records: &[Apply<'_>],
        rejected: &[(String, String, String)],
        answer: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        apply_records(&mut tx, table, version, records).await?;
        for (key, code, message) in rejected {
            sqlx::query(
                "INSERT INTO rejections (tbl, rkey, batch, code, message, at) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(table)
            .bind(key)
            .bind(id)
            .bind(code)
            .bind(message)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO batches (id, tbl, answer, records, applied_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(table)
        .bind(answer)
        .bind(records.len() as i64)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Rejections after `after` (an id), at most `limit`.
    pub async fn rejections(&self, after: i64, limit: i64) -> Result<Vec<Json>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tbl, rkey, batch, code, message, at FROM rejections WHERE id > ? \
             ORDER BY id LIMIT ?",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(serde_json::json!({
                    "id": r.try_get::<i64, _>(0)?,
                    "table": r.try_get::<String, _>(1)?,
                    "key": r.try_get::<String, _>(2)?,
                    "batch": r.try_get::<Option<String>, _>(3)?,
                    "code": r.try_get::<String, _>(4)?,
                    "message": r.try_get::<String, _>(5)?,
                    "at": r.try_get::<String, _>(6)?,
                }))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError)
    }
}

/// What a batch leaves of a key: its record, or nothing (deleted).
type Outcome = Option<(Option<String>, String)>;

/// Apply a batch's records in their order, newer wins by `version`: the versions held for
/// the batch's keys are read in one statement, the outcome of every key worked out here,
/// then written in two (a statement a record made a large batch wait on the store's
/// round trips rather than on SQLite).
async fn apply_records(
    tx: &mut SqliteConnection,
    table: &str,
    version: Option<&str>,
    records: &[Apply<'_>],
) -> Result<(), StoreError> {
    let keys: Vec<String> = records.iter().map(|r| rkey(r.key)).collect();
    let mut held: std::collections::HashMap<String, Option<Json>> =
        std::collections::HashMap::new();
    let wanted = Json::from(keys.clone()).to_string();
    let rows = sqlx::query(
        "SELECT rkey, version FROM records WHERE tbl = ? AND rkey IN (SELECT value FROM json_each(?))",
    )
    .bind(table)
    .bind(&wanted)
    .fetch_all(&mut *tx)
    .await?;
    for r in rows {
        let v: Option<String> = r.try_get(1)?;
        held.insert(
            r.try_get(0)?,
            v.map(|v| serde_json::from_str(&v).unwrap_or(Json::Null)),
        );
    }
    // A stored version newer than the incoming one survives, whether this is an upsert or
    // a delete; a delete without a version removes the record whatever its version.
    let mut outcome: std::collections::BTreeMap<&str, Outcome> = std::collections::BTreeMap::new();
    for (r, k) in records.iter().zip(&keys) {
        let incoming = version
            .and_then(|v| r.values.get(v))
            .filter(|v| !v.is_null());
        if let (Some(Some(h)), Some(inc)) = (held.get(k.as_str()), incoming)
            && newer(h, inc)
        {
            continue;
        }
        if r.delete {
            held.remove(k.as_str());
            outcome.insert(k, None);
        } else {
            held.insert(k.clone(), incoming.cloned());
            let vals = Json::Object(r.values.clone()).to_string();
            outcome.insert(k, Some((incoming.map(Json::to_string), vals)));
        }
    }
    let (mut gone, mut put) = (Vec::new(), Vec::new());
    for (k, o) in outcome {
        match o {
            None => gone.push(Json::from(k)),
            Some((v, vals)) => put.push(serde_json::json!([k, v, vals])),
        }
    }
    if !gone.is_empty() {
        sqlx::query(
            "DELETE FROM records WHERE tbl = ? AND rkey IN (SELECT value FROM json_each(?))",
        )
        .bind(table)
        .bind(Json::Array(gone).to_string())
        .execute(&mut *tx)
        .await?;
    }
    if !put.is_empty() {
        sqlx::query(
            "INSERT INTO records (tbl, rkey, version, vals) \
             SELECT ?, value ->> 0, value ->> 1, value ->> 2 FROM json_each(?) WHERE true \
             ON CONFLICT (tbl, rkey) DO UPDATE SET version = excluded.version, vals = excluded.vals",
        )
        .bind(table)
        .bind(Json::Array(put).to_string())
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_numbers_times_or_text() {
        assert!(newer(&serde_json::json!(10), &serde_json::json!(9)));
        assert!(newer(
            &serde_json::json!("2026-01-01T09:00:00+08:00"),
            &serde_json::json!("2026-01-01T00:30:00Z")
        ));
        assert!(!newer(
            &serde_json::json!("2026-01-01T08:00:00+08:00"),
            &serde_json::json!("2026-01-01T00:30:00Z")
        ));
        assert!(newer(&serde_json::json!("b"), &serde_json::json!("a")));
    }

    #[test]
    fn keys_are_their_values_in_column_name_order() {
        let k = serde_json::json!({"b": 2, "a": "x|y"});
        assert_eq!(rkey(k.as_object().expect("object")), "x|y|2");
    }
}
