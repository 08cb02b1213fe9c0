//! An alert as each target wants it (a JSON webhook, a WeCom or DingTalk robot's message, an
//! e-mail), and its delivery: one queue per target, drained in the background and retried with
//! backoff, so that a target that does not answer never holds up an exchange.

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use hmac::{KeyInit, Mac};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::alert::{AlertTarget, Email, EventKind, Transport};

/// Open, still open (sent again), closed, or a one-off notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Repeat,
    Resolved,
    Notice,
}

/// One alert: what, which table, since when, what to do.
#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    pub agent: String,
    pub event: EventKind,
    pub state: AlertState,
    pub table: Option<String>,
    /// One line: `[230000-SCJGJ] FAILING: table t`.
    pub title: String,
    pub what: String,
    /// Since when (RFC 3339, UTC), and in the agent's time zone.
    pub since: String,
    pub since_local: String,
    pub todo: String,
    pub at: String,
}

impl Alert {
    /// The alert as plain lines (e-mail, WeCom).
    pub fn text(&self) -> String {
        let mut s = format!("{}\n\n{}\n", self.title, self.what);
        if let Some(t) = &self.table {
            s.push_str(&format!("Table: {t}\n"));
        }
        s.push_str(&format!(
            "Since: {}\nWhat to do: {}\nAgent: {}\n",
            self.since_local, self.todo, self.agent
        ));
        s
    }

    /// The alert as Markdown (DingTalk, WeCom).
    pub fn markdown(&self) -> String {
        let mut s = format!("### {}\n\n{}\n\n", self.title, self.what);
        if let Some(t) = &self.table {
            s.push_str(&format!("- **Table**: {t}\n"));
        }
        s.push_str(&format!(
            "- **Since**: {}\n- **What to do**: {}\n- **Agent**: {}\n",
            self.since_local, self.todo, self.agent
        ));
        s
    }
}

/// Why a target did not take an alert (never with a secret in it).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Http(String),
    #[error("the robot answered errcode {code}: {msg}")]
    Robot { code: i64, msg: String },
    #[error("SMTP: {0}")]
    Smtp(String),
}

/// DingTalk's signed robot URL: `timestamp` (ms) and `sign` = base64 of HMAC-SHA256 over
/// "timestamp\nsecret" keyed by the secret, URL-encoded.
pub fn dingtalk_url(url: &str, secret: &str, timestamp_ms: i64) -> String {
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes a key of any length: this cannot fail.
        Err(_) => return url.to_owned(),
    };
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    let sign = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let sign = percent_encoding::utf8_percent_encode(&sign, percent_encoding::NON_ALPHANUMERIC);
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}timestamp={timestamp_ms}&sign={sign}")
}

/// The JSON body each kind posts.
pub fn body(t: &Transport, a: &Alert) -> serde_json::Value {
    match t {
        Transport::Webhook { .. } | Transport::Email(_) => {
            serde_json::to_value(a).unwrap_or_default()
        }
        Transport::WeCom { .. } => serde_json::json!({
            "msgtype": "markdown",
            "markdown": { "content": a.markdown() },
        }),
        Transport::DingTalk { .. } => serde_json::json!({
            "msgtype": "markdown",
            "markdown": { "title": a.title, "text": a.markdown() },
        }),
    }
}

