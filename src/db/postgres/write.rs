//! Writing a batch into PostgreSQL: a batch of only new keys straight into the target by
//! binary `COPY`, any other into a temporary staging table and from there with one
//! `INSERT ... ON CONFLICT DO UPDATE ... WHERE`, refused rows isolated under savepoints.

use std::ops::Range;

use sha2::{Digest, Sha256};
use sqlx::Postgres;
use sqlx::postgres::PgConnection;

use super::{DbError, E, Pg, bind, dynamic, pgbinary};
use crate::db::dialect::Dialect;
use crate::db::dialect::key_array;
use crate::db::{ErrorClass, PartWriter, Refused, Turn, WriteBatch, isolate};
use crate::ident::{Col, Ident};
use crate::value::Value;

impl Pg {
    /// Write a batch once `ready` resolves; the batch is encoded for `COPY` meanwhile.
    pub async fn write_when(
        &self,
        w: &WriteBatch<'_>,
        ready: impl Future<Output = ()>,
        turn: &Turn,
    ) -> Result<Vec<Refused>, DbError> {
        let binary = pgbinary::kinds(w.upsert.columns);
        let encoded = binary
            .as_ref()
            .and_then(|kinds| encode(|| self.buffer(), kinds, w, 0..w.rows.len()));
        ready.await;
        let table = w.upsert.table;
        let err = |doing: &str| DbError::on_table(E, doing, table);
        let d = Dialect::Postgres;
        let stage = stage_name(w);
        let mut direct = (!w.upsert.key.is_empty()).then(|| Direct {
            range: match w.upsert.key {
                [k] => Some(d.pg_key_range(table, &w.upsert.columns[*k])),
                _ => None,
            },
            copy: d.pg_copy_into(table, w.upsert.columns),
        });
        // Only new keys and nothing to delete (a first exchange, rows appended since the last,
        // in whatever order of their keys): one COPY straight into the target (binary where
        // every value has a binary form), a transaction of its own. Whether the target has none of the keys is asked first,
        // unless they all lie above the greatest key it is known to hold. Should the target
        // refuse the COPY (a key it has, a row it does not take), the batch takes the
        // transaction below.
        let name = table.to_string();
        if self.merge_only.lock().is_ok_and(|m| m.contains(&name)) {
            direct = None;
        }
        if let (Some(dr), true) = (&direct, w.deletes.is_empty()) {
            // Rows of values of no binary form here go in text format.
            let text;
            let (statement, buf) = match &encoded {
                Some(buf) => (format!("{} (FORMAT binary)", dr.copy), buf),
                None => {
                    text = Payload::Buf(copy_text_rows(w.rows));
                    (dr.copy.clone(), &text)
                }
            };
            if self.copy_straight_in(dr, &statement, buf, w, turn).await? {
                if let Some(Payload::Buf(buf)) = encoded {
                    self.give_back(buf);
                }
                return Ok(Vec::new());
            }
            // Asked already: the transaction merges every part.
            direct = None;
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(err("starting a transaction on"))?;
        let mut part = PgPart {
            stage: d.pg_stage(&stage, table, w.upsert.columns),
            staged: false,
            copy: d.pg_copy(&stage, w.upsert.columns),
            binary,
            encoded,
            direct,
            merge: d.pg_merge(&w.upsert, &stage),
            clear: d.pg_clear(&stage),
            delete: w.delete_sql(d),
            tx: &mut tx,
            w,
            owner: self,
        };
        let refused = isolate(&mut part, w.rows.len(), w.deletes.len()).await?;
        turn.staged();
        if !turn.before_committed().await {
            return Err(Turn::not_after(E));
        }
        tx.commit()
            .await
            .map_err(err("committing the batch into"))?;
        Ok(refused)
    }

    /// Copy a batch of only new keys straight into the target, in a transaction of its own:
    /// `Ok(true)` when it is committed there, `Ok(false)` when the batch must be merged (the
    /// target holds one of the keys, or refuses the `COPY`).
    async fn copy_straight_in(
        &self,
        dr: &Direct,
        statement: &str,
        buf: &Payload<'_>,
        w: &WriteBatch<'_>,
        turn: &Turn,
    ) -> Result<bool, DbError> {
        let table = w.upsert.table;
        let err = |doing: &str| DbError::on_table(E, doing, table);
        let name = table.to_string();
        let mut conn = self
            .direct_conn()
            .await
            .map_err(err("connecting to the exchange for"))?;
        let range = int_key_range(w, w.rows);
        let new = match (range, self.known_max(&name)) {
            (Some((lo, _)), Some(max)) if lo > max => true,
            _ => {
                let (new, max) = new_keys(&mut conn, dr, w, w.rows, range).await?;
                self.hold(&name, max);
                new
            }
        };
        if !new {
            self.hold(&name, None);
            return Ok(false);
        }
        let copied = copy_direct(&mut conn, statement, buf, turn, || {
            if let Some((_, hi)) = range {
                self.hold(&name, Some(hi));
            }
        })
        .await;
        match copied {
            Ok(()) => {
                self.keep_direct(conn);
                return Ok(true);
            }
            Err(Unsent::After) => {
                self.hold(&name, None);
                return Err(Turn::not_after(E));
            }
            Err(Unsent::Commit(e)) => {
                self.hold(&name, None);
                return Err(err("committing the batch into")(e));
            }
            Err(Unsent::Copy(e)) => {
                let e = err("copying rows into")(e);
                match e.class() {
                    ErrorClass::Unavailable | ErrorClass::Transient => {
                        self.hold(&name, None);
                        return Err(e);
                    }
                    ErrorClass::Data => {}
                    // The merge may well work where COPY cannot.
                    ErrorClass::Fatal => {
                        tracing::info!(
                            table = %table,
                            "the exchange refuses COPY straight into {table} ({}): its batches are merged from now on",
                            e.cause()
                        );
                        if let Ok(mut m) = self.merge_only.lock() {
                            m.insert(name.clone());
                        }
                    }
                }
            }
        }
        self.hold(&name, None);
        Ok(false)
    }
}

/// The staging table of a target's exchanged columns: a temporary table of the session, named
/// after the target, columns and types, so that a changed table gets a fresh one.
fn stage_name(w: &WriteBatch<'_>) -> Ident {
    let mut h = Sha256::new();
    h.update(w.upsert.table.to_string().as_bytes());
    for c in w.upsert.columns {
        h.update([0]);
        h.update(c.name.as_str().as_bytes());
        h.update([1]);
        h.update(c.native.as_bytes());
    }
    let hex = hex::encode(h.finalize());
    Ident::new(&format!("frontdb_stage_{}", &hex[..16]))
        .unwrap_or_else(|_| Ident::fixed("frontdb_stage"))
}

/// The statements of a part whose keys the target does not have yet.
struct Direct {
    /// Whether it has any key between the two bound, and its greatest key (a one-column
    /// integer key).
    range: Option<String>,
    /// `COPY` into the target itself, in text format.
    copy: String,
}

/// One part of a batch inside the batch's transaction.
struct PgPart<'a, 'c> {
    tx: &'a mut sqlx::Transaction<'c, Postgres>,
    w: &'a WriteBatch<'a>,
    copy: String,
    /// The columns' binary kinds, when every column has one.
    binary: Option<Vec<pgbinary::Kind>>,
    /// The whole batch in binary `COPY` format, encoded before the transaction began.
    encoded: Option<Payload<'a>>,
    /// The statement creating the staging table (if it does not exist), and whether it ran
    /// in this transaction and was not rolled back since: only parts merged need the table.
    stage: String,
    staged: bool,
    /// With a one-column key: how to ask whether the target has any of a part's keys, and
    /// the `COPY` straight into the target used when it has none.
    direct: Option<Direct>,
    merge: String,
    clear: String,
    delete: String,
    /// Takes back the `COPY` buffers.
    owner: &'a Pg,
}

impl PartWriter for PgPart<'_, '_> {
    async fn exec(&mut self, sql: &'static str) -> Result<(), DbError> {
        // A rollback may undo the staging table's creation: it is created again if needed.
        if sql.starts_with("ROLLBACK") {
            self.staged = false;
        }
        sqlx::query(sql)
            .execute(&mut **self.tx)
            .await
            .map_err(|e| DbError::query(E, "managing a savepoint", e))?;
        Ok(())
    }

