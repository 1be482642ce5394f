//! The retry policy of deliveries: how one attempt's outcome becomes a
//! ledger mark, and the sink-wide breaker that holds a failing receiver.
//! Pure: no I/O, every rule unit-tested in `sink/tests.rs`.

use std::time::Duration;

use tokio::time::Instant;

use super::Outcome;
use crate::backoff;
use crate::config::DeliveryPolicy;
use crate::store::{Mark, OutboxEntry};

/// How an attempt's outcome is written to the ledger. Pure.
///
/// The give-up clock of a delivery starts at its first failed attempt, not
/// when it was queued: a delivery that waited (daemon stopped, sink paused,
/// a long backlog) still gets `give_up_after` worth of retries.
pub fn resolve(
    entry: &OutboxEntry,
    outcome: &Outcome,
    policy: &DeliveryPolicy,
    now: i64,
    unit: f64,
) -> Mark {
    match outcome {
        Outcome::Delivered => Mark::Delivered,
        Outcome::Dead { error } | Outcome::Gone { error } => Mark::Dead {
            error: error.clone(),
        },
        Outcome::Retry { error, retry_after } => {
            let failing_since = entry.first_failure_at.unwrap_or(now);
            if now.saturating_sub(failing_since) >= millis(policy.give_up_after) {
                return Mark::Dead {
                    error: format!(
                        "gave up after {}: {error}",
                        humantime::format_duration(policy.give_up_after)
                    ),
                };
            }
            let delay = backoff::next_delay(
                policy.backoff_initial,
                policy.backoff_max,
                entry.attempts.saturating_add(1),
                *retry_after,
                unit,
            );
            Mark::Retry {
                next_attempt_at: now.saturating_add(millis(delay)),
                error: error.clone(),
            }
        }
    }
}

pub(super) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The shortest pause after a failed round, so a receiver that fails at
/// once is never hammered even with a zero jitter draw.
pub(super) const MIN_HOLD: Duration = Duration::from_millis(100);

/// The sink-wide circuit breaker. Per-delivery backoff alone would let a
/// large backlog hit a dead receiver one row after another; instead, after
/// a failed round the receiver is presumed down: deliveries are held, then
/// only one request at a time goes out (a probe), each after a hold that
/// grows exponentially with full jitter and is never shorter than the
/// receiver's `Retry-After`. The first clean round closes it. Pure state.
#[derive(Debug)]
pub(super) struct Breaker {
    /// Failed rounds in a row.
    pub(super) failures: u32,
    pub(super) hold_until: Instant,
    /// When the current run of failures began (unix ms).
    pub(super) failing_since: Option<i64>,
}

impl Breaker {
    pub(super) fn new(now: Instant) -> Breaker {
        Breaker {
            failures: 0,
            hold_until: now,
            failing_since: None,
        }
    }

    pub(super) fn failing(&self) -> bool {
        self.failures > 0
    }

    pub(super) fn holding(&self, now: Instant) -> bool {
        now < self.hold_until
    }

    /// Requests allowed in flight.
    pub(super) fn limit(&self, concurrency: usize) -> usize {
        if self.failing() { 1 } else { concurrency }
    }

    /// Records a failed round; returns the hold before the next probe.
    pub(super) fn trip(
        &mut self,
        policy: &DeliveryPolicy,
        retry_after: Option<Duration>,
        now: Instant,
        now_ms: i64,
        unit: f64,
    ) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.failing_since.get_or_insert(now_ms);
        let hold = backoff::next_delay(
            policy.backoff_initial,
            policy.backoff_max,
            self.failures,
            retry_after,
            unit,
        )
        .max(MIN_HOLD);
        self.hold_until = now.checked_add(hold).unwrap_or(now + policy.backoff_max);
        hold
    }

    /// Closes the breaker (a clean round, or an operator's `redeliver`);
    /// returns how many failed rounds that ends.
    pub(super) fn close(&mut self, now: Instant) -> u32 {
        let ended = self.failures;
        self.failures = 0;
        self.failing_since = None;
        self.hold_until = now;
        ended
    }
}

/// What one round of finished deliveries amounted to.
#[derive(Debug, Default)]
pub(super) struct Round {
    pub(super) delivered: usize,
    /// Retries, dead deliveries and 410s.
    pub(super) failed: usize,
    pub(super) gone: bool,
    /// The longest `Retry-After` any receiver answer asked for.
    pub(super) retry_after: Option<Duration>,
}
