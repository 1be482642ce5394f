//! Reading events back, and in-order sinks (file, stdout) that keep a cursor
//! instead of a row per event.

use super::*;

pub async fn events_filter_by_order_status_and_time(s: SharedStore) {
    let both = [change(1, "pending"), change(2, "issued")];
    window(&s, &both, at(0), at(0), &[]).await;
    window(&s, &[change(1, "issued")], at(100), at(100), &[]).await;
    let f = |order_id, status: Option<&str>, since| EventFilter {
        order_id,
        status: status.map(str::to_string),
        since,
        limit: 10,
    };
    let count = |f| {
        let s = s.clone();
        async move { s.events(&f).await.unwrap().len() }
    };
    assert_eq!(count(f(Some(1), None, None)).await, 2);
    assert_eq!(count(f(None, Some("issued"), None)).await, 2);
    assert_eq!(
        count(f(None, None, Some(at(50).timestamp_millis()))).await,
        1
    );
    let newest = s.events(&f(None, None, None)).await.unwrap();
    assert_eq!(newest[0].status, "issued", "newest first");
    assert_eq!(newest[0].previous_status.as_deref(), Some("pending"));
}

pub async fn seen_at_is_recorded_per_window(s: SharedStore) {
    let seen = at(0) + TimeDelta::seconds(3);
    window(&s, &[change(1, "pending")], at(0), seen, &[]).await;
    let t = &s.events(&all_events()).await.unwrap()[0];
    assert_eq!(t.seen_at, at(3).timestamp_millis());
}

pub async fn an_in_order_sink_keeps_a_cursor_not_rows(s: SharedStore) {
    let f = in_order("file", None);
    let both = [change(1, "pending"), change(2, "issued")];
    let summary = window(&s, &both, at(0), at(0), std::slice::from_ref(&f)).await;
    assert_eq!(summary.queued, 2);
    let ledger_rows = DeliveryFilter {
        sink: Some("file".into()),
        state: None,
        limit: 10,
        routes: Vec::new(),
    };
    assert!(
        s.deliveries(&ledger_rows).await.unwrap().is_empty(),
        "no outbox rows"
    );
    let pending = due(&s, &f, 0, 10).await;
    assert_eq!(orders(&pending), vec![1, 2]);
    assert_eq!(s.next_due(&f).await.unwrap(), Some(0));
    assert_eq!(stats(&s, &f).await.pending, 2);
    delivered(&s, "file", &pending, 5).await;
    assert!(due(&s, &f, 0, 10).await.is_empty());
    assert_eq!(s.next_due(&f).await.unwrap(), None);
    assert_eq!(stats(&s, &f).await.pending, 0);
}

pub async fn a_failed_in_order_delivery_gets_a_row_and_later_events_wait_behind_it(s: SharedStore) {
    let f = in_order("file", None);
    let both = [change(1, "pending"), change(2, "issued")];
    window(&s, &both, at(0), at(0), std::slice::from_ref(&f)).await;
    let first = due(&s, &f, 0, 1).await;
    assert_eq!(first.len(), 1);
    let retry = Mark::Retry {
        next_attempt_at: 10_000,
        error: "No such file or directory".into(),
    };
    s.mark("file", vec![(first[0].seq(), retry)], 1)
        .await
        .unwrap();
    // Order 2 is after the cursor but waits behind the failed order 1.
    assert!(due(&s, &f, 5_000, 10).await.is_empty());
    assert_eq!(s.next_due(&f).await.unwrap(), Some(10_000));
    assert_eq!(stats(&s, &f).await.pending, 2);
    let again = due(&s, &f, 10_000, 10).await;
    assert_eq!(
        (again.len(), again[0].order_id(), again[0].attempts),
        (1, 1, 1)
    );
    delivered(&s, "file", &again, 10_001).await;
    assert_eq!(orders(&due(&s, &f, 10_001, 10).await), vec![2]);
}

