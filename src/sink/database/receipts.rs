//! The province's verdicts in the exchange database: one rejection table for every table
//! (`kind = "table"`), a `dn_*_error` table per table (`"error_table"`), or a status flag
//! with its error text in the exchange rows themselves (`"flag"`).

use std::sync::Arc;

use crate::config::{Feedback, FeedbackKind, TableSpec};
use crate::db::dialect::{Cond, Select};
use crate::db::{Db, TableSchema};
use crate::ident::{Col, Ident, TableName};
use crate::sink::{Feed, Page, ReceiptTable, Receipts, RecordKey, SinkError, Verdict};
use crate::value::Value;

/// Rows of verdicts read per query.
const PAGE: usize = 1000;

pub struct DatabaseReceipts {
    db: Arc<Db>,
    fb: Feedback,
    /// The batch-number control column, which an error table may carry.
    batch: Ident,
    /// The database read, in words.
    place: &'static str,
}

impl DatabaseReceipts {
    pub fn new(db: Arc<Db>, fb: Feedback, batch: Ident) -> Self {
        DatabaseReceipts {
            db,
            fb,
            batch,
            place: "exchange database",
        }
    }

    /// The receipts read in the front-end database, where `[feedback] database = "source"`
    /// says the province writes them; `None` otherwise.
    pub fn at_front(
        cfg: &crate::config::Config,
        front: &Arc<Db>,
    ) -> Option<Arc<dyn crate::sink::Receipts>> {
        (cfg.feedback.database == crate::config::FeedbackDb::Source).then(|| {
            Arc::new(DatabaseReceipts {
                db: front.clone(),
                fb: cfg.feedback.clone(),
                batch: cfg.exchange.control.batch.clone(),
                place: "front-end database",
            }) as Arc<dyn crate::sink::Receipts>
        })
    }

    async fn schema(&self, table: &TableName, what: &str) -> Result<TableSchema, SinkError> {
        self.db.introspect(table).await?.ok_or_else(|| {
            missing(format!(
                "{what} {table} does not exist in the {}",
                self.place
            ))
        })
    }

    /// `kind = "table"`: the rejection table's rows after the last id read.
    async fn rejection_table(&self, cursor: Option<&str>) -> Result<Page, SinkError> {
        let schema = self.schema(&self.fb.table, "rejection table").await?;
        let c = &self.fb.columns;
        let cols = [
            column(&schema, &c.id)?,
            column(&schema, &c.table_name)?,
            column(&schema, &c.record_key)?,
            column(&schema, &c.batch_id)?,
            column(&schema, &c.error_code)?,
            column(&schema, &c.error_message)?,
            column(&schema, &c.rejected_at)?,
        ];
        let after: Option<[Value; 1]> = cursor
            .and_then(|c| serde_json::from_str::<Value>(c).ok())
            .map(|v| [v]);
        let mut conds = Vec::new();
        if let Some(a) = &after {
            conds.push(Cond::After(&cols[..1], a));
        }
        let rows = self.page(&schema.name, &cols, conds, &cols[..1]).await?;
        let verdicts = rows
            .iter()
            .map(|r| {
                let code = text(r.get(4));
                let msg = text(r.get(5));
                Verdict {
                    table: Some(text(r.get(1))),
                    key: RecordKey::Joined(text(r.get(2))),
                    reason: if code.is_empty() {
                        msg
                    } else {
                        format!("[{code}] {msg}")
                    },
                    batch: Some(text(r.get(3))).filter(|b| !b.is_empty()),
                    at: Some(text(r.get(6))).filter(|a| !a.is_empty()),
                }
            })
            .collect();
        Ok(paged(&rows, 1, true, verdicts))
    }

    /// `kind = "error_table"`: a table's error table, after the last time and key read.
    async fn error_table(
        &self,
        t: &ReceiptTable,
        errors: &TableName,
        cursor: Option<&str>,
    ) -> Result<Page, SinkError> {
        let schema = self.schema(errors, "error table").await?;
        let mut order = vec![column(&schema, &self.fb.time_column)?];
        for k in &t.key {
            order.push(column(&schema, &k.name)?);
        }
        let mut cols = order.clone();
        cols.push(column(&schema, &self.fb.error_column)?);
        let batch = schema.column(&self.batch).cloned();
        if let Some(b) = &batch {
            cols.push(b.clone());
        }
        let after: Option<Vec<Value>> = cursor.and_then(|c| serde_json::from_str(c).ok());
        let conds = match &after {
            Some(a) => vec![Cond::After(&order, a)],
            None => vec![Cond::IsNotNull(&order[0])],
        };
        let rows = self.page(&schema.name, &cols, conds, &order).await?;
        let nk = order.len();
        let verdicts = rows
            .iter()
            .map(|r| Verdict {
                table: None,
                key: RecordKey::Exchange(r[1..nk].to_vec()),
                reason: text(r.get(nk)),
                batch: batch
                    .as_ref()
                    .map(|_| text(r.get(nk + 1)))
                    .filter(|b| !b.is_empty()),
                at: None,
            })
            .collect();
        Ok(paged(&rows, nk, false, verdicts))
    }

