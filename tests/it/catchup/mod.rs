//! Catch-up: a gap longer than 7 days (first start with a long
//! `initial_lookback`) is asked for oldest first in overlapping absolute
//! windows of at most 7 days, written in Mountain time, then one relative
//! window up to now — and every change in the gap is found exactly once,
//! including those right around a daylight-saving change, and in winter
//! whether CertCentral reads "MDT" as America/Denver or as UTC−6.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::America::Denver;
use serde_json::Value;

use crate::support::client::{Api, catch_up_windows};
use crate::support::sim::{Fault, RecordedQuery};
use crate::support::{World, ago, eventually, ids, output_within, text};

mod winter;

const SEVEN_DAYS: i64 = 7 * 86_400;

/// The instants in `(from, to)` at which Mountain time changes its UTC
/// offset (spring forward, fall back), found by scanning hour by hour and
/// then narrowing down to the second.
fn dst_changes(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let offset = |t: DateTime<Utc>| Denver.offset_from_utc_datetime(&t.naive_utc()).fix();
    let mut out = Vec::new();
    let mut t = from;
    while t < to {
        let next = t + TimeDelta::hours(1);
        if offset(t) != offset(next) {
            let (mut lo, mut hi) = (t, next);
            while hi - lo > TimeDelta::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                if offset(mid) == offset(lo) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            // `hi` is the first whole second with the new offset.
            out.push(hi);
        }
        t = next;
    }
    out
}

/// What a recorded request spans, in seconds, and whether it was relative.
fn span_secs(q: &RecordedQuery) -> (i64, bool) {
    match (q.range, q.minutes, q.seconds) {
        (Some((start, end)), None, None) => ((end - start).num_seconds(), false),
        (None, m, s) if m.is_some() || s.is_some() => {
            let minutes = m.unwrap_or(0);
            assert!(minutes <= 10_080, "minutes above 10080: {q:?}");
            (minutes * 60 + s.unwrap_or(0), true)
        }
        _ => panic!("a request with neither a relative nor an absolute frame: {q:?}"),
    }
}

/// Asserts the shape of one catch-up run's requests: absolute windows of at
/// most 7 days, oldest first, each overlapping the previous one, then one
/// relative window (also at most 7 days) reaching back into the last
/// absolute one. Returns the absolute ranges.
///
/// Pages (requests with an `offset`) belong to the window before them: an
/// absolute window's pages repeat its range exactly.
fn assert_catch_up_shape(all: &[RecordedQuery]) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    for q in all {
        assert_eq!(q.status, 200, "a request was refused: {q:?}");
        let (span, _) = span_secs(q);
        assert!(
            (0..=SEVEN_DAYS).contains(&span),
            "a request spans {span} s, more than 7 days: {q:?}"
        );
    }
    for pair in all.windows(2) {
        if pair[1].offset.is_some() && pair[1].range.is_some() {
            assert_eq!(
                pair[0].range, pair[1].range,
                "a page left its window's range"
            );
        }
    }
    let queries: Vec<RecordedQuery> = all.iter().filter(|q| q.offset.is_none()).cloned().collect();
    assert!(queries.len() >= 2, "too few windows: {all:#?}");
    let (last, absolute) = queries.split_last().expect("requests");
    let (last_span, relative) = span_secs(last);
    assert!(relative, "the final window is not relative: {last:?}");
    let ranges: Vec<_> = absolute
        .iter()
        .map(|q| q.range.unwrap_or_else(|| panic!("not absolute: {q:?}")))
        .collect();
    for pair in ranges.windows(2) {
        let ((s0, e0), (s1, e1)) = (pair[0], pair[1]);
        assert!(s1 > s0 && e1 > e0, "windows not oldest first: {pair:?}");
        assert!(s1 <= e0, "consecutive windows leave a gap: {pair:?}");
    }
    let (_, last_end) = *ranges.last().expect("absolute windows");
    let relative_from = last.at - TimeDelta::seconds(last_span);
    assert!(
        relative_from <= last_end,
        "the relative window ({relative_from}..{}) leaves a gap after the last absolute one (..{last_end})",
        last.at
    );
    ranges
}

