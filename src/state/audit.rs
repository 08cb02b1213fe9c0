//! The audit trail: who asked for what (`rejects resubmit`, `resync`, `purge`,
//! configuration reloads). It names people and actions, never row values.

use chrono::Utc;
use sqlx::Row;

use super::{State, StateError, q, ts};

/// One line of the audit trail.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEntry {
    pub at: String,
    /// The operating-system user who asked (see [`crate::audit`]).
    pub who: String,
    pub action: String,
    pub detail: Option<String>,
}

impl State {
    /// Record an action and who asked for it.
    pub async fn audit(
        &self,
        who: &str,
        action: &str,
        detail: Option<&str>,
    ) -> Result<(), StateError> {
        sqlx::query("INSERT INTO audit (at, who, action, detail) VALUES (?, ?, ?, ?)")
            .bind(ts(Utc::now()))
            .bind(who)
            .bind(action)
            .bind(detail)
            .execute(&self.pool)
            .await
            .map_err(q("recording who asked"))?;
        Ok(())
    }

    /// The latest entries of the audit trail, newest first; `word` keeps those whose detail
    /// names it as a whole word (a reject's `#ID`, say).
    pub async fn audit_trail(
        &self,
        limit: i64,
        word: Option<&str>,
    ) -> Result<Vec<AuditEntry>, StateError> {
        let e = q("reading the audit trail");
        let rows = sqlx::query(
            "SELECT at, who, action, detail FROM audit \
             WHERE ?1 IS NULL OR instr(' ' || detail || ' ', ' ' || ?1 || ' ') > 0 \
             ORDER BY id DESC LIMIT ?2",
        )
        .bind(word)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(&e)?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: r.try_get(0)?,
                    who: r.try_get(1)?,
                    action: r.try_get(2)?,
                    detail: r.try_get(3)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(e)
    }
}
