//! A table that could not be exchanged: which, at which step, and why, with the error that
//! stopped it kept whole.

use std::sync::Arc;

use crate::db::{DbError, ErrorClass};
use crate::sink::SinkError;
use crate::state::StateError;

/// A table that could not be exchanged: which, at which step, and why.
#[derive(Clone, Debug, thiserror::Error)]
#[error("table {table}: {step}: {cause}")]
pub struct JobError {
    pub table: String,
    pub step: &'static str,
    #[source]
    pub cause: Cause,
    /// What kind of failure it was (decides how soon the table is tried again).
    pub class: ErrorClass,
}

/// Why a step failed: the error it met (a database's, the sink's, the state store's), or
/// the agent's own words.
#[derive(Clone, Debug)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

impl Cause {
    /// The error met, where it was one of these kinds.
    pub fn downcast<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }
}

/// The agent's own words about a failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Words(String);

impl JobError {
    fn of(table: &str, step: &'static str, class: ErrorClass, cause: Cause) -> Self {
        JobError {
            table: table.to_owned(),
            step,
            cause,
            class,
        }
    }

    /// A failure that needs a person (configuration, planning), in the agent's words.
    pub fn new(table: &str, step: &'static str, cause: impl Into<String>) -> Self {
        let words = Cause(Arc::new(Words(cause.into())));
        Self::of(table, step, ErrorClass::Fatal, words)
    }

    pub fn db(table: &str, step: &'static str, e: DbError) -> Self {
        Self::of(table, step, e.class(), Cause(Arc::new(e)))
    }

    pub fn sink(table: &str, step: &'static str, e: SinkError) -> Self {
        Self::of(table, step, e.class(), Cause(Arc::new(e)))
    }

    /// The state store failed: it needs a person (a full disk, a damaged file).
    pub fn store(table: &str, step: &'static str, e: StateError) -> Self {
        Self::of(table, step, ErrorClass::Fatal, Cause(Arc::new(e)))
    }

    pub(super) fn state(table: &str, e: StateError) -> Self {
        Self::store(table, "reading the state store", e)
    }

    /// Whether a later attempt may succeed without anyone changing anything.
    pub fn is_retriable(&self) -> bool {
        matches!(self.class, ErrorClass::Transient | ErrorClass::Unavailable)
    }
}
