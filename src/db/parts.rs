//! Writing a batch part by part: the rows a database refuses are isolated under savepoints
//! (and, where a refusal ends the whole transaction, by writing the batch again row by
//! row), and statements are cut to what each engine accepts.

use std::ops::Range;

use super::{DbError, ErrorClass};
use crate::db::EngineKind;
use crate::value::Value;

/// A row or delete the exchange refused: (is a delete, its index, the database's message).
pub type Refused = (bool, usize, String);

/// One part of a batch, written inside the batch's transaction under a savepoint.
pub(super) trait PartWriter {
    /// Run a fixed statement (savepoint handling).
    async fn exec(&mut self, sql: &'static str) -> Result<(), DbError>;
    /// Write rows `r` and deletes `d` of the batch.
    async fn part(&mut self, r: Range<usize>, d: Range<usize>) -> Result<(), DbError>;
}

/// Write a batch part by part: the whole first; a part the database refuses as data is
/// rolled back to its savepoint and split in halves, until every refused row is alone.
/// Upserts and deletes are tried separately before they are split.
pub(super) async fn isolate(
    w: &mut impl PartWriter,
    rows: usize,
    dels: usize,
) -> Result<Vec<Refused>, DbError> {
    isolate_parts(w, vec![(0..rows, 0..dels)]).await
}

/// [`isolate`], beginning with these parts (written from the last to the first).
pub(super) async fn isolate_parts(
    w: &mut impl PartWriter,
    mut todo: Vec<(Range<usize>, Range<usize>)>,
) -> Result<Vec<Refused>, DbError> {
    let mut refused = Vec::new();
    while let Some((r, d)) = todo.pop() {
        if r.is_empty() && d.is_empty() {
            continue;
        }
        w.exec("SAVEPOINT frontdb_part").await?;
        let e = match w.part(r.clone(), d.clone()).await {
            Ok(()) => {
                w.exec("RELEASE SAVEPOINT frontdb_part").await?;
                continue;
            }
            Err(e) if e.class() == ErrorClass::Data => e,
            Err(e) => return Err(e),
        };
        w.exec("ROLLBACK TO SAVEPOINT frontdb_part").await?;
        w.exec("RELEASE SAVEPOINT frontdb_part").await?;
        let (no_r, no_d) = (r.start..r.start, d.start..d.start);
        match (r.len(), d.len()) {
            (1, 0) => refused.push((false, r.start, e.cause().to_owned())),
            (0, 1) => refused.push((true, d.start, e.cause().to_owned())),
            (_, 0) => {
                let mid = r.start + r.len() / 2;
                todo.push((mid..r.end, no_d.clone()));
                todo.push((r.start..mid, no_d));
            }
            (0, _) => {
                let mid = d.start + d.len() / 2;
                todo.push((no_r.clone(), mid..d.end));
                todo.push((no_r, d.start..mid));
            }
            _ => {
                todo.push((no_r, d));
                todo.push((r, no_d));
            }
        }
    }
    refused.sort_by_key(|(del, i, _)| (*del, *i));
    Ok(refused)
}

/// How one attempt at writing a batch failed, where a refusal may end the whole transaction
/// (SQL Server, see [`write_ending`]).
pub(super) enum Failed {
    /// The database ended the transaction when it refused a part: the single row (delete or
    /// not, its index, the database's words) when the part was one.
    Ended(Option<Refused>),
    Db(DbError),
}

impl From<DbError> for Failed {
    fn from(e: DbError) -> Self {
        Failed::Db(e)
    }
}

/// Write a batch by `attempt`s, one transaction each, where a refusal may end the whole
/// transaction instead of the one statement (most conversion errors on SQL Server), so that
/// the refused row cannot be told apart there. `attempt(None)` writes the batch as
/// [`isolate`] does; when that ends, `attempt(Some(left_out))` writes each row and each
/// delete alone (see [`singles`]) and is begun again without every row that ends it, that
/// row refused. Every other row is still committed, in one transaction.
pub(super) async fn write_ending<F, Fut>(
    engine: EngineKind,
    rows: usize,
    dels: usize,
    mut attempt: F,
) -> Result<Vec<Refused>, DbError>
where
    F: FnMut(Option<Vec<Refused>>) -> Fut,
    Fut: Future<Output = Result<Vec<Refused>, Failed>>,
{
    let ended = |why: Option<String>| DbError::Query {
        engine,
        doing: "writing a batch".into(),
        cause: format!(
            "the database ended the transaction when it refused a row{}, and the row could \
             not be told apart",
            why.map(|w| format!(" ({w})")).unwrap_or_default()
        ),
        code: None,
        class: ErrorClass::Fatal,
    };
    match attempt(None).await {
        Err(Failed::Ended(_)) => {}
        Err(Failed::Db(e)) => return Err(e),
        Ok(refused) => return Ok(refused),
    }
    let mut left_out: Vec<Refused> = Vec::new();
    loop {
        match attempt(Some(left_out.clone())).await {
            Ok(mut refused) => {
                refused.append(&mut left_out);
                refused.sort_by_key(|(del, i, _)| (*del, *i));
                return Ok(refused);
            }
            Err(Failed::Ended(Some(r)))
                if left_out.len() < rows + dels
                    && !left_out.iter().any(|(d, i, _)| (*d, *i) == (r.0, r.1)) =>
            {
                left_out.push(r);
            }
            Err(Failed::Ended(r)) => return Err(ended(r.map(|(_, _, w)| w))),
            Err(Failed::Db(e)) => return Err(e),
        }
    }
}

/// Each row, then each delete, of a batch as a part of its own, but those `left_out`; in the
/// order [`isolate_parts`] takes them (the first last).
pub(super) fn singles(
    rows: usize,
    dels: usize,
    left_out: &[Refused],
) -> Vec<(Range<usize>, Range<usize>)> {
    let out = |del: bool, i: usize| left_out.iter().any(|(d, j, _)| *d == del && *j == i);
    let rows = (0..rows)
        .filter(|&i| !out(false, i))
        .map(|i| (i..i + 1, 0..0));
    let dels = (0..dels)
        .filter(|&i| !out(true, i))
        .map(|i| (0..0, i..i + 1));
    let mut parts: Vec<_> = rows.chain(dels).collect();
    parts.reverse();
    parts
}

/// Approximate size of a value in memory, for the per-batch byte cap.
pub fn value_size(v: &Value) -> usize {
    match v {
        Value::Decimal(s) | Value::Text(s) => 24 + s.len(),
        Value::Bytes(b) => 24 + b.len(),
        _ => 16,
    }
}

/// Run `rows` through `text` in chunks the engine accepts: at most `max_params` parameters
/// and about 4 MiB of values per statement. Returns (start, end) row ranges.
pub fn chunks(rows: &[Vec<Value>], per_row: usize, max_params: usize) -> Vec<(usize, usize)> {
    const MAX_BYTES: usize = 4 * 1024 * 1024;
    let max_rows = (max_params / per_row.max(1)).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, r) in rows.iter().enumerate() {
        let size: usize = r.iter().map(value_size).sum();
        if i > start && (i - start >= max_rows || bytes + size > MAX_BYTES) {
            out.push((start, i));
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < rows.len() {
        out.push((start, rows.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rows_that_end_the_transaction_are_left_out_and_the_rest_is_written() {
        // Rows 3 and 7 and delete 1 end any transaction they are written in.
        let ends = |del: bool, i: usize| matches!((del, i), (false, 3) | (false, 7) | (true, 1));
        let mut attempts = 0;
        let refused = write_ending(EngineKind::MsSql, 10, 2, |alone| {
            attempts += 1;
            async move {
                let Some(out) = alone else {
                    return Err(Failed::Ended(None));
                };
                let parts = singles(10, 2, &out);
                assert_eq!(parts.len(), 12 - out.len());
                // Written first to last, as isolate_parts pops them.
                for (r, d) in parts.into_iter().rev() {
                    let (del, i) = if r.is_empty() {
                        (true, d.start)
                    } else {
                        (false, r.start)
                    };
                    if ends(del, i) {
                        return Err(Failed::Ended(Some((del, i, format!("bad {i}")))));
                    }
                }
                // A row refused the ordinary way comes back from the attempt itself.
                Ok(vec![(false, 5, "too long".into())])
            }
        })
        .await
        .expect("written");
        assert_eq!(attempts, 5);
        assert_eq!(
            refused,
            vec![
                (false, 3, "bad 3".to_owned()),
                (false, 5, "too long".to_owned()),
                (false, 7, "bad 7".to_owned()),
                (true, 1, "bad 1".to_owned()),
            ]
        );
        // A batch that goes through is written once; another error is given as it is.
        let once = write_ending(EngineKind::MsSql, 3, 0, |_| async { Ok(Vec::new()) }).await;
        assert!(once.is_ok_and(|r| r.is_empty()));
        let e = write_ending(EngineKind::MsSql, 3, 0, |alone| async move {
            match alone {
                None => Err(Failed::Ended(None)),
                Some(_) => Err(Failed::Db(DbError::Bootstrap {
                    path: "p".into(),
                    cause: "down".into(),
                })),
            }
        })
        .await;
        assert!(e.is_err_and(|e| e.cause() == "down"));
        // A row said to end the transaction again is not left out twice.
        let e = write_ending(EngineKind::MsSql, 3, 0, |alone| async move {
            match alone {
                None => Err(Failed::Ended(None)),
                Some(_) => Err(Failed::Ended(Some((false, 0, "again".into())))),
            }
        })
        .await;
        assert!(e.is_err_and(|e| e.cause().contains("(again)")));
    }

    #[test]
    fn chunks_respect_parameter_limits() {
        let rows: Vec<Vec<Value>> = (0..10).map(|i| vec![Value::Int(i); 3]).collect();
        assert_eq!(chunks(&rows, 3, 9), vec![(0, 3), (3, 6), (6, 9), (9, 10)]);
        assert_eq!(chunks(&rows, 3, 1000), vec![(0, 10)]);
        assert!(chunks(&[], 3, 9).is_empty());
    }
}
