//! What every table job, the feedback loop and the daemon's tasks share: the configuration,
//! the connections, the state store, and the signal to stop; and which side of them each
//! table reads and writes.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, TableSpec};
use crate::db::Db;
use crate::sink::{Receipts, Sink};
use crate::state::State;

pub struct Ctx {
    pub cfg: Arc<Config>,
    /// The department's front-end database.
    pub front: Arc<Db>,
    /// The provincial exchange, where batches go.
    pub exchange: Arc<dyn Sink>,
    /// The province's verdicts on what it was sent.
    pub receipts: Arc<dyn Receipts>,
    pub state: Arc<State>,
    pub cancel: CancellationToken,
    /// What the databases read answered last (their time, open transactions, ids).
    pub probes: crate::probe::Probes,
    /// Which quiet tables have rows after their watermark, asked of each database at once.
    pub watch: crate::watch::Watch,
}

impl Ctx {
    /// Where a table is read and where it is written.
    pub fn ends(&self, spec: &TableSpec) -> Ends {
        Ends::of(spec, &self.front, &self.exchange)
    }
}

/// The two sides of one table: the database it is read from, and the sink it is written to.
#[derive(Clone)]
pub struct Ends {
    pub read: Arc<Db>,
    /// The side read, in words.
    pub read_place: &'static str,
    pub sink: Arc<dyn Sink>,
}

impl Ends {
    /// A table's ends, given the front-end database and the exchange: every table is read
    /// from the front-end and written to the exchange.
    pub fn of(_spec: &TableSpec, front: &Arc<Db>, exchange: &Arc<dyn Sink>) -> Ends {
        Ends {
            read: Arc::clone(front),
            read_place: "front-end database",
            sink: Arc::clone(exchange),
        }
    }
}

impl std::fmt::Debug for Ends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ends")
            .field("read", &self.read.engine())
            .field("sink", &self.sink.place())
            .finish()
    }
}
