//! Performance targets of orderwatch, measured side by side in one run.
//!
//! ```text
//! cargo bench -p orderwatch-bench               # every target (about 15 minutes)
//! cargo bench -p orderwatch-bench -- --quick    # small sizes, one run (CI)
//! options: --sizes 50000,200000 --runs R --history N --webhook-events N
//!          --idle-seconds S
//!          --only ingest,history,webhook,nats,daemon,postgres,latency,idle
//!          --picture PATH (also write the SVG there; relative to the checkout)
//!          --serve ORDERS (only serve that answer, for profiling by hand)
//! ```
//!
//! Timings on shared machines are noisy, so every target is a ratio against
//! a reference measured in the same run on the same machine (or a fixed
//! bound for memory and latency), best of R runs; see [`report`] for when a
//! target counts as missed. Exit status: 0 when every target holds, 1 when
//! one is missed or the benchmark itself broke.
//!
//! Each row is one function (`ingest::rows`, `history::rows`, ...) that
//! measures and pushes [`report::Row`]s; a new row (a PostgreSQL store,
//! NATS publishes, change-to-delivery latency) is a new module and one line
//! in [`run`]. orderwatch and the Python reference run as child processes,
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

impl Args {
    fn parse(argv: &[String]) -> Args {
        let quick = argv.iter().any(|a| a == "--quick");
        let mut a = if quick {
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
        };
        let value = |flag: &str| {
            argv.iter()
                .position(|a| a == flag)
                .and_then(|i| argv.get(i + 1))
                .cloned()
        };
        let number = |flag: &str| value(flag).and_then(|v| v.replace('_', "").parse::<u64>().ok());
        if let Some(v) = value("--sizes") {
            a.sizes = v
                .split(',')
                .filter_map(|s| s.replace('_', "").parse().ok())
                .collect();
        }
        if let Some(n) = number("--runs") {
            a.runs = (n as usize).max(1);
        }
        if let Some(n) = number("--history") {
            a.history = n.max(2_000);
        }
        if let Some(n) = number("--webhook-events") {
            a.webhook_events = (n as usize).max(2);
        }
        if let Some(n) = number("--idle-seconds") {
            a.idle = Duration::from_secs(n);
        }
        a.only = value("--only").map(|v| v.split(',').map(str::to_string).collect());
        // Relative to the checkout, not to bench/ where cargo runs us.
        a.picture = value("--picture").map(|p| child::workspace().join(p));
        a
    }

    fn wants(&self, row: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|r| r == row))
    }
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
    let argv: Vec<String> = std::env::args().collect();
    if let Some(i) = argv.iter().position(|a| a == "--bare-post") {
        let url = argv.get(i + 1).expect("--bare-post URL EVENTS");
        let events = argv
            .get(i + 2)
            .and_then(|n| n.parse().ok())
            .expect("EVENTS");
        webhook::bare_post_main(url, events);
        return;
    }
    orderwatch::http::install_crypto_provider();
    if let Some(i) = argv.iter().position(|a| a == "--serve") {
        let n = argv
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .expect("--serve ORDERS");
        serve_main(n);
        return;
    }
    let a = Args::parse(&argv);
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
