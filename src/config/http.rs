//! Validation of an `http` exchange: where batches are posted, the TLS files, and how
//! requests are authenticated.

use std::path::PathBuf;
use std::time::Duration;

use super::schema::{RawEnvelope, RawExchange, RawHttpAuth};
use super::secret::{self, Secret};
use super::validate::V;

/// An exchange reached over HTTP(S).
#[derive(Clone, Debug)]
pub struct HttpExchange {
    /// Where batches are posted; `{table}` stands for the exchange table's name.
    pub url: String,
    pub timeout: Duration,
    pub gzip: bool,
    pub ca_file: Option<PathBuf>,
    /// Client certificate and its key, for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub max_records: Option<usize>,
    pub auth: HttpAuth,
    pub envelope: Envelope,
}

/// What a record looks like in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordShape {
    /// `{"op", "key", "values"}`.
    BuiltIn,
    /// The values alone: the envelope cannot carry deletes.
    Values,
}

/// A request body and its answer, as a province defines them.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub records: String,
    pub record: RecordShape,
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub agent_field: Option<String>,
    pub table_field: Option<String>,
    pub batch_field: Option<String>,
    pub cd_batch_field: Option<String>,
    pub token_field: Option<String>,
    pub success: String,
    pub success_value: String,
    pub message: String,
    pub rejected: String,
    pub date_format: String,
    /// `None`: RFC 3339.
    pub time_format: Option<String>,
    /// `None`: the agent's zone.
    pub tz: Option<chrono_tz::Tz>,
    pub json_columns: Vec<String>,
}

impl Envelope {
    /// The built-in envelope.
    pub fn built_in() -> Envelope {
        Envelope {
            records: "/records".into(),
            record: RecordShape::BuiltIn,
            fields: serde_json::Map::new(),
            agent_field: Some("agent".into()),
            table_field: Some("table".into()),
            batch_field: Some("batch".into()),
            cd_batch_field: Some("cd_batch".into()),
            token_field: None,
            success: "/code".into(),
            success_value: "0".into(),
            message: "/message".into(),
            rejected: "/rejected".into(),
            date_format: "%Y-%m-%d".into(),
            time_format: None,
            tz: None,
            json_columns: Vec::new(),
        }
    }
}

/// How requests prove who sends them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    None,
    /// `Authorization: Basic` with the key and the secret.
    Basic,
    /// `Authorization: Bearer` with the secret.
    Bearer,
    /// A token asked of a login URL with the key and the secret, renewed before it expires.
    Login,
    /// `X-Sign = md5(key + secret + timestamp)`.
    Md5,
    /// `X-Sign = sha1(key + secret + timestamp)`.
    Sha1,
    /// An HMAC-SHA256 of the method, path, timestamp, nonce and body digest.
    HmacSha256,
    /// The same with SM3 (GB/T 32905).
    HmacSm3,
}

impl AuthKind {
    fn parse(s: &str) -> Option<AuthKind> {
        Some(match s {
            "none" => AuthKind::None,
            "basic" => AuthKind::Basic,
            "bearer" => AuthKind::Bearer,
            "login" => AuthKind::Login,
            "md5" => AuthKind::Md5,
            "sha1" => AuthKind::Sha1,
            "hmac-sha256" => AuthKind::HmacSha256,
            "hmac-sm3" => AuthKind::HmacSm3,
            _ => return None,
        })
    }

    /// Whether it needs `app_key` and `app_secret`.
    fn needs(self) -> (bool, bool) {
        match self {
            AuthKind::None => (false, false),
            AuthKind::Bearer => (false, true),
            _ => (true, true),
        }
    }
}

#[derive(Clone, Debug)]
pub struct HttpAuth {
    pub kind: AuthKind,
    pub app_key: Option<Secret>,
    pub app_secret: Option<Secret>,
    pub login: Option<Login>,
}

/// Where a token comes from and how it travels.
#[derive(Clone, Debug)]
pub struct Login {
    pub url: String,
    pub key_field: String,
    pub secret_field: String,
    pub token_pointer: String,
    pub expires_pointer: String,
    pub ttl: Duration,
    pub header: String,
    pub prefix: String,
}

