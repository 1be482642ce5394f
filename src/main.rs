//! The `orderwatch` binary: parse the command line, set up logging, run one
//! command, turn its outcome into an exit code (0 ok, 1 runtime, 2 config/usage).

use std::process::ExitCode;

use clap::Parser;
use orderwatch::cli::{Cli, Command, LogFormat};
use orderwatch::cmd;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let config = cli.config.as_deref();
    let outcome = runtime.block_on(async {
        match &cli.command {
            Command::Run(args) => cmd::run::run(config, args).await,
            Command::Check => cmd::check::run(config),
            Command::Cancel(args) => cmd::cancel::run(config, args).await,
            Command::Events(args) => cmd::events::run(config, args),
            Command::Deliveries(args) => cmd::ledger::deliveries(config, args),
            Command::Redeliver(args) => cmd::ledger::redeliver(config, args),
            Command::Simulate(args) => cmd::simulate::run(args).await,
            Command::Demo(args) => cmd::demo::run(args).await,
        }
    });
    // Background tasks (HTTP pools, the metrics endpoint) need not finish.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
