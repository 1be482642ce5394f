//! Living under systemd at run time: the notify protocol (READY only once
//! the config is valid and the store is open; WATCHDOG pings; STATUS lines;
//! RELOADING and STOPPING), and what systemd hands the process instead of a
//! config (`$STATE_DIRECTORY`, `$CREDENTIALS_DIRECTORY`).

use std::path::PathBuf;
use std::time::Duration;

use crate::support::notify::NotifySocket;
use crate::support::receiver::{Receiver, SECRET};
use crate::support::{KEY, World, ago, eventually, ids, output_within, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_comes_once_the_store_is_open_then_watchdog_pings_and_status_lines() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(10, 110, "pending", ago(60));
    w.sim.set_status(11, 111, "issued", ago(30));
    let store = w.store();
    let lock = PathBuf::from(format!("{}.lock", store.display()));
    // At READY=1 the store must exist and be locked by the daemon.
    let notify = NotifySocket::bind(&w.path("notify.sock"), move || {
        store.exists() && lock.exists()
    });
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
    let mut w = World::new().await;
    let notify = NotifySocket::bind(&w.path("notify.sock"), || true);

    // The API key variable is unset: a config error, exit 2.
    let mut c = w.command(&["run"]);
    c.env("NOTIFY_SOCKET", &notify.path)
        .env_remove("OW_TEST_KEY");
    let out = output_within(c, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // A store in a directory that does not exist: `[store] path` is wrong,
    // a config error, exit 2 (the unit is not restarted over it).
    let missing = w.path("missing/dir/orderwatch.db");
    w.set("store.path", missing.display().to_string());
    let mut c = w.command(&["run"]);
    c.env("NOTIFY_SOCKET", &notify.path);
    let out = output_within(c, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // A store that cannot open (garbage where the database should be): a
    // runtime failure, exit 1.
    let garbage = w.path("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).expect("garbage");
    w.set("store.path", garbage.display().to_string());
    let mut c = w.command(&["run"]);
    c.env("NOTIFY_SOCKET", &notify.path);
    let out = output_within(c, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    // Give stray datagrams time to arrive before asserting there were none.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(notify.count("READY=1"), 0, "{:?}", notify.lines());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_store_path_the_store_lives_in_the_state_directory() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(20, 120, "issued", ago(30));
    w.unset("store.path");
    let state = w.path("state");
    std::fs::create_dir(&state).unwrap();

    let mut c = w.command(&["run", "--once"]);
    c.env("STATE_DIRECTORY", &state);
    let out = output_within(c, Duration::from_secs(60));
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
    // Neither sink nor API key names a secret: both come from credentials.
    w.add_sink(w.hook("ops-hook", &receiver.url()).without("secret_file"));
    w.unset("digicert.api_key_env");
    w.sim.set_status(30, 130, "issued", ago(30));
    // What LoadCredential= provides: root-owned files in a private directory.
    let creds = w.path("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("digicert-api-key"), format!("{KEY}\n")).unwrap();
    std::fs::write(creds.join("webhook-ops-hook"), SECRET).unwrap();

    let mut c = w.command(&["run", "--once"]);
    c.env("CREDENTIALS_DIRECTORY", &creds)
        .env_remove("OW_TEST_KEY")
        .env_remove("DIGICERT_API_KEY");
    let out = output_within(c, Duration::from_secs(60));
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

/// CPU time (user + system) of a process so far, from `/proc/PID/stat`.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name (which is in parentheses).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_watchdog_timeouts_neither_kill_the_daemon_nor_spin_it() {
    for (usec, says) in [
        ("0", "the watchdog is not fed"),
        ("1", "pinging every 50ms"),
    ] {
        let mut w = World::new().await;
        w.file_sink();
        w.sim.set_status(1, 11, "pending", ago(60));
        let notify = NotifySocket::bind(&w.path("notify.sock"), || true);
        let mut daemon = w.spawn_with(&["run"], |c| {
            c.env("NOTIFY_SOCKET", &notify.path)
                .env("WATCHDOG_USEC", usec);
        });
        let delivered = eventually(Duration::from_secs(30), || w.file_events().len() == 1).await;
        assert!(delivered, "WATCHDOG_USEC={usec}:\n{}", daemon.log_text());
        let before = cpu_time(daemon.pid());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let used = cpu_time(daemon.pid()) - before;
        assert!(
            used < Duration::from_millis(500),
            "WATCHDOG_USEC={usec}: {used:?} of CPU in 2 s"
        );
        assert!(daemon.log_text().contains(says), "{}", daemon.log_text());
        assert!(daemon.terminate(Duration::from_secs(20)).success());
    }
}
