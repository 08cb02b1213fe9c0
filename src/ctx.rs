//! What every table job, the feedback loop and the daemon's tasks share: the configuration,
//! the connections, the state store, and the signal to stop; and which side of them each
//! table reads and writes.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, Direction, TableSpec};
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
    /// Both sides, as the `down` tables need them too.
    pub sides: Sides,
}

/// Every database and sink a table may read or write: the front-end database and the
/// exchange, each as a database to read (where it is one) and as a sink to write.
#[derive(Clone)]
pub struct Sides {
    pub front: Arc<Db>,
    /// The front-end database as a sink (`down` tables write it).
    pub front_sink: Arc<dyn Sink>,
    pub exchange: Arc<dyn Sink>,
    /// The exchange database, where the exchange is one (`down` tables read it).
    pub exchange_db: Option<Arc<Db>>,
}

impl Sides {
    pub fn new(front: Arc<Db>, exchange: Arc<dyn Sink>, exchange_db: Option<Arc<Db>>) -> Sides {
        let front_sink: Arc<dyn Sink> =
            Arc::new(crate::sink::database::DatabaseSink::front(front.clone()));
        Sides {
            front,
            front_sink,
            exchange,
            exchange_db,
        }
    }
}

/// The two sides of one table: the database it is read from, and the sink it is written to.
#[derive(Clone)]
pub struct Ends {
    pub direction: Direction,
    pub read: Arc<Db>,
    /// The side read, in words.
    pub read_place: &'static str,
    pub sink: Arc<dyn Sink>,
    /// How long a transaction still open on the side read may hold its watermark back.
    pub guard: Duration,
    /// Where code tables of the rules are read: always the front-end database.
    pub codes: Arc<Db>,
    /// The exchange database, where the exchange is one (`translate` tables may live there).
    pub exchange: Option<Arc<Db>>,
}

impl Ends {
    /// A table's ends: an `up` table is read at the front-end database and written to the
    /// exchange; a `down` table is read at the exchange database and written to the
    /// front-end database.
    pub fn of(spec: &TableSpec, cfg: &Config, sides: &Sides) -> Result<Ends, String> {
        match spec.direction {
            Direction::Up => Ok(Ends {
                direction: Direction::Up,
                read: Arc::clone(&sides.front),
                read_place: "front-end database",
                sink: Arc::clone(&sides.exchange),
                guard: cfg.source.transaction_guard,
                codes: Arc::clone(&sides.front),
                exchange: sides.exchange_db.clone(),
            }),
            // Pulled from an http endpoint: the job reads the front-end table's own catalog
            // and takes its rows from the endpoint (see `job::pull`).
            Direction::Down if spec.pull.is_some() => Ok(Ends {
                direction: Direction::Down,
                read: Arc::clone(&sides.front),
                read_place: "front-end database",
                sink: Arc::clone(&sides.front_sink),
                guard: Duration::ZERO,
                codes: Arc::clone(&sides.front),
                exchange: sides.exchange_db.clone(),
            }),
            Direction::Down => {
                let Some(read) = &sides.exchange_db else {
                    return Err(
                        "a `down` table is read at the exchange database, and this exchange \
                         is not a database"
                            .into(),
                    );
                };
                Ok(Ends {
                    direction: Direction::Down,
                    read: Arc::clone(read),
                    read_place: "exchange database",
                    sink: Arc::clone(&sides.front_sink),
                    guard: cfg
                        .exchange
                        .db()
                        .map_or(Duration::ZERO, |d| d.transaction_guard),
                    codes: Arc::clone(&sides.front),
                    exchange: sides.exchange_db.clone(),
                })
            }
        }
    }
}

impl std::fmt::Debug for Ends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ends")
            .field("direction", &self.direction)
            .field("read", &self.read.engine())
            .field("sink", &self.sink.place())
            .finish()
    }
}
