//! frontdb-agent: exchange a department's front-end database (前置库) with the provincial
//! exchange, incrementally, exactly, and unattended.
//!
//! # Layout
//!
//! Dependence runs one way: the commands use the runner and the job; the job reads through
//! [`db`] and writes through [`sink`]; a sink speaks to its other side (a database through
//! [`db`]); nothing below imports what is above it.
//!
//! - [`cli`], [`daemon`], [`runner`], [`control`]: the command line (`main.rs` only wires it
//!   up); `run` with its signals, reloads and requests; `once`, an in-process resync, and each
//!   table's loop on its schedule; the daemon's answers to `status` over a local socket;
//!   [`asked`], a resync as a person asks for it (command line or console).
//! - [`check`], [`status`], [`rejects`], [`demo`]: the operator's views and actions;
//!   [`export`], a whole table as named, manifested files for a format-file import;
//!   [`report`], a month's exchanges per table and day against the category's limit.
//! - [`compliance`], [`alert`]: whether each table meets its category's frequency (deadline,
//!   on time / at risk / late); alerts to webhooks, WeCom and DingTalk robots and e-mail,
//!   throttled, closed on recovery, sent in the background.
//! - [`ctx`]: what the tasks share (configuration, front-end database, exchange, state
//!   store, the signal to stop), and which side each table reads and writes.
//! - [`probe`], [`watch`]: questions many tables share, asked of a database at most once a
//!   second — its time, open transactions and ids; which quiet tables have something new
//!   (and waking those).
//! - [`job`]: one table's cycle (read -> validate -> map -> deliver -> commit watermark) per
//!   change-detection mode, its full resync, and rejects sent again on request.
//! - [`feedback`]: the province's verdicts read through the exchange's receipts, linked and
//!   recorded; the mirror of the rejects ledger.
//! - [`sink`]: how a batch reaches the other side and how its verdicts come back: the
//!   `Sink` and `Receipts` seam, its own types (outgoing batch, refusal, verdict,
//!   capabilities), and one module per kind ([`sink::database`], [`sink::http`],
//!   [`sink::file`]).
//! - [`sim`]: `exchange-sim`, a reference receiver of the HTTP exchange's built-in envelope
//!   (signatures, tokens, rules, newer-wins store, feedback feed, faults), for rehearsals
//!   and the tests; it reuses the sink's signer and nothing of the job.
//! - [`db`]: one module per engine behind [`db::Db`]; [`db::dialect`] is the only place that
//!   builds SQL text, from validated [`ident::Ident`]s, always binding values.
//! - [`mapping`], [`validate`], [`watermark`], [`schedule`]: source row -> exchange row; the
//!   quality rules; watermark positions and their order; schedules with jitter.
//! - [`typefit`]: the type matrix — whether a source column's values fit an exchange
//!   column (exact, converted, narrowing, refused), and the conversions (bit strings).
//! - [`state`]: the embedded SQLite state store — watermarks, batch ledger, digests, rejects
//!   ledger and its history, resync progress. Only the job, the feedback loop and the
//!   commands write to it; sources and sinks never do.
//! - [`health`], [`metrics`]: `/metrics`, `/healthz` and the patrol; the metrics' names.
//! - [`console`]: the web console for department staff (overview, a table's chart, rejects
//!   to send again, resyncs), HTML and `/api/` JSON; [`i18n`]: the English and Chinese
//!   catalogue it shares with the command line.
//! - [`config`]: the TOML file — schema, secrets, validation that reports every problem.
//! - [`ident`], [`value`], [`secret`]: identifiers and column descriptions, cell values and
//!   their exact conversions, secrets that never print — shared by everything above.
//! - [`lock`], [`logging`], [`error`]: one agent per state directory; the log; the exit
//!   codes.

pub mod alert;
pub mod asked;
pub mod audit;
pub mod check;
pub mod cipher;
pub mod cli;
pub mod compliance;
pub mod config;
pub mod console;
pub mod control;
pub mod ctx;
pub mod daemon;
pub mod db;
pub mod demo;
pub mod error;
pub mod export;
pub mod exposure;
pub mod feedback;
pub mod health;
pub mod i18n;
pub mod ident;
pub mod job;
pub mod lock;
pub mod logging;
pub mod mapping;
pub mod metrics;
pub mod probe;
pub mod purge;
pub mod rejects;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod secret;
pub mod shape;
pub mod sim;
pub mod sink;
pub mod state;
pub mod status;
pub mod translate;
pub mod typefit;
pub mod validate;
pub mod value;
pub mod watch;
pub mod watermark;
