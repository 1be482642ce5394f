//! The report, failure memory across retries, and retention (pruning and
//! purging).

use super::*;

pub async fn the_report_counts_transitions_and_shows_the_cursor(s: SharedStore) {
    let empty = s.report(true).await.unwrap();
    assert_eq!(
        (empty.transitions, empty.cursor, empty.damage),
        (0, None, None)
    );
    assert_eq!(empty.schema_version, SCHEMA_VERSION);
    window(&s, &[change(1, "pending")], at(9), at(9), &[]).await;
    let one = s.report(false).await.unwrap();
    assert_eq!((one.transitions, one.cursor), (1, Some(at(9))));
    assert!(!one.location.is_empty());
}

pub async fn the_first_failure_is_remembered_across_retries(s: SharedStore) {
    let seq = one_row(&s).await;
    retry(&s, seq, T0 + 5, T0 + 10).await;
    retry(&s, seq, T0 + 20, T0 + 30).await;
    let e = &due(&s, &rows("a", None), T0 + 30, 10).await[0];
    assert_eq!((e.attempts, e.first_failure_at), (2, Some(T0 + 5)));
}

pub async fn expire_counts_from_the_first_failure_and_keeps_the_last_error(s: SharedStore) {
    let seq = one_row(&s).await;
    retry(&s, seq, T0 + 50, T0 + 60).await;
    // Queued before the cutoff, but failing only since after it: kept.
    assert_eq!(
        s.expire("a", T0 + 50, "gave up", T0 + 200).await.unwrap(),
        0
    );
    assert_eq!(
        s.expire("a", T0 + 51, "gave up", T0 + 200).await.unwrap(),
        1
    );
    let filter = DeliveryFilter {
        sink: Some("a".into()),
        state: None,
        limit: 10,
        routes: Vec::new(),
    };
    let row = &s.deliveries(&filter).await.unwrap()[0];
    assert_eq!(
        row.last_error.as_deref(),
        Some("gave up: HTTP 503 Service Unavailable: busy")
    );
}

pub async fn a_2xx_for_a_row_given_up_meanwhile_marks_it_delivered(s: SharedStore) {
    let seq = one_row(&s).await;
    retry(&s, seq, T0, T0 + 1).await;
    assert_eq!(s.expire("a", T0 + 1, "gave up", T0 + 2).await.unwrap(), 1);
    // A late failure does not revive it...
    retry(&s, seq, T0 + 3, T0 + 4).await;
    assert_eq!(s.next_due(&rows("a", None)).await.unwrap(), None);
    // ...but a late success is the truth.
    s.mark("a", vec![(seq, Mark::Delivered)], T0 + 5)
        .await
        .unwrap();
    let st = stats(&s, &rows("a", None)).await;
    assert_eq!((st.pending, st.dead), (0, 0));
}

pub async fn requeued_rows_are_told_apart_from_rows_the_poller_queued(s: SharedStore) {
    let seq = one_row(&s).await;
    assert!(
        !s.requeued_since("a", 0).await.unwrap(),
        "a fresh row is not a requeue"
    );
    let dead = Mark::Dead {
        error: "HTTP 400".into(),
    };
    s.mark("a", vec![(seq, dead)], T0 + 1).await.unwrap();
    let a = rows("a", None);
    let requeued = s.redeliver(&a, &Redeliver::Dead, T0 + 100).await;
    assert_eq!(requeued.unwrap(), 1);
    assert!(s.requeued_since("a", T0 + 100).await.unwrap());
    assert!(
        !s.requeued_since("a", T0 + 101).await.unwrap(),
        "only since the given time"
    );
    // Once tried again it is an ordinary retry.
    retry(&s, seq, T0 + 150, T0 + 160).await;
    assert!(!s.requeued_since("a", T0 + 100).await.unwrap());
}

pub async fn retry_now_pulls_backed_off_rows_forward_only(s: SharedStore) {
    let seq = one_row(&s).await;
    let a = rows("a", None);
    retry(&s, seq, T0 + 1, T0 + 3_600_000).await;
    assert!(due(&s, &a, T0 + 2, 10).await.is_empty());
    assert_eq!(s.retry_now("a", T0 + 2).await.unwrap(), 1);
    assert_eq!(due(&s, &a, T0 + 2, 10).await.len(), 1);
    assert_eq!(
        s.retry_now("a", T0 + 2).await.unwrap(),
        0,
        "nothing later than now"
    );
}

