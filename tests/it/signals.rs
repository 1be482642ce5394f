//! Signals: SIGTERM/SIGINT stop polling, give in-flight deliveries the grace
//! period, commit and exit 0 (nothing lost: what did not finish goes out
//! after the restart); SIGHUP reopens file sinks and reloads the config when
//! it is valid, and keeps the running one (saying why) when it is not.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::support::receiver::{Receiver, Reply};
use crate::support::{Sink, World, ago, eventually, ids, output_within, read_jsonl, text};

const BACKLOG: usize = 20_000;

/// A webhook sink `hook` whose requests may hang far beyond the shutdown
/// grace period (a 60 s timeout).
fn hook_sink(w: &World, r: &Receiver, concurrency: i64) -> Sink {
    w.hook("hook", &r.url())
        .with("timeout", "60s")
        .with("concurrency", concurrency)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_large_backlog_exits_within_the_grace_period_and_loses_nothing() {
    let mut w = World::new().await;
    let receiver = Receiver::start().await;
    receiver.set_default(Reply::Slow(Duration::from_millis(200)));
    w.file_sink();
    w.add_sink(hook_sink(&w, &receiver, 8));
    w.sim.bulk_insert(1, BACKLOG, "issued", ago(60));
    let mut daemon = w.spawn_ready().await;

    // The backlog is recorded and going out slowly.
    let flowing = eventually(Duration::from_secs(60), || receiver.accepted().len() >= 16).await;
    assert!(flowing, "no deliveries:\n{}", daemon.log_text());
    // Now the receiver stops answering: requests in flight at SIGTERM hang
    // far beyond the grace period (their timeout is 60 s).
    receiver.set_default(Reply::Hang);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let asked = Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait_timeout(Duration::from_secs(60));
    let took = asked.elapsed();
    let log = daemon.log_text();
    let status = status.unwrap_or_else(|| panic!("still running 60 s after SIGTERM:\n{log}"));
    assert!(status.success(), "exit {status:?}:\n{log}");
    // Grace is 5 s; without it we would wait out the 60 s request timeout.
    assert!(
        took < Duration::from_secs(30),
        "took {took:?} to stop:\n{log}"
    );
    assert!(log.contains("grace period over"), "{log}");
    let first_run: HashSet<String> = receiver.accepted().into_iter().map(|d| d.id).collect();
    assert!(
        first_run.len() < BACKLOG,
        "the whole backlog went out before SIGTERM"
    );

    // Restart with a receiver that answers at once: everything arrives, at
    // least once, in the webhook and in the file.
    receiver.set_default(Reply::Status(200));
    w.set("sinks.hook.concurrency", 32);
    let out = output_within(w.command(&["run", "--once"]), Duration::from_secs(300));
    assert!(out.status.success(), "{}", text(&out.stderr));

    let delivered: HashSet<String> = receiver.accepted().into_iter().map(|d| d.id).collect();
    let filed: HashSet<String> = ids(&w.file_events()).into_iter().collect();
    for n in 1..=BACKLOG {
        let id = format!("{n}:issued");
        assert!(delivered.contains(&id), "{id} never reached the webhook");
        assert!(filed.contains(&id), "{id} never reached the file");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_the_daemon_like_sigterm() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(1, 11, "issued", ago(30));
    let mut daemon = w.spawn_ready().await;
    assert!(eventually(Duration::from_secs(30), || w.file_events().len() == 1).await);
    daemon.signal("INT");
    let status = daemon
        .wait_timeout(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("SIGINT did not stop it:\n{}", daemon.log_text()));
    assert!(status.success(), "{status:?}");
    assert!(daemon.log_text().contains("stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_after_logrotate_moves_the_file_writes_new_events_to_the_original_path() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(1, 11, "issued", ago(30));
    let mut daemon = w.spawn_ready().await;
    assert!(eventually(Duration::from_secs(30), || w.file_events().len() == 1).await);

    let rotated = w.path("events.jsonl.1");
    std::fs::rename(w.events_file(), &rotated).unwrap();
    daemon.signal("HUP");
    daemon.wait_for_log("SIGHUP: configuration reloaded").await;
    w.sim.set_status(2, 12, "issued", ago(1));

    let moved_on = eventually(Duration::from_secs(30), || w.file_events().len() == 1).await;
    assert!(moved_on, "no new file:\n{}", daemon.log_text());
    assert_eq!(ids(&w.file_events()), ["2:issued"]);
    assert_eq!(ids(&read_jsonl(&rotated)), ["1:issued"]);
    assert!(daemon.is_running());
    assert!(daemon.terminate(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_valid_config_delivers_new_events_to_an_added_sink() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(1, 11, "issued", ago(30));
    let mut daemon = w.spawn_ready().await;
    assert!(eventually(Duration::from_secs(30), || w.file_events().len() == 1).await);

    let second = w.path("second.jsonl");
    w.add_sink(Sink::file("second", &second));
    daemon.signal("HUP");
    daemon.wait_for_log("SIGHUP: configuration reloaded").await;
    w.sim.set_status(2, 12, "issued", ago(1));

    let arrived = eventually(Duration::from_secs(30), || !read_jsonl(&second).is_empty()).await;
    assert!(arrived, "the new sink got nothing:\n{}", daemon.log_text());
    // Only what was recorded after the reload.
    assert_eq!(ids(&read_jsonl(&second)), ["2:issued"]);
    assert!(eventually(Duration::from_secs(30), || w.file_events().len() == 2).await);
    assert!(daemon.terminate(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_broken_config_keeps_the_running_one_and_logs_why() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(1, 11, "issued", ago(30));
    let mut daemon = w.spawn_ready().await;
    assert!(eventually(Duration::from_secs(30), || w.file_events().len() == 1).await);

    // A typo an operator might make: an unknown key.
    w.unset("poll.interval").set("poll.intervall", "1s");
    daemon.signal("HUP");
    daemon.wait_for_log("keeping the running one").await;
    let log = daemon.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("keeping the running one"))
        .unwrap_or_default();
    assert!(
        line.contains("intervall"),
        "the error does not name the key: {line}"
    );
    assert!(
        line.contains(&w.config.display().to_string()),
        "no file: {line}"
    );

    // Still polling and delivering with the old config.
    w.sim.set_status(2, 12, "issued", ago(1));
    assert!(
        eventually(Duration::from_secs(30), || w.file_events().len() == 2).await,
        "stopped delivering:\n{}",
        daemon.log_text()
    );
    assert!(daemon.is_running());
    assert!(daemon.terminate(Duration::from_secs(30)).success());
}
