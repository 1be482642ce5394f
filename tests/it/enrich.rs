//! Events a receiver can act on: with `[enrich] order_details = true` every
//! sink, and `orderwatch events`, get the same `data.order` from
//! CertCentral's order info; `statuses` limits the lookups; a lookup that
//! keeps failing gives up with `"order": null` and a 404 does at once, and
//! nothing is ever dropped or held back for good.

use serde_json::Value;

use crate::support::sim::Fault;
use crate::support::{World, ago, text};

/// A world with a file sink and order details on.
async fn enriched() -> World {
    let mut w = World::new().await;
    w.file_sink();
    w.set("enrich.order_details", true);
    w
}

fn order(event: &Value) -> &Value {
    &event["data"]["order"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sink_and_events_json_carry_the_same_order_details() {
    let (mut w, rx) = World::with_webhook().await;
    w.file_sink();
    w.set("enrich.order_details", true);
    w.sim.set_status(264, 112232, "pending", ago(300));
    w.sim.set_status(264, 112232, "issued", ago(200));
    w.sim.set_status(265, 112233, "pending", ago(100));
    let out = w.once();
    let file = w.file_events();
    assert_eq!(
        w.file_ids(),
        vec!["264:issued", "265:pending"],
        "{}",
        text(&out.stderr)
    );
    let issued = order(&file[0]);
    assert_eq!(issued["common_name"], "order264.example.com");
    assert_eq!(issued["dns_names"][0], "order264.example.com");
    for field in [
        "serial_number",
        "thumbprint",
        "date_issued",
        "valid_from",
        "valid_till",
    ] {
        assert!(issued[field].is_string(), "{field}: {issued}");
    }
    assert_eq!(issued["product"]["type"], "ssl_certificate");
    assert!(issued["organization"]["id"].is_i64() && issued["container"]["name"].is_string());
    // Not issued yet: no serial number, and nothing invented in its place.
    let pending = order(&file[1]).as_object().expect("details of 265");
    assert!(!pending.contains_key("serial_number") && !pending.contains_key("valid_till"));
    // The fields CertCentral sends that a receiver does not need stay out.
    assert!(!issued.as_object().unwrap().contains_key("csr"));
    // The same bytes everywhere: the webhook's body, the file, the store.
    let mut stored = w.stored_events();
    stored.reverse();
    assert_eq!(stored, file);
    let bodies: Vec<Value> = rx.accepted().iter().map(|d| d.body.clone()).collect();
    for event in &file {
        assert!(
            bodies.contains(event),
            "the webhook got another {}",
            event["id"]
        );
    }
    assert_eq!(w.sim.order_info_requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_limit_the_lookups_and_other_events_have_no_order_key() {
    let mut w = enriched().await;
    w.set("enrich.statuses", vec!["issued"]);
    w.sim.set_status(1, 11, "pending", ago(60));
    w.sim.set_status(2, 12, "issued", ago(60));
    w.once();
    let events = w.file_events();
    assert_eq!(w.file_ids(), vec!["1:pending", "2:issued"]);
    assert!(!events[0]["data"].as_object().unwrap().contains_key("order"));
    assert_eq!(order(&events[1])["common_name"], "order2.example.com");
    let asked: Vec<String> = w
        .sim
        .order_info_requests()
        .into_iter()
        .map(|r| r.order_id)
        .collect();
    assert_eq!(asked, ["2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_that_keeps_failing_gives_up_with_null() {
    let mut w = enriched().await;
    w.set("enrich.give_up_after", "3s");
    w.sim.set_status(1, 11, "issued", ago(60));
    w.sim.set_status(2, 12, "issued", ago(60));
    for _ in 0..20 {
        w.sim
            .push_order_info_fault(Fault::status(503, "service_unavailable"));
    }
    // Every lookup and retry fails until give_up_after has passed.
    let started = std::time::Instant::now();
    let out = w.once();
    let log = text(&out.stderr);
    let events = w.file_events();
    assert_eq!(w.file_ids(), vec!["1:issued", "2:issued"], "{log}");
    assert!(events.iter().all(|e| order(e).is_null()), "{events:?}");
    assert!(log.contains("gave up after 3s"), "{log}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_releases_the_event_at_once_with_null() {
    let mut w = enriched().await;
    w.set("enrich.give_up_after", "1h");
    w.sim.set_status(9, 19, "issued", ago(60));
    w.sim.push_order_info_fault(Fault::status(404, "not_found"));
    let out = w.once();
    let log = text(&out.stderr);
    assert_eq!(w.file_ids(), vec!["9:issued"]);
    assert!(order(&w.file_events()[0]).is_null());
    assert!(log.contains("no such order (404)"), "{log}");
    assert_eq!(w.sim.order_info_requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_order_details_off_releases_what_waited_for_them() {
    let mut w = enriched().await;
    w.set("enrich.give_up_after", "1h");
    w.sim.set_status(3, 13, "issued", ago(60));
    for _ in 0..50 {
        w.sim
            .push_order_info_fault(Fault::status(503, "service_unavailable"));
    }
    // A daemon that stops while the lookup keeps failing: the event waits.
    let mut daemon = w.spawn_ready().await;
    daemon.wait_for_log("order details: lookup failed").await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    daemon.terminate(std::time::Duration::from_secs(10));
    assert!(w.file_ids().is_empty(), "delivered before its details");
    w.set("enrich.order_details", false);
    let out = w.once();
    assert_eq!(w.file_ids(), vec!["3:issued"], "{}", text(&out.stderr));
    let data = w.file_events()[0]["data"].clone();
    assert!(!data.as_object().unwrap().contains_key("order"), "{data}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_shows_the_lookup_budget() {
    let mut w = enriched().await;
    w.set("enrich.max_share", 0.25);
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("order details: looked up for every status, at most 45 lookups a minute (25% of 180 requests)"),
        "{shown}"
    );
}
