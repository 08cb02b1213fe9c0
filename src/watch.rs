//! One question for many quiet tables: which of them hold a row after their watermark (or
//! a row flagged new)? Asked at most once a second for all the tables polled at least every
//! 10 s that read the same database, in one statement of `EXISTS` probes; a table with
//! nothing new skips its cycle. A table's re-read of its lookback window (for late commits),
//! its look for rows in the future, a cycle woken by a notification and every table run
//! rarely do not ask: they run as always.
//!
//! An answer up to a second old is safe: a table with nothing after an older watermark has
//! nothing after its newer one, and a table said to have something runs its cycle, which
//! finds what there is. It may miss a row committed since it was given; the next round
//! (asked by whichever table comes next, within about a second) finds it and wakes that
//! table at once, so that a change waits at most about a second more than the question,
//! not a whole interval more.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use crate::db::dialect::Cond;
use crate::db::{Db, DbError};
use crate::ident::{Col, TableName};
use crate::value::{ColType, Value};

/// What a table asks: a row of `table` after `at` in the order of `cols` (or equal to it,
/// for a flag).
#[derive(Clone, Debug, PartialEq)]
pub struct Ask {
    pub table: TableName,
    pub cols: Vec<Col>,
    pub at: Vec<Value>,
    pub flag: bool,
    /// The table's scope: a row outside it is no news.
    pub scope: Option<(Col, crate::shape::Scope)>,
}

#[derive(Default)]
struct Round {
    at: Option<Instant>,
    asks: HashMap<String, Ask>,
    newer: HashSet<String>,
}

/// Each database's last round of questions, shared by the tables that read it.
#[derive(Default)]
pub struct Watch {
    by_db: std::sync::Mutex<HashMap<usize, Arc<tokio::sync::Mutex<Round>>>>,
    /// How to wake a table that a round found with something new (a running daemon's).
    wakers: std::sync::Mutex<HashMap<String, Waker>>,
}

/// Wakes one table.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Tables asked about in one statement.
const PER_STATEMENT: usize = 200;

impl Watch {
    /// Let the rounds wake `table` when they find it has something new.
    pub fn wake_with(&self, table: &str, wake: Waker) {
        self.wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(table.to_owned(), wake);
    }

    /// Whether the table `name`, read from `db`, holds what it asks; `None` when the question
    /// failed: the cycle runs and finds out.
    pub async fn newer(&self, db: &Arc<Db>, name: &str, ask: Ask) -> Option<bool> {
        let slot = {
            let mut by_db = self.by_db.lock().unwrap_or_else(|e| e.into_inner());
            by_db.entry(Arc::as_ptr(db) as usize).or_default().clone()
        };
        let mut round = slot.lock().await;
        let fresh = round.at.is_some_and(|t| t.elapsed() < crate::probe::FRESH);
        // The next round asks the table's question as it stands now; this one answered its
        // last: nothing after its watermark then means nothing now (a watermark only moves
        // forward), something then is worth a cycle.
        let asked_before = round.asks.insert(name.to_owned(), ask).is_some();
        if fresh && asked_before {
            return Some(round.newer.contains(name));
        }
        match ask_all(db, &round.asks).await {
            Ok(newer) => {
                let has = newer.contains(name);
                let woken: Vec<Waker> = {
                    let wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
                    newer
                        .iter()
                        .filter(|t| **t != name)
                        .filter_map(|t| wakers.get(t).cloned())
                        .collect()
                };
                round.newer = newer;
                round.at = Some(Instant::now());
                drop(round);
                for wake in woken {
                    wake();
                }
                Some(has)
            }
            Err(e) => {
                tracing::debug!(table = %name, "asking which tables have new rows: {e}");
                round.at = None;
                None
            }
        }
    }
}

/// The tables among `asks` that hold what they ask for.
async fn ask_all(db: &Db, asks: &HashMap<String, Ask>) -> Result<HashSet<String>, DbError> {
    // In a stable order: the same tables make the same statement, prepared once.
    let mut names: Vec<&String> = asks.keys().collect();
    names.sort();
    let k = [Col {
        name: crate::ident::Ident::fixed("k"),
        ty: ColType::Int,
        native: "bigint".into(),
    }];
    let mut newer = HashSet::new();
    for chunk in names.chunks(PER_STATEMENT) {
        let tables: Vec<(&TableName, Vec<Cond<'_>>)> = chunk
            .iter()
            .filter_map(|n| asks.get(*n))
            .map(|a| {
                let cond = if a.flag {
                    Cond::Equals(&a.cols[0], &a.at[0])
                } else {
                    Cond::After(&a.cols, &a.at)
                };
                let mut conds = vec![cond];
                if let Some((c, s)) = &a.scope {
                    conds.push(Cond::Within(c, s));
                }
                (&a.table, conds)
            })
            .collect();
        let sql = db.dialect().which_exist(&tables);
        let (rows, _) = db.fetch(&sql, &k, usize::MAX).await?;
        for r in rows {
            if let Some(Value::Int(i)) = r.values.first()
                && let Some(n) = usize::try_from(*i).ok().and_then(|i| chunk.get(i))
            {
                newer.insert((*n).clone());
            }
        }
    }
    Ok(newer)
}