    async fn part(&mut self, r: Range<usize>, d: Range<usize>) -> Result<(), DbError> {
        let table = self.w.upsert.table;
        let err = |doing: &str| DbError::on_table(E, doing, table);
        if !r.is_empty() {
            let whole = r.len() == self.w.rows.len();
            let rows = &self.w.rows[r.clone()];
            // Binary when every value fits its column's kind; text otherwise.
            let encoded = match self.encoded.take() {
                Some(e) if whole => Some(e),
                _ => self
                    .binary
                    .as_ref()
                    .and_then(|kinds| encode(Vec::new, kinds, self.w, r)),
            };
            let binary = encoded.is_some();
            let statement = if binary {
                format!("{} (FORMAT binary)", self.copy)
            } else {
                self.copy.clone()
            };
            let buf = match encoded {
                Some(p) => p,
                None => Payload::Buf(copy_text_rows(rows)),
            };
            // Rows whose keys the target does not have yet go straight in: an upsert of new
            // keys is an insert. Should one arrive meanwhile, the part is merged after all.
            let new = match &self.direct {
                Some(direct) => {
                    let range = int_key_range(self.w, rows);
                    new_keys(self.tx, direct, self.w, rows, range).await?.0
                }
                None => false,
            };
            if let (true, Some(direct)) = (new, &self.direct) {
                let into = if binary {
                    format!("{} (FORMAT binary)", direct.copy)
                } else {
                    direct.copy.clone()
                };
                self.exec("SAVEPOINT frontdb_direct").await?;
                match copy_in(self.tx, &into, &buf).await {
                    Ok(()) => {
                        self.owner.give_back_payload(buf);
                        self.exec("RELEASE SAVEPOINT frontdb_direct").await?;
                        return self.deletes(d).await;
                    }
                    Err(_) => self.exec("ROLLBACK TO SAVEPOINT frontdb_direct").await?,
                }
            }
            if !self.staged {
                sqlx::query(dynamic(&self.stage))
                    .execute(&mut **self.tx)
                    .await
                    .map_err(err("creating the staging table for"))?;
                self.staged = true;
            }
            copy_in(self.tx, &statement, &buf)
                .await
                .map_err(err("copying rows for"))?;
            sqlx::query(dynamic(&self.merge))
                .execute(&mut **self.tx)
                .await
                .map_err(err("upserting into"))?;
            self.owner.give_back_payload(buf);
            // The commit empties it (`ON COMMIT DELETE ROWS`); a part of a split batch does.
            if !whole {
                sqlx::query(dynamic(&self.clear))
                    .execute(&mut **self.tx)
                    .await
                    .map_err(err("clearing the staging table of"))?;
            }
        }
        self.deletes(d).await
    }
}

impl PgPart<'_, '_> {
    async fn deletes(&mut self, d: Range<usize>) -> Result<(), DbError> {
        for del in &self.w.deletes[d] {
            let mut q = sqlx::query(super::statement(&self.delete, del));
            for v in del {
                q = bind(q, v);
            }
            q.execute(&mut **self.tx).await.map_err(|e| {
                DbError::query(E, format!("deleting from {}", self.w.upsert.table), e)
            })?;
        }
        Ok(())
    }
}

/// The least and greatest of these rows' keys, for a one-column integer key.
fn int_key_range(w: &WriteBatch<'_>, rows: &[Vec<Value>]) -> Option<(i64, i64)> {
    let [k] = w.upsert.key else {
        return None;
    };
    let mut range: Option<(i64, i64)> = None;
    for r in rows {
        let Some(Value::Int(i)) = r.get(*k) else {
            return None;
        };
        range = Some(range.map_or((*i, *i), |(lo, hi)| (lo.min(*i), hi.max(*i))));
    }
    range
}

/// Whether the target has none of these rows' keys; false when that cannot be asked (a key
/// column of a type not looked up, see [`key_array`]). A one-column integer key is first
/// asked as one range (`range`, their [`int_key_range`]: a first exchange in key order, and
/// rows appended since the last, find it empty), along with the greatest key the target
/// holds; keys in a range the target holds others in, and any other key, are looked up one
/// by one in its index.
async fn new_keys(
    conn: &mut PgConnection,
    direct: &Direct,
    w: &WriteBatch<'_>,
    rows: &[Vec<Value>],
    range: Option<(i64, i64)>,
) -> Result<(bool, Option<i64>), DbError> {
    let asking = |e| DbError::query(E, format!("looking up keys in {}", w.upsert.table), e);
    let mut max = None;
    if let (Some(sql), Some((lo, hi))) = (&direct.range, range) {
        let (any, m) = sqlx::query_as::<_, (bool, Option<i64>)>(dynamic(sql))
            .bind(lo)
            .bind(hi)
            .fetch_one(&mut *conn)
            .await
            .map_err(asking)?;
        if !any {
            return Ok((true, m));
        }
        max = m;
    }
    let Some(keys) = KeyArrays::of(w, rows) else {
        return Ok((false, max));
    };
    let cols: Vec<&Col> = w.upsert.key.iter().map(|&k| &w.upsert.columns[k]).collect();
    let sql = Dialect::Postgres.pg_any_key(w.upsert.table, &cols, &keys.types);
    let mut q = sqlx::query_scalar::<_, bool>(dynamic(&sql));
    for a in keys.values {
        q = match a {
            KeyValues::Int(v) => q.bind(v),
            KeyValues::Text(v) => q.bind(v),
        };
    }
    let any = q.fetch_one(&mut *conn).await.map_err(asking)?;
    Ok((!any, max))
}

/// The keys of a batch's rows, one array per key column, to look them up in the target.
struct KeyArrays<'r> {
    types: Vec<&'static str>,
    values: Vec<KeyValues<'r>>,
}

