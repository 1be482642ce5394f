//! The CertCentral Services API client: `status-changes` (with pages) and
//! cancelling an order.
//!
//! Every request goes through the shared [`Pacer`]; transient failures
//! (network, timeouts, 408, 429, 5xx, garbled answers) are retried with
//! backoff, honouring `Retry-After`; permanent ones (401, 403,
//! `time_frame_too_long`, ...) are returned at once with the API's own code.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use reqwest::StatusCode;
use reqwest::header::{HeaderValue, RETRY_AFTER};

use crate::backoff;
use crate::config::{DigicertConfig, Secret};
use crate::http::{self, error_chain, read_prefix, snippet};
use crate::metrics::Metrics;
use crate::pacer::Pacer;
use crate::window::{RelativeSpan, Window, filter_value};

pub mod answer;
mod api_clock;
mod body;
mod frames;
mod order_info;
pub mod orders;
pub mod pages;

use answer::{Answer, ErrorBody};
pub use api_clock::ApiClock;
use body::BodyError;
use orders::{OrderList, Statuses};
use pages::{NextPage, PageFollower};

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

/// A failed CertCentral request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach {url}: {detail}")]
    Network { url: String, detail: String },
    #[error("no complete answer from {url} within {}", humantime::format_duration(*.timeout))]
    Timeout { url: String, timeout: Duration },
    #[error("{url} answered HTTP {status}: {code}: {message}")]
    Api {
        url: String,
        status: u16,
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error(
        "{url} answered HTTP {status} with something that is not a CertCentral answer: {detail}"
    )]
    Malformed {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("the answer from {url} is larger than max_response_size ({limit} bytes)")]
    TooLarge { url: String, limit: u64 },
    #[error(
        "{url} answered with a redirect to {location}; redirects are not followed, since the API key would go with them: set [digicert] base_url to the address that answers"
    )]
    Redirected { url: String, location: String },
    #[error(
        "the pages of one window from {url} kept shifting as orders changed (fetched from the first page {restarts} times); trying again next cycle"
    )]
    Shifting { url: String, restarts: u32 },
    /// This source cannot do that (a scripted stand-in in tests).
    #[error("this change source does not support {what}")]
    Unsupported { what: &'static str },
    /// Nothing was sent: the window must be planned again (in absolute pieces).
    #[error(
        "the relative window since {since} grew past CertCentral's 7-day limit before it was fetched"
    )]
    Expired { since: DateTime<Utc> },
}

impl ApiError {
    /// A short code for logs and the `orderwatch_api_errors_total` metric: the
    /// API's own code when it sent one.
    pub fn code(&self) -> String {
        match self {
            ApiError::Network { .. } => "network".into(),
            ApiError::Timeout { .. } => "timeout".into(),
            ApiError::Api { code, .. } => code.clone(),
            ApiError::Malformed { .. } => "malformed".into(),
            ApiError::TooLarge { .. } => "too_large".into(),
            ApiError::Redirected { .. } => "redirect".into(),
            ApiError::Shifting { .. } => "pages_shifting".into(),
            ApiError::Expired { .. } => "window_expired".into(),
            ApiError::Unsupported { .. } => "unsupported".into(),
        }
    }

