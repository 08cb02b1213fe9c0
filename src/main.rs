use clap::Parser;
use frontdb_agent::cli::{self, Cli};

fn main() {
    let cli = Cli::parse();
    let cfg = match cli::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("frontdb-agent: {e}");
            std::process::exit(e.exit_code());
        }
    };
    cli::logging(&cli, cfg.as_ref());
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
    if let Err(e) = runtime.block_on(cli::dispatch(cli, cfg)) {
        eprintln!("frontdb-agent: {e}");
        std::process::exit(e.exit_code());
    }
}
