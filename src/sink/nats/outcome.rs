//! What a failed publish or connect means for the delivery, worded so an
//! operator can act on it. Pure.

use std::time::Duration;

use async_nats::ConnectErrorKind;
use async_nats::jetstream::context::PublishErrorKind;

use crate::sink::kind::Outcome;

/// How long JetStream has to acknowledge a publish. A late ack is no harm:
/// the retry carries the same `Nats-Msg-Id` and is dropped as a duplicate.
pub(super) const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// What a failed publish needs for a message that says what to do.
#[derive(Debug, Clone)]
pub(super) struct Hints {
    /// The servers, as shown (`nats://127.0.0.1:4222`).
    pub servers: String,
    /// How the sink authenticates ("token from environment variable X").
    pub auth: String,
    /// The subjects a stream must take (`certcentral.orders.*`).
    pub filter: String,
    /// The sink's `give_up_after`: the duplicate window to suggest.
    pub give_up_after: Duration,
}

/// `72h` or `5400s`: a duration as the `nats` CLI and server configs write it.
fn go_duration(d: Duration) -> String {
    let s = d.as_secs().max(1);
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else {
        format!("{s}s")
    }
}

/// What a failed publish means. Pure.
///
/// Everything is retried except a message the server can never take; the
/// breaker then probes the server one batch at a time.
pub(super) fn publish_outcome(
    kind: PublishErrorKind,
    detail: &str,
    subject: &str,
    hints: &Hints,
) -> Outcome {
    let retry = |error: String| Outcome::Retry {
        error,
        retry_after: None,
    };
    match kind {
        PublishErrorKind::StreamNotFound => retry(format!(
            "no JetStream stream stores subject {subject} (NATS answered 503 no responders); create one, e.g. `nats stream add ORDERWATCH --subjects '{}' --storage file --dupe-window {} --defaults`, or check that JetStream is enabled on {}",
            hints.filter,
            go_duration(hints.give_up_after),
            hints.servers
        )),
        PublishErrorKind::TimedOut => retry(format!(
            "no acknowledgement from JetStream within {}s for subject {subject} (server overloaded, stream without a leader, or the connection dropped); retried with the same Nats-Msg-Id",
            ACK_TIMEOUT.as_secs()
        )),
        PublishErrorKind::BrokenPipe => retry(format!(
            "the connection to NATS closed before JetStream acknowledged subject {subject}"
        )),
        PublishErrorKind::MaxPayloadExceeded => Outcome::Dead {
            error: format!("publishing to {subject}: {detail}; raise the server's max_payload"),
        },
        _ => retry(format!(
            "JetStream refused the publish to {subject}: {detail}"
        )),
    }
}

/// What a failed connect means. Pure. Always a retry: a server that is
/// down comes back, and wrong credentials are fixed by the operator.
pub(super) fn connect_outcome(kind: ConnectErrorKind, detail: &str, hints: &Hints) -> Outcome {
    let error = match kind {
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => format!(
            "NATS at {} refused orderwatch's credentials ({}): {detail}; fix them and restart orderwatch (until then the sink probes one batch at a time)",
            hints.servers, hints.auth
        ),
        ConnectErrorKind::Tls => format!(
            "TLS with NATS at {} failed: {detail} (the server's certificate must be trusted by this machine)",
            hints.servers
        ),
        _ => format!("cannot connect to NATS at {}: {detail}", hints.servers),
    };
    Outcome::Retry {
        error,
        retry_after: None,
    }
}

/// The error an outcome carries ("" for a delivery).
pub(super) fn error_of(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Delivered => String::new(),
        Outcome::Retry { error, .. } | Outcome::Dead { error } | Outcome::Gone { error } => {
            error.clone()
        }
    }
}
