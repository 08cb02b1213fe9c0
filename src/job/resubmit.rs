//! Rejected rows sent again on request (`rejects resubmit`): read again by key from the
//! source and sent through the same rules and mapping, without waiting for them to change.

use std::collections::HashSet;

use super::batch::{self, Batch, Resubmission};
use super::{Ctx, CycleReport, JobError, Plan, rkey_of, rows_by_key};
use crate::state::RejectRow;
use crate::value::Value;

/// What a resubmission did: its figures, and the rejects whose row the source no longer has.
#[derive(Debug, Default)]
pub struct Resubmitted {
    pub report: CycleReport,
    pub gone: Vec<RejectRow>,
}

/// Send these rejects of the table again; the asks to do so are then carried out.
pub async fn resubmit(
    ctx: &Ctx,
    plan: &Plan,
    rejects: Vec<RejectRow>,
) -> Result<Resubmitted, JobError> {
    let keys: Vec<Vec<Value>> = rejects
        .iter()
        .filter_map(|r| serde_json::from_value(r.key_values.clone()).ok())
        .collect();
    let rows = rows_by_key(plan, &keys).await?;
    let found: HashSet<String> = rows.iter().map(|r| rkey_of(plan, &r.values)).collect();
    let ids: Vec<i64> = rejects.iter().map(|r| r.id).collect();
    let mut out = Resubmitted::default();
    for r in rejects {
        if !found.contains(&r.key) {
            out.gone.push(r);
        } else if let Err(e) = ctx.state.note(r.id, "sent again on request").await {
            tracing::warn!(table = %plan.name, "cannot note reject #{} in its history: {e}", r.id);
        }
    }
    let b = Batch::Resubmission(Resubmission {
        rows,
        salt: format!("resubmit:{}:", chrono::Utc::now().timestamp_micros()),
    });
    batch::deliver(ctx, plan, b, &mut out.report).await?;
    ctx.state
        .asked_done(&ids)
        .await
        .map_err(|e| JobError::store(&plan.name, "recording the resubmission", e))?;
    Ok(out)
}
