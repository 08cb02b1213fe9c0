//! Warnings about what will hurt the side a table is read from.

use crate::config::{Config, TableSpec};
use crate::job::Plan;

pub(super) async fn warnings(_cfg: &Config, _spec: &TableSpec, _plan: &Plan) -> Vec<String> {
    Vec::new()
}