impl V<'_> {
    /// The `http` keys of `[exchange]`; `None` after a problem.
    /// `kind` names the exchange kind in messages (`http`, or `soap`, which reaches its
    /// endpoint the same way).
    pub(super) fn http_exchange(&mut self, e: &RawExchange, kind: &str) -> Option<HttpExchange> {
        let before = self.problems.len();
        for (key, set) in e.database_keys() {
            if set {
                self.err(
                    format!("exchange.{key}"),
                    format!("applies to a database exchange, not to kind = \"{kind}\""),
                );
            }
        }
        let url = match secret::resolve(e.url.as_deref().unwrap_or_default(), self.base, self.env) {
            Ok(u) if e.url.is_some() => u,
            Ok(_) => {
                self.err("exchange.url", "is required by kind = \"http\"");
                String::new()
            }
            Err(m) => {
                self.err("exchange.url", m);
                String::new()
            }
        };
        match url::Url::parse(&url.replace("{table}", "t")) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => self.err(
                "exchange.url",
                "must be an http:// or https:// URL (`{table}` stands for the table's name)",
            ),
        }
        let timeout = self.duration(
            "exchange.timeout",
            e.timeout.as_deref(),
            Duration::from_secs(30),
        );
        if timeout.is_zero() {
            self.err("exchange.timeout", "must be longer than 0s");
        }
        let client_cert = match (&e.client_cert, &e.client_key) {
            (Some(c), Some(k)) => Some((self.base.join(c), self.base.join(k))),
            (None, None) => None,
            (Some(_), None) => {
                self.err("exchange.client_key", "client_cert needs client_key too");
                None
            }
            (None, Some(_)) => {
                self.err("exchange.client_cert", "client_key needs client_cert too");
                None
            }
        };
        if e.max_records == Some(0) {
            self.err("exchange.max_records", "must be at least 1");
        }
        let auth = self.http_auth(e.auth.as_ref());
        let envelope = match &e.envelope {
            Some(raw) => self.envelope(raw),
            None => Envelope::built_in(),
        };
        if envelope.token_field.is_some() && auth.kind != AuthKind::Login {
            self.err(
                "exchange.envelope.token_field",
                "carries a login token: needs [exchange.auth] kind = \"login\"",
            );
        }
        (self.problems.len() == before).then(|| HttpExchange {
            url,
            timeout,
            gzip: e.gzip.unwrap_or(false),
            ca_file: e.ca_file.as_ref().map(|p| self.base.join(p)),
            client_cert,
            max_records: e.max_records,
            auth,
            envelope,
        })
    }

    fn envelope(&mut self, r: &RawEnvelope) -> Envelope {
        let built_in = Envelope::built_in();
        let record = match r.record.as_deref() {
            None | Some("built-in") => RecordShape::BuiltIn,
            Some("values") => RecordShape::Values,
            Some(other) => {
                self.err(
                    "exchange.envelope.record",
                    format!("`{other}` is not a record shape: use built-in or values"),
                );
                RecordShape::BuiltIn
            }
        };
        let mut pointer = |key: &str, v: &Option<String>, default: &str| {
            let p = v.clone().unwrap_or_else(|| default.to_owned());
            if !p.starts_with('/') {
                self.err(
                    format!("exchange.envelope.{key}"),
                    format!("`{p}` is not a JSON pointer: write e.g. /data"),
                );
            }
            p
        };
        let records = pointer("records", &r.records, &built_in.records);
        let success = pointer("success", &r.success, &built_in.success);
        let message = pointer("message", &r.message, &built_in.message);
        let rejected = pointer("rejected", &r.rejected, &built_in.rejected);
        // The built-in record keeps the built-in wrapper fields unless told otherwise; a
        // province's own record has only the fields it names.
        let field = |v: &Option<String>, default: &Option<String>| match v {
            Some(n) if n.is_empty() => None,
            Some(n) => Some(n.clone()),
            None if record == RecordShape::BuiltIn => default.clone(),
            None => None,
        };
        let fields = r
            .fields
            .iter()
            .filter_map(|(k, v)| match serde_json::to_value(v) {
                Ok(j) => Some((k.clone(), j)),
                Err(e) => {
                    self.err(format!("exchange.envelope.fields.{k}"), e.to_string());
                    None
                }
            })
            .collect();
        let success_value = match &r.success_value {
            None => built_in.success_value.clone(),
            Some(toml::Value::String(s)) => s.clone(),
            Some(toml::Value::Integer(i)) => i.to_string(),
            Some(other) => {
                self.err(
                    "exchange.envelope.success_value",
                    format!("`{other}` is not a text or an integer"),
                );
                String::new()
            }
        };
        let tz = r.timezone.as_ref().and_then(|z| {
            z.parse::<chrono_tz::Tz>()
                .map_err(|_| {
                    self.err(
                        "exchange.envelope.timezone",
                        format!("`{z}` is not a time zone name (e.g. Asia/Ho_Chi_Minh)"),
                    )
                })
                .ok()
        });
        for (key, f) in [
            ("date_format", &r.date_format),
            ("time_format", &r.time_format),
        ] {
            if let Some(f) = f
                && chrono::format::StrftimeItems::new(f).parse().is_err()
            {
                self.err(
                    format!("exchange.envelope.{key}"),
                    format!("`{f}` is not a chrono format (e.g. %Y%m%d%H%M%S)"),
                );
            }
        }
        Envelope {
            records,
            record,
            fields,
            agent_field: field(&r.agent_field, &built_in.agent_field),
            table_field: field(&r.table_field, &built_in.table_field),
            batch_field: field(&r.batch_field, &built_in.batch_field),
            cd_batch_field: field(&r.cd_batch_field, &built_in.cd_batch_field),
            token_field: r.token_field.clone().filter(|f| !f.is_empty()),
            success,
            success_value,
            message,
            rejected,
            date_format: r.date_format.clone().unwrap_or(built_in.date_format),
            time_format: r.time_format.clone(),
            tz,
            json_columns: r.json_columns.clone(),
        }
    }

    fn http_auth(&mut self, a: Option<&RawHttpAuth>) -> HttpAuth {
        let empty = RawHttpAuth::default();
        let a = a.unwrap_or(&empty);
        let kind = match a.kind.as_deref() {
            None => AuthKind::None,
            Some(k) => AuthKind::parse(k).unwrap_or_else(|| {
                self.err(
                    "exchange.auth.kind",
                    format!(
                        "`{k}` is not an auth kind: use none, basic, bearer, login, md5, sha1, \
                         hmac-sha256 or hmac-sm3"
                    ),
                );
                AuthKind::None
            }),
        };
        let mut secret = |key: &str, v: &Option<String>, needed: bool| match v {
            Some(v) => match secret::resolve(v, self.base, self.env) {
                Ok(s) => Some(Secret::new(s)),
                Err(m) => {
                    self.err(format!("exchange.auth.{key}"), m);
                    None
                }
            },
            None if needed => {
                self.err(
                    format!("exchange.auth.{key}"),
                    format!(
                        "is required by auth kind {:?}",
                        a.kind.as_deref().unwrap_or("")
                    ),
                );
                None
            }
            None => None,
        };
        let (need_key, need_secret) = kind.needs();
        let app_key = secret("app_key", &a.app_key, need_key);
        let app_secret = secret("app_secret", &a.app_secret, need_secret);
        let login = (kind == AuthKind::Login).then(|| {
            let url = a.login_url.clone().unwrap_or_else(|| {
                self.err(
                    "exchange.auth.login_url",
                    "is required by auth kind \"login\"",
                );
                String::new()
            });
            let pointer =
                |p: &Option<String>, default: &str| p.clone().unwrap_or_else(|| default.to_owned());
            let (token_pointer, expires_pointer) = (
                pointer(&a.token_pointer, "/token"),
                pointer(&a.expires_pointer, "/expires_in"),
            );
            for (key, p) in [
                ("token_pointer", &token_pointer),
                ("expires_pointer", &expires_pointer),
            ] {
                if !p.starts_with('/') {
                    self.err(
                        format!("exchange.auth.{key}"),
                        format!("`{p}` is not a JSON pointer: write e.g. /data/token"),
                    );
                }
            }
            Login {
                url,
                key_field: a
                    .login_key_field
                    .clone()
                    .unwrap_or_else(|| "app_key".into()),
                secret_field: a
                    .login_secret_field
                    .clone()
                    .unwrap_or_else(|| "app_secret".into()),
                token_pointer,
                expires_pointer,
                ttl: self.duration(
                    "exchange.auth.token_ttl",
                    a.token_ttl.as_deref(),
                    Duration::from_secs(900),
                ),
                header: a
                    .token_header
                    .clone()
                    .unwrap_or_else(|| "Authorization".into()),
                prefix: a.token_prefix.clone().unwrap_or_else(|| "Bearer ".into()),
            }
        });
        if kind != AuthKind::Login {
            for (key, set) in [
                ("login_url", a.login_url.is_some()),
                ("login_key_field", a.login_key_field.is_some()),
                ("login_secret_field", a.login_secret_field.is_some()),
                ("token_pointer", a.token_pointer.is_some()),
                ("expires_pointer", a.expires_pointer.is_some()),
                ("token_ttl", a.token_ttl.is_some()),
                ("token_header", a.token_header.is_some()),
                ("token_prefix", a.token_prefix.is_some()),
            ] {
                if set {
                    self.err(
                        format!("exchange.auth.{key}"),
                        "applies only to auth kind \"login\"",
                    );
                }
            }
        }
        HttpAuth {
            kind,
            app_key,
            app_secret,
            login,
        }
    }
}
