//! The `orderwatch` binary: parse the command line, set up logging, run one
//! command, turn its outcome into an exit code (0 ok, 1 runtime, 2 config/usage).

use std::process::ExitCode;

use clap::Parser;
use orderwatch::cli::{self, Cli};
use orderwatch::{cmd, logging};

fn main() -> ExitCode {
    return_large_buffers_to_the_system();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let stderr = logging::Stderr::detect();
    logging::init(cli.log_format, stderr);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let e = anyhow::Error::new(e).context("cannot start the async runtime");
            logging::fatal(cli.log_format, stderr, 1, &e);
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(cmd::dispatch(&cli));
    // Background tasks (HTTP pools, the metrics endpoint) need not finish.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            logging::fatal(cli.log_format, stderr, failure.code, &failure.error);
            ExitCode::from(failure.code)
        }
    }
}

/// A catch-up allocates big, short-lived buffers on several threads (the
/// answer's orders, 16k-event batches, ledger reads). glibc serves them from
/// per-thread arenas once its adaptive mmap threshold has grown, and an
/// arena keeps what it once held: a daemon that caught up a million orders
/// would hold ~100 MiB for good. A fixed threshold makes every allocation of
/// 128 KiB or more its own mapping, returned to the system when freed, so
/// memory follows what is in use (and the threshold stops adapting).
fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Prints a command-line error with the usage of the command it concerns,
/// exit 2; `--help` and `--version` print and exit 0.
fn usage_error(e: clap::Error) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(rendered) = cli::usage_error_text(&e, &args) else {
        e.exit();
    };
    // Under systemd a usage error is an error too (a typo in a drop-in).
    eprint!(
        "{}",
        logging::prefixed(logging::Stderr::detect(), &rendered)
    );
    ExitCode::from(2)
}
