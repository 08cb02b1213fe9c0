//! Digests of the rows a table handled: the lookback window's rows and a digest table's
//! rows are compared with them, read back in packed pages.

use std::collections::HashMap;

use sqlx::Row;

use super::{State, StateError, q};

/// The digest of a key remembered before its row's batch was committed: no row's.
const UNKNOWN: [u8; 16] = [0; 16];

/// Digest rows per `INSERT` (5 parameters each; SQLite allows 32,766).
pub(super) const DIGESTS_PER_STATEMENT: usize = 500;

/// Digests packed into one result row when they are read back.
pub(super) const DIGESTS_PER_ROW: usize = 2000;

/// The texts packed one after another in `text`, cut at the byte lengths listed in `lens`
/// (comma-separated); `None` when they do not add up.
fn unpack<'a>(lens: &str, text: &'a str) -> Option<Vec<&'a str>> {
    let mut parts = Vec::new();
    let mut at = 0usize;
    for l in lens.split(',').filter(|l| !l.is_empty()) {
        let end = at.checked_add(l.parse::<usize>().ok()?)?;
        parts.push(text.get(at..end)?);
        at = end;
    }
    (at == text.len()).then_some(parts)
}

/// Put one packed page of digests into `out`: `n` rows, their keys (lengths, texts), their
/// digests in hex, and with `kvals` their key values (lengths, texts). How many it held.
fn unpack_digests(
    n: i64,
    keys: (&str, &str),
    hex: &str,
    kvals: Option<(&str, &str)>,
    out: &mut HashMap<String, ([u8; 16], String)>,
) -> Result<usize, StateError> {
    let bad = |what: &str| StateError::Query {
        doing: "reading digests",
        cause: format!("a packed page of digests does not add up ({what})"),
    };
    let n = usize::try_from(n).map_err(|_| bad("count"))?;
    let keys = unpack(keys.0, keys.1).ok_or_else(|| bad("keys"))?;
    let kvals = kvals
        .map(|(l, t)| unpack(l, t).ok_or_else(|| bad("key values")))
        .transpose()?;
    if keys.len() != n || hex.len() != n * 32 || kvals.as_ref().is_some_and(|k| k.len() != n) {
        return Err(bad("counts"));
    }
    out.reserve(n);
    for (i, (key, h)) in keys
        .into_iter()
        .zip(hex.as_bytes().chunks_exact(32))
        .enumerate()
    {
        let mut digest = [0u8; 16];
        hex::decode_to_slice(h, &mut digest).map_err(|_| bad("digests"))?;
        let kv = kvals.as_ref().map_or_else(String::new, |k| k[i].to_owned());
        out.insert(key.to_owned(), (digest, kv));
    }
    Ok(n)
}

