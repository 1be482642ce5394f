//! `orderwatch test-sink NAME`: one clearly marked test event through a
//! sink's real path (signing and headers, the command, the file), so an
//! operator sees what the receiver answers before a real event depends on
//! it. Nothing is recorded in the store and nothing is retried.

use std::path::Path;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ledger::known_sink;
use super::{Failure, load_config};
use crate::cli::TestSinkArgs;
use crate::event::format_time;
use crate::sink::{self, Message, Outcome};

/// The CloudEvents `type` of a test event. Receivers that only want real
/// transitions can drop it by type; its id can never be a transition's.
pub const TEST_EVENT_TYPE: &str = "orderwatch.test";

/// The test event as sent: the same CloudEvents envelope as a transition's.
#[derive(Debug, Serialize)]
struct TestEvent<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    subject: String,
    time: String,
    datacontenttype: &'static str,
    data: TestData<'a>,
}

#[derive(Debug, Serialize)]
struct TestData<'a> {
    sink: &'a str,
    message: &'static str,
}

/// A test event's id: `test:` and a time and a random number. Transition
/// ids start with the order number, so the two can never collide, and two
/// tests do not share an id (receivers deduping on it would drop the second).
pub fn test_event_id(now: DateTime<Utc>, nonce: u64) -> String {
    format!("test:{}:{nonce:016x}", now.format("%Y%m%dT%H%M%SZ"))
}

/// The test event's JSON for sink `sink`. Pure.
pub fn test_event(id: &str, sink: &str, source: &str, now: DateTime<Utc>) -> Vec<u8> {
    let event = TestEvent {
        specversion: "1.0",
        id,
        source,
        kind: TEST_EVENT_TYPE,
        subject: format!("sinks/{sink}"),
        time: format_time(now.timestamp_millis()),
        datacontenttype: "application/json",
        data: TestData {
            sink,
            message: "a test event sent by `orderwatch test-sink`; no certificate order changed",
        },
    };
    // Serializing plain strings cannot fail.
    serde_json::to_vec(&event).unwrap_or_default()
}

pub async fn run(config_flag: Option<&Path>, args: &TestSinkArgs) -> Result<(), Failure> {
    let config = load_config(config_flag)?;
    let cfg = known_sink(&config, &args.name)?;
    let label = format!("sink {} ({})", cfg.name, cfg.settings.describe());
    let built = sink::build_guest(cfg, &config.digicert.base_url)
        .map_err(|e| Failure::usage(anyhow!("{}", e.render(&format!("sink {:?}", cfg.name)))))?;
    let now = Utc::now();
    let id = test_event_id(now, rand::random());
    let body = test_event(&id, &cfg.name, &config.digicert.base_url, now);
    let sent = built
        .send(&Message {
            id: &id,
            kind: TEST_EVENT_TYPE,
            body: &body,
            order_id: None,
            status: None,
            previous_status: None,
        })
        .await;
    match sent.outcome {
        Outcome::Delivered => {
            println!("{label}: test event {id} delivered");
            println!("  answer: {}", sent.answer);
            Ok(())
        }
        Outcome::Retry { .. } => Err(Failure::runtime(anyhow!(
            "{label}: test event {id} not delivered (a real event would be retried): {}",
            sent.answer
        ))),
        Outcome::Dead { .. } | Outcome::Gone { .. } => Err(Failure::runtime(anyhow!(
            "{label}: test event {id} refused (a real event would be dead at once): {}",
            sent.answer
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_event_is_a_cloudevent_whose_id_no_transition_can_have() {
        let now = DateTime::from_timestamp(1_795_514_523, 0).unwrap();
        let id = test_event_id(now, 0xabc);
        assert_eq!(id, "test:20261124T100203Z:0000000000000abc");
        assert!(crate::transition::parse_event_id(&id).is_none());
        let v: serde_json::Value =
            serde_json::from_slice(&test_event(&id, "hook", "https://x/services/v2", now)).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], id.as_str());
        assert_eq!(v["type"], TEST_EVENT_TYPE);
        assert_eq!(v["source"], "https://x/services/v2");
        assert_eq!(v["subject"], "sinks/hook");
        assert_eq!(v["time"], "2026-11-24T10:02:03Z");
        assert_eq!(v["data"]["sink"], "hook");
        assert_ne!(test_event_id(now, 1), id);
    }
}