enum KeyValues<'r> {
    Int(Vec<i64>),
    Text(Vec<&'r str>),
}

impl<'r> KeyArrays<'r> {
    /// `None` when a key column is of a type not looked up, or a key value is not of its
    /// column's kind (a NULL).
    fn of(w: &WriteBatch<'_>, rows: &'r [Vec<Value>]) -> Option<KeyArrays<'r>> {
        let mut types = Vec::with_capacity(w.upsert.key.len());
        let mut values = Vec::with_capacity(w.upsert.key.len());
        for &k in w.upsert.key {
            let first = rows.first()?.get(k)?;
            let ty = key_array(&w.upsert.columns[k].native, first)?;
            // A value the server would not take as a UUID would fail the lookup, and with it
            // the transaction: such a batch is merged, where the row is refused alone.
            if ty == "uuid"
                && !rows
                    .iter()
                    .all(|r| matches!(r.get(k), Some(Value::Text(s)) if plain_uuid(s)))
            {
                return None;
            }
            types.push(ty);
            values.push(match first {
                Value::Int(_) => KeyValues::Int(
                    rows.iter()
                        .map(|r| match r.get(k) {
                            Some(Value::Int(i)) => Some(*i),
                            _ => None,
                        })
                        .collect::<Option<_>>()?,
                ),
                _ => KeyValues::Text(
                    rows.iter()
                        .map(|r| match r.get(k) {
                            Some(Value::Text(s)) => Some(s.as_str()),
                            _ => None,
                        })
                        .collect::<Option<_>>()?,
                ),
            });
        }
        Some(KeyArrays { types, values })
    }
}

