//! Telling the province of a table's full resync, when `[resync] notice` asks for it: once
//! when it starts (with the source's row count) and once when it ends (with the rows sent).
//! A notice that cannot be given fails the resync's step, which is tried again: the
//! province is never left without one. Only tables going up are announced: a `down` table's
//! resync reads the province's own data.

use chrono::{DateTime, Utc};

use super::{Ctx, JobError, Plan};
use crate::config::{Direction, Notice};
use crate::sink::ResyncEvent;

/// What a notice says of why the resync runs.
const REASON: &str = "full resync requested by the department (DB23/T 2835 7.3.4)";

/// Tell the province that the resync `run_id` of `plan`'s table started (`finished` unset)
/// or ended.
pub(super) async fn tell(
    ctx: &Ctx,
    plan: &Plan,
    run_id: &str,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    rows: Option<u64>,
) -> Result<(), JobError> {
    let to = &ctx.cfg.resync.notice;
    if *to == Notice::None || plan.ends.direction != Direction::Up {
        return Ok(());
    }
    let id = format!("{}-{}-{run_id}", ctx.cfg.agent.id, plan.name);
    let event = ResyncEvent {
        id: &id,
        agent: &ctx.cfg.agent.id,
        table: plan.target.name.as_str(),
        reason: REASON,
        started_at,
        finished_at,
        rows,
        tz: ctx.cfg.agent.tz,
    };
    plan.ends
        .sink
        .notice(to, &event)
        .await
        .map_err(|e| JobError::sink(&plan.name, "telling the province of the full resync", e))?;
    tracing::info!(table = %plan.name, resync = %id, status = event.status(), "the province was told of the full resync");
    Ok(())
}
