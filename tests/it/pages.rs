//! A window answered in several pages: every page is fetched before the
//! window counts as done, every order yields exactly one event, and orders
//! changing between two page requests hide no other order.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{TimeDelta, Utc};

use crate::support::sim::{Fault, paged};
use crate::support::{World, ago, event_ids, eventually, ids, output_within, text};

fn assert_each_once(got: Vec<String>, expected: &BTreeSet<String>) {
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(unique.len(), got.len(), "some order was emitted twice");
    let missing: Vec<_> = expected.difference(&unique).take(10).collect();
    let extra: Vec<_> = unique.difference(expected).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_answered_in_several_pages_yields_every_order_once() {
    // The default simulator pages like CertCentral: at most 1000 a page.
    let mut w = World::new().await;
    w.file_sink();
    w.sim.bulk_insert(1, 2500, "issued", ago(120));
    w.once();

    let queries = w.sim.queries();
    assert!(queries.len() >= 3, "{queries:#?}");
    assert_eq!(
        queries[0].offset, None,
        "the first page is asked without an offset"
    );
    // Each page starts no later than where the previous one ended, and the
    // last one reaches the end of the list.
    let mut reached = 0;
    for q in &queries {
        let offset = q.offset.unwrap_or(0);
        assert!(q.offset.is_some() || reached == 0, "{q:?}");
        assert!(
            offset <= reached,
            "a gap before offset {offset}: {queries:#?}"
        );
        assert!(
            offset + q.orders_returned as u64 > reached,
            "no progress: {q:?}"
        );
        reached = offset + q.orders_returned as u64;
    }
    assert_eq!(reached, 2500);

    let expected = event_ids(1..=2500, "issued");
    assert_each_once(ids(&w.file_events()), &expected);
    assert_each_once(ids(&w.stored_events()), &expected);

    // Re-polling the same pages emits nothing new.
    w.once();
    assert_eq!(w.file_events().len(), 2500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_window_answered_in_pages_repeats_its_range_on_every_page() {
    let mut w = World::with_sim(paged(1000)).await;
    w.file_sink();
    w.set("poll.initial_lookback", "14d");
    w.sim.bulk_insert(1, 2500, "pending", ago(10 * 86_400));
    w.sim.bulk_insert(5001, 1200, "issued", ago(60));
    w.once();

    let queries = w.sim.queries();
    let absolute_pages: Vec<_> = queries
        .iter()
        .filter(|q| q.range.is_some() && q.orders_returned > 0)
        .collect();
    assert!(absolute_pages.len() >= 3, "{queries:#?}");
    assert!(
        absolute_pages
            .iter()
            .all(|q| q.range == absolute_pages[0].range),
        "the pages of one window asked for different ranges"
    );
    assert!(
        queries
            .iter()
            .any(|q| q.range.is_none() && q.offset.is_some()),
        "the relative window was not paged"
    );
    let mut expected = event_ids(1..=2500, "pending");
    expected.extend(event_ids(5001..=6200, "issued"));
    assert_each_once(ids(&w.file_events()), &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_with_a_failing_page_records_nothing_until_every_page_arrives() {
    let mut w = World::with_sim(paged(10)).await;
    w.file_sink();
    w.sim.bulk_insert(1, 25, "issued", ago(120));
    // Page 1 arrives (slowly, but whole); page 2 fails on every attempt.
    w.sim.push_fault(Fault::SlowBody(Duration::from_millis(1)));
    for _ in 0..4 {
        w.sim.push_fault(Fault::status(503, "service_unavailable"));
    }
    let out = w.run(&["run", "--once"]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("service_unavailable"), "{log}");
    assert!(
        w.stored_events().is_empty(),
        "a partial window was recorded"
    );
    assert!(w.file_events().is_empty());
    assert_eq!(w.cursor(), None, "the cursor moved after a failed window");

    w.once();
    assert_each_once(ids(&w.file_events()), &event_ids(1..=25, "issued"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_changing_between_two_pages_hides_no_other_order() {
    let mut w = World::with_sim(paged(10)).await;
    w.file_sink();
    w.set("poll.initial_lookback", "14d")
        .set("digicert.timeout", "30s");
    // 25 orders ten days back, listed oldest first: they fill three pages of
    // the first catch-up window, which no later window overlaps.
    let base = Utc::now() - TimeDelta::days(10);
    for id in 1..=25 {
        w.sim
            .set_status(id, id + 100, "pending", base + TimeDelta::seconds(id));
    }
    // Page 1 takes a few seconds to arrive; meanwhile order 3 changes, which
    // takes it out of that window and moves every later order up one place.
    w.sim.push_fault(Fault::SlowBody(Duration::from_millis(4)));
    let cmd = w.command(&["run", "--once"]);
    let run = tokio::task::spawn_blocking(move || output_within(cmd, Duration::from_secs(60)));
    let sim = w.sim.clone();
    assert!(eventually(Duration::from_secs(30), || !sim.queries().is_empty()).await);
    let changed_at = Utc::now();
    w.sim.set_status(3, 103, "issued", changed_at);
    let out = run.await.expect("run --once finishes");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let queries = w.sim.queries();
    assert!(
        queries[1].offset.is_some() && queries[1].at >= changed_at,
        "page 2 was asked before order 3 changed; the test raced: {queries:#?}"
    );

    let mut expected = event_ids(1..=25, "pending");
    expected.insert("3:issued".to_string());
    assert_each_once(ids(&w.stored_events()), &expected);
}
