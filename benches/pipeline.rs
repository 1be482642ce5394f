//! Performance targets of orderwatch, measured side by side in one run.
//!
//! `cargo bench --bench pipeline [-- --orders N] [-- --runs R]`
//!
//! Timings on shared machines are noisy, so every target is a ratio against
//! a reference measured in the same run on the same machine (or a fixed
//! bound for memory and latency), best of R runs. A target counts as missed
//! only when it is worse than its bound by more than the noise margin
//! ([`NOISE`]); then the process exits 1.
//!
//! The simulator (and the webhook receivers) run inside this process;
//! `orderwatch` and the Python reference run as child processes, so their
//! wall time and peak RSS (`VmHWM`) are theirs alone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orderwatch::simulator::{Simulator, SimulatorConfig, SimulatorHandle};

/// How much worse than a bound a measurement may be before it counts as missed.
const NOISE: f64 = 0.10;
const KEY: &str = "sim-key";

struct Args {
    orders: usize,
    webhook_events: usize,
    runs: usize,
}

fn args() -> Args {
    let mut a = Args {
        orders: 1_000_000,
        webhook_events: 20_000,
        runs: 3,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let next = argv.get(i + 1).and_then(|v| v.parse().ok());
        match (argv[i].as_str(), next) {
            ("--orders", Some(n)) => a.orders = n,
            ("--webhook-events", Some(n)) => a.webhook_events = n,
            ("--runs", Some(n)) => a.runs = n.max(1),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// One row of the report.
struct Row {
    name: String,
    measured: String,
    reference: String,
    ratio: f64,
    /// `true`: ratio must be ≥ bound; `false`: ≤ bound.
    at_least: bool,
    bound: f64,
}

impl Row {
    fn missed(&self) -> bool {
        if self.at_least {
            self.ratio < self.bound * (1.0 - NOISE)
        } else {
            self.ratio > self.bound * (1.0 + NOISE)
        }
    }
}

struct Run {
    wall: Duration,
    max_rss_kib: u64,
    ok: bool,
    stderr: String,
}

/// Runs a child to completion: its wall time, and its peak RSS read from
/// `VmHWM` while it runs. (`wait4`'s `ru_maxrss` would be wrong here: a child
/// spawned with vfork/posix_spawn inherits this process's high-water mark,
/// and this process holds the simulator's million orders.)
fn measure(mut cmd: Command) -> Run {
    let err_path = std::env::temp_dir().join(format!("ow-bench-{}.err", std::process::id()));
    let err_file = std::fs::File::create(&err_path).expect("stderr file");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_file);
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn");
    let status_path = format!("/proc/{}/status", child.id());
    let mut max_rss_kib = 0;
    let status = loop {
        if let Some(kib) = std::fs::read_to_string(&status_path).ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        }) {
            max_rss_kib = max_rss_kib.max(kib);
        }
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(_) => break None,
        }
    };
    let wall = start.elapsed();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&err_path);
    Run {
        wall,
        max_rss_kib,
        ok: status.is_some_and(|s| s.success()),
        stderr,
    }
}

fn orderwatch() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_orderwatch"))
}

