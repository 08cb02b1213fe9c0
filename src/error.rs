//! The error the command line reports, with its exit code.

use crate::config::ConfigError;

/// What ends a command: configuration or usage problems exit 2, everything else exits 1.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Wrong use of the command line, or a configuration that does not fit the databases.
    #[error("{0}")]
    Usage(String),
    /// A runtime failure; the message names the table, the step and the cause.
    #[error("{0}")]
    Runtime(String),
}

impl AppError {
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Config(_) | AppError::Usage(_) => 2,
            AppError::Runtime(_) => 1,
        }
    }

    pub fn runtime(e: impl std::fmt::Display) -> Self {
        AppError::Runtime(e.to_string())
    }
}
