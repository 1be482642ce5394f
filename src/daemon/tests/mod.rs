//! The daemon in-process, on tokio's paused clock: a scripted change source
//! instead of CertCentral, a real SQLite store and a real file sink. The
//! schedule, shutdown from outside, reloads and `run --once` are checked
//! over minutes of virtual time in milliseconds.

use std::sync::Mutex;

use chrono::Utc;
use tokio::time::Instant;

use super::*;
use crate::certcentral::{ApiError, Fetched};
use crate::transition::OrderChange;
use crate::window::Window;

mod leadership;

/// A stand-in account: every call answers with the current status of every
/// order, after `delay`; `fail` makes calls fail with `invalid_api_key`.
#[derive(Default)]
struct Account {
    orders: Mutex<Vec<OrderChange>>,
    /// Tokio time (since the test began) when each call started and ended.
    calls: Mutex<Vec<(Duration, Duration)>>,
    delay: Mutex<Duration>,
    fail: std::sync::atomic::AtomicBool,
    start: Mutex<Option<Instant>>,
}

impl Account {
    fn new() -> Arc<Account> {
        let a = Account::default();
        *a.start.lock().unwrap() = Some(Instant::now());
        Arc::new(a)
    }

    fn set(&self, order_id: i64, status: &str) {
        let mut orders = self.orders.lock().unwrap();
        orders.retain(|o| o.order_id != order_id);
        orders.push(OrderChange {
            order_id,
            certificate_id: Some(order_id + 100),
            status: Arc::from(status),
        });
    }

    fn calls(&self) -> Vec<(Duration, Duration)> {
        self.calls.lock().unwrap().clone()
    }

    fn since_start(&self) -> Duration {
        self.start
            .lock()
            .unwrap()
            .map(|s| s.elapsed())
            .unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl ChangeSource for Account {
    async fn status_changes(&self, _window: &Window) -> Result<Fetched, ApiError> {
        let began = self.since_start();
        let delay = *self.delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        self.calls.lock().unwrap().push((began, self.since_start()));
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ApiError::Api {
                url: "http://127.0.0.1:9/services/v2".into(),
                status: 401,
                code: "invalid_api_key".into(),
                message: "bad key".into(),
                retry_after: None,
            });
        }
        Ok(Fetched {
            api_time: None,
            covered_from: None,
            orders: self.orders.lock().unwrap().clone().into(),
            asked_at: Utc::now(),
            requests: 1,
        })
    }
}

/// A config file in a temporary directory: the store and a file sink there.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the config with `extra` appended and returns it loaded.
    fn write(&self, extra: &str) -> Config {
        let text = format!(
            r#"
[digicert]
base_url = "http://127.0.0.1:9/services/v2"
api_key_file = {key:?}

[poll]
interval = "1m"

[store]
path = {store:?}

[[sinks]]
name = "archive"
type = "file"
path = {events:?}
{extra}
"#,
            key = self.path("api-key"),
            store = self.path("ow.db"),
            events = self.path("events.jsonl"),
        );
        std::fs::write(self.path("api-key"), "key\n").unwrap();
        std::fs::write(self.path("orderwatch.toml"), text).unwrap();
        Config::load(&self.path("orderwatch.toml")).unwrap()
    }

    fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(file))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["id"].as_str().unwrap().to_string()
            })
            .collect()
    }

    fn options(&self, account: &Arc<Account>, once: bool) -> RunOptions {
        let source = Arc::clone(account);
        RunOptions {
            once,
            drain_timeout: None,
            config_path: Some(self.path("orderwatch.toml")),
            source: Arc::new(move |_, _, _, _| Ok(source.clone() as Arc<dyn ChangeSource>)),
            clock: Clock::tokio(crate::transition::now_ms()),
            leadership: None,
        }
    }

    fn spawn(
        &self,
        config: Config,
        account: &Arc<Account>,
        control: &Control,
    ) -> tokio::task::JoinHandle<Result<(), RunError>> {
        let opts = self.options(account, false);
        let control = control.clone();
        tokio::spawn(run(config, Secret::new("key"), opts, control))
    }
}