pub async fn a_dead_in_order_delivery_is_in_the_ledger_and_the_cursor_moves_on(s: SharedStore) {
    let f = in_order("file", None);
    let both = [change(1, "pending"), change(2, "issued")];
    window(&s, &both, at(0), at(0), std::slice::from_ref(&f)).await;
    let pending = due(&s, &f, 0, 10).await;
    let dead = Mark::Dead {
        error: "gave up".into(),
    };
    let marks = vec![
        (pending[0].seq(), dead),
        (pending[1].seq(), Mark::Delivered),
    ];
    s.mark("file", marks, 1).await.unwrap();
    let filter = DeliveryFilter {
        sink: None,
        state: None,
        limit: 10,
        routes: vec![f.clone()],
    };
    let ledger = s.deliveries(&filter).await.unwrap();
    let states: Vec<_> = ledger.iter().map(|r| (r.order_id, r.state)).collect();
    assert_eq!(
        states,
        vec![(2, DeliveryState::Delivered), (1, DeliveryState::Dead)]
    );
    assert_eq!(s.redeliver(&f, &Redeliver::Dead, 2).await.unwrap(), 1);
    assert_eq!(orders(&due(&s, &f, 2, 10).await), vec![1]);
}

pub async fn the_ledger_lists_in_order_events_waiting_after_the_cursor(s: SharedStore) {
    let f = in_order("file", Some(&["issued"]));
    let three = [
        change(1, "pending"),
        change(2, "issued"),
        change(3, "issued"),
    ];
    window(&s, &three, at(0), at(0), std::slice::from_ref(&f)).await;
    let first = due(&s, &f, 0, 1).await;
    assert_eq!(first[0].order_id(), 2, "the filter applies");
    delivered(&s, "file", &first, 1).await;
    let pending = DeliveryFilter {
        sink: Some("file".into()),
        state: Some(DeliveryState::Pending),
        limit: 10,
        routes: vec![f.clone()],
    };
    let ledger = s.deliveries(&pending).await.unwrap();
    let ids: Vec<_> = ledger.iter().map(DeliveryRow::event_id).collect();
    assert_eq!(ids, vec!["3:issued"]);
    let all = DeliveryFilter {
        state: None,
        sink: None,
        ..pending
    };
    assert_eq!(s.deliveries(&all).await.unwrap().len(), 2);
}

pub async fn a_new_in_order_sink_starts_after_the_newest_transition(s: SharedStore) {
    window(&s, &[change(1, "pending")], at(0), at(0), &[]).await;
    let f = in_order("late", None);
    window(
        &s,
        &[change(2, "issued")],
        at(1),
        at(1),
        std::slice::from_ref(&f),
    )
    .await;
    assert_eq!(orders(&due(&s, &f, 0, 10).await), vec![2]);
}

pub async fn an_in_order_sink_turned_webhook_keeps_what_was_pending(s: SharedStore) {
    let f = in_order("x", None);
    window(&s, &[change(1, "pending")], at(0), at(0), &[f]).await;
    let w = rows("x", None);
    window(
        &s,
        &[change(2, "issued")],
        at(1),
        at(1),
        std::slice::from_ref(&w),
    )
    .await;
    let pending = due(&s, &w, i64::MAX, 10).await;
    assert_eq!(orders(&pending), vec![1, 2]);
    // Now rows: delivering one leaves exactly the other.
    delivered(&s, "x", &pending[..1], T0).await;
    assert_eq!(orders(&due(&s, &w, i64::MAX, 10).await), vec![2]);
}

pub async fn a_sink_turned_webhook_gets_rows_only_for_statuses_it_takes(s: SharedStore) {
    let f = in_order("x", Some(&["issued"]));
    let both = [change(1, "pending"), change(2, "issued")];
    window(&s, &both, at(0), at(0), &[f]).await;
    let w = rows("x", Some(&["issued"]));
    window(&s, &[], at(1), at(1), std::slice::from_ref(&w)).await;
    assert_eq!(orders(&due(&s, &w, i64::MAX, 10).await), vec![2]);
}

pub async fn redeliver_since_does_not_double_events_still_after_the_cursor(s: SharedStore) {
    let f = in_order("file", None);
    let both = [change(1, "pending"), change(2, "issued")];
    window(&s, &both, at(0), at(0), std::slice::from_ref(&f)).await;
    let first = due(&s, &f, 0, 1).await;
    delivered(&s, "file", &first, 1).await;
    assert_eq!(s.redeliver(&f, &Redeliver::Since(0), 2).await.unwrap(), 2);
    let again = due(&s, &f, 2, 10).await;
    assert_eq!(orders(&again), vec![1]);
    delivered(&s, "file", &again, 3).await;
    assert_eq!(orders(&due(&s, &f, 3, 10).await), vec![2]);
}

