//! Living under systemd: the unit file (its directives, `systemd-analyze
//! verify` and the security score), the notify protocol (READY only once the
//! config is valid and the store is open; WATCHDOG pings; STATUS lines;
//! RELOADING and STOPPING), and what systemd hands the process instead of a
//! config (`$STATE_DIRECTORY`, `$CREDENTIALS_DIRECTORY`).
//!
//! The `systemd-analyze` checks run where the tool is installed and print
//! "skipped: systemd-analyze not installed" elsewhere; with
//! `ORDERWATCH_REQUIRE_SYSTEMD_ANALYZE=1` (set by `.ci/run` once it has the
//! tool) a missing tool fails instead.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::receiver::{Receiver, SECRET};
use common::{KEY, World, ago, eventually, ids, text};

const UNIT_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/orderwatch.service");
const BINARY: &str = "/usr/bin/orderwatch";

fn unit_text() -> String {
    std::fs::read_to_string(UNIT_PATH).expect("systemd/orderwatch.service exists")
}

/// `(section, key, value)` of every directive, comments skipped.
fn directives(unit: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            section = line.trim_matches(['[', ']']).to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a directive: {line:?}"));
        out.push((
            section.clone(),
            key.trim().to_string(),
            value.trim().to_string(),
        ));
    }
    out
}

/// Every value of `key` in `[Service]`.
fn service(key: &str) -> Vec<String> {
    directives(&unit_text())
        .into_iter()
        .filter(|(s, k, _)| s == "Service" && k == key)
        .map(|(_, _, v)| v)
        .collect()
}

/// The single value of `key` in `[Service]`.
fn one(key: &str) -> String {
    let values = service(key);
    assert_eq!(
        values.len(),
        1,
        "{key}= should be set exactly once: {values:?}"
    );
    values[0].clone()
}

#[test]
fn the_unit_is_a_notify_service_with_watchdog_reload_and_restart() {
    assert_eq!(one("Type"), "notify");
    // check's verdict is logged but ignored ("-"): systemd would restart
    // after a failed ExecStartPre= whatever RestartPreventExitStatus= says;
    // `run` refuses a bad config itself with exit 2, which stops restarts.
    assert_eq!(one("ExecStartPre"), format!("-{BINARY} check"));
    assert_eq!(one("RestartPreventExitStatus"), "2");
    assert_eq!(one("ExecStart"), format!("{BINARY} run"));
    let reload = one("ExecReload");
    assert!(
        reload == "kill -HUP $MAINPID" || reload.ends_with("/kill -HUP $MAINPID"),
        "ExecReload={reload}"
    );
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("NotifyAccess"), "main");
    // The watchdog must outlast one CertCentral request at the default
    // 30 s timeout, or a healthy daemon gets restarted mid-request.
    let watchdog = humantime::parse_duration(&one("WatchdogSec")).expect("WatchdogSec parses");
    assert!(
        watchdog >= Duration::from_secs(60),
        "WatchdogSec={watchdog:?}"
    );
    // systemd must wait longer than the shutdown grace for in-flight deliveries.
    let stop = humantime::parse_duration(&one("TimeoutStopSec")).expect("TimeoutStopSec parses");
    assert!(
        stop > orderwatch::daemon::SHUTDOWN_GRACE,
        "TimeoutStopSec={stop:?}"
    );
}

#[test]
fn the_unit_runs_as_a_dynamic_user_with_state_config_and_credentials() {
    assert_eq!(one("DynamicUser"), "yes");
    assert_eq!(one("StateDirectory"), "orderwatch");
    assert_eq!(one("ConfigurationDirectory"), "orderwatch");
    assert!(
        service("LoadCredential")
            .contains(&"digicert-api-key:/etc/orderwatch/digicert-api-key".to_string()),
        "LoadCredential={:?}",
        service("LoadCredential")
    );
    // The webhook secret example is there, commented out, with the name the
    // config loader looks for.
    assert!(
        unit_text()
            .lines()
            .any(|l| l.starts_with("#LoadCredential=webhook-")),
        "no commented LoadCredential=webhook-<sink> example"
    );
    // Secrets never travel in the environment.
    assert!(service("Environment").iter().all(|e| !e.contains("KEY")));
}

#[test]
fn the_sandbox_keeps_outbound_network_dns_and_sd_notify() {
    let families: Vec<String> = one("RestrictAddressFamilies")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(families, ["AF_UNIX", "AF_INET", "AF_INET6"]);
    assert!(
        service("PrivateNetwork")
            .iter()
            .all(|v| v != "yes" && v != "true"),
        "PrivateNetwork would cut off DigiCert, webhooks and /metrics"
    );
    assert!(
        service("IPAddressDeny").is_empty(),
        "IPAddressDeny= would block outbound HTTPS to addresses we cannot list"
    );
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("CapabilityBoundingSet"), "");
}

