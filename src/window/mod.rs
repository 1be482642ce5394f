//! The window planner: which `status-changes` requests cover the time since the
//! cursor. Pure functions of (cursor, now, geometry, time zone), so every rule
//! below is property-tested.
//!
//! * A gap that fits in one window is asked for relative to the API's own clock
//!   (`minutes` + `seconds`): no time zone involved. `now` and the cursor
//!   are in CertCentral's time (the poller learns its clock from `Date`).
//! * A longer gap is caught up oldest first in absolute
//!   `filters[status_last_updated]` windows written in the account's time zone,
//!   each starting `overlap` before the previous one ended, and finished by one
//!   relative window up to now. CertCentral omits from an absolute answer the
//!   orders that changed again after the range, so only the final relative
//!   window can be trusted to see an order's latest status; the overlap makes
//!   the pieces seamless.
//! * No request ever covers more than 7 days, however the API resolves local
//!   times that daylight saving time makes ambiguous.

use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use crate::config::{API_MAX_WINDOW, PollConfig};

/// Relative windows are planned this much shorter than `max_window`, because
/// their length is measured again when each request (and page) is sent.
pub const RELATIVE_SLACK: Duration = Duration::from_secs(60);

/// One request's time frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Everything that changed since `since`, asked as "the last N seconds"
    /// when the request is sent.
    Relative { since: DateTime<Utc> },
    /// A closed range, asked as an absolute filter in the configured zone.
    Absolute {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
}

/// The request parameters of a relative window: `minutes` and `seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelativeSpan {
    pub minutes: u64,
    pub seconds: u64,
}

impl RelativeSpan {
    /// The span from `since` to `now`, rounded up to whole seconds, at least one
    /// second and never above the API's 7 days.
    pub fn between(since: DateTime<Utc>, now: DateTime<Utc>) -> RelativeSpan {
        let millis = (now - since).num_milliseconds().max(1);
        let secs = (millis as u64).div_ceil(1000).min(API_MAX_WINDOW.as_secs());
        RelativeSpan {
            minutes: secs / 60,
            seconds: secs % 60,
        }
    }

    /// [`RelativeSpan::between`], or `None` once the span no longer fits in
    /// the API's 7 days — a relative window sent long after it was planned
    /// (pages, retries, `Retry-After`). Asking for the capped span instead
    /// would silently skip the window's oldest changes.
    pub fn checked_between(since: DateTime<Utc>, now: DateTime<Utc>) -> Option<RelativeSpan> {
        let millis = (now - since).num_milliseconds().max(1);
        let secs = (millis as u64).div_ceil(1000);
        (secs <= API_MAX_WINDOW.as_secs()).then(|| RelativeSpan::between(since, now))
    }

    pub fn total_seconds(&self) -> u64 {
        self.minutes * 60 + self.seconds
    }

    /// Query pairs; `minutes` or `seconds` is left out when zero.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::with_capacity(2);
        if self.minutes > 0 {
            q.push(("minutes", self.minutes.to_string()));
        }
        if self.seconds > 0 || self.minutes == 0 {
            q.push(("seconds", self.seconds.to_string()));
        }
        q
    }
}

/// A window and where the cursor stands once its orders are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedWindow {
    pub window: Window,
    /// For absolute windows the range end; for the relative window `None`:
    /// its cursor is the moment its first request is sent.
    pub cursor_after: Option<DateTime<Utc>>,
}

/// Plans the windows from the cursor (or the first start) up to `now`.
pub fn plan(
    cursor: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    poll: &PollConfig,
    tz: Tz,
) -> Vec<PlannedWindow> {
    let overlap = delta(poll.overlap);
    let max_window = delta(poll.max_window);
    let relative_max = max_window - delta(RELATIVE_SLACK.min(poll.max_window / 2));
    let mut since = match cursor {
        Some(c) => c - overlap,
        None => now
            .checked_sub_signed(delta(poll.initial_lookback))
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
    };
    // A cursor in the future means the local clock went back; never ask for an
    // empty or negative frame.
    since = since.min(now - overlap.max(TimeDelta::seconds(1)));
    let mut out = Vec::new();
    while now - since > relative_max {
        let (start, end) = absolute_range(since, (since + max_window).min(now), tz);
        out.push(PlannedWindow {
            window: Window::Absolute { start, end },
            cursor_after: Some(end),
        });
        // Seamless (the next window starts inside this one) and always forward.
        since = (end - overlap).max(start + TimeDelta::minutes(1));
    }
    out.push(PlannedWindow {
        window: Window::Relative { since },
        cursor_after: None,
    });
    out
}

