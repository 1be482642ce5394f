//! How every request travels: the key header, pacing, retries with
//! backoff (honouring `Retry-After`), bounded answers, and errors that say
//! which URL failed and how.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderValue, RETRY_AFTER};

use super::answer::{Answer, ErrorBody};
use super::body::{self, BodyError};
use super::error::{api_error, http_code};
use super::orders::Statuses;
use super::{ApiError, Client, MAX_RETRY_AFTER, RATE_LIMIT_BACKOFF};
use crate::backoff;
use crate::http::{error_chain, read_prefix, snippet};

impl Client {
    pub(super) fn key_header(&self) -> HeaderValue {
        self.api_key.clone()
    }

    pub(super) fn count(&self, err: &ApiError) {
        if let Some(m) = &self.metrics {
            m.api_error(&err.code());
        }
    }

    pub(super) fn delay(&self, err: &ApiError, attempt: u32) -> Duration {
        let unit: f64 = rand::random();
        if err.is_rate_limit() {
            let initial = RATE_LIMIT_BACKOFF;
            let base = backoff::exponential(initial, self.retry_max.max(initial), attempt);
            return err.retry_after().unwrap_or(base);
        }
        backoff::next_delay(
            self.retry_initial,
            self.retry_max,
            attempt,
            err.retry_after(),
            unit,
        )
    }

    /// Sends `request` through the pacer, retrying the failures `retryable`
    /// accepts, up to `retries` times, with backoff (`Retry-After` honoured;
    /// a 429 holds every request of this client).
    pub(super) async fn with_retries<T, F, Fut>(
        &self,
        retryable: fn(&ApiError) -> bool,
        mut request: F,
    ) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.pacer.acquire().await;
            if let Some(m) = &self.metrics {
                m.beat();
            }
            match request().await {
                Ok(a) => return Ok(a),
                Err(err) => {
                    self.count(&err);
                    if !retryable(&err) || attempt > self.retries {
                        return Err(err);
                    }
                    let delay = self.delay(&err, attempt);
                    if err.is_rate_limit() {
                        self.pacer.back_off(delay);
                    }
                    tracing::warn!(
                        error = %err,
                        code = %err.code(),
                        attempt,
                        retry_in = %humantime::format_duration(Duration::from_millis(delay.as_millis() as u64)),
                        "CertCentral request failed; retrying"
                    );
                    self.sleep_beating(delay).await;
                }
            }
        }
    }

    /// Sleeps, telling the watchdog every few seconds that this is a
    /// deliberate wait (a long `Retry-After`), not a hang.
    pub(super) async fn sleep_beating(&self, total: Duration) {
        let deadline = tokio::time::Instant::now() + total;
        loop {
            if let Some(m) = &self.metrics {
                m.beat();
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.min(Duration::from_secs(5))).await;
        }
    }

    pub(super) async fn get_answer(
        &self,
        url: &str,
        query: Vec<(&'static str, String)>,
        statuses: Arc<Mutex<Statuses>>,
    ) -> Result<(Answer, Option<DateTime<Utc>>), ApiError> {
        // Written by hand, not form-encoded: the values are digits and
        // `yyyy-MM-dd+HH:mm:ss` ranges, and the `+` must reach CertCentral
        // exactly as its documentation writes it.
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let full = format!("{url}?{}", query.join("&"));
        let sent = Utc::now();
        let resp = self
            .http
            .get(&full)
            .header("X-DC-DEVKEY", self.key_header())
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| self.transport_error(url, e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(self.error_answer(url, resp).await);
        }
        let date = resp
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .map(DateTime::<Utc>::from);
        if let Some(api) = date {
            self.clock.learn(sent, api);
        }
        let malformed = |detail: String| ApiError::Malformed {
            url: url.to_string(),
            status: status.as_u16(),
            detail,
        };
        let answer = body::read_answer(resp, self.max_body, statuses)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge => ApiError::TooLarge {
                    url: url.to_string(),
                    limit: self.max_body,
                },
                BodyError::Transport(e) => self.transport_error(url, e),
                BodyError::Malformed(detail) => malformed(detail),
                BodyError::Parser(detail) => malformed(format!("the parser failed: {detail}")),
            })?;
        if let Some((code, message)) = answer.error {
            return Err(api_error(url, status.as_u16(), &code, &message, None));
        }
        Ok((answer, date))
    }

    pub(super) async fn error_answer(&self, url: &str, resp: reqwest::Response) -> ApiError {
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| backoff::parse_retry_after(v, SystemTime::now()))
            .map(|d| d.min(MAX_RETRY_AFTER));
        if status.is_redirection() {
            // The server chose this text: shown, never followed, kept short.
            let location = match resp.headers().get(reqwest::header::LOCATION) {
                None => "(no Location header)".to_string(),
                Some(v) => match v.to_str() {
                    Ok(text) => snippet(text.as_bytes()),
                    Err(_) => "(an unreadable Location header)".to_string(),
                },
            };
            return ApiError::Redirected {
                url: url.to_string(),
                location,
            };
        }
        // Error bodies are small; read at most 64 KiB of them.
        let body = read_prefix(resp, 64 * 1024).await;
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) if !e.errors.is_empty() => {
                let first = &e.errors[0];
                api_error(
                    url,
                    status.as_u16(),
                    first.code.as_deref().unwrap_or(&http_code(status)),
                    first.message.as_deref().unwrap_or_default(),
                    retry_after,
                )
            }
            _ => ApiError::Api {
                url: url.to_string(),
                status: status.as_u16(),
                code: http_code(status),
                message: snippet(&body),
                retry_after,
            },
        }
    }

    pub(super) fn transport_error(&self, url: &str, e: reqwest::Error) -> ApiError {
        if e.is_timeout() {
            return ApiError::Timeout {
                url: url.to_string(),
                timeout: self.timeout,
            };
        }
        if e.is_body() || e.is_decode() {
            return ApiError::Malformed {
                url: url.to_string(),
                status: e.status().map_or(200, |s| s.as_u16()),
                detail: format!("the answer broke off: {}", error_chain(&e)),
            };
        }
        ApiError::Network {
            url: url.to_string(),
            detail: error_chain(&e),
        }
    }
}
