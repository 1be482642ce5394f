//! Performance targets of orderwatch, measured side by side in one run.
//!
//! ```text
//! cargo bench -p orderwatch-bench               # every target (about 15 minutes)
//! cargo bench -p orderwatch-bench -- --quick    # small sizes, one run (CI)
//! cargo bench -p orderwatch-bench -- --help     # the options ([`USAGE`])
//! ```
//!
//! Timings on shared machines are noisy, so every target is a ratio against
//! a reference measured in the same run on the same machine (or a fixed
//! bound for memory and latency), best of R runs; see [`report`] for when a
//! target counts as missed. Exit status: 0 when every target holds, 1 when
//! one is missed or the benchmark itself broke, 2 on a bad option (an
//! unknown one, or a value that is not a number).
//!
//! Each row is one function (`ingest::rows`, `history::rows`, ...) that
//! measures and pushes [`report::Row`]s; a new row (a PostgreSQL store,
//! NATS publishes, change-to-delivery latency) is a new module, its name in
//! [`ROWS`] and one line in [`run`]. orderwatch and the Python reference run as child processes,
//! so their wall time, peak RSS and CPU time are theirs alone; answers are
//! served from memory by [`answer::AnswerServer`].

mod answer;
mod child;
mod daemon;
mod floor;
mod history;
mod ingest;
mod latency;
mod nats;
mod plot;
mod postgres;
mod report;
mod webhook;

/// The throwaway PostgreSQL server of the store's tests, for the PostgreSQL rows.
#[path = "../../src/store/postgres/testdb.rs"]
mod testdb;

use std::path::PathBuf;
use std::time::Duration;

use report::Report;

/// What to measure, and how hard.
pub struct Args {
    pub quick: bool,
    pub runs: usize,
    pub sizes: Vec<usize>,
    pub history: u64,
    pub webhook_events: usize,
    pub idle: Duration,
    pub idle_interval: &'static str,
    pub only: Option<Vec<String>>,
    pub picture: Option<PathBuf>,
}

/// The rows `--only` may name, in the order they run.
const ROWS: [&str; 8] = [
    "ingest", "history", "webhook", "nats", "daemon", "postgres", "latency", "idle",
];

/// What `--help` prints.
const USAGE: &str = "\
usage: cargo bench -p orderwatch-bench [-- OPTIONS]

Measures orderwatch's performance targets side by side in one run and
prints the table; exit status 0 when every target holds, 1 when one is
missed or the benchmark broke, 2 on a bad option.

options:
  --quick               one run at small sizes (what CI runs): 200000 orders,
                        a 1000000-transition store, 5000 webhook events, 30 s idle
  --sizes N,N,...       orders per ingest answer (default 50000,200000,1000000)
  --runs R              runs per row, the best counts (default 3)
  --history N           transitions in the long-lived store (default 10000000)
  --webhook-events N    events per webhook and NATS run (default 20000)
  --idle-seconds S      how long the idle daemon's CPU is measured (default 600)
  --only ROW,ROW,...    only these rows: ingest, history, webhook, nats,
                        daemon, postgres, latency, idle
  --picture PATH        also draw the SVG at PATH (relative to the checkout)
  --serve ORDERS        only serve that answer on loopback, for profiling by hand
  -h, --help            this text
";

/// What the command line asks for.
enum Command {
    Measure(Args),
    Serve(usize),
    BarePost { url: String, events: usize },
    Help,
}

impl Args {
    fn defaults(quick: bool) -> Args {
        if quick {
            Args {
                quick,
                runs: 1,
                sizes: vec![200_000],
                history: 1_000_000,
                webhook_events: 5_000,
                idle: Duration::from_secs(30),
                idle_interval: "5s",
                only: None,
                picture: None,
            }
        } else {
            Args {
                quick,
                runs: 3,
                sizes: vec![50_000, 200_000, 1_000_000],
                history: 10_000_000,
                webhook_events: 20_000,
                idle: Duration::from_secs(600),
                idle_interval: "1m",
                only: None,
                picture: None,
            }
        }
    }

    fn wants(&self, row: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|r| r == row))
    }
}

/// A whole number, `_` allowed between digits; the error names the option.
fn number(flag: &str, value: &str) -> Result<u64, String> {
    value
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{flag}: {value:?} is not a whole number"))
}

