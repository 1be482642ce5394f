//! Dedupe against each order's current status: overlapping windows,
//! re-polls, restarts and catch-ups never emit a transition twice; a new
//! status of a known order carries its previous status; a status that comes
//! back (a reissue's second `issued`) or a new certificate is a transition
//! with a counted id, unless `[events] dedupe = "first_sighting"`.

use crate::support::{World, ago, store};

const DAY: i64 = 86_400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_windows_emit_each_transition_once() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(264, 112232, "pending", ago(120));
    w.sim.set_status(265, 112233, "issued", ago(60));
    w.once();
    // Three more cycles, each window overlapping the last by 10 minutes.
    w.once();
    w.once();
    w.once();
    assert_eq!(w.file_ids(), vec!["264:pending", "265:issued"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_status_of_a_known_order_carries_the_previous_status() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(264, 112232, "pending", ago(120));
    w.once();
    w.sim.set_status(264, 112232, "canceled", ago(1));
    w.once();
    let events = w.file_events();
    assert_eq!(w.file_ids(), vec!["264:pending", "264:canceled"]);
    let data = &events[1]["data"];
    assert_eq!(data["previous_status"], "pending");
    assert_eq!(data["status"], "canceled");
    assert_eq!(data["certificate_id"], 112232);
    assert_eq!(events[1]["subject"], "orders/264");
    assert_eq!(
        events[1]["type"],
        "com.digicert.certcentral.order.status_changed"
    );
    assert_eq!(events[1]["source"], w.sim.base_url());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_emits_nothing_it_already_recorded() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(1, 11, "issued", ago(30));
    w.once();
    let store_events = w.stored_events();
    assert_eq!(store_events.len(), 1);
    // Same store, new process: nothing new.
    w.once();
    assert_eq!(w.file_events().len(), 1);
    assert_eq!(w.stored_events().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reissue_cycle_across_restarts_gets_one_counted_event_per_step() {
    let mut w = World::new().await;
    w.file_sink();
    let steps = [
        ("issued", 112232),
        ("reissue_pending", 112232),
        ("issued", 112299),
        ("reissue_pending", 112299),
        ("issued", 112300),
    ];
    for (i, (status, certificate)) in steps.into_iter().enumerate() {
        w.sim
            .set_status(264, certificate, status, ago(500 - 100 * i as i64));
        // A new process each time, and a window overlapping the last.
        w.once();
        w.once();
    }
    assert_eq!(
        w.file_ids(),
        vec![
            "264:issued",
            "264:reissue_pending",
            "264:issued:1",
            "264:reissue_pending:1",
            "264:issued:2"
        ]
    );
    let events = w.file_events();
    let data: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e["data"]["status"].as_str().unwrap_or_default(),
                e["data"]["previous_status"].as_str(),
                e["data"]["certificate_id"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        data,
        vec![
            ("issued", None, Some(112232)),
            ("reissue_pending", Some("issued"), Some(112232)),
            ("issued", Some("reissue_pending"), Some(112299)),
            ("reissue_pending", Some("issued"), Some(112299)),
            ("issued", Some("reissue_pending"), Some(112300)),
        ]
    );
    // `orderwatch events` holds exactly what the file got.
    assert_eq!(w.stored_events(), {
        let mut newest_first = events.clone();
        newest_first.reverse();
        newest_first
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_changed_between_two_polls_is_a_transition() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(264, 112232, "issued", ago(300));
    w.once();
    // reissue_pending and the new issued both fall between two polls: only
    // the certificate id tells.
    w.sim.set_status(264, 112299, "issued", ago(10));
    w.once();
    w.once();
    assert_eq!(w.file_ids(), vec!["264:issued", "264:issued:1"]);
    let data = &w.file_events()[1]["data"];
    assert_eq!(data["previous_status"], "issued");
    assert_eq!(data["certificate_id"], 112299);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_return_found_by_a_catch_up_is_reported_once() {
    let mut w = World::new().await;
    w.file_sink();
    w.set("poll.initial_lookback", "10d");
    w.sim.set_status(264, 112232, "issued", ago(9 * DAY));
    w.sim.set_status(265, 112233, "pending", ago(9 * DAY));
    w.once();
    assert_eq!(w.file_ids(), vec!["264:issued", "265:pending"]);
    // While the daemon was away for eight days: 264 was reissued, 265 went
    // to needs_approval and back to pending (a return no poll can see, as
    // CertCentral reports only an order's current status).
    w.sim
        .set_status(264, 112232, "reissue_pending", ago(5 * DAY));
    w.sim.set_status(264, 112299, "issued", ago(2 * DAY));
    w.sim
        .set_status(265, 112233, "needs_approval", ago(4 * DAY));
    w.sim.set_status(265, 112233, "pending", ago(3 * DAY));
    store::set_cursor(&w.store(), ago(8 * DAY));
    let before = w.sim.queries().len();
    w.once();
    let absolute = w.sim.queries()[before..]
        .iter()
        .filter(|q| q.range.is_some())
        .count();
    assert!(absolute >= 1, "the rewound cursor did not cause a catch-up");
    w.once();
    assert_eq!(
        w.file_ids(),
        vec!["264:issued", "265:pending", "264:issued:1"]
    );
    assert_eq!(w.file_events()[2]["data"]["previous_status"], "issued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sighting_mode_reports_no_returns_and_no_new_certificates() {
    let mut w = World::new().await;
    w.file_sink();
    w.set("events.dedupe", "first_sighting");
    w.sim.set_status(264, 112232, "issued", ago(300));
    w.once();
    w.sim.set_status(264, 112232, "reissue_pending", ago(200));
    w.once();
    w.sim.set_status(264, 112299, "issued", ago(100));
    w.once();
    w.sim.set_status(264, 112300, "issued", ago(50));
    w.once();
    assert_eq!(w.file_ids(), vec!["264:issued", "264:reissue_pending"]);
    // Back to the default: the next change is news, the current state is not.
    w.set("events.dedupe", "change");
    w.once();
    w.sim.set_status(264, 112300, "revoked", ago(10));
    w.once();
    assert_eq!(
        w.file_ids(),
        vec!["264:issued", "264:reissue_pending", "264:revoked"]
    );
    assert_eq!(w.file_events()[2]["data"]["previous_status"], "issued");
}
