//! What a shared server exposes: the metrics endpoint (a bearer token for `/metrics`) and
//! the configuration file (readable by others while it holds a secret inline). `check`
//! warns about both.

use std::os::unix::fs::PermissionsExt;

use axum::http::HeaderMap;

use crate::config::Config;
use crate::db::{Db, DbConfig, EngineKind};
use crate::secret::Secret;

/// Whether a request may read `/metrics`: always without a token, else with
/// `Authorization: Bearer <token>` (compared in constant time).
pub fn allowed(token: Option<&Secret>, headers: &HeaderMap) -> bool {
    let Some(token) = token else { return true };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let (a, b) = (given.as_bytes(), token.expose().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `check`'s warnings about what others on the machine or the network could read.
pub fn warnings(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(addr) = cfg.agent.metrics
        && !addr.ip().is_loopback()
        && cfg.agent.metrics_token.is_none()
    {
        out.push(format!(
            "agent.metrics listens on {addr}, beyond this machine, and /metrics asks for no \
             token: set agent.metrics_token (\"${{file:...}}\") or listen on 127.0.0.1"
        ));
    }
    let readable = std::fs::metadata(&cfg.file).is_ok_and(|m| m.permissions().mode() & 0o044 != 0);
    if readable {
        let text = std::fs::read_to_string(&cfg.file).unwrap_or_default();
        if cfg
            .secrets()
            .iter()
            .any(|s| !s.is_empty() && text.contains(s.as_str()))
        {
            out.push(format!(
                "{} holds a secret inline and other users can read it: `chmod 600` it (or \
                 `chmod 640` with the agent's group), or move the secret to \"${{file:...}}\"",
                cfg.file.display()
            ));
        }
    }
    out
}

/// How a database connection is encrypted, as its URL asks, and whether that deserves a
/// warning (a connection beyond this machine that is not encrypted with a verified
/// certificate).
pub fn transport(db: &DbConfig) -> (String, bool) {
    let Ok(url) = url::Url::parse(db.url.expose()) else {
        return ("transport: as the URL says".into(), false);
    };
    let param = |k: &str| {
        url.query_pairs()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let remote = match url.host() {
        None => false,
        // Database schemes are not "special" to the URL standard: an address is a name here.
        Some(url::Host::Domain(d)) => d
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .map_or(d != "localhost", |a| !a.is_loopback()),
        Some(url::Host::Ipv4(a)) => !a.is_loopback(),
        Some(url::Host::Ipv6(a)) => !a.is_loopback(),
    };
    let (what, verified) = match db.engine {
        EngineKind::Sqlite => return ("a local file: no network transport".into(), false),
        EngineKind::Oracle => {
            return (
                "transport: as the Oracle client's sqlnet.ora sets it".into(),
                false,
            );
        }
        EngineKind::Odbc => {
            return (
                "transport: as the ODBC driver's settings (odbc.ini) set it".into(),
                false,
            );
        }
        EngineKind::Postgres => {
            let mode = param("sslmode").unwrap_or_else(|| "prefer".into());
            (
                format!("sslmode={mode}"),
                mode == "verify-full" || mode == "verify-ca",
            )
        }
        EngineKind::MySql => {
            let mode = param("ssl-mode").unwrap_or_else(|| "preferred".into());
            (
                format!("ssl-mode={mode}"),
                mode == "verify_identity" || mode == "verify_ca",
            )
        }
        EngineKind::MsSql => {
            let enc = param("encrypt").unwrap_or_else(|| "true".into());
            let trusted = param("trust_server_certificate").is_some_and(|v| v == "true");
            (format!("encrypt={enc}"), enc != "false" && !trusted)
        }
    };
    let words = if verified {
        "TLS with the server's certificate verified"
    } else {
        "not encrypted with a verified certificate"
    };
    (format!("transport: {what} ({words})"), remote && !verified)
}

/// What PostgreSQL says of this session's TLS (`pg_stat_ssl` lists every backend).
const PG_SESSION_SSL: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
/// What MySQL/MariaDB says of this session's TLS: the cipher, empty when unencrypted.
const MY_SESSION_CIPHER: &str = "SHOW SESSION STATUS LIKE 'Ssl_cipher'";

/// Whether the connected session IS encrypted, as the server itself says: `Some` for
/// PostgreSQL and MySQL/MariaDB, `None` where the agent does not ask (SQLite, SQL Server,
/// Oracle) or the server would not say.
pub async fn encrypted(db: &Db) -> Option<bool> {
    match db {
        Db::Postgres(pg) => sqlx::query_scalar::<_, bool>(PG_SESSION_SSL)
            .fetch_optional(&pg.pool)
            .await
            .ok()
            .flatten(),
        Db::MySql(my) => {
            use sqlx::Row;
            let row = sqlx::query(MY_SESSION_CIPHER)
                .fetch_optional(&my.pool)
                .await
                .ok()??;
            // MariaDB sends status values as text, some MySQL versions as bytes.
            let cipher = row
                .try_get_unchecked::<String, _>(1)
                .or_else(|_| {
                    row.try_get_unchecked::<Vec<u8>, _>(1)
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                })
                .ok()?;
            Some(!cipher.trim().is_empty())
        }
        _ => None,
    }
}

/// `check`'s words for what the server says of the session (`None` when not connected).
pub fn encrypted_words(live: Option<Option<bool>>) -> &'static str {
    match live {
        Some(Some(true)) => "encrypted: yes (the server says the session uses TLS)",
        Some(Some(false)) => "encrypted: NO (the server says the session is not encrypted)",
        Some(None) => "encrypted: not asked of the server (as the URL asks)",
        None => "encrypted: unknown (not connected)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_bearer_token_passes() {
        let token = Secret::new("s3cret-token".into());
        let mut h = HeaderMap::new();
        assert!(allowed(None, &h));
        assert!(!allowed(Some(&token), &h));
        h.insert("authorization", "Bearer s3cret-tokeN".parse().expect("h"));
        assert!(!allowed(Some(&token), &h));
        h.insert("authorization", "s3cret-token".parse().expect("h"));
        assert!(!allowed(Some(&token), &h));
        h.insert("authorization", "Bearer s3cret-token".parse().expect("h"));
        assert!(allowed(Some(&token), &h));
    }
}

#[cfg(test)]
mod transport_tests {
    use super::*;

    fn db(engine: EngineKind, url: &str) -> DbConfig {
        DbConfig {
            engine,
            url: Secret::new(url.into()),
            password: None,
            max_connections: 1,
            connect_timeout: std::time::Duration::from_secs(1),
            bootstrap_sql: None,
            transaction_guard: std::time::Duration::ZERO,
            statement_timeout: std::time::Duration::ZERO,
            redacted: String::new(),
            flavor: None,
        }
    }

    #[test]
    fn a_remote_database_without_verified_tls_is_warned_about() {
        let pg = |u: &str| transport(&db(EngineKind::Postgres, u));
        let (line, warn) = pg("postgres://u@10.0.0.5/x");
        assert!(warn && line.contains("sslmode=prefer"), "{line}");
        assert!(!pg("postgres://u@127.0.0.1/x").1);
        let (line, warn) = pg("postgres://u@db.example/x?sslmode=verify-full&sslrootcert=/ca.pem");
        assert!(!warn && line.contains("verified"), "{line}");
        let my = |u: &str| transport(&db(EngineKind::MySql, u));
        assert!(my("mysql://u@10.0.0.5/x?ssl-mode=REQUIRED").1);
        assert!(!my("mysql://u@10.0.0.5/x?ssl-mode=VERIFY_IDENTITY").1);
        let ms = |u: &str| transport(&db(EngineKind::MsSql, u));
        assert!(!ms("mssql://u@10.0.0.5/x").1);
        assert!(ms("mssql://u@10.0.0.5/x?trust_server_certificate=true").1);
        assert!(ms("mssql://u@10.0.0.5/x?encrypt=false").1);
    }
}
