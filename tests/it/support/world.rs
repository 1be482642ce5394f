//! [`World`]: one test's simulator, temp dir and config file, and the
//! commands that run the real binary in it.
//!
//! The config is kept as a TOML document and rewritten on every change, so
//! a test says what it changes (`w.set("poll.initial_lookback", "14d")`,
//! `w.set("sinks.hook.concurrency", 1)`) instead of pasting TOML, and
//! changes compose: none of them undoes another.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use toml::{Table, Value as Toml};

use super::daemon::Daemon;
use super::receiver::{self, Receiver};
use super::sim::{Simulator, SimulatorConfig, SimulatorHandle};
use super::{KEY, ago, bin, ids, output_within, read_jsonl_so_far, store, text};

/// The environment variable the config names for the API key.
const KEY_VAR: &str = "OW_TEST_KEY";
/// The environment variable every command gets [`receiver::SECRET`] in,
/// for sinks that use `secret_env` instead of `secret_file`.
pub const SECRET_VAR: &str = "OW_TEST_SECRET";

/// A test's world: a simulator, a temp dir, a config file.
pub struct World {
    pub dir: tempfile::TempDir,
    pub sim: SimulatorHandle,
    pub config: PathBuf,
    doc: Table,
}

/// One `[[sinks]]` entry, built up key by key.
#[derive(Debug, Clone)]
pub struct Sink(Table);

impl Sink {
    /// A sink with just its name and type.
    pub fn new(name: &str, kind: &str) -> Sink {
        Sink(Table::new()).with("name", name).with("type", kind)
    }

    /// A file sink writing to `path`, with the sink's default retry pace.
    pub fn file(name: &str, path: &Path) -> Sink {
        Sink::new(name, "file").with("path", path.display().to_string())
    }

    /// Sets `key` (replacing an earlier value).
    pub fn with(mut self, key: &str, value: impl Into<Toml>) -> Sink {
        self.0.insert(key.to_string(), value.into());
        self
    }

    /// Removes `key`.
    pub fn without(mut self, key: &str) -> Sink {
        self.0.remove(key);
        self
    }

    /// Retries after 100 ms, then at most every second: failures and
    /// recoveries show within a test's patience.
    pub fn quick_retries(self) -> Sink {
        self.with("backoff_initial", "100ms")
            .with("backoff_max", "1s")
    }
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

    /// A quiet world with a webhook sink `hook` (see [`World::hook`])
    /// posting to a fresh [`Receiver`] that answers 200 until told otherwise.
    pub async fn with_webhook() -> (World, Receiver) {
        let rx = Receiver::start().await;
        let mut w = World::new().await;
        w.add_sink(w.hook("hook", &rx.url()));
        (w, rx)
    }

    /// Uses an already started simulator.
    pub fn around(sim: SimulatorHandle) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("orderwatch.toml");
        let mut w = World {
            dir,
            sim,
            config,
            doc: Table::new(),
        };
        let (base_url, store) = (w.sim.base_url(), w.path("orderwatch.db"));
        w.set("digicert.base_url", base_url)
            .set("digicert.api_key_env", KEY_VAR)
            .set("digicert.retries", 3)
            .set("digicert.retry_initial", "100ms")
            .set("digicert.retry_max", "500ms")
            .set("digicert.timeout", "5s")
            .set("digicert.max_requests_per_minute", 180)
            .set("poll.interval", "1s")
            .set("poll.overlap", "10m")
            .set("poll.initial_lookback", "1h")
            .set("store.path", store.display().to_string());
        w
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The store: `[store] path` as configured, or where it would be by
    /// default in this world when the key is unset.
    pub fn store(&self) -> PathBuf {
        self.doc
            .get("store")
            .and_then(|s| s.get("path"))
            .and_then(Toml::as_str)
            .map_or_else(|| self.path("orderwatch.db"), PathBuf::from)
    }

    /// The events file of [`World::file_sink`].
    pub fn events_file(&self) -> PathBuf {
        self.path("events.jsonl")
    }

    /// Sets `section.key` (`"poll.interval"`), or `sinks.NAME.key` for the
    /// sink named NAME, and rewrites the config file.
    pub fn set(&mut self, key: &str, value: impl Into<Toml>) -> &mut World {
        let (table, field) = self.table_of(key);
        table.insert(field, value.into());
        self.write_config()
    }

    /// Removes `section.key` or `sinks.NAME.key` and rewrites the file.
    pub fn unset(&mut self, key: &str) -> &mut World {
        let (table, field) = self.table_of(key);
        table.remove(&field);
        self.write_config()
    }

    /// The table holding `key`, and the key's last part.
    fn table_of(&mut self, key: &str) -> (&mut Table, String) {
        let parts: Vec<&str> = key.split('.').collect();
        match parts.as_slice() {
            ["sinks", name, field] => {
                let sink = self
                    .doc
                    .get_mut("sinks")
                    .and_then(Toml::as_array_mut)
                    .into_iter()
                    .flatten()
                    .filter_map(Toml::as_table_mut)
                    .find(|t| t.get("name").and_then(Toml::as_str) == Some(*name))
                    .unwrap_or_else(|| panic!("no sink named {name:?} for {key}"));
                (sink, field.to_string())
            }
            [section, field] => {
                let table = self
                    .doc
                    .entry(*section)
                    .or_insert_with(|| Toml::Table(Table::new()))
                    .as_table_mut()
                    .unwrap_or_else(|| panic!("{section} is not a table"));
                (table, field.to_string())
            }
            _ => panic!("{key:?} is neither section.key nor sinks.NAME.key"),
        }
    }

