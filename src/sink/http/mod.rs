//! The exchange as an HTTP interface: each batch is posted as JSON records in the built-in
//! envelope under its batch id as the idempotency key; the answer names the records the
//! province rejected, or refuses the request whole (then it is split to isolate the
//! refused records); a busy or unreachable exchange is tried again later, the batch
//! under the same id.

pub mod answer;
pub mod auth;
pub mod encode;
mod notice;
mod receipts;

pub use receipts::HttpReceipts;

use std::collections::VecDeque;
use std::io::Write as _;
use std::ops::Range;
use std::time::{Duration, Instant};

use chrono_tz::Tz;
use tokio::sync::Mutex;

use super::{
    Capabilities, Deletes, Outgoing, Ready, Refusal, RefusedBy, Sink, SinkError, Target, Turn,
};
use crate::config::http::{AuthKind, HttpExchange, RecordShape};
use crate::db::{ErrorClass, TableSchema};
use crate::ident::TableName;
use crate::value::Value;
use answer::Answer;
use encode::Record;

/// Most requests spent isolating the records of one refused request; a batch needing
/// more waits for a person (the exchange refuses much more than a few records).
pub(crate) const SPLIT_BUDGET: usize = 64;

pub struct HttpSink {
    client: reqwest::Client,
    cfg: HttpExchange,
    agent: String,
    tz: Tz,
    /// The login token, where the auth kind has one.
    token: Mutex<Option<auth::Token>>,
    /// No request before this (a 429's `Retry-After`).
    not_before: std::sync::Mutex<Option<Instant>>,
}

