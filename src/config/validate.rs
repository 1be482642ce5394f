//! Turning the raw file into typed values, collecting every problem with
//! the key it concerns.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::field::{Problems, RedactedUrl, is_loopback, shown_url};
use super::raw::{self, RawConfig};
use super::*;

/// Collects problems while turning raw values into typed ones.
#[derive(Default)]
pub(super) struct Validator {
    pub(super) problems: Problems,
}

impl Validator {
    pub(super) fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.add(key, message);
    }

    pub(super) fn duration(
        &mut self,
        key: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Duration {
        self.problems.duration(key, value, default)
    }

    fn positive(&mut self, key: &str, value: Option<&str>, default: Duration) -> Duration {
        self.problems.positive(key, value, default)
    }

    pub(super) fn config(
        &mut self,
        raw: RawConfig,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Config> {
        let digicert = self.digicert(raw.digicert.unwrap_or_default(), env);
        let poll = self.poll(raw.poll.unwrap_or_default());
        let raw_store = raw.store.unwrap_or_default();
        let keep_delivered = self.positive(
            "store.keep_delivered",
            raw_store.keep_delivered.as_deref(),
            super::DEFAULT_KEEP_DELIVERED,
        );
        let store = self.store(raw_store, env);
        let metrics = raw.metrics.and_then(|m| {
            let listen = m.listen?;
            match SocketAddr::from_str(&listen) {
                Ok(listen) => Some(MetricsConfig { listen }),
                Err(_) => {
                    self.problem(
                        "metrics.listen",
                        format!("invalid address {listen:?}; expected IP:PORT such as \"127.0.0.1:9464\""),
                    );
                    None
                }
            }
        });
        let events = events::parse(raw.events.unwrap_or_default(), &mut self.problems);
        let wake = wake::parse(raw.wake, &mut self.problems, env);
        let enrich = events::parse_enrich(raw.enrich, &mut self.problems);
        let alerts = super::alerts::parse(raw.alerts, &mut self.problems);
        let sinks = sinks::parse_all(raw.sinks, &mut self.problems, env);
        Some(Config {
            source: path.to_path_buf(),
            digicert: digicert?,
            poll,
            store: store?,
            keep_delivered,
            metrics,
            events,
            enrich,
            wake,
            alerts,
            sinks,
        })
    }

    fn digicert(
        &mut self,
        raw: raw::RawDigicert,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<DigicertConfig> {
        let base = self.instance(&raw);
        let base_url = base.and_then(|b| self.api_base_url(&b, raw.allow_insecure_http));

        let api_key = self.api_key(&raw, env);

        let timeout = self.positive(
            "digicert.timeout",
            raw.timeout.as_deref(),
            Duration::from_secs(30),
        );
        let timezone = match raw.timezone.as_deref() {
            None => chrono_tz::America::Denver,
            Some(name) => match chrono_tz::Tz::from_str(name) {
                Ok(tz) => tz,
                Err(_) => {
                    self.problem(
                        "digicert.timezone",
                        format!("unknown time zone {name:?}; expected an IANA name such as \"America/Denver\""),
                    );
                    chrono_tz::America::Denver
                }
            },
        };
        let rpm = self.requests_per_minute(raw.max_requests_per_minute);
        let max_response_bytes = self.response_size(raw.max_response_size.as_ref());
        let retries = raw.retries.unwrap_or(5);
        let retry_initial = self.positive(
            "digicert.retry_initial",
            raw.retry_initial.as_deref(),
            Duration::from_secs(1),
        );
        let retry_max = self.positive(
            "digicert.retry_max",
            raw.retry_max.as_deref(),
            Duration::from_secs(60),
        );
        if retry_max < retry_initial {
            self.problem(
                "digicert.retry_max",
                "must not be smaller than retry_initial",
            );
        }
        Some(DigicertConfig {
            base_url: base_url?,
            api_key: api_key?,
            timeout,
            timezone,
            max_requests_per_minute: rpm,
            max_response_bytes,
            retries,
            retry_initial,
            retry_max,
            ca_file: self.ca_file(raw.ca_file.as_deref()),
        })
    }

    /// `base_url` or `instance`, not both; the US instance by default.
    fn instance(&mut self, raw: &raw::RawDigicert) -> Option<String> {
        match (&raw.base_url, &raw.instance) {
            (Some(_), Some(_)) => {
                self.problem(
                    "digicert.instance",
                    "set either base_url or instance, not both",
                );
                None
            }
            (Some(url), None) => Some(url.clone()),
            (None, Some(inst)) => match inst.as_str() {
                "us" => Some(US_BASE_URL.to_string()),
                "eu" => Some(EU_BASE_URL.to_string()),
                other => {
                    self.problem(
                        "digicert.instance",
                        format!("unknown instance {other:?}; expected \"us\" or \"eu\""),
                    );
                    None
                }
            },
            (None, None) => Some(US_BASE_URL.to_string()),
        }
    }

    fn api_key(
        &mut self,
        raw: &raw::RawDigicert,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<SecretSource> {
        match (&raw.api_key_env, &raw.api_key_file) {
            (Some(_), Some(_)) => {
                self.problem(
                    "digicert.api_key_file",
                    "set either api_key_env or api_key_file, not both",
                );
                None
            }
            (Some(var), None) => self.problems.env_var("digicert.api_key_env", var),
            (None, Some(file)) => Some(SecretSource::File(file.clone())),
            (None, None) => Some(SecretSource::default_api_key(env)),
        }
    }

    /// Client-side pacing, within what DigiCert allows.
    fn requests_per_minute(&mut self, value: Option<u32>) -> u32 {
        let rpm = value.unwrap_or(60);
        if rpm == 0 || rpm > MAX_REQUESTS_PER_MINUTE {
            self.problem(
                "digicert.max_requests_per_minute",
                format!(
                    "must be between 1 and {MAX_REQUESTS_PER_MINUTE} (DigiCert allows 1000 requests per 5 minutes), got {rpm}"
                ),
            );
        }
        rpm.clamp(1, MAX_REQUESTS_PER_MINUTE)
    }

    /// The largest answer accepted, 256 MiB by default.
    fn response_size(&mut self, value: Option<&SizeValue>) -> u64 {
        const DEFAULT: u64 = 256 * 1024 * 1024;
        let Some(v) = value else {
            return DEFAULT;
        };
        match v.bytes() {
            Ok(0) | Err(_) => {
                self.problem(
                    "digicert.max_response_size",
                    format!("invalid size {v}; expected bytes or e.g. \"256MiB\""),
                );
                DEFAULT
            }
            Ok(n) => n,
        }
    }

    /// The API key travels in a header, so plain HTTP is only accepted to
    /// loopback (the simulator) unless the operator opts in explicitly.
    fn api_base_url(&mut self, text: &str, allow_insecure: Option<bool>) -> Option<String> {
        let url = match reqwest::Url::parse(text) {
            Ok(u) => u,
            Err(e) => {
                self.problem(
                    "digicert.base_url",
                    format!("invalid URL {}: {e}", shown_url(text)),
                );
                return None;
            }
        };
        // The key travels in X-DC-DEVKEY; credentials in the URL would only
        // leak (the base URL is every event's `source`), and a query or
        // fragment would break the paths appended to it.
        if !url.username().is_empty() || url.password().is_some() {
            self.problem(
                "digicert.base_url",
                format!(
                    "{} must not contain a user name or password; the API key comes from api_key_env, api_key_file or the systemd credential",
                    RedactedUrl::new(url)
                ),
            );
            return None;
        }
        if url.query().is_some() || url.fragment().is_some() {
            self.problem(
                "digicert.base_url",
                format!(
                    "{} must not have a query or fragment; expected e.g. {US_BASE_URL:?}",
                    RedactedUrl::new(url)
                ),
            );
            return None;
        }
        match url.scheme() {
            "https" => {}
            "http" => {
                if !is_loopback(&url) && allow_insecure != Some(true) {
                    self.problem(
                        "digicert.base_url",
                        format!(
                            "{text:?} uses plain http to a non-loopback host, which would send the API key in clear; use https, or set allow_insecure_http = true"
                        ),
                    );
                    return None;
                }
            }
            other => {
                self.problem(
                    "digicert.base_url",
                    format!("unsupported scheme {other:?} in {text:?}; expected https"),
                );
                return None;
            }
        }
        if url.cannot_be_a_base() || url.host().is_none() {
            self.problem("digicert.base_url", format!("{text:?} is not a base URL"));
            return None;
        }
        Some(text.trim_end_matches('/').to_string())
    }

    fn poll(&mut self, raw: raw::RawPoll) -> PollConfig {
        let mut interval = self.positive(
            "poll.interval",
            raw.interval.as_deref(),
            Duration::from_secs(60),
        );
        // Requests are paced (at most 180 a minute), so a faster schedule
        // only queues cycles behind the pacer, and health ("the last good
        // poll is at most 3 intervals old") could never hold.
        if interval < Duration::from_secs(1) {
            self.problem(
                "poll.interval",
                format!(
                    "must be at least 1s, got {}; CertCentral is paced to at most {MAX_REQUESTS_PER_MINUTE} requests a minute",
                    humantime::format_duration(interval)
                ),
            );
            interval = Duration::from_secs(1);
        }
        let overlap = self.duration(
            "poll.overlap",
            raw.overlap.as_deref(),
            Duration::from_secs(600),
        );
        let initial_lookback = self.positive(
            "poll.initial_lookback",
            raw.initial_lookback.as_deref(),
            Duration::from_secs(3600),
        );
        let mut max_window =
            self.positive("poll.max_window", raw.max_window.as_deref(), API_MAX_WINDOW);
        if max_window > API_MAX_WINDOW {
            self.problem(
                "poll.max_window",
                format!(
                    "{:?} is longer than the 7 days (10080 minutes) CertCentral accepts",
                    raw.max_window.as_deref().unwrap_or_default()
                ),
            );
            max_window = API_MAX_WINDOW;
        }
        if max_window < Duration::from_secs(3600) {
            self.problem(
                "poll.max_window",
                format!(
                    "must be at least 1h, got {}",
                    humantime::format_duration(max_window)
                ),
            );
            max_window = API_MAX_WINDOW;
        }
        // Absolute catch-up windows step by `max_window - overlap`; an overlap
        // longer than half a window would make catch-up mostly repetition.
        if overlap
            .checked_mul(2)
            .is_none_or(|twice| twice > max_window)
        {
            self.problem(
                "poll.overlap",
                format!(
                    "must be at most half of max_window ({}), got {}",
                    humantime::format_duration(max_window),
                    humantime::format_duration(overlap)
                ),
            );
        }
        PollConfig {
            interval,
            overlap,
            initial_lookback,
            max_window,
        }
    }
}

/// A size given either as a number of bytes or as text such as `"256MiB"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl fmt::Display for SizeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeValue::Bytes(n) => write!(f, "{n}"),
            SizeValue::Text(t) => write!(f, "{t:?}"),
        }
    }
}

impl SizeValue {
    fn bytes(&self) -> Result<u64, ()> {
        match self {
            SizeValue::Bytes(n) => Ok(*n),
            SizeValue::Text(t) => parse_size(t),
        }
    }
}

pub(super) fn parse_size(text: &str) -> Result<u64, ()> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| ())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(()),
    };
    n.checked_mul(mult).ok_or(())
}
