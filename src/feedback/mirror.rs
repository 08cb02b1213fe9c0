//! Mirror the rejects ledger into a table of the front-end database, so the business system
//! can show staff what to correct (DDL: `sql/*/rejects_mirror.sql`).

use crate::ctx::Ctx;
use crate::db::WriteBatch;
use crate::db::dialect::Upsert;
use crate::ident::Col;
use crate::ident::Ident;
use crate::job::JobError;
use crate::value::Value;

/// The mirror's columns; `id` is its key, the others are written when the table has them.
const COLUMNS: [&str; 10] = [
    "id",
    "table_name",
    "record_key",
    "state",
    "origin",
    "reasons",
    "first_seen",
    "last_seen",
    "resubmitted",
    "cleared",
];

/// Write the rejects changed since the last pass; how many.
pub async fn sync(ctx: &Ctx) -> Result<u64, JobError> {
    let Some(table) = &ctx.cfg.feedback.mirror_table else {
        return Ok(0);
    };
    let fail = |why: String| JobError::new("feedback", "mirroring the rejects", why);
    let schema = ctx
        .front
        .introspect(table)
        .await
        .map_err(|e| JobError::db("feedback", "mirroring the rejects", e))?
        .ok_or_else(|| {
            fail(format!(
                "mirror table {table} does not exist in the front-end database (DDL: sql/*/rejects_mirror.sql)"
            ))
        })?;
    let present: Vec<(usize, Col)> = COLUMNS
        .iter()
        .enumerate()
        .filter_map(|(i, n)| schema.column(&Ident::fixed(n)).map(|c| (i, c.clone())))
        .collect();
    if present.first().map(|(i, _)| *i) != Some(0) {
        return Err(fail(format!("mirror table {table} has no column `id`")));
    }
    let state_err = |e: crate::state::StateError| fail(e.to_string());
    let since = ctx
        .state
        .meta("mirror")
        .await
        .map_err(state_err)?
        .unwrap_or_default();
    let changed = ctx.state.rejects_changed(&since).await.map_err(state_err)?;
    let Some(last) = changed.last().map(|(_, u)| u.clone()) else {
        return Ok(0);
    };
    let tz = &ctx.cfg.agent.tz;
    let text = |s: &Option<String>| s.clone().map_or(Value::Null, Value::Text);
    let mut rows = Vec::with_capacity(changed.len());
    for (r, _) in &changed {
        let all = [
            Value::Int(r.id),
            Value::Text(r.table.clone()),
            Value::Text(r.key.clone()),
            Value::Text(r.state.to_string()),
            Value::Text(r.origin.to_string()),
            Value::Text(r.reasons.join("; ")),
            Value::Text(r.first_seen.clone()),
            Value::Text(r.last_seen.clone()),
            text(&r.resubmitted),
            text(&r.cleared),
        ];
        let mut row = Vec::with_capacity(present.len());
        for (i, c) in &present {
            row.push(
                all[*i]
                    .clone()
                    .coerce(c.ty, tz)
                    .map_err(|e| fail(format!("column {}: {e}", c.name)))?,
            );
        }
        rows.push(row);
    }
    let columns: Vec<Col> = present.into_iter().map(|(_, c)| c).collect();
    let key_cols = [columns[0].clone()];
    let refused = ctx
        .front
        .write(&WriteBatch {
            upsert: Upsert {
                table: &schema.name,
                columns: &columns,
                key: &[0],
                version: None,
            },
            rows: &rows,
            tuples: &crate::db::Tuples::default(),
            key_cols: &key_cols,
            version_col: None,
            deletes: &[],
            tombstone: None,
        })
        .await
        .map_err(|e| JobError::db("feedback", "mirroring the rejects", e))?;
    if let Some((_, _, why)) = refused.first() {
        return Err(fail(format!("the mirror table refused a row: {why}")));
    }
    ctx.state
        .set_meta("mirror", &last)
        .await
        .map_err(state_err)?;
    Ok(rows.len() as u64)
}
