//! CertCentral failing in every way it can: connection refused, timeouts,
//! 5xx, HTML instead of JSON, truncated bodies, a wrong key,
//! `time_frame_too_long`, rate limiting. Each is logged with the API's error
//! code, never panics, and never records anything or moves the cursor;
//! transient ones are retried within the cycle, and once the fault clears
//! the next cycle delivers every transition exactly once.

use std::process::Output;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::support::sim::{Fault, RecordedQuery};
use crate::support::{World, eventually, free_port, ids, output_within, text};

/// Retries per request configured below: a fault queued `RETRIES + 1` times
/// fails the cycle.
const RETRIES: usize = 3;

/// A [primed](World::prime) world whose requests are retried quickly and
/// time out after a second.
async fn primed() -> World {
    let mut w = World::new().await;
    w.file_sink()
        .set("digicert.retries", RETRIES as i64)
        .set("digicert.retry_max", "300ms")
        .set("digicert.timeout", "1s");
    w.prime();
    w
}

/// Requests the simulator saw since `from` of them.
fn queries_since(w: &World, from: usize) -> Vec<RecordedQuery> {
    w.sim.queries()[from..].to_vec()
}

/// `run --once` that must fail: exit 1, the code in the log, no panic,
/// nothing recorded or delivered, the cursor where it was.
fn fails_cleanly(w: &World, out: &Output, code: &str, cursor_before: Option<DateTime<Utc>>) {
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status; log:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("poll cycle failed") && l.contains(&format!("code={code}"))),
        "no failed cycle with code {code} in the log:\n{log}"
    );
    assert_eq!(w.recorded_ids(), vec!["1:pending"], "{log}");
    assert_eq!(w.file_ids(), vec!["1:pending"]);
    assert_eq!(w.cursor(), cursor_before, "the cursor moved");
}

/// The next cycle after the fault: both waiting transitions, once each.
fn recovers(w: &World) {
    w.once();
    assert_delivered_once(w);
}

fn assert_delivered_once(w: &World) {
    let expected = vec!["1:pending", "1:issued", "2:pending"];
    assert_eq!(w.recorded_ids(), expected);
    let events = w.file_events();
    assert_eq!(ids(&events), expected);
    assert_eq!(events[1]["data"]["previous_status"], "pending");
}

/// The number of "retrying" warnings in a log.
fn retries_logged(out: &Output) -> usize {
    text(&out.stderr)
        .lines()
        .filter(|l| l.contains("CertCentral request failed; retrying"))
        .count()
}

