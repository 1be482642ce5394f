//! Reading the status-changes query string: which time frame was asked for
//! and which page. Pure functions, so every rule is unit-tested here.
//!
//! Error codes used (all HTTP 400, body `{"errors":[{"code","message"}]}`):
//!
//! * `missing_filter` — none of `minutes`, `seconds`,
//!   `filters[status_last_updated]` was given (upstream: "you must include at
//!   least one URL query string filter").
//! * `invalid_filter` — a filter is not a non-negative integer / not a valid
//!   range, a parameter is repeated, the range starts after it ends or names
//!   a local time that does not exist in Mountain time, or a relative filter
//!   is combined with an absolute one (upstream does not define what that
//!   would mean, so the simulator refuses rather than guess).
//! * `time_frame_too_long` — more than 7 days, with upstream's message.
//! * `invalid_param` — `offset`/`limit` malformed (only when pagination is on).

use super::book::PageRequest;
use super::error::ApiError;
use super::mountain::{self, RangeReading};

/// The most a status-changes request may span: 7 days.
pub(crate) const MAX_SPAN_SECS: u64 = 604_800;
/// The largest `minutes` value upstream accepts.
pub(crate) const MAX_MINUTES: u64 = 10_080;

/// The query parameters the simulator understands, percent-decoded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RawParams {
    pub minutes: Option<String>,
    pub seconds: Option<String>,
    pub filter: Option<String>,
    pub offset: Option<String>,
    pub limit: Option<String>,
}

/// The time frame a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// The last `seconds` seconds up to the simulator's now.
    Relative { seconds: u64 },
    /// An absolute range as read in Mountain time; both ends inclusive.
    Absolute {
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
    },
}

/// Decodes `%XX` escapes. `+` is deliberately left alone: DigiCert's range
/// format uses a literal `+` between date and time, and the range reader
/// accepts both `+` and a space there. Invalid escapes stay as written.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a raw query string into the known parameters. Unknown parameters
/// are ignored, as upstream ignores them; a known one given twice is
/// refused, because which value would win is not defined.
pub(crate) fn split_query(raw: &str) -> Result<RawParams, ApiError> {
    let mut params = RawParams::default();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(&key.replace('+', " "));
        let slot = match key.as_str() {
            "minutes" => &mut params.minutes,
            "seconds" => &mut params.seconds,
            "filters[status_last_updated]" => &mut params.filter,
            "offset" => &mut params.offset,
            "limit" => &mut params.limit,
            _ => continue,
        };
        if slot.is_some() {
            return Err(ApiError::bad_request(
                "invalid_filter",
                format!("Query parameter {key} was given more than once."),
            ));
        }
        *slot = Some(percent_decode(value));
    }
    Ok(params)
}

/// How a count-like parameter failed to parse.
#[derive(Debug, PartialEq, Eq)]
enum CountError {
    Malformed,
    TooLarge,
}

/// A non-negative decimal integer: ASCII digits only (no sign, no spaces).
fn parse_count(value: &str) -> Result<u64, CountError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CountError::Malformed);
    }
    value.parse().map_err(|_| CountError::TooLarge)
}

/// The time-frame filter value, for a filter named `name`.
fn frame_count(name: &str, value: Option<&str>) -> Result<u64, ApiError> {
    let Some(value) = value else { return Ok(0) };
    match parse_count(value) {
        Ok(n) => Ok(n),
        Err(CountError::TooLarge) => Err(ApiError::too_long()),
        Err(CountError::Malformed) => Err(ApiError::bad_request(
            "invalid_filter",
            format!("{name} must be a non-negative integer, got {value:?}."),
        )),
    }
}

