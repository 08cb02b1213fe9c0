//! The checker. The source is the truth: at the end every exchange table must hold exactly
//! the source's good rows (typed, value for value, none older), none of its bad ones, none it
//! deleted; every bad row must stand open in the rejects ledger; every flag row must carry the
//! flag of its fate. During the run, the sampler checks that no committed watermark is ahead
//! of what the exchange holds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use chrono::NaiveDateTime;
use sqlx::Row;

use crate::agents::Agent;
use crate::receivers;
use crate::sim::{self, Sim};
use crate::tables::{Db, End, Extra, Mode, Rec, Table};

#[derive(Clone, Debug)]
pub struct Finding {
    pub what: &'static str,
    pub table: String,
    pub detail: String,
}

impl Finding {
    pub fn new(what: &'static str, table: &str, detail: String) -> Finding {
        Finding {
            what,
            table: table.to_owned(),
            detail,
        }
    }

    /// Findings that mean rows were lost or the watermark ran ahead (what a broken build
    /// must produce).
    pub fn is_loss(&self) -> bool {
        matches!(
            self.what,
            "missing at the exchange" | "older at the exchange" | "watermark ahead of the exchange"
        )
    }
}

fn show(r: &Rec) -> String {
    format!(
        "id={} name={:?} code={:?} amount={} happened={:?} note={:?} time={:?} op={:?}",
        r.id, r.name, r.code, r.amount, r.happened, r.note, r.time, r.op
    )
}

/// Compare one table's two ends.
pub fn compare_table(t: &Table, src: &[(Rec, Extra)], ex: &[(Rec, Extra)]) -> Vec<Finding> {
    let mut out = Vec::new();
    let tombstone = matches!(t.mode, Mode::Control { tombstone: true });
    let src_by: BTreeMap<i64, &Rec> = src.iter().map(|(r, _)| (r.id, r)).collect();
    let ex_by: BTreeMap<i64, (&Rec, &Extra)> = ex.iter().map(|(r, e)| (r.id, (r, e))).collect();
    for (r, _) in src {
        if t.is_bad(r) || (r.is_delete() && !tombstone) {
            continue;
        }
        match ex_by.get(&r.id) {
            None => out.push(Finding::new("missing at the exchange", &t.name, show(r))),
            Some((e, _)) if e.time < r.time => out.push(Finding::new(
                "older at the exchange",
                &t.name,
                format!("source {} / exchange {}", show(r), show(e)),
            )),
            Some((e, _)) if *e != r => out.push(Finding::new(
                "differs at the exchange",
                &t.name,
                format!("source {} / exchange {}", show(r), show(e)),
            )),
            Some(_) => {}
        }
    }
    for (id, (e, extra)) in &ex_by {
        match src_by.get(id) {
            Some(r) if t.is_bad(r) => out.push(Finding::new(
                "a refused row at the exchange",
                &t.name,
                format!("source {} / exchange {}", show(r), show(e)),
            )),
            Some(r) if r.is_delete() && !tombstone => out.push(Finding::new(
                "a deleted row still at the exchange",
                &t.name,
                show(e),
            )),
            None => out.push(Finding::new(
                if t.mode == Mode::Digest {
                    "a deleted row still at the exchange"
                } else {
                    "a row at the exchange the source never had"
                },
                &t.name,
                show(e),
            )),
            Some(_) => {}
        }
        if !extra.typing.is_empty() {
            out.push(Finding::new(
                "typed wrongly at the exchange",
                &t.name,
                format!("id={id}: {}", extra.typing.join("; ")),
            ));
        }
        // An interface gets the batch number in the envelope, a file in its manifest, not
        // in the record; a table sent down keeps the province's.
        if matches!(t.mode, Mode::Control { .. })
            && !t.http
            && !t.file
            && !t.down
            && (extra.cd_source.as_deref() != Some("230000SOAK")
                || extra.cd_batch.as_ref().is_none_or(|b| b.len() != 13))
        {
            out.push(Finding::new(
                "control columns not filled",
                &t.name,
                format!(
                    "id={id} cd_source={:?} cd_batch={:?}",
                    extra.cd_source, extra.cd_batch
                ),
            ));
        }
    }
    if t.mode == Mode::Flag {
        for (r, x) in src {
            let want = if t.is_bad(r) { 9 } else { 1 };
            if x.flag != Some(want)
                || (want == 9 && x.flag_error.as_deref().is_none_or(str::is_empty))
            {
                out.push(Finding::new(
                    "extraction flag not set",
                    &t.name,
                    format!(
                        "id={} sync_sign={:?} (want {want}) error={:?}",
                        r.id, x.flag, x.flag_error
                    ),
                ));
            }
        }
    }
    out
}

/// An open entry of the rejects ledger: where it came from and why.
#[derive(Clone, Debug, Default)]
pub struct Open {
    pub origin: String,
    pub reasons: String,
}

