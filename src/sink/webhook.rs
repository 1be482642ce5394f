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
use base64::Engine;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde::Deserialize;

use super::kind::{BuildContext, BuildError, Kind, Outcome, Sink, SinkSettings};
use super::signature::SigningKey;
use crate::backoff::parse_retry_after;
use crate::config::field::RedactedUrl;
use crate::config::secret::SecretSource;
use crate::config::table::SinkTable;
use crate::event::write_event;
use crate::http::{self, error_chain, read_prefix, snippet};
use crate::store::OutboxEntry;
use crate::transition::event_id;

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
        let key = SigningKey::from_secret(secret.expose()).map_err(|e| {
            let source = &self.secret;
            BuildError::secret(
                "secret",
                source,
                format!("{source} does not hold a Standard Webhooks secret: {e}"),
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
            key,
            source: ctx.source.to_string(),
            concurrency: self.concurrency,
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
    key: SigningKey,
    source: String,
    concurrency: usize,
    /// A receiver's `Retry-After` is honoured up to here: waiting longer
    /// than the sink keeps trying is pointless, and an absurd value
    /// (`Retry-After: 18446744073709551615`) must not overflow a clock.
    max_retry_after: Duration,
}

impl WebhookSink {
    async fn post(&self, entry: &OutboxEntry) -> Outcome {
        let t = &entry.transition;
        let id = event_id(t.order_id, &t.status);
        let mut body = Vec::with_capacity(320);
        write_event(&mut body, t, &self.source);
        // The timestamp is the attempt's, so receivers can refuse replays.
        let timestamp = chrono::Utc::now().timestamp();
        let signature = self.key.sign(&id, timestamp, &body);
        let sent = self
            .client
            .post(self.url.expose().clone())
            .header(CONTENT_TYPE, HeaderValue::from_static(CLOUDEVENTS_JSON))
            .header("webhook-id", id.as_str())
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
                return Outcome::Retry {
                    error: self.scrub(format!(
                        "POST {} {what}: {}",
                        self.endpoint,
                        error_chain(&e)
                    )),
                    retry_after: None,
                };
            }
        };
        let status = resp.status();
        if status.is_success() {
            // Read (a little of) the answer so the connection can be reused.
            let _ = read_prefix(resp, ANSWER_PREFIX).await;
            return Outcome::Delivered;
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
        let code = status.as_u16();
        let line = match status.canonical_reason() {
            Some(reason) => format!("HTTP {code} {reason}"),
            None => format!("HTTP {code}"),
        };
        let error = self.scrub(match location {
            Some(l) if status.is_redirection() => {
                format!("{line}: redirect to {l} not followed; fix the sink's url")
            }
            _ => format!("{line}: {answer}"),
        });
        classify(code, error, retry_after)
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

/// `scheme://host:port/path`: a URL without user info, query or fragment.
fn endpoint(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// The secret-bearing parts of a URL, as they could appear in a message:
/// user, password, the Basic credentials built from them, the query and
/// each query value. Strings under 4 characters are left alone: blanking
/// them would garble messages and hide nothing worth hiding.
fn credentials(url: &reqwest::Url) -> Vec<String> {
    let decode = |s: &str| {
        percent_decode(s)
            .filter(|d| d != s)
            .into_iter()
            .chain([s.to_string()])
            .collect::<Vec<_>>()
    };
    let mut out = Vec::new();
    let user = url.username();
    let password = url.password().unwrap_or_default();
    out.extend(decode(user));
    out.extend(decode(password));
    if !user.is_empty() || !password.is_empty() {
        let plain_user = percent_decode(user).unwrap_or_else(|| user.to_string());
        let plain_password = percent_decode(password).unwrap_or_else(|| password.to_string());
        out.push(
            base64::engine::general_purpose::STANDARD
                .encode(format!("{plain_user}:{plain_password}")),
        );
    }
    if let Some(q) = url.query() {
        out.push(q.to_string());
        for (_, v) in url.query_pairs() {
            out.push(v.into_owned());
        }
        for pair in q.split('&') {
            if let Some((_, v)) = pair.split_once('=') {
                out.extend(decode(v));
            }
        }
    }
    out.retain(|s| s.chars().count() >= 4);
    // Longest first, so a credential is blanked whole before any part of it.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// `%XX`-decodes `s`; `None` if it is not valid UTF-8 afterwards.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let (h, l) = (hex(h).unwrap_or(0), hex(l).unwrap_or(0));
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[async_trait]
impl Sink for WebhookSink {
    async fn deliver(&self, batch: Vec<OutboxEntry>) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(batch.len());
        for e in &batch {
            out.push(self.post(e).await);
        }
        out
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

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).unwrap()
    }

    #[test]
    fn the_endpoint_shows_neither_user_info_nor_query() {
        let u = url("https://hook%20user:p%40ss@hooks.example.net:8443/in/digicert?token=s3cret#x");
        assert_eq!(endpoint(&u), "https://hooks.example.net:8443/in/digicert");
        assert_eq!(
            endpoint(&url("http://127.0.0.1/hook")),
            "http://127.0.0.1/hook"
        );
    }

    #[test]
    fn every_form_of_a_url_credential_is_hidden() {
        let u = url("https://hookuser:p%40ssword@hooks.example.net/in?token=s3cr%2Bt&v=1");
        let hidden = credentials(&u);
        for needle in [
            "hookuser",
            "p@ssword",
            "p%40ssword",
            "s3cr+t",
            "s3cr%2Bt",
            "token=s3cr%2Bt&v=1",
            // What reqwest sends as `Authorization: Basic ...`.
            &base64::engine::general_purpose::STANDARD.encode("hookuser:p@ssword"),
        ] {
            assert!(
                hidden.iter().any(|h| h == needle),
                "{needle} not in {hidden:?}"
            );
        }
        assert!(!hidden.iter().any(|h| h == "1"), "short values stay");
        assert!(credentials(&url("https://hooks.example.net/in")).is_empty());
    }

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

    #[test]
    fn percent_decoding_handles_plain_escaped_and_broken_input() {
        assert_eq!(percent_decode("a%2Bb").as_deref(), Some("a+b"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%zz").as_deref(), Some("%zz"));
        assert_eq!(percent_decode("%ff"), None);
    }
}
