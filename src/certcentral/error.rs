//! How a CertCentral request fails, and the codes logs and metrics show.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;

use crate::http;

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

    pub(super) fn is_rate_limit(&self) -> bool {
        matches!(self, ApiError::Api { status: 429, .. })
            || matches!(self, ApiError::Api { code, .. } if code == "request_limit_exceeded")
    }

    pub(super) fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// An error answer as CertCentral gave it, its text made safe to show: the
/// code as a plain word (see `transition::status_name`), the message
/// printable and short. Both reach logs, `STATUS=` and metric labels.
pub(super) fn api_error(
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

pub(super) fn http_code(status: StatusCode) -> String {
    format!("http_{}", status.as_u16())
}
