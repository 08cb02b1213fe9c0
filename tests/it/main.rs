//! The integration tests, as one test binary (one link instead of one per file). They drive
//! the built `frontdb-agent` binary and the library against the real PostgreSQL and MariaDB
//! servers that `scripts/test.sh` starts; every test works in databases of its own
//! (`common`).
//!
//! Run them all with `cargo test --test it`, one file's with `cargo test --test it faults::`,
//! one test by a part of its name. Tests that need a server that is not here (SQL Server,
//! Oracle) are ignored unless asked for: see `engines_live.rs`.
//!
//! Randomness is seeded: a test that draws random numbers prints its seed, and
//! `FRONTDB_TEST_SEED=<seed>` repeats that run.

mod common;

mod alerts;
mod cli;
mod compliance;
mod console;
mod daemon;
mod downstream;
mod engines_live;
mod examples;
mod faults;
mod files;
mod files_kill;
mod files_sftp;
mod http;
mod http_qcvn;
mod idle;
mod key_shapes;
mod long_transactions;
mod modes;
#[cfg(feature = "odbc")]
mod odbc_live;
mod operators;
mod order;
mod packaging;
mod passthrough;
mod pg_paths;
mod protect;
mod rejects;
mod rejects_more;
mod reread;
mod resync_notice;
mod service;
mod severity;
mod shaping;
mod soap;
mod tls;
mod translate;
mod type_matrix;
mod types;
