//! `orderwatch cancel ORDER_ID --note TEXT` against the simulator: a
//! cancelable order is canceled (and the next poll reports it), anything
//! else shows the API's error code and exits 1, bad arguments send nothing,
//! and a cancel that may have been applied is never sent twice.

use crate::support::sim::Fault;
use crate::support::{KEY, World, ago, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_order_is_canceled_and_the_next_poll_reports_it() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(264, 112232, "pending", ago(60));
    w.once();
    let out = w.run(&[
        "cancel",
        "264",
        "--note",
        "Duplicate order, replaced by 265",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("order 264 canceled"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(w.sim.status_of(264).as_deref(), Some("canceled"));
    assert_eq!(
        w.sim.note_of(264).as_deref(),
        Some("Duplicate order, replaced by 265")
    );
    let sent = w.sim.cancels();
    assert_eq!(sent.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&sent[0].body).unwrap();
    assert_eq!(body["status"], "CANCELED");
    assert_eq!(sent[0].api_key_sent.as_deref(), Some(KEY));

    w.once();
    let events = w.file_events();
    assert_eq!(w.file_ids(), vec!["264:pending", "264:canceled"]);
    assert_eq!(events[1]["data"]["previous_status"], "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_pickup_order_can_be_canceled() {
    let w = World::new().await;
    w.sim.set_status(7, 70, "waiting_pickup", ago(60));
    let out = w.run(&["cancel", "7", "--note", "not needed"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(w.sim.status_of(7).as_deref(), Some("canceled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issued_order_shows_invalid_order_status_and_exits_1() {
    let w = World::new().await;
    w.sim.set_status(265, 112233, "issued", ago(60));
    let out = w.run(&["cancel", "265", "--note", "too late"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("invalid_order_status"), "{err}");
    assert!(err.contains("265"), "{err}");
    assert_eq!(w.sim.status_of(265).as_deref(), Some("issued"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_order_shows_not_found() {
    let w = World::new().await;
    let out = w.run(&["cancel", "999999", "--note", "who?"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not_found"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_shows_invalid_api_key() {
    let w = World::new().await;
    w.sim.set_status(1, 10, "pending", ago(60));
    let out = w
        .command(&["cancel", "1", "--note", "x"])
        .env("OW_TEST_KEY", "not-the-key")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("invalid_api_key"), "{err}");
    assert!(!err.contains("not-the-key"), "the key leaked: {err}");
    assert_eq!(w.sim.status_of(1).as_deref(), Some("pending"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_usage_errors_and_send_nothing() {
    let w = World::new().await;
    w.sim.set_status(1, 10, "pending", ago(60));
    for args in [
        vec!["cancel", "abc", "--note", "x"],
        vec!["cancel", "-5", "--note", "x"],
        vec!["cancel", "0", "--note", "x"],
        vec!["cancel", "1", "--note", ""],
        vec!["cancel", "1", "--note", "   "],
        vec!["cancel", "1"],
        vec!["cancel", "--note", "x"],
    ] {
        let out = w.run(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("Usage"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(w.sim.cancels().is_empty(), "a request was sent");
    assert_eq!(w.sim.status_of(1).as_deref(), Some("pending"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_cancel_is_retried_but_a_5xx_is_not() {
    let w = World::new().await;
    w.sim.set_status(1, 10, "pending", ago(60));
    w.sim.push_cancel_fault(Fault::rate_limited(Some(1)));
    let out = w.run(&["cancel", "1", "--note", "dup"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(w.sim.cancels().len(), 2, "the 429 was retried once");
    assert_eq!(w.sim.status_of(1).as_deref(), Some("canceled"));

    // A 5xx may have been applied: never sent twice.
    w.sim.set_status(2, 20, "pending", ago(60));
    w.sim
        .push_cancel_fault(Fault::status(503, "service_unavailable"));
    let out = w.run(&["cancel", "2", "--note", "dup"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("service_unavailable"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(w.sim.cancels().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_that_carries_errors_is_a_failure_not_a_cancel() {
    let w = World::new().await;
    w.sim.set_status(264, 112232, "pending", ago(60));
    w.sim.push_cancel_fault(Fault::Respond {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body:
            r#"{"errors":[{"code":"invalid_order_status","message":"Order cannot be canceled."}]}"#
                .into(),
    });
    let out = w.run(&["cancel", "264", "--note", "dup"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("invalid_order_status"), "{err}");
    assert!(err.contains("Order cannot be canceled."), "{err}");
    assert!(
        !text(&out.stdout).contains("canceled"),
        "{}",
        text(&out.stdout)
    );
}
