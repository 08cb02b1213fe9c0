//! Warnings about what will hurt the side a table is read from before it does: no index
//! serving the watermark's order (with the statement that creates one and the table's
//! size), a change column that accepts NULL, a table read whole on a realtime schedule.

use std::fmt::Write as _;

use crate::config::{Config, TableSpec};
use crate::db::ReadFacts;
use crate::ident::Col;
use crate::job::{Mode, Plan};

pub(super) async fn warnings(_cfg: &Config, spec: &TableSpec, plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    if plan.pull.is_some() {
        return out;
    }
    if plan.mode == Mode::Digest && spec.schedule.is_interval() {
        out.push(format!(
            "a digest table is read whole every cycle, and its schedule runs it every {}: \
             give it a change column (a timestamp watermark) or an hourly or daily schedule",
            humantime::format_duration(spec.schedule.max_gap(&chrono_tz::UTC))
        ));
    }
    let facts = match plan.ends.read.read_facts(&plan.source).await {
        Ok(Some(f)) => f,
        Ok(None) => return out,
        Err(e) => {
            out.push(format!("cannot read the indexes of {}: {e}", plan.source));
            return out;
        }
    };
    let order: Vec<Col> = match (plan.mode, &plan.flag) {
        (Mode::Timestamp | Mode::Control, _) => plan
            .ts
            .iter()
            .map(|&i| plan.read_cols[i].clone())
            .chain(plan.key_cols())
            .collect(),
        (Mode::Flag, Some(f)) => std::iter::once(f.col.clone())
            .chain(plan.key_cols())
            .collect(),
        _ => Vec::new(),
    };
    if let Some(first) = order.first() {
        if let Some(w) = no_index(plan, spec, &facts, first, &order) {
            out.push(w);
        }
        if plan.ts.is_some() && facts.nullable.contains(&first.name) {
            out.push(format!(
                "change column `{}` of source table {} accepts NULL: a row without a change \
                 time has no place in the watermark's order (the agent reports such rows); \
                 declare it NOT NULL with a default",
                first.name, plan.source
            ));
        }
    }
    out
}

/// The warning when no index of the table begins with the watermark's first column.
fn no_index(
    plan: &Plan,
    spec: &TableSpec,
    facts: &ReadFacts,
    first: &Col,
    order: &[Col],
) -> Option<String> {
    if facts.indexes.iter().any(|i| i.first() == Some(&first.name)) {
        return None;
    }
    let d = plan.ends.read.dialect();
    let cols: Vec<String> = order.iter().map(|c| d.quote(&c.name)).collect();
    let raw = format!("{}_{}_idx", plan.source.name, first.name);
    let name = crate::ident::Ident::new(&raw.chars().take(60).collect::<String>())
        .map_or_else(|_| "frontdb_watermark_idx".to_owned(), |i| d.quote(&i));
    let mut size = String::new();
    if let Some(r) = facts.rows {
        let _ = write!(size, "about {r} row(s)");
    }
    if let Some(b) = facts.bytes {
        let sep = if size.is_empty() { "" } else { ", " };
        let _ = write!(size, "{sep}{} MB", b / (1024 * 1024));
    }
    let size = if size.is_empty() {
        String::new()
    } else {
        format!(" ({size})")
    };
    let often = if spec.schedule.is_interval() {
        " every cycle"
    } else {
        ""
    };
    Some(format!(
        "no index of source table {}{size} serves the watermark's order ({}): each read \
         scans the table{often}; create one: CREATE INDEX {name} ON {} ({})",
        plan.source,
        order
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        d.table(&plan.source),
        cols.join(", ")
    ))
}
