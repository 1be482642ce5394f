//! Reading `filters[status_last_updated]` ranges the way CertCentral does:
//! wall-clock times in Mountain time (`America/Denver`, DST-aware) — or, with
//! [`RangeReading::FixedUtcMinus6`], DigiCert's "Timezone is MDT" taken
//! literally: UTC−6 all year, an hour off in winter.
//!
//! The simulator is deliberately strict about daylight saving time so that a
//! client that formats its windows carelessly fails in tests, not in
//! production:
//!
//! * a local time that occurs twice (the fall-back hour) is read as the
//!   *later* instant when it starts a range and the *earlier* instant when it
//!   ends one — whichever makes the window smaller, so a client that relies
//!   on the lucky reading misses changes;
//! * a local time that never occurs (the spring-forward gap) is refused with
//!   `invalid_filter`.

use chrono::offset::LocalResult;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::America::Denver;

use super::error::ApiError;

/// How the simulator reads the wall-clock times of an absolute range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RangeReading {
    /// Mountain time with daylight saving time (UTC−7 in winter, UTC−6 in
    /// summer), with the strict DST rules above. The default.
    #[default]
    AmericaDenver,
    /// "MDT" literally: UTC−6 all year, so no gap and no repeated hour.
    FixedUtcMinus6,
}

/// Which end of a range a time belongs to; decides DST ambiguity and the
/// time a bare date stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Start,
    Finish,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_filter", message)
}

/// `yyyy-MM-dd` with exactly those digit counts.
fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// `HH:mm:ss` with exactly those digit counts.
fn parse_time(s: &str) -> Option<NaiveTime> {
    let b = s.as_bytes();
    let shape = b.len() == 8
        && b[2] == b':'
        && b[5] == b':'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 2 || i == 5 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    NaiveTime::parse_from_str(s, "%H:%M:%S").ok()
}

/// One side of a range: `yyyy-MM-dd`, `yyyy-MM-dd+HH:mm:ss` or the same with
/// a space (what a form-decoded `+` becomes).
fn parse_local(s: &str, end: End) -> Option<NaiveDateTime> {
    if s.len() == 10 {
        let time = match end {
            End::Start => NaiveTime::from_hms_opt(0, 0, 0),
            End::Finish => NaiveTime::from_hms_opt(23, 59, 59),
        }?;
        return Some(parse_date(s)?.and_time(time));
    }
    let (date, time) = s.split_at_checked(10)?;
    let time = time.strip_prefix('+').or_else(|| time.strip_prefix(' '))?;
    Some(parse_date(date)?.and_time(parse_time(time)?))
}

/// The real instant of a Mountain-time wall-clock reading, strictly.
fn to_instant(
    local: NaiveDateTime,
    end: End,
    text: &str,
    reading: RangeReading,
) -> Result<DateTime<Utc>, ApiError> {
    if reading == RangeReading::FixedUtcMinus6 {
        let mdt = FixedOffset::west_opt(6 * 3600).ok_or_else(|| invalid("no UTC-6"))?;
        return mdt
            .from_local_datetime(&local)
            .single()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| invalid(format!("{text} cannot be read as UTC-6.")));
    }
    match Denver.from_local_datetime(&local) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(earlier, later) => Ok(match end {
            End::Start => later,
            End::Finish => earlier,
        }
        .with_timezone(&Utc)),
        LocalResult::None => Err(invalid(format!(
            "{text} does not exist in Mountain time (daylight saving time gap)."
        ))),
    }
}