/// A UUID in the forms every PostgreSQL takes: 32 hex digits, hyphenated 8-4-4-4-12 or not.
fn plain_uuid(s: &str) -> bool {
    let hex: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
    let hyphens_at = [8, 13, 18, 23];
    let hyphenated = s.len() == 36
        && s.bytes()
            .enumerate()
            .all(|(i, b)| (b == b'-') == hyphens_at.contains(&i));
    (hyphenated || s.len() == 32) && hex.len() == 32 && hex.iter().all(u8::is_ascii_hexdigit)
}

/// A batch's rows as binary `COPY` data: encoded from their values into a buffer, or their
/// tuples as they were read, sent from where they are.
pub(super) enum Payload<'w> {
    Buf(Vec<u8>),
    Tuples(&'w [u8]),
}

/// `COPY` data is sent in messages of at most this size: a connection keeps a buffer the
/// size of the largest message it sent.
const COPY_CHUNK: usize = 256 * 1024;

impl Payload<'_> {
    /// The data's parts, in order.
    fn parts(&self) -> [&[u8]; 3] {
        match self {
            Payload::Buf(b) => [b, &[], &[]],
            Payload::Tuples(t) => [pgbinary::HEADER, t, pgbinary::TRAILER],
        }
    }
}

/// Rows `r` of a batch in binary `COPY` format: their tuples as they were read when the
/// batch has them, else encoded from their values into `buf`; `None` when a value does not
/// fit its column's kind.
fn encode<'w>(
    buf: impl FnOnce() -> Vec<u8>,
    kinds: &[pgbinary::Kind],
    w: &WriteBatch<'w>,
    r: Range<usize>,
) -> Option<Payload<'w>> {
    if !w.tuples.is_empty() && w.tuples.len() == w.rows.len() {
        return w.tuples.span(r).map(Payload::Tuples);
    }
    encode_binary(buf(), kinds, w.rows.get(r)?).map(Payload::Buf)
}