/// `systemd-analyze`, or `None` (after saying so) where it is not installed.
fn systemd_analyze() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("systemd-analyze"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("ORDERWATCH_REQUIRE_SYSTEMD_ANALYZE").is_none(),
            "systemd-analyze is required (ORDERWATCH_REQUIRE_SYSTEMD_ANALYZE) but not installed"
        );
        eprintln!("skipped: systemd-analyze not installed");
    }
    found
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let Some(tool) = systemd_analyze() else {
        return;
    };
    // verify insists that every Exec binary exists: point the copy at the
    // binary cargo built, and change nothing else.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("orderwatch.service");
    let unit = unit_text().replace(BINARY, &common::bin().display().to_string());
    std::fs::write(&copy, unit).unwrap();
    let out = Command::new(tool)
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze runs");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "verify failed:\n{stderr}");
    // verify exits 0 even after "Unknown key" or "Failed to parse": any
    // complaint about our unit counts.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("orderwatch.service"))
        .collect();
    assert!(complaints.is_empty(), "verify complained:\n{stderr}");
}

#[test]
fn the_unit_scores_an_exposure_of_at_most_1_5() {
    let Some(tool) = systemd_analyze() else {
        return;
    };
    let out = Command::new(tool)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(UNIT_PATH)
        .output()
        .expect("systemd-analyze runs");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "security failed:\n{stdout}{}",
        text(&out.stderr)
    );
    let score: f64 = stdout
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for orderwatch.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{stdout}"));
    assert!(score <= 1.5, "exposure {score} > 1.5:\n{stdout}");
}

/// A stand-in for systemd's notification socket: every datagram received,
/// split into `KEY=value` lines, with what `on_ready` saw when READY=1 came.
struct NotifySocket {
    path: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    at_ready: Arc<Mutex<Vec<bool>>>,
}

