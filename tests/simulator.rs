//! The embedded CertCentral simulator, exercised over real HTTP with reqwest:
//! what a client sees is what these tests pin down.

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::America::Denver;
use orderwatch::simulator::{Fault, Simulator, SimulatorConfig, SimulatorHandle};
use serde_json::Value;

const KEY: &str = "sim-key";

fn client() -> reqwest::Client {
    // reqwest is built without a bundled TLS provider; plain HTTP still needs
    // one installed to build a client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn start() -> SimulatorHandle {
    start_with(SimulatorConfig::default()).await
}

async fn start_with(cfg: SimulatorConfig) -> SimulatorHandle {
    Simulator::start(cfg).await.expect("simulator starts")
}

fn status_changes_url(h: &SimulatorHandle, query: &str) -> String {
    format!("{}/order/certificate/status-changes?{query}", h.base_url())
}

async fn get_with_key(h: &SimulatorHandle, query: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = client().get(status_changes_url(h, query));
    if let Some(key) = key {
        req = req.header("X-DC-DEVKEY", key);
    }
    let resp = req.send().await.expect("request succeeds");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("body arrives");
    let json = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    (status, json)
}

async fn get(h: &SimulatorHandle, query: &str) -> (u16, Value) {
    get_with_key(h, query, Some(KEY)).await
}

async fn cancel(h: &SimulatorHandle, order_id: &str, body: &str) -> (u16, String) {
    let resp = client()
        .put(format!(
            "{}/order/certificate/{order_id}/status",
            h.base_url()
        ))
        .header("X-DC-DEVKEY", KEY)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request succeeds");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body arrives"))
}

async fn json_of(resp: reqwest::Response) -> Value {
    let body = resp.bytes().await.expect("the whole body arrives");
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

fn error_code(v: &Value) -> String {
    assert_eq!(
        v.as_object().map(|o| o.len()),
        Some(1),
        "only `errors`: {v}"
    );
    let errors = v["errors"].as_array().expect("errors is an array");
    assert_eq!(errors.len(), 1);
    assert!(errors[0]["message"].is_string(), "{v}");
    errors[0]["code"]
        .as_str()
        .expect("code is a string")
        .to_owned()
}

fn order_ids(v: &Value) -> Vec<i64> {
    v["orders"]
        .as_array()
        .map(|a| a.iter().filter_map(|o| o["order_id"].as_i64()).collect())
        .unwrap_or_default()
}

/// A Mountain-time wall-clock reading that is not ambiguous.
fn mt(s: &str) -> DateTime<Utc> {
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("valid time");
    Denver
        .from_local_datetime(&naive)
        .single()
        .expect("unambiguous")
        .with_timezone(&Utc)
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("rfc3339")
        .with_timezone(&Utc)
}

#[tokio::test]
async fn missing_api_key_is_rejected_with_invalid_api_key() {
    let h = start().await;
    let (status, body) = get_with_key(&h, "minutes=5", None).await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&body), "invalid_api_key");
    assert_eq!(h.queries()[0].api_key_sent, None);
}

#[tokio::test]
async fn wrong_api_key_is_rejected_with_invalid_api_key() {
    let h = start().await;
    let (status, body) = get_with_key(&h, "minutes=5", Some("not-the-key")).await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&body), "invalid_api_key");
    assert_eq!(h.queries()[0].api_key_sent.as_deref(), Some("not-the-key"));
    assert_eq!(h.queries()[0].status, 401);
}

#[tokio::test]
async fn error_answers_are_json() {
    let h = start().await;
    let resp = client()
        .get(status_changes_url(&h, ""))
        .header("X-DC-DEVKEY", KEY)
        .send()
        .await
        .expect("request succeeds");
    assert_eq!(resp.status().as_u16(), 400);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    assert_eq!(ct, Some("application/json"));
}

#[tokio::test]
async fn status_changes_without_a_filter_is_refused() {
    let h = start().await;
    let (status, body) = get(&h, "").await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "missing_filter")
    );
    let (status, body) = get(&h, "offset=0").await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "missing_filter")
    );
}

