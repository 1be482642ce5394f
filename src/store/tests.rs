use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::config::{DeliveryPolicy, SinkConfig, SinkKind};

/// A webhook sink: one outbox row per event.
fn sink(name: &str, statuses: Option<&[&str]>) -> SinkConfig {
    with_kind(name, statuses, webhook())
}

/// A file sink: a cursor, rows only when something needs remembering.
fn in_order(name: &str, statuses: Option<&[&str]>) -> SinkConfig {
    with_kind(
        name,
        statuses,
        SinkKind::File {
            path: "/dev/null".into(),
        },
    )
}

fn webhook() -> SinkKind {
    SinkKind::Webhook {
        url: crate::config::RedactedUrl::new(
            reqwest::Url::parse("http://127.0.0.1:9/hook").unwrap(),
        ),
        secret: crate::config::SecretSource::Env("UNUSED".into()),
        timeout: Duration::from_secs(1),
        concurrency: 8,
    }
}

fn with_kind(name: &str, statuses: Option<&[&str]>, kind: SinkKind) -> SinkConfig {
    SinkConfig {
        name: name.into(),
        statuses: statuses.map(|l| l.iter().map(|s| s.to_string()).collect()),
        kind,
        retry: DeliveryPolicy {
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
            give_up_after: Duration::from_secs(100),
        },
    }
}

fn change(order_id: i64, status: &str) -> OrderChange {
    OrderChange {
        order_id,
        certificate_id: Some(order_id + 1000),
        status: Arc::from(status),
    }
}

fn at(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

fn open() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("ow.db")).unwrap();
    (dir, db)
}

#[test]
fn a_new_store_is_migrated_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, db) = open();
    assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(db.cursor().unwrap(), None);
    let mode = std::fs::metadata(dir.path().join("ow.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}

#[test]
fn repeated_sightings_are_not_transitions_and_previous_status_is_kept() {
    let (_d, mut db) = open();
    let sinks = [sink("a", None)];
    let s1 = db
        .record_window(
            &[change(1, "pending"), change(2, "issued")],
            at(0),
            at(0),
            &sinks,
        )
        .unwrap();
    assert_eq!(s1.new_transitions(), 2);
    let s2 = db
        .record_window(
            &[change(1, "pending"), change(2, "issued")],
            at(60),
            at(60),
            &sinks,
        )
        .unwrap();
    assert_eq!(s2.new_transitions(), 0);
    assert_eq!(s2.queued, 0);
    let s3 = db
        .record_window(&[change(1, "issued")], at(120), at(120), &sinks)
        .unwrap();
    assert_eq!(s3.sample[0].previous_status.as_deref(), Some("pending"));
    assert_eq!(db.cursor().unwrap(), Some(at(120)));
}

#[test]
fn a_status_seen_before_is_not_a_transition_but_updates_the_last_status() {
    let (_d, mut db) = open();
    let sinks = [sink("a", None)];
    db.record_window(
        &[
            change(1, "pending"),
            change(1, "needs_approval"),
            change(1, "pending"),
        ],
        at(0),
        at(0),
        &sinks,
    )
    .unwrap();
    let s = db
        .record_window(&[change(1, "issued")], at(1), at(1), &sinks)
        .unwrap();
    assert_eq!(s.sample[0].previous_status.as_deref(), Some("pending"));
}

#[test]
fn the_cursor_never_moves_back() {
    let (_d, mut db) = open();
    db.record_window(&[], at(100), at(100), &[]).unwrap();
    db.record_window(&[], at(50), at(100), &[]).unwrap();
    assert_eq!(db.cursor().unwrap(), Some(at(100)));
}

#[test]
fn outbox_rows_follow_each_sinks_status_filter() {
    let (_d, mut db) = open();
    let sinks = [sink("all", None), sink("issued", Some(&["issued"]))];
    let s = db
        .record_window(
            &[change(1, "pending"), change(2, "issued")],
            at(0),
            at(0),
            &sinks,
        )
        .unwrap();
    assert_eq!(s.queued, 3);
    assert_eq!(db.due("all", i64::MAX, 10).unwrap().len(), 2);
    let only = db.due("issued", i64::MAX, 10).unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].transition.status, "issued");
}

