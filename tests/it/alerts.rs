//! Operational events: a sink with `operational = true` hears about
//! orderwatch itself (a dead delivery, a 410 pause, polling failing for
//! `[alerts] poll_failures` cycles and recovering), once each, never about
//! itself, never in a loop, and not again after a restart.

use std::collections::HashSet;
use std::time::Duration;

use orderwatch::simulator::Fault;
use serde_json::Value;

use crate::support::receiver::{Receiver, Reply};
use crate::support::{Sink, World, ago, eventually, read_jsonl_so_far};

const WAIT: Duration = Duration::from_secs(60);

/// Tests of sink alerts: a poll that fails under a loaded machine must not
/// add alerts of its own.
fn no_poll_alerts(w: &mut World) {
    w.set("alerts.poll_failures", 10_000);
}

/// An operational file sink `alerts` writing to `alerts.jsonl`.
fn alert_file(w: &mut World) -> std::path::PathBuf {
    let path = w.path("alerts.jsonl");
    w.add_sink(
        Sink::file("alerts", &path)
            .with("operational", true)
            .quick_retries(),
    );
    path
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_delivery_and_a_410_pause_each_reach_the_operational_sink_once_even_across_a_restart()
 {
    let (mut w, rx) = World::with_webhook().await;
    rx.set_default_for("1:issued", Reply::Body(400, "bad payload".into()));
    rx.set_default_for("2:issued", Reply::Status(410));
    no_poll_alerts(&mut w);
    let alerts = alert_file(&mut w);
    w.sim.set_status(1, 101, "issued", ago(30));
    w.sim.set_status(2, 102, "issued", ago(20));
    let mut daemon = w.spawn_ready().await;
    let three = eventually(WAIT, || read_jsonl_so_far(&alerts).len() >= 3).await;
    assert!(three, "log:\n{}", daemon.log_text());
    let got = read_jsonl_so_far(&alerts);
    let dead = of_type(&got, "orderwatch.delivery.dead");
    let by_event: HashSet<&str> = dead
        .iter()
        .map(|e| e["data"]["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(by_event, HashSet::from(["1:issued", "2:issued"]), "{got:?}");
    for e in &dead {
        assert_eq!(e["data"]["sink"], "hook");
        assert_eq!(e["subject"], "sinks/hook");
        assert_eq!(e["specversion"], "1.0");
        assert!(
            e["id"].as_str().unwrap().starts_with("ow:dead:hook:"),
            "{e}"
        );
        let error = e["data"]["error"].as_str().unwrap();
        assert!(error.starts_with("HTTP 4"), "{error}");
    }
    let one = dead.iter().find(|e| e["data"]["event_id"] == "1:issued");
    let error = one.unwrap()["data"]["error"].as_str().unwrap();
    assert!(error.contains("bad payload"), "{error}");
    let paused = of_type(&got, "orderwatch.sink.paused");
    assert_eq!(paused.len(), 1, "{got:?}");
    assert_eq!(paused[0]["data"]["sink"], "hook");
    assert!(
        paused[0]["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("2:issued")
    );
    // Only alerts: no transition reached the operational sink.
    assert!(
        got.iter()
            .all(|e| e["id"].as_str().unwrap().starts_with("ow:"))
    );
    // The ledger shows them under their ids, delivered.
    let ledger = w.deliveries(&["--sink", "alerts"]);
    assert_eq!(ledger.len(), 3, "{ledger:?}");
    assert!(
        ledger.iter().all(|r| r["state"] == "delivered"),
        "{ledger:?}"
    );

    // A restart (the store already holds all of it) writes nothing again.
    daemon.terminate(Duration::from_secs(10));
    let mut again = w.spawn_ready().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = read_jsonl_so_far(&alerts);
    assert_eq!(ids(&after), ids(&got), "log:\n{}", again.log_text());
    again.terminate(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_that_fails_n_cycles_in_a_row_is_reported_once_then_its_recovery_once() {
    let mut w = World::new().await;
    w.set("alerts.poll_failures", 2);
    let alerts = alert_file(&mut w);
    // A key CertCentral refuses: permanent, so one request per cycle.
    for _ in 0..3 {
        w.sim.push_fault(Fault::status(401, "invalid_api_key"));
    }
    let mut daemon = w.spawn_ready().await;
    let both = eventually(WAIT, || read_jsonl_so_far(&alerts).len() >= 2).await;
    assert!(both, "log:\n{}", daemon.log_text());
    // A few more good cycles say nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = read_jsonl_so_far(&alerts);
    let kinds: Vec<&str> = got.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["orderwatch.poll.failed", "orderwatch.poll.recovered"],
        "{got:?}"
    );
    assert_eq!(got[0]["id"], "ow:poll-failed:1");
    assert_eq!(got[0]["subject"], "polling");
    assert!(got[0]["data"]["failures"].as_u64().unwrap() >= 2);
    let error = got[0]["data"]["error"].as_str().unwrap();
    assert!(error.contains("invalid_api_key"), "{error}");
    assert_eq!(got[1]["id"], "ow:poll-recovered:1");
    assert_eq!(got[1]["data"]["outage"], "ow:poll-failed:1");
    daemon.terminate(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operational_sink_that_fails_gets_each_alert_once_and_causes_no_more() {
    let (mut w, rx) = World::with_webhook().await;
    rx.set_default(Reply::Body(400, "no".into()));
    let ops_rx = Receiver::start().await;
    ops_rx.set_default(Reply::Body(400, "alerts refused".into()));
    no_poll_alerts(&mut w);
    let ops = w.hook("ops", &ops_rx.url()).with("operational", true);
    w.add_sink(ops);
    for order in 1..=2 {
        w.sim.set_status(order, 100 + order, "issued", ago(30));
    }
    let mut daemon = w.spawn_ready().await;
    let dead = || w.deliveries(&["--sink", "ops", "--state", "dead"]).len();
    assert!(
        eventually(WAIT, || dead() == 2).await,
        "log:\n{}",
        daemon.log_text()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Two transitions died at `hook`: two alerts, each sent once and dead;
    // nothing about `ops` itself, nothing more.
    assert_eq!(ops_rx.arrivals(), 2);
    let sent: HashSet<String> = ops_rx.deliveries().into_iter().map(|d| d.id).collect();
    assert!(
        sent.iter().all(|id| id.starts_with("ow:dead:hook:")),
        "{sent:?}"
    );
    assert_eq!(dead(), 2);
    assert_eq!(w.deliveries(&["--sink", "ops"]).len(), 2);
    assert!(daemon.log_text().contains("alert delivery is dead"));
    // An operator resends one by its id, once the receiver is fixed.
    ops_rx.set_default(Reply::Status(200));
    let id = sent.iter().next().unwrap().clone();
    let out = w.run(&["redeliver", "--sink", "ops", "--event", &id]);
    assert!(out.status.success(), "{out:?}");
    assert!(eventually(WAIT, || ops_rx.accepted_ids().contains(&id)).await);
    daemon.terminate(Duration::from_secs(10));
}