/// Large sorted chunks may be looked up differently (a range scan rather
/// than a query per order); the outcome must be the same.
pub async fn large_sorted_chunks_dedupe_like_small_ones(s: SharedStore) {
    let first: Vec<OrderChange> = (1..=5000).map(|i| change(i, "pending")).collect();
    let mut second: Vec<OrderChange> = (1..=6000)
        .map(|i| change(i, if i % 3 == 0 { "issued" } else { "pending" }))
        .collect();
    // The same order twice in one answer, and an A → B → A return.
    second.insert(10, change(10, "needs_approval"));
    second.insert(12, change(11, "needs_approval"));
    second.insert(13, change(11, "pending"));
    second.sort_by_key(|c| c.order_id);
    let a = window(&s, &first, at(0), at(0), &[]).await;
    let b = window(&s, &second, at(1), at(1), &[]).await;
    assert_eq!(a.new_transitions(), 5000);
    // 1666 known orders become issued, 1000 are new, order 10 gains
    // needs_approval, and order 11 gains needs_approval and then returns
    // to pending, which it had (a return: another transition).
    assert_eq!(b.new_transitions(), 1666 + 1000 + 3);
    let events = s.events(&all_events()).await.unwrap();
    assert_eq!(events.len(), 5000 + 2669);
    let eleven: Vec<_> = events
        .iter()
        .filter(|t| t.order_id == 11)
        .map(|t| (t.event_id(), t.previous_status.as_deref()))
        .collect();
    assert_eq!(
        eleven,
        vec![
            ("11:pending:1".to_string(), Some("needs_approval")),
            ("11:needs_approval".to_string(), Some("pending")),
            ("11:pending".to_string(), None)
        ]
    );
    let next = window(&s, &[change(11, "issued")], at(2), at(2), &[]).await;
    assert_eq!(next.sample[0].previous_status.as_deref(), Some("pending"));
}

pub async fn an_in_order_sink_reads_ahead_past_what_is_in_flight(s: SharedStore) {
    let f = in_order("file", None);
    // More than one of PostgreSQL's write statements: seqs still follow
    // the answer.
    let many: Vec<OrderChange> = (1..=2500).map(|i| change(i, "pending")).collect();
    window(&s, &many, at(0), at(0), std::slice::from_ref(&f)).await;
    let all = due(&s, &f, 0, 5000).await;
    assert_eq!(orders(&all), (1..=2500).collect::<Vec<_>>());
    assert!(all.windows(2).all(|w| w[0].seq() < w[1].seq()));
    // The first 1000 in flight: the next batch starts after them.
    let after = all[999].seq();
    let next = s.due_after(&f, 0, 10, after, Vec::new()).await.unwrap();
    assert_eq!(orders(&next), (1001..=1010).collect::<Vec<_>>());
    // A failed delivery waits for its retry, and nothing is read past it.
    let retry = Mark::Retry {
        next_attempt_at: 10_000,
        error: "No space left on device".into(),
    };
    s.mark("file", vec![(all[0].seq(), retry)], 1)
        .await
        .unwrap();
    assert!(
        s.due_after(&f, 10_000, 10, after, Vec::new())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(orders(&due(&s, &f, 10_000, 10).await), vec![1]);
}

pub async fn retries_of_an_in_order_sink_keep_recorded_order(s: SharedStore) {
    let f = in_order("file", None);
    let both = [change(1, "pending"), change(2, "issued")];
    window(&s, &both, at(0), at(0), std::slice::from_ref(&f)).await;
    let batch = due(&s, &f, 0, 10).await;
    // One failed batch; jitter makes the later event due first.
    let retry = |next_attempt_at| Mark::Retry {
        next_attempt_at,
        error: "No space left on device".into(),
    };
    let marks = vec![
        (batch[0].seq(), retry(10_005)),
        (batch[1].seq(), retry(10_000)),
    ];
    s.mark("file", marks, 1).await.unwrap();
    // Nothing is due before order 1 is: a loop waiting for 10_000 would
    // find nothing then, and spin until 10_005.
    assert_eq!(s.next_due(&f).await.unwrap(), Some(10_005));
    assert!(
        due(&s, &f, 10_002, 10).await.is_empty(),
        "order 2 waits behind order 1"
    );
    assert_eq!(orders(&due(&s, &f, 10_005, 10).await), vec![1, 2]);
}
