//! Operational events ("alerts") as the store keeps them: what each one
//! says, its id, and who receives it. Backend-neutral: both backends write
//! the [`NewAlert`]s built here, in the transaction of the state change
//! that causes them (marking a delivery dead, pausing a sink, a poll
//! outage), so a crash neither loses nor doubles one.
//!
//! Rules every backend keeps:
//! * An alert goes to every operational sink of the running configuration
//!   (`set_alert_sinks`) except the one it is about.
//! * Alert deliveries never cause alerts: a dead alert delivery, or a 410
//!   from an operational sink, is logged and counted, nothing more.
//! * The id is `ow:{key}:{n}`, `n` counting the alerts of that key (1 for
//!   the first): minted once, when the alert is written, so every
//!   redelivery carries it; `ow` is no order number, so it can never be a
//!   transition's id.

use serde_json::json;

/// A delivery of a transition became dead.
pub const DELIVERY_DEAD: &str = "orderwatch.delivery.dead";
/// A sink was paused: its receiver answered 410 Gone.
pub const SINK_PAUSED: &str = "orderwatch.sink.paused";
/// Polling has failed for `[alerts] poll_failures` cycles in a row.
pub const POLL_FAILED: &str = "orderwatch.poll.failed";
/// Polling succeeded again after a [`POLL_FAILED`].
pub const POLL_RECOVERED: &str = "orderwatch.poll.recovered";

/// What every alert id starts with.
pub const ID_PREFIX: &str = "ow:";

/// The longest error text an alert carries (a receiver's answer can be long).
const MAX_ERROR: usize = 1024;

/// An alert about to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    /// The id without its count: `dead:{sink}:{event id}`, `paused:{sink}`,
    /// `poll-failed`, `poll-recovered`.
    pub key: String,
    /// The CloudEvents `type`.
    pub kind: &'static str,
    /// The sink it is about; it never receives it.
    pub about: Option<String>,
    /// The event's `data`.
    pub data: serde_json::Value,
}

impl NewAlert {
    /// The id of the `n`-th alert of this key.
    pub fn id(&self, n: i64) -> String {
        format!("{ID_PREFIX}{}:{n}", self.key)
    }
}

/// A delivery of `event_id` to `sink` became dead with `error`.
pub fn delivery_dead(sink: &str, event_id: &str, error: &str, attempts: u32) -> NewAlert {
    NewAlert {
        key: format!("dead:{sink}:{event_id}"),
        kind: DELIVERY_DEAD,
        about: Some(sink.to_string()),
        data: json!({
            "sink": sink,
            "event_id": event_id,
            "error": bounded(error),
            "attempts": attempts,
        }),
    }
}

/// `sink` was paused by a 410 Gone, for `reason`.
pub fn sink_paused(sink: &str, reason: &str) -> NewAlert {
    NewAlert {
        key: format!("paused:{sink}"),
        kind: SINK_PAUSED,
        about: Some(sink.to_string()),
        data: json!({
            "sink": sink,
            "reason": bounded(reason),
            "resume": format!("orderwatch redeliver --sink {sink} --dead"),
        }),
    }
}

/// How polling is doing, as the poller reports it to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollHealth {
    /// `failures` cycles in a row have failed, the first at `since` (unix
    /// ms), the last with `error`.
    Failing {
        failures: u32,
        since: i64,
        error: String,
    },
    /// A cycle succeeded after `failures` failed ones (as this process
    /// counted them).
    Recovered { failures: u32 },
}

/// Polling has failed `failures` times in a row since `since`.
pub fn poll_failed(failures: u32, since: i64, error: &str) -> NewAlert {
    NewAlert {
        key: "poll-failed".to_string(),
        kind: POLL_FAILED,
        about: None,
        data: json!({
            "failures": failures,
            "since": crate::event::format_time(since),
            "error": bounded(error),
        }),
    }
}

/// Polling works again; `outage` is the id of the alert that said it did not.
pub fn poll_recovered(outage: &str, failures: u32) -> NewAlert {
    NewAlert {
        key: "poll-recovered".to_string(),
        kind: POLL_RECOVERED,
        about: None,
        data: json!({
            "outage": outage,
            "failures": failures,
        }),
    }
}

/// What a backend does with a poll report, given the type of the latest
/// poll alert written (`None`: never any): an outage is reported once, and
/// its end once, across restarts and leaders.
pub fn poll_alert(health: &PollHealth, latest: Option<(&str, &str)>) -> Option<NewAlert> {
    let open = latest.filter(|(kind, _)| *kind == POLL_FAILED);
    match (health, open) {
        (
            PollHealth::Failing {
                failures,
                since,
                error,
            },
            None,
        ) => Some(poll_failed(*failures, *since, error)),
        (PollHealth::Recovered { failures }, Some((_, outage))) => {
            Some(poll_recovered(outage, *failures))
        }
        _ => None,
    }
}

/// `text` cut to [`MAX_ERROR`] bytes on a character boundary.
fn bounded(text: &str) -> String {
    if text.len() <= MAX_ERROR {
        return text.to_string();
    }
    let mut end = MAX_ERROR;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A pending delivery of an alert to an operational sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEntry {
    /// The alert's recording order.
    pub seq: i64,
    pub id: String,
    /// The CloudEvents `type`.
    pub kind: String,
    pub about: Option<String>,
    /// The event's `data`, JSON text.
    pub data: String,
    /// When it was written (unix ms): the event's `time`.
    pub created_at: i64,
    pub attempts: u32,
    pub first_failure_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_start_with_ow_and_count_per_key() {
        let a = delivery_dead("hook", "264:issued:1", "HTTP 400", 1);
        assert_eq!(a.id(1), "ow:dead:hook:264:issued:1:1");
        assert_eq!(a.id(2), "ow:dead:hook:264:issued:1:2");
        assert!(crate::transition::parse_event_id(&a.id(1)).is_none());
        assert_eq!(sink_paused("hook", "gone").id(1), "ow:paused:hook:1");
        assert_eq!(poll_failed(3, 0, "x").id(4), "ow:poll-failed:4");
    }

    #[test]
    fn an_outage_is_reported_once_and_its_end_once() {
        let failing = PollHealth::Failing {
            failures: 3,
            since: 0,
            error: "HTTP 503".into(),
        };
        let back = PollHealth::Recovered { failures: 4 };
        assert_eq!(
            poll_alert(&failing, None).map(|a| a.kind),
            Some(POLL_FAILED)
        );
        let open = Some((POLL_FAILED, "ow:poll-failed:1"));
        assert_eq!(poll_alert(&failing, open), None);
        let ended = poll_alert(&back, open).unwrap();
        assert_eq!(ended.kind, POLL_RECOVERED);
        assert_eq!(ended.data["outage"], "ow:poll-failed:1");
        assert_eq!(poll_alert(&back, None), None);
        let closed = Some((POLL_RECOVERED, "ow:poll-recovered:1"));
        assert_eq!(poll_alert(&back, closed), None);
        assert!(poll_alert(&failing, closed).is_some());
    }

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        let long = "é".repeat(2000);
        let a = delivery_dead("s", "1:x", &long, 1);
        let e = a.data["error"].as_str().unwrap();
        assert!(e.len() <= MAX_ERROR + "…".len());
        assert!(e.ends_with('…'));
    }
}