    /// Worth retrying within the cycle?
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Network { .. } | ApiError::Timeout { .. } | ApiError::Malformed { .. } => {
                true
            }
            ApiError::Api { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            ApiError::TooLarge { .. }
            | ApiError::Redirected { .. }
            | ApiError::Shifting { .. }
            | ApiError::Expired { .. }
            | ApiError::Unsupported { .. } => false,
        }
    }

    fn is_rate_limit(&self) -> bool {
        matches!(self, ApiError::Api { status: 429, .. })
            || matches!(self, ApiError::Api { code, .. } if code == "request_limit_exceeded")
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What one window's requests returned.
#[derive(Debug)]
pub struct Fetched {
    /// In answer order, pages joined (see [`PageFollower`]).
    pub orders: OrderList,
    /// When the first request of the window was sent, by this machine's
    /// clock: for a relative window, everything up to here has been asked for.
    pub asked_at: DateTime<Utc>,
    pub requests: u32,
    /// CertCentral's own clock (its `Date` header) when it answered the
    /// first request, if it said.
    pub api_time: Option<DateTime<Utc>>,
    /// For a relative window, where its first request began by CertCentral's
    /// clock (`api_time` minus the span asked for): what it really covered.
    pub covered_from: Option<DateTime<Utc>>,
}

/// Where the poller gets order changes and the enricher order details:
/// the CertCentral client, or in tests a scripted stand-in (the daemon's
/// loops run in-process on tokio's paused clock, which real network I/O
/// would not survive).
#[async_trait::async_trait]
pub trait ChangeSource: Send + Sync {
    /// Every order of one window, all pages.
    async fn status_changes(&self, window: &Window) -> Result<Fetched, ApiError>;

    /// CertCentral's now, as well as the source knows its clock (see
    /// [`ApiClock`]); this machine's clock before the first answer.
    fn api_now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    /// The offset of CertCentral's clock from ours, once an answer said.
    fn api_offset(&self) -> Option<chrono::TimeDelta> {
        None
    }

    /// One order's info (`None`: 404), one attempt, after `budget` and
    /// the shared pacing allow it. A source that cannot look orders up
    /// says so; the enricher then gives up on time (`"order": null`).
    async fn order_info(
        &self,
        order_id: i64,
        budget: &Pacer,
    ) -> Result<Option<serde_json::Value>, ApiError> {
        let _ = (order_id, budget);
        Err(ApiError::Unsupported {
            what: "looking up order details",
        })
    }
}

#[async_trait::async_trait]
impl ChangeSource for Client {
    async fn status_changes(&self, window: &Window) -> Result<Fetched, ApiError> {
        Client::status_changes(self, window).await
    }

    fn api_now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn api_offset(&self) -> Option<chrono::TimeDelta> {
        self.clock.offset()
    }

    async fn order_info(
        &self,
        order_id: i64,
        budget: &Pacer,
    ) -> Result<Option<serde_json::Value>, ApiError> {
        Client::order_info(self, order_id, budget).await
    }
}

/// The CertCentral client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    api_key: Secret,
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
        let http = http::client_builder(cfg.timeout)
            .build()
            .map_err(|e| ApiError::Network {
                url: cfg.base_url.clone(),
                detail: format!("cannot build the HTTP client: {e}"),
            })?;
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
                    let mut query: Vec<(&'static str, String)> = match window {
                        // Measured at send time, from a fixed start: later pages
                        // and retries still reach back to `since`.
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
                    };
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
                NextPage::Restart => {
                    restarts += 1;
                    if restarts > MAX_RESTARTS {
                        return Err(ApiError::Shifting { url, restarts });
                    }
                    tracing::warn!(
                        %url,
                        restart = restarts,
                        "orders changed between two pages of one window; fetching the window again from its first page"
                    );
                }
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
        let covered_from = match (span, api_time) {
            (Some(span), Some(t)) => {
                let secs = i64::try_from(span.total_seconds()).unwrap_or(i64::MAX);
                t.checked_sub_signed(chrono::TimeDelta::seconds(secs))
            }
            _ => None,
        };
        Ok(Fetched {
            orders: OrderList::new(orders, statuses),
            asked_at,
            requests,
            api_time,
            covered_from,
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

    fn key_header(&self) -> HeaderValue {
        let mut v = HeaderValue::from_str(self.api_key.expose())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid-key"));
        v.set_sensitive(true);
        v
    }

    fn count(&self, err: &ApiError) {
        if let Some(m) = &self.metrics {
            m.api_error(&err.code());
        }
    }

    fn delay(&self, err: &ApiError, attempt: u32) -> Duration {
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
    async fn with_retries<T, F, Fut>(
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
    async fn sleep_beating(&self, total: Duration) {
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

    async fn get_answer(
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

    async fn error_answer(&self, url: &str, resp: reqwest::Response) -> ApiError {
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

    fn transport_error(&self, url: &str, e: reqwest::Error) -> ApiError {
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

/// An error answer as CertCentral gave it, its text made safe to show: the
/// code as a plain word (see `transition::status_name`), the message
/// printable and short. Both reach logs, `STATUS=` and metric labels.
fn api_error(
    url: &str,
    status: u16,
    code: &str,
    message: &str,
    retry_after: Option<Duration>,
) -> ApiError {
    ApiError::Api {
        url: url.to_string(),
        status,
        code: crate::transition::status_name(code),
        message: http::printable(message, 300),
        retry_after,
    }
}

fn http_code(status: StatusCode) -> String {
    format!("http_{}", status.as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretSource;
    use crate::simulator::{Simulator, SimulatorConfig};

    fn client(base_url: &str) -> Client {
        let cfg = DigicertConfig {
            base_url: base_url.to_string(),
            api_key: SecretSource::Env("UNUSED".into()),
            timeout: Duration::from_secs(5),
            timezone: chrono_tz::America::Denver,
            max_requests_per_minute: 180,
            max_response_bytes: 1 << 20,
            retries: 0,
            retry_initial: Duration::from_millis(10),
            retry_max: Duration::from_millis(10),
        };
        Client::new(&cfg, Secret::new("sim-key"), Arc::new(Pacer::new(180))).unwrap()
    }

    #[tokio::test]
    async fn an_absurd_retry_after_is_cut_to_the_maximum() {
        let sim = Simulator::start(SimulatorConfig::default()).await.unwrap();
        let c = client(&sim.base_url());
        sim.push_fault(crate::simulator::Fault::Respond {
            status: 429,
            headers: vec![("Retry-After".into(), u64::MAX.to_string())],
            body: String::new(),
        });
        let window = Window::Relative {
            since: Utc::now() - chrono::TimeDelta::minutes(5),
        };
        let err = c.status_changes(&window).await.unwrap_err();
        assert_eq!(err.code(), "http_429");
        assert_eq!(err.retry_after(), Some(MAX_RETRY_AFTER));
        // The pacer takes it without overflowing its clock.
        c.pacer.back_off(err.retry_after().unwrap());
    }

    #[tokio::test]
    async fn a_relative_window_past_seven_days_is_not_sent_capped() {
        let sim = Simulator::start(SimulatorConfig::default()).await.unwrap();
        let c = client(&sim.base_url());
        let week = chrono::TimeDelta::days(7);
        let stale = Window::Relative {
            since: Utc::now() - week - chrono::TimeDelta::seconds(2),
        };
        let err = c.status_changes(&stale).await.unwrap_err();
        assert_eq!(err.code(), "window_expired");
        assert!(!err.is_transient());
        assert!(sim.queries().is_empty(), "a capped window was sent");

        let fresh = Window::Relative {
            since: Utc::now() - week + chrono::TimeDelta::seconds(30),
        };
        c.status_changes(&fresh).await.unwrap();
        assert_eq!(sim.queries().len(), 1);
    }
}
