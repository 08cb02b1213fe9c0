//! What a timestamp-like cycle asks of the database it reads before it reads: the database's
//! time, its oldest open transaction and its transaction ids. Asked at most once a second
//! for all the tables that read the same database, so that a hundred quiet tables polled
//! every few seconds cost the database one question a second, not several each.
//!
//! An answer up to a second old is as good as a fresh one for a table polled every few
//! seconds: the time bounds what is read, so an older time reads less (the rest waits for
//! the next poll, seconds later); an older snapshot of transaction ids reads more again. Time
//! and open transactions are asked together, so a transaction that began after them stamps
//! its rows after that time, beyond what is read. A table run rarely, or woken because the
//! source announced new rows, asks afresh: the rows it is run for must be within its time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::db::{Db, DbError, Snapshot};

/// How long an answer serves the tables that read the same database.
pub const FRESH: Duration = Duration::from_secs(1);

/// The oldest open transaction's start, and a note when the agent cannot see every session.
pub type Oldest = (Option<DateTime<Utc>>, Option<String>);

/// One answer of a database.
#[derive(Clone, Debug)]
pub struct Probe {
    pub now: DateTime<Utc>,
    /// Asked when a table guards against open transactions (an error in words otherwise).
    pub oldest: Option<Result<Oldest, String>>,
    /// Asked when a table re-reads its window by transaction id.
    pub snap: Option<Result<Option<Snapshot>, String>>,
}

struct Taken {
    at: Instant,
    probe: Probe,
}

type Slot = Arc<tokio::sync::Mutex<Option<Taken>>>;

/// The answers of each database read, shared by every table that reads it.
#[derive(Default)]
pub struct Probes {
    by_db: std::sync::Mutex<HashMap<usize, Slot>>,
}

impl Probes {
    /// The answer of `db`, with its oldest open transaction (`guard`) and its transaction ids
    /// (`xids`) where asked for: the last one when it is fresh and holds what is asked, else
    /// a new one (which asks what the last held too, for the tables that asked for it).
    pub async fn take(
        &self,
        db: &Arc<Db>,
        max_age: Duration,
        guard: bool,
        xids: bool,
    ) -> Result<Probe, DbError> {
        let slot = {
            let mut by_db = self.by_db.lock().unwrap_or_else(|e| e.into_inner());
            by_db.entry(Arc::as_ptr(db) as usize).or_default().clone()
        };
        // One table asks while the others that read the same database wait for its answer.
        let mut last = slot.lock().await;
        if let Some(t) = last.as_ref()
            && t.at.elapsed() < max_age
            && (!guard || t.probe.oldest.is_some())
            && (!xids || t.probe.snap.is_some())
        {
            return Ok(t.probe.clone());
        }
        let held = |f: fn(&Probe) -> bool| last.as_ref().is_some_and(|t| f(&t.probe));
        let guard = guard || held(|p| p.oldest.is_some());
        let xids = xids || held(|p| p.snap.is_some());
        let (now, oldest, snap) = tokio::join!(
            db.now(),
            async {
                match guard {
                    true => Some(db.oldest_transaction().await.map_err(|e| e.to_string())),
                    false => None,
                }
            },
            async {
                match xids {
                    true => Some(db.snapshot().await.map_err(|e| e.to_string())),
                    false => None,
                }
            }
        );
        let probe = Probe {
            now: now?,
            oldest,
            snap,
        };
        *last = Some(Taken {
            at: Instant::now(),
            probe: probe.clone(),
        });
        Ok(probe)
    }
}