/// Rows in text `COPY` format.
fn copy_text_rows(rows: &[Vec<Value>]) -> Vec<u8> {
    let mut buf = Vec::new();
    for row in rows {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                buf.push(b'\t');
            }
            copy_text(&mut buf, v);
        }
        buf.push(b'\n');
    }
    buf
}

/// Rows in binary `COPY` format; `None` when a value does not fit its column's kind.
fn encode_binary(
    mut buf: Vec<u8>,
    kinds: &[pgbinary::Kind],
    rows: &[Vec<Value>],
) -> Option<Vec<u8>> {
    // Sized once up front: growing a buffer of megabytes copies it over and over.
    buf.clear();
    buf.reserve(pgbinary::size_hint(rows));
    buf.extend_from_slice(pgbinary::HEADER);
    if !rows.iter().all(|row| pgbinary::row(&mut buf, kinds, row)) {
        return None;
    }
    buf.extend_from_slice(pgbinary::TRAILER);
    Some(buf)
}

/// How a `COPY` straight into the target failed.
enum Unsent {
    /// The `COPY` was refused (and rolled back).
    Copy(sqlx::Error),
    /// The batch before this one was not committed: this one was rolled back.
    After,
    /// The commit failed.
    Commit(sqlx::Error),
}

/// A batch copied straight into the target, in a transaction of its own that commits after
/// the batch before it committed (its [`Turn`]); `copied` is told once the rows are
/// in, before the commit. The batch after it begins only once it committed (it is never
/// [`Stage::Staged`](crate::db::Stage::Staged)), on the same connection: see
/// [`Pg::direct_conn`].
async fn copy_direct(
    conn: &mut PgConnection,
    statement: &str,
    buf: &Payload<'_>,
    turn: &Turn,
    copied: impl FnOnce(),
) -> Result<(), Unsent> {
    use sqlx::Connection as _;
    let mut tx = conn.begin().await.map_err(Unsent::Copy)?;
    copy_in(&mut tx, statement, buf)
        .await
        .map_err(Unsent::Copy)?;
    copied();
    if !turn.before_committed().await {
        return Err(Unsent::After);
    }
    tx.commit().await.map_err(Unsent::Commit)
}

/// Send a whole `COPY ... FROM STDIN` of `data`, in messages of at most [`COPY_CHUNK`].
async fn copy_in(
    conn: &mut PgConnection,
    statement: &str,
    data: &Payload<'_>,
) -> Result<(), sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    for message in messages(&data.parts()) {
        copy.send(message).await?;
    }
    copy.finish().await?;
    Ok(())
}

/// The `CopyData` messages that send `parts`: each part in pieces of at most [`COPY_CHUNK`].
fn messages<'a>(parts: &[&'a [u8]]) -> impl Iterator<Item = &'a [u8]> {
    parts.iter().flat_map(|p| p.chunks(COPY_CHUNK))
}

