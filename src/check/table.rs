//! What `check` says of one table whose plan was built: where it goes, what is left out or
//! left for the database, which column types narrow, and what will hurt the side read.

use crate::config::{Config, Direction, TableSpec};
use crate::job::{Mode, Plan};

/// Print the table's lines (what is wrong with it was found building its plan; these are
/// facts and warnings).
pub(super) async fn report(cfg: &Config, spec: &TableSpec, plan: &Plan, xids: bool) {
    headline(spec, plan);
    if !plan.unexchanged.is_empty() {
        println!(
            "  not exchanged (the exchange table has no such column): {}",
            plan.unexchanged.join(", ")
        );
    }
    if !plan.computed.is_empty() {
        println!(
            "  skipped (the database computes them: generated or identity GENERATED ALWAYS): {}",
            plan.computed.join(", ")
        );
    }
    for n in &plan.type_notes {
        println!("  WARNING — {n}");
    }
    if !plan.rules.is_empty() {
        println!("  {} quality rule(s)", plan.rules.len());
    }
    let shape = &spec.shape;
    let masked = crate::shape::describe_masks(&shape.masks);
    let filter = shape.scope.as_ref().map(ToString::to_string);
    for n in crate::shape::notes(shape.sharing.as_str(), &masked, filter.as_deref()) {
        println!("  {n}");
    }
    late_commits(plan, xids);
    if plan.tuples.is_some() {
        println!(
            "  rows are copied as they are: both tables have the same columns of the same types"
        );
    }
    for w in super::index::warnings(cfg, spec, plan).await {
        println!("  WARNING — {w}");
    }
}

fn headline(spec: &TableSpec, plan: &Plan) {
    let mode = match plan.mode {
        Mode::Key => "key",
        Mode::Timestamp => "timestamp",
        Mode::Control => "control",
        Mode::Flag => "flag",
        Mode::Digest => "digest",
    };
    let (from, to) = match spec.direction {
        Direction::Up => ("", ""),
        Direction::Down => (
            " (exchange database)",
            " (front-end database), direction down",
        ),
    };
    println!(
        "table {}: OK — {}{from} -> {}{to}, {} watermark, key ({}), {} column(s) exchanged",
        plan.name,
        plan.source,
        plan.target,
        mode,
        plan.key_cols()
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        plan.mapping.columns.len()
    );
}

fn late_commits(plan: &Plan, xids: bool) {
    let lookback = plan.window.as_ref().is_some_and(|w| !w.lookback.is_zero());
    if lookback && plan.row_xids && xids {
        println!(
            "  late commits: the lookback window is asked only for rows of transactions \
             the last re-read could not see (by PostgreSQL transaction id)"
        );
    } else if lookback {
        println!(
            "  late commits: the lookback window is re-read whole and rows already \
             exchanged are skipped by digest"
        );
    }
}
