//! The province's rejections: read from the exchange database — a rejection table, the
//! `dn_*_error` tables, or status flags in the exchange rows — linked to their source rows by
//! key and recorded in the rejects ledger. The same pass clears resubmitted rows that were not
//! rejected again within the confirmation window, and mirrors the ledger into the front-end
//! database when asked.

mod mirror;

use std::collections::HashMap;

use chrono::Utc;

use crate::config::{FeedbackKind, TableSpec};
use crate::db::dialect::{Cond, Select};
use crate::db::{ReadRow, TableSchema};
use crate::ident::Col;
use crate::job::{self, Ctx, JobError, Plan};
use crate::state::Reject;
use crate::value::{Value, key_text};

/// Rows of feedback read per query.
const PAGE: usize = 1000;

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
        let p = job::prepare(&ctx.cfg, &ctx.source, &ctx.target, spec).await?;
        plans.insert(spec.name.clone(), p);
    }
    plans
        .get(&spec.name)
        .ok_or_else(|| JobError::new(&spec.name, "reading feedback", "no plan"))
}

fn fb_err(step: &'static str) -> impl Fn(crate::db::DbError) -> JobError {
    move |e| JobError::db("feedback", step, e)
}

fn state_err(e: crate::state::StateError) -> JobError {
    JobError::new("feedback", "recording feedback", e.to_string())
}

/// A column of a feedback table, or a clear error naming it.
fn column(schema: &TableSchema, name: &crate::ident::Ident) -> Result<Col, JobError> {
    schema.column(name).cloned().ok_or_else(|| {
        JobError::new(
            "feedback",
            "reading the province's feedback",
            format!("table {} has no column `{name}`", schema.name),
        )
    })
}

