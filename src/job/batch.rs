//! One batch: classify the rows read, map them, deliver them, and only after the exchange
//! acknowledged, commit the watermark, the ledger entry, the digests and the rejects.
//!
//! A row the exchange refuses (a constraint, a value out of range) does not block its
//! batch: the batch is split until the refused rows are isolated; they are quarantined with
//! the database's message and everything else is delivered.

use std::collections::HashMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tracing::Instrument;
use xxhash_rust::xxh3::Xxh3;

use super::plan::{FlagPlan, Mode, Plan};
use super::{Ctx, CycleReport, JobError};
use crate::config::DeleteMode;
use crate::db::ReadRow;
use crate::mapping::RowCtx;
use crate::sink::{
    Op, Outgoing, Refusal, RefusedBy, Removal, SinkError, Stage, Target, Tuples, Turn,
};
use crate::state::{Commit, DigestEntry, LedgerEntry, Origin, Reject};
use crate::value::{Value, key_text, row_digest};
use crate::watermark::Watermark;

mod finish;
mod launch;
mod prepare;
mod sort;
pub use finish::finish;
pub use launch::launch;
pub use prepare::prepare;
#[cfg(test)]
use prepare::{batch_id, content_of};
#[cfg(test)]
use sort::last_of_each_key;
use sort::{Sorted, sort};

/// Digests of rows already handled, by record key: skip a row read again unchanged.
pub type Seen = HashMap<String, ([u8; 16], String)>;

/// Which handled rows to remember by digest.
pub enum Remember {
    Nothing,
    All,
    /// Rows whose change time is this one or later.
    Since(Value),
}

/// A batch on its way to the exchange: rows read, keys to remove, or rejected rows sent
/// again on request.
#[allow(clippy::large_enum_variant)] // one batch at a time is moved: boxing would only allocate
pub enum Batch<'a> {
    Rows(Rows<'a>),
    Removals(Removals),
    Resubmission(Resubmission),
}

/// Rows read, with where they were read and what to remember of them.
pub struct Rows<'a> {
    pub rows: Vec<ReadRow>,
    /// Digests of rows already handled: a row read again unchanged is skipped.
    pub seen: &'a Seen,
    /// Positions of the first and last row read, for the ledger.
    pub from: Option<Watermark>,
    pub to: Option<Watermark>,
    /// The watermark to commit with the batch (`None`: unchanged).
    pub new_wm: Option<Watermark>,
    pub remember: Remember,
    /// Digests of rows changed before this time are forgotten.
    pub prune_before: Option<String>,
    pub chunk: Option<Chunk>,
}

impl<'a> Rows<'a> {
    /// Rows read, with nothing else to do: no watermark, no digests.
    pub fn of(rows: Vec<ReadRow>, seen: &'a Seen) -> Self {
        Rows {
            rows,
            seen,
            from: None,
            to: None,
            new_wm: None,
            remember: Remember::Nothing,
            prune_before: None,
            chunk: None,
        }
    }
}

/// A part of a full resync: what makes its batch ids new ones, and the progress committed
/// with it (the last key of its chunk, as JSON; `None` when removals follow in a batch of
/// their own, which commits it).
#[derive(Clone, Debug)]
pub struct Chunk {
    pub salt: String,
    pub progress: Option<String>,
}

/// Where removed keys are gone from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gone {
    /// Gone from the source (a digest table): source key values.
    Source,
    /// Held at the exchange, gone from the source (a full resync): the exchange's key values.
    Target,
}

/// Keys to remove at the exchange, whatever the version there.
pub struct Removals {
    /// Each key's record key and its values.
    pub keys: Vec<(String, Vec<Value>)>,
    pub gone: Gone,
    pub chunk: Option<Chunk>,
}

/// Rows read again by key, to send the open rejects among them again on request.
pub struct Resubmission {
    pub rows: Vec<ReadRow>,
    /// Makes its batch ids new ones.
    pub salt: String,
}

/// How a quarantined row comes to be sent again, normally.
pub const CHANGED: &str = "re-sent after it changed at the source";

/// Nothing seen before.
static NONE_SEEN: std::sync::LazyLock<Seen> = std::sync::LazyLock::new(Seen::new);

/// A batch taken apart for its preparation.
struct Parts<'a> {
    rows: Vec<ReadRow>,
    seen: &'a Seen,
    from: Option<Watermark>,
    to: Option<Watermark>,
    new_wm: Option<Watermark>,
    remember: Remember,
    prune_before: Option<String>,
    /// Keys gone from the source, and keys gone from it that the exchange holds.
    gone: Vec<(String, Vec<Value>)>,
    gone_target: Vec<(String, Vec<Value>)>,
    salt: Option<String>,
    resync_key: Option<String>,
    /// A full resync's batch.
    full: bool,
    /// Why open rejects among these rows are sent again (their history says it).
    why: &'static str,
}

impl<'a> From<Batch<'a>> for Parts<'a> {
    fn from(b: Batch<'a>) -> Self {
        let none = Parts {
            rows: Vec::new(),
            seen: &NONE_SEEN,
            from: None,
            to: None,
            new_wm: None,
            remember: Remember::Nothing,
            prune_before: None,
            gone: Vec::new(),
            gone_target: Vec::new(),
            salt: None,
            resync_key: None,
            full: false,
            why: CHANGED,
        };
        match b {
            Batch::Rows(r) => Parts {
                rows: r.rows,
                seen: r.seen,
                from: r.from,
                to: r.to,
                new_wm: r.new_wm,
                remember: r.remember,
                prune_before: r.prune_before,
                salt: r.chunk.as_ref().map(|c| c.salt.clone()),
                full: r.chunk.is_some(),
                resync_key: r.chunk.and_then(|c| c.progress),
                ..none
            },
            Batch::Removals(r) => {
                let (gone, gone_target) = match r.gone {
                    Gone::Source => (r.keys, Vec::new()),
                    Gone::Target => (Vec::new(), r.keys),
                };
                Parts {
                    gone,
                    gone_target,
                    salt: r.chunk.as_ref().map(|c| c.salt.clone()),
                    full: r.chunk.is_some(),
                    resync_key: r.chunk.and_then(|c| c.progress),
                    ..none
                }
            }
            Batch::Resubmission(r) => Parts {
                rows: r.rows,
                salt: Some(r.salt),
                why: "re-sent on request",
                ..none
            },
        }
    }
}