#[tokio::test]
async fn malformed_minutes_are_invalid_filter() {
    let h = start().await;
    for q in ["minutes=-1", "minutes=abc", "seconds=1.5", "minutes="] {
        let (status, body) = get(&h, q).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (400, "invalid_filter"),
            "{q}"
        );
    }
}

#[tokio::test]
async fn minutes_over_10080_is_time_frame_too_long() {
    let h = start().await;
    let (status, body) = get(&h, "minutes=10081").await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "time_frame_too_long")
    );
    assert_eq!(
        body["errors"][0]["message"],
        "An error occurred while processing your request."
    );
    assert_eq!(get(&h, "minutes=10080").await.0, 200);
}

#[tokio::test]
async fn seconds_over_604800_is_time_frame_too_long() {
    let h = start().await;
    let (status, body) = get(&h, "seconds=604801").await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "time_frame_too_long")
    );
    assert_eq!(get(&h, "seconds=604800").await.0, 200);
}

#[tokio::test]
async fn minutes_plus_seconds_over_seven_days_is_time_frame_too_long() {
    let h = start().await;
    let (status, body) = get(&h, "minutes=10000&seconds=4801").await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "time_frame_too_long")
    );
    assert_eq!(get(&h, "minutes=10000&seconds=4800").await.0, 200);
}

#[tokio::test]
async fn absolute_range_over_seven_days_is_too_long_and_exactly_seven_days_is_accepted() {
    let h = start().await;
    let q = |r: &str| format!("filters[status_last_updated]={r}");
    let (status, _) = get(&h, &q("2026-01-01+00:00:00...2026-01-08+00:00:00")).await;
    assert_eq!(status, 200);
    let (status, body) = get(&h, &q("2026-01-01+00:00:00...2026-01-08+00:00:01")).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "time_frame_too_long")
    );
    let (status, body) = get(&h, &q("2026-01-01...2026-01-08")).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "time_frame_too_long")
    );
    // A local week across the fall-back night is 7 days and 1 real hour.
    let (status, _) = get(&h, &q("2026-11-01+00:00:00...2026-11-08+00:00:00")).await;
    assert_eq!(status, 400);
    // The simulator still tells how it read the refused range.
    let range = h.queries()[1].range.expect("range was read");
    assert_eq!(range.1 - range.0, TimeDelta::seconds(604_801));
}

#[tokio::test]
async fn dst_ambiguous_range_start_is_read_as_the_later_instant() {
    let h = start().await;
    // 01:45 on 2026-11-01 happens twice in Denver: 07:45Z (MDT) and 08:45Z (MST).
    h.set_status(1, 101, "issued", utc("2026-11-01T07:45:00Z"));
    h.set_status(2, 102, "issued", utc("2026-11-01T08:45:00Z"));
    let (status, body) = get(
        &h,
        "filters[status_last_updated]=2026-11-01+01:30:00...2026-11-01+03:00:00",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(order_ids(&body), vec![2]);
    let range = h.queries()[0].range.expect("range was read");
    assert_eq!(
        range,
        (utc("2026-11-01T08:30:00Z"), utc("2026-11-01T10:00:00Z"))
    );
}

#[tokio::test]
async fn dst_ambiguous_range_end_is_read_as_the_earlier_instant() {
    let h = start().await;
    h.set_status(1, 101, "issued", utc("2026-11-01T07:45:00Z"));
    let (_, body) = get(
        &h,
        "filters[status_last_updated]=2026-11-01+00:00:00...2026-11-01+01:30:00",
    )
    .await;
    assert_eq!(body, serde_json::json!({}));
}

#[tokio::test]
async fn nonexistent_local_time_is_rejected() {
    let h = start().await;
    let (status, body) = get(
        &h,
        "filters[status_last_updated]=2026-03-08+02:30:00...2026-03-08+05:00:00",
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "invalid_filter")
    );
}

#[tokio::test]
async fn malformed_or_backwards_ranges_are_invalid_filter() {
    let h = start().await;
    for r in [
        "2026-01-01",
        "2026-01-01T00:00:00...2026-01-02",
        "2026-01-03...2026-01-02",
    ] {
        let (status, body) = get(&h, &format!("filters[status_last_updated]={r}")).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (400, "invalid_filter"),
            "{r}"
        );
    }
}

