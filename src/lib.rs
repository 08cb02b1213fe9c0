//! frontdb-agent: exchange a department's front-end database (前置库) with the provincial
//! exchange, incrementally, exactly, and unattended.
//!
//! # Layout
//!
//! - [`config`]: the TOML file — schema, secrets, validation that reports every problem.
//! - [`value`]: cell values and column kinds; exact conversions between engines.
//! - [`db`]: one module per engine behind [`db::Db`]; [`db::dialect`] is the only place that
//!   builds SQL text, from validated [`db::ident::Ident`]s, always binding values.
//! - [`watermark`]: watermark values and the read plan of each change-detection mode.
//! - [`state`]: the embedded SQLite state store — watermarks, batch ledger, digests, rejects.
//! - [`mapping`]: source row -> exchange row (projection, renames, constants, control columns).
//! - [`job`]: one table's cycle: read -> validate -> map -> deliver -> commit watermark.
//! - [`runner`]: `once` and `run` (each table on its own schedule, graceful stop).
//! - [`schedule`]: realtime / every / hourly / daily / weekly / cron.
//! - [`status`], [`check`]: the operator's views.
//! - [`cli`]: the command line; `main.rs` only wires it up.

pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod db;
pub mod error;
pub mod job;
pub mod lock;
pub mod mapping;
pub mod rejects;
pub mod runner;
pub mod schedule;
pub mod state;
pub mod status;
pub mod value;
pub mod watermark;
