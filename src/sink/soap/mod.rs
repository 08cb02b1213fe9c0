//! The exchange as a WebService (SOAP 1.1 or 1.2): each batch is one call of the configured
//! operation, its records as XML elements or as a GZIP+Base64 payload, its batch id in the
//! SOAP header and the body (the receiver's idempotency key). The answer's result code and
//! per-record failures, and SOAP faults, mean what the HTTP exchange's answers mean: records
//! rejected, a request refused whole (split to isolate the refused records), an exchange busy
//! or down (the batch is sent again later, under the same id). The transport — client, TLS,
//! signatures and login tokens — is the HTTP exchange's.

pub mod answer;
pub mod tree;
pub mod xml;

use std::collections::VecDeque;
use std::ops::Range;

use chrono_tz::Tz;

use super::http::answer::Answer;
use super::http::encode::{self, Record};
use super::http::{HttpSink, SPLIT_BUDGET, auth, part_id, transport};
use super::{
    Capabilities, Deletes, Outgoing, Ready, Refusal, RefusedBy, Sink, SinkError, Target, Turn,
};
use crate::config::soap::{Payload, SoapExchange};
use crate::db::{ErrorClass, TableSchema};
use crate::ident::TableName;
use crate::value::Value;

pub struct SoapSink {
    /// The HTTP exchange's transport: its client and its login token.
    http: HttpSink,
    cfg: SoapExchange,
    agent: String,
    tz: Tz,
}

impl SoapSink {
    pub fn new(cfg: &SoapExchange, agent: &str, tz: Tz) -> Result<SoapSink, SinkError> {
        Ok(SoapSink {
            http: HttpSink::new(&cfg.http, agent, tz)?,
            cfg: cfg.clone(),
            agent: agent.to_owned(),
            tz,
        })
    }

    fn url(&self, table: &TableName) -> String {
        self.cfg.http.url.replace("{table}", table.name.as_str())
    }

    fn error(url: &str, why: impl std::fmt::Display, class: ErrorClass) -> SinkError {
        SinkError::Other {
            doing: format!("calling the WebService at {}", HttpSink::endpoint(url)),
            cause: why.to_string(),
            class,
        }
    }

    /// Call the operation once and say what the answer means. A refused credential is
    /// renewed (a login token) and the call made once more before the table fails.
    async fn call(
        &self,
        url: &str,
        id: &str,
        body_with: impl Fn(Option<&str>) -> Result<Vec<u8>, String>,
    ) -> Result<Answer, SinkError> {
        let path = url::Url::parse(url)
            .map(|u| u.path().to_owned())
            .unwrap_or_else(|_| "/".into());
        let mut renewed = false;
        loop {
            let token = self.http.token(renewed).await?;
            let in_body = self.cfg.names.token.is_some();
            let body = body_with(token.as_deref().filter(|_| in_body))
                .map_err(|e| Self::error(url, e, ErrorClass::Fatal))?;
            let now_ms = chrono::Utc::now().timestamp_millis();
            let mut req = self
                .http
                .client()
                .post(url)
                .header("X-Agent-Id", &self.agent)
                .header("Idempotency-Key", id);
            for (name, value) in xml::headers(&self.cfg) {
                req = req.header(name, value);
            }
            for (name, value) in auth::headers(
                &self.cfg.http.auth,
                "POST",
                &path,
                &body,
                now_ms,
                &auth::nonce(),
            ) {
                req = req.header(name, value);
            }
            if let (Some(t), Some(login), false) = (&token, &self.cfg.http.auth.login, in_body) {
                req = req.header(login.header.as_str(), format!("{}{t}", login.prefix));
            }
            let answer = match req.body(body).send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match resp.bytes().await {
                        Ok(b) => answer::classify(status, &b, &self.cfg.results),
                        Err(e) => Answer::Retry {
                            after: None,
                            why: transport(&e),
                        },
                    }
                }
                Err(e) => Answer::Retry {
                    after: None,
                    why: transport(&e),
                },
            };
            match answer {
                Answer::Credentials { .. } if !renewed => renewed = true,
                Answer::Credentials { status } => {
                    return Err(Self::error(
                        url,
                        format!(
                            "HTTP {status}: the WebService refused the credentials; check \
                             [exchange.auth]"
                        ),
                        ErrorClass::Fatal,
                    ));
                }
                Answer::Retry { why, .. } => {
                    return Err(Self::error(url, why, ErrorClass::Unavailable));
                }
                Answer::Fatal(why) => return Err(Self::error(url, why, ErrorClass::Fatal)),
                a => return Ok(a),
            }
        }
    }

    /// Send some records of a batch, splitting a request the WebService refuses whole until
    /// the refused records are alone; returns the refusals.
    async fn call_isolating(
        &self,
        url: &str,
        b: &Outgoing<'_>,
        records: &[Record],
        range: Range<usize>,
        budget: &mut usize,
    ) -> Result<Vec<Refusal>, SinkError> {
        let columns: Vec<String> = b
            .target
            .columns
            .iter()
            .map(|c| c.name.to_string())
            .collect();
        let mut refusals = Vec::new();
        let mut queue = VecDeque::from([range]);
        while let Some(range) = queue.pop_front() {
            let id = part_id(b.id, &range, records.len());
            let part = &records[range.clone()];
            let body = |token: Option<&str>| {
                let w = xml::Wrapper {
                    agent: &self.agent,
                    table: b.target.table.name.as_str(),
                    batch: &id,
                    cd_batch: b.cd_batch,
                    token,
                    columns: &columns,
                };
                xml::request(&self.cfg, &w, part)
            };
            let split = |queue: &mut VecDeque<Range<usize>>| {
                let mid = range.start + range.len() / 2;
                queue.push_front(mid..range.end);
                queue.push_front(range.start..mid);
            };
            match self.call(url, &id, body).await? {
                Answer::Accepted(rejected) => {
                    for r in rejected {
                        let Some(rec) = part.get(r.index) else {
                            return Err(Self::error(
                                url,
                                format!(
                                    "the answer rejects record {} of a request of {}",
                                    r.index,
                                    part.len()
                                ),
                                ErrorClass::Fatal,
                            ));
                        };
                        refusals.push(Refusal {
                            delete: rec.origin.delete,
                            index: rec.origin.index,
                            message: r.message,
                            by: RefusedBy::Province { code: r.code },
                        });
                    }
                }
                Answer::Refused { code, message } if range.len() == 1 => {
                    refusals.push(Refusal {
                        delete: part[0].origin.delete,
                        index: part[0].origin.index,
                        message,
                        by: RefusedBy::Province { code: Some(code) },
                    });
                }
                Answer::TooLarge if range.len() > 1 && *budget > 0 => {
                    *budget -= 1;
                    split(&mut queue);
                }
                Answer::TooLarge => {
                    return Err(Self::error(
                        url,
                        "HTTP 413: the WebService takes no request this large, even split; \
                         lower exchange.max_records or ask the province for its limit",
                        ErrorClass::Fatal,
                    ));
                }
                Answer::Refused { code, message } => {
                    if *budget == 0 {
                        return Err(Self::error(
                            url,
                            format!(
                                "the WebService refuses too many records to isolate them \
                                 (code {code}: {message})"
                            ),
                            ErrorClass::Fatal,
                        ));
                    }
                    *budget -= 1;
                    split(&mut queue);
                }
                other => {
                    return Err(Self::error(
                        url,
                        format!("unexpected answer {other:?}"),
                        ErrorClass::Fatal,
                    ));
                }
            }
        }
        Ok(refusals)
    }
}

