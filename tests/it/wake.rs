//! Polls woken by a push: `POST /wake` starts a cycle at once instead of at
//! the next interval, a wrong or missing key is refused with 401 and polls
//! nothing, and `orderwatch cancel` wakes a local daemon by itself.

use std::time::{Duration, Instant};

use crate::support::{World, ago, eventually, free_port, text};

/// The wake key the tests configure (longer than the 16 characters required).
const WAKE_KEY: &str = "test-wake-key-0123456789abcdef";

/// A world whose daemon polls once an hour (so only a wake can make it poll
/// again within a test) with a wake endpoint on a free port; returns its URL.
fn hourly_with_wake(w: &mut World) -> String {
    let port = free_port();
    w.file_sink();
    w.set("poll.interval", "1h")
        .set("wake.listen", format!("127.0.0.1:{port}"))
        .set("wake.min_gap", "1s");
    format!("http://127.0.0.1:{port}/wake")
}

fn client() -> reqwest::Client {
    crate::support::sim::client()
}

/// Waits until the first cycle is done: the file holds `expected` events.
async fn first_cycle(w: &World, expected: usize) {
    let done = eventually(Duration::from_secs(30), || w.file_ids().len() == expected).await;
    assert!(done, "the first cycle did not deliver: {:?}", w.file_ids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_polls_at_once_instead_of_at_the_next_interval() {
    let mut w = World::new().await;
    let url = hourly_with_wake(&mut w);
    w.sim.set_status(264, 112232, "pending", ago(60));
    let daemon = w.spawn_ready().await;
    first_cycle(&w, 1).await;
    w.sim.set_status(264, 112232, "issued", ago(0));
    let asked = Instant::now();
    let resp = client()
        .post(&url)
        .body("{\"event\":\"certificate_issued\",\"data\":{\"order_id\":264}}")
        .send()
        .await
        .expect("wake answered");
    assert_eq!(resp.status(), 200);
    let delivered = eventually(Duration::from_secs(10), || w.file_ids().len() == 2).await;
    assert!(delivered, "no poll after the wake:\n{}", daemon.log_text());
    assert_eq!(w.file_ids(), vec!["264:pending", "264:issued"]);
    eprintln!("wake to delivery: {:?}", asked.elapsed());
    // A burst of wakes is one more cycle (at most one per min_gap).
    let before = w.sim.queries().len();
    for _ in 0..20 {
        let r = client().post(&url).send().await.expect("wake answered");
        assert_eq!(r.status(), 200);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cycles = w.sim.queries().len() - before;
    assert!(
        (1..=2).contains(&cycles),
        "{cycles} cycles for a burst of 20 wakes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_without_the_key_is_refused_and_polls_nothing() {
    let mut w = World::new().await;
    let url = hourly_with_wake(&mut w);
    let key_file = w.path("wake-key");
    std::fs::write(&key_file, format!("{WAKE_KEY}\n")).unwrap();
    w.set("wake.key_file", key_file.display().to_string())
        .set("wake.header", "X-Wake-Key");
    w.sim.set_status(1, 11, "pending", ago(60));
    let daemon = w.spawn_ready().await;
    first_cycle(&w, 1).await;
    let before = w.sim.queries().len();
    let missing = client().post(&url).send().await.expect("answered");
    assert_eq!(missing.status(), 401);
    let wrong = client()
        .post(&url)
        .header("X-Wake-Key", "test-wake-key-0123456789abcdeF")
        .send()
        .await
        .expect("answered");
    assert_eq!(wrong.status(), 401);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(w.sim.queries().len(), before, "a refused wake polled");
    let right = client()
        .post(&url)
        .header("x-wake-key", WAKE_KEY)
        .send()
        .await
        .expect("answered");
    assert_eq!(right.status(), 200);
    let polled = eventually(Duration::from_secs(10), || w.sim.queries().len() > before).await;
    assert!(polled, "the right key did not wake:\n{}", daemon.log_text());
    let log = daemon.log_text();
    assert!(!log.contains(WAKE_KEY), "the key reached the log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_wakes_the_local_daemon_so_the_cancellation_is_reported_at_once() {
    let mut w = World::new().await;
    hourly_with_wake(&mut w);
    let key_file = w.path("wake-key");
    std::fs::write(&key_file, WAKE_KEY).unwrap();
    w.set("wake.key_file", key_file.display().to_string());
    w.sim.set_status(264, 112232, "pending", ago(60));
    let daemon = w.spawn_ready().await;
    first_cycle(&w, 1).await;
    let out = w.run(&["cancel", "264", "--note", "duplicate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("woke the local daemon"),
        "{}",
        text(&out.stdout)
    );
    let reported = eventually(Duration::from_secs(10), || w.file_ids().len() == 2).await;
    assert!(reported, "not reported at once:\n{}", daemon.log_text());
    assert_eq!(w.file_ids(), vec!["264:pending", "264:canceled"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_without_a_running_daemon_still_cancels_and_says_the_wake_failed() {
    let mut w = World::new().await;
    hourly_with_wake(&mut w);
    w.sim.set_status(264, 112232, "pending", ago(60));
    let out = w.run(&["cancel", "264", "--note", "duplicate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(w.sim.status_of(264).as_deref(), Some("canceled"));
    let err = text(&out.stderr);
    assert!(
        err.contains("could not wake the local daemon") && err.contains("next scheduled poll"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_shows_the_wake_endpoint_and_refuses_a_short_key() {
    let mut w = World::new().await;
    hourly_with_wake(&mut w);
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("wake: POST http://127.0.0.1:"), "{shown}");
    assert!(shown.contains("no key"), "{shown}");
    let key_file = w.path("wake-key");
    std::fs::write(&key_file, "short").unwrap();
    w.set("wake.key_file", key_file.display().to_string());
    let out = w.run(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("wake.key_file") && err.contains("at least 16"),
        "{err}"
    );
    assert!(!err.contains("short\""), "{err}");
    // run refuses it the same way.
    let run = w.run(&["run", "--once"]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_announced_like_certcentral_webhooks_are_delivered_within_seconds() {
    let mut w = World::new().await;
    let url = hourly_with_wake(&mut w);
    w.sim.set_status(1, 11, "pending", ago(60));
    let daemon = w.spawn_ready().await;
    first_cycle(&w, 1).await;
    w.sim.announce_changes_to(Some(url), None);
    let mut latencies = Vec::new();
    for (i, status) in ["needs_approval", "pending", "issued"]
        .into_iter()
        .enumerate()
    {
        // Spaced beyond min_gap (1 s), like changes in a real account.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let changed = Instant::now();
        w.sim.set_status(1, 11, status, ago(0));
        let arrived = eventually(Duration::from_secs(10), || w.file_ids().len() == i + 2).await;
        assert!(arrived, "{status} not delivered:\n{}", daemon.log_text());
        latencies.push(changed.elapsed());
    }
    assert_eq!(
        w.file_ids(),
        vec!["1:pending", "1:needs_approval", "1:pending:1", "1:issued"]
    );
    eprintln!("change to delivery with wakes: {latencies:?}");
    // An hourly schedule could not have found them: the wakes did.
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(5)),
        "{latencies:?}"
    );
}

/// On several nodes every one serves `[wake]`, the standbys too: a standby
/// checks the same key (its endpoint is up before it ever leads) and polls
/// nothing, and a wake to the leader polls at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_checks_the_wake_key_and_polls_nothing() {
    let Some(db) = crate::testdb::database("wakes on a standby").await else {
        return;
    };
    let mut w = World::new().await;
    hourly_with_wake(&mut w);
    crate::support::cluster::use_postgres(&mut w, &db, "3s");
    let key_file = w.path("wake-key");
    std::fs::write(&key_file, format!("{WAKE_KEY}\n")).unwrap();
    w.set("wake.key_file", key_file.display().to_string());
    w.sim.set_status(1, 11, "pending", ago(60));
    let ports = [free_port(), free_port()];
    let nodes: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let config = w.variant(
                &format!("node-{i}.toml"),
                vec![("wake.listen", format!("127.0.0.1:{port}").into())],
            );
            w.spawn_config(&config, &["run"], |_| {})
        })
        .collect();
    first_cycle(&w, 1).await;
    // The leader is the node whose log says it leads.
    let led = eventually(Duration::from_secs(20), || {
        nodes.iter().any(|n| n.log_text().contains("now leads"))
    })
    .await;
    assert!(led, "no node leads");
    let leader = usize::from(!nodes[0].log_text().contains("now leads"));
    let standby = 1 - leader;
    let url = |i: usize| format!("http://127.0.0.1:{}/wake", ports[i]);
    let before = w.sim.queries().len();

    let missing = client().post(url(standby)).send().await.expect("answered");
    assert_eq!(
        missing.status(),
        401,
        "a standby took a wake without the key"
    );
    let right = client()
        .post(url(standby))
        .header("X-WEBHOOK-KEY", WAKE_KEY)
        .send()
        .await
        .expect("answered");
    assert_eq!(right.status(), 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(w.sim.queries().len(), before, "a standby polled");

    let woken = client()
        .post(url(leader))
        .header("X-WEBHOOK-KEY", WAKE_KEY)
        .send()
        .await
        .expect("answered");
    assert_eq!(woken.status(), 200);
    let polled = eventually(Duration::from_secs(10), || w.sim.queries().len() > before).await;
    assert!(
        polled,
        "the leader did not poll:\n{}",
        nodes[leader].log_text()
    );
}
