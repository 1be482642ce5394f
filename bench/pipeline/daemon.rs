//! The daemon at rest: start to READY on an existing store, resident memory
//! once idle, and CPU while polling an empty account.

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use orderwatch::simulator::{Simulator, SimulatorConfig, SimulatorHandle};

use crate::child::{self, cpu_time, measure, mib, status_kib};
use crate::report::{Report, Row};

/// An empty account, a store that has run once, and a file sink.
pub struct Setup {
    sim: SimulatorHandle,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl Setup {
    pub async fn new(interval: &str) -> Setup {
        let sim = Simulator::start(SimulatorConfig::default())
            .await
            .expect("simulator");
        let dir = tempfile::tempdir().expect("tmp");
        let events = dir.path().join("events.jsonl");
        let config = child::write_config(
            dir.path(),
            &sim.base_url(),
            interval,
            &child::file_sink(&events),
        );
        let first = measure(child::orderwatch(&config, &["run", "--once"]));
        assert!(first.ok, "{}", first.stderr);
        Setup { sim, dir, config }
    }

    /// Starts the daemon; returns it once it said READY=1, and how long that took.
    fn start(&self) -> (Child, Duration) {
        let sock_path = self.dir.path().join("notify.sock");
        let _ = std::fs::remove_file(&sock_path);
        let sock = UnixDatagram::bind(&sock_path).expect("notify socket");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut cmd = child::orderwatch(&self.config, &["run"]);
        cmd.env("NOTIFY_SOCKET", &sock_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let start = Instant::now();
        let child = cmd.spawn().expect("spawn daemon");
        let mut buf = [0u8; 4096];
        loop {
            match sock.recv(&mut buf) {
                Ok(n) if String::from_utf8_lossy(&buf[..n]).contains("READY=1") => {
                    return (child, start.elapsed());
                }
                Ok(_) => continue,
                Err(e) => panic!("no READY=1 from the daemon: {e}"),
            }
        }
    }
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Start to READY (best of `runs`) and RSS 3 s after it (the largest).
pub async fn start_rows(runs: usize, report: &mut Report) {
    let setup = Setup::new("1m").await;
    let mut best_ready = Duration::MAX;
    let mut idle_kib = 0;
    for _ in 0..runs.max(3) {
        let (child, ready) = setup.start();
        best_ready = best_ready.min(ready);
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Unreadable is a failure, not 0 KiB (which would pass the target).
        let rss = status_kib(child.id(), "VmRSS:");
        let pid = child.id();
        stop(child);
        let Some(rss) = rss else {
            panic!(
                "cannot read VmRSS from /proc/{pid}/status; the idle RSS target cannot be measured here"
            );
        };
        idle_kib = idle_kib.max(rss);
    }
    report.push(
        Row::new("daemon: idle RSS", mib(idle_kib), "15 MiB".into())
            .at_most(idle_kib as f64 / (15.0 * 1024.0), 1.0),
    );
    report.push(
        Row::new(
            "daemon: start to READY on an existing store",
            format!("{:.1} ms", best_ready.as_secs_f64() * 1000.0),
            "100 ms".into(),
        )
        .at_most(best_ready.as_secs_f64() / 0.1, 1.0),
    );
}

/// A daemon polling an empty account, measured over a long window while the
/// other rows run (its CPU time is its own, whatever else the machine does).
pub struct IdleCpu {
    setup: Setup,
    child: Child,
    since: Instant,
    cpu_at_start: Duration,
    window: Duration,
    interval: String,
}

impl IdleCpu {
    pub async fn start(window: Duration, interval: &str) -> IdleCpu {
        let setup = Setup::new(interval).await;
        let (child, _) = setup.start();
        // Leave start-up (opening the store, the first poll) out of it.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let cpu_at_start = cpu_time(child.id()).expect("daemon CPU time");
        IdleCpu {
            setup,
            child,
            since: Instant::now(),
            cpu_at_start,
            window,
            interval: interval.to_string(),
        }
    }

    /// Waits out the window; the row.
    pub async fn finish(self, report: &mut Report) {
        let left = self.window.saturating_sub(self.since.elapsed());
        if !left.is_zero() {
            eprintln!("idle CPU: waiting {} s more", left.as_secs());
            tokio::time::sleep(left).await;
        }
        let used = cpu_time(self.child.id()).expect("daemon CPU time") - self.cpu_at_start;
        let elapsed = self.since.elapsed();
        let share = used.as_secs_f64() / elapsed.as_secs_f64();
        let polls = self.setup.sim.queries().len();
        stop(self.child);
        report.push(
            Row::new(
                format!(
                    "daemon: idle CPU over {:.0} min, polling every {}",
                    elapsed.as_secs_f64() / 60.0,
                    self.interval
                ),
                format!("{:.3}% of a core, {polls} polls", share * 100.0),
                "0.1%".into(),
            )
            .at_most(share / 0.001, 1.0),
        );
    }
}
