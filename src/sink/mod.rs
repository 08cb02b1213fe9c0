//! Where a table's batches go, and how the other side answers: a [`Sink`] describes the
//! table it writes, delivers one batch at a time and says which rows it refused, lists the
//! keys it holds where it can, and tells whether it answers; [`Receipts`] gives the
//! province's verdicts from a cursor. [`Capabilities`] say what a sink does itself, so that
//! the job adapts to it instead of asking which sink it is.
//!
//! The seam's own types live here; the job translates its batches into them. A sink never
//! reads the state store: cursors and acknowledgements are the job's to keep.

pub mod database;
pub mod file;
pub mod http;
#[cfg(test)]
pub mod memory;
pub mod notice;
mod receipts;
pub mod soap;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::db::DbError;
pub use crate::db::{ErrorClass, Stage, TableSchema, Tuples, Turn};
use crate::ident::{Col, TableName};
use crate::value::Value;
pub use notice::ResyncEvent;
pub use receipts::{Feed, Page, ReceiptTable, Receipts, RecordKey, Verdict};

/// What an exchanged row is: a new row, a changed row, or a deleted one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Delete,
}

impl Op {
    /// Parse an operation letter (`I`/`U`/`D`, any case).
    pub fn parse(v: &Value) -> Option<Op> {
        match v {
            Value::Text(s) => match s.trim() {
                "I" | "i" => Some(Op::Insert),
                "U" | "u" => Some(Op::Update),
                "D" | "d" => Some(Op::Delete),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn letter(self, lower: bool) -> &'static str {
        match (self, lower) {
            (Op::Insert, false) => "I",
            (Op::Update, false) => "U",
            (Op::Delete, false) => "D",
            (Op::Insert, true) => "i",
            (Op::Update, true) => "u",
            (Op::Delete, true) => "d",
        }
    }
}

/// How a sink takes deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletes {
    /// It removes the row itself (a database `DELETE`).
    Native,
    /// It takes a delete as a record marked `D`.
    AsRecords,
}

/// What a sink does itself.
#[derive(Clone, Copy, Debug)]
pub struct Capabilities {
    /// A stored row whose version is newer than the one delivered survives, so batches
    /// sent again after a crash never replace newer data.
    pub newer_wins: bool,
    pub deletes: Deletes,
    /// A batch may begin before the one before it was acknowledged; the sink still
    /// commits them in order (see [`Turn`]).
    pub overlapping: bool,
    /// Most rows one delivery may carry; `None`: any number.
    pub max_rows: Option<usize>,
    /// It can list the keys it holds in a key range ([`Sink::keys`]): a full resync then
    /// removes the rows whose key the source no longer has.
    pub lists_keys: bool,
    /// It takes rows as the PostgreSQL binary `COPY` tuples they were read as.
    pub copy_tuples: bool,
    /// Its text cannot hold a NUL character (PostgreSQL's cannot).
    pub text_without_nul: bool,
    /// It can say which columns and keys a table has ([`Sink::describe`]); without a
    /// catalog, the job takes the source table's columns, renamed and with the constants,
    /// keyed as at the source.
    pub catalog: bool,
    /// The province checks each record as it takes it and answers with its verdicts: a
    /// record delivered without a refusal is accepted, and a reject of it is cleared at once.
    pub verdicts: bool,
}

/// The table a sink writes, as the job resolved it from the configuration and from what
/// [`Sink::describe`] said.
#[derive(Clone, Debug)]
pub struct Target {
    pub table: TableName,
    /// Columns of every row delivered, in row order.
    pub columns: Vec<Col>,
    /// Indexes into `columns` of the key.
    pub key: Vec<usize>,
    /// Index into `columns` of the version column (newer rows win).
    pub version: Option<usize>,
    /// Indexes into `columns` that a tombstone sets in place (operation, times, batch).
    pub tombstone: Vec<usize>,
}

impl Target {
    pub fn key_cols(&self) -> Vec<Col> {
        self.key.iter().map(|&i| self.columns[i].clone()).collect()
    }