/// Run one pass: read new rejections, clear confirmed rows, mirror the ledger.
pub async fn pass(ctx: &Ctx, plans: &mut Plans) -> Result<Report, JobError> {
    let mut report = Report::default();
    match ctx.cfg.feedback.kind {
        FeedbackKind::None => {}
        FeedbackKind::Table => from_table(ctx, plans, &mut report).await?,
        FeedbackKind::ErrorTable => {
            for spec in ctx
                .cfg
                .tables
                .iter()
                .filter(|t| t.enabled && t.feedback_table.is_some())
            {
                from_error_table(ctx, plans, spec, &mut report).await?;
            }
        }
        FeedbackKind::Flag => {
            for spec in ctx.cfg.tables.iter().filter(|t| t.enabled) {
                from_flags(ctx, plans, spec, &mut report).await?;
            }
        }
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

/// Link rejections to their source rows (read now, for `rejects show`) and record them.
async fn record(
    ctx: &Ctx,
    plan: &Plan,
    found: Vec<Found>,
    report: &mut Report,
) -> Result<(), JobError> {
    let keys: Vec<Vec<Value>> = found.iter().map(|(k, ..)| k.clone()).collect();
    let rows: HashMap<String, ReadRow> = job::rows_by_key(ctx, plan, &keys)
        .await?
        .into_iter()
        .map(|r| (job::rkey_of(plan, &r.values), r))
        .collect();
    for (key, reasons, batch, at) in found {
        let rkey = key_text(&key.iter().collect::<Vec<_>>());
        let reject = match rows.get(&rkey) {
            Some(row) => job::batch::reject(plan, &rkey, &row.values, "province", reasons),
            None => Reject {
                rkey: rkey.clone(),
                kvals: serde_json::to_string(&key).unwrap_or_default(),
                origin: "province",
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

fn text(v: Option<&Value>) -> String {
    v.filter(|v| !v.is_null())
        .map(Value::to_text)
        .unwrap_or_default()
}

/// `kind = "table"`: new rows of the province's rejection table, after the last id read.
async fn from_table(ctx: &Ctx, plans: &mut Plans, report: &mut Report) -> Result<(), JobError> {
    let fb = &ctx.cfg.feedback;
    let schema = ctx
        .target
        .introspect(&fb.table)
        .await
        .map_err(fb_err("reading the province's rejection table"))?
        .ok_or_else(|| {
            JobError::new(
                "feedback",
                "reading the province's feedback",
                format!(
                    "rejection table {} does not exist in the exchange database",
                    fb.table
                ),
            )
        })?;
    let c = &fb.columns;
    let cols = [
        column(&schema, &c.id)?,
        column(&schema, &c.table_name)?,
        column(&schema, &c.record_key)?,
        column(&schema, &c.batch_id)?,
        column(&schema, &c.error_code)?,
        column(&schema, &c.error_message)?,
        column(&schema, &c.rejected_at)?,
    ];
    let mut last: Option<Value> = match ctx.state.meta("feedback:table").await.map_err(state_err)? {
        Some(j) => serde_json::from_str(&j).ok(),
        None => None,
    };
    loop {
        let after;
        let mut conds = Vec::new();
        if let Some(l) = &last {
            after = [l.clone()];
            conds.push(Cond::After(&cols[..1], &after));
        }
        let sql = ctx.target.dialect().select(&Select {
            table: &schema.name,
            columns: &cols,
            conds,
            order: &cols[..1],
            limit: Some(PAGE),
        });
        let (rows, _) = ctx
            .target
            .fetch(&sql, &cols, usize::MAX)
            .await
            .map_err(fb_err("reading the province's rejection table"))?;
        let Some(tail) = rows.last().map(|r| r.values[0].clone()) else {
            break;
        };
        let mut by_table: HashMap<String, Vec<Found>> = HashMap::new();
        for r in &rows {
            let name = text(r.values.get(1));
            let Some(spec) = ctx.cfg.tables.iter().find(|t| {
                t.target.to_string() == name || t.target.name.as_str() == name || t.name == name
            }) else {
                report.unknown += 1;
                tracing::warn!(
                    "feedback for table `{name}`, which this agent does not exchange; ignored"
                );
                continue;
            };
            let p = plan(ctx, plans, spec).await?;
            let key = split_key(&text(r.values.get(2)));
            let key: Vec<Value> = key
                .into_iter()
                .zip(p.key_cols())
                .map(|(k, c)| {
                    Value::Text(k)
                        .coerce(c.ty, &ctx.cfg.agent.tz)
                        .unwrap_or(Value::Null)
                })
                .collect();
            let code = text(r.values.get(4));
            let msg = text(r.values.get(5));
            let reason = if code.is_empty() {
                msg
            } else {
                format!("[{code}] {msg}")
            };
            let batch = Some(text(r.values.get(3))).filter(|b| !b.is_empty());
            by_table.entry(spec.name.clone()).or_default().push((
                key,
                vec![reason],
                batch,
                Some(text(r.values.get(6))),
            ));
        }
        for (name, found) in by_table {
            if let Some(spec) = ctx.cfg.tables.iter().find(|t| t.name == name) {
                let p = plan(ctx, plans, spec).await?.clone();
                record(ctx, &p, found, report).await?;
            }
        }
        ctx.state
            .set_meta(
                "feedback:table",
                &serde_json::to_string(&tail).unwrap_or_default(),
            )
            .await
            .map_err(state_err)?;
        let full = rows.len() >= PAGE;
        last = Some(tail);
        if !full {
            break;
        }
    }
    Ok(())
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

/// `kind = "error_table"`: new rows of a table's `dn_*_error` table, after the last time and
/// key read.
async fn from_error_table(
    ctx: &Ctx,
    plans: &mut Plans,
    spec: &TableSpec,
    report: &mut Report,
) -> Result<(), JobError> {
    let Some(table) = &spec.feedback_table else {
        return Ok(());
    };
    let fb = &ctx.cfg.feedback;
    let p = plan(ctx, plans, spec).await?.clone();
    let schema = ctx
        .target
        .introspect(table)
        .await
        .map_err(fb_err("reading an error table"))?
        .ok_or_else(|| {
            JobError::new(
                &spec.name,
                "reading the province's feedback",
                format!("error table {table} does not exist in the exchange database"),
            )
        })?;
    let mut order = vec![column(&schema, &fb.time_column)?];
    for k in p.mapping.key_cols() {
        order.push(column(&schema, &k.name)?);
    }
    let mut cols = order.clone();
    cols.push(column(&schema, &fb.error_column)?);
    let batch_col = schema.column(&ctx.cfg.exchange.control.batch).cloned();
    if let Some(b) = &batch_col {
        cols.push(b.clone());
    }
    let meta = format!("feedback:error:{}", spec.name);
    let mut last: Option<Vec<Value>> = match ctx.state.meta(&meta).await.map_err(state_err)? {
        Some(j) => serde_json::from_str(&j).ok(),
        None => None,
    };
    let nk = order.len();
    loop {
        let conds = match &last {
            Some(l) => vec![Cond::After(&order, l)],
            None => vec![Cond::IsNotNull(&order[0])],
        };
        let sql = ctx.target.dialect().select(&Select {
            table: &schema.name,
            columns: &cols,
            conds,
            order: &order,
            limit: Some(PAGE),
        });
        let (rows, _) = ctx
            .target
            .fetch(&sql, &cols, usize::MAX)
            .await
            .map_err(fb_err("reading an error table"))?;
        let Some(tail) = rows.last().map(|r| r.values[..nk].to_vec()) else {
            break;
        };
        let found = rows
            .iter()
            .map(|r| {
                let key = source_key(ctx, &p, &r.values[1..nk]);
                let reason = text(r.values.get(nk));
                let batch = batch_col
                    .as_ref()
                    .map(|_| text(r.values.get(nk + 1)))
                    .filter(|b| !b.is_empty());
                (key, vec![reason], batch, None)
            })
            .collect();
        record(ctx, &p, found, report).await?;
        ctx.state
            .set_meta(&meta, &serde_json::to_string(&tail).unwrap_or_default())
            .await
            .map_err(state_err)?;
        let full = rows.len() >= PAGE;
        last = Some(tail);
        if !full {
            break;
        }
    }
    Ok(())
}

/// `kind = "flag"`: exchange rows the province marked as failed, with their error text. The
/// agent writes the pending value with every row it sends, so a corrected row is checked again.
async fn from_flags(
    ctx: &Ctx,
    plans: &mut Plans,
    spec: &TableSpec,
    report: &mut Report,
) -> Result<(), JobError> {
    let fb = &ctx.cfg.feedback;
    let p = plan(ctx, plans, spec).await?.clone();
    let Some(schema) = ctx
        .target
        .introspect(&p.target)
        .await
        .map_err(fb_err("reading an exchange table"))?
    else {
        return Ok(());
    };
    let (Some(flag), Some(error)) = (
        schema.column(&fb.flag_column),
        schema.column(&fb.error_column),
    ) else {
        return Ok(());
    };
    let key = p.mapping.key_cols();
    let mut cols = key.clone();
    cols.push(error.clone());
    let mut cursor: Option<Vec<Value>> = None;
    loop {
        let mut conds = vec![Cond::Equals(flag, &fb.failed)];
        if let Some(c) = &cursor {
            conds.push(Cond::After(&key, c));
        }
        let sql = ctx.target.dialect().select(&Select {
            table: &p.target,
            columns: &cols,
            conds,
            order: &key,
            limit: Some(PAGE),
        });
        let (rows, _) = ctx
            .target
            .fetch(&sql, &cols, usize::MAX)
            .await
            .map_err(fb_err("reading rejected rows"))?;
        let nk = key.len();
        let Some(tail) = rows.last().map(|r| r.values[..nk].to_vec()) else {
            break;
        };
        let found = rows
            .iter()
            .map(|r| {
                (
                    source_key(ctx, &p, &r.values[..nk]),
                    vec![text(r.values.get(nk))],
                    None,
                    None,
                )
            })
            .collect();
        record(ctx, &p, found, report).await?;
        let full = rows.len() >= PAGE;
        cursor = Some(tail);
        if !full {
            break;
        }
    }
    Ok(())
}

/// What `check` says about the feedback configuration: a line per finding, and whether it is
/// a problem (`true`) or only a note.
pub async fn check(
    cfg: &crate::config::Config,
    source: &crate::db::Db,
    target: &crate::db::Db,
    plans: &HashMap<String, Plan>,
) -> Vec<(bool, String)> {
    let fb = &cfg.feedback;
    let mut out = Vec::new();
    let need = |schema: &TableSchema, cols: &[&crate::ident::Ident]| -> Vec<String> {
        cols.iter()
            .filter(|c| schema.column(c).is_none())
            .map(|c| format!("`{c}`"))
            .collect()
    };
    match fb.kind {
        FeedbackKind::None => {}
        FeedbackKind::Table => match target.introspect(&fb.table).await {
            Ok(Some(s)) => {
                let c = &fb.columns;
                let missing = need(
                    &s,
                    &[
                        &c.id,
                        &c.table_name,
                        &c.record_key,
                        &c.batch_id,
                        &c.error_code,
                        &c.error_message,
                        &c.rejected_at,
                    ],
                );
                if missing.is_empty() {
                    out.push((false, format!("feedback: rejection table {} OK", s.name)));
                } else {
                    out.push((
                        true,
                        format!(
                            "feedback: rejection table {} lacks {}",
                            s.name,
                            missing.join(", ")
                        ),
                    ));
                }
            }
            Ok(None) => out.push((
                true,
                format!(
                    "feedback: rejection table {} does not exist in the exchange database",
                    fb.table
                ),
            )),
            Err(e) => out.push((true, format!("feedback: {e}"))),
        },
        FeedbackKind::ErrorTable => {
            for spec in cfg.tables.iter().filter(|t| t.enabled) {
                let Some(t) = &spec.feedback_table else {
                    out.push((
                        false,
                        format!(
                            "feedback: table {} has no feedback_table; its rejections are not read",
                            spec.name
                        ),
                    ));
                    continue;
                };
                match (target.introspect(t).await, plans.get(&spec.name)) {
                    (Ok(Some(s)), Some(p)) => {
                        let keys = p.mapping.key_cols();
                        let mut cols: Vec<&crate::ident::Ident> = vec![&fb.time_column, &fb.error_column];
                        cols.extend(keys.iter().map(|c| &c.name));
                        let missing = need(&s, &cols);
                        if missing.is_empty() {
                            out.push((false, format!("feedback: error table {} of {} OK", s.name, spec.name)));
                        } else {
                            out.push((true, format!("feedback: error table {} of {} lacks {}", s.name, spec.name, missing.join(", "))));
                        }
                    }
                    (Ok(None), _) => out.push((true, format!("feedback: error table {t} of {} does not exist in the exchange database", spec.name))),
                    (Err(e), _) => out.push((true, format!("feedback: {e}"))),
                    (_, None) => {}
                }
            }
        }
        FeedbackKind::Flag => {
            for p in plans.values() {
                if let Ok(Some(s)) = target.introspect(&p.target).await {
                    let missing = need(&s, &[&fb.flag_column, &fb.error_column]);
                    if missing.is_empty() {
                        out.push((
                            false,
                            format!(
                                "feedback: exchange table {} carries the status flag",
                                s.name
                            ),
                        ));
                    } else {
                        out.push((
                            false,
                            format!(
                                "feedback: exchange table {} lacks {}; its rejections are not read",
                                s.name,
                                missing.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
    }
    if let Some(m) = &fb.mirror_table {
        match source.introspect(m).await {
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
