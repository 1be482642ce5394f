//! The simulator's opt-in misbehaviours, each off by default: an unstable
//! order (ties and pages shuffled per request, reproducibly by seed), a
//! clock skewed either way from the daemon's (its now, its relative windows
//! and its `Date`), and absolute ranges read as "MDT" literally (UTC−6 all
//! year). Each is checked on the simulator and against the daemon.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::support::sim::{
    RangeReading, SimulatorConfig, client, get, order_ids, start_with, status_changes_url, utc,
};
use crate::support::{KEY, World, event_ids, eventually, ids};

fn unstable(seed: u64) -> SimulatorConfig {
    SimulatorConfig {
        unstable_order: true,
        seed,
        ..SimulatorConfig::default()
    }
}

/// 30 orders, ten in each of three seconds.
fn thirty_ties(h: &crate::support::sim::SimulatorHandle, base: DateTime<Utc>) {
    for i in 0..30i64 {
        let at = base + TimeDelta::seconds(i / 10) + TimeDelta::milliseconds(i % 10);
        h.set_status(i + 1, i + 101, "pending", at);
    }
}

#[tokio::test]
async fn an_unstable_order_differs_per_request_but_is_reproducible_by_seed() {
    let base = Utc::now() - TimeDelta::seconds(30);
    let (a, b, other) = (
        start_with(unstable(5)).await,
        start_with(unstable(5)).await,
        start_with(unstable(6)).await,
    );
    for h in [&a, &b, &other] {
        thirty_ties(h, base);
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (_, body) = get(&a, "minutes=1").await;
        seen.push(order_ids(&body));
    }
    let all: BTreeSet<i64> = (1..=30).collect();
    for ids in &seen {
        assert_eq!(ids.iter().copied().collect::<BTreeSet<_>>(), all);
        assert_ne!(ids, &(1..=30).collect::<Vec<_>>(), "not shuffled: {ids:?}");
    }
    assert!(seen[0] != seen[1] && seen[1] != seen[2], "{seen:?}");
    // The same seed answers the same sequence; another seed does not.
    for expected in &seen {
        let (_, body) = get(&b, "minutes=1").await;
        assert_eq!(&order_ids(&body), expected);
    }
    let (_, body) = get(&other, "minutes=1").await;
    assert_ne!(order_ids(&body), seen[0]);
    // Off by default: the stable order by (last change, order id).
    let stable = start_with(SimulatorConfig::default()).await;
    thirty_ties(&stable, base);
    let (_, body) = get(&stable, "minutes=1").await;
    assert_eq!(order_ids(&body), (1..=30).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_paging_an_unstable_list_records_every_order_once() {
    let mut w = World::with_sim(SimulatorConfig {
        page_size: Some(40),
        ..unstable(9)
    })
    .await;
    w.file_sink();
    // 300 orders, five changed in each second: ties straddle page borders.
    let base = Utc::now() - TimeDelta::minutes(30);
    for i in 0..300i64 {
        let at = base + TimeDelta::seconds(i / 5) + TimeDelta::milliseconds(i % 5);
        w.sim.set_status(i + 1, i + 1001, "pending", at);
    }
    w.once();
    let got = ids(&w.stored_events());
    assert_eq!(got.len(), 300, "{got:?}");
    let got: BTreeSet<String> = got.into_iter().collect();
    assert_eq!(got, event_ids(1..=300, "pending"));
}

/// The `Date` of an answer.
async fn date_of(h: &crate::support::sim::SimulatorHandle) -> DateTime<Utc> {
    let resp = client()
        .get(status_changes_url(h, "minutes=1"))
        .header("X-DC-DEVKEY", KEY)
        .send()
        .await
        .expect("answered");
    let date = resp.headers()["date"].to_str().expect("ascii").to_owned();
    DateTime::<Utc>::from(httpdate::parse_http_date(&date).expect("an HTTP date"))
}

#[tokio::test]
async fn a_skewed_clock_moves_now_relative_windows_and_date_both_ways() {
    for skew in [TimeDelta::hours(3), TimeDelta::hours(-3)] {
        let h = start_with(SimulatorConfig {
            clock_skew: skew,
            ..SimulatorConfig::default()
        })
        .await;
        let ours = Utc::now();
        assert!((h.now() - (ours + skew)).num_seconds().abs() <= 1, "{skew}");
        let date = date_of(&h).await;
        assert!(
            (date - (Utc::now() + skew)).num_seconds().abs() <= 2,
            "Date {date} is not our clock {skew} off"
        );
        // "The last minute" is the simulator's last minute.
        h.set_status(1, 101, "pending", h.now() - TimeDelta::seconds(30));
        h.set_status(2, 102, "pending", Utc::now() - TimeDelta::seconds(30));
        let (_, body) = get(&h, "minutes=1").await;
        assert_eq!(order_ids(&body), vec![1], "skew {skew}");
    }
    let plain = start_with(SimulatorConfig::default()).await;
    assert!((date_of(&plain).await - Utc::now()).num_seconds().abs() <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_polls_by_the_apis_clock_when_it_is_hours_ahead_or_behind() {
    for skew in [TimeDelta::hours(5), TimeDelta::hours(-5)] {
        let mut w = World::with_sim(SimulatorConfig {
            clock_skew: skew,
            ..SimulatorConfig::default()
        })
        .await;
        w.file_sink();
        w.sim
            .set_status(1, 11, "pending", w.sim.now() - TimeDelta::minutes(2));
        let mut daemon = w.spawn_ready().await;
        let found = |w: &World, n: usize| w.file_ids().len() >= n;
        assert!(
            eventually(Duration::from_secs(20), || found(&w, 1)).await,
            "skew {skew}"
        );
        w.sim
            .set_status(1, 11, "issued", w.sim.now() - TimeDelta::seconds(1));
        w.sim.set_status(2, 12, "pending", w.sim.now());
        assert!(
            eventually(Duration::from_secs(20), || found(&w, 3)).await,
            "skew {skew}"
        );
        let asked = w.sim.queries().len();
        assert!(
            eventually(Duration::from_secs(20), || w.sim.queries().len()
                >= asked + 2)
            .await,
            "skew {skew}: the daemon stopped polling"
        );
        daemon.terminate(Duration::from_secs(10));
        assert_eq!(
            w.file_ids(),
            vec!["1:pending", "1:issued", "2:pending"],
            "skew {skew}"
        );
        // Once it knows the API's clock, every poll asks for about `overlap`
        // (10 min) back from the API's now: cursor and windows are in its
        // time, whichever way ours is off.
        let queries = w.sim.queries();
        for q in &queries[asked..] {
            let span = q.minutes.unwrap_or(0) * 60 + q.seconds.unwrap_or(0);
            assert!(
                (600..=660).contains(&span),
                "skew {skew}: a poll asked for {span} s: {q:?}"
            );
        }
    }
}

#[tokio::test]
async fn mdt_read_literally_puts_a_winter_range_an_hour_earlier() {
    let range = "filters[status_last_updated]=2026-01-15+12:00:00...2026-01-15+13:00:00";
    // 18:30Z is 11:30 in Denver's winter (UTC-7) but 12:30 at UTC-6.
    for (reading, found) in [
        (RangeReading::AmericaDenver, vec![2]),
        (RangeReading::FixedUtcMinus6, vec![1]),
    ] {
        let h = start_with(SimulatorConfig {
            range_reading: reading,
            ..SimulatorConfig::default()
        })
        .await;
        h.set_status(1, 101, "issued", utc("2026-01-15T18:30:00Z"));
        h.set_status(2, 102, "issued", utc("2026-01-15T19:30:00Z"));
        let (status, body) = get(&h, range).await;
        assert_eq!(status, 200);
        assert_eq!(order_ids(&body), found, "{reading:?}");
        let offset = if reading == RangeReading::AmericaDenver {
            7
        } else {
            6
        };
        let start = utc("2026-01-15T12:00:00Z") + TimeDelta::hours(offset);
        assert_eq!(
            h.queries()[0].range,
            Some((start, start + TimeDelta::hours(1))),
            "the range as the simulator read it"
        );
    }
}
