//! A table's plan: the configuration resolved against both catalogs — which columns are
//! read, which is the key, the change column, and the mapping to the exchange table. Every
//! mismatch is reported in words that name the table and the column.

mod build;
mod uncatalogued;

pub use uncatalogued::uncatalogued_target;

use std::sync::Arc;

use crate::config::{DeleteMode, Window};
use crate::ctx::Ends;
use crate::db::dialect::{Cond, Dialect};
use crate::ident::{Col, TableName};
use crate::mapping::Mapping;
use crate::sink::{Capabilities, Target};
use crate::value::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Key,
    Timestamp,
    Control,
    Flag,
    Digest,
}

#[derive(Clone, Debug)]
pub struct FlagPlan {
    pub col: Col,
    pub error: Option<Col>,
    pub pending: Value,
    pub done: Value,
    pub failed: Value,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    /// Where the table is read and written.
    pub ends: Ends,
    pub source: TableName,
    pub target: TableName,
    /// The table as its sink writes it.
    pub out: Arc<Target>,
    pub mode: Mode,
    /// Source columns read, in order.
    pub read_cols: Vec<Col>,
    /// Indexes into `read_cols`.
    pub key: Vec<usize>,
    pub ts: Option<usize>,
    pub op: Option<usize>,
    pub flag: Option<FlagPlan>,
    pub window: Option<Window>,
    pub mapping: Mapping,
    /// The mask of each column read (outbound shaping): a row's values are masked wherever
    /// they are written outside the exchange rows too (rejects, messages).
    pub read_masks: Vec<Option<crate::shape::Mask>>,
    /// The rows of the table that may leave (its `filter`), with the source column it
    /// reads: a condition of every read of the source.
    pub scope: Option<(Col, crate::shape::Scope)>,
    pub deletes: DeleteMode,
    /// With tombstones: indexes into the mapping's columns that a tombstone sets in place
    /// (operation, times, batch number) for a row gone from the source.
    pub tombstone: Vec<usize>,
    pub batch_size: usize,
    pub batch_bytes: usize,
    /// Source columns that have no exchange column and are therefore not sent.
    pub unexchanged: Vec<String>,
    /// Exchange columns the database computes (generated, identity `GENERATED ALWAYS`): never
    /// written, left for the database to fill.
    pub computed: Vec<String>,
    /// Column pairs of which some values do not fit the exchange column, in words
    /// ([`crate::typefit`]).
    pub type_notes: Vec<String>,
    /// Quality rules, resolved against `read_cols`.
    pub rules: Vec<crate::validate::Rule>,
    /// Translated columns, resolved against `read_cols` (their pairs read at start).
    pub translate: Vec<crate::translate::Translate>,
    /// Timestamp-like tables: the last full re-read of the lookback window.
    pub sweep: std::sync::Arc<std::sync::Mutex<Sweep>>,
    /// Timestamp-like tables: the last look for rows in the future or without a time.
    pub extras: std::sync::Arc<std::sync::Mutex<Extras>>,
    /// The next cycle was woken by the source announcing new rows: it asks the source afresh.
    pub woken: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// PostgreSQL to PostgreSQL, column for column, with the very same types: rows are read
    /// as binary `COPY` tuples and written to the exchange as they came, decoding only the
    /// columns marked here (key, change time, operation, version, rules). See
    /// [`Plan::pass_through`].
    pub tuples: Option<Vec<bool>>,
    /// The body field that says whether a batch is a full resync's (`[resync] full_field`).
    pub marks: Option<Marks>,
    /// A `down` table read from an http endpoint.
    pub pull: Option<crate::config::Pull>,
    /// The source holds the key unique: one read returns each key at most once.
    pub unique_key: bool,
    /// The source's rows carry the id of the transaction that wrote them (a PostgreSQL
    /// table): a lookback re-read asks only for rows of transactions the last one could
    /// not see.
    pub row_xids: bool,
    /// A reject keeps only its key and the columns its reasons name.
    pub narrow_reject_copy: bool,
}

/// A body field and its values for a full resync's batches and for increments.
#[derive(Clone, Debug)]
pub struct Marks {
    pub field: String,
    pub full: String,
    pub increment: String,
}

impl Marks {
    pub fn of(&self, full: bool) -> (String, String) {
        let v = if full { &self.full } else { &self.increment };
        (self.field.clone(), v.clone())
    }
}

/// When a timestamp-like table last looked for rows dated in the future and rows without a
/// change time, and the warnings that gave: a quiet table looks at most once a minute.
#[derive(Debug, Default)]
pub struct Extras {
    pub at: Option<std::time::Instant>,
    pub warnings: Vec<String>,
}

/// When a timestamp-like table last re-read its whole lookback window, and the watermark's
/// time when that re-read started (the next one reaches back `lookback` from it).
#[derive(Debug, Default)]
pub struct Sweep {
    pub at: Option<std::time::Instant>,
    pub from: Option<Value>,
    /// The last complete re-read's record (by transaction id). A quiet table's is written
    /// by the state store's periodic flush, not at every re-read (an older record only makes
    /// the next re-read after a restart read more).
    pub reread: Option<crate::watermark::Reread>,
    /// The last re-read found nothing to send.
    pub quiet: bool,
}

impl Plan {
    /// The conditions of a read of the source: `conds`, and the table's scope.
    pub fn scoped<'a>(&'a self, mut conds: Vec<Cond<'a>>) -> Vec<Cond<'a>> {
        if let Some((c, s)) = &self.scope {
            conds.push(Cond::Within(c, s));
        }
        conds
    }

    pub fn key_cols(&self) -> Vec<Col> {
        self.key
            .iter()
            .map(|&i| self.read_cols[i].clone())
            .collect()
    }

    /// Read rows as tuples and pass them on as they are ([`Plan::tuples`]) when nothing
    /// happens to a row on its way but being looked at: both databases are PostgreSQL, every
    /// exchange column is the source column of the same place and of the very same type, no
    /// constant or control column is added, and the mode needs no whole row per row (flag
    /// tables set their flags by every value read; digest tables digest every row).
    pub fn pass_through(&mut self, source: Dialect, sink: &Capabilities) {
        let whole_rows = matches!(self.mode, Mode::Flag | Mode::Digest);
        if source != Dialect::Postgres
            || !sink.copy_tuples
            || whole_rows
            || !self.mapping.is_identity()
            || !self.translate.is_empty()
            || !crate::db::same_binary_form(&self.read_cols, &self.mapping.columns)
        {
            self.tuples = None;
            return;
        }
        let mut decode = vec![false; self.read_cols.len()];
        let looked_at = self
            .key
            .iter()
            .chain(&self.ts)
            .chain(&self.op)
            .chain(&self.mapping.version)
            .copied()
            .chain(
                self.rules
                    .iter()
                    .flat_map(|r| std::iter::once(r.index).chain(r.other.as_ref().map(|o| o.0))),
            );
        for i in looked_at {
            if let Some(d) = decode.get_mut(i) {
                *d = true;
            }
        }
        self.tuples = Some(decode);
    }
}
