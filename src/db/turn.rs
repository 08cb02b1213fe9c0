//! The order of a table's batches at the exchange: each batch's turn, and where the batch
//! before it stands.

use super::{DbError, ErrorClass};
use crate::db::EngineKind;

/// Where a batch's write stands, as the batch after it sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Writing,
    /// Every statement ran; only the commit is left.
    Staged,
    Committed,
    Failed,
}

/// A batch's turn among the batches of its table at the exchange. Batches commit in order,
/// so that the exchange shows them in the order they were read. On PostgreSQL the next batch
/// may begin once this one is [`Stage::Staged`]: this one then needs no more locks, so the
/// next one can wait for this one's rows where they meet, and never the other way round
/// (no deadlock); the server is never idle while a batch commits. A batch copied straight
/// into the target (only new keys) is not staged before it committed: appends run one after
/// another on one connection, which was measured faster.
pub struct Turn {
    /// The stage of the batch before this one (none: nothing to wait for).
    pub before: Option<tokio::sync::watch::Receiver<Stage>>,
    /// This batch's stage, for the batch after it.
    pub stage: tokio::sync::watch::Sender<Stage>,
}

impl Turn {
    /// A write with no batch before or after it.
    pub fn alone() -> Turn {
        Turn {
            before: None,
            stage: tokio::sync::watch::channel(Stage::Writing).0,
        }
    }

    /// Wait until the batch before committed; false when it failed (this one must not
    /// commit then).
    pub async fn before_committed(&self) -> bool {
        let Some(before) = &self.before else {
            return true;
        };
        let mut before = before.clone();
        match before
            .wait_for(|s| matches!(s, Stage::Committed | Stage::Failed))
            .await
        {
            Ok(s) => *s == Stage::Committed,
            Err(_) => false,
        }
    }

    /// Every statement of this batch ran: the next batch may begin.
    pub fn staged(&self) {
        self.stage.send_if_modified(|s| {
            let now = *s == Stage::Writing;
            if now {
                *s = Stage::Staged;
            }
            now
        });
    }

    /// Whether the next batch may have begun already.
    pub fn is_staged(&self) -> bool {
        *self.stage.borrow() != Stage::Writing
    }

    /// The error of a batch whose predecessor was not committed.
    pub(super) fn not_after(engine: EngineKind) -> DbError {
        DbError::Query {
            engine,
            doing: "committing a batch".into(),
            cause: "the batch before it was not committed; both are sent again".into(),
            code: None,
            class: ErrorClass::Unavailable,
        }
    }
}
