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
            a_sighting_without_a_certificate_keeps_the_known_one_within_a_chunk,
            a_sighting_without_a_certificate_is_a_repeat,
            returns_are_counted_across_windows_and_overlaps_emit_nothing_twice,
            redeliver_names_one_return_exactly,
            a_held_transition_reaches_no_sink_until_its_lookup_releases_it,
            held_transitions_of_one_order_share_a_lookup_and_later_ones_wait,
            an_in_order_sink_waits_only_for_held_transitions_it_takes,
            an_in_order_sink_behind_a_held_row_is_not_due,
            release_held_lets_everything_go_without_details,
            the_cursor_never_moves_back,
            a_cursor_in_the_future_can_be_rewound,
            only_the_last_chunk_moves_the_cursor,
            chunks_are_recorded_in_order_each_commit_told,
            outbox_rows_follow_each_sinks_status_filter,
            only_the_oldest_pending_event_of_an_order_is_due,
            an_event_waiting_behind_its_order_does_not_make_the_sink_due,
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
            an_in_order_sink_reads_ahead_past_what_is_in_flight,
            retries_of_an_in_order_sink_keep_recorded_order,
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

mod alerts;
mod held;
mod in_order;
mod outbox;
mod returns;
mod upkeep;

pub use alerts::*;
pub use held::*;
pub use in_order::*;
pub use outbox::*;
pub use returns::*;
pub use upkeep::*;

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
pub(super) fn in_order(name: &str, statuses: Option<&[&str]>) -> SinkRoute {
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
