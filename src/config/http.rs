//! Validation of an `http` exchange: where batches are posted, the TLS files, and how
//! requests are authenticated.

use std::path::PathBuf;
use std::time::Duration;

use super::schema::{RawExchange, RawHttpAuth};
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
    pub token_pointer: String,
    pub expires_pointer: String,
    pub ttl: Duration,
    pub header: String,
    pub prefix: String,
}

impl V<'_> {
    /// The `http` keys of `[exchange]`; `None` after a problem.
    pub(super) fn http_exchange(&mut self, e: &RawExchange) -> Option<HttpExchange> {
        let before = self.problems.len();
        for (key, set) in [
            ("password", e.password.is_some()),
            ("max_connections", e.max_connections.is_some()),
            ("connect_timeout", e.connect_timeout.is_some()),
            ("bootstrap_sql", e.bootstrap_sql.is_some()),
            ("statement_timeout", e.statement_timeout.is_some()),
        ] {
            if set {
                self.err(
                    format!("exchange.{key}"),
                    "applies to a database exchange, not to kind = \"http\"",
                );
            }
        }
        let url = match secret::resolve(&e.url, self.base, self.env) {
            Ok(u) => u,
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
        (self.problems.len() == before).then(|| HttpExchange {
            url,
            timeout,
            gzip: e.gzip.unwrap_or(false),
            ca_file: e.ca_file.as_ref().map(|p| self.base.join(p)),
            client_cert,
            max_records: e.max_records,
            auth,
        })
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
