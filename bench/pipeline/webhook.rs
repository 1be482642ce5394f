//! Webhooks: signed deliveries per second at concurrency 8 against a bare
//! POST loop with the same HTTP client (orderwatch's builder, the same pool)
//! and concurrency, no signing and no ledger, measured in the same run.
//!
//! Both run as child processes (the loop is this benchmark binary started
//! with `--bare-post`) against one receiver in this process, and both rates
//! are counted at the receiver, from its first request to its last. A
//! second row gives each sender's CPU time per delivery.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::answer::{self, AnswerServer};
use crate::child;
use crate::report::{Report, Row};

const CONCURRENCY: usize = 8;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Requests a receiver has seen, and when the first and the last came.
#[derive(Clone, Default)]
struct Counter {
    count: Arc<AtomicU64>,
    first_last: Arc<Mutex<(Option<Instant>, Option<Instant>)>>,
}

impl Counter {
    fn rate(&self) -> f64 {
        let n = self.count.load(Ordering::Relaxed);
        let (first, last) = *self.first_last.lock().unwrap_or_else(|e| e.into_inner());
        match (first, last) {
            (Some(f), Some(l)) if n > 1 && l > f => (n - 1) as f64 / (l - f).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// A receiver answering 200 at once, counting arrivals.
async fn receiver() -> (SocketAddr, Counter) {
    let counter = Counter::default();
    let c = counter.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let c = c.clone();
            async move {
                c.count.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                let mut fl = c.first_last.lock().unwrap_or_else(|e| e.into_inner());
                fl.0.get_or_insert(now);
                fl.1 = Some(now);
                "ok"
            }
        }),
    );
    let (addr, _) = crate::answer::serve(app).await;
    (addr, counter)
}

/// Waits until `counter` reached `events`, then stops `child`; the CPU
/// time `child` used. It is read from `/proc` while the child is not yet
/// reaped (an exited child stays readable until then); if `try_wait`
/// reaped it first, the last reading stands, at most 10 ms old.
async fn until(counter: &Counter, events: usize, mut child: std::process::Child) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut cpu = None;
    while counter.count.load(Ordering::Relaxed) < events as u64 && Instant::now() < deadline {
        cpu = child::cpu_time(child.id()).or(cpu);
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu = child::cpu_time(child.id()).or(cpu);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        counter.count.load(Ordering::Relaxed),
        events as u64,
        "every event reached the receiver"
    );
    cpu.expect("the sender's CPU time, from /proc/PID/stat")
}

/// One sender's run: deliveries per second at the receiver, and the
/// sender's CPU time per delivery.
struct Rate {
    per_second: f64,
    cpu_per_delivery: Duration,
}

impl Rate {
    fn of(counter: &Counter, cpu: Duration, events: usize) -> Rate {
        Rate {
            per_second: counter.rate(),
            cpu_per_delivery: cpu / events.max(1) as u32,
        }
    }
}

async fn orderwatch_rate(events: usize) -> Rate {
    let at = chrono::Utc::now() - chrono::TimeDelta::minutes(5);
    let server = AnswerServer::start(answer::build(events, at).await).await;
    let (addr, counter) = receiver().await;
    let dir = tempfile::tempdir().expect("tmp");
    let sink = format!(
        "[[sinks]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://{addr}/hook\"\nsecret_env = \"OW_BENCH_SECRET\"\nconcurrency = {CONCURRENCY}\ntimeout = \"10s\"\n"
    );
    let config = child::write_config(dir.path(), &server.base_url(), "1m", &sink);
    let mut cmd = child::orderwatch(&config, &["run", "--once"]);
    cmd.env("OW_BENCH_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let cpu = until(&counter, events, cmd.spawn().expect("orderwatch")).await;
    Rate::of(&counter, cpu, events)
}

async fn bare_rate(events: usize) -> Rate {
    let (addr, counter) = receiver().await;
    let child = Command::new(std::env::current_exe().expect("own path"))
        .arg("--bare-post")
        .arg(format!("http://{addr}/hook"))
        .arg(events.to_string())
        .stdout(Stdio::null())
        .spawn()
        .expect("bare POST loop");
    let cpu = until(&counter, events, child).await;
    Rate::of(&counter, cpu, events)
}

/// The rows; returns the signed rate, for rows that compare with it.
///
/// Besides the rate, the CPU each sender spent per delivery (orderwatch's
/// includes starting, recording the events and writing the ledger). The
/// two cores are shared by both senders' runs and the receiver, so the
/// rate ratio can only reach 0.7 if orderwatch's CPU per delivery comes
/// near the bare loop's: this row says how far it is.
pub async fn rows(runs: usize, events: usize, report: &mut Report) -> f64 {
    let (mut signed, mut bare) = (0.0f64, 0.0f64);
    let (mut signed_cpu, mut bare_cpu) = (Duration::MAX, Duration::MAX);
    for _ in 0..runs {
        let b = bare_rate(events).await;
        bare = bare.max(b.per_second);
        bare_cpu = bare_cpu.min(b.cpu_per_delivery);
        let o = orderwatch_rate(events).await;
        signed = signed.max(o.per_second);
        signed_cpu = signed_cpu.min(o.cpu_per_delivery);
    }
    report.push(
        Row::new(
            format!("webhook: signed deliveries/s, concurrency {CONCURRENCY}"),
            format!("{signed:.0}/s"),
            format!("bare POST loop {bare:.0}/s"),
        )
        .at_least(signed / bare, 0.7)
        .known_miss(0.37),
    );
    report.push(Row::new(
        "webhook: sender's CPU per delivery".to_string(),
        format!("{} µs", signed_cpu.as_micros()),
        format!("bare POST loop {} µs", bare_cpu.as_micros()),
    ));
    signed
}

/// `--bare-post URL EVENTS`: POSTs one event `EVENTS` times, `CONCURRENCY`
/// at a time, with the client orderwatch's webhook sink builds.
pub fn bare_post_main(url: &str, events: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = orderwatch::http::client_builder(Duration::from_secs(10))
            .pool_max_idle_per_host(CONCURRENCY)
            .build()
            .expect("client");
        let row = orderwatch::transition::TransitionRow {
            seq: 1,
            order_id: 1,
            status: "issued".into(),
            occurrence: 0,
            certificate_id: Some(100_000_001),
            previous_status: None,
            seen_at: 1_795_514_523_000,
            details: None,
        };
        let body = orderwatch::event::to_json(&row, "http://127.0.0.1/services/v2");
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..CONCURRENCY {
            let (client, body, next, url) = (
                client.clone(),
                body.clone(),
                Arc::clone(&next),
                url.to_string(),
            );
            tasks.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < events {
                    let resp = client
                        .post(&url)
                        .header("content-type", "application/cloudevents+json")
                        .body(body.clone())
                        .send()
                        .await
                        .expect("POST");
                    assert!(resp.status().is_success());
                    let _ = resp.bytes().await;
                }
            }));
        }
        for t in tasks {
            t.await.expect("POST task");
        }
    });
}
