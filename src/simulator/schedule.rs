//! Order statuses, the transitions CertCentral allows between them, and the
//! seeded random changes that make the simulator look like a live account.
//!
//! Every random decision about *what* changes comes from one `StdRng` seeded
//! with `SimulatorConfig::seed`, so two simulators with the same seed produce
//! the same sequence of `(order_id, status)` changes. *When* the background
//! schedule fires comes from a second, separately seeded generator, so the
//! sequence of changes does not depend on timing.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::Simulator;
use super::book::OrderBook;
use super::status::{CERTIFICATE_ID_OFFSET, Status};

/// Probability that a random change creates a new order rather than advancing
/// an existing one (when there is anything left to advance).
const NEW_ORDER_PROBABILITY: f64 = 0.3;

/// Largest number of changes one wake-up of the background schedule applies,
/// so an absurd `rate_per_min` cannot stall the simulator.
const MAX_BATCH: usize = 10_000;

/// Picks one of `choices` with probability proportional to its weight.
fn pick_weighted(rng: &mut StdRng, choices: &[(Status, u32)]) -> Option<Status> {
    let total: u32 = choices.iter().map(|(_, w)| w).sum();
    if total == 0 {
        return None;
    }
    let mut r = rng.random_range(0..total);
    for (status, weight) in choices {
        if r < *weight {
            return Some(status.clone());
        }
        r -= weight;
    }
    None
}

/// The status a brand-new order starts in.
fn initial_status(rng: &mut StdRng) -> Status {
    if rng.random_bool(0.8) {
        Status::Pending
    } else {
        Status::NeedsApproval
    }
}

/// Applies one random change at `at`: either a new order or one step of an
/// existing non-terminal order. Returns the order id and its new status.
pub(crate) fn random_change(
    book: &mut OrderBook,
    rng: &mut StdRng,
    at: DateTime<Utc>,
) -> (i64, Status) {
    let active = book.active_ids();
    if !active.is_empty() && !rng.random_bool(NEW_ORDER_PROBABILITY) {
        let id = active[rng.random_range(0..active.len())];
        if let Some((certificate_id, current)) = book.current(id)
            && let Some(next) = pick_weighted(rng, current.next_choices())
        {
            book.set_status(id, certificate_id, next.clone(), at);
            return (id, next);
        }
    }
    let id = book.allocate_order_id();
    let status = initial_status(rng);
    book.set_status(id, id + CERTIFICATE_ID_OFFSET, status.clone(), at);
    (id, status)
}

/// Creates `count` orders whose histories (one to three changes each) lie
/// within the hour before `now`, so a fresh simulator already has something
/// for a first `minutes=60` poll to find.
pub(crate) fn seed_initial_orders(
    book: &mut OrderBook,
    rng: &mut StdRng,
    count: usize,
    now: DateTime<Utc>,
) {
    const HOUR_MICROS: i64 = 3_600_000_000;
    for _ in 0..count {
        let id = book.allocate_order_id();
        let certificate_id = id + CERTIFICATE_ID_OFFSET;
        let mut at = now - TimeDelta::microseconds(rng.random_range(0..HOUR_MICROS));
        let mut status = initial_status(rng);
        book.set_status(id, certificate_id, status.clone(), at);
        let steps = rng.random_range(0..=2u32);
        for _ in 0..steps {
            let Some(next) = pick_weighted(rng, status.next_choices()) else {
                break;
            };
            let left = (now - at).num_microseconds().unwrap_or(0).max(1);
            at += TimeDelta::microseconds(rng.random_range(0..left));
            book.set_status(id, certificate_id, next.clone(), at);
            status = next;
        }
    }
}

/// An exponentially distributed delay with the given mean: the gaps between
/// events of a Poisson process, which is what "n changes per minute on
/// average" means.
fn exponential_delay(rng: &mut StdRng, mean_secs: f64) -> Duration {
    let u: f64 = rng.random();
    let secs = -(1.0 - u).ln() * mean_secs;
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::from_secs(86_400))
}

/// The background schedule: `rate_per_min` random changes per minute on
/// average until the task is aborted. Changes that fell due while the task
/// was asleep are applied together, so high rates are honoured on average
/// even though timers have millisecond granularity.
pub(crate) async fn run(sim: Simulator, rate_per_min: f64, seed: u64) {
    if !(rate_per_min.is_finite() && rate_per_min > 0.0) {
        return;
    }
    let mean_secs = 60.0 / rate_per_min;
    let mut rng = StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut next = tokio::time::Instant::now() + exponential_delay(&mut rng, mean_secs);
    loop {
        tokio::time::sleep_until(next).await;
        let now = tokio::time::Instant::now();
        let mut due = 0;
        while next <= now && due < MAX_BATCH {
            due += 1;
            next += exponential_delay(&mut rng, mean_secs);
        }
        if next < now {
            next = now;
        }
        let changes = sim.random_changes(due);
        tracing::debug!(count = changes.len(), "simulator applied random changes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip() {
        for name in [
            "pending",
            "waiting_pickup",
            "needs_approval",
            "issued",
            "rejected",
            "canceled",
            "revoked",
            "expired",
            "brand_new_status",
        ] {
            assert_eq!(Status::parse(name).as_str(), name);
        }
    }

    #[test]
    fn terminal_statuses_have_no_next_status() {
        for s in ["rejected", "canceled", "revoked", "expired", "weird"] {
            assert!(Status::parse(s).is_terminal(), "{s}");
        }
        for s in ["pending", "needs_approval", "waiting_pickup", "issued"] {
            assert!(!Status::parse(s).is_terminal(), "{s}");
        }
    }

    #[test]
    fn only_pending_and_waiting_pickup_are_cancelable() {
        assert!(Status::Pending.is_cancelable());
        assert!(Status::WaitingPickup.is_cancelable());
        assert!(!Status::Issued.is_cancelable());
        assert!(!Status::NeedsApproval.is_cancelable());
    }

    #[test]
    fn random_changes_follow_allowed_transitions() {
        let mut book = OrderBook::new(1000);
        let mut rng = StdRng::seed_from_u64(7);
        let start = Utc::now();
        for i in 0..2000 {
            let at = start + TimeDelta::seconds(i);
            let before = book.len();
            let (id, status) = random_change(&mut book, &mut rng, at);
            let history = book.history(id);
            if book.len() > before {
                assert_eq!(history.len(), 1);
                assert!(matches!(status, Status::Pending | Status::NeedsApproval));
            } else {
                let previous = &history[history.len() - 2].1;
                assert!(
                    previous.next_choices().iter().any(|(s, _)| *s == status),
                    "{previous:?} -> {status:?}"
                );
            }
        }
    }

    #[test]
    fn initial_orders_lie_within_the_last_hour() {
        let mut book = OrderBook::new(1000);
        let mut rng = StdRng::seed_from_u64(3);
        let now = Utc::now();
        seed_initial_orders(&mut book, &mut rng, 200, now);
        assert_eq!(book.len(), 200);
        for id in 1000..1200 {
            for (at, _) in book.history(id) {
                assert!(at <= now && at >= now - TimeDelta::hours(1), "{at}");
            }
        }
    }

    #[test]
    fn exponential_delays_average_to_the_mean() {
        let mut rng = StdRng::seed_from_u64(11);
        let n = 20_000;
        let total: f64 = (0..n)
            .map(|_| exponential_delay(&mut rng, 2.0).as_secs_f64())
            .sum();
        let mean = total / f64::from(n);
        assert!((mean - 2.0).abs() < 0.1, "mean {mean}");
    }
}
