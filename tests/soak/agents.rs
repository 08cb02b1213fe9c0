//! The agents under test: one `frontdb-agent run` per pair, under libfaketime (each with its
//! own clock file), logging to a file, watched for exits nobody asked for.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::tables::{Engine, Exchange, Pair};

pub const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// Where an agent connects: the proxies' ports.
#[derive(Clone, Copy)]
pub struct Ports {
    pub pg: u16,
    pub my: u16,
    /// The exchange-sim's proxy.
    pub sim: u16,
}

pub struct Agent {
    pub pair: Pair,
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub state_dir: PathBuf,
    pub config: PathBuf,
    pub clock: PathBuf,
    pub log: PathBuf,
    ports: Ports,
    child: Mutex<Option<Child>>,
    pub variant: AtomicU64,
    pub starts: AtomicU64,
    /// Exits nobody asked for: (when, status, the log's tail).
    pub crashes: Mutex<Vec<String>>,
}

fn url(engine: Engine, ports: Ports, db: &str) -> String {
    match engine {
        Engine::Pg => format!("postgres://postgres@127.0.0.1:{}/{db}", ports.pg),
        Engine::My => format!("mysql://root@127.0.0.1:{}/{db}", ports.my),
    }
}

impl Agent {
    pub fn new(
        pair: Pair,
        bin: &Path,
        dir: &Path,
        state_root: &Path,
        ports: Ports,
    ) -> Result<Agent> {
        let dir = dir.join(pair.agent);
        std::fs::create_dir_all(&dir)?;
        let state_dir = state_root.join(pair.agent);
        let a = Agent {
            config: dir.join("agent.toml"),
            clock: dir.join("clock"),
            log: dir.join("agent.log"),
            dir,
            state_dir,
            bin: bin.to_owned(),
            pair,
            ports,
            child: Mutex::new(None),
            variant: AtomicU64::new(0),
            starts: AtomicU64::new(0),
            crashes: Mutex::new(Vec::new()),
        };
        std::fs::write(&a.clock, "+0\n")?;
        a.write_config(0, false)?;
        Ok(a)
    }

