//! The store's behaviour, written once and run against every backend.
//!
//! Each behaviour is an async function taking a fresh, empty store;
//! [`store_suite!`] turns the list into one `#[tokio::test]` per behaviour
//! for a backend. A new backend passes this suite before anything else
//! uses it.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::transition::{Dedupe, OrderChange, parse_event_id};

/// Instantiates every behaviour below as a test for one backend. `$make`
/// is an async expression giving `Option<(guard, SharedStore)>`: `None`
/// when the backend is not available here (the constructor says why).
macro_rules! store_suite {
    ($make:expr) => {
        store_suite!(@tests $make;
            repeated_sightings_are_not_transitions_and_previous_status_is_kept,
            a_status_seen_before_is_not_a_transition_in_first_sighting_mode,
            a_status_that_comes_back_is_a_transition_with_a_counted_id,
            a_new_certificate_with_the_same_status_is_a_transition,
            a_sighting_without_a_certificate_is_a_repeat,
            returns_are_counted_across_windows_and_overlaps_emit_nothing_twice,
            redeliver_names_one_return_exactly,
            a_held_transition_reaches_no_sink_until_its_lookup_releases_it,
            held_transitions_of_one_order_share_a_lookup_and_later_ones_wait,
            an_in_order_sink_waits_only_for_held_transitions_it_takes,
            release_held_lets_everything_go_without_details,
            the_cursor_never_moves_back,
            a_cursor_in_the_future_can_be_rewound,
            only_the_last_chunk_moves_the_cursor,
            outbox_rows_follow_each_sinks_status_filter,
            only_the_oldest_pending_event_of_an_order_is_due,
            retries_wait_for_their_time_and_dead_rows_can_be_redelivered,
            the_first_failure_is_remembered_across_retries,
            expire_counts_from_the_first_failure_and_keeps_the_last_error,
            a_2xx_for_a_row_given_up_meanwhile_marks_it_delivered,
            requeued_rows_are_told_apart_from_rows_the_poller_queued,
            retry_now_pulls_backed_off_rows_forward_only,
            a_paused_sink_is_resumed_by_redeliver,
            redeliver_since_respects_the_filter_and_event_ids_are_exact,
            expire_gives_up_failed_rows_only_never_untried_ones,
            events_filter_by_order_status_and_time,
            seen_at_is_recorded_per_window,
            an_in_order_sink_keeps_a_cursor_not_rows,
            a_failed_in_order_delivery_gets_a_row_and_later_events_wait_behind_it,
            a_dead_in_order_delivery_is_in_the_ledger_and_the_cursor_moves_on,
            the_ledger_lists_in_order_events_waiting_after_the_cursor,
            a_new_in_order_sink_starts_after_the_newest_transition,
            an_in_order_sink_turned_webhook_keeps_what_was_pending,
            a_sink_turned_webhook_gets_rows_only_for_statuses_it_takes,
            redeliver_since_does_not_double_events_still_after_the_cursor,
            large_sorted_chunks_dedupe_like_small_ones,
            the_report_counts_transitions_and_shows_the_cursor,
            pruning_deletes_old_delivered_rows_in_batches_and_dedupe_still_holds,
            purging_dead_rows_keeps_recent_ones_and_in_order_sinks_dead_rows,
            a_dead_delivery_alerts_every_operational_sink_but_its_own_once,
            given_up_deliveries_and_a_new_pause_each_alert_once,
            alert_deliveries_retry_die_quietly_and_can_be_redelivered,
            a_poll_outage_is_reported_once_and_its_end_once,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((_guard, store)) = $make.await else {
                    return;
                };
                $crate::store::suite::$name(store).await;
            }
        )*
    };
}
pub(crate) use store_suite;

#[path = "suite_alerts.rs"]
mod alerts;
pub use alerts::*;

pub(super) const T0: i64 = 1_800_000_000_000;

/// A sink with a row per event (webhook-like).
pub(super) fn rows(name: &str, statuses: Option<&[&str]>) -> SinkRoute {
    SinkRoute {
        name: name.into(),
        statuses: statuses.map(|l| l.iter().map(|s| s.to_string()).collect()),
        by_cursor: false,
        operational: false,
    }
}

