//! The province's rejections: read through the exchange's [`Receipts`] (a rejection table,
//! the `dn_*_error` tables, or status flags in the exchange rows), linked to their source
//! rows by key and recorded in the rejects ledger. The same pass clears resubmitted rows that
//! were not rejected again within the confirmation window, and mirrors the ledger into the
//! front-end database when asked. The cursor of each feed is kept in the state store, moved
//! only after its page was recorded.

mod mirror;

use std::collections::HashMap;

use chrono::Utc;

use crate::config::{Config, TableSpec};
use crate::ctx::Ctx;
use crate::db::ReadRow;
use crate::job::{self, JobError, Plan};
use crate::sink::{Feed, ReceiptTable, Receipts, RecordKey, Verdict};
use crate::state::{Origin, Reject};
use crate::value::{Value, key_text};

/// A rejection read back: source key, reasons, batch id and, where the province gives it,
/// when it rejected the row.
type Found = (Vec<Value>, Vec<String>, Option<String>, Option<String>);

/// What one feedback pass found.
#[derive(Debug, Default)]
pub struct Report {
    /// Rejections read from the province.
    pub read: u64,
    /// Rejections of tables this agent does not exchange.
    pub unknown: u64,
    /// Resubmitted rows cleared.
    pub cleared: u64,
    /// Rejects written to the mirror table.
    pub mirrored: u64,
}

/// The tables' plans, prepared once and kept between passes.
pub type Plans = HashMap<String, Plan>;

async fn plan<'a>(ctx: &Ctx, plans: &'a mut Plans, spec: &TableSpec) -> Result<&'a Plan, JobError> {
    if !plans.contains_key(&spec.name) {
        let p = job::prepare(&ctx.cfg, job::ends(ctx, spec)?, spec).await?;
        plans.insert(spec.name.clone(), p);
    }
    plans
        .get(&spec.name)
        .ok_or_else(|| JobError::new(&spec.name, "reading feedback", "no plan"))
}

fn state_err(e: crate::state::StateError) -> JobError {
    JobError::store("feedback", "recording feedback", e)
}

/// A table as the receipts see it.
fn receipt_table(spec: &TableSpec, plan: Option<&Plan>) -> ReceiptTable {
    ReceiptTable {
        name: spec.name.clone(),
        target: plan.map_or_else(|| spec.target.clone(), |p| p.target.clone()),
        key: plan.map(|p| p.out.key_cols()).unwrap_or_default(),
        errors: spec.feedback_table.clone(),
    }
}

/// Run one pass: read new rejections, clear confirmed rows, mirror the ledger.
pub async fn pass(ctx: &Ctx, plans: &mut Plans) -> Result<Report, JobError> {
    let mut report = Report::default();
    // The province checks what it is sent, not what it sends down.
    let enabled: Vec<&TableSpec> = ctx
        .cfg
        .tables
        .iter()
        .filter(|t| t.enabled && t.direction == crate::config::Direction::Up)
        .collect();
    for feed in ctx.receipts.feeds(&enabled) {
        read_feed(ctx, plans, &feed, &mut report).await?;
    }
    let window = ctx.cfg.feedback.confirm;
    report.cleared = ctx
        .state
        .clear_confirmed(
            Utc::now() - chrono::Duration::from_std(window).unwrap_or_default(),
            &humantime::format_duration(window).to_string(),
        )
        .await
        .map_err(state_err)?;
    if ctx.cfg.feedback.mirror_table.is_some() {
        report.mirrored = mirror::sync(ctx).await?;
    }
    Ok(report)
}

/// Read a feed page after page from its cursor, record what it says, and keep the cursor
/// after each page.
async fn read_feed(
    ctx: &Ctx,
    plans: &mut Plans,
    feed: &Feed,
    report: &mut Report,
) -> Result<(), JobError> {
    let table = match &feed.table {
        Some(name) => match ctx.cfg.tables.iter().find(|t| &t.name == name) {
            Some(spec) => Some((
                spec,
                receipt_table(spec, Some(plan(ctx, plans, spec).await?)),
            )),
            None => return Ok(()),
        },
        None => None,
    };
    let mut cursor = match &feed.cursor_key {
        Some(k) => ctx.state.meta(k).await.map_err(state_err)?,
        None => None,
    };
    loop {
        let page = ctx
            .receipts
            .poll(feed, table.as_ref().map(|(_, t)| t), cursor.as_deref())
            .await
            .map_err(|e| JobError::sink("feedback", "reading the province's feedback", e))?;
        let Some(next) = page.cursor else { break };
        let mut by_table: HashMap<String, Vec<Found>> = HashMap::new();
        for v in page.verdicts {
            let spec = match (&table, &v.table) {
                (Some((spec, _)), _) => *spec,
                (None, Some(name)) => match province_table(&ctx.cfg, name) {
                    Some(spec) => spec,
                    None => {
                        report.unknown += 1;
                        tracing::warn!(
                            "feedback for table `{name}`, which this agent does not exchange; ignored"
                        );
                        continue;
                    }
                },
                (None, None) => continue,
            };
            let p = plan(ctx, plans, spec).await?;
            let found = found(ctx, p, v);
            by_table.entry(spec.name.clone()).or_default().push(found);
        }
        for (name, found) in by_table {
            if let Some(spec) = ctx.cfg.tables.iter().find(|t| t.name == name) {
                let p = plan(ctx, plans, spec).await?.clone();
                record(ctx, &p, found, report).await?;
            }
        }
        if let Some(k) = &feed.cursor_key {
            ctx.state.set_meta(k, &next).await.map_err(state_err)?;
        }
        cursor = Some(next);
        if !page.more {
            break;
        }
    }
    Ok(())
}

