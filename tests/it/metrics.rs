//! `[metrics] listen`: `/metrics` in Prometheus text format after a few polls
//! against the simulator, and `/healthz` going from 200 to 503 (with a
//! one-line reason) when the API fails for more than three poll intervals,
//! and back once it answers again.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::receiver::{Receiver, Reply};
use crate::support::sim::Fault;
use crate::support::{Daemon, World, ago, eventually, free_port};

/// A response: status, headers (lowercased names), body.
struct Page {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of the sample `name` (with its labels, exactly as written).
    fn sample(&self, name: &str) -> Option<f64> {
        self.body.lines().find_map(|l| {
            let (n, v) = l.rsplit_once(' ')?;
            (n == name).then(|| v.parse().ok()).flatten()
        })
    }
}

/// GET over HTTP/1.0 (no chunking, the server closes), `None` if the
/// endpoint is not up yet.
fn get(port: u16, path: &str, accept: Option<&str>) -> Option<Page> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{accept}\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Page {
        status,
        headers,
        body: body.to_string(),
    })
}

fn with_metrics(w: &mut World) -> u16 {
    let port = free_port();
    w.set("metrics.listen", format!("127.0.0.1:{port}"));
    port
}

/// Waits until `/metrics` satisfies `check`, returning that page.
async fn metrics_until(port: u16, daemon: &Daemon, check: impl Fn(&Page) -> bool) -> Page {
    let mut last = None;
    let ok = eventually(Duration::from_secs(40), || {
        last = get(port, "/metrics", None);
        last.as_ref().is_some_and(|p| p.status == 200 && check(p))
    })
    .await;
    match (ok, last) {
        (true, Some(page)) => page,
        (_, page) => panic!(
            "/metrics never got there; last page:\n{}\nlog:\n{}",
            page.map(|p| p.body).unwrap_or_default(),
            daemon.log_text()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_polls_transitions_deliveries_and_the_outbox_per_sink() {
    let mut w = World::new().await;
    let port = with_metrics(&mut w);
    w.file_sink();
    // One receiver is down (503: retried, stays pending), one refuses (400: dead).
    let down = Receiver::start().await;
    down.set_default(Reply::Status(503));
    let refusing = Receiver::start().await;
    refusing.set_default(Reply::Status(400));
    w.add_sink(w.hook("down", &down.url()));
    w.add_sink(w.hook("refusing", &refusing.url()));
    w.sim.set_status(1, 11, "issued", ago(90));
    w.sim.set_status(2, 12, "issued", ago(60));
    w.sim.set_status(3, 13, "pending", ago(30));
    let spawned = Instant::now();
    let daemon = w.spawn_ready().await;

    let page = metrics_until(port, &daemon, |p| {
        p.sample("orderwatch_polls_total{outcome=\"ok\"}") >= Some(3.0)
            && p.sample("orderwatch_deliveries_total{sink=\"archive\",outcome=\"delivered\"}")
                == Some(3.0)
            && p.sample("orderwatch_outbox_dead{sink=\"refusing\"}") == Some(3.0)
            && p.sample("orderwatch_deliveries_total{sink=\"down\",outcome=\"retry\"}") >= Some(1.0)
    })
    .await;
    let m = |name: &str| {
        page.sample(name)
            .unwrap_or_else(|| panic!("no {name} in:\n{}", page.body))
    };
    assert_eq!(m("orderwatch_transitions_total{status=\"issued\"}"), 2.0);
    assert_eq!(m("orderwatch_transitions_total{status=\"pending\"}"), 1.0);
    assert_eq!(m("orderwatch_outbox_depth{sink=\"archive\"}"), 0.0);
    assert_eq!(
        m("orderwatch_outbox_oldest_pending_age_seconds{sink=\"archive\"}"),
        0.0
    );
    assert_eq!(m("orderwatch_outbox_depth{sink=\"down\"}"), 3.0);
    // The oldest of "down"'s deliveries was queued after the daemon started
    // and has waited at least through the retries seen above.
    let age = m("orderwatch_outbox_oldest_pending_age_seconds{sink=\"down\"}");
    let up = spawned.elapsed().as_secs_f64();
    assert!(
        0.0 < age && age <= up,
        "oldest pending age {age} s, daemon up {up} s"
    );
    assert_eq!(m("orderwatch_outbox_depth{sink=\"refusing\"}"), 0.0);
    assert_eq!(
        m("orderwatch_deliveries_total{sink=\"refusing\",outcome=\"dead\"}"),
        3.0
    );
    assert_eq!(m("orderwatch_sink_paused{sink=\"archive\"}"), 0.0);
    // The cursor is the API's clock at the last poll: seconds behind, not hours.
    let lag = m("orderwatch_cursor_lag_seconds");
    assert!((0.0..600.0).contains(&lag), "cursor lag {lag}");
    let now = chrono::Utc::now().timestamp() as f64;
    let last = m("orderwatch_last_successful_poll_timestamp_seconds");
    assert!((now - last).abs() < 600.0, "last success {last}, now {now}");
    assert!(
        page.body.contains("# TYPE orderwatch_polls counter"),
        "{}",
        page.body
    );
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        page.header("content-type")
    );

    // Prometheus asks for OpenMetrics and gets it.
    let om = get(
        port,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .expect("/metrics answers");
    assert!(
        om.header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text; version=1.0.0")),
        "{:?}",
        om.header("content-type")
    );
    assert!(om.body.trim_end().ends_with("# EOF"), "{}", om.body);

    let health = get(port, "/healthz", None).expect("/healthz answers");
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(
        health.body.starts_with("ok: last successful poll"),
        "{}",
        health.body
    );
    assert_eq!(health.body.lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_turns_503_while_the_api_fails_and_200_once_it_answers_again() {
    let mut w = World::new().await;
    let port = with_metrics(&mut w);
    w.file_sink();
    let mut daemon = w.spawn_ready().await;

    let healthy = |body_start: &'static str| {
        move || {
            get(port, "/healthz", None)
                .is_some_and(|p| p.status == 200 && p.body.starts_with(body_start))
        }
    };
    assert!(
        eventually(Duration::from_secs(30), healthy("ok:")).await,
        "never healthy:\n{}",
        daemon.log_text()
    );

    // A revoked key: every poll fails at once (not retried), one per
    // second, for twelve cycles — well over three intervals.
    for _ in 0..12 {
        w.sim.push_fault(Fault::status(401, "invalid_api_key"));
    }
    let mut reason = String::new();
    let unhealthy = eventually(Duration::from_secs(30), || {
        match get(port, "/healthz", None) {
            Some(p) if p.status == 503 => {
                reason = p.body;
                true
            }
            _ => false,
        }
    })
    .await;
    assert!(
        unhealthy,
        "/healthz never turned 503:\n{}",
        daemon.log_text()
    );
    assert!(
        reason.starts_with("unhealthy: last successful poll "),
        "{reason}"
    );
    assert!(
        reason.contains("more than 3 poll intervals (3s)"),
        "{reason}"
    );
    assert_eq!(reason.lines().count(), 1, "{reason:?}");

    let page = get(port, "/metrics", None).expect("/metrics answers");
    assert!(
        page.sample("orderwatch_api_errors_total{code=\"invalid_api_key\"}") >= Some(1.0),
        "{}",
        page.body
    );
    assert!(
        page.sample("orderwatch_polls_total{outcome=\"error\"}") >= Some(1.0),
        "{}",
        page.body
    );

    // The faults run out: the next poll succeeds and health returns.
    assert!(
        eventually(Duration::from_secs(40), healthy("ok:")).await,
        "never healthy again:\n{}",
        daemon.log_text()
    );
    let status = daemon.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
}
