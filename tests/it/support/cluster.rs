//! [`Cluster`]: several `orderwatch run` processes sharing one PostgreSQL
//! store, as nodes on several hosts would. They share the world's config;
//! each process (a *run*: a node restarted after a kill is a new run) gets
//! its own copy that differs only in what must differ on one machine: the
//! metrics port, the file sink's file, and a `run=N` tag in the webhook URL,
//! so the receiver knows which process sent what.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Daemon, World, free_port, read_jsonl};
use crate::testdb::TestDb;

/// Points the world at `db` with `failover`.
pub fn use_postgres(w: &mut World, db: &TestDb, failover: &str) {
    w.unset("store.path")
        .set("store.url", db.url.clone())
        .set(
            "store.password_file",
            db.password_file.display().to_string(),
        )
        .set("store.failover", failover);
}

/// One `orderwatch run` process.
pub struct Run {
    pub id: usize,
    /// Its `/metrics` and `/healthz` port.
    pub port: u16,
    /// Its file sink's output (each node writes its own file).
    pub events: PathBuf,
    pub daemon: Daemon,
    /// SIGKILLed by the test (its output may end in what was in flight).
    pub killed: bool,
    /// SIGSTOPped by the test, until SIGCONT: it answers nothing.
    pub paused: bool,
}

impl Run {
    /// `/healthz`: the status and the JSON body, if it answers.
    pub fn health(&self) -> Option<(u16, Value)> {
        let (status, body) = get(self.port, "/healthz")?;
        Some((status, serde_json::from_str(&body).ok()?))
    }

    /// The role it reports (`leader`, `standby`, `joining`), if it answers.
    pub fn role(&self) -> Option<String> {
        let (_, v) = self.health()?;
        v["role"].as_str().map(str::to_string)
    }

    /// Ids in its events file, in file order. A killed process may have
    /// left a torn last line, which is no event; any other bad line fails.
    pub fn file_ids(&self) -> Vec<String> {
        if !self.killed {
            return super::ids(&read_jsonl(&self.events));
        }
        let text = std::fs::read_to_string(&self.events).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match serde_json::from_str::<Value>(l) {
                Ok(v) => Some(v["id"].as_str().unwrap_or_default().to_string()),
                Err(e) if i + 1 == lines.len() && e.is_eof() => None,
                Err(e) => panic!("bad line in {}: {e}: {l:?}", self.events.display()),
            })
            .collect()
    }
}

/// Every process started for one test, in order.
pub struct Cluster {
    pub runs: Vec<Run>,
    /// The webhook sink `hook`'s URL without the run tag, if the world has one.
    hook: Option<String>,
}

impl Cluster {
    pub fn new(hook: Option<String>) -> Cluster {
        Cluster {
            runs: Vec::new(),
            hook,
        }
    }

    /// Starts one more node; returns its run id (an index into `runs`).
    pub fn start(&mut self, w: &mut World) -> usize {
        self.start_with(w, |_| {})
    }

    /// [`Cluster::start`], with `adjust` applied to the command.
    pub fn start_with(&mut self, w: &mut World, adjust: impl FnOnce(&mut Command)) -> usize {
        let id = self.runs.len();
        let port = free_port();
        let events = w.path(&format!("events-{id}.jsonl"));
        let mut changes = vec![
            ("metrics.listen", format!("127.0.0.1:{port}").into()),
            ("sinks.archive.path", events.display().to_string().into()),
        ];
        if let Some(hook) = &self.hook {
            changes.push(("sinks.hook.url", format!("{hook}?run={id}").into()));
        }
        let config = w.variant(&format!("node-{id}.toml"), changes);
        let daemon = w.spawn_config(&config, &["run"], adjust);
        self.runs.push(Run {
            id,
            port,
            events,
            daemon,
            killed: false,
            paused: false,
        });
        id
    }

    /// Runs neither killed nor paused (they may have exited on their own).
    pub fn alive(&self) -> impl Iterator<Item = &Run> {
        self.runs.iter().filter(|r| !r.killed && !r.paused)
    }

    /// SIGSTOP: the process stops where it is, connections and all.
    pub fn pause(&mut self, id: usize) {
        self.runs[id].daemon.signal("STOP");
        self.runs[id].paused = true;
    }

    /// SIGCONT.
    pub fn resume(&mut self, id: usize) {
        self.runs[id].daemon.signal("CONT");
        self.runs[id].paused = false;
    }

    /// SIGKILL; returns when it happened.
    pub fn kill(&mut self, id: usize) -> Instant {
        let run = &mut self.runs[id];
        run.daemon.signal("KILL");
        let at = Instant::now();
        run.killed = true;
        run.daemon.kill();
        at
    }

    /// Waits until exactly one live run leads and every other stands by
    /// naming it; returns the leader. Panics with the logs after `timeout`.
    pub async fn settled(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.agreed() {
                return leader;
            }
            if Instant::now() >= deadline {
                panic!("the nodes never agreed on a leader:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn agreed(&self) -> Option<usize> {
        let health: Vec<(usize, Value)> = self
            .alive()
            .map(|r| r.health().map(|(_, v)| (r.id, v)))
            .collect::<Option<_>>()?;
        let leaders: Vec<&(usize, Value)> = health
            .iter()
            .filter(|(_, v)| v["role"] == "leader")
            .collect();
        let [(leader, lv)] = leaders.as_slice() else {
            return None;
        };
        let all_follow = health
            .iter()
            .all(|(id, v)| id == leader || (v["role"] == "standby" && v["leader"] == lv["node"]));
        all_follow.then_some(*leader)
    }

    /// Waits until a live run leads; returns it and how long after `since`
    /// it said so. Panics with the logs after `timeout`.
    pub async fn takeover(&self, since: Instant, timeout: Duration) -> (usize, Duration) {
        loop {
            if let Some(r) = self.alive().find(|r| r.role().as_deref() == Some("leader")) {
                return (r.id, since.elapsed());
            }
            if since.elapsed() >= timeout {
                panic!("no node took over within {timeout:?}:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every run's log, for failure messages.
    pub fn logs(&self) -> String {
        self.runs
            .iter()
            .map(|r| format!("--- run {} ---\n{}", r.id, r.daemon.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `GET path` on a loopback port: the status and the body.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head
        .lines()
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((status, body.to_string()))
}