#[test]
fn only_the_oldest_pending_event_of_an_order_is_due() {
    let (_d, mut db) = open();
    let sinks = [sink("a", None)];
    db.record_window(&[change(1, "pending")], at(0), at(0), &sinks)
        .unwrap();
    db.record_window(
        &[change(1, "issued"), change(2, "pending")],
        at(1),
        at(1),
        &sinks,
    )
    .unwrap();
    let due = db.due("a", i64::MAX, 10).unwrap();
    let ids: Vec<_> = due
        .iter()
        .map(|e| (e.order_id(), e.transition.status.clone()))
        .collect();
    assert_eq!(
        ids,
        vec![(1, "pending".to_string()), (2, "pending".to_string())]
    );
    db.mark("a", &[(due[0].seq(), Mark::Delivered)], 5).unwrap();
    let due = db.due("a", i64::MAX, 10).unwrap();
    assert!(
        due.iter()
            .any(|e| e.order_id() == 1 && e.transition.status == "issued")
    );
}

#[test]
fn retries_wait_for_their_time_and_dead_rows_can_be_redelivered() {
    let (_d, mut db) = open();
    let sinks = [sink("a", None)];
    db.record_window(&[change(1, "issued")], at(0), at(0), &sinks)
        .unwrap();
    let seq = db.due("a", i64::MAX, 10).unwrap()[0].seq();
    db.mark(
        "a",
        &[(
            seq,
            Mark::Retry {
                next_attempt_at: 10_000,
                error: "HTTP 503".into(),
            },
        )],
        0,
    )
    .unwrap();
    assert!(db.due("a", 9_999, 10).unwrap().is_empty());
    assert_eq!(db.next_due("a").unwrap(), Some(10_000));
    assert_eq!(db.due("a", 10_000, 10).unwrap()[0].attempts, 1);
    db.mark(
        "a",
        &[(
            seq,
            Mark::Dead {
                error: "HTTP 400".into(),
            },
        )],
        1,
    )
    .unwrap();
    assert_eq!(db.next_due("a").unwrap(), None);
    let rows = db
        .deliveries(&DeliveryFilter {
            sink: None,
            state: Some(DeliveryState::Dead),
            limit: 10,
            routes: Vec::new(),
        })
        .unwrap();
    assert_eq!(rows[0].last_error.as_deref(), Some("HTTP 400"));
    assert_eq!(rows[0].attempts, 2);
    assert_eq!(db.redeliver(&sinks[0], &Redeliver::Dead, 50).unwrap(), 1);
    let again = db.due("a", 50, 10).unwrap();
    assert_eq!(again[0].attempts, 0);
}

#[test]
fn a_paused_sink_is_resumed_by_redeliver() {
    let (_d, mut db) = open();
    let s = sink("a", None);
    db.pause("a", "HTTP 410", 0).unwrap();
    assert_eq!(db.paused("a").unwrap().as_deref(), Some("HTTP 410"));
    db.redeliver(&s, &Redeliver::Since(0), 1).unwrap();
    assert_eq!(db.paused("a").unwrap(), None);
}

#[test]
fn redeliver_since_respects_the_filter_and_event_ids_are_exact() {
    let (_d, mut db) = open();
    let all = sink("all", None);
    let issued = sink("issued", Some(&["issued"]));
    db.record_window(
        &[change(1, "pending"), change(2, "issued")],
        at(0),
        at(0),
        std::slice::from_ref(&all),
    )
    .unwrap();
    assert_eq!(db.redeliver(&issued, &Redeliver::Since(0), 1).unwrap(), 1);
    let one = Redeliver::Event {
        order_id: 1,
        status: "pending".into(),
    };
    assert_eq!(db.redeliver(&all, &one, 1).unwrap(), 1);
    let none = Redeliver::Event {
        order_id: 1,
        status: "issued".into(),
    };
    assert_eq!(db.redeliver(&all, &none, 1).unwrap(), 0);
}

#[test]
fn expire_gives_up_old_pending_rows_only() {
    let (_d, mut db) = open();
    let sinks = [sink("a", None)];
    db.record_window(&[change(1, "issued")], at(0), at(0), &sinks)
        .unwrap();
    let created = at(0).timestamp_millis();
    assert_eq!(db.expire("a", created, "gave up", created + 1).unwrap(), 0);
    assert_eq!(
        db.expire("a", created + 1, "gave up", created + 1).unwrap(),
        1
    );
    assert_eq!(
        db.sink_stats(&[SinkRoute::from(&sink("a", None))]).unwrap()[0].dead,
        1
    );
}

