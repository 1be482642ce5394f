//! `type = "webhook"`: a signed `POST` of each CloudEvent.
//!
//! 2xx is delivered. Network errors, timeouts, 408, 429, 5xx and 3xx are
//! retried (redirects are never followed: the receiver's URL is configured,
//! not discovered). 410 Gone pauses the sink. Any other 4xx is dead at once.
//! At most a few KiB of any answer are read.
//!
//! The receiver's URL may carry credentials (`https://user:pass@host/?token=…`).
//! They go to the receiver (user and password as HTTP Basic auth) and
//! nowhere else: messages name the endpoint without user info or query, and
//! any echo of a credential in an answer is blanked before it is logged or
//! written to the ledger.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde::Deserialize;

mod reach;
mod redact;
pub mod signature;

use super::kind::{
    Batch, BuildContext, BuildError, Kind, Message, Outcome, Sent, Sink, SinkSettings,
};
use crate::backoff::parse_retry_after;
use crate::config::field::RedactedUrl;
use crate::config::secret::SecretSource;
use crate::config::table::SinkTable;
use crate::event::write_event;
use crate::http::{self, error_chain, read_prefix, snippet};
use crate::store::OutboxEntry;
use redact::{credentials, endpoint};
use signature::SigningKeys;

/// How much of a receiver's answer is read (for the ledger's last error).
const ANSWER_PREFIX: usize = 4 * 1024;

/// The media type of a structured-mode CloudEvent.
const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

pub static KIND: Kind = Kind {
    name: "webhook",
    parse,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    url: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<std::path::PathBuf>,
    timeout: Option<String>,
    concurrency: Option<u32>,
    allow_insecure_http: Option<bool>,
}

#[derive(Debug)]
struct Settings {
    url: RedactedUrl,
    secret: SecretSource,
    timeout: Duration,
    concurrency: usize,
}

fn parse(table: &mut SinkTable<'_>) -> Option<Arc<dyn SinkSettings>> {
    let keys: Keys = table.keys()?;
    let url = table.http_url(
        "url",
        keys.url.as_deref(),
        keys.allow_insecure_http == Some(true),
        "missing; a webhook sink needs the receiver's URL",
    );
    let credential = format!("webhook-{}", table.name().unwrap_or_default());
    let secret = table.secret(
        "secret",
        keys.secret_env,
        keys.secret_file,
        &credential,
        "missing; a webhook sink signs every request: set secret_env or secret_file (a Standard Webhooks \"whsec_...\" secret), or provide the systemd credential \"webhook-<sink name>\"",
    );
    let timeout = table.positive("timeout", keys.timeout.as_deref(), Duration::from_secs(10));
    let concurrency = table.count("concurrency", keys.concurrency, 8, 1, 256);
    Some(Arc::new(Settings {
        url: url?,
        secret: secret?,
        timeout,
        concurrency,
    }))
}

impl SinkSettings for Settings {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn describe(&self) -> String {
        format!(
            "webhook {} (concurrency {}, timeout {})",
            self.url,
            self.concurrency,
            humantime::format_duration(self.timeout)
        )
    }

    fn secrets(&self) -> Vec<(&'static str, &SecretSource)> {
        vec![("secret", &self.secret)]
    }

    /// Reads and checks the secret and builds the HTTP client; sends nothing.
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn Sink>, BuildError> {
        let secret = self.secret.load().map_err(|e| {
            BuildError::secret(
                "secret",
                &self.secret,
                format!("cannot read the signing secret: {e}"),
            )
        })?;
        let keys = SigningKeys::from_secrets(secret.expose()).map_err(|e| {
            let source = &self.secret;
            BuildError::secret(
                "secret",
                source,
                format!("{source} does not hold Standard Webhooks secrets (one or more \"whsec_...\", separated by spaces or newlines): {e}"),
            )
        })?;
        let client = http::client_builder(self.timeout)
            .pool_max_idle_per_host(self.concurrency)
            .build()
            .map_err(|e| {
                BuildError::key(
                    "url",
                    format!("cannot build the HTTP client: {}", error_chain(&e)),
                )
            })?;
        Ok(Arc::new(WebhookSink {
            client,
            endpoint: endpoint(self.url.expose()),
            hidden: credentials(self.url.expose()),
            url: self.url.clone(),
            keys,
            source: ctx.source.to_string(),
            concurrency: self.concurrency,
            timeout: self.timeout,
            max_retry_after: ctx.give_up_after,
        }))
    }
}

