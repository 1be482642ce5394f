//! The systemd watchdog: fed only while the poller shows progress, so a
//! wedged poller gets the process restarted.

use std::time::Duration;

use crate::metrics::Metrics;
use crate::service;
use crate::transition::now_ms;

/// Margin on top of the longest expected silence of a healthy poller.
const STALL_SLACK: Duration = Duration::from_secs(30);

/// How long the poller may show no sign of progress ([`Metrics::beat`])
/// before it counts as wedged and the systemd watchdog is no longer fed (so
/// systemd restarts it).
///
/// A healthy poller beats every few seconds: idle ticks, before every
/// request, during retry sleeps, after every commit. The longest legitimate
/// silences are one request (bounded by `[digicert] timeout`, body included)
/// and one pacing wait (a request's share of a minute). A limit of only
/// `WatchdogSec=` would restart a daemon whose operator raised the request
/// timeout above it; the limit is never shorter than the watchdog timeout.
pub fn stall_limit(
    watchdog_timeout: Duration,
    request_timeout: Duration,
    requests_per_minute: u32,
) -> Duration {
    let pacing = Duration::from_secs(60) / requests_per_minute.max(1);
    watchdog_timeout.max(request_timeout + pacing + STALL_SLACK)
}

/// Feeds the watchdog on each tick while the poller makes progress.
pub struct Watchdog {
    /// How often systemd wants a ping (half its timeout); `None` outside
    /// systemd or without `WatchdogSec=`.
    pub interval: Option<Duration>,
}

impl Watchdog {
    pub fn from_env() -> Watchdog {
        Watchdog {
            interval: service::watchdog_interval(),
        }
    }

    /// One tick: ping systemd unless the poller has been quiet longer than
    /// the stall limit of the running configuration.
    pub fn tick(&self, metrics: &Metrics, request_timeout: Duration, requests_per_minute: u32) {
        // Pinged every half timeout, so the timeout is twice that.
        let timeout = self.interval.map_or(Duration::MAX, |w| w * 2);
        let limit = stall_limit(timeout, request_timeout, requests_per_minute);
        let quiet = metrics.since_beat_ms(now_ms());
        if quiet < i64::try_from(limit.as_millis()).unwrap_or(i64::MAX) {
            service::watchdog();
        } else {
            tracing::error!(
                quiet_ms = quiet,
                limit_ms = limit.as_millis() as u64,
                "the poller made no progress; not feeding the watchdog so systemd restarts us"
            );
            service::status(&format!(
                "poller stalled for {}s; waiting for the watchdog",
                quiet / 1000
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stall_limit_covers_one_request_and_one_pacing_wait() {
        let s = Duration::from_secs;
        // Default config: a 30 s request timeout, 60 requests a minute.
        assert_eq!(stall_limit(s(120), s(30), 60), s(120));
        // A request timeout above the watchdog timeout must not get us killed.
        assert_eq!(stall_limit(s(60), s(300), 60), s(331));
        // Slow pacing: one request a minute.
        assert_eq!(stall_limit(s(10), s(30), 1), s(120));
    }
}
