//! The CertCentral Services API client: `status-changes` (with pages) and
//! cancelling an order.
//!
//! Every request goes through the shared [`Pacer`]; transient failures
//! (network, timeouts, 408, 429, 5xx, garbled answers) are retried with
//! backoff, honouring `Retry-After`; permanent ones (401, 403,
//! `time_frame_too_long`, ...) are returned at once with the API's own code.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use reqwest::header::HeaderValue;

use crate::config::{DigicertConfig, Secret};
use crate::http::{self, read_prefix};
use crate::metrics::Metrics;
use crate::pacer::Pacer;
use crate::window::{RelativeSpan, Window, filter_value};

pub mod answer;
mod api_clock;
mod body;
mod error;
mod frames;
mod order_info;
pub mod orders;
pub mod pages;
mod source;
mod transport;

use answer::ErrorBody;
pub use api_clock::ApiClock;
pub use error::ApiError;
use error::api_error;
use orders::{OrderList, Statuses};
use pages::{NextPage, PageFollower};
pub use source::{ChangeSource, Fetched};

/// `request_limit_exceeded` without `Retry-After` backs off from here.
pub const RATE_LIMIT_BACKOFF: Duration = Duration::from_secs(5);
/// A window whose pages keep shifting under concurrent changes is fetched
/// again from its first page at most this often before the cycle gives up.
const MAX_RESTARTS: u32 = 3;
/// The longest `Retry-After` honoured. DigiCert's limits roll over within
/// five minutes; anything far beyond that is a broken (or hostile) server,
/// and honouring, say, `Retry-After: 99999999999` would stall polling for
/// good — or overflow the clock arithmetic of the pacer.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The CertCentral client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    /// The API key as the `X-DC-DEVKEY` header, marked sensitive.
    api_key: HeaderValue,
    pacer: Arc<Pacer>,
    tz: Tz,
    timeout: Duration,
    max_body: u64,
    retries: u32,
    retry_initial: Duration,
    retry_max: Duration,
    metrics: Option<Arc<Metrics>>,
    /// CertCentral's clock, learned from the `Date` of every answer.
    clock: Arc<ApiClock>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(
        cfg: &DigicertConfig,
        api_key: Secret,
        pacer: Arc<Pacer>,
    ) -> Result<Client, ApiError> {
        // Redirects are refused (by the shared builder): X-DC-DEVKEY is a
        // custom header, which HTTP clients carry across hosts on redirect.
        let extra_roots = cfg.ca_file.as_ref().map_or(&[][..], |ca| &ca.certs[..]);
        let http = http::client_builder_trusting(cfg.timeout, extra_roots)
            .build()
            .map_err(|e| ApiError::Network {
                url: cfg.base_url.clone(),
                detail: format!("cannot build the HTTP client: {e}"),
            })?;
        // Loaded with `SecretSource::load_header`, which names the source
        // of a key that is not a header value; checked again, not replaced.
        let mut api_key = HeaderValue::from_str(api_key.expose()).map_err(|_| ApiError::Network {
            url: cfg.base_url.clone(),
            detail: "the API key has a control or non-ASCII character, so it cannot be sent in the X-DC-DEVKEY header".into(),
        })?;
        api_key.set_sensitive(true);
        Ok(Client {
            http,
            base_url: cfg.base_url.clone(),
            api_key,
            pacer,
            tz: cfg.timezone,
            timeout: cfg.timeout,
            max_body: cfg.max_response_bytes,
            retries: cfg.retries,
            retry_initial: cfg.retry_initial,
            retry_max: cfg.retry_max,
            metrics: None,
            clock: Arc::default(),
        })
    }

    /// Counts failed requests in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Client {
        self.metrics = Some(metrics);
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn status_changes_url(&self) -> String {
        format!("{}/order/certificate/status-changes", self.base_url)
    }

    /// Fetches every order of one window, following pages (see
    /// [`PageFollower`] for why pages overlap).
    pub async fn status_changes(&self, window: &Window) -> Result<Fetched, ApiError> {
        let url = self.status_changes_url();
        let asked_at = Utc::now();
        let mut orders = Vec::new();
        // One table for every page (and retry) of the window, so a status
        // index means the same on all of them.
        let statuses = Arc::new(Mutex::new(Statuses::default()));
        let mut pages = PageFollower::default();
        let mut requests = 0;
        let mut restarts = 0;
        // The span the answered first request asked for, and its `Date`.
        let sent_span = Mutex::new(None::<RelativeSpan>);
        let mut first_answer: Option<(Option<RelativeSpan>, Option<DateTime<Utc>>)> = None;
        loop {
            let offset = pages.offset();
            let (answer, date) = self
                .with_retries(ApiError::is_transient, || async {
                    let mut query = self.window_query(window, &sent_span)?;
                    if offset > 0 {
                        query.push(("offset", offset.to_string()));
                    }
                    self.get_answer(&url, query, Arc::clone(&statuses)).await
                })
                .await?;
            requests += 1;
            if first_answer.is_none() {
                let span = *sent_span.lock().unwrap_or_else(|e| e.into_inner());
                first_answer = Some((span, date));
            }
            let total = answer.page.map(|p| p.total);
            match pages.take(answer, &mut orders) {
                NextPage::Done => break,
                NextPage::At(offset) => {
                    tracing::debug!(offset, total, "fetching the next page");
                }
                NextPage::Refuse(detail) => {
                    return Err(ApiError::Malformed {
                        url,
                        status: 200,
                        detail,
                    });
                }
                NextPage::Restart => restart(&url, &mut restarts)?,
            }
            if u64::from(requests) >= pages::MAX_PAGES {
                return Err(ApiError::Malformed {
                    url,
                    status: 200,
                    detail: format!("more than {} pages for one window", pages::MAX_PAGES),
                });
            }
        }
        let statuses = std::mem::take(&mut *statuses.lock().unwrap_or_else(|e| e.into_inner()));
        let (span, api_time) = first_answer.unwrap_or((None, None));
        Ok(Fetched {
            orders: OrderList::new(orders, statuses),
            asked_at,
            requests,
            api_time,
            covered_from: covered_from(span, api_time),
        })
    }

    /// The window's filter, as sent now: a relative span is measured at
    /// send time from a fixed start, so later pages and retries still reach
    /// back to `since` (and `sent_span` remembers what was asked).
    fn window_query(
        &self,
        window: &Window,
        sent_span: &Mutex<Option<RelativeSpan>>,
    ) -> Result<Vec<(&'static str, String)>, ApiError> {
        Ok(match window {
            Window::Relative { since } => {
                let span = RelativeSpan::checked_between(*since, self.clock.now())
                    .ok_or(ApiError::Expired { since: *since })?;
                *sent_span.lock().unwrap_or_else(|e| e.into_inner()) = Some(span);
                span.query()
            }
            Window::Absolute { start, end } => {
                vec![(
                    "filters[status_last_updated]",
                    filter_value(*start, *end, self.tz),
                )]
            }
        })
    }

    /// One cheap authenticated request (the status changes of the last
    /// minute), sent once: `orderwatch check --online` wants the first
    /// answer, not a retried one, to say whether key and instance are right.
    pub async fn probe(&self) -> Result<usize, ApiError> {
        self.pacer.acquire().await;
        let (answer, _) = self
            .get_answer(
                &self.status_changes_url(),
                vec![("minutes", "1".to_string())],
                Arc::new(Mutex::new(Statuses::default())),
            )
            .await?;
        Ok(answer.orders.len())
    }

    /// Cancels a pending order. Not retried except after 429, so a cancel that
    /// may have been applied is never sent twice.
    pub async fn cancel(&self, order_id: u64, note: &str) -> Result<(), ApiError> {
        let url = format!("{}/order/certificate/{order_id}/status", self.base_url);
        let body = serde_json::json!({ "status": "CANCELED", "note": note }).to_string();
        self.with_retries(ApiError::is_rate_limit, || async {
            let sent = self
                .http
                .put(&url)
                .header("X-DC-DEVKEY", self.key_header())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Err(e) => Err(self.transport_error(&url, e)),
                Ok(resp) if resp.status().is_success() => self.cancel_answer(&url, resp).await,
                Ok(resp) => Err(self.error_answer(&url, resp).await),
            }
        })
        .await
    }

    /// A 2xx to a cancel is a success unless its body says otherwise: an
    /// answer carrying `{"errors": [...]}` failed, whatever its status,
    /// exactly as polling reads it.
    async fn cancel_answer(&self, url: &str, resp: reqwest::Response) -> Result<(), ApiError> {
        let status = resp.status().as_u16();
        let body = read_prefix(resp, 64 * 1024).await;
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) if !e.errors.is_empty() => {
                let first = &e.errors[0];
                Err(api_error(
                    url,
                    status,
                    first.code.as_deref().unwrap_or(&format!("http_{status}")),
                    first.message.as_deref().unwrap_or_default(),
                    None,
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Counts one more restart of a window whose pages shifted, or gives up.
fn restart(url: &str, restarts: &mut u32) -> Result<(), ApiError> {
    *restarts += 1;
    if *restarts > MAX_RESTARTS {
        return Err(ApiError::Shifting {
            url: url.to_string(),
            restarts: *restarts,
        });
    }
    tracing::warn!(
        %url,
        restart = *restarts,
        "orders changed between two pages of one window; fetching the window again from its first page"
    );
    Ok(())
}

/// Where a relative window really began by CertCentral's clock: its `Date`
/// minus the span the first request asked for.
fn covered_from(
    span: Option<RelativeSpan>,
    api_time: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let (span, t) = (span?, api_time?);
    let secs = i64::try_from(span.total_seconds()).unwrap_or(i64::MAX);
    t.checked_sub_signed(chrono::TimeDelta::seconds(secs))
}

#[cfg(test)]
mod tests;
