//! The `subject` template of a NATS sink and the message headers: pure
//! functions, so every rule is tested without a server.
//!
//! A template is checked once, when the config is read, against NATS's
//! subject rules (dot-separated non-empty tokens, no whitespace, no
//! wildcards, nothing reserved), and everything substituted into it is
//! made of characters those rules allow. So a rendered subject is always
//! valid, whatever status CertCentral invents: a publish can fail for the
//! server's reasons, never for the subject's.

use std::borrow::Cow;
use std::fmt;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Status,
    OrderId,
}

/// A checked `subject` template such as `certcentral.orders.{status}`.
#[derive(Clone, PartialEq, Eq)]
pub struct SubjectTemplate {
    text: String,
    parts: Vec<Part>,
}

impl fmt::Debug for SubjectTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl fmt::Display for SubjectTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl SubjectTemplate {
    /// Checks `text`; the error says what is wrong and how to write it.
    pub fn parse(text: &str) -> Result<SubjectTemplate, String> {
        if text.is_empty() {
            return Err("is empty; expected e.g. \"certcentral.orders.{status}\"".into());
        }
        if text.starts_with('$') {
            return Err(format!(
                "{text:?} starts with '$', which NATS reserves for its own APIs ($JS, $SYS); use e.g. \"certcentral.orders.{{status}}\""
            ));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if c == '{' {
                let Some(end) = rest.find('}') else {
                    return Err(format!(
                        "{text:?} has a '{{' without its '}}'; the placeholders are {{status}} and {{order_id}}"
                    ));
                };
                let part = match &rest[..=end] {
                    "{status}" => Part::Status,
                    "{order_id}" => Part::OrderId,
                    other => {
                        return Err(format!(
                            "{text:?} has the unknown placeholder {other}; use {{status}} or {{order_id}}"
                        ));
                    }
                };
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(part);
                rest = &rest[end + 1..];
                continue;
            }
            match c {
                '}' => {
                    return Err(format!(
                        "{text:?} has a '}}' without its '{{'; the placeholders are {{status}} and {{order_id}}"
                    ));
                }
                '*' | '>' => {
                    return Err(format!(
                        "{text:?} contains the wildcard {c:?}; a message is published to one subject (wildcards belong in the stream's subjects)"
                    ));
                }
                c if !c.is_ascii_graphic() => {
                    return Err(format!(
                        "{text:?} contains {c:?}; NATS subjects take printable ASCII without spaces"
                    ));
                }
                _ => literal.push(c),
            }
            rest = &rest[c.len_utf8()..];
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let template = SubjectTemplate {
            text: text.to_string(),
            parts,
        };
        // Placeholders never render empty, so a token is empty only if the
        // template has one: leading, trailing or doubled dots.
        if template.tokens().any(|t| t.is_empty()) {
            return Err(format!(
                "{text:?} has an empty token (a leading, trailing or doubled '.'); write tokens separated by single dots"
            ));
        }
        Ok(template)
    }

    /// The template's dot-separated tokens, placeholders as written.
    fn tokens(&self) -> std::str::Split<'_, char> {
        self.text.split('.')
    }

    /// The subject of the event of `order_id` with `status`.
    pub fn render(&self, order_id: i64, status: &str) -> String {
        let mut out = String::with_capacity(self.text.len() + 16);
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Status => out.push_str(&status_token(status)),
                Part::OrderId => out.push_str(itoa::Buffer::new().format(order_id)),
            }
        }
        out
    }

    /// The subjects a stream must take to store every event of this sink:
    /// each token holding a placeholder becomes `*`
    /// (`certcentral.orders.{status}` -> `certcentral.orders.*`).
    pub fn filter(&self) -> String {
        self.tokens()
            .map(|t| if t.contains('{') { "*" } else { t })
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// A status as a piece of a subject. Recorded statuses are lower-case
/// `[a-z0-9_]`, or escaped into `%XX` with a `~` tag when cut (see
/// `transition::status_name`): all of that is a valid token and passes
/// unchanged. A status recorded by an older orderwatch may hold anything
/// (a space, a dot, a wildcard), which would break the subject, so each
/// other byte is written `-` plus two hex digits (`"a b"` -> `a-20b`); `-`
/// never occurs unescaped, so no two statuses map to the same token.
pub fn status_token(status: &str) -> Cow<'_, str> {
    let plain =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'%' | b'~');
    if !status.is_empty() && status.bytes().all(plain) {
        return Cow::Borrowed(status);
    }
    if status.is_empty() {
        // Not a status CertCentral can send (the parser refuses it), but a
        // token must not be empty.
        return Cow::Borrowed("-");
    }
    let mut out = String::with_capacity(status.len() * 3);
    for b in status.bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("-{b:02x}"));
        }
    }
    Cow::Owned(out)
}

