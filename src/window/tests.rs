//! The window planner against its rules: never more than 7 days, no gap
//! between windows, DST edges in Mountain time, property-tested.

use super::*;
use chrono::NaiveDate;
use proptest::prelude::*;

const DENVER: Tz = chrono_tz::America::Denver;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn geometry(overlap_s: u64, max_window_s: u64, lookback_s: u64) -> PollConfig {
    PollConfig {
        interval: Duration::from_secs(60),
        overlap: Duration::from_secs(overlap_s),
        initial_lookback: Duration::from_secs(lookback_s),
        max_window: Duration::from_secs(max_window_s),
    }
}

/// Reads a filter value back the way a strict or a lenient server might.
fn readings(
    filter: &str,
) -> (
    DateTime<Utc>,
    DateTime<Utc>,
    DateTime<Utc>,
    DateTime<Utc>,
    TimeDelta,
) {
    let (a, b) = filter.split_once("...").unwrap();
    let parse = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d+%H:%M:%S").unwrap();
    let (a, b) = (parse(a), parse(b));
    let (a_all, b_all) = (every_reading(a), every_reading(b));
    (
        *a_all.iter().min().unwrap(),
        *a_all.iter().max().unwrap(),
        *b_all.iter().min().unwrap(),
        *b_all.iter().max().unwrap(),
        b - a,
    )
}

/// Every instant CertCentral could take a Mountain-time local time for,
/// worked out independently of the planner: `America/Denver` (both
/// readings of a fall-back hour; a spring-forward gap read as the instant
/// after it) and the literal "MDT", a fixed UTC-6.
fn every_reading(local: NaiveDateTime) -> Vec<DateTime<Utc>> {
    let mut all: Vec<DateTime<Utc>> = match DENVER.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
        chrono::LocalResult::Ambiguous(a, b) => {
            vec![a.with_timezone(&Utc), b.with_timezone(&Utc)]
        }
        chrono::LocalResult::None => {
            let mut probe = local;
            loop {
                probe += TimeDelta::minutes(1);
                if let Some(t) = DENVER.from_local_datetime(&probe).earliest() {
                    break vec![t.with_timezone(&Utc)];
                }
            }
        }
    };
    all.push(local.and_utc() + TimeDelta::hours(6));
    all
}

#[test]
fn a_short_gap_is_one_relative_window() {
    let now = utc("2026-11-24T10:00:00Z");
    let cursor = now - TimeDelta::minutes(1);
    let w = plan(Some(cursor), now, &geometry(600, 7 * 86400, 3600), DENVER);
    assert_eq!(
        w,
        vec![PlannedWindow {
            window: Window::Relative {
                since: cursor - TimeDelta::minutes(10)
            },
            cursor_after: None
        }]
    );
}

#[test]
fn first_start_looks_back_initial_lookback() {
    let now = utc("2026-11-24T10:00:00Z");
    let w = plan(None, now, &geometry(600, 7 * 86400, 3600), DENVER);
    assert_eq!(
        w[0].window,
        Window::Relative {
            since: now - TimeDelta::hours(1)
        }
    );
}

#[test]
fn thirty_days_are_caught_up_in_five_windows_oldest_first() {
    let now = utc("2026-11-24T10:00:00Z");
    let w = plan(None, now, &geometry(600, 7 * 86400, 30 * 86400), DENVER);
    assert_eq!(w.len(), 5, "{w:?}");
    assert!(matches!(w[4].window, Window::Relative { .. }));
    for pair in w.windows(2) {
        assert!(pair[0].cursor_after < pair[1].cursor_after.or(Some(now)));
    }
}

#[test]
fn relative_span_splits_minutes_and_seconds_and_caps_at_seven_days() {
    let now = utc("2026-11-24T10:00:00Z");
    let s = RelativeSpan::between(now - TimeDelta::seconds(661), now);
    assert_eq!(
        s,
        RelativeSpan {
            minutes: 11,
            seconds: 1
        }
    );
    assert_eq!(
        s.query(),
        vec![("minutes", "11".to_string()), ("seconds", "1".to_string())]
    );
    let big = RelativeSpan::between(now - TimeDelta::days(8), now);
    assert_eq!(big.total_seconds(), 604_800);
    assert!(big.minutes <= 10_080);
    assert_eq!(
        RelativeSpan::between(now, now).query(),
        vec![("seconds", "1".to_string())]
    );
}

