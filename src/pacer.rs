//! Client-side pacing of CertCentral requests.
//!
//! DigiCert limits each API key to 1000 requests per 5 minutes and 100 per
//! 5 seconds, and answers everything with 429 for a while once they are
//! exceeded. Catch-up windows, pages and `cancel` therefore share one
//! [`Pacer`]: a GCRA (virtual scheduling) limiter with a small burst, plus a
//! shared "nobody sends before" instant that a 429 pushes back for everyone.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The burst allowance: a cycle's first few requests go out at once.
pub const BURST: u32 = 5;

/// Shared request budget.
#[derive(Debug)]
pub struct Pacer {
    state: Mutex<Gcra>,
}

#[derive(Debug)]
struct Gcra {
    /// Time between requests at the steady rate.
    emission: Duration,
    /// How far ahead of `now` the theoretical arrival time may run.
    tolerance: Duration,
    /// Theoretical arrival time of the next request.
    tat: Option<Instant>,
    /// No request before this instant (set after a 429).
    blocked_until: Option<Instant>,
}

impl Gcra {
    /// Reserves the next slot and returns how long to wait for it.
    fn reserve(&mut self, now: Instant) -> Duration {
        let earliest = match self.blocked_until {
            Some(b) if b > now => b,
            _ => now,
        };
        let tat = self.tat.map_or(earliest, |t| t.max(earliest));
        let allowed_at = tat
            .checked_sub(self.tolerance)
            .unwrap_or(earliest)
            .max(earliest);
        self.tat = Some(tat + self.emission);
        allowed_at.saturating_duration_since(now)
    }
}

impl Pacer {
    pub fn new(requests_per_minute: u32) -> Pacer {
        let rpm = requests_per_minute.max(1);
        let emission = Duration::from_secs(60) / rpm;
        Pacer {
            state: Mutex::new(Gcra {
                emission,
                tolerance: emission * (BURST - 1),
                tat: None,
                blocked_until: None,
            }),
        }
    }

    /// Waits until one more request may be sent.
    pub async fn acquire(&self) {
        let wait = self.lock().reserve(Instant::now());
        if !wait.is_zero() {
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "pacing CertCentral requests"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// After a 429: nobody sends for `pause`, and the burst is spent.
    pub fn back_off(&self, pause: Duration) {
        let mut g = self.lock();
        let now = Instant::now();
        // A `Retry-After` of years must not overflow the clock.
        let until = now
            .checked_add(pause)
            .unwrap_or(now + Duration::from_secs(24 * 3600));
        g.blocked_until = Some(g.blocked_until.map_or(until, |b| b.max(until)));
        g.tat = Some(until + g.tolerance);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Gcra> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gcra(rpm: u32) -> Gcra {
        let emission = Duration::from_secs(60) / rpm;
        Gcra {
            emission,
            tolerance: emission * (BURST - 1),
            tat: None,
            blocked_until: None,
        }
    }

    #[test]
    fn a_burst_goes_out_at_once_then_requests_are_spaced() {
        let mut g = gcra(60);
        let now = Instant::now();
        for _ in 0..BURST {
            assert_eq!(g.reserve(now), Duration::ZERO);
        }
        assert_eq!(g.reserve(now), Duration::from_secs(1));
        assert_eq!(g.reserve(now), Duration::from_secs(2));
    }

    #[test]
    fn no_window_of_five_minutes_holds_more_than_digicert_allows() {
        // At the highest configurable rate, count reservations per rolling 5 min.
        let mut g = gcra(crate::config::MAX_REQUESTS_PER_MINUTE);
        let start = Instant::now();
        let mut sent = Vec::new();
        let mut now = start;
        while now < start + Duration::from_secs(900) {
            let wait = g.reserve(now);
            now += wait;
            sent.push(now);
        }
        let five = Duration::from_secs(300);
        let five_s = Duration::from_secs(5);
        for (i, t) in sent.iter().enumerate() {
            let in_5m = sent[i..].iter().take_while(|u| **u < *t + five).count();
            let in_5s = sent[i..].iter().take_while(|u| **u < *t + five_s).count();
            assert!(in_5m <= 1000, "{in_5m} requests in 5 minutes");
            assert!(in_5s <= 100, "{in_5s} requests in 5 seconds");
        }
    }

    #[test]
    fn back_off_blocks_everyone_until_the_pause_ends() {
        let p = Pacer::new(60);
        p.back_off(Duration::from_secs(5));
        let wait = p.lock().reserve(Instant::now());
        assert!(
            wait > Duration::from_secs(4) && wait <= Duration::from_secs(5),
            "{wait:?}"
        );
    }
}
