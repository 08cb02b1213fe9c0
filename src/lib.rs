//! frontdb-agent: exchange a department's front-end database (前置库) with the provincial
//! exchange, incrementally, exactly, and unattended.
//!
//! # Layout
//!
//! - [`config`]: the TOML file — schema, secrets, validation that reports every problem.
//! - [`value`]: cell values and column kinds; exact conversions between engines.
//! - [`db`]: one module per engine behind [`db::Db`]; [`db::dialect`] is the only place that
//!   builds SQL text, from validated [`ident::Ident`]s, always binding values.
//! - [`watermark`]: watermark positions, their order, and the database time as a bound.
//! - [`state`]: the embedded SQLite state store — watermarks, batch ledger, digests, rejects
//!   ledger and its history, resync progress.
//! - [`mapping`]: source row -> exchange row (projection, renames, constants, control columns).
//! - [`validate`]: the quality rules (credit codes, ID numbers, region codes, code sets, ...).
//! - [`job`]: one table's cycle (read -> validate -> map -> deliver -> commit watermark) per
//!   change-detection mode, and its full resync.
//! - [`feedback`]: the province's rejections pulled back, linked and recorded; the mirror.
//! - [`runner`]: `once`, an in-process resync, and one table's loop in the daemon.
//! - [`daemon`]: `run` — signals, reload, resync requests, systemd, graceful stop.
//! - [`schedule`]: realtime / every / hourly / daily / weekly / cron, with jitter.
//! - [`lock`]: one agent per state directory.
//! - [`status`], [`check`], [`rejects`]: the operator's views and actions.
//! - [`cli`]: the command line; `main.rs` only wires it up.

pub mod check;
pub mod cli;
pub mod config;
pub mod ctx;
pub mod daemon;
pub mod db;
pub mod demo;
pub mod error;
pub mod feedback;
pub mod health;
pub mod ident;
pub mod job;
pub mod lock;
pub mod logging;
pub mod mapping;
pub mod metrics;
pub mod rejects;
pub mod runner;
pub mod schedule;
pub mod secret;
pub mod sink;
pub mod state;
pub mod status;
pub mod validate;
pub mod value;
pub mod watermark;