/// Stored events by id; fails the test if an id appears twice.
fn unique_events(events: &[Value]) -> BTreeMap<String, Value> {
    let mut by_id = BTreeMap::new();
    for e in events {
        let id = e["id"].as_str().expect("event id").to_string();
        assert!(
            by_id.insert(id.clone(), e.clone()).is_none(),
            "{id} recorded twice"
        );
    }
    by_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_250_day_catch_up_crosses_dst_in_seven_day_windows_and_finds_every_change_once() {
    let mut w = World::new().await;
    w.file_sink();
    w.set("poll.initial_lookback", "250d");

    let now = Utc::now();
    // Whatever today is, the last 249 days hold at least one US DST change
    // (they are at most ~240 days apart).
    let changes = dst_changes(now - TimeDelta::days(249), now - TimeDelta::hours(2));
    assert!(!changes.is_empty(), "no DST change found before {now}");

    let mut expected = BTreeSet::new();
    let mut place = |order: i64, status: &str, at: DateTime<Utc>| {
        w.sim.set_status(order, order + 500_000, status, at);
        expected.insert(format!("{order}:{status}"));
    };
    place(1, "issued", now - TimeDelta::days(10));
    // The oldest and the newest corners of the gap.
    place(
        2,
        "issued",
        now - TimeDelta::days(250) + TimeDelta::minutes(10),
    );
    place(3, "pending", now - TimeDelta::minutes(1));
    let mut order = 100;
    for dst in &changes {
        // Both edges of the skipped or repeated local hour and the instant itself.
        for offset in [-3601, -3600, -1800, -1, 0, 1, 1800, 3599, 3600, 3601] {
            place(order, "pending", *dst + TimeDelta::seconds(offset));
            order += 1;
        }
    }
    // A change every 30 hours across the whole gap, so every window has some.
    for i in 0..195 {
        place(
            1000 + i,
            "issued",
            now - TimeDelta::days(244) + TimeDelta::hours(30 * i),
        );
    }
    // Changes again while the catch-up is under way (below): seen early as
    // pending, found again by the final relative window as issued.
    let early = now - TimeDelta::days(200);
    place(7, "pending", early);
    expected.insert("7:issued".to_string());

    let cmd = w.command(&["run", "--once"]);
    let run = tokio::task::spawn_blocking(move || output_within(cmd, Duration::from_secs(120)));
    let sim = w.sim.clone();
    let seen_early = eventually(Duration::from_secs(60), || {
        sim.queries()
            .iter()
            .any(|q| q.range.is_some_and(|(s, e)| s <= early && early <= e))
    })
    .await;
    assert!(seen_early, "no window covered {early}");
    w.sim.set_status(7, 500_007, "issued", Utc::now());
    let out = run.await.expect("run --once finishes");
    let log = text(&out.stderr);
    assert!(out.status.success(), "run --once failed:\n{log}");

    let queries = w.sim.queries();
    let ranges = assert_catch_up_shape(&queries);
    assert!(
        ranges[0].0 <= now - TimeDelta::days(250) + TimeDelta::minutes(5),
        "the catch-up starts too late: {:?}",
        ranges[0]
    );
    let total = queries.len();
    assert!(total >= 36, "250 days in only {total} windows");
    assert!(
        log.contains(&format!("catch-up 2 of {total} windows")),
        "no progress in the log:\n{log}"
    );
    // Every DST change falls inside some absolute window, not only near one.
    for dst in &changes {
        assert!(
            ranges.iter().any(|(s, e)| s < dst && dst < e),
            "no window spans the DST change at {dst}"
        );
    }

    let stored = unique_events(&w.stored_events());
    let found: BTreeSet<String> = stored.keys().cloned().collect();
    assert_eq!(found, expected);
    assert_eq!(stored["7:pending"]["data"]["previous_status"], Value::Null);
    assert_eq!(stored["7:issued"]["data"]["previous_status"], "pending");
    assert_eq!(stored["7:issued"]["data"]["status"], "issued");
    let delivered = ids(&w.file_events());
    assert_eq!(delivered.len(), expected.len(), "file sink got duplicates");
    assert_eq!(delivered.into_iter().collect::<BTreeSet<_>>(), expected);
    let pending_at = delivered_position(&w.file_events(), "7:pending");
    let issued_at = delivered_position(&w.file_events(), "7:issued");
    assert!(pending_at < issued_at, "order 7's events out of order");
}

fn delivered_position(events: &[Value], id: &str) -> usize {
    ids(events)
        .iter()
        .position(|e| e == id)
        .unwrap_or_else(|| panic!("{id} not delivered"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_14_day_catch_up_uses_several_windows_none_over_7_days_and_finds_a_change_10_days_back() {
    let mut w = World::new().await;
    w.file_sink();
    w.set("poll.initial_lookback", "14d");
    w.sim.set_status(1, 11, "issued", ago(10 * 86_400));
    w.sim.set_status(2, 12, "pending", ago(13 * 86_400));
    w.sim.set_status(3, 13, "pending", ago(60));
    // Changed in the first window's range and again in the second's: the
    // first window no longer lists it, the second finds its final status.
    w.sim.set_status(4, 14, "pending", ago(12 * 86_400));
    w.sim.set_status(4, 14, "rejected", ago(3 * 86_400));

    let out = w.once();
    let log = text(&out.stderr);
    let queries = w.sim.queries();
    let ranges = assert_catch_up_shape(&queries);
    assert!(ranges.len() >= 2, "14 days in {} windows", ranges.len());
    let total = queries.len();
    assert!(
        log.contains(&format!("catch-up 2 of {total} windows")),
        "no progress in the log:\n{log}"
    );

    let stored = unique_events(&w.stored_events());
    let found: Vec<&str> = stored.keys().map(String::as_str).collect();
    assert_eq!(
        found,
        vec!["1:issued", "2:pending", "3:pending", "4:rejected"]
    );
    assert_eq!(stored["4:rejected"]["data"]["previous_status"], Value::Null);
    assert_eq!(ids(&w.file_events()).len(), 4);

    // The next cycle is one relative window from the cursor, not a new catch-up.
    w.sim.set_status(4, 14, "issued", ago(1));
    let out = w.once();
    let later = &w.sim.queries()[total..];
    assert_eq!(later.len(), 1, "{later:#?}");
    assert!(span_secs(&later[0]).1, "not relative: {:?}", later[0]);
    assert!(
        !text(&out.stderr).contains("catch-up"),
        "a second catch-up after a committed one"
    );
    let events = w.file_events();
    let last = events.last().expect("events");
    assert_eq!(last["id"], "4:issued");
    assert_eq!(last["data"]["previous_status"], "rejected");
    assert_eq!(events.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_failing_half_way_keeps_its_finished_windows_and_resumes_after_them() {
    let mut w = World::new().await;
    w.file_sink();
    w.set("poll.initial_lookback", "14d");
    w.sim.set_status(1, 11, "issued", ago(10 * 86_400));
    w.sim.set_status(2, 12, "pending", ago(3 * 86_400));
    w.sim.set_status(3, 13, "pending", ago(60));
    // The first window arrives (slowly but whole); the second is refused.
    w.sim.push_fault(Fault::SlowBody(Duration::from_millis(1)));
    w.sim.push_fault(Fault::status(400, "time_frame_too_long"));
    let out = w.run(&["run", "--once"]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("code=time_frame_too_long"), "{log}");
    let first = w.sim.queries();
    assert_eq!(first.len(), 2, "{first:#?}");
    let (w1_start, w1_end) = first[0].range.expect("an absolute first window");
    assert_eq!(w.recorded_ids(), vec!["1:issued"]);
    let cursor = w.cursor().expect("the first window moved the cursor");
    // The simulator reads ranges as America/Denver; a winter window is
    // written to reach its end under the literal "MDT" (UTC-6) reading too,
    // so as read here it may end up to an hour after the cursor.
    let past_cursor = (w1_end - cursor).num_seconds();
    assert!(
        (-1..=3601).contains(&past_cursor),
        "cursor {cursor} is not the first window's end {w1_end}"
    );

    w.once();
    let second = &w.sim.queries()[first.len()..];
    let (start, _) = second[0].range.expect("still catching up");
    assert!(
        start > w1_start && start <= w1_end - TimeDelta::minutes(9),
        "resumed at {start}, not an overlap behind the first window's end {w1_end}"
    );
    assert_catch_up_shape(second);
    let stored = unique_events(&w.stored_events());
    let found: Vec<&str> = stored.keys().map(String::as_str).collect();
    assert_eq!(found, vec!["1:issued", "2:pending", "3:pending"]);
    assert_eq!(ids(&w.file_events()).len(), 3);
}

/// Every catch-up window the planner writes around the 2026 DST changes
/// (spring forward 2026-03-08 09:00Z, fall back 2026-11-01 08:00Z), with
/// window edges placed before, inside and after the skipped or repeated
/// hour, is accepted by the simulator's strict Mountain-time reading and
/// returns every change in its range — whatever date the tests run on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_windows_with_edges_around_dst_changes_miss_nothing() {
    let w = World::new().await;
    let api = Api::new(&w);
    let utc = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    };
    let lookback = Duration::from_secs(10 * 86_400);
    let days = TimeDelta::days;

    // Plans whose first window starts, or ends, at each probe instant.
    let mut plans = Vec::new();
    for dst in [utc("2026-03-08T09:00:00Z"), utc("2026-11-01T08:00:00Z")] {
        for minutes in [-90, -61, -60, -30, -1, 0, 1, 30, 59, 60, 61, 90] {
            let probe = dst + TimeDelta::minutes(minutes);
            for now in [probe + days(10), probe + days(3)] {
                plans.push(catch_up_windows(&w, now, lookback));
            }
        }
    }
    // A change one second inside each edge of every window.
    let mut changes = BTreeMap::new();
    for (start, end) in plans.iter().flatten() {
        for at in [*start + TimeDelta::seconds(1), *end - TimeDelta::seconds(1)] {
            let order = 10_000 + changes.len() as i64;
            w.sim.set_status(order, order, "issued", at);
            changes.insert(order, at);
        }
    }

    for windows in &plans {
        let mut seen = BTreeSet::new();
        for (start, end) in windows {
            seen.extend(api.absolute_window(*start, *end).await);
        }
        let (first, last) = (windows[0].0, windows[windows.len() - 1].1);
        for (order, at) in &changes {
            if first <= *at && *at <= last {
                assert!(
                    seen.contains(order),
                    "the change at {at} was missed by windows {windows:?}"
                );
            }
        }
    }
    let queries = w.sim.queries();
    assert!(queries.len() >= plans.len(), "{} requests", queries.len());
    for q in queries {
        let (start, end) = q.range.expect("absolute");
        assert!((end - start).num_seconds() <= SEVEN_DAYS, "{q:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_a_fast_clock_left_in_the_future_misses_no_change_of_the_outage() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(1, 11, "pending", ago(50 * 60));
    w.once();
    // The daemon ran with a clock an hour fast, then NTP set it right; it
    // was stopped for the last 40 minutes, while order 2 changed.
    crate::support::store::set_cursor(&w.store(), Utc::now() + TimeDelta::hours(1));
    w.sim.set_status(2, 12, "issued", ago(30 * 60));
    let out = w.once();
    let log = text(&out.stderr);
    assert!(log.contains("the cursor is in the future"), "{log}");
    assert_eq!(ids(&w.file_events()), ["1:pending", "2:issued"]);
    let cursor = w.cursor().expect("cursor");
    assert!(cursor <= Utc::now() + TimeDelta::seconds(5), "{cursor}");
}
