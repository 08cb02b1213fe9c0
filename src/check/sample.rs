//! placeholder
use crate::config::Config;
use crate::job::Plan;
pub(super) async fn report(_cfg: &Config, _plan: &Plan, _n: usize) -> usize { 0 }
