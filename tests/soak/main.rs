//! The seeded chaos soak of issue #31 (docs/soak.md). Not part of `cargo test`: run it with
//! `scripts/soak.sh [--minutes N] [--seed S]`, which builds the agent and this harness.
//!
//! Layout:
//! - `servers`: the soak's own PostgreSQL and MariaDB, restarted fast or immediately;
//! - `proxy`: a TCP proxy in front of each server (the agents' only way to them);
//! - `tables`: the exchanged tables, their DDL, configuration and typed rows;
//! - `workload`: the seeded concurrent writers;
//! - `agents`: the `frontdb-agent run` processes, their configurations, clocks and CLI;
//! - `faults`: the seeded fault schedule and how each fault is injected and healed;
//! - `check`: the checker (final comparison, rejects, flags, watermark samples);
//! - `receivers`: the batch-id checks of a receiver of batches (HTTP, SOAP);
//! - `files`: the file exchange's directory, read as the platform would;
//! - `sim`: the HTTP exchange (`frontdb-agent exchange-sim`), killed and restarted by a fault,
//!   its SQLite store read by the checker;
//! - `report`: the closing report.

mod agents;
mod check;
mod faults;
mod files;
mod proxy;
mod receivers;
mod report;
mod servers;
mod sim;
mod tables;
mod workload;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;

use agents::{Agent, Ports};
use check::Finding;
use servers::{MariaDb, Postgres};
use sim::Sim;
use tables::{Db, End, Engine, Exchange};

pub struct Opts {
    pub minutes: f64,
    pub seed: u64,
    pub agent_bin: PathBuf,
    pub keep: bool,
    /// The agent is a deliberately broken build: succeed only if the checker finds loss.
    pub expect_loss: bool,
    pub settle: Duration,
}

fn usage() -> ! {
    eprintln!(
        "usage: soak [--minutes N] [--seed S] [--agent PATH] [--keep] [--expect-loss]\n\
         (or SOAK_MINUTES, SOAK_SEED, SOAK_AGENT, SOAK_KEEP=1, SOAK_EXPECT_LOSS=1)"
    );
    std::process::exit(2)
}

fn opts() -> Opts {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut minutes = env("SOAK_MINUTES")
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    let mut seed = env("SOAK_SEED").and_then(|v| v.parse().ok());
    let mut agent_bin = env("SOAK_AGENT").map(PathBuf::from);
    let mut keep = env("SOAK_KEEP").is_some_and(|v| v == "1");
    let mut expect_loss = env("SOAK_EXPECT_LOSS").is_some_and(|v| v == "1");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--minutes" => {
                minutes = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--seed" => {
                seed = Some(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| usage()),
                )
            }
            "--agent" => agent_bin = args.next().map(PathBuf::from),
            "--keep" => keep = true,
            "--expect-loss" => expect_loss = true,
            _ => usage(),
        }
    }
    let seed = seed.unwrap_or_else(rand::random);
    let agent_bin = agent_bin.unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_frontdb-agent")));
    Opts {
        minutes,
        seed,
        agent_bin,
        keep,
        expect_loss,
        settle: Duration::from_secs(240),
    }
}

/// What must be undone however the soak ends.
#[derive(Default)]
struct Resources {
    dir: Option<PathBuf>,
    pg: Option<Arc<Postgres>>,
    my: Option<Arc<MariaDb>>,
    sim: Option<Arc<Sim>>,
    agents: Vec<Arc<Agent>>,
    tmpfs: Option<PathBuf>,
    /// Cancelled first at cleanup: the watcher must not restart the agents being killed.
    shutdown: CancellationToken,
}

type Shared = Arc<StdMutex<Resources>>;

fn cleanup(res: &Shared, keep: bool) {
    let Ok(mut r) = res.lock() else { return };
    r.shutdown.cancel();
    let mut pids = Vec::new();
    for a in r.agents.drain(..) {
        if let Ok(g) = a.child_handle().try_lock()
            && let Some(pid) = g.as_ref().and_then(|c| c.id())
        {
            // SAFETY: kill(2) on our own child's process id.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            pids.push(pid);
        }
    }
    // Their files on the tmpfs are closed once they are gone (a zombie holds none).
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10)
        && pids.iter().any(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
        })
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(pg) = r.pg.take() {
        pg.stop();
    }
    if let Some(my) = r.my.take() {
        my.stop();
    }
    if let Some(sim) = r.sim.take() {
        sim.stop();
    }
    if let Some(m) = r.tmpfs.take() {
        if keep {
            // The state stores live on the tmpfs: keep a copy for the post-mortem.
            let _ = std::process::Command::new("cp")
                .arg("-a")
                .arg(&m)
                .arg(m.with_extension("kept"))
                .status();
        }
        let _ = std::process::Command::new("umount").arg(&m).status();
    }
    if let Some(d) = r.dir.take() {
        if keep {
            println!("kept {}", d.display());
        } else {
            let _ = std::fs::remove_dir_all(&d);
        }
    }
}

