//! The shared vocabulary of the data path: an order change as CertCentral
//! reports it, a recorded transition, its stable event id, and the clock.
//!
//! Everything else depends on this file and it depends on nothing of
//! orderwatch's own: the API client produces [`OrderChange`]s, the store
//! turns them into [`TransitionRow`]s, events and sinks read those. Keeping
//! the types here is what lets those modules not import one another.

use std::sync::Arc;

/// One order as CertCentral reported it: its *current* status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderChange {
    pub order_id: i64,
    pub certificate_id: Option<i64>,
    /// Lower-case; shared between the many orders of one status.
    pub status: Arc<str>,
}

/// A recorded transition: an order's status (or, with the same status, its
/// certificate) differs from what orderwatch last recorded for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRow {
    /// The recording order, which is also the delivery order of one order's events.
    pub seq: i64,
    pub order_id: i64,
    pub status: String,
    /// How often this order had reached this status before: 0 the first
    /// time, k for the k-th return (a reissue's second `issued` is 1).
    pub occurrence: u32,
    pub certificate_id: Option<i64>,
    pub previous_status: Option<String>,
    /// When orderwatch first saw it, unix ms.
    pub seen_at: i64,
    /// The event's `data.order` as JSON text (an object, or `null` when the
    /// lookup found nothing or gave up); `None` when none was asked for.
    pub details: Option<String>,
}

impl TransitionRow {
    /// The event id of this transition (see [`event_id`]).
    pub fn event_id(&self) -> String {
        event_id(self.order_id, &self.status, self.occurrence)
    }

    /// The same, as its parts.
    pub fn id(&self) -> EventId {
        EventId {
            order_id: self.order_id,
            status: self.status.clone(),
            occurrence: self.occurrence,
        }
    }
}

/// The stable event id: `{order_id}:{status}` for the first time an order
/// reaches a status, `{order_id}:{status}:{k}` for its k-th return. Every
/// redelivery of a transition carries the same id, and ids minted before
/// returns were reported (all first occurrences) keep their meaning.
pub fn event_id(order_id: i64, status: &str, occurrence: u32) -> String {
    match occurrence {
        0 => format!("{order_id}:{status}"),
        k => format!("{order_id}:{status}:{k}"),
    }
}

/// An event id taken apart: what `orderwatch redeliver --event` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventId {
    pub order_id: i64,
    pub status: String,
    pub occurrence: u32,
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&event_id(self.order_id, &self.status, self.occurrence))
    }
}

/// Reads `"264:canceled"` or `"264:issued:2"`. A trailing `:<digits>` is
/// the return count; CertCentral's statuses are words, so a status that
/// itself ends in `:<digits>` is not expected (it would read as a return).
pub fn parse_event_id(id: &str) -> Option<EventId> {
    let (order, rest) = id.split_once(':')?;
    let order_id = order.parse().ok()?;
    let (status, occurrence) = match rest.rsplit_once(':') {
        Some((status, k)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) => {
            (status, k.parse().ok()?)
        }
        _ => (rest, 0),
    };
    if status.is_empty() {
        return None;
    }
    Some(EventId {
        order_id,
        status: status.to_string(),
        occurrence,
    })
}

/// Which sightings of an order are transitions (`[events] dedupe`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dedupe {
    /// A sighting that differs from the order's current status, or has the
    /// same status with another certificate (a reissue finished between two
    /// polls), is a transition, even when the order had that status before.
    #[default]
    Change,
    /// Only the first sighting of each `(order_id, status)` is a transition:
    /// returns and reissues are not reported (orderwatch before 0.2).
    FirstSighting,
}

impl Dedupe {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Dedupe::Change => "change",
            Dedupe::FirstSighting => "first_sighting",
        }
    }
}

/// Milliseconds since the Unix epoch: the store's and the ledger's unit of
/// time. One function, so there is one wall clock to reason about.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The wall clock as the loops read it (unix ms). The daemon runs on the
/// system clock; tests run the loops on tokio's paused clock, so a retry
/// schedule of hours is checked in milliseconds and never flakes.
#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    #[default]
    System,
    /// Unix ms `start_ms` at tokio instant `start`, then tokio's time.
    Tokio {
        start_ms: i64,
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that follows tokio's (possibly paused) time from now on.
    pub fn tokio(start_ms: i64) -> Clock {
        Clock::Tokio {
            start_ms,
            start: tokio::time::Instant::now(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => now_ms(),
            Clock::Tokio { start_ms, start } => {
                let elapsed = i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX);
                start_ms.saturating_add(elapsed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(order_id: i64, status: &str, occurrence: u32) -> Option<EventId> {
        Some(EventId {
            order_id,
            status: status.into(),
            occurrence,
        })
    }

    #[test]
    fn an_event_id_round_trips() {
        assert_eq!(event_id(264, "canceled", 0), "264:canceled");
        assert_eq!(event_id(264, "issued", 2), "264:issued:2");
        assert_eq!(parse_event_id("264:canceled"), id(264, "canceled", 0));
        assert_eq!(parse_event_id("264:issued:2"), id(264, "issued", 2));
        assert_eq!(parse_event_id("264:issued:0"), id(264, "issued", 0));
        for k in [0, 1, 7, u32::MAX] {
            let text = event_id(9, "reissue_pending", k);
            assert_eq!(parse_event_id(&text), id(9, "reissue_pending", k));
            assert_eq!(parse_event_id(&text).unwrap().to_string(), text);
        }
        assert_eq!(parse_event_id("264:"), None);
        assert_eq!(parse_event_id("264::3"), None);
        assert_eq!(parse_event_id("264:issued:99999999999"), None);
        assert_eq!(parse_event_id("x:issued"), None);
        assert_eq!(parse_event_id("264"), None);
    }
}
