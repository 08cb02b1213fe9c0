//! A small pool of SQL Server connections (tiberius has none): at most `max_connections`
//! open at once, an idle one checked before it is used again, and a connection that saw an
//! error or was left in the middle of a result never reused.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tiberius::{AuthMethod, Client, Config, EncryptionLevel, SqlBrowser as _};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt as _};

use crate::db::DbConfig;
use crate::db::urls::{Encrypt, MsSqlUrl};

pub type Client_ = Client<Compat<TcpStream>>;

/// Set on every new connection: errors end the statement, not the transaction (the batch
/// isolates refused rows under savepoints); lock waits end after the statement timeout.
fn session(lock_timeout: Duration) -> String {
    let ms = match lock_timeout.as_millis() {
        0 => -1,
        n => i64::try_from(n).unwrap_or(i64::MAX),
    };
    format!(
        "SET XACT_ABORT OFF; SET ANSI_NULLS ON; SET ANSI_WARNINGS ON; SET ARITHABORT ON; \
         SET CONCAT_NULL_YIELDS_NULL ON; SET QUOTED_IDENTIFIER ON; SET NOCOUNT OFF; \
         SET IMPLICIT_TRANSACTIONS OFF; SET LOCK_TIMEOUT {ms}"
    )
}

pub struct Pool {
    config: Config,
    session: String,
    idle: Mutex<Vec<(Client_, Instant)>>,
    permits: Semaphore,
    connect_timeout: Duration,
}

/// A connection taken from the pool; returned to it when dropped, if [`Conn::keep`] was
/// called after its last use.
pub struct Conn<'p> {
    client: Option<Client_>,
    pool: &'p Pool,
    keep: bool,
    _permit: SemaphorePermit<'p>,
}

impl Conn<'_> {
    /// The connection, marked not reusable until [`Conn::keep`] is called again.
    pub fn client(&mut self) -> Option<&mut Client_> {
        self.keep = false;
        self.client.as_mut()
    }

    /// The last use ended cleanly: the connection may serve again.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if self.keep
            && let Some(c) = self.client.take()
            && let Ok(mut idle) = self.pool.idle.lock()
        {
            idle.push((c, Instant::now()));
        }
    }
}

/// Why no connection could be had.
#[derive(Debug)]
pub enum GetError {
    Timeout,
    Closed,
    Db(tiberius::error::Error),
}

impl Pool {
    pub fn new(url: &MsSqlUrl, cfg: &DbConfig) -> Pool {
        let mut c = Config::new();
        c.host(&url.host);
        if let Some(p) = url.port {
            c.port(p);
        }
        if let Some(i) = &url.instance {
            c.instance_name(i);
        }
        if let Some(d) = &url.database {
            c.database(d);
        }
        c.application_name(&url.application_name);
        c.authentication(AuthMethod::sql_server(&url.user, &url.password));
        c.encryption(match url.encrypt {
            Encrypt::Off => EncryptionLevel::Off,
            Encrypt::Required => EncryptionLevel::Required,
            Encrypt::Strict => EncryptionLevel::Strict,
        });
        if url.trust_server_certificate {
            c.trust_cert();
        }
        c.handshake_timeout(Some(cfg.connect_timeout));
        // The server ends lock waits itself (LOCK_TIMEOUT); a server that stays silent 30 s
        // longer than that is given up, as with the other engines.
        c.command_timeout(match cfg.statement_timeout {
            d if d.is_zero() => None,
            d => Some(d + Duration::from_secs(30)),
        });
        Pool {
            config: c,
            session: session(cfg.statement_timeout),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(cfg.max_connections.max(1) as usize),
            connect_timeout: cfg.connect_timeout,
        }
    }

    /// A connection: an idle one (checked when it idled a while), or a new one.
    pub async fn get(&self) -> Result<Conn<'_>, GetError> {
        let permit = match tokio::time::timeout(self.connect_timeout, self.permits.acquire()).await
        {
            Err(_) => return Err(GetError::Timeout),
            Ok(Err(_)) => return Err(GetError::Closed),
            Ok(Ok(p)) => p,
        };
        loop {
            let next = self.idle.lock().ok().and_then(|mut i| i.pop());
            let Some((mut c, since)) = next else { break };
            if since.elapsed() < super::super::CHECK_IDLE_AFTER || ping(&mut c).await {
                return Ok(Conn {
                    client: Some(c),
                    pool: self,
                    keep: true,
                    _permit: permit,
                });
            }
        }
        let c = match tokio::time::timeout(self.connect_timeout, self.open()).await {
            Err(_) => return Err(GetError::Timeout),
            Ok(r) => r.map_err(GetError::Db)?,
        };
        Ok(Conn {
            client: Some(c),
            pool: self,
            keep: true,
            _permit: permit,
        })
    }

    async fn open(&self) -> Result<Client_, tiberius::error::Error> {
        let mut config = self.config.clone();
        let mut client = match connect(&config).await {
            // Azure SQL and failover groups send the client on to another server.
            Err(tiberius::error::Error::Routing { host, port }) => {
                config.host(host);
                config.port(port);
                connect(&config).await?
            }
            r => r?,
        };
        client
            .simple_query(&self.session)
            .await?
            .into_results()
            .await?;
        Ok(client)
    }

    /// Close every idle connection; taking one fails from now on.
    pub async fn close(&self) {
        self.permits.close();
        let idle: Vec<_> = match self.idle.lock() {
            Ok(mut i) => i.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for (c, _) in idle {
            let _ = c.close().await;
        }
    }
}

async fn connect(config: &Config) -> Result<Client_, tiberius::error::Error> {
    let tcp = TcpStream::connect_named(config).await?;
    tcp.set_nodelay(true)?;
    Client::connect(config.clone(), tcp.compat_write()).await
}

async fn ping(c: &mut Client_) -> bool {
    match c.simple_query("SELECT 1").await {
        Ok(s) => s.into_results().await.is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_keep_transactions_open_after_an_error() {
        let s = session(Duration::from_secs(300));
        assert!(s.starts_with("SET XACT_ABORT OFF;"), "{s}");
        assert!(s.ends_with("SET LOCK_TIMEOUT 300000"), "{s}");
        assert!(session(Duration::ZERO).ends_with("SET LOCK_TIMEOUT -1"));
    }
}