    /// Appends a `[[sinks]]` entry.
    pub fn add_sink(&mut self, sink: Sink) -> &mut World {
        let sinks = self
            .doc
            .entry("sinks")
            .or_insert_with(|| Toml::Array(Vec::new()));
        if let Toml::Array(list) = sinks {
            list.push(Toml::Table(sink.0));
        }
        self.write_config()
    }

    /// Adds a file sink named `archive` writing to [`World::events_file`],
    /// retrying quickly.
    pub fn file_sink(&mut self) -> &mut World {
        let sink = Sink::file("archive", &self.events_file()).quick_retries();
        self.add_sink(sink)
    }

    /// A webhook sink posting to `url`, signed with [`receiver::SECRET`]
    /// from a `secret_file`, with test-sized settings: a 5 s timeout, quick
    /// retries, `give_up_after = "1h"` and concurrency 8. Change any of them
    /// with [`Sink::with`].
    pub fn hook(&self, name: &str, url: &str) -> Sink {
        let secret = receiver::write_secret(self.dir.path());
        Sink::new(name, "webhook")
            .with("url", url)
            .with("secret_file", secret.display().to_string())
            .with("timeout", "5s")
            .quick_retries()
            .with("give_up_after", "1h")
            .with("concurrency", 8)
    }

    /// Writes a copy of the config with `changes` (keys as for
    /// [`World::set`]) to `file` in the world's directory, leaving the
    /// world's own config as it is: one node's config among several.
    pub fn variant(&mut self, file: &str, changes: Vec<(&str, Toml)>) -> PathBuf {
        let saved = self.doc.clone();
        for (key, value) in changes {
            let (table, field) = self.table_of(key);
            table.insert(field, value);
        }
        let text = toml::to_string(&self.doc).expect("the config serializes");
        self.doc = saved;
        let path = self.path(file);
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// Writes the config file from the document.
    pub fn write_config(&mut self) -> &mut World {
        let text = toml::to_string(&self.doc).expect("the config serializes");
        std::fs::write(&self.config, text).expect("write config");
        self
    }

    /// `orderwatch --config <ours> <args>` with the key and the webhook
    /// secret in the environment and nothing else that could pick a config.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_with(&self.config, args)
    }

    /// [`World::command`] with another config file (see [`World::variant`]).
    pub fn command_with(&self, config: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--config").arg(config).args(args);
        c.env(KEY_VAR, KEY)
            .env(SECRET_VAR, receiver::SECRET)
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
    /// Returns at once: for tests that need the daemon before it is up (or
    /// expect it not to come up). Most want [`World::spawn_ready`].
    pub fn spawn(&self) -> Daemon {
        self.spawn_with(&["run"], |_| {})
    }

    /// Starts `orderwatch run` and waits until it has opened its store, so
    /// the test can read the store (`events`, `deliveries`, the library)
    /// without racing the daemon's creation of it: two processes creating
    /// one SQLite file at once can make the daemon's "enabling WAL" fail
    /// with "database is locked".
    pub async fn spawn_ready(&self) -> Daemon {
        let mut daemon = self.spawn();
        daemon.wait_until_started().await;
        daemon
    }

    pub fn spawn_with(&self, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Daemon {
        self.spawn_config(&self.config, args, adjust)
    }

    /// [`World::spawn_with`] with another config file.
    pub fn spawn_config(
        &self,
        config: &Path,
        args: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Daemon {
        let log = self.path(&format!("daemon-{}.log", unique()));
        let mut c = self.command_with(config, args);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        adjust(&mut c);
        Daemon::spawn(c, log)
    }

    /// Runs a first cycle that records `1:pending` (so there is a cursor to
    /// keep; the world needs [`World::file_sink`]), then changes the account
    /// so that the next cycle has `1:issued` and `2:pending` to record.
    pub fn prime(&self) {
        self.sim.set_status(1, 11, "pending", ago(120));
        self.once();
        assert_eq!(self.file_ids(), vec!["1:pending"]);
        self.sim.set_status(1, 11, "issued", ago(2));
        self.sim.set_status(2, 12, "pending", ago(1));
    }

    /// Events in the file sink's output (complete lines; see [`read_jsonl_so_far`]).
    pub fn file_events(&self) -> Vec<Value> {
        read_jsonl_so_far(&self.events_file())
    }

    /// Ids of the events in the file sink's output, in file order.
    pub fn file_ids(&self) -> Vec<String> {
        ids(&self.file_events())
    }

    /// `orderwatch events --json`, parsed: every transition, newest first.
    pub fn stored_events(&self) -> Vec<Value> {
        let out = self.run(&["events", "--json", "--limit", "100000000"]);
        assert!(out.status.success(), "events failed: {}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("events --json prints JSON"))
            .collect()
    }

    /// Ids of every recorded transition, oldest first.
    pub fn recorded_ids(&self) -> Vec<String> {
        let mut v = ids(&self.stored_events());
        v.reverse();
        v
    }

    /// The store's cursor, read beside a running daemon.
    pub fn cursor(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        store::cursor(&self.store())
    }

    /// `orderwatch deliveries --json <args>`, parsed.
    pub fn deliveries(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["deliveries", "--json", "--limit", "100000"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "deliveries failed: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("deliveries --json prints JSON lines"))
            .collect()
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