/// Which time frame the parameters ask for, with upstream's limits applied.
pub(crate) fn frame(p: &RawParams, reading: RangeReading) -> Result<Frame, ApiError> {
    let relative = p.minutes.is_some() || p.seconds.is_some();
    match (&p.filter, relative) {
        (None, false) => Err(ApiError::bad_request(
            "missing_filter",
            "At least one filter is required: minutes, seconds or filters[status_last_updated].",
        )),
        (Some(_), true) => Err(ApiError::bad_request(
            "invalid_filter",
            "filters[status_last_updated] cannot be combined with minutes or seconds.",
        )),
        (Some(range), false) => {
            let (start, end) = mountain::read_range(range, reading)?;
            let span = (end - start).num_seconds();
            if u64::try_from(span).map_or(true, |s| s > MAX_SPAN_SECS) {
                return Err(ApiError::too_long());
            }
            Ok(Frame::Absolute { start, end })
        }
        (None, true) => {
            let minutes = frame_count("minutes", p.minutes.as_deref())?;
            let seconds = frame_count("seconds", p.seconds.as_deref())?;
            let total = minutes
                .checked_mul(60)
                .and_then(|m| m.checked_add(seconds))
                .ok_or_else(ApiError::too_long)?;
            if minutes > MAX_MINUTES || total > MAX_SPAN_SECS {
                return Err(ApiError::too_long());
            }
            Ok(Frame::Relative { seconds: total })
        }
    }
}