/// The ledger's rows, any state, for one sink (in-order ones derived too).
async fn ledger(s: &SharedStore, route: &SinkRoute) -> Vec<(i64, DeliveryState)> {
    let filter = DeliveryFilter {
        sink: Some(route.name.clone()),
        state: None,
        limit: 100,
        routes: vec![route.clone()],
    };
    let rows = s.deliveries(&filter).await.unwrap();
    rows.iter().map(|r| (r.order_id, r.state)).collect()
}

pub async fn pruning_deletes_old_delivered_rows_in_batches_and_dedupe_still_holds(s: SharedStore) {
    let a = rows("a", None);
    let three = [
        change(1, "issued"),
        change(2, "issued"),
        change(3, "issued"),
    ];
    window(&s, &three, at(0), at(0), std::slice::from_ref(&a)).await;
    let due_now = due(&s, &a, i64::MAX, 10).await;
    delivered(&s, "a", &due_now[..2], 100).await;
    let retry = Mark::Retry {
        next_attempt_at: 10_000,
        error: "HTTP 503".into(),
    };
    s.mark("a", vec![(due_now[2].seq(), retry)], 100)
        .await
        .unwrap();
    // Nothing is old enough yet; then one batch of one at a time.
    assert_eq!(s.prune_delivered(100, 10).await.unwrap(), 0);
    assert_eq!(s.prune_delivered(101, 1).await.unwrap(), 1);
    assert_eq!(s.prune_delivered(101, 1).await.unwrap(), 1);
    assert_eq!(s.prune_delivered(101, 1).await.unwrap(), 0);
    // The pending delivery and every transition stay.
    assert_eq!(ledger(&s, &a).await, vec![(3, DeliveryState::Pending)]);
    assert_eq!(s.events(&all_events()).await.unwrap().len(), 3);
    // Seeing the orders again queues nothing: the transitions remember them.
    let again = window(&s, &three, at(10), at(10), std::slice::from_ref(&a)).await;
    assert_eq!((again.new_transitions(), again.queued), (0, 0));
    assert_eq!(stats(&s, &a).await.pending, 1);
}

pub async fn purging_dead_rows_keeps_recent_ones_and_in_order_sinks_dead_rows(s: SharedStore) {
    let a = rows("a", None);
    let b = rows("b", None);
    let f = in_order("file", None);
    let routes = [a.clone(), b.clone(), f.clone()];
    window(&s, &[change(1, "issued")], at(0), at(0), &routes).await;
    window(&s, &[change(2, "issued")], at(1), at(1), &routes).await;
    let dead = |e: &str| Mark::Dead { error: e.into() };
    for (sink, route) in [("a", &a), ("b", &b), ("file", &f)] {
        let entries = due(&s, route, i64::MAX, 10).await;
        assert_eq!(entries.len(), 2, "{sink}");
        s.mark(sink, vec![(entries[0].seq(), dead("HTTP 400"))], 100)
            .await
            .unwrap();
        s.mark(sink, vec![(entries[1].seq(), dead("HTTP 400"))], 200)
            .await
            .unwrap();
    }
    // Only sink a, only what died before 150.
    assert_eq!(s.purge_dead(Some("a"), 150, 100).await.unwrap(), 1);
    assert_eq!(ledger(&s, &a).await, vec![(2, DeliveryState::Dead)]);
    assert_eq!(ledger(&s, &b).await.len(), 2);
    // Every sink: b's old row goes; the file sink's dead rows stay, since
    // without them its cursor would make them look delivered.
    assert_eq!(s.purge_dead(None, 150, 100).await.unwrap(), 1);
    assert_eq!(s.purge_dead(None, 1_000, 100).await.unwrap(), 2);
    assert!(ledger(&s, &a).await.is_empty());
    assert_eq!(
        ledger(&s, &f).await,
        vec![(2, DeliveryState::Dead), (1, DeliveryState::Dead)]
    );
    // A delivered in-order row the cursor has passed may go, and still
    // reads as delivered.
    assert_eq!(s.redeliver(&f, &Redeliver::Dead, 300).await.unwrap(), 2);
    let retried = due(&s, &f, i64::MAX, 10).await;
    delivered(&s, "file", &retried, 400).await;
    assert_eq!(s.prune_delivered(500, 100).await.unwrap(), 2);
    assert_eq!(
        ledger(&s, &f).await,
        vec![(2, DeliveryState::Delivered), (1, DeliveryState::Delivered)]
    );
}
