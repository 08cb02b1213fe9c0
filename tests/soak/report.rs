//! The closing report: seed, duration, faults per kind, rows written and exchanged per table,
//! rejects, agent restarts, watermark samples, and PASS/FAIL with every kind of finding (the
//! first few rows of each shown).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::Opts;
use crate::agents::Agent;
use crate::check::Finding;
use crate::faults::{ALL, Counts, Fault};
use crate::proxy::Proxy;
use crate::workload::TableStats;

#[derive(Clone, Default, Debug)]
pub struct Samples {
    pub taken: u64,
    pub failed: u64,
    pub rows_checked: u64,
    pub findings: Vec<Finding>,
}

pub struct Report<'a> {
    pub opts: &'a Opts,
    pub elapsed: Duration,
    pub stopped_at: Duration,
    pub settled: Duration,
    pub plan: &'a [Fault],
    pub counts: &'a Counts,
    pub stats: BTreeMap<String, TableStats>,
    pub end_status: &'a [serde_json::Value],
    pub agents: &'a [Arc<Agent>],
    pub restarts: u64,
    pub crash_restarts: u64,
    pub samples: Samples,
    pub once_out: &'a [(&'static str, String)],
    pub findings: &'a [Finding],
    pub proxies: &'a [Proxy],
    /// What the exchange-sim saw (requests by outcome, batches, records).
    pub sim_summary: &'a str,
}

impl Report<'_> {
    pub fn render(&self) -> String {
        let mut s = String::new();
        let pass = self.findings.is_empty();
        let _ = writeln!(
            s,
            "\n================ frontdb-agent soak report ================"
        );
        let _ = writeln!(
            s,
            "seed {}   planned {} min   workload ran {:.1}s   caught up in {:.1}s   total {:.1}s",
            self.opts.seed,
            self.opts.minutes,
            self.stopped_at.as_secs_f64(),
            self.settled.as_secs_f64(),
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(s, "agent binary {}", self.opts.agent_bin.display());
        let _ = writeln!(
            s,
            "replay: scripts/soak.sh --minutes {} --seed {}",
            self.opts.minutes, self.opts.seed
        );

        let _ = writeln!(
            s,
            "\nfaults injected ({} of {} planned):",
            self.counts.injected.values().sum::<u64>(),
            self.plan.len()
        );
        for k in ALL {
            let n = self.counts.injected.get(&k).copied().unwrap_or(0);
            match self.counts.skipped.get(&k) {
                Some(why) => {
                    let _ = writeln!(s, "  {:<52} {n:>4}   SKIPPED: {why}", k.label());
                }
                None => {
                    let _ = writeln!(s, "  {:<52} {n:>4}", k.label());
                }
            }
        }
        if self.counts.ballast_bytes > 0 {
            let _ = writeln!(
                s,
                "  (ballast at the last out-of-space fault: {} MiB)",
                self.counts.ballast_bytes >> 20
            );
        }
        for p in self.proxies {
            let _ = writeln!(
                s,
                "  {} proxy: {} connections proxied, {} reset or refused ({} as the answer came)",
                p.name,
                p.connections.load(Ordering::Relaxed),
                p.resets.load(Ordering::Relaxed),
                p.cuts.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(s, "  {}", self.sim_summary);
        let _ = writeln!(
            s,
            "agent restarts: {} ({} by faults, {} after an exit nobody asked for)",
            self.restarts,
            self.restarts.saturating_sub(self.crash_restarts),
            self.crash_restarts
        );

        let _ = writeln!(
            s,
            "\nper table: written at the source | exchanged (status totals) | open rejects"
        );
        let _ = writeln!(
            s,
            "  {:<9} {:<18} {:>7} {:>7} {:>6} {:>5} {:>5} {:>5} {:>6} | {:>8} {:>7} | {:>7}",
            "table",
            "mode",
            "insert",
            "update",
            "delete",
            "bad",
            "fixed",
            "late",
            "failed",
            "rows",
            "deletes",
            "rejects"
        );
        let mut totals = [0u64; 4];
        for (a, st) in self.agents.iter().zip(self.end_status) {
            for t in &a.pair.tables {
                let w = self.stats.get(&t.name).cloned().unwrap_or_default();
                let row = st["tables"]
                    .as_array()
                    .and_then(|ts| ts.iter().find(|x| x["table"] == t.name.as_str()));
                let get = |k: &str| row.and_then(|r| r[k].as_i64()).unwrap_or(0);
                totals[0] += w.inserts + w.updates + w.deletes;
                totals[1] += get("rows_total") as u64;
                totals[2] += get("deletes_total") as u64;
                totals[3] += get("open_rejects") as u64;
                let _ = writeln!(
                    s,
                    "  {:<9} {:<18} {:>7} {:>7} {:>6} {:>5} {:>5} {:>5} {:>6} | {:>8} {:>7} | {:>7}",
                    t.name,
                    t.mode.label(),
                    w.inserts,
                    w.updates,
                    w.deletes,
                    w.bad_written,
                    w.corrected,
                    w.late_commits,
                    w.failed_tx,
                    get("rows_total"),
                    get("deletes_total"),
                    get("open_rejects")
                );
            }
        }
        let _ = writeln!(
            s,
            "  total: {} row changes written, {} rows and {} deletes exchanged, {} open rejects",
            totals[0], totals[1], totals[2], totals[3]
        );

        let _ = writeln!(
            s,
            "\nwatermark samples: {} taken ({} could not be taken during faults), {} rows at or before a watermark checked at the exchange",
            self.samples.taken, self.samples.failed, self.samples.rows_checked
        );
        for (a, out) in self.once_out {
            let _ = writeln!(
                s,
                "`once` after the daemon of {a} stopped: {}",
                out.replace('\n', "; ")
            );
        }

        let _ = writeln!(s);
        if pass {
            let _ = writeln!(
                s,
                "RESULT: PASS (every table equal at both ends, every refused row open in the rejects ledger and absent at the exchange, no watermark ahead of the exchange, no batch id applied twice or reused at the exchange-sim, every daemon alive with a clean status)"
            );
        } else {
            let mut by: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
            for f in self.findings {
                by.entry(f.what).or_default().push(f);
            }
            let _ = writeln!(s, "RESULT: FAIL ({} findings)", self.findings.len());
            for (what, fs) in by {
                let _ = writeln!(s, "  {what}: {}", fs.len());
                for f in fs.iter().take(5) {
                    let _ = writeln!(
                        s,
                        "    [{}] {}",
                        f.table,
                        f.detail.replace('\n', "\n      ")
                    );
                }
            }
        }
        s
    }
}