/// Append a value in `COPY ... FROM STDIN` text format.
fn copy_text(buf: &mut Vec<u8>, v: &Value) {
    use std::io::Write as _;
    let escaped = |buf: &mut Vec<u8>, s: &str| {
        for &b in s.as_bytes() {
            match b {
                b'\\' => buf.extend_from_slice(b"\\\\"),
                b'\n' => buf.extend_from_slice(b"\\n"),
                b'\r' => buf.extend_from_slice(b"\\r"),
                b'\t' => buf.extend_from_slice(b"\\t"),
                _ => buf.push(b),
            }
        }
    };
    // Writing into a Vec cannot fail.
    let _ = match v {
        Value::Null => buf.write_all(b"\\N"),
        Value::Bool(b) => buf.write_all(if *b { b"t" } else { b"f" }),
        Value::Int(i) => write!(buf, "{i}"),
        Value::Float(f) if f.is_nan() => buf.write_all(b"NaN"),
        Value::Float(f) if f.is_infinite() => {
            buf.write_all(if *f > 0.0 { b"Infinity" } else { b"-Infinity" })
        }
        Value::Float(f) => write!(buf, "{f}"),
        Value::Decimal(s) | Value::Text(s) => {
            escaped(buf, s);
            Ok(())
        }
        Value::Bytes(b) => {
            buf.extend_from_slice(b"\\\\x");
            buf.extend_from_slice(hex::encode(b).as_bytes());
            Ok(())
        }
        Value::Date(d) => write!(buf, "{}", d.format("%Y-%m-%d")),
        Value::Time(t) => write!(buf, "{}", t.format("%H:%M:%S%.6f")),
        Value::Timestamp(t) => write!(buf, "{}", t.format("%Y-%m-%d %H:%M:%S%.6f")),
        Value::TimestampTz(t) => write!(buf, "{}", t.format("%Y-%m-%d %H:%M:%S%.6f+00")),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuples_are_sent_as_they_are_between_header_and_trailer_in_bounded_messages() {
        let mut tuples = crate::db::Tuples::default();
        let big = vec![7u8; COPY_CHUNK + 10];
        for t in [&b"one"[..], &big, b"three"] {
            tuples.push(t);
        }
        let data = tuples.span(0..3).expect("span");
        let payload = Payload::Tuples(data);
        let sent: Vec<&[u8]> = messages(&payload.parts()).collect();
        assert!(sent.iter().all(|m| !m.is_empty() && m.len() <= COPY_CHUNK));
        let mut want = pgbinary::HEADER.to_vec();
        want.extend_from_slice(b"one");
        want.extend_from_slice(&big);
        want.extend_from_slice(b"three");
        want.extend_from_slice(pgbinary::TRAILER);
        assert_eq!(sent.concat(), want);
        // A buffer is sent as it is.
        let payload = Payload::Buf(b"x".to_vec());
        let sent: Vec<&[u8]> = messages(&payload.parts()).collect();
        assert_eq!(sent, [b"x"]);
    }

    #[test]
    fn only_uuids_the_server_takes_are_looked_up_as_uuids() {
        assert!(plain_uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
        assert!(plain_uuid("A0EEBC999C0B4EF8BB6D6BB9BD380A11"));
        for bad in [
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            "a0eebc999-c0b-4ef8-bb6d-6bb9bd380a11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "urn:uuid:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "",
        ] {
            assert!(!plain_uuid(bad), "{bad}");
        }
    }

    #[test]
    fn copy_text_escapes_and_formats() {
        let mut buf = Vec::new();
        for v in [
            Value::Null,
            Value::Text("a\tb\\c\n监管".into()),
            Value::Bytes(vec![0xde, 0xad]),
            Value::Float(f64::NEG_INFINITY),
            Value::Bool(true),
        ] {
            copy_text(&mut buf, &v);
            buf.push(b'|');
        }
        assert_eq!(
            String::from_utf8(buf).expect("utf8"),
            "\\N|a\\tb\\\\c\\n监管|\\\\xdead|-Infinity|t|"
        );
    }
}
