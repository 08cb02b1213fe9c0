//! Whether a quiet table has anything new, asked with the other quiet tables of its database
//! (see [`crate::watch`]): what each mode asks.

use super::plan::{Mode, Plan};
use crate::ctx::Ctx;
use crate::watch::Ask;
use crate::watermark::Watermark;

/// Whether the table may have rows to exchange after its watermark `wm`; `None` when it
/// cannot be asked this way (a digest table, no watermark yet, a watermark held back by an
/// open transaction) or the question failed: the cycle runs and finds out.
pub(super) async fn newer(ctx: &Ctx, plan: &Plan, wm: Option<&Watermark>) -> Option<bool> {
    let ask = ask_of(plan, wm)?;
    ctx.watch.newer(&plan.ends.read, &plan.name, ask).await
}

/// What a table asks, by its mode.
pub(super) fn ask_of(plan: &Plan, wm: Option<&Watermark>) -> Option<Ask> {
    let key = plan.key_cols();
    let (cols, at, flag) = match plan.mode {
        Mode::Timestamp | Mode::Control => {
            let w = wm?;
            w.ts.as_ref()?;
            if w.key.len() != key.len() || key.is_empty() {
                return None;
            }
            let mut cols = vec![plan.read_cols[plan.ts?].clone()];
            cols.extend(key);
            (cols, super::tuple(w), false)
        }
        Mode::Key => {
            let w = wm?;
            if w.key.len() != key.len() || key.is_empty() {
                return None;
            }
            (key, w.key.clone(), false)
        }
        Mode::Flag => {
            let f = plan.flag.as_ref()?;
            (vec![f.col.clone()], vec![f.pending.clone()], true)
        }
        Mode::Digest => return None,
    };
    Some(Ask {
        table: plan.source.clone(),
        cols,
        at,
        flag,
        scope: plan.scope.clone(),
    })
}
