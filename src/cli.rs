//! Command-line definitions (clap). Nothing here does any work.

use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// Watch a DigiCert CertCentral account for certificate-order status changes
/// and deliver each new transition as a CloudEvent to webhooks, stdout or files.
#[derive(Debug, Parser)]
#[command(name = "orderwatch", version, propagate_version = true)]
#[command(
    after_help = "Try `orderwatch demo` to see it work against a built-in simulator.\n\
Exit codes: 0 ok, 1 runtime failure, 2 bad configuration or usage."
)]
pub struct Cli {
    /// Configuration file [default: $ORDERWATCH_CONFIG, else /etc/orderwatch/orderwatch.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Log format on stderr. The level comes from RUST_LOG (default: info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: poll CertCentral on schedule and deliver to every sink.
    Run(RunArgs),
    /// Validate the configuration, secrets, sinks and store; print a summary.
    Check(CheckArgs),
    /// Cancel a pending (or waiting_pickup) order through the API; with
    /// [wake] set, also wake the local daemon to report it at once.
    Cancel(CancelArgs),
    /// List the transitions recorded in the store (works while the daemon runs).
    Events(EventsArgs),
    /// Show the per-sink delivery ledger: attempts, next attempt, last error.
    Deliveries(DeliveriesArgs),
    /// Queue events again for one sink (and lift a pause after 410 Gone).
    Redeliver(RedeliverArgs),
    /// Send one test event through a sink (signed, as real events are);
    /// print what the receiver answered. Records nothing.
    #[command(after_help = TEST_SINK_HELP)]
    TestSink(TestSinkArgs),
    /// Serve a stand-in for the CertCentral endpoints, for demos and tests.
    Simulate(SimulateArgs),
    /// Simulator + daemon + stdout sink in one process, no configuration needed.
    Demo(DemoArgs),
    /// Manage the store itself (move it between SQLite and PostgreSQL).
    #[command(subcommand)]
    Store(StoreCommand),
    /// Print a shell completion script for bash, zsh or fish.
    #[command(after_help = COMPLETIONS_HELP)]
    Completions(CompletionsArgs),
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy the configured store into another one: transitions, the cursor,
    /// orders, the delivery ledger, sink pauses and cursors.
    #[command(after_help = "\
Switching an install from SQLite to PostgreSQL (or back):
  1. systemctl stop orderwatch      (the copy refuses a store a daemon holds)
  2. orderwatch store copy --to postgresql://orderwatch@db.example.net/orderwatch?sslmode=verify-full \\
         --password-file /etc/orderwatch/postgres-password
  3. in the config, replace [store] path with url (and password_env / password_file)
  4. systemctl start orderwatch     (it carries on from the copied cursor and ledger)
The target must be empty unless --force; it is written in one transaction.")]
    Copy(CopyArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("password").args(["password_env", "password_file"])))]
pub struct CopyArgs {
    /// Where to copy to: a postgresql://ROLE@HOST:PORT/DATABASE URL (libpq's
    /// sslmode and sslrootcert honoured; no password in it) or a SQLite file path.
    #[arg(long, value_name = "URL|PATH")]
    pub to: String,
    /// Replace whatever the target holds (refused by default if it is not empty).
    #[arg(long)]
    pub force: bool,
    /// PostgreSQL target: read its password from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
    /// PostgreSQL target: read its password from this file.
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
}

/// Where each shell looks for completions; the .deb installs them there.
const COMPLETIONS_HELP: &str = "\
The .deb package installs all three already. To install one by hand:
  orderwatch completions bash > /usr/share/bash-completion/completions/orderwatch
  orderwatch completions zsh > /usr/local/share/zsh/site-functions/_orderwatch
  orderwatch completions fish > ~/.config/fish/completions/orderwatch.fish
then start a new shell. For the current bash only: source <(orderwatch completions bash)";

#[derive(Debug, Args)]
pub struct RunArgs {
    /// One poll cycle, deliver everything pending to every sink, then exit.
    #[arg(long)]
    pub once: bool,
    /// With --once: stop waiting for retries after this long (e.g. "2m");
    /// undelivered events stay pending for the next run and the exit code is 1.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "once")]
    pub drain_timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also send one authenticated request to CertCentral and connect to
    /// every sink's destination (TCP and TLS; nothing is delivered).
    /// Failures there exit 1. Without it, check sends nothing.
    #[arg(long)]
    pub online: bool,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The order to cancel (a positive number).
    #[arg(value_parser = clap::value_parser!(u64).range(1..))]
    pub order_id: u64,
    /// Why the order is canceled (required by CertCentral).
    #[arg(long, value_parser = non_blank)]
    pub note: String,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only this order.
    #[arg(long, value_name = "ID")]
    pub order: Option<i64>,
    /// Only this status (e.g. issued).
    #[arg(long, value_name = "S")]
    pub status: Option<String>,
    /// Only transitions first seen within this long (e.g. "1h", "7d").
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// At most this many, newest first.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,
    /// One CloudEvent JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    Pending,
    Delivered,
    Dead,
}

