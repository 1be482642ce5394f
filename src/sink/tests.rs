use super::*;
use crate::store::TransitionRow;

fn entry(attempts: u32, created_at: i64) -> OutboxEntry {
    OutboxEntry {
        attempts,
        created_at,
        transition: TransitionRow {
            seq: 1,
            order_id: 264,
            status: "issued".into(),
            certificate_id: Some(1),
            previous_status: None,
            seen_at: created_at,
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
    let created = 0;
    let now = 3 * 86_400_000;
    let mark = resolve(&entry(40, created), &retry(None), &policy(), now, 0.5);
    assert!(
        matches!(&mark, Mark::Dead { error } if error.contains("gave up after 3days") && error.contains("503")),
        "{mark:?}"
    );
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