impl State {
    /// Remember these rows' keys before their batch is sent, with a digest no row has, for
    /// the keys not remembered yet: the batch's commit puts their digests in place.
    pub async fn remember_keys(
        &self,
        table: &str,
        rows: &[super::DigestEntry],
    ) -> Result<(), StateError> {
        let e = q("remembering a batch's keys");
        let mut tx = self.pool.begin().await.map_err(&e)?;
        for r in rows {
            sqlx::query(
                "INSERT OR IGNORE INTO digests (tbl, rkey, digest, ts, kvals) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(table)
            .bind(&r.rkey)
            .bind(&UNKNOWN[..])
            .bind(&r.ts)
            .bind(&r.kvals)
            .execute(&mut *tx)
            .await
            .map_err(&e)?;
        }
        tx.commit().await.map_err(&e)
    }

    /// Digests of a table's remembered rows, optionally only those changed at or after `since`;
    /// with `keys`, each with its key values (JSON), else with an empty text.
    pub async fn digests(
        &self,
        table: &str,
        since: Option<&str>,
        keys: bool,
    ) -> Result<HashMap<String, ([u8; 16], String)>, StateError> {
        // Read a row at a time, 100,000 digests took 0.21-0.28 s, mostly in the driver, not
        // in SQLite; packed, 0.13-0.15 s. So the digests are read in pages of DIGESTS_PER_ROW
        // rows, in index order, each packed by SQLite into one row: the keys' byte lengths,
        // the keys one after another, the digests in hex, and (with `keys`) the same for the
        // key values. A page ends where
        // the next begins (its last row is read by position), and all pages are read in one
        // transaction, so a commit meanwhile cannot shift them. A digest not 16 bytes long
        // (never written so) reads as zeros, which matches no row.
        let e = q("reading digests");
        // After the first page, only the cursor bounds the scan: with the time as well,
        // SQLite would start every page at the time.
        let (first, next, order) = match since {
            Some(_) => (
                "tbl = ? AND ts >= ?",
                "tbl = ? AND (ts, digest, rkey) > (?, ?, ?)",
                "ts, digest, rkey",
            ),
            None => ("tbl = ?", "tbl = ? AND rkey > ?", "rkey"),
        };
        let (cols, kv) = if keys {
            (
                "rkey, digest, kvals",
                "group_concat(length(CAST(kvals AS BLOB)), ','), group_concat(kvals, '')",
            )
        } else {
            ("rkey, digest", "'', ''")
        };
        let page = |more: bool| {
            let filter = if more { next } else { first };
            format!(
                "SELECT count(*), group_concat(length(CAST(rkey AS BLOB)), ','), \
                 group_concat(rkey, ''), group_concat(CASE WHEN length(digest) = 16 \
                 THEN hex(digest) ELSE '{zero}' END, ''), {kv} FROM (SELECT {cols} \
                 FROM digests WHERE {filter} ORDER BY {order} LIMIT {DIGESTS_PER_ROW})",
                zero = "0".repeat(32),
            )
        };
        let last = |more: bool| {
            let filter = if more { next } else { first };
            format!(
                "SELECT ts, digest, rkey FROM digests WHERE {filter} ORDER BY {order} \
                 LIMIT 1 OFFSET {}",
                DIGESTS_PER_ROW - 1
            )
        };
        let (first_page, next_page, first_last, next_last) =
            (page(false), page(true), last(false), last(true));
        let mut tx = self.pool.begin().await.map_err(&e)?;
        let mut out = HashMap::new();
        let mut cursor: Option<(Option<String>, Vec<u8>, String)> = None;
        loop {
            // Fixed texts above; the table, the time and the cursor are bound.
            let bind = |sql: &str| {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).bind(table);
                match (&cursor, since) {
                    (None, Some(s)) => query = query.bind(s),
                    (None, None) => {}
                    (Some((ts, digest, rkey)), s) => {
                        if s.is_some() {
                            query = query.bind(ts.clone()).bind(digest.clone());
                        }
                        query = query.bind(rkey.clone());
                    }
                }
                query
            };
            let more = cursor.is_some();
            let r = bind(if more { &next_page } else { &first_page })
                .fetch_one(&mut *tx)
                .await
                .map_err(&e)?;
            let n: i64 = r.try_get(0).map_err(&e)?;
            let text = |i: usize| -> Result<&str, StateError> {
                Ok(r.try_get::<Option<&str>, _>(i).map_err(&e)?.unwrap_or(""))
            };
            let got = unpack_digests(
                n,
                (text(1)?, text(2)?),
                text(3)?,
                keys.then_some((text(4)?, text(5)?)),
                &mut out,
            )?;
            if got < DIGESTS_PER_ROW {
                break;
            }
            let row = bind(if more { &next_last } else { &first_last })
                .fetch_optional(&mut *tx)
                .await
                .map_err(&e)?;
            let Some(row) = row else { break };
            cursor = Some((
                row.try_get(0).map_err(&e)?,
                row.try_get(1).map_err(&e)?,
                row.try_get(2).map_err(&e)?,
            ));
        }
        tx.rollback().await.map_err(&e)?;
        Ok(out)
    }
}
