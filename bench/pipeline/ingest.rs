//! Ingest rows: `run --once` recording N new transitions (a fresh store, one
//! file sink) against the durable floor and the Python reference, measured
//! side by side run after run; then re-polling the same N, already seen.
//! For context, the same `run --once` with no sink at all: recording alone,
//! which tells the store's part of the time from the file sink's.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::answer::{self, AnswerServer};
use crate::child::{self, API_KEY, Run, count_lines, measure, mib, secs};
use crate::report::{Point, Report, Row};
use crate::{Args, floor};

/// Peak RSS allowed at up to 200,000 orders, and beyond.
const RSS_SMALL_MIB: f64 = 40.0;
const RSS_LARGE_MIB: f64 = 80.0;
/// Re-polling already-seen orders, end to end, at least this fast.
const REPOLL_PER_S: f64 = 2_000_000.0;

/// The best of several runs of one contender.
#[derive(Default)]
struct Best {
    wall: Option<Duration>,
    peak_rss_kib: u64,
}

impl Best {
    fn add(&mut self, wall: Duration, rss_kib: u64) {
        self.wall = Some(self.wall.map_or(wall, |w| w.min(wall)));
        self.peak_rss_kib = self.peak_rss_kib.max(rss_kib);
    }
    fn secs(&self) -> f64 {
        self.wall.map_or(f64::NAN, |w| w.as_secs_f64())
    }
}

/// Every ingest row at every size, and the re-poll row at the largest.
pub async fn rows(args: &Args, report: &mut Report) {
    let largest = args.sizes.iter().copied().max().unwrap_or(0);
    for &n in &args.sizes {
        let at = chrono::Utc::now() - chrono::TimeDelta::minutes(5);
        let server = AnswerServer::start(answer::build(n, at).await).await;
        eprintln!("ingest of {n} orders:");
        let keep = ingest(args, n, &server, report).await;
        if n == largest {
            let (config, _dir) = keep;
            let runs = args.runs;
            let row = tokio::task::spawn_blocking(move || repoll(runs, n, &config))
                .await
                .expect("re-poll");
            report.push(row);
        }
    }
}

/// Measures one size; returns the config and directory of the last
/// orderwatch run (its store holds the N orders, for the re-poll).
async fn ingest(
    args: &Args,
    n: usize,
    server: &AnswerServer,
    report: &mut Report,
) -> (std::path::PathBuf, tempfile::TempDir) {
    let orders = answer::orders(n);
    let source = server.base_url();
    let (mut ow, mut fl, mut py) = (Best::default(), Best::default(), Best::default());
    let mut alone = Best::default();
    let mut kept = None;
    for _ in 0..args.runs {
        let dir = tempfile::tempdir().expect("tmp");
        let (d, o, s) = (dir.path().to_path_buf(), orders.clone(), source.clone());
        let wall = tokio::task::spawn_blocking(move || floor::run(&d, &o, &s))
            .await
            .expect("floor");
        fl.add(wall, 0);
        drop(dir);

        let dir = tempfile::tempdir().expect("tmp");
        let events = dir.path().join("events.jsonl");
        let config = child::write_config(
            dir.path(),
            &server.base_url(),
            "1m",
            &child::file_sink(&events),
        );
        let run = child::run_once(&config).await;
        assert_eq!(count_lines(&events), n, "every transition in the file");
        ow.add(run.wall, run.peak_rss_kib);
        kept = Some((config, dir));

        let run = record_alone(server).await;
        alone.add(run.wall, run.peak_rss_kib);

        // Last: its exit frees far more memory than the others use, and
        // whoever runs next takes it back fresh (see "the slow mode").
        let run = python(server, n).await;
        py.add(run.wall, run.peak_rss_kib);
    }
    report.points.push(Point {
        orders: n,
        orderwatch_s: ow.secs(),
        floor_s: fl.secs(),
        python_s: py.secs(),
        orderwatch_rss_mib: ow.peak_rss_kib as f64 / 1024.0,
        python_rss_mib: py.peak_rss_kib as f64 / 1024.0,
    });
    let gated = args.quick || n >= 200_000;
    let row =
        |name: String, measured: String, reference: String| Row::new(name, measured, reference);
    let vs_floor = row(
        format!("ingest {n} new: run --once vs durable floor"),
        secs(ow.wall.unwrap_or_default()),
        format!("floor {}", secs(fl.wall.unwrap_or_default())),
    );
    let vs_python = row(
        format!("ingest {n} new: times faster than Python"),
        secs(ow.wall.unwrap_or_default()),
        format!("Python {}", secs(py.wall.unwrap_or_default())),
    );
    let rss_bound = if n <= 200_000 {
        RSS_SMALL_MIB
    } else {
        RSS_LARGE_MIB
    };
    let rss = row(
        format!("ingest {n} new: peak RSS"),
        mib(ow.peak_rss_kib),
        format!("{rss_bound:.0} MiB"),
    );
    let rss_ratio = ow.peak_rss_kib as f64 / 1024.0 / rss_bound;
    if gated {
        report.push(vs_floor.at_most(ow.secs() / fl.secs(), 1.3));
        report.push(vs_python.at_least(py.secs() / ow.secs(), 5.0));
        report.push(rss.at_most(rss_ratio, 1.0));
    } else {
        for mut r in [vs_floor, vs_python, rss] {
            r.name.push_str(" (context)");
            report.push(r);
        }
    }
    report.push(row(
        format!("ingest {n} new: recording alone, no sink (context)"),
        secs(alone.wall.unwrap_or_default()),
        format!(
            "floor {} ({:.2}x)",
            secs(fl.wall.unwrap_or_default()),
            alone.secs() / fl.secs()
        ),
    ));
    kept.expect("at least one run")
}

/// `run --once` on a fresh store with no sink: only the recording.
async fn record_alone(server: &AnswerServer) -> Run {
    let dir = tempfile::tempdir().expect("tmp");
    let config = child::write_config(dir.path(), &server.base_url(), "1m", "");
    child::run_once(&config).await
}

/// One run of the Python reference; checks it wrote every event.
async fn python(server: &AnswerServer, n: usize) -> Run {
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = Command::new("python3");
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("reference.py"))
        .arg(server.url())
        .arg(API_KEY)
        .arg(dir.path().join("ref.db"))
        .arg(dir.path().join("ref.jsonl"));
    let run = tokio::task::spawn_blocking(move || measure(c))
        .await
        .expect("python");
    assert!(run.ok, "the Python reference failed: {}", run.stderr);
    assert_eq!(count_lines(&dir.path().join("ref.jsonl")), n);
    run
}

/// `run --once` again over the same answer: every order already seen.
/// Best of at least 3 even with `--quick`: a run is a fraction of a second,
/// and one run's hiccup on a shared machine is not the program's speed.
fn repoll(runs: usize, n: usize, config: &Path) -> Row {
    let mut best = Duration::MAX;
    for _ in 0..runs.max(3) {
        let run = measure(child::orderwatch(config, &["run", "--once"]));
        assert!(run.ok, "re-poll failed: {}", run.stderr);
        best = best.min(run.wall);
    }
    let rate = n as f64 / best.as_secs_f64();
    Row::new(
        format!("re-poll {n} already seen, end to end"),
        format!("{:.2} M orders/s", rate / 1e6),
        format!("{:.0} M orders/s", REPOLL_PER_S / 1e6),
    )
    .at_least(rate / REPOLL_PER_S, 1.0)
}
