//! Metrics: bounded label sets, health after missed intervals, the leader gauge, every family rendered, sinks removed by a reload.

use super::*;

#[test]
fn hostile_statuses_and_codes_cannot_mint_metric_series() {
    let m = Metrics::new(Duration::from_secs(60));
    m.transitions("issued", 1);
    m.transitions("a%0Ab", 1);
    for i in 0..10_000 {
        m.transitions(&format!("s{i}"), 1);
        m.api_error(&format!("code_{i}"));
    }
    let text = m.render(&[], None, 0);
    assert!(text.contains("orderwatch_transitions_total{status=\"issued\"} 1"));
    assert!(text.contains("status=\"other\""), "{text}");
    assert!(text.contains("code=\"other\""), "{text}");
    let series = text
        .lines()
        .filter(|l| l.starts_with("orderwatch_"))
        .count();
    assert!(series < 200, "{series} series");
}

#[test]
fn health_turns_bad_after_three_intervals_without_success() {
    let m = Metrics::new(Duration::from_secs(60));
    let start = m.started_ms.load(Ordering::Relaxed);
    assert!(m.health(start + 1000).is_ok());
    assert!(m.health(start + 181_000).is_err());
    m.poll_ok(start + 200_000);
    assert!(m.health(start + 300_000).is_ok());
    let reason = m.health(start + 381_000).unwrap_err();
    assert!(reason.contains("181s ago"), "{reason}");
}

#[test]
fn a_new_term_is_starting_until_its_first_poll_and_the_gauge_says_who_leads() {
    let m = Metrics::new(Duration::from_secs(60));
    m.poll_ok(1_000);
    m.set_leading(false, 2_000);
    assert!(m.render(&[], None, 0).contains("orderwatch_leader 0"));
    // Taking over long after the last poll of an earlier term.
    m.set_leading(true, 1_000_000);
    assert_eq!(
        m.health(1_010_000).unwrap(),
        "starting: no poll has completed yet"
    );
    assert!(m.health(1_181_000).is_err());
    assert!(m.render(&[], None, 0).contains("orderwatch_leader 1"));
}

#[test]
fn render_contains_every_family() {
    let m = Metrics::new(Duration::from_secs(60));
    m.poll_ok(1000);
    m.api_error("invalid_api_key");
    m.transitions("issued", 3);
    m.delivery("ops", "delivered", 2);
    let text = m.render(
        &[SinkStats {
            sink: "ops".into(),
            pending: 4,
            dead: 1,
            oldest_pending: Some(0),
            paused: false,
        }],
        Some(0),
        10_000,
    );
    for needle in [
        "orderwatch_polls_total{outcome=\"ok\"} 1",
        "orderwatch_api_errors_total{code=\"invalid_api_key\"} 1",
        "orderwatch_transitions_total{status=\"issued\"} 3",
        "orderwatch_deliveries_total{sink=\"ops\",outcome=\"delivered\"} 2",
        "orderwatch_outbox_depth{sink=\"ops\"} 4",
        "orderwatch_outbox_dead{sink=\"ops\"} 1",
        "orderwatch_outbox_oldest_pending_age_seconds{sink=\"ops\"} 10",
        "orderwatch_cursor_lag_seconds 10",
        "orderwatch_last_successful_poll_timestamp_seconds 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[test]
fn a_sink_removed_by_a_reload_loses_its_gauges_but_keeps_its_counters() {
    let m = Metrics::new(Duration::from_secs(60));
    m.delivery("old", "delivered", 1);
    let stats = |name: &str| SinkStats {
        sink: name.into(),
        pending: 2,
        dead: 0,
        oldest_pending: None,
        paused: false,
    };
    let before = m.render(&[stats("old")], None, 0);
    assert!(
        before.contains("orderwatch_outbox_depth{sink=\"old\"} 2"),
        "{before}"
    );
    let after = m.render(&[stats("new")], None, 0);
    assert!(
        !after.contains("orderwatch_outbox_depth{sink=\"old\"}"),
        "{after}"
    );
    assert!(
        after.contains("orderwatch_outbox_depth{sink=\"new\"} 2"),
        "{after}"
    );
    assert!(
        after.contains("orderwatch_deliveries_total{sink=\"old\",outcome=\"delivered\"} 1"),
        "{after}"
    );
}
