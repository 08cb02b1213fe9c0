//! A TCP proxy in front of a server: the agents connect through it, the workload and the
//! checker do not. Its mode can be changed at any time: pass, stall (connections stay open,
//! nothing moves), drop new connections (accepted, then reset at once), slow (every chunk
//! waits), cut replies (the request goes through, the connection is reset as the answer
//! comes back); and every connection open at a moment can be reset.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Stall,
    DropNew,
    Slow,
    /// Whatever the server answers resets the connection instead of reaching the client
    /// (the request was delivered and acted on; its answer is lost).
    CutReplies,
}

/// The handle the faults use; the proxy runs in its own task.
#[derive(Clone)]
pub struct Proxy {
    pub name: &'static str,
    pub port: u16,
    mode: watch::Sender<Mode>,
    reset: watch::Sender<u64>,
    pub connections: Arc<AtomicU64>,
    pub resets: Arc<AtomicU64>,
    /// Connections open now.
    pub open: Arc<AtomicU64>,
    /// Connections reset as their answer came (`Mode::CutReplies`).
    pub cuts: Arc<AtomicU64>,
}

impl Proxy {
    pub async fn start(name: &'static str, upstream: u16) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the proxy")?;
        let port = listener.local_addr()?.port();
        let (mode, _) = watch::channel(Mode::Pass);
        let (reset, _) = watch::channel(0u64);
        let p = Proxy {
            name,
            port,
            mode,
            reset,
            connections: Arc::new(AtomicU64::new(0)),
            resets: Arc::new(AtomicU64::new(0)),
            open: Arc::new(AtomicU64::new(0)),
            cuts: Arc::new(AtomicU64::new(0)),
        };
        let q = p.clone();
        tokio::spawn(async move { q.accept(listener, upstream).await });
        Ok(p)
    }

    pub fn set(&self, m: Mode) {
        self.mode.send_replace(m);
    }

    /// Reset every connection open now (RST to both ends).
    pub fn reset_all(&self) {
        self.reset.send_modify(|n| *n += 1);
    }

    async fn accept(self, listener: TcpListener, upstream: u16) {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let mode = *self.mode.borrow();
            if mode == Mode::DropNew {
                hard_close(&client);
                self.resets.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.connections.fetch_add(1, Ordering::Relaxed);
            let me = self.clone();
            tokio::spawn(async move { me.pipe(client, upstream).await });
        }
    }

    async fn pipe(self, client: TcpStream, upstream: u16) {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.pipe_open(client, upstream).await;
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    async fn pipe_open(&self, mut client: TcpStream, upstream: u16) {
        let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
            hard_close(&client);
            return;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let mut reset_rx = self.reset.subscribe();
        let reset = {
            let (mut cr, mut cw) = client.split();
            let (mut sr, mut sw) = server.split();
            let up = copy(&mut cr, &mut sw, self.mode.subscribe(), false);
            let down = copy(&mut sr, &mut cw, self.mode.subscribe(), true);
            tokio::pin!(up, down);
            let (mut up_done, mut down_done) = (false, false);
            loop {
                tokio::select! {
                    cut = &mut down, if !down_done => {
                        if cut {
                            self.cuts.fetch_add(1, Ordering::Relaxed);
                            break true;
                        }
                        down_done = true;
                        if up_done {
                            break false;
                        }
                    }
                    _ = &mut up, if !up_done => {
                        up_done = true;
                        if down_done {
                            break false;
                        }
                    }
                    _ = reset_rx.changed() => break true,
                }
            }
        };
        if reset {
            self.resets.fetch_add(1, Ordering::Relaxed);
            hard_close(&client);
            hard_close(&server);
        }
    }
}

/// Copy one direction, obeying the proxy's mode before every chunk; true when it stopped
/// because a reply was cut (`reply`: this is the server's direction).
async fn copy<R, W>(r: &mut R, w: &mut W, mut mode: watch::Receiver<Mode>, reply: bool) -> bool
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = w.shutdown().await;
                return false;
            }
            Ok(n) => n,
        };
        loop {
            let m = *mode.borrow_and_update();
            match m {
                Mode::Stall => {
                    if mode.changed().await.is_err() {
                        return false;
                    }
                }
                Mode::Slow => {
                    tokio::time::sleep(Duration::from_millis(40 + (n as u64 % 160))).await;
                    break;
                }
                Mode::CutReplies if reply => return true,
                Mode::Pass | Mode::DropNew | Mode::CutReplies => break,
            }
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return false;
        }
    }
}

/// SO_LINGER 0: closing sends RST instead of FIN.
fn hard_close(s: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket this process owns, with a correctly sized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const l).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