struct WebhookSink {
    client: reqwest::Client,
    url: RedactedUrl,
    /// The URL for messages: scheme, host, port and path only.
    endpoint: String,
    /// Credential strings of the URL, blanked out of every message.
    hidden: Vec<String>,
    /// Every listed secret signs (rotation: old and new at once).
    keys: SigningKeys,
    source: String,
    concurrency: usize,
    /// Per request; also bounds each step of [`Sink::reach`].
    timeout: Duration,
    /// A receiver's `Retry-After` is honoured up to here: waiting longer
    /// than the sink keeps trying is pointless, and an absurd value
    /// (`Retry-After: 18446744073709551615`) must not overflow a clock.
    max_retry_after: Duration,
}

impl WebhookSink {
    async fn post(&self, entry: &OutboxEntry) -> Outcome {
        let t = &entry.transition;
        let id = t.event_id();
        let mut body = Vec::with_capacity(320);
        write_event(&mut body, t, &self.source);
        self.post_body(&id, body).await.outcome
    }

    /// Signs and posts one event; what the receiver answered goes with the
    /// outcome (`orderwatch test-sink` shows it).
    async fn post_body(&self, id: &str, body: Vec<u8>) -> Sent {
        // The timestamp is the attempt's, so receivers can refuse replays.
        let timestamp = chrono::Utc::now().timestamp();
        let signature = self.keys.sign(id, timestamp, &body);
        let sent = self
            .client
            .post(self.url.expose().clone())
            .header(CONTENT_TYPE, HeaderValue::from_static(CLOUDEVENTS_JSON))
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                // reqwest puts the URL in its messages; ours hides credentials.
                let e = e.without_url();
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "failed"
                };
                let error = self.scrub(format!(
                    "POST {} {what}: {}",
                    self.endpoint,
                    error_chain(&e)
                ));
                return Sent {
                    answer: error.clone(),
                    outcome: Outcome::Retry {
                        error,
                        retry_after: None,
                    },
                };
            }
        };
        let status = resp.status();
        let code = status.as_u16();
        let line = match status.canonical_reason() {
            Some(reason) => format!("HTTP {code} {reason}"),
            None => format!("HTTP {code}"),
        };
        if status.is_success() {
            // Read (a little of) the answer so the connection can be reused.
            let answer = snippet(&read_prefix(resp, ANSWER_PREFIX).await);
            return Sent {
                outcome: Outcome::Delivered,
                answer: self.scrub(format!("{line}: {answer}")),
            };
        }
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
            .map(|d| d.min(self.max_retry_after));
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| match self.url.expose().join(l) {
                Ok(u) => endpoint(&u),
                Err(_) => "(an invalid Location)".to_string(),
            });
        let answer = snippet(&read_prefix(resp, ANSWER_PREFIX).await);
        let error = self.scrub(match location {
            Some(l) if status.is_redirection() => {
                format!("{line}: redirect to {l} not followed; fix the sink's url")
            }
            _ => format!("{line}: {answer}"),
        });
        Sent {
            answer: error.clone(),
            outcome: classify(code, error, retry_after),
        }
    }

    /// Blanks any credential of the URL that a message might echo.
    fn scrub(&self, mut text: String) -> String {
        for h in &self.hidden {
            if text.contains(h.as_str()) {
                text = text.replace(h.as_str(), "[redacted]");
            }
        }
        text
    }
}

/// What a non-2xx status means for the delivery. Pure.
fn classify(code: u16, error: String, retry_after: Option<Duration>) -> Outcome {
    match code {
        408 | 429 | 500..=599 | 300..=399 => Outcome::Retry { error, retry_after },
        410 => Outcome::Gone { error },
        _ => Outcome::Dead { error },
    }
}

#[async_trait]
impl Sink for WebhookSink {
    async fn deliver(&self, batch: Batch) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(batch.len());
        for e in batch.iter() {
            out.push(self.post(e).await);
        }
        out
    }

    async fn send(&self, message: &Message<'_>) -> Sent {
        self.post_body(message.id, message.body.to_vec()).await
    }

    async fn reach(&self) -> Result<Option<String>, String> {
        reach::handshake(self.url.expose(), &self.endpoint, self.timeout)
            .await
            .map(Some)
    }

    fn batch_size(&self) -> usize {
        1
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes_as_the_contract_says() {
        let kind = |code| match classify(code, String::new(), None) {
            Outcome::Delivered => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Dead { .. } => "dead",
            Outcome::Gone { .. } => "gone",
        };
        for code in [301, 302, 307, 308, 408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(kind(code), "retry", "{code}");
        }
        for code in [400, 401, 403, 404, 405, 409, 413, 415, 422, 451] {
            assert_eq!(kind(code), "dead", "{code}");
        }
        assert_eq!(kind(410), "gone");
        let Outcome::Retry { retry_after, .. } =
            classify(429, "x".into(), Some(Duration::from_secs(7)))
        else {
            panic!("429 retries");
        };
        assert_eq!(retry_after, Some(Duration::from_secs(7)));
    }
}