/// The `Nats-Msg-Id` of an event: its id. Ids of recorded statuses are
/// printable ASCII and pass unchanged; only a status recorded raw by an
/// older orderwatch can hold control characters, which a NATS header
/// cannot carry: those are written `%XX`. The mapping is the same on every
/// attempt, which is all JetStream's deduplication needs.
pub fn message_id(event_id: &str) -> Cow<'_, str> {
    if !event_id.chars().any(|c| c.is_control()) {
        return Cow::Borrowed(event_id);
    }
    let mut out = String::with_capacity(event_id.len() + 8);
    for c in event_id.chars() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The media type of a structured-mode CloudEvent.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

/// The headers of an event's message: `Nats-Msg-Id` (JetStream drops a
/// second message with the same id within the stream's duplicate window)
/// and `Content-Type`.
pub fn headers(event_id: &str) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    // `message_id` leaves no '\r' or '\n', the only values a header refuses.
    if let Ok(id) = message_id(event_id).parse::<async_nats::HeaderValue>() {
        h.insert(async_nats::header::NATS_MESSAGE_ID, id);
    }
    h.insert("Content-Type", CLOUDEVENTS_JSON);
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> SubjectTemplate {
        SubjectTemplate::parse(text).unwrap()
    }

    #[test]
    fn placeholders_are_filled_anywhere_in_a_token() {
        let t = parse("certcentral.orders.{status}");
        assert_eq!(t.render(264, "issued"), "certcentral.orders.issued");
        assert_eq!(t.filter(), "certcentral.orders.*");
        let t = parse("dc.{order_id}.s-{status}.x");
        assert_eq!(t.render(7, "needs_approval"), "dc.7.s-needs_approval.x");
        assert_eq!(t.filter(), "dc.*.*.x");
        let t = parse("audit");
        assert_eq!(t.render(1, "issued"), "audit");
        assert_eq!(t.filter(), "audit");
    }

    #[test]
    fn bad_templates_are_refused_saying_why() {
        for (text, why) in [
            ("", "is empty"),
            ("orders.{state}", "unknown placeholder {state}"),
            ("orders.{status", "without its '}'"),
            ("orders.status}", "without its '{'"),
            ("orders.*", "wildcard"),
            ("orders.>", "wildcard"),
            ("orders. x", "printable ASCII"),
            ("orders.\u{e9}", "printable ASCII"),
            (".orders", "empty token"),
            ("orders.", "empty token"),
            ("orders..{status}", "empty token"),
            ("$JS.API.x", "reserves"),
        ] {
            let err = SubjectTemplate::parse(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn statuses_outside_a_z_are_escaped_into_one_token() {
        assert_eq!(status_token("waiting_pickup"), "waiting_pickup");
        assert_eq!(status_token("reissue pending"), "reissue-20pending");
        assert_eq!(status_token("a.b"), "a-2eb");
        assert_eq!(status_token("a-b"), "a-2db");
        assert_eq!(status_token("*"), "-2a");
        assert_eq!(status_token("\u{e9}"), "-c3-a9");
        assert_eq!(status_token(""), "-");
    }

    #[test]
    fn headers_carry_the_event_id_and_the_cloudevents_type() {
        let h = headers("264:issued");
        assert_eq!(
            h.get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str()),
            Some("264:issued")
        );
        assert_eq!(
            h.get("Content-Type").map(|v| v.as_str()),
            Some(CLOUDEVENTS_JSON)
        );
        // A status with a line break cannot break the header block.
        let h = headers("9:a\r\nb");
        assert_eq!(
            h.get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str()),
            Some("9:a%0D%0Ab")
        );
    }

    /// What NATS accepts as a publish subject.
    fn valid_subject(s: &str) -> bool {
        !s.is_empty()
            && s.split('.').all(|t| {
                !t.is_empty()
                    && t.bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>')
            })
    }

    proptest! {
        #[test]
        fn any_status_renders_a_valid_subject_and_distinct_statuses_stay_distinct(
            a in any::<String>(), b in any::<String>(), order in 1i64..i64::MAX,
        ) {
            let t = parse("certcentral.orders.{status}.{order_id}");
            let (sa, sb) = (t.render(order, &a), t.render(order, &b));
            prop_assert!(valid_subject(&sa), "{sa:?}");
            prop_assert_eq!(sa.split('.').count(), 4);
            if a != b {
                prop_assert_ne!(sa, sb);
            }
            let (ia, ib) = (message_id(&a), message_id(&b));
            prop_assert!(!ia.contains(['\r', '\n']));
            if a != b {
                prop_assert_ne!(ia, ib);
            }
        }

        #[test]
        fn any_template_text_is_refused_or_renders_valid_subjects(
            text in "[a-z{}._$*> \\-]{0,24}|[ -~]{0,24}", status in any::<String>(),
        ) {
            if let Ok(t) = SubjectTemplate::parse(&text) {
                let s = t.render(42, &status);
                prop_assert!(valid_subject(&s), "{text:?} -> {s:?}");
                prop_assert!(!s.starts_with('$'));
            }
        }
    }
}
