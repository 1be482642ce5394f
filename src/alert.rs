//! Operational events: orderwatch telling its operational sinks
//! (`operational = true`) about itself. The store writes them (see
//! `store/alert.rs` for the types, the ids and the rules); this module
//! renders one as a CloudEvent and keeps the poller's count of failed
//! cycles ([`PollWatch`]).
//!
//! | `type` | when | `data` |
//! |---|---|---|
//! | `orderwatch.delivery.dead` | a delivery became dead (an answer that is never retried, `give_up_after` passed) | `sink`, `event_id`, `error`, `attempts` |
//! | `orderwatch.sink.paused` | a sink was paused by 410 Gone | `sink`, `reason`, `resume` |
//! | `orderwatch.poll.failed` | `[alerts] poll_failures` cycles in a row failed | `failures`, `since`, `error` |
//! | `orderwatch.poll.recovered` | a cycle succeeded after that | `outage` (the failed alert's id), `failures` |

use serde::Serialize;
use serde_json::value::RawValue;

use crate::event::format_time;
use crate::store::AlertEntry;
pub use crate::store::PollHealth;
pub use crate::store::alert::{DELIVERY_DEAD, POLL_FAILED, POLL_RECOVERED, SINK_PAUSED};

#[derive(Serialize)]
struct AlertEvent<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    subject: String,
    time: String,
    datacontenttype: &'static str,
    data: &'a RawValue,
}

/// The alert as a CloudEvent (JSON, no trailing newline): the same
/// envelope as a transition's, `source` the API base URL (which account
/// this orderwatch watches), `subject` `sinks/{name}` or `polling`. A pure
/// function of the stored alert, so every redelivery is the same bytes.
pub fn render(alert: &AlertEntry, source: &str) -> Vec<u8> {
    let subject = match &alert.about {
        Some(sink) => format!("sinks/{sink}"),
        None => "polling".to_string(),
    };
    let null = RawValue::NULL;
    // Stored by orderwatch as JSON; a damaged row still renders, as null.
    let parsed: Option<Box<RawValue>> = serde_json::from_str(&alert.data).ok();
    let event = AlertEvent {
        specversion: "1.0",
        id: &alert.id,
        source,
        kind: &alert.kind,
        subject,
        time: format_time(alert.created_at),
        datacontenttype: "application/json",
        data: parsed.as_deref().unwrap_or(null),
    };
    // Serializing strings and JSON already parsed cannot fail.
    serde_json::to_vec(&event).unwrap_or_default()
}

/// The poller's count of failed cycles in a row, and what to tell the
/// store. The store decides whether an alert is due (an outage is reported
/// once, across restarts and leaders); this only keeps the poller from
/// asking at every cycle. Pure.
#[derive(Debug, Clone)]
pub struct PollWatch {
    threshold: u32,
    failures: u32,
    since: Option<i64>,
    /// Whether the store may hold an outage this process has not seen end:
    /// true at start (a restart during an outage), after a report.
    maybe_open: bool,
}

impl PollWatch {
    /// Reports an outage after `threshold` failed cycles in a row.
    pub fn new(threshold: u32) -> PollWatch {
        PollWatch {
            threshold: threshold.max(1),
            failures: 0,
            since: None,
            maybe_open: true,
        }
    }

    /// A cycle failed at `now` with `error`: what to report, if anything.
    pub fn failed(&mut self, now: i64, error: &str) -> Option<PollHealth> {
        self.failures = self.failures.saturating_add(1);
        let since = *self.since.get_or_insert(now);
        if self.failures < self.threshold {
            return None;
        }
        // Asked once per outage: at the threshold (or, if that report
        // failed, at the next failed cycle).
        if self.failures > self.threshold && self.maybe_open {
            return None;
        }
        Some(PollHealth::Failing {
            failures: self.failures,
            since,
            error: error.to_string(),
        })
    }

    /// A cycle succeeded: what to report, if anything.
    pub fn succeeded(&mut self) -> Option<PollHealth> {
        let failures = std::mem::take(&mut self.failures);
        self.since = None;
        std::mem::take(&mut self.maybe_open).then_some(PollHealth::Recovered { failures })
    }

    /// The store took the report.
    pub fn reported(&mut self, health: &PollHealth) {
        if matches!(health, PollHealth::Failing { .. }) {
            self.maybe_open = true;
        }
    }

    /// The store could not take it: ask again at the next cycle.
    pub fn not_reported(&mut self, health: &PollHealth) {
        match health {
            PollHealth::Failing { .. } => self.maybe_open = false,
            PollHealth::Recovered { .. } => self.maybe_open = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_renders_as_a_cloudevent_of_its_own_type() {
        let entry = AlertEntry {
            seq: 3,
            id: "ow:dead:hook:264:issued:1".into(),
            kind: DELIVERY_DEAD.into(),
            about: Some("hook".into()),
            data: r#"{"sink":"hook","event_id":"264:issued","error":"HTTP 400","attempts":1}"#
                .into(),
            created_at: 1_795_514_523_000,
            attempts: 0,
            first_failure_at: None,
        };
        let body = render(&entry, "https://www.digicert.com/services/v2");
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"specversion":"1.0","id":"ow:dead:hook:264:issued:1","source":"https://www.digicert.com/services/v2","type":"orderwatch.delivery.dead","subject":"sinks/hook","time":"2026-11-24T10:02:03Z","datacontenttype":"application/json","data":{"sink":"hook","event_id":"264:issued","error":"HTTP 400","attempts":1}}"#
        );
        let polling = AlertEntry {
            about: None,
            data: "not json".into(),
            ..entry
        };
        let v: serde_json::Value = serde_json::from_slice(&render(&polling, "s")).unwrap();
        assert_eq!(v["subject"], "polling");
        assert_eq!(v["data"], serde_json::Value::Null);
    }

    #[test]
    fn the_poller_reports_at_the_threshold_and_the_first_success_after() {
        let mut w = PollWatch::new(3);
        // At start the store may hold an outage from before a restart.
        assert_eq!(w.succeeded(), Some(PollHealth::Recovered { failures: 0 }));
        assert_eq!(w.succeeded(), None, "asked once");
        assert_eq!(w.failed(10, "e1"), None);
        assert_eq!(w.failed(20, "e2"), None);
        let report = w.failed(30, "e3").unwrap();
        assert_eq!(
            report,
            PollHealth::Failing {
                failures: 3,
                since: 10,
                error: "e3".into()
            }
        );
        w.reported(&report);
        assert_eq!(w.failed(40, "e4"), None, "once per outage");
        assert_eq!(w.succeeded(), Some(PollHealth::Recovered { failures: 4 }));
        assert_eq!(w.succeeded(), None);
        // A report the store could not take is asked again.
        for t in 0..2 {
            assert_eq!(w.failed(t, "e"), None);
        }
        let report = w.failed(3, "e").unwrap();
        w.not_reported(&report);
        assert!(w.failed(4, "e").is_some());
    }
}