    pub fn name(&self) -> &'static str {
        self.pair.agent
    }

    /// The configuration of `variant`; `broken` writes one with an unknown key (a reload
    /// must refuse it and keep running the old one).
    pub fn config_text(&self, variant: usize, broken: bool) -> String {
        let p = &self.pair;
        // The writers' database is the source, except for a down agent: there it is the
        // exchange the agent reads, and it writes the front-end database.
        let mut source = url(p.src, self.ports, &p.src_db());
        let exchange = match p.ex {
            Exchange::Db(e) => {
                let mut ex = url(e, self.ports, &p.ex_db());
                if p.down {
                    std::mem::swap(&mut source, &mut ex);
                }
                format!(
                    "[exchange]\nurl = \"{ex}\"\nconnect_timeout = \"5s\"\nstatement_timeout = \"20s\"\n"
                )
            }
            // Signed batches through the sim's proxy; a request times out before most
            // proxy stalls end, and a batch of more than `max_records` goes in several
            // requests (ids `BATCH.r1-50`, by the records' positions). A reload changes
            // `max_records`: a batch sent again is then cut differently, under other ids.
            Exchange::Http => format!(
                "[exchange]\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/exchange/{{table}}\"\n\
                 timeout = \"5s\"\nmax_records = {per}\n\n\
                 [exchange.auth]\nkind = \"hmac-sha256\"\napp_key = \"{key}\"\n\
                 app_secret = \"${{env:{env}}}\"\n",
                port = self.ports.sim,
                per = [50, 37, 64][variant % 3],
                key = crate::sim::APP_KEY,
                env = crate::sim::SECRET_ENV,
            ),
            // The sim's WebService, signed the same way; a reload changes the SOAP version
            // and the payload (XML elements, or the records as gzipped JSON in one element),
            // so that a batch may be sent again in the other encoding.
            Exchange::Soap => format!(
                "[exchange]\nkind = \"soap\"\nurl = \"http://127.0.0.1:{port}/soap/{{table}}\"\n\
                 timeout = \"5s\"\nmax_records = {per}\n\n\
                 [exchange.auth]\nkind = \"hmac-sha256\"\napp_key = \"{key}\"\n\
                 app_secret = \"${{env:{env}}}\"\n\n\
                 [exchange.soap]\nversion = \"{version}\"\nnamespace = \"http://exchange.soak.example/ws\"\n\
                 operation = \"pushData\"\npayload = \"{payload}\"\n",
                port = self.ports.sim,
                per = [40, 64, 29][variant % 3],
                key = crate::sim::APP_KEY,
                env = crate::sim::SECRET_ENV,
                version = ["1.1", "1.2", "1.2"][variant % 3],
                payload = ["xml", "json-gzip-base64", "xml"][variant % 3],
            ),
            // A reload changes the files' encoding: a batch sent again after it keeps its
            // name and its bytes (the reservation), the next ones change.
            Exchange::File => format!(
                "[exchange]\nkind = \"file\"\ndir = \"{dir}\"\nformat = \"jsonl\"\nencoding = \"{enc}\"\n",
                dir = crate::files::dir_of(
                    self.state_dir.parent().unwrap_or(&self.state_dir),
                    p.agent
                )
                .display(),
                enc = ["utf-8", "gb18030", "utf-8"][variant % 3],
            ),
        };
        let mut s = format!(
            "[agent]\nid = \"soak-{agent}\"\nstate_dir = \"{state}\"\ntimezone = \"UTC\"\n\
             region_code = \"230000\"\ndepartment_code = \"SOAK\"\nretry_max = \"3s\"\n\
             stop_timeout = \"20s\"\n{typo}\n\
             [source]\nurl = \"{src}\"\nconnect_timeout = \"5s\"\n\n{exchange}",
            agent = p.agent,
            state = self.state_dir.display(),
            typo = if broken { "retry_maxx = \"1s\"\n" } else { "" },
            src = source,
        );
        for t in &p.tables {
            s.push_str(&crate::tables::config(t, variant));
        }
        s
    }

    pub fn write_config(&self, variant: usize, broken: bool) -> Result<()> {
        let tmp = self.dir.join("agent.toml.new");
        std::fs::write(&tmp, self.config_text(variant, broken))?;
        std::fs::rename(&tmp, &self.config)?;
        if !broken {
            self.variant.store(variant as u64, Ordering::SeqCst);
        }
        Ok(())
    }

    fn command(&self, faked: bool) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--config").arg(&self.config);
        c.env("FRONTDB_LOG", "info,sqlx=warn");
        c.env_remove("FRONTDB_CONFIG");
        c.env(crate::sim::SECRET_ENV, crate::sim::SECRET);
        if faked {
            c.env("LD_PRELOAD", FAKETIME_LIB)
                .env("FAKETIME_TIMESTAMP_FILE", &self.clock)
                // The clock file is read again at most once a second: an offset changes under
                // the running agent without every clock call opening a file.
                .env("FAKETIME_CACHE_DURATION", "1")
                // A wall-clock step (NTP) moves the real-time clock, never the monotonic one.
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        c
    }

    /// Start `run` (the agent must not be running).
    pub async fn start(&self) -> Result<()> {
        std::fs::create_dir_all(&self.state_dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = self
            .command(true)
            .arg("run")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        *self.child.lock().await = Some(child);
        self.starts.fetch_add(1, Ordering::SeqCst);
        self.wait_running(Duration::from_secs(60)).await
    }

    /// The running child, for a last-resort kill at cleanup.
    pub fn child_handle(&self) -> &Mutex<Option<Child>> {
        &self.child
    }

    pub async fn pid(&self) -> Option<u32> {
        self.child.lock().await.as_ref().and_then(Child::id)
    }

    /// Wait until `status` shows this daemon holding the state directory.
    pub async fn wait_running(&self, timeout: Duration) -> Result<()> {
        let pid = self.pid().await;
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(s) = self.status().await
                && s["daemon"]["running"] == true
                && s["daemon"]["pid"].as_u64().map(|p| p as u32) == pid
            {
                return Ok(());
            }
            if self.exited().await.is_some() {
                bail!(
                    "agent {} exited while starting: {}",
                    self.name(),
                    self.tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "agent {} did not report running within {timeout:?}",
            self.name()
        )
    }

    /// The child's exit status if it has exited (it is then forgotten).
    pub async fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut g = self.child.lock().await;
        let st = g.as_mut().and_then(|c| c.try_wait().ok().flatten());
        if st.is_some() {
            *g = None;
        }
        st
    }

    /// Send a signal to the running agent.
    pub async fn signal(&self, sig: i32) -> Result<()> {
        let Some(pid) = self.pid().await else {
            bail!("agent {} is not running", self.name())
        };
        // SAFETY: kill(2) on our own child's process id.
        if unsafe { libc::kill(pid as i32, sig) } != 0 {
            bail!("kill({pid}, {sig}): {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stop the agent with `sig` and wait for it; its exit status.
    pub async fn stop_with(&self, sig: i32, timeout: Duration) -> Result<std::process::ExitStatus> {
        let mut g = self.child.lock().await;
        let Some(child) = g.as_mut() else {
            bail!("agent {} is not running", self.name())
        };
        let pid = child.id().context("no pid")?;
        // SAFETY: kill(2) on our own child's process id.
        unsafe { libc::kill(pid as i32, sig) };
        let st = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(st) => st?,
            Err(_) => {
                let _ = child.kill().await;
                *g = None;
                bail!(
                    "agent {} did not stop within {timeout:?} after signal {sig}",
                    self.name()
                );
            }
        };
        *g = None;
        Ok(st)
    }

    /// Run a CLI command (not under faketime) and return (exit code, stdout, stderr).
    pub async fn cli(&self, args: &[&str], timeout: Duration) -> Result<(i32, String, String)> {
        let mut c = self.command(false);
        c.args(args).stdin(Stdio::null()).kill_on_drop(true);
        c.env("FRONTDB_LOG", "warn");
        let out = tokio::time::timeout(timeout, c.output())
            .await
            .with_context(|| format!("`{}` did not finish within {timeout:?}", args.join(" ")))??;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    pub async fn status(&self) -> Result<serde_json::Value> {
        let (code, out, err) = self
            .cli(&["status", "--json"], Duration::from_secs(30))
            .await?;
        if code != 0 {
            bail!("status exited {code}: {err}");
        }
        Ok(serde_json::from_str(&out)?)
    }

    /// The last `n` lines of the agent's log.
    pub fn tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Set the agent's clock offset (seconds from the real time).
    pub fn set_clock(&self, offset_secs: i64) -> Result<()> {
        std::fs::write(&self.clock, format!("{offset_secs:+}\n"))?;
        Ok(())
    }
}

/// Watch every agent: an exit nobody asked for is recorded with the log's tail and the agent
/// is started again (so the soak goes on and shows what follows).
pub async fn watch(
    agents: Arc<Vec<Arc<Agent>>>,
    expected: Arc<Mutex<()>>,
    restarts: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
) {
    while !stop.is_cancelled() {
        {
            // Faults that stop an agent hold this lock while it is down.
            let _g = expected.lock().await;
            for a in agents.iter() {
                let gone = match a.exited().await {
                    Some(st) => Some(st.to_string()),
                    // A start that failed leaves no child: it must not stay down unnoticed.
                    None if a.pid().await.is_none() => {
                        Some("not running after a failed start".into())
                    }
                    None => None,
                };
                if let Some(st) = gone {
                    let note = format!(
                        "agent {} exited by itself ({st}) at {}; log tail:\n{}",
                        a.name(),
                        chrono::Utc::now().format("%H:%M:%S%.3f"),
                        a.tail(40)
                    );
                    eprintln!("!! {note}");
                    a.crashes.lock().await.push(note);
                    restarts.fetch_add(1, Ordering::SeqCst);
                    if let Err(e) = a.start().await {
                        a.crashes
                            .lock()
                            .await
                            .push(format!("restart after the crash failed: {e:#}"));
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