/// Reads the command line (without the program's name). Unknown options
/// and bad values are errors: a benchmark that silently ignored `--runs x`
/// would report numbers measured some other way than asked.
fn parse(argv: &[String]) -> Result<Command, String> {
    let mut a = Args::defaults(argv.iter().any(|a| a == "--quick"));
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .map(String::as_str)
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            // cargo bench passes --bench to every bench target.
            "--quick" | "--bench" => {}
            "--sizes" => {
                let v = value()?;
                a.sizes = v
                    .split(',')
                    .map(|n| match number("--sizes", n)? {
                        0 => Err("--sizes: an answer needs at least one order".to_string()),
                        n => Ok(n as usize),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--runs" => a.runs = number(flag, value()?)?.max(1) as usize,
            "--history" => a.history = number(flag, value()?)?.max(2_000),
            "--webhook-events" => a.webhook_events = number(flag, value()?)?.max(2) as usize,
            "--idle-seconds" => a.idle = Duration::from_secs(number(flag, value()?)?),
            "--only" => {
                let rows: Vec<String> = value()?.split(',').map(str::to_string).collect();
                if let Some(bad) = rows.iter().find(|r| !ROWS.contains(&r.as_str())) {
                    return Err(format!(
                        "--only: no row {bad:?}; the rows are {}",
                        ROWS.join(", ")
                    ));
                }
                a.only = Some(rows);
            }
            // Relative to the checkout, not to bench/ where cargo runs us.
            "--picture" => a.picture = Some(child::workspace().join(value()?)),
            "--serve" => return Ok(Command::Serve(number(flag, value()?)? as usize)),
            // Internal: the benchmark starts itself so to run the bare loop.
            "--bare-post" => {
                let url = value()?.to_string();
                let events = number(flag, value()?)? as usize;
                return Ok(Command::BarePost { url, events });
            }
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    Ok(Command::Measure(a))
}

/// Measures every row the arguments ask for.
async fn run(a: &Args, report: &mut Report) {
    // The idle daemon runs through everything else: its CPU time is its own.
    let idle = if a.wants("idle") {
        Some(daemon::IdleCpu::start(a.idle, a.idle_interval).await)
    } else {
        None
    };
    if a.wants("ingest") {
        ingest::rows(a, report).await;
    }
    if a.wants("history") {
        history::rows(a.runs, a.history, report).await;
    }
    let webhook = if a.wants("webhook") {
        Some(webhook::rows(a.runs, a.webhook_events, report).await)
    } else {
        None
    };
    if a.wants("nats") {
        nats::rows(a.runs, a.webhook_events, webhook, report).await;
    }
    if a.wants("daemon") {
        daemon::start_rows(a.runs, report).await;
    }
    if a.wants("postgres") {
        postgres::rows(a, report).await;
    }
    if a.wants("latency") {
        latency::rows(a.quick, report).await;
    }
    if let Some(idle) = idle {
        idle.finish(report).await;
    }
}

/// `--serve ORDERS`: serves the ingest answer of that size until killed,
/// for profiling orderwatch against it by hand.
fn serve_main(orders: usize) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let at = chrono::Utc::now() - chrono::TimeDelta::minutes(5);
        let server = answer::AnswerServer::start(answer::build(orders, at).await).await;
        println!("base_url = \"{}\"", server.base_url());
        std::future::pending::<()>().await;
    });
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let a = match parse(&argv) {
        Ok(Command::Measure(a)) => a,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return;
        }
        Ok(Command::BarePost { url, events }) => {
            webhook::bare_post_main(&url, events);
            return;
        }
        Ok(Command::Serve(orders)) => {
            orderwatch::http::install_crypto_provider();
            serve_main(orders);
            return;
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    orderwatch::http::install_crypto_provider();
    child::build_orderwatch();
    let measured = std::panic::catch_unwind(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut report = Report::default();
        rt.block_on(run(&a, &mut report));
        report
    });
    let Ok(report) = measured else {
        eprintln!("the benchmark itself broke (see the panic above)");
        std::process::exit(1);
    };
    let missed = report.print(a.quick, a.runs);
    let out = child::target_dir().join("bench");
    let json = out.join("pipeline.json");
    if let Err(e) = report.write_json(&json, a.quick, a.runs) {
        eprintln!("cannot write {}: {e}", json.display());
        std::process::exit(1);
    }
    let mut pictures = vec![out.join("pipeline.svg")];
    pictures.extend(a.picture.clone());
    for svg in pictures {
        if let Err(e) = plot::draw(&report.points, &svg) {
            eprintln!("cannot draw {}: {e}", svg.display());
            std::process::exit(1);
        }
    }
    println!("table: {}", json.display());
    std::process::exit(i32::from(missed > 0));
}
