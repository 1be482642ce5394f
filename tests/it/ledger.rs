//! The delivery ledger from the command line, beside a running daemon:
//! `deliveries [--sink] [--state] [--json]` shows each delivery's state,
//! attempts, next attempt and last error; `redeliver --event/--since/--dead`
//! queues events again and the daemon sends them.

use std::time::Duration;

use serde_json::Value;

use crate::support::receiver::Reply;
use crate::support::{World, ago, eventually, text};

const WAIT: Duration = Duration::from_secs(60);

fn by_event<'a>(rows: &'a [Value], event: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["event"] == event)
        .unwrap_or_else(|| panic!("no row for {event} in {rows:?}"))
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_shows_each_sinks_ledger_filtered_by_sink_and_state() {
    let (mut w, rx) = World::with_webhook().await;
    rx.set_default_for("2:issued", Reply::Body(400, "no such tenant".into()));
    rx.set_default_for("3:issued", Reply::Status(503));
    w.file_sink();
    for order in 1..=3 {
        w.sim.set_status(order, 100 + order, "issued", ago(30));
    }
    let daemon = w.spawn_ready().await;
    // 1 delivered, 2 dead at once, 3 retrying.
    assert!(
        eventually(WAIT, || {
            let rows = w.deliveries(&["--sink", "hook"]);
            rows.len() == 3
                && by_event(&rows, "1:issued")["state"] == "delivered"
                && by_event(&rows, "2:issued")["state"] == "dead"
                && by_event(&rows, "3:issued")["attempts"].as_u64() >= Some(2)
        })
        .await,
        "log:\n{}",
        daemon.log_text()
    );

    let all = w.deliveries(&[]);
    assert_eq!(all.len(), 6, "three events for each of two sinks: {all:?}");
    let archive = w.deliveries(&["--sink", "archive"]);
    assert_eq!(archive.len(), 3);
    assert!(
        archive
            .iter()
            .all(|r| r["sink"] == "archive" && r["state"] == "delivered")
    );

    let delivered = w.deliveries(&["--sink", "hook", "--state", "delivered"]);
    assert_eq!(delivered.len(), 1);
    let d = &delivered[0];
    assert_eq!(d["event"], "1:issued");
    assert_eq!(d["order_id"], 1);
    assert_eq!(d["status"], "issued");
    assert_eq!(d["attempts"], 1);
    assert!(d["last_error"].is_null() && d["next_attempt_at"].is_null());
    assert!(
        is_rfc3339(&d["queued_at"]) && is_rfc3339(&d["done_at"]),
        "{d}"
    );

    let dead = w.deliveries(&["--sink", "hook", "--state", "dead"]);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["event"], "2:issued");
    assert_eq!(dead[0]["attempts"], 1);
    assert_eq!(
        dead[0]["last_error"],
        "HTTP 400 Bad Request: no such tenant"
    );
    assert!(is_rfc3339(&dead[0]["done_at"]) && dead[0]["next_attempt_at"].is_null());

    let pending = w.deliveries(&["--sink", "hook", "--state", "pending"]);
    assert_eq!(pending.len(), 1);
    let p = &pending[0];
    assert_eq!(p["event"], "3:issued");
    assert!(p["attempts"].as_u64() >= Some(2), "{p}");
    assert!(
        p["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("HTTP 503 Service Unavailable")),
        "{p}"
    );
    assert!(
        is_rfc3339(&p["next_attempt_at"]) && p["done_at"].is_null(),
        "{p}"
    );

    // The table says the same for people.
    let table = w.run(&["deliveries", "--sink", "hook"]);
    assert!(table.status.success());
    let out = text(&table.stdout);
    let header = out.lines().next().unwrap_or_default();
    for column in ["SINK", "EVENT", "STATE", "ATTEMPTS", "WHEN", "LAST ERROR"] {
        assert!(header.contains(column), "{out}");
    }
    let line = |event: &str| {
        out.lines()
            .find(|l| l.contains(event))
            .unwrap_or_else(|| panic!("{event} missing:\n{out}"))
            .to_string()
    };
    assert!(line("1:issued").contains("delivered"));
    assert!(line("2:issued").contains("dead") && line("2:issued").contains("no such tenant"));
    assert!(line("3:issued").contains("pending") && line("3:issued").contains("next "));

    let none = w.run(&["deliveries", "--sink", "archive", "--state", "dead"]);
    assert!(none.status.success());
    assert!(text(&none.stderr).contains("no deliveries match"));

    let unknown = w.run(&["deliveries", "--sink", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    let err = text(&unknown.stderr);
    assert!(
        err.contains("no sink named \"nope\"") && err.contains("hook, archive"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliver_by_event_and_since_sends_again_while_the_daemon_runs() {
    let (w, rx) = World::with_webhook().await;
    for order in 1..=3 {
        w.sim.set_status(order, 100 + order, "pending", ago(60));
    }
    let mut daemon = w.spawn_ready().await;
    assert!(eventually(WAIT, || rx.accepted_counts().len() == 3).await);
    // A second event for order 1, so one order has two to redeliver.
    w.sim.set_status(1, 101, "issued", ago(0));
    assert!(
        eventually(WAIT, || rx.accepted_counts().len() == 4).await,
        "log:\n{}",
        daemon.log_text()
    );

    let out = w.run(&["redeliver", "--sink", "hook", "--event", "2:pending"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("1 deliveries queued for sink hook"));
    assert!(
        eventually(WAIT, || rx.accepted_counts().get("2:pending") == Some(&2)).await,
        "log:\n{}",
        daemon.log_text()
    );

    let before = rx.accepted().len();
    let out = w.run(&["redeliver", "--sink", "hook", "--since", "1h"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("4 deliveries queued"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        eventually(WAIT, || rx.accepted().len() == before + 4).await,
        "log:\n{}",
        daemon.log_text()
    );
    let counts = rx.accepted_counts();
    assert_eq!(counts["1:pending"], 2);
    assert_eq!(counts["1:issued"], 2);
    assert_eq!(counts["2:pending"], 3);
    assert_eq!(counts["3:pending"], 2);
    // The replay keeps one order's events in their recorded order.
    let replay: Vec<String> = rx.accepted()[before..]
        .iter()
        .filter(|d| d.id.starts_with("1:"))
        .map(|d| d.id.clone())
        .collect();
    assert_eq!(replay, ["1:pending", "1:issued"]);
    let pending = w.deliveries(&["--state", "pending"]);
    assert!(
        eventually(WAIT, || w.deliveries(&["--state", "pending"]).is_empty()).await,
        "{pending:?}"
    );

    // Mistakes are refused and say why.
    let missing = w.run(&["redeliver", "--sink", "hook", "--event", "99:issued"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no event 99:issued"));
    let malformed = w.run(&["redeliver", "--sink", "hook", "--event", "issued"]);
    assert_eq!(malformed.status.code(), Some(2));
    let neither = w.run(&["redeliver", "--sink", "hook"]);
    assert_eq!(neither.status.code(), Some(2));
    let unknown = w.run(&["redeliver", "--sink", "nope", "--dead"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(daemon.terminate(WAIT).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliver_ends_a_long_failure_hold_at_once() {
    let (mut w, rx) = World::with_webhook().await;
    rx.set_default(Reply::Status(503));
    // After the first failures the sink waits up to an hour between probes.
    w.set("sinks.hook.backoff_initial", "1h")
        .set("sinks.hook.backoff_max", "2h");
    w.sim.set_status(1, 101, "issued", ago(30));
    w.sim.set_status(2, 102, "issued", ago(30));
    let daemon = w.spawn_ready().await;
    // Both first attempts failed and are written down: the sink holds.
    let held = eventually(WAIT, || {
        let pending = w.deliveries(&["--state", "pending"]);
        pending.len() == 2 && pending.iter().all(|r| r["attempts"] == 1)
    })
    .await;
    assert!(held, "log:\n{}", daemon.log_text());
    rx.set_default(Reply::Status(200));
    // The operator fixed the receiver and asks for the events again.
    let out = w.run(&["redeliver", "--sink", "hook", "--since", "1h"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        eventually(WAIT, || rx.accepted_counts().len() == 2).await,
        "log:\n{}",
        daemon.log_text()
    );
    assert!(daemon.log_text().contains("ending the failure hold"));
}
