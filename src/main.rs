use std::io::IsTerminal;

use clap::Parser;
use frontdb_agent::cli::{Cli, dispatch};
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = Cli::parse();
    let default = if cli.command.is_report() {
        "warn"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_env("FRONTDB_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{default},sqlx=warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("frontdb-agent: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(dispatch(cli)) {
        eprintln!("frontdb-agent: {e}");
        std::process::exit(e.exit_code());
    }
}
