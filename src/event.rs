//! CloudEvents 1.0 (structured JSON mode) for transitions.
//!
//! An event is a pure function of its stored transition and the API's base
//! URL, so every redelivery of a transition is byte-for-byte the same event
//! and receivers can dedupe on `id`.

use chrono::DateTime;
use serde::Serialize;

use crate::store::TransitionRow;

/// The CloudEvents `type` of every orderwatch event.
pub const EVENT_TYPE: &str = "com.digicert.certcentral.order.status_changed";

/// The stable event id: one per `(order_id, status)` pair, like the dedupe key.
pub fn event_id(order_id: i64, status: &str) -> String {
    format!("{order_id}:{status}")
}

/// Splits `"264:canceled"` into its order and status.
pub fn parse_event_id(id: &str) -> Option<(i64, String)> {
    let (order, status) = id.split_once(':')?;
    let order_id = order.parse().ok()?;
    if status.is_empty() {
        return None;
    }
    Some((order_id, status.to_string()))
}

#[derive(Serialize)]
struct CloudEvent<'a> {
    specversion: &'static str,
    id: String,
    source: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    subject: String,
    time: String,
    datacontenttype: &'static str,
    data: Data<'a>,
}

#[derive(Serialize)]
struct Data<'a> {
    order_id: i64,
    certificate_id: Option<i64>,
    status: &'a str,
    previous_status: Option<&'a str>,
}

/// `time` in RFC 3339, UTC, whole seconds: when orderwatch first saw it.
pub fn format_time(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Appends the event's JSON (no trailing newline) to `out`.
pub fn write_event(out: &mut Vec<u8>, t: &TransitionRow, source: &str) {
    let event = CloudEvent {
        specversion: "1.0",
        id: event_id(t.order_id, &t.status),
        source,
        kind: EVENT_TYPE,
        subject: format!("orders/{}", t.order_id),
        time: format_time(t.seen_at),
        datacontenttype: "application/json",
        data: Data {
            order_id: t.order_id,
            certificate_id: t.certificate_id,
            status: &t.status,
            previous_status: t.previous_status.as_deref(),
        },
    };
    // Serializing plain strings and integers into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &event);
}

/// The event as a JSON string.
pub fn to_json(t: &TransitionRow, source: &str) -> String {
    let mut out = Vec::with_capacity(320);
    write_event(&mut out, t, source);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_matches_the_contract_example() {
        let t = TransitionRow {
            seq: 7,
            order_id: 264,
            status: "canceled".into(),
            certificate_id: Some(112232),
            previous_status: Some("pending".into()),
            seen_at: 1_795_514_523_000, // 2026-11-24T10:02:03Z
        };
        let json = to_json(&t, "https://www.digicert.com/services/v2");
        assert_eq!(
            json,
            r#"{"specversion":"1.0","id":"264:canceled","source":"https://www.digicert.com/services/v2","type":"com.digicert.certcentral.order.status_changed","subject":"orders/264","time":"2026-11-24T10:02:03Z","datacontenttype":"application/json","data":{"order_id":264,"certificate_id":112232,"status":"canceled","previous_status":"pending"}}"#
        );
    }

    #[test]
    fn first_sighting_has_null_previous_status_and_json_escaping() {
        let t = TransitionRow {
            seq: 1,
            order_id: 1,
            status: "we\"ird".into(),
            certificate_id: None,
            previous_status: None,
            seen_at: 0,
        };
        let v: serde_json::Value = serde_json::from_str(&to_json(&t, "s")).unwrap();
        assert_eq!(v["data"]["previous_status"], serde_json::Value::Null);
        assert_eq!(v["data"]["status"], "we\"ird");
        assert_eq!(v["id"], "1:we\"ird");
    }

    #[test]
    fn event_ids_round_trip() {
        assert_eq!(
            parse_event_id("264:canceled"),
            Some((264, "canceled".into()))
        );
        assert_eq!(parse_event_id("264"), None);
        assert_eq!(parse_event_id("x:issued"), None);
        assert_eq!(parse_event_id("5:"), None);
    }
}