#[test]
fn a_relative_span_past_seven_days_is_refused_rather_than_capped() {
    let now = utc("2026-11-24T10:00:00Z");
    let week = TimeDelta::days(7);
    assert_eq!(
        RelativeSpan::checked_between(now - week, now).map(|s| s.total_seconds()),
        Some(604_800)
    );
    assert_eq!(
        RelativeSpan::checked_between(now - week - TimeDelta::milliseconds(1), now),
        None
    );
    assert_eq!(
        RelativeSpan::checked_between(now - TimeDelta::seconds(90), now),
        Some(RelativeSpan {
            minutes: 1,
            seconds: 30
        })
    );
}

#[test]
fn filter_is_written_in_mountain_time() {
    // 2026-07-01 is in MDT (UTC-6), 2026-01-15 in MST (UTC-7).
    let f = filter_value(
        utc("2026-07-01T06:00:00Z"),
        utc("2026-07-02T05:59:59Z"),
        DENVER,
    );
    assert_eq!(f, "2026-07-01+00:00:00...2026-07-01+23:59:59");
    // In winter the literal "MDT" reading (UTC-6) of 01:00 is 07:00Z, an
    // hour before the range ends: the end is written an hour later, so
    // either reading covers the whole range.
    let f = filter_value(
        utc("2026-01-15T07:00:00Z"),
        utc("2026-01-15T08:00:00Z"),
        DENVER,
    );
    assert_eq!(f, "2026-01-15+00:00:00...2026-01-15+02:00:00");
}

#[test]
fn a_winter_week_is_covered_and_within_seven_days_under_either_mdt_reading() {
    let now = utc("2026-01-20T12:00:00Z");
    let cursor = now - TimeDelta::days(20);
    let windows = plan(Some(cursor), now, &geometry(600, 7 * 86400, 3600), DENVER);
    let mut reach = cursor - TimeDelta::minutes(10);
    for w in &windows[..windows.len() - 1] {
        let Window::Absolute { start, end } = w.window else {
            panic!("{w:?}");
        };
        let (s_early, s_late, e_early, e_late, _) = readings(&filter_value(start, end, DENVER));
        assert!(start <= reach);
        assert!(s_late <= start && e_early >= end, "{w:?} not covered");
        assert!(e_late - s_early <= TimeDelta::days(7), "{w:?} over 7 days");
        // Under fixed UTC-6 alone, too.
        let filter = filter_value(start, end, DENVER);
        let (a, b) = filter.split_once("...").unwrap();
        let fixed = |s: &str| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d+%H:%M:%S")
                .unwrap()
                .and_utc()
                + TimeDelta::hours(6)
        };
        assert!(fixed(a) <= start && fixed(b) >= end, "{filter}");
        assert!(fixed(b) - fixed(a) <= TimeDelta::days(7), "{filter}");
        reach = end;
    }
}

#[test]
fn ambiguous_fall_back_start_is_moved_so_any_reading_covers_it() {
    // 2026-11-01 01:30 MDT = 07:30Z; 01:30 also exists as MST = 08:30Z.
    let start = utc("2026-11-01T07:30:00Z");
    let f = filter_value(start, start + TimeDelta::hours(5), DENVER);
    let (_, start_late, end_early, _, _) = readings(&f);
    assert!(start_late <= start, "{f}");
    assert!(end_early >= start + TimeDelta::hours(5), "{f}");
}

#[test]
fn ambiguous_fall_back_end_is_moved_so_any_reading_covers_it() {
    // 01:30 MST = 08:30Z, whose other reading (07:30Z) is earlier.
    let end = utc("2026-11-01T08:30:00Z");
    let f = filter_value(end - TimeDelta::hours(5), end, DENVER);
    let (_, _, end_early, _, _) = readings(&f);
    assert!(end_early >= end, "{f}");
}

#[test]
fn seven_day_window_across_spring_forward_stays_within_seven_wall_clock_days() {
    let start = utc("2026-03-05T12:00:00Z");
    let (s, e) = absolute_range(start, start + TimeDelta::days(7), DENVER);
    let (s_early, _, _, e_late, wall) = readings(&filter_value(s, e, DENVER));
    assert!(wall <= TimeDelta::days(7));
    assert!(e_late - s_early <= TimeDelta::days(7));
    assert!(e - s > TimeDelta::days(6));
}

