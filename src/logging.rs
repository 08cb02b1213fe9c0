//! The log: human-readable text on a terminal, JSON lines under systemd (or when asked), to
//! standard error; `FRONTDB_LOG` sets the filter. Nothing the agent logs holds a secret: URLs
//! are logged with `***` in place of a password, and passwords never.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Whether the process runs under systemd (its output goes to the journal).
fn under_systemd() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some() || std::env::var_os("INVOCATION_ID").is_some()
}

/// Set up the log once, for a command whose default level is `level`.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_env("FRONTDB_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},sqlx=warn")));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => under_systemd(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}
