//! `[[alert]]`: where the agent tells people that a table fails, a category's frequency is at
//! risk or missed, the exchange is unreachable, too many rows are rejected, or a resync ended
//! — and that it recovered. Read here; the daemon's alert module sends them.

use serde::Deserialize;

use super::schema::RawAlert;
use super::secret::{self, Secret};
use super::validate::V;

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A table has been failing for longer than `unhealthy_after`.
    Failing,
    /// A table of a data category has less than `at_risk_margin` left.
    AtRisk,
    /// A table of a data category missed its deadline.
    Late,
    /// The exchange has not answered for longer than `unhealthy_after`.
    Unreachable,
    /// A cycle rejected more than `reject_alert` of its rows.
    Rejects,
    /// A full resync finished (or failed).
    Resync,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::Failing,
        EventKind::AtRisk,
        EventKind::Late,
        EventKind::Unreachable,
        EventKind::Rejects,
        EventKind::Resync,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Failing => "failing",
            EventKind::AtRisk => "at_risk",
            EventKind::Late => "late",
            EventKind::Unreachable => "unreachable",
            EventKind::Rejects => "rejects",
            EventKind::Resync => "resync",
        }
    }
}

/// An SMTP server and the message's addresses.
#[derive(Clone, Debug)]
pub struct Email {
    pub host: String,
    pub port: u16,
    pub starttls: bool,
    /// PEM text of a CA to trust besides the public roots.
    pub ca: Option<Vec<u8>>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
    pub to: Vec<String>,
}

/// How a target is reached.
#[derive(Clone, Debug)]
pub enum Transport {
    Webhook { url: Secret, token: Option<Secret> },
    WeCom { url: Secret },
    DingTalk { url: Secret, secret: Option<Secret> },
    Email(Box<Email>),
}

/// A validated `[[alert]]`.
#[derive(Clone, Debug)]
pub struct AlertTarget {
    pub name: String,
    pub transport: Transport,
    pub events: Vec<EventKind>,
}

impl AlertTarget {
    /// Its secret values, to scrub from messages.
    pub fn secrets(&self) -> Vec<String> {
        let all: Vec<&Secret> = match &self.transport {
            Transport::Webhook { url, token } => {
                [Some(url), token.as_ref()].into_iter().flatten().collect()
            }
            Transport::WeCom { url } => vec![url],
            Transport::DingTalk { url, secret } => {
                [Some(url), secret.as_ref()].into_iter().flatten().collect()
            }
            Transport::Email(e) => e.password.iter().collect(),
        };
        let mut out: Vec<String> = all
            .into_iter()
            .map(|s| s.expose().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        // A robot's key sits in its URL's query: scrub it alone too.
        for s in out.clone() {
            if let Some((_, q)) = s.split_once('?') {
                out.extend(
                    q.split('&')
                        .filter_map(|kv| kv.split_once('=').map(|(_, v)| v.to_owned()))
                        .filter(|v| v.len() >= 8),
                );
            }
        }
        out
    }
}

impl V<'_> {
    /// `[agent] at_risk_margin` and `alert_repeat`.
    pub(super) fn alert_timing(
        &mut self,
        a: &super::schema::RawAgent,
    ) -> (std::time::Duration, std::time::Duration) {
        use std::time::Duration;
        let margin = self.duration(
            "agent.at_risk_margin",
            a.at_risk_margin.as_deref(),
            Duration::from_secs(2 * 3600),
        );
        let repeat = self.duration(
            "agent.alert_repeat",
            a.alert_repeat.as_deref(),
            Duration::from_secs(4 * 3600),
        );
        if repeat < Duration::from_secs(60) {
            self.err("agent.alert_repeat", "must be at least 1m");
        }
        (margin, repeat)
    }

    /// A value that must come from `${env:}` or `${file:}`, resolved.
    fn alert_secret(&mut self, path: &str, raw: Option<&str>, what: &str) -> Option<Secret> {
        let raw = raw?;
        if !raw.contains("${env:") && !raw.contains("${file:") {
            self.err(
                path,
                format!("{what} is a secret: write it as ${{env:NAME}} or ${{file:PATH}}, never in the file"),
            );
            return None;
        }
        secret::resolve(raw, self.base, self.env)
            .map_err(|e| self.err(path, e))
            .ok()
            .map(|s| Secret::new(s.trim().to_owned()))
    }