#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    /// Only this sink.
    #[arg(long, value_name = "NAME")]
    pub sink: Option<String>,
    /// Only deliveries in this state.
    #[arg(long, value_enum)]
    pub state: Option<StateArg>,
    /// At most this many, newest first.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Delete dead deliveries given up more than --older-than ago (of
    /// --sink, or of every sink) instead of listing. File and stdout sinks
    /// keep theirs until redelivered.
    #[arg(long, requires = "older_than", conflicts_with_all = ["state", "json"])]
    pub purge_dead: bool,
    /// With --purge-dead: how old a dead delivery must be (e.g. "30d").
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "purge_dead")]
    pub older_than: Option<Duration>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["event", "dead", "since"])))]
pub struct RedeliverArgs {
    /// The sink to deliver to again.
    #[arg(long, value_name = "NAME")]
    pub sink: String,
    /// One event, by id ("264:canceled").
    #[arg(long, value_name = "ID")]
    pub event: Option<String>,
    /// Every dead delivery of the sink.
    #[arg(long)]
    pub dead: bool,
    /// Every event first seen within this long (e.g. "2h").
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<Duration>,
}

/// What a receiver gets from `test-sink`.
const TEST_SINK_HELP: &str = "\
The test event is a CloudEvent of type \"orderwatch.test\" whose id starts with
\"test:\" (no transition's id does), sent the way real events are: signed
webhook headers, the exec command with ORDERWATCH_* variables (no order or
status), a line in the file. It is not recorded and not retried.
Exit codes: 0 delivered, 1 not delivered, 2 unknown sink or bad configuration.";

#[derive(Debug, Args)]
pub struct TestSinkArgs {
    /// The sink to test, by its name in the configuration.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Seed of the random status changes (same seed, same story).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Random status changes per minute.
    #[arg(long, value_name = "PER_MIN", default_value_t = 30.0)]
    pub rate: f64,
    /// Orders that exist at start, changed within the last hour.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub orders: usize,
    /// The X-DC-DEVKEY the simulator accepts.
    #[arg(long, value_name = "KEY", default_value = "sim-key")]
    pub api_key: String,
    /// Orders per status-changes page [default: 1000]. Like CertCentral,
    /// the simulator pages every answer and enforces DigiCert's rate limits
    /// (100 requests per 5 s and 1000 per 5 min per key, answered with 429).
    #[arg(long, value_name = "N")]
    pub page_size: Option<usize>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seed of the simulator's random status changes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated status changes per minute.
    #[arg(long, value_name = "PER_MIN", default_value_t = 60.0)]
    pub rate: f64,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to print the completion script for.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// The shells whose completion directories the package fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// The longest span a flag takes, like any duration in the config: longer
/// is a typo, and would not fit the store's clock arithmetic.
const MAX_SPAN: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{e}; expected e.g. \"30s\", \"10m\", \"7d\""))?;
    if d > MAX_SPAN {
        return Err("longer than 100 years; expected e.g. \"2h\", \"7d\"".to_string());
    }
    Ok(d)
}

fn non_blank(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("must not be empty".to_string())
    } else {
        Ok(s.to_string())
    }
}

/// The text of a command-line error, with the usage of the command it
/// concerns (clap leaves usage out of some errors, such as a malformed
/// value). `None` for `--help` and `--version`, which are not errors.
/// `args` are the arguments as given, to find which command was meant.
pub fn usage_error_text(e: &clap::Error, args: &[String]) -> Option<String> {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        return None;
    }
    let mut rendered = e.render().to_string();
    if !rendered.contains("Usage:") {
        let mut cmd = Cli::command();
        cmd.build();
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
    Some(rendered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn cancel_refuses_bad_ids_and_blank_notes() {
        assert!(Cli::try_parse_from(["orderwatch", "cancel", "abc", "--note", "x"]).is_err());
        assert!(Cli::try_parse_from(["orderwatch", "cancel", "0", "--note", "x"]).is_err());
        assert!(Cli::try_parse_from(["orderwatch", "cancel", "5", "--note", "  "]).is_err());
        assert!(Cli::try_parse_from(["orderwatch", "cancel", "5"]).is_err());
        assert!(Cli::try_parse_from(["orderwatch", "cancel", "5", "--note", "dup"]).is_ok());
    }

    #[test]
    fn redeliver_needs_exactly_one_selector() {
        assert!(Cli::try_parse_from(["orderwatch", "redeliver", "--sink", "a"]).is_err());
        assert!(
            Cli::try_parse_from([
                "orderwatch",
                "redeliver",
                "--sink",
                "a",
                "--dead",
                "--since",
                "1h"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["orderwatch", "redeliver", "--sink", "a", "--dead"]).is_ok());
    }

    #[test]
    fn store_copy_needs_a_target_and_one_password_source() {
        assert!(Cli::try_parse_from(["orderwatch", "store"]).is_err());
        assert!(Cli::try_parse_from(["orderwatch", "store", "copy"]).is_err());
        let both = [
            "orderwatch",
            "store",
            "copy",
            "--to",
            "x.db",
            "--password-env",
            "A",
            "--password-file",
            "b",
        ];
        assert!(Cli::try_parse_from(both).is_err());
        assert!(Cli::try_parse_from(["orderwatch", "store", "copy", "--to", "x.db"]).is_ok());
    }

    #[test]
    fn drain_timeout_needs_once() {
        assert!(Cli::try_parse_from(["orderwatch", "run", "--drain-timeout", "1m"]).is_err());
        assert!(
            Cli::try_parse_from(["orderwatch", "run", "--once", "--drain-timeout", "1m"]).is_ok()
        );
    }
}