/// The table a province's verdict names: by its exchange table (with or without schema)
/// or by its configured name.
fn province_table<'a>(cfg: &'a Config, name: &str) -> Option<&'a TableSpec> {
    cfg.tables
        .iter()
        .find(|t| t.target.to_string() == name || t.target.name.as_str() == name || t.name == name)
}

/// A verdict as the ledger records it: the source key of the record, its reasons, batch
/// and time.
fn found(ctx: &Ctx, plan: &Plan, v: Verdict) -> Found {
    let key = match v.key {
        RecordKey::Exchange(values) => source_key(ctx, plan, &values),
        RecordKey::Joined(text) => split_key(&text)
            .into_iter()
            .zip(plan.key_cols())
            .map(|(k, c)| {
                Value::Text(k)
                    .coerce(c.ty, &ctx.cfg.agent.tz)
                    .unwrap_or(Value::Null)
            })
            .collect(),
    };
    (key, vec![v.reason], v.batch, v.at)
}

/// Link rejections to their source rows (read now, for `rejects show`) and record them.
async fn record(
    ctx: &Ctx,
    plan: &Plan,
    found: Vec<Found>,
    report: &mut Report,
) -> Result<(), JobError> {
    let keys: Vec<Vec<Value>> = found.iter().map(|(k, ..)| k.clone()).collect();
    let rows: HashMap<String, ReadRow> = job::rows_by_key(plan, &keys)
        .await?
        .into_iter()
        .map(|r| (job::rkey_of(plan, &r.values), r))
        .collect();
    for (key, reasons, batch, at) in found {
        let rkey = key_text(&key.iter().collect::<Vec<_>>());
        let reject = match rows.get(&rkey) {
            Some(row) => job::batch::reject(plan, &rkey, &row.values, Origin::Province, reasons),
            None => Reject {
                rkey: rkey.clone(),
                kvals: serde_json::to_string(&key).unwrap_or_default(),
                origin: Origin::Province,
                reasons,
                row_json: "{}".into(),
                digest: None,
            },
        };
        ctx.state
            .province_reject(
                &plan.name,
                &reject,
                batch.as_deref(),
                at.as_deref().filter(|a| !a.is_empty()),
            )
            .await
            .map_err(state_err)?;
        metrics::counter!(crate::metrics::ROWS_REJECTED, "table" => plan.name.clone()).increment(1);
        report.read += 1;
    }
    Ok(())
}

/// Exchange key values as source key values (the record key the ledger uses).
fn source_key(ctx: &Ctx, plan: &Plan, exchange: &[Value]) -> Vec<Value> {
    exchange
        .iter()
        .zip(plan.key_cols())
        .map(|(v, c)| {
            v.clone()
                .coerce(c.ty, &ctx.cfg.agent.tz)
                .unwrap_or_else(|_| v.clone())
        })
        .collect()
}

/// A record key back into its values (`|` separates them; `\` escapes).
fn split_key(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(last)) = (chars.next(), out.last_mut()) {
                    last.push(n);
                }
            }
            '|' => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out
}

/// What `check` says about the feedback configuration: a line per finding, and whether it is
/// a problem (`true`) or only a note.
pub async fn check(
    cfg: &crate::config::Config,
    front: &crate::db::Db,
    receipts: &dyn Receipts,
    plans: &HashMap<String, Plan>,
) -> Vec<(bool, String)> {
    let tables: Vec<ReceiptTable> = cfg
        .tables
        .iter()
        .filter(|t| t.enabled && t.direction == crate::config::Direction::Up)
        .map(|t| receipt_table(t, plans.get(&t.name)))
        .collect();
    let mut out = receipts.check(&tables).await;
    if let Some(m) = &cfg.feedback.mirror_table {
        match front.introspect(m).await {
            Ok(Some(s)) if s.column(&crate::ident::Ident::fixed("id")).is_some() => {
                out.push((false, format!("feedback: mirror table {} OK", s.name)));
            }
            Ok(Some(s)) => out.push((true, format!("feedback: mirror table {} has no column `id`", s.name))),
            Ok(None) => out.push((true, format!("feedback: mirror table {m} does not exist in the front-end database (DDL: sql/*/rejects_mirror.sql)"))),
            Err(e) => out.push((true, format!("feedback: {e}"))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_split_back_into_values() {
        assert_eq!(split_key("7"), vec!["7"]);
        assert_eq!(split_key("a\\|b|7"), vec!["a|b", "7"]);
        let k = [Value::Text("x|y\\z".into()), Value::Int(3)];
        assert_eq!(
            split_key(&key_text(&k.iter().collect::<Vec<_>>())),
            vec!["x|y\\z", "3"]
        );
    }
}
