//! Catch-up in winter, when DigiCert's "MDT" matters: whether CertCentral
//! reads absolute ranges in America/Denver (UTC−7 in winter) or literally
//! as UTC−6, a catch-up finds every change and no window exceeds 7 days as
//! the simulator read it.

use chrono::{DateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::America::Denver;

use super::{assert_catch_up_shape, unique_events};
use crate::support::World;
use crate::support::sim::{RangeReading, SimulatorConfig};

/// The first instant from now on whose last 21 days are all Mountain
/// *standard* time (UTC−7), where DigiCert's "MDT" taken literally (UTC−6)
/// reads every absolute range an hour off: now in winter, else the coming
/// winter (reached with a simulator clock that far ahead).
fn winter_now() -> DateTime<Utc> {
    let winter = |t: DateTime<Utc>| {
        Denver
            .offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc()
            == -7 * 3600
    };
    let mut t = Utc::now();
    while !(winter(t) && winter(t - TimeDelta::days(21))) {
        t += TimeDelta::days(1);
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_winter_catch_up_finds_every_change_whether_mdt_means_denver_or_utc_minus_6() {
    for reading in [RangeReading::AmericaDenver, RangeReading::FixedUtcMinus6] {
        let skew = TimeDelta::seconds((winter_now() - Utc::now()).num_seconds());
        let mut w = World::with_sim(SimulatorConfig {
            range_reading: reading,
            clock_skew: skew,
            ..SimulatorConfig::default()
        })
        .await;
        w.file_sink();
        w.set("poll.initial_lookback", "20d");
        // A change every 10 minutes of the 20 days (by the API's clock), so
        // each window edge, read an hour off, would have some to miss.
        let now = w.sim.now();
        let first = now - TimeDelta::days(20) + TimeDelta::minutes(30);
        let count = ((now - first).num_minutes() / 10) as i64;
        for i in 0..count {
            let at = first + TimeDelta::minutes(10 * i);
            w.sim.set_status(i + 1, i + 100_001, "pending", at);
        }
        w.once();

        // Every window is at most 7 days as the simulator read it, and the
        // windows overlap as read: the shape holds under this reading.
        let queries = w.sim.queries();
        let ranges = assert_catch_up_shape(&queries);
        assert!(
            ranges.len() >= 2,
            "{reading:?}: 20 days in {} absolute windows",
            ranges.len()
        );
        let stored = unique_events(&w.stored_events());
        let missing: Vec<i64> = (1..=count)
            .filter(|i| !stored.contains_key(&format!("{i}:pending")))
            .collect();
        assert!(
            missing.is_empty(),
            "{reading:?}, skew {skew}: {} of {count} changes missed, e.g. order {:?} at {:?}",
            missing.len(),
            missing.first(),
            missing
                .first()
                .map(|i| first + TimeDelta::minutes(10 * (i - 1)))
        );
        assert_eq!(stored.len() as i64, count, "{reading:?}");
    }
}
