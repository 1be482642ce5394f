//! The retry policy of deliveries: how one attempt's outcome becomes a
//! ledger mark, and the sink-wide breaker that holds a failing receiver.
//! Pure: no I/O, every rule unit-tested below.

use std::time::Duration;

use tokio::time::Instant;

use super::kind::Outcome;
use crate::backoff;
use crate::store::{Mark, OutboxEntry};

/// How failed deliveries of one sink are retried and when they are given
/// up (`backoff_initial`, `backoff_max`, `give_up_after`; the same keys
/// for every kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub give_up_after: Duration,
}

/// A delivery as far as its retries go: an order transition's or an
/// alert's, which follow the same rules.
pub trait Attempted {
    /// Attempts made so far.
    fn attempts(&self) -> u32;
    /// When the first attempt failed (unix ms), if one did.
    fn first_failure_at(&self) -> Option<i64>;
}

impl Attempted for OutboxEntry {
    fn attempts(&self) -> u32 {
        self.attempts
    }
    fn first_failure_at(&self) -> Option<i64> {
        self.first_failure_at
    }
}

impl Attempted for crate::store::AlertEntry {
    fn attempts(&self) -> u32 {
        self.attempts
    }
    fn first_failure_at(&self) -> Option<i64> {
        self.first_failure_at
    }
}

