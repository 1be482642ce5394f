//! The simulator's `status-changes` endpoint, exercised over real HTTP with
//! reqwest: the key check, the filters and their limits (a table: one test
//! per request), Mountain-time ranges around DST, the order and content of
//! answers, and pagination. What a client sees is what these tests pin down.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};

use crate::support::KEY;
use crate::support::sim::{
    Simulator, SimulatorConfig, client, error_code, get, get_with_key, mt, order_ids, start,
    start_with, status_changes_url, utc,
};

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

/// Asks a quiet simulator `status-changes?query` with the right key and
/// expects `status` and, for an error, its `code`. Every
/// `time_frame_too_long` carries upstream's generic message.
async fn assert_answer(query: &str, status: u16, code: Option<&str>) {
    let h = start().await;
    let (got, body) = get(&h, query).await;
    assert_eq!(got, status, "?{query}: {body}");
    if let Some(code) = code {
        assert_eq!(error_code(&body), code, "?{query}");
        if code == "time_frame_too_long" {
            assert_eq!(
                body["errors"][0]["message"],
                "An error occurred while processing your request."
            );
        }
    }
}

/// `name: query => status, code;` becomes the test `name`, asking for
/// `status-changes?query` (see [`assert_answer`]); `code` is `None` for an
/// accepted request.
macro_rules! answers {
    ($($name:ident: $query:expr => $status:expr, $code:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            assert_answer($query, $status, $code).await;
        }
    )*};
}

const TOO_LONG: Option<&str> = Some("time_frame_too_long");
const INVALID: Option<&str> = Some("invalid_filter");
const NO_FILTER: Option<&str> = Some("missing_filter");

answers! {
    status_changes_without_a_filter_is_refused: "" => 400, NO_FILTER;
    pagination_parameters_alone_are_no_filter: "offset=0" => 400, NO_FILTER;
    negative_minutes_are_invalid_filter: "minutes=-1" => 400, INVALID;
    non_numeric_minutes_are_invalid_filter: "minutes=abc" => 400, INVALID;
    fractional_seconds_are_invalid_filter: "seconds=1.5" => 400, INVALID;
    empty_minutes_are_invalid_filter: "minutes=" => 400, INVALID;
    minutes_over_10080_is_time_frame_too_long: "minutes=10081" => 400, TOO_LONG;
    minutes_of_exactly_10080_are_accepted: "minutes=10080" => 200, None;
    seconds_over_604800_is_time_frame_too_long: "seconds=604801" => 400, TOO_LONG;
    seconds_of_exactly_604800_are_accepted: "seconds=604800" => 200, None;
    minutes_plus_seconds_over_seven_days_is_time_frame_too_long:
        "minutes=10000&seconds=4801" => 400, TOO_LONG;
    minutes_plus_seconds_of_exactly_seven_days_are_accepted:
        "minutes=10000&seconds=4800" => 200, None;
    an_absolute_range_of_exactly_seven_days_is_accepted:
        "filters[status_last_updated]=2026-01-01+00:00:00...2026-01-08+00:00:00" => 200, None;
    an_absolute_range_a_second_over_seven_days_is_time_frame_too_long:
        "filters[status_last_updated]=2026-01-01+00:00:00...2026-01-08+00:00:01" => 400, TOO_LONG;
    // A date-only end covers its whole day: eight days.
    a_date_range_of_eight_days_is_time_frame_too_long:
        "filters[status_last_updated]=2026-01-01...2026-01-08" => 400, TOO_LONG;
    nonexistent_local_time_is_rejected:
        "filters[status_last_updated]=2026-03-08+02:30:00...2026-03-08+05:00:00" => 400, INVALID;
    a_range_without_an_end_is_invalid_filter:
        "filters[status_last_updated]=2026-01-01" => 400, INVALID;
    a_range_with_a_t_separator_is_invalid_filter:
        "filters[status_last_updated]=2026-01-01T00:00:00...2026-01-02" => 400, INVALID;
    a_backwards_range_is_invalid_filter:
        "filters[status_last_updated]=2026-01-03...2026-01-02" => 400, INVALID;
}

#[tokio::test]
async fn a_local_week_across_the_fall_back_night_is_an_hour_too_long() {
    let h = start().await;
    let (status, body) = get(
        &h,
        "filters[status_last_updated]=2026-11-01+00:00:00...2026-11-08+00:00:00",
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "time_frame_too_long")
    );
    let range = h.queries()[0].range.expect("range was read");
    assert_eq!(range.1 - range.0, TimeDelta::days(7) + TimeDelta::hours(1));
}

#[tokio::test]
async fn a_refused_range_is_recorded_as_it_was_read() {
    let h = start().await;
    let (status, _) = get(
        &h,
        "filters[status_last_updated]=2026-01-01+00:00:00...2026-01-08+00:00:01",
    )
    .await;
    assert_eq!(status, 400);
    let range = h.queries()[0].range.expect("range was read");
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
        ], "page": {"total": 3, "limit": 1000, "offset": 0}})
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
async fn unknown_statuses_set_by_a_test_are_reported_verbatim() {
    let h = start().await;
    h.set_status(1, 101, "reissue_pending", Utc::now());
    let (_, body) = get(&h, "minutes=1").await;
    assert_eq!(body["orders"][0]["status"], "reissue_pending");
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
async fn a_million_order_account_loads_and_answers_quickly() {
    // Debug builds are several times slower; the strict bound is for release.
    let limit = if cfg!(debug_assertions) {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(2)
    };
    // One answer of a million orders (what the benchmark parses), so no
    // pages; a page of this account is covered by the paging tests.
    let sim = Simulator::new(SimulatorConfig {
        page_size: None,
        ..SimulatorConfig::default()
    });
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
async fn base_url_points_at_the_services_v2_root() {
    let h = start().await;
    assert_eq!(
        h.base_url(),
        format!("http://127.0.0.1:{}/services/v2", h.addr().port())
    );
    assert_eq!(h.sim().api_key(), "sim-key");
}
