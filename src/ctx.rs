//! What every table job, the feedback loop and the daemon's tasks share: the configuration,
//! the connections, the state store, and the signal to stop.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::Db;
use crate::state::State;

pub struct Ctx {
    pub cfg: Arc<Config>,
    pub source: Arc<Db>,
    pub target: Arc<Db>,
    pub state: Arc<State>,
    pub cancel: CancellationToken,
}
