//! Shared helpers for integration tests: an in-process simulator, a config
//! file in a temp dir, and the real `orderwatch` binary run against them.
//!
//! Every test gets its own directory and random ports; nothing reaches beyond
//! 127.0.0.1.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use orderwatch::simulator::{Simulator, SimulatorConfig, SimulatorHandle};
use serde_json::Value;

pub mod receiver;

/// The API key the simulator accepts and the binary is given.
pub const KEY: &str = "sim-key";

/// The `orderwatch` binary cargo built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_orderwatch"))
}

/// A test's world: a simulator, a temp dir, a config file.
pub struct World {
    pub dir: tempfile::TempDir,
    pub sim: SimulatorHandle,
    pub config: PathBuf,
    /// Extra TOML appended after the generated sections (sinks, overrides).
    pub poll: String,
    pub sinks: String,
    pub digicert_extra: String,
    pub metrics: String,
}

impl World {
    /// A quiet simulator (no random changes) and a config with fast polling.
    pub async fn new() -> World {
        World::with_sim(SimulatorConfig::default()).await
    }

    pub async fn with_sim(cfg: SimulatorConfig) -> World {
        let sim = Simulator::start(cfg).await.expect("simulator starts");
        World::around(sim)
    }

    /// Uses an already started simulator.
    pub fn around(sim: SimulatorHandle) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("orderwatch.toml");
        let mut w = World {
            dir,
            sim,
            config,
            poll: "interval = \"1s\"\noverlap = \"10m\"\ninitial_lookback = \"1h\"\n".to_string(),
            sinks: String::new(),
            digicert_extra: "retries = 3\nretry_initial = \"100ms\"\nretry_max = \"500ms\"\ntimeout = \"5s\"\nmax_requests_per_minute = 180\n".to_string(),
            metrics: String::new(),
        };
        w.write_config();
        w
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn store(&self) -> PathBuf {
        self.path("orderwatch.db")
    }

    /// The events file of [`World::file_sink`].
    pub fn events_file(&self) -> PathBuf {
        self.path("events.jsonl")
    }

    /// Adds a file sink named `archive` writing to [`World::events_file`].
    pub fn file_sink(&mut self) -> &mut World {
        let path = self.events_file();
        self.sinks.push_str(&format!(
            "[[sinks]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\nbackoff_initial = \"100ms\"\nbackoff_max = \"1s\"\n",
            path.display()
        ));
        self.write_config();
        self
    }

    /// Adds raw `[[sinks]]` TOML.
    pub fn sink_toml(&mut self, toml: &str) -> &mut World {
        self.sinks.push_str(toml);
        if !toml.ends_with('\n') {
            self.sinks.push('\n');
        }
        self.write_config();
        self
    }

    pub fn set_poll(&mut self, toml: &str) -> &mut World {
        self.poll = toml.to_string();
        self.write_config();
        self
    }

    pub fn set_metrics(&mut self, toml: &str) -> &mut World {
        self.metrics = toml.to_string();
        self.write_config();
        self
    }

    pub fn set_digicert_extra(&mut self, toml: &str) -> &mut World {
        self.digicert_extra = toml.to_string();
        self.write_config();
        self
    }

    pub fn write_config(&mut self) {
        let text = format!(
            "[digicert]\nbase_url = \"{}\"\napi_key_env = \"OW_TEST_KEY\"\n{}\n[poll]\n{}\n[store]\npath = \"{}\"\n{}\n{}",
            self.sim.base_url(),
            self.digicert_extra,
            self.poll,
            self.store().display(),
            self.metrics,
            self.sinks
        );
        std::fs::write(&self.config, text).expect("write config");
    }

    /// `orderwatch --config <ours> <args>` with the key in the environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--config").arg(&self.config).args(args);
        c.env("OW_TEST_KEY", KEY)
            .env_remove("ORDERWATCH_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("STATE_DIRECTORY")
            .env("RUST_LOG", "orderwatch=debug")
            .env("NO_COLOR", "1");
        c
    }

    /// Runs a command to completion (with a generous timeout).
    pub fn run(&self, args: &[&str]) -> Output {
        output_within(self.command(args), Duration::from_secs(60))
    }

    /// `run --once`, asserting it succeeds.
    pub fn once(&self) -> Output {
        let out = self.run(&["run", "--once"]);
        assert!(
            out.status.success(),
            "run --once failed:\n{}",
            text(&out.stderr)
        );
        out
    }

    /// Starts `orderwatch run` in the background; its stderr goes to a file.
    pub fn spawn(&self) -> Daemon {
        self.spawn_with(&["run"], |_| {})
    }

    pub fn spawn_with(&self, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Daemon {
        let log = self.path(&format!("daemon-{}.log", unique()));
        let mut c = self.command(args);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        adjust(&mut c);
        let child = c.spawn().expect("spawn orderwatch");
        Daemon {
            child: Some(child),
            log,
        }
    }

    /// Events in the file sink's output.
    pub fn file_events(&self) -> Vec<Value> {
        read_jsonl(&self.events_file())
    }

    /// `orderwatch events --json --limit N`, parsed.
    pub fn stored_events(&self) -> Vec<Value> {
        let out = self.run(&["events", "--json", "--limit", "100000000"]);
        assert!(out.status.success(), "events failed: {}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("events --json prints JSON"))
            .collect()
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A running `orderwatch run`. Killed on drop.
pub struct Daemon {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for exit, up to `timeout`; `None` if still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit status (panics if it takes over `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.signal("TERM");
        match self.wait_timeout(timeout) {
            Some(s) => s,
            None => panic!(
                "orderwatch did not stop within {timeout:?}; log:\n{}",
                self.log_text()
            ),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Takes the child's stdout (for stdout sinks).
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.as_mut().and_then(|c| c.stdout.take())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `cmd` to completion, killing it after `timeout`.
pub fn output_within(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn orderwatch");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("orderwatch ran"),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("orderwatch did not finish within {timeout:?}");
        }
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Reads a JSON-lines file; a torn or non-JSON line fails the test.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let Ok(content) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    content
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("bad line in {}: {e}: {l:?}", path.display()))
        })
        .collect()
}

/// Event ids (`"264:issued"`) of a list of CloudEvents.
pub fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Polls `check` every 50 ms until it is true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `now - secs`, for scripting simulator history.
pub fn ago(secs: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::TimeDelta::seconds(secs)
}
