//! What every answer goes through before and after its handler: DigiCert's
//! rate limits and the `Date` header of the simulator's (possibly skewed)
//! clock.
//!
//! DigiCert limits each API key to 1000 requests per 5 minutes and 100 per
//! 5 seconds, both rolling windows ("Rate limits", dev.digicert.com). Past
//! either, every request gets `429` with
//! `{"errors":[{"code":"request_limit_exceeded","message":"Service
//! unavailable, please limit request volume"}]}` until enough of the
//! window has rolled by; no `Retry-After` is promised, so none is sent
//! unless [`RateLimits::retry_after`] asks for one.
//!
//! The simulator is strict where upstream is vague: the limits apply to
//! every endpoint together, a request with a wrong or missing key is not
//! counted (it is answered 401 by its handler, as upstream checks the key
//! first), and a refused request counts like any other, so a client that
//! keeps hammering stays locked out. A refused request consumes no queued
//! [`super::Fault`] and is recorded in [`super::Simulator::throttled`], not
//! in `queries()`/`cancels()`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::{DATE, RETRY_AFTER};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};

use super::Simulator;
use super::error::error_body;
use super::fault::json_response;
use super::http::api_key_sent;

/// Upstream's message for `request_limit_exceeded`, verbatim.
pub(crate) const LIMIT_MESSAGE: &str = "Service unavailable, please limit request volume";

/// At most `requests` requests in any `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub requests: usize,
    pub per: Duration,
}

/// The rate limits of one API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Each must hold; a request that would break one is refused.
    pub limits: Vec<Limit>,
    /// Send `Retry-After` (whole seconds until the refused request would
    /// have passed) with a 429. Upstream promises none: off by default.
    pub retry_after: bool,
}

impl RateLimits {
    /// DigiCert's documented limits: 100 requests per 5 seconds and 1000 per
    /// 5 minutes, rolling, no `Retry-After`.
    pub fn digicert() -> RateLimits {
        RateLimits {
            limits: vec![
                Limit {
                    requests: 100,
                    per: Duration::from_secs(5),
                },
                Limit {
                    requests: 1000,
                    per: Duration::from_secs(300),
                },
            ],
            retry_after: false,
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::digicert()
    }
}

/// A request the rate limits refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottledRequest {
    /// When it arrived (simulator clock).
    pub at: DateTime<Utc>,
    pub method: String,
    /// The path and query, as sent.
    pub uri: String,
}

/// Recent requests per key, newest last; at most as many per key as the
/// largest limit allows, which is all a check needs.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    per_key: HashMap<String, VecDeque<Instant>>,
}

impl Meter {
    /// Counts a request of `key` at `now`. `Err(wait)` when it breaks a
    /// limit: `wait` is how long until it would have passed.
    pub(crate) fn admit(
        &mut self,
        limits: &RateLimits,
        key: &str,
        now: Instant,
    ) -> Result<(), Duration> {
        let keep = limits.limits.iter().map(|l| l.requests).max().unwrap_or(0);
        let seen = self.per_key.entry(key.to_owned()).or_default();
        let mut wait: Option<Duration> = None;
        for limit in &limits.limits {
            let since = now.checked_sub(limit.per);
            let recent = seen.len() - seen.partition_point(|t| since.is_some_and(|s| *t <= s));
            if recent >= limit.requests {
                // The oldest request of the last `requests` must roll out.
                let oldest = seen.get(seen.len() - limit.requests).copied();
                let until = oldest.map_or(Duration::ZERO, |o| (o + limit.per) - now);
                wait = Some(wait.map_or(until, |w| w.max(until)));
            }
        }
        seen.push_back(now);
        while seen.len() > keep {
            seen.pop_front();
        }
        wait.map_or(Ok(()), Err)
    }
}

impl Simulator {
    /// Requests refused with 429 by the rate limits so far, oldest first.
    pub fn throttled(&self) -> Vec<ThrottledRequest> {
        self.lock().throttled.clone()
    }

    /// `Some(wait)` when this request breaks the key's rate limits.
    fn throttle(&self, req: &Request) -> Option<Duration> {
        let limits = self.config().rate_limits.as_ref()?;
        let key = api_key_sent(req.headers())?;
        if key != self.config().api_key {
            return None;
        }
        let mut state = self.lock();
        let wait = state.meter.admit(limits, &key, Instant::now()).err()?;
        let at = self.now();
        state.throttled.push(ThrottledRequest {
            at,
            method: req.method().to_string(),
            uri: req.uri().to_string(),
        });
        Some(wait)
    }
}

/// The layer around every route: refuses what the rate limits do not
/// allow, and stamps every answer with the simulator's `Date`.
pub(crate) async fn gate(State(sim): State<Simulator>, req: Request, next: Next) -> Response {
    let mut response = match sim.throttle(&req) {
        Some(wait) => {
            let mut r = json_response(429, error_body("request_limit_exceeded", LIMIT_MESSAGE));
            if sim
                .config()
                .rate_limits
                .as_ref()
                .is_some_and(|l| l.retry_after)
            {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            r
        }
        None => next.run(req).await,
    };
    // hyper adds its own `Date` only when the answer has none.
    let now = SystemTime::from(sim.now());
    if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
        response.headers_mut().insert(DATE, date);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(requests: usize, secs: u64) -> RateLimits {
        RateLimits {
            limits: vec![Limit {
                requests,
                per: Duration::from_secs(secs),
            }],
            retry_after: false,
        }
    }

    #[test]
    fn a_rolling_window_refuses_the_request_past_the_limit_until_the_first_rolls_out() {
        let mut m = Meter::default();
        let l = limits(3, 10);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(m.admit(&l, "k", t0 + Duration::from_secs(i)), Ok(()));
        }
        // The 4th within 10 s of the 1st: refused until t0 + 10 s.
        assert_eq!(
            m.admit(&l, "k", t0 + Duration::from_secs(4)),
            Err(Duration::from_secs(6))
        );
        // Another key has its own budget.
        assert_eq!(m.admit(&l, "other", t0 + Duration::from_secs(4)), Ok(()));
    }

    #[test]
    fn refused_requests_count_so_hammering_keeps_the_key_locked_out() {
        let mut m = Meter::default();
        let l = limits(2, 10);
        let t0 = Instant::now();
        assert!(m.admit(&l, "k", t0).is_ok());
        assert!(m.admit(&l, "k", t0).is_ok());
        for s in 1..30 {
            assert!(
                m.admit(&l, "k", t0 + Duration::from_secs(s)).is_err(),
                "{s}"
            );
        }
        // Quiet for a whole window: allowed again.
        assert!(m.admit(&l, "k", t0 + Duration::from_secs(45)).is_ok());
    }

    #[test]
    fn the_longest_wait_of_the_broken_limits_is_reported() {
        let mut m = Meter::default();
        let l = RateLimits::digicert();
        let t0 = Instant::now();
        for i in 0..1000u64 {
            // 1000 requests spread over 250 s: never 100 in 5 s.
            assert_eq!(
                m.admit(&l, "k", t0 + Duration::from_millis(i * 250)),
                Ok(())
            );
        }
        let wait = m.admit(&l, "k", t0 + Duration::from_secs(251));
        assert_eq!(wait, Err(Duration::from_secs(49)));
    }
}
