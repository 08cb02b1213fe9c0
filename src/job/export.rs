//! A whole table for an export: read in key order a chunk at a time (memory does not grow
//! with the table), each row mapped to the exchange's columns as a batch's rows are.
//! Nothing is recorded in the state store: an export is not an exchange.

use crate::db::dialect::Cond;
use crate::mapping::RowCtx;
use crate::sink::Op;
use crate::value::Value;

use super::{JobError, Plan};

/// One chunk of the table.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Rows mapped to the exchange's columns.
    pub rows: Vec<Vec<Value>>,
    /// Rows that could not be mapped: their record key and why.
    pub failed: Vec<(String, String)>,
    /// Rows whose operation column says they are deleted (left out).
    pub deleted: u64,
    /// The key of the last row read: where the next chunk begins; `None` at the end.
    pub last: Option<Vec<Value>>,
}

/// The chunk of rows after key `after` (from the first when `None`).
pub async fn chunk(
    plan: &Plan,
    after: Option<&[Value]>,
    rc: &RowCtx<'_>,
) -> Result<Chunk, JobError> {
    let key_cols = plan.key_cols();
    let conds = match after {
        Some(k) => vec![Cond::After(&key_cols, k)],
        None => Vec::new(),
    };
    let sql = super::read_sql(plan, conds, &key_cols);
    let (rows, _) = super::fetch(
        &plan.ends.read,
        &sql,
        &plan.read_cols,
        plan.batch_bytes,
        None,
    )
    .await
    .map_err(|e| JobError::db(&plan.name, "reading the table for the export", e))?;
    let mut out = Chunk {
        last: rows
            .last()
            .map(|r| plan.key.iter().map(|&i| r.values[i].clone()).collect()),
        ..Chunk::default()
    };
    for r in rows {
        let op = plan
            .op
            .and_then(|i| Op::parse(&r.values[i]))
            .unwrap_or(Op::Insert);
        if op == Op::Delete {
            out.deleted += 1;
            continue;
        }
        let rkey = super::rkey_of(plan, &r.values);
        let mut values = r.values;
        match plan.mapping.row(&mut values, Op::Insert, rc) {
            Ok(v) => out.rows.push(v),
            Err(why) => out.failed.push((rkey, why)),
        }
    }
    Ok(out)
}