#[test]
fn dates_around_dst_are_real() {
    // Guards the fixtures above: the zone data knows the 2026 transitions.
    let amb = NaiveDate::from_ymd_opt(2026, 11, 1)
        .unwrap()
        .and_hms_opt(1, 30, 0)
        .unwrap();
    assert!(matches!(
        DENVER.from_local_datetime(&amb),
        LocalResult::Ambiguous(..)
    ));
    let gap = NaiveDate::from_ymd_opt(2026, 3, 8)
        .unwrap()
        .and_hms_opt(2, 30, 0)
        .unwrap();
    assert!(matches!(
        DENVER.from_local_datetime(&gap),
        LocalResult::None
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The invariants the poller relies on, for any geometry `check` accepts and
    /// any gap up to a year.
    #[test]
    fn windows_cover_the_gap_in_order_and_never_exceed_seven_days(
        now_s in 1_500_000_000i64..2_100_000_000,
        gap_s in 0i64..(366 * 86400),
        max_window_s in 3600u64..=(7 * 86400),
        overlap_frac in 0.0f64..=0.5,
        fresh in any::<bool>(),
        lookback_s in 1u64..(366 * 86400),
    ) {
        let overlap_s = ((max_window_s as f64) * overlap_frac) as u64;
        let poll = geometry(overlap_s, max_window_s, lookback_s);
        let now = DateTime::from_timestamp(now_s, 0).unwrap();
        let cursor = if fresh { None } else { Some(now - TimeDelta::seconds(gap_s)) };
        let windows = plan(cursor, now, &poll, DENVER);
        let want_since = match cursor {
            Some(c) => (c - TimeDelta::seconds(overlap_s as i64)).min(now - TimeDelta::seconds(overlap_s.max(1) as i64)),
            None => (now - TimeDelta::seconds(lookback_s as i64)).min(now - TimeDelta::seconds(overlap_s.max(1) as i64)),
        };
        prop_assert!(!windows.is_empty());
        let (last, absolute) = windows.split_last().unwrap();
        let mut reach = want_since; // everything before `reach` is covered
        let mut last_cursor = cursor;
        for w in absolute {
            let Window::Absolute { start, end } = w.window else {
                return Err(TestCaseError::fail("only the last window may be relative"));
            };
            prop_assert!(start <= reach, "gap before {start}");
            prop_assert!(end > reach, "no progress at {end}");
            prop_assert!(end <= now);
            prop_assert!(end - start <= TimeDelta::seconds(max_window_s as i64));
            let (s_early, s_late, e_early, e_late, wall) = readings(&filter_value(start, end, DENVER));
            prop_assert!(s_late <= start && e_early >= end, "filter does not cover the window");
            prop_assert!(e_late - s_early <= TimeDelta::days(7), "a lenient reading spans over 7 days");
            prop_assert!(wall <= TimeDelta::days(7), "wall clock span over 7 days");
            prop_assert_eq!(w.cursor_after, Some(end));
            if let Some(c) = last_cursor {
                prop_assert!(end > c, "cursor would move back");
            }
            last_cursor = Some(end);
            reach = end;
        }
        let Window::Relative { since } = last.window else {
            return Err(TestCaseError::fail("the last window must be relative"));
        };
        prop_assert!(since <= reach);
        prop_assert!(now - since <= TimeDelta::seconds(max_window_s as i64));
        let span = RelativeSpan::between(since, now);
        prop_assert!(span.minutes <= 10_080 && span.total_seconds() <= 604_800);
        let step = (max_window_s - overlap_s) as i64 - 4 * 3600;
        if step > 0 {
            let gap = (now - want_since).num_seconds();
            prop_assert!((absolute.len() as i64) <= gap / step + 2, "too many windows: {}", absolute.len());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The poller plans again from the cursor after every window; while the
    /// clock stands still that must give exactly the rest of the first plan,
    /// and it must always move on.
    #[test]
    fn planning_again_from_each_windows_cursor_gives_the_rest_of_the_plan(
        now_s in 1_500_000_000i64..2_100_000_000,
        max_window_s in 3600u64..=(7 * 86400),
        overlap_frac in 0.0f64..=0.5,
        windows in 0.0f64..40.0,
    ) {
        let overlap_s = ((max_window_s as f64) * overlap_frac) as u64;
        let lookback_s = ((max_window_s as f64) * windows) as u64 + 1;
        let poll = geometry(overlap_s, max_window_s, lookback_s);
        let now = DateTime::from_timestamp(now_s, 0).unwrap();
        let first = plan(None, now, &poll, DENVER);
        for (i, w) in first.iter().enumerate() {
            let Some(cursor) = w.cursor_after else { break };
            let again = plan(Some(cursor), now, &poll, DENVER);
            prop_assert_eq!(&again[..], &first[i + 1..]);
        }
    }
}
