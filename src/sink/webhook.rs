//! `type = "webhook"`: a signed `POST` of each CloudEvent.
//!
//! 2xx is delivered. Network errors, timeouts, 408, 429, 5xx and 3xx are
//! retried (redirects are never followed: the receiver's URL is configured,
//! not discovered). 410 Gone pauses the sink. Any other 4xx is dead at once.
//! At most a few KiB of any answer are read.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use super::signature::SigningKey;
use super::{Outcome, Sink};
use crate::backoff::parse_retry_after;
use crate::certcentral::{error_chain, read_prefix, snippet};
use crate::config::{RedactedUrl, SinkConfig, SinkKind};
use crate::event::{event_id, write_event};
use crate::store::OutboxEntry;

/// How much of a receiver's answer is read (for the ledger's last error).
const ANSWER_PREFIX: usize = 4 * 1024;

pub struct WebhookSink {
    client: reqwest::Client,
    url: RedactedUrl,
    key: SigningKey,
    source: String,
    concurrency: usize,
}

impl WebhookSink {
    /// Builds the sink; reads and checks the secret.
    pub fn new(cfg: &SinkConfig, source: &str) -> anyhow::Result<WebhookSink> {
        let SinkKind::Webhook {
            url,
            secret,
            timeout,
            concurrency,
        } = &cfg.kind
        else {
            anyhow::bail!("sink {:?} is not a webhook sink", cfg.name);
        };
        let secret = secret.load().with_context(|| {
            format!(
                "sink {:?}: cannot read the webhook secret ({secret})",
                cfg.name
            )
        })?;
        let key = SigningKey::from_secret(secret.expose())
            .with_context(|| format!("sink {:?}: the webhook secret", cfg.name))?;
        crate::certcentral::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(*timeout)
            .connect_timeout((*timeout).min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(*concurrency)
            .user_agent(concat!("orderwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .with_context(|| format!("sink {:?}: cannot build the HTTP client", cfg.name))?;
        Ok(WebhookSink {
            client,
            url: url.clone(),
            key,
            source: source.to_string(),
            concurrency: *concurrency,
        })
    }

    async fn post(&self, entry: &OutboxEntry) -> Outcome {
        let t = &entry.transition;
        let id = event_id(t.order_id, &t.status);
        let mut body = Vec::with_capacity(320);
        write_event(&mut body, t, &self.source);
        let timestamp = chrono::Utc::now().timestamp();
        let signature = self.key.sign(&id, timestamp, &body);
        let sent = self
            .client
            .post(self.url.expose().clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/cloudevents+json"),
            )
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
                    error: format!("POST {} {what}: {}", self.url, error_chain(&e)),
                    retry_after: None,
                };
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Outcome::Delivered;
        }
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let answer = snippet(&read_prefix(resp, ANSWER_PREFIX).await);
        let code = status.as_u16();
        let error = match location {
            Some(l) if status.is_redirection() => {
                format!("HTTP {code} redirect to {l} (not followed)")
            }
            _ => format!("HTTP {code}: {answer}"),
        };
        match code {
            408 | 429 | 500..=599 | 300..=399 => Outcome::Retry { error, retry_after },
            410 => Outcome::Gone { error },
            _ => Outcome::Dead { error },
        }
    }
}

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