    /// `kind = "flag"`: the exchange rows the province marked as failed, with their error
    /// text, after the last key read.
    async fn flags(&self, t: &ReceiptTable, cursor: Option<&str>) -> Result<Page, SinkError> {
        let Some(schema) = self.db.introspect(&t.target).await? else {
            return Ok(Page::default());
        };
        let (Some(flag), Some(error)) = (
            schema.column(&self.fb.flag_column),
            schema.column(&self.fb.error_column),
        ) else {
            return Ok(Page::default());
        };
        let mut cols = t.key.clone();
        cols.push(error.clone());
        let after: Option<Vec<Value>> = cursor.and_then(|c| serde_json::from_str(c).ok());
        let mut conds = vec![Cond::Equals(flag, &self.fb.failed)];
        if let Some(a) = &after {
            conds.push(Cond::After(&t.key, a));
        }
        let rows = self.page(&t.target, &cols, conds, &t.key).await?;
        let nk = t.key.len();
        let verdicts = rows
            .iter()
            .map(|r| Verdict {
                table: None,
                key: RecordKey::Exchange(r[..nk].to_vec()),
                reason: text(r.get(nk)),
                batch: None,
                at: None,
            })
            .collect();
        Ok(paged(&rows, nk, false, verdicts))
    }

    /// One page of a select: each row's values.
    async fn page(
        &self,
        table: &TableName,
        cols: &[Col],
        conds: Vec<Cond<'_>>,
        order: &[Col],
    ) -> Result<Vec<Vec<Value>>, SinkError> {
        let sql = self.db.dialect().select(&Select {
            table,
            columns: cols,
            conds,
            order,
            limit: Some(PAGE),
        });
        let (rows, _) = self.db.fetch(&sql, cols, usize::MAX).await?;
        Ok(rows.into_iter().map(|r| r.values).collect())
    }

    /// What `check` says of the rejection table.
    async fn check_table(&self) -> (bool, String) {
        let c = &self.fb.columns;
        let cols = [
            &c.id,
            &c.table_name,
            &c.record_key,
            &c.batch_id,
            &c.error_code,
            &c.error_message,
            &c.rejected_at,
        ];
        match self.db.introspect(&self.fb.table).await {
            Ok(Some(s)) => match lacking(&s, &cols) {
                None => (false, format!("feedback: rejection table {} OK", s.name)),
                Some(m) => (
                    true,
                    format!("feedback: rejection table {} lacks {m}", s.name),
                ),
            },
            Ok(None) => (
                true,
                format!(
                    "feedback: rejection table {} does not exist in the {}",
                    self.fb.table, self.place
                ),
            ),
            Err(e) => (true, format!("feedback: {e}")),
        }
    }

    /// What `check` says of a table's error table.
    async fn check_errors(&self, t: &ReceiptTable) -> (bool, String) {
        let Some(errors) = &t.errors else {
            return (
                false,
                format!(
                    "feedback: table {} has no feedback_table; its rejections are not read",
                    t.name
                ),
            );
        };
        let mut cols = vec![&self.fb.time_column, &self.fb.error_column];
        cols.extend(t.key.iter().map(|c| &c.name));
        match self.db.introspect(errors).await {
            Ok(Some(s)) => match lacking(&s, &cols) {
                None => (
                    false,
                    format!("feedback: error table {} of {} OK", s.name, t.name),
                ),
                Some(m) => (
                    true,
                    format!("feedback: error table {} of {} lacks {m}", s.name, t.name),
                ),
            },
            Ok(None) => (
                true,
                format!(
                    "feedback: error table {errors} of {} does not exist in the {}",
                    t.name, self.place
                ),
            ),
            Err(e) => (true, format!("feedback: {e}")),
        }
    }