/// Queues `fault` for every attempt of the next request, fails a cycle on it,
/// then lets the next cycle recover.
async fn persistent_transient_fault(fault: Fault, code: &str) {
    let w = primed().await;
    let before = w.cursor();
    let asked = w.sim.queries().len();
    for _ in 0..=RETRIES {
        w.sim.push_fault(fault.clone());
    }
    let out = w.run(&["run", "--once"]);
    fails_cleanly(&w, &out, code, before);
    assert_eq!(
        queries_since(&w, asked).len(),
        RETRIES + 1,
        "a transient fault is retried {RETRIES} times within the cycle"
    );
    assert_eq!(retries_logged(&out), RETRIES);
    recovers(&w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_fails_the_cycle_and_the_next_one_recovers() {
    let mut w = primed().await;
    let before = w.cursor();
    let closed = format!("http://127.0.0.1:{}/services/v2", free_port());
    w.set("digicert.base_url", closed);

    let out = w.run(&["run", "--once"]);
    fails_cleanly(&w, &out, "network", before);
    assert_eq!(retries_logged(&out), RETRIES);

    let simulator = w.sim.base_url();
    w.set("digicert.base_url", simulator);
    recovers(&w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_api_times_out_and_the_next_cycle_recovers() {
    persistent_transient_fault(Fault::Hang(Duration::from_secs(30)), "timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_on_every_attempt_fails_the_cycle_and_the_next_one_recovers() {
    persistent_transient_fault(
        Fault::status(503, "service_unavailable"),
        "service_unavailable",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_error_page_fails_the_cycle_with_the_http_status() {
    persistent_transient_fault(Fault::html(502), "http_502").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_page_with_status_200_is_not_taken_for_an_answer() {
    persistent_transient_fault(Fault::html(200), "malformed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_answer_fails_the_cycle_and_the_next_one_recovers() {
    persistent_transient_fault(Fault::Truncated, "malformed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_transient_fault_of_each_kind_is_retried_within_the_cycle() {
    let mut w = primed().await;
    let faults = [
        Fault::Hang(Duration::from_secs(30)),
        // The whole answer would take longer than the 1 s timeout.
        Fault::SlowBody(Duration::from_millis(200)),
        Fault::status(503, "service_unavailable"),
        Fault::html(502),
        Fault::Truncated,
    ];
    let asked = w.sim.queries().len();
    let n = faults.len();
    for f in faults {
        w.sim.push_fault(f);
    }
    // Each fault costs one attempt; with more retries than faults the
    // cycle gets through.
    w.set("digicert.retries", n as i64);
    let out = w.once();
    assert_eq!(retries_logged(&out), n, "{}", text(&out.stderr));
    let log = text(&out.stderr);
    let codes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CertCentral request failed; retrying"))
        .filter_map(|l| l.split("code=").nth(1)?.split_whitespace().next())
        .collect();
    assert_eq!(
        codes,
        [
            "timeout",
            "timeout",
            "service_unavailable",
            "http_502",
            "malformed"
        ]
    );
    let asked = queries_since(&w, asked);
    assert_eq!(asked.len(), n + 1);
    assert_eq!(asked[n].status, 200);
    assert_delivered_once(&w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_api_key_fails_the_cycle_at_once_with_invalid_api_key() {
    let w = primed().await;
    let before = w.cursor();
    let asked = w.sim.queries().len();
    let mut cmd = w.command(&["run", "--once"]);
    cmd.env("OW_TEST_KEY", "not-the-key");
    let out = output_within(cmd, Duration::from_secs(60));
    fails_cleanly(&w, &out, "invalid_api_key", before);
    let log = text(&out.stderr);
    assert!(!log.contains("not-the-key"), "the key was logged:\n{log}");
    let asked = queries_since(&w, asked);
    assert_eq!(asked.len(), 1, "a 401 is not retried: {asked:#?}");
    assert_eq!(asked[0].status, 401);
    assert_eq!(asked[0].api_key_sent.as_deref(), Some("not-the-key"));
    assert_eq!(retries_logged(&out), 0);
    recovers(&w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_frame_too_long_fails_the_cycle_at_once() {
    let w = primed().await;
    let before = w.cursor();
    let asked = w.sim.queries().len();
    w.sim.push_fault(Fault::status(400, "time_frame_too_long"));
    let out = w.run(&["run", "--once"]);
    fails_cleanly(&w, &out, "time_frame_too_long", before);
    assert_eq!(queries_since(&w, asked).len(), 1, "a 400 is not retried");
    assert_eq!(retries_logged(&out), 0);
    recovers(&w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_no_sooner_than_its_retry_after() {
    let w = primed().await;
    let asked = w.sim.queries().len();
    w.sim.push_fault(Fault::rate_limited(Some(2)));
    let out = w.once();
    let log = text(&out.stderr);
    assert!(log.contains("code=request_limit_exceeded"), "{log}");
    let asked = queries_since(&w, asked);
    assert_eq!(asked.len(), 2, "{asked:#?}");
    assert_eq!((asked[0].status, asked[1].status), (429, 200));
    let waited = asked[1].at - asked[0].at;
    assert!(
        waited >= chrono::TimeDelta::seconds(2),
        "retried after {waited}, before Retry-After: 2"
    );
    assert_delivered_once(&w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_without_retry_after_backs_off_from_five_seconds() {
    let w = primed().await;
    let asked = w.sim.queries().len();
    w.sim.push_fault(Fault::rate_limited(None));
    let out = w.once();
    assert!(
        text(&out.stderr).contains("code=request_limit_exceeded"),
        "{}",
        text(&out.stderr)
    );
    let asked = queries_since(&w, asked);
    assert_eq!(asked.len(), 2, "{asked:#?}");
    assert_eq!((asked[0].status, asked[1].status), (429, 200));
    let waited = asked[1].at - asked[0].at;
    assert!(
        waited >= chrono::TimeDelta::seconds(5),
        "retried after {waited}; request_limit_exceeded backs off from 5 s"
    );
    assert_delivered_once(&w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_keeps_polling_through_permanent_errors_and_then_delivers() {
    let w = primed().await;
    let asked = w.sim.queries().len();
    for _ in 0..3 {
        w.sim.push_fault(Fault::status(400, "time_frame_too_long"));
    }
    let mut daemon = w.spawn_ready().await;
    let delivered = eventually(Duration::from_secs(30), || w.file_events().len() >= 3).await;
    let log = daemon.log_text();
    assert!(delivered, "nothing delivered after the faults:\n{log}");
    let failed = log
        .lines()
        .filter(|l| l.contains("poll cycle failed") && l.contains("code=time_frame_too_long"))
        .count();
    assert_eq!(failed, 3, "{log}");
    let statuses: Vec<u16> = queries_since(&w, asked).iter().map(|q| q.status).collect();
    assert_eq!(statuses[..4], [400, 400, 400, 200], "{statuses:?}");
    assert!(daemon.terminate(Duration::from_secs(20)).success());
    assert_delivered_once(&w);
}