fn main() {
    let o = opts();
    println!("soak seed {} ({} min)", o.seed, o.minutes);
    println!(
        "replay: scripts/soak.sh --minutes {} --seed {}   (replays the same fault schedule and workload; thread interleavings differ)",
        o.minutes, o.seed
    );
    if let Err(e) = receivers::self_test() {
        eprintln!("soak: the receivers' checks are broken: {e}");
        std::process::exit(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("soak: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let res: Shared = Arc::default();
    let o = Arc::new(o);
    let code = rt.block_on(async {
        let task = tokio::spawn(soak(o.clone(), res.clone()));
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("soak: {e}");
                    return 2;
                }
            };
        let abort = task.abort_handle();
        tokio::select! {
            r = task => match r {
                Ok(Ok(pass)) => if pass { 0 } else { 1 },
                Ok(Err(e)) => { eprintln!("soak: could not run: {e:#}"); 2 }
                Err(e) => { eprintln!("soak: the harness panicked: {e}"); 2 }
            },
            _ = tokio::signal::ctrl_c() => { abort.abort(); eprintln!("soak: interrupted"); 130 }
            _ = term.recv() => { abort.abort(); eprintln!("soak: terminated"); 143 }
        }
    });
    cleanup(&res, o.keep || code == 1);
    rt.shutdown_timeout(Duration::from_secs(2));
    std::process::exit(code);
}

/// Mount a small tmpfs for the state directories; None (with the reason printed) if not
/// permitted.
fn mount_tmpfs(at: &std::path::Path) -> Option<PathBuf> {
    if let Err(e) = std::fs::create_dir_all(at) {
        println!(
            "out-of-space fault disabled: cannot create {}: {e}",
            at.display()
        );
        return None;
    }
    match std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48m,mode=0755", "soak-state"])
        .arg(at)
        .output()
    {
        Ok(o) if o.status.success() => Some(at.to_owned()),
        Ok(o) => {
            println!(
                "out-of-space fault disabled: mount -t tmpfs refused: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            None
        }
        Err(e) => {
            println!("out-of-space fault disabled: cannot run mount: {e}");
            None
        }
    }
}

async fn soak(o: Arc<Opts>, res: Shared) -> Result<bool> {
    let total = Duration::from_secs_f64(o.minutes * 60.0);
    if !o.agent_bin.exists() {
        bail!("no agent binary at {}", o.agent_bin.display());
    }
    if !std::path::Path::new(agents::FAKETIME_LIB).exists() {
        bail!(
            "{} not found: install libfaketime (apt-get install faketime)",
            agents::FAKETIME_LIB
        );
    }
    let dir = match std::env::var_os("SOAK_DIR") {
        Some(base) => PathBuf::from(base).join(format!("run-{}", o.seed)),
        None => {
            std::env::temp_dir().join(format!("frontdb-soak-{}-{}", o.seed, std::process::id()))
        }
    };
    std::fs::create_dir_all(&dir)?;
    // The postgres user must reach its data directory.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    lock(&res)?.dir = Some(dir.clone());
    println!("soak directory {}", dir.display());

    let state_root = dir.join("state");
    let tmpfs = mount_tmpfs(&state_root);
    lock(&res)?.tmpfs = tmpfs.clone();

    let pg = Arc::new(Postgres::start(&dir.join("pg")).context("the soak's PostgreSQL")?);
    lock(&res)?.pg = Some(pg.clone());
    let my = Arc::new(MariaDb::start(&dir.join("my")).context("the soak's MariaDB")?);
    lock(&res)?.my = Some(my.clone());
    println!("PostgreSQL on {}, MariaDB on {}", pg.port, my.port);

    let pairs = tables::pairs();
    tables::create(&pairs, pg.port, my.port).await?;
    let http_tables: Vec<tables::Table> = pairs
        .iter()
        .filter(|p| p.ex.is_sim())
        .flat_map(|p| p.tables.clone())
        .collect();
    let sim = {
        let (d, bin) = (dir.join("sim"), o.agent_bin.clone());
        Arc::new(
            tokio::task::spawn_blocking(move || Sim::start(&d, &bin, &http_tables))
                .await?
                .context("the soak's exchange-sim")?,
        )
    };
    lock(&res)?.sim = Some(sim.clone());
    println!(
        "exchange-sim on {} (store {})",
        sim.port,
        sim.store.display()
    );
    let proxies = [
        proxy::Proxy::start("postgres", pg.port).await?,
        proxy::Proxy::start("mariadb", my.port).await?,
        proxy::Proxy::start("exchange-sim", sim.port).await?,
    ];
    let ports = Ports {
        pg: proxies[0].port,
        my: proxies[1].port,
        sim: proxies[2].port,
    };
    let mut list = Vec::new();
    for p in &pairs {
        let a = Arc::new(Agent::new(
            p.clone(),
            &o.agent_bin,
            &dir.join("agents"),
            &state_root,
            ports,
        )?);
        lock(&res)?.agents.push(a.clone());
        list.push(a);
    }
    let agents = Arc::new(list);
    let port_of = |e| if e == Engine::Pg { pg.port } else { my.port };
    let mut dbs = Vec::new();
    for p in &pairs {
        dbs.push((
            Db::connect(p.src, port_of(p.src), &p.src_db()).await?,
            match p.ex {
                Exchange::Db(e) => End::Db(Db::connect(e, port_of(e), &p.ex_db()).await?),
                Exchange::Http | Exchange::Soap => End::Sim(sim.clone()),
                Exchange::File => End::Files(Arc::new(files::Out::new(&files::dir_of(
                    &state_root,
                    p.agent,
                ))?)),
            },
        ));
    }

    let plan = faults::schedule(
        o.seed,
        total,
        &pairs
            .iter()
            .map(|p| (p.tables.len(), p.ex.is_sim()))
            .collect::<Vec<_>>(),
    );
    println!("fault schedule ({} faults):", plan.len());
    for f in &plan {
        println!("  {}", f.describe(&agents));
    }

    for a in agents.iter() {
        a.start().await?;
    }
    println!(
        "agents running: {}",
        agents
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let t0 = Instant::now();
    let stop_work = CancellationToken::new();
    let stop_watch = CancellationToken::new();
    let stats: workload::Stats = Arc::default();
    let expected = Arc::new(tokio::sync::Mutex::new(()));
    let crash_restarts = Arc::new(AtomicU64::new(0));
    let watcher = tokio::spawn(agents::watch(
        agents.clone(),
        expected.clone(),
        crash_restarts.clone(),
        stop_watch.clone(),
    ));
    let mut writers = Vec::new();
    const WRITERS: usize = 3;
    for (p, (src, _)) in pairs.iter().zip(&dbs) {
        for w in 0..WRITERS {
            writers.push(tokio::spawn(workload::writer(
                p.clone(),
                src.clone(),
                w,
                WRITERS,
                o.seed,
                stop_work.clone(),
                stats.clone(),
            )));
        }
        for t in p.tables.iter().filter(|t| t.mode == tables::Mode::Key) {
            writers.push(tokio::spawn(workload::key_writer(
                t.clone(),
                src.clone(),
                o.seed,
                stop_work.clone(),
                stats.clone(),
            )));
        }
    }
    let samples = Arc::new(StdMutex::new(report::Samples::default()));
    let sampler = {
        let (agents, dbs, samples, stop) = (
            agents.clone(),
            dbs.clone(),
            samples.clone(),
            stop_watch.clone(),
        );
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                for (a, (src, ex)) in agents.iter().zip(&dbs) {
                    let r = check::sample(a, src, ex).await;
                    if let Ok(mut s) = samples.lock() {
                        match r {
                            Ok((n, f)) => {
                                s.taken += 1;
                                s.rows_checked += n;
                                s.findings.extend(f);
                            }
                            Err(_) => s.failed += 1,
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        })
    };

    let world = faults::World {
        agents: agents.clone(),
        pg: pg.clone(),
        my: my.clone(),
        sim: sim.clone(),
        proxies: proxies.clone(),
        tmpfs: tmpfs.clone(),
        expected: expected.clone(),
    };
    let counts = faults::run(&world, &plan, t0, total + Duration::from_secs(120)).await;
    if t0.elapsed() < total {
        tokio::time::sleep(total - t0.elapsed()).await;
    }
    println!("{} workload stops", at(t0));
    stop_work.cancel();
    for w in writers {
        let _ = w.await;
    }
    // Heal what stays: every clock back to the real time.
    for a in agents.iter() {
        a.set_clock(0)?;
    }
    for p in &proxies {
        p.set(proxy::Mode::Pass);
    }
    let stopped_at = t0.elapsed();

    // Let the daemons catch up: wait until the checker finds nothing and every table is
    // healthy, or the settle time is out (then report what is still wrong).
    println!("{} waiting for the daemons to catch up", at(t0));
    let settle_start = Instant::now();
    let mut findings;
    let mut said = Instant::now();
    loop {
        findings = compare_all(&agents, &dbs, &sim).await?;
        findings.extend(status_findings(&agents).await);
        if findings.is_empty() || settle_start.elapsed() > o.settle {
            break;
        }
        // A slow catch-up says what it is waiting for (the report says it only at the end).
        if said.elapsed() > Duration::from_secs(15) {
            said = Instant::now();
            let mut waiting: std::collections::BTreeMap<(&str, &str), usize> =
                std::collections::BTreeMap::new();
            for f in &findings {
                *waiting.entry((f.what, f.table.as_str())).or_default() += 1;
            }
            let first = findings
                .iter()
                .find(|f| f.what == "status shows a failing table")
                .map(|f| format!("; {}: {}", f.table, f.detail))
                .unwrap_or_default();
            println!(
                "{} still waiting for: {}{}",
                at(t0),
                waiting
                    .iter()
                    .map(|((w, t), n)| format!("{t} {w} ({n})"))
                    .collect::<Vec<_>>()
                    .join(", "),
                first.chars().take(300).collect::<String>()
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let settled = settle_start.elapsed();
    println!(
        "{} {} after {:.1}s",
        at(t0),
        if findings.is_empty() {
            "caught up"
        } else {
            "did NOT catch up"
        },
        settled.as_secs_f64()
    );
    if !findings.is_empty() {
        // Diagnose a daemon that did not catch up: is its state store write-locked?
        for a in agents.iter() {
            match check::write_lock_free(&a.state_dir).await {
                Ok(true) => {}
                Ok(false) => findings.push(Finding {
                    what: "state store write-locked (BEGIN IMMEDIATE timed out after 2s)",
                    table: a.name().into(),
                    detail: a.tail(15),
                }),
                Err(e) => findings.push(Finding {
                    what: "state store probe failed",
                    table: a.name().into(),
                    detail: format!("{e:#}"),
                }),
            }
        }
    }
    stop_watch.cancel();
    let _ = sampler.await;
    let _ = watcher.await;

    // The daemons are alive (the watcher restarted any that died: those are in crashes).
    let mut crashes = Vec::new();
    for a in agents.iter() {
        crashes.extend(a.crashes.lock().await.iter().cloned());
        if a.exited().await.is_some() || a.pid().await.is_none() {
            findings.push(Finding {
                what: "daemon not running at the end",
                table: a.name().into(),
                detail: a.tail(20),
            });
        }
    }
    for c in &crashes {
        findings.push(Finding {
            what: "an agent exited by itself",
            table: String::new(),
            detail: c.clone(),
        });
    }
    if let Some(st) = sim.exited() {
        findings.push(Finding {
            what: "exchange-sim exited by itself",
            table: String::new(),
            detail: format!("{st}: {}", sim.tail(20)),
        });
    }
    for e in &counts.errors {
        findings.push(Finding {
            what: "a fault step failed",
            table: String::new(),
            detail: e.clone(),
        });
    }
    if let Ok(s) = samples.lock() {
        findings.extend(s.findings.iter().cloned());
    }
    let end_status = {
        let mut v = Vec::new();
        for a in agents.iter() {
            v.push(a.status().await.unwrap_or_default());
        }
        v
    };

    // Then stop each daemon gracefully and let `once` confirm there is nothing left to send.
    let mut once_out = Vec::new();
    for a in agents.iter() {
        match a.stop_with(libc::SIGTERM, Duration::from_secs(40)).await {
            Ok(st) if st.code() == Some(0) => {}
            Ok(st) => findings.push(Finding {
                what: "SIGTERM did not exit 0",
                table: a.name().into(),
                detail: format!("{st}: {}", a.tail(20)),
            }),
            Err(e) => findings.push(Finding {
                what: "SIGTERM did not stop the daemon",
                table: a.name().into(),
                detail: format!("{e:#}"),
            }),
        }
        let (code, out, err) = a.cli(&["once"], Duration::from_secs(300)).await?;
        if code != 0 {
            findings.push(Finding {
                what: "`once` after the run failed",
                table: a.name().into(),
                detail: format!("exit {code}: {out}{err}"),
            });
        }
        once_out.push((a.name(), out.trim().to_owned()));
    }
    let after_once = compare_all(&agents, &dbs, &sim).await?;
    let mut sim_summary = check::sim_summary(&sim).await;
    for (_, ex) in &dbs {
        if let End::Files(out) = ex {
            sim_summary.push_str(&format!("\n  {}", out.summary()));
        }
    }
    for f in after_once {
        findings.push(Finding {
            what: "after `once`",
            table: f.table.clone(),
            detail: format!("{}: {}", f.what, f.detail),
        });
    }

    let rep = report::Report {
        opts: &o,
        elapsed: t0.elapsed(),
        stopped_at,
        settled,
        plan: &plan,
        counts: &counts,
        stats: stats.lock().map(|s| s.clone()).unwrap_or_default(),
        end_status: &end_status,
        agents: &agents,
        restarts: faults::restarts_of(&agents),
        crash_restarts: crash_restarts.load(Ordering::SeqCst),
        samples: samples.lock().map(|s| s.clone()).unwrap_or_default(),
        once_out: &once_out,
        findings: &findings,
        proxies: &proxies,
        sim_summary: &sim_summary,
    };
    let text = rep.render();
    println!("{text}");
    let _ = std::fs::write(
        std::env::temp_dir().join(format!("frontdb-soak-{}.report.txt", o.seed)),
        &text,
    );
    for (src, ex) in &dbs {
        src.close().await;
        ex.close().await;
    }
    sim.stop();
    if o.expect_loss {
        let caught = findings.iter().any(Finding::is_loss);
        println!(
            "{}",
            if caught {
                "EXPECTED FAILURE: the checker caught the broken build (rows lost or a watermark ahead of the exchange)"
            } else {
                "NOT CAUGHT: the broken build passed the checker"
            }
        );
        return Ok(caught);
    }
    Ok(findings.is_empty())
}

/// `[elapsed wall-clock]` for the soak's own lines (the agents' logs are in UTC).
fn at(t0: Instant) -> String {
    format!(
        "[{:>6.1}s {}]",
        t0.elapsed().as_secs_f64(),
        chrono::Utc::now().format("%H:%M:%S%.3f")
    )
}

fn lock(res: &Shared) -> Result<std::sync::MutexGuard<'_, Resources>> {
    res.lock()
        .map_err(|_| anyhow::anyhow!("the resources' lock is poisoned"))
}

/// The whole comparison: every table's two ends, rejects, flags; the batch ids the
/// exchange-sim applied.
async fn compare_all(agents: &[Arc<Agent>], dbs: &[(Db, End)], sim: &Sim) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    for (a, (src, ex)) in agents.iter().zip(dbs) {
        let open = match check::open_rejects(a).await {
            Ok(open) => open,
            Err(e) => {
                out.push(Finding {
                    what: "`rejects list` failed",
                    table: a.name().into(),
                    detail: format!("{e:#}"),
                });
                continue;
            }
        };
        for t in &a.pair.tables {
            let s = src
                .read(t, false)
                .await
                .with_context(|| format!("reading source {}", t.name))?;
            let e = ex
                .read(t)
                .await
                .with_context(|| format!("reading exchange {}", t.name))?;
            out.extend(check::compare_table(t, &s, &e));
            out.extend(check::compare_rejects(t, &s, &open));
        }
    }
    out.extend(
        check::sim_batches(sim)
            .await
            .context("reading the exchange-sim's batches and requests")?,
    );
    for (_, ex) in dbs {
        if let End::Files(files) = ex {
            out.extend(files.findings().context("reading the file exchange")?);
        }
    }
    Ok(out)
}

/// Tables failing, or a resync not finished, per `status --json`.
async fn status_findings(agents: &[Arc<Agent>]) -> Vec<Finding> {
    let mut out = Vec::new();
    for a in agents {
        match a.status().await {
            Ok(s) => {
                for t in s["tables"].as_array().into_iter().flatten() {
                    let name = t["table"].as_str().unwrap_or_default();
                    if t["failures"].as_i64().unwrap_or(0) > 0 {
                        out.push(Finding {
                            what: "status shows a failing table",
                            table: name.into(),
                            detail: format!("{}", t["last_error"]),
                        });
                    }
                    let rs = t["resync"]["state"].as_str().unwrap_or("");
                    if rs == "running" || rs == "requested" {
                        out.push(Finding {
                            what: "a resync has not finished",
                            table: name.into(),
                            detail: t["resync"].to_string(),
                        });
                    }
                }
            }
            Err(e) => out.push(Finding {
                what: "status failed",
                table: a.name().into(),
                detail: format!("{e:#}"),
            }),
        }
    }
    out
}