    fn alert_url(&mut self, path: &str, raw: Option<&str>, robot: bool) -> Option<Secret> {
        let Some(text) = raw else {
            self.err(path, "is required: the URL the alert is posted to");
            return None;
        };
        let url = if robot {
            self.alert_secret(path, Some(text), "a robot's URL holds its key and")?
        } else {
            Secret::new(
                secret::resolve(text, self.base, self.env)
                    .map_err(|e| self.err(path, e))
                    .ok()?,
            )
        };
        match url::Url::parse(url.expose()) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Some(url),
            _ => {
                self.err(path, "must be an http:// or https:// URL");
                None
            }
        }
    }

    fn alert_email(&mut self, p: &str, a: &RawAlert) -> Option<Email> {
        let Some(smtp) = &a.smtp else {
            self.err(
                format!("{p}.smtp"),
                "is required for email: host:port of the SMTP server",
            );
            return None;
        };
        let (host, port) = match smtp.rsplit_once(':') {
            Some((h, port)) => (h.to_owned(), port.parse::<u16>().ok()),
            None => (smtp.clone(), Some(587)),
        };
        let Some(port) = port.filter(|_| !host.is_empty()) else {
            self.err(format!("{p}.smtp"), format!("`{smtp}` is not host:port"));
            return None;
        };
        let starttls = match a.tls.as_deref() {
            None | Some("starttls") => true,
            Some("none") => false,
            Some(t) => {
                self.err(format!("{p}.tls"), format!("`{t}` is not starttls or none"));
                true
            }
        };
        let ca = a.ca_file.as_ref().and_then(|f| {
            std::fs::read(self.base.join(f))
                .map_err(|e| {
                    self.err(
                        format!("{p}.ca_file"),
                        format!("cannot read {}: {e}", f.display()),
                    )
                })
                .ok()
        });
        let password = self.alert_secret(
            &format!("{p}.password"),
            a.password.as_deref(),
            "the SMTP password",
        );
        if a.password.is_some() && a.user.is_none() {
            self.err(format!("{p}.user"), "is required with password");
        }
        let mut ok = true;
        let from = a.from.clone().unwrap_or_default();
        for (k, addr) in std::iter::once(("from", &from)).chain(a.to.iter().map(|t| ("to", t))) {
            if addr.parse::<lettre::message::Mailbox>().is_err() {
                self.err(
                    format!("{p}.{k}"),
                    format!("`{addr}` is not an e-mail address"),
                );
                ok = false;
            }
        }
        if a.to.is_empty() {
            self.err(
                format!("{p}.to"),
                "is required for email: at least one recipient",
            );
            ok = false;
        }
        ok.then(|| Email {
            host,
            port,
            starttls,
            ca,
            user: a.user.clone(),
            password,
            from,
            to: a.to.clone(),
        })
    }

    fn alert(&mut self, i: usize, a: RawAlert) -> Option<AlertTarget> {
        let p = format!("alert[{i}]");
        let events = match &a.events {
            None => EventKind::ALL.to_vec(),
            Some(list) => list
                .iter()
                .filter_map(|e| {
                    let found = EventKind::ALL.into_iter().find(|k| k.as_str() == e);
                    if found.is_none() {
                        self.err(
                            format!("{p}.events"),
                            format!(
                                "`{e}` is not an event: use failing, at_risk, late, unreachable, rejects or resync"
                            ),
                        );
                    }
                    found
                })
                .collect(),
        };
        let robot_only = |v: &mut Self, key: &str, set: bool| {
            if set {
                v.err(
                    format!("{p}.{key}"),
                    format!("is not a key of a `{}` alert", a.kind),
                );
            }
        };
        let transport = match a.kind.as_str() {
            "webhook" => {
                robot_only(self, "secret", a.secret.is_some());
                let url = self.alert_url(&format!("{p}.url"), a.url.as_deref(), false);
                let token =
                    self.alert_secret(&format!("{p}.token"), a.token.as_deref(), "the token");
                Transport::Webhook { url: url?, token }
            }
            "wecom" => {
                robot_only(self, "secret", a.secret.is_some());
                robot_only(self, "token", a.token.is_some());
                Transport::WeCom {
                    url: self.alert_url(&format!("{p}.url"), a.url.as_deref(), true)?,
                }
            }
            "dingtalk" => {
                robot_only(self, "token", a.token.is_some());
                let url = self.alert_url(&format!("{p}.url"), a.url.as_deref(), true);
                let secret = self.alert_secret(
                    &format!("{p}.secret"),
                    a.secret.as_deref(),
                    "the signing secret",
                );
                Transport::DingTalk { url: url?, secret }
            }
            "email" => Transport::Email(Box::new(self.alert_email(&p, &a)?)),
            k => {
                self.err(
                    format!("{p}.kind"),
                    format!("`{k}` is not an alert kind: use webhook, wecom, dingtalk or email"),
                );
                return None;
            }
        };
        Some(AlertTarget {
            name: a.name.unwrap_or_else(|| format!("{}#{}", a.kind, i + 1)),
            transport,
            events,
        })
    }
}

/// Every `[[alert]]`, with its problems reported.
pub(super) fn validate(v: &mut V<'_>, raw: Vec<RawAlert>) -> Vec<AlertTarget> {
    raw.into_iter()
        .enumerate()
        .filter_map(|(i, a)| v.alert(i, a))
        .collect()
}
