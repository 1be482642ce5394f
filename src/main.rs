//! The `orderwatch` binary: parse the command line, set up logging, run one
//! command, turn its outcome into an exit code (0 ok, 1 runtime, 2 config/usage).

use std::process::ExitCode;

use clap::Parser;
use orderwatch::cli::{Cli, Command};
use orderwatch::{cmd, logging};

fn main() -> ExitCode {
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
    let config = cli.config.as_deref();
    let outcome = runtime.block_on(async {
        match &cli.command {
            Command::Run(args) => cmd::run::run(config, args).await,
            Command::Check => cmd::check::run(config).await,
            Command::Cancel(args) => cmd::cancel::run(config, args).await,
            Command::Events(args) => cmd::events::run(config, args).await,
            Command::Deliveries(args) => cmd::ledger::deliveries(config, args).await,
            Command::Redeliver(args) => cmd::ledger::redeliver(config, args).await,
            Command::Simulate(args) => cmd::simulate::run(args).await,
            Command::Demo(args) => cmd::demo::run(args).await,
            Command::Completions(args) => cmd::completions::run(args.shell),
        }
    });
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

/// Prints a command-line error with the usage of the command it concerns
/// (clap leaves usage out of some errors, such as a malformed value), exit 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::CommandFactory;
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let mut rendered = e.render().to_string();
    if !rendered.contains("Usage:") {
        let mut cmd = Cli::command();
        cmd.build();
        let args: Vec<String> = std::env::args().skip(1).collect();
        let sub = cmd
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .find(|name| args.iter().any(|a| a == name));
        let usage =
            match sub.and_then(|name| cmd.find_subcommand_mut(&name).map(|c| c.render_usage())) {
                Some(u) => u,
                None => cmd.render_usage(),
            };
        rendered.push_str(&format!("\n{usage}\n"));
    }
    // Under systemd a usage error is an error too (a typo in a drop-in).
    eprint!(
        "{}",
        logging::prefixed(logging::Stderr::detect(), &rendered)
    );
    ExitCode::from(2)
}