/// Waits in tokio time until `done` holds; fails after `limit`.
async fn until(limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "not done within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn cycles_start_on_the_interval_and_never_overlap() {
    let s = Setup::new();
    let account = Account::new();
    account.set(1, "pending");
    let control = Control::new();
    let running = s.spawn(s.write(""), &account, &control);
    // Three quick cycles, a minute apart (start to start).
    until(Duration::from_secs(200), || account.calls().len() == 3).await;
    // Then each cycle takes 90 s: the next starts when it ends, never
    // while it runs.
    *account.delay.lock().unwrap() = Duration::from_secs(90);
    until(Duration::from_secs(900), || account.calls().len() == 7).await;
    control.shutdown();
    running.await.unwrap().unwrap();

    let calls = account.calls();
    let interval = Duration::from_secs(60);
    for pair in calls.windows(2) {
        let ((start, end), (next, _)) = (pair[0], pair[1]);
        assert!(next >= end, "cycles overlap: {calls:?}");
        assert!(next >= start + interval, "too soon: {calls:?}");
        let due = (start + interval).max(end) + Duration::from_secs(1);
        assert!(next <= due, "a cycle was skipped: {calls:?}");
    }
    assert_eq!(s.lines("events.jsonl"), ["1:pending"]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_from_outside_stops_polling_and_keeps_what_was_delivered() {
    let s = Setup::new();
    let account = Account::new();
    for id in 1..=3 {
        account.set(id, "pending");
    }
    let control = Control::new();
    let running = s.spawn(s.write(""), &account, &control);
    until(Duration::from_secs(30), || {
        s.lines("events.jsonl").len() == 3
    })
    .await;
    control.shutdown();
    let stopped = tokio::time::timeout(SHUTDOWN_GRACE * 2, running).await;
    stopped
        .expect("stops within the grace period")
        .unwrap()
        .unwrap();
    let polls = account.calls().len();
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(account.calls().len(), polls, "no poll after shutdown");

    // A new daemon on the same store delivers nothing twice.
    account.set(1, "issued");
    let control = Control::new();
    let running = s.spawn(s.write(""), &account, &control);
    until(Duration::from_secs(30), || {
        s.lines("events.jsonl").len() == 4
    })
    .await;
    tokio::time::sleep(Duration::from_secs(180)).await;
    control.shutdown();
    running.await.unwrap().unwrap();
    let mut ids = s.lines("events.jsonl");
    ids.sort();
    assert_eq!(ids, ["1:issued", "1:pending", "2:pending", "3:pending"]);
}

#[tokio::test(start_paused = true)]
async fn a_reload_starts_new_sinks_and_an_invalid_config_keeps_the_running_one() {
    let s = Setup::new();
    let account = Account::new();
    account.set(1, "pending");
    let control = Control::new();
    let running = s.spawn(s.write(""), &account, &control);
    until(Duration::from_secs(30), || {
        s.lines("events.jsonl").len() == 1
    })
    .await;

    // Invalid: refused, the daemon keeps running the old generation.
    std::fs::write(s.path("orderwatch.toml"), "[poll]\nintervall = \"1m\"\n").unwrap();
    control.reload();
    account.set(2, "pending");
    until(Duration::from_secs(120), || {
        s.lines("events.jsonl").len() == 2
    })
    .await;
    assert!(!running.is_finished());

    // Valid, with a second file sink: it gets what is recorded from now on.
    let second = format!(
        "[[sinks]]\nname = \"second\"\ntype = \"file\"\npath = {:?}\n",
        s.path("second.jsonl")
    );
    s.write(&second);
    control.reload();
    tokio::time::sleep(Duration::from_secs(1)).await;
    account.set(3, "pending");
    until(Duration::from_secs(120), || {
        s.lines("second.jsonl").len() == 1
    })
    .await;
    assert_eq!(s.lines("second.jsonl"), ["3:pending"]);
    assert_eq!(s.lines("events.jsonl").len(), 3);
    control.shutdown();
    running.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failing_source_is_tried_again_at_the_next_interval() {
    let s = Setup::new();
    let account = Account::new();
    account.set(1, "pending");
    account
        .fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let control = Control::new();
    let running = s.spawn(s.write(""), &account, &control);
    until(Duration::from_secs(200), || account.calls().len() == 3).await;
    assert!(s.lines("events.jsonl").is_empty());
    account
        .fail
        .store(false, std::sync::atomic::Ordering::SeqCst);
    until(Duration::from_secs(120), || {
        s.lines("events.jsonl").len() == 1
    })
    .await;
    control.shutdown();
    running.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn run_once_records_delivers_and_returns() {
    let s = Setup::new();
    let account = Account::new();
    for id in 1..=5 {
        account.set(id, "issued");
    }
    let opts = s.options(&account, true);
    let done = run(s.write(""), Secret::new("key"), opts, Control::new());
    tokio::time::timeout(Duration::from_secs(60), done)
        .await
        .expect("run --once returns by itself")
        .unwrap();
    assert_eq!(account.calls().len(), 1);
    assert_eq!(s.lines("events.jsonl").len(), 5);
}

#[test]
fn a_toml_error_becomes_one_readable_line() {
    let e = "c.toml: TOML parse error at line 4, column 1\n  |\n4 | intervall = \"1s\"\n  | ^^^^^^^^^\nunknown field `intervall`, expected `interval`\n";
    assert_eq!(
        super::reload::one_line(e),
        "c.toml: TOML parse error at line 4, column 1; 4 | intervall = \"1s\"; unknown field `intervall`, expected `interval`"
    );
}
