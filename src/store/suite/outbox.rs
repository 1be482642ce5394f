//! The cursor, what each sink is queued, per-order order, retries, pauses,
//! redelivery and giving up.

use super::*;

pub async fn the_cursor_never_moves_back(s: SharedStore) {
    window(&s, &[], at(100), at(100), &[]).await;
    window(&s, &[], at(50), at(100), &[]).await;
    assert_eq!(s.cursor().await.unwrap(), Some(at(100)));
}

pub async fn a_cursor_in_the_future_can_be_rewound(s: SharedStore) {
    window(&s, &[], at(100), at(100), &[]).await;
    s.rewind_cursor(at(40)).await.unwrap();
    assert_eq!(s.cursor().await.unwrap(), Some(at(40)));
    // Recording moves it forward again as usual, never back.
    window(&s, &[], at(30), at(30), &[]).await;
    assert_eq!(s.cursor().await.unwrap(), Some(at(40)));
}

pub async fn only_the_last_chunk_moves_the_cursor(s: SharedStore) {
    let answer = Arc::new(vec![change(1, "pending"), change(2, "pending")]);
    let part = |range, cursor| Chunk {
        orders: Arc::clone(&answer),
        range,
        cursor,
        seen_at: at(0),
        dedupe: Dedupe::Change,
        hold: Hold::Nothing,
    };
    s.record(part(0..1, None), Routes::from([])).await.unwrap();
    assert_eq!(s.cursor().await.unwrap(), None);
    s.record(part(1..2, Some(at(5))), Routes::from([]))
        .await
        .unwrap();
    assert_eq!(s.cursor().await.unwrap(), Some(at(5)));
    assert_eq!(s.report(false).await.unwrap().transitions, 2);
}

/// A window recorded as a sequence of chunks: in order, each committed on
/// its own (told as it happens), the cursor moved by the last one only.
pub async fn chunks_are_recorded_in_order_each_commit_told(s: SharedStore) {
    let answer = Arc::new((1..=5).map(|id| change(id, "pending")).collect::<Vec<_>>());
    let told = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&told);
    let probe = Arc::clone(&s);
    let chunks = [0..2, 2..4, 4..5].into_iter().map(move |range| Chunk {
        orders: Arc::clone(&answer),
        cursor: (range.end == 5).then(|| at(9)),
        range,
        seen_at: at(0),
        dedupe: Dedupe::Change,
        hold: Hold::Nothing,
    });
    let committed: Committed = Arc::new(move |part: &RecordSummary| {
        seen.lock().unwrap().push(part.queued);
    });
    let sinks = [rows("a", None)];
    let summary = probe
        .record_chunks(Box::new(chunks), sinks[..].into(), committed)
        .await
        .unwrap();
    assert_eq!(*told.lock().unwrap(), [2, 2, 1]);
    assert_eq!((summary.seen, summary.queued), (5, 5));
    assert_eq!(s.cursor().await.unwrap(), Some(at(9)));
    let queued = due(&s, &sinks[0], i64::MAX, 10).await;
    let seqs: Vec<i64> = queued.iter().map(OutboxEntry::seq).collect();
    assert_eq!(orders(&queued), [1, 2, 3, 4, 5]);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

pub async fn outbox_rows_follow_each_sinks_status_filter(s: SharedStore) {
    let sinks = [rows("all", None), rows("issued", Some(&["issued"]))];
    let both = [change(1, "pending"), change(2, "issued")];
    let summary = window(&s, &both, at(0), at(0), &sinks).await;
    assert_eq!(summary.queued, 3);
    assert_eq!(due(&s, &sinks[0], i64::MAX, 10).await.len(), 2);
    let only = due(&s, &sinks[1], i64::MAX, 10).await;
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].transition.status, "issued");
}

pub async fn only_the_oldest_pending_event_of_an_order_is_due(s: SharedStore) {
    let a = rows("a", None);
    window(
        &s,
        &[change(1, "pending")],
        at(0),
        at(0),
        std::slice::from_ref(&a),
    )
    .await;
    let next = [change(1, "issued"), change(2, "pending")];
    window(&s, &next, at(1), at(1), std::slice::from_ref(&a)).await;
    let first = due(&s, &a, i64::MAX, 10).await;
    let ids: Vec<_> = first
        .iter()
        .map(|e| (e.order_id(), e.transition.status.clone()))
        .collect();
    assert_eq!(ids, vec![(1, "pending".into()), (2, "pending".into())]);
    delivered(&s, "a", &first[..1], 5).await;
    let then = due(&s, &a, i64::MAX, 10).await;
    assert!(
        then.iter()
            .any(|e| e.order_id() == 1 && e.transition.status == "issued")
    );
}