#[tokio::test]
async fn encoded_filter_key_and_every_date_time_separator_are_accepted() {
    let h = start().await;
    h.set_status(7, 107, "issued", mt("2026-01-05 12:00:00"));
    for q in [
        "filters%5Bstatus_last_updated%5D=2026-01-05+00:00:00...2026-01-05+23:59:59",
        "filters[status_last_updated]=2026-01-05%2B00:00:00...2026-01-05%2B23:59:59",
        "filters[status_last_updated]=2026-01-05%2000:00:00...2026-01-05%2023:59:59",
        "filters%5Bstatus_last_updated%5D=2026-01-05...2026-01-05",
    ] {
        let (status, body) = get(&h, q).await;
        assert_eq!((status, order_ids(&body)), (200, vec![7]), "{q}");
    }
}

#[tokio::test]
async fn nothing_changed_answers_an_empty_object() {
    let h = start().await;
    h.set_status(1, 101, "issued", Utc::now() - TimeDelta::hours(2));
    let resp = client()
        .get(status_changes_url(&h, "minutes=10"))
        .header("X-DC-DEVKEY", KEY)
        .send()
        .await
        .expect("request succeeds");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.expect("body"), "{}");
}

#[tokio::test]
async fn answers_list_current_status_ordered_by_last_change_then_order_id() {
    let h = start().await;
    let now = Utc::now();
    h.set_status(30, 130, "pending", now - TimeDelta::seconds(50));
    h.set_status(30, 130, "issued", now - TimeDelta::seconds(10));
    h.set_status(20, 120, "pending", now - TimeDelta::seconds(20));
    h.set_status(10, 110, "rejected", now - TimeDelta::seconds(20));
    let (status, body) = get(&h, "minutes=1").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({"orders": [
            {"order_id": 10, "certificate_id": 110, "status": "rejected"},
            {"order_id": 20, "certificate_id": 120, "status": "pending"},
            {"order_id": 30, "certificate_id": 130, "status": "issued"},
        ]})
    );
    assert_eq!(h.queries()[0].orders_returned, 3);
}

#[tokio::test]
async fn order_changed_again_after_the_range_end_is_omitted() {
    let h = start().await;
    h.set_status(10, 110, "issued", mt("2026-01-02 12:00:00"));
    h.set_status(10, 110, "revoked", mt("2026-01-10 12:00:00"));
    h.set_status(11, 111, "issued", mt("2026-01-03 12:00:00"));
    let first = "filters[status_last_updated]=2026-01-01...2026-01-07";
    let (_, body) = get(&h, first).await;
    assert_eq!(order_ids(&body), vec![11]);
    let second = "filters[status_last_updated]=2026-01-08...2026-01-14";
    let (_, body) = get(&h, second).await;
    assert_eq!(body["orders"][0]["status"], "revoked");
    assert_eq!(order_ids(&body), vec![10]);
}

#[tokio::test]
async fn absolute_range_end_second_is_inclusive() {
    let h = start().await;
    let at = mt("2026-01-05 23:59:59") + TimeDelta::milliseconds(500);
    h.set_status(1, 101, "issued", at);
    h.set_status(2, 102, "issued", at + TimeDelta::seconds(1));
    let (_, body) = get(&h, "filters[status_last_updated]=2026-01-05...2026-01-05").await;
    assert_eq!(order_ids(&body), vec![1]);
}

#[tokio::test]
async fn seconds_alone_define_the_window() {
    let h = start().await;
    let now = Utc::now();
    h.set_status(1, 101, "issued", now - TimeDelta::seconds(30));
    h.set_status(2, 102, "issued", now - TimeDelta::seconds(90));
    let (_, body) = get(&h, "seconds=60").await;
    assert_eq!(order_ids(&body), vec![1]);
    let (_, body) = get(&h, "minutes=1&seconds=60").await;
    assert_eq!(order_ids(&body), vec![2, 1]);
    let q = &h.queries()[1];
    assert_eq!((q.minutes, q.seconds), (Some(1), Some(60)));
}

