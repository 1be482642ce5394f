//! Transitions held for their order's details: no sink sees them first, one
//! lookup per order, release without details.

use super::*;

/// Records a whole window whose new transitions `hold` takes are held.
async fn held_window(
    s: &SharedStore,
    changes: &[OrderChange],
    t: DateTime<Utc>,
    hold: Hold,
    routes: &[SinkRoute],
) -> RecordSummary {
    let mut sorted = changes.to_vec();
    sorted.sort_by_key(|c| c.order_id);
    let mut chunk = Chunk::whole(sorted, Some(t), t);
    chunk.hold = hold;
    s.record(chunk, routes.into()).await.unwrap()
}

fn released(details: &str) -> LookupOutcome {
    LookupOutcome::Release {
        details: details.into(),
    }
}

pub async fn a_held_transition_reaches_no_sink_until_its_lookup_releases_it(s: SharedStore) {
    let (a, file) = (rows("a", None), in_order("file", None));
    let sinks = [a.clone(), file.clone()];
    let both = [change(1, "pending"), change(2, "issued")];
    let summary = held_window(&s, &both, at(0), Hold::All, &sinks).await;
    assert_eq!((summary.new_transitions(), summary.held), (2, 2));
    for sink in &sinks {
        assert!(
            due(&s, sink, i64::MAX, 10).await.is_empty(),
            "{}",
            sink.name
        );
        assert_eq!(s.next_due(sink).await.unwrap(), None, "{}", sink.name);
        // Held deliveries are still pending ones.
        assert_eq!(stats(&s, sink).await.pending, 2, "{}", sink.name);
    }
    let lookups = s.lookups_due(T0, 10).await.unwrap();
    assert_eq!(
        lookups.iter().map(|l| l.order_id).collect::<Vec<_>>(),
        [1, 2]
    );
    let retry = LookupOutcome::Retry {
        next_attempt_at: T0 + 5_000,
        error: "http_503".into(),
    };
    let outcomes = vec![
        (lookups[0].clone(), released(r#"{"common_name":"a"}"#)),
        (lookups[1].clone(), retry),
    ];
    s.lookups_done(outcomes, T0).await.unwrap();
    for sink in &sinks {
        let now = due(&s, sink, i64::MAX, 10).await;
        assert_eq!(orders(&now), [1], "{}", sink.name);
        assert_eq!(
            now[0].transition.details.as_deref(),
            Some(r#"{"common_name":"a"}"#)
        );
    }
    let backlog = s.lookup_backlog().await.unwrap();
    assert_eq!(
        (backlog.transitions, backlog.orders, backlog.next_due),
        (1, 1, Some(T0 + 5_000))
    );
    assert!(s.lookups_due(T0 + 4_999, 10).await.unwrap().is_empty());
    let again = s.lookups_due(T0 + 5_000, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].attempts, again[0].last_error.as_deref()),
        (1, Some("http_503"))
    );
    s.lookups_done(vec![(again[0].clone(), released("null"))], T0)
        .await
        .unwrap();
    let last = due(&s, &a, i64::MAX, 10).await;
    let order_2 = last.iter().find(|e| e.order_id() == 2).unwrap();
    assert_eq!(order_2.transition.details.as_deref(), Some("null"));
    // The details are stored with the transition, for events and redeliveries.
    let events = s.events(&all_events()).await.unwrap();
    assert!(events.iter().all(|t| t.details.is_some()));
    assert_eq!(s.lookup_backlog().await.unwrap(), LookupBacklog::default());
}

pub async fn held_transitions_of_one_order_share_a_lookup_and_later_ones_wait(s: SharedStore) {
    let a = rows("a", None);
    let sinks = [a.clone()];
    let issued_only = Hold::Statuses(vec!["issued".to_string()].into());
    let both = [change(5, "pending"), change(5, "issued")];
    held_window(&s, &both, at(0), Hold::All, &sinks).await;
    let shared = s.lookups_due(T0 + 1_000, 10).await.unwrap();
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].seqs.len(), 2);
    s.lookups_done(vec![(shared[0].clone(), released("{}"))], T0)
        .await
        .unwrap();
    // Only issued is held now; pending goes first, revoked waits behind it.
    held_window(
        &s,
        &[change(6, "pending")],
        at(1),
        issued_only.clone(),
        &sinks,
    )
    .await;
    held_window(
        &s,
        &[change(6, "issued")],
        at(2),
        issued_only.clone(),
        &sinks,
    )
    .await;
    let held = held_window(&s, &[change(6, "revoked")], at(3), issued_only, &sinks).await;
    assert_eq!(held.held, 0);
    let now: Vec<_> = due(&s, &a, i64::MAX, 10)
        .await
        .into_iter()
        .filter(|e| e.order_id() == 6)
        .collect();
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].transition.status, "pending");
    assert_eq!(now[0].transition.details, None);
    delivered(&s, "a", &now, 1).await;
    assert!(
        due(&s, &a, i64::MAX, 10)
            .await
            .iter()
            .all(|e| e.order_id() != 6),
        "revoked went out before the held issued"
    );
    let lookup = s.lookups_due(i64::MAX, 10).await.unwrap();
    assert_eq!(lookup.len(), 1);
    s.lookups_done(vec![(lookup[0].clone(), released("null"))], T0)
        .await
        .unwrap();
    let next = due(&s, &a, i64::MAX, 10).await;
    let six: Vec<_> = next.iter().filter(|e| e.order_id() == 6).collect();
    assert_eq!(six[0].transition.status, "issued");
}

