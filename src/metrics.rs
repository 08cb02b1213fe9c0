//! The metrics' names and the process's Prometheus recorder. Counters are recorded where
//! things happen (`metrics::counter!`); without the endpoint ([`crate::health`]) no recorder
//! is installed and recording costs nothing.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const ROWS_READ: &str = "frontdb_rows_read_total";
pub const ROWS_SENT: &str = "frontdb_rows_sent_total";
pub const ROWS_DELETED: &str = "frontdb_rows_deleted_total";
pub const ROWS_QUARANTINED: &str = "frontdb_rows_quarantined_total";
/// Rows sent although a `severity = "warn"` rule found a problem in them.
pub const ROWS_WARNED: &str = "frontdb_rows_warned_total";
pub const ROWS_REJECTED: &str = "frontdb_rows_rejected_by_province_total";
pub const BATCH_SECONDS: &str = "frontdb_batch_duration_seconds";
pub const CYCLES: &str = "frontdb_cycles_total";
pub const RETRIES: &str = "frontdb_retries_total";
pub const ERRORS: &str = "frontdb_errors_total";
pub const LAG: &str = "frontdb_lag_seconds";
pub const LAST_SUCCESS: &str = "frontdb_last_success_timestamp_seconds";
pub const OPEN_REJECTS: &str = "frontdb_open_rejects";
pub const FAILURES: &str = "frontdb_consecutive_failures";
pub const RESYNC: &str = "frontdb_resync_progress_ratio";
pub const UP: &str = "frontdb_database_up";
/// Tables of a data category: 0 on time, 1 at risk, 2 late, -1 unknown (never exchanged).
pub const COMPLIANCE: &str = "frontdb_compliance_state";
/// Tables of a data category: when the next successful exchange is due (Unix seconds).
pub const COMPLIANCE_DEADLINE: &str = "frontdb_compliance_deadline_timestamp_seconds";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder (installed once; reloads keep it).
pub(crate) fn handle() -> Result<&'static PrometheusHandle, String> {
    if let Some(h) = HANDLE.get() {
        return Ok(h);
    }
    let h = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(BATCH_SECONDS.into()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ],
        )
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    Ok(HANDLE.get_or_init(|| h))
}

/// Install the recorder before anything records: a value recorded before it is lost (the
/// patrol's first reachability, say, would be missing until the next patrol).
pub fn install() {
    if let Err(e) = handle() {
        tracing::error!("cannot start the metrics recorder: {e}");
    }
}
