//! CloudEvents 1.0 (structured JSON mode) for transitions.
//!
//! An event is a pure function of its stored transition (order details
//! included, when `[enrich]` looked them up) and the API's base URL, so
//! every redelivery of a transition is byte-for-byte the same event and
//! receivers can dedupe on `id`.

use chrono::DateTime;

use crate::transition::TransitionRow;

/// The CloudEvents `type` of every orderwatch event.
pub const EVENT_TYPE: &str = "com.digicert.certcentral.order.status_changed";

/// `time` in RFC 3339, UTC, whole seconds: when orderwatch first saw it.
pub fn format_time(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Writes events fast, for sinks that write many: the constant parts are
/// escaped once, `time` is formatted once per distinct second (a catch-up
/// records thousands of transitions in the same second), integers go
/// through `itoa`. Output is exactly what serde_json would write for the
/// same event (a property test holds it to that).
pub struct EventWriter {
    /// `","source":"…","type":"…","subject":"orders/`
    middle: Vec<u8>,
    time: Option<(i64, String)>,
}

impl EventWriter {
    pub fn new(source: &str) -> EventWriter {
        let mut middle = Vec::with_capacity(source.len() + 96);
        middle.extend_from_slice(b"\",\"source\":");
        json_str(&mut middle, source);
        middle.extend_from_slice(b",\"type\":\"");
        middle.extend_from_slice(EVENT_TYPE.as_bytes());
        middle.extend_from_slice(b"\",\"subject\":\"orders/");
        EventWriter { middle, time: None }
    }

    /// Appends the event's JSON (no trailing newline) to `out`.
    pub fn write(&mut self, out: &mut Vec<u8>, t: &TransitionRow) {
        let mut ints = itoa::Buffer::new();
        let order = ints.format(t.order_id).to_string();
        out.extend_from_slice(b"{\"specversion\":\"1.0\",\"id\":");
        // The id is "{order_id}:{status}[:{k}]", escaped as one string.
        let mut id = String::with_capacity(order.len() + 12 + t.status.len());
        id.push_str(&order);
        id.push(':');
        id.push_str(&t.status);
        if t.occurrence > 0 {
            id.push(':');
            id.push_str(ints.format(t.occurrence));
        }
        json_str(out, &id);
        // `middle` starts by closing the id's quote; drop ours.
        out.pop();
        out.extend_from_slice(&self.middle);
        out.extend_from_slice(order.as_bytes());
        out.extend_from_slice(b"\",\"time\":\"");
        let second = t.seen_at.div_euclid(1000);
        match &self.time {
            Some((s, text)) if *s == second => out.extend_from_slice(text.as_bytes()),
            _ => {
                let text = format_time(t.seen_at);
                out.extend_from_slice(text.as_bytes());
                self.time = Some((second, text));
            }
        }
        out.extend_from_slice(
            b"\",\"datacontenttype\":\"application/json\",\"data\":{\"order_id\":",
        );
        out.extend_from_slice(order.as_bytes());
        out.extend_from_slice(b",\"certificate_id\":");
        match t.certificate_id {
            Some(c) => out.extend_from_slice(ints.format(c).as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"status\":");
        json_str(out, &t.status);
        out.extend_from_slice(b",\"previous_status\":");
        match &t.previous_status {
            Some(p) => json_str(out, p),
            None => out.extend_from_slice(b"null"),
        }
        if let Some(order) = &t.details {
            // Stored as compact JSON by the enrichment stage: copied as is,
            // so every sink and redelivery carries the same bytes.
            out.extend_from_slice(b",\"order\":");
            out.extend_from_slice(order.as_bytes());
        }
        out.extend_from_slice(b"}}");
    }
}

/// Appends `s` as a JSON string. Plain text (the statuses and URLs this
/// sees) is copied as is; anything needing escapes goes through serde_json.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Appends the event's JSON (no trailing newline) to `out`.
pub fn write_event(out: &mut Vec<u8>, t: &TransitionRow, source: &str) {
    EventWriter::new(source).write(out, t);
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
    use crate::transition::event_id;
    use proptest::prelude::*;
    use serde::Serialize;

    /// The straightforward serde rendering, as the oracle for `EventWriter`.
    fn with_serde(t: &TransitionRow, source: &str) -> String {
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
            #[serde(skip_serializing_if = "Option::is_none")]
            order: Option<serde_json::Value>,
        }
        serde_json::to_string(&CloudEvent {
            specversion: "1.0",
            id: event_id(t.order_id, &t.status, t.occurrence),
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
                order: t
                    .details
                    .as_deref()
                    .map(|d| serde_json::from_str(d).unwrap()),
            },
        })
        .unwrap()
    }

    /// `data.order` as the enrichment stage stores it: `null`, or compact
    /// JSON of an object with text, lists and nested objects.
    fn order_details() -> impl Strategy<Value = String> {
        let text = "\\PC{0,16}".prop_map(serde_json::Value::String);
        let list = proptest::collection::vec("\\PC{0,8}", 0..3).prop_map(serde_json::Value::from);
        let named = (any::<i64>(), "\\PC{0,8}")
            .prop_map(|(id, name)| serde_json::json!({"id": id, "name": name}));
        let field = prop_oneof![text, list, named];
        prop_oneof![
            1 => Just("null".to_string()),
            4 => proptest::collection::btree_map("[a-z_]{1,12}", field, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect()).to_string()),
        ]
    }

    proptest! {
        #[test]
        fn the_fast_writer_writes_what_serde_writes(
            order_id in any::<i64>(),
            certificate_id in proptest::option::of(any::<i64>()),
            status in "\\PC{0,12}",
            previous in proptest::option::of("\\PC{0,12}"),
            occurrence in prop_oneof![Just(0u32), any::<u32>()],
            details in proptest::option::of(order_details()),
            seen in 0i64..4_000_000_000_000,
            source in "\\PC{0,30}",
        ) {
            let t = TransitionRow { seq: 1, order_id, status, occurrence, certificate_id, previous_status: previous, seen_at: seen, details };
            let mut w = EventWriter::new(&source);
            let mut out = Vec::new();
            w.write(&mut out, &t);
            // A second event of the same second reuses the cached time.
            out.push(b'\n');
            w.write(&mut out, &t);
            let expected = format!("{}\n{}", with_serde(&t, &source), with_serde(&t, &source));
            prop_assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn event_matches_the_contract_example() {
        let t = TransitionRow {
            seq: 7,
            order_id: 264,
            status: "canceled".into(),
            occurrence: 0,
            certificate_id: Some(112232),
            previous_status: Some("pending".into()),
            seen_at: 1_795_514_523_000, // 2026-11-24T10:02:03Z
            details: None,
        };
        let json = to_json(&t, "https://www.digicert.com/services/v2");
        assert_eq!(
            json,
            r#"{"specversion":"1.0","id":"264:canceled","source":"https://www.digicert.com/services/v2","type":"com.digicert.certcentral.order.status_changed","subject":"orders/264","time":"2026-11-24T10:02:03Z","datacontenttype":"application/json","data":{"order_id":264,"certificate_id":112232,"status":"canceled","previous_status":"pending"}}"#
        );
    }

    #[test]
    fn a_return_carries_its_count_in_the_id_and_the_status_it_left() {
        let t = TransitionRow {
            seq: 9,
            order_id: 264,
            status: "issued".into(),
            occurrence: 1,
            certificate_id: Some(112240),
            previous_status: Some("reissue_pending".into()),
            seen_at: 1_795_514_523_000,
            details: None,
        };
        let v: serde_json::Value =
            serde_json::from_str(&to_json(&t, "https://www.digicert.com/services/v2")).unwrap();
        assert_eq!(v["id"], "264:issued:1");
        assert_eq!(v["data"]["status"], "issued");
        assert_eq!(v["data"]["previous_status"], "reissue_pending");
        assert_eq!(v["data"]["certificate_id"], 112240);
    }

    #[test]
    fn order_details_are_data_order_and_absent_when_none_were_asked_for() {
        let mut t = TransitionRow {
            seq: 9,
            order_id: 264,
            status: "issued".into(),
            occurrence: 0,
            certificate_id: Some(112232),
            previous_status: Some("pending".into()),
            seen_at: 1_795_514_523_000,
            details: Some(r#"{"common_name":"example.com","serial_number":"0669"}"#.into()),
        };
        let json = to_json(&t, "https://www.digicert.com/services/v2");
        assert!(
            json.ends_with(r#""previous_status":"pending","order":{"common_name":"example.com","serial_number":"0669"}}}"#),
            "{json}"
        );
        t.details = Some("null".into());
        let v: serde_json::Value = serde_json::from_str(&to_json(&t, "s")).unwrap();
        assert_eq!(v["data"]["order"], serde_json::Value::Null);
        assert!(v["data"].as_object().unwrap().contains_key("order"));
        t.details = None;
        let v: serde_json::Value = serde_json::from_str(&to_json(&t, "s")).unwrap();
        assert!(!v["data"].as_object().unwrap().contains_key("order"));
    }

    #[test]
    fn first_sighting_has_null_previous_status_and_json_escaping() {
        let t = TransitionRow {
            seq: 1,
            order_id: 1,
            status: "we\"ird".into(),
            occurrence: 0,
            certificate_id: None,
            previous_status: None,
            seen_at: 0,
            details: None,
        };
        let v: serde_json::Value = serde_json::from_str(&to_json(&t, "s")).unwrap();
        assert_eq!(v["data"]["previous_status"], serde_json::Value::Null);
        assert_eq!(v["data"]["status"], "we\"ird");
        assert_eq!(v["id"], "1:we\"ird");
    }
}
