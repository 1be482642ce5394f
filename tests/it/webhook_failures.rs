//! What the webhook sink does when the receiver says no: a 400 is dead at
//! once and can be redelivered after the fix; a 410 pauses only that sink
//! until `redeliver`; failures past `give_up_after` (counted from the first
//! failed attempt, so deliveries never tried are kept) are dead; a hanging
//! receiver times out while polling and other sinks carry on.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::support::receiver::{Receiver, Reply};
use crate::support::{World, ago, eventually, text};

const WAIT: Duration = Duration::from_secs(60);

fn set(ids: &[&str]) -> HashSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn events(rows: &[Value]) -> HashSet<String> {
    rows.iter()
        .map(|r| r["event"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_dead_at_once_and_redeliver_dead_sends_it_once_the_receiver_is_fixed() {
    let (w, rx) = World::with_webhook().await;
    rx.set_default(Reply::Body(
        400,
        "bad payload: expected schema v2 ".repeat(20),
    ));
    for order in 1..=3 {
        w.sim.set_status(order, 100 + order, "issued", ago(30));
    }
    let mut daemon = w.spawn_ready().await;
    assert!(
        eventually(WAIT, || w
            .deliveries(&["--sink", "hook", "--state", "dead"])
            .len()
            == 3)
        .await,
        "log:\n{}",
        daemon.log_text()
    );
    // Never retried: one request per event.
    assert_eq!(rx.arrivals(), 3);
    for row in w.deliveries(&["--state", "dead"]) {
        assert_eq!(row["attempts"], 1, "{row}");
        let err = row["last_error"].as_str().unwrap();
        // The status and the first bytes of the answer, cut short.
        assert!(
            err.starts_with("HTTP 400 Bad Request: bad payload: expected schema v2"),
            "{err}"
        );
        assert!(err.len() < 400, "the whole answer was kept: {err}");
    }
    assert!(daemon.log_text().contains("delivery is dead"));

    // The receiver is fixed; the daemon is still running.
    rx.set_default(Reply::Status(200));
    let out = w.run(&["redeliver", "--sink", "hook", "--dead"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("3 deliveries queued"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        eventually(WAIT, || rx.accepted_ids()
            == set(&["1:issued", "2:issued", "3:issued"]))
        .await,
        "log:\n{}",
        daemon.log_text()
    );
    assert!(eventually(WAIT, || w.deliveries(&["--state", "delivered"]).len() == 3).await);
    assert!(daemon.terminate(WAIT).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_pauses_only_that_sink_until_redeliver_even_across_a_restart() {
    let (mut w, rx) = World::with_webhook().await;
    rx.script([Reply::Body(410, "endpoint deleted".into())]);
    // One request at a time, so nothing is in flight when the 410 lands.
    w.set("sinks.hook.concurrency", 1).file_sink();
    for order in 1..=3 {
        w.sim.set_status(order, 100 + order, "issued", ago(30));
    }
    let mut daemon = w.spawn_ready().await;
    assert!(
        eventually(WAIT, || daemon.log_text().contains("sink PAUSED")).await,
        "log:\n{}",
        daemon.log_text()
    );
    let dead = w.deliveries(&["--sink", "hook", "--state", "dead"]);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("HTTP 410 Gone: endpoint deleted")
    );

    // The poller and the file sink carry on; the paused sink gets nothing.
    for order in 4..=5 {
        w.sim.set_status(order, 100 + order, "issued", ago(0));
    }
    assert!(
        eventually(WAIT, || w.file_events().len() == 5).await,
        "log:\n{}",
        daemon.log_text()
    );
    let pending = w.deliveries(&["--sink", "hook", "--state", "pending"]);
    assert_eq!(pending.len(), 4, "{pending:?}");
    let listing = w.run(&["deliveries", "--sink", "hook"]);
    assert!(
        text(&listing.stderr).contains("sink hook is PAUSED"),
        "{}",
        text(&listing.stderr)
    );

    // The pause is stored: a restarted daemon still sends nothing.
    assert!(daemon.terminate(WAIT).success());
    let mut daemon = w.spawn_ready().await;
    w.sim.set_status(6, 106, "issued", ago(0));
    assert!(
        eventually(WAIT, || w.file_events().len() == 6).await,
        "log:\n{}",
        daemon.log_text()
    );
    assert!(
        daemon.log_text().contains("sink is PAUSED"),
        "{}",
        daemon.log_text()
    );
    assert_eq!(rx.arrivals(), 1, "a paused sink was sent requests");

    let out = w.run(&["redeliver", "--sink", "hook", "--dead"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("sink hook resumed"),
        "{}",
        text(&out.stdout)
    );
    let all: HashSet<String> = (1..=6).map(|o| format!("{o}:issued")).collect();
    assert!(
        eventually(WAIT, || rx.accepted_ids() == all).await,
        "log:\n{}",
        daemon.log_text()
    );
    assert_eq!(w.file_ids().into_iter().collect::<HashSet<_>>(), all);
    assert!(daemon.terminate(WAIT).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_failing_past_give_up_after_are_dead() {
    let (mut w, rx) = World::with_webhook().await;
    rx.set_default(Reply::Status(503));
    w.set("sinks.hook.give_up_after", "2s");
    for order in 1..=5 {
        w.sim.set_status(order, 100 + order, "issued", ago(30));
    }
    // `run --once` delivers until nothing is pending: here, until given
    // up; what went dead fails the run, so cron and scripts notice.
    let out = w.run(&["run", "--once"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("deliveries went dead during this run (5 for sink hook)"),
        "{err}"
    );
    assert!(err.contains("orderwatch deliveries --state dead"), "{err}");
    assert!(rx.arrivals() >= 1);
    assert!(w.deliveries(&["--state", "pending"]).is_empty());
    let dead = w.deliveries(&["--sink", "hook", "--state", "dead"]);
    assert_eq!(events(&dead).len(), 5, "{dead:?}");
    for row in &dead {
        let err = row["last_error"].as_str().unwrap();
        assert!(err.starts_with("gave up after 2s"), "{err}");
        // Only a delivery that failed can be given up.
        assert!(err.contains("HTTP 503"), "{err}");
        assert!(row["attempts"].as_u64() >= Some(1), "{row}");
        assert!(row["done_at"].is_string() && row["next_attempt_at"].is_null());
    }
    // A run that kills nothing new succeeds, dead rows or not.
    w.once();
}

/// `give_up_after` counts from a delivery's first failed attempt. Behind a
/// failing receiver the sink sends one probe at a time, so most of a
/// backlog waits untried: those rows stay pending however long the receiver
/// fails, while every row that failed `give_up_after` ago is dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn give_up_after_counts_from_the_first_failure_and_spares_deliveries_never_tried() {
    const GIVE_UP: Duration = Duration::from_secs(2);
    let (mut w, rx) = World::with_webhook().await;
    rx.set_default(Reply::Status(503));
    // One request at a time, probes up to 3 s apart: a few rows get tried
    // while the rest wait far longer than give_up_after.
    w.set("sinks.hook.give_up_after", "2s")
        .set("sinks.hook.concurrency", 1)
        .set("sinks.hook.backoff_initial", "3s")
        .set("sinks.hook.backoff_max", "3s");
    for order in 1..=40 {
        w.sim.set_status(order, 100 + order, "issued", ago(30));
    }
    let mut daemon = w.spawn_ready().await;
    // Until the first row tried failed long enough ago that the sink must
    // have given it up: give_up_after, plus one probe interval (the sink
    // looks for rows to give up after each failed probe), plus slack.
    let old_enough = GIVE_UP + Duration::from_secs(3) + Duration::from_secs(2);
    let waited = eventually(WAIT, || {
        rx.deliveries()
            .first()
            .is_some_and(|d| d.arrived.elapsed() > old_enough)
    })
    .await;
    assert!(waited, "no delivery arrived:\n{}", daemon.log_text());
    assert!(daemon.terminate(WAIT).success());

    let rows = w.deliveries(&["--sink", "hook"]);
    assert_eq!(rows.len(), 40, "{rows:#?}");
    let mut first_tried: std::collections::HashMap<String, std::time::Instant> =
        std::collections::HashMap::new();
    for d in rx.deliveries() {
        first_tried.entry(d.id.clone()).or_insert(d.arrived);
    }
    let (mut untried, mut dead) = (0, 0);
    for row in &rows {
        let event = row["event"].as_str().unwrap_or_default();
        let attempts = row["attempts"].as_u64().unwrap_or_default();
        match row["state"].as_str() {
            Some("dead") => {
                dead += 1;
                let err = row["last_error"].as_str().unwrap_or_default();
                assert!(attempts >= 1, "given up untried: {row}");
                assert!(err.starts_with("gave up after 2s"), "{row}");
                assert!(err.contains("HTTP 503"), "{row}");
            }
            Some("pending") if attempts == 0 => {
                untried += 1;
                assert!(!first_tried.contains_key(event), "{row}");
            }
            Some("pending") => {
                let since = first_tried[event].elapsed();
                assert!(
                    since < old_enough,
                    "failing for {since:?}, still pending: {row}"
                );
            }
            _ => panic!("a 503 cannot deliver: {row}"),
        }
    }
    // Both kinds were there, or the test proved nothing.
    assert!(dead >= 1, "{rows:#?}");
    assert!(untried >= 10, "{untried} untried:\n{rows:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_times_out_and_polling_and_other_sinks_carry_on() {
    let stuck = Receiver::start().await;
    stuck.set_default(Reply::Hang);
    let healthy = Receiver::start().await;
    let mut w = World::new().await;
    w.add_sink(w.hook("stuck", &stuck.url()).with("timeout", "1s"));
    w.add_sink(w.hook("healthy", &healthy.url()));
    for order in 1..=3 {
        w.sim.set_status(order, 100 + order, "issued", ago(30));
    }
    let daemon = w.spawn_ready().await;
    assert!(
        eventually(WAIT, || {
            w.deliveries(&["--sink", "stuck", "--state", "pending"])
                .iter()
                .any(|r| {
                    r["last_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("timed out"))
                })
        })
        .await,
        "log:\n{}",
        daemon.log_text()
    );
    assert!(stuck.arrivals() >= 1);
    // New transitions still reach the store and the healthy sink.
    for order in 4..=6 {
        w.sim.set_status(order, 100 + order, "issued", ago(0));
    }
    let all: HashSet<String> = (1..=6).map(|o| format!("{o}:issued")).collect();
    assert!(
        eventually(WAIT, || healthy.accepted_ids() == all).await,
        "log:\n{}",
        daemon.log_text()
    );
    assert_eq!(w.stored_events().len(), 6);
    assert!(
        stuck.accepted().is_empty(),
        "the hanging receiver never answers"
    );
    let log = daemon.log_text();
    assert!(log.contains("timed out"), "{log}");
}
