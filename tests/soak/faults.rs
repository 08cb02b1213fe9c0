//! The fault schedule: drawn from the seed before anything runs, printed, then carried out one
//! fault after another (each is injected, held, and healed before the next). Every kind is
//! placed once first, in an order of the seed's, then more are drawn until the run is full.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::Mutex;

use crate::agents::Agent;
use crate::proxy::{Mode, Proxy};
use crate::servers::{MariaDb, Postgres, Restart};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    AgentKill,
    AgentTerm,
    PgRestartFast,
    PgRestartImmediate,
    MyRestartFast,
    MyRestartImmediate,
    ProxyStall,
    ProxyDropNew,
    ProxyReset,
    ProxySlow,
    DiskFull,
    Reload,
    ReloadInvalid,
    ResyncTable,
    ResyncAll,
    ClockJump,
    SimKill,
    SimCutReplies,
}

pub const ALL: [Kind; 18] = [
    Kind::AgentKill,
    Kind::AgentTerm,
    Kind::PgRestartFast,
    Kind::PgRestartImmediate,
    Kind::MyRestartFast,
    Kind::MyRestartImmediate,
    Kind::ProxyStall,
    Kind::ProxyDropNew,
    Kind::ProxyReset,
    Kind::ProxySlow,
    Kind::DiskFull,
    Kind::Reload,
    Kind::ReloadInvalid,
    Kind::ResyncTable,
    Kind::ResyncAll,
    Kind::ClockJump,
    Kind::SimKill,
    Kind::SimCutReplies,
];

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::AgentKill => "agent SIGKILL + restart",
            Kind::AgentTerm => "agent SIGTERM + restart",
            Kind::PgRestartFast => "PostgreSQL fast restart",
            Kind::PgRestartImmediate => "PostgreSQL immediate restart",
            Kind::MyRestartFast => "MariaDB fast restart",
            Kind::MyRestartImmediate => "MariaDB immediate restart (SIGKILL)",
            Kind::ProxyStall => "proxy stall",
            Kind::ProxyDropNew => "proxy drop new connections",
            Kind::ProxyReset => "proxy reset connections",
            Kind::ProxySlow => "proxy slow",
            Kind::DiskFull => "state directory out of space",
            Kind::Reload => "SIGHUP with a changed configuration",
            Kind::ReloadInvalid => "SIGHUP with an invalid, then a valid configuration",
            Kind::ResyncTable => "resync --table (CLI) mid-run",
            Kind::ResyncAll => "SIGUSR1 (resync of every table)",
            Kind::ClockJump => "agent clock jump (libfaketime)",
            Kind::SimKill => "exchange-sim SIGKILL + restart",
            Kind::SimCutReplies => "exchange-sim proxy cuts its answers",
        }
    }

    /// How long the fault is held, drawn from the seed.
    fn hold(self, rng: &mut StdRng) -> Duration {
        let ms = match self {
            Kind::AgentKill | Kind::AgentTerm | Kind::SimKill => rng.random_range(200..3000),
            Kind::ProxyStall => rng.random_range(2000..9000),
            Kind::ProxyDropNew => rng.random_range(2000..7000),
            Kind::ProxySlow => rng.random_range(3000..9000),
            Kind::SimCutReplies => rng.random_range(2000..6000),
            Kind::DiskFull => rng.random_range(3000..9000),
            Kind::ProxyReset => rng.random_range(1..4) * 700,
            Kind::ReloadInvalid => 1500,
            _ => 0,
        };
        Duration::from_millis(ms)
    }

    /// About how long carrying it out takes beyond its hold (restarts, waits).
    fn overhead(self) -> Duration {
        Duration::from_millis(match self {
            Kind::AgentKill | Kind::AgentTerm => 1500,
            Kind::SimKill => 800,
            Kind::PgRestartImmediate => 4000,
            Kind::PgRestartFast | Kind::MyRestartFast | Kind::MyRestartImmediate => 2500,
            _ => 300,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Fault {
    pub at: Duration,
    pub kind: Kind,
    pub hold: Duration,
    /// Which agent (kill, reload, resync, clock) or which server's proxy (0 PostgreSQL, 1
    /// MariaDB, 2 exchange-sim).
    pub target: usize,
    /// The table index (resync), the configuration variant (reload), the clock offset in
    /// seconds (clock jump).
    pub param: i64,
}

impl Fault {
    pub fn describe(&self, agents: &[Arc<Agent>]) -> String {
        let agent = || agents.get(self.target).map_or("?", |a| a.name());
        let what = match self.kind {
            Kind::ProxyStall | Kind::ProxyDropNew | Kind::ProxyReset | Kind::ProxySlow => {
                format!(
                    " ({} proxy)",
                    ["PostgreSQL", "MariaDB", "exchange-sim"]
                        .get(self.target)
                        .unwrap_or(&"?")
                )
            }
            Kind::AgentKill | Kind::AgentTerm | Kind::ResyncAll => format!(" (agent {})", agent()),
            Kind::Reload | Kind::ReloadInvalid => {
                format!(" (agent {}, variant {})", agent(), self.param)
            }
            Kind::ResyncTable => {
                let t = agents
                    .get(self.target)
                    .and_then(|a| a.pair.tables.get(self.param as usize))
                    .map_or("?", |t| t.name.as_str());
                format!(" (agent {}, table {t})", agent())
            }
            Kind::ClockJump => format!(" (agent {}, offset {:+}s)", agent(), self.param),
            _ => String::new(),
        };
        let hold = if self.hold.is_zero() {
            String::new()
        } else {
            format!(", held {:.1}s", self.hold.as_secs_f64())
        };
        format!(
            "{:>7.1}s  {}{what}{hold}",
            self.at.as_secs_f64(),
            self.kind.label()
        )
    }
}

/// The schedule of a run of `total`, for agents of the given table counts, each saying
/// whether it delivers over HTTP.
///
/// The clock of an HTTP agent jumps by at most 4 minutes: its requests carry their time
/// (`X-Timestamp`, signed) and the sim refuses one more than 5 minutes from its own clock
/// (401, which fails the table until the clock is right); a larger jump would stop that
/// agent for the rest of the run instead of testing it.
pub fn schedule(seed: u64, total: Duration, agents: &[(usize, bool)]) -> Vec<Fault> {
    let tables: Vec<usize> = agents.iter().map(|a| a.0).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ 0xfa17_5c4e_d01e_0000);
    let end = total.saturating_sub(Duration::from_secs(10));
    let mut kinds: Vec<Kind> = ALL.to_vec();
    // Fisher-Yates with the seed's generator.
    for i in (1..kinds.len()).rev() {
        kinds.swap(i, rng.random_range(0..=i));
    }
    let mut out = Vec::new();
    let mut t = Duration::from_secs(4);
    let mut variants = vec![0i64; tables.len()];
    let mut i = 0;
    loop {
        let kind = if i < kinds.len() {
            kinds[i]
        } else {
            ALL[rng.random_range(0..ALL.len())]
        };
        i += 1;
        let hold = kind.hold(&mut rng);
        let need = hold + kind.overhead();
        // Every kind at least once, even when the run is short; more only while they fit.
        if i > kinds.len() && t + need > end {
            break;
        }
        let target = match kind {
            Kind::ProxyStall | Kind::ProxyDropNew | Kind::ProxyReset | Kind::ProxySlow => {
                rng.random_range(0..3)
            }
            Kind::SimKill | Kind::SimCutReplies => 2,
            _ => rng.random_range(0..tables.len()),
        };
        let param = match kind {
            Kind::ResyncTable => rng.random_range(0..tables[target]) as i64,
            Kind::Reload | Kind::ReloadInvalid => {
                variants[target] = (variants[target] + rng.random_range(1..3)) % 3;
                variants[target]
            }
            Kind::ClockJump => {
                let s = if agents[target].1 {
                    rng.random_range(20..240)
                } else {
                    rng.random_range(300..43_200)
                };
                if rng.random_bool(0.5) { s } else { -s }
            }
            _ => 0,
        };
        out.push(Fault {
            at: t,
            kind,
            hold,
            target,
            param,
        });
        t += need + Duration::from_millis(rng.random_range(500..3000));
    }
    out
}

/// What the faults act on.
pub struct World {
    pub agents: Arc<Vec<Arc<Agent>>>,
    pub pg: Arc<Postgres>,
    pub my: Arc<MariaDb>,
    pub sim: Arc<crate::sim::Sim>,
    pub proxies: [Proxy; 3],
    /// The tmpfs holding every state directory, when it could be mounted.
    pub tmpfs: Option<std::path::PathBuf>,
    /// Held while an agent is down on purpose.
    pub expected: Arc<Mutex<()>>,
}

#[derive(Default, Debug)]
pub struct Counts {
    pub injected: BTreeMap<Kind, u64>,
    pub skipped: BTreeMap<Kind, String>,
    /// Faults whose own step went wrong (a failure of the run unless explained).
    pub errors: Vec<String>,
    /// Bytes of ballast written at the last out-of-space fault.
    pub ballast_bytes: u64,
}

/// Carry out the schedule, relative to `t0`; stop before a fault that would start after
/// `deadline`.
pub async fn run(world: &World, plan: &[Fault], t0: Instant, deadline: Duration) -> Counts {
    let mut counts = Counts::default();
    for f in plan {
        let now = t0.elapsed();
        if f.at > now {
            tokio::time::sleep(f.at - now).await;
        }
        if t0.elapsed() > deadline {
            break;
        }
        println!(
            "[{:>6.1}s {}] fault: {}",
            t0.elapsed().as_secs_f64(),
            chrono::Utc::now().format("%H:%M:%S%.3f"),
            f.describe(&world.agents)
        );
        match inject(world, f, &mut counts).await {
            Ok(true) => *counts.injected.entry(f.kind).or_default() += 1,
            Ok(false) => {}
            Err(e) => {
                let msg = format!(
                    "{} at {:.1}s: {e:#}",
                    f.kind.label(),
                    t0.elapsed().as_secs_f64()
                );
                eprintln!("!! fault step failed: {msg}");
                counts.errors.push(msg);
            }
        }
    }
    counts
}

async fn blocking(f: impl FnOnce() -> Result<()> + Send + 'static) -> Result<()> {
    tokio::task::spawn_blocking(f)
        .await
        .context("joining a blocking step")?
}

/// Inject, hold and heal one fault. Ok(false): not injected (skipped with a reason).
async fn inject(w: &World, f: &Fault, counts: &mut Counts) -> Result<bool> {
    let agent = || w.agents.get(f.target).cloned().context("no such agent");
    match f.kind {
        Kind::AgentKill | Kind::AgentTerm => {
            let a = agent()?;
            let _g = w.expected.lock().await;
            let sig = if f.kind == Kind::AgentKill {
                libc::SIGKILL
            } else {
                libc::SIGTERM
            };
            let st = a.stop_with(sig, Duration::from_secs(40)).await?;
            if f.kind == Kind::AgentTerm && st.code() != Some(0) {
                bail!(
                    "agent {} exited {st} after SIGTERM (a graceful stop exits 0): {}",
                    a.name(),
                    a.tail(20)
                );
            }
            tokio::time::sleep(f.hold).await;
            a.start().await?;
        }
        Kind::PgRestartFast | Kind::PgRestartImmediate => {
            let pg = w.pg.clone();
            let how = if f.kind == Kind::PgRestartFast {
                Restart::Fast
            } else {
                Restart::Immediate
            };
            blocking(move || pg.restart(how)).await?;
        }
        Kind::MyRestartFast | Kind::MyRestartImmediate => {
            let my = w.my.clone();
            let how = if f.kind == Kind::MyRestartFast {
                Restart::Fast
            } else {
                Restart::Immediate
            };
            blocking(move || my.restart(how)).await?;
        }
        Kind::ProxyStall | Kind::ProxyDropNew | Kind::ProxySlow | Kind::SimCutReplies => {
            let p = &w.proxies[f.target];
            p.set(match f.kind {
                Kind::ProxyStall => Mode::Stall,
                Kind::ProxyDropNew => Mode::DropNew,
                Kind::SimCutReplies => Mode::CutReplies,
                _ => Mode::Slow,
            });
            tokio::time::sleep(f.hold).await;
            p.set(Mode::Pass);
        }
        Kind::ProxyReset => {
            let p = &w.proxies[f.target];
            let n = (f.hold.as_millis() / 700).max(1);
            for _ in 0..n {
                println!(
                    "    resetting {} open connection(s) of the {} proxy",
                    p.open.load(Ordering::Relaxed),
                    p.name
                );
                p.reset_all();
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
        }
        Kind::DiskFull => {
            let Some(dir) = &w.tmpfs else {
                counts.skipped.insert(
                    f.kind,
                    "the state directories' tmpfs could not be mounted (see the start of the log)"
                        .into(),
                );
                return Ok(false);
            };
            let ballast = dir.join("ballast");
            let path = ballast.clone();
            let written = tokio::task::spawn_blocking(move || fill(&path))
                .await
                .context("joining the ballast writer")??;
            counts.ballast_bytes = written;
            tokio::time::sleep(f.hold).await;
            std::fs::remove_file(&ballast).context("removing the ballast")?;
        }
        Kind::Reload | Kind::ReloadInvalid => {
            let a = agent()?;
            if f.kind == Kind::ReloadInvalid {
                a.write_config(f.param as usize, true)?;
                a.signal(libc::SIGHUP).await?;
                tokio::time::sleep(f.hold).await;
            }
            a.write_config(f.param as usize, false)?;
            a.signal(libc::SIGHUP).await?;
        }
        Kind::ResyncTable => {
            let a = agent()?;
            let t = a
                .pair
                .tables
                .get(f.param as usize)
                .context("no such table")?
                .name
                .clone();
            let (code, out, err) = a
                .cli(&["resync", "--table", &t], Duration::from_secs(60))
                .await?;
            if code != 0 {
                bail!("resync --table {t} exited {code}: {out}{err}");
            }
        }
        Kind::ResyncAll => {
            agent()?.signal(libc::SIGUSR1).await?;
        }
        Kind::ClockJump => {
            agent()?.set_clock(f.param)?;
        }
        Kind::SimKill => {
            let sim = w.sim.clone();
            let hold = f.hold;
            blocking(move || {
                sim.kill()?;
                std::thread::sleep(hold);
                sim.up()
            })
            .await?;
        }
    }
    Ok(true)
}

/// Write zeros until the file system is full; the bytes written.
fn fill(path: &std::path::Path) -> Result<u64> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).context("creating the ballast")?;
    let chunk = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => return Err(e).context("writing the ballast"),
        }
    }
    let _ = f.sync_all();
    Ok(n)
}

pub fn restarts_of(agents: &[Arc<Agent>]) -> u64 {
    agents
        .iter()
        .map(|a| a.starts.load(Ordering::SeqCst).saturating_sub(1))
        .sum()
}