/// How an attempt's outcome is written to the ledger. Pure.
///
/// The give-up clock of a delivery starts at its first failed attempt, not
/// when it was queued: a delivery that waited (daemon stopped, sink paused,
/// a long backlog) still gets `give_up_after` worth of retries.
pub fn resolve(
    entry: &impl Attempted,
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
            let failing_since = entry.first_failure_at().unwrap_or(now);
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
                entry.attempts().saturating_add(1),
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
/// receiver's `Retry-After`. A probe that succeeds closes it. Pure state.
///
/// Only answers to requests sent since the breaker last changed (its
/// [`Breaker::epoch`]) move it: at a concurrency of 8, the other 7 requests
/// sent before the first failure are still out, and their answers say
/// nothing new. Such a success does not close the breaker (it would end a
/// `Retry-After` hold early), and such failures do not lengthen the hold
/// one step each (8 of them would hold for 2^7 initial backoffs); their
/// `Retry-After` is still honoured.
#[derive(Debug)]
pub(super) struct Breaker {
    /// Failed rounds in a row.
    pub(super) failures: u32,
    pub(super) hold_until: Instant,
    /// When the current run of failures began (unix ms).
    pub(super) failing_since: Option<i64>,
    /// Counts trips and closes; a request carries the epoch it was sent in.
    pub(super) epoch: u64,
}

impl Breaker {
    pub(super) fn new(now: Instant) -> Breaker {
        Breaker {
            failures: 0,
            hold_until: now,
            failing_since: None,
            epoch: 0,
        }
    }

    /// Whether a request sent in `epoch` was sent since the last change.
    pub(super) fn fresh(&self, epoch: u64) -> bool {
        epoch == self.epoch
    }

    /// An answer to an older request asked to wait `retry_after`: the hold
    /// lasts at least that long, without counting as another failed round.
    pub(super) fn honour(&mut self, retry_after: Option<Duration>, now: Instant) {
        if let Some(wait) = retry_after
            && self.failing()
            && let Some(until) = now.checked_add(wait)
        {
            self.hold_until = self.hold_until.max(until);
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
        let until = now.checked_add(hold).unwrap_or(now + policy.backoff_max);
        // A longer hold already asked for (a `Retry-After`) stands.
        self.hold_until = self.hold_until.max(until);
        self.epoch += 1;
        self.hold_until.saturating_duration_since(now)
    }

    /// Closes the breaker (a clean round, or an operator's `redeliver`);
    /// returns how many failed rounds that ends.
    pub(super) fn close(&mut self, now: Instant) -> u32 {
        let ended = self.failures;
        self.failures = 0;
        self.failing_since = None;
        self.hold_until = now;
        self.epoch += 1;
        ended
    }
}

/// What one round of finished deliveries amounted to.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Round {
    pub(super) delivered: usize,
    /// Retries, dead deliveries and 410s.
    pub(super) failed: usize,
    pub(super) gone: bool,
    /// The longest `Retry-After` any receiver answer asked for.
    pub(super) retry_after: Option<Duration>,
}

impl Round {
    /// Both rounds as one.
    pub(super) fn and(self, other: Round) -> Round {
        Round {
            delivered: self.delivered + other.delivered,
            failed: self.failed + other.failed,
            gone: self.gone || other.gone,
            retry_after: self.retry_after.max(other.retry_after),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transition::TransitionRow;

    fn entry(attempts: u32, created_at: i64) -> OutboxEntry {
        OutboxEntry {
            attempts,
            created_at,
            first_failure_at: None,
            transition: TransitionRow {
                seq: 1,
                order_id: 264,
                status: "issued".into(),
                occurrence: 0,
                certificate_id: Some(1),
                previous_status: None,
                seen_at: created_at,
                details: None,
            },
        }
    }

    fn policy() -> DeliveryPolicy {
        DeliveryPolicy {
            backoff_initial: Duration::from_secs(5),
            backoff_max: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(3 * 86400),
        }
    }

    fn retry(retry_after: Option<Duration>) -> Outcome {
        Outcome::Retry {
            error: "HTTP 503: busy".into(),
            retry_after,
        }
    }

    #[test]
    fn a_retry_is_scheduled_within_the_exponential_bound() {
        let now = 1_000_000;
        for attempts in 0..6u32 {
            let Mark::Retry {
                next_attempt_at, ..
            } = resolve(&entry(attempts, now), &retry(None), &policy(), now, 0.999)
            else {
                panic!("expected a retry");
            };
            let bound = 5_000i64 << attempts;
            assert!(
                next_attempt_at - now <= bound && next_attempt_at - now > bound / 2,
                "attempt {attempts}"
            );
        }
    }

    #[test]
    fn retry_after_wins_over_a_shorter_backoff() {
        let Mark::Retry {
            next_attempt_at, ..
        } = resolve(
            &entry(0, 0),
            &retry(Some(Duration::from_secs(120))),
            &policy(),
            0,
            0.0,
        )
        else {
            panic!("expected a retry");
        };
        assert_eq!(next_attempt_at, 120_000);
    }

    #[test]
    fn failures_after_give_up_after_are_dead() {
        let first_failure = 1_000;
        let now = first_failure + 3 * 86_400_000;
        let failing = OutboxEntry {
            first_failure_at: Some(first_failure),
            ..entry(40, 0)
        };
        let mark = resolve(&failing, &retry(None), &policy(), now, 0.5);
        assert!(
            matches!(&mark, Mark::Dead { error } if error.contains("gave up after 3days") && error.contains("503")),
            "{mark:?}"
        );
        let not_yet = resolve(&failing, &retry(None), &policy(), now - 1, 0.5);
        assert!(matches!(not_yet, Mark::Retry { .. }), "{not_yet:?}");
    }

    #[test]
    fn the_give_up_clock_starts_at_the_first_failure_not_at_queueing() {
        // Queued four days ago (daemon stopped), failing for the first time now.
        let now = 4 * 86_400_000;
        let mark = resolve(&entry(0, 0), &retry(None), &policy(), now, 0.5);
        assert!(matches!(mark, Mark::Retry { .. }), "{mark:?}");
    }

    #[test]
    fn the_breaker_sends_one_probe_at_a_time_and_honours_retry_after() {
        let t0 = Instant::now();
        let mut b = Breaker::new(t0);
        assert_eq!(b.limit(8), 8);
        assert!(!b.holding(t0));
        // A zero jitter draw still holds a little; Retry-After is a floor.
        let hold = b.trip(&policy(), None, t0, 5, 0.0);
        assert_eq!(hold, MIN_HOLD);
        assert_eq!(b.limit(8), 1);
        assert!(b.holding(t0) && !b.holding(t0 + hold));
        let hold = b.trip(&policy(), Some(Duration::from_secs(30)), t0, 9, 0.0);
        assert_eq!(hold, Duration::from_secs(30));
        assert_eq!(
            b.failing_since,
            Some(5),
            "the failure run started at the first trip"
        );
        assert_eq!(b.close(t0), 2);
        assert_eq!(b.limit(8), 8);
        assert_eq!(b.failing_since, None);
        assert!(!b.holding(t0));
    }

    #[test]
    fn a_later_trip_or_an_older_answer_never_shortens_a_retry_after_hold() {
        let t0 = Instant::now();
        let mut b = Breaker::new(t0);
        let sent = b.epoch;
        b.trip(&policy(), Some(Duration::from_secs(60)), t0, 0, 0.5);
        assert!(!b.fresh(sent), "requests sent before the trip are older");
        // A 503 without Retry-After from the next probe: not sooner than 60 s.
        let t1 = t0 + Duration::from_secs(1);
        let hold = b.trip(&policy(), None, t1, 0, 0.0);
        assert_eq!(hold, Duration::from_secs(59));
        assert!(b.holding(t0 + Duration::from_millis(59_999)));
        // An older request's 429 asks for longer: the hold grows to it, and
        // no failed round is added.
        b.honour(Some(Duration::from_secs(120)), t1);
        assert_eq!(b.failures, 2);
        assert!(
            b.holding(t1 + Duration::from_millis(119_999))
                && !b.holding(t1 + Duration::from_secs(120))
        );
        let before = b.epoch;
        b.close(t1);
        assert!(!b.fresh(before), "a close starts another epoch too");
        // Closed, an older answer's Retry-After holds nothing.
        b.honour(Some(Duration::from_secs(30)), t1);
        assert!(!b.holding(t1));
    }

    #[test]
    fn breaker_holds_grow_exponentially_up_to_backoff_max() {
        let t0 = Instant::now();
        let mut b = Breaker::new(t0);
        let holds: Vec<Duration> = (0..14)
            .map(|_| b.trip(&policy(), None, t0, 0, 0.999_999))
            .collect();
        assert!(holds.windows(2).all(|w| w[0] <= w[1]), "{holds:?}");
        assert!(holds[0] <= Duration::from_secs(5));
        assert!(holds[13] <= Duration::from_secs(3600) && holds[13] > Duration::from_secs(3500));
    }

    #[test]
    fn gone_and_dead_outcomes_are_dead_marks() {
        let gone = resolve(
            &entry(0, 0),
            &Outcome::Gone {
                error: "HTTP 410".into(),
            },
            &policy(),
            0,
            0.5,
        );
        assert_eq!(
            gone,
            Mark::Dead {
                error: "HTTP 410".into()
            }
        );
        let dead = resolve(
            &entry(0, 0),
            &Outcome::Dead {
                error: "HTTP 400".into(),
            },
            &policy(),
            0,
            0.5,
        );
        assert_eq!(
            dead,
            Mark::Dead {
                error: "HTTP 400".into()
            }
        );
        assert_eq!(
            resolve(&entry(3, 0), &Outcome::Delivered, &policy(), 0, 0.5),
            Mark::Delivered
        );
    }
}