    pub fn version_col(&self) -> Option<&Col> {
        self.version.map(|i| &self.columns[i])
    }

    pub fn tombstone_cols(&self) -> Vec<Col> {
        self.tombstone
            .iter()
            .map(|&i| self.columns[i].clone())
            .collect()
    }
}

/// How a batch's deletes apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Each delete carries its key, then its version: a stored row that is newer survives.
    Versioned,
    /// Each delete carries its key only: the row goes whatever its version (a key gone from
    /// the source).
    Unconditional,
    /// Each delete carries the values of the target's tombstone columns, then its key: the
    /// row stays, marked deleted.
    Tombstone,
}

/// One batch on its way out. Delivered again after a crash, it carries the same rows under
/// the same id.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// The batch id: agent, table and a digest of the rows read.
    pub id: &'a str,
    /// The batch number of the control columns (`yyyyMMdd` + counter).
    pub cd_batch: &'a str,
    /// The table's configured name, for messages and metrics.
    pub label: &'a str,
    pub target: &'a Target,
    /// Rows to write, each with the values of `target.columns`.
    pub rows: &'a [Vec<Value>],
    /// The operation of each row.
    pub ops: &'a [Op],
    /// Empty, or every row as its binary `COPY` tuple, written instead of its values
    /// (which then hold only what the job looked at); only where
    /// [`Capabilities::copy_tuples`].
    pub tuples: &'a Tuples,
    /// Deletes, their values as `removal` says.
    pub deletes: &'a [Vec<Value>],
    pub removal: Removal,
    /// A field and its value that say what kind of batch this is (a full resync's or an
    /// increment), for sinks whose requests carry such fields; `None`: not asked for.
    pub mark: Option<(&'a str, &'a str)>,
}

/// A row or delete the other side refused, with its words; the rest of the batch was
/// delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub delete: bool,
    /// Index into the batch's rows (or deletes).
    pub index: usize,
    pub message: String,
    /// Who refused it: the exchange as a store (a constraint), or the province's checks
    /// answering the delivery (with the platform's code, where it gives one).
    pub by: RefusedBy,
}

/// Who refused a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefusedBy {
    Exchange,
    Province { code: Option<String> },
}

/// A sink that could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{doing}: {cause}")]
    Other {
        doing: String,
        cause: String,
        class: ErrorClass,
    },
}

impl SinkError {
    pub fn class(&self) -> ErrorClass {
        match self {
            SinkError::Db(e) => e.class(),
            SinkError::Other { class, .. } => *class,
        }
    }
}

/// What a delivery waits for before it begins at the other side (the batch before it).
pub type Ready<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The other side of a table's exchange.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// Where it writes, in words (`exchange database`).
    fn place(&self) -> &'static str;

    fn capabilities(&self) -> Capabilities;

    /// The SQL dialect of the database it writes, where it writes one: the column types of
    /// its tables are then checked against the source's ([`crate::typefit`]).
    fn dialect(&self) -> Option<crate::db::dialect::Dialect> {
        None
    }

    /// The table's columns and keys, or `None` when there is no such table.
    async fn describe(&self, table: &TableName) -> Result<Option<TableSchema>, SinkError>;

    /// Deliver one batch once `ready` resolves, in its `turn`; what the other side refuses
    /// as data is isolated and returned, everything else is delivered. Where the sink
    /// allows ([`Capabilities::overlapping`]), it begins before the batch before it was
    /// acknowledged and is acknowledged after it.
    async fn deliver(
        &self,
        batch: &Outgoing<'_>,
        ready: Ready<'_>,
        turn: &Turn,
    ) -> Result<Vec<Refusal>, SinkError>;

    /// Keys it holds after `after` and up to `up_to` (both in its key's order, both
    /// optional), in that order, at most `limit`. Only where [`Capabilities::lists_keys`].
    async fn keys(
        &self,
        target: &Target,
        after: Option<&[Value]>,
        up_to: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>, SinkError>;

    /// Whether it answers now.
    async fn health(&self) -> Result<(), SinkError>;

    /// The JSON answer of a `GET` of `url` on the exchange, with its credentials (a page of
    /// a `down` table's records); a sink that is no HTTP interface refuses.
    async fn pull(&self, url: &str) -> Result<serde_json::Value, SinkError> {
        Err(SinkError::Other {
            doing: format!("reading {url}"),
            cause: format!("the {} is not an http interface", self.place()),
            class: ErrorClass::Fatal,
        })
    }

    /// Tell the province that a full resync started or ended, the way `to` says; a sink
    /// that cannot carry such a notice refuses.
    async fn notice(
        &self,
        to: &crate::config::Notice,
        _event: &ResyncEvent<'_>,
    ) -> Result<(), SinkError> {
        Err(SinkError::Other {
            doing: "telling the province of a full resync".into(),
            cause: format!("the {} cannot carry a notice {to:?}", self.place()),
            class: ErrorClass::Fatal,
        })
    }

    async fn close(&self);
}