/// The page to return when pagination is on: `offset` defaults to 0,
/// `limit` to `page_size` and is capped at it.
pub(crate) fn page(p: &RawParams, page_size: usize) -> Result<PageRequest, ApiError> {
    let size = u64::try_from(page_size.max(1)).unwrap_or(u64::MAX);
    let read = |name: &str, value: &Option<String>| -> Result<Option<u64>, ApiError> {
        match value.as_deref() {
            None => Ok(None),
            Some(v) => parse_count(v).map(Some).map_err(|_| {
                ApiError::bad_request(
                    "invalid_param",
                    format!("{name} must be a non-negative integer, got {v:?}."),
                )
            }),
        }
    };
    let offset = read("offset", &p.offset)?.unwrap_or(0);
    let limit = match read("limit", &p.limit)? {
        Some(0) => {
            return Err(ApiError::bad_request(
                "invalid_param",
                "limit must be at least 1.",
            ));
        }
        Some(l) => l.min(size),
        None => size,
    };
    Ok(PageRequest { offset, limit })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(raw: &str) -> RawParams {
        split_query(raw).unwrap_or_default()
    }

    fn code(raw: &str) -> &'static str {
        match split_query(raw).and_then(|p| frame(&p, RangeReading::AmericaDenver)) {
            Ok(_) => "ok",
            Err(e) => e.code,
        }
    }

    #[test]
    fn percent_escapes_are_decoded_but_plus_is_kept() {
        assert_eq!(
            percent_decode("filters%5Bstatus_last_updated%5D"),
            "filters[status_last_updated]"
        );
        assert_eq!(percent_decode("a+b%2Bc%20d"), "a+b+c d");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn encoded_keys_are_recognised() {
        let p = params("filters%5Bstatus_last_updated%5D=2026-01-01...2026-01-02&x=1");
        assert_eq!(p.filter.as_deref(), Some("2026-01-01...2026-01-02"));
    }

    #[test]
    fn no_filter_is_missing_filter() {
        assert_eq!(code(""), "missing_filter");
        assert_eq!(code("offset=3&sort=x"), "missing_filter");
    }

    #[test]
    fn minutes_and_seconds_add_up() {
        let p = params("minutes=2&seconds=5");
        assert_eq!(
            frame(&p, RangeReading::AmericaDenver),
            Ok(Frame::Relative { seconds: 125 })
        );
        assert_eq!(
            frame(&params("seconds=30"), RangeReading::AmericaDenver),
            Ok(Frame::Relative { seconds: 30 })
        );
        assert_eq!(
            frame(&params("minutes=0"), RangeReading::AmericaDenver),
            Ok(Frame::Relative { seconds: 0 })
        );
    }

    #[test]
    fn limits_of_the_relative_frame() {
        assert_eq!(code("minutes=10080"), "ok");
        assert_eq!(code("minutes=10081"), "time_frame_too_long");
        assert_eq!(code("seconds=604800"), "ok");
        assert_eq!(code("seconds=604801"), "time_frame_too_long");
        assert_eq!(code("minutes=10080&seconds=1"), "time_frame_too_long");
        assert_eq!(code("minutes=10079&seconds=60"), "ok");
        assert_eq!(
            code("minutes=99999999999999999999999"),
            "time_frame_too_long"
        );
        assert_eq!(code("minutes=9999999999999999"), "time_frame_too_long");
    }

    #[test]
    fn malformed_counts_are_invalid_filter() {
        for q in [
            "minutes=-5",
            "minutes=",
            "minutes=1.5",
            "seconds=abc",
            "minutes=+5",
            "minutes=%205",
        ] {
            assert_eq!(code(q), "invalid_filter", "{q}");
        }
    }

    #[test]
    fn repeated_or_mixed_filters_are_refused() {
        assert_eq!(code("minutes=1&minutes=2"), "invalid_filter");
        assert_eq!(
            code("minutes=1&filters[status_last_updated]=2026-01-01...2026-01-02"),
            "invalid_filter"
        );
    }

    #[test]
    fn absolute_ranges_longer_than_seven_days_are_too_long() {
        let q = |r: &str| code(&format!("filters[status_last_updated]={r}"));
        assert_eq!(q("2026-01-01+00:00:00...2026-01-08+00:00:00"), "ok");
        assert_eq!(
            q("2026-01-01+00:00:00...2026-01-08+00:00:01"),
            "time_frame_too_long"
        );
        assert_eq!(q("2026-01-01...2026-01-07"), "ok");
        assert_eq!(q("2026-01-01...2026-01-08"), "time_frame_too_long");
        // A local week that contains the spring-forward hour is only 167 real hours…
        assert_eq!(q("2026-03-08+00:00:00...2026-03-15+00:59:59"), "ok");
        // …and one that contains the fall-back hour is 169.
        assert_eq!(
            q("2026-11-01+00:00:00...2026-11-08+00:00:00"),
            "time_frame_too_long"
        );
        assert_eq!(q("2026-11-01+00:00:00...2026-11-07+23:00:00"), "ok");
    }

    #[test]
    fn paging_defaults_and_caps() {
        assert_eq!(
            page(&params(""), 50),
            Ok(PageRequest {
                offset: 0,
                limit: 50
            })
        );
        assert_eq!(
            page(&params("offset=100&limit=500"), 50),
            Ok(PageRequest {
                offset: 100,
                limit: 50
            })
        );
        assert_eq!(
            page(&params("limit=7"), 50),
            Ok(PageRequest {
                offset: 0,
                limit: 7
            })
        );
        for bad in ["limit=0", "limit=-1", "offset=x", "offset="] {
            assert_eq!(
                page(&params(bad), 50).map_err(|e| e.code),
                Err("invalid_param"),
                "{bad}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_query_string_is_answered_without_panicking(raw in ".{0,80}") {
            if let Ok(p) = split_query(&raw) {
                let _ = frame(&p, RangeReading::AmericaDenver);
                let _ = page(&p, 10);
            }
        }

        #[test]
        fn any_range_text_is_answered_without_panicking(
            raw in "[0-9]{4}-[0-9]{2}-[0-9]{2}[+ ][0-9]{2}:[0-9]{2}:[0-9]{2}\\.\\.\\.[0-9]{4}-[0-9]{2}-[0-9]{2}"
        ) {
            let _ = frame(&RawParams { filter: Some(raw), ..RawParams::default() }, RangeReading::AmericaDenver);
        }
    }

    #[test]
    fn error_body_has_the_upstream_shape() {
        let body = ApiError::too_long().body();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(v["errors"][0]["code"], "time_frame_too_long");
        assert_eq!(
            v["errors"][0]["message"],
            super::super::error::TOO_LONG_MESSAGE
        );
        assert_eq!(v.as_object().map(|o| o.len()), Some(1));
    }
}