fn write_config(dir: &Path, base_url: &str, sinks: &str) -> PathBuf {
    let path = dir.join("orderwatch.toml");
    let text = format!(
        "[digicert]\nbase_url = \"{base_url}\"\napi_key_env = \"OW_BENCH_KEY\"\ntimeout = \"600s\"\nmax_response_size = \"4GiB\"\nmax_requests_per_minute = 180\n\
         [poll]\ninterval = \"1m\"\noverlap = \"10m\"\ninitial_lookback = \"1h\"\n[store]\npath = \"{}\"\n{sinks}",
        dir.join("orderwatch.db").display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn ow(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(orderwatch());
    c.arg("--config").arg(config).args(args);
    c.env("OW_BENCH_KEY", KEY)
        .env("RUST_LOG", "orderwatch=warn")
        .env_remove("NOTIFY_SOCKET");
    c
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn count_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .unwrap_or(0)
}

/// Downloads the answer into nothing; returns (time, bytes).
async fn download(url: &str) -> (Duration, u64) {
    let client = reqwest::Client::new();
    let start = Instant::now();
    let mut resp = client
        .get(url)
        .header("X-DC-DEVKEY", KEY)
        .send()
        .await
        .expect("download");
    let mut bytes = 0u64;
    while let Some(chunk) = resp.chunk().await.expect("download body") {
        bytes += chunk.len() as u64;
    }
    (start.elapsed(), bytes)
}

async fn bench_ingest(
    a: &Args,
    rows: &mut Vec<Row>,
) -> (PathBuf, tempfile::TempDir, SimulatorHandle) {
    let sim = Simulator::new(SimulatorConfig::default());
    let t = Instant::now();
    sim.bulk_insert(
        1,
        a.orders,
        "issued",
        chrono::Utc::now() - chrono::TimeDelta::minutes(5),
    );
    eprintln!(
        "loaded {} orders into the simulator in {}",
        a.orders,
        secs(t.elapsed())
    );
    let handle = sim.spawn().await.expect("simulator");
    let url = format!(
        "{}/order/certificate/status-changes?minutes=30",
        handle.base_url()
    );

    let mut best_download = Duration::MAX;
    let mut size = 0;
    for _ in 0..a.runs {
        let (d, n) = download(&url).await;
        best_download = best_download.min(d);
        size = n;
    }
    eprintln!("answer: {} bytes, download {}", size, secs(best_download));

    let mut best_py = Duration::MAX;
    for _ in 0..a.runs.min(2) {
        let dir = tempfile::tempdir().expect("tmp");
        let mut c = Command::new("python3");
        c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/reference.py"))
            .arg(&url)
            .arg(KEY)
            .arg(dir.path().join("ref.db"))
            .arg(dir.path().join("ref.jsonl"));
        let run = tokio::task::spawn_blocking(move || measure(c))
            .await
            .expect("python");
        assert!(run.ok, "python reference failed: {}", run.stderr);
        assert_eq!(count_lines(&dir.path().join("ref.jsonl")), a.orders);
        best_py = best_py.min(run.wall);
    }
    eprintln!("python reference: {}", secs(best_py));

    let mut best = Duration::MAX;
    let mut rss = 0;
    let mut kept = None;
    for _ in 0..a.runs {
        let dir = tempfile::tempdir().expect("tmp");
        let events = dir.path().join("events.jsonl");
        let config = write_config(
            dir.path(),
            &handle.base_url(),
            &format!(
                "[[sinks]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n",
                events.display()
            ),
        );
        let cmd = ow(&config, &["run", "--once"]);
        let run = tokio::task::spawn_blocking(move || measure(cmd))
            .await
            .expect("orderwatch");
        assert!(run.ok, "orderwatch run --once failed: {}", run.stderr);
        assert_eq!(
            count_lines(&events),
            a.orders,
            "every transition in the file"
        );
        best = best.min(run.wall);
        rss = rss.max(run.max_rss_kib);
        kept = Some((config, dir));
    }
    eprintln!("orderwatch: {} (peak RSS {})", secs(best), mib(rss));
    let n = a.orders;
    rows.push(Row {
        name: format!("ingest {n} new: faster than python reference"),
        measured: secs(best),
        reference: secs(best_py),
        ratio: best_py.as_secs_f64() / best.as_secs_f64(),
        at_least: true,
        bound: 4.0,
    });
    rows.push(Row {
        name: format!("ingest {n} new: time vs plain download"),
        measured: secs(best),
        reference: secs(best_download),
        ratio: best.as_secs_f64() / best_download.as_secs_f64(),
        at_least: false,
        bound: 1.6,
    });
    rows.push(Row {
        name: "ingest: peak RSS vs answer size".into(),
        measured: mib(rss),
        reference: mib(size / 1024),
        ratio: (rss * 1024) as f64 / size as f64,
        at_least: false,
        bound: 2.0,
    });
    let (config, dir) = kept.expect("at least one run");
    (config, dir, handle)
}

fn bench_repoll(a: &Args, config: &Path, rows: &mut Vec<Row>) {
    let mut best = Duration::MAX;
    for _ in 0..a.runs {
        let run = measure(ow(config, &["run", "--once"]));
        assert!(run.ok, "re-poll failed: {}", run.stderr);
        best = best.min(run.wall);
    }
    let rate = a.orders as f64 / best.as_secs_f64();
    rows.push(Row {
        name: format!("re-poll {} seen (end to end, download included)", a.orders),
        measured: format!("{:.0} orders/s", rate),
        reference: "1000000 orders/s".into(),
        ratio: rate / 1_000_000.0,
        at_least: true,
        bound: 1.0,
    });
}

/// A webhook receiver that answers 200 after `delay`, counting arrivals.
#[derive(Clone, Default)]
struct Counter {
    count: Arc<AtomicU64>,
    first_last: Arc<Mutex<(Option<Instant>, Option<Instant>)>>,
}

async fn receiver(delay: Duration) -> (SocketAddr, Counter) {
    use axum::routing::post;
    let counter = Counter::default();
    let c2 = counter.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move || {
            let c = c2.clone();
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                c.count.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                let mut fl = c.first_last.lock().unwrap_or_else(|e| e.into_inner());
                fl.0.get_or_insert(now);
                fl.1 = Some(now);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, counter)
}

fn webhook_sink(name: &str, addr: SocketAddr) -> String {
    format!(
        "[[sinks]]\nname = \"{name}\"\ntype = \"webhook\"\nurl = \"http://{addr}/hook\"\nsecret_env = \"OW_BENCH_SECRET\"\nconcurrency = 8\ntimeout = \"10s\"\n"
    )
}

/// Runs the daemon until the fast receiver has every event; its rate.
async fn webhook_rate(events: usize, with_slow: bool) -> f64 {
    let sim = Simulator::new(SimulatorConfig::default());
    sim.bulk_insert(
        1,
        events,
        "issued",
        chrono::Utc::now() - chrono::TimeDelta::minutes(5),
    );
    let handle = sim.spawn().await.expect("simulator");
    let (fast_addr, fast) = receiver(Duration::ZERO).await;
    let mut sinks = webhook_sink("fast", fast_addr);
    if with_slow {
        let (slow_addr, _slow) = receiver(Duration::from_millis(200)).await;
        sinks.push_str(&webhook_sink("slow", slow_addr));
    }
    let dir = tempfile::tempdir().expect("tmp");
    let config = write_config(dir.path(), &handle.base_url(), &sinks);
    let mut cmd = ow(&config, &["run"]);
    cmd.env("OW_BENCH_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn daemon");
    let deadline = Instant::now() + Duration::from_secs(300);
    while fast.count.load(Ordering::Relaxed) < events as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let (first, last) = *fast.first_last.lock().unwrap_or_else(|e| e.into_inner());
    let n = fast.count.load(Ordering::Relaxed);
    match (first, last) {
        (Some(f), Some(l)) if n > 1 && l > f => (n - 1) as f64 / (l - f).as_secs_f64(),
        _ => 0.0,
    }
}

async fn bench_webhook(a: &Args, rows: &mut Vec<Row>) {
    let mut solo: f64 = 0.0;
    for _ in 0..a.runs {
        solo = solo.max(webhook_rate(a.webhook_events, false).await);
    }
    rows.push(Row {
        name: "webhook: signed deliveries/s, concurrency 8".into(),
        measured: format!("{solo:.0}/s"),
        reference: "5000/s".into(),
        ratio: solo / 5000.0,
        at_least: true,
        bound: 1.0,
    });
    let mut beside: f64 = 0.0;
    for _ in 0..a.runs {
        beside = beside.max(webhook_rate(a.webhook_events, true).await);
    }
    rows.push(Row {
        name: "webhook: rate beside a 200 ms receiver".into(),
        measured: format!("{beside:.0}/s"),
        reference: format!("{solo:.0}/s alone"),
        ratio: beside / solo.max(1.0),
        at_least: true,
        bound: 0.9,
    });
}

/// Start to READY=1 on an existing store, and RSS once idle.
async fn bench_daemon(a: &Args, rows: &mut Vec<Row>) {
    use std::os::unix::net::UnixDatagram;
    let handle = Simulator::start(SimulatorConfig::default())
        .await
        .expect("simulator");
    handle.set_status(1, 2, "issued", chrono::Utc::now());
    let dir = tempfile::tempdir().expect("tmp");
    let config = write_config(dir.path(), &handle.base_url(), "");
    let first = measure(ow(&config, &["run", "--once"]));
    assert!(first.ok, "{}", first.stderr);
    let mut best_ready = Duration::MAX;
    let mut idle_rss_kib = 0;
    for _ in 0..a.runs.max(3) {
        let sock_path = dir.path().join("notify.sock");
        let _ = std::fs::remove_file(&sock_path);
        let sock = UnixDatagram::bind(&sock_path).expect("notify socket");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut cmd = ow(&config, &["run"]);
        cmd.env("NOTIFY_SOCKET", &sock_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let start = Instant::now();
        let mut child = cmd.spawn().expect("spawn daemon");
        let mut buf = [0u8; 4096];
        let ready = loop {
            match sock.recv(&mut buf) {
                Ok(n) if String::from_utf8_lossy(&buf[..n]).contains("READY=1") => {
                    break Some(start.elapsed());
                }
                Ok(_) => continue,
                Err(_) => break None,
            }
        };
        if let Some(r) = ready {
            best_ready = best_ready.min(r);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        idle_rss_kib = idle_rss_kib.max(rss);
        let _ = child.kill();
        let _ = child.wait();
    }
    rows.push(Row {
        name: "daemon: idle RSS".into(),
        measured: mib(idle_rss_kib),
        reference: "15.0 MiB".into(),
        ratio: idle_rss_kib as f64 / (15.0 * 1024.0),
        at_least: false,
        bound: 1.0,
    });
    rows.push(Row {
        name: "daemon: start to READY on an existing store".into(),
        measured: format!("{:.1} ms", best_ready.as_secs_f64() * 1000.0),
        reference: "100 ms".into(),
        ratio: best_ready.as_secs_f64() / 0.1,
        at_least: false,
        bound: 1.0,
    });
}

fn main() {
    let a = args();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let rows = rt.block_on(async {
        let mut rows = Vec::new();
        let (config, _dir, sim) = bench_ingest(&a, &mut rows).await;
        let c = config.clone();
        let mut repoll_rows = Vec::new();
        let runs = a.runs;
        let orders = a.orders;
        let r = tokio::task::spawn_blocking(move || {
            bench_repoll(
                &Args {
                    orders,
                    webhook_events: 0,
                    runs,
                },
                &c,
                &mut repoll_rows,
            );
            repoll_rows
        })
        .await
        .expect("re-poll");
        rows.extend(r);
        drop(sim);
        bench_webhook(&a, &mut rows).await;
        bench_daemon(&a, &mut rows).await;
        rows
    });
    println!();
    println!(
        "{:<52} {:>16} {:>18} {:>8} {:>8}  result",
        "target", "measured", "reference", "ratio", "bound"
    );
    let mut missed = 0;
    for r in &rows {
        let bound = format!("{}{}", if r.at_least { "≥" } else { "≤" }, r.bound);
        let verdict = if r.missed() {
            missed += 1;
            "MISSED"
        } else {
            "ok"
        };
        println!(
            "{:<52} {:>16} {:>18} {:>8.2} {:>8}  {}",
            r.name, r.measured, r.reference, r.ratio, bound, verdict
        );
    }
    println!(
        "\nnoise margin {:.0}%; best of {} runs",
        NOISE * 100.0,
        a.runs
    );
    if missed > 0 {
        std::process::exit(1);
    }
}
