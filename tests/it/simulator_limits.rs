//! The simulator is as strict as CertCentral by default: DigiCert's rate
//! limits (100 requests per 5 s and 1000 per 5 min per key, rolling, every
//! endpoint) answered with upstream's 429, and status-changes answers in
//! pages of at most 1000 orders. A daemon against it pages, is throttled,
//! backs off and still records everything.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use futures_util::future::join_all;

use crate::support::sim::{
    Limit, RateLimits, SimulatorConfig, client, error_code, get, get_with_key, json_of, order_ids,
    paged, start, start_with, status_changes_url,
};
use crate::support::{KEY, World, ago, event_ids, ids, text};

/// `GET status-changes?minutes=1` with the right key, on `c` (one client
/// for a whole burst: building one per request costs more, in a debug
/// build on a busy machine, than the 5 s window leaves): status and
/// `Retry-After`.
async fn hit(
    c: &reqwest::Client,
    h: &crate::support::sim::SimulatorHandle,
) -> (u16, Option<String>) {
    let resp = c
        .get(status_changes_url(h, "minutes=1"))
        .header("X-DC-DEVKEY", KEY)
        .send()
        .await
        .expect("answered");
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    (resp.status().as_u16(), retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_101st_request_within_5_seconds_gets_upstreams_429_on_every_endpoint() {
    let h = start().await;
    let c = client();
    h.set_status(7, 107, "pending", ago(5));
    // A wrong key is answered 401 and not counted against the key.
    let (status, body) = get_with_key(&h, "minutes=1", Some("wrong")).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (401, "invalid_api_key")
    );

    let started = std::time::Instant::now();
    let answers = join_all((0..100).map(|_| hit(&c, &h))).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "100 requests took {:?}; too slow to test a 5 s limit",
        started.elapsed()
    );
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");

    let resp = client()
        .get(status_changes_url(&h, "minutes=1"))
        .header("X-DC-DEVKEY", KEY)
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 429);
    assert!(
        resp.headers().get("retry-after").is_none(),
        "upstream promises no Retry-After"
    );
    assert_eq!(
        resp.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    let body = json_of(resp).await;
    assert_eq!(error_code(&body), "request_limit_exceeded");
    assert_eq!(
        body["errors"][0]["message"],
        "Service unavailable, please limit request volume"
    );
    // The limit is the key's, not the endpoint's: cancel and order info too.
    let cancel = client()
        .put(format!("{}/order/certificate/7/status", h.base_url()))
        .header("X-DC-DEVKEY", KEY)
        .body(r#"{"status":"CANCELED","note":"n"}"#)
        .send()
        .await
        .expect("answered");
    assert_eq!(cancel.status().as_u16(), 429);
    assert_eq!(
        h.status_of(7).as_deref(),
        Some("pending"),
        "a refused cancel changes nothing"
    );
    let info = client()
        .get(format!("{}/order/certificate/7", h.base_url()))
        .header("X-DC-DEVKEY", KEY)
        .send()
        .await
        .expect("answered");
    assert_eq!(info.status().as_u16(), 429);

    let throttled = h.throttled();
    assert_eq!(throttled.len(), 3, "{throttled:#?}");
    assert_eq!(throttled[1].method, "PUT");
    // Refused requests are not answered by the endpoints, so not recorded there.
    assert_eq!(h.queries().len(), 101, "100 answered + the 401");
    assert!(h.cancels().is_empty());
}

#[tokio::test]
async fn a_retry_after_comes_only_when_asked_for_and_the_key_recovers_when_the_window_rolls_by() {
    let h = start_with(SimulatorConfig {
        rate_limits: Some(RateLimits {
            limits: vec![Limit {
                requests: 3,
                per: Duration::from_secs(2),
            }],
            retry_after: true,
        }),
        ..SimulatorConfig::default()
    })
    .await;
    let c = client();
    for _ in 0..3 {
        assert_eq!(hit(&c, &h).await, (200, None));
    }
    let (status, retry) = hit(&c, &h).await;
    assert_eq!(status, 429);
    let secs: u64 = retry.expect("Retry-After").parse().expect("whole seconds");
    assert!((1..=2).contains(&secs), "Retry-After: {secs}");
    // Refused requests count too: hammering keeps the key locked out.
    assert_eq!(hit(&c, &h).await.0, 429);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(hit(&c, &h).await, (200, None));
}

#[tokio::test]
async fn by_default_answers_come_in_pages_of_1000_and_a_larger_limit_is_capped() {
    let h = start().await;
    h.bulk_insert(1, 1500, "issued", Utc::now() - TimeDelta::seconds(30));
    let (status, first) = get(&h, "minutes=1").await;
    assert_eq!(status, 200);
    assert_eq!(order_ids(&first), (1..=1000).collect::<Vec<_>>());
    assert_eq!(
        first["page"],
        serde_json::json!({"total": 1500, "limit": 1000, "offset": 0})
    );
    let (_, rest) = get(&h, "minutes=1&offset=1000&limit=5000").await;
    assert_eq!(order_ids(&rest), (1001..=1500).collect::<Vec<_>>());
    assert_eq!(
        rest["page"],
        serde_json::json!({"total": 1500, "limit": 1000, "offset": 1000})
    );
    // Only the opt-out answers everything at once.
    let kind = start_with(SimulatorConfig {
        page_size: None,
        ..SimulatorConfig::default()
    })
    .await;
    kind.bulk_insert(1, 1500, "issued", Utc::now() - TimeDelta::seconds(30));
    let (_, all) = get(&kind, "minutes=1").await;
    assert_eq!(order_ids(&all).len(), 1500);
    assert!(all.get("page").is_none(), "{}", all["page"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_throttled_by_the_limits_backs_off_and_still_records_every_order_once() {
    // Tight limits so a short test is throttled: 3 requests per 2 s against
    // a daemon that may send 5 at once and then 3 a second.
    let mut w = World::with_sim(SimulatorConfig {
        rate_limits: Some(RateLimits {
            limits: vec![Limit {
                requests: 3,
                per: Duration::from_secs(2),
            }],
            retry_after: false,
        }),
        ..paged(10)
    })
    .await;
    w.file_sink();
    w.sim.bulk_insert(1, 60, "pending", ago(120));
    let out = w.once();

    let throttled = w.sim.throttled();
    assert!(!throttled.is_empty(), "the daemon was never throttled");
    let log = text(&out.stderr);
    assert!(log.contains("request_limit_exceeded"), "{log}");
    let expected = event_ids(1..=60, "pending");
    let got = ids(&w.stored_events());
    assert_eq!(got.len(), 60, "{got:?}");
    assert_eq!(
        got.into_iter().collect::<std::collections::BTreeSet<_>>(),
        expected
    );
}