#[tokio::test]
async fn pagination_pages_cover_every_order_exactly_once() {
    let h = start_with(SimulatorConfig {
        page_size: Some(7),
        ..SimulatorConfig::default()
    })
    .await;
    let now = Utc::now();
    h.bulk_insert(500, 40, "pending", now - TimeDelta::seconds(30));
    for id in [900, 901, 902] {
        h.set_status(id, id + 1, "issued", now - TimeDelta::seconds(40));
    }
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let (status, body) = get(&h, &format!("minutes=5&offset={offset}&limit=100")).await;
        assert_eq!(status, 200);
        assert_eq!(body["page"]["total"], 43);
        assert_eq!(body["page"]["limit"], 7, "limit is capped at the page size");
        assert_eq!(body["page"]["offset"], offset);
        let ids = order_ids(&body);
        assert!(ids.len() <= 7);
        seen.extend(ids);
        offset += 7;
        if offset >= 43 {
            break;
        }
    }
    let mut expected: Vec<i64> = vec![900, 901, 902];
    expected.extend(500..540);
    assert_eq!(seen, expected);
    let (_, past_end) = get(&h, "minutes=5&offset=50").await;
    assert_eq!(
        past_end,
        serde_json::json!({"orders": [], "page": {"total": 43, "limit": 7, "offset": 50}})
    );
    let (_, empty) = get(&h, "seconds=1&offset=0").await;
    assert_eq!(empty, serde_json::json!({}));
    let (status, body) = get(&h, "minutes=5&limit=0").await;
    assert_eq!((status, error_code(&body).as_str()), (400, "invalid_param"));
}

#[tokio::test]
async fn cancel_of_a_pending_order_answers_204_and_the_next_poll_reports_it() {
    let h = start().await;
    h.set_status(264, 112232, "pending", Utc::now() - TimeDelta::hours(3));
    let (status, body) = cancel(
        &h,
        "264",
        r#"{"status":"CANCELED","note":"duplicate order"}"#,
    )
    .await;
    assert_eq!((status, body.as_str()), (204, ""));
    assert_eq!(h.status_of(264).as_deref(), Some("canceled"));
    assert_eq!(h.note_of(264).as_deref(), Some("duplicate order"));
    assert_eq!(h.history(264).len(), 2);
    let recorded = &h.cancels()[0];
    assert_eq!((recorded.order_id.as_str(), recorded.status), ("264", 204));
    assert_eq!(recorded.api_key_sent.as_deref(), Some(KEY));
    let (_, body) = get(&h, "minutes=1").await;
    assert_eq!(
        body,
        serde_json::json!({"orders": [{"order_id": 264, "certificate_id": 112232, "status": "canceled"}]})
    );
}

#[tokio::test]
async fn cancel_of_a_waiting_pickup_order_is_allowed() {
    let h = start().await;
    h.set_status(5, 105, "waiting_pickup", Utc::now());
    let (status, _) = cancel(&h, "5", r#"{"status":"CANCELED","note":"n"}"#).await;
    assert_eq!(status, 204);
}

#[tokio::test]
async fn cancel_of_an_issued_order_is_invalid_order_status() {
    let h = start().await;
    h.set_status(5, 105, "issued", Utc::now());
    let (status, body) = cancel(&h, "5", r#"{"status":"CANCELED","note":"n"}"#).await;
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "invalid_order_status")
    );
    assert_eq!(h.status_of(5).as_deref(), Some("issued"));
}

#[tokio::test]
async fn cancel_of_an_unknown_or_non_numeric_order_is_not_found() {
    let h = start().await;
    for id in ["999", "abc", "-1"] {
        let (status, body) = cancel(&h, id, r#"{"status":"CANCELED","note":"n"}"#).await;
        let body: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            (status, error_code(&body).as_str()),
            (404, "not_found"),
            "{id}"
        );
    }
}