/// An event waiting behind an earlier one of its order is not due, so it
/// must not make the sink's next due time "now": a loop would otherwise
/// wake at once, find nothing due and go round again until the earlier
/// one's retry (or the lookup it is held for) comes.
pub async fn an_event_waiting_behind_its_order_does_not_make_the_sink_due(s: SharedStore) {
    let a = rows("a", None);
    let ms = |t: i64| at(t).timestamp_millis();
    let first = [change(1, "pending")];
    window(&s, &first, at(0), at(0), std::slice::from_ref(&a)).await;
    let head = due(&s, &a, ms(0), 10).await;
    let retry = Mark::Retry {
        next_attempt_at: ms(100),
        error: "HTTP 503".into(),
    };
    s.mark("a", vec![(head[0].seq(), retry)], ms(0))
        .await
        .unwrap();
    // Order 1's next event is queued (due at once) behind its retry.
    let next = [change(1, "issued")];
    window(&s, &next, at(1), at(1), std::slice::from_ref(&a)).await;
    assert!(due(&s, &a, ms(50), 10).await.is_empty());
    assert_eq!(s.next_due(&a).await.unwrap(), Some(ms(100)));
    // Behind a held one of its order: nothing more is due until the release.
    let mut held = Chunk::whole(vec![change(2, "pending")], Some(at(2)), at(2));
    held.hold = Hold::All;
    s.record(held, vec![a.clone()].into()).await.unwrap();
    let later = [change(2, "issued")];
    window(&s, &later, at(3), at(3), std::slice::from_ref(&a)).await;
    assert!(due(&s, &a, ms(50), 10).await.is_empty());
    assert_eq!(s.next_due(&a).await.unwrap(), Some(ms(100)));
    s.release_held().await.unwrap();
    assert_eq!(orders(&due(&s, &a, ms(50), 10).await), [2]);
    assert_eq!(s.next_due(&a).await.unwrap(), Some(ms(2)));
}

pub async fn retries_wait_for_their_time_and_dead_rows_can_be_redelivered(s: SharedStore) {
    let a = rows("a", None);
    window(
        &s,
        &[change(1, "issued")],
        at(0),
        at(0),
        std::slice::from_ref(&a),
    )
    .await;
    let seq = due(&s, &a, i64::MAX, 10).await[0].seq();
    let retry = Mark::Retry {
        next_attempt_at: 10_000,
        error: "HTTP 503".into(),
    };
    s.mark("a", vec![(seq, retry)], 0).await.unwrap();
    assert!(due(&s, &a, 9_999, 10).await.is_empty());
    assert_eq!(s.next_due(&a).await.unwrap(), Some(10_000));
    assert_eq!(due(&s, &a, 10_000, 10).await[0].attempts, 1);
    let dead = Mark::Dead {
        error: "HTTP 400".into(),
    };
    s.mark("a", vec![(seq, dead)], 1).await.unwrap();
    assert_eq!(s.next_due(&a).await.unwrap(), None);
    let ledger = s
        .deliveries(&DeliveryFilter {
            sink: None,
            state: Some(DeliveryState::Dead),
            limit: 10,
            routes: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(ledger[0].last_error.as_deref(), Some("HTTP 400"));
    assert_eq!(ledger[0].attempts, 2);
    assert_eq!(
        s.sink_stats(std::slice::from_ref(&a)).await.unwrap()[0].dead,
        1
    );
    assert_eq!(s.redeliver(&a, &Redeliver::Dead, 50).await.unwrap(), 1);
    assert_eq!(due(&s, &a, 50, 10).await[0].attempts, 0);
}

pub async fn a_paused_sink_is_resumed_by_redeliver(s: SharedStore) {
    let a = rows("a", None);
    s.pause("a", "HTTP 410", 7).await.unwrap();
    let pause = s.pause_of("a").await.unwrap();
    assert_eq!(
        pause,
        Some(Pause {
            since: 7,
            reason: "HTTP 410".into()
        })
    );
    assert!(stats(&s, &a).await.paused);
    s.redeliver(&a, &Redeliver::Since(0), 1).await.unwrap();
    assert_eq!(s.pause_of("a").await.unwrap(), None);
}

pub async fn redeliver_since_respects_the_filter_and_event_ids_are_exact(s: SharedStore) {
    let all = rows("all", None);
    let issued = rows("issued", Some(&["issued"]));
    let both = [change(1, "pending"), change(2, "issued")];
    window(&s, &both, at(0), at(0), std::slice::from_ref(&all)).await;
    assert_eq!(
        s.redeliver(&issued, &Redeliver::Since(0), 1).await.unwrap(),
        1
    );
    let event = |id: &str| Redeliver::Event(parse_event_id(id).unwrap());
    assert_eq!(s.redeliver(&all, &event("1:pending"), 1).await.unwrap(), 1);
    assert_eq!(s.redeliver(&all, &event("1:issued"), 1).await.unwrap(), 0);
    assert_eq!(
        s.redeliver(&all, &event("1:pending:1"), 1).await.unwrap(),
        0
    );
}

pub async fn expire_gives_up_failed_rows_only_never_untried_ones(s: SharedStore) {
    let a = rows("a", None);
    window(
        &s,
        &[change(1, "issued"), change(2, "issued")],
        at(0),
        at(0),
        std::slice::from_ref(&a),
    )
    .await;
    let created = at(0).timestamp_millis();
    let first = due(&s, &a, created, 10).await[0].seq();
    // Row 1 fails a day after it was queued; row 2 is never tried.
    let failed = created + 86_400_000;
    retry(&s, first, failed, failed + 10).await;
    let far = failed + 365 * 86_400_000;
    assert_eq!(s.expire("a", failed, "gave up", far).await.unwrap(), 0);
    assert_eq!(s.expire("a", far, "gave up", far).await.unwrap(), 1);
    let st = stats(&s, &a).await;
    assert_eq!((st.dead, st.pending), (1, 1), "the untried row is kept");
}
