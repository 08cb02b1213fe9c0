use clap::Parser;
use frontdb_agent::cli::{self, Cli};

/// Rows are read, mapped and written on different threads: an allocator that frees across
/// threads cheaply.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` (mimalloc.h, `mi_option_e`). Its arenas are committed lazily
/// (`MI_DEFAULT_ARENA_EAGER_COMMIT=0` in .cargo/config.toml).
const MI_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // Memory is committed as it is used, and pages left free are given back after 100 ms
    // (mimalloc waits a second by default; `MIMALLOC_PURGE_DELAY` in the environment still
    // decides). Giving them back at once costs a page fault for nearly every page a batch uses
    // again; after 10 ms a third of the agent's system time still went to page faults in a
    // full exchange. Waiting 100 ms keeps its footprint about 50 MB at 5,000 rows a batch, a
    // second about 75 MB.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: a plain option setter of the allocator, called before any thread starts.
        unsafe {
            libmimalloc_sys::mi_option_set(MI_PURGE_DELAY, 100);
        }
    }
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