#[tokio::test]
async fn cancel_without_a_valid_status_or_note_is_a_validation_error() {
    let h = start().await;
    h.set_status(5, 105, "pending", Utc::now());
    for (body, code) in [
        (r#"{"status":"CANCELED"}"#, "missing_param"),
        (r#"{"status":"CANCELED","note":""}"#, "missing_param"),
        (r#"{"note":"n"}"#, "missing_param"),
        (r#"{"status":"canceled","note":"n"}"#, "invalid_status"),
        (r#"{"status":"REVOKED","note":"n"}"#, "invalid_status"),
        (r#"{"status":"CANCELED","note":5}"#, "invalid_param"),
    ] {
        let (status, answer) = cancel(&h, "5", body).await;
        let answer: Value = serde_json::from_str(&answer).expect("json");
        assert_eq!(
            (status, error_code(&answer).as_str()),
            (400, code),
            "{body}"
        );
    }
    let (_, answer) = cancel(&h, "5", r#"{"status":"CANCELED"}"#).await;
    assert!(
        answer.contains("note"),
        "the message names the field: {answer}"
    );
    assert_eq!(h.status_of(5).as_deref(), Some("pending"));
}

#[tokio::test]
async fn cancel_with_a_non_json_body_is_refused() {
    let h = start().await;
    h.set_status(5, 105, "pending", Utc::now());
    for body in ["status=CANCELED", "", "[1,2]"] {
        let (status, answer) = cancel(&h, "5", body).await;
        let answer: Value = serde_json::from_str(&answer).expect("json");
        assert_eq!(
            (status, error_code(&answer).as_str()),
            (400, "invalid_json"),
            "{body:?}"
        );
    }
}

#[tokio::test]
async fn cancel_needs_the_api_key() {
    let h = start().await;
    h.set_status(5, 105, "pending", Utc::now());
    let resp = client()
        .put(format!("{}/order/certificate/5/status", h.base_url()))
        .body(r#"{"status":"CANCELED","note":"n"}"#)
        .send()
        .await
        .expect("request succeeds");
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(h.status_of(5).as_deref(), Some("pending"));
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json_errors() {
    let h = start().await;
    let resp = client()
        .get(format!("{}/order/certificate/5", h.base_url()))
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
async fn initial_orders_are_visible_to_a_one_hour_poll() {
    let h = start_with(SimulatorConfig {
        initial_orders: 30,
        ..SimulatorConfig::default()
    })
    .await;
    let (_, body) = get(&h, "minutes=60").await;
    assert_eq!(order_ids(&body).len(), 30);
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

#[tokio::test]
async fn a_million_order_account_loads_and_answers_quickly() {
    // Debug builds are several times slower; the strict bound is for release.
    let limit = if cfg!(debug_assertions) {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(2)
    };
    let sim = Simulator::new(SimulatorConfig::default());
    let started = Instant::now();
    sim.bulk_insert(1, 1_000_000, "issued", Utc::now() - TimeDelta::seconds(10));
    let loaded = started.elapsed();
    assert!(loaded < limit, "bulk_insert took {loaded:?}");
    assert_eq!(sim.order_count(), 1_000_000);
    let h = sim.spawn().await.expect("serves");
    let started = Instant::now();
    let resp = client()
        .get(status_changes_url(&h, "minutes=1"))
        .header("X-DC-DEVKEY", KEY)
        .send()
        .await
        .expect("answered");
    let body = resp.bytes().await.expect("body arrives");
    let answered = started.elapsed();
    assert!(answered < limit, "answer took {answered:?}");
    assert_eq!(h.queries()[0].orders_returned, 1_000_000);
    assert!(body.starts_with(
        br#"{"orders":[{"order_id":1,"certificate_id":100000001,"status":"issued"},"#
    ));
    assert!(
        body.ends_with(br#"{"order_id":1000000,"certificate_id":101000000,"status":"issued"}]}"#)
    );
}

#[tokio::test]
async fn unknown_statuses_set_by_a_test_are_reported_verbatim() {
    let h = start().await;
    h.set_status(1, 101, "reissue_pending", Utc::now());
    let (_, body) = get(&h, "minutes=1").await;
    assert_eq!(body["orders"][0]["status"], "reissue_pending");
}

#[tokio::test]
async fn base_url_points_at_the_services_v2_root() {
    let h = start().await;
    assert_eq!(
        h.base_url(),
        format!("http://127.0.0.1:{}/services/v2", h.addr().port())
    );
    assert_eq!(h.sim().api_key(), "sim-key");
}