#[test]
fn events_filter_by_order_status_and_time() {
    let (_d, mut db) = open();
    db.record_window(
        &[change(1, "pending"), change(2, "issued")],
        at(0),
        at(0),
        &[],
    )
    .unwrap();
    db.record_window(&[change(1, "issued")], at(100), at(100), &[])
        .unwrap();
    let f = |order_id, status: Option<&str>, since| EventFilter {
        order_id,
        status: status.map(str::to_string),
        since,
        limit: 10,
    };
    assert_eq!(db.events(&f(Some(1), None, None)).unwrap().len(), 2);
    assert_eq!(db.events(&f(None, Some("issued"), None)).unwrap().len(), 2);
    assert_eq!(
        db.events(&f(None, None, Some(at(50).timestamp_millis())))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_newer_schema_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    drop(Db::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Db::open(&path).unwrap_err().to_string();
    assert!(
        err.contains("schema version 99") && err.contains("upgrade orderwatch"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();
    let err = Db::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn a_directory_or_a_path_under_a_file_is_refused_with_the_reason_once() {
    let dir = tempfile::tempdir().unwrap();
    let err = Db::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("is a directory"), "{err}");
    let file = dir.path().join("plain");
    std::fs::write(&file, "x").unwrap();
    let err = Db::open(&file.join("ow.db")).unwrap_err();
    let shown = format!("{:#}", anyhow::Error::new(err));
    assert!(shown.contains("plain/ow.db"), "{shown}");
    assert_eq!(shown.matches("Not a directory").count(), 1, "{shown}");
}

#[test]
fn a_second_daemon_lock_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    let first = lock_for_daemon(&path).unwrap();
    let err = lock_for_daemon(&path).unwrap_err().to_string();
    assert!(err.contains("another orderwatch daemon"), "{err}");
    drop(first);
    assert!(lock_for_daemon(&path).is_ok());
}

#[test]
fn seen_at_is_recorded_per_window() {
    let (_d, mut db) = open();
    db.record_window(
        &[change(1, "pending")],
        at(0),
        at(0) + TimeDelta::seconds(3),
        &[],
    )
    .unwrap();
    let t = &db
        .events(&EventFilter {
            limit: 1,
            ..EventFilter::default()
        })
        .unwrap()[0];
    assert_eq!(t.seen_at, at(3).timestamp_millis());
}

fn route(c: &SinkConfig) -> SinkRoute {
    SinkRoute::from(c)
}

#[test]
fn an_in_order_sink_keeps_a_cursor_not_rows() {
    let (_d, mut db) = open();
    let f = in_order("file", None);
    let s = db
        .record_window(
            &[change(1, "pending"), change(2, "issued")],
            at(0),
            at(0),
            std::slice::from_ref(&f),
        )
        .unwrap();
    assert_eq!(s.queued, 2);
    assert!(
        db.due("file", i64::MAX, 10).unwrap().is_empty(),
        "no outbox rows"
    );
    let due = db.due_for(&route(&f), 0, 10).unwrap();
    assert_eq!(
        due.iter().map(|e| e.order_id()).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(db.next_due_for(&route(&f)).unwrap(), Some(0));
    assert_eq!(db.sink_stats(&[route(&f)]).unwrap()[0].pending, 2);
    let marks: Vec<_> = due.iter().map(|e| (e.seq(), Mark::Delivered)).collect();
    db.mark("file", &marks, 5).unwrap();
    assert!(db.due_for(&route(&f), 0, 10).unwrap().is_empty());
    assert_eq!(db.next_due_for(&route(&f)).unwrap(), None);
    assert_eq!(db.sink_stats(&[route(&f)]).unwrap()[0].pending, 0);
    assert_eq!(db.delivered_through("file").unwrap(), Some(due[1].seq()));
}

#[test]
fn a_failed_in_order_delivery_gets_a_row_and_later_events_wait_behind_it() {
    let (_d, mut db) = open();
    let f = in_order("file", None);
    db.record_window(
        &[change(1, "pending"), change(2, "issued")],
        at(0),
        at(0),
        std::slice::from_ref(&f),
    )
    .unwrap();
    let due = db.due_for(&route(&f), 0, 1).unwrap();
    assert_eq!(due.len(), 1);
    let retry = Mark::Retry {
        next_attempt_at: 10_000,
        error: "No such file or directory".into(),
    };
    db.mark("file", &[(due[0].seq(), retry)], 1).unwrap();
    // Order 2 is after the cursor but waits behind the failed order 1.
    assert!(db.due_for(&route(&f), 5_000, 10).unwrap().is_empty());
    assert_eq!(db.next_due_for(&route(&f)).unwrap(), Some(10_000));
    assert_eq!(db.sink_stats(&[route(&f)]).unwrap()[0].pending, 2);
    let again = db.due_for(&route(&f), 10_000, 10).unwrap();
    assert_eq!(
        (again.len(), again[0].order_id(), again[0].attempts),
        (1, 1, 1)
    );
    db.mark("file", &[(again[0].seq(), Mark::Delivered)], 10_001)
        .unwrap();
    let rest = db.due_for(&route(&f), 10_001, 10).unwrap();
    assert_eq!(
        rest.iter().map(|e| e.order_id()).collect::<Vec<_>>(),
        vec![2]
    );
}

#[test]
fn a_dead_in_order_delivery_is_in_the_ledger_and_the_cursor_moves_on() {
    let (_d, mut db) = open();
    let f = in_order("file", None);
    db.record_window(
        &[change(1, "pending"), change(2, "issued")],
        at(0),
        at(0),
        std::slice::from_ref(&f),
    )
    .unwrap();
    let due = db.due_for(&route(&f), 0, 10).unwrap();
    db.mark(
        "file",
        &[
            (
                due[0].seq(),
                Mark::Dead {
                    error: "gave up".into(),
                },
            ),
            (due[1].seq(), Mark::Delivered),
        ],
        1,
    )
    .unwrap();
    let filter = DeliveryFilter {
        sink: None,
        state: None,
        limit: 10,
        routes: vec![route(&f)],
    };
    let ledger = db.deliveries(&filter).unwrap();
    let states: Vec<_> = ledger.iter().map(|r| (r.order_id, r.state)).collect();
    assert_eq!(
        states,
        vec![(2, DeliveryState::Delivered), (1, DeliveryState::Dead)]
    );
    assert_eq!(db.redeliver(&f, &Redeliver::Dead, 2).unwrap(), 1);
    assert_eq!(db.due_for(&route(&f), 2, 10).unwrap()[0].order_id(), 1);
}

#[test]
fn the_ledger_lists_in_order_events_waiting_after_the_cursor() {
    let (_d, mut db) = open();
    let f = in_order("file", Some(&["issued"]));
    db.record_window(
        &[
            change(1, "pending"),
            change(2, "issued"),
            change(3, "issued"),
        ],
        at(0),
        at(0),
        std::slice::from_ref(&f),
    )
    .unwrap();
    let first = db.due_for(&route(&f), 0, 1).unwrap();
    assert_eq!(first[0].order_id(), 2, "the filter applies");
    db.mark("file", &[(first[0].seq(), Mark::Delivered)], 1)
        .unwrap();
    let pending = DeliveryFilter {
        sink: Some("file".into()),
        state: Some(DeliveryState::Pending),
        limit: 10,
        routes: vec![route(&f)],
    };
    let rows = db.deliveries(&pending).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.event_id()).collect::<Vec<_>>(),
        vec!["3:issued"]
    );
    let all = DeliveryFilter {
        sink: None,
        state: None,
        limit: 10,
        routes: vec![route(&f)],
    };
    assert_eq!(db.deliveries(&all).unwrap().len(), 2);
}

#[test]
fn a_new_in_order_sink_starts_after_the_newest_transition() {
    let (_d, mut db) = open();
    db.record_window(&[change(1, "pending")], at(0), at(0), &[])
        .unwrap();
    let f = in_order("late", None);
    db.record_window(
        &[change(2, "issued")],
        at(1),
        at(1),
        std::slice::from_ref(&f),
    )
    .unwrap();
    let due = db.due_for(&route(&f), 0, 10).unwrap();
    assert_eq!(
        due.iter().map(|e| e.order_id()).collect::<Vec<_>>(),
        vec![2]
    );
}

#[test]
fn an_in_order_sink_turned_webhook_keeps_what_was_pending() {
    let (_d, mut db) = open();
    let f = in_order("x", None);
    db.record_window(&[change(1, "pending")], at(0), at(0), &[f])
        .unwrap();
    let w = sink("x", None);
    db.record_window(
        &[change(2, "issued")],
        at(1),
        at(1),
        std::slice::from_ref(&w),
    )
    .unwrap();
    let due = db.due_for(&route(&w), i64::MAX, 10).unwrap();
    assert_eq!(
        due.iter().map(|e| e.order_id()).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(db.delivered_through("x").unwrap(), None);
}

#[test]
fn redeliver_since_does_not_double_events_still_after_the_cursor() {
    let (_d, mut db) = open();
    let f = in_order("file", None);
    db.record_window(
        &[change(1, "pending"), change(2, "issued")],
        at(0),
        at(0),
        std::slice::from_ref(&f),
    )
    .unwrap();
    let first = db.due_for(&route(&f), 0, 1).unwrap();
    db.mark("file", &[(first[0].seq(), Mark::Delivered)], 1)
        .unwrap();
    assert_eq!(db.redeliver(&f, &Redeliver::Since(0), 2).unwrap(), 2);
    let due = db.due_for(&route(&f), 2, 10).unwrap();
    assert_eq!(
        due.iter().map(|e| e.order_id()).collect::<Vec<_>>(),
        vec![1]
    );
    db.mark("file", &[(due[0].seq(), Mark::Delivered)], 3)
        .unwrap();
    let rest = db.due_for(&route(&f), 3, 10).unwrap();
    assert_eq!(
        rest.iter().map(|e| e.order_id()).collect::<Vec<_>>(),
        vec![2]
    );
}

#[test]
fn only_the_last_chunk_moves_the_cursor() {
    let (_d, mut db) = open();
    db.record_chunk(&[change(1, "pending")], None, at(0), &[])
        .unwrap();
    assert_eq!(db.cursor().unwrap(), None);
    db.record_chunk(&[change(2, "pending")], Some(at(5)), at(0), &[])
        .unwrap();
    assert_eq!(db.cursor().unwrap(), Some(at(5)));
    assert_eq!(db.transition_count().unwrap(), 2);
}

#[test]
fn large_sorted_chunks_dedupe_like_small_ones() {
    // Above SCAN_THRESHOLD the lookup is a range scan; the outcome must be
    // the same as order-by-order lookups.
    let (_d1, mut big) = open();
    let (_d2, mut small) = open();
    let first: Vec<OrderChange> = (1..=5000).map(|i| change(i, "pending")).collect();
    let mut second: Vec<OrderChange> = (1..=6000)
        .map(|i| change(i, if i % 3 == 0 { "issued" } else { "pending" }))
        .collect();
    // The same order twice in one answer, and an A → B → A return.
    second.insert(10, change(10, "needs_approval"));
    second.insert(12, change(11, "needs_approval"));
    second.insert(13, change(11, "pending"));
    second.sort_by_key(|c| c.order_id);
    let a = big.record_window(&first, at(0), at(0), &[]).unwrap();
    let b = big.record_window(&second, at(1), at(1), &[]).unwrap();
    let mut small_new = 0;
    for c in first.iter() {
        small_new += small
            .record_window(std::slice::from_ref(c), at(0), at(0), &[])
            .unwrap()
            .new_transitions();
    }
    assert_eq!(a.new_transitions(), small_new);
    let mut small_second = 0;
    for c in second.iter() {
        small_second += small
            .record_window(std::slice::from_ref(c), at(1), at(1), &[])
            .unwrap()
            .new_transitions();
    }
    assert_eq!(b.new_transitions(), small_second);
    let all = EventFilter {
        limit: 100_000,
        ..EventFilter::default()
    };
    let key = |db: &Db| {
        let mut v: Vec<_> = db
            .events(&all)
            .unwrap()
            .into_iter()
            .map(|t| (t.order_id, t.status, t.previous_status))
            .collect();
        v.sort();
        v
    };
    assert_eq!(key(&big), key(&small));
}

#[test]
fn a_sink_turned_webhook_gets_rows_only_for_statuses_it_takes() {
    let (_d, mut db) = open();
    let f = in_order("x", Some(&["issued"]));
    db.record_window(
        &[change(1, "pending"), change(2, "issued")],
        at(0),
        at(0),
        &[f],
    )
    .unwrap();
    let w = sink("x", Some(&["issued"]));
    db.record_window(&[], at(1), at(1), std::slice::from_ref(&w))
        .unwrap();
    let due = db.due_for(&route(&w), i64::MAX, 10).unwrap();
    assert_eq!(
        due.iter().map(|e| e.order_id()).collect::<Vec<_>>(),
        vec![2]
    );
}
