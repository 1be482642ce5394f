//! Dedupe by (order_id, status): overlapping windows, re-polls and restarts
//! never emit a transition twice; a new status of a known order carries its
//! previous status.

use crate::support::{World, ago};

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