impl HttpSink {
    pub fn new(cfg: &HttpExchange, agent: &str, tz: Tz) -> Result<HttpSink, SinkError> {
        let fail = |doing: &str, cause: String| SinkError::Other {
            doing: doing.into(),
            cause,
            class: ErrorClass::Fatal,
        };
        let mut b = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("frontdb-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| fail("reading exchange.ca_file", format!("{}: {e}", ca.display())))?;
            for c in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| fail("reading exchange.ca_file", format!("{}: {e}", ca.display())))?
            {
                b = b.add_root_certificate(c);
            }
        }
        if let Some((cert, key)) = &cfg.client_cert {
            let mut pem = std::fs::read(cert).map_err(|e| {
                fail(
                    "reading exchange.client_cert",
                    format!("{}: {e}", cert.display()),
                )
            })?;
            pem.extend(std::fs::read(key).map_err(|e| {
                fail(
                    "reading exchange.client_key",
                    format!("{}: {e}", key.display()),
                )
            })?);
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| fail("reading the client certificate", e.to_string()))?;
            b = b.identity(id);
        }
        let client = b
            .build()
            .map_err(|e| fail("setting up the HTTP client", e.to_string()))?;
        Ok(HttpSink {
            client,
            cfg: cfg.clone(),
            agent: agent.to_owned(),
            tz,
            token: Mutex::new(None),
            not_before: std::sync::Mutex::new(None),
        })
    }

    /// The client, with the exchange's TLS settings and timeout (the SOAP exchange's too).
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The URL a table's batches are posted to.
    fn url(&self, table: &TableName) -> String {
        self.cfg.url.replace("{table}", table.name.as_str())
    }

    /// The endpoint for messages: scheme, host and path, never a query or credentials.
    pub fn endpoint(url: &str) -> String {
        match url::Url::parse(url) {
            Ok(u) => {
                format!(
                    "{}://{}{}",
                    u.scheme(),
                    u.host_str().unwrap_or(""),
                    u.port().map(|p| format!(":{p}")).unwrap_or_default()
                ) + u.path()
            }
            Err(_) => "the exchange".into(),
        }
    }

    fn unavailable(url: &str, why: impl std::fmt::Display) -> SinkError {
        SinkError::Other {
            doing: format!("posting a batch to {}", Self::endpoint(url)),
            cause: why.to_string(),
            class: ErrorClass::Unavailable,
        }
    }

    fn fatal(url: &str, why: impl std::fmt::Display) -> SinkError {
        SinkError::Other {
            doing: format!("posting a batch to {}", Self::endpoint(url)),
            cause: why.to_string(),
            class: ErrorClass::Fatal,
        }
    }

    /// Wait out a `Retry-After` the exchange asked for.
    async fn honour_retry_after(&self) {
        let until = *self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = until {
            tokio::time::sleep_until(t.into()).await;
        }
    }

    /// The login token: the one held, or a new one when none is held, it is due for
    /// renewal, or `renew` (the exchange refused it).
    pub(crate) async fn token(&self, renew: bool) -> Result<Option<String>, SinkError> {
        let Some(login) = &self.cfg.auth.login else {
            return Ok(None);
        };
        let mut held = self.token.lock().await;
        if let Some(t) = held.as_ref()
            && !renew
            && Instant::now() < t.renew_at
        {
            return Ok(Some(t.value.clone()));
        }
        let doing = format!("logging in at {}", Self::endpoint(&login.url));
        let err = |cause: String, class| SinkError::Other {
            doing: doing.clone(),
            cause,
            class,
        };
        let mut body = serde_json::Map::new();
        body.insert(
            login.key_field.clone(),
            self.cfg.auth.app_key.as_ref().map(|k| k.expose()).into(),
        );
        body.insert(
            login.secret_field.clone(),
            self.cfg.auth.app_secret.as_ref().map(|s| s.expose()).into(),
        );
        let body = serde_json::Value::Object(body);
        let resp = self
            .client
            .post(&login.url)
            .header("Content-Type", "application/json; charset=utf-8")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| err(transport(&e), ErrorClass::Unavailable))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| err(transport(&e), ErrorClass::Unavailable))?;
        match status {
            200..=299 => {}
            401 | 403 => {
                return Err(err(
                    format!("HTTP {status}: the login was refused (check app_key and app_secret)"),
                    ErrorClass::Fatal,
                ));
            }
            _ => return Err(err(format!("HTTP {status}"), ErrorClass::Unavailable)),
        }
        let answer: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| err("the answer is not JSON".into(), ErrorClass::Unavailable))?;
        let (value, ttl) = auth::token_of(login, &answer).ok_or_else(|| {
            err(
                format!("the answer has no token at {}", login.token_pointer),
                ErrorClass::Fatal,
            )
        })?;
        *held = Some(auth::Token {
            value: value.clone(),
            renew_at: auth::renew_at(Instant::now(), ttl),
        });
        Ok(Some(value))
    }

    /// GET a JSON answer with the exchange's credentials (a feedback feed): a refused login
    /// token is renewed once.
    pub async fn get(&self, url: &str) -> Result<serde_json::Value, SinkError> {
        let path = url::Url::parse(url)
            .map(|u| u.path().to_owned())
            .unwrap_or_else(|_| "/".into());
        let err = |cause: String, class| SinkError::Other {
            doing: format!("reading {}", Self::endpoint(url)),
            cause,
            class,
        };
        let mut renewed = false;
        loop {
            let token = self.token(renewed).await?;
            let now_ms = chrono::Utc::now().timestamp_millis();
            let mut req = self.client.get(url).header("X-Agent-Id", &self.agent);
            for (name, value) in
                auth::headers(&self.cfg.auth, "GET", &path, b"", now_ms, &auth::nonce())
            {
                req = req.header(name, value);
            }
            if let (Some(t), Some(login)) = (&token, &self.cfg.auth.login) {
                req = req.header(login.header.as_str(), format!("{}{t}", login.prefix));
            }
            let resp = req
                .send()
                .await
                .map_err(|e| err(transport(&e), ErrorClass::Unavailable))?;
            let status = resp.status().as_u16();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| err(transport(&e), ErrorClass::Unavailable))?;
            match status {
                200..=299 => {
                    return serde_json::from_slice(&bytes).map_err(|_| {
                        err("the answer is not JSON".into(), ErrorClass::Unavailable)
                    });
                }
                401 | 403 if !renewed => renewed = true,
                401 | 403 => {
                    return Err(err(
                        format!("HTTP {status}: the credentials were refused"),
                        ErrorClass::Fatal,
                    ));
                }
                408 | 429 | 500..=599 => {
                    return Err(err(format!("HTTP {status}"), ErrorClass::Unavailable));
                }
                _ => return Err(err(format!("HTTP {status}"), ErrorClass::Fatal)),
            }
        }
    }

    /// Post one request and say what its answer means. A refused credential is renewed
    /// (a login token) and the request sent once more before the table fails.
    async fn post(
        &self,
        url: &str,
        body_with: impl Fn(Option<&str>) -> Vec<u8>,
    ) -> Result<Answer, SinkError> {
        let path = url::Url::parse(url)
            .map(|u| u.path().to_owned())
            .unwrap_or_else(|_| "/".into());
        let mut renewed = false;
        loop {
            self.honour_retry_after().await;
            let token = self.token(renewed).await?;
            // A token carried in the body is part of what is signed and compressed.
            let in_body = self.cfg.envelope.token_field.is_some();
            let body = body_with(token.as_deref().filter(|_| in_body));
            let body = if self.cfg.gzip {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&body)
                    .and_then(|()| gz.finish())
                    .map_err(|e| Self::fatal(url, format!("compressing the body: {e}")))?
            } else {
                body
            };
            let now_ms = chrono::Utc::now().timestamp_millis();
            let nonce = auth::nonce();
            let mut req = self
                .client
                .post(url)
                .header("Content-Type", "application/json; charset=utf-8")
                .header("X-Agent-Id", &self.agent);
            if self.cfg.gzip {
                req = req.header("Content-Encoding", "gzip");
            }
            for (name, value) in auth::headers(&self.cfg.auth, "POST", &path, &body, now_ms, &nonce)
            {
                req = req.header(name, value);
            }
            if let (Some(t), Some(login), false) = (&token, &self.cfg.auth.login, in_body) {
                req = req.header(login.header.as_str(), format!("{}{t}", login.prefix));
            }
            let answer = match req.body(body).send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("Retry-After")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    match resp.bytes().await {
                        Ok(b) => {
                            answer::classify(status, retry_after.as_deref(), &b, &self.cfg.envelope)
                        }
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
                    return Err(Self::fatal(
                        url,
                        format!(
                            "HTTP {status}: the exchange refused the credentials ({}); check \
                             [exchange.auth]",
                            auth_words(self.cfg.auth.kind)
                        ),
                    ));
                }
                Answer::Retry { after, why } => {
                    if let Some(after) = after {
                        *self.not_before.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(Instant::now() + after);
                    }
                    return Err(Self::unavailable(url, why));
                }
                Answer::Fatal(why) => return Err(Self::fatal(url, why)),
                a => return Ok(a),
            }
        }
    }

    /// Post some records of a batch, splitting a request the platform refuses whole until
    /// the refused records are alone; returns the refusals.
    async fn post_isolating(
        &self,
        url: &str,
        b: &Outgoing<'_>,
        records: &[Record],
        range: Range<usize>,
        budget: &mut usize,
    ) -> Result<Vec<Refusal>, SinkError> {
        let mut refusals = Vec::new();
        let mut queue = VecDeque::from([range]);
        while let Some(range) = queue.pop_front() {
            let id = part_id(b.id, &range, records.len());
            let part = &records[range.clone()];
            let body = |token: Option<&str>| {
                let w = encode::Wrapper {
                    agent: &self.agent,
                    table: b.target.table.name.as_str(),
                    batch: &id,
                    cd_batch: b.cd_batch,
                    token,
                    mark: b.mark,
                };
                encode::body(&self.cfg.envelope, &w, part)
            };
            match self.post(url, body).await? {
                Answer::Accepted(rejected) => {
                    for r in rejected {
                        let Some(rec) = part.get(r.index) else {
                            return Err(Self::fatal(
                                url,
                                format!(
                                    "the answer rejects record {} of a request of {}",
                                    r.index,
                                    part.len()
                                ),
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
                    // Halves of a request too large are sent as they are: nothing was refused.
                    *budget -= 1;
                    let mid = range.start + range.len() / 2;
                    queue.push_front(mid..range.end);
                    queue.push_front(range.start..mid);
                }
                Answer::TooLarge => {
                    return Err(Self::fatal(
                        url,
                        "HTTP 413: the exchange takes no request this large, even split; \
                         lower exchange.max_records or ask the province for its limit",
                    ));
                }
                Answer::Refused { code, message } => {
                    if *budget == 0 {
                        return Err(Self::fatal(
                            url,
                            format!(
                                "the exchange refuses too many records to isolate them \
                                 (code {code}: {message})"
                            ),
                        ));
                    }
                    *budget -= 1;
                    let mid = range.start + range.len() / 2;
                    queue.push_front(mid..range.end);
                    queue.push_front(range.start..mid);
                }
                // `post` returns nothing else.
                other => return Err(Self::fatal(url, format!("unexpected answer {other:?}"))),
            }
        }
        Ok(refusals)
    }
}

/// A transport error in words, without the URL (which the message names already).
pub(crate) fn transport(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "no answer in time"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "the connection failed"
    };
    let mut cause = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    if cause.is_empty() {
        what.to_owned()
    } else {
        format!("{what} ({cause})")
    }
}

fn auth_words(kind: AuthKind) -> &'static str {
    match kind {
        AuthKind::None => "no credentials are configured",
        AuthKind::Basic => "basic",
        AuthKind::Bearer => "bearer token",
        AuthKind::Login => "login token, renewed once",
        AuthKind::Md5 => "md5 signature",
        AuthKind::Sha1 => "sha1 signature",
        AuthKind::HmacSha256 => "hmac-sha256 signature",
        AuthKind::HmacSm3 => "hmac-sm3 signature",
    }
}

#[async_trait::async_trait]
impl Sink for HttpSink {
    fn place(&self) -> &'static str {
        "exchange interface"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // The built-in envelope's receiver keeps the newer version of a record (its
            // contract); a province's own packet promises nothing of the kind.
            newer_wins: self.cfg.envelope.record == RecordShape::BuiltIn,
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
            return Err(Self::unavailable(
                &url,
                "the batch before it was not delivered; both are sent again",
            ));
        }
        let format = encode::Format {
            tz: self.tz,
            env: &self.cfg.envelope,
        };
        let records = encode::records(b, &format).map_err(|e| Self::fatal(&url, e))?;
        let per = self.cfg.max_records.unwrap_or(usize::MAX).max(1);
        let parts = records.len().div_ceil(per).max(1);
        let mut refusals = Vec::new();
        let mut budget = SPLIT_BUDGET;
        for p in 0..parts {
            let range = p * per..((p + 1) * per).min(records.len());
            refusals.extend(
                self.post_isolating(&url, b, &records, range, &mut budget)
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
            cause: "an exchange interface cannot list the keys it holds".into(),
            class: ErrorClass::Fatal,
        })
    }

    /// The exchange answers at all (any HTTP status): its host is reachable.
    async fn health(&self) -> Result<(), SinkError> {
        let url = self.cfg.url.replace("{table}", "");
        match self.client.head(&url).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(SinkError::Other {
                doing: format!("reaching {}", Self::endpoint(&url)),
                cause: transport(&e),
                class: ErrorClass::Unavailable,
            }),
        }
    }

    async fn pull(&self, url: &str) -> Result<serde_json::Value, SinkError> {
        self.get(url).await
    }

    async fn notice(
        &self,
        to: &crate::config::Notice,
        event: &super::ResyncEvent<'_>,
    ) -> Result<(), SinkError> {
        self.post_notice(to, event).await
    }

    async fn close(&self) {}
}

/// The id of a request carrying the records `range` of a batch of `len`: the batch's own id
/// for all of them, else the batch's id and the records' positions (`<batch>.r1-50`). A batch
/// sent again is the same records in the same order (see the sink seam), so a part sent again
/// carries the same id and the same records; a part cut differently (another `max_records`,
/// a split) has other positions, so a receiver that keeps the ids it applied never takes it
/// for one it has.
pub(crate) fn part_id(batch: &str, range: &Range<usize>, len: usize) -> String {
    if range.start == 0 && range.end == len {
        batch.to_owned()
    } else {
        format!("{batch}.r{}-{}", range.start + 1, range.end)
    }
}