    /// What `check` says of a table's status flag (a note either way).
    async fn check_flags(&self, t: &ReceiptTable) -> Option<(bool, String)> {
        let s = self.db.introspect(&t.target).await.ok()??;
        let line = match lacking(&s, &[&self.fb.flag_column, &self.fb.error_column]) {
            None => format!(
                "feedback: exchange table {} carries the status flag",
                s.name
            ),
            Some(m) => format!(
                "feedback: exchange table {} lacks {m}; its rejections are not read",
                s.name
            ),
        };
        Some((false, line))
    }
}

#[async_trait::async_trait]
impl Receipts for DatabaseReceipts {
    fn feeds(&self, tables: &[&TableSpec]) -> Vec<Feed> {
        match self.fb.kind {
            // An http feedback is never read from a database (validation refuses the pair).
            FeedbackKind::None | FeedbackKind::Http => Vec::new(),
            FeedbackKind::Table => vec![Feed {
                table: None,
                cursor_key: Some("feedback:table".into()),
            }],
            FeedbackKind::ErrorTable => tables
                .iter()
                .filter(|t| t.feedback_table.is_some())
                .map(|t| Feed {
                    cursor_key: Some(format!("feedback:error:{}", t.name)),
                    table: Some(t.name.clone()),
                })
                .collect(),
            // The flags stay set until the row is corrected: read whole on every pass.
            FeedbackKind::Flag => tables
                .iter()
                .map(|t| Feed {
                    table: Some(t.name.clone()),
                    cursor_key: None,
                })
                .collect(),
        }
    }

    async fn poll(
        &self,
        _feed: &Feed,
        table: Option<&ReceiptTable>,
        cursor: Option<&str>,
    ) -> Result<Page, SinkError> {
        match (self.fb.kind, table) {
            (FeedbackKind::Table, _) => self.rejection_table(cursor).await,
            (FeedbackKind::ErrorTable, Some(t)) => match &t.errors {
                Some(e) => self.error_table(t, e, cursor).await,
                None => Ok(Page::default()),
            },
            (FeedbackKind::Flag, Some(t)) => self.flags(t, cursor).await,
            _ => Ok(Page::default()),
        }
    }

    async fn check(&self, tables: &[ReceiptTable]) -> Vec<(bool, String)> {
        let mut out = Vec::new();
        match self.fb.kind {
            FeedbackKind::None | FeedbackKind::Http => {}
            FeedbackKind::Table => out.push(self.check_table().await),
            FeedbackKind::ErrorTable => {
                for t in tables {
                    out.push(self.check_errors(t).await);
                }
            }
            FeedbackKind::Flag => {
                for t in tables {
                    out.extend(self.check_flags(t).await);
                }
            }
        }
        out
    }

    async fn health(&self) -> Option<Result<(), SinkError>> {
        if self.fb.kind != FeedbackKind::Table {
            return None;
        }
        Some(match self.db.introspect(&self.fb.table).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(missing(format!("table {} does not exist", self.fb.table))),
            Err(e) => Err(e.into()),
        })
    }
}

fn missing(cause: String) -> SinkError {
    SinkError::Other {
        doing: "reading the province's feedback".into(),
        cause,
        class: crate::db::ErrorClass::Fatal,
    }
}

/// A column of a feedback table, or a clear error naming it.
fn column(schema: &TableSchema, name: &Ident) -> Result<Col, SinkError> {
    schema
        .column(name)
        .cloned()
        .ok_or_else(|| missing(format!("table {} has no column `{name}`", schema.name)))
}

/// The columns of `cols` that `schema` lacks, named; `None` when it has them all.
fn lacking(schema: &TableSchema, cols: &[&Ident]) -> Option<String> {
    let missing: Vec<String> = cols
        .iter()
        .filter(|c| schema.column(c).is_none())
        .map(|c| format!("`{c}`"))
        .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// A page of rows whose first `n` values are its cursor, with their verdicts. The cursor is
/// the JSON of that one value (`single`, an id) or of the list of them (a position).
fn paged(rows: &[Vec<Value>], n: usize, single: bool, verdicts: Vec<Verdict>) -> Page {
    let cursor = rows.last().map(|r| {
        let at = &r[..n.min(r.len())];
        match (single, at) {
            (true, [v]) => serde_json::to_string(v),
            _ => serde_json::to_string(at),
        }
        .unwrap_or_default()
    });
    Page {
        verdicts,
        cursor,
        more: rows.len() >= PAGE,
    }
}

fn text(v: Option<&Value>) -> String {
    v.filter(|v| !v.is_null())
        .map(Value::to_text)
        .unwrap_or_default()
}
