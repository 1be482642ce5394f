//! One module per command. Each returns `Result<(), Failure>`; `main` turns
//! a failure into its message and exit code.

use std::path::{Path, PathBuf};

use crate::cli::{Cli, Command};
use crate::config::{self, Config};
use crate::store::{self, SharedStore};

pub mod cancel;
pub mod check;
pub mod completions;
pub mod demo;
pub mod events;
pub mod ledger;
pub mod run;
pub mod simulate;
pub mod store_copy;
pub mod test_sink;

/// Runs the command `cli` names.
pub async fn dispatch(cli: &Cli) -> Result<(), Failure> {
    let config = cli.config.as_deref();
    match &cli.command {
        Command::Run(args) => run::run(config, args).await,
        Command::Check(args) => check::run(config, args.online).await,
        Command::Cancel(args) => cancel::run(config, args).await,
        Command::Events(args) => events::run(config, args).await,
        Command::Deliveries(args) => ledger::deliveries(config, args).await,
        Command::Redeliver(args) => ledger::redeliver(config, args).await,
        Command::Simulate(args) => simulate::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Store(command) => store_copy::run(config, command).await,
        Command::TestSink(args) => test_sink::run(config, args).await,
        Command::Completions(args) => completions::run(args.shell),
    }
}

/// A command failed: 2 for bad configuration or usage, 1 for everything else.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: 2,
            error: error.into(),
        }
    }
    pub fn runtime(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: 1,
            error: error.into(),
        }
    }
}

/// The config file to use for this invocation.
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    config::locate(flag, &config::process_env)
}

/// Loads the config; failures are usage errors (exit 2).
pub fn load_config(flag: Option<&Path>) -> Result<Config, Failure> {
    Config::load(&config_path(flag)).map_err(Failure::usage)
}

/// Opens the configured store for a CLI command (no daemon lock: WAL lets
/// it work beside a running daemon).
pub async fn open_store(config: &Config) -> Result<SharedStore, Failure> {
    store::open(&config.store).await.map_err(Failure::runtime)
}

/// A unix-ms timestamp for tables: `2026-11-24 10:02:03Z`.
pub fn show_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".to_string())
}

/// Prints rows as aligned columns.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}
