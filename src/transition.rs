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

/// A recorded transition: an order reached a status orderwatch had not
/// recorded for it before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRow {
    /// The recording order, which is also the delivery order of one order's events.
    pub seq: i64,
    pub order_id: i64,
    pub status: String,
    pub certificate_id: Option<i64>,
    pub previous_status: Option<String>,
    /// When orderwatch first saw it, unix ms.
    pub seen_at: i64,
}

impl TransitionRow {
    /// The event id of this transition (see [`event_id`]).
    pub fn event_id(&self) -> String {
        event_id(self.order_id, &self.status)
    }
}

/// The stable event id: one per `(order_id, status)` pair, like the dedupe
/// key, so every redelivery of a transition carries the same id.
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

    #[test]
    fn an_event_id_round_trips() {
        assert_eq!(event_id(264, "canceled"), "264:canceled");
        assert_eq!(
            parse_event_id("264:canceled"),
            Some((264, "canceled".into()))
        );
        assert_eq!(parse_event_id("264:"), None);
        assert_eq!(parse_event_id("x:issued"), None);
        assert_eq!(parse_event_id("264"), None);
    }
}