impl NotifySocket {
    /// Binds `dir/notify.sock`; `on_ready` runs the moment READY=1 arrives.
    fn bind(dir: &Path, on_ready: impl Fn() -> bool + Send + 'static) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let at_ready = Arc::new(Mutex::new(Vec::new()));
        let (l, r) = (Arc::clone(&lines), Arc::clone(&at_ready));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            // Ends when the test (and with it `lines`) is gone.
            while Arc::strong_count(&l) > 1 {
                let Ok(n) = socket.recv(&mut buf) else {
                    continue;
                };
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg.lines().any(|m| m == "READY=1") {
                    r.lock().unwrap().push(on_ready());
                }
                l.lock().unwrap().extend(msg.lines().map(str::to_string));
            }
        });
        NotifySocket {
            path,
            lines,
            at_ready,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn count(&self, line: &str) -> usize {
        self.lines().iter().filter(|l| *l == line).count()
    }

    fn statuses(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter_map(|l| l.strip_prefix("STATUS=").map(str::to_string))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_comes_once_the_store_is_open_then_watchdog_pings_and_status_lines() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(10, 110, "pending", ago(60));
    w.sim.set_status(11, 111, "issued", ago(30));
    let store = w.store();
    let lock = PathBuf::from(format!("{}.lock", store.display()));
    // At READY=1 the store must exist and be locked by the daemon.
    let notify = NotifySocket::bind(w.dir.path(), move || store.exists() && lock.exists());
    let mut daemon = w.spawn_with(&["run"], |c| {
        c.env("NOTIFY_SOCKET", &notify.path)
            .env("WATCHDOG_USEC", "2000000");
    });

    let ready = eventually(Duration::from_secs(30), || notify.count("READY=1") >= 1).await;
    assert!(
        ready,
        "no READY=1; got {:?}\nlog:\n{}",
        notify.lines(),
        daemon.log_text()
    );
    assert_eq!(
        *notify.at_ready.lock().unwrap(),
        [true],
        "READY=1 before the store was open"
    );

    // WATCHDOG_USEC=2s: a ping about every second, for as long as it runs.
    let fed = eventually(Duration::from_secs(30), || notify.count("WATCHDOG=1") >= 3).await;
    assert!(
        fed,
        "watchdog not fed: {:?}\nlog:\n{}",
        notify.lines(),
        daemon.log_text()
    );

    let polled = eventually(Duration::from_secs(30), || {
        notify.statuses().iter().any(|s| {
            s.starts_with("polling every 1s, cursor lag ") && s.ends_with(" pending deliveries")
        })
    })
    .await;
    assert!(polled, "no polling STATUS line: {:?}", notify.statuses());
    assert!(
        eventually(Duration::from_secs(30), || w.file_events().len() == 2).await,
        "events not delivered"
    );

    // systemctl reload: RELOADING=1, then READY=1 again with a new status.
    daemon.signal("HUP");
    let reloaded = eventually(Duration::from_secs(30), || {
        notify.count("RELOADING=1") == 1 && notify.count("READY=1") == 2
    })
    .await;
    assert!(reloaded, "reload not announced: {:?}", notify.lines());
    assert!(
        notify
            .statuses()
            .iter()
            .any(|s| s.starts_with("configuration reloaded from ")),
        "{:?}",
        notify.statuses()
    );
    let after_reload = notify.count("WATCHDOG=1");
    assert!(
        eventually(Duration::from_secs(30), || notify.count("WATCHDOG=1")
            > after_reload + 1)
        .await,
        "watchdog not fed after the reload"
    );

    let status = daemon.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit {status:?}\n{}", daemon.log_text());
    assert!(
        eventually(Duration::from_secs(5), || notify.count("STOPPING=1") == 1).await,
        "no STOPPING=1: {:?}",
        notify.lines()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ready_is_sent_when_the_config_is_invalid_or_the_store_cannot_open() {
    let w = World::new().await;
    let notify = NotifySocket::bind(w.dir.path(), || true);

    // The API key variable is unset: a config error, exit 2.
    let mut c = w.command(&["run"]);
    c.env("NOTIFY_SOCKET", &notify.path)
        .env_remove("OW_TEST_KEY");
    let out = common::output_within(c, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // A store in a directory that does not exist: a runtime failure, exit 1.
    let config = std::fs::read_to_string(&w.config).unwrap().replace(
        &format!("path = \"{}\"", w.store().display()),
        &format!(
            "path = \"{}\"",
            w.path("missing/dir/orderwatch.db").display()
        ),
    );
    std::fs::write(&w.config, config).unwrap();
    let mut c = w.command(&["run"]);
    c.env("NOTIFY_SOCKET", &notify.path);
    let out = common::output_within(c, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    // Give stray datagrams time to arrive before asserting there were none.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(notify.count("READY=1"), 0, "{:?}", notify.lines());
}

/// The config of `w` with `[store] path` (and the file's `path =` line only
/// for the store) removed.
fn without_store_path(w: &World) -> String {
    std::fs::read_to_string(&w.config)
        .unwrap()
        .replace(&format!("path = \"{}\"\n", w.store().display()), "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_store_path_the_store_lives_in_the_state_directory() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(20, 120, "issued", ago(30));
    std::fs::write(&w.config, without_store_path(&w)).unwrap();
    let state = w.path("state");
    std::fs::create_dir(&state).unwrap();

    let mut c = w.command(&["run", "--once"]);
    c.env("STATE_DIRECTORY", &state);
    let out = common::output_within(c, Duration::from_secs(60));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(state.join("orderwatch.db").exists());
    assert!(!w.store().exists(), "the store went somewhere else");
    assert_eq!(ids(&w.file_events()), ["20:issued"]);

    // Without the variable there is nowhere to put it: a config error that
    // says which key and what to do.
    let out = w.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("store.path"), "{stderr}");
    assert!(stderr.contains("STATE_DIRECTORY"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_come_from_systemd_credentials_when_the_config_names_none() {
    let mut w = World::new().await;
    let receiver = Receiver::start().await;
    w.sink_toml(&format!(
        "[[sinks]]\nname = \"ops-hook\"\ntype = \"webhook\"\nurl = \"{}\"\nbackoff_initial = \"100ms\"\n",
        receiver.url()
    ));
    w.sim.set_status(30, 130, "issued", ago(30));
    let config = std::fs::read_to_string(&w.config)
        .unwrap()
        .replace("api_key_env = \"OW_TEST_KEY\"\n", "");
    std::fs::write(&w.config, config).unwrap();
    // What LoadCredential= provides: root-owned files in a private directory.
    let creds = w.path("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("digicert-api-key"), format!("{KEY}\n")).unwrap();
    std::fs::write(creds.join("webhook-ops-hook"), SECRET).unwrap();

    let mut c = w.command(&["run", "--once"]);
    c.env("CREDENTIALS_DIRECTORY", &creds)
        .env_remove("OW_TEST_KEY")
        .env_remove("DIGICERT_API_KEY");
    let out = common::output_within(c, Duration::from_secs(60));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        w.sim
            .queries()
            .iter()
            .all(|q| q.api_key_sent.as_deref() == Some(KEY)),
        "the API key from the credential was not sent"
    );
    let got = receiver.accepted();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].signature_ok, "signed with the wrong secret");
    assert!(
        !stderr.contains(KEY) && !stderr.contains(SECRET),
        "a secret was logged"
    );
}