enum Pending {
    /// The values, the operation, and the row's tuple when it was read as one.
    Upsert(Vec<Value>, Op, Option<Bytes>),
    Delete(Vec<Value>),
    Gone(Vec<Value>),
    GoneTarget(Vec<Value>),
}

/// A row on its way out: the exchange values, its record key, and its source values
/// (none for a key gone from a digest table). The values an upserted row's exchange values
/// took over unconverted are moved out of `src` (which is left empty when that was all of
/// them); `Mapping::restore` puts them back.
struct Out {
    values: Vec<Value>,
    op: Op,
    rkey: String,
    src: Option<Vec<Value>>,
    /// The row as its binary `COPY` tuple, when it was read as one ([`ReadRow::tuple`]).
    tuple: Option<Bytes>,
}

/// A reject record of a row read (its key, values and every reason).
pub(crate) fn reject(
    plan: &Plan,
    rkey: &str,
    values: &[Value],
    origin: Origin,
    reasons: Vec<String>,
) -> Reject {
    let key: Vec<&Value> = plan.key.iter().filter_map(|&i| values.get(i)).collect();
    let named = named_columns(&reasons);
    let row: serde_json::Map<String, serde_json::Value> = plan
        .read_cols
        .iter()
        .zip(values)
        .enumerate()
        .filter(|(i, (c, _))| {
            !plan.narrow_reject_copy || plan.key.contains(i) || named.contains(c.name.as_str())
        })
        .map(|(i, (c, v))| {
            // A masked column's copy is masked as it would have left.
            let masked = plan
                .read_masks
                .get(i)
                .and_then(Option::as_ref)
                .map(|m| m.apply(v));
            let v = masked.as_ref().unwrap_or(v);
            let j = if v.is_null() {
                serde_json::Value::Null
            } else {
                serde_json::Value::String(v.to_text())
            };
            (c.name.to_string(), j)
        })
        .collect();
    Reject {
        rkey: rkey.to_owned(),
        kvals: serde_json::to_string(&key).unwrap_or_default(),
        origin,
        reasons,
        row_json: serde_json::Value::Object(row).to_string(),
        digest: Some(row_digest(values)),
    }
}

/// The words of a reject's reasons that may name a column (every reason names the column
/// it is about).
fn named_columns(reasons: &[String]) -> std::collections::HashSet<&str> {
    reasons
        .iter()
        .flat_map(|r| r.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$')))
        .filter(|w| !w.is_empty())
        .collect()
}

/// Deliver one batch: check and map it, write it, and commit after the acknowledgement.
pub async fn deliver(
    ctx: &Ctx,
    plan: &Plan,
    b: Batch<'_>,
    report: &mut CycleReport,
) -> Result<(), JobError> {
    let p = prepare(ctx, plan, b, report).await?;
    finish(ctx, plan, launch(plan, p, None), report).await
}

/// A batch checked and mapped, not yet written.
pub struct Prepared {
    unconditional: bool,
    rejects: Vec<Reject>,
    digests: Vec<DigestEntry>,
    flag_failed: Vec<(Vec<Value>, String)>,
    newest: Option<DateTime<Utc>>,
    new_wm: Option<Watermark>,
    prune_before: Option<String>,
    resync_key: Option<String>,
    why: &'static str,
    /// The batch id, and the rows to write (exchange values taken out of `ups`).
    send: Option<Sending>,
    started: std::time::Instant,
}

struct Sending {
    id: String,
    cd_batch: String,
    ups: Vec<Out>,
    dels: Vec<Out>,
    rows: Vec<Vec<Value>>,
    /// The operation of each row of `rows`.
    ops: Vec<Op>,
    del_rows: Vec<Vec<Value>>,
    /// Empty, or the tuple of every row of `rows`, written instead of its values.
    tuples: Tuples,
    /// A full resync's batch.
    full: bool,
}

/// What a write task gives back: the outcome, the upserted rows (whose values complete their
/// source rows again where needed), the deletes (a refused one is quarantined with its
/// key values), and the upserted rows' tuples (a refused row's values are read from its own).
type Written = (
    Result<Vec<Refusal>, SinkError>,
    Vec<Vec<Value>>,
    Vec<Vec<Value>>,
    Tuples,
);

/// A batch whose write runs in a task of its own, so that the next batch can be checked
/// and mapped meanwhile. Dropped before [`finish`], the write is stopped (its transaction
/// never commits; the batch is sent again later under the same id).
pub struct InFlight {
    p: Prepared,
    write: Option<(tokio::task::JoinHandle<Written>, super::AbortOnDrop)>,
    writing: std::time::Instant,
    go: Option<tokio::sync::oneshot::Sender<()>>,
    /// Where the write stands at the exchange: told as soon as it committed (before the
    /// batch is committed in the state store) or failed, and to the batch after it when all
    /// that is left is the commit.
    written: tokio::sync::watch::Receiver<Stage>,
}

#[cfg(test)]
mod tests;