/// An in-order sink (file-like): a cursor, rows only when something needs
/// remembering.
fn in_order(name: &str, statuses: Option<&[&str]>) -> SinkRoute {
    SinkRoute {
        by_cursor: true,
        operational: false,
        ..rows(name, statuses)
    }
}

pub(super) fn change(order_id: i64, status: &str) -> OrderChange {
    OrderChange {
        order_id,
        certificate_id: Some(order_id + 1000),
        status: Arc::from(status),
    }
}

pub(super) fn at(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

/// Records a whole window and moves the cursor to `cursor`.
pub(super) async fn window(
    s: &SharedStore,
    changes: &[OrderChange],
    cursor: DateTime<Utc>,
    seen: DateTime<Utc>,
    routes: &[SinkRoute],
) -> RecordSummary {
    let mut sorted = changes.to_vec();
    sorted.sort_by_key(|c| c.order_id);
    s.record(Chunk::whole(sorted, Some(cursor), seen), routes.into())
        .await
        .unwrap()
}

pub(super) async fn due(
    s: &SharedStore,
    route: &SinkRoute,
    now: i64,
    limit: usize,
) -> Vec<OutboxEntry> {
    s.due(route, now, limit).await.unwrap()
}

fn orders(entries: &[OutboxEntry]) -> Vec<i64> {
    entries.iter().map(OutboxEntry::order_id).collect()
}

async fn stats(s: &SharedStore, route: &SinkRoute) -> SinkStats {
    s.sink_stats(std::slice::from_ref(route)).await.unwrap()[0].clone()
}

async fn delivered(s: &SharedStore, sink: &str, entries: &[OutboxEntry], now: i64) {
    let marks = entries.iter().map(|e| (e.seq(), Mark::Delivered)).collect();
    s.mark(sink, marks, now).await.unwrap();
}

fn all_events() -> EventFilter {
    EventFilter {
        limit: 100_000,
        ..EventFilter::default()
    }
}

pub async fn repeated_sightings_are_not_transitions_and_previous_status_is_kept(s: SharedStore) {
    let sinks = [rows("a", None)];
    let both = [change(1, "pending"), change(2, "issued")];
    let s1 = window(&s, &both, at(0), at(0), &sinks).await;
    assert_eq!(s1.new_transitions(), 2);
    let s2 = window(&s, &both, at(60), at(60), &sinks).await;
    assert_eq!((s2.new_transitions(), s2.queued), (0, 0));
    let s3 = window(&s, &[change(1, "issued")], at(120), at(120), &sinks).await;
    assert_eq!(s3.sample[0].previous_status.as_deref(), Some("pending"));
    assert_eq!(s.cursor().await.unwrap(), Some(at(120)));
}

pub async fn a_status_seen_before_is_not_a_transition_in_first_sighting_mode(s: SharedStore) {
    let sinks = [rows("a", None)];
    let mut flip = Chunk::whole(
        vec![
            change(1, "pending"),
            change(1, "needs_approval"),
            change(1, "pending"),
        ],
        Some(at(0)),
        at(0),
    );
    flip.dedupe = Dedupe::FirstSighting;
    let recorded = s.record(flip, sinks.as_slice().into()).await.unwrap();
    assert_eq!(recorded.new_transitions(), 2);
    // The order's current status is still the last one seen.
    let next = window(&s, &[change(1, "issued")], at(1), at(1), &sinks).await;
    assert_eq!(next.sample[0].previous_status.as_deref(), Some("pending"));
}

fn with_certificate(order_id: i64, status: &str, certificate_id: Option<i64>) -> OrderChange {
    OrderChange {
        order_id,
        certificate_id,
        status: Arc::from(status),
    }
}

/// `(id, previous_status, certificate_id)` of every event, oldest first.
async fn event_log(s: &SharedStore) -> Vec<(String, Option<String>, Option<i64>)> {
    let mut all = s.events(&all_events()).await.unwrap();
    all.reverse();
    all.into_iter()
        .map(|t| (t.event_id(), t.previous_status, t.certificate_id))
        .collect()
}

fn ids(log: &[(String, Option<String>, Option<i64>)]) -> Vec<&str> {
    log.iter().map(|(id, _, _)| id.as_str()).collect()
}

pub async fn a_status_that_comes_back_is_a_transition_with_a_counted_id(s: SharedStore) {
    let sinks = [rows("a", None)];
    let flip = [
        change(1, "pending"),
        change(1, "needs_approval"),
        change(1, "pending"),
    ];
    let first = s
        .record(
            Chunk::whole(flip.to_vec(), Some(at(0)), at(0)),
            sinks.as_slice().into(),
        )
        .await
        .unwrap();
    assert_eq!((first.new_transitions(), first.queued), (3, 3));
    // A reissue: issued, reissue_pending, issued again (another certificate).
    window(&s, &[change(1, "issued")], at(1), at(1), &sinks).await;
    window(&s, &[change(1, "reissue_pending")], at(2), at(2), &sinks).await;
    let again = with_certificate(1, "issued", Some(5001));
    let reissued = window(&s, &[again], at(3), at(3), &sinks).await;
    assert_eq!(reissued.new_transitions(), 1);
    assert_eq!(reissued.sample[0].event_id(), "1:issued:1");
    let log = event_log(&s).await;
    assert_eq!(
        ids(&log),
        [
            "1:pending",
            "1:needs_approval",
            "1:pending:1",
            "1:issued",
            "1:reissue_pending",
            "1:issued:1"
        ]
    );
    let previous: Vec<_> = log.iter().map(|(_, p, _)| p.as_deref()).collect();
    assert_eq!(
        previous,
        [
            None,
            Some("pending"),
            Some("needs_approval"),
            Some("pending"),
            Some("issued"),
            Some("reissue_pending")
        ]
    );
    assert_eq!(log[5].2, Some(5001));
    // Each went to the sink once, in order.
    assert_eq!(stats(&s, &sinks[0]).await.pending, 6);
}

pub async fn a_new_certificate_with_the_same_status_is_a_transition(s: SharedStore) {
    let sinks = [rows("a", None)];
    let issued = |c| with_certificate(7, "issued", Some(c));
    window(&s, &[issued(10)], at(0), at(0), &sinks).await;
    let repeat = window(&s, &[issued(10)], at(1), at(1), &sinks).await;
    assert_eq!(repeat.new_transitions(), 0);
    // A reissue that finished between two polls: only the certificate moved.
    let reissue = window(&s, &[issued(11)], at(2), at(2), &sinks).await;
    assert_eq!((reissue.new_transitions(), reissue.queued), (1, 1));
    let log = event_log(&s).await;
    assert_eq!(
        log,
        [
            ("7:issued".to_string(), None, Some(10)),
            (
                "7:issued:1".to_string(),
                Some("issued".to_string()),
                Some(11)
            ),
        ]
    );
    // First-sighting mode reports neither returns nor new certificates.
    let mut strict = Chunk::whole(vec![issued(12)], Some(at(3)), at(3));
    strict.dedupe = Dedupe::FirstSighting;
    let quiet = s.record(strict, sinks.as_slice().into()).await.unwrap();
    assert_eq!(quiet.new_transitions(), 0);
    // The current certificate moved on all the same.
    let back = window(&s, &[issued(12)], at(4), at(4), &sinks).await;
    assert_eq!(back.new_transitions(), 0);
}

pub async fn a_sighting_without_a_certificate_is_a_repeat(s: SharedStore) {
    let sinks = [rows("a", None)];
    let seen = |c| with_certificate(3, "pending", c);
    window(&s, &[seen(None)], at(0), at(0), &sinks).await;
    // The first certificate id of an order is news about it, not a change.
    let learned = window(&s, &[seen(Some(30))], at(1), at(1), &sinks).await;
    assert_eq!(learned.new_transitions(), 0);
    let missing = window(&s, &[seen(None)], at(2), at(2), &sinks).await;
    assert_eq!(missing.new_transitions(), 0);
    // Compared with the certificate learned above, 31 is a change.
    let moved = window(&s, &[seen(Some(31))], at(3), at(3), &sinks).await;
    assert_eq!(moved.sample[0].event_id(), "3:pending:1");
    // The same within one answer: an order listed twice.
    let both = vec![
        with_certificate(4, "issued", None),
        with_certificate(4, "issued", Some(40)),
    ];
    let twice = s
        .record(
            Chunk::whole(both, Some(at(4)), at(4)),
            sinks.as_slice().into(),
        )
        .await
        .unwrap();
    assert_eq!(twice.new_transitions(), 1);
    let later = window(
        &s,
        &[with_certificate(4, "issued", Some(41))],
        at(5),
        at(5),
        &sinks,
    )
    .await;
    assert_eq!(later.sample[0].event_id(), "4:issued:1");
}

pub async fn returns_are_counted_across_windows_and_overlaps_emit_nothing_twice(s: SharedStore) {
    let sinks = [rows("a", None), in_order("file", None)];
    let script = [
        ("pending", 1),
        ("pending", 0),
        ("issued", 1),
        ("issued", 0),
        ("issued", 0),
        ("pending", 1),
        ("pending", 0),
        ("issued", 1),
        ("pending", 1),
    ];
    for (i, (status, new)) in script.into_iter().enumerate() {
        let t = at(i as i64 * 60);
        // Each window repeats the previous answer (the overlap) before the news.
        let mut answer = vec![change(2, "revoked")];
        answer.push(change(1, status));
        let summary = window(&s, &answer, t, t, &sinks).await;
        let expected_new = new + u64::from(i == 0);
        assert_eq!(summary.new_transitions(), expected_new, "window {i}");
    }
    let log = event_log(&s).await;
    assert_eq!(
        ids(&log),
        [
            "1:pending",
            "2:revoked",
            "1:issued",
            "1:pending:1",
            "1:issued:1",
            "1:pending:2"
        ]
    );
    for sink in &sinks {
        assert_eq!(stats(&s, sink).await.pending, 6, "{}", sink.name);
    }
}

pub async fn redeliver_names_one_return_exactly(s: SharedStore) {
    let a = rows("a", None);
    for (i, status) in ["pending", "needs_approval", "pending"]
        .into_iter()
        .enumerate()
    {
        let t = at(i as i64);
        window(&s, &[change(1, status)], t, t, std::slice::from_ref(&a)).await;
    }
    let all = due(&s, &a, i64::MAX, 10).await;
    delivered(&s, "a", &all, 1).await;
    let all = due(&s, &a, i64::MAX, 10).await;
    delivered(&s, "a", &all, 2).await;
    let all = due(&s, &a, i64::MAX, 10).await;
    delivered(&s, "a", &all, 3).await;
    assert_eq!(stats(&s, &a).await.pending, 0);
    let again = Redeliver::Event(parse_event_id("1:pending:1").unwrap());
    assert_eq!(s.redeliver(&a, &again, 10).await.unwrap(), 1);
    let queued = due(&s, &a, i64::MAX, 10).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].transition.event_id(), "1:pending:1");
    assert_eq!(
        queued[0].transition.previous_status.as_deref(),
        Some("needs_approval")
    );
}

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

/// A store with one transition (order 1, "issued") seen at `T0`, queued for
/// the row-per-event sink "a"; returns its seq.
async fn one_row(s: &SharedStore) -> i64 {
    let at = DateTime::from_timestamp_millis(T0).unwrap();
    let change = OrderChange {
        order_id: 1,
        certificate_id: Some(11),
        status: Arc::from("issued"),
    };
    window(s, &[change], at, at, &[rows("a", None)]).await;
    due(s, &rows("a", None), T0, 10).await[0].seq()
}

async fn retry(s: &SharedStore, seq: i64, now: i64, next: i64) {
    let mark = Mark::Retry {
        next_attempt_at: next,
        error: "HTTP 503 Service Unavailable: busy".into(),
    };
    s.mark("a", vec![(seq, mark)], now).await.unwrap();
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
