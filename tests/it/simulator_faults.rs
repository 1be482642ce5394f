//! The simulator's injected faults as a client meets them over real HTTP
//! (answers given verbatim, hangs, truncated and dripping bodies, faults of
//! the cancel endpoint), unknown paths and methods, and the simulator's own
//! lifecycle: stopping with a hung request, the seeded random schedule,
//! `serve` with a shutdown future.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};

use crate::support::KEY;
use crate::support::sim::{
    Fault, Simulator, SimulatorConfig, cancel, client, error_code, get, json_of, order_ids, start,
    start_with, status_changes_url,
};

#[tokio::test]
async fn unknown_paths_and_methods_answer_json_errors() {
    let h = start().await;
    // (`order/certificate/5` is order info now; this path is nothing.)
    let resp = client()
        .get(format!("{}/order/certificate/5/history", h.base_url()))
        .send()
        .await
        .expect("request succeeds");
    assert_eq!(resp.status().as_u16(), 404);
    let body = json_of(resp).await;
    assert_eq!(error_code(&body), "not_found");
    let resp = client()
        .post(status_changes_url(&h, "minutes=1"))
        .send()
        .await
        .expect("request succeeds");
    assert_eq!(resp.status().as_u16(), 405);
}

#[tokio::test]
async fn respond_faults_are_answered_verbatim_then_service_resumes() {
    let h = start().await;
    h.push_fault(Fault::status(503, "service_unavailable"));
    h.push_fault(Fault::rate_limited(Some(7)));
    h.push_fault(Fault::html(502));

    let (status, body) = get(&h, "minutes=1").await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (503, "service_unavailable")
    );

    let resp = client()
        .get(status_changes_url(&h, "minutes=1"))
        .header("X-DC-DEVKEY", KEY)
        .send()
        .await
        .expect("request succeeds");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );
    let body = json_of(resp).await;
    assert_eq!(error_code(&body), "request_limit_exceeded");

    let resp = client()
        .get(status_changes_url(&h, "minutes=1"))
        .header("X-DC-DEVKEY", KEY)
        .send()
        .await
        .expect("request succeeds");
    assert_eq!(resp.status().as_u16(), 502);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    assert!(ct.is_some_and(|c| c.starts_with("text/html")), "{ct:?}");
    assert!(resp.text().await.expect("body").contains("<html>"));

    assert_eq!(get(&h, "minutes=1").await, (200, serde_json::json!({})));
    let statuses: Vec<u16> = h.queries().iter().map(|q| q.status).collect();
    assert_eq!(statuses, vec![503, 429, 502, 200]);
}

#[tokio::test]
async fn rate_limited_fault_without_retry_after_sends_no_header() {
    let h = start().await;
    h.push_fault(Fault::rate_limited(None));
    let resp = client()
        .get(status_changes_url(&h, "minutes=1"))
        .header("X-DC-DEVKEY", KEY)
        .send()
        .await
        .expect("request succeeds");
    assert_eq!(resp.status().as_u16(), 429);
    assert!(resp.headers().get("retry-after").is_none());
}

#[tokio::test]
async fn hang_fault_times_out_a_client_with_a_deadline() {
    let h = start().await;
    h.push_fault(Fault::Hang(Duration::from_secs(30)));
    let client = client();
    let started = Instant::now();
    let err = client
        .get(status_changes_url(&h, "minutes=1"))
        .header("X-DC-DEVKEY", KEY)
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("no answer comes");
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(h.queries()[0].status, 0);
    // The fault was used up: the next request is answered.
    assert_eq!(get(&h, "minutes=1").await.0, 200);
}