/// The records XML can carry, and a refusal for each it cannot (a control character in a
/// value): those stay with the department to correct, the rest go.
fn carried(records: Vec<Record>, payload: Payload) -> (Vec<Record>, Vec<Refusal>) {
    if payload != Payload::Xml {
        return (records, Vec::new());
    }
    let mut refusals = Vec::new();
    let kept = records
        .into_iter()
        .filter(|r| match xml::refuse_in_xml(r) {
            Some(message) => {
                refusals.push(Refusal {
                    delete: r.origin.delete,
                    index: r.origin.index,
                    message,
                    by: RefusedBy::Exchange,
                });
                false
            }
            None => true,
        })
        .collect();
    (kept, refusals)
}

#[async_trait::async_trait]
impl Sink for SoapSink {
    fn place(&self) -> &'static str {
        "exchange WebService"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // The records carry their key and version, as the built-in envelope's do.
            newer_wins: true,
            deletes: Deletes::AsRecords,
            overlapping: false,
            max_rows: None,
            lists_keys: false,
            copy_tuples: false,
            text_without_nul: false,
            catalog: false,
            verdicts: true,
        }
    }

    async fn describe(&self, _: &TableName) -> Result<Option<TableSchema>, SinkError> {
        Ok(None)
    }

    async fn deliver(
        &self,
        b: &Outgoing<'_>,
        ready: Ready<'_>,
        turn: &Turn,
    ) -> Result<Vec<Refusal>, SinkError> {
        ready.await;
        let url = self.url(&b.target.table);
        if !turn.before_committed().await {
            return Err(Self::error(
                &url,
                "the batch before it was not delivered; both are sent again",
                ErrorClass::Unavailable,
            ));
        }
        let format = encode::Format {
            tz: self.tz,
            env: &self.cfg.http.envelope,
        };
        let records =
            encode::records(b, &format).map_err(|e| Self::error(&url, e, ErrorClass::Fatal))?;
        let xml = self.cfg.payload == Payload::Xml;
        if let Some(bad) = b
            .target
            .columns
            .iter()
            .find(|c| xml && !crate::config::soap::xml_name(c.name.as_str()))
        {
            return Err(Self::error(
                &url,
                format!(
                    "column {} of {} is not an XML element name; rename it in the table's \
                     columns",
                    bad.name, b.label
                ),
                ErrorClass::Fatal,
            ));
        }
        let (records, mut refusals) = carried(records, self.cfg.payload);
        let per = self.cfg.http.max_records.unwrap_or(usize::MAX).max(1);
        let parts = records.len().div_ceil(per).max(1);
        let mut budget = SPLIT_BUDGET;
        for p in 0..parts {
            let range = p * per..((p + 1) * per).min(records.len());
            refusals.extend(
                self.call_isolating(&url, b, &records, range, &mut budget)
                    .await?,
            );
        }
        Ok(refusals)
    }

    async fn keys(
        &self,
        _: &Target,
        _: Option<&[Value]>,
        _: Option<&[Value]>,
        _: usize,
    ) -> Result<Vec<Vec<Value>>, SinkError> {
        Err(SinkError::Other {
            doing: "listing the exchange's keys".into(),
            cause: "a WebService cannot list the keys it holds".into(),
            class: ErrorClass::Fatal,
        })
    }

    /// The WebService's host answers at all (any HTTP status).
    async fn health(&self) -> Result<(), SinkError> {
        let url = self.cfg.http.url.replace("{table}", "");
        match self.http.client().head(&url).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(SinkError::Other {
                doing: format!("reaching {}", HttpSink::endpoint(&url)),
                cause: transport(&e),
                class: ErrorClass::Unavailable,
            }),
        }
    }

    async fn close(&self) {}
}

#[cfg(test)]
mod tests;