/// One attempt to hand `a` to the target.
async fn send_once(http: &reqwest::Client, t: &Transport, a: &Alert) -> Result<(), SendError> {
    let (url, token) = match t {
        Transport::Email(e) => return send_mail(e, a).await,
        Transport::Webhook { url, token } => (url.expose().to_owned(), token.as_ref()),
        Transport::WeCom { url } => (url.expose().to_owned(), None),
        Transport::DingTalk { url, secret } => (
            match secret {
                Some(s) => dingtalk_url(url.expose(), s.expose(), Utc::now().timestamp_millis()),
                None => url.expose().to_owned(),
            },
            None,
        ),
    };
    let mut req = http
        .post(url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )
        .body(body(t, a).to_string());
    if let Some(tok) = token {
        req = req.bearer_auth(tok.expose());
    }
    // The URL may hold a robot's key: errors are told without it.
    let resp = req
        .send()
        .await
        .map_err(|e| SendError::Http(e.without_url().to_string()))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(SendError::Http(format!(
            "HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        )));
    }
    // The robots answer 200 with their own error code.
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(code) = v.get("errcode").and_then(serde_json::Value::as_i64)
        && code != 0
    {
        return Err(SendError::Robot {
            code,
            msg: v
                .get("errmsg")
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .to_owned(),
        });
    }
    Ok(())
}

async fn send_mail(e: &Email, a: &Alert) -> Result<(), SendError> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let smtp = |e: &dyn std::fmt::Display| SendError::Smtp(e.to_string());
    let mut msg = Message::builder()
        .from(e.from.parse().map_err(|x| smtp(&x))?)
        .subject(&a.title)
        .header(lettre::message::header::ContentType::TEXT_PLAIN);
    for to in &e.to {
        msg = msg.to(to.parse().map_err(|x| smtp(&x))?);
    }
    let msg = msg.body(a.text()).map_err(|x| smtp(&x))?;
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(e.host.as_str())
        .port(e.port)
        .timeout(Some(Duration::from_secs(20)));
    if e.starttls {
        let mut p = TlsParameters::builder(e.host.clone());
        if let Some(pem) = &e.ca {
            p = p.add_root_certificate(Certificate::from_pem(pem).map_err(|x| smtp(&x))?);
        }
        b = b.tls(Tls::Required(p.build_rustls().map_err(|x| smtp(&x))?));
    }
    if let (Some(user), Some(pw)) = (&e.user, &e.password) {
        b = b.credentials(Credentials::new(user.clone(), pw.expose().to_owned()));
    }
    b.build().send(msg).await.map_err(|x| smtp(&x))?;
    Ok(())
}

/// Most alerts a target keeps while it does not answer; the oldest go first.
const QUEUE: usize = 500;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(300);

/// Deliver what arrives on `rx` to `target`, in order, retrying each alert until it is taken
/// (backoff from 1 s doubling to 5 min). On stop, what is queued gets one last try.
pub async fn deliver(
    target: AlertTarget,
    mut rx: mpsc::Receiver<Alert>,
    secrets: Vec<String>,
    cancel: CancellationToken,
) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(alert = %target.name, "cannot set up the alert target: {e}");
            return;
        }
    };
    let scrub = |s: String| {
        secrets
            .iter()
            .fold(s, |acc, sec| acc.replace(sec.as_str(), "***"))
    };
    let mut queue: VecDeque<Alert> = VecDeque::new();
    let mut wait = FIRST_RETRY;
    loop {
        if queue.is_empty() {
            tokio::select! {
                a = rx.recv() => match a {
                    Some(a) => queue.push_back(a),
                    None => return,
                },
                _ = cancel.cancelled() => return,
            }
        }
        while let Ok(a) = rx.try_recv() {
            queue.push_back(a);
        }
        while queue.len() > QUEUE {
            if let Some(a) = queue.pop_front() {
                tracing::error!(alert = %target.name, "alert dropped, the target has not answered for long: {}", a.title);
            }
        }
        let Some(a) = queue.front() else { continue };
        match send_once(&http, &target.transport, a).await {
            Ok(()) => {
                tracing::info!(alert = %target.name, event = a.event.as_str(), "alert sent: {}", a.title);
                queue.pop_front();
                wait = FIRST_RETRY;
            }
            Err(e) => {
                tracing::warn!(
                    alert = %target.name,
                    "cannot send the alert ({}), trying again in {}s: {}",
                    a.title,
                    wait.as_secs(),
                    scrub(e.to_string())
                );
                let stop = tokio::select! {
                    _ = tokio::time::sleep(wait) => false,
                    _ = cancel.cancelled() => true,
                };
                wait = (wait * 2).min(LAST_RETRY);
                if stop {
                    return;
                }
            }
        }
        if cancel.is_cancelled() {
            // Stopping: what is left gets one quick try each.
            while let Some(a) = queue.pop_front() {
                if let Err(e) = tokio::time::timeout(
                    Duration::from_secs(5),
                    send_once(&http, &target.transport, &a),
                )
                .await
                {
                    tracing::warn!(alert = %target.name, "alert not sent before stopping: {} ({e})", a.title);
                }
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dingtalk_signs_timestamp_and_secret() {
        let url = dingtalk_url(
            "https://oapi.dingtalk.com/robot/send?access_token=abc",
            "SEC123",
            1_700_000_000_000,
        );
        assert!(url.starts_with("https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp=1700000000000&sign="), "{url}");
        let sign = url.rsplit_once("sign=").map(|(_, s)| s).unwrap_or_default();
        // printf '1700000000000\nSEC123' | openssl dgst -sha256 -hmac SEC123 -binary | base64
        let want = "lkcPI1uoxBY1gUnCnnPH1Kkru0Hqjo7rFpA3haIVhEQ=";
        let decoded = percent_encoding::percent_decode_str(sign)
            .decode_utf8_lossy()
            .into_owned();
        assert_eq!(decoded, want);
        assert!(
            !sign.contains('+') && !sign.contains('/') && !sign.contains('='),
            "{sign}"
        );
    }
}
