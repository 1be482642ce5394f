//! Retry schedules, shared by the API client and the delivery loops. Pure.

use std::time::{Duration, SystemTime};

/// `initial * 2^(attempt-1)`, capped at `max`. `attempt` counts from 1.
pub fn exponential(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let shift = attempt.saturating_sub(1).min(31);
    initial.checked_mul(1u32 << shift).unwrap_or(max).min(max)
}

/// "Full jitter": a uniformly random delay in `[0, d]`, so a fleet of retries
/// after an outage does not arrive in lockstep. `unit` is a random number in
/// `[0, 1)`.
pub fn full_jitter(d: Duration, unit: f64) -> Duration {
    d.mul_f64(unit.clamp(0.0, 1.0))
}

/// The delay before attempt `attempt + 1` of a delivery: exponential with full
/// jitter, but never sooner than the receiver's `Retry-After`.
pub fn next_delay(
    initial: Duration,
    max: Duration,
    attempt: u32,
    retry_after: Option<Duration>,
    unit: f64,
) -> Duration {
    let jittered = full_jitter(exponential(initial, max, attempt), unit);
    match retry_after {
        Some(ra) => jittered.max(ra),
        None => jittered,
    }
}

/// Parses `Retry-After`: delta-seconds or an HTTP date. A date in the past
/// means "now". Anything else is ignored, as RFC 9110 allows.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn exponential_doubles_then_caps() {
        assert_eq!(exponential(S(5), S(3600), 1), S(5));
        assert_eq!(exponential(S(5), S(3600), 2), S(10));
        assert_eq!(exponential(S(5), S(3600), 4), S(40));
        assert_eq!(exponential(S(5), S(3600), 20), S(3600));
        assert_eq!(exponential(S(5), S(3600), u32::MAX), S(3600));
    }

    #[test]
    fn jitter_stays_within_zero_and_the_delay() {
        assert_eq!(full_jitter(S(10), 0.0), S(0));
        assert_eq!(full_jitter(S(10), 0.5), S(5));
        assert!(full_jitter(S(10), 0.999) <= S(10));
        assert_eq!(full_jitter(S(10), 7.0), S(10));
    }

    #[test]
    fn retry_after_is_a_floor() {
        assert_eq!(next_delay(S(1), S(60), 1, Some(S(30)), 0.1), S(30));
        assert_eq!(next_delay(S(100), S(100), 1, Some(S(3)), 1.0), S(100));
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + S(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(parse_retry_after("120", now), Some(S(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:29:00 GMT", now),
            Some(S(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(S(0))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