#[tokio::test]
async fn hang_fault_closes_the_connection_without_an_answer() {
    let h = start().await;
    h.push_fault(Fault::Hang(Duration::from_millis(200)));
    let started = Instant::now();
    let err = client()
        .get(status_changes_url(&h, "minutes=1"))
        .header("X-DC-DEVKEY", KEY)
        .send()
        .await
        .expect_err("the connection is closed without a response");
    assert!(!err.is_timeout(), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn truncated_fault_fails_while_reading_the_body() {
    let h = start().await;
    h.bulk_insert(1, 50, "issued", Utc::now() - TimeDelta::seconds(5));
    h.push_fault(Fault::Truncated);
    let resp = client()
        .get(status_changes_url(&h, "minutes=1"))
        .header("X-DC-DEVKEY", KEY)
        .send()
        .await
        .expect("headers arrive");
    assert_eq!(resp.status().as_u16(), 200);
    let declared = resp.content_length().expect("a Content-Length is declared");
    assert!(declared > 1000);
    let err = resp.bytes().await.expect_err("the body is cut short");
    assert!(
        err.is_body() || err.is_decode() || err.is_request(),
        "{err:?}"
    );
    assert_eq!(get(&h, "minutes=1").await.0, 200);
}

#[tokio::test]
async fn slow_body_fault_delivers_the_real_answer_one_byte_at_a_time() {
    let h = start().await;
    h.set_status(1, 101, "issued", Utc::now());
    let (_, expected) = get(&h, "minutes=1").await;
    let expected_len = expected.to_string().len();
    h.push_fault(Fault::SlowBody(Duration::from_millis(4)));
    let started = Instant::now();
    let resp = client()
        .get(status_changes_url(&h, "minutes=1"))
        .header("X-DC-DEVKEY", KEY)
        .send()
        .await
        .expect("headers arrive");
    let body = json_of(resp).await;
    assert_eq!(body, expected);
    let min = Duration::from_millis(4) * u32::try_from(expected_len).expect("small");
    assert!(
        started.elapsed() >= min,
        "{:?} < {min:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn slow_body_fault_trips_a_total_deadline() {
    let h = start().await;
    h.set_status(1, 101, "issued", Utc::now());
    h.push_fault(Fault::SlowBody(Duration::from_millis(100)));
    let result = async {
        let resp = client()
            .get(status_changes_url(&h, "minutes=1"))
            .header("X-DC-DEVKEY", KEY)
            .timeout(Duration::from_millis(500))
            .send()
            .await?;
        resp.bytes().await
    }
    .await;
    let err = result.expect_err("the deadline passes first");
    assert!(err.is_timeout(), "{err:?}");
}

#[tokio::test]
async fn cancel_faults_are_separate_and_a_lost_answer_still_cancels() {
    let h = start().await;
    h.set_status(5, 105, "pending", Utc::now());
    h.set_status(6, 106, "pending", Utc::now());
    h.push_cancel_fault(Fault::rate_limited(None));
    h.push_cancel_fault(Fault::Hang(Duration::from_millis(50)));
    let body = r#"{"status":"CANCELED","note":"n"}"#;
    let (status, _) = cancel(&h, "5", body).await;
    assert_eq!(status, 429);
    assert_eq!(h.status_of(5).as_deref(), Some("pending"));
    let err = client()
        .put(format!("{}/order/certificate/6/status", h.base_url()))
        .header("X-DC-DEVKEY", KEY)
        .body(body)
        .send()
        .await
        .expect_err("the answer is lost");
    assert!(!err.is_timeout(), "{err:?}");
    assert_eq!(h.status_of(6).as_deref(), Some("canceled"));
    // Status-changes requests were not affected by the cancel faults.
    assert_eq!(get(&h, "minutes=1").await.0, 200);
}

#[tokio::test]
async fn stop_returns_promptly_even_with_a_hung_request() {
    let h = start().await;
    h.push_fault(Fault::Hang(Duration::from_secs(3600)));
    let url = status_changes_url(&h, "minutes=1");
    let hung = tokio::spawn(async move {
        client()
            .get(url)
            .header("X-DC-DEVKEY", KEY)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    while h.queries().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    h.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let outcome = hung.await.expect("task finishes");
    assert!(outcome.is_err(), "{outcome:?}");
}

#[tokio::test]
async fn random_schedule_is_reproducible_for_the_same_seed() {
    let cfg = SimulatorConfig {
        seed: 42,
        initial_orders: 25,
        ..SimulatorConfig::default()
    };
    let a = Simulator::new(cfg.clone());
    let b = Simulator::new(cfg);
    assert_eq!(a.order_count(), 25);
    let statuses =
        |s: &Simulator| -> Vec<Option<String>> { (1000..1100).map(|id| s.status_of(id)).collect() };
    assert_eq!(statuses(&a), statuses(&b));
    let changes = a.random_changes(300);
    assert_eq!(changes, b.random_changes(300));
    assert_eq!(statuses(&a), statuses(&b));
    let c = Simulator::new(SimulatorConfig {
        seed: 43,
        initial_orders: 25,
        ..SimulatorConfig::default()
    });
    assert_ne!(changes, c.random_changes(300));
    let mut latest = std::collections::HashMap::new();
    for (id, status) in &changes {
        latest.insert(*id, status.clone());
    }
    for (id, status) in latest {
        assert_eq!(a.status_of(id), Some(status));
    }
}

#[tokio::test]
async fn background_schedule_changes_orders_while_serving() {
    let h = start_with(SimulatorConfig {
        rate_per_min: 60_000.0,
        ..SimulatorConfig::default()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(h.order_count() > 0);
    let (_, body) = get(&h, "minutes=1").await;
    assert!(!order_ids(&body).is_empty());
    h.stop().await;
}

#[tokio::test]
async fn serve_stops_when_its_shutdown_future_resolves() {
    let sim = Simulator::new(SimulatorConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let sim = sim.clone();
        async move {
            sim.serve(listener, async move {
                let _ = rx.await;
            })
            .await
        }
    });
    let url = format!("http://{addr}/services/v2/order/certificate/status-changes?minutes=1");
    let resp = client()
        .get(url)
        .header("X-DC-DEVKEY", KEY)
        .send()
        .await
        .expect("served");
    assert_eq!(resp.status().as_u16(), 200);
    let _ = tx.send(());
    let result = tokio::time::timeout(Duration::from_secs(3), server).await;
    assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
}