/// The open entries of an agent's rejects ledger, by (table, key).
pub async fn open_rejects(a: &Agent) -> Result<BTreeMap<(String, String), Open>> {
    let (code, out, err) = a
        .cli(
            &["rejects", "list", "--state", "open", "--json"],
            std::time::Duration::from_secs(60),
        )
        .await?;
    anyhow::ensure!(code == 0, "rejects list exited {code}: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).context("rejects list --json")?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        (
                            r["table"].as_str().unwrap_or_default().to_owned(),
                            r["key"].as_str().unwrap_or_default().to_owned(),
                        ),
                        Open {
                            origin: r["origin"].as_str().unwrap_or_default().to_owned(),
                            reasons: r["reasons"].to_string(),
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Bad rows at the source against the open rejects of the ledger. At the HTTP exchange the
/// entry must also say who refused the row: the agent's rule (`rule`) for a bad code, else
/// the sim's verdict (`province`, naming the column it requires).
pub fn compare_rejects(
    t: &Table,
    src: &[(Rec, Extra)],
    open: &BTreeMap<(String, String), Open>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (r, _) in src.iter().filter(|(r, _)| t.is_bad(r)) {
        let k = r.id.to_string();
        match open.get(&(t.name.clone(), k.clone())) {
            None => out.push(Finding::new(
                "a refused row not open in the rejects ledger",
                &t.name,
                format!("id={k}"),
            )),
            Some(o) if t.http => {
                let by_rule = !crate::tables::code_is_good(&r.code);
                let ok = if by_rule {
                    o.origin == "rule"
                } else {
                    o.origin == "province" && o.reasons.contains("happened")
                };
                if !ok {
                    out.push(Finding::new(
                        "a reject in the ledger from the wrong origin",
                        &t.name,
                        format!(
                            "id={k}: origin {} reasons {} (want {})",
                            o.origin,
                            o.reasons,
                            if by_rule {
                                "rule"
                            } else {
                                "province, happened is required"
                            }
                        ),
                    ));
                }
            }
            Some(_) => {}
        }
    }
    // A reject may stay open for a row deleted at the source before its corrected version
    // was read (nothing left to send): only a row still there, good, must have none.
    let good: BTreeSet<String> = src
        .iter()
        .filter(|(r, _)| !t.is_bad(r) && !r.is_delete())
        .map(|(r, _)| r.id.to_string())
        .collect();
    for (tbl, k) in open.keys() {
        if tbl == &t.name && good.contains(k) {
            out.push(Finding::new(
                "an open reject for a row that is good at the source",
                &t.name,
                format!("id={k}"),
            ));
        }
    }
    out
}

/// A watermark as the state store keeps it (JSON): change time and key.
#[derive(Debug, Clone)]
pub struct Position {
    pub ts: Option<NaiveDateTime>,
    pub key: Option<i64>,
}

pub fn parse_watermark(json: &str) -> Option<Position> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let ts = v["ts"]["v"]
        .as_str()
        .and_then(|s| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok());
    let key = v["key"][0]["v"].as_i64();
    Some(Position { ts, key })
}

/// Every table's committed watermark, read from the state store without writing to it.
pub async fn watermarks(state_dir: &Path) -> Result<BTreeMap<String, Position>> {
    let path = state_dir.join("state.db");
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .read_only(true)
        .busy_timeout(std::time::Duration::from_secs(5));
    let mut c = sqlx::ConnectOptions::connect(&opts).await?;
    let rows = sqlx::query("SELECT tbl, watermark FROM tables WHERE watermark IS NOT NULL")
        .fetch_all(&mut c)
        .await?;
    let _ = sqlx::Connection::close(c).await;
    let mut out = BTreeMap::new();
    for r in rows {
        let tbl: String = r.try_get(0)?;
        let wm: String = r.try_get(1)?;
        if let Some(p) = parse_watermark(&wm) {
            out.insert(tbl, p);
        }
    }
    Ok(out)
}

fn at_or_before(t: &Table, r: &Rec, w: &Position) -> bool {
    match t.mode {
        Mode::Key => w.key.is_some_and(|k| r.id <= k),
        _ => match (r.time, w.ts) {
            (Some(rt), Some(wt)) => (rt, r.id) <= (wt, w.key.unwrap_or(i64::MAX)),
            _ => false,
        },
    }
}

/// One sample of "the watermark is never ahead of what was delivered": the source read, then
/// the watermark, then the exchange, then the source again. A good row of the first read at
/// or before the watermark, unchanged in the second, must be at the exchange (or deleted
/// there) in its version or a newer one.
pub async fn sample(agent: &Agent, src: &Db, ex: &End) -> Result<(u64, Vec<Finding>)> {
    let tables: Vec<&Table> = agent
        .pair
        .tables
        .iter()
        .filter(|t| t.mode.has_watermark())
        .collect();
    let mut before = BTreeMap::new();
    for t in &tables {
        before.insert(t.name.clone(), src.read(t, false).await?);
    }
    let wms = watermarks(&agent.state_dir).await?;
    let mut exchange = BTreeMap::new();
    for t in &tables {
        exchange.insert(t.name.clone(), ex.read(t).await?);
    }
    let mut out = Vec::new();
    let mut checked = 0u64;
    for t in &tables {
        let Some(w) = wms.get(&t.name) else { continue };
        let after: BTreeMap<i64, Rec> = src
            .read(t, false)
            .await?
            .into_iter()
            .map(|(r, _)| (r.id, r))
            .collect();
        let ex_by: BTreeMap<i64, &Rec> = exchange[&t.name].iter().map(|(r, _)| (r.id, r)).collect();
        let tombstone = matches!(t.mode, Mode::Control { tombstone: true });
        for (r, _) in &before[&t.name] {
            if t.is_bad(r) || !at_or_before(t, r, w) || after.get(&r.id) != Some(r) {
                continue;
            }
            checked += 1;
            let behind = match ex_by.get(&r.id) {
                None => !r.is_delete() || tombstone,
                Some(e) => e.time < r.time,
            };
            if behind {
                out.push(Finding::new(
                    "watermark ahead of the exchange",
                    &t.name,
                    format!(
                        "watermark ({:?}, {:?}) but the exchange has {} for source {}",
                        w.ts,
                        w.key,
                        ex_by.get(&r.id).map_or("nothing".to_string(), |e| show(e)),
                        show(r)
                    ),
                ));
            }
        }
    }
    Ok((checked, out))
}

/// Whether a write transaction can be begun on an agent's state store within 2 s (it is
/// rolled back at once). Only for diagnosing a daemon that did not catch up.
pub async fn write_lock_free(state_dir: &Path) -> Result<bool> {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(state_dir.join("state.db"))
        .busy_timeout(std::time::Duration::from_secs(2));
    let mut c = sqlx::ConnectOptions::connect(&opts).await?;
    let free = sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut c)
        .await
        .is_ok();
    if free {
        sqlx::raw_sql("ROLLBACK").execute(&mut c).await?;
    }
    let _ = sqlx::Connection::close(c).await;
    Ok(free)
}