pub async fn an_in_order_sink_waits_only_for_held_transitions_it_takes(s: SharedStore) {
    let revoked = in_order("revoked", Some(&["revoked"]));
    let everything = in_order("everything", None);
    let sinks = [revoked.clone(), everything.clone()];
    let issued_only = Hold::Statuses(vec!["issued".to_string()].into());
    let both = [change(1, "issued"), change(2, "revoked")];
    held_window(&s, &both, at(0), issued_only, &sinks).await;
    // The revoked-only file is not held up by a held issued it never takes.
    assert_eq!(orders(&due(&s, &revoked, i64::MAX, 10).await), [2]);
    assert_eq!(s.next_due(&revoked).await.unwrap(), Some(0));
    // A file taking everything keeps recorded order: it waits.
    assert!(due(&s, &everything, i64::MAX, 10).await.is_empty());
    assert_eq!(s.next_due(&everything).await.unwrap(), None);
    let lookup = s.lookups_due(i64::MAX, 10).await.unwrap();
    s.lookups_done(vec![(lookup[0].clone(), released("{}"))], T0)
        .await
        .unwrap();
    assert_eq!(orders(&due(&s, &everything, i64::MAX, 10).await), [1, 2]);
}

/// `redeliver --event` of a held transition the sink does not take leaves
/// the in-order sink a pending row that is not due: transitions after its
/// cursor wait behind it, and the next due time must say so, not "now"
/// (the loop would find nothing and ask again at once).
pub async fn an_in_order_sink_behind_a_held_row_is_not_due(s: SharedStore) {
    let revoked = in_order("revoked", Some(&["revoked"]));
    let issued_only = Hold::Statuses(vec!["issued".to_string()].into());
    let both = [change(1, "issued"), change(2, "revoked")];
    held_window(
        &s,
        &both,
        at(0),
        issued_only,
        std::slice::from_ref(&revoked),
    )
    .await;
    let held = crate::transition::parse_event_id("1:issued").unwrap();
    assert_eq!(
        s.redeliver(&revoked, &Redeliver::Event(held), T0)
            .await
            .unwrap(),
        1
    );
    assert!(
        due(&s, &revoked, i64::MAX, 10).await.is_empty(),
        "behind the held row"
    );
    assert_eq!(s.next_due(&revoked).await.unwrap(), None);
    let lookup = s.lookups_due(i64::MAX, 10).await.unwrap();
    s.lookups_done(vec![(lookup[0].clone(), released("{}"))], T0)
        .await
        .unwrap();
    assert_eq!(s.next_due(&revoked).await.unwrap(), Some(T0));
    assert_eq!(orders(&due(&s, &revoked, i64::MAX, 10).await), [1]);
}

pub async fn release_held_lets_everything_go_without_details(s: SharedStore) {
    let a = rows("a", None);
    let both = [change(1, "pending"), change(2, "issued")];
    held_window(&s, &both, at(0), Hold::All, std::slice::from_ref(&a)).await;
    assert_eq!(s.release_held().await.unwrap(), 2);
    let now = due(&s, &a, i64::MAX, 10).await;
    assert_eq!(orders(&now), [1, 2]);
    assert!(now.iter().all(|e| e.transition.details.is_none()));
    assert_eq!(s.release_held().await.unwrap(), 0);
}