/// A connected exchange: where batches go and where verdicts come from.
pub struct Exchange {
    pub sink: Arc<dyn Sink>,
    pub receipts: Arc<dyn Receipts>,
    /// The exchange database, where the exchange is one (`down` tables read it).
    pub db: Option<Arc<crate::db::Db>>,
}

/// Connect to the exchange the configuration names (`lazy`: on first use).
pub async fn connect(cfg: &crate::config::Config, lazy: bool) -> Result<Exchange, SinkError> {
    let db = match &cfg.exchange.target {
        crate::config::ExchangeTarget::Database(db) => db,
        crate::config::ExchangeTarget::Http(h) => {
            let sink = Arc::new(http::HttpSink::new(h, &cfg.agent.id, cfg.agent.tz)?);
            if !lazy {
                sink.health().await?;
            }
            let receipts: Arc<dyn Receipts> = match &cfg.feedback.http {
                Some(fb) => Arc::new(http::HttpReceipts::new(sink.clone(), fb.clone())),
                None => Arc::new(NoReceipts),
            };
            return Ok(Exchange {
                sink,
                receipts,
                db: None,
            });
        }
        crate::config::ExchangeTarget::Soap(s) => {
            let sink = Arc::new(soap::SoapSink::new(s, &cfg.agent.id, cfg.agent.tz)?);
            if !lazy {
                sink.health().await?;
            }
            // Its verdicts come in its answers.
            return Ok(Exchange {
                sink,
                receipts: Arc::new(NoReceipts),
                db: None,
            });
        }
        crate::config::ExchangeTarget::File(f) => {
            let sink = Arc::new(file::FileSink::new(cfg, f)?);
            if !lazy {
                sink.health().await?;
            }
            let receipts: Arc<dyn Receipts> = match file::FileReceipts::new(cfg, f) {
                Some(r) => Arc::new(r),
                None => Arc::new(NoReceipts),
            };
            return Ok(Exchange {
                sink,
                receipts,
                db: None,
            });
        }
    };
    let conn = Arc::new(crate::db::Db::connect(db, "exchange", lazy).await?);
    let receipts = database::DatabaseReceipts::new(
        conn.clone(),
        cfg.feedback.clone(),
        cfg.exchange.control.batch.clone(),
    );
    Ok(Exchange {
        sink: Arc::new(database::DatabaseSink::new(
            conn.clone(),
            db.statement_timeout,
        )),
        receipts: Arc::new(receipts),
        db: Some(conn),
    })
}

/// Receipts that never have a verdict: no feedback is configured.
pub struct NoReceipts;

#[async_trait::async_trait]
impl Receipts for NoReceipts {
    fn feeds(&self, _: &[&crate::config::TableSpec]) -> Vec<Feed> {
        Vec::new()
    }

    async fn poll(
        &self,
        _: &Feed,
        _: Option<&ReceiptTable>,
        _: Option<&str>,
    ) -> Result<Page, SinkError> {
        Ok(Page::default())
    }

    async fn check(&self, _: &[ReceiptTable]) -> Vec<(bool, String)> {
        Vec::new()
    }

    async fn health(&self) -> Option<Result<(), SinkError>> {
        None
    }
}
