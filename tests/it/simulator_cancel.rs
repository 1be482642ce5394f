//! The simulator's cancel endpoint over real HTTP with reqwest: what a
//! cancelable order answers, and every refused cancel (a table: one test
//! per request), each leaving the order as it was.

use chrono::{TimeDelta, Utc};
use serde_json::Value;

use crate::support::KEY;
use crate::support::sim::{cancel, client, error_code, get, start};

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
        serde_json::json!({
            "orders": [{"order_id": 264, "certificate_id": 112232, "status": "canceled"}],
            "page": {"total": 1, "limit": 1000, "offset": 0},
        })
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

/// Cancels order `order_id` with `body` on a simulator holding pending
/// order 5, expects `status` with error `code`, and order 5 still pending.
async fn assert_cancel_refused(order_id: &str, body: &str, status: u16, code: &str) {
    let h = start().await;
    h.set_status(5, 105, "pending", Utc::now());
    let (got, answer) = cancel(&h, order_id, body).await;
    let answer: Value = serde_json::from_str(&answer).expect("json");
    assert_eq!(
        (got, error_code(&answer).as_str()),
        (status, code),
        "order {order_id}, body {body:?}"
    );
    assert_eq!(h.status_of(5).as_deref(), Some("pending"));
}

/// `name: order, body => status, code;` becomes the test `name` (see
/// [`assert_cancel_refused`]).
macro_rules! refused_cancels {
    ($($name:ident: $order:expr, $body:expr => $status:expr, $code:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            assert_cancel_refused($order, $body, $status, $code).await;
        }
    )*};
}

refused_cancels! {
    cancel_without_a_note_is_missing_param:
        "5", r#"{"status":"CANCELED"}"# => 400, "missing_param";
    cancel_with_an_empty_note_is_missing_param:
        "5", r#"{"status":"CANCELED","note":""}"# => 400, "missing_param";
    cancel_without_a_status_is_missing_param:
        "5", r#"{"note":"n"}"# => 400, "missing_param";
    cancel_with_a_lower_case_status_is_invalid_status:
        "5", r#"{"status":"canceled","note":"n"}"# => 400, "invalid_status";
    cancel_to_another_status_is_invalid_status:
        "5", r#"{"status":"REVOKED","note":"n"}"# => 400, "invalid_status";
    cancel_with_a_note_that_is_not_a_string_is_invalid_param:
        "5", r#"{"status":"CANCELED","note":5}"# => 400, "invalid_param";
    cancel_with_a_form_body_is_invalid_json: "5", "status=CANCELED" => 400, "invalid_json";
    cancel_with_an_empty_body_is_invalid_json: "5", "" => 400, "invalid_json";
    cancel_with_a_json_array_is_invalid_json: "5", "[1,2]" => 400, "invalid_json";
    cancel_of_an_unknown_order_is_not_found:
        "999", r#"{"status":"CANCELED","note":"n"}"# => 404, "not_found";
    cancel_of_a_non_numeric_order_is_not_found:
        "abc", r#"{"status":"CANCELED","note":"n"}"# => 404, "not_found";
    cancel_of_a_negative_order_is_not_found:
        "-1", r#"{"status":"CANCELED","note":"n"}"# => 404, "not_found";
}

#[tokio::test]
async fn a_cancel_without_a_note_names_the_missing_field() {
    let h = start().await;
    h.set_status(5, 105, "pending", Utc::now());
    let (_, answer) = cancel(&h, "5", r#"{"status":"CANCELED"}"#).await;
    assert!(
        answer.contains("note"),
        "the message names the field: {answer}"
    );
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