/// The batches the exchange-sim took: no batch id applied twice (the sim's `requests` log:
/// one `applied` per idempotency key, a key sent again answered `replayed`), no batch id
/// carrying other records than the first time it came, and the `batches` table agreeing with
/// the log (every batch logged applied is in it, with as many records applied as the
/// request carried minus those its answer rejected).
pub async fn sim_batches(sim: &Sim) -> Result<Vec<Finding>> {
    let reqs = sim.requests().await?;
    let batches = sim.batches().await?;
    let receipts = sim::receipts(&reqs);
    let mut out = Vec::new();
    for (id, n) in receivers::applied_twice(&receipts) {
        out.push(Finding::new(
            "a batch id applied twice at the exchange-sim",
            "",
            format!("{id}: applied {n} times"),
        ));
    }
    for id in receivers::id_reused(&receipts) {
        out.push(Finding::new(
            "a batch id sent again with other records",
            "",
            id,
        ));
    }
    let table_of: BTreeMap<(&str, &str), (i64, i64)> = batches
        .iter()
        .map(|(id, tbl, n, rejected)| ((tbl.as_str(), id.as_str()), (*n, *rejected)))
        .collect();
    for r in reqs.iter().filter(|r| r.outcome.starts_with("applied")) {
        let (Some(id), Some(tbl)) = (r.batch.as_deref(), r.table.as_deref()) else {
            continue;
        };
        let sent = r
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0) as i64;
        match table_of.get(&(tbl, id)) {
            None => out.push(Finding::new(
                "a batch logged applied is not in the sim's batches",
                tbl,
                id.to_owned(),
            )),
            Some(&(n, refused)) if n != sent - refused => out.push(Finding::new(
                "a batch applied a wrong number of records",
                tbl,
                format!("{id}: {n} applied of {sent} sent, {refused} rejected"),
            )),
            Some(_) => {}
        }
    }
    Ok(out)
}

/// What the exchange-sim saw, for the report.
pub async fn sim_summary(sim: &Sim) -> String {
    let (reqs, batches) = match (sim.requests().await, sim.batches().await) {
        (Ok(r), Ok(b)) => (r, b),
        (Err(e), _) | (_, Err(e)) => return format!("exchange-sim: cannot read its store: {e:#}"),
    };
    let mut outcomes: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &reqs {
        *outcomes.entry(r.outcome.as_str()).or_default() += 1;
    }
    let parts = batches
        .iter()
        .filter(|(id, _, _, _)| id.contains(".p"))
        .count();
    let records: i64 = batches.iter().map(|(_, _, n, _)| n).sum();
    format!(
        "exchange-sim: {} requests ({}), {} batch ids applied ({} of them parts of a split batch), {} records applied, started {} time(s)",
        reqs.len(),
        outcomes
            .iter()
            .map(|(o, n)| format!("{o} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        batches.len(),
        parts,
        records,
        sim.starts.load(std::sync::atomic::Ordering::SeqCst)
    )
}
