//! Change-to-delivery latency at a 60 s poll interval, without and with
//! wakes (the target: a median under 1 s with wakes).
//!
//! The simulator and a webhook receiver run in this process; `orderwatch
//! run` runs as a child, polling every minute. Changes happen one at a
//! time, 6 to 8 s apart at random (beyond `min_gap`, as in a real account
//! whose orders change every few minutes), each a new order; the latency of
//! one is from the moment the simulator's account changed to the moment its
//! signed webhook arrived. Without wakes that is the wait for the next poll
//! (half an interval on average); with wakes the simulator `POST`s to
//! `[wake]` after each change, as CertCentral's account webhook would.
//!
//! Rows: the median and 95th percentile of each; the median with wakes
//! must be under 1 s. `--quick` takes 6 changes of each kind (about two
//! minutes in all); a full run 30 (about eight).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use orderwatch::simulator::{Simulator, SimulatorConfig, SimulatorHandle};
use rand::RngExt;

use crate::child::{free_port, orderwatch_exe};
use crate::report::{Report, Row};

const KEY: &str = "sim-key";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WAKE_KEY: &str = "bench-wake-key-0123456789abcdef";

/// Arrival time of each event id at the receiver.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn receiver() -> (SocketAddr, Arrivals) {
    use axum::routing::post;
    let arrivals = Arrivals::default();
    let seen = Arc::clone(&arrivals);
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap| {
            let seen = Arc::clone(&seen);
            async move {
                let now = Instant::now();
                if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
                    let mut map = seen.lock().unwrap_or_else(|e| e.into_inner());
                    map.entry(id.to_string()).or_insert(now);
                }
                "ok"
            }
        }),
    );
    let (addr, _) = crate::answer::serve(app).await;
    (addr, arrivals)
}

fn config(dir: &Path, sim: &SimulatorHandle, hook: SocketAddr, wake: Option<u16>) -> PathBuf {
    let mut text = format!(
        "[digicert]\nbase_url = \"{}\"\napi_key_env = \"OW_BENCH_KEY\"\n\
         [poll]\ninterval = \"1m\"\noverlap = \"10m\"\ninitial_lookback = \"1h\"\n\
         [store]\npath = \"{}\"\n\
         [[sinks]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://{hook}/hook\"\nsecret_env = \"OW_BENCH_SECRET\"\n",
        sim.base_url(),
        dir.join("orderwatch.db").display()
    );
    if let Some(port) = wake {
        text.push_str(&format!(
            "[wake]\nlisten = \"127.0.0.1:{port}\"\nkey_env = \"OW_BENCH_WAKE_KEY\"\n"
        ));
    }
    let path = dir.join("orderwatch.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Runs `changes` changes against a daemon with or without wakes; the
/// latency of each (`None`: it never arrived).
async fn measure(changes: usize, wakes: bool) -> Vec<Option<Duration>> {
    let sim = Simulator::start(SimulatorConfig::default())
        .await
        .expect("simulator");
    let (hook, arrivals) = receiver().await;
    let dir = tempfile::tempdir().expect("tmp");
    let port = wakes.then(free_port);
    let path = config(dir.path(), &sim, hook, port);
    let mut child = Command::new(orderwatch_exe())
        .arg("--config")
        .arg(&path)
        .arg("run")
        .env("OW_BENCH_KEY", KEY)
        .env("OW_BENCH_SECRET", SECRET)
        .env("OW_BENCH_WAKE_KEY", WAKE_KEY)
        .env("RUST_LOG", "orderwatch=warn")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn orderwatch");
    if let Some(port) = port {
        sim.announce_changes_to(
            Some(format!("http://127.0.0.1:{port}/wake")),
            Some(("X-WEBHOOK-KEY".into(), WAKE_KEY.into())),
        );
    }
    // Let the daemon start and finish its first (empty) cycle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut changed = Vec::with_capacity(changes);
    for i in 0..changes {
        let gap = rand::rng().random_range(6_000..8_000);
        tokio::time::sleep(Duration::from_millis(gap)).await;
        let id = 1_000 + i as i64;
        changed.push((format!("{id}:pending"), Instant::now()));
        sim.set_status(id, id + 100_000, "pending", chrono::Utc::now());
    }
    // Every change reaches the receiver within one interval and a bit.
    let deadline = Instant::now() + Duration::from_secs(75);
    while arrivals.lock().unwrap_or_else(|e| e.into_inner()).len() < changes
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let arrived = arrivals.lock().unwrap_or_else(|e| e.into_inner()).clone();
    changed
        .iter()
        .map(|(id, at)| {
            let latency = arrived.get(id).map(|t| t.saturating_duration_since(*at));
            if latency.is_none() {
                eprintln!("latency: {id} never arrived (wakes: {wakes})");
            }
            latency
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The median and 95th percentile, or `None` when a change never arrived.
fn spread(latencies: Vec<Option<Duration>>) -> Option<(Duration, Duration)> {
    let mut all: Vec<Duration> = latencies.into_iter().collect::<Option<_>>()?;
    if all.is_empty() {
        return None;
    }
    all.sort();
    Some((percentile(&all, 0.5), percentile(&all, 0.95)))
}

/// Measures both and pushes their rows: without wakes the median must stay
/// within one interval (it is half of one on average), with wakes under 1 s.
pub async fn rows(quick: bool, report: &mut Report) {
    let changes = if quick { 6 } else { 30 };
    let reference = format!("{changes} changes, interval 60 s");
    for (wakes, name) in [
        (false, "latency without wakes"),
        (true, "latency with wakes"),
    ] {
        let spread = spread(measure(changes, wakes).await);
        let measured = match spread {
            Some((median, p95)) => format!(
                "median {:.3} s, p95 {:.3} s",
                median.as_secs_f64(),
                p95.as_secs_f64()
            ),
            None => "a change never arrived".to_string(),
        };
        let row = Row::new(name, measured, reference.clone());
        let bound = if wakes { 1.0 } else { 60.0 };
        let median = spread.map_or(f64::NAN, |(m, _)| m.as_secs_f64());
        report.push(row.at_most(median, bound));
    }
}
