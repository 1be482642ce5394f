//! Retention: delivered ledger rows older than `[store] keep_delivered` are
//! deleted in the background while the daemon runs (transitions, the dedupe
//! memory, stay), and `deliveries --purge-dead --older-than` deletes old
//! dead rows on request.

use std::time::Duration;

use crate::support::receiver::Reply;
use crate::support::{World, ago, eventually, text};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_rows_older_than_keep_delivered_are_pruned_and_transitions_stay() {
    let (mut w, rx) = World::with_webhook().await;
    w.set("store.keep_delivered", "2s");
    for order in 1..=3 {
        w.sim.set_status(order, 100 + order, "issued", ago(10));
    }
    let mut daemon = w.spawn_ready().await;
    assert!(eventually(WAIT, || rx.accepted_ids().len() == 3).await);
    let pruned = eventually(WAIT, || {
        w.deliveries(&["--sink", "hook", "--state", "delivered"])
            .is_empty()
    })
    .await;
    assert!(pruned, "delivered rows stayed; log:\n{}", daemon.log_text());
    daemon
        .wait_for_log("deleted delivered ledger rows older than keep_delivered")
        .await;
    assert_eq!(w.recorded_ids().len(), 3, "transitions are kept");
    // Still the dedupe memory: the same orders seen again are not resent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rx.accepted().len(), 3);
    assert!(daemon.terminate(WAIT).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_dead_deletes_only_dead_rows_older_than_asked() {
    let (mut w, rx) = World::with_webhook().await;
    w.file_sink();
    rx.set_default_for("1:issued", Reply::Body(400, "unknown tenant".into()));
    w.sim.set_status(1, 101, "issued", ago(10));
    w.sim.set_status(2, 102, "issued", ago(10));
    let out = w.run(&["run", "--once"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a delivery went dead: {}",
        text(&out.stderr)
    );
    assert_eq!(
        w.deliveries(&["--sink", "hook", "--state", "dead"]).len(),
        1
    );

    let out = w.run(&["deliveries", "--purge-dead", "--older-than", "1h"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("deleted 0 dead deliveries of every sink"));
    assert_eq!(
        w.deliveries(&["--sink", "hook", "--state", "dead"]).len(),
        1
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = w.run(&[
        "deliveries",
        "--purge-dead",
        "--older-than",
        "1s",
        "--sink",
        "hook",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .contains("deleted 1 dead deliveries of sink hook given up more than 1s ago"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        w.deliveries(&["--sink", "hook", "--state", "dead"])
            .is_empty()
    );
    // The delivered row and the other sink are untouched.
    assert_eq!(
        w.deliveries(&["--sink", "hook", "--state", "delivered"])
            .len(),
        1
    );
    assert_eq!(w.deliveries(&["--sink", "archive"]).len(), 2);
}
