//! Shared helpers for the integration tests: a [`World`] (simulator, temp
//! dir, config file) to run the real `orderwatch` binary in, a [`Daemon`]
//! handle for `orderwatch run`, a webhook [`receiver`], and the only places
//! that touch the library directly ([`store`], [`sim`], [`client`],
//! [`config`]), so a change of the library's API is adapted here once.
//!
//! Every test gets its own directory and random ports; nothing reaches
//! beyond 127.0.0.1 (and 127.0.0.2 where a test needs "another host").

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod client;
pub mod cluster;
pub mod config;
mod daemon;
pub mod disk;
pub mod ha;
pub mod nats;
pub mod notify;
pub mod receiver;
pub mod silent;
pub mod sim;
mod skip;
pub mod standard_webhooks;
pub mod store;
mod world;

pub use daemon::Daemon;
pub use skip::{is_root, skip};
pub use world::{SECRET_VAR, Sink, World};

/// The API key the simulator accepts and the binary is given.
pub const KEY: &str = "sim-key";

/// The `orderwatch` binary cargo built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_orderwatch"))
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

/// The complete lines of a JSON-lines file a daemon may be appending to
/// right now: a last line without its newline yet is not an event yet.
/// For waiting while the daemon runs; settled checks use [`read_jsonl`].
pub fn read_jsonl_so_far(path: &Path) -> Vec<Value> {
    let Ok(content) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let complete = match content.rfind('\n') {
        Some(i) => &content[..=i],
        None => "",
    };
    complete
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("bad line in {}: {e}: {l:?}", path.display()))
        })
        .collect()
}

/// Reads a JSON-lines file; a torn or non-JSON line fails the test. A
/// missing file reads as no lines.
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

/// `"{order}:{status}"` for each order: the ids of their events.
pub fn event_ids(orders: impl IntoIterator<Item = i64>, status: &str) -> BTreeSet<String> {
    orders
        .into_iter()
        .map(|o| format!("{o}:{status}"))
        .collect()
}

/// The ids as a set; fails the test if one appears twice.
pub fn unique(ids: Vec<String>) -> BTreeSet<String> {
    let n = ids.len();
    let set: BTreeSet<String> = ids.into_iter().collect();
    assert_eq!(set.len(), n, "an id appears more than once");
    set
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

/// The log lines of failed poll cycles, in order.
pub fn failed_cycles(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("poll cycle failed"))
        .collect()
}

/// A loopback port that was free a moment ago: nobody listens on it until
/// a test binds it (a metrics endpoint) or never (a refused connection).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
