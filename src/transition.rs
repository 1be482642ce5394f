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
    // An id as orderwatch printed it carries the status already escaped
    // ("5:on%20hold"); escaping it again would name another event. What
    // a person typed ("264:Canceled") is made a status name.
    let status = if is_status_name(status) {
        status.to_string()
    } else {
        status_name(status)
    };
    Some(EventId {
        order_id,
        status,
        occurrence,
    })
}

/// `name` is what [`status_name`] makes of some status: `[a-z0-9_]` and
/// `%XX` escapes (upper-case hex), at most [`MAX_STATUS_LEN`] long, or 48
/// such characters (the cut may split an escape) then `~` and 12 hex digits.
fn is_status_name(name: &str) -> bool {
    let (body, cut) = match name.split_once('~') {
        Some((body, tag)) => {
            let tag_ok =
                tag.len() == 12 && tag.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !tag_ok || body.len() != 48 {
                return false;
            }
            (body.as_bytes(), true)
        }
        None if name.len() > MAX_STATUS_LEN => return false,
        None => (name.as_bytes(), false),
    };
    let hex = |b: &u8| matches!(b, b'0'..=b'9' | b'A'..=b'F');
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'a'..=b'z' | b'0'..=b'9' | b'_' => i += 1,
            b'%' => {
                let escape = &body[i + 1..body.len().min(i + 3)];
                if !escape.iter().all(hex) || (escape.len() < 2 && !cut) {
                    return false;
                }
                i += 1 + escape.len();
            }
            _ => return false,
        }
    }
    true
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
        // Typed by a person: made a status name.
        assert_eq!(parse_event_id("264:Canceled"), id(264, "canceled", 0));
        assert_eq!(parse_event_id("5:on hold"), id(5, "on%20hold", 0));
        assert_eq!(parse_event_id("5:100%"), id(5, "100%25", 0));
    }

    #[test]
    fn an_id_orderwatch_printed_names_its_event_again() {
        // Escaped, cut (one of them in the middle of an escape) and plain.
        let long = format!("{}é and more", "x".repeat(46));
        for raw in [
            "On Hold",
            "a\nb",
            "é",
            "rtl\u{202e}",
            &"a".repeat(200),
            &long,
            "issued",
        ] {
            let status = status_name(raw);
            assert!(is_status_name(&status), "{raw:?} gave {status:?}");
            for k in [0, 3] {
                let printed = event_id(42, &status, k);
                assert_eq!(parse_event_id(&printed), id(42, &status, k), "{printed}");
            }
        }
        assert!(status_name(&long).contains("%C3~") || status_name(&long).contains("%C~"));
        assert_eq!(parse_event_id("264::3"), None);
        assert_eq!(parse_event_id("264:issued:99999999999"), None);
        assert_eq!(parse_event_id("x:issued"), None);
        assert_eq!(parse_event_id("264"), None);
    }
}
