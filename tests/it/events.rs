//! `orderwatch events`: the recorded transitions, as a table or JSON lines,
//! also while the daemon runs.

use std::time::Duration;

use crate::support::{World, ago, eventually, ids, text};

async fn world_with_history() -> World {
    let w = World::new().await;
    w.sim.set_status(1, 11, "pending", ago(300));
    w.sim.set_status(2, 22, "issued", ago(200));
    w.once();
    w.sim.set_status(1, 11, "issued", ago(10));
    w.once();
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_shows_each_transition_newest_first() {
    let w = world_with_history().await;
    let out = w.run(&["events"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("SEEN"), "{table}");
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[1].contains("1:issued") && lines[1].contains("pending"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_narrow_the_list() {
    let w = world_with_history().await;
    let json = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["events", "--json"];
        all.extend_from_slice(args);
        let out = w.run(&all);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let events: Vec<serde_json::Value> = text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        ids(&events)
    };
    assert_eq!(json(&[]), vec!["1:issued", "2:issued", "1:pending"]);
    assert_eq!(json(&["--order", "1"]), vec!["1:issued", "1:pending"]);
    assert_eq!(json(&["--status", "issued"]), vec!["1:issued", "2:issued"]);
    assert_eq!(json(&["--limit", "1"]), vec!["1:issued"]);
    assert_eq!(json(&["--since", "1h"]).len(), 3);
    assert_eq!(json(&["--since", "99y"]).len(), 3);
    assert_eq!(json(&["--since", "1ms"]).len(), 0);
    assert_eq!(json(&["--order", "3"]), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_exit_2() {
    let w = World::new().await;
    for args in [
        vec!["events", "--since", "yesterday"],
        vec!["events", "--order", "x"],
        vec!["events", "--limit", "0"],
    ] {
        let out = w.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    // A span that would wrap around the clock is refused like any absurd
    // duration in the config.
    let out = w.run(&["events", "--since", "10000000000y"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("longer than 100 years"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_can_be_read_while_the_daemon_runs() {
    let w = World::new().await;
    w.sim.set_status(5, 55, "pending", ago(30));
    let mut daemon = w.spawn_ready().await;
    assert!(
        eventually(Duration::from_secs(30), || w.stored_events().len() == 1).await,
        "log:\n{}",
        daemon.log_text()
    );
    w.sim.set_status(5, 55, "issued", ago(0));
    assert!(eventually(Duration::from_secs(30), || w.stored_events().len() == 2).await);
    assert!(daemon.terminate(Duration::from_secs(15)).success());
}
