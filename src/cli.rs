//! The command line: the verbs of DESIGN.md and their dispatch.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, DEFAULT_PATH};
use crate::error::AppError;

/// Exchange a department's front-end database (前置库) with the provincial exchange.
#[derive(Debug, Parser)]
#[command(name = "frontdb-agent", version, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, short = 'c', global = true, env = "FRONTDB_CONFIG", default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run as a daemon: every table on its schedule (what systemd runs).
    Run {
        /// Start with a full resync of every enabled table.
        #[arg(long)]
        full_resync: bool,
    },
    /// Exchange everything committed before the call, then exit (0 when every table succeeded).
    Once {
        /// Only this table (its `name`, by default its source table).
        #[arg(long)]
        table: Option<String>,
    },
    /// Per table: watermark, last run, next run, rows exchanged, open rejects.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration, connect to both databases, confirm every table and column.
    Check {
        /// Only validate the configuration; connect to nothing (systemd's ExecStartPre).
        #[arg(long)]
        offline: bool,
        /// Rows of each table read, converted and offered to the exchange database in a
        /// transaction rolled back, to say which would be quarantined or refused; 0: none.
        #[arg(long, value_name = "N", default_value_t = crate::check::DEFAULT_SAMPLE)]
        sample: usize,
    },
    /// Full resync: every row again, rows gone from the source removed at the exchange. Asks
    /// the running daemon; when none runs, does it here (with a progress bar on a terminal).
    Resync {
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
    },
    /// A guided tour on embedded databases: exchange, quarantine, a rejection, corrections,
    /// resubmission and status. Needs no server and no configuration.
    Demo {
        /// Keep the demo's databases and state here (default: a temporary directory, removed).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// A reference receiver of the HTTP exchange (built-in envelope), to rehearse against;
    /// `--config` names the receiver's own file, not the agent's.
    ExchangeSim,
    /// A whole table as files named by the 15-character rule, each with its manifest, for
    /// the platform's format-file import of historical data.
    Export {
        /// The table (its `name`, by default its source table).
        #[arg(long)]
        table: String,
        /// csv or jsonl.
        #[arg(long, value_parser = ["csv", "jsonl"])]
        format: String,
        /// The directory the files are written to (created when missing).
        #[arg(long)]
        out: PathBuf,
        /// utf-8 or gb18030; default: the file exchange's encoding, else utf-8.
        #[arg(long, value_parser = ["utf-8", "gb18030"])]
        encoding: Option<String>,
        /// Most records in one file.
        #[arg(long, default_value_t = 1_000_000)]
        rows_per_file: u64,
    },
    /// Forget, for good, what the retention no longer keeps (acknowledged batches, cleared
    /// rejects, digests of tables no longer configured), and say how much of each went.
    Purge {
        /// Remove records older than this date (2026-01-31) instead of the retention's cut-offs.
        #[arg(long)]
        before: Option<String>,
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// The month's evidence of the exchange frequencies, from the batch ledger: per table and
    /// day the exchanges, rows, deletes and rejects, and the longest gap against the
    /// category's limit.
    Report {
        /// The month, YYYY-MM (in the agent's time zone).
        #[arg(long)]
        month: String,
        /// CSV on standard output instead of text.
        #[arg(long)]
        csv: bool,
    },
    /// Rows that were not delivered, with every reason.
    Rejects {
        #[command(subcommand)]
        action: Option<RejectsCommand>,
        /// Machine-readable output.
        #[arg(long, global = true)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RejectsCommand {
    /// Every rejected row, newest first (the default).
    List {
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
        /// Only rows in this state: open, resubmitted or cleared.
        #[arg(long, value_parser = ["open", "resubmitted", "cleared"])]
        state: Option<String>,
    },
    /// One rejected row: its values, every reason, its history.
    Show {
        /// The number `rejects list` shows.
        id: i64,
    },
    /// Send rejected rows again now (their current values at the source), without waiting
    /// for them to change.
    Resubmit {
        /// One reject, by the number `rejects list` shows.
        id: Option<i64>,
        /// Every open reject of this table.
        #[arg(long, conflicts_with = "id")]
        table: Option<String>,
        /// Every open reject.
        #[arg(long, conflicts_with_all = ["id", "table"])]
        all: bool,
    },
    /// Write the rejects as CSV to standard output, for the business team.
    Export {
        /// CSV (the only format).
        #[arg(long, required = true)]
        csv: bool,
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
        /// Only rows in this state.
        #[arg(long, value_parser = ["open", "resubmitted", "cleared"])]
        state: Option<String>,
        /// Start with a byte-order mark, so that Excel opens Chinese text correctly.
        #[arg(long)]
        bom: bool,
    },
}

impl Command {
    /// Whether the command is for a person reading a terminal (quiet logs) rather than a job.
    pub fn is_report(&self) -> bool {
        matches!(
            self,
            Command::Status { .. }
                | Command::Check { .. }
                | Command::Export { .. }
                | Command::Rejects { .. }
                | Command::Report { .. }
                | Command::Demo { .. }
        )
    }
}

/// The configuration the command needs (`demo` needs none).
pub fn load(cli: &Cli) -> Result<Option<Config>, AppError> {
    match cli.command {
        Command::Demo { .. } | Command::ExchangeSim => Ok(None),
        _ => Ok(Some(config::load(&cli.config)?)),
    }
}

/// Set up the log for the command, in the configured format.
pub fn logging(cli: &Cli, cfg: Option<&Config>) {
    let level = match cli.command {
        Command::Demo { .. } => "error",
        _ if cli.command.is_report() => "warn",
        _ => "info",
    };
    let format = cfg.map_or(crate::config::LogFormat::Auto, |c| c.agent.log_format);
    crate::logging::init(format, level);
}

/// Run a parsed command line. Errors never contain a secret's value.
pub async fn dispatch(cli: Cli, cfg: Option<Config>) -> Result<(), AppError> {
    let Some(cfg) = cfg else {
        return match cli.command {
            Command::Demo { dir } => crate::demo::run(dir).await,
            Command::ExchangeSim => crate::sim::run(&cli.config).await,
            _ => Err(AppError::Usage("this command needs a configuration".into())),
        };
    };
    let secrets = cfg.secrets();
    let result = match cli.command {
        Command::Run { full_resync } => crate::daemon::run(cfg, full_resync).await,
        Command::Once { table } => crate::runner::once(cfg, table.as_deref()).await,
        Command::Status { json } => crate::status::status(&cfg, json).await,
        Command::Report { month, csv } => crate::report::report(&cfg, &month, csv).await,
        Command::Check { offline: true, .. } => {
            println!(
                "{}",
                crate::tc!(
                    "check-valid",
                    file = cfg.file.display().to_string(),
                    n = cfg.tables.len()
                )
            );
            for w in crate::exposure::warnings(&cfg) {
                println!("{}", crate::tc!("check-warning", warning = w));
            }
            Ok(())
        }
        Command::Check {
            offline: false,
            sample,
        } => crate::check::check(cfg, sample).await,
        Command::Demo { .. } | Command::ExchangeSim => Err(AppError::Usage(
            "this command reads no agent configuration".into(),
        )),
        Command::Resync { table } => {
            crate::asked::resync(
                std::sync::Arc::new(cfg),
                &crate::audit::local_user(),
                crate::i18n::Lang::cli(),
                table.as_deref(),
                &mut |line| println!("{line}"),
            )
            .await
        }
        Command::Export {
            table,
            format,
            out,
            encoding,
            rows_per_file,
        } => {
            let req = crate::export::Request {
                table: &table,
                format: config::file::FileFormat::parse(&format)
                    .unwrap_or(config::file::FileFormat::Csv),
                encoding: encoding
                    .as_deref()
                    .and_then(config::file::FileEncoding::parse),
                out: &out,
                rows_per_file,
            };
            crate::export::run(cfg, req).await
        }
        Command::Purge { before, dry_run } => {
            crate::purge::run(&cfg, before.as_deref(), dry_run).await
        }
        Command::Rejects { action, json } => match action {
            None => crate::rejects::list(&cfg, None, None, json).await,
            Some(RejectsCommand::List { table, state }) => {
                crate::rejects::list(&cfg, table.as_deref(), state.as_deref(), json).await
            }
            Some(RejectsCommand::Show { id }) => crate::rejects::show(&cfg, id, json).await,
            Some(RejectsCommand::Resubmit { id, table, all }) => {
                crate::rejects::resubmit(cfg, id, table.as_deref(), all).await
            }
            Some(RejectsCommand::Export {
                csv: _,
                table,
                state,
                bom,
            }) => crate::rejects::export(&cfg, table.as_deref(), state.as_deref(), bom).await,
        },
    };
    result.map_err(|e| scrub(e, &secrets))
}

/// Replace any secret value that made it into an error message.
fn scrub(e: AppError, secrets: &[String]) -> AppError {
    let clean = |s: String| {
        secrets
            .iter()
            .filter(|x| x.len() >= 3)
            .fold(s, |acc, x| acc.replace(x.as_str(), "***"))
    };
    match e {
        AppError::Usage(m) => AppError::Usage(clean(m)),
        AppError::Runtime(m) => AppError::Runtime(clean(m)),
        other => other,
    }
}