/// Reads `start...end` into real instants, both inclusive. Does not check
/// the 7-day limit (the caller does, so tests can see how a too-long range
/// was read).
pub(crate) fn read_range(
    value: &str,
    reading: RangeReading,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let malformed = || {
        invalid(format!(
            "filters[status_last_updated] must look like yyyy-MM-dd+HH:mm:ss...yyyy-MM-dd+HH:mm:ss \
             or yyyy-MM-dd...yyyy-MM-dd, got {value:?}."
        ))
    };
    let (a, b) = value.split_once("...").ok_or_else(malformed)?;
    let start_local = parse_local(a, End::Start).ok_or_else(malformed)?;
    let end_local = parse_local(b, End::Finish).ok_or_else(malformed)?;
    let start = to_instant(start_local, End::Start, a, reading)?;
    let end = to_instant(end_local, End::Finish, b, reading)?;
    if start > end {
        return Err(invalid(format!(
            "filters[status_last_updated] starts after it ends: {value:?}."
        )));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn code(value: &str) -> &'static str {
        read_range(value, RangeReading::AmericaDenver).map_or_else(|e| e.code, |_| "ok")
    }

    #[test]
    fn plus_or_space_separates_date_and_time() {
        let expected = Ok((utc("2019-08-01T06:00:00Z"), utc("2019-08-08T05:59:59Z")));
        assert_eq!(
            read_range(
                "2019-08-01+00:00:00...2019-08-07+23:59:59",
                RangeReading::AmericaDenver
            ),
            expected
        );
        assert_eq!(
            read_range(
                "2019-08-01 00:00:00...2019-08-07 23:59:59",
                RangeReading::AmericaDenver
            ),
            expected
        );
    }

    #[test]
    fn bare_dates_cover_whole_days() {
        assert_eq!(
            read_range("2026-01-05...2026-01-06", RangeReading::AmericaDenver),
            Ok((utc("2026-01-05T07:00:00Z"), utc("2026-01-07T06:59:59Z")))
        );
    }

    #[test]
    fn winter_is_utc_minus_seven_and_summer_utc_minus_six() {
        let (winter, _) = read_range(
            "2026-01-15+12:00:00...2026-01-15+12:00:00",
            RangeReading::AmericaDenver,
        )
        .unwrap_or_default();
        let (summer, _) = read_range(
            "2026-07-15+12:00:00...2026-07-15+12:00:00",
            RangeReading::AmericaDenver,
        )
        .unwrap_or_default();
        assert_eq!(winter, utc("2026-01-15T19:00:00Z"));
        assert_eq!(summer, utc("2026-07-15T18:00:00Z"));
    }

    #[test]
    fn ambiguous_start_is_the_later_instant() {
        // 01:30 happens at 07:30Z (MDT) and again at 08:30Z (MST).
        let (start, _) = read_range(
            "2026-11-01+01:30:00...2026-11-01+03:00:00",
            RangeReading::AmericaDenver,
        )
        .unwrap_or_default();
        assert_eq!(start, utc("2026-11-01T08:30:00Z"));
    }

    #[test]
    fn ambiguous_end_is_the_earlier_instant() {
        let (_, end) = read_range(
            "2026-11-01+00:00:00...2026-11-01+01:30:00",
            RangeReading::AmericaDenver,
        )
        .unwrap_or_default();
        assert_eq!(end, utc("2026-11-01T07:30:00Z"));
    }

    #[test]
    fn a_range_inside_the_repeated_hour_can_be_empty_and_refused() {
        // Start 01:10 read late (08:10Z), end 01:50 read early (07:50Z).
        assert_eq!(
            code("2026-11-01+01:10:00...2026-11-01+01:50:00"),
            "invalid_filter"
        );
    }

    #[test]
    fn nonexistent_local_time_is_refused() {
        assert_eq!(
            code("2026-03-08+02:30:00...2026-03-08+05:00:00"),
            "invalid_filter"
        );
        assert_eq!(
            code("2026-03-08+00:00:00...2026-03-08+02:00:00"),
            "invalid_filter"
        );
        assert_eq!(code("2026-03-08+00:00:00...2026-03-08+03:00:00"), "ok");
    }

    #[test]
    fn malformed_ranges_are_refused() {
        for bad in [
            "",
            "2026-01-01",
            "2026-01-01..2026-01-02",
            "2026-1-01...2026-01-02",
            "2026-01-01T00:00:00...2026-01-02",
            "2026-01-01+0:00:00...2026-01-02",
            "2026-01-01+00:00:00Z...2026-01-02",
            "2026-02-30...2026-03-01",
            "2026-01-01+24:00:00...2026-01-02",
            "2026-01-01...2026-01-02...2026-01-03",
            "2026-01-01 ...2026-01-02",
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}...2026-01-02",
        ] {
            assert_eq!(code(bad), "invalid_filter", "{bad:?}");
        }
    }

    #[test]
    fn read_as_fixed_utc_minus_six_winter_is_an_hour_off_and_dst_has_no_gap() {
        let fixed = |v| read_range(v, RangeReading::FixedUtcMinus6);
        assert_eq!(
            fixed("2026-01-15+12:00:00...2026-01-15+13:00:00"),
            Ok((utc("2026-01-15T18:00:00Z"), utc("2026-01-15T19:00:00Z")))
        );
        assert_eq!(
            fixed("2026-07-15+12:00:00...2026-07-15+12:00:00"),
            read_range(
                "2026-07-15+12:00:00...2026-07-15+12:00:00",
                RangeReading::AmericaDenver
            )
        );
        // Denver's gap and repeated hour mean nothing at a fixed offset.
        assert_eq!(
            fixed("2026-03-08+02:30:00...2026-03-08+02:40:00"),
            Ok((utc("2026-03-08T08:30:00Z"), utc("2026-03-08T08:40:00Z")))
        );
        assert_eq!(
            fixed("2026-11-01+01:10:00...2026-11-01+01:50:00"),
            Ok((utc("2026-11-01T07:10:00Z"), utc("2026-11-01T07:50:00Z")))
        );
    }

    #[test]
    fn start_after_end_is_refused() {
        assert_eq!(code("2026-01-02...2026-01-01"), "invalid_filter");
        assert_eq!(code("2026-01-01+10:00:00...2026-01-01+10:00:00"), "ok");
    }
}
