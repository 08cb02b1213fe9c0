//! Why a connection could not be made, when the pool only says it timed out: the address is
//! tried once directly, so that `check` and the log say "connection refused" or what the
//! resolver answered instead of only that the pool gave up.

use std::time::Duration;

use super::{DbConfig, DbError, EngineKind};

/// How long the direct try waits for an answer.
const TRY_FOR: Duration = Duration::from_secs(3);

/// `e` with the direct try's answer added to its cause, when the pool timed out.
pub(super) async fn explained(cfg: &DbConfig, e: DbError) -> DbError {
    match e {
        DbError::Connect {
            role,
            engine,
            url,
            cause,
            class,
        } if cause.contains("pool timed out") => {
            let cause = match answer(cfg).await {
                Some(a) => format!("{cause} — {a}"),
                None => cause,
            };
            DbError::Connect {
                role,
                engine,
                url,
                cause,
                class,
            }
        }
        other => other,
    }
}

/// What a direct TCP connection to the configured host and port meets; `None` when it
/// connects (the server answers: the cause is elsewhere) or there is no address to try.
async fn answer(cfg: &DbConfig) -> Option<String> {
    let url = url::Url::parse(cfg.url.expose()).ok()?;
    let host = url.host_str().filter(|h| !h.is_empty())?.to_owned();
    let port = url.port().or(match cfg.engine {
        EngineKind::Postgres => Some(5432),
        EngineKind::MySql => Some(3306),
        EngineKind::MsSql => Some(1433),
        EngineKind::Oracle => Some(1521),
        // An ODBC connection names a DSN or a driver's own options, not a URL's host.
        EngineKind::Sqlite | EngineKind::Odbc => None,
    })?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addrs = match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(a) => a.collect::<Vec<_>>(),
        Err(e) => return Some(format!("the resolver cannot find host {host}: {e}")),
    };
    let first = addrs.first()?;
    match tokio::time::timeout(TRY_FOR, tokio::net::TcpStream::connect(first)).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(format!(
            "connection refused at {host}:{port}: no server listens there (wrong host or port, or the server is down)"
        )),
        Ok(Err(e)) => Some(format!("{host}:{port}: {e}")),
        Err(_) => Some(format!(
            "{host}:{port} does not answer within {}s (a firewall, or a wrong address)",
            TRY_FOR.as_secs()
        )),
    }
}
