//! `[feedback] kind = "http"`: the province's later verdicts, asked of a feedback endpoint
//! after a cursor with the exchange's credentials.

use std::sync::Arc;

use serde_json::Value as Json;

use super::HttpSink;
use crate::config::{HttpFeedback, TableSpec};
use crate::db::ErrorClass;
use crate::sink::{Feed, Page, ReceiptTable, Receipts, RecordKey, SinkError, Verdict};

/// Where the job keeps the feed's cursor.
const CURSOR_KEY: &str = "feedback.http.cursor";

pub struct HttpReceipts {
    sink: Arc<HttpSink>,
    cfg: HttpFeedback,
}

impl HttpReceipts {
    pub fn new(sink: Arc<HttpSink>, cfg: HttpFeedback) -> HttpReceipts {
        HttpReceipts { sink, cfg }
    }
}

/// A rejection as the feed gives it: `table`, `key` (values joined by `|` in key order),
/// `batch`, `code`, `message`, `at`.
fn verdict(item: &Json) -> Option<Verdict> {
    let text = |name: &str| match item.get(name)? {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let reason = match (text("code"), text("message")) {
        (Some(c), Some(m)) => format!("[{c}] {m}"),
        (None, Some(m)) => m,
        (Some(c), None) => format!("[{c}]"),
        (None, None) => "rejected".into(),
    };
    Some(Verdict {
        table: text("table"),
        key: RecordKey::Joined(text("key")?),
        reason,
        batch: text("batch"),
        at: text("at"),
    })
}

/// The verdicts of one answer, and the cursor after them.
fn page(answer: &Json, cfg: &HttpFeedback) -> Result<Page, String> {
    let items = answer
        .pointer(&cfg.items)
        .and_then(Json::as_array)
        .ok_or_else(|| format!("the answer has no list at {}", cfg.items))?;
    if items.is_empty() {
        return Ok(Page::default());
    }
    let next = match answer.pointer(&cfg.next) {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Number(n)) => n.to_string(),
        _ => return Err(format!("the answer has no cursor at {}", cfg.next)),
    };
    Ok(Page {
        verdicts: items.iter().filter_map(verdict).collect(),
        cursor: Some(next),
        more: true,
    })
}

#[async_trait::async_trait]
impl Receipts for HttpReceipts {
    fn feeds(&self, _: &[&TableSpec]) -> Vec<Feed> {
        vec![Feed {
            table: None,
            cursor_key: Some(CURSOR_KEY.into()),
        }]
    }

    async fn poll(
        &self,
        _: &Feed,
        _: Option<&ReceiptTable>,
        cursor: Option<&str>,
    ) -> Result<Page, SinkError> {
        let mut url = url::Url::parse(&self.cfg.url).map_err(|e| SinkError::Other {
            doing: "reading the feedback".into(),
            cause: e.to_string(),
            class: ErrorClass::Fatal,
        })?;
        if let Some(c) = cursor {
            url.query_pairs_mut().append_pair(&self.cfg.param, c);
        }
        let answer = self.sink.get(url.as_str()).await?;
        page(&answer, &self.cfg).map_err(|cause| SinkError::Other {
            doing: format!(
                "reading the feedback at {}",
                HttpSink::endpoint(&self.cfg.url)
            ),
            cause,
            class: ErrorClass::Fatal,
        })
    }

    async fn check(&self, _: &[ReceiptTable]) -> Vec<(bool, String)> {
        match self.poll(&self.feeds(&[])[0], None, None).await {
            Ok(_) => vec![(
                false,
                format!("feedback: {} answers", HttpSink::endpoint(&self.cfg.url)),
            )],
            Err(e) => vec![(true, format!("feedback: {e}"))],
        }
    }

    async fn health(&self) -> Option<Result<(), SinkError>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_of_the_feed_gives_verdicts_and_the_next_cursor() {
        let cfg = HttpFeedback {
            url: "http://x/feedback".into(),
            items: "/items".into(),
            next: "/next".into(),
            param: "after".into(),
        };
        let a = serde_json::json!({"items": [{"id": 7, "table": "t", "key": "3", "batch": "b",
            "code": "Q1", "message": "late", "at": "2026-03-01T00:00:00Z"}], "next": 7});
        let p = page(&a, &cfg).expect("page");
        assert_eq!(p.cursor.as_deref(), Some("7"));
        assert_eq!(
            p.verdicts,
            vec![Verdict {
                table: Some("t".into()),
                key: RecordKey::Joined("3".into()),
                reason: "[Q1] late".into(),
                batch: Some("b".into()),
                at: Some("2026-03-01T00:00:00Z".into()),
            }]
        );
        let empty = page(&serde_json::json!({"items": [], "next": 7}), &cfg).expect("page");
        assert!(empty.cursor.is_none() && empty.verdicts.is_empty());
        assert!(page(&serde_json::json!({}), &cfg).is_err());
    }
}