/// Shrinks `[start, end]` until the filter text that represents it spans at most
/// 7 days under every reading of its local times (wall clock, earliest and
/// latest interpretation of ambiguous times). Returns the instants covered.
fn absolute_range(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    tz: Tz,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = floor_second(start);
    let mut end = floor_second(end);
    let limit = delta(API_MAX_WINDOW);
    loop {
        let s = start_local(start, tz);
        let e = end_local(end, tz);
        let widest = latest(e, tz) - earliest(s, tz);
        let wall = e - s;
        let excess = (widest - limit).max(wall - limit);
        if excess <= TimeDelta::zero() || end <= start {
            return (start, end);
        }
        end -= excess.max(TimeDelta::seconds(1));
    }
}

/// The `filters[status_last_updated]` value for an absolute window:
/// `yyyy-MM-dd+HH:mm:ss...yyyy-MM-dd+HH:mm:ss` in `tz`. Reads at least the
/// whole window whichever way the API resolves an ambiguous local time.
pub fn filter_value(start: DateTime<Utc>, end: DateTime<Utc>, tz: Tz) -> String {
    let fmt = "%Y-%m-%d+%H:%M:%S";
    format!(
        "{}...{}",
        start_local(start, tz).format(fmt),
        end_local(end, tz).format(fmt)
    )
}

/// The local time to write for a range start: one whose *latest* reading is
/// not after `start`.
fn start_local(start: DateTime<Utc>, tz: Tz) -> NaiveDateTime {
    let mut s = floor_second(start);
    loop {
        let local = s.with_timezone(&tz).naive_local();
        let late = latest(local, tz);
        if late <= start {
            return local;
        }
        s -= late - start;
    }
}

/// The local time to write for a range end: one whose *earliest* reading is
/// not before `end`.
fn end_local(end: DateTime<Utc>, tz: Tz) -> NaiveDateTime {
    let mut e = ceil_second(end);
    loop {
        let local = e.with_timezone(&tz).naive_local();
        let early = earliest(local, tz);
        if early >= end {
            return local;
        }
        e += end - early;
    }
}

/// DigiCert documents its absolute ranges as "MDT". Read as
/// `America/Denver` that is MST (UTC-7) in winter; read literally it is a
/// fixed UTC-6 all year. Which one CertCentral does is not documented, so in
/// Mountain time every local time has both readings, and windows are written
/// to cover their range, and stay within 7 days, under either.
const MDT_OFFSET_HOURS: i64 = -6;

/// The fixed-"MDT" reading of `local`, when `tz` is Mountain time.
fn literal_mdt(local: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    (tz == chrono_tz::America::Denver).then(|| local.and_utc() - TimeDelta::hours(MDT_OFFSET_HOURS))
}

/// Earliest instant a local time may denote (times in a DST gap are read as
/// the instant just after the gap, the only sensible reading; in Mountain
/// time the literal "MDT" reading counts too).
fn earliest(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    let zoned = match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.with_timezone(&Utc).min(b.with_timezone(&Utc)),
        LocalResult::None => after_gap(local, tz),
    };
    literal_mdt(local, tz).map_or(zoned, |m| m.min(zoned))
}

fn latest(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    let zoned = match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.with_timezone(&Utc).max(b.with_timezone(&Utc)),
        LocalResult::None => after_gap(local, tz),
    };
    literal_mdt(local, tz).map_or(zoned, |m| m.max(zoned))
}

fn after_gap(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    // Gaps are at most a few hours; step forward a minute at a time.
    let mut probe = local;
    for _ in 0..(24 * 60) {
        probe += TimeDelta::minutes(1);
        if let Some(t) = tz.from_local_datetime(&probe).earliest() {
            return t.with_timezone(&Utc);
        }
    }
    local.and_utc()
}

fn floor_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

fn ceil_second(t: DateTime<Utc>) -> DateTime<Utc> {
    let f = floor_second(t);
    if f == t { t } else { f + TimeDelta::seconds(1) }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests;
