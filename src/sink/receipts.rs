//! The province's verdicts on what it was sent: which records it rejected, and why.

use super::SinkError;
use crate::config::TableSpec;
use crate::ident::{Col, TableName};
use crate::value::Value;

/// A record's key as a verdict gives it.
#[derive(Clone, Debug, PartialEq)]
pub enum RecordKey {
    /// The key values joined by `|` in key order (`\` escapes), as the province writes it.
    Joined(String),
    /// The values of the exchange table's key columns.
    Exchange(Vec<Value>),
}

/// The province rejected one record.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The table as the province names it, where one feed carries every table's verdicts.
    pub table: Option<String>,
    pub key: RecordKey,
    pub reason: String,
    /// The batch id the province names, where it does.
    pub batch: Option<String>,
    /// When the province rejected it, as it wrote it.
    pub at: Option<String>,
}

/// An exchanged table as the receipts need it.
#[derive(Clone, Debug)]
pub struct ReceiptTable {
    /// The table's configured name.
    pub name: String,
    /// The table at the exchange.
    pub target: TableName,
    /// The key columns of the table at the exchange.
    pub key: Vec<Col>,
    /// Its own table of rejections, where the province keeps one per table.
    pub errors: Option<TableName>,
}

/// One list of verdicts, read from a cursor.
#[derive(Clone, Debug)]
pub struct Feed {
    /// The table whose verdicts it lists (its configured name); `None`: every table's.
    pub table: Option<String>,
    /// Where the job keeps the cursor between passes; `None`: the list is read from its
    /// beginning on every pass (the verdicts stay in it until the record is corrected).
    pub cursor_key: Option<String>,
}

/// One page of a feed.
#[derive(Debug, Default)]
pub struct Page {
    pub verdicts: Vec<Verdict>,
    /// Where the next page begins; `None` when the page was empty.
    pub cursor: Option<String>,
    /// More may follow at once.
    pub more: bool,
}

/// Where the province's verdicts come from.
#[async_trait::async_trait]
pub trait Receipts: Send + Sync {
    /// The feeds of one pass over these tables.
    fn feeds(&self, tables: &[&TableSpec]) -> Vec<Feed>;

    /// The page of `feed` after `cursor` (from its beginning when `None`); `table` is the
    /// feed's table, where it has one.
    async fn poll(
        &self,
        feed: &Feed,
        table: Option<&ReceiptTable>,
        cursor: Option<&str>,
    ) -> Result<Page, SinkError>;

    /// What the configuration of the verdicts looks like at the other side: a line per
    /// finding, and whether it is a problem (`true`) or only a note.
    async fn check(&self, tables: &[ReceiptTable]) -> Vec<(bool, String)>;

    /// Whether the verdicts can be read now; `None` where there is nothing of their own to
    /// check (it is the exchange's health).
    async fn health(&self) -> Option<Result<(), SinkError>>;
}
