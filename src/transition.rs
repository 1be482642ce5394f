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

/// The longest status recorded as it is; a longer one is cut and tagged.
pub const MAX_STATUS_LEN: usize = 64;

/// A status as orderwatch records it. CertCentral's statuses are short
/// lower-case words (`pending`, `waiting_pickup`); whatever else an answer
/// holds (newlines, escape sequences, NUL, bidi controls, non-ASCII,
/// megabytes) must not reach a log line, a webhook header, a NATS subject
/// or a metric label raw, nor break a signature check. So: trimmed and
/// lower-cased, every byte outside `[a-z0-9_]` written as `%XX`, and a
/// result longer than [`MAX_STATUS_LEN`] cut to 48 characters plus `~` and
/// 12 hex digits of its SHA-256, so it stays stable and distinct. A
/// well-formed status is left exactly as it was.
pub fn status_name(raw: &str) -> String {
    let raw = raw.trim();
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        match b.to_ascii_lowercase() {
            c @ (b'a'..=b'z' | b'0'..=b'9' | b'_') => out.push(c as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    if out.len() <= MAX_STATUS_LEN {
        return out;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(out.as_bytes());
    let tag: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{}~{tag}", &out[..48])
}

/// The stable event id: one per `(order_id, status)` pair, like the dedupe
/// key, so every redelivery of a transition carries the same id.
pub fn event_id(order_id: i64, status: &str) -> String {
    format!("{order_id}:{status}")
}

/// Splits `"264:canceled"` into its order and status (spelled as recorded).
pub fn parse_event_id(id: &str) -> Option<(i64, String)> {
    let (order, status) = id.split_once(':')?;
    let order_id = order.parse().ok()?;
    if status.trim().is_empty() {
        return None;
    }
    Some((order_id, status_name(status)))
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
    fn statuses_are_short_lower_case_words_and_anything_else_is_escaped() {
        assert_eq!(status_name("issued"), "issued");
        assert_eq!(status_name(" Waiting_Pickup "), "waiting_pickup");
        assert_eq!(status_name("a\nb"), "a%0Ab");
        assert_eq!(status_name("x\u{1b}[31m"), "x%1B%5B31m");
        assert_eq!(status_name("é"), "%C3%A9");
        assert_eq!(status_name("rtl\u{202e}"), "rtl%E2%80%AE");
        let long = status_name(&"a".repeat(1_000_000));
        assert_eq!(long.len(), 48 + 1 + 12);
        assert!(long.starts_with(&"a".repeat(48)));
        assert_ne!(long, status_name(&"a".repeat(999_999)), "stays distinct");
        for s in [long.as_str(), &status_name("\0 NUL")] {
            assert!(s.bytes().all(|b| b.is_ascii_graphic()), "{s:?}");
        }
    }

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
